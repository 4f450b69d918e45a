"""Pipeline modes: how reading+mapping the next batch overlaps inserting the previous one.

``off``      the two halves take turns on one thread (the sequential engine);
``thread``   reading+mapping on a second thread, inserting on the caller's. It overlaps as
             far as the GIL lets it: sqlite3 and pyodbc release it while the database works,
             lxml and the mapper hold it;
``process``  reading+mapping in a child process (spawned, never forked) that sends mapped
             batches — pickled rows, never lxml elements — to the inserter. Both halves get a
             core; the price is pickling each batch once each way (stage ``transfer``).
             Mapping is two jobs: extracting a record's texts, which needs the parsed
             element, and checking and converting them, which does not. While the inserter
             keeps up, the producer sends texts and the inserter converts them (on the
             embedded default, reading+mapping is ~5x the cost of inserting: without this
             the inserter idles and overlap cannot hide much); when the producer has to wait
             for the inserter, it converts again itself. ``EngineConfig.convert_side`` pins
             either side.

Between the halves is a bounded queue of ``queue_depth`` batches: a producer that gets
ahead blocks (backpressure), so at most ``queue_depth + 1`` mapped batches wait for the
inserter (``max_in_flight`` counts them), whatever the input size.

Stage times are wall time spent in each stage. In ``thread`` mode that includes waiting for
the GIL, so busy times (and the overlap efficiency derived from them) overstate the useful
overlap; in ``process`` mode each half has its own interpreter and the figures are real.

Either half failing stops the other: an inserter error stops the producer; a producer error
or death (even SIGKILL) is raised in the inserter as one line naming the cause. The batch in
flight is never committed half-way: it is one transaction with its checkpoints.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.batch import Checkpoint, StopFlag, convert_extracted
from migrator.config import EngineConfig
from migrator.errors import MigratorError
from migrator.mapping import Mapping
from migrator.procs import (
    describe_error,
    describe_exit,
    die_with_parent,
    main_not_reimported,
    spawn_context,
)
from migrator.producer import BatchProducer, ProducerReport
from migrator.reader import WorkUnit
from migrator.retry import RetryPolicy
from migrator.rowmap import RecordMapper
from migrator.stats import READ_STAGES, WRITE_STAGES, RunStats
from migrator.targets.base import Target
from migrator.writer import BatchWriter

POLL_S = 0.1  # how often a blocked half looks whether the other one is still there


class PipelineError(MigratorError):
    """The reading+mapping half of a pipeline failed or died."""


@dataclass(frozen=True)
class Halves:
    """What a pipeline joins: the reading half, built here or rebuilt in a child process
    (from the target's spec, the mapping and the config), and the writing half."""

    target: Target
    mapping: Mapping
    mapper: RecordMapper
    config: EngineConfig
    writer: Callable[[RunStats, float], BatchWriter]  # (the run's stats, when it started)
    stop: StopFlag | None = None

    def producer(self, stop: StopFlag | None = None) -> BatchProducer:
        return BatchProducer(self.mapping, self.mapper, self.config.batch_size,
                             self.stop if stop is None else stop)


class _Either:
    """Set when any of its flags is set."""

    def __init__(self, *flags: StopFlag | None) -> None:
        self.flags = [f for f in flags if f is not None]

    def is_set(self) -> bool:
        return any(f.is_set() for f in self.flags)


def run_pipeline(halves: Halves, units: Sequence[WorkUnit],
                 checkpoints: dict[str, Checkpoint]) -> RunStats:
    """Run ``halves`` over ``units`` in their configured pipeline mode."""
    cfg = halves.config
    stats = RunStats(rows={t.name: 0 for t in halves.mapping.tables}, pipeline=cfg.pipeline,
                     queue_depth=cfg.queue_depth if cfg.pipeline != "off" else 0)
    t0 = time.perf_counter()
    writer = halves.writer(stats, t0)
    try:
        writer.open()
        if cfg.pipeline == "off":
            report = _sequential(halves, writer, units, checkpoints)
        elif cfg.pipeline == "thread":
            report = _threaded(halves, writer, units, checkpoints)
        else:
            report = _in_process(halves, writer, units, checkpoints)
    finally:
        writer.close()
        stats.elapsed_s = time.perf_counter() - t0
    return finish_stats(stats, report, writer)


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


def _sequential(halves: Halves, writer: BatchWriter, units: Sequence[WorkUnit],
                checkpoints: dict[str, Checkpoint]) -> ProducerReport:
    producer = halves.producer()
    batches = producer.batches(units, checkpoints)
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        batches.close()
    return producer.report


class _Depth:
    """High-water mark of batches handed over and not yet taken by the inserter."""

    def __init__(self) -> None:
        self.taken = 0
        self.high = 0

    def took(self, handed: int) -> None:
        self.high = max(self.high, handed - self.taken)
        self.taken += 1


# ---- thread -------------------------------------------------------------------------------

def _threaded(halves: Halves, writer: BatchWriter, units: Sequence[WorkUnit],
              checkpoints: dict[str, Checkpoint]) -> ProducerReport:
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=halves.config.queue_depth)
    abort = threading.Event()
    producer = halves.producer(_Either(halves.stop, abort))
    handed = [0]

    def put(item: tuple[str, Any]) -> bool:
        while not abort.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batches = producer.batches(units, checkpoints)
        try:
            for batch in batches:
                handed[0] += 1  # counted before the put: a blocked put is in flight too
                if not put(("batch", batch)):
                    return
            put(("end", producer.report))
        except KeyboardInterrupt:
            put(("stopped", None))
        except BaseException as exc:  # handed to the inserter's thread, raised there
            put(("error", exc))
        finally:
            batches.close()

    thread = threading.Thread(target=produce, name="mb-read-map", daemon=True)
    depth = _Depth()
    thread.start()
    try:
        while True:
            kind, payload = q.get()
            if kind == "batch":
                depth.took(handed[0])
                writer.write(payload)
            elif kind == "end":
                return payload
            elif kind == "stopped":
                raise KeyboardInterrupt
            else:
                raise payload
    finally:
        abort.set()
        thread.join()
        writer.stats.max_in_flight = depth.high


