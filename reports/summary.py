"""The sweep summary: table rows, the best configuration, the knee, the change vs a baseline.

Input is what a sweep measured: for each configuration (a mapping of dimension → value,
e.g. ``{"batch_size": 1000, "workers": 4, "connection": "per-batch"}``) its throughput samples in
run order. Output is a :class:`SweepSummary` of frozen dataclasses; the terminal table, the
``--json`` output and the HTML report all render this one object, so they cannot disagree.

Every claim the summary makes ("best", "knee", "+63% vs workers=2") rests on a test from
:mod:`reports.stats`, never on comparing two medians by eye.

**Knee, precisely.** Within each group of configurations that share every dimension except
``batch_size``, let *best* be the batch size with the best median. A batch size *b* is
*within the noise of the best* when both

1. its median lies inside the best's confidence interval of the median (at or above the
   lower bound when higher is better), and
2. the best is not significantly better than it (Mann-Whitney U, two-sided, α = 0.05).

The knee is the smallest batch size within the noise of the best: beyond it, bigger batches
buy nothing measurable. Both conditions, not either: at the repeat counts a sweep can
afford (3–5) the U test alone has little or no power (3 vs 3 runs can never reach
p < 0.05), so "not significantly worse" by itself would put the knee at the smallest batch
size of any curve; the CI condition keeps it honest there, and the U test keeps a wide CI
from an unlucky best from swallowing a clearly lower neighbour. When the knee is the
largest batch size the curve is still rising (extend the range); when it is the smallest,
batch size makes no measurable difference.

**Paired, when the runs carry rounds** (every sweep's do): comparisons use the ratios of
runs that ran in the same round (:mod:`reports.paired`), the best is the configuration with
the best level in a two-way fit (configuration + round), and the knee is the smallest batch
size whose interval against its group's best lies above ``-noise_band`` — proven at most the
band worse. The first lines of the summary (``lines``) are what a reviewer reads: what to use
("use batch size 500: within 1.8% of the best (2000); batch size 50 costs 27%"), the best and
its ties, one noise line (paired noise, raw CVs, the host's level shift, disturbed runs, the
MDE) and, for a budgeted sweep, why it stopped and how many rounds each configuration got.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from migrator.settings import choice_named, dimension_name, label as setting_label
from reports.paired import (
    RoundsTable,
    compare_in_rounds,
    dimension_effects,
    level_shift_of,
    paired_family,
)
from reports.results import ConfigValue
from reports.stats import (
    ALPHA,
    NOISE_BAND,
    Comparison,
    Drift,
    Friedman,
    LevelShift,
    MachineNoise,
    PairedComparison,
    Stats,
    compare,
    describe,
    drift,
    instability_warnings,
    machine_noises,
    mde,
    min_p_value,
    signed_rank_min_p,
)

__all__ = [
    "BATCH_DIMENSION",
    "BaselineError",
    "BestConfig",
    "ConfigRow",
    "ConfigValue",
    "Knee",
    "SweepDesign",
    "SweepSummary",
    "format_change",
    "format_config",
    "format_p",
    "parse_baseline",
    "resolve_baseline",
    "summarize_sweep",
]

#: A configuration as stored: (dimension, value) pairs in dimension order — hashable and
#: ordered, unlike a dict; ``dict(config)`` gives the mapping back.
ConfigKey = tuple[tuple[str, ConfigValue], ...]

BATCH_DIMENSION = "batch_size"


class BaselineError(ValueError):
    """A ``--baseline`` value that names no single configuration; message is user-facing."""


# --------------------------------------------------------------------------- formatting


def format_config(config: Mapping[str, ConfigValue] | ConfigKey) -> str:
    """``batch_size=1000, workers=4`` — the label used in tables and sentences (each
    setting named by its declared label)."""
    pairs = config.items() if isinstance(config, Mapping) else config
    return ", ".join(f"{setting_label(key)}={_show_value(value)}" for key, value in pairs)


def _show_value(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_value(value: float) -> str:
    """Throughputs read as "364,467"; small values (seconds, ratios) keep their digits."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def format_change(change: float | None) -> str:
    """``+63%`` for large changes, ``+2.1%`` below 10%, where the decimal still matters."""
    if change is None:
        return "n/a"
    pct = 100.0 * change
    return f"{pct:+.0f}%" if round(abs(pct), 1) >= 10 else f"{pct:+.1f}%"


def format_p(p: float | None) -> str:
    if p is None:
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _comparison_text(cmp: Comparison, against: str) -> str:
    """``+63% vs workers=2 (p=0.008)``, or the same flagged as not significant."""
    head = f"{format_change(cmp.change)} vs {against}"
    if cmp.significant:
        return f"{head} ({format_p(cmp.mannwhitney_p)})"
    return f"{head} (not significant, {format_p(cmp.mannwhitney_p)})"


# --------------------------------------------------------------------------- baseline


def parse_baseline(text: str, dimensions: Sequence[str] | None = None) -> dict[str, str]:
    """Parse ``--baseline "workers=2,batch=1000"`` into ``{"workers": "2", "batch_size":
    "1000"}``.

    ``batch`` (and ``batch-size``, ``batches``) are aliases of ``batch_size``. With
    ``dimensions`` given, a key that is not one of them is an error that lists them —
    a typo must not silently fall back to the default baseline. Values stay strings;
    :func:`resolve_baseline` matches them against the grid's typed values.
    """
    if not text.strip():
        raise BaselineError("--baseline: empty; expected DIM=VALUE[,DIM=VALUE…], e.g. workers=2")
    known = list(dimensions) if dimensions is not None else None
    spec: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BaselineError(
                f"--baseline: {item.strip()!r} is not DIM=VALUE; expected e.g. workers=2,batch=1000"
            )
        name = dimension_name(key)
        if known is not None and name not in known:
            raise BaselineError(
                f"--baseline: unknown dimension {key.strip()!r}; "
                f"dimensions of this sweep: {', '.join(known)}"
            )
        if name in spec:
            raise BaselineError(f"--baseline: dimension {name!r} given twice")
        spec[name] = choice_named(name, value)  # (connection=on: pooled, as --pooling on)
    return spec


