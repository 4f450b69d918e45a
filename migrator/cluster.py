"""ClusterCoordinator: a run's work units on a Dask distributed cluster (``--cluster``).

The same units as :class:`migrator.coordinator.ParallelCoordinator` — whole files and
record ranges of large ones (:mod:`migrator.partition`) — become one Dask task each, run by
the workers of a cluster: one started here (``local[:N]``, worker processes on this
machine) or a scheduler to join (``tcp://HOST:PORT``, workers on any machine). This process
plans the units, prepares the target and holds its run lock (:mod:`migrator.runlock`); the
workers only migrate.

* Each worker holds the run's targets and connections in a plugin registered for the run
  (:mod:`migrator.cluster_worker`), one per worker thread, as the connection strategy
  asks: a new session per batch, a pool that serves every task of the thread, or one
  session kept for the whole run; its sessions are named with the run id.
* Before anything is inserted, every worker checks that it can read every input file and
  reach the target the way the run needs; the first problem stops the run in one line
  naming the worker and the path.
* ``max_sessions`` caps the tasks writing at once across the cluster (a named Dask
  ``Semaphore``): the database sees at most that many of the run's sessions.
* Exactly-once. A task may run more than once: Dask runs a lost worker's tasks again
  elsewhere. Each attempt starts from its unit's checkpoint as committed in the target,
  and checks it under a row lock before every batch (``EngineConfig.fence_units``): a
  second attempt running at the same time stops instead of inserting twice. Counts come
  from the checkpoints, so records committed by an attempt whose result was lost are
  counted once.
* Ctrl-C: every worker is told to stop after the batch it is writing (one transaction
  each), the remaining tasks are cancelled, and ``KeyboardInterrupt`` is re-raised; the
  target stays resumable with ``--resume``.

Dask is an optional extra: nothing here imports it before a cluster is opened, and its
absence is one line naming ``pip install 'migration-bench[cluster]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from migrator.batch import Checkpoint
from migrator.cluster_task import ClusterRun, UnitOutcome, WorkerCheck
from migrator.config import EngineConfig
from migrator.coordinator import ProgressFn
from migrator.duplicates import InputOrder
from migrator.engine import prepare_target
from migrator.errors import MigratorError, NothingToResume
from migrator.mapping import Mapping
from migrator.partition import plan_units, unit_bytes, units_from_ids
from migrator.reader import WorkUnit
from migrator.runstate import finished_at, mark_finished
from migrator.session import current_run_id
from migrator.stats import RunStats, UnitResult, WorkerStats
from migrator.targets.base import CHECKPOINT_TABLE, Target, table_exists, unit_key

CLUSTER_HINT = "pip install 'migration-bench[cluster]'"
CLUSTER_FORMS = "local, local:N or tcp://HOST:PORT"
# How long to wait for a scheduler to answer, and for the workers a run needs to connect.
CONNECT_TIMEOUT_S = 30.0
# A run whose cluster has had no worker at all for this long stops (its tasks would wait
# for ever).
NO_WORKER_TIMEOUT_S = 60.0
POLL_S = 0.2
# Rounds of running again the units an attempt gave up (another attempt was writing them)
# before the run says which units did not finish.
MAX_ROUNDS = 5


class ClusterError(MigratorError):
    """The cluster cannot be used as asked; the message is for the user as-is."""


class ClusterTaskFailed(MigratorError):
    """A unit's task failed on a worker; the run stopped (committed batches are kept)."""

    def __init__(self, unit: str, worker: str, cause: str, detail: str = "") -> None:
        tail = "" if "--resume" in cause else \
            "; committed batches are kept — continue with --resume"
        super().__init__(f"{unit} on worker {worker}: {cause}{tail}")
        self.unit = unit
        self.worker = worker
        self.detail = detail