# ---- process ------------------------------------------------------------------------------
# One socket pair, no multiprocessing.Queue and no named semaphores: batches go to the
# inserter, credits ("take one more") and "stop" come back. The parent holds no copy of the
# child's end, so a producer that dies — even in the middle of a message — ends in EOF
# instead of a reader blocked forever, and a killed process leaks nothing. The producer
# starts with ``queue_depth`` credits and gets one back per batch the inserter takes.

_CREDIT, _STOP = b"c", b"s"


def _in_process(halves: Halves, writer: BatchWriter, units: Sequence[WorkUnit],
                checkpoints: dict[str, Checkpoint]) -> ProducerReport:
    try:
        spec = halves.target.picklable_spec()
    except NotImplementedError:
        raise PipelineError(f"--pipeline process needs a target that can be rebuilt in "
                            f"another process; {type(halves.target).__name__} cannot") from None
    ctx = spawn_context()
    here, there = ctx.Pipe(duplex=True)
    handed = ctx.Value("q", 0, lock=False)
    proc = ctx.Process(
        target=produce_in_child, name="mb-read-map", daemon=True,
        args=(spec, halves.mapping, halves.config.batch_size, list(units), checkpoints,
              there, halves.config.queue_depth, handed, os.getpid(),
              halves.config.convert_side, halves.config.retry))
    with main_not_reimported():
        proc.start()
    there.close()
    depth = _Depth()
    outer = halves.stop
    convert = halves.mapper.convert
    try:
        while True:
            if outer is not None and outer.is_set():
                raise KeyboardInterrupt
            try:
                if not here.poll(POLL_S):
                    continue
                data = here.recv_bytes()
            except (EOFError, OSError):
                proc.join(timeout=5)
                raise PipelineError(
                    f"the read/map process (pid {proc.pid}) died "
                    f"({describe_exit(proc.exitcode)}); the batch in flight was not "
                    f"committed — continue with --resume") from None
            t = time.perf_counter()
            kind, payload = pickle.loads(data)
            dt = time.perf_counter() - t
            if kind == "batch":
                depth.took(handed.value)
                with contextlib.suppress(OSError):  # (a finished producer has gone)
                    here.send_bytes(_CREDIT)
                writer.transfer += dt
                if payload.extracted:
                    mapped_before = payload.map
                    writer.converted += convert_extracted(payload, convert)
                    writer.convert += payload.map - mapped_before
                writer.write(payload)
            elif kind == "end":
                return payload
            elif kind == "stopped":
                raise KeyboardInterrupt
            else:
                raise _rebuild_error(*payload)
    finally:
        with contextlib.suppress(OSError):
            here.send_bytes(_STOP)
        here.close()  # a producer blocked sending gets EPIPE
        writer.stats.max_in_flight = depth.high
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()