def _value_matches(text: str, value: ConfigValue) -> bool:
    if isinstance(value, bool):
        truthy = {"on", "true", "yes", "1"}
        falsy = {"off", "false", "no", "0"}
        return text.lower() in (truthy if value else falsy)
    if isinstance(value, int | float):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text.casefold() == str(value).casefold()


def resolve_baseline(spec: Mapping[str, str], configs: Sequence[Mapping[str, ConfigValue]]) -> int:
    """Index of the one configuration ``spec`` names.

    Dimensions left out of ``spec`` are fine when they do not tell configurations apart
    (a single value in the grid); otherwise the choice would be arbitrary, so it is an
    error naming the dimension to add.
    """
    dimensions = list(configs[0]) if configs else []
    for name in spec:
        if name not in dimensions:
            raise BaselineError(
                f"--baseline: unknown dimension {name!r}; "
                f"dimensions of this sweep: {', '.join(dimensions)}"
            )
    matches = [
        i
        for i, config in enumerate(configs)
        if all(_value_matches(text, config[name]) for name, text in spec.items())
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        available = "; ".join(
            f"{name}: {', '.join(_unique_shown(c[name] for c in configs))}" for name in spec
        )
        raise BaselineError(
            f"--baseline: no configuration has {format_config(tuple(spec.items()))}; "
            f"values in this sweep: {available}"
        )
    varying = [
        name
        for name in dimensions
        if name not in spec and len({configs[i][name] for i in matches}) > 1
    ]
    raise BaselineError(
        f"--baseline: {format_config(tuple(spec.items()))} matches {len(matches)} "
        f"configurations; also give {', '.join(varying)}"
    )


def _unique_shown(values: Any) -> list[str]:
    shown: list[str] = []
    for value in values:
        text = _show_value(value)
        if text not in shown:
            shown.append(text)
    return shown


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ConfigRow:
    """One line of the sweep table."""

    config: ConfigKey
    label: str
    stats: Stats
    drift: Drift
    warnings: tuple[str, ...]
    is_baseline: bool
    vs_baseline: Comparison | PairedComparison | None
    vs_baseline_text: str
    machine: MachineNoise | None = None  # the host's share of the spread, when probed
    rounds: int | None = None  # paired analysis: rounds this configuration ran
    vs_best: PairedComparison | None = None  # paired analysis: this one against the best
    vs_best_text: str = ""
    eliminated_at: int | None = None  # racing: rounds done when it was dropped

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config),
            "label": self.label,
            "stats": self.stats.to_dict(),
            "drift": self.drift.to_dict(),
            "warnings": list(self.warnings),
            "is_baseline": self.is_baseline,
            "vs_baseline": None if self.vs_baseline is None else self.vs_baseline.to_dict(),
            "vs_baseline_text": self.vs_baseline_text,
            "machine_noise": None if self.machine is None else self.machine.to_dict(),
            "rounds": self.rounds,
            "vs_best": None if self.vs_best is None else self.vs_best.to_dict(),
            "vs_best_text": self.vs_best_text,
            "eliminated_at": self.eliminated_at,
        }


@dataclass(frozen=True)
class BestConfig:
    """The best configuration, and how sure we are: ``significantly_better`` is whether it
    beats the runner-up by the U test; ``tied_with`` lists every configuration it does not
    significantly beat (the honest "any of these" set)."""

    index: int
    config: ConfigKey
    label: str
    stats: Stats
    runner_up_index: int | None
    runner_up_label: str | None
    vs_runner_up: Comparison | PairedComparison | None
    significantly_better: bool
    tied_with: tuple[str, ...]
    sentence: str
    equivalent_to: tuple[str, ...] = ()  # paired: proven within the noise band of the best

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "config": dict(self.config),
            "label": self.label,
            "median": self.stats.median,
            "runner_up_index": self.runner_up_index,
            "runner_up_label": self.runner_up_label,
            "vs_runner_up": None if self.vs_runner_up is None else self.vs_runner_up.to_dict(),
            "significantly_better": self.significantly_better,
            "tied_with": list(self.tied_with),
            "equivalent_to": list(self.equivalent_to),
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class Knee:
    """The knee of one batch-size curve (see the module docstring for the definition).

    ``kind``: ``"knee"`` (a plateau starts at ``knee_batch_size``), ``"still_rising"`` (the
    largest batch size is the only one within noise of the best), ``"flat"`` (even the
    smallest is), or ``"undetermined"`` (the best has a single run, so no noise estimate).
    """

    group: ConfigKey
    group_label: str
    batch_sizes: tuple[ConfigValue, ...]
    best_batch_size: ConfigValue
    knee_batch_size: ConfigValue | None
    within_noise: tuple[ConfigValue, ...]
    kind: str
    sentence: str
    undecided: tuple[ConfigValue, ...] = ()  # paired: neither within the band nor worse
    knee_change: float | None = None  # the knee's change against the best

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": dict(self.group),
            "group_label": self.group_label,
            "batch_sizes": list(self.batch_sizes),
            "best_batch_size": self.best_batch_size,
            "knee_batch_size": self.knee_batch_size,
            "within_noise": list(self.within_noise),
            "undecided": list(self.undecided),
            "knee_change": self.knee_change,
            "kind": self.kind,
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class SweepDesign:
    """How the sweep was run, as far as its summary must say: a fixed design of ``rounds``
    rounds, or a budgeted race (why it stopped, the budget, which configurations were
    dropped after how many rounds) and how many runs other processes disturbed."""

    mode: str  # "budget" or "fixed"
    rounds: int
    stop_reason: str | None = None
    stop_text: str = ""
    budget_s: float | None = None
    spent_s: float | None = None
    eliminated: Mapping[int, int] = field(default_factory=dict)  # index -> rounds done
    disturbed: int = 0
    reruns: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["eliminated"] = {str(k): v for k, v in self.eliminated.items()}
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class NoiseSummary:
    """The one noise line's numbers: the run-to-run noise left after pairing (log scale,
    comparable with a CV), the raw CVs, the smallest change this sweep could detect (MDE)
    at the rounds its leaders got, and the host's level shift, if any."""

    paired_noise: float | None
    raw_cv_min: float | None
    raw_cv_max: float | None
    mde: float | None
    mde_rounds: int
    level_shift: LevelShift | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level_shift"] = None if self.level_shift is None else self.level_shift.to_dict()
        return data


