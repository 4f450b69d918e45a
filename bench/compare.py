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

**Paired when both sides come from one sweep.** ``--a``/``--b`` select one configuration on
each side (``bench compare runs/s --a batch=200 --b batch=2000``, B defaulting to A's file);
when both sides are interleaved rounds of the same sweep (the same ``sweep_id``, or the same
file), the runs are paired within rounds — Wilcoxon signed-rank on the within-round
log-ratios, with the noise band — as the sweep's own summary does. Runs of two separate
invocations never ran side by side, so they are compared unpaired.

**Different datasets are not compared.** When the two sides migrated different data
(records, files, bytes, invalid rate, mapping), a throughput difference says nothing about
the change under test; the report warns, names what differs, and reports no difference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.results import (
    RESULT_NAME,
    DatasetFacts,
    PlannedDocument,
    ResultDocument,
    ResultFileError,
    Run,
    RunDocument,
    counted_runs,
    load,
)
from reports.stats import (
    ALPHA,
    NOISE_BAND,
    Comparison,
    PairedComparison,
    compare,
    paired_compare,
)
from reports.summary import (
    BaselineError,
    ConfigValue,
    format_change,
    format_config,
    format_p,
    parse_baseline,
    resolve_baseline,
)

DEFAULT_THRESHOLD = 0.05

MARKER_LEGEND = {
    "+": "significantly worse, beyond the threshold",
    "-": "significantly better, beyond the threshold",
    "~": "not significant",
    " ": "significant, within the threshold",
    "=": "equivalent within the noise band (paired)",
    "?": "not compared: the two sides ran different datasets",
}

#: What must match for two result files to be comparable, and how each is named.
DATASET_FACTS = (("records", "records"), ("files", "files"), ("bytes", "bytes"),
                 ("invalid_rate", "invalid rate"), ("mapping", "mapping"))


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
    """Throughput samples (rec/min, run order) per configuration of one result file, with
    each sample's round (None for files without rounds) and the dataset the file ran."""

    path: Path
    kind: str
    configurations: list[dict[str, ConfigValue]]
    samples: list[list[float]]
    skipped: tuple[str, ...] = ()  # runs that failed or were interrupted: not measurements
    rounds: list[list[int]] | None = None
    sweep_id: str | None = None
    dataset: dict[str, Any] | None = None

    def select(self, spec: str, option: str) -> ResultSamples:
        """Only the one configuration ``spec`` (``batch=200``) names."""
        dims = list(self.configurations[0]) if self.configurations else []
        try:
            index = resolve_baseline(parse_baseline(spec, dims), self.configurations)
        except BaselineError as exc:
            raise ResultFileError(f"{self.path}: {option}: "
                                  f"{str(exc).removeprefix('--baseline: ')}") from None
        return dataclasses.replace(
            self, configurations=[self.configurations[index]], samples=[self.samples[index]],
            rounds=None if self.rounds is None else [self.rounds[index]])


def load_samples(path: str | Path) -> ResultSamples:
    """Read a result file's measured throughputs; any problem names the file (exit 1)."""
    p = Path(path)
    if p.is_dir() and not (p / RESULT_NAME).exists() and (p / "runs.jsonl").exists():
        raise ResultFileError(f"{p}: has no {RESULT_NAME} yet (an interrupted sweep?); finish "
                              f"it with `bench sweep --resume --out {p}`")
    doc = load(p)
    shown = Path(doc.source or p)
    why_not = [f"run {i + 1} {r.skipped_reason()}" for i, r in doc.unfinished()
               if not r.warmup]
    skipped = tuple(f"{shown}: {why}" for why in why_not)
    if isinstance(doc, PlannedDocument):
        configurations, samples, rounds = _planned_samples(doc, shown)
    elif isinstance(doc, RunDocument):
        configurations, samples, rounds = *_run_samples(doc.runs, shown), None
    else:
        raise ResultFileError(f"{shown}: a result of kind {doc.kind!r} has no throughput "
                              "samples to compare (expected sweep, baseline, calibrate or "
                              "run)")
    keep = [i for i, values in enumerate(samples) if values]
    if not keep:
        why = f" ({why_not[0]})" if why_not else ""
        raise ResultFileError(f"{shown}: no measured run in this result file{why}; a failed "
                              "or interrupted run is not a measurement")
    sweep_id = doc.config.sweep_id if isinstance(doc, PlannedDocument) else None
    return ResultSamples(shown, doc.kind, [configurations[i] for i in keep],
                         [samples[i] for i in keep], skipped=skipped,
                         rounds=None if rounds is None else [rounds[i] for i in keep],
                         sweep_id=sweep_id, dataset=_dataset_facts(doc))


def _planned_samples(doc: PlannedDocument, shown: Path
                     ) -> tuple[list[dict[str, ConfigValue]], list[list[float]],
                                list[list[int]] | None]:
    """A sweep's, baseline's or calibration's throughputs (and rounds) per configuration."""
    configurations = [dict(c) for c in doc.config.configurations]
    if not configurations:
        raise ResultFileError(f"{shown}: malformed {doc.kind} result: its config names no "
                              "configurations")
    samples: list[list[float]] = [[] for _ in configurations]
    rounds: list[list[int]] | None = [[] for _ in configurations]
    for run in counted_runs(doc.runs):
        k = run.config_index
        if k is None or not 0 <= k < len(configurations):
            raise ResultFileError(f"{shown}: malformed {doc.kind} result: run "
                                  f"{run.sequence} names configuration {k!r}, of "
                                  f"{len(configurations)}")
        samples[k].append(_throughput(run, doc.kind, shown))
        if run.round is None:
            rounds = None
        elif rounds is not None:
            rounds[k].append(run.round)
    return configurations, samples, rounds


def _run_samples(runs: Sequence[Run], shown: Path
                 ) -> tuple[list[dict[str, ConfigValue]], list[list[float]]]:
    """`bench run` results: one sample per complete run, grouped by configuration."""
    configurations: list[dict[str, ConfigValue]] = []
    samples: list[list[float]] = []
    for run in runs:
        if not run.is_measurement:
            continue
        config = {k: v for k, v in run.config.to_dict().items() if k != "resume"}
        value = _throughput(run, "run", shown)
        if config in configurations:
            samples[configurations.index(config)].append(value)
        else:
            configurations.append(config)
            samples.append([value])
    return configurations, samples


def _throughput(run: Run, kind: str, shown: Path) -> float:
    if run.throughput is None:
        raise ResultFileError(f"{shown}: malformed {kind} result: a measured run without "
                              "metrics.throughput_rec_per_min")
    return float(run.throughput)


def _dataset_facts(doc: ResultDocument) -> dict[str, Any]:
    """Records, files, bytes, invalid rate and mapping fingerprint the file says it ran."""
    dataset = doc.environment.dataset or DatasetFacts()
    facts: dict[str, Any] = {"records": dataset.records, "files": dataset.files,
                             "bytes": dataset.bytes, "invalid_rate": dataset.invalid_rate}
    mapping = doc.environment.mapping
    if mapping is None and isinstance(doc, RunDocument) and \
            not isinstance(doc.config.mapping, str):
        mapping = doc.config.mapping  # a `bench run` result describes its mapping here
    facts["mapping"] = mapping.fingerprint if mapping is not None else None
    return facts


def dataset_differences(a: ResultSamples, b: ResultSamples) -> list[str]:
    """What the two sides' datasets differ in, as "records 5,000 vs 20,000" (facts a side
    does not record are not compared)."""
    found: list[str] = []
    da, db = a.dataset or {}, b.dataset or {}
    for key, name in DATASET_FACTS:
        va, vb = da.get(key), db.get(key)
        if va is None or vb is None or va == vb:
            continue
        if key == "mapping":
            found.append(f"mapping {str(va)[:12]} vs {str(vb)[:12]}")
        elif isinstance(va, int | float) and isinstance(vb, int | float) and key != "invalid_rate":
            found.append(f"{name} {va:,} vs {vb:,}")
        else:
            found.append(f"{name} {va} vs {vb}")
    return found


@dataclass(frozen=True)
class CompareRow:
    label: str
    config_a: dict[str, ConfigValue]
    config_b: dict[str, ConfigValue]
    comparison: Comparison | PairedComparison
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
    paired: bool = False
    dataset_differences: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.dataset_differences

    @property
    def regressions(self) -> list[CompareRow]:
        return [r for r in self.rows if r.regression]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def warnings(self) -> list[str]:
        if self.comparable:
            return []
        return [f"A and B ran different datasets ({'; '.join(self.dataset_differences)}): "
                "their throughputs are not comparable, so no difference is reported; "
                "rerun both on the same data"]

    def sentence(self) -> str:
        if not self.comparable:
            return (f"not compared: different datasets over {len(self.rows)} "
                    "configuration(s)")
        worse = len(self.regressions)
        better = sum(r.marker == "-" for r in self.rows)
        head = (f"{worse} significant regression(s) beyond {100 * self.threshold:g}%"
                if worse else f"no significant regression beyond {100 * self.threshold:g}%")
        how = " (paired within rounds)" if self.paired else ""
        return (f"{head}; {better} significant improvement(s); geometric mean "
                f"{format_change(self.geometric_mean_change)} over {len(self.rows)} "
                f"configuration(s){how}")

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
                "analysis": "paired within rounds" if self.paired else "unpaired",
                "comparable": self.comparable,
                "dataset_differences": list(self.dataset_differences),
                "warnings": self.warnings(), "exit_code": self.exit_code}


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


