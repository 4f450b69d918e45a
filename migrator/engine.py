"""MigrationEngine: records → batches → one transaction per batch, with its checkpoint.

Exactly-once comes from one rule: a batch's rows, its quarantined records and the
checkpoint rows saying how far each input unit has been consumed are committed in the same
transaction. ``--resume`` reads the checkpoints and skips that many records per unit, so a
killed run resumed later inserts every record once.

Stage times are measured per batch (parse, map, insert, commit, connect) with two clock
reads per record, so the engine's own overhead can be measured against its stages.

The engine is two halves joined by :mod:`migrator.pipeline`: a :class:`BatchProducer` reads
and maps records into :class:`MappedBatch` objects (plain rows, no lxml objects, so they
can cross a process boundary) and a :class:`BatchWriter` inserts each batch with its
checkpoints in one transaction. ``EngineConfig.pipeline`` chooses whether they take turns
(``off``), run on two threads (``thread``) or in two processes (``process``).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from migrator.connection import (
    BatchConnections,
    ConnectionStrategy,
    apply_strategy,
    parse_connection,
)
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
from migrator.errors import InputError, MalformedXMLError, ResumeError, TargetError
from migrator.keys import KeyCounter
from migrator.mapping import POSITION_COLUMN, Mapping
from migrator.partition import unit_bytes
from migrator.reader import WorkUnit
from migrator.retry import RetryPolicy
from migrator.rowmap import RecordMapper, RecordRejected, Rows
from migrator.targets.base import (
    BOOKKEEPING_TABLES,
    CHECKPOINT_FORMAT,
    CHECKPOINT_TABLE,
    QUARANTINE_TABLE,
    REGISTRY_TABLE,
    RUN_TABLE,
    Connection,
    Dialect,
    IntegrityViolation,
    Target,
    ensure_schema,
    error_detail,
    existing_tables,
    unit_key,
)

STAGES = ("connect", "parse", "map", "insert", "commit", "skip", "transfer")
# Which stages each half of the pipeline is busy with (``transfer``, pickling a batch to
# send it to another process and unpickling it there, is split by who does it).
READ_STAGES = ("parse", "map", "skip")
WRITE_STAGES = ("connect", "insert", "commit")
PIPELINE_MODES = ("off", "thread", "process")
CONVERT_SIDES = ("auto", "reader", "inserter")
QUARANTINE_COLUMNS = ("unit", "file", "line", "record_key", "reason_code", "reason",
                      "record_element")


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 1000
    insert_method: str | None = None  # None: the dialect's default
    # How each batch gets its connection (migrator.connection); a strategy's pooling is
    # applied in every process (workers too) before its first connect. The library keeps
    # one connection per engine; `bench run` defaults to a new one per batch.
    connection: ConnectionStrategy = ConnectionStrategy.PERSISTENT
    pipeline: str = "off"  # off | thread | process: how reading+mapping overlaps inserting
    queue_depth: int = 2  # mapped batches waiting for the inserter, at most (backpressure)
    # ``process`` pipeline only: which side checks and converts a batch's values. ``auto``
    # gives them to the inserter while it keeps up (the producer did not have to wait to
    # hand over its last batch) and keeps them in the producer when it does not.
    convert_side: str = "auto"  # auto | reader | inserter
    # How long transient database errors (a restart, a killed session, a deadlock) are
    # retried: reconnecting, the "did this batch commit?" check and the retry itself.
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        # ("pooled" as well as ConnectionStrategy.POOLED; an unknown name is a ValueError)
        object.__setattr__(self, "connection", parse_connection(self.connection))
        if self.pipeline not in PIPELINE_MODES:
            raise ValueError(f"pipeline must be one of {', '.join(PIPELINE_MODES)}, "
                             f"got {self.pipeline!r}")
        if self.queue_depth < 1:
            raise ValueError("queue_depth must be >= 1")
        if self.convert_side not in CONVERT_SIDES:
            raise ValueError(f"convert_side must be one of {', '.join(CONVERT_SIDES)}, "
                             f"got {self.convert_side!r}")


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

    worker: int = 0

    FIELDS = ("index", "records", "inserted", "quarantined", "started", "ended",
              "parse", "map", "insert", "commit", "connect", "worker")

    def as_row(self) -> list[float | int]:
        return [getattr(self, f) for f in self.FIELDS]


@dataclass
class UnitResult:
    unit: str
    records_read: int = 0  # by this invocation
    skipped: int = 0  # records committed by an earlier, interrupted run
    finished: bool = False
    error: str | None = None


def _zero_busy() -> dict[str, float]:
    return {"read_map": 0.0, "insert": 0.0}


@dataclass
class WorkerStats:
    """One worker's share of a run: its partitions, counts and busy seconds per stage."""

    worker: int
    pid: int
    partitions: list[str]
    records_read: int = 0
    inserted: int = 0
    quarantined: int = 0
    elapsed_s: float = 0.0
    stage_busy: dict[str, float] = field(default_factory=_zero_busy)

    @property
    def rec_per_s(self) -> float:
        return self.records_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rec_per_s": self.rec_per_s}


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
    # Busy seconds of the two pipeline halves: ``read_map`` (parse, map, skip, sending) and
    # ``insert`` (connect, insert, commit, receiving); summed over workers.
    stage_busy: dict[str, float] = field(default_factory=_zero_busy)
    pipeline: str = "off"
    queue_depth: int = 0
    max_in_flight: int = 0  # most mapped batches handed to the inserter and not yet taken
    # Records the ``process`` pipeline's producer only extracted, and the inserter converted
    # (their conversion time is in stage ``map`` and in the ``insert`` half's busy time).
    converted_by_inserter: int = 0
    # CPU seconds (of the threads doing it) spent reading and mapping: the same work for the
    # same input whatever the configuration, so its spread between runs measures how fast
    # the machine was during each run (see reports.stats.machine_noise).
    read_map_cpu_s: float = 0.0
    workers: list[WorkerStats] = field(default_factory=list)
    # Transient database errors retried, and the seconds waited between attempts: a run
    # that retried measured a restart or a lock conflict as well as the migration.
    retries: int = 0
    retry_wait_s: float = 0.0
    # Connections the writers opened or checked out of a pool (reconnects included): one
    # per batch, or one per worker for the run (see migrator.connection).
    connects: int = 0
    # Per record element: records read, inserted and quarantined by this invocation.
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    # Records read that kept an entity reference literal (&x;): no DTD catalog, or one
    # that does not declare it.
    unexpanded_entities: int = 0
    # What the user should know about the run that is no error (a file --workers could
    # not cut into byte ranges, and why).
    notes: list[str] = field(default_factory=list)

    @property
    def throughput_rec_per_min(self) -> float:
        return 60.0 * self.records_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def overlap_efficiency(self) -> float:
        """(sum of stage busy times) / wall: 1.0 is no overlap, 2.0 two stages fully busy."""
        return sum(self.stage_busy.values()) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "inserted": self.inserted,
            "quarantined": self.quarantined,
            "elapsed_s": self.elapsed_s,
            "throughput_rec_per_min": self.throughput_rec_per_min,
            "stages": dict(self.stages),
            "stage_busy_s": dict(self.stage_busy),
            "overlap_efficiency": self.overlap_efficiency,
            "pipeline": self.pipeline,
            "queue_depth": self.queue_depth,
            "max_in_flight": self.max_in_flight,
            "converted_by_inserter": self.converted_by_inserter,
            "read_map_cpu_s": self.read_map_cpu_s,
            "retries": self.retries,
            "retry_wait_s": self.retry_wait_s,
            "connects": self.connects,
            "workers": [w.to_dict() for w in self.workers],
            "tables": dict(self.rows),
            "records": {k: dict(v) for k, v in self.records.items()},
            "unexpanded_entities": self.unexpanded_entities,
            "notes": list(self.notes),
            "units": [asdict(u) for u in self.units],
            "errors": list(self.errors),
            "batches": {"columns": list(BatchStat.FIELDS),
                        "rows": [b.as_row() for b in self.batches]},
        }