@dataclass(frozen=True)
class SweepSummary:
    dimensions: tuple[str, ...]
    unit: str
    higher_is_better: bool
    alpha: float
    rows: tuple[ConfigRow, ...]
    baseline_index: int
    best: BestConfig
    knees: tuple[Knee, ...]
    warnings: tuple[str, ...]
    paired: bool = False
    noise_band: float = NOISE_BAND
    recommendation: str = ""
    lines: tuple[str, ...] = ()  # the ten-second summary, in reading order
    noise: NoiseSummary | None = None
    effects: Mapping[str, Friedman] = field(default_factory=dict)
    design: SweepDesign | None = None

    @property
    def baseline(self) -> ConfigRow:
        return self.rows[self.baseline_index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimensions": list(self.dimensions),
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "alpha": self.alpha,
            "analysis": "paired within rounds" if self.paired else "unpaired",
            "noise_band": self.noise_band,
            "recommendation": self.recommendation,
            "lines": list(self.lines),
            "rows": [row.to_dict() for row in self.rows],
            "baseline_index": self.baseline_index,
            "baseline_label": self.baseline.label,
            "best": self.best.to_dict(),
            "knees": [knee.to_dict() for knee in self.knees],
            "noise": None if self.noise is None else self.noise.to_dict(),
            "effects": {k: v.to_dict() for k, v in self.effects.items()},
            "design": None if self.design is None else self.design.to_dict(),
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- analysis


def _keys(results: Sequence[tuple[Mapping[str, ConfigValue], Sequence[float]]]) -> list[ConfigKey]:
    if not results:
        raise ValueError("a sweep summary needs at least one configuration")
    dimensions = tuple(results[0][0])
    keys: list[ConfigKey] = []
    for config, _ in results:
        if tuple(config) != dimensions:
            raise ValueError(
                f"configuration {format_config(config)} does not have the dimensions "
                f"{', '.join(dimensions)} (in that order)"
            )
        key = tuple(config.items())
        if key in keys:
            raise ValueError(f"configuration {format_config(config)} appears twice")
        keys.append(key)
    return keys


def _diff_label(config: ConfigKey, baseline: ConfigKey) -> str:
    """The baseline named by what differs: "workers=2", not the whole configuration."""
    differing = tuple(
        (k, v) for (k, v), (_, mine) in zip(baseline, config, strict=True) if v != mine
    )
    return format_config(differing or baseline)


def _better_first(median: float, higher_is_better: bool) -> float:
    return -median if higher_is_better else median


def _beats(
    winner: Sequence[float], other: Sequence[float], *, higher_is_better: bool, alpha: float
) -> bool:
    """Is ``winner`` significantly better than ``other`` (U test)? No bootstrap needed."""
    verdict = compare(
        other, winner, higher_is_better=higher_is_better, alpha=alpha, change_ci=False
    ).verdict
    return verdict == "-"


def _best(
    keys: list[ConfigKey],
    samples: Sequence[Sequence[float]],
    stats: list[Stats],
    *,
    higher_is_better: bool,
    alpha: float,
    unit: str,
) -> BestConfig:
    # Stable sort: equal medians keep grid order, so ties resolve the same way every time.
    ranking = sorted(
        range(len(keys)), key=lambda i: _better_first(stats[i].median, higher_is_better)
    )
    best = ranking[0]
    label = format_config(keys[best])
    ci = stats[best]
    ci_text = (
        f" (CI {format_value(ci.ci_low)}–{format_value(ci.ci_high)}, "
        f"{100 * (ci.ci_confidence or 0):.0f}%)"
        if ci.ci_low is not None and ci.ci_high is not None
        else ""
    )
    head = f"best: {label} at {format_value(ci.median)} {unit}{ci_text}"
    # Every configuration the best does not significantly beat: "any of these" is the
    # honest answer when the top of the table is within the noise.
    tied = tuple(
        format_config(keys[j])
        for j in ranking[1:]
        if not _beats(samples[best], samples[j], higher_is_better=higher_is_better, alpha=alpha)
    )
    if len(ranking) == 1:
        return BestConfig(
            index=best,
            config=keys[best],
            label=label,
            stats=ci,
            runner_up_index=None,
            runner_up_label=None,
            vs_runner_up=None,
            significantly_better=False,
            tied_with=(),
            sentence=f"{head}; the only configuration",
        )
    runner = ranking[1]
    runner_label = format_config(keys[runner])
    vs = compare(samples[runner], samples[best], higher_is_better=higher_is_better, alpha=alpha)
    better = vs.verdict == "-"
    against = f"the runner-up {runner_label}"
    detail = f"({format_change(vs.change)}, {format_p(vs.mannwhitney_p)})"
    if better:
        sentence = f"{head}; significantly better than {against} {detail}"
    else:
        sentence = f"{head}; not significantly better than {against} {detail}: treat them as tied"
    return BestConfig(
        index=best,
        config=keys[best],
        label=label,
        stats=ci,
        runner_up_index=runner,
        runner_up_label=runner_label,
        vs_runner_up=vs,
        significantly_better=better,
        tied_with=tied,
        sentence=sentence,
    )


def _knees(
    keys: list[ConfigKey],
    samples: Sequence[Sequence[float]],
    stats: list[Stats],
    *,
    higher_is_better: bool,
    alpha: float,
) -> tuple[Knee, ...]:
    dimensions = [name for name, _ in keys[0]]
    if BATCH_DIMENSION not in dimensions:
        return ()
    groups: dict[ConfigKey, list[int]] = {}
    for i, key in enumerate(keys):
        group = tuple((k, v) for k, v in key if k != BATCH_DIMENSION)
        groups.setdefault(group, []).append(i)
    knees: list[Knee] = []
    for group, members in groups.items():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda i: float(dict(keys[i])[BATCH_DIMENSION]))
        sizes = tuple(dict(keys[i])[BATCH_DIMENSION] for i in members)
        best = min(members, key=lambda i: _better_first(stats[i].median, higher_is_better))
        best_size = dict(keys[best])[BATCH_DIMENSION]
        group_label = format_config(group)
        suffix = f" ({group_label})" if group_label else ""
        bound = stats[best].ci_low if higher_is_better else stats[best].ci_high
        if bound is None:
            knees.append(
                Knee(
                    group=group,
                    group_label=group_label,
                    batch_sizes=sizes,
                    best_batch_size=best_size,
                    knee_batch_size=None,
                    within_noise=(),
                    kind="undetermined",
                    sentence=f"knee undetermined{suffix}: the best batch size has one run",
                )
            )
            continue
        within: list[ConfigValue] = []
        for i in members:
            in_ci = stats[i].median >= bound if higher_is_better else stats[i].median <= bound
            beaten = _beats(
                samples[best], samples[i], higher_is_better=higher_is_better, alpha=alpha
            )
            if i == best or (in_ci and not beaten):
                within.append(dict(keys[i])[BATCH_DIMENSION])
        knee = within[0]
        if len(sizes) > 1 and knee == sizes[-1]:
            kind = "still_rising"
            sentence = (
                f"no knee{suffix}: still improving at the largest batch size "
                f"{_show_value(knee)}; extend the range"
            )
        elif knee == sizes[0]:
            kind = "flat"
            sentence = (
                f"no measurable effect of batch size{suffix}: "
                f"{_show_value(sizes[0])}–{_show_value(sizes[-1])} are within the noise of "
                f"the best ({_show_value(best_size)})"
            )
        else:
            kind = "knee"
            sentence = f"diminishing returns beyond {_show_value(knee)}{suffix}"
        knees.append(
            Knee(
                group=group,
                group_label=group_label,
                batch_sizes=sizes,
                best_batch_size=best_size,
                knee_batch_size=knee,
                within_noise=tuple(within),
                kind=kind,
                sentence=sentence,
            )
        )
    return tuple(knees)


