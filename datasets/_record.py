"""What a dataset profile is: a seeded stream of records, each rendered as XML text."""

from __future__ import annotations

from typing import NamedTuple, Protocol

# Reason codes of ``migrator/coerce.py`` that injected invalid records carry.
INVALID_KINDS = ("missing_required", "bad_number", "bad_date", "too_long")


class Rendered(NamedTuple):
    """One record as written: its XML text and what a migration makes of it."""

    text: str                 # starts with the record's start tag, ends with a newline
    rows: tuple[int, ...]     # rows per table (``RecordSource.tables`` order) if valid
    column: str | None        # "table.column" the injected defect violates, else None


class RecordSource(Protocol):
    """A seeded stream of records of one profile.

    Calls must come in key order: each call advances the profile's random generators, and the
    same seed with the same calls gives the same text. A record's content does not depend on
    whether it is made invalid (defects draw from a separate generator), so changing
    ``invalid_rate`` changes only the invalid records.
    """

    name: str
    first_key: int            # key of the first record; keys then increase by one
    tables: tuple[str, ...]

    def header(self) -> str: ...

    def footer(self) -> str: ...

    def render(self, key: int, defect: str | None) -> Rendered: ...
