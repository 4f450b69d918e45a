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
* **Significance of independent samples: Mann-Whitney U, two-sided, decides** (runs that
  carry rounds are compared paired instead: see "Paired analysis of rounds" below). It
  needs no normality, is robust to the odd slow run, and is exact for small samples.
  Welch's t p-value is reported alongside for readers used to it, but never decides.
  With fewer than 4 runs per side the U test cannot reach p < 0.05 at all (3 vs 3:
  smallest p is 0.1); :class:`Comparison` carries ``min_p_value`` so the caller can tell
  "no difference" from "no power".
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

import dataclasses
import functools
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
    "NOISE_BAND",
    "POWER",
    "Comparison",
    "Drift",
    "Friedman",
    "LevelShift",
    "MachineNoise",
    "PairedComparison",
    "RoundFit",
    "SignedRankBatch",
    "Stats",
    "compare",
    "decide",
    "describe",
    "drift",
    "fit_rounds",
    "friedman",
    "holm",
    "holm_family",
    "instability_warnings",
    "level_shift",
    "location_p",
    "machine_noise",
    "machine_noises",
    "mde",
    "median_ci",
    "min_p_value",
    "paired_compare",
    "repeats_for_cv",
    "repeats_needed",
    "rounds_for_mde",
    "signed_rank_batch",
    "signed_rank_min_p",
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


# =============================================================================================
# Paired analysis of rounds
# =============================================================================================
#
# A sweep runs every configuration once per round, in a shuffled order, so two runs of one
# round ran seconds apart on the same host. On a shared machine most of the run-to-run spread
# is the host's speed drifting over seconds to minutes; within one round it has barely moved.
# The ratio of two configurations' throughputs within a round cancels that drift, so the
# analysis works on within-round log-ratios:
#
# * **Test: Wilcoxon signed-rank on the log-ratios**, exact (the null distribution of the
#   rank sum is counted, not approximated) while there are no ties or zero differences.
# * **Interval: the exact distribution-free interval that inverts the same test** — order
#   statistics of the Walsh averages (pairwise means of the log-ratios), centred on their
#   median, the Hodges-Lehmann estimate. For log-ratios that are symmetric about their
#   centre this is the log of the geometric-mean ratio. Test and interval agree by
#   construction: the interval excludes 0 exactly when the test rejects at that level.
# * **Noise band.** A host never repeats itself exactly, so a difference of a percent or two
#   is not worth acting on even when it is "significant". A difference is called only when
#   the interval lies wholly outside ±band (and the test, Holm-corrected, rejects); the pair
#   is "equivalent" when the interval lies wholly inside ±band; anything else is
#   inconclusive, and more rounds would settle it.
# * **Multiple comparisons: Holm's step-down correction** over each family (the best against
#   each other configuration; each configuration against the baseline).
# * **Does a dimension matter at all: Friedman's rank test**, rounds as blocks.
# * **Drift**: one level shift of the round effects (a two-way additive fit of log
#   throughput: configuration + round), located where a two-sample t statistic peaks and
#   tested by permutation of the rounds.

#: Differences smaller than this (±2%) are within what a host's own variation produces.
NOISE_BAND = 0.02
#: Power the minimum detectable effect (MDE) is computed for.
POWER = 0.80
#: Up to this many pairs the signed-rank null distribution is counted exactly.
_EXACT_SIGNED_RANK = 400
#: Permutations of the round order in the level-shift test (fixed seed: reproducible).
_SHIFT_PERMUTATIONS = 999
#: Rows of Walsh averages processed at once (bounds memory for long series).
_WALSH_CHUNK_CELLS = 4_000_000


@functools.lru_cache(maxsize=128)
def _signed_rank_cdf(n: int) -> _Array:
    """``P(T+ <= t)`` for ``t = 0 … n(n+1)/2`` under the null (no ties, no zeros), counted
    by dynamic programming over the ranks; probabilities, so no integer overflow."""
    total = n * (n + 1) // 2
    pmf = np.zeros(total + 1)
    pmf[0] = 1.0
    for k in range(1, n + 1):
        shifted = np.zeros_like(pmf)
        shifted[k:] = pmf[:-k]
        pmf = 0.5 * (pmf + shifted)
    return np.minimum(np.cumsum(pmf), 1.0)


