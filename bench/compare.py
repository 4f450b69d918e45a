"""`bench compare A B`: per-configuration change between two result files, with significance.

``A`` is the reference (old), ``B`` the candidate (new). Both may be run folders or
``result.json`` files of kind ``sweep``, ``baseline`` or ``run``. Configurations are
matched on the dimensions both files have (a dimension only one file has must be constant
there, or the match would be ambiguous); two single-configuration files are compared
directly even when their configurations differ (baseline vs baseline).

Each matched pair is compared on throughput (rec/min, higher is better) with
:func:`reports.stats.compare` — Mann-Whitney U decides significance — and marked as asv
does, from the user's point of view:

====== ==============================================================================
``+``  significantly worse, by more than the threshold (a regression: exit status 1)
``-``  significantly better, by more than the threshold
``~``  not significant (or too few runs to tell)
`` ``  significant, but within the threshold
====== ==============================================================================

The geometric mean of the per-configuration ratios summarises the whole file, as asv and
pyperf do: one configuration twice as fast and one half as fast cancel out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import (
    RESULT_NAME,
    ResultFileError,
    describe_skipped,
    is_measurement,
    load_result,
)
from reports.stats import ALPHA, Comparison, compare
from reports.summary import ConfigValue, format_change, format_config, format_p

DEFAULT_THRESHOLD = 0.05

MARKER_LEGEND = {
    "+": "significantly worse, beyond the threshold",
    "-": "significantly better, beyond the threshold",
    "~": "not significant",
    " ": "significant, within the threshold",
}


class ThresholdError(ValueError):
    """A malformed ``--threshold``; message is user-facing (usage error)."""


def parse_threshold(text: str) -> float:
    """``5%`` or ``5`` → 0.05 (a bare number is a percentage)."""
    raw = text.strip()
    number = raw[:-1].strip() if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        raise ThresholdError(f"--threshold: {text!r} is not a percentage; "
                             "expected e.g. 5% or 5") from None
    if not math.isfinite(value) or value < 0:
        raise ThresholdError(f"--threshold: {text!r} must be a percentage ≥ 0, e.g. 5%")
    return value / 100.0


@dataclass(frozen=True)
class ResultSamples:
    """Throughput samples (rec/min, run order) per configuration of one result file."""

    path: Path
    kind: str
    configurations: list[dict[str, ConfigValue]]
    samples: list[list[float]]
    skipped: tuple[str, ...] = ()  # runs that failed or were interrupted: not measurements


def _result_path(path: Path) -> Path:
    return path / RESULT_NAME if path.is_dir() else path


def load_samples(path: str | Path) -> ResultSamples:
    """Read a result file's measured throughputs; any problem names the file (exit 1)."""
    p = Path(path)
    if p.is_dir() and not (p / RESULT_NAME).exists() and (p / "runs.jsonl").exists():
        raise ResultFileError(f"{p}: has no {RESULT_NAME} yet (an interrupted sweep?); finish "
                              f"it with `bench sweep --resume --out {p}`")
    doc = load_result(p)
    shown = _result_path(p)
    kind = doc.get("kind")
    why_not = [f"run {i + 1} {describe_skipped(r)}" for i, r in enumerate(doc.get("runs") or [])
               if not is_measurement(r) and not (isinstance(r, dict) and r.get("warmup"))]
    skipped = tuple(f"{shown}: {why}" for why in why_not)
    try:
        if kind in ("sweep", "baseline"):
            configurations = [dict(c) for c in doc["config"]["configurations"]]
            samples: list[list[float]] = [[] for _ in configurations]
            measured = [r for r in doc["runs"] if not r.get("warmup") and is_measurement(r)]
            measured.sort(key=lambda r: int(r["order_index"]))
            for run in measured:
                samples[int(run["config_index"])].append(
                    float(run["metrics"]["throughput_rec_per_min"]))
        elif kind == "run":
            configurations, samples = [], []
            for run in doc["runs"]:
                if not is_measurement(run):
                    continue
                config = {k: v for k, v in run["config"].items() if k != "resume"}
                value = float(run["metrics"]["throughput_rec_per_min"])
                if config in configurations:
                    samples[configurations.index(config)].append(value)
                else:
                    configurations.append(config)
                    samples.append([value])
        else:
            raise ResultFileError(f"{shown}: a result of kind {kind!r} has no throughput "
                                  "samples to compare (expected sweep, baseline or run)")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ResultFileError(f"{shown}: malformed {kind} result: {type(exc).__name__} "
                              f"{exc}") from None
    kept = [(c, s) for c, s in zip(configurations, samples, strict=True) if s]
    if not kept:
        why = f" ({why_not[0]})" if why_not else ""
        raise ResultFileError(f"{shown}: no measured run in this result file{why}; a failed "
                              "or interrupted run is not a measurement")
    return ResultSamples(shown, str(kind), [c for c, _ in kept], [s for _, s in kept],
                         skipped)


@dataclass(frozen=True)
class CompareRow:
    label: str
    config_a: dict[str, ConfigValue]
    config_b: dict[str, ConfigValue]
    comparison: Comparison
    marker: str

    @property
    def regression(self) -> bool:
        return self.marker == "+"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "config_a": self.config_a, "config_b": self.config_b,
                "marker": self.marker, "meaning": MARKER_LEGEND[self.marker],
                "regression": self.regression, **self.comparison.to_dict()}


