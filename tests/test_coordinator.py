"""ParallelCoordinator on real SQLite: N workers × pipeline modes give the sequential rows;
a killed or failing worker stops the run with one clear line; --resume is exactly-once."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_engine import Dataset, expected_quarantine, quarantined, table_digest
from test_pipeline import children
from typer.testing import CliRunner

import datasets
from migrator import (
    EngineConfig,
    ParallelCoordinator,
    RangeUnit,
    RunStats,
    WorkerFailed,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
    reconcile,
)
from migrator.targets.sqlite import SQLiteConnection

LAYOUTS = {"one": 1, "many": 4}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Dataset, dict[str, str]]]:
    """Per layout: a dataset of 300 records (one file, or four) and its sequential digest."""
    out = {}
    for layout, files in LAYOUTS.items():
        d = tmp_path_factory.mktemp(layout)
        data = Dataset(d / "data", datasets.generate(d / "data", 300, files=files, seed=31,
                                                     invalid_rate=0.04))
        migrate(expand_inputs([str(data.dir)]), open_target(f"sqlite:{d / 'seq.db'}"),
                default_mapping())
        out[layout] = (data, table_digest(d / "seq.db"))
    return out


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = {p.pid for p in children()}
    yield
    left = [p for p in children() if p.pid not in before]
    assert not left, f"processes left behind: {left}"


def coordinate(data: Dataset, db: Path, *, workers: int, pipeline: str = "off",
               batch: int = 40, resume: bool = False, **kw: Any) -> RunStats:
    coordinator = ParallelCoordinator(
        open_target(f"sqlite:{db}"), default_mapping(),
        EngineConfig(batch_size=batch, pipeline=pipeline), workers=workers, **kw)
    return coordinator.run(expand_inputs([str(data.dir)]), resume=resume)


def assert_same_as_sequential(data: Dataset, digest: dict[str, str], db: Path) -> None:
    rec = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert rec.ok, rec.problems
    assert rec.records_read == data.records and rec.rows == data.expected_rows
    assert table_digest(db) == digest
    assert quarantined(db) == expected_quarantine(data)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("pipeline", ["off", "thread", "process"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_combination_stores_the_sequential_rows(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path, layout: str,
        pipeline: str, workers: int) -> None:
    data, digest = sets[layout]
    stats = coordinate(data, tmp_path / "p.db", workers=workers, pipeline=pipeline)
    assert_same_as_sequential(data, digest, tmp_path / "p.db")
    assert stats.records_read == data.records == stats.inserted + stats.quarantined
    assert stats.rows == data.expected_rows and not stats.errors
    assert len(stats.workers) == workers
    assert sum(w.records_read for w in stats.workers) == data.records
    assert all(w.records_read > 0 and w.rec_per_s > 0 for w in stats.workers)
    assert sorted(p for w in stats.workers for p in w.partitions) == \
        sorted(u.unit for u in stats.units)
    assert all(u.finished for u in stats.units)
    assert stats.overlap_efficiency > 0 and stats.pipeline == pipeline
    if workers > 1 and layout == "one":
        assert len(stats.units) == workers and "#" in stats.units[0].unit


def test_sqlite_writers_take_turns_without_busy_errors(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    """Three writer processes committing tiny batches as fast as they can: each waits for
    the write lock in SQLite's busy handler (timeout 30 s, far above one batch's commit)."""
    data, digest = sets["many"]
    stats = coordinate(data, tmp_path / "w.db", workers=3, batch=2)
    assert len(stats.batches) >= data.records // 2 and not stats.errors
    assert_same_as_sequential(data, digest, tmp_path / "w.db")


def _sigkill_worker_2_at_commit_3(worker: int) -> None:
    """Worker init (runs in the worker): worker 2 kills itself mid-transaction."""
    if worker != 2:
        return
    real = SQLiteConnection.commit
    n = [0]

    def commit(self: SQLiteConnection) -> None:
        n[0] += 1
        if n[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # rows sent, no COMMIT
        real(self)

    SQLiteConnection.commit = commit  # type: ignore[method-assign]


def _lose_connection_in_worker_1(worker: int) -> None:
    """Worker init: worker 1's database connection goes away before its second batch."""
    if worker != 1:
        return
    real = SQLiteConnection.begin
    n = [0]

    def begin(self: SQLiteConnection) -> None:
        n[0] += 1
        if n[0] == 2:
            self._db.close()
        real(self)

    SQLiteConnection.begin = begin  # type: ignore[method-assign]