Progress = Callable[[RunStats, int], None]  # (stats so far, input bytes consumed)


# ---- schema and checkpoints ---------------------------------------------------------------
# The target belongs to the user. Every table the tool creates is first recorded in
# REGISTRY_TABLE (physical name, the mapping's fingerprint, the run, when); a fresh run drops
# only recorded tables and refuses, before it changes anything, to touch a table of the same
# name that is not recorded. Where DDL is transactional (PostgreSQL, SQLite, SQL Server) the
# whole fresh schema is built in one transaction; elsewhere (MariaDB) the run table goes
# first and comes back last, with a "schema complete" row, so a half-built schema is
# recognised by --resume, and a fresh run may drop it because the tool recorded it as its own.

SCHEMA_STATE = "schema_state"  # RUN_TABLE key: "complete" once every table exists
REGISTRY_COLUMNS = ("table_name", "mapping_fingerprint", "run_id", "created_at")


class TableOwnershipError(TargetError):
    """A table the run needs exists and the tool did not create it: nothing was changed."""


def prepare_target(target: Target, mapping: Mapping, units: Sequence[WorkUnit], *,
                   resume: bool, replace_existing: bool = False,
                   run_id: str | None = None,
                   retry: RetryPolicy | None = None) -> dict[str, Checkpoint]:
    """Create a fresh schema (replacing the tables this tool created before), or validate
    one to resume. ``replace_existing`` also drops same-named tables it did not create.

    Returns the checkpoint of every unit. Called once per run, before any worker starts.
    Reading the checkpoints to resume is retried like a batch (``retry``, default policy).
    """
    if resume:
        return (retry or RetryPolicy()).call(lambda: _read_for_resume(target, mapping, units),
                                             "reading the checkpoints to resume")
    conn = target.connect()
    try:
        _fresh_schema(conn, mapping, units, replace_existing=replace_existing,
                      run_id=run_id or uuid.uuid4().hex[:16])
        return {u.id: Checkpoint(source_bytes=u.size) for u in units}
    finally:
        conn.close()


