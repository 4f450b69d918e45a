"""MigrationEngine: records → batches → one transaction per batch, with its checkpoint.

Exactly-once comes from one rule: a batch's rows, its quarantined records and the
checkpoint rows saying how far each input unit has been consumed are committed in the same
transaction. ``--resume`` reads the checkpoints and skips that many records per unit, so a
killed run resumed later inserts every record once.

Stage times are measured per batch (parse, map, insert, commit, connect) with two clock
reads per record, so the engine's own overhead can be measured against its stages.

The engine is two halves joined by :mod:`migrator.pipeline`: a
:class:`~migrator.producer.BatchProducer` reads and maps records into
:class:`~migrator.batch.MappedBatch` objects (plain rows, no lxml objects, so they can cross
a process boundary) and a :class:`~migrator.writer.BatchWriter` inserts each batch with its
checkpoints in one transaction. ``EngineConfig.pipeline`` chooses whether they take turns
(``off``), run on two threads (``thread``) or in two processes (``process``). This module
prepares the target, builds the two halves and hands them to the pipeline; neither half
nor the pipeline imports it.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrator.batch import Checkpoint, StopFlag
from migrator.config import EngineConfig
from migrator.connection import apply_strategy
from migrator.duplicates import InputOrder
from migrator.errors import ResumeError, TargetError
from migrator.mapping import Mapping
from migrator.pipeline import Halves, run_pipeline
from migrator.reader import WorkUnit
from migrator.retry import RetryPolicy
from migrator.rowmap import RecordMapper
from migrator.stats import Progress, RunStats
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
from migrator.writer import BatchWriter

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
        self._checkpoints: dict[str, Checkpoint] = {}

    def writer(self, stats: RunStats, t0: float) -> BatchWriter:
        assert self.order is not None, "run() sets the input order"
        writer = BatchWriter(self.target, self.mapping, self.config, stats, t0,
                             order=self.order, on_batch=self.on_batch, worker=self.worker)
        if self.config.fence_units:
            writer.fence = {uid: cp.records_done for uid, cp in self._checkpoints.items()}
        return writer

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
        if self.order is None:
            self.order = InputOrder(units)
        self._checkpoints = dict(checkpoints or {})
        halves = Halves(self.target, self.mapping, self.mapper, self.config, self.writer,
                        self.stop)
        gc.freeze()
        try:
            return run_pipeline(halves, units, checkpoints or {})
        finally:
            gc.unfreeze()
