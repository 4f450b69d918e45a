"""Text → Python value conversion for each mapping type, strict and fast.

Every converter takes the XML text (never None) and returns a canonical Python value, or
raises :class:`InvalidValue` whose ``code`` is one of :data:`REASON_CODES`. Nothing is
silently rounded or truncated: a value that does not fit is a quarantine reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from migrator.columntype import ColumnType

REASON_CODES = (
    "missing_required", "bad_number", "out_of_range", "bad_date", "bad_datetime", "bad_bool",
    "too_long", "malformed_record", "duplicate_key",
)

INT_RANGE = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_CLIP = 40
_WIDE = Context(prec=80)  # decimal(38,s) values exceed the default 28-digit context


def _show(text: str) -> str:
    return repr(text if len(text) <= _CLIP else text[:_CLIP] + "…")


class InvalidValue(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


Converter = Callable[[str], Any]


def _integer(kind: str) -> Converter:
    lo, hi = INT_RANGE[kind]

    def convert(text: str) -> int:
        s = text.strip()
        # int() also accepts "1_000" and non-ASCII digits; XML integers allow neither.
        if not s.isascii() or "_" in s:
            raise InvalidValue("bad_number", f"not an integer: {_show(text)}")
        try:
            v = int(s)
        except ValueError:
            raise InvalidValue("bad_number", f"not an integer: {_show(text)}") from None
        if not lo <= v <= hi:
            raise InvalidValue("out_of_range", f"{v} outside the {kind} range")
        return v

    return convert


def _decimal(precision: int, scale: int) -> Converter:
    max_int_digits = precision - scale
    quantum = Decimal(1).scaleb(-scale)

    def convert(text: str) -> Decimal:
        s = text.strip()
        if not s.isascii() or "_" in s:
            raise InvalidValue("bad_number", f"not a decimal number: {_show(text)}")
        try:
            v = Decimal(s)
        except InvalidOperation:
            raise InvalidValue("bad_number", f"not a decimal number: {_show(text)}") from None
        if not v.is_finite():
            raise InvalidValue("bad_number", f"not a finite number: {_show(text)}")
        # Canonical form: exactly `scale` decimal places ("1.5" → "1.50"), but never a
        # rounding: digits beyond the scale must be zeros.
        if v and v.adjusted() >= max_int_digits:
            raise InvalidValue("out_of_range", f"{s} does not fit decimal({precision},{scale})")
        q = v.quantize(quantum, context=_WIDE)
        if q != v:
            raise InvalidValue("out_of_range", f"{s} has more than {scale} decimal places")
        v = q if q else abs(q)  # no "-0.00"
        return v

    return convert


def _string(length: int | None) -> Converter:
    if length is None:
        return str

    def convert(text: str) -> str:
        if len(text) > length:
            raise InvalidValue("too_long", f"too long: {len(text)} characters > {length}")
        return text

    return convert


def _date(text: str) -> dt.date:
    s = text.strip()
    # fromisoformat() in 3.11 also takes "20240305" and week dates; XML dates are YYYY-MM-DD.
    if len(s) != 10 or s[4] != "-" or s[7] != "-":
        raise InvalidValue("bad_date", f"not a date (YYYY-MM-DD): {_show(text)}")
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise InvalidValue("bad_date", f"not a valid date: {_show(text)}") from None


def _datetime(text: str) -> dt.datetime:
    """ISO 8601 date and time; an offset is converted to UTC and dropped (naive UTC)."""
    s = text.strip()
    if len(s) < 16 or s[4] != "-" or s[10] not in "T ":
        raise InvalidValue("bad_datetime", f"not a datetime (YYYY-MM-DDThh:mm:ss): {_show(text)}")
    try:
        v = dt.datetime.fromisoformat(s)
    except ValueError:
        raise InvalidValue("bad_datetime", f"not a valid datetime: {_show(text)}") from None
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


def _bool(text: str) -> bool:
    v = _BOOLS.get(text.strip().lower())
    if v is None:
        raise InvalidValue("bad_bool", f"not a boolean (true/false/1/0): {_show(text)}")
    return v


_PLAIN_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")


def _decimal_text(precision: int, scale: int) -> Converter:
    """Like :func:`_decimal` but returns canonical text ("12.50"), skipping Decimal for the
    plain forms XML exports use; anything else (exponents, "+1", ".5") takes the exact path."""
    exact = _decimal(precision, scale)
    max_int_digits = precision - scale
    match = _PLAIN_DECIMAL.fullmatch

    def convert(text: str) -> str:
        m = match(text) or match(text.strip())
        if m is None:
            return format(exact(text), "f")
        sign, whole, frac = m.groups()
        whole = whole.lstrip("0") or "0"
        frac = frac or ""
        if len(frac) > scale:
            if frac[scale:].strip("0"):
                raise InvalidValue("out_of_range", f"{text.strip()} has more than {scale} "
                                   f"decimal places")
            frac = frac[:scale]
        if len(whole) > max_int_digits and whole != "0":
            raise InvalidValue("out_of_range",
                               f"{text.strip()} does not fit decimal({precision},{scale})")
        out = f"{whole}.{frac.ljust(scale, '0')}" if scale else whole
        if sign and out.strip("0.") and (whole != "0" or frac.strip("0")):
            out = "-" + out
        return out

    return convert


def _date_text(text: str) -> str:
    _date(text)
    return text.strip()


def _datetime_text(text: str) -> str:
    s = text.strip()
    if len(s) == 19 and s[10] in "T ":  # no offset, no fraction: already canonical
        _datetime(s)
        return f"{s[:10]} {s[11:]}"
    return _datetime(s).isoformat(sep=" ")


def _bool_int(text: str) -> int:
    return 1 if _bool(text) else 0


TEXT = "text"
"""Marker a dialect's ``value_adapters()`` can give for decimal, date and datetime: use the
canonical text converter directly (what SQLite stores) instead of a Python value."""

_TEXT_CONVERTERS: dict[str, Converter] = {"date": _date_text, "datetime": _datetime_text}


def coercer(ctype: ColumnType, *, as_text: bool = False) -> Converter:
    """The strict converter for one mapping type (``as_text``: canonical text output)."""
    kind = ctype.kind
    if as_text:
        if kind == "decimal":
            assert ctype.precision is not None and ctype.scale is not None
            return _decimal_text(ctype.precision, ctype.scale)
        if kind in _TEXT_CONVERTERS:
            return _TEXT_CONVERTERS[kind]
    if kind in INT_RANGE:
        return _integer(kind)
    if kind == "decimal":
        assert ctype.precision is not None and ctype.scale is not None
        return _decimal(ctype.precision, ctype.scale)
    if kind == "str":
        return _string(ctype.length)
    if kind == "text":
        return _string(None)
    if kind == "date":
        return _date
    if kind == "datetime":
        return _datetime
    if kind == "bool":
        return _bool
    raise AssertionError(f"unhandled type {ctype}")