def _read_for_resume(target: Target, mapping: Mapping,
                     units: Sequence[WorkUnit]) -> dict[str, Checkpoint]:
    conn = target.connect()
    try:
        return _load_for_resume(conn, mapping, units)
    finally:
        conn.close()


@dataclass(frozen=True)
class Survey:
    """The namespace's tables as the database lists them, and which the tool created."""

    existing: dict[str, str]  # case-folded physical name → name
    owned: frozenset[str]  # case-folded physical names in the registry
    registry: str  # "ours", "missing", or "foreign" (a table of that name, not ours)

    def exists(self, d: Dialect, logical: str) -> bool:
        return d.table_name(logical).casefold() in self.existing

    def is_owned(self, d: Dialect, logical: str) -> bool:
        return d.table_name(logical).casefold() in self.owned


def survey(conn: Connection) -> Survey:
    """Which tables exist in the namespace and which of them the tool recorded as its own."""
    d = conn.dialect
    existing = existing_tables(conn)
    if d.table_name(REGISTRY_TABLE).casefold() not in existing:
        return Survey(existing, frozenset(), "missing")
    try:
        rows = conn.query(f"SELECT {', '.join(REGISTRY_COLUMNS)} "
                          f"FROM {d.table_ref(REGISTRY_TABLE)}")
    except TargetError:  # another shape: someone else's table of that name
        with contextlib.suppress(Exception):
            conn.rollback()
        return Survey(existing, frozenset(), "foreign")
    return Survey(existing, frozenset(str(r[0]).casefold() for r in rows), "ours")


def _wanted(mapping: Mapping) -> list[str]:
    return [t.name for t in mapping.tables] + list(BOOKKEEPING_TABLES)


