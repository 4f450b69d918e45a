"""The worker side of a cluster run (:mod:`migrator.cluster`); imported by Dask workers.

:class:`RunPlugin` is registered on every worker for one run: it names the worker's
database sessions with the run id, keeps the run's targets and a stop flag. A unit's task
(:func:`migrate_unit`) reads the unit's checkpoint as committed in the target and migrates
the rest of it with one engine.

The targets are per worker thread and live as long as the run, so the connection strategy
holds across the tasks of a thread: ``per-batch`` opens a session per batch, ``pooled``
checks them out of the thread's pool, and ``persistent`` keeps one session for the whole
run (:class:`HeldTarget`), not one per task.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
import time
import traceback
from typing import Any, cast

from distributed import WorkerPlugin, get_worker

from migrator.batch import Checkpoint
from migrator.cluster_task import ClusterRun, UnitOutcome, WorkerCheck
from migrator.connection import ConnectionStrategy, apply_strategy
from migrator.engine import MigrationEngine
from migrator.errors import MigratorError, UnitTaken
from migrator.inputs import open_input
from migrator.procs import describe_error
from migrator.reader import WorkUnit
from migrator.session import RUN_ID_ENV
from migrator.stats import RunStats
from migrator.targets import Target, open_target
from migrator.targets.base import CHECKPOINT_TABLE, Connection, unit_key

_REASONS = {FileNotFoundError: "no such file or folder", PermissionError: "permission denied",
            IsADirectoryError: "it is a folder"}


class RunPlugin(WorkerPlugin):
    """One run's state on one worker."""

    def __init__(self, run: ClusterRun) -> None:
        self.run = run

    def setup(self, worker: Any) -> None:
        self.address = str(worker.address)
        self.stop = threading.Event()
        self._local = threading.local()
        self._targets: list[Target] = []
        self._lock = threading.Lock()
        # Sessions opened here are named like the coordinator's (migrator.session).
        self._previous_run_id = os.environ.get(RUN_ID_ENV)
        if self.run.run_id:
            os.environ[RUN_ID_ENV] = self.run.run_id

    def teardown(self, worker: Any) -> None:
        self.stop.set()
        with self._lock:
            targets, self._targets = self._targets, []
        for target in targets:
            with contextlib.suppress(Exception):
                target.close()
        if self._previous_run_id is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = self._previous_run_id

    def target(self) -> Target:
        """This thread's target for the run (its pool or its kept session live on)."""
        target: Target | None = getattr(self._local, "target", None)
        if target is None:
            run = self.run
            target = open_target(run.target_spec)
            target.set_namespace(run.namespace)
            apply_strategy(target, run.config.connection)  # (before its first connect)
            if run.config.connection is ConnectionStrategy.PERSISTENT:
                target = cast(Target, HeldTarget(target))
            self._local.target = target
            with self._lock:
                self._targets.append(target)
        return target

    @property
    def number(self) -> int:
        """This worker's number in the run (1..), 0 for a worker standing in."""
        chosen = self.run.workers
        return chosen.index(self.address) + 1 if self.address in chosen else 0

    def migrate(self, unit: WorkUnit) -> UnitOutcome:
        """One attempt at ``unit``, from its checkpoint as committed; every ending is an
        outcome (a failure's with its one-line cause and the traceback)."""
        host, pid = socket.gethostname(), os.getpid()
        started = time.time()
        try:
            return self._migrate(unit, host, pid)
        except Exception as exc:
            return UnitOutcome(unit.id, "failed", Checkpoint(), None, self.address, host, pid,
                               started, time.time(), describe_error(exc),
                               traceback.format_exc())

    def _migrate(self, unit: WorkUnit, host: str, pid: int) -> UnitOutcome:
        run = self.run
        target = self.target()
        at_start = run.config.retry.call(lambda: read_checkpoint(target, unit.id),
                                         "reading the unit's checkpoint")
        started = time.time()
        if at_start.finished:  # another attempt finished it
            return UnitOutcome(unit.id, "done", at_start, None, self.address, host, pid,
                               started, started)
        partial: list[RunStats | None] = [None]

        def on_batch(stats: RunStats, position: int) -> None:
            partial[0] = stats

        status, error, detail = "done", "", ""
        stats: RunStats | None = None
        try:
            engine = MigrationEngine(target, run.mapping, run.config, on_batch=on_batch,
                                     stop=self.stop, worker=self.number, order=run.order)
            stats = engine.run([unit], {unit.id: at_start})
        except KeyboardInterrupt:
            status, stats = "stopped", partial[0]
        except UnitTaken as exc:
            status, stats, error = "taken", partial[0], str(exc)
        except Exception as exc:
            status, stats = "failed", partial[0]
            error, detail = describe_error(exc), traceback.format_exc()
        session = target.held_session() if isinstance(target, HeldTarget) else ""
        return UnitOutcome(unit.id, status, at_start, stats, self.address, host, pid,
                           started, time.time(), error, detail, session)