@dataclass(frozen=True)
class CompareReport:
    a: Path
    b: Path
    threshold: float
    alpha: float
    rows: tuple[CompareRow, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    geometric_mean_change: float | None
    skipped: tuple[str, ...] = ()  # failed or interrupted runs left out, one line each

    @property
    def regressions(self) -> list[CompareRow]:
        return [r for r in self.rows if r.regression]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def sentence(self) -> str:
        worse = len(self.regressions)
        better = sum(r.marker == "-" for r in self.rows)
        head = (f"{worse} significant regression(s) beyond {100 * self.threshold:g}%"
                if worse else f"no significant regression beyond {100 * self.threshold:g}%")
        return (f"{head}; {better} significant improvement(s); geometric mean "
                f"{format_change(self.geometric_mean_change)} over {len(self.rows)} "
                "configuration(s)")

    def to_dict(self) -> dict[str, Any]:
        return {"a": str(self.a), "b": str(self.b), "threshold": self.threshold,
                "alpha": self.alpha, "unit": "rec/min", "higher_is_better": True,
                "rows": [r.to_dict() for r in self.rows],
                "only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b),
                "skipped_runs": list(self.skipped),
                "geometric_mean_change": self.geometric_mean_change,
                "regressions": len(self.regressions),
                "improvements": sum(r.marker == "-" for r in self.rows),
                "markers": MARKER_LEGEND, "sentence": self.sentence(),
                "exit_code": self.exit_code}


def _normalise(value: ConfigValue) -> ConfigValue:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return float(value)
    return str(value).casefold()


def _match(a: ResultSamples, b: ResultSamples
           ) -> tuple[list[tuple[str, int, int]], list[str], list[str]]:
    if len(a.configurations) == 1 and len(b.configurations) == 1:
        ca, cb = a.configurations[0], b.configurations[0]
        la, lb = format_config(ca), format_config(cb)
        return [(la if la == lb else f"{la or 'A'} → {lb or 'B'}", 0, 0)], [], []
    common = [k for k in a.configurations[0] if k in set(b.configurations[0])]

    def keys(side: ResultSamples) -> list[tuple[ConfigValue, ...]]:
        found = [tuple(_normalise(c[k]) for k in common) for c in side.configurations]
        if len(set(found)) != len(found):
            extra = sorted({k for c in side.configurations for k in c} - set(common))
            raise ResultFileError(
                f"{side.path}: its configurations differ in {', '.join(extra)}, which the "
                "other file does not have, so they cannot be matched")
        return found

    keys_a, keys_b = keys(a), keys(b)
    pairs = [(format_config({k: a.configurations[i][k] for k in common}), i, keys_b.index(key))
             for i, key in enumerate(keys_a) if key in keys_b]
    only_a = [format_config(a.configurations[i]) for i, k in enumerate(keys_a) if k not in keys_b]
    only_b = [format_config(b.configurations[i]) for i, k in enumerate(keys_b) if k not in keys_a]
    if not pairs:
        raise ResultFileError(f"{a.path} and {b.path} have no configuration in common "
                              f"(A: {'; '.join(only_a)}; B: {'; '.join(only_b)})")
    return pairs, only_a, only_b


def _marker(cmp: Comparison, threshold: float) -> str:
    if not cmp.significant:
        return "~"
    if cmp.change is None or abs(cmp.change) <= threshold:
        return " "
    return cmp.verdict  # "+" worse / "-" better, from the U test's direction


def compare_results(a: str | Path, b: str | Path, *, threshold: float = DEFAULT_THRESHOLD,
                    alpha: float = ALPHA) -> CompareReport:
    side_a, side_b = load_samples(a), load_samples(b)
    pairs, only_a, only_b = _match(side_a, side_b)
    rows = []
    for label, i, j in pairs:
        cmp = compare(side_a.samples[i], side_b.samples[j], higher_is_better=True, alpha=alpha)
        rows.append(CompareRow(label, side_a.configurations[i], side_b.configurations[j], cmp,
                               _marker(cmp, threshold)))
    return CompareReport(side_a.path, side_b.path, threshold, alpha, tuple(rows),
                         tuple(only_a), tuple(only_b), _geometric_mean_change(rows),
                         side_a.skipped + side_b.skipped)


def _geometric_mean_change(rows: Sequence[CompareRow]) -> float | None:
    ratios = [r.comparison.median_b / r.comparison.median_a for r in rows
              if r.comparison.median_a > 0 and r.comparison.median_b > 0]
    if not ratios:
        return None
    return math.exp(sum(math.log(x) for x in ratios) / len(ratios)) - 1.0


def row_cells(row: CompareRow) -> list[str]:
    """Table cells: marker, configuration, A median, B median, change [CI], p, n."""
    c = row.comparison
    ci = (f" [{format_change(c.change_ci_low)}, {format_change(c.change_ci_high)}]"
          if c.change_ci_low is not None and c.change_ci_high is not None else "")
    p = format_p(c.mannwhitney_p) + (" (too few runs)" if c.underpowered else "")
    return [row.marker, row.label, f"{c.median_a:,.0f}", f"{c.median_b:,.0f}",
            format_change(c.change) + ci, p, f"{c.n_a}/{c.n_b}"]

