"""reports.stats against scipy and against values worked out by hand."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from reports.stats import (
    CV_WARN,
    MIN_REPEATS_FOR_CI,
    Stats,
    compare,
    describe,
    drift,
    instability_warnings,
    machine_noise,
    median_ci,
    min_p_value,
    repeats_for_cv,
    repeats_needed,
    speed_elasticity,
)

props = settings(derandomize=True, max_examples=40, deadline=None)


def _json_safe(obj: object) -> None:
    json.dumps(obj, allow_nan=False)  # raises on NaN/inf


# --------------------------------------------------------------------------- describe


def test_describe_matches_numpy_and_scipy() -> None:
    values = [940.0, 955.0, 959.5, 962.0, 970.0, 951.0, 966.0]
    s = describe(values)
    assert s.n == 7
    assert s.median == pytest.approx(np.median(values))
    assert s.mean == pytest.approx(np.mean(values))
    assert s.stdev == pytest.approx(np.std(values, ddof=1))
    assert s.cv == pytest.approx(sps.variation(values, ddof=1))
    assert (s.min, s.max) == (940.0, 970.0)


def test_median_ci_known_values() -> None:
    # n=10: P(Binom(10, .5) <= 1) = 11/1024 <= .025 < P(<= 2), so [x(2), x(9)],
    # coverage 1 - 2 * 11/1024 = 0.978515625.
    low, high, conf = median_ci(list(range(1, 11)))
    assert (low, high) == (2.0, 9.0)
    assert conf == pytest.approx(1 - 2 * 11 / 1024)
    # n=6 is the smallest with a 95% interval: [min, max] at 1 - 2/64.
    assert median_ci([6, 1, 5, 2, 4, 3]) == (1.0, 6.0, pytest.approx(1 - 2 / 64))


@pytest.mark.parametrize("n", [6, 7, 9, 10, 15, 20, 31, 50])
def test_median_ci_agrees_with_scipy_quantile_test(n: int) -> None:
    values = np.random.default_rng(n).lognormal(6.8, 0.1, n)
    low, high, conf = median_ci(values)
    expected = sps.quantile_test(values, q=np.median(values), p=0.5).confidence_interval(0.95)
    assert (low, high) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert conf is not None and conf >= 0.95


@pytest.mark.parametrize(("n", "confidence"), [(2, 0.5), (3, 0.75), (4, 0.875), (5, 0.9375)])
def test_small_n_reports_min_max_with_its_true_confidence(n: int, confidence: float) -> None:
    values = [float(v) for v in range(10, 10 + n)]
    s = describe(values)
    assert (s.ci_low, s.ci_high) == (min(values), max(values))
    assert s.ci_confidence == pytest.approx(confidence)


def test_single_run_has_no_spread_and_no_nan() -> None:
    s = describe([959.5])
    assert (s.stdev, s.cv, s.ci_low, s.ci_high, s.ci_confidence) == (None, None, None, None, None)
    assert s.median == s.mean == 959.5
    _json_safe(s.to_dict())


def test_two_runs_and_constant_runs_are_json_safe() -> None:
    for values in ([1.0, 2.0], [5.0, 5.0], [5.0] * 8, [0.0, 0.0, 0.0]):
        s = describe(values)
        _json_safe(s.to_dict())
    assert describe([0.0, 0.0]).cv is None  # mean 0: CV undefined, not inf


def test_outliers_by_tukey_fences_in_run_order() -> None:
    values = [100.0, 101.0, 99.0, 100.5, 60.0, 100.2, 99.8]
    s = describe(values)
    assert s.outlier_indices == (4,)
    assert s.outlier_values == (60.0,)
    assert describe([1.0, 2.0, 100.0]).outlier_indices == ()  # too few to call


def test_describe_rejects_empty_and_nan() -> None:
    with pytest.raises(ValueError):
        describe([])
    with pytest.raises(ValueError, match="finite"):
        describe([1.0, float("nan")])


@props
@given(st.lists(st.floats(1, 1e6, allow_nan=False), min_size=1, max_size=30))
def test_describe_invariants(values: list[float]) -> None:
    s = describe(values)
    assert s.min <= s.median <= s.max
    if s.ci_low is not None and s.ci_high is not None:
        assert s.min <= s.ci_low <= s.median <= s.ci_high <= s.max
    _json_safe(s.to_dict())


# --------------------------------------------------------------------------- compare


def test_compare_separated_five_vs_five_is_exact() -> None:
    a = [580.0, 585.0, 588.7, 591.0, 595.0]
    b = [950.0, 955.0, 959.5, 963.0, 968.0]
    c = compare(a, b)
    assert c.change == pytest.approx(959.5 / 588.7 - 1)
    assert c.mannwhitney_p == pytest.approx(2 / 252)  # exact: 2 / C(10, 5)
    assert c.welch_p == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)
    assert c.significant and c.verdict == "-"  # throughput went up: better
    low, high, change = c.change_ci_low, c.change_ci_high, c.change
    assert low is not None and high is not None and change is not None
    assert low <= change <= high
    worse = compare(b, a)
    assert worse.verdict == "+" and worse.change == pytest.approx(588.7 / 959.5 - 1)


def test_compare_lower_is_better_flips_the_marker() -> None:
    fast = [1.0, 1.1, 1.05, 0.98, 1.02]
    slow = [2.0, 2.1, 2.05, 1.98, 2.02]
    assert compare(fast, slow, higher_is_better=False).verdict == "+"  # time went up
    assert compare(slow, fast, higher_is_better=False).verdict == "-"


def test_compare_ties_use_an_exact_test() -> None:
    # Constant, separated samples: scipy's default falls back to the normal approximation
    # (p≈0.004, below what 5 vs 5 runs can ever give); the permutation test is exact.
    c = compare([588.7] * 5, [959.5] * 5)
    assert c.mannwhitney_p == pytest.approx(2 / 252)
    tied = compare([1, 2, 2, 3, 4], [2, 3, 4, 5, 5])
    assert tied.mannwhitney_p == pytest.approx(0.1746031746, rel=1e-6)


def test_compare_identical_and_overlapping_are_not_significant() -> None:
    same = compare([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert (same.mannwhitney_p, same.welch_p, same.verdict) == (1.0, None, "~")
    noisy = compare([100, 130, 90, 120, 95], [105, 125, 92, 118, 99])
    assert not noisy.significant and noisy.verdict == "~"
    _json_safe(same.to_dict())


def test_compare_knows_when_it_cannot_decide() -> None:
    c = compare([1.0, 2.0, 3.0], [10.0, 11.0, 12.0])
    assert c.min_p_value == pytest.approx(0.1)
    assert c.underpowered and not c.significant  # fully separated, still p=0.1
    assert not compare([1.0] * 4, [2.0] * 4).underpowered
    assert min_p_value(5, 5) == pytest.approx(2 / 252)


def test_compare_single_runs_are_json_safe() -> None:
    c = compare([5.0], [6.0])
    assert c.welch_p is None and c.change_ci_low is None and not c.significant
    _json_safe(c.to_dict())
    assert compare([0.0, 0.0], [1.0, 2.0]).change is None


def test_compare_is_deterministic() -> None:
    a, b = [10.0, 11.0, 12.0, 9.5, 10.5], [11.0, 12.5, 12.0, 13.0, 11.5]
    assert compare(a, b) == compare(a, b)


# --------------------------------------------------------------------------- drift


def test_drift_monotone_series() -> None:
    d = drift([100.0, 101.0, 102.0, 103.0, 104.0])
    assert d.tau == pytest.approx(1.0)
    assert d.p_value == pytest.approx(2 / 120)  # exact Kendall, n=5
    assert d.significant
    assert d.slope_pct == pytest.approx(100 * 1 / 102)
    assert d.total_pct == pytest.approx(4 * 100 / 102)


def test_drift_absent_in_shuffled_series() -> None:
    d = drift([100.0, 104.0, 101.0, 103.0, 102.0, 100.5])
    assert not d.significant


def test_drift_small_or_constant_is_none_not_nan() -> None:
    for values in ([1.0], [1.0, 2.0], [3.0, 3.0, 3.0, 3.0]):
        d = drift(values)
        assert (d.tau, d.p_value, d.significant) == (None, None, False)
        _json_safe(d.to_dict())


# --------------------------------------------------------------------------- repeats


def test_repeats_for_cv_formula() -> None:
    z = sps.norm.ppf(0.975)
    assert repeats_for_cv(0.10) == math.ceil((z * math.sqrt(math.pi / 2) * 0.10 / 0.05) ** 2)
    assert repeats_for_cv(0.10) == 25
    assert repeats_for_cv(0.0) == MIN_REPEATS_FOR_CI
    assert repeats_for_cv(0.10, rel_precision=0.10) == 7


def test_repeats_needed_from_values() -> None:
    assert repeats_needed([5.0]) is None
    values = [90.0, 110.0, 95.0, 105.0]
    assert repeats_needed(values) == repeats_for_cv(describe(values).cv or 0)


# --------------------------------------------------------------------------- warnings


def test_quiet_when_stable_and_enough_repeats() -> None:
    values = [100.0, 100.4, 99.7, 100.1, 99.9, 100.2, 99.8, 100.3]
    assert instability_warnings(describe(values), drift(values)) == []


def test_warns_on_high_cv_with_repeats_needed() -> None:
    values = [100.0, 130.0, 85.0, 115.0, 95.0, 125.0]
    s = describe(values)
    assert s.cv is not None and s.cv > CV_WARN
    (text,) = [w for w in instability_warnings(s) if "CV" in w]
    assert f"about {repeats_for_cv(s.cv)} repeats" in text


def test_warns_on_drift_and_too_few_repeats() -> None:
    values = [100.0, 101.0, 102.0, 103.0, 104.0]
    found = instability_warnings(describe(values), drift(values))
    assert any(w.startswith("drift across run order (+1.0% per run") for w in found)
    assert any("93.8% confidence" in w and "6 repeats" in w for w in found)


def test_single_run_warning() -> None:
    (text,) = instability_warnings(describe([1.0]), drift([1.0]))
    assert "single run" in text


def test_stats_is_frozen() -> None:
    s: Stats = describe([1.0, 2.0])
    with pytest.raises(AttributeError):
        s.n = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- machine noise

# The machine's speed in six runs (1.0 = median): a shared VM's typical ±15%.
SPEED = (1.0, 0.85, 1.12, 0.93, 1.18, 0.97)


def _probe_and_rate(base: float, cpu_share: float, jitter: Sequence[float] = (0.0,) * 6
                    ) -> tuple[list[float], list[float]]:
    """Runs whose CPU part (``cpu_share`` of the time) scales with the machine's speed;
    the probe is 3 CPU seconds of fixed work at the run's speed."""
    probes = [3.0 / s for s in SPEED]
    times = [(cpu_share / s + (1 - cpu_share)) * (1 + j) for s, j in zip(SPEED, jitter,
                                                                     strict=True)]
    return [base / t for t in times], probes


