"""What passes from the reading half of a run to the writing half.

A :class:`MappedBatch` holds records read and mapped for one transaction (plain rows, no
lxml objects, so it can cross a process boundary) and the :class:`Checkpoint` progress it
commits; :class:`StopFlag` is how either half is told to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from migrator.mapping import Mapping
from migrator.rowmap import RecordRejected, Rows


@dataclass(frozen=True)
class Checkpoint:
    """A unit's checkpoint row: how far it has been consumed, by every committed batch."""

    records_done: int = 0
    inserted: int = 0
    quarantined: int = 0
    finished: bool = False
    source_bytes: int = 0


class StopFlag(Protocol):
    """``threading.Event`` or ``multiprocessing.Event``: set it to stop after this batch."""

    def is_set(self) -> bool: ...


# unit, file, line, key, how many rows the record put in each table (in ``tables``, in
# record order) and its seq on its line (see migrator.duplicates). Counts, not the rows: a
# batch keeps thousands of records alive, and plain int tuples cost the garbage collector
# nothing, where per-record lists cost 15% of the CPU.
Record = tuple[str, str, int, str, tuple[int, ...], int]
# unit, file, line, key, code, reason, record element
Reject = tuple[str, str, int, str | None, str, str, str]
# unit, file, line, the record's texts as RecordMapper.extract returns them, its seq, its
# record element
Extracted = tuple[str, str, int, tuple[Any, ...], int, str]
# A committed record another record of the batch displaced (it came later in input order):
# unit, file, line, key, the reason it is quarantined, its record element, how many rows it
# lost in each table.
Evicted = tuple[str, str, int, str, str, str, tuple[int, ...]]


class MappedBatch:
    """Records read and mapped for one transaction: plain rows, picklable, no lxml objects.

    ``progress`` maps a unit id to ``[records_done after this batch, Δinserted,
    Δquarantined, finished]``: the checkpoint rows this batch commits.

    A batch cut for another process may carry some records only extracted (``extracted``):
    their texts, not yet checked or converted; :func:`convert_extracted` finishes them on the
    inserter's side. ``progress`` counts them as inserted until then.
    """

    def __init__(self, n_tables: int, key_parts: tuple[int, ...] | None = None) -> None:
        self.tables: list[Rows] = [[] for _ in range(n_tables)]
        # Per table, how many key columns a record's root row there starts with (0: not a
        # root table); None: one record type with a one-part key, in the first table.
        self.key_parts = key_parts
        self.records: list[Record] = []
        self.rejects: list[Reject] = []
        self.extracted: list[Extracted] = []
        # Set by the writer: root rows carry their record's input position, and the
        # committed records this batch's transaction evicted (redone on every attempt).
        self.positioned = False
        self.evicted: list[Evicted] = []
        self.progress: dict[str, list[Any]] = {}
        self.count = 0
        self.parse = self.map = 0.0
        self.cpu = 0.0  # thread CPU seconds spent reading and mapping these records
        self.position = 0  # input bytes the producer had consumed when the batch was cut

    def add(self, uid: str, path: str, line: int, rows: list[Rows], seq: int) -> None:
        """One mapped record: its rows, and how many went into each table."""
        for tbl, table_rows in zip(self.tables, rows, strict=True):
            tbl.extend(table_rows)
        key = str(rows[0][0][0]) if self.key_parts is None else \
            record_key_text(rows, self.key_parts)
        self.records.append((uid, path, line, key, tuple(map(len, rows)), seq))


def key_parts(mapping: Mapping) -> tuple[int, ...] | None:
    """:attr:`MappedBatch.key_parts` for ``mapping``."""
    if len(mapping.records) == 1 and len(mapping.root.key_columns) == 1:
        return None
    roots = {t.name for t in mapping.roots}
    return tuple(len(t.key_columns) if t.name in roots else 0 for t in mapping.tables)


def record_key_text(rows: list[Rows], parts: tuple[int, ...]) -> str:
    """A record's key as quarantine rows show it (a composite key's parts joined by '/')."""
    for n, table_rows in zip(parts, rows, strict=True):
        if n and table_rows:
            row = table_rows[0]
            return str(row[0]) if n == 1 else "/".join(str(v) for v in row[:n])
    return ""


def record_root(mapping: Mapping, counts: tuple[int, ...]) -> int:
    """The index (in ``mapping.tables``) of a mapped record's root table: the root table it
    put a row in."""
    if len(mapping.records) == 1:
        return 0
    for i, (table, n) in enumerate(zip(mapping.tables, counts, strict=True)):
        if n and table.is_root:
            return i
    raise AssertionError("a mapped record has a root row")


def convert_extracted(batch: MappedBatch, convert: Callable[[tuple[Any, ...]], list[Rows]],
                      ) -> int:
    """Check and convert the records ``batch`` carries only extracted, as the producer would
    have: rows into ``tables``, rejections into ``rejects`` and out of Δinserted. Returns how
    many records it converted; the time goes to the batch's ``map`` (and ``cpu``)."""
    extracted = batch.extracted
    if not extracted:
        return 0
    t0 = time.perf_counter()
    c0 = time.thread_time()
    for uid, path, line, texts, seq, element in extracted:
        try:
            rows = convert(texts)
        except RecordRejected as rej:
            batch.rejects.append((uid, path, line, rej.key, rej.code, rej.reason, element))
            prog = batch.progress[uid]
            prog[1] -= 1
            prog[2] += 1
        else:
            batch.add(uid, path, line, rows, seq)
    batch.extracted = []
    batch.map += time.perf_counter() - t0
    batch.cpu += time.thread_time() - c0
    return len(extracted)
