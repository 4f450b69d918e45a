"""One diagnosis: what `bench diagnose pooling` found, stored once and rendered everywhere.

:class:`Diagnosis` holds the four test results, the decision tree's walk and the
recommendation. The result file stores :meth:`Diagnosis.to_dict` (at ``diagnose``), ``--json``
prints it, the terminal prints :func:`test_lines` and :func:`decision_lines`, and the HTML
report reads it back with :meth:`Diagnosis.from_dict` and shows the same strings — so every
rendering states the same verdicts, numbers and recommendation. Each test's numbers come
from that test's runs only (:attr:`TestResult.details`), never from the other tests'.

The recommendation (:class:`Recommendation`) names a configuration the contention test ran,
the numbers that chose it, and the exact way to apply it
(:func:`diagnostics.strategies.apply_lines`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from diagnostics.decision import Decision, decision_from_dict, decision_to_dict
from diagnostics.pooling import DiagnosisReport, TestResult
from diagnostics.strategies import Setting, apply_lines

FORMAT = 1
"""Version of the stored diagnosis (``diagnose.format`` in the result file)."""

TESTS_TOTAL = 4

STATUS_MARKS = {"ok": "ok", "ineffective": "INEFFECTIVE", "warning": "warning",
                "unavailable": "not run", "error": "error"}


@dataclass
class Recommendation:
    """The leaf's advice, the measured configuration it names, and how to apply it."""

    leaf: str
    verdict: str
    text: str
    rationale: str
    configuration: dict[str, Any] = field(default_factory=dict)  # {} when none was chosen
    apply: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # the comparisons behind it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recommendation:
        return cls(str(data["leaf"]), str(data["verdict"]), str(data["text"]),
                   str(data["rationale"]), dict(data.get("configuration") or {}),
                   [str(x) for x in data.get("apply") or []],
                   [str(x) for x in data.get("evidence") or []])


