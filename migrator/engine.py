"""MigrationEngine: records → batches → one transaction per batch, with its checkpoint.

Exactly-once comes from one rule: a batch's rows, its quarantined records and the
checkpoint rows saying how far each input unit has been consumed are committed in the same
transaction. ``--resume`` reads the checkpoints and skips that many records per unit, so a
killed run resumed later inserts every record once.

Stage times are measured per batch (parse, map, insert, commit, connect) with two clock
reads per record, so the engine's own overhead can be measured against its stages.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from migrator.errors import InputError, MalformedXMLError, ResumeError
from migrator.mapping import Mapping
from migrator.reader import WorkUnit
from migrator.rowmap import RecordMapper, RecordRejected, Rows
from migrator.targets.base import (
    CHECKPOINT_TABLE,
    QUARANTINE_TABLE,
    RUN_TABLE,
    Connection,
    IntegrityViolation,
    Target,
)

STAGES = ("connect", "parse", "map", "insert", "commit", "skip")
QUARANTINE_COLUMNS = ("unit", "file", "line", "record_key", "reason_code", "reason")


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 1000
    insert_method: str | None = None  # None: the dialect's default
    connection_per_batch: bool = False  # check a connection out for every batch (pooling)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@dataclass(frozen=True)
class Checkpoint:
    records_done: int = 0
    inserted: int = 0
    quarantined: int = 0
    finished: bool = False
    source_bytes: int = 0


@dataclass
class BatchStat:
    """One committed batch; times in seconds, ``started``/``ended`` relative to run start."""

    index: int
    records: int
    inserted: int
    quarantined: int
    started: float
    ended: float
    parse: float
    map: float
    insert: float
    commit: float
    connect: float

    FIELDS = ("index", "records", "inserted", "quarantined", "started", "ended",
              "parse", "map", "insert", "commit", "connect")

    def as_row(self) -> list[float | int]:
        return [getattr(self, f) for f in self.FIELDS]


@dataclass
class UnitResult:
    unit: str
    records_read: int = 0  # by this invocation
    skipped: int = 0  # records committed by an earlier, interrupted run
    finished: bool = False
    error: str | None = None


@dataclass
class RunStats:
    records_read: int = 0
    inserted: int = 0
    quarantined: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    elapsed_s: float = 0.0
    batches: list[BatchStat] = field(default_factory=list)
    units: list[UnitResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput_rec_per_min(self) -> float:
        return 60.0 * self.records_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "inserted": self.inserted,
            "quarantined": self.quarantined,
            "elapsed_s": self.elapsed_s,
            "throughput_rec_per_min": self.throughput_rec_per_min,
            "stages": dict(self.stages),
            "tables": dict(self.rows),
            "units": [asdict(u) for u in self.units],
            "errors": list(self.errors),
            "batches": {"columns": list(BatchStat.FIELDS),
                        "rows": [b.as_row() for b in self.batches]},
        }


Progress = Callable[[RunStats, int], None]  # (stats so far, input bytes consumed)


# ---- schema and checkpoints ---------------------------------------------------------------

def prepare_target(target: Target, mapping: Mapping, units: Sequence[WorkUnit], *,
                   resume: bool) -> dict[str, Checkpoint]:
    """Create a fresh schema (dropping the mapping's tables), or validate one to resume.

    Returns the checkpoint of every unit. Called once per run, before any worker starts.
    """
    conn = target.connect()
    try:
        if resume:
            return _load_for_resume(conn, mapping, units)
        _fresh_schema(conn, mapping, units)
        return {u.id: Checkpoint(source_bytes=u.size) for u in units}
    finally:
        conn.close()


def _exists(conn: Connection, table: str) -> bool:
    return bool(conn.query(conn.dialect.table_exists_sql(), (table,)))


def _fresh_schema(conn: Connection, mapping: Mapping, units: Sequence[WorkUnit]) -> None:
    d = conn.dialect
    for name in [t.name for t in reversed(mapping.tables)] + [
            QUARANTINE_TABLE, CHECKPOINT_TABLE, RUN_TABLE]:
        conn.execute(d.drop_table_sql(name))
    for table in mapping.tables:
        for sql in d.create_table_sql(mapping, table):
            conn.execute(sql)
    for sql in d.bookkeeping_sql():
        conn.execute(sql)
    conn.begin()
    conn.insert_rows(RUN_TABLE, ("k", "v"), [("mapping_fingerprint", mapping.fingerprint()),
                                            ("record_element", mapping.record_element)])
    conn.insert_rows(CHECKPOINT_TABLE,
                     ("unit", "records_done", "inserted", "quarantined", "finished",
                      "source_bytes"),
                     [(u.id, 0, 0, 0, 0, u.size) for u in units])
    conn.commit()


def _load_for_resume(conn: Connection, mapping: Mapping,
                     units: Sequence[WorkUnit]) -> dict[str, Checkpoint]:
    d = conn.dialect
    if not _exists(conn, RUN_TABLE) or not _exists(conn, CHECKPOINT_TABLE):
        raise ResumeError("nothing to resume: the target holds no interrupted run; "
                          "run again without --resume")
    meta: dict[Any, Any] = dict(conn.query(f"SELECT k, v FROM {d.quote(RUN_TABLE)}"))
    if meta.get("mapping_fingerprint") != mapping.fingerprint():
        raise ResumeError("cannot resume: the mapping changed since the interrupted run; "
                          "use the same --mapping or start again without --resume")
    rows = conn.query(
        f"SELECT unit, records_done, inserted, quarantined, finished, source_bytes "
        f"FROM {d.quote(CHECKPOINT_TABLE)}")
    saved = {str(r[0]): Checkpoint(int(r[1]), int(r[2]), int(r[3]), bool(r[4]), int(r[5]))
             for r in rows}
    wanted = {u.id: u for u in units}
    if set(saved) != set(wanted):
        missing = sorted(set(saved) - set(wanted))
        extra = sorted(set(wanted) - set(saved))
        what = f"{missing[0]} is no longer in --input" if missing else \
            f"{extra[0]} was not part of the interrupted run"
        raise ResumeError(f"cannot resume: the input changed ({what}); pass the same --input")
    for uid, cp in saved.items():
        if cp.source_bytes != wanted[uid].size:
            raise ResumeError(f"cannot resume: {uid} changed size since the interrupted run "
                              f"({cp.source_bytes} → {wanted[uid].size} bytes)")
    return saved


@dataclass(frozen=True)
class Reconciliation:
    """Counts read back from the target: does ``read = inserted + quarantined`` hold?"""

    records_read: int
    inserted: int
    quarantined: int
    rows: dict[str, int]
    quarantine_rows: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(target: Target, mapping: Mapping) -> Reconciliation:
    """Independent check after a run: checkpoint totals against ``COUNT(*)`` of the tables."""
    conn = target.connect()
    try:
        q = conn.dialect.quote
        (done, ins, qua), = conn.query(
            f"SELECT COALESCE(SUM(records_done),0), COALESCE(SUM(inserted),0), "
            f"COALESCE(SUM(quarantined),0) FROM {q(CHECKPOINT_TABLE)}")
        rows = {t.name: int(conn.query(f"SELECT COUNT(*) FROM {q(t.name)}")[0][0])
                for t in mapping.tables}
        qrows = int(conn.query(f"SELECT COUNT(*) FROM {q(QUARANTINE_TABLE)}")[0][0])
    finally:
        conn.close()
    done, ins, qua = int(done), int(ins), int(qua)
    problems = []
    if done != ins + qua:
        problems.append(f"read {done} != inserted {ins} + quarantined {qua}")
    if rows[mapping.root.name] != ins:
        problems.append(f"{mapping.root.name} holds {rows[mapping.root.name]} rows, "
                        f"checkpoints say {ins} inserted")
    if qrows != qua:
        problems.append(f"{QUARANTINE_TABLE} holds {qrows} rows, checkpoints say {qua}")
    return Reconciliation(done, ins, qua, rows, qrows, tuple(problems))


# ---- the engine ---------------------------------------------------------------------------

class _Batch:
    """Records collected for the next transaction, flat per table and per record."""

    def __init__(self, n_tables: int) -> None:
        self.n_tables = n_tables
        self.reset()

    def reset(self) -> None:
        self.tables: list[Rows] = [[] for _ in range(self.n_tables)]
        self.records: list[tuple[str, str, int, str | None, list[Rows]]] = []
        self.rejects: list[tuple[str, str, int, str | None, str, str]] = []
        # unit id → [records_done after this batch, Δinserted, Δquarantined, finished]
        self.progress: dict[str, list[Any]] = {}
        self.count = 0
        self.parse = self.map = 0.0


class MigrationEngine:
    """Migrates work units into a prepared target, one transaction per batch."""

    def __init__(self, target: Target, mapping: Mapping, config: EngineConfig | None = None,
                 *, on_batch: Progress | None = None,
                 stop: threading.Event | None = None) -> None:
        self.target = target
        self.mapping = mapping
        self.config = config or EngineConfig()
        self.mapper = RecordMapper(mapping, target.dialect.value_adapters())
        self.on_batch = on_batch
        self.stop = stop
        self._columns = [t.column_names for t in mapping.tables]
        self._conn: Connection | None = None

    # The connection is opened once, or per batch when measuring connection checkout.
    def _checkout(self, stats: RunStats) -> tuple[Connection, float]:
        if self._conn is not None:
            return self._conn, 0.0
        t0 = time.perf_counter()
        conn = self.target.connect()
        dt = time.perf_counter() - t0
        if not self.config.connection_per_batch:
            self._conn = conn
        stats.stages["connect"] += dt
        return conn, dt

    def _release(self, conn: Connection) -> None:
        if self.config.connection_per_batch:
            conn.close()

    def run(self, units: Sequence[WorkUnit],
            checkpoints: dict[str, Checkpoint] | None = None) -> RunStats:
        """Read every unit from its checkpoint on; return counts, stage times, batches."""
        checkpoints = checkpoints or {}
        stats = RunStats(rows={t.name: 0 for t in self.mapping.tables})
        self._t0 = time.perf_counter()
        self._bytes_before = 0
        self._stream: Any = None
        batch = _Batch(len(self.mapping.tables))
        try:
            if not self.config.connection_per_batch:
                self._checkout(stats)
            for unit in units:
                self._run_unit(unit, checkpoints.get(unit.id, Checkpoint()), batch, stats)
                self._bytes_before += unit.size
            if batch.count or batch.progress:
                self._flush(batch, stats)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            stats.elapsed_s = time.perf_counter() - self._t0
        return stats

    def _run_unit(self, unit: WorkUnit, cp: Checkpoint, batch: _Batch, stats: RunStats) -> None:
        result = UnitResult(unit.id, skipped=cp.records_done, finished=cp.finished)
        stats.units.append(result)
        if cp.finished:
            return
        pc = time.perf_counter
        mapper_map = self.mapper.map
        batch_size = self.config.batch_size
        stream = unit.open_records(self.mapping.record_element)
        self._stream = stream
        it = iter(stream)
        done = cp.records_done
        try:
            if done:
                t0 = pc()
                for n in range(done):
                    if next(it, None) is None:
                        raise ResumeError(f"cannot resume: {unit.id} now has only {n} records, "
                                          f"the checkpoint says {done} were done")
                stats.stages["skip"] += pc() - t0
            while True:
                if self.stop is not None and self.stop.is_set():
                    raise KeyboardInterrupt
                t0 = pc()
                item = next(it, None)
                t1 = pc()
                if item is None:
                    break
                line, elem = item
                try:
                    rows = mapper_map(elem)
                except RecordRejected as rej:
                    batch.rejects.append((unit.id, unit.path, line, rej.key, rej.code,
                                          rej.reason))
                    delta_q, delta_i = 1, 0
                else:
                    for tbl, table_rows in zip(batch.tables, rows, strict=True):
                        tbl.extend(table_rows)
                    batch.records.append((unit.id, unit.path, line, str(rows[0][0][0]),
                                          rows))
                    delta_q, delta_i = 0, 1
                batch.parse += t1 - t0
                batch.map += pc() - t1
                done += 1
                prog = batch.progress.get(unit.id)
                if prog is None:
                    batch.progress[unit.id] = [done, delta_i, delta_q, False]
                else:
                    prog[0] = done
                    prog[1] += delta_i
                    prog[2] += delta_q
                result.records_read += 1
                batch.count += 1
                if batch.count >= batch_size:
                    self._flush(batch, stats)
            prog = batch.progress.setdefault(unit.id, [done, 0, 0, False])
            prog[3] = True
            result.finished = True
        except MalformedXMLError as exc:
            # Records before the error are complete: they stay in the batch and commit.
            result.error = str(exc)
            stats.errors.append(str(exc))
        except InputError as exc:
            result.error = str(exc)
            stats.errors.append(str(exc))
        stats.records_read += result.records_read

    def _flush(self, batch: _Batch, stats: RunStats) -> None:
        conn, connect_s = self._checkout(stats)
        pc = time.perf_counter
        t0 = pc()
        started = t0 - self._t0
        method = self.config.insert_method
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
                self._insert_one_by_one(conn, batch)
            t1 = pc()
            if batch.rejects:
                conn.insert_rows(QUARANTINE_TABLE, QUARANTINE_COLUMNS, batch.rejects, None)
            self._save_checkpoints(conn, batch)
            conn.commit()
            t2 = pc()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            self._release(conn)
        inserted = len(batch.records)
        quarantined = len(batch.rejects)
        for name, rows in zip(self.mapping.tables, batch.tables, strict=True):
            stats.rows[name.name] += len(rows)
        stats.inserted += inserted
        stats.quarantined += quarantined
        st = stats.stages
        st["parse"] += batch.parse
        st["map"] += batch.map
        st["insert"] += t1 - t0
        st["commit"] += t2 - t1
        if batch.count:  # (an empty flush only marks units finished)
            stats.batches.append(BatchStat(
                len(stats.batches), batch.count, inserted, quarantined, started,
                t2 - self._t0, batch.parse, batch.map, t1 - t0, t2 - t1, connect_s))
        batch.reset()
        if self.on_batch is not None:
            position = self._stream.position if self._stream is not None else 0
            self.on_batch(stats, self._bytes_before + position)

    def _insert_one_by_one(self, conn: Connection, batch: _Batch) -> None:
        """A constraint failed somewhere in the batch: find the records that cause it.

        Each record goes in under its own savepoint; one that violates a constraint (a
        duplicate key, say) is rolled back and quarantined, the others stay in the batch.
        """
        kept = []
        tables = [[] for _ in batch.tables]  # type: list[Rows]
        for rec in batch.records:
            unit_id, path, line, key, rows = rec
            conn.savepoint("mb_record")
            try:
                for ti, table_rows in enumerate(rows):
                    if table_rows:
                        conn.insert_rows(self.mapping.tables[ti].name, self._columns[ti],
                                         table_rows, "executemany")
            except IntegrityViolation as exc:
                conn.rollback_to("mb_record")
                text = str(exc)
                code = "duplicate_key" if _is_duplicate(text) else "constraint_violation"
                batch.rejects.append((unit_id, path, line, key, code, text[:1000]))
                prog = batch.progress[unit_id]
                prog[1] -= 1
                prog[2] += 1
                continue
            conn.release("mb_record")
            kept.append(rec)
            for ti, table_rows in enumerate(rows):
                tables[ti].extend(table_rows)
        batch.records = kept
        batch.tables = tables

    def _save_checkpoints(self, conn: Connection, batch: _Batch) -> None:
        d = conn.dialect
        p = d.placeholder
        sql = (f"UPDATE {d.quote(CHECKPOINT_TABLE)} SET records_done = {p}, "
               f"inserted = inserted + {p}, quarantined = quarantined + {p}, finished = {p} "
               f"WHERE unit = {p}")
        for unit_id, (done, d_ins, d_quar, finished) in batch.progress.items():
            conn.execute(sql, (done, d_ins, d_quar, 1 if finished else 0, unit_id))


def _is_duplicate(message: str) -> bool:
    m = message.lower()
    return any(s in m for s in ("unique", "duplicate", "primary key"))

