"""Statistical properties of paired rounds and racing, on a simulated host (fixed seeds).

The simulated host is what the product is for: a machine whose speed drifts slowly (an
Ornstein-Uhlenbeck process in wall-clock time, as a VM's CPU speed does under its
neighbours) plus independent noise per run. The default model: run-to-run CV 15%, three
quarters of its variance the slow drift (correlation time 20 s), one run taking about a
second at full speed — the default sweep's 5,000 records. The budgeted sweeps here drive the
product's own :class:`bench.racing.BudgetRace` (the object `bench sweep --budget` drives) and
its statistics; only the migrations are simulated.

Over 3,000 simulated sweeps the tests check:

* an A/A comparison (two identical configurations) is called different at most 5% of the
  time, by one fixed-design test and by a whole racing sweep with its repeated looks;
* a 5% difference at CV 15% is called, the right way round, in at least 80% of sweeps
  within the default 5-minute budget;
* on the same data, the unpaired analysis (Mann-Whitney on the pooled runs) has far less
  power than the paired one: pairing is why the verdicts hold on a busy machine;
* racing drops only configurations that really are worse, and every stopping reason occurs;
* a level shift of the host between rounds moves every raw throughput but not the paired
  verdict, and the summary names the round where it happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.racing import (
    STOP_BUDGET,
    STOP_EQUIVALENT,
    STOP_MAX_ROUNDS,
    STOP_ONE,
    BudgetRace,
    RacePolicy,
)
from reports.stats import NOISE_BAND, decide, paired_compare, signed_rank_batch
from reports.summary import summarize_sweep

BUDGET_S = 300.0  # the default --budget
RUN_S = 1.0  # one run of the default sweep at full speed


@dataclass(frozen=True)
class HostModel:
    """Run-to-run CV ``cv``, a share ``drift_share`` of its variance slow drift with
    correlation time ``drift_time_s``, the rest independent per run."""

    cv: float = 0.15
    drift_share: float = 0.75
    drift_time_s: float = 20.0

    @property
    def sd_drift(self) -> float:
        return self.cv * math.sqrt(self.drift_share)

    @property
    def sd_run(self) -> float:
        return self.cv * math.sqrt(1.0 - self.drift_share)


class SimulatedHost:
    """One sweep's host: each run advances the drift by its own duration."""

    def __init__(self, model: HostModel, rng: np.random.Generator) -> None:
        self.model = model
        self.rng = rng
        self.level = float(rng.normal(0.0, model.sd_drift))
        self.shift_at: float | None = None
        self.shift = 0.0
        self.clock = 0.0

    def run(self, speed: float) -> tuple[float, float]:
        """Throughput and duration of one run of a configuration of relative ``speed``."""
        m = self.model
        bump = self.shift if self.shift_at is not None and self.clock >= self.shift_at else 0.0
        seconds = RUN_S / (speed * math.exp(self.level + bump))
        decay = math.exp(-seconds / m.drift_time_s)
        self.level = self.level * decay + m.sd_drift * math.sqrt(1 - decay * decay) * \
            float(self.rng.normal())
        self.clock += seconds
        value = 100_000.0 * speed * math.exp(self.level + bump +
                                             m.sd_run * float(self.rng.normal()))
        return value, seconds


def race(speeds: list[float], seed: int, *, model: HostModel = HostModel(),
         budget_s: float = BUDGET_S, policy: RacePolicy | None = None,
         max_rounds: int = 2000) -> BudgetRace:
    """One budgeted sweep of configurations with these true relative speeds."""
    rng = np.random.default_rng(seed)
    host = SimulatedHost(model, rng)
    state = BudgetRace(len(speeds), budget_s, seed, policy or RacePolicy(),
                       max_rounds=max_rounds)
    state.spend(host.run(speeds[0])[1])  # the warm-up run
    while (order := state.next_round()) is not None:
        for c in order:
            value, seconds = host.run(speeds[c])
            state.record(c, value, seconds)
        state.end_round()
    return state


def called_difference(state: BudgetRace) -> str | None:
    """What a finished two-configuration sweep reports: "higher"/"lower" (B vs A) when a
    look dropped one or the final paired comparison calls it, else None."""
    if state.alive == [1]:
        return "higher"
    if state.alive == [0]:
        return "lower"
    table = state.table()
    cmp = paired_compare(table[:, 0], table[:, 1])
    return {"better": "higher", "worse": "lower"}.get(cmp.outcome)