def _critical_count(n: int, alpha: float) -> tuple[int, float]:
    """``(c, confidence)``: the largest ``c`` with ``P(T+ <= c) <= alpha/2`` and the
    achieved two-sided confidence ``1 - 2·P(T+ <= c)``; ``c = -1`` when even the most
    extreme outcome is more likely than that (too few pairs), with the confidence of the
    full range of the Walsh averages."""
    if n > _EXACT_SIGNED_RANK:  # normal approximation, continuity-corrected
        total = n * (n + 1) / 2
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = math.floor(total / 2 - float(sps.norm.ppf(1 - alpha / 2)) * sd - 0.5)
        tail = float(sps.norm.cdf((c + 0.5 - total / 2) / sd))
        return c, 1.0 - 2.0 * tail
    cdf = _signed_rank_cdf(n)
    below = np.flatnonzero(cdf <= alpha / 2 + 1e-12)
    if below.size == 0:
        return -1, 1.0 - 2.0 * float(cdf[0])
    c = int(below[-1])
    return c, 1.0 - 2.0 * float(cdf[c])


def _signed_rank_p(t_plus: float, n: int) -> float:
    """Exact two-sided p of a signed-rank sum (integer, no ties) for ``n`` pairs."""
    total = n * (n + 1) // 2
    t = round(t_plus)
    if n > _EXACT_SIGNED_RANK:
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        z = (abs(t - total / 2) - 0.5) / sd
        return min(1.0, 2.0 * float(sps.norm.sf(max(z, 0.0))))
    cdf = _signed_rank_cdf(n)
    return min(1.0, 2.0 * min(float(cdf[t]), float(cdf[total - t])))


@dataclass(frozen=True)
class SignedRankBatch:
    """Paired statistics of ``m`` series of log-ratios at once (one entry per series).

    ``center``: Hodges-Lehmann estimate (median of the Walsh averages); ``low``/``high``:
    the exact interval at ``confidence``; ``p``: two-sided signed-rank p-value; ``mean``:
    the plain mean log-ratio (the log of the geometric-mean ratio); ``sd``: the log-ratios'
    standard deviation. Arrays of shape ``(m,)``; NaN where a quantity does not exist."""

    n: int
    center: _Array
    low: _Array
    high: _Array
    p: _Array
    mean: _Array
    sd: _Array
    confidence: float