def _marker(cmp: Comparison | PairedComparison, threshold: float) -> str:
    if isinstance(cmp, PairedComparison) and cmp.equivalent:
        return "="
    if not cmp.significant:
        return "~"
    if cmp.change is None or abs(cmp.change) <= threshold:
        return " "
    return cmp.verdict  # "+" worse / "-" better, from the U test's direction


def compare_results(a: str | Path, b: str | Path | None = None, *,
                    threshold: float = DEFAULT_THRESHOLD, alpha: float = ALPHA,
                    select_a: str | None = None, select_b: str | None = None,
                    noise_band: float = NOISE_BAND) -> CompareReport:
    """Compare result file ``b`` (default: ``a`` itself) with ``a``; ``select_a``/``select_b``
    pick one configuration on a side (``"batch=200"``)."""
    side_a = load_samples(a)
    side_b = side_a if b is None else load_samples(b)
    if select_a is not None:
        side_a = side_a.select(select_a, "--a")
    if select_b is not None:
        side_b = side_b.select(select_b, "--b")
    paired = _same_sweep(side_a, side_b)
    pairs, only_a, only_b = _match(side_a, side_b)
    differences = [] if paired else dataset_differences(side_a, side_b)
    rows = []
    for label, i, j in pairs:
        cmp = _compare_pair(side_a, i, side_b, j, paired=paired, alpha=alpha,
                            noise_band=noise_band)
        marker = "?" if differences else _marker(cmp, threshold)
        rows.append(CompareRow(label, side_a.configurations[i], side_b.configurations[j], cmp,
                               marker))
    return CompareReport(side_a.path, side_b.path, threshold, alpha, tuple(rows),
                         tuple(only_a), tuple(only_b),
                         None if differences else _geometric_mean_change(rows),
                         side_a.skipped + (side_b.skipped if b is not None else ()),
                         paired, tuple(differences))


