"""Statistics for benchmark samples: description, comparison, drift and instability.

Pure functions over lists of numbers (no I/O), built on scipy so no distribution is
hand-written. Every result is a frozen dataclass whose ``to_dict()`` is JSON-safe: a
quantity that cannot be computed (a spread from one run, a p-value from constant data) is
``None``, never NaN, because NaN is not valid JSON and silently poisons later arithmetic.

Choices, and why:

* **Confidence interval of the median: exact order-statistic (binomial) interval.** The
  number of samples below the true median is Binomial(n, 1/2), so ``[x_(j), x_(n+1-j)]``
  covers the median with probability ``1 - 2·B(j-1; n, 1/2)``, whatever the distribution
  of run times. It is distribution-free (benchmark timings are skewed: background noise
  only ever slows a run down), deterministic (no RNG seed to carry around) and
  conservative at the small n a sweep can afford, where a bootstrap of the median
  under-covers badly. Below n = 6 no pair of order statistics reaches 95%; we then report
  ``[min, max]`` with its true confidence (n=5: 93.8%, n=3: 75%) in ``ci_confidence``
  instead of pretending, and :func:`instability_warnings` says so.
* **Significance: Mann-Whitney U, two-sided, decides.** It needs no normality, is robust to
  the odd slow run, and is exact for small samples. Welch's t p-value is reported alongside
  for readers used to it, but never decides. With fewer than 4 runs per side the U test
  cannot reach p < 0.05 at all (3 vs 3: smallest p is 0.1); :class:`Comparison` carries
  ``min_p_value`` so the caller can tell "no difference" from "no power".
* **Outliers: Tukey's fences** (outside ``[Q1 - 1.5·IQR, Q3 + 1.5·IQR]``), the rule a box
  plot draws, so the HTML report and the table agree; skipped below 4 samples.
* **Drift: Kendall's tau of value against run order** (exact p-value for small n, no
  ties in the run index), with a Theil-Sen slope as the size of the trend — both are rank
  based, so one outlier neither creates nor hides a trend.
* **Machine noise: a probe inside every run.** On a shared VM the CPU itself runs faster
  or slower for seconds at a time (here a fixed Python loop varies by 9–21% CV between
  1-second slices, and by 12.5% between 4.5-second ones). Every run carries a probe of
  that: the CPU seconds it spent reading and mapping — the same work for the same input,
  whatever the configuration. :func:`speed_elasticity` fits how strongly the measured
  value follows the probe (a pooled within-configuration regression of log value on log
  probe: −1 for a run that is all client CPU, near 0 for one that waits on a disk), and
  :func:`machine_noise` removes that part of each configuration's spread, so a CV can be
  told apart as the configuration's own or the host's. It is a diagnostic only: medians,
  intervals and significance stay on the raw values, because each configuration's median
  still carries the luck of the machine's speed during its own runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


class _LazyScipyStats:
    """``scipy.stats``, imported on first use: the import costs about a second of CPU,
    which every ``bench`` command (``--help`` included) would otherwise pay."""

    def __getattr__(self, name: str) -> Any:
        from scipy import stats

        return getattr(stats, name)


sps = _LazyScipyStats()

__all__ = [
    "ALPHA",
    "CI_LEVEL",
    "CV_WARN",
    "MIN_REPEATS_FOR_CI",
    "Comparison",
    "Drift",
    "MachineNoise",
    "Stats",
    "compare",
    "describe",
    "drift",
    "instability_warnings",
    "machine_noise",
    "machine_noises",
    "median_ci",
    "min_p_value",
    "repeats_for_cv",
    "repeats_needed",
    "speed_elasticity",
]

#: Significance level for every test in this module.
ALPHA = 0.05
#: Nominal confidence of the median's interval.
CI_LEVEL = 0.95
#: A coefficient of variation above this makes results too noisy to rank configurations.
CV_WARN = 0.10
#: Smallest n for which an order-statistic interval reaches 95% (1 - 2·0.5**6 = 96.9%).
MIN_REPEATS_FOR_CI = 6
#: Relative half-width of the median's CI that :func:`repeats_needed` aims for.
REL_PRECISION = 0.05


def _num(value: float | np.floating[Any] | None) -> float | None:
    """A plain float, or None for NaN/inf/None: the JSON-safe form of a statistic."""
    if value is None:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


_Array = np.ndarray[Any, np.dtype[np.float64]]


def _clean(values: Sequence[float] | _Array) -> _Array:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("need a non-empty sequence of numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError("samples must be finite numbers (a NaN run is a bug upstream)")
    return array


@dataclass(frozen=True)
class Stats:
    """Summary of one configuration's samples (e.g. rec/min), in the units given.

    ``ci_low``/``ci_high`` bound the median with confidence ``ci_confidence`` (≥ 0.95 from
    n = 6; lower, and stated, below that; None for n = 1). ``outlier_indices`` are
    positions in the input (run) order, so a reader can find the run that misbehaved.
    """

    n: int
    median: float
    mean: float
    stdev: float | None
    cv: float | None
    min: float
    max: float
    ci_low: float | None
    ci_high: float | None
    ci_confidence: float | None
    outlier_indices: tuple[int, ...]
    outlier_values: tuple[float, ...]
    ci_method: str = "order-statistic (binomial, distribution-free)"
    outlier_method: str = "Tukey fences (1.5 IQR)"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outlier_indices"] = list(self.outlier_indices)
        data["outlier_values"] = list(self.outlier_values)
        return data


@dataclass(frozen=True)
class Comparison:
    """``b`` against ``a`` (``a`` is the baseline / old side).

    ``change`` is ``median(b) / median(a) - 1`` (None when median(a) is 0). ``verdict`` is
    asv's marker from the user's point of view: ``'+'`` worse, ``'-'`` better, ``'~'`` not
    significant. ``significant`` is decided by Mann-Whitney U alone; ``min_p_value`` is the
    smallest p the U test can give at these sample sizes — when it is ≥ ``alpha`` no
    difference could have been called, however large.
    """

    n_a: int
    n_b: int
    median_a: float
    median_b: float
    change: float | None
    change_ci_low: float | None
    change_ci_high: float | None
    mannwhitney_p: float | None
    welch_p: float | None
    min_p_value: float | None
    alpha: float
    significant: bool
    higher_is_better: bool
    verdict: str

    @property
    def underpowered(self) -> bool:
        """True when these sample sizes cannot produce p < alpha at all."""
        return self.min_p_value is None or self.min_p_value >= self.alpha

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["underpowered"] = self.underpowered
        return data


@dataclass(frozen=True)
class Drift:
    """A monotone trend of the samples across run order (warm-up, throttling, a growing
    database, a neighbour starting a backup). ``slope_pct`` is the Theil-Sen slope per run
    as a percentage of the median; ``total_pct`` is that slope over the whole series."""

    n: int
    tau: float | None
    p_value: float | None
    slope_pct: float | None
    total_pct: float | None
    significant: bool
    method: str = "Kendall tau vs run order; Theil-Sen slope"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci(
    values: Sequence[float] | _Array, level: float = CI_LEVEL
) -> tuple[float | None, float | None, float | None]:
    """Order-statistic CI of the median: ``(low, high, achieved_confidence)``.

    Picks the narrowest symmetric pair ``x_(j), x_(n+1-j)`` whose binomial coverage is at
    least ``level``; when even ``[min, max]`` falls short (n < 6 at 95%), returns
    ``[min, max]`` and its real, lower confidence. ``(None, None, None)`` for n = 1.
    """
    ordered = np.sort(_clean(values))
    n = ordered.size
    if n < 2:
        return None, None, None
    tail = (1.0 - level) / 2.0
    # Largest j with P(Binom(n, 1/2) <= j-1) <= tail; binom.ppf gives the smallest k with
    # cdf(k) >= tail, so j is k, or k+1 when cdf(k) hits tail exactly.
    k = int(sps.binom.ppf(tail, n, 0.5))
    j = k + 1 if sps.binom.cdf(k, n, 0.5) <= tail else k
    j = max(j, 1)
    confidence = 1.0 - 2.0 * float(sps.binom.cdf(j - 1, n, 0.5))
    return float(ordered[j - 1]), float(ordered[n - j]), confidence


def _tukey_outliers(array: _Array) -> tuple[int, ...]:
    if array.size < 4:
        return ()
    q1, q3 = np.percentile(array, [25, 75])
    spread = 1.5 * float(sps.iqr(array))
    low, high = q1 - spread, q3 + spread
    return tuple(int(i) for i in np.flatnonzero((array < low) | (array > high)))


def describe(values: Sequence[float]) -> Stats:
    """Median, mean, spread, the median's CI and outliers of one configuration's samples."""
    array = _clean(values)
    n = int(array.size)
    mean = float(np.mean(array))
    stdev = float(np.std(array, ddof=1)) if n >= 2 else None
    cv = stdev / abs(mean) if stdev is not None and mean != 0 else None
    ci_low, ci_high, confidence = median_ci(array)
    outliers = _tukey_outliers(array)
    return Stats(
        n=n,
        median=float(np.median(array)),
        mean=mean,
        stdev=stdev,
        cv=cv,
        min=float(array.min()),
        max=float(array.max()),
        ci_low=ci_low,
        ci_high=ci_high,
        ci_confidence=confidence,
        outlier_indices=outliers,
        outlier_values=tuple(float(array[i]) for i in outliers),
    )


@dataclass(frozen=True)
class MachineNoise:
    """How much of one configuration's run-to-run spread the machine's speed explains.

    ``probe_cv``: CV of the probe (CPU seconds of the same read+map work) across the runs;
    ``elasticity``: the fitted slope of log value on log probe (see
    :func:`speed_elasticity`); ``adjusted_cv``: the CV of the values brought to the
    configuration's median machine speed; ``explained``: the share of the variance that
    adjustment removed (0 when it removed none).
    """

    probe_cv: float | None
    elasticity: float
    adjusted_cv: float | None
    explained: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def speed_elasticity(groups: Sequence[tuple[Sequence[float], Sequence[float]]], *,
                     higher_is_better: bool = True) -> float | None:
    """Slope of log(value) on log(probe), pooled within groups (each group one
    configuration, so differences between configurations do not enter the fit).

    For a rate (higher is better) the slope is negative: a run whose probe took longer ran
    on a slower machine. A slope of the other sign means the probe does not track the
    value, and gives None, as do fewer than 3 usable pairs or a probe that never varied.
    It is clipped to magnitude 1.5 (a run cannot slow down much more than its CPU did)."""
    xs: list[float] = []
    ys: list[float] = []
    for values, probes in groups:
        v, p = np.asarray(values, dtype=float), np.asarray(probes, dtype=float)
        if v.size != p.size or v.size < 2 or np.any(v <= 0) or np.any(p <= 0):
            continue
        lv, lp = np.log(v), np.log(p)
        xs.extend(lp - lp.mean())
        ys.extend(lv - lv.mean())
    x, y = np.asarray(xs), np.asarray(ys)
    if x.size < 3 or not np.any(x != 0):
        return None
    slope = float(np.dot(x, y) / np.dot(x, x))
    if (slope > 0) if higher_is_better else (slope < 0):
        return None
    return max(-1.5, min(1.5, slope))


def machine_noise(values: Sequence[float], probes: Sequence[float],
                  elasticity: float | None) -> MachineNoise | None:
    """``values`` with the machine's speed taken out: each value is brought to the
    configuration's median probe, ``value · (median / probe) ** elasticity``."""
    if elasticity is None:
        return None
    v, p = _clean(values), _clean(probes)
    if v.size != p.size or v.size < 2 or np.any(p <= 0):
        return None
    adjusted = v * (float(np.median(p)) / p) ** elasticity
    raw_var = float(np.var(v, ddof=1))
    adj_var = float(np.var(adjusted, ddof=1))
    return MachineNoise(
        probe_cv=describe(list(p)).cv,
        elasticity=elasticity,
        adjusted_cv=describe(list(adjusted)).cv,
        explained=max(0.0, 1.0 - adj_var / raw_var) if raw_var > 0 else 0.0,
    )