def _refusal(d: Dialect, foreign: Sequence[str], found: Survey) -> str:
    names = ", ".join(d.table_display(n) for n in foreign)
    what = f"table {names}" if len(foreign) == 1 else f"tables {names}"
    beside = "--table-prefix PREFIX or --schema NAME" if d.supports_schemas \
        else "--table-prefix PREFIX"
    earlier = ""
    if found.registry == "missing" and set(foreign) & set(BOOKKEEPING_TABLES):
        earlier = (" (its mb_* tables look like those of a migration-bench that did not "
                   "record its tables yet)")
    return (f"the target already has {what}, which migration-bench did not create{earlier}; "
            f"nothing was changed: use {beside} to migrate beside it, or "
            f"--replace-existing-tables to drop and replace it")


def _fresh_schema(conn: Connection, mapping: Mapping, units: Sequence[WorkUnit], *,
                  replace_existing: bool, run_id: str) -> None:
    d = conn.dialect
    for name in (*_wanted(mapping), REGISTRY_TABLE):
        d.table_name(name)  # (a prefix that makes a name too long fails here, first)
    ensure_schema(conn)
    found = survey(conn)
    foreign = [n for n in _wanted(mapping)
               if found.exists(d, n) and not found.is_owned(d, n)]
    if found.registry == "foreign":
        foreign.insert(0, REGISTRY_TABLE)
    if foreign and not replace_existing:
        raise TableOwnershipError(_refusal(d, foreign, found))
    conn.rollback()  # (ends the survey's reads)
    conn.begin()
    try:
        _build(conn, mapping, units, found, run_id)
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise


def _build(conn: Connection, mapping: Mapping, units: Sequence[WorkUnit], found: Survey,
           run_id: str) -> None:
    d = conn.dialect
    # Without transactional DDL each registry change is committed before the DDL it
    # announces, so a killed run leaves no table the registry does not call the tool's.
    step = (lambda: None) if d.transactional_ddl else conn.commit
    fingerprint = mapping.fingerprint()
    if found.registry == "foreign":
        _drop(conn, REGISTRY_TABLE, owned=False)
    if found.registry != "ours":
        conn.execute(d.registry_sql())
        step()
    # The run table goes first: without it the schema is never taken for a run to resume.
    for name in (RUN_TABLE, QUARANTINE_TABLE, CHECKPOINT_TABLE,
                 *(t.name for t in reversed(mapping.tables))):
        if found.exists(d, name):
            _drop(conn, name, owned=found.is_owned(d, name))
            _unregister(conn, name)
            step()
    bookkeeping = dict(zip(BOOKKEEPING_TABLES, d.bookkeeping_sql(), strict=True))
    creates = [(t.name, d.create_table_sql(mapping, t)) for t in mapping.tables]
    creates += [(n, [bookkeeping[n]]) for n in (CHECKPOINT_TABLE, QUARANTINE_TABLE, RUN_TABLE)]
    for name, statements in creates:
        _register(conn, name, fingerprint, run_id)
        step()
        for sql in statements:
            conn.execute(sql)
    conn.insert_rows(RUN_TABLE, ("k", "v"), [("mapping_fingerprint", fingerprint),
                                            ("record_element",
                                             ",".join(mapping.record_elements)),
                                            ("checkpoint_format", CHECKPOINT_FORMAT),
                                            ("run_id", run_id),
                                            ("created_at", _now()),
                                            (SCHEMA_STATE, "complete")])
    conn.insert_rows(CHECKPOINT_TABLE,
                     ("unit_key", "unit", "records_done", "inserted", "quarantined",
                      "finished", "source_bytes"),
                     [(unit_key(u.id), u.id, 0, 0, 0, 0, u.size) for u in units])


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _register(conn: Connection, name: str, fingerprint: str, run_id: str) -> None:
    _unregister(conn, name)
    conn.insert_rows(REGISTRY_TABLE, REGISTRY_COLUMNS,
                     [(conn.dialect.table_name(name), fingerprint, run_id, _now())],
                     "executemany")