def summarize_sweep(
    results: Sequence[tuple[Mapping[str, ConfigValue], Sequence[float]]],
    *,
    baseline: str | Mapping[str, str] | None = None,
    higher_is_better: bool = True,
    alpha: float = ALPHA,
    unit: str = "rec/min",
    probes: Sequence[Sequence[float] | None] | None = None,
    rounds: Sequence[Sequence[int]] | None = None,
    noise_band: float = NOISE_BAND,
    design: SweepDesign | None = None,
) -> SweepSummary:
    """Summarise a sweep: ``results`` is ``[(config, samples_in_run_order), …]`` in grid
    order. ``baseline`` is a ``--baseline`` string, an already parsed spec, or None for the
    first grid point. ``probes``, per configuration and in the same order as its samples,
    are the runs' read+map CPU seconds (None where a run has none): with them each row
    says how much of its spread the machine's speed explains.

    ``rounds`` — per configuration, the round number of each sample — switches every
    comparison to the paired analysis of :mod:`reports.paired` (within-round ratios,
    Wilcoxon signed-rank, exact intervals, the ``noise_band``, Holm); without it the samples
    are compared as independent (Mann-Whitney U), as for result files without rounds.
    ``design`` says how the sweep was run (racing, stop reason, disturbed runs).

    Raises :class:`BaselineError` for a baseline that names no single configuration and
    ValueError for inconsistent input."""
    keys = _keys(results)
    configs = [dict(key) for key in keys]
    samples = [list(values) for _, values in results]
    dimensions = tuple(name for name, _ in keys[0])
    if baseline is None:
        base = 0
    else:
        spec = parse_baseline(baseline, dimensions) if isinstance(baseline, str) else baseline
        base = resolve_baseline(spec, configs)
    stats = [describe(values) for values in samples]
    machines = machine_noises(list(zip(samples, probes or [None] * len(samples),
                                       strict=True)), higher_is_better=higher_is_better)
    if rounds is not None:
        return _summarize_paired(keys, samples, rounds, stats, machines, base,
                                 higher_is_better=higher_is_better, alpha=alpha, unit=unit,
                                 noise_band=noise_band, design=design)

    rows: list[ConfigRow] = []
    by_text: dict[str, list[str]] = {}  # one line per distinct warning, not one per row
    for i, key in enumerate(keys):
        trend = drift(samples[i], alpha=alpha)
        found = tuple(instability_warnings(stats[i], trend, machine=machines[i]))
        label = format_config(key)
        for text in found:
            by_text.setdefault(text, []).append(label)
        if i == base:
            vs, text = None, "baseline"
        else:
            vs = compare(samples[base], samples[i], higher_is_better=higher_is_better, alpha=alpha)
            text = _comparison_text(vs, _diff_label(key, keys[base]))
        rows.append(ConfigRow(key, label, stats[i], trend, found, i == base, vs, text,
                              machines[i]))

    warnings = [
        f"all configurations: {text}"
        if len(labels) == len(rows) and len(rows) > 1
        else f"{'; '.join(labels)}: {text}" if any(labels)
        else text  # (one configuration with no dimensions: nothing to name)
        for text, labels in by_text.items()
    ]
    fewest = min(s.n for s in stats)
    smallest_p = min_p_value(fewest, fewest)
    if len(keys) > 1 and (smallest_p is None or smallest_p >= alpha):
        needed = next(n for n in range(2, 100) if 2.0 / math.comb(2 * n, n) < alpha)
        warnings.insert(
            0,
            f"with {fewest} run(s) per configuration no difference can be significant at "
            f"alpha={alpha:g} (smallest attainable p={smallest_p or 1.0:.3f}); "
            f"repeat each configuration at least {needed} times",
        )
    best = _best(keys, samples, stats, higher_is_better=higher_is_better, alpha=alpha, unit=unit)
    knees = _knees(keys, samples, stats, higher_is_better=higher_is_better, alpha=alpha)

    def against_best(i: int) -> Comparison:
        return compare(samples[best.index], samples[i], higher_is_better=higher_is_better,
                       alpha=alpha, change_ci=False)

    recommendation = _recommendation(keys, best, knees, against_best)
    lines = [recommendation, _ties_line(keys, best, {}, unit), _unpaired_noise_line(stats)]
    return SweepSummary(
        dimensions=dimensions,
        unit=unit,
        higher_is_better=higher_is_better,
        alpha=alpha,
        rows=tuple(rows),
        baseline_index=base,
        best=best,
        knees=knees,
        warnings=tuple(warnings),
        recommendation=recommendation,
        lines=tuple(line for line in lines if line),
        design=design,
    )