def machine_noises(groups: Sequence[tuple[Sequence[float], Sequence[float] | None]], *,
                   higher_is_better: bool = True) -> list[MachineNoise | None]:
    """:func:`machine_noise` of each ``(values, probes)`` group, with one elasticity fitted
    over every group whose probes cover its values (others get None)."""
    usable = [p is not None and len(p) == len(v) for v, p in groups]
    slope = speed_elasticity([(v, p) for (v, p), ok in zip(groups, usable, strict=True)
                              if ok and p is not None], higher_is_better=higher_is_better)
    return [machine_noise(v, p, slope) if ok and p is not None else None
            for (v, p), ok in zip(groups, usable, strict=True)]


def min_p_value(n_a: int, n_b: int) -> float | None:
    """Smallest two-sided exact Mann-Whitney p for these sizes: 2 / C(n_a + n_b, n_a)."""
    if n_a < 1 or n_b < 1:
        return None
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def _median_ratio(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], axis: int = -1) -> Any:
    return np.median(b, axis=axis) / np.median(a, axis=axis) - 1.0


def _change_ci(a: _Array, b: _Array) -> tuple[float | None, float | None]:
    """Percentile-bootstrap CI of the relative change of medians, fixed seed.

    A bootstrap here (unlike for one median) because no exact interval exists for a ratio
    of two medians; the seed makes reports reproducible byte for byte.
    """
    if a.size < 2 or b.size < 2 or np.median(a) == 0 or np.any(a == 0):
        return None, None
    with warnings.catch_warnings():
        # Constant samples make every resample identical; scipy warns and returns NaN,
        # which we turn into None rather than a test-suite error.
        warnings.simplefilter("ignore")
        result = sps.bootstrap(
            (a, b),
            _median_ratio,
            n_resamples=2000,
            confidence_level=CI_LEVEL,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(20240601),
        )
    low = _num(result.confidence_interval.low)
    high = _num(result.confidence_interval.high)
    if low is None or high is None:
        return None, None
    return low, high


