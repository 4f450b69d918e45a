"""Rows of the default mapping with the values that break drivers: emoji and CJK at the
full ``str(n)`` length, decimals at full precision, microseconds, NULLs, long text.

:func:`canonical` brings a value read back from any backend to the mapper's canonical
Python type, so contents are compared exactly across dialects (SQLite stores decimals as
text, psqlODBC returns booleans as '0'/'1', MariaDB as 0/1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping as AnyMapping, Sequence
from decimal import Decimal
from typing import Any

from migrator.coerce import TEXT
from migrator.mapping import ColumnType, Mapping, Table, default_mapping

Row = tuple[Any, ...]

EMOJI = "😀🎉🚀✨👍🏽"
CJK = "東京都渋谷区神南一丁目"


def _fill(text: str, n: int) -> str:
    """``text`` repeated to exactly ``n`` code points."""
    return (text * (n // max(1, len(text)) + 1))[:n]


def column_types(mapping: Mapping, table: Table) -> list[ColumnType]:
    types = [mapping.key_type]
    if table.position_column:
        types.append(ColumnType("int"))
    types.extend(c.type for c in table.columns)
    return types


def _value(ctype: ColumnType, i: int, required: bool) -> Any:
    """A deterministic, awkward value of ``ctype`` for row ``i``; None every 3rd optional."""
    if not required and i % 3 == 2:
        return None
    kind = ctype.kind
    if kind == "int":
        return [2**31 - 1, -(2**31), 0, 42 + i][i % 4]
    if kind == "bigint":
        return [2**63 - 1, -(2**63), 7 * i][i % 3]
    if kind == "decimal":
        assert ctype.precision is not None and ctype.scale is not None
        digits = ctype.precision - ctype.scale
        big = Decimal(("9" * digits) + "." + ("9" * ctype.scale)) if ctype.scale else \
            Decimal("9" * digits)
        return [big, -big, Decimal("0." + "0" * (ctype.scale - 1) + "1") if ctype.scale
                else Decimal(1), Decimal(i).scaleb(-ctype.scale)][i % 4]
    if kind == "str":
        assert ctype.length is not None
        n = ctype.length
        return [_fill(EMOJI, n), _fill(CJK, n), _fill("Ünïcödé ", n)[: max(1, n // 2)],
                _fill(f"ascii-{i}-", n)][i % 4]
    if kind == "text":
        return [_fill(EMOJI + CJK + "\n\"'\\;%?", 12_000), "", "short ✓", "x" * 5000][i % 4]
    if kind == "date":
        return [dt.date(1900, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29),
                dt.date(2000, 1, 1) + dt.timedelta(days=i)][i % 4]
    if kind == "datetime":
        return [dt.datetime(2024, 2, 29, 23, 59, 59, 999999), dt.datetime(1970, 1, 1),
                dt.datetime(2038, 1, 19, 3, 14, 8, 1),
                dt.datetime(2001, 1, 1, 12) + dt.timedelta(seconds=i, microseconds=i)][i % 4]
    if kind == "bool":
        return [True, False][i % 2]
    raise AssertionError(kind)


def table_rows(mapping: Mapping, table: Table, records: int) -> list[Row]:
    """``records`` root rows, or 2 child rows per record for a child table."""
    required = [True] + ([True] if table.position_column else []) + \
        [c.required for c in table.columns]
    types = column_types(mapping, table)
    rows: list[Row] = []
    per = 2 if table.position_column else 1
    for r in range(records):
        for p in range(1, per + 1):
            i = r * per + p
            vals = [_value(t, i, req) for t, req in zip(types, required, strict=True)]
            vals[0] = 1_000_000 + r  # the key: unique, shared with the children
            if table.position_column:
                vals[1] = p
            rows.append(tuple(vals))
    return rows


def default_rows(records: int = 12) -> tuple[Mapping, dict[str, list[Row]]]:
    m = default_mapping()
    return m, {t.name: table_rows(m, t, records) for t in m.tables}


def adapt(rows: Sequence[Row], types: Sequence[ColumnType],
          adapters: AnyMapping[str, Callable[[Any], Any] | str]) -> list[Row]:
    """Apply a dialect's value adapters as the mapper does (None stays None; the
    ``coerce.TEXT`` marker means canonical text)."""
    fns = [_text_of(t) if adapters.get(t.kind) == TEXT else adapters.get(t.kind)
           for t in types]
    return [tuple(v if v is None or f is None else f(v) for v, f in zip(r, fns, strict=True))
            for r in rows]


def _text_of(ctype: ColumnType) -> Callable[[Any], Any]:
    if ctype.kind == "decimal":
        return lambda v: format(v, "f")
    if ctype.kind == "datetime":
        return lambda v: v.isoformat(sep=" ")
    return lambda v: v.isoformat()


def canonical(value: Any, ctype: ColumnType) -> Any:
    if value is None:
        return None
    kind = ctype.kind
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "bool":
        return bool(int(value))
    if kind == "date":
        return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) \
            else dt.date.fromisoformat(str(value)[:10])
    if kind == "datetime":
        return value if isinstance(value, dt.datetime) else \
            dt.datetime.fromisoformat(str(value))
    if kind in ("int", "bigint"):
        return int(value)
    return value


def canonical_rows(rows: Sequence[Row], types: Sequence[ColumnType]) -> list[Row]:
    out = [tuple(canonical(v, t) for v, t in zip(r, types, strict=True)) for r in rows]
    return sorted(out, key=lambda r: (r[0], r[1]) if len(types) > 1 else (r[0],))