def fixed_design(sweeps: int, rounds: int, speeds: list[float], seed: int,
                 model: HostModel = HostModel()) -> np.ndarray:
    """``(sweeps, rounds, configurations)`` throughputs of fixed-design sweeps (every
    round shuffled), vectorised over the sweeps."""
    rng = np.random.default_rng(seed)
    k = len(speeds)
    speed = np.asarray(speeds, dtype=float)
    order = np.argsort(rng.random((sweeps, rounds, k)), axis=2)
    level = rng.normal(0.0, model.sd_drift, sweeps)
    values = np.empty((sweeps, rounds, k))
    every = np.arange(sweeps)
    for r in range(rounds):
        for position in range(k):
            c = order[:, r, position]
            seconds = RUN_S / (speed[c] * np.exp(level))
            decay = np.exp(-seconds / model.drift_time_s)
            level = level * decay + model.sd_drift * np.sqrt(1 - decay**2) * \
                rng.normal(size=sweeps)
            values[every, r, c] = speed[c] * np.exp(level + rng.normal(0.0, model.sd_run,
                                                                       sweeps))
    return values


def paired_calls(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sweep: the paired test alone (p < 0.05) and the product's rule (the test and
    the interval beyond the noise band), B (column 1) against A (column 0)."""
    batch = signed_rank_batch(np.log(values[:, :, 1] / values[:, :, 0]))
    rule = np.array([decide(math.expm1(lo), math.expm1(hi), p) in ("higher", "lower")
                     for lo, hi, p in zip(batch.low, batch.high, batch.p, strict=True)])
    return batch.p < 0.05, rule


# ---- false positives --------------------------------------------------------------------------

def test_aa_fixed_design_false_positive_rate() -> None:
    values = fixed_design(1000, 50, [1.0, 1.0], seed=1)
    test_alone, rule = paired_calls(values)
    # The exact signed-rank test holds its level on a drifting host (1000 sweeps: a rate of
    # 5% would show as 5 ± 1.4% at two standard errors) ...
    assert test_alone.mean() <= 0.065
    # ... and the product, which also wants the interval beyond ±2%, stays far below 5%.
    assert rule.mean() <= 0.05


def test_aa_racing_sweeps_rarely_call_a_difference() -> None:
    """Repeated looks inflate a test's error rate; the interim alpha and the band keep a
    whole racing sweep's false positives at or below 5%."""
    calls = [called_difference(race([1.0, 1.0], seed)) for seed in range(500)]
    rate = sum(c is not None for c in calls) / len(calls)
    assert rate <= 0.05, rate


# ---- power ------------------------------------------------------------------------------------

def test_power_for_5_percent_at_cv_15_within_the_default_budget() -> None:
    states = [race([1.0, 1.05], 10_000 + seed) for seed in range(500)]
    calls = [called_difference(s) for s in states]
    power = calls.count("higher") / len(calls)
    assert power >= 0.80, power
    assert calls.count("lower") == 0  # never the wrong way round
    # Racing stops as soon as the answer is clear: on average well inside the budget.
    spent = np.mean([s.spent_s for s in states])
    assert spent < 0.9 * BUDGET_S


def test_unpaired_analysis_is_measurably_worse_on_the_same_data() -> None:
    """50 rounds — what the default budget gives a six-configuration sweep run in full —
    of a 5% difference: the within-round pairs find it far more often than Mann-Whitney
    on the same runs pooled, which counts the host's drift as noise."""
    values = fixed_design(1000, 50, [1.0, 1.05], seed=2)
    paired, _ = paired_calls(values)
    unpaired = scipy_stats.mannwhitneyu(values[:, :, 1], values[:, :, 0], axis=1,
                                        alternative="two-sided").pvalue < 0.05
    assert paired.mean() >= 0.75
    assert paired.mean() - unpaired.mean() >= 0.25, (paired.mean(), unpaired.mean())
    # And it is not luck of one draw: where the unpaired test finds it, so does the pair.
    assert (paired & unpaired).sum() >= 0.9 * unpaired.sum()


# ---- racing -----------------------------------------------------------------------------------

#: Relative speeds of 50, 100, 200, 500, 1000 and 2000 records a batch, the default sweep's
#: shape: a steep start, a plateau within the noise band at the top.
CURVE = [0.73, 0.85, 0.93, 0.982, 0.995, 1.0]