def test_machine_speed_explains_a_cpu_bound_spread() -> None:
    rates, probes = _probe_and_rate(250_000, 1.0)
    slope = speed_elasticity([(rates, probes)])
    assert slope == pytest.approx(-1.0)
    noise = machine_noise(rates, probes, slope)
    assert noise is not None
    assert describe(rates).cv is not None and describe(rates).cv > CV_WARN  # raw: noisy
    assert noise.adjusted_cv == pytest.approx(0.0, abs=1e-9)
    assert noise.explained == pytest.approx(1.0)
    assert noise.probe_cv == pytest.approx(describe([3.0 / s for s in SPEED]).cv)
    _json_safe(noise.to_dict())


def test_elasticity_is_fitted_within_configurations_not_between_them() -> None:
    # Two configurations 3x apart, each half CPU-bound: the fit must not mistake the gap
    # between them for a machine effect.
    fast, probes = _probe_and_rate(300_000, 0.5)
    slow, _ = _probe_and_rate(100_000, 0.5)
    slope = speed_elasticity([(fast, probes), (slow, probes)])
    assert slope is not None and -0.6 < slope < -0.4
    noise = machine_noise(fast, probes, slope)
    assert noise is not None and noise.adjusted_cv is not None
    assert noise.adjusted_cv < 0.01 < describe(fast).cv  # type: ignore[operator]


