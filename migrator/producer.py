"""BatchProducer: the reading half of a run (read records, map them, cut batches)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from migrator.batch import Checkpoint, MappedBatch, StopFlag, key_parts
from migrator.errors import InputError, MalformedXMLError, ResumeError
from migrator.keys import KeyCounter
from migrator.mapping import Mapping
from migrator.partition import unit_bytes
from migrator.reader import WorkUnit
from migrator.rowmap import RecordMapper, RecordRejected
from migrator.stats import UnitResult


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
