"""The range grammar of every numeric sweep option, and comma-separated choices.

Accepted forms, which may be comma-joined (``1,2,10..40:10``):

* ``50..2000``       — the 1-2-5 series inside the bounds: 50, 100, 200, 500, 1000, 2000.
  Benchmarkers think in decades; 1-2-5 covers a decade in three roughly even log steps
  and gives the batch sizes usually tried (50 to 2000). That is for batch sizes: small integer
  dimensions (worker counts) pass ``series="linear"``, so that ``1..4`` is 1, 2, 3, 4.
* ``100..1000:100``  — linear, both bounds inclusive.
* ``1..64:x2``       — geometric, factor > 1; integer ranges round every value to the
  nearest integer and drop the duplicates rounding creates.
* ``50,100,500``     — an explicit list.

The result is de-duplicated and sorted. Anything else raises :class:`RangeError`, whose
message names the option and the offending part and lists the accepted forms, because the
user sees it verbatim as a usage error (exit 2).

Numbers are parsed as :class:`decimal.Decimal` so that ``0.1..0.5:0.1`` yields exactly
0.1, 0.2, 0.3, 0.4, 0.5 instead of accumulating binary floating-point error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal, overload

__all__ = [
    "ACCEPTED_FORMS",
    "LINEAR_FORMS",
    "MAX_VALUES",
    "DurationError",
    "RangeError",
    "parse_choices",
    "parse_duration",
    "parse_range",
]

ACCEPTED_FORMS = (
    "50..2000 (1-2-5 series), 100..1000:100 (linear), 1..64:x2 (geometric), 50,100,500 (list)"
)
#: The forms of a dimension whose bare ``A..B`` is linear (worker counts).
LINEAR_FORMS = "1..4 (every value), 2..16:2 (linear), 1..64:x2 (geometric), 1,2,4 (list)"

#: A sweep of more than this many values along one dimension is almost certainly a typo
#: (``1..100000:1``); refusing it early also keeps us from materialising huge lists.
MAX_VALUES = 1000

_SERIES_MANTISSAS = (1, 2, 5)


class RangeError(ValueError):
    """A malformed range or choice list; the message is meant for the user as-is."""

    def __init__(
        self, option: str, part: str, problem: str, hint: str = f"accepted forms: {ACCEPTED_FORMS}"
    ):
        self.option = option
        self.part = part
        self.problem = problem
        super().__init__(f"{option}: {part!r}: {problem}; {hint}")


@overload
def parse_range(
    text: str,
    *,
    name: str = ...,
    integer: Literal[True] = ...,
    minimum: float | None = ...,
    series: Literal["125", "linear"] | str = ...,
) -> list[int]: ...


@overload
def parse_range(
    text: str,
    *,
    name: str = ...,
    integer: Literal[False],
    minimum: float | None = ...,
    series: Literal["125", "linear"] | str = ...,
) -> list[float]: ...


@overload
def parse_range(
    text: str,
    *,
    name: str = ...,
    integer: bool,
    minimum: float | None = ...,
    series: Literal["125", "linear"] | str = ...,
) -> list[int] | list[float]: ...


def parse_range(
    text: str,
    *,
    name: str = "--batch-sizes",
    integer: bool = True,
    minimum: float | None = 1,
    series: Literal["125", "linear"] | str = "125",
) -> list[int] | list[float]:
    """Parse a sweep option value into a sorted list of unique numbers.

    ``name`` is the option as the user typed it, used in error messages. ``integer``
    rejects fractional bounds, steps and values (batch sizes and worker counts are counts).
    ``minimum`` rejects any value below it (``None``: no lower limit); the default of 1
    fits counts, where 0 or a negative number is meaningless. ``series`` is what a bare
    ``A..B`` expands to: ``"125"`` the 1-2-5 series, ``"linear"`` every value with step 1.
    """
    if series not in ("125", "linear"):
        raise ValueError(f"series must be '125' or 'linear', not {series!r}")
    try:
        return _parse(text, name=name, integer=integer, minimum=minimum, series=series)
    except RangeError as exc:
        if series == "linear" and str(exc).endswith(ACCEPTED_FORMS):
            raise RangeError(exc.option, exc.part, exc.problem,
                             f"accepted forms: {LINEAR_FORMS}") from None
        raise


def _parse(text: str, *, name: str, integer: bool, minimum: float | None,
           series: str) -> list[int] | list[float]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip():
        raise RangeError(name, text, "no values given")
    floor = None if minimum is None else Decimal(str(minimum))
    values: set[Decimal] = set()
    for part in parts:
        if not part:
            raise RangeError(name, text, "empty item between commas")
        generated = _parse_part(part, name=name, integer=integer, series=series)
        if floor is not None and min(generated) < floor:
            low = _show(min(generated))
            raise RangeError(name, part, f"value {low} is below the minimum {minimum:g}")
        values.update(generated)
    if len(values) > MAX_VALUES:
        raise RangeError(name, text, f"{len(values)} values, more than the limit of {MAX_VALUES}")
    ordered = sorted(values)
    if integer:
        return [int(v) for v in ordered]
    return [float(v) for v in ordered]


def parse_choices(text: str, allowed: Sequence[str], name: str) -> list[str]:
    """Parse ``on,off`` / ``off,thread,process`` into a list of allowed choices.

    Matching ignores case and surrounding spaces; the result uses the spelling in
    ``allowed``, keeps the user's order (it is also the order of the sweep table) and drops
    repeats. An unknown choice is an error that lists the allowed ones.
    """
    accepted = "allowed: " + ", ".join(allowed) + " (comma-separated)"
    by_key = {choice.casefold(): choice for choice in allowed}
    if not text.strip():
        raise RangeError(name, text, "no values given", accepted)
    chosen: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise RangeError(name, text, "empty item between commas", accepted)
        choice = by_key.get(item.casefold())
        if choice is None:
            raise RangeError(name, item, "unknown choice", accepted)
        if choice not in chosen:
            chosen.append(choice)
    return chosen


def _parse_part(part: str, *, name: str, integer: bool, series: str) -> list[Decimal]:
    if ".." not in part:
        return [_number(part, part, name=name, integer=integer, what="value")]
    if "..." in part:
        raise RangeError(name, part, "a range uses two dots, A..B")
    bounds, sep, step_text = part.partition(":")
    pieces = bounds.split("..")
    if len(pieces) != 2 or not pieces[0].strip() or not pieces[1].strip():
        raise RangeError(name, part, "a range needs exactly two bounds, A..B")
    low = _number(pieces[0], part, name=name, integer=integer, what="lower bound")
    high = _number(pieces[1], part, name=name, integer=integer, what="upper bound")
    if low > high:
        raise RangeError(name, part, f"empty range: {_show(low)} is greater than {_show(high)}")
    if not sep:
        if series == "linear":
            return _linear(low, high, Decimal(1), part, name=name)
        return _series_125(low, high, part, name=name)
    step_text = step_text.strip()
    if step_text[:1] in ("x", "X"):
        factor = _number(step_text[1:], part, name=name, integer=False, what="factor")
        return _geometric(low, high, factor, part, name=name, integer=integer)
    step = _number(step_text, part, name=name, integer=integer, what="step")
    return _linear(low, high, step, part, name=name)


def _number(text: str, part: str, *, name: str, integer: bool, what: str) -> Decimal:
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RangeError(name, part, f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise RangeError(name, part, f"{what} {text!r} is not a finite number")
    if integer and value != value.to_integral_value():
        raise RangeError(name, part, f"{what} {text!r} is not an integer")
    return value


def _check_count(count: int, part: str, *, name: str) -> None:
    # Checked before generating, so that a typo like 1..10000000:1 fails instantly.
    if count > MAX_VALUES:
        raise RangeError(name, part, f"{count} values, more than the limit of {MAX_VALUES}")


def _series_125(low: Decimal, high: Decimal, part: str, *, name: str) -> list[Decimal]:
    if low <= 0:
        raise RangeError(name, part, "a 1-2-5 series needs a lower bound > 0")
    # Decimal logarithms: float ones would overflow or underflow on bounds like 1e-400.
    first = int(low.log10().to_integral_value(ROUND_FLOOR)) - 1  # a decade of slack each side
    last = int(high.log10().to_integral_value(ROUND_FLOOR)) + 1
    _check_count(len(_SERIES_MANTISSAS) * (last - first - 1), part, name=name)
    values = [
        Decimal(m).scaleb(exponent)
        for exponent in range(first, last + 1)
        for m in _SERIES_MANTISSAS
    ]
    inside = [v for v in values if low <= v <= high]
    _check_count(len(inside), part, name=name)
    if not inside:
        raise RangeError(
            name, part, f"no 1-2-5 series value (1, 2, 5, 10, 20, 50, …) lies inside {part}"
        )
    return inside


def _linear(low: Decimal, high: Decimal, step: Decimal, part: str, *, name: str) -> list[Decimal]:
    if step <= 0:
        raise RangeError(name, part, "step must be > 0")
    count = int((high - low) // step) + 1
    _check_count(count, part, name=name)
    return [low + i * step for i in range(count)]


def _geometric(
    low: Decimal, high: Decimal, factor: Decimal, part: str, *, name: str, integer: bool
) -> list[Decimal]:
    if factor <= 1:
        raise RangeError(name, part, "factor must be > 1 (e.g. x2)")
    if low <= 0:
        raise RangeError(name, part, "a geometric range needs a lower bound > 0")
    # floor(log(high/low) / log(factor)) + 1 terms; the +1e-9 absorbs rounding in the
    # logarithms when high is an exact power (1..64:x2 has 7 terms, not 6).
    count = (
        int(((high / low).ln() / factor.ln() + Decimal("1e-9")).to_integral_value(ROUND_FLOOR)) + 1
    )
    _check_count(count, part, name=name)
    values: list[Decimal] = []
    value = low
    while value <= high:
        values.append(value.to_integral_value(rounding=ROUND_HALF_UP) if integer else value)
        value *= factor
    return values


def _show(value: Decimal) -> str:
    return format(value.normalize(), "f")


# ---- durations --------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


class DurationError(ValueError):
    """A malformed duration (``--budget``, ``--duration``); the message is for the user."""


def parse_duration(text: str, *, name: str = "--budget") -> float:
    """``5m``, ``90s``, ``1h``, ``2m30s`` or a bare number of seconds → seconds (> 0)."""
    raw = text.strip().replace(" ", "")
    total = 0.0
    position = 0
    units: list[str] = []
    while position < len(raw):
        match = _DURATION.match(raw, position)
        if match is None or match.end() == position:
            break
        unit = (match.group(2) or "").lower()
        if unit in units or (not unit and match.end() != len(raw)):
            break
        units.append(unit)
        total += float(match.group(1)) * _UNIT_SECONDS[unit]
        position = match.end()
    if not raw or position != len(raw) or total <= 0:
        raise DurationError(f"{name}: {text!r} is not a duration > 0; use e.g. 5m, 90s, "
                            "1h or 2m30s (a bare number is seconds)")
    return total