class _Inserter:
    """The producer's view of the inserter: credits to send batches, and a stop flag."""

    def __init__(self, conn: Any, credits: int, parent: int, convert_side: str) -> None:
        self.conn = conn
        self.credits = credits
        self.parent = parent
        self.convert_side = convert_side
        self.stopped = False
        self.waited = False  # the last batch had to wait for the inserter to take one

    def _drain(self, timeout: float) -> None:
        conn = self.conn
        while not self.stopped and conn.poll(timeout):
            if conn.recv_bytes() == _CREDIT:
                self.credits += 1
            else:
                self.stopped = True
            timeout = 0

    def is_set(self) -> bool:  # StopFlag: looked at every few records
        self._drain(0)
        return self.stopped

    def wait_for_credit(self) -> bool:
        """Block until the inserter takes a batch; False if it stopped or went away."""
        self._drain(0)
        self.waited = self.credits == 0
        while not self.stopped and self.credits == 0:
            self._drain(POLL_S)
            if os.getppid() != self.parent:
                self.stopped = True
        self.credits -= 1
        return not self.stopped

    def extract_only(self) -> bool:
        """Send the next batch as extracted texts, for the inserter to convert? Yes while
        the inserter keeps up; no once it is the slower half (the producer had to wait)."""
        if self.convert_side == "auto":
            return not self.waited
        return self.convert_side == "inserter"


def _rebuild_error(module: str, name: str, message: str, detail: str) -> BaseException:
    """A user-facing error keeps its class; anything else becomes a PipelineError."""
    import importlib

    with contextlib.suppress(Exception):
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, MigratorError):
            exc: BaseException = cls(message)
            return exc
    err = PipelineError(f"the read/map process failed: {message}")
    err.detail = detail  # type: ignore[attr-defined]
    return err


def _dumps_unmemoized(obj: Any) -> bytes:
    """Pickle without the memo: a batch is a tree of fresh small objects that never refer
    to each other, and memoizing each string costs the producer — the slower half on the
    embedded default — a third of its pickling time (measured: 0.17 → 0.06 s per 20,000
    records). Repeated strings (a unit's id on every record) are then written out each time,
    and the output is still smaller. (``Pickler.fast`` is documented as deprecated; without
    it this is plain pickling.)"""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(obj)
    return buf.getvalue()


def produce_in_child(spec: str, mapping: Mapping, batch_size: int, units: list[WorkUnit],
                     checkpoints: dict[str, Checkpoint], conn: Any, credits: int,
                     handed: Any, parent: int, convert_side: str = "auto",
                     retry: RetryPolicy | None = None) -> None:
    """Entry point of the read/map process: each batch is pickled once and sent."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the inserter decides when to stop
    gc.freeze()  # (see migrator.engine.MigrationEngine.run)
    dumps = _dumps_unmemoized
    inserter = _Inserter(conn, credits, parent, convert_side)

    def send(item: tuple[str, Any]) -> None:
        conn.send_bytes(dumps(item))

    try:
        from migrator.targets import open_target

        target = open_target(spec)  # (it connects once to learn its dialect: retried)
        adapters = (retry or RetryPolicy()).call(lambda: target.dialect).value_adapters()
        producer = BatchProducer(mapping, RecordMapper(mapping, adapters), batch_size,
                                 inserter, extract_only=inserter.extract_only)
        batches = producer.batches(units, checkpoints)
        for batch in batches:
            handed.value += 1  # counted before the wait: a blocked batch is in flight too
            if not inserter.wait_for_credit():
                batches.close()
                return
            t = time.perf_counter()
            data = dumps(("batch", batch))
            producer.report.transfer += time.perf_counter() - t
            conn.send_bytes(data)
        send(("end", producer.report))
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            send(("stopped", None))
    except (OSError, EOFError):
        return  # the inserter closed the pipe: it has stopped and knows why
    except BaseException as exc:
        with contextlib.suppress(OSError):
            send(("error", (type(exc).__module__, type(exc).__qualname__,
                            describe_error(exc), traceback.format_exc())))
    finally:
        conn.close()