#: Up to this many distinct group assignments the U test's p-value is computed by
#: exhaustive permutation (milliseconds); beyond it scipy's normal approximation is accurate.
_EXACT_PERMUTATIONS = 5000


def _u_method(xa: _Array, xb: _Array) -> str | Any:
    """scipy's "exact" U distribution assumes no ties, and with ties "auto" falls back to
    the normal approximation, which at 5 vs 5 runs is anti-conservative (p=0.004 where
    the exact answer is 0.008). Tied throughputs are common (rounded timings), so small
    tied samples get an exhaustive — hence exact and deterministic — permutation test."""
    has_ties = np.unique(np.concatenate([xa, xb])).size < xa.size + xb.size
    if has_ties and math.comb(xa.size + xb.size, xa.size) <= _EXACT_PERMUTATIONS:
        return sps.PermutationMethod(n_resamples=_EXACT_PERMUTATIONS)
    return "auto"


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    alpha: float = ALPHA,
    change_ci: bool = True,
) -> Comparison:
    """Is ``b`` different from ``a``, by how much, and is that better or worse?

    Throughput (rec/min) wants ``higher_is_better=True``; time per record wants False.
    The direction of a significant result comes from the U statistic itself (does ``b``
    tend to exceed ``a``?), so the marker can never contradict the test that licensed it.
    ``change_ci=False`` skips the bootstrap interval of the change (the slow part) when
    only the verdict is wanted.
    """
    xa, xb = _clean(a), _clean(b)
    median_a, median_b = float(np.median(xa)), float(np.median(xb))
    change = median_b / median_a - 1.0 if median_a != 0 else None

    pooled = np.concatenate([xa, xb])
    b_larger = median_b > median_a
    if np.ptp(pooled) == 0:
        mw_p: float | None = 1.0  # every value identical: no evidence of any difference
    else:
        result = sps.mannwhitneyu(xb, xa, alternative="two-sided", method=_u_method(xa, xb))
        mw_p = _num(result.pvalue)
        b_larger = float(result.statistic) > xa.size * xb.size / 2.0

    welch_p: float | None = None
    if xa.size >= 2 and xb.size >= 2 and (np.ptp(xa) > 0 or np.ptp(xb) > 0):
        welch_p = _num(sps.ttest_ind(xb, xa, equal_var=False).pvalue)

    significant = mw_p is not None and mw_p < alpha
    if not significant:
        verdict = "~"
    else:
        better = b_larger == higher_is_better
        verdict = "-" if better else "+"
    ci_low, ci_high = _change_ci(xa, xb) if change_ci else (None, None)
    return Comparison(
        n_a=int(xa.size),
        n_b=int(xb.size),
        median_a=median_a,
        median_b=median_b,
        change=_num(change),
        change_ci_low=ci_low,
        change_ci_high=ci_high,
        mannwhitney_p=mw_p,
        welch_p=welch_p,
        min_p_value=min_p_value(int(xa.size), int(xb.size)),
        alpha=alpha,
        significant=significant,
        higher_is_better=higher_is_better,
        verdict=verdict,
    )