# --------------------------------------------------------------------------- paired


def _summarize_paired(
    keys: list[ConfigKey],
    samples: list[list[float]],
    rounds: Sequence[Sequence[int]],
    stats: list[Stats],
    machines: Sequence[MachineNoise | None],
    base: int,
    *,
    higher_is_better: bool,
    alpha: float,
    unit: str,
    noise_band: float,
    design: SweepDesign | None,
) -> SweepSummary:
    """:func:`summarize_sweep` on runs paired within rounds (see :mod:`reports.paired`)."""
    table = RoundsTable.from_samples(samples, rounds)
    labels = [format_config(k) for k in keys]
    kw: dict[str, Any] = {"higher_is_better": higher_is_better, "alpha": alpha,
                          "noise_band": noise_band}
    fit = table.fit()
    ranking = sorted(range(len(keys)),
                     key=lambda i: -fit.levels[i] if higher_is_better else fit.levels[i])
    best_i = ranking[0]
    others = [i for i in range(len(keys)) if i != best_i]
    # The best against each other configuration: b = the best, so "better" means the best wins.
    vs_others = dict(zip(others, paired_family(table, [(i, best_i) for i in others], **kw),
                         strict=True))
    # Each configuration against the baseline (b = the configuration).
    against = [i for i in range(len(keys)) if i != base]
    vs_base = dict(zip(against, paired_family(table, [(base, i) for i in against], **kw),
                       strict=True))
    # Each configuration against the best, unadjusted: the "vs best" column.
    vs_best = {i: compare_in_rounds(table, best_i, i, **kw) for i in others}
    eliminated = dict(design.eliminated) if design is not None else {}

    rows: list[ConfigRow] = []
    for i, key in enumerate(keys):
        trend = drift(samples[i], alpha=alpha)
        if i == base:
            vs: PairedComparison | None = None
            text = "baseline"
        else:
            vs = vs_base[i]
            text = _paired_text(vs, _diff_label(key, keys[base]), noise_band)
        mine = vs_best.get(i)
        best_text = "best" if i == best_i else _paired_text(mine, "", noise_band, short=True)
        rows.append(ConfigRow(key, labels[i], stats[i], trend, (), i == base, vs, text,
                              machines[i], rounds=table.rounds_of(i), vs_best=mine,
                              vs_best_text=best_text, eliminated_at=eliminated.get(i)))

    best = _paired_best(keys, stats, ranking, vs_others, unit=unit, noise_band=noise_band)
    knees = _paired_knees(keys, table, fit.levels, higher_is_better=higher_is_better,
                          alpha=alpha, noise_band=noise_band)
    effects = dimension_effects(table, [dict(k) for k in keys], alpha=alpha)
    reference = (ranking[1], best_i) if len(ranking) > 1 else None
    shift = level_shift_of(table, fit, reference, labels, alpha=alpha)
    leaders = table.rounds_of(best_i)
    log_sd = None if fit.residual_sd is None else math.sqrt(2.0) * fit.residual_sd
    cvs = [s.cv for s in stats if s.cv is not None]
    noise = NoiseSummary(paired_noise=fit.residual_sd, raw_cv_min=min(cvs) if cvs else None,
                         raw_cv_max=max(cvs) if cvs else None,
                         mde=mde(log_sd, leaders, noise_band=noise_band, alpha=alpha),
                         mde_rounds=leaders, level_shift=shift)

    def against_best(i: int) -> PairedComparison | None:
        return vs_best.get(i)

    recommendation = _recommendation(keys, best, knees, against_best)
    lines = [recommendation, _ties_line(keys, best, vs_others, unit, noise_band),
             _noise_line(noise, design, noise_band), _stop_line(keys, design, table)]
    warnings: list[str] = []
    fewest = min(table.rounds_of(i) for i in range(len(keys)))
    smallest_p = signed_rank_min_p(fewest)
    if len(keys) > 1 and (smallest_p is None or smallest_p >= alpha):
        needed = next(n for n in range(2, 64) if (signed_rank_min_p(n) or 1.0) < alpha)
        warnings.append(f"with {fewest} round(s) no difference can be significant at "
                        f"alpha={alpha:g} (the paired test's smallest attainable p is "
                        f"{smallest_p or 1.0:.3f}); run at least {needed} rounds")
    if shift is not None and shift.significant:
        warnings.append(_shift_text(shift))
    return SweepSummary(
        dimensions=tuple(name for name, _ in keys[0]),
        unit=unit,
        higher_is_better=higher_is_better,
        alpha=alpha,
        rows=tuple(rows),
        baseline_index=base,
        best=best,
        knees=knees,
        warnings=tuple(warnings),
        paired=True,
        noise_band=noise_band,
        recommendation=recommendation,
        lines=tuple(line for line in lines if line),
        noise=noise,
        effects=effects,
        design=design,
    )


