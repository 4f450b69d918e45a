"""BatchWriter: the writing half of a run (each batch, its quarantine and checkpoint rows
in one transaction)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from migrator.batch import MappedBatch, Record, record_root
from migrator.config import EngineConfig
from migrator.connection import BatchConnections
from migrator.duplicates import (
    RACE_ROUNDS,
    DuplicateRace,
    Holder,
    InputOrder,
    checkpoint_moves,
    comes_first,
    delete_record,
    duplicate_reason,
    find_holder,
    key_text,
)
from migrator.errors import TargetError, UnitTaken
from migrator.mapping import POSITION_COLUMN, Mapping
from migrator.rowmap import Rows
from migrator.stats import BatchStat, Progress, RunStats
from migrator.targets.base import (
    CHECKPOINT_TABLE,
    QUARANTINE_TABLE,
    Connection,
    IntegrityViolation,
    Target,
    unit_key,
)

QUARANTINE_COLUMNS = ("unit", "file", "line", "record_key", "reason_code", "reason",
                      "record_element")


class BatchWriter:
    """Inserts each batch with its quarantine and checkpoint rows in one transaction."""

    def __init__(self, target: Target, mapping: Mapping, config: EngineConfig,
                 stats: RunStats, t0: float, *, order: InputOrder,
                 on_batch: Progress | None = None, worker: int = 0) -> None:
        self.target = target
        self.mapping = mapping
        self.config = config
        self.stats = stats
        self.t0 = t0
        self.on_batch = on_batch
        self.worker = worker
        self.transfer = 0.0  # unpickling batches received from another process
        self.convert = 0.0  # converting records the producer only extracted (seconds)
        self.converted = 0  # ... and how many
        self.order = order  # every unit of the run: where each record stands in the input
        self._columns = [t.column_names + ((POSITION_COLUMN,) if t.is_root else ())
                         for t in mapping.tables]
        # Each record type's element and the index of its root table (counts per type).
        index = {t.name: i for i, t in enumerate(mapping.tables)}
        self._roots = [(r.element, index[r.root.name]) for r in mapping.records]
        for element, _ in self._roots:
            stats.records.setdefault(element, {"read": 0, "inserted": 0, "quarantined": 0})
        self.connections = BatchConnections(target, config.connection, self._connected)
        # Unit id → records_done as this writer last committed it (config.fence_units).
        self.fence: dict[str, int] | None = None

    def _connected(self, seconds: float) -> None:
        self.stats.stages["connect"] += seconds
        self.stats.connects += 1

    def open(self) -> None:
        self.config.retry.call(self.connections.open, cleanup=self._drop_connection)

    def close(self) -> None:
        self.connections.close()

    def write(self, batch: MappedBatch) -> None:
        """Commit the batch, never inserting it twice.

        A transient failure (lost connection, server restart, deadlock victim,
        serialization failure) starts one bounded retry (``config.retry``) that covers
        everything after it: dropping the session, reconnecting, reading the checkpoint
        rows to learn whether a COMMIT whose acknowledgement was lost did land, and writing
        the batch again. A failure during any of these is one more failed attempt.
        """
        retry = self.config.retry.start()
        before = _BatchState(batch)
        try:
            while True:
                try:
                    if retry.failures:
                        # A COMMIT whose acknowledgement was lost may have landed: the
                        # checkpoint rows tell, and a batch already in must not go in again.
                        if self._already_committed(batch):
                            now = time.perf_counter()
                            timing = (now, now, now, 0.0)
                            break
                        before.restore(batch)  # (the failed attempt may have moved rejects)
                    timing = self._write_once(batch)
                    break
                except TargetError as exc:
                    self._drop_connection()
                    retry.after(exc)
        finally:
            self.stats.retries += retry.failures
            self.stats.retry_wait_s += retry.waited
        if self.fence is not None:
            self.fence.update((uid, p[0]) for uid, p in batch.progress.items())
        self._account(batch, *timing)

    def _write_once(self, batch: MappedBatch) -> tuple[float, float, float, float]:
        conn, connect_s = self.connections.checkout()
        pc = time.perf_counter
        t0 = pc()
        method = self.config.insert_method
        if not batch.positioned:
            self._position(batch)
        batch.evicted = []  # (an earlier attempt's evictions were rolled back with it)
        try:
            conn.begin()
            try:
                for ti, rows in enumerate(batch.tables):
                    if rows:
                        conn.insert_rows(self.mapping.tables[ti].name, self._columns[ti],
                                         rows, method)
            except IntegrityViolation:
                conn.rollback()
                conn.begin()
                # (Moves offending records to the rejects: re-running this batch after a
                # transient failure gives the same result.)
                self._insert_one_by_one(conn, batch)
            t1 = pc()
            if batch.rejects or batch.evicted:
                conn.insert_rows(QUARANTINE_TABLE, QUARANTINE_COLUMNS, batch.rejects + [
                    (u, f, line, k, "duplicate_key", reason, element)
                    for u, f, line, k, reason, element, _ in batch.evicted], None)
            self._save_checkpoints(conn, batch)
            conn.commit()
            t2 = pc()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            self.connections.failed(conn)  # a session that failed never goes back to a pool
            raise
        self.connections.give_back(conn)
        return t0, t1, t2, connect_s

    def _drop_connection(self) -> None:
        """After a transient error the session may be dead: the next attempt reconnects."""
        self.connections.drop()

    def _already_committed(self, batch: MappedBatch) -> bool:
        if not batch.progress:
            return False
        conn = self.target.connect()
        try:
            landed = self._checkpoints_match(conn, batch)
        except BaseException:
            conn.discard()
            raise
        conn.close()
        return landed

    @staticmethod
    def _checkpoints_match(conn: Connection, batch: MappedBatch) -> bool:
        d = conn.dialect
        sql = (f"SELECT records_done, finished FROM {d.table_ref(CHECKPOINT_TABLE)} "
               f"WHERE unit_key = {d.placeholder}")
        for unit_id, (done, _, _, finished) in batch.progress.items():
            row = conn.query(sql, (unit_key(unit_id),))
            if not row or (int(row[0][0]), bool(int(row[0][1]))) != (done, finished):
                return False
        return True

    def _account(self, batch: MappedBatch, t0: float, t1: float, t2: float,
                 connect_s: float) -> None:
        stats = self.stats
        # Evicted records were counted as inserted by the batch that stored them.
        inserted = len(batch.records) - len(batch.evicted)
        quarantined = len(batch.rejects) + len(batch.evicted)
        for table, rows in zip(self.mapping.tables, batch.tables, strict=True):
            stats.rows[table.name] += len(rows)
        for *_, lost in batch.evicted:
            for table, n in zip(self.mapping.tables, lost, strict=True):
                stats.rows[table.name] -= n
        stats.records_read += batch.count
        stats.read_map_cpu_s += batch.cpu
        stats.inserted += inserted
        stats.quarantined += quarantined
        self._account_types(batch, inserted, quarantined)
        st = stats.stages
        st["parse"] += batch.parse
        st["map"] += batch.map
        st["insert"] += t1 - t0
        st["commit"] += t2 - t1
        if batch.count:  # (an empty flush only marks units finished)
            stats.batches.append(BatchStat(
                len(stats.batches), batch.count, inserted, quarantined, t0 - self.t0,
                t2 - self.t0, batch.parse, batch.map, t1 - t0, t2 - t1, connect_s,
                self.worker))
        if self.on_batch is not None:
            self.on_batch(stats, batch.position)

    def _account_types(self, batch: MappedBatch, inserted: int, quarantined: int) -> None:
        """Counts per record type. A record's root table holds one row per record; an
        evicted record was counted as inserted by the batch that stored it."""
        stats = self.stats
        if len(self._roots) == 1:
            per_type = {self._roots[0][0]: (inserted, quarantined)}
        else:
            rejected = Counter(r[6] for r in batch.rejects)
            evicted = Counter(e[5] for e in batch.evicted)
            per_type = {e: (len(batch.tables[i]) - evicted[e], rejected[e] + evicted[e])
                        for e, i in self._roots}
        for element, (ins, quar) in per_type.items():
            counts = stats.records[element]
            counts["read"] += ins + quar
            counts["inserted"] += ins
            counts["quarantined"] += quar

    def _position(self, batch: MappedBatch) -> None:
        """Append each record's input position to its root row (once per batch: a retried
        batch keeps them). A root table has exactly one row per record, in order."""
        prefix_of = self.order.prefix
        last, prefix = None, ""
        if len(self._roots) == 1:
            root = batch.tables[0]
            for i, rec in enumerate(batch.records):
                path = rec[1]
                if path is not last:  # (one string object per unit)
                    last, prefix = path, prefix_of(path)
                root[i] += (f"{prefix}{rec[2]}:{rec[5]}",)  # (InputOrder.position, inlined)
        else:
            cursor = [0] * len(batch.tables)
            for rec in batch.records:
                path = rec[1]
                if path is not last:
                    last, prefix = path, prefix_of(path)
                ti = record_root(self.mapping, rec[4])
                batch.tables[ti][cursor[ti]] += (f"{prefix}{rec[2]}:{rec[5]}",)
                cursor[ti] += 1
        batch.positioned = True

    def _insert_one_by_one(self, conn: Connection, batch: MappedBatch) -> None:
        """A constraint failed somewhere in the batch: find the records that cause it.

        Each record goes in under its own savepoint; one that violates a constraint is
        rolled back and quarantined, the others stay in the batch. A duplicate key keeps the
        record that comes first in input order (see :mod:`migrator.duplicates`): a later
        record already stored — by this batch or a committed one — is evicted for it.
        """
        entries: list[tuple[Record, list[Rows]] | None] = []
        in_batch: dict[str, int] = {}  # position → index in entries of this batch's rows
        offsets = [0] * len(batch.tables)
        # A failure half-way (a deadlock victim, say) leaves the batch as it was, for the
        # retry to go through every record again.
        n_rejects = len(batch.rejects)
        progress = {uid: list(p) for uid, p in batch.progress.items()}
        try:
            for rec in batch.records:
                rows = []
                for ti, n in enumerate(rec[4]):
                    rows.append(batch.tables[ti][offsets[ti]:offsets[ti] + n])
                    offsets[ti] += n
                if self._insert_record(conn, batch, rec, rows, entries, in_batch):
                    in_batch[rows[record_root(self.mapping, rec[4])][0][-1]] = len(entries)
                    entries.append((rec, rows))
        except BaseException:
            del batch.rejects[n_rejects:]
            for uid, p in progress.items():
                batch.progress[uid][:] = p
            batch.evicted = []
            raise
        kept = [e for e in entries if e is not None]
        batch.records = [rec for rec, _ in kept]
        batch.tables = [[row for _, rows in kept for row in rows[ti]]
                        for ti in range(len(batch.tables))]

    def _insert_record(self, conn: Connection, batch: MappedBatch, rec: Record,
                       rows: list[Rows], entries: list[tuple[Record, list[Rows]] | None],
                       in_batch: dict[str, int]) -> bool:
        """Insert one record under a savepoint, settling a duplicate key by input order.
        False: the record was quarantined instead."""
        tables = self.mapping.tables
        ri = record_root(self.mapping, rec[4])
        record = self.mapping.record(tables[ri].record)
        root_row = rows[ri][0]
        key, mine = root_row[:len(tables[ri].key_columns)], root_row[-1]
        holder: Holder | None = None  # a later record holding our key: evict it first
        conflict = ""  # the database's message when our key was found taken
        for _ in range(RACE_ROUNDS):
            conn.savepoint("mb_record")
            failed = 0  # the table whose insert failed
            try:
                lost = delete_record(conn, self.mapping, record, holder.key) if holder else ()
                for ti, table_rows in enumerate(rows):
                    failed = ti
                    if table_rows:
                        conn.insert_rows(tables[ti].name, self._columns[ti], table_rows,
                                         "executemany")
            except IntegrityViolation as exc:
                conn.rollback_to("mb_record")
                conn.release("mb_record")
                text = str(exc)
                if failed != ri or not _is_duplicate(text):
                    code = "duplicate_key" if _is_duplicate(text) else "constraint_violation"
                    self._reject(batch, rec, code, text)
                    return False
                conflict = text
                holder = find_holder(conn, record, key)
                if holder is None:
                    continue  # deleted by a concurrent eviction since: try again
                if holder.position is None or not comes_first(mine, holder.position):
                    self._reject(batch, rec, "duplicate_key", duplicate_reason(conflict))
                    return False
                continue
            conn.release("mb_record")
            if holder is not None:
                self._evicted(batch, holder, rec[3], duplicate_reason(conflict),
                              record.element, lost, entries, in_batch)
            return True
        raise DuplicateRace(f"{tables[ri].name}: the row holding key {rec[3]!r} kept "
                            f"changing under concurrent writers")

    def _evicted(self, batch: MappedBatch, holder: Holder, key: str, reason: str,
                 element: str, lost: tuple[int, ...],
                 entries: list[tuple[Record, list[Rows]] | None],
                 in_batch: dict[str, int]) -> None:
        """Account for a stored record whose rows were deleted for an earlier one."""
        assert holder.position is not None
        index = in_batch.pop(holder.position, None)
        if index is not None:  # inserted by this batch: it leaves the batch for quarantine
            entry = entries[index]
            assert entry is not None
            entries[index] = None
            self._reject(batch, entry[0], "duplicate_key", reason)
            return
        unit, line = self.order.locate(holder.position, self.mapping.record_elements)
        batch.evicted.append((unit.id, unit.path, line, key_text(holder, key), reason, element,
                              lost))

    def _reject(self, batch: MappedBatch, rec: Record, code: str, reason: str) -> None:
        unit_id, path, line, key = rec[:4]
        element = self.mapping.tables[record_root(self.mapping, rec[4])].record
        batch.rejects.append((unit_id, path, line, key, code, reason, element))
        prog = batch.progress[unit_id]
        prog[1] -= 1
        prog[2] += 1

    @staticmethod
    def _check_fence(conn: Connection, batch: MappedBatch, fence: dict[str, int]) -> None:
        """Lock the batch's checkpoint rows (in key order) and check that each unit's is
        where this writer left it; else UnitTaken, and the transaction rolls back with
        everything the batch wrote. Done last, just before the checkpoint rows are written,
        on the session that writes them (the batch's rows may have moved to a COPY
        session): a locking read waits for another writer of the row and sees what it
        committed, and on SQLite the batch's first write already holds the database."""
        sql = conn.dialect.select_for_update_sql(CHECKPOINT_TABLE, ["records_done"],
                                                 "unit_key")
        for uid in sorted(batch.progress, key=unit_key):
            row = conn.query(sql, (unit_key(uid),))
            found = int(row[0][0]) if row else None
            expected = fence.get(uid, 0)
            if found != expected:
                raise UnitTaken(uid, expected, found)

    def _save_checkpoints(self, conn: Connection, batch: MappedBatch) -> None:
        if self.fence is not None:
            self._check_fence(conn, batch, self.fence)
        d = conn.dialect
        p = d.placeholder
        table = d.table_ref(CHECKPOINT_TABLE)
        sql = (f"UPDATE {table} SET records_done = {p}, "
               f"inserted = inserted + {p}, quarantined = quarantined + {p}, finished = {p} "
               f"WHERE unit_key = {p}")
        if not batch.evicted:
            for unit_id, (done, d_ins, d_quar, finished) in batch.progress.items():
                conn.execute(sql, (done, d_ins, d_quar, 1 if finished else 0,
                                   unit_key(unit_id)))
            return
        # Evicted records move from inserted to quarantined in their own unit's row, which
        # another worker may be writing too: rows are updated in one order (by key) so that
        # two such batches wait for each other instead of deadlocking.
        moved = checkpoint_moves(batch.evicted)
        move = (f"UPDATE {table} SET inserted = inserted - {p}, "
                f"quarantined = quarantined + {p} WHERE unit_key = {p}")
        for unit_id in sorted(batch.progress.keys() | moved.keys(), key=unit_key):
            n = moved.get(unit_id, 0)
            if unit_id in batch.progress:
                done, d_ins, d_quar, finished = batch.progress[unit_id]
                conn.execute(sql, (done, d_ins - n, d_quar + n, 1 if finished else 0,
                                   unit_key(unit_id)))
            else:
                conn.execute(move, (n, n, unit_key(unit_id)))


class _BatchState:
    """What an attempt at writing a batch may change (isolating a bad record moves it from
    the records to the rejects), kept to start the next attempt from the same batch."""

    def __init__(self, batch: MappedBatch) -> None:
        self.records = batch.records
        self.tables = batch.tables
        self.rejects = list(batch.rejects)
        self.progress = {uid: list(p) for uid, p in batch.progress.items()}

    def restore(self, batch: MappedBatch) -> None:
        batch.records = self.records
        batch.tables = self.tables
        batch.rejects = list(self.rejects)
        for uid, p in self.progress.items():
            batch.progress[uid][:] = p


def _is_duplicate(message: str) -> bool:
    m = message.lower()
    return any(s in m for s in ("unique", "duplicate", "primary key"))
