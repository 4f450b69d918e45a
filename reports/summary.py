"""The sweep summary: table rows, the best configuration, the knee, the change vs a baseline.

Input is what a sweep measured: for each configuration (a mapping of dimension → value,
e.g. ``{"batch_size": 1000, "workers": 4, "pooling": "off"}``) its throughput samples in
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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.stats import (
    ALPHA,
    Comparison,
    Drift,
    MachineNoise,
    Stats,
    compare,
    describe,
    drift,
    instability_warnings,
    machine_noises,
    min_p_value,
)

__all__ = [
    "BATCH_DIMENSION",
    "BaselineError",
    "BestConfig",
    "ConfigRow",
    "ConfigValue",
    "Knee",
    "SweepSummary",
    "format_change",
    "format_config",
    "format_p",
    "parse_baseline",
    "resolve_baseline",
    "summarize_sweep",
]

ConfigValue = int | float | str | bool
#: A configuration as stored: (dimension, value) pairs in dimension order — hashable and
#: ordered, unlike a dict; ``dict(config)`` gives the mapping back.
ConfigKey = tuple[tuple[str, ConfigValue], ...]

BATCH_DIMENSION = "batch_size"

#: Spellings users type for a dimension, normalised after lower-casing and '-' → '_'.
DIMENSION_ALIASES = {
    "batch": BATCH_DIMENSION,
    "batches": BATCH_DIMENSION,
    "batch_sizes": BATCH_DIMENSION,
    "worker": "workers",
}


class BaselineError(ValueError):
    """A ``--baseline`` value that names no single configuration; message is user-facing."""


# --------------------------------------------------------------------------- formatting


def format_config(config: Mapping[str, ConfigValue] | ConfigKey) -> str:
    """``batch_size=1000, workers=4`` — the label used in tables and sentences."""
    pairs = config.items() if isinstance(config, Mapping) else config
    return ", ".join(f"{key}={_show_value(value)}" for key, value in pairs)


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


def _normalise_dimension(key: str) -> str:
    key = key.strip().lower().replace("-", "_")
    return DIMENSION_ALIASES.get(key, key)


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
        name = _normalise_dimension(key)
        if known is not None and name not in known:
            raise BaselineError(
                f"--baseline: unknown dimension {key.strip()!r}; "
                f"dimensions of this sweep: {', '.join(known)}"
            )
        if name in spec:
            raise BaselineError(f"--baseline: dimension {name!r} given twice")
        spec[name] = value.strip()
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
    vs_baseline: Comparison | None
    vs_baseline_text: str
    machine: MachineNoise | None = None  # the host's share of the spread, when probed

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
    vs_runner_up: Comparison | None
    significantly_better: bool
    tied_with: tuple[str, ...]
    sentence: str

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": dict(self.group),
            "group_label": self.group_label,
            "batch_sizes": list(self.batch_sizes),
            "best_batch_size": self.best_batch_size,
            "knee_batch_size": self.knee_batch_size,
            "within_noise": list(self.within_noise),
            "kind": self.kind,
            "sentence": self.sentence,
        }


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

    @property
    def baseline(self) -> ConfigRow:
        return self.rows[self.baseline_index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimensions": list(self.dimensions),
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "alpha": self.alpha,
            "rows": [row.to_dict() for row in self.rows],
            "baseline_index": self.baseline_index,
            "baseline_label": self.baseline.label,
            "best": self.best.to_dict(),
            "knees": [knee.to_dict() for knee in self.knees],
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
) -> SweepSummary:
    """Summarise a sweep: ``results`` is ``[(config, samples_in_run_order), …]`` in grid
    order. ``baseline`` is a ``--baseline`` string, an already parsed spec, or None for the
    first grid point. ``probes``, per configuration and in the same order as its samples,
    are the runs' read+map CPU seconds (None where a run has none): with them each row
    says how much of its spread the machine's speed explains. Raises
    :class:`BaselineError` for a baseline that names no single configuration and
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
        else f"{'; '.join(labels)}: {text}"
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
    return SweepSummary(
        dimensions=dimensions,
        unit=unit,
        higher_is_better=higher_is_better,
        alpha=alpha,
        rows=tuple(rows),
        baseline_index=base,
        best=_best(keys, samples, stats, higher_is_better=higher_is_better, alpha=alpha, unit=unit),
        knees=_knees(keys, samples, stats, higher_is_better=higher_is_better, alpha=alpha),
        warnings=tuple(warnings),
    )


def bottleneck_of(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bottleneck verdict of a run, when the samplers produced one (any of the shapes
    a result document may carry it in); None otherwise."""
    for key in ("bottleneck", "verdict"):
        value = run.get(key)
        if isinstance(value, dict) and "label" in value:
            return value
    for verdict in run.get("verdicts") or []:
        if not isinstance(verdict, dict):
            continue
        inner = verdict.get("verdict")
        if verdict.get("kind") == "bottleneck" and isinstance(inner, dict) and "label" in inner:
            return inner
        if "label" in verdict and ("confidence" in verdict or
                                   verdict.get("kind") == "bottleneck"):
            return verdict
    return None