def drift(values_in_run_order: Sequence[float], *, alpha: float = ALPHA) -> Drift:
    """Test for a monotone trend across run order (needs n ≥ 3; n = 3 can never reach
    p < 0.05, so only from n = 4 can drift actually be flagged)."""
    array = _clean(values_in_run_order)
    n = int(array.size)
    if n < 3 or np.ptp(array) == 0:
        return Drift(n=n, tau=None, p_value=None, slope_pct=None, total_pct=None, significant=False)
    order = np.arange(n, dtype=float)
    tau_result = sps.kendalltau(order, array)
    tau, p_value = _num(tau_result.statistic), _num(tau_result.pvalue)
    slope = float(sps.theilslopes(array, order).slope)
    median = float(np.median(array))
    slope_pct = 100.0 * slope / abs(median) if median != 0 else None
    total_pct = slope_pct * (n - 1) if slope_pct is not None else None
    return Drift(
        n=n,
        tau=tau,
        p_value=p_value,
        slope_pct=_num(slope_pct),
        total_pct=_num(total_pct),
        significant=p_value is not None and p_value < alpha,
    )


def repeats_for_cv(cv: float, rel_precision: float = REL_PRECISION, level: float = CI_LEVEL) -> int:
    """Runs needed for the median's CI half-width to be within ``rel_precision`` of it.

    Uses the large-sample standard error of the median, sqrt(pi/2)·sigma/sqrt(n) for
    roughly normal noise, so ``n = (z · sqrt(pi/2) · cv / rel_precision)²``; never less
    than :data:`MIN_REPEATS_FOR_CI`, below which no 95% interval exists at all. An
    estimate to size the next run, not a guarantee.
    """
    if rel_precision <= 0:
        raise ValueError("rel_precision must be > 0")
    z = float(sps.norm.ppf(0.5 + level / 2.0))
    needed = math.ceil((z * math.sqrt(math.pi / 2.0) * abs(cv) / rel_precision) ** 2)
    return max(needed, MIN_REPEATS_FOR_CI)