def _band(noise_band: float) -> str:
    return f"±{100 * noise_band:g}%"


def _interval(cmp: PairedComparison) -> str:
    if cmp.change_ci_low is None or cmp.change_ci_high is None:
        return "no interval"
    return f"CI {format_change(cmp.change_ci_low)} to {format_change(cmp.change_ci_high)}"


def _paired_text(cmp: PairedComparison | None, against: str, noise_band: float,
                 short: bool = False) -> str:
    """``+37% vs batch_size=50 (CI +31% to +42%, p<0.001)``, or the same said to be
    equivalent within the band, or not separable; ``short`` leaves out "vs …"."""
    if cmp is None:
        return "no common round"
    head = format_change(cmp.change) + ("" if short else f" vs {against}")
    if cmp.significant:
        return f"{head} ({_interval(cmp)}, {format_p(cmp.p_adjusted)})"
    if cmp.equivalent:
        return f"{head} (equivalent within {_band(noise_band)}, {_interval(cmp)})"
    return f"{head} (not separable: {_interval(cmp)})"


def _paired_best(keys: list[ConfigKey], stats: list[Stats], ranking: list[int],
                 vs_others: Mapping[int, PairedComparison | None], *, unit: str,
                 noise_band: float) -> BestConfig:
    best = ranking[0]
    label = format_config(keys[best])
    head = f"best: {label} at {format_value(stats[best].median)} {unit} (median)"
    if len(ranking) == 1:
        return BestConfig(best, keys[best], label, stats[best], None, None, None, False, (),
                          f"{head}; the only configuration")
    runner = ranking[1]
    runner_label = format_config(keys[runner])
    vs = vs_others.get(runner)
    tied = tuple(format_config(keys[j]) for j in ranking[1:]
                 if (c := vs_others.get(j)) is None or c.outcome != "better")
    equivalent = tuple(format_config(keys[j]) for j in ranking[1:]
                       if (c := vs_others.get(j)) is not None and c.equivalent)
    better = vs is not None and vs.outcome == "better"
    if vs is None:
        sentence = f"{head}; never ran in the same round as the runner-up {runner_label}"
    elif better:
        sentence = (f"{head}; significantly better than the runner-up {runner_label} "
                    f"({format_change(vs.change)}, {_interval(vs)}, "
                    f"{format_p(vs.p_adjusted)})")
    elif vs.equivalent:
        sentence = (f"{head}; equivalent to the runner-up {runner_label} within "
                    f"{_band(noise_band)} ({format_change(vs.change)}, {_interval(vs)})")
    else:
        sentence = (f"{head}; not separable from the runner-up {runner_label} "
                    f"({format_change(vs.change)}, {_interval(vs)}): treat them as tied")
    return BestConfig(best, keys[best], label, stats[best], runner, runner_label, vs, better,
                      tied, sentence, equivalent)


