"""Racing under a time budget: run rounds, drop what is clearly worse, stop when it is clear.

The schedule of a budgeted sweep is decided as it goes, by :class:`BudgetRace`, a pure
object that never runs anything itself: the sweep (:func:`bench.sweep.run_plan`) and the
statistical simulation of the test-suite drive the same object, one with real migrations,
the other with simulated ones.

* Every round runs each configuration still in the race once, in a shuffled order seeded by
  ``(seed, round)``, so a resumed sweep reproduces the rounds it already ran.
* At *looks* — after ``min_rounds`` rounds, then each time the round count has grown by
  half — the leaders are compared with the current best (paired within rounds:
  :func:`reports.stats.signed_rank_batch`, Holm-corrected). A configuration whose interval
  lies wholly below ``-noise_band`` with a significant test is dropped, as F-Race and irace
  drop candidates in configuration tuning.
* The race stops when one configuration remains, when every remaining one is equivalent to
  the best (interval inside ±band), or before a round that would overrun the budget.

Repeated looks at the same growing data inflate the false-positive rate of any single test,
so each interim look tests at ``alpha = 0.01`` rather than 0.05 (a Pocock-style boundary:
the half-again spacing gives about eight looks in a five-minute sweep, and a constant 0.01
over that many looks keeps the overall error near 5%; the noise band, which a true
difference of 0 must also clear, lowers it further). The simulation in
``tests/test_paired_simulation.py`` measures the resulting false-positive rate and power.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reports.stats import NOISE_BAND, decide, fit_rounds, holm, signed_rank_batch

STOP_ONE = "one_remains"
STOP_EQUIVALENT = "equivalent"
STOP_BUDGET = "budget"
STOP_MAX_ROUNDS = "max_rounds"

STOP_TEXT = {
    STOP_ONE: "one configuration remains: the others are significantly worse",
    STOP_EQUIVALENT: "the leaders are equivalent within the noise band",
    STOP_BUDGET: "the time budget is spent",
    STOP_MAX_ROUNDS: "the round limit is reached",
}

#: Rounds before the first look: at 10 pairs the exact signed-rank test can reach
#: p = 0.002, enough for the interim alpha after Holm's correction over a few contenders.
MIN_ROUNDS = 10
#: Rounds a budgeted sweep runs even when its budget is smaller (one ratio says nothing).
MIN_ROUNDS_ANY = 2
#: Interim looks test at this level (see the module docstring).
INTERIM_ALPHA = 0.01
#: Never more rounds than this, whatever the budget.
MAX_ROUNDS = 2000


@dataclass(frozen=True)
class RacePolicy:
    """When to look and how strict a look is."""

    min_rounds: int = MIN_ROUNDS
    growth: float = 1.5
    alpha: float = INTERIM_ALPHA
    noise_band: float = NOISE_BAND
    higher_is_better: bool = True

    def is_look(self, rounds: int) -> bool:
        return rounds in self.looks(rounds)

    def looks(self, limit: int) -> list[int]:
        """Round counts at which the race looks, up to ``limit``: 10, 15, 22, 33, 50, …"""
        found: list[int] = []
        r = self.min_rounds
        while r <= limit:
            found.append(r)
            r = max(r + 1, math.floor(r * self.growth))
        return found


@dataclass(frozen=True)
class Elimination:
    """A configuration dropped at a look: its paired change against the best then."""

    config: int
    rounds: int
    best: int
    change: float
    ci_low: float
    ci_high: float
    p_adjusted: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Look:
    """What one look decided."""

    rounds: int
    best: int
    alive_before: tuple[int, ...]
    eliminated: tuple[Elimination, ...]
    alive: tuple[int, ...]
    stop: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "best": self.best,
                "alive_before": list(self.alive_before),
                "eliminated": [e.to_dict() for e in self.eliminated],
                "alive": list(self.alive), "stop": self.stop}


def look(table: np.ndarray[Any, np.dtype[np.float64]], alive: Sequence[int],
         policy: RacePolicy) -> Look:
    """Compare every configuration in ``alive`` with the current best over the rounds of
    ``table`` (shape ``(rounds, configurations)``; the alive columns must be complete)."""
    alive = tuple(alive)
    rounds = int(table.shape[0])
    if len(alive) == 1:
        return Look(rounds, alive[0], alive, (), alive, STOP_ONE)
    block = table[:, list(alive)]
    if not np.all(np.isfinite(block)) or np.any(block <= 0):
        raise ValueError("a look needs every alive configuration in every round")
    levels = fit_rounds(block).levels
    pick = int(np.argmax(levels) if policy.higher_is_better else np.argmin(levels))
    best = alive[pick]
    others = [k for k in range(len(alive)) if k != pick]
    logs = np.log(block)
    d = (logs[:, others] - logs[:, [pick]]).T  # each other configuration vs the best
    stats = signed_rank_batch(d, alpha=policy.alpha)
    adjusted = holm([float(p) for p in stats.p])
    eliminated: list[Elimination] = []
    equivalent = 0
    for row, k in enumerate(others):
        low, high = math.expm1(float(stats.low[row])), math.expm1(float(stats.high[row]))
        outcome = decide(low, high, adjusted[row], alpha=policy.alpha,
                         noise_band=policy.noise_band)
        worse = "lower" if policy.higher_is_better else "higher"
        if outcome == worse:
            eliminated.append(Elimination(alive[k], rounds, best,
                                          math.expm1(float(stats.center[row])), low, high,
                                          float(adjusted[row] or 1.0)))
        elif outcome == "equivalent":
            equivalent += 1
    dropped = {e.config for e in eliminated}
    remaining = tuple(c for c in alive if c not in dropped)
    stop = None
    if len(remaining) == 1:
        stop = STOP_ONE
    elif equivalent == len(remaining) - 1:
        stop = STOP_EQUIVALENT
    return Look(rounds, best, alive, tuple(eliminated), remaining, stop)


def round_order(configs: Sequence[int], seed: int, round_: int) -> list[int]:
    """The shuffled order of one round, reproducible from ``(seed, round)`` alone."""
    order = sorted(configs)
    random.Random(f"{seed}:{round_}").shuffle(order)
    return order


@dataclass
class BudgetRace:
    """The state of a racing sweep (see the module docstring). Drive it with
    :meth:`next_round`, :meth:`record` and :meth:`end_round`; :meth:`spend` adds time that
    measured nothing (warm-ups, re-runs of disturbed runs, a run's setup)."""

    n_configs: int
    budget_s: float
    seed: int
    policy: RacePolicy = field(default_factory=RacePolicy)
    max_rounds: int = MAX_ROUNDS
    spent_s: float = 0.0
    rounds_done: int = 0
    alive: list[int] = field(default_factory=list)
    looks: list[Look] = field(default_factory=list)
    stop_reason: str | None = None
    rounds_run: list[int] = field(default_factory=list)  # per configuration
    _values: list[list[float]] = field(default_factory=list)  # [round][config], NaN absent
    _seconds: list[list[float]] = field(default_factory=list)  # per configuration

    def __post_init__(self) -> None:
        if self.n_configs < 1:
            raise ValueError("a race needs at least one configuration")
        self.alive = list(range(self.n_configs))
        self.rounds_run = [0] * self.n_configs
        self._seconds = [[] for _ in range(self.n_configs)]

    # -- the schedule

    def round_seconds(self, configs: Sequence[int] | None = None) -> float | None:
        """Expected duration of a round of ``configs`` (default: the alive ones), from the
        runs so far; None before the first run."""
        every = [s for runs in self._seconds for s in runs]
        if not every:
            return None
        overall = sum(every) / len(every)
        total = 0.0
        for c in self.alive if configs is None else configs:
            mine = self._seconds[c]
            total += sum(mine) / len(mine) if mine else overall
        return total

    def next_round(self) -> list[int] | None:
        """The order of the next round, or None when the race is over (``stop_reason``)."""
        if self.stop_reason is not None:
            return None
        if self.rounds_done >= self.max_rounds:
            self.stop_reason = STOP_MAX_ROUNDS
            return None
        expected = self.round_seconds()
        if (self.rounds_done >= MIN_ROUNDS_ANY and expected is not None
                and self.spent_s + expected > self.budget_s):
            self.stop_reason = STOP_BUDGET
            return None
        return round_order(self.alive, self.seed, self.rounds_done)

    def spend(self, seconds: float) -> None:
        self.spent_s += max(0.0, seconds)

    def record(self, config: int, value: float, seconds: float) -> None:
        """A measured run of ``config`` in the current round (a later one replaces it)."""
        while len(self._values) <= self.rounds_done:
            self._values.append([math.nan] * self.n_configs)
        if math.isnan(self._values[self.rounds_done][config]):
            self.rounds_run[config] += 1
            self._seconds[config].append(seconds)
        self._values[self.rounds_done][config] = value
        self.spend(seconds)

    def end_round(self) -> Look | None:
        """Close the current round; at a look, race (and maybe stop)."""
        self.rounds_done += 1
        if not self.policy.is_look(self.rounds_done) or self.stop_reason is not None:
            return None
        result = look(self.table(), self.alive, self.policy)
        self.looks.append(result)
        self.alive = list(result.alive)
        if result.stop is not None:
            self.stop_reason = result.stop
        return result

    def table(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Measured values, ``(rounds done, configurations)``, NaN where none ran."""
        rows = self._values[:self.rounds_done]
        if not rows:
            return np.empty((0, self.n_configs))
        return np.asarray(rows, dtype=float)

    def eliminated(self) -> list[Elimination]:
        return [e for lk in self.looks for e in lk.eliminated]

    def to_dict(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "spent_s": round(self.spent_s, 3),
                "rounds": self.rounds_done, "rounds_per_configuration": list(self.rounds_run),
                "alive": list(self.alive), "stop_reason": self.stop_reason,
                "stop_text": STOP_TEXT.get(self.stop_reason or "", ""),
                "looks": [lk.to_dict() for lk in self.looks],
                "policy": asdict(self.policy)}
