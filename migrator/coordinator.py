"""ParallelCoordinator: ``--workers N`` processes, each with its own engine and connections.

The coordinator plans the work (files, and record ranges of large files, see
:mod:`migrator.partition`), prepares the target once with one checkpoint row per unit, hands
each worker a balanced share of the units and supervises them. Workers are spawned (never
forked) and rebuild the target from ``target.picklable_spec()``: no connection crosses a
process boundary. Exactly-once holds per unit, as in one engine: every batch commits with
its units' checkpoint rows, so ``--resume`` continues each unit where its last committed
batch ended — with the interrupted run's units, whatever ``--workers`` is now.

Failure: the first worker that raises, loses its database or dies (even by SIGKILL) stops
the run. The others are told to stop after the batch they are writing (each batch is one
transaction, so nothing is half-committed), stragglers are killed after a grace period, and
:class:`WorkerFailed` names the worker, its partition and the cause in one line. Ctrl-C
stops every worker the same way and re-raises ``KeyboardInterrupt`` (exit 130 in the CLI).
Workers ignore SIGINT (the terminal sends it to the whole process group; the coordinator
decides) and are killed by the kernel if the coordinator dies, so no process outlives a run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from typing import Any

from migrator.batch import Checkpoint
from migrator.config import EngineConfig
from migrator.connection import can_apply
from migrator.duplicates import InputOrder
from migrator.engine import MigrationEngine, prepare_target
from migrator.errors import MigratorError, NothingToResume
from migrator.mapping import Mapping
from migrator.partition import assign, plan_units, unit_bytes, units_from_ids
from migrator.procs import (
    describe_error,
    describe_exit,
    die_with_parent,
    main_not_reimported,
    spawn_context,
)
from migrator.reader import WorkUnit
from migrator.runstate import finished_at, mark_finished
from migrator.stats import RunStats, UnitResult, WorkerStats
from migrator.targets.base import CHECKPOINT_TABLE, Namespace, Target, table_exists

ProgressFn = Callable[[int, int], None]  # (records committed, input bytes consumed)
WorkerInit = Callable[[int], None]  # called first in each worker with its number (1..N)


class WorkerFailed(MigratorError):
    """A worker raised, lost its connection or died; the run stopped."""

    def __init__(self, worker: int, pid: int | None, partition: str, cause: str,
                 detail: str = "") -> None:
        tail = "" if "--resume" in cause else \
            "; committed batches are kept — continue with --resume"
        super().__init__(f"worker {worker} (pid {pid}) failed on {partition}: {cause}{tail}")
        self.worker = worker
        self.pid = pid
        self.partition = partition
        self.cause = cause
        self.detail = detail  # the worker's traceback, when it could send one


@dataclass(frozen=True)
class WorkerTask:
    """A worker's share of the run; picklable (the target travels as its spec, never as a
    connection)."""

    worker: int
    mapping: Mapping
    config: EngineConfig
    units: list[WorkUnit]
    checkpoints: dict[str, Checkpoint]
    namespace: Namespace = field(default_factory=Namespace)  # where the tables are
    order: InputOrder | None = None  # every unit of the run, for duplicate keys


@dataclass
class _Worker:
    task: WorkerTask
    proc: Any
    conn: Any
    conn_open: bool = True
    exited: bool = False
    result: RunStats | None = None
    started: float = 0.0
    pid: int = 0
    records: int = 0
    position: int = 0
    stopped: bool = False
    error: str | None = None
    detail: str = ""
    sizes: list[int] = field(default_factory=list)
    partial: RunStats | None = None  # what a failed or stopped worker had committed

    def partition(self) -> str:
        """The unit the worker was reading at its last reported position."""
        end = 0
        for unit, size in zip(self.task.units, self.sizes, strict=True):
            end += size
            if self.position < end:
                return unit.id
        return self.task.units[-1].id


class ParallelCoordinator:
    """Runs N workers over a planned set of units and merges their results."""

    def __init__(self, target: Target, mapping: Mapping, config: EngineConfig | None = None,
                 *, workers: int = 1, partitions_per_worker: int = 1,
                 on_progress: ProgressFn | None = None, worker_init: WorkerInit | None = None,
                 grace_s: float = 10.0, on_started: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.target = target
        self.mapping = mapping
        self.config = config or EngineConfig()
        self.workers = workers
        self.partitions_per_worker = max(1, partitions_per_worker)
        self.on_progress = on_progress
        self.worker_init = worker_init
        self.grace_s = grace_s
        # Called once the target is prepared, before the first record is inserted (a
        # before-reading of the server's counters); its time is not the run's.
        self.on_started = on_started
        # After run() raised: did the migration start (the schema was prepared), and what
        # had the engines committed by then (counts, batches, stages)? None when nothing.
        self.started = False
        self.partial: RunStats | None = None
        # One line per input file that --workers could not cut into byte ranges, and why.
        self.notes: list[str] = []
        self._prepare_s = 0.0
        self._replace_existing = False

    # ---- planning --------------------------------------------------------------------
    def plan(self, files: Sequence[WorkUnit], *, resume: bool = False) -> list[WorkUnit]:
        """The units of this run: the interrupted run's on resume, else files cut into
        ``workers × partitions_per_worker`` pieces of equal bytes (files whole for 1)."""
        if resume:
            ids = self._saved_unit_ids()
            if ids is not None:
                return units_from_ids(ids, files)
            return list(files)  # prepare_target says there is nothing to resume
        if self.workers == 1:
            return list(files)
        return plan_units(files, self.workers * self.partitions_per_worker,
                          self.mapping.record_elements, self.notes)

    def _saved_unit_ids(self) -> list[str] | None:
        return self.config.retry.call(self._read_unit_ids, "reading the checkpoints to resume")

    def _read_unit_ids(self) -> list[str] | None:
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
        """Plan, prepare the target (fresh schema or resume) and migrate every unit.

        ``replace_existing``: a fresh schema also replaces same-named tables the tool did
        not create (refused otherwise). With several workers, the workers start (spawn,
        imports) while the coordinator plans. ``elapsed_s`` covers planning, starting the
        workers and migrating, not preparing the schema.

        A run that reads every unit to the end without an error records when it finished
        in the target (:mod:`migrator.runstate`); resuming such a target raises
        :class:`NothingToResume`. When the run raises after it started, ``started`` is
        True and ``partial`` holds what was committed until then.
        """
        self.started, self.partial, self._prepare_s = False, None, 0.0
        self.notes = []
        if resume:
            # The run's first contact with the target: a wrong host or port fails at once,
            # not after the retry window; a session lost once the server answered is retried.
            self.target.connect().close()
            when = self.config.retry.call(lambda: finished_at(self.target),
                                          "reading the checkpoints to resume")
            if when is not None:
                raise NothingToResume(when)
        t0 = time.perf_counter()
        self._replace_existing = replace_existing
        try:
            stats = self._run(files, resume)
        except BaseException:
            if self.partial is not None:
                self.partial.elapsed_s = time.perf_counter() - t0 - self._prepare_s
            elif self.started:
                self.partial = self._empty_stats()
            raise
        stats.elapsed_s = time.perf_counter() - t0 - self._prepare_s
        stats.notes = list(self.notes)
        if not stats.errors and all(u.finished for u in stats.units):
            self.partial = stats  # (should recording the finish fail, the counts are kept)
            self.config.retry.call(lambda: mark_finished(self.target),
                                   "recording that the run finished")
        return stats

    def _run(self, files: Sequence[WorkUnit], resume: bool) -> RunStats:
        # (one worker migrates here unless this process cannot take the strategy's pooling)
        if self.workers == 1 and can_apply(self.target, self.config.connection):
            units, checkpoints, _ = self._plan_and_prepare(files, resume)
            return self._run_here(units, checkpoints)
        stats, _ = self._run_workers(files, resume)
        return stats

    def _empty_stats(self) -> RunStats:
        return RunStats(rows={t.name: 0 for t in self.mapping.tables},
                        pipeline=self.config.pipeline,
                        queue_depth=self.config.queue_depth
                        if self.config.pipeline != "off" else 0)

    def _plan_and_prepare(self, files: Sequence[WorkUnit], resume: bool
                          ) -> tuple[list[WorkUnit], dict[str, Checkpoint], float]:
        units = self.plan(files, resume=resume)
        t = time.perf_counter()
        checkpoints = prepare_target(self.target, self.mapping, units, resume=resume,
                                     replace_existing=self._replace_existing,
                                     retry=self.config.retry)
        self.started = True
        if self.on_started is not None:
            self.on_started()
        self._prepare_s = time.perf_counter() - t
        return units, checkpoints, self._prepare_s

    def _run_here(self, units: list[WorkUnit],
                  checkpoints: dict[str, Checkpoint]) -> RunStats:
        progress = self.on_progress

        def on_batch(stats: RunStats, position: int) -> None:
            self.partial = stats  # (the engine's own, so it is current when a batch fails)
            if progress is not None:
                progress(stats.records_read, position)

        stats = MigrationEngine(self.target, self.mapping, self.config, on_batch=on_batch,
                                worker=1, order=InputOrder(units)).run(units, checkpoints)
        stats.workers = [WorkerStats(1, os.getpid(), [u.id for u in units], stats.records_read,
                                     stats.inserted, stats.quarantined, stats.elapsed_s,
                                     dict(stats.stage_busy))]
        return stats

    def _run_workers(self, files: Sequence[WorkUnit], resume: bool) -> tuple[RunStats, float]:
        try:
            spec = self.target.picklable_spec()
        except NotImplementedError:
            raise MigratorError(f"--workers needs a target that can be rebuilt in a worker "
                                f"process; {type(self.target).__name__} cannot") from None
        ctx = spawn_context()
        stop = ctx.Event()
        started: list[tuple[Any, Any]] = []  # (process, connection) per worker number - 1
        workers: list[_Worker] = []
        try:
            for wid in range(1, self.workers + 1):
                here, there = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=worker_main, name=f"mb-worker-{wid}",
                                   args=(wid, spec, there, stop, self.worker_init))
                with main_not_reimported():
                    proc.start()
                there.close()
                started.append((proc, here))
            units, checkpoints, prepare_s = self._plan_and_prepare(files, resume)
            t_run = time.perf_counter()
            todo = [u for u in units if not checkpoints[u.id].finished]
            groups = assign(todo, self.workers) if todo else []
            order = InputOrder(units)
            for wid, (proc, conn) in enumerate(started, 1):
                if wid > len(groups):
                    with contextlib.suppress(OSError):
                        conn.send(None)  # more workers than units: this one goes home
                    continue
                group = groups[wid - 1]
                task = WorkerTask(wid, self.mapping, self.config, group,
                                  {u.id: checkpoints[u.id] for u in group},
                                  self.target.namespace, order)
                with contextlib.suppress(OSError):  # (dead already: supervising tells why)
                    conn.send(task)
                workers.append(_Worker(task, proc, conn, pid=proc.pid or 0,
                                       sizes=[unit_bytes(u) for u in group]))
            try:
                failed = self._supervise(workers, stop)
            except KeyboardInterrupt:
                stop.set()  # each worker finishes the batch it is writing, then exits
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: kill now
                    self._supervise(workers, stop, deadline=time.monotonic() + self.grace_s)
                self.partial = self._merge_partial(units, checkpoints, workers, t_run)
                raise
            if failed is not None:
                self.partial = self._merge_partial(units, checkpoints, workers, t_run)
                raise WorkerFailed(failed.task.worker, failed.pid, failed.partition(),
                                   failed.error or "failed", failed.detail)
        finally:
            stop.set()
            for _, conn in started:
                conn.close()  # a worker still waiting for its task gets EOF and leaves
            for proc, _ in started:
                proc.join(timeout=self.grace_s)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        stats = RunStats(rows={t.name: 0 for t in self.mapping.tables},
                         pipeline=self.config.pipeline,
                         queue_depth=self.config.queue_depth
                         if self.config.pipeline != "off" else 0)
        return self._merge(stats, units, checkpoints, workers, t_run), prepare_s

    def _supervise(self, workers: list[_Worker], stop: Any,
                   deadline: float | None = None) -> _Worker | None:
        """Wait for every worker; on the first failure stop the others (grace, then kill)."""
        failed: _Worker | None = None
        while True:
            live = [w for w in workers if not w.exited]
            if not live:
                return failed
            if deadline is not None and time.monotonic() > deadline:
                for w in live:
                    w.proc.kill()
            waitables = [w.conn for w in live if w.conn_open] + [w.proc.sentinel for w in live]
            wait_for(waitables, timeout=0.5)
            for w in live:
                exited = w.proc.exitcode is not None  # before draining: nothing can follow
                while w.conn_open and w.conn.poll():
                    try:
                        self._handle(w, w.conn.recv())
                    except (EOFError, OSError):
                        w.conn_open = False
                if not exited:
                    continue
                w.exited = True
                if w.result is None and w.error is None and not w.stopped:
                    w.error = f"the process died ({describe_exit(w.proc.exitcode)})"
                if w.error is not None and failed is None:
                    failed = w
                    stop.set()
                    deadline = time.monotonic() + self.grace_s
            self._report_progress(workers)

    def _handle(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "progress":
            w.records, w.position = msg[1], msg[2]
        elif kind == "done":
            w.result, w.started, w.pid = msg[1], msg[2], msg[3]
        elif kind == "stopped":
            w.stopped = True
            w.partial, w.started = msg[1], msg[2]
        elif kind == "failed":
            w.error, w.detail = msg[1], msg[2]
            w.partial, w.started = msg[3], msg[4]

    def _report_progress(self, workers: list[_Worker]) -> None:
        if self.on_progress is not None:
            self.on_progress(sum(w.records for w in workers),
                             sum(w.position for w in workers))

    def _merge_partial(self, units: list[WorkUnit], checkpoints: dict[str, Checkpoint],
                       workers: list[_Worker], t_run: float) -> RunStats:
        """What the workers committed before the run stopped (a killed worker's share is
        only in the target's checkpoints: it could not report it)."""
        for w in workers:
            if w.result is None:
                w.result = w.partial or RunStats(rows={t.name: 0 for t in self.mapping.tables})
                w.started = w.started or t_run
        return self._merge(self._empty_stats(), units, checkpoints, workers, t_run)

    def _merge(self, stats: RunStats, units: list[WorkUnit],
               checkpoints: dict[str, Checkpoint], workers: list[_Worker],
               t_run: float) -> RunStats:
        by_unit: dict[str, UnitResult] = {}
        batches = []
        for w in workers:
            r = w.result
            assert r is not None
            stats.records_read += r.records_read
            stats.inserted += r.inserted
            stats.quarantined += r.quarantined
            stats.add_counts(r)
            stats.connects += r.connects
            shift = w.started - t_run  # perf_counter is system-wide monotonic on Linux
            for b in r.batches:
                b.started += shift
                b.ended += shift
                batches.append(b)
            by_unit.update((u.unit, u) for u in r.units)
            stats.workers.append(WorkerStats(w.task.worker, w.pid, [u.id for u in w.task.units],
                                             r.records_read, r.inserted, r.quarantined,
                                             r.elapsed_s, dict(r.stage_busy)))
        batches.sort(key=lambda b: b.ended)
        for i, b in enumerate(batches):
            b.index = i
        stats.batches = batches
        stats.units = [by_unit.get(u.id) or UnitResult(
            u.id, skipped=checkpoints[u.id].records_done, finished=checkpoints[u.id].finished)
            for u in units]
        return stats


def worker_main(worker: int, spec: str, conn: Any, stop: Any, init: WorkerInit | None) -> None:
    """Entry point of a worker process: one engine, its own connections, its units."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    partial: list[RunStats | None] = [None]  # the engine's stats after its last batch
    started = 0.0
    try:
        if init is not None:
            init(worker)
        from migrator.targets import open_target

        target = open_target(spec)  # (loads the driver while the coordinator plans)
        try:
            task: WorkerTask | None = conn.recv()
        except (EOFError, OSError):
            return  # the coordinator gave up before handing out work
        if task is None:
            return
        target.set_namespace(task.namespace)
        started = time.perf_counter()

        def on_batch(stats: RunStats, position: int) -> None:
            partial[0] = stats
            conn.send(("progress", stats.records_read, position))

        engine = MigrationEngine(target, task.mapping, task.config, on_batch=on_batch,
                                 stop=stop, worker=worker, order=task.order)
        stats = engine.run(task.units, task.checkpoints)
        conn.send(("done", stats, started, os.getpid()))
    except KeyboardInterrupt:
        _send(conn, ("stopped", partial[0], started))
    except BaseException as exc:
        _send(conn, ("failed", describe_error(exc), traceback.format_exc(), partial[0],
                     started))
    finally:
        conn.close()


def _send(conn: Any, msg: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError, ValueError):  # the coordinator is gone: nobody to tell
        conn.send(msg)