def _paired_knees(keys: list[ConfigKey], table: RoundsTable, levels: Any, *,
                  higher_is_better: bool, alpha: float, noise_band: float) -> tuple[Knee, ...]:
    """The knee of each batch-size curve, paired: the smallest batch size whose interval
    against the group's best lies above ``-noise_band`` (at most the band worse: proven
    non-inferior). Sizes neither proven within the band nor significantly worse are
    "undecided" and named."""
    dimensions = [name for name, _ in keys[0]]
    if BATCH_DIMENSION not in dimensions:
        return ()
    groups: dict[ConfigKey, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(tuple((k, v) for k, v in key if k != BATCH_DIMENSION), []).append(i)
    knees: list[Knee] = []
    for group, members in groups.items():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda i: float(dict(keys[i])[BATCH_DIMENSION]))
        sizes = tuple(dict(keys[i])[BATCH_DIMENSION] for i in members)
        best = max(members, key=lambda i: levels[i] if higher_is_better else -levels[i])
        best_size = dict(keys[best])[BATCH_DIMENSION]
        group_label = format_config(group)
        suffix = f" ({group_label})" if group_label else ""
        others = [i for i in members if i != best]
        found = paired_family(table, [(best, i) for i in others],
                              higher_is_better=higher_is_better, alpha=alpha,
                              noise_band=noise_band)
        cmp = dict(zip(others, found, strict=True))
        within: list[ConfigValue] = []
        undecided: list[ConfigValue] = []
        for i in members:
            size = dict(keys[i])[BATCH_DIMENSION]
            c = cmp.get(i)
            if i == best:
                within.append(size)
            elif c is None or c.change_ci_low is None or c.change_ci_high is None:
                undecided.append(size)
            elif _non_inferior(c, noise_band):
                within.append(size)
            elif c.outcome != "worse":
                undecided.append(size)
        if len(within) == 1 and undecided and len(undecided) == len(others):
            knees.append(Knee(group, group_label, sizes, best_size, None, (), "undetermined",
                              f"knee undetermined{suffix}: no batch size is proven within "
                              f"{_band(noise_band)} of the best ({_show_value(best_size)}) "
                              "or worse than it yet; more rounds would tell",
                              tuple(undecided)))
            continue
        knee = within[0]
        knee_index = members[sizes.index(knee)]
        change = None if knee_index == best else cmp[knee_index].change  # type: ignore[union-attr]
        open_below = [u for u in undecided if float(u) < float(knee)]
        note = (f"; {', '.join(_show_value(u) for u in open_below)} undecided"
                if open_below else "")
        if knee == sizes[-1]:
            kind = "still_rising"
            sentence = (f"no knee{suffix}: still improving at the largest batch size "
                        f"{_show_value(knee)}; extend the range{note}")
        elif knee == sizes[0]:
            kind = "flat"
            sentence = (f"no measurable effect of batch size{suffix}: "
                        f"{_show_value(sizes[0])}–{_show_value(sizes[-1])} are within "
                        f"{_band(noise_band)} of the best ({_show_value(best_size)})")
        else:
            kind = "knee"
            sentence = f"diminishing returns beyond {_show_value(knee)}{suffix}{note}"
        knees.append(Knee(group, group_label, sizes, best_size, knee, tuple(within), kind,
                          sentence, tuple(undecided), change))
    return tuple(knees)


def _non_inferior(cmp: PairedComparison, noise_band: float) -> bool:
    """At most ``noise_band`` worse than the reference, with the interval's confidence."""
    if cmp.change_ci_low is None or cmp.change_ci_high is None:
        return False
    if cmp.higher_is_better:
        return cmp.change_ci_low >= -noise_band
    return cmp.change_ci_high <= noise_band


# --------------------------------------------------------------------------- headline


def _name(key: ConfigKey) -> str:
    """``batch size 500`` when the sweep has one dimension, else the configuration."""
    if len(key) == 1:
        dim, value = key[0]
        return f"{dim.replace('_', ' ')} {_show_value(value)}"
    return format_config(key)


def _recommendation(keys: list[ConfigKey], best: BestConfig, knees: Sequence[Knee],
                    against_best: Any) -> str:
    """The first line: which configuration to use and what the alternatives cost — the
    knee when there is one ("use batch size 500: within 1.8% of the best (2000); batch size
    50 costs 27%"), else the best."""
    if len(keys) == 1:
        return f"use {_name(keys[0])}: the only configuration measured"
    best_key = keys[best.index]
    group = tuple((k, v) for k, v in best_key if k != BATCH_DIMENSION)
    knee = next((k for k in knees if k.group == group), None)
    pick = best.index
    if knee is not None and knee.knee_batch_size is not None and knee.kind in ("knee", "flat"):
        pick = next(i for i, key in enumerate(keys)
                    if tuple((k, v) for k, v in key if k != BATCH_DIMENSION) == group
                    and dict(key)[BATCH_DIMENSION] == knee.knee_batch_size)
    cost = _cost_clause(keys, best, against_best)
    if pick != best.index:
        change = _change_of(against_best(pick))
        within = "within the noise" if change is None else f"within {abs(100 * change):.1f}%"
        text = (f"use {_name(keys[pick])}: {within} of the best "
                f"({_short_diff(keys[best.index], keys[pick])})")
    elif best.significantly_better and best.runner_up_index is not None:
        change = _change_of(best.vs_runner_up)
        faster = "" if change is None else f"{format_change(change).lstrip('+')} "
        word = "better" if change is None else ("faster" if change > 0 else "slower")
        text = (f"use {_name(best_key)}: {faster}{word} than the runner-up "
                f"({_short_diff(keys[best.runner_up_index], best_key)})")
    elif best.runner_up_index is not None:
        tied = best.equivalent_to or best.tied_with
        how = "equivalent within the noise band" if best.equivalent_to else "not separable"
        text = (f"use {_name(best_key)} (the best measured; {how}: "
                f"{', '.join(tied[:3])}{' …' if len(tied) > 3 else ''})")
    else:
        text = f"use {_name(best_key)}"
    return text + cost


def _change_of(cmp: Any) -> float | None:
    change = getattr(cmp, "change", None)
    return change if isinstance(change, float) else None


def _short_diff(reference: ConfigKey, key: ConfigKey) -> str:
    """What tells ``reference`` apart from ``key``, as values: "2000"."""
    differing = [(k, v) for (k, v), (_, mine) in zip(reference, key, strict=True) if v != mine]
    if len(differing) == 1 and len(reference) == 1:
        return _show_value(differing[0][1])
    return format_config(tuple(differing) or reference)