def _unregister(conn: Connection, name: str) -> None:
    d = conn.dialect
    conn.execute(f"DELETE FROM {d.table_ref(REGISTRY_TABLE)} WHERE table_name = "
                 f"{d.placeholder}", (d.table_name(name),))


def _drop(conn: Connection, name: str, *, owned: bool) -> None:
    d = conn.dialect
    try:
        conn.execute(d.drop_table_sql(name))
    except (TargetError, IntegrityViolation) as exc:  # (MariaDB: a foreign key is 23000)
        why = ", which migration-bench created" if owned else " to replace it"
        raise TargetError(
            f"cannot drop {d.table_display(name)}{why}: {error_detail(exc)}; remove what "
            f"depends on it (a foreign key, a view), or leave it and migrate beside it with "
            f"--table-prefix PREFIX" + (" or --schema NAME" if d.supports_schemas else "")
        ) from exc


def _run_meta(conn: Connection, found: Survey) -> dict[str, str]:
    """The run table's rows ({} when it is missing or not the tool's shape)."""
    d = conn.dialect
    if not found.exists(d, RUN_TABLE):
        return {}
    try:
        rows = conn.query(f"SELECT k, v FROM {d.table_ref(RUN_TABLE)}")
    except TargetError:
        with contextlib.suppress(Exception):
            conn.rollback()
        return {}
    return {str(k): str(v) for k, v in rows}


def _half_built(d: Dialect, mapping: Mapping, found: Survey) -> ResumeError:
    wanted = _wanted(mapping)
    built = [n for n in wanted if found.exists(d, n) and found.is_owned(d, n)]
    return ResumeError(
        f"cannot resume: the previous run was stopped while it was preparing its tables "
        f"({len(built)} of {len(wanted)} in place), before any record was migrated; run "
        f"again without --resume: it replaces the half-built tables, which migration-bench "
        f"created")


def _load_for_resume(conn: Connection, mapping: Mapping,
                     units: Sequence[WorkUnit]) -> dict[str, Checkpoint]:
    d = conn.dialect
    found = survey(conn)
    meta = _run_meta(conn, found)
    if not meta:
        if found.owned & set(found.existing):  # (names the registry lists, still there)
            raise _half_built(d, mapping, found)
        raise ResumeError("nothing to resume: the target holds no interrupted run; "
                          "run again without --resume")
    if meta.get("checkpoint_format") != CHECKPOINT_FORMAT:
        raise ResumeError("cannot resume: the interrupted run was written by an older "
                          "migration-bench, whose checkpoints this one cannot continue; "
                          "start again without --resume")
    if meta.get(SCHEMA_STATE) != "complete":
        raise _half_built(d, mapping, found)
    if meta.get("mapping_fingerprint") != mapping.fingerprint():
        raise ResumeError("cannot resume: the mapping changed since the interrupted run; "
                          "use the same --mapping or start again without --resume")
    missing = [n for n in _wanted(mapping) if not found.exists(d, n)]
    if missing:
        raise ResumeError(f"cannot resume: table {d.table_display(missing[0])} of the "
                          f"interrupted run is gone; start again without --resume")
    rows = conn.query(
        f"SELECT unit, records_done, inserted, quarantined, finished, source_bytes "
        f"FROM {d.table_ref(CHECKPOINT_TABLE)}")
    saved = {str(r[0]): Checkpoint(int(r[1]), int(r[2]), int(r[3]), bool(r[4]), int(r[5]))
             for r in rows}
    wanted = {u.id: u for u in units}
    if set(saved) != set(wanted):
        missing_units = sorted(set(saved) - set(wanted))
        extra = sorted(set(wanted) - set(saved))
        what = f"{missing_units[0]} is no longer in --input" if missing_units else \
            f"{extra[0]} was not part of the interrupted run"
        raise ResumeError(f"cannot resume: the input changed ({what}); pass the same --input")
    for uid, cp in saved.items():
        if cp.source_bytes != wanted[uid].size:
            raise ResumeError(f"cannot resume: {uid} changed size since the interrupted run "
                              f"({cp.source_bytes} → {wanted[uid].size} bytes)")
    return saved


