"""The paired statistics of reports.stats and the racing of bench.racing, piece by piece."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.racing import (
    MIN_ROUNDS_ANY,
    STOP_BUDGET,
    STOP_EQUIVALENT,
    BudgetRace,
    RacePolicy,
    look,
    round_order,
)
from reports.stats import (
    decide,
    fit_rounds,
    friedman,
    holm,
    holm_family,
    level_shift,
    mde,
    paired_compare,
    rounds_for_mde,
    signed_rank_batch,
    signed_rank_min_p,
)


def test_signed_rank_p_is_scipys_exact_p() -> None:
    rng = np.random.default_rng(3)
    for n in (6, 9, 17, 40):
        d = rng.normal(0.02, 0.1, n)
        batch = signed_rank_batch(d[None, :])
        assert batch.p[0] == pytest.approx(scipy_stats.wilcoxon(d, method="exact").pvalue,
                                           rel=1e-9)


def test_interval_and_test_agree_by_construction() -> None:
    """The interval excludes 0 exactly when the test rejects: a difference is never called
    by one and denied by the other."""
    rng = np.random.default_rng(4)
    d = rng.normal(rng.normal(0, 0.04, (400, 1)), 0.1, (400, 25))
    batch = signed_rank_batch(d)
    excludes = (batch.low > 0) | (batch.high < 0)
    assert np.array_equal(excludes, batch.p < 0.05)
    assert batch.confidence >= 0.95


def test_ties_and_zero_differences_fall_back_to_scipy() -> None:
    d = np.array([0.0, 0.1, 0.1, -0.05, 0.2, 0.3, 0.1, 0.25])
    batch = signed_rank_batch(d[None, :])
    with np.errstate(all="ignore"):
        expected = scipy_stats.wilcoxon(d, zero_method="wilcox").pvalue
    assert batch.p[0] == pytest.approx(expected)
    assert signed_rank_batch(np.zeros((1, 8))).p[0] == 1.0


def test_paired_compare_of_runs_that_ran_side_by_side() -> None:
    # The host's speed swings by a factor of 3 between rounds; B is 10% faster within each.
    host = np.array([1.0, 3.0, 0.7, 2.2, 1.4, 0.9, 2.8, 1.1, 1.9, 0.6])
    noise = np.array([1.0, 1.01, 0.99, 1.005, 0.995, 1.0, 1.008, 0.992, 1.003, 0.997])
    a = 1000 * host
    b = 1100 * host * noise
    cmp = paired_compare(a, b)
    assert cmp.outcome == "better" and cmp.verdict == "-" and cmp.significant
    assert cmp.change == pytest.approx(0.10, abs=0.005)
    assert cmp.change_ci_low is not None and cmp.change_ci_low > 0.02
    assert cmp.paired_noise is not None and cmp.paired_noise < 0.01
    assert cmp.p_value == pytest.approx(2 / 2**10)
    assert cmp.min_p_value == pytest.approx(2 / 2**10) and not cmp.underpowered
    # Times, where lower is better: the same ratio is a slowdown.
    assert paired_compare(a, b, higher_is_better=False).outcome == "worse"
    json.dumps(cmp.to_dict(), allow_nan=False)


def test_noise_band_decides_what_is_called() -> None:
    host = np.linspace(0.5, 2.0, 12)
    jitter = 1 + 0.001 * np.sin(np.arange(12))
    a = 1000 * host
    tiny = paired_compare(a, 1010 * host * jitter)  # +1%, measured very precisely
    assert tiny.p_value is not None and tiny.p_value < 0.05
    assert tiny.outcome == "equivalent" and not tiny.significant  # inside ±2%
    assert tiny.verdict == "~"
    assert paired_compare(a, 1010 * host * jitter, noise_band=0.0).outcome == "better"
    assert decide(0.01, 0.05, 0.001) == "inconclusive"  # straddles the band
    assert decide(0.03, 0.05, 0.001) == "higher"
    assert decide(0.03, 0.05, 0.2) == "inconclusive"  # interval alone is not enough
    assert decide(-0.05, -0.03, 0.001) == "lower"
    assert decide(-0.01, 0.015, 0.5) == "equivalent"
    assert decide(None, None, 0.001) == "inconclusive"


def test_too_few_pairs() -> None:
    one = paired_compare([100.0], [120.0])
    assert one.outcome == "inconclusive" and one.change == pytest.approx(0.2)
    assert one.change_ci_low is None and one.underpowered
    five = paired_compare([100.0] * 5, [150.0, 151, 152, 153, 154])
    assert five.underpowered and not five.significant  # 5 pairs: smallest p 0.0625
    assert signed_rank_min_p(6) == pytest.approx(1 / 32)
    with pytest.raises(ValueError):
        paired_compare([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_compare([1.0, 0.0], [1.0, 2.0])


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03, None]) == [0.03, 0.06, 0.06, None]
    assert holm([]) == []
    assert holm([0.5]) == [0.5]
    host = np.linspace(1, 2, 8)
    cmps = [paired_compare(1000 * host, f * host * (1 + 0.002 * np.cos(np.arange(8))))
            for f in (1100.0, 1100.0, 1100.0, 1100.0)]
    family = holm_family(cmps)
    # Four comparisons at the smallest 8-pair p (0.0078): Holm multiplies it by 4.
    assert [c.p_adjusted for c in family] == pytest.approx([4 * 2 / 2**8] * 4)
    assert all(c.significant for c in family)
    six = holm_family(cmps + cmps[:3])
    assert all(c.p_adjusted == pytest.approx(7 * 2 / 2**8) for c in six)
    assert not any(c.significant for c in six)  # 7 x 0.0078 > 0.05


def test_fit_rounds_separates_configurations_from_the_host() -> None:
    levels = np.log([1.0, 1.3, 0.8])
    rounds = np.log([1.0, 2.5, 0.6, 1.7, 1.2])
    table = np.exp(levels[None, :] + rounds[:, None])
    table[3, 2] = np.nan  # a configuration that skipped a round (raced out, say)
    table[4, 2] = np.nan
    fit = fit_rounds(table)
    assert fit.levels - fit.levels[0] == pytest.approx(levels - levels[0], abs=1e-9)
    assert fit.rounds - fit.rounds.mean() == pytest.approx(rounds - rounds.mean(), abs=1e-9)
    assert fit.residual_sd == pytest.approx(0, abs=1e-9)


def test_friedman_matches_scipy_and_handles_two_treatments() -> None:
    rng = np.random.default_rng(5)
    table = rng.normal(0, 1, (12, 4)) + np.array([0, 0.3, 0.6, 0.9])
    ours = friedman(table)
    theirs = scipy_stats.friedmanchisquare(*table.T)
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)
    two = friedman(np.column_stack([np.arange(10.0), np.arange(10.0) + 1]))
    assert two.significant and two.k == 2 and two.blocks == 10
    assert friedman(np.ones((1, 3))).p_value is None  # one block: no test


def test_level_shift_is_found_where_it_happened() -> None:
    rng = np.random.default_rng(6)
    series = np.r_[rng.normal(0, 0.05, 18), rng.normal(0.9, 0.05, 12)]
    shift = level_shift(series)
    assert shift is not None and shift.significant and shift.round == 18
    assert shift.change == pytest.approx(math.expm1(0.9), rel=0.1)
    quiet = [level_shift(rng.normal(0, 0.05, 30), seed=k) for k in range(40)]
    assert sum(s is not None and s.significant for s in quiet) <= 5
    assert level_shift([0.1, 0.2, 0.3]) is None


def test_mde_and_rounds_are_inverse() -> None:
    sd = 0.12
    n = rounds_for_mde(sd, 0.05)
    assert n is not None
    assert mde(sd, n) == pytest.approx(0.05, abs=0.002)
    assert mde(sd, n) <= 0.05 < mde(sd, n - 1)  # type: ignore[operator]
    assert mde(sd, 10**9) == pytest.approx(0.02, abs=1e-4)  # never below the band
    assert rounds_for_mde(sd, 0.015) is None  # inside the band: no number of rounds
    assert mde(None, 10) is None and mde(0.1, 1) is None


# ---- racing ----------------------------------------------------------------------------------

def test_round_order_is_reproducible_and_a_permutation() -> None:
    assert round_order([0, 1, 2, 3], 7, 5) == round_order([3, 2, 1, 0], 7, 5)
    assert sorted(round_order([0, 2, 5], 7, 5)) == [0, 2, 5]
    orders = {tuple(round_order(range(4), 7, r)) for r in range(30)}
    assert len(orders) > 10  # rounds are shuffled independently


def test_looks_grow_by_half() -> None:
    assert RacePolicy().looks(100) == [10, 15, 22, 33, 49, 73]
    assert RacePolicy().is_look(22) and not RacePolicy().is_look(23)


def test_a_look_drops_the_clearly_worse_and_keeps_the_close() -> None:
    host = np.exp(np.random.default_rng(8).normal(0, 0.3, 15))
    jitter = np.exp(np.random.default_rng(9).normal(0, 0.01, (15, 3)))
    table = np.column_stack([1.0 * host, 0.7 * host, 0.995 * host]) * jitter
    result = look(table, [0, 1, 2], RacePolicy())
    assert result.best == 0
    assert [e.config for e in result.eliminated] == [1]
    assert result.eliminated[0].change == pytest.approx(-0.3, abs=0.02)
    # 2 is half a percent slower, measured to about a percent: proven within ±2%.
    assert result.alive == (0, 2) and result.stop == STOP_EQUIVALENT
    # Measured to 5% a run, it is neither dropped nor proven equivalent: race on.
    noisy = table * np.exp(np.random.default_rng(10).normal(0, 0.05, (15, 3)))
    again = look(noisy, [0, 1, 2], RacePolicy())
    assert again.alive == (0, 2) and again.stop is None
    with pytest.raises(ValueError):
        look(np.full((10, 2), np.nan), [0, 1], RacePolicy())


def test_budget_race_bookkeeping() -> None:
    state = BudgetRace(3, budget_s=10.0, seed=1)
    order = state.next_round()
    assert order is not None and sorted(order) == [0, 1, 2]
    for c in order:
        state.record(c, 100.0 + c, 2.0)
    state.record(order[0], 99.0, 2.0)  # a re-run replaces the value, costs the time
    assert state.end_round() is None  # no look before min_rounds
    assert state.rounds_done == 1 and state.spent_s == 8.0
    assert state.table()[0, order[0]] == 99.0
    assert state.rounds_run == [1, 1, 1]
    # Round 2 is always allowed (MIN_ROUNDS_ANY), then a 6-second round no longer fits.
    assert MIN_ROUNDS_ANY == 2
    order = state.next_round()
    assert order is not None
    for c in order:
        state.record(c, 100.0, 2.0)
    state.end_round()
    assert state.next_round() is None and state.stop_reason == STOP_BUDGET
    assert state.next_round() is None
    doc = state.to_dict()
    assert doc["stop_reason"] == STOP_BUDGET and doc["rounds_per_configuration"] == [2, 2, 2]
    json.dumps(doc)