def repeats_needed(values: Sequence[float], rel_precision: float = REL_PRECISION) -> int | None:
    """How many repeats the observed noise calls for (see :func:`repeats_for_cv`);
    None when the noise cannot be estimated (fewer than 2 samples, or mean 0)."""
    cv = describe(values).cv
    return None if cv is None else repeats_for_cv(cv, rel_precision)


def _pct(fraction: float) -> str:
    return f"{100.0 * fraction:.1f}%"


def _machine_clause(machine: MachineNoise | None) -> str:
    if machine is None or machine.adjusted_cv is None or machine.probe_cv is None:
        return ""
    probe = (f"the same read+map work took {_pct(machine.probe_cv)} (CV) more or less CPU "
             f"time from run to run")
    if machine.adjusted_cv <= CV_WARN:
        return (f", but the machine's speed explains it: {probe}; adjusted for that the CV "
                f"is {_pct(machine.adjusted_cv)} (the configuration is stable, the host is "
                f"not)")
    return (f"; the machine's speed explains only {_pct(machine.explained)} of the variance "
            f"({probe}; adjusted CV {_pct(machine.adjusted_cv)}): look at the database, "
            f"the disk and other processes")


def instability_warnings(
    stats: Stats, drift: Drift | None = None, *, rel_precision: float = REL_PRECISION,
    machine: MachineNoise | None = None,
) -> list[str]:
    """Human-readable reasons not to trust these numbers yet, each with what to do.
    With ``machine``, a high CV also says how much of it the host's speed explains."""
    found: list[str] = []
    if stats.n == 1:
        found.append(
            "a single run: no spread, confidence interval or significance can be computed; "
            f"use at least {MIN_REPEATS_FOR_CI} repeats"
        )
        return found
    if stats.cv is not None and stats.cv > CV_WARN:
        found.append(
            f"high variation: CV {_pct(stats.cv)} exceeds {_pct(CV_WARN)}"
            f"{_machine_clause(machine)}; about "
            f"{repeats_for_cv(stats.cv, rel_precision)} repeats would bring the median's "
            f"95% CI within ±{_pct(rel_precision)}"
        )
    if stats.ci_confidence is not None and stats.n < MIN_REPEATS_FOR_CI:
        found.append(
            f"too few repeats: with {stats.n} runs the median's interval "
            f"[min, max] has only {_pct(stats.ci_confidence)} confidence; "
            f"{MIN_REPEATS_FOR_CI} repeats are needed for a 95% CI"
        )
    elif stats.cv is not None:
        needed = repeats_for_cv(stats.cv, rel_precision)
        if needed > stats.n and stats.cv <= CV_WARN:
            found.append(
                f"too few repeats for the observed noise (CV {_pct(stats.cv)}): about "
                f"{needed} would bring the median's 95% CI within ±{_pct(rel_precision)}, "
                f"{stats.n} were run"
            )
    if drift is not None and drift.significant:
        size = (
            f" ({drift.slope_pct:+.1f}% per run, {drift.total_pct:+.1f}% overall)"
            if drift.slope_pct is not None and drift.total_pct is not None
            else ""
        )
        found.append(
            f"drift across run order{size}, Kendall tau={drift.tau:.2f}, "
            f"p={drift.p_value:.3f}: look for warm-up, thermal throttling, a growing "
            "database or background load"
        )
    if stats.outlier_indices:
        runs = ", ".join(str(i + 1) for i in stats.outlier_indices)
        found.append(f"outliers (Tukey fences) in run(s) {runs} of this configuration")
    return found