@dataclass(frozen=True)
class Reconciliation:
    """Counts read back from the target: does ``read = inserted + quarantined`` hold?

    ``records``: per record element, the rows of its root table (its records inserted) and
    its quarantined records."""

    records_read: int
    inserted: int
    quarantined: int
    rows: dict[str, int]
    quarantine_rows: int
    problems: tuple[str, ...]
    records: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(target: Target, mapping: Mapping) -> Reconciliation:
    """Independent check after a run: checkpoint totals against ``COUNT(*)`` of the tables,
    per record type (each has its root table and its quarantined records)."""
    conn = target.connect()
    try:
        d = conn.dialect
        ref = d.table_ref
        (done, ins, qua), = conn.query(
            f"SELECT COALESCE(SUM(records_done),0), COALESCE(SUM(inserted),0), "
            f"COALESCE(SUM(quarantined),0) FROM {ref(CHECKPOINT_TABLE)}")
        rows = {t.name: int(conn.query(f"SELECT COUNT(*) FROM {ref(t.name)}")[0][0])
                for t in mapping.tables}
        qrows = int(conn.query(f"SELECT COUNT(*) FROM {ref(QUARANTINE_TABLE)}")[0][0])
        per_type = {r.element: int(conn.query(
            f"SELECT COUNT(*) FROM {ref(QUARANTINE_TABLE)} WHERE record_element = "
            f"{d.placeholder}", (r.element,))[0][0]) for r in mapping.records}
    finally:
        conn.close()
    done, ins, qua = int(done), int(ins), int(qua)
    records = {r.element: {"inserted": rows[r.root.name], "quarantined": per_type[r.element]}
               for r in mapping.records}
    problems = []
    if done != ins + qua:
        problems.append(f"read {done} != inserted {ins} + quarantined {qua}")
    roots = sum(rows[t.name] for t in mapping.roots)
    if roots != ins:
        names = " + ".join(t.name for t in mapping.roots)
        problems.append(f"{names} hold{'s' if len(mapping.roots) == 1 else ''} {roots} "
                        f"rows, checkpoints say {ins} inserted")
    if qrows != qua:
        problems.append(f"{QUARANTINE_TABLE} holds {qrows} rows, checkpoints say {qua}")
    elif sum(per_type.values()) != qrows:
        problems.append(f"{qrows - sum(per_type.values())} of the {qrows} rows of "
                        f"{QUARANTINE_TABLE} name no record element of the mapping")
    return Reconciliation(done, ins, qua, rows, qrows, tuple(problems), records)


def reconcile_retrying(target: Target, mapping: Mapping,
                       retry: RetryPolicy | None = None) -> Reconciliation:
    """:func:`reconcile`, retried like a batch: a server restarting during the final count
    must not turn a complete run into a failed one."""
    return (retry or RetryPolicy()).call(lambda: reconcile(target, mapping),
                                         "the final count check")


# ---- the engine ---------------------------------------------------------------------------

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