def import_distributed() -> ModuleType:
    """``distributed``, or one line saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed: "
                           f"{CLUSTER_HINT}") from None
    return distributed


# ---- where the cluster is ------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterSpec:
    """``local`` / ``local:N`` (a cluster of N worker processes started on this machine,
    default one per CPU) or ``tcp://HOST:PORT`` (a running scheduler)."""

    address: str | None = None
    local_workers: int = 0

    @classmethod
    def parse(cls, text: str) -> ClusterSpec:
        """Raises ValueError with the accepted forms."""
        value = text.strip()
        if value == "local":
            return cls(None, os.cpu_count() or 1)
        if value.startswith("local:"):
            n = value.removeprefix("local:")
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"{text!r}: local:N needs a worker count of at least 1; "
                                 f"use {CLUSTER_FORMS}")
            return cls(None, int(n))
        if value.startswith("tcp://"):
            host, sep, port = value.removeprefix("tcp://").rpartition(":")
            if host and sep and port.isdigit() and 0 < int(port) < 65536:
                return cls(value)
        raise ValueError(f"{text!r}: use {CLUSTER_FORMS} (e.g. tcp://10.0.0.5:8786, the "
                         f"address `dask scheduler` prints)")

    @property
    def is_local(self) -> bool:
        return self.address is None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


class Cluster:
    """An open connection to a cluster; a local one is started here and stopped on close.

    Open one for many runs (a sweep) and hand it to each :class:`ClusterCoordinator`.
    ``min_workers``: a local cluster starts at least that many workers.
    """

    def __init__(self, spec: ClusterSpec | str, *, min_workers: int = 0) -> None:
        self.spec = spec if isinstance(spec, ClusterSpec) else ClusterSpec.parse(spec)
        self.min_workers = min_workers
        self.client: Any = None
        self._local: Any = None

    def __enter__(self) -> Cluster:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Cluster:
        if self.client is not None:
            return self
        distributed = import_distributed()
        if self.spec.is_local:
            self._local = _start_local(distributed,
                                       max(self.spec.local_workers, self.min_workers))
            self.client = distributed.Client(self._local, set_as_default=False)
            return self
        try:
            self._probe()  # (a closed port fails at once, not after the client's timeout)
            self.client = distributed.Client(self.spec.address, timeout=CONNECT_TIMEOUT_S,
                                             set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"--cluster {self.spec.address}: no scheduler answers there ({exc}); start "
                f"one with `dask scheduler` and workers with `dask worker "
                f"{self.spec.address}`") from None
        return self

    def _probe(self) -> None:
        assert self.spec.address is not None
        host, _, port = self.spec.address.removeprefix("tcp://").rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=CONNECT_TIMEOUT_S):
            pass

    def close(self) -> None:
        client, self.client = self.client, None
        local, self._local = self._local, None
        with contextlib.suppress(Exception):
            if client is not None:
                client.close()
        with contextlib.suppress(Exception):
            if local is not None:
                local.close()

    def workers(self, n: int | None = None, timeout_s: float = CONNECT_TIMEOUT_S
                ) -> list[str]:
        """The addresses of the first ``n`` workers (all when None), sorted; waits up to
        ``timeout_s`` for that many to connect."""
        info = self.info()
        if n is not None and len(info) < n:
            with contextlib.suppress(Exception):  # (the count below says what is missing)
                self.client.wait_for_workers(n, timeout=timeout_s)
            info = self.info()
        if not info:
            raise ClusterError(f"--cluster {self.spec}: the scheduler has no workers; start "
                               f"some with `dask worker {self.spec}`")
        if n is not None and len(info) < n:
            raise ClusterError(f"--cluster {self.spec}: {len(info)} worker(s) connected, "
                               f"the run asks for {n} (--cluster-workers); start more with "
                               f"`dask worker {self.spec}` or ask for fewer")
        return sorted(info)[:n] if n is not None else sorted(info)

    def info(self) -> dict[str, dict[str, Any]]:
        """Per worker address: what the scheduler knows (``host``, ``nthreads`` …)."""
        return dict(self.client.scheduler_info(n_workers=-1).get("workers", {}))