def signed_rank_batch(log_ratios: Sequence[Sequence[float]] | _Array, *,
                      alpha: float = ALPHA) -> SignedRankBatch:
    """Wilcoxon signed-rank test and its exact interval for each row of ``log_ratios``
    (shape ``(m, n)``: ``m`` comparisons of ``n`` pairs each), vectorised with numpy so a
    simulation can analyse thousands of sweeps in seconds. A row with tied or zero
    differences (rare with measured throughputs) gets scipy's tie-corrected p-value."""
    d = np.atleast_2d(np.asarray(log_ratios, dtype=float))
    m, n = d.shape
    nan = np.full(m, np.nan)
    if n == 0:
        return SignedRankBatch(0, nan, nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                               nan.copy(), math.nan)
    if not np.all(np.isfinite(d)):
        raise ValueError("log-ratios must be finite (a throughput of 0 is a bug upstream)")
    mean = d.mean(axis=1)
    sd = d.std(axis=1, ddof=1) if n >= 2 else nan.copy()
    c, confidence = _critical_count(n, alpha)
    i, j = _walsh_pairs(n)
    walsh_n = i.size
    center = np.empty(m)
    low = np.empty(m)
    high = np.empty(m)
    lo_k, hi_k = (c, walsh_n - 1 - c) if c >= 0 else (0, walsh_n - 1)
    step = max(1, _WALSH_CHUNK_CELLS // walsh_n)
    for start in range(0, m, step):
        rows = d[start:start + step]
        walsh = 0.5 * (rows[:, i] + rows[:, j])
        center[start:start + step] = np.median(walsh, axis=1)
        part = np.partition(walsh, sorted({lo_k, hi_k}), axis=1)
        low[start:start + step] = part[:, lo_k]
        high[start:start + step] = part[:, hi_k]
    p = _signed_rank_p_rows(d)
    return SignedRankBatch(n, center, low, high, p, mean, sd, confidence)


@functools.lru_cache(maxsize=32)
def _walsh_pairs(n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    i, j = np.triu_indices(n)
    return i, j


def _signed_rank_p_rows(d: _Array) -> _Array:
    m, n = d.shape
    absd = np.abs(d)
    order = np.argsort(absd, axis=1)
    ordered = np.take_along_axis(absd, order, axis=1)
    irregular = np.any(ordered == 0, axis=1)
    if n > 1:
        irregular |= np.any(np.diff(ordered, axis=1) == 0, axis=1)
    # Without ties the rank of each |d| is its position in the sorted order (plain numpy:
    # scipy's general rankdata costs more than the rest of a look together).
    ranks = np.empty_like(absd)
    np.put_along_axis(ranks, order, np.arange(1, n + 1, dtype=float)[None, :], axis=1)
    t_plus = np.where(d > 0, ranks, 0.0).sum(axis=1)
    p = np.empty(m)
    for row in range(m):
        if irregular[row]:
            p[row] = _scipy_wilcoxon_p(d[row])
        else:
            p[row] = _signed_rank_p(float(t_plus[row]), n)
    return p


def _scipy_wilcoxon_p(row: _Array) -> float:
    if not np.any(row != 0):
        return 1.0  # every pair identical: no evidence of any difference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "exact p-value not available with ties"
        result = sps.wilcoxon(row, zero_method="wilcox", alternative="two-sided")
    value = _num(result.pvalue)
    return 1.0 if value is None else value


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    indexed.sort()
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def decide(ci_low: float | None, ci_high: float | None, p_adjusted: float | None, *,
           alpha: float = ALPHA, noise_band: float = NOISE_BAND) -> str:
    """``"higher"``/``"lower"`` (b vs a, beyond the band and significant), ``"equivalent"``
    (the interval lies inside ±band) or ``"inconclusive"`` — all on the change scale."""
    if ci_low is None or ci_high is None:
        return "inconclusive"
    significant = p_adjusted is not None and p_adjusted < alpha
    if significant and ci_low > noise_band:
        return "higher"
    if significant and ci_high < -noise_band:
        return "lower"
    if ci_low >= -noise_band and ci_high <= noise_band:
        return "equivalent"
    return "inconclusive"


@dataclass(frozen=True)
class PairedComparison:
    """``b`` against ``a`` from runs paired within rounds (``a`` is the reference).

    ``change``: the Hodges-Lehmann estimate of ``b/a - 1`` from the within-round log-ratios,
    with its exact interval ``[change_ci_low, change_ci_high]`` (achieved confidence
    ``ci_confidence``); ``geomean_change``: the plain geometric-mean ratio minus 1.
    ``p_value``: Wilcoxon signed-rank, two-sided; ``p_adjusted``: after Holm's correction
    in the family the comparison belongs to (equal to ``p_value`` alone). ``outcome``, from
    the user's point of view: ``better``/``worse`` (b vs a, beyond ``noise_band`` and
    significant), ``equivalent`` (interval inside ±band) or ``inconclusive``. ``verdict``
    is asv's marker (``-`` better, ``+`` worse, ``~`` otherwise). ``paired_noise``: the
    log-ratios' standard deviation / √2, the run-to-run noise that is left once the
    host's drift is paired away (comparable with a CV).
    """

    n: int
    median_a: float
    median_b: float
    change: float | None
    change_ci_low: float | None
    change_ci_high: float | None
    ci_confidence: float | None
    geomean_change: float | None
    p_value: float | None
    p_adjusted: float | None
    min_p_value: float | None
    alpha: float
    noise_band: float
    higher_is_better: bool
    outcome: str
    paired_noise: float | None
    method: str = ("paired within rounds: Wilcoxon signed-rank on log-ratios, exact "
                   "Hodges-Lehmann interval")

    @property
    def n_a(self) -> int:
        return self.n

    @property
    def n_b(self) -> int:
        return self.n

    @property
    def significant(self) -> bool:
        return self.outcome in ("better", "worse")

    @property
    def equivalent(self) -> bool:
        return self.outcome == "equivalent"

    @property
    def verdict(self) -> str:
        return {"better": "-", "worse": "+"}.get(self.outcome, "~")

    @property
    def underpowered(self) -> bool:
        """True when this many pairs cannot produce p < alpha at all."""
        return self.min_p_value is None or self.min_p_value >= self.alpha

    def adjusted(self, p_adjusted: float | None) -> PairedComparison:
        """The same comparison with a family-corrected p-value (and the outcome it gives)."""
        direction = decide(self.change_ci_low, self.change_ci_high, p_adjusted,
                           alpha=self.alpha, noise_band=self.noise_band)
        return dataclasses.replace(self, p_adjusted=p_adjusted,
                                   outcome=_user_outcome(direction, self.higher_is_better))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(paired=True, n_a=self.n, n_b=self.n, significant=self.significant,
                    equivalent=self.equivalent, verdict=self.verdict,
                    underpowered=self.underpowered)
        return data


def _user_outcome(direction: str, higher_is_better: bool) -> str:
    if direction == "higher":
        return "better" if higher_is_better else "worse"
    if direction == "lower":
        return "worse" if higher_is_better else "better"
    return direction


def signed_rank_min_p(n: int) -> float | None:
    """Smallest two-sided exact signed-rank p-value for ``n`` pairs: ``2 / 2**n``."""
    return None if n < 1 else min(1.0, 2.0 ** (1 - n))


def paired_compare(a: Sequence[float] | _Array, b: Sequence[float] | _Array, *,
                   higher_is_better: bool = True, alpha: float = ALPHA,
                   noise_band: float = NOISE_BAND) -> PairedComparison:
    """Compare ``b`` with ``a``, where ``a[i]`` and ``b[i]`` ran in the same round."""
    xa, xb = _clean(a), _clean(b)
    if xa.size != xb.size:
        raise ValueError("paired samples need one value of each side per round")
    if np.any(xa <= 0) or np.any(xb <= 0):
        raise ValueError("paired ratios need positive values (throughputs or times)")
    n = int(xa.size)
    d = np.log(xb) - np.log(xa)
    base: dict[str, Any] = dict(
        n=n, median_a=float(np.median(xa)), median_b=float(np.median(xb)), alpha=alpha,
        noise_band=noise_band, higher_is_better=higher_is_better,
        min_p_value=signed_rank_min_p(n))
    if n < 2:
        return PairedComparison(**base, change=_num(math.expm1(float(d[0]))),
                                change_ci_low=None, change_ci_high=None, ci_confidence=None,
                                geomean_change=_num(math.expm1(float(d[0]))), p_value=None,
                                p_adjusted=None, outcome="inconclusive", paired_noise=None)
    batch = signed_rank_batch(d[None, :], alpha=alpha)
    p = _num(batch.p[0])
    low, high = _num(np.expm1(batch.low[0])), _num(np.expm1(batch.high[0]))
    direction = decide(low, high, p, alpha=alpha, noise_band=noise_band)
    sd = _num(batch.sd[0])
    return PairedComparison(
        **base, change=_num(np.expm1(batch.center[0])), change_ci_low=low,
        change_ci_high=high, ci_confidence=_num(batch.confidence),
        geomean_change=_num(np.expm1(batch.mean[0])), p_value=p, p_adjusted=p,
        outcome=_user_outcome(direction, higher_is_better),
        paired_noise=None if sd is None else sd / math.sqrt(2.0))


def holm_family(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with Holm-adjusted p-values over the whole family."""
    adjusted = holm([c.p_value for c in comparisons])
    return [c.adjusted(p) for c, p in zip(comparisons, adjusted, strict=True)]


# ---- the rounds × configurations table -------------------------------------------------------

@dataclass(frozen=True)
class RoundFit:
    """Two-way additive fit of log values: ``log y[r, c] = level[c] + round[r] + e``.

    ``levels``: each configuration's effect (comparable across configurations even when
    some skipped rounds); ``rounds``: each round's effect (the host's speed then, mean 0);
    ``residual_sd``: the run-to-run noise on the log scale with the host's drift removed
    (None with no degrees of freedom left)."""

    levels: _Array
    rounds: _Array
    residual_sd: float | None
    df: int


def fit_rounds(table: Sequence[Sequence[float]] | _Array) -> RoundFit:
    """Fit :class:`RoundFit` to a ``(rounds, configurations)`` table of positive values
    with NaN where a configuration did not run (alternating means: exact for a complete
    table, converging quickly for a raced one)."""
    y = np.log(np.asarray(table, dtype=float))
    present = np.isfinite(y)
    if not present.any():
        raise ValueError("an empty rounds table")
    levels = np.nanmean(np.where(present, y, np.nan), axis=0)
    rounds = np.zeros(y.shape[0])
    for _ in range(50):
        rounds = np.nanmean(y - levels[None, :], axis=1)
        rounds = np.where(np.isfinite(rounds), rounds, 0.0)
        rounds -= rounds.mean()
        new = np.nanmean(y - rounds[:, None], axis=0)
        if np.allclose(new, levels, atol=1e-12, rtol=0):
            levels = new
            break
        levels = new
    resid = np.where(present, y - levels[None, :] - rounds[:, None], 0.0)
    used_rounds = int(np.sum(present.sum(axis=1) > 0))
    used_configs = int(np.sum(present.sum(axis=0) > 0))
    df = int(present.sum()) - used_rounds - used_configs + 1
    sd = math.sqrt(float(np.sum(resid**2)) / df) if df > 0 else None
    return RoundFit(levels, rounds, sd, df)


@dataclass(frozen=True)
class Friedman:
    """Friedman's test of ``k`` treatments over ``blocks`` complete blocks (rounds)."""

    statistic: float | None
    p_value: float | None
    blocks: int
    k: int
    significant: bool
    method: str = "Friedman rank test, rounds as blocks (tie-corrected chi-square)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def friedman(table: Sequence[Sequence[float]] | _Array, *, alpha: float = ALPHA) -> Friedman:
    """Does any treatment differ? ``table`` is ``(blocks, k)`` without missing cells."""
    x = np.asarray(table, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
        return Friedman(None, None, int(x.shape[0]) if x.ndim == 2 else 0,
                        int(x.shape[1]) if x.ndim == 2 else 0, False)
    b, k = x.shape
    ranks = sps.rankdata(x, axis=1)
    sums = ranks.sum(axis=0)
    statistic = 12.0 / (b * k * (k + 1)) * float(np.sum(sums**2)) - 3.0 * b * (k + 1)
    ties = 0.0
    for row in x:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (b * k * (k * k - 1))
    if correction <= 0:
        return Friedman(0.0, 1.0, b, k, False)
    statistic /= correction
    p = float(sps.chi2.sf(statistic, k - 1))
    return Friedman(statistic, p, b, k, p < alpha)


@dataclass(frozen=True)
class LevelShift:
    """The strongest level shift of the per-round host effect.

    ``round`` is the first round (0-based) after the shift; ``change`` the relative change
    of throughput across it (``+1.44`` = 144% faster after); ``p_value`` from permuting the
    rounds. ``paired_before``/``paired_after`` are a reference comparison's paired change on
    each side of the shift; ``paired_p`` tests whether its log-ratios differ across it
    (Mann-Whitney), and ``paired_consistent`` says they do not: the within-round ratios did
    not see the shift. When they do differ the configurations' difference itself changed with
    the host's state (a contended host can hide or amplify it)."""

    round: int
    rounds: int
    change: float
    p_value: float
    significant: bool
    paired_label: str | None = None
    paired_before: float | None = None
    paired_after: float | None = None
    paired_p: float | None = None
    paired_consistent: bool | None = None
    method: str = "largest two-sample t over split points; p by permuting rounds"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def location_p(a: Sequence[float] | _Array, b: Sequence[float] | _Array) -> float | None:
    """Two-sided Mann-Whitney p of two independent samples (None with fewer than 2 each)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size < 2 or xb.size < 2:
        return None
    if np.ptp(np.concatenate([xa, xb])) == 0:
        return 1.0
    return _num(sps.mannwhitneyu(xa, xb, alternative="two-sided",
                                 method=_u_method(xa, xb)).pvalue)


def _split_statistics(series: _Array, min_size: int) -> _Array:
    """``|t|`` of every split point for each row of ``series`` (shape ``(m, n)``)."""
    n = series.shape[1]
    k = np.arange(min_size, n - min_size + 1)
    csum = np.cumsum(series, axis=1)
    csq = np.cumsum(series**2, axis=1)
    total, total_sq = csum[:, -1:], csq[:, -1:]
    left_sum, left_sq = csum[:, k - 1], csq[:, k - 1]
    right_sum, right_sq = total - left_sum, total_sq - left_sq
    left_mean, right_mean = left_sum / k, right_sum / (n - k)
    ss = (left_sq - k * left_mean**2) + (right_sq - (n - k) * right_mean**2)
    pooled = np.sqrt(np.maximum(ss, 0.0) / (n - 2))
    scale = pooled * np.sqrt(1.0 / k + 1.0 / (n - k))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(right_mean - left_mean) / scale
    result: _Array = np.where(np.isfinite(t), t, 0.0)
    return result


def level_shift(round_effects: Sequence[float] | _Array, *, alpha: float = ALPHA,
                min_size: int = 2, seed: int = 20240601) -> LevelShift | None:
    """The most likely single level shift in a series of round effects (log scale), or None
    with fewer than ``2·min_size`` rounds or a constant series."""
    x = np.asarray(round_effects, dtype=float)
    n = x.size
    if n < 2 * min_size or np.ptp(x) == 0:
        return None
    observed = _split_statistics(x[None, :], min_size)[0]
    best = int(np.argmax(observed))
    split = best + min_size
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(x, (_SHIFT_PERMUTATIONS, 1)), axis=1)
    null = _split_statistics(perms, min_size).max(axis=1)
    p = (1.0 + float(np.sum(null >= observed[best] - 1e-12))) / (_SHIFT_PERMUTATIONS + 1)
    change = math.expm1(float(x[split:].mean() - x[:split].mean()))
    return LevelShift(round=split, rounds=n, change=change, p_value=p, significant=p < alpha)


# ---- how small a difference a design can see -------------------------------------------------

def mde(log_ratio_sd: float | None, rounds: int, *, noise_band: float = NOISE_BAND,
        alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable effect: the smallest true change that ``rounds`` paired rounds with
    log-ratios of this standard deviation call (interval beyond ±band) with probability
    ``power`` — ``band + (z(1-α/2) + z(power)) · sd / √rounds``, on the log scale (a normal
    approximation; the signed-rank test is nearly as efficient as the t test)."""
    if log_ratio_sd is None or rounds < 2 or not math.isfinite(log_ratio_sd):
        return None
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return math.expm1(math.log1p(noise_band) + z * log_ratio_sd / math.sqrt(rounds))


def rounds_for_mde(log_ratio_sd: float | None, change: float, *,
                   noise_band: float = NOISE_BAND, alpha: float = ALPHA,
                   power: float = POWER) -> int | None:
    """Paired rounds :func:`mde` needs to reach ``change`` (None when ``change`` is inside
    the band, which no number of rounds can call)."""
    if log_ratio_sd is None or not math.isfinite(log_ratio_sd):
        return None
    margin = math.log1p(change) - math.log1p(noise_band)
    if margin <= 0:
        return None
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return max(2, math.ceil((z * log_ratio_sd / margin) ** 2))
