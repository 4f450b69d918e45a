"""Pipeline modes on real SQLite: same rows, bounded queues, failures of either half."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_engine import Dataset, expected_quarantine, quarantined, table_digest

import datasets
from migrator import (
    Checkpoint,
    EngineConfig,
    MigrationEngine,
    PipelineError,
    ResumeError,
    RunStats,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
    prepare_target,
    reconcile,
)
from migrator.batch import MappedBatch
from migrator.writer import BatchWriter

MODES = ["off", "thread", "process"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("pipe")
    return Dataset(out, datasets.generate(out, 400, files=2, seed=21, invalid_rate=0.03))


@pytest.fixture(scope="module")
def sequential(data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    db = tmp_path_factory.mktemp("seq") / "seq.db"
    migrate(expand_inputs([str(data.dir)]), open_target(f"sqlite:{db}"), default_mapping())
    return table_digest(db)


def children() -> list[psutil.Process]:
    """Our child processes, but for two kinds that are not ours to clean up:
    multiprocessing's resource tracker (started once per interpreter on first use of a
    queue or event, it lives as long as the interpreter), and the session's database
    servers, which run in a session of their own and fork backends (an autovacuum
    worker, say) whenever they like."""
    ours = os.getsid(0)
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if os.getsid(p.pid) != ours:
                continue
            if "multiprocessing.resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return out


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    threads = threading.active_count()
    before = {p.pid for p in children()}
    yield
    left = [p for p in children() if p.pid not in before]
    assert not left, f"processes left behind: {left}"
    assert threading.active_count() == threads


def run(data: Dataset, db: Path, mode: str, *, batch: int = 50, depth: int = 2,
        resume: bool = False) -> RunStats:
    return migrate(expand_inputs([str(data.dir)]), open_target(f"sqlite:{db}"),
                   default_mapping(),
                   EngineConfig(batch_size=batch, pipeline=mode, queue_depth=depth),
                   resume=resume)


def assert_complete(data: Dataset, db: Path, digest: dict[str, str]) -> None:
    rec = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert rec.ok, rec.problems
    assert rec.records_read == data.records and rec.rows == data.expected_rows
    assert table_digest(db) == digest
    assert quarantined(db) == expected_quarantine(data)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_stores_the_same_rows(data: Dataset, sequential: dict[str, str],
                                         tmp_path: Path, mode: str) -> None:
    stats = run(data, tmp_path / "m.db", mode, batch=37)
    assert_complete(data, tmp_path / "m.db", sequential)
    assert stats.records_read == data.records == stats.inserted + stats.quarantined
    assert stats.pipeline == mode and len(stats.batches) == -(-data.records // 37)
    assert [u.finished for u in stats.units] == [True, True]
    busy = stats.stage_busy
    assert busy["read_map"] > 0 and busy["insert"] > 0
    assert stats.overlap_efficiency == pytest.approx(sum(busy.values()) / stats.elapsed_s)
    if mode == "off":
        assert stats.overlap_efficiency <= 1.0
        # the machine-speed probe: CPU of reading+mapping, inside the run's wall time
        assert 0 < stats.read_map_cpu_s <= stats.elapsed_s
    assert stats.read_map_cpu_s > 0
    if mode == "process":
        assert stats.stages["transfer"] > 0


@pytest.mark.parametrize("side", ["reader", "inserter", "auto"])
def test_process_pipeline_converts_on_either_side_with_the_same_rows(
        data: Dataset, sequential: dict[str, str], tmp_path: Path, side: str) -> None:
    """Checks and conversions happen in the producer, in the inserter (from the extracted
    texts), or wherever ``auto`` puts them batch by batch: the same rows and rejects."""
    stats = migrate(expand_inputs([str(data.dir)]), open_target(f"sqlite:{tmp_path / 'c.db'}"),
                    default_mapping(), EngineConfig(batch_size=37, pipeline="process",
                                                    convert_side=side))
    assert_complete(data, tmp_path / "c.db", sequential)
    assert stats.records_read == data.records == stats.inserted + stats.quarantined
    converted = stats.converted_by_inserter
    assert stats.read_map_cpu_s > 0  # (counted on both sides of the pipe)
    if side == "reader":
        assert converted == 0
    elif side == "inserter":
        assert converted == data.records
    else:  # the first batch goes extracted: the inserter has nothing to do yet
        assert converted >= 37
    # The inserter's conversion is busy time of the insert half, not of the reading half.
    writing = sum(stats.stages[s] for s in ("connect", "insert", "commit", "transfer"))
    if side == "inserter":
        assert stats.stage_busy["insert"] > writing - stats.stages["transfer"]
    if side == "reader":
        assert stats.stage_busy["insert"] <= writing


def test_auto_keeps_conversion_in_the_producer_when_the_inserter_is_slow(
        data: Dataset, sequential: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = BatchWriter.write

    def slow_write(self: BatchWriter, batch: MappedBatch) -> None:
        time.sleep(0.05)  # (reading and extracting 10 records takes ~2 ms)
        real(self, batch)

    monkeypatch.setattr(BatchWriter, "write", slow_write)
    batch, depth = 10, 2
    stats = migrate(expand_inputs([str(data.dir)]), open_target(f"sqlite:{tmp_path / 's.db'}"),
                    default_mapping(), EngineConfig(batch_size=batch, pipeline="process",
                                                    queue_depth=depth))
    assert_complete(data, tmp_path / "s.db", sequential)
    # Only the batches sent before the queue first filled went extracted.
    assert 0 < stats.converted_by_inserter <= (depth + 2) * batch


def test_convert_side_is_checked() -> None:
    with pytest.raises(ValueError, match="convert_side must be one of auto, reader, inserter"):
        EngineConfig(convert_side="both")


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_slow_inserter_never_lets_the_queue_grow(data: Dataset, tmp_path: Path,
                                                   mode: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"made": 0, "written": 0, "most": 0}
    real_init, real_write = MappedBatch.__init__, BatchWriter.write

    def init(self: MappedBatch, n: int, *rest: Any) -> None:
        counts["made"] += 1  # (counts in this process only: the thread mode's producer)
        real_init(self, n, *rest)

    def slow_write(self: BatchWriter, batch: MappedBatch) -> None:
        counts["most"] = max(counts["most"], counts["made"] - counts["written"])
        time.sleep(0.02)
        real_write(self, batch)
        counts["written"] += 1

    monkeypatch.setattr(MappedBatch, "__init__", init)
    monkeypatch.setattr(BatchWriter, "write", slow_write)
    depth = 3
    stats = run(data, tmp_path / "q.db", mode, batch=10, depth=depth)
    assert stats.records_read == data.records
    # handed over and not yet taken: the queue plus one blocked put, never more
    assert stats.max_in_flight <= depth + 1
    assert stats.max_in_flight >= 2  # the producer did get ahead: backpressure was needed
    if mode == "thread":  # alive batch objects: queue + blocked put + the one being filled
        assert counts["most"] <= depth + 2


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_an_inserter_error_stops_the_producer(data: Dataset, sequential: dict[str, str],
                                              tmp_path: Path, mode: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = BatchWriter.write
    calls = {"n": 0}

    def failing(self: BatchWriter, batch: MappedBatch) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the database went away")
        real(self, batch)

    monkeypatch.setattr(BatchWriter, "write", failing)
    with pytest.raises(RuntimeError, match="went away"):
        run(data, tmp_path / "e.db", mode)
    partial = reconcile(open_target(f"sqlite:{tmp_path / 'e.db'}"), default_mapping())
    assert partial.ok and partial.records_read == 100
    monkeypatch.setattr(BatchWriter, "write", real)
    run(data, tmp_path / "e.db", mode, resume=True)
    assert_complete(data, tmp_path / "e.db", sequential)


def test_a_killed_producer_process_is_a_clear_error(data: Dataset, sequential: dict[str, str],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = BatchWriter.write
    calls = {"n": 0}
    before = {p.pid for p in children()}  # (the session's database servers, say)

    def kill_producer(self: BatchWriter, batch: MappedBatch) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            (child,) = [p for p in children() if p.pid not in before]
            child.send_signal(signal.SIGKILL)  # (not waited for: the pipeline reaps it)
        real(self, batch)

    monkeypatch.setattr(BatchWriter, "write", kill_producer)
    with pytest.raises(PipelineError, match=r"read/map process \(pid \d+\) died \(killed by "
                                            r"SIGKILL\).*--resume"):
        run(data, tmp_path / "k.db", "process", batch=20)
    assert reconcile(open_target(f"sqlite:{tmp_path / 'k.db'}"), default_mapping()).ok
    monkeypatch.setattr(BatchWriter, "write", real)
    run(data, tmp_path / "k.db", "process", resume=True)
    assert_complete(data, tmp_path / "k.db", sequential)


@pytest.mark.parametrize("mode", MODES)
def test_a_producer_error_keeps_its_class_and_message(data: Dataset, tmp_path: Path,
                                                      mode: str) -> None:
    target = open_target(f"sqlite:{tmp_path / 'r.db'}")
    units = expand_inputs([str(data.dir)])
    prepare_target(target, default_mapping(), units, resume=False)
    lying = {units[0].id: Checkpoint(records_done=10**6)}
    engine = MigrationEngine(target, default_mapping(), EngineConfig(pipeline=mode))
    with pytest.raises(ResumeError, match="now has only 200 records"):
        engine.run(units, lying)


@pytest.mark.parametrize("mode", MODES)
def test_stop_flag_ends_after_the_batch_in_flight(data: Dataset, sequential: dict[str, str],
                                                  tmp_path: Path, mode: str) -> None:
    target = open_target(f"sqlite:{tmp_path / 's.db'}")
    units = expand_inputs([str(data.dir)])
    checkpoints = prepare_target(target, default_mapping(), units, resume=False)
    stop = threading.Event()

    def on_batch(stats: RunStats, position: int) -> None:
        if len(stats.batches) == 2:
            stop.set()

    engine = MigrationEngine(target, default_mapping(), EngineConfig(batch_size=40,
                             pipeline=mode), on_batch=on_batch, stop=stop)
    with pytest.raises(KeyboardInterrupt):
        engine.run(units, checkpoints)
    partial = reconcile(target, default_mapping())
    assert partial.ok and partial.records_read % 40 == 0 and partial.records_read < 400
    run(data, tmp_path / "s.db", mode, resume=True)
    assert_complete(data, tmp_path / "s.db", sequential)


def test_process_mode_needs_a_rebuildable_target(data: Dataset, tmp_path: Path) -> None:
    target = open_target(f"sqlite:{tmp_path / 'p.db'}")

    class Local(type(target)):  # type: ignore[misc]
        def picklable_spec(self) -> str:
            raise NotImplementedError

    local = Local(str(tmp_path / "p.db"))
    units = expand_inputs([str(data.dir)])
    with pytest.raises(PipelineError, match="rebuilt in another process"):
        migrate(units, local, default_mapping(), EngineConfig(pipeline="process"))
    assert os.path.exists(tmp_path / "p.db")