@dataclass
class Diagnosis:
    target: str  # redacted
    settings: dict[str, Any]
    tests: list[TestResult]
    decision: Decision
    recommendation: Recommendation
    exit_code: int
    format: int = FORMAT

    def test(self, name: str) -> TestResult | None:
        return next((t for t in self.tests if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "target": self.target, "settings": dict(self.settings),
                "tests": [t.to_dict() for t in self.tests],
                "decision": decision_to_dict(self.decision),
                "recommendation": self.recommendation.to_dict(),
                "exit_code": self.exit_code}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        """Read a stored diagnosis back; ValueError when it is not one of this format."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a diagnosis of format {FORMAT}: {data.get('format')!r}")
        return cls(str(data["target"]), dict(data.get("settings") or {}),
                   [TestResult.from_dict(t) for t in data.get("tests") or []],
                   decision_from_dict(data["decision"]),
                   Recommendation.from_dict(data["recommendation"]),
                   int(data.get("exit_code") or 0))

    def lines(self) -> list[str]:
        """Everything the terminal prints, in order."""
        out = [line for t in self.tests for line in test_lines(t)]
        return out + decision_lines(self)


# ---- building ----------------------------------------------------------------------------------

def build(report: DiagnosisReport, *, target: str,
          settings: Mapping[str, Any] | None = None) -> Diagnosis:
    """The diagnosis of a finished :class:`DiagnosisReport`."""
    decision = report.decision
    facts = report.facts()
    contention = next((t for t in report.results if t.name == "contention"), None)
    chosen: dict[str, Any] = {}
    evidence: list[str] = []
    if contention is not None and contention.status != "unavailable":
        chosen = dict(contention.details.get("recommended") or {})
        evidence = _evidence(contention)
    apply: list[str] = []
    if chosen and decision.leaf != "incomplete":
        apply = apply_lines(chosen.get("strategy"), int(chosen.get("workers") or 1),
                            _setting(target, facts))
    rec = Recommendation(decision.leaf, decision.verdict, decision.recommendation,
                         decision.rationale, chosen, apply, evidence)
    return Diagnosis(target, dict(settings or {}), list(report.results), decision, rec,
                     report.exit_code)


def _setting(target: str, facts: Mapping[str, Any]) -> Setting:
    scheme = target.partition(":")[0]
    effective = facts.get("config.effective")
    return Setting(scheme=scheme, dialect=str(facts.get("dialect") or scheme),
                   driver=str(facts.get("config.driver_section") or ""),
                   ini=str(facts.get("config.ini") or ""),
                   ini_pools=effective if isinstance(effective, bool) else None)


def _evidence(contention: TestResult) -> list[str]:
    """The comparisons behind the choice, one line each."""
    rec = contention.details.get("recommended") or {}
    comps = contention.details.get("comparisons") or {}
    lines = [f"recommended: {rec.get('label')}, {format_value(rec.get('median'))} rec/min "
             f"median over {contention.details.get('rounds')} round(s)"]
    gain = rec.get("gain")
    if gain:
        lines.append(f"{gain['b']} vs {gain['a']}: {gain['text']}")
    workers = rec.get("workers")
    for v in comps.get("strategies") or []:
        if v["b"].startswith(f"{workers} worker"):
            lines.append(f"{v['b']} vs {v['a']}: {v['text']}")
    for v in comps.get("more_workers") or []:
        lines.append(f"{v['b']} vs {v['a']}: {v['text']}")
    for v in comps.get("scaling") or []:
        lines.append(f"{v['b']} vs {v['a']}: {v['text']}")
    return list(dict.fromkeys(lines))


# ---- rendering (terminal; the HTML report uses the same functions) ----------------------------

def format_value(value: Any) -> str:
    """How a number or a small mapping of numbers is shown, everywhere."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def number_items(result: TestResult) -> list[tuple[str, str]]:
    """The test's key numbers as (label, shown value), those measured only."""
    return [(k, format_value(v)) for k, v in result.numbers.items() if v is not None]


def test_heading(result: TestResult) -> str:
    """``[3/4] Contention (warning): …`` — the test's one-line verdict."""
    mark = STATUS_MARKS.get(result.status, result.status)
    return f"[{result.number}/{TESTS_TOTAL}] {result.title or result.name} ({mark}): " \
           f"{result.verdict}"


def test_lines(result: TestResult) -> list[str]:
    out = [test_heading(result)]
    shown = [f"{k} {v}" for k, v in number_items(result)]
    if shown:
        out.append("      " + " · ".join(shown))
    out.extend("      ! " + m.replace("\n", "\n        ") for m in result.messages)
    return out


def path_lines(decision: Decision) -> list[str]:
    out = []
    for i, step in enumerate(decision.path, 1):
        if step.to is None:
            break
        read = ", ".join(f"{k}={_fact(v)}" for k, v in step.facts.items())
        out.append(f"{i}. {step.question} [{read}] → {step.answer} → {step.to}")
    return out


def decision_lines(diagnosis: Diagnosis) -> list[str]:
    rec = diagnosis.recommendation
    out = ["decision path:"]
    out += ["  " + line for line in path_lines(diagnosis.decision)]
    out.append(f"  verdict: {rec.verdict}")
    out.append(f"  recommendation: {rec.text}")
    out += [f"    apply: {line}" for line in rec.apply]
    out.append(f"  why: {rec.rationale}")
    return out


def _fact(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def verdict_summaries(diagnosis: Diagnosis) -> list[dict[str, Any]]:
    """The result file's ``verdicts`` entries: the same strings, one per test and the
    decision."""
    tests: Sequence[TestResult] = diagnosis.tests
    rec = diagnosis.recommendation
    return [{"kind": "pooling-test", "number": t.number, "name": t.name, "status": t.status,
             "verdict": t.verdict} for t in tests] + [
        {"kind": "pooling-decision", "leaf": rec.leaf, "verdict": rec.verdict,
         "recommendation": rec.text, "rationale": rec.rationale}]


__all__ = [
    "FORMAT",
    "Diagnosis",
    "Recommendation",
    "build",
    "decision_lines",
    "format_value",
    "number_items",
    "path_lines",
    "test_heading",
    "test_lines",
    "verdict_summaries",
]