@dataclass
class ProducerReport:
    """What the reading half learnt that the batches do not carry."""

    units: list[UnitResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skip: float = 0.0
    transfer: float = 0.0  # pickling batches for another process
    unexpanded_entities: int = 0  # records that kept an entity reference literal


class BatchProducer:
    """Reads units from their checkpoints on and yields a :class:`MappedBatch` per batch."""

    STOP_EVERY = 16  # records between two looks at the stop flag

    def __init__(self, mapping: Mapping, mapper: RecordMapper, batch_size: int,
                 stop: StopFlag | None = None, *,
                 extract_only: Callable[[], bool] | None = None) -> None:
        self.mapping = mapping
        self.mapper = mapper
        self.batch_size = batch_size
        self.stop = stop
        # Asked before each batch: True → only extract its records' texts, and leave the
        # checks and conversions to the inserter (see pipeline._in_process).
        self.extract_only = extract_only
        self.report = ProducerReport()
        self._n_tables = len(mapping.tables)
        self._key_parts = key_parts(mapping)
        self._batch = MappedBatch(self._n_tables, self._key_parts)
        # Record types whose keys are generated from the record's position in its file.
        self._generated = frozenset(r.element for r in mapping.records if r.generated)
        self._bytes_before = 0
        self._stream: Any = None

    def _take(self) -> MappedBatch:
        batch = self._batch
        position = self._stream.position if self._stream is not None else 0
        batch.position = self._bytes_before + position
        self._batch = MappedBatch(self._n_tables, self._key_parts)
        return batch

    def batches(self, units: Iterable[WorkUnit],
                checkpoints: dict[str, Checkpoint]) -> Generator[MappedBatch, None, None]:
        for unit in units:
            yield from self._unit(unit, checkpoints.get(unit.id, Checkpoint()))
            self._bytes_before += unit_bytes(unit)
            self._stream = None
        if self._batch.count or self._batch.progress:
            yield self._take()

    def _unit(self, unit: WorkUnit, cp: Checkpoint) -> Iterator[MappedBatch]:
        uid, path = unit.id, unit.path  # (one string object each: pickled once per batch)
        result = UnitResult(uid, skipped=cp.records_done, finished=cp.finished)
        self.report.units.append(result)
        if cp.finished:
            return
        pc = time.perf_counter
        mapper_map = self.mapper.map
        extract = self.mapper.extract
        add = MappedBatch.add
        extract_only = self.extract_only
        batch_size = self.batch_size
        stop = self.stop
        every = self.STOP_EVERY
        tt = time.thread_time
        mark = tt()
        stream = unit.open_records(self.mapping.record_elements, self.mapping.dtd_dir)
        self._stream = stream
        it = iter(stream)
        done = cp.records_done
        keys = KeyCounter(path, self._generated, stream.records_before()) \
            if self._generated else None
        # A record's seq: how many records before it report the same line (its position in
        # input order is file, line, seq — see migrator.duplicates).
        prev_line: int | None = None
        seq = 0
        try:
            if done:
                t0 = pc()
                for n in range(done):
                    item = next(it, None)
                    if item is None:
                        raise ResumeError(f"cannot resume: {uid} now has only {n} records, "
                                          f"the checkpoint says {done} were done")
                    line = item[0]
                    seq = seq + 1 if line == prev_line else \
                        stream.first_seq if prev_line is None else 0
                    prev_line = line
                    if keys is not None:
                        keys.next(item[1].tag)
                self.report.skip += pc() - t0
            batch = self._batch
            raw = extract_only is not None and extract_only()
            while True:
                if stop is not None and done % every == 0 and stop.is_set():
                    raise KeyboardInterrupt
                t0 = pc()
                item = next(it, None)
                t1 = pc()
                if item is None:
                    break
                line, elem = item
                if line == prev_line:
                    seq += 1
                else:
                    seq = stream.first_seq if prev_line is None else 0
                    prev_line = line
                args = (elem,) if keys is None else (elem, keys.next(elem.tag))
                if raw:
                    batch.extracted.append((uid, path, line, extract(*args), seq, elem.tag))
                    delta_q, delta_i = 0, 1
                else:
                    try:
                        rows = mapper_map(*args)
                    except RecordRejected as rej:
                        batch.rejects.append((uid, path, line, rej.key, rej.code, rej.reason,
                                              elem.tag))
                        delta_q, delta_i = 1, 0
                    else:
                        add(batch, uid, path, line, rows, seq)
                        delta_q, delta_i = 0, 1
                batch.parse += t1 - t0
                batch.map += pc() - t1
                done += 1
                prog = batch.progress.get(uid)
                if prog is None:
                    batch.progress[uid] = [done, delta_i, delta_q, False]
                else:
                    prog[0] = done
                    prog[1] += delta_i
                    prog[2] += delta_q
                result.records_read += 1
                batch.count += 1
                if batch.count >= batch_size:
                    now = tt()
                    batch.cpu += now - mark
                    mark = now
                    yield self._take()
                    mark = tt()  # (the writer's CPU between two batches is not ours)
                    batch = self._batch
                    raw = extract_only is not None and extract_only()
            prog = self._batch.progress.setdefault(uid, [done, 0, 0, False])
            prog[3] = True
            result.finished = True
        except MalformedXMLError as exc:
            # Records before the error are complete: they stay in the batch and commit.
            result.error = str(exc)
            self.report.errors.append(str(exc))
        except InputError as exc:
            result.error = str(exc)
            self.report.errors.append(str(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            self.report.unexpanded_entities += stream.unexpanded
            self._batch.cpu += tt() - mark


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

    def _save_checkpoints(self, conn: Connection, batch: MappedBatch) -> None:
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


def finish_stats(stats: RunStats, report: ProducerReport, writer: BatchWriter) -> RunStats:
    """Fold the reading half's report into the writer's stats; derive stage busy times."""
    stats.units.extend(report.units)
    stats.errors.extend(report.errors)
    st = stats.stages
    st["skip"] += report.skip
    st["transfer"] += report.transfer + writer.transfer
    stats.stage_busy = {
        "read_map": sum(st[s] for s in READ_STAGES) + report.transfer - writer.convert,
        "insert": sum(st[s] for s in WRITE_STAGES) + writer.transfer + writer.convert,
    }
    stats.converted_by_inserter += writer.converted
    stats.unexpanded_entities += report.unexpanded_entities
    return stats


class MigrationEngine:
    """Migrates work units into a prepared target, one transaction per batch."""

    def __init__(self, target: Target, mapping: Mapping, config: EngineConfig | None = None,
                 *, on_batch: Progress | None = None, stop: StopFlag | None = None,
                 worker: int = 0, order: InputOrder | None = None) -> None:
        self.target = target
        self.mapping = mapping
        self.config = config or EngineConfig()
        apply_strategy(target, self.config.connection)  # before anything connects
        # An ODBC target connects once to learn its dialect; in a worker process that is
        # its first connect, after the run reached the server: retried like a batch.
        dialect = self.config.retry.call(lambda: target.dialect)
        self.mapper = RecordMapper(mapping, dialect.value_adapters())
        self.on_batch = on_batch
        self.stop = stop
        self.worker = worker
        # Every unit of the run (a worker reads only some): which duplicate is kept depends
        # on the whole input's order. None: the units given to run() are the whole input.
        self.order = order

    def producer(self, stop: StopFlag | None = None) -> BatchProducer:
        return BatchProducer(self.mapping, self.mapper, self.config.batch_size,
                             self.stop if stop is None else stop)

    def writer(self, stats: RunStats, t0: float) -> BatchWriter:
        assert self.order is not None, "run() sets the input order"
        return BatchWriter(self.target, self.mapping, self.config, stats, t0,
                           order=self.order, on_batch=self.on_batch, worker=self.worker)

    def run(self, units: Sequence[WorkUnit],
            checkpoints: dict[str, Checkpoint] | None = None) -> RunStats:
        """Read every unit from its checkpoint on; return counts, stage times, batches.

        ``config.pipeline`` decides how reading+mapping overlaps inserting; the result is
        the same rows whichever it is.

        Everything alive when the run starts (modules, the compiled mapper, lxml) is moved
        out of the garbage collector's sight for the run (``gc.freeze``): a batch keeps
        thousands of rows alive, which pushes collections into the oldest generation, and
        rescanning every long-lived object there cost 24% of the engine's CPU (measured).
        """
        from migrator.pipeline import run_pipeline  # (pipeline builds on this module)

        if self.order is None:
            self.order = InputOrder(units)
        gc.freeze()
        try:
            return run_pipeline(self, units, checkpoints or {})
        finally:
            gc.unfreeze()


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
