"""The column types of the mapping language, independent of any database dialect.

Below both :mod:`migrator.mapping`, which parses them, and :mod:`migrator.coerce`, which
converts XML text to each of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPE_FORMS = "int, bigint, decimal(p,s), str(n), text, date, datetime, bool"
_TYPE_RE = re.compile(
    r"^\s*(?P<kind>int|bigint|text|date|datetime|bool)\s*$"
    r"|^\s*decimal\s*\(\s*(?P<p>\d+)\s*,\s*(?P<s>\d+)\s*\)\s*$"
    r"|^\s*str\s*\(\s*(?P<n>\d+)\s*\)\s*$"
)


@dataclass(frozen=True)
class ColumnType:
    """A column type of the mapping language, independent of any database dialect."""

    kind: str  # int | bigint | decimal | str | text | date | datetime | bool
    length: int | None = None  # str(n)
    precision: int | None = None  # decimal(p,s)
    scale: int | None = None

    def __str__(self) -> str:
        if self.kind == "str":
            return f"str({self.length})"
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        return self.kind

    @classmethod
    def parse(cls, text: str) -> ColumnType:
        """Parse ``decimal(12,2)``, ``str(40)``, ``bigint`` …; raise ValueError with the forms."""
        m = _TYPE_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"unknown type {text!r}; use one of {TYPE_FORMS}")
        if m.group("kind"):
            return cls(m.group("kind"))
        if m.group("n") is not None:
            n = int(m.group("n"))
            if not 1 <= n <= 1_000_000:
                raise ValueError(f"str({n}): length must be 1..1000000 (use text for longer)")
            return cls("str", length=n)
        p, s = int(m.group("p")), int(m.group("s"))
        if not (1 <= p <= 38 and 0 <= s <= p):
            raise ValueError(f"decimal({p},{s}): need 1 <= p <= 38 and 0 <= s <= p")
        return cls("decimal", precision=p, scale=s)