def test_noise_the_probe_does_not_see_stays() -> None:
    # The machine is steady; the runs are not (say, checkpoint stalls): nothing to explain.
    jitter = (0.0, 0.2, -0.1, 0.15, -0.12, 0.05)
    rates = [100.0 / (1 + j) for j in jitter]
    probes = [3.0, 3.01, 2.99, 3.0, 3.02, 2.98]
    slope = speed_elasticity([(rates, probes)])
    noise = machine_noise(rates, probes, slope) if slope is not None else None
    if noise is not None:
        assert noise.explained < 0.5 and noise.adjusted_cv is not None
        assert noise.adjusted_cv > CV_WARN
        text = " ".join(instability_warnings(describe(rates), machine=noise))
        assert "explains only" in text and "look at the database" in text


def test_elasticity_refuses_what_it_cannot_fit() -> None:
    assert speed_elasticity([]) is None
    assert speed_elasticity([([1.0, 2.0], [1.0, 1.0])]) is None  # the probe never varied
    assert speed_elasticity([([1.0], [2.0])]) is None  # one run tells nothing
    # Faster probe, slower run, consistently: the probe does not track the rate.
    assert speed_elasticity([([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])]) is None
    assert speed_elasticity([([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])],
                            higher_is_better=False) == pytest.approx(1.0)
    assert machine_noise([1.0, 2.0], [1.0, 2.0], None) is None
    assert speed_elasticity([([1.0, 8.0, 64.0], [4.0, 2.0, 1.0])]) == -1.5  # clipped


def test_high_cv_warning_says_when_the_host_explains_it() -> None:
    rates, probes = _probe_and_rate(250_000, 1.0)
    noise = machine_noise(rates, probes, speed_elasticity([(rates, probes)]))
    (text,) = [w for w in instability_warnings(describe(rates), machine=noise)
               if w.startswith("high variation")]
    assert "but the machine's speed explains it" in text
    assert "adjusted for that the CV is 0.0%" in text
    assert "repeats would bring" in text  # the raw interval still needs them
    plain = [w for w in instability_warnings(describe(rates)) if w.startswith("high")]
    assert plain and "machine" not in plain[0]