def _start_local(distributed: ModuleType, workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded processes on 127.0.0.1.

    Its processes are started with SIGINT ignored (a terminal's Ctrl-C reaches the whole
    process group: the coordinator decides when the workers stop) and may start processes
    of their own (``--pipeline process``)."""
    import dask

    previous = signal.getsignal(signal.SIGINT)
    ignoring = _main_thread()
    if ignoring:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with dask.config.set({"distributed.worker.daemon": False,
                              "distributed.scheduler.work-stealing": False}):
            return distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                # (its HTTP server runs anyway: on a free port, never another cluster's)
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    finally:
        if ignoring:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---- what the coordinator reports ----------------------------------------------------------

@dataclass
class TaskRecord:
    """One finished attempt, for the result file (times relative to the run's start)."""

    unit: str
    worker: str
    host: str
    status: str
    records: int
    started_s: float
    ended_s: float
    session: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "worker": self.worker, "host": self.host,
                "status": self.status, "records": self.records,
                "started_s": round(self.started_s, 6), "ended_s": round(self.ended_s, 6),
                "session": self.session}


@dataclass
class ClusterReport:
    """How the cluster ran the units: who, where, what had to run again."""

    cluster: str
    workers: list[str] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)  # worker address → host
    lost_workers: list[str] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    rerun_units: list[str] = field(default_factory=list)  # started again after a loss
    max_sessions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "workers": list(self.workers),
                "hosts": dict(self.hosts), "lost_workers": list(self.lost_workers),
                "rerun_units": list(self.rerun_units), "max_sessions": self.max_sessions,
                "tasks": [t.to_dict() for t in self.tasks]}


# ---- the coordinator -------------------------------------------------------------------------