def _same_sweep(a: ResultSamples, b: ResultSamples) -> bool:
    """Did both sides run in the interleaved rounds of one sweep?"""
    if a.rounds is None or b.rounds is None:
        return False
    if a.sweep_id is not None and a.sweep_id == b.sweep_id:
        return True
    return a.path.resolve() == b.path.resolve()


def _compare_pair(a: ResultSamples, i: int, b: ResultSamples, j: int, *, paired: bool,
                  alpha: float, noise_band: float) -> Comparison | PairedComparison:
    if paired and a.rounds is not None and b.rounds is not None:
        by_a = dict(zip(a.rounds[i], a.samples[i], strict=True))
        by_b = dict(zip(b.rounds[j], b.samples[j], strict=True))
        common = sorted(set(by_a) & set(by_b))
        if common:
            return paired_compare([by_a[r] for r in common], [by_b[r] for r in common],
                                  alpha=alpha, noise_band=noise_band)
    return compare(a.samples[i], b.samples[j], higher_is_better=True, alpha=alpha)


def _geometric_mean_change(rows: Sequence[CompareRow]) -> float | None:
    ratios = [r.comparison.median_b / r.comparison.median_a for r in rows
              if r.comparison.median_a > 0 and r.comparison.median_b > 0]
    if not ratios:
        return None
    return math.exp(sum(math.log(x) for x in ratios) / len(ratios)) - 1.0


def p_value(cmp: Comparison | PairedComparison) -> float | None:
    """The p-value that decided: Mann-Whitney U, or the paired signed-rank test."""
    return cmp.p_value if isinstance(cmp, PairedComparison) else cmp.mannwhitney_p


def row_cells(row: CompareRow) -> list[str]:
    """Table cells: marker, configuration, A median, B median, change [CI], p, n."""
    c = row.comparison
    ci = (f" [{format_change(c.change_ci_low)}, {format_change(c.change_ci_high)}]"
          if c.change_ci_low is not None and c.change_ci_high is not None else "")
    p = format_p(p_value(c)) + (" (too few runs)" if c.underpowered else "")
    return [row.marker, row.label, f"{c.median_a:,.0f}", f"{c.median_b:,.0f}",
            format_change(c.change) + ci, p, f"{c.n_a}/{c.n_b}"]