def _slow_commits(worker: int) -> None:
    real = SQLiteConnection.commit

    def commit(self: SQLiteConnection) -> None:
        time.sleep(0.2)
        real(self)

    SQLiteConnection.commit = commit  # type: ignore[method-assign]


@pytest.mark.parametrize("pipeline", ["off", "process"])
def test_a_killed_worker_fails_the_run_then_resume_is_exactly_once(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path,
        pipeline: str) -> None:
    data, digest = sets["one"]
    db = tmp_path / "k.db"
    with pytest.raises(WorkerFailed) as err:
        coordinate(data, db, workers=2, pipeline=pipeline, batch=30,
                   worker_init=_sigkill_worker_2_at_commit_3)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("worker 2 (pid ")
    assert "killed by SIGKILL" in message and "--resume" in message
    assert f"{data.dir}/orders-0001.xml#" in err.value.partition
    partial = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert partial.ok, partial.problems  # nothing of the killed transaction is committed
    assert 0 < partial.records_read < data.records

    stats = coordinate(data, db, workers=3, pipeline=pipeline, resume=True)
    assert_same_as_sequential(data, digest, db)
    assert sum(u.skipped for u in stats.units) == partial.records_read
    assert stats.records_read == data.records - partial.records_read


def test_a_worker_losing_its_connection_is_named_in_one_line(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    data, digest = sets["many"]
    with pytest.raises(WorkerFailed) as err:
        coordinate(data, tmp_path / "c.db", workers=2, pipeline="thread", batch=25,
                   worker_init=_lose_connection_in_worker_1)
    assert err.value.worker == 1
    assert "Cannot operate on a closed database" in err.value.cause
    assert err.value.partition in str(err.value)
    assert reconcile(open_target(f"sqlite:{tmp_path / 'c.db'}"), default_mapping()).ok
    coordinate(data, tmp_path / "c.db", workers=2, resume=True)
    assert_same_as_sequential(data, digest, tmp_path / "c.db")


def test_ctrl_c_stops_every_worker_after_its_batch(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    data, digest = sets["many"]
    seen: list[int] = []

    def interrupt(records: int, position: int) -> None:
        if records and not seen:
            seen.append(records)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        coordinate(data, tmp_path / "i.db", workers=3, pipeline="thread", batch=20,
                   on_progress=interrupt, worker_init=_slow_commits)
    partial = reconcile(open_target(f"sqlite:{tmp_path / 'i.db'}"), default_mapping())
    assert partial.ok and 0 < partial.records_read < data.records
    coordinate(data, tmp_path / "i.db", workers=1, pipeline="process", resume=True)
    assert_same_as_sequential(data, digest, tmp_path / "i.db")


def test_resume_keeps_the_interrupted_runs_partitions(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    data, digest = sets["one"]
    db = tmp_path / "r.db"
    with pytest.raises(WorkerFailed):
        coordinate(data, db, workers=3, batch=30, worker_init=_sigkill_worker_2_at_commit_3)
    con = sqlite3.connect(db)
    ids = sorted(r[0] for r in con.execute("SELECT unit FROM mb_checkpoint"))
    con.close()
    assert len(ids) == 3 and all("#" in i for i in ids)
    coordinator = ParallelCoordinator(open_target(f"sqlite:{db}"), default_mapping(),
                                      workers=1)
    units = coordinator.plan(expand_inputs([str(data.dir)]), resume=True)
    assert sorted(u.id for u in units) == ids and all(isinstance(u, RangeUnit) for u in units)
    coordinator.run(expand_inputs([str(data.dir)]), resume=True)  # one engine, 3 ranges
    assert_same_as_sequential(data, digest, db)


def test_bench_run_reports_workers_pipeline_and_overlap(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    import json

    from bench.cli import app

    data, _ = sets["one"]
    result = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"}).invoke(app, [
        "run", "--input", str(data.dir), "--target", f"sqlite:{tmp_path / 'b.db'}",
        "--workers", "2", "--pipeline", "process", "--queue-depth", "3", "--batch-size", "50",
        "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["workers"] == 2 and doc["pipeline"] == "process" and doc["queue_depth"] == 3
    assert set(doc["stage_busy_s"]) == {"read_map", "insert"}
    assert doc["overlap_efficiency"] > 0 and doc["reconciliation"]["ok"]
    assert [w["worker"] for w in doc["per_worker"]] == [1, 2]
    assert sum(w["records_read"] for w in doc["per_worker"]) == data.records
    assert all({"partitions", "rec_per_s", "elapsed_s", "stage_busy"} <= set(w)
               for w in doc["per_worker"])
    saved = json.loads(Path(doc["result_file"]).read_text())
    config = saved["runs"][0]["config"]
    assert (config["workers"], config["pipeline"], config["queue_depth"]) == (2, "process", 3)
    assert saved["runs"][0]["metrics"]["overlap_efficiency"] > 0

    bad = CliRunner().invoke(app, ["run", "--input", str(data.dir), "--pipeline", "fork"])
    assert bad.exit_code == 2


def committed(db: Path) -> bool:
    """Has the run committed a batch yet? (False while the schema is still being made.)"""
    try:
        return reconcile(open_target(f"sqlite:{db}"), default_mapping()).records_read > 0
    except Exception:
        return False


def group_members(pgid: int, wait_s: float = 5.0) -> list[str]:
    """Processes of a process group; multiprocessing's resource tracker takes a moment to
    see its parent gone, so give the group a few seconds to empty."""
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(" ".join(p.info["cmdline"] or []))
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


SLOW_CLI = textwrap.dedent("""
    import functools, sys
    sys.path.insert(0, sys.argv.pop(1))
    import bench.runner, test_coordinator
    bench.runner.ParallelCoordinator = functools.partial(
        bench.runner.ParallelCoordinator, worker_init=test_coordinator._slow_commits)
    from bench.cli import main
    sys.argv = ["bench"] + sys.argv[1:]
    main()
""")


def test_ctrl_c_in_the_terminal_exits_130_and_leaves_no_process(
        sets: dict[str, tuple[Dataset, dict[str, str]]], tmp_path: Path) -> None:
    data, _ = sets["many"]
    db = tmp_path / "t.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, str(Path(__file__).parent), "run", "--input",
         str(data.dir), "--target", f"sqlite:{db}", "--workers", "2", "--batch-size", "20",
         "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    err = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not committed(db):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    assert group_members(proc.pid) == []  # no process of the run's group is left
    partial = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert partial.ok and 0 < partial.records_read < data.records


# ---- PostgreSQL through ODBC (skipped when the test server cannot start here) -------------

def _pg_sigkill_worker_2_at_commit_3(worker: int) -> None:
    from migrator.targets.odbc import OdbcConnection

    if worker != 2:
        return
    real = OdbcConnection.commit
    n = [0]

    def commit(self: OdbcConnection) -> None:
        n[0] += 1
        if n[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self)

    OdbcConnection.commit = commit  # type: ignore[method-assign]


def _pg_backend_terminated_in_worker_1(worker: int) -> None:
    """Worker init: the server ends worker 1's session before its second batch."""
    from migrator.targets.odbc import OdbcConnection

    if worker != 1:
        return
    real = OdbcConnection.begin
    n = [0]

    def begin(self: OdbcConnection) -> None:
        n[0] += 1
        if n[0] == 2:
            with contextlib.suppress(Exception):
                self.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        real(self)

    OdbcConnection.begin = begin  # type: ignore[method-assign]


def pg_keys(target_spec: str) -> dict[str, int]:
    target = open_target(target_spec)
    conn = target.connect()
    try:
        ref = conn.dialect.table_ref
        return {t.name: int(conn.query(f'SELECT COUNT(DISTINCT "{t.key_column}") '
                                       f'FROM {ref(t.name)}')[0][0])
                for t in default_mapping().tables}
    finally:
        conn.close()


@pytest.mark.postgres
@pytest.mark.odbc
def test_postgresql_workers_and_pipeline_then_kill_and_resume(
        sets: dict[str, tuple[Dataset, dict[str, str]]], postgres: Any) -> None:
    data, _ = sets["one"]
    spec = "odbc:" + postgres.odbc()
    mapping = default_mapping()

    def pg_run(workers: int, pipeline: str, resume: bool = False, **kw: Any) -> RunStats:
        return ParallelCoordinator(open_target(spec), mapping,
                                   EngineConfig(batch_size=30, pipeline=pipeline),
                                   workers=workers, **kw).run(
            expand_inputs([str(data.dir)]), resume=resume)

    stats = pg_run(2, "process")
    rec = reconcile(open_target(spec), mapping)
    assert rec.ok and rec.rows == data.expected_rows and stats.records_read == data.records
    orders = mapping.root.name
    assert pg_keys(spec)[orders] == data.expected_rows[orders]  # no key twice

    with pytest.raises(WorkerFailed, match=r"^worker 2 .*killed by SIGKILL"):
        pg_run(2, "thread", worker_init=_pg_sigkill_worker_2_at_commit_3)
    partial = reconcile(open_target(spec), mapping)
    assert partial.ok and 0 < partial.records_read < data.records
    pg_run(3, "off", resume=True)
    final = reconcile(open_target(spec), mapping)
    assert final.ok and final.rows == data.expected_rows

    # The server ends worker 1's session mid-run: the worker reconnects and retries the
    # batch; the run completes, every record once.
    stats = pg_run(2, "off", worker_init=_pg_backend_terminated_in_worker_1)
    assert stats.retries >= 1 and not stats.errors
    final = reconcile(open_target(spec), mapping)
    assert final.ok and final.rows == data.expected_rows
    assert pg_keys(spec)[orders] == data.expected_rows[orders]


def test_malformed_xml_stops_its_range_and_the_rest_reconciles(tmp_path: Path) -> None:
    """A file split into byte ranges, broken inside the first: that range stops at the
    broken record with the file's own line number; the second range, another worker's,
    commits; counts reconcile (the README's promise for --workers)."""
    src = tmp_path / "in"
    manifest = datasets.generate(src, 300, seed=5)
    path = src / manifest.files[0].name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    opening = [i for i, line in enumerate(lines) if line.lstrip().startswith("<order ")]
    # A mismatched end tag inside record 41: invisible to the cutter, fatal to the parser.
    broken = next(i for i in range(opening[40], opening[41]) if "</customer>" in lines[i])
    lines[broken] = lines[broken].replace("</customer>", "</custmer>", 1)
    path.write_text("".join(lines), encoding="utf-8")
    db = tmp_path / "m.db"
    coordinator = ParallelCoordinator(open_target(f"sqlite:{db}"), default_mapping(),
                                      EngineConfig(batch_size=25), workers=2)
    units = coordinator.plan(expand_inputs([str(src)]))
    assert len(units) >= 2 and all(isinstance(u, RangeUnit) for u in units)
    first = units[0]
    assert isinstance(first, RangeUnit)
    starts = list(itertools.accumulate((len(line.encode()) for line in lines), initial=0))
    begins = [starts[i] + len(lines[i]) - len(lines[i].lstrip()) for i in opening]
    in_first = sum(1 for b in begins if b < first.end)  # (byte offsets of "<order")
    assert in_first > 41  # the break is inside the first range
    stats = coordinator.run(expand_inputs([str(src)]))
    (error,) = stats.errors
    assert error.startswith(f"{path}:{broken + 1}: "), error
    assert "malformed XML" in error
    assert [u.finished for u in sorted(stats.units, key=lambda u: u.unit)].count(False) == 1
    rec = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert rec.ok, rec.problems
    # the 40 records before the break, and every record of the other ranges
    assert rec.records_read == 40 + (300 - in_first)