class ClusterCoordinator:
    """Runs a planned set of units as tasks on a cluster and merges their results; the
    interface of :class:`migrator.coordinator.ParallelCoordinator`."""

    def __init__(self, target: Target, mapping: Mapping, config: EngineConfig | None = None,
                 *, cluster: Cluster, workers: int | None = None,
                 max_sessions: int | None = None, partitions_per_worker: int = 2,
                 on_progress: ProgressFn | None = None,
                 on_started: Callable[[], None] | None = None, grace_s: float = 10.0) -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be >= 1")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.target = target
        self.mapping = mapping
        self.config = replace(config or EngineConfig(), fence_units=True)
        self.cluster = cluster
        self.workers = workers
        self.max_sessions = max_sessions
        self.partitions_per_worker = max(1, partitions_per_worker)
        self.on_progress = on_progress
        self.on_started = on_started
        self.grace_s = grace_s
        self.started = False
        self.partial: RunStats | None = None
        self.notes: list[str] = []
        self.report = ClusterReport(str(cluster.spec), max_sessions=max_sessions)
        self._prepare_s = 0.0
        self._planned: dict[str, Checkpoint] = {}  # each unit's checkpoint at the start
        self._slots: dict[str, int] = {}  # worker address → its threads (tasks at once)

    # ---- planning --------------------------------------------------------------------
    def plan(self, files: Sequence[WorkUnit], slots: int, *, resume: bool = False
             ) -> list[WorkUnit]:
        """The interrupted run's units on resume, else the files cut into ``slots ×
        partitions_per_worker`` pieces of equal bytes."""
        if resume:
            ids = self.config.retry.call(self._saved_unit_ids,
                                         "reading the checkpoints to resume")
            return units_from_ids(ids, files) if ids is not None else list(files)
        return plan_units(files, slots * self.partitions_per_worker,
                          self.mapping.record_elements, self.notes)

    def _saved_unit_ids(self) -> list[str] | None:
        conn = self.target.connect()
        try:
            if not table_exists(conn, CHECKPOINT_TABLE):
                return None
            return [str(r[0]) for r in conn.query(
                f"SELECT unit FROM {conn.dialect.table_ref(CHECKPOINT_TABLE)}")]
        finally:
            conn.close()

    # ---- running ---------------------------------------------------------------------
    def run(self, files: Sequence[WorkUnit], *, resume: bool = False,
            replace_existing: bool = False) -> RunStats:
        """Check the workers, plan, prepare the target and migrate every unit on the
        cluster. ``elapsed_s`` covers planning and migrating, not preparing the schema;
        after a raise, ``started`` and ``partial`` say what had happened."""
        self.started, self.partial, self._prepare_s, self.notes = False, None, 0.0, []
        try:
            spec = self.target.picklable_spec()
        except NotImplementedError:
            raise ClusterError(f"--cluster needs a target the workers can open; "
                               f"{type(self.target).__name__} cannot be") from None
        if resume:
            self.target.connect().close()
            when = self.config.retry.call(lambda: finished_at(self.target),
                                          "reading the checkpoints to resume")
            if when is not None:
                raise NothingToResume(when)
        chosen = self._ready_workers(files)
        info = self.cluster.info()
        t0 = time.perf_counter()
        wall0 = time.time()
        self._slots = {a: int(info.get(a, {}).get("nthreads", 1) or 1) for a in chosen}
        slots = sum(self._slots.values())
        try:
            stats = self._run(files, resume, replace_existing, spec, chosen, slots, wall0)
        except BaseException:
            if self.partial is not None:
                self.partial.elapsed_s = time.perf_counter() - t0 - self._prepare_s
            raise
        stats.elapsed_s = time.perf_counter() - t0 - self._prepare_s
        stats.notes = list(self.notes)
        if not stats.errors and all(u.finished for u in stats.units):
            self.partial = stats
            self.config.retry.call(lambda: mark_finished(self.target),
                                   "recording that the run finished")
        return stats

    def _ready_workers(self, files: Sequence[WorkUnit]) -> list[str]:
        """The workers of the run, each checked (:meth:`_check_workers`). The processes of
        a local cluster are restarted once when they cannot switch ODBC pooling."""
        for attempt in (1, 2):
            chosen = self.cluster.workers(self.workers)
            info = self.cluster.info()
            self.report.workers = chosen
            self.report.hosts = {a: str(info.get(a, {}).get("host", "?")) for a in chosen}
            problems = self._check_workers(files, chosen)
            if problems and attempt == 1 and self.cluster.spec.is_local and \
                    all(kind == "pooling" for _, (kind, _, _) in problems):
                self.cluster.client.restart()
                continue
            if problems:
                address, (_, problem, fix) = problems[0]
                more = f" (and {len(problems) - 1} more problem(s))" \
                    if len(problems) > 1 else ""
                raise ClusterError(f"worker {address} ({self.report.hosts.get(address, '?')})"
                                   f" {problem}{more}; {fix}")
            break
        return chosen

    def _check_workers(self, files: Sequence[WorkUnit], chosen: list[str]
                       ) -> list[tuple[str, tuple[str, str, str]]]:
        """What a chosen worker cannot do that the run needs — read every input, reach the
        target, run the pipeline mode — as (worker, (kind, problem, fix)), checked on the
        workers before anything is prepared."""
        from migrator import cluster_worker

        path = getattr(self.target, "path", None)
        dialect = self.target.dialect.name
        sqlite_file = str(path) if dialect == "sqlite" and path else None
        odbc = self.target.picklable_spec().startswith("odbc:")
        check = WorkerCheck(tuple(u.path for u in files), sqlite_file, socket.gethostname(),
                            self.config.pipeline,
                            self.config.connection.driver_pooling if odbc else None)
        answers = self.cluster.client.run(cluster_worker.check_worker, check,
                                          workers=chosen, on_error="return")
        problems: list[tuple[str, tuple[str, str, str]]] = []
        for address in chosen:
            answer = answers.get(address)
            if isinstance(answer, BaseException):
                raise ClusterError(f"worker {address} ({self.report.hosts.get(address, '?')})"
                                   f" cannot run the migration: {type(answer).__name__}: "
                                   f"{answer}; install migration-bench (the same version) on "
                                   f"every worker: {CLUSTER_HINT}")
            problems.extend((address, p) for p in answer or [])
        return problems

    def _run(self, files: Sequence[WorkUnit], resume: bool, replace_existing: bool,
             spec: str, chosen: list[str], slots: int, wall0: float) -> RunStats:
        units = self.plan(files, slots, resume=resume)
        t = time.perf_counter()
        checkpoints = prepare_target(self.target, self.mapping, units, resume=resume,
                                     replace_existing=replace_existing,
                                     retry=self.config.retry)
        self.started = True
        self._planned = checkpoints
        if self.on_started is not None:
            self.on_started()
        self._prepare_s = time.perf_counter() - t
        run_id = current_run_id() or ""
        run = ClusterRun(f"migration-bench-{run_id or 'run'}-{uuid.uuid4().hex[:8]}",
                         run_id, spec, self.target.namespace, self.mapping,
                         self.config, InputOrder(units), tuple(chosen))
        outcomes: list[UnitOutcome] = []
        with self._registered(run):
            try:
                self._run_tasks(run, units, checkpoints, outcomes, wall0)
            except BaseException:
                self.partial = self._merge(units, checkpoints, outcomes, wall0,
                                           complete=False)
                raise
        return self._merge(units, checkpoints, outcomes, wall0, complete=True)

    @contextlib.contextmanager
    def _registered(self, run: ClusterRun) -> Iterator[None]:
        from migrator import cluster_worker

        client = self.cluster.client
        client.register_plugin(cluster_worker.RunPlugin(run), name=run.name)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # (a worker that died has nothing to close)
                client.unregister_worker_plugin(run.name)

    def _run_tasks(self, run: ClusterRun, units: list[WorkUnit],
                   checkpoints: dict[str, Checkpoint], outcomes: list[UnitOutcome],
                   wall0: float) -> None:
        todo = [u for u in units if not checkpoints[u.id].finished]
        by_id = {u.id: u for u in units}
        progress = _Progress(self.on_progress, checkpoints, units)
        for attempt in range(MAX_ROUNDS):
            if not todo:
                break
            done = self._round(run, todo, outcomes, progress, attempt, wall0)
            final = self._read_checkpoints(units)
            todo = [by_id[uid] for uid in done if not final[uid].finished
                    and not _failed_on_input(outcomes, uid)]
            self.report.rerun_units.extend(u.id for u in todo
                                           if u.id not in self.report.rerun_units)
        self._watch_workers(None)  # (a worker lost near the end is named too)
        if todo:
            raise ClusterError(f"{len(todo)} unit(s) did not finish after {MAX_ROUNDS} "
                               f"rounds of attempts (the first: {todo[0].id}); committed "
                               f"batches are kept — continue with --resume")

    def _round(self, run: ClusterRun, todo: list[WorkUnit], outcomes: list[UnitOutcome],
               progress: _Progress, attempt: int, wall0: float) -> list[str]:
        """Run ``todo`` once more; returns the ids of the units it ran."""
        distributed = import_distributed()
        client = self.cluster.client
        sem = distributed.Semaphore(max_leases=self.max_sessions,
                                    name=f"{run.name}-sessions",
                                    scheduler_rpc=client.scheduler, loop=client.loop) \
            if self.max_sessions else None
        dispatch = _Dispatch(client, run, sorted(todo, key=lambda u: -unit_bytes(u)), sem,
                             f"{run.name}-{attempt}", self._slots)
        try:
            self._wait(dispatch, outcomes, progress, wall0)
        except BaseException:
            self._stop(run, list(dispatch.running))
            raise
        finally:
            with contextlib.suppress(Exception):
                if sem is not None:
                    sem.close()
        return [u.id for u in todo]

    def _wait(self, dispatch: _Dispatch, outcomes: list[UnitOutcome], progress: _Progress,
              wall0: float) -> None:
        """Hand units to workers as they free up and collect the outcomes; the first
        failure stops the run."""
        no_worker_since: float | None = None
        while True:
            dispatch.fill(self.report.lost_workers)
            if not dispatch.running:
                return
            finished = [f for f in dispatch.running if f.done()]
            if not finished:
                time.sleep(POLL_S)
                no_worker_since = self._watch_workers(no_worker_since)
                continue
            for future in finished:
                unit = dispatch.done(future)
                outcome = self._outcome(future, unit)
                outcomes.append(outcome)
                self._record(outcome, wall0)
                progress.finished(outcome, unit)
                if outcome.status == "failed":
                    raise ClusterTaskFailed(unit.id, outcome.worker, outcome.error,
                                            outcome.detail)

    def _outcome(self, future: Any, unit: WorkUnit) -> UnitOutcome:
        """The task's outcome; a task Dask gave up on (its workers kept dying) is a
        failed one."""
        try:
            result: UnitOutcome = future.result()
            return result
        except Exception as exc:
            name = type(exc).__name__
            cause = (f"the workers running it died ({exc})" if name == "KilledWorker"
                     else f"{name}: {exc}")
            return UnitOutcome(unit.id, "failed", Checkpoint(), None, "?", "?", 0, 0.0, 0.0,
                               cause)

    def _record(self, outcome: UnitOutcome, wall0: float) -> None:
        """The attempt in the report; a unit whose attempt found records committed since
        the run started (an earlier attempt's, on a worker that was lost) ran again."""
        planned = self._planned.get(outcome.unit)
        if outcome.status != "failed" and planned is not None and \
                outcome.at_start.records_done > planned.records_done and \
                outcome.unit not in self.report.rerun_units:
            self.report.rerun_units.append(outcome.unit)
        records = outcome.stats.records_read if outcome.stats is not None else 0
        self.report.tasks.append(TaskRecord(outcome.unit, outcome.worker, outcome.host,
                                            outcome.status, records,
                                            outcome.started - wall0 if outcome.started else 0,
                                            outcome.ended - wall0 if outcome.ended else 0,
                                            outcome.session))

    def _watch_workers(self, since: float | None) -> float | None:
        """Note the chosen workers that left; give up when the cluster has had none for
        NO_WORKER_TIMEOUT_S (the tasks would wait for ever)."""
        try:
            present = set(self.cluster.info())
        except Exception:  # the scheduler is unreachable: the client reconnects or fails
            return since
        for address in self.report.workers:
            if address not in present and address not in self.report.lost_workers:
                self.report.lost_workers.append(address)
        if present:
            return None
        now = time.monotonic()
        if since is None:
            return now
        if now - since > NO_WORKER_TIMEOUT_S:
            raise ClusterError(f"--cluster {self.cluster.spec}: no worker left for "
                               f"{NO_WORKER_TIMEOUT_S:.0f} s; committed batches are kept — "
                               f"start workers and continue with --resume")
        return since

    def _stop(self, run: ClusterRun, futures: list[Any]) -> None:
        """Tell every worker to stop after its batch, wait for the running tasks (a second
        Ctrl-C stops waiting), cancel the rest."""
        from migrator import cluster_worker

        client = self.cluster.client
        with contextlib.suppress(BaseException):
            client.run(cluster_worker.stop_run, run.name, on_error="ignore")
        deadline = time.monotonic() + self.grace_s
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline and not all(f.done() for f in futures):
                time.sleep(POLL_S)
        with contextlib.suppress(BaseException):
            client.cancel(futures, force=True)

    def _read_checkpoints(self, units: Sequence[WorkUnit]) -> dict[str, Checkpoint]:
        def read() -> dict[str, Checkpoint]:
            conn = self.target.connect()
            try:
                rows = conn.query(
                    f"SELECT unit_key, records_done, inserted, quarantined, finished, "
                    f"source_bytes FROM {conn.dialect.table_ref(CHECKPOINT_TABLE)}")
            finally:
                conn.close()
            return {str(r[0]): Checkpoint(int(r[1]), int(r[2]), int(r[3]), bool(int(r[4])),
                                          int(r[5])) for r in rows}

        saved = self.config.retry.call(read, "reading the checkpoints")
        return {u.id: saved.get(unit_key(u.id), Checkpoint()) for u in units}

    # ---- merging -----------------------------------------------------------------------
    def _merge(self, units: list[WorkUnit], checkpoints: dict[str, Checkpoint],
               outcomes: list[UnitOutcome], wall0: float, *, complete: bool) -> RunStats:
        """One RunStats for the run. Counts are the checkpoints' (what this run committed
        per unit), so an attempt whose result was lost is counted once; per-table rows,
        stage times and batches are the attempts' that reported."""
        try:
            final = self._read_checkpoints(units)
        except MigratorError:
            if complete:
                raise
            final = dict(checkpoints)  # (the target is unreachable: what we know)
        stats = RunStats(rows={t.name: 0 for t in self.mapping.tables},
                         pipeline=self.config.pipeline,
                         queue_depth=self.config.queue_depth
                         if self.config.pipeline != "off" else 0)
        per_worker: dict[str, WorkerStats] = {}
        by_unit: dict[str, UnitResult] = {}
        batches = []
        for o in outcomes:
            r = o.stats
            if r is None:
                continue
            stats.add_counts(r)
            shift = o.started - wall0
            for b in r.batches:
                b.started += shift
                b.ended += shift
                batches.append(b)
            for result in r.units:
                by_unit.setdefault(result.unit, result)
                if result.error:
                    by_unit[result.unit] = result
            w = per_worker.setdefault(o.worker, WorkerStats(
                _worker_number(self.report.workers, o.worker), o.pid, []))
            w.partitions.append(o.unit)
            w.records_read += r.records_read
            w.inserted += r.inserted
            w.quarantined += r.quarantined
            w.elapsed_s += r.elapsed_s
            for half, s in r.stage_busy.items():
                w.stage_busy[half] = w.stage_busy.get(half, 0.0) + s
        batches.sort(key=lambda b: b.ended)
        for i, b in enumerate(batches):
            b.index = i
        stats.batches = batches
        stats.workers = sorted(per_worker.values(), key=lambda w: (w.worker, w.pid))
        # The checkpoints' counts: what this run committed, whoever's result reported it.
        unreported = 0
        stats.records_read = stats.inserted = stats.quarantined = 0
        stats.units = []
        for u in units:
            before, after = checkpoints[u.id], final[u.id]
            done = after.records_done - before.records_done
            stats.records_read += done
            stats.inserted += after.inserted - before.inserted
            stats.quarantined += after.quarantined - before.quarantined
            mine = by_unit.get(u.id)
            reported = mine.records_read if mine is not None else 0
            unreported += max(0, done - reported)
            stats.units.append(UnitResult(u.id, records_read=done,
                                          skipped=before.records_done,
                                          finished=after.finished,
                                          error=mine.error if mine is not None else None))
        if unreported:
            self.notes.append(
                f"{unreported:,} records were committed by task attempts whose results never "
                f"came back (a worker was lost): counted from the checkpoints; per-table "
                f"rows, stage times and batches leave them out")
        return stats


