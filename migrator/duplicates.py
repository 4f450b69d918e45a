"""Which of two records with the same key is kept: the first one in input order.

*Input order* is the run's files sorted by path, and in each file its records in document
order. A record's *position* is ``FILE:LINE:SEQ``: the file's index in that order, the line
lxml reports for the record (where its start tag ends) and how many records before it report
the same line. It does not depend on how a file was cut into byte ranges or on which worker
read the record (:func:`migrator.partition.range_first_seq`), so it is the same in every run
of the same input. The engine stores it with the record's root row
(:data:`migrator.mapping.POSITION_COLUMN`).

When a record's key is already taken (``BatchWriter._insert_one_by_one``), the row holding
the key is read and locked: if its record comes first, the incoming record is quarantined
as ``duplicate_key``; if the incoming one comes first, the holder is *evicted* — its rows
deleted from every table, itself quarantined, its unit's checkpoint moved one record from
inserted to quarantined — and the incoming record inserted, all in the batch's transaction.
Whatever order workers commit in, and wherever a run was interrupted and resumed, the first
record in input order ends up stored and every other copy quarantined once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from migrator.errors import TargetError
from migrator.mapping import POSITION_COLUMN, Mapping, Record
from migrator.partition import RangeUnit, range_origins
from migrator.reader import Elements, WorkUnit
from migrator.targets.base import Connection


def duplicate_reason(conflict: str) -> str:
    """The reason stored with a record quarantined because an earlier record has its key:
    the database's message about inserting that key again (servers put the key in it). An
    evicted record gets the message of the insert that found it in the way, so the text is
    the same whichever copy was stored first, and quarantines compare across runs."""
    return f"{conflict} (of records with the same key, the first in input order is kept)"


# Rounds of insert → conflict → read the holder for one record. Each extra round means a
# concurrent transaction replaced the holder in between; past this the batch is retried.
RACE_ROUNDS = 5


class DuplicateRace(TargetError):
    """The holder of a key kept changing under concurrent writers: retry the batch."""

    sqlstate = "40001"  # a serialization failure: BatchWriter.write retries it


def parse_position(text: str) -> tuple[int, int, int]:
    rank, line, seq = text.split(":")
    return int(rank), int(line), int(seq)


def comes_first(a: str, b: str) -> bool:
    """Does the record at position ``a`` come before the one at ``b``?"""
    return parse_position(a) < parse_position(b)


class InputOrder:
    """The files of a run in input order, and every unit (file or byte range) of each.

    Built once per run from all its units — a worker reads only some of them, but positions
    and evictions concern the whole input. Picklable (it travels to worker processes).
    """

    def __init__(self, units: Iterable[WorkUnit]) -> None:
        by_path: dict[str, list[WorkUnit]] = {}
        for u in units:
            by_path.setdefault(u.path, []).append(u)
        self.paths = sorted(by_path, key=PurePath)
        self.rank = {p: i for i, p in enumerate(self.paths)}
        self.units = {p: sorted(us, key=lambda u: u.start if isinstance(u, RangeUnit) else 0)
                      for p, us in by_path.items()}
        self._origins: dict[str, list[tuple[int, int]]] = {}

    def prefix(self, path: str) -> str:
        return f"{self.rank[path]}:"

    def position(self, path: str, line: int, seq: int) -> str:
        return f"{self.prefix(path)}{line}:{seq}"

    def locate(self, position: str, record_element: Elements) -> tuple[WorkUnit, int]:
        """The unit a record at ``position`` was read from, and its line.

        The units of a file are ordered; each covers the positions from its first record's
        on, so the last unit starting at or before ``position`` holds the record. (Computing
        where each range starts reads the file up to there: done once per file, and only when
        a stored record has to be evicted.)
        """
        rank, line, seq = parse_position(position)
        path = self.paths[rank]
        units = self.units[path]
        if len(units) == 1:
            return units[0], line
        origins = self._origins.get(path)
        if origins is None:
            origins = self._origins[path] = range_origins(units, record_element)
        found = units[0]
        for unit, origin in zip(units, origins, strict=True):
            if origin <= (line, seq):
                found = unit
        return found, line


@dataclass(frozen=True)
class Holder:
    """The stored row that holds a key: its key as stored, and its record's position."""

    key: Any
    position: str | None


def find_holder(conn: Connection, record: Record, key: Sequence[Any]) -> Holder | None:
    """The root row of ``record``'s type with ``key`` (its key columns' values), locked until
    the transaction ends; None if there is none (a concurrent transaction deleted it since
    the insert failed)."""
    root = record.root
    sql = conn.dialect.select_for_update_sql(
        root.name, (*root.key_columns, POSITION_COLUMN), root.key_columns)
    rows = conn.query(sql, tuple(key))
    if not rows:
        return None
    *stored, position = rows[0]
    return Holder(stored[0] if len(stored) == 1 else tuple(stored),
                  None if position is None else str(position))


def delete_record(conn: Connection, mapping: Mapping, record: Record, key: Any
                  ) -> tuple[int, ...]:
    """Delete the rows of ``record``'s type with ``key`` (a value, or a tuple for a composite
    key) from every table of the type, children before their parents (every row carries the
    record key in its first columns); returns how many rows each table of the mapping lost,
    in mapping order."""
    d = conn.dialect
    q = d.quote
    values = key if isinstance(key, tuple) else (key,)
    lost = dict.fromkeys((t.name for t in mapping.tables), 0)
    for table in reversed(record.tables):
        columns = table.key_columns[:len(values)]
        where = " AND ".join(f"{q(c)} = {d.placeholder}" for c in columns)
        if not table.is_root:
            # Counted with a locking read: a plain one may see an older snapshot (InnoDB).
            lost[table.name] = len(conn.query(d.select_for_update_sql(
                table.name, table.primary_key, columns), values))
        else:
            lost[table.name] = 1
        conn.execute(f"DELETE FROM {d.table_ref(table.name)} WHERE {where}", values)
    return tuple(lost[t.name] for t in mapping.tables)


def key_text(holder: Holder, incoming: str) -> str:
    """The evicted record's key as its own quarantine row shows it: the stored text for a
    string key (a collation may match keys that differ, e.g. in trailing spaces), else the
    incoming record's (equal keys of other types print alike)."""
    return holder.key if isinstance(holder.key, str) else incoming


def checkpoint_moves(evicted: Sequence[tuple[Any, ...]]) -> dict[str, int]:
    """Per unit id, how many of its committed records a batch evicted."""
    out: dict[str, int] = {}
    for e in evicted:
        out[e[0]] = out.get(e[0], 0) + 1
    return out