def test_racing_drops_only_configurations_that_are_really_worse() -> None:
    states = [race(CURVE, 20_000 + seed) for seed in range(150)]
    dropped = [[e.config for e in s.eliminated()] for s in states]
    for state in states:
        for elimination in state.eliminated():
            # Dropped only against a configuration that really is faster.
            assert CURVE[elimination.config] < CURVE[elimination.best]
    # The plateau (within ±2% of the best) survives in at least 95% of the sweeps ...
    plateau = [i for i, v in enumerate(CURVE) if v >= CURVE[-1] * (1 - NOISE_BAND)]
    wrongly = sum(any(i in gone for i in plateau) for gone in dropped)
    assert wrongly <= 0.05 * len(states), wrongly
    # ... while the clearly slower ones are dropped in nearly every sweep.
    for slow in (0, 1):
        assert sum(slow in gone for gone in dropped) >= 0.95 * len(states)
    # Dropping them is what frees the budget for the leaders.
    state = states[0]
    assert state.rounds_run[-1] > state.rounds_run[0]


@pytest.mark.parametrize(("reason", "speeds", "model", "max_rounds"), [
    (STOP_ONE, [1.0, 0.8], HostModel(), 2000),
    (STOP_EQUIVALENT, [1.0, 1.0], HostModel(cv=0.02), 2000),
    (STOP_BUDGET, [1.0, 1.0], HostModel(cv=0.30), 2000),
    (STOP_MAX_ROUNDS, [1.0, 1.0], HostModel(), 12),
])
def test_each_stopping_reason_is_reached(reason: str, speeds: list[float], model: HostModel,
                                         max_rounds: int) -> None:
    reasons = [race(speeds, 30_000 + seed, model=model, max_rounds=max_rounds).stop_reason
               for seed in range(20)]
    assert reasons.count(reason) >= 18, reasons


def test_budget_is_respected() -> None:
    for seed in range(20):
        state = race([1.0, 1.0, 1.0], 40_000 + seed, model=HostModel(cv=0.3), budget_s=60)
        assert state.stop_reason == STOP_BUDGET
        # A round is only started when it is expected to fit.
        assert state.spent_s <= 60 + 2 * (state.round_seconds() or 0)


# ---- drift ------------------------------------------------------------------------------------

def test_a_level_shift_moves_raw_throughput_but_not_the_paired_verdict() -> None:
    """The host becomes 2.4x faster a third of the way in (another tenant stopped): the
    paired summary still separates 1.07 from 1.0 with a tight interval, names the round of
    the shift and shows the paired change on both sides of it; the unpaired interval of the
    same runs is several times wider, because the shift is in every run's spread."""
    rng = np.random.default_rng(7)
    host = SimulatedHost(HostModel(cv=0.08, drift_share=0.2), rng)
    host.shift_at, host.shift = 20.0, math.log(2.4)
    speeds = [1.0, 1.07]
    values: list[list[float]] = [[], []]
    for _ in range(30):
        for c in rng.permutation(2):
            values[c].append(host.run(speeds[c])[0])
    configs = [{"batch_size": 200}, {"batch_size": 2000}]
    rounds = [list(range(30))] * 2
    paired = summarize_sweep(list(zip(configs, values, strict=True)), rounds=rounds)
    unpaired = summarize_sweep(list(zip(configs, values, strict=True)))
    assert paired.best.label == "batch_size=2000" and paired.best.significantly_better
    pair, pooled = paired.best.vs_runner_up, unpaired.best.vs_runner_up
    assert pair is not None and pooled is not None
    assert pair.change_ci_low is not None and pair.change_ci_high is not None
    assert pooled.change_ci_low is not None and pooled.change_ci_high is not None
    assert pair.change_ci_low > 0.03  # the 7% is resolved
    width = pair.change_ci_high - pair.change_ci_low
    assert 3 * width < pooled.change_ci_high - pooled.change_ci_low
    assert paired.noise is not None and paired.noise.raw_cv_min is not None
    assert paired.noise.paired_noise is not None
    assert paired.noise.paired_noise < paired.noise.raw_cv_min / 3
    shift = paired.noise.level_shift if paired.noise else None
    assert shift is not None and shift.significant and 8 <= shift.round <= 12
    assert shift.change > 1.0  # +140%
    assert shift.paired_before is not None and shift.paired_after is not None
    assert abs(shift.paired_before - 0.07) < 0.05 and abs(shift.paired_after - 0.07) < 0.05
    assert shift.paired_consistent is True
    assert any("changed speed at round" in w and "unaffected" in w for w in paired.warnings)
    assert "level shift at round" in paired.lines[2]