def _worker_number(chosen: Sequence[str], address: str) -> int:
    """1.. for the chosen workers, in address order; 0 for another one (a stand-in)."""
    return chosen.index(address) + 1 if address in chosen else 0


def _failed_on_input(outcomes: Sequence[UnitOutcome], uid: str) -> bool:
    """Did the unit stop on its input (malformed XML: the run reports it, no retry)?"""
    for o in outcomes:
        if o.unit == uid and o.stats is not None and any(
                u.unit == uid and u.error for u in o.stats.units):
            return True
    return False


class _Dispatch:
    """Hands units out, largest first, to the worker with the most free threads, one task
    per free thread: whichever worker finishes first gets the next unit, so a slower
    machine gets fewer (Dask would hand every task out at once). Units go to the chosen
    workers; once every one of them is lost, to any worker of the cluster."""

    def __init__(self, client: Any, run: ClusterRun, queue: list[WorkUnit], sessions: Any,
                 key: str, slots: dict[str, int]) -> None:
        self.client = client
        self.run = run
        self.queue = queue
        self.sessions = sessions
        self.key = key
        self.slots = slots
        self.busy = dict.fromkeys(slots, 0)
        self.running: dict[Any, tuple[WorkUnit, str | None]] = {}
        self._submitted = 0

    def fill(self, lost: Sequence[str]) -> None:
        alive = [a for a in self.slots if a not in lost]
        while self.queue:
            if alive:
                free = max(alive, key=lambda a: self.slots[a] - self.busy[a])
                if self.busy[free] >= self.slots[free]:
                    return
                self._submit(self.queue.pop(0), free)
            else:
                self._submit(self.queue.pop(0), None)

    def _submit(self, unit: WorkUnit, address: str | None) -> None:
        from migrator import cluster_worker

        future = self.client.submit(
            cluster_worker.migrate_unit, self.run.name, unit, self.sessions,
            key=f"{self.key}-{self._submitted}", pure=False,
            workers=[address] if address else None, allow_other_workers=bool(address))
        self._submitted += 1
        self.running[future] = (unit, address)
        if address is not None:
            self.busy[address] += 1

    def done(self, future: Any) -> WorkUnit:
        unit, address = self.running.pop(future)
        if address is not None:
            self.busy[address] -= 1
        return unit


class _Progress:
    """Records committed and input bytes of the finished units, for the progress bar."""

    def __init__(self, on_progress: ProgressFn | None, checkpoints: dict[str, Checkpoint],
                 units: Sequence[WorkUnit]) -> None:
        self.on_progress = on_progress
        self.records = 0
        self.bytes = sum(unit_bytes(u) for u in units if checkpoints[u.id].finished)
        self._done: set[str] = set()

    def finished(self, outcome: UnitOutcome, unit: WorkUnit) -> None:
        if outcome.stats is not None:
            self.records += outcome.stats.records_read
        if outcome.status == "done" and unit.id not in self._done:
            self._done.add(unit.id)
            self.bytes += unit_bytes(unit)
        if self.on_progress is not None:
            self.on_progress(self.records, self.bytes)
