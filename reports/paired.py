"""Paired analysis of a sweep's rounds: the table, the comparison families, Friedman, drift.

Pure functions over a :class:`RoundsTable` — throughputs (or times) indexed by round and
configuration — built on :mod:`reports.stats`. :mod:`reports.summary` turns the results into
the sweep summary's sentences; this module only computes.

Why pairs: a sweep runs every configuration once per round, in a shuffled order, so the runs
of one round ran seconds apart. Whatever the host was doing then (a neighbour's burst, the
VM's CPU speed drifting), it did to all of them; the ratio of two of them cancels it. A
configuration eliminated by racing simply has fewer rounds: every comparison uses the rounds
both sides ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.stats import (
    ALPHA,
    NOISE_BAND,
    Friedman,
    LevelShift,
    PairedComparison,
    RoundFit,
    fit_rounds,
    friedman,
    holm_family,
    level_shift,
    location_p,
    paired_compare,
)

__all__ = [
    "RoundsTable",
    "compare_in_rounds",
    "dimension_effects",
    "level_shift_of",
    "paired_family",
]

_Array = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class RoundsTable:
    """``values[r, k]``: configuration ``k``'s value in the ``r``-th round that ran (NaN when
    it did not run then); ``round_ids``: the sweep's round numbers of the rows."""

    values: _Array
    round_ids: tuple[int, ...]

    @classmethod
    def from_samples(cls, samples: Sequence[Sequence[float]],
                     rounds: Sequence[Sequence[int]]) -> RoundsTable:
        """One list of values and one of round numbers per configuration (a later value of
        the same round replaces an earlier one: a re-run replaces the run it repeats)."""
        if len(samples) != len(rounds):
            raise ValueError("one list of round numbers per configuration")
        ids = sorted({int(r) for rs in rounds for r in rs})
        row = {r: i for i, r in enumerate(ids)}
        values = np.full((len(ids), len(samples)), np.nan)
        for k, (vs, rs) in enumerate(zip(samples, rounds, strict=True)):
            if len(vs) != len(rs):
                raise ValueError("one round number per value")
            for v, r in zip(vs, rs, strict=True):
                values[row[int(r)], k] = float(v)
        return cls(values, tuple(ids))

    @property
    def n_configs(self) -> int:
        return int(self.values.shape[1])

    def rounds_of(self, k: int) -> int:
        return int(np.sum(np.isfinite(self.values[:, k])))

    def common(self, a: int, b: int) -> tuple[_Array, _Array]:
        """The values of ``a`` and ``b`` in the rounds both ran."""
        both = np.isfinite(self.values[:, a]) & np.isfinite(self.values[:, b])
        return self.values[both, a], self.values[both, b]

    def complete_rows(self, columns: Sequence[int]) -> _Array:
        block = self.values[:, list(columns)]
        result: _Array = block[np.all(np.isfinite(block), axis=1)]
        return result

    def fit(self) -> RoundFit:
        return fit_rounds(self.values)


def compare_in_rounds(table: RoundsTable, a: int, b: int, *, higher_is_better: bool = True,
                      alpha: float = ALPHA, noise_band: float = NOISE_BAND
                      ) -> PairedComparison | None:
    """``b`` against ``a`` over their common rounds (None when they share none)."""
    xa, xb = table.common(a, b)
    if xa.size == 0:
        return None
    return paired_compare(xa, xb, higher_is_better=higher_is_better, alpha=alpha,
                          noise_band=noise_band)


def paired_family(table: RoundsTable, pairs: Sequence[tuple[int, int]], *,
                  higher_is_better: bool = True, alpha: float = ALPHA,
                  noise_band: float = NOISE_BAND) -> list[PairedComparison | None]:
    """``b`` against ``a`` for each ``(a, b)``, Holm-corrected over the whole family."""
    found = [compare_in_rounds(table, a, b, higher_is_better=higher_is_better, alpha=alpha,
                               noise_band=noise_band) for a, b in pairs]
    present = [c for c in found if c is not None]
    adjusted = iter(holm_family(present))
    return [None if c is None else next(adjusted) for c in found]


def dimension_effects(table: RoundsTable, configs: Sequence[Mapping[str, Any]], *,
                      alpha: float = ALPHA) -> dict[str, Friedman]:
    """For each dimension with two or more values: does it matter at all? Friedman's test
    with one block per (round, combination of the other dimensions) in which every value of
    this dimension ran."""
    dims = list(configs[0]) if configs else []
    effects: dict[str, Friedman] = {}
    for dim in dims:
        levels = list(dict.fromkeys(c[dim] for c in configs))
        if len(levels) < 2:
            continue
        groups: dict[tuple[Any, ...], dict[Any, int]] = {}
        for k, c in enumerate(configs):
            key = tuple((d, c[d]) for d in dims if d != dim)
            groups.setdefault(key, {})[c[dim]] = k
        blocks: list[_Array] = []
        for members in groups.values():
            if len(members) != len(levels):
                continue
            rows = table.complete_rows([members[v] for v in levels])
            blocks.extend(rows)
        effects[dim] = friedman(np.asarray(blocks) if blocks else np.empty((0, len(levels))),
                                alpha=alpha)
    return effects


def level_shift_of(table: RoundsTable, fit: RoundFit, reference: tuple[int, int] | None,
                   labels: Sequence[str], *, alpha: float = ALPHA) -> LevelShift | None:
    """The strongest level shift of the host across rounds; with ``reference`` (a, b), the
    paired change of b vs a on each side of it, and whether those ratios differ across it
    (they should not: the shift is the host's, and each round's ratio cancels it)."""
    shift = level_shift(fit.rounds, alpha=alpha)
    if shift is None or reference is None:
        return shift
    a, b = reference
    split = shift.round
    before = _log_ratios(table.values[:split, a], table.values[:split, b])
    after = _log_ratios(table.values[split:, a], table.values[split:, b])
    p = location_p(before, after)
    return LevelShift(shift.round, shift.rounds, shift.change, shift.p_value,
                      shift.significant, paired_label=f"{labels[b]} vs {labels[a]}",
                      paired_before=_center(before), paired_after=_center(after),
                      paired_p=p, paired_consistent=None if p is None else p >= alpha)


def _log_ratios(a: _Array, b: _Array) -> _Array:
    both = np.isfinite(a) & np.isfinite(b)
    result: _Array = np.log(b[both]) - np.log(a[both])
    return result


def _center(d: _Array) -> float | None:
    """Hodges-Lehmann centre of log-ratios, as a change."""
    if d.size == 0:
        return None
    i, j = np.triu_indices(d.size)
    return math.expm1(float(np.median(0.5 * (d[i] + d[j]))))