class HeldTarget:
    """A target whose sessions are one kept session (``persistent`` across the tasks of a
    worker thread): ``connect()`` returns it, opening it when there is none; closing it
    keeps it for the next task, discarding it (a failed session) lets the next connect
    open a new one. :meth:`close` ends it with the run. Everything else is the target's."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._held: Connection | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def connect(self) -> Connection:
        if self._held is None:
            self._held = self._target.connect()
        return cast(Connection, _Kept(self._held, self))

    def held_session(self) -> str:
        """The server's id of the kept session ("" when none is open)."""
        if self._held is None:
            return ""
        with contextlib.suppress(Exception):
            return str(self._held.session_id())
        return ""

    def forget(self, conn: Connection) -> None:
        if self._held is conn:
            self._held = None

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()
        self._target.close()


class _Kept:
    """The kept session as a task sees it: ``close`` keeps it, ``discard`` ends it."""

    def __init__(self, conn: Connection, owner: HeldTarget) -> None:
        self._conn = conn
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def close(self) -> None:
        """Kept for the thread's next task (the run's end closes it)."""

    def discard(self) -> None:
        self._owner.forget(self._conn)
        self._conn.discard()


def read_checkpoint(target: Target, unit_id: str) -> Checkpoint:
    conn = target.connect()
    try:
        d = conn.dialect
        rows = conn.query(f"SELECT records_done, inserted, quarantined, finished, source_bytes "
                          f"FROM {d.table_ref(CHECKPOINT_TABLE)} WHERE unit_key = "
                          f"{d.placeholder}", (unit_key(unit_id),))
    finally:
        conn.close()
    if not rows:
        raise MigratorError(f"{unit_id}: the target has no checkpoint for this unit; the "
                            f"run's tables were replaced while it ran")
    r = rows[0]
    return Checkpoint(int(r[0]), int(r[1]), int(r[2]), bool(int(r[3])), int(r[4]))


def migrate_unit(name: str, unit: WorkUnit, sessions: Any = None) -> UnitOutcome:
    """A unit's task: migrate it with the run's plugin on this worker, holding a lease of
    the run's session semaphore (``--max-sessions``) while it writes."""
    plugin = cast(RunPlugin, get_worker().plugins[name])
    with sessions if sessions is not None else contextlib.nullcontext():
        return plugin.migrate(unit)


def stop_run(name: str, dask_worker: Any = None) -> bool:
    """Ctrl-C on the coordinator: this worker's engines stop after the batch they write."""
    plugin = dask_worker.plugins.get(name) if dask_worker is not None else None
    if plugin is None:
        return False
    plugin.stop.set()
    return True


def check_worker(check: WorkerCheck) -> list[tuple[str, str, str]]:
    """What this worker cannot do that the run needs: (kind, problem, fix) triples."""
    problems: list[tuple[str, str, str]] = []
    for path in check.paths:
        try:
            with open_input(path) as f:
                f.read(1)
        except (OSError, MigratorError) as exc:
            reason = str(exc) if isinstance(exc, MigratorError) else \
                exc.strerror or _REASONS.get(type(exc)) or str(exc) or type(exc).__name__
            problems.append(("input", f"cannot read {path}: {reason}",
                             "every worker needs the input at the same path (a shared "
                             "folder), or as a URL it can open (s3://…, with fsspec)"))
    if check.sqlite_file is not None:
        folder = os.path.dirname(check.sqlite_file) or "."
        if socket.gethostname() != check.client_host:
            problems.append(("target", f"cannot write the SQLite database {check.sqlite_file}: "
                             f"it runs "
                             f"on {socket.gethostname()}, the database is on "
                             f"{check.client_host}",
                             "SQLite's locks hold on one machine only: use a server "
                             "database (--target odbc:…) or workers on this machine"))
        elif not os.path.isdir(folder):
            problems.append(("target", f"cannot see the folder of the SQLite database "
                             f"{check.sqlite_file}", "run the workers on this machine"))
    if check.pipeline == "process" and multiprocessing.current_process().daemon:
        problems.append(("pipeline", "cannot use --pipeline process: its worker process is "
                         "daemonic "
                         "and may not start the read/map process",
                         "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False, or "
                         "use --pipeline thread"))
    if check.odbc_pooling is not None:
        from migrator import odbcini

        active = odbcini.active_pooling()
        if active is not None and active != check.odbc_pooling and odbcini.env_allocated():
            want, have = ("on", "off") if check.odbc_pooling else ("off", "on")
            problems.append(("pooling", f"cannot switch to --pooling {want}: its process "
                             f"connected with pooling {have} before, and unixODBC reads that "
                             f"once per process",
                             "restart the workers, or keep --pooling as it was"))
    return problems