def _cost_clause(keys: list[ConfigKey], best: BestConfig, against_best: Any) -> str:
    """"; batch size 50 costs 27%": the worst configuration that is significantly worse than
    the best, and by how much."""
    worst: tuple[float, int] | None = None
    for i in range(len(keys)):
        if i == best.index:
            continue
        cmp = against_best(i)
        change = _change_of(cmp)
        if cmp is None or change is None or not getattr(cmp, "significant", False):
            continue
        loss = -change if getattr(cmp, "higher_is_better", True) else change
        if worst is None or loss > worst[0]:
            worst = (loss, i)
    if worst is None or worst[0] <= 0:
        return ""
    return f"; {_name(keys[worst[1]])} costs {100 * worst[0]:.0f}%"


def _ties_line(keys: list[ConfigKey], best: BestConfig,
               vs_others: Mapping[int, PairedComparison | None], unit: str,
               noise_band: float = NOISE_BAND) -> str:
    """The second line: the best and what it does or does not beat."""
    head = f"best: {best.label or 'the only configuration'} " \
           f"({format_value(best.stats.median)} {unit} median)"
    if len(keys) == 1:
        return head
    if not vs_others:  # unpaired
        if best.tied_with:
            return f"{head}; not significantly better than: {', '.join(best.tied_with)}"
        return f"{head}; significantly better than every other configuration"
    equivalent = f"equivalent within {_band(noise_band)}"
    groups: dict[str, list[str]] = {equivalent: [], "not separable": [],
                                    "significantly worse": []}
    for i, cmp in vs_others.items():
        if cmp is None:
            continue
        name = format_config(keys[i])
        if cmp.outcome == "better":
            groups["significantly worse"].append(name)
        elif cmp.equivalent:
            groups[equivalent].append(name)
        else:
            groups["not separable"].append(name)
    parts = [f"{what}: {', '.join(names)}" for what, names in groups.items() if names]
    return f"{head}; " + "; ".join(parts) if parts else head


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _shift_text(shift: LevelShift) -> str:
    text = (f"the host changed speed at round {shift.round + 1} of {shift.rounds}: runs "
            f"after it are {format_change(shift.change)} "
            f"{'faster' if shift.change > 0 else 'slower'} (p={shift.p_value:.3f})")
    if shift.paired_before is not None and shift.paired_after is not None:
        text += (f"; the paired change of {shift.paired_label} is "
                 f"{format_change(shift.paired_before)} before and "
                 f"{format_change(shift.paired_after)} after{_shift_verdict(shift)}")
    return text


def _shift_verdict(shift: LevelShift) -> str:
    """What the paired change on both sides of a level shift says."""
    if shift.paired_consistent is None:
        return ""
    if shift.paired_consistent:
        return ", so the within-round ratios are unaffected"
    return (f": the difference itself changed with the host's state ({format_p(shift.paired_p)})"
            "; the result holds for the mix of conditions measured")


def _noise_line(noise: NoiseSummary, design: SweepDesign | None, noise_band: float) -> str:
    """The one consolidated noise line, instead of a warning per configuration."""
    parts = [f"noise: {_pct(noise.paired_noise)} per run once runs are paired within rounds"
             + (f" (raw CV {_pct(noise.raw_cv_min)}–{_pct(noise.raw_cv_max)}, mostly the "
                "host's drift, which pairing cancels)"
                if noise.raw_cv_min is not None and noise.paired_noise is not None
                and noise.raw_cv_min > 1.5 * noise.paired_noise else
                f" (raw CV {_pct(noise.raw_cv_min)}–{_pct(noise.raw_cv_max)})"
                if noise.raw_cv_max is not None else "")]
    shift = noise.level_shift
    if shift is not None and shift.significant:
        parts.append(f"level shift at round {shift.round + 1}: "
                     f"{format_change(shift.change)}"
                     + (f", paired change {format_change(shift.paired_before)} before / "
                        f"{format_change(shift.paired_after)} after"
                        + {True: " (unaffected)", False: " (changed with the host's state)",
                           None: ""}[shift.paired_consistent]
                        if shift.paired_before is not None and shift.paired_after is not None
                        else ""))
    if design is not None and design.disturbed:
        parts.append(f"{design.disturbed} run(s) disturbed by other processes"
                     + (f", {design.reruns} re-run" if design.reruns else ""))
    if noise.mde is not None:
        parts.append(f"smallest detectable difference (MDE, 80% power) {_pct(noise.mde)} at "
                     f"{noise.mde_rounds} rounds and a noise band of {_band(noise_band)}")
    return "; ".join(parts)


def _unpaired_noise_line(stats: Sequence[Stats]) -> str:
    cvs = [s.cv for s in stats if s.cv is not None]
    if not cvs:
        return ""
    return (f"noise: CV {_pct(min(cvs))}–{_pct(max(cvs))} between runs (unpaired analysis: "
            "the runs carry no rounds)")


def _stop_line(keys: list[ConfigKey], design: SweepDesign | None, table: RoundsTable) -> str:
    if design is None:
        return ""
    per = ", ".join(f"{_short_name(k)}: {table.rounds_of(i)}" for i, k in enumerate(keys))
    if design.mode != "budget":
        return f"fixed design: {design.rounds} rounds (rounds per configuration: {per})"
    spent = "" if design.spent_s is None else f", {_duration(design.spent_s)}"
    budget = "" if design.budget_s is None else f" of a {_duration(design.budget_s)} budget"
    why = design.stop_text or design.stop_reason or "stopped"
    return (f"stopped after {design.rounds} rounds{spent}{budget}: {why}; rounds per "
            f"configuration: {per}")


def _short_name(key: ConfigKey) -> str:
    return _show_value(key[0][1]) if len(key) == 1 else format_config(key)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, rest = divmod(int(seconds), 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
