"""Fault injection in real processes: kills, a stopped server, transient errors, full disks.

Every case ends with :func:`fault_helpers.check_exactly_once`: the target's rows, table by
table, equal an independent mapping of the source, every invalid record sits in quarantine
once with its reason, and the checkpoints reconcile. ``BENCH_LONG=1`` runs more kill points
(see tests/fault_helpers.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (
    Source,
    bench_proc,
    check_exactly_once,
    committed_records,
    fault_env,
    long_or,
    make_source,
    remember_args,
    rng,
    seeds,
    small_tmpfs,
    start_again,
    stop_keeping_data,
    wait_for_file,
)
from typer.testing import CliRunner

import bench.cli  # noqa: F401
from bench.cli import app
from migrator import (
    EngineConfig,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
    reconcile,
)

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
RECORDS = long_or(1200, 6000)
BATCH = 40


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("fault-src"), RECORDS, files=3, seed=17)


def run_args(src: Source, spec: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--input", str(src.dir), "--target", spec, "--batch-size", str(BATCH),
            "--out", str(out), *extra]


def resume(src: Source, spec: str, out: Path, *extra: str) -> None:
    """``bench run --resume`` (in-process: the CLI is imported once) must finish cleanly."""
    result = cli.invoke(app, [*run_args(src, spec, out, *extra), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors, proc.stderr
    text = " ".join(errors)
    print(text)  # (shown with -s: the messages users see)
    for w in words:
        assert re.search(w, text, re.I), f"{w!r} not in {text!r}"
    return text


# ---- SIGKILL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", seeds(5, 20))
def test_sigkill_of_the_whole_run_at_a_random_point_resumes_exactly_once(
        src: Source, tmp_path: Path, seed: int) -> None:
    """The run's own process dies at a random insert, before a COMMIT or just after one."""
    r = rng(seed)
    batches = -(-RECORDS // BATCH)
    at = r.randint(3, 2 * batches)  # ≥ 2 events per batch (an insert and a commit)
    pipeline = r.choice(["off", "thread"])
    spec = f"sqlite:{tmp_path / 'k.db'}"
    killed = bench_proc(run_args(src, spec, tmp_path / "r1", "--pipeline", pipeline),
                   env=fault_env(tmp_path, at=at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = reconcile(open_target(spec), default_mapping())
    assert partial.ok, partial.problems
    assert partial.records_read < RECORDS
    resume(src, spec, tmp_path / "r2", "--pipeline", pipeline)
    check_exactly_once(spec, src)


@pytest.mark.parametrize("seed", seeds(2, 10, base=2000))
def test_sigkill_of_a_worker_fails_the_run_in_one_line_and_resume_completes(
        src: Source, tmp_path: Path, seed: int) -> None:
    r = rng(seed)
    victim = r.choice([1, 2])
    at = r.randint(2, RECORDS // BATCH // 2)
    spec = f"sqlite:{tmp_path / 'w.db'}"
    proc = bench_proc(run_args(src, spec, tmp_path / "r1", "--workers", "2"),
                 env=fault_env(tmp_path, at=at, proc=f"mb-worker-{victim}"))
    assert proc.returncode == 1, proc.stderr
    assert_one_line_error(proc, rf"worker {victim} \(pid \d+\)", "SIGKILL", "--resume")
    assert reconcile(open_target(spec), default_mapping()).ok
    # Resume with another number of workers: the interrupted run's units are continued.
    resume(src, spec, tmp_path / "r2", "--workers", r.choice(["1", "3"]))
    check_exactly_once(spec, src)


@pytest.mark.parametrize("seed", seeds(2, 10, base=3000))
def test_sigkill_of_the_pipeline_mapper_process_then_resume(
        src: Source, tmp_path: Path, seed: int) -> None:
    at = rng(seed).randint(1, RECORDS // BATCH - 2)  # the at-th batch cut by the reader
    spec = f"sqlite:{tmp_path / 'p.db'}"
    proc = bench_proc(run_args(src, spec, tmp_path / "r1", "--pipeline", "process"),
                 env=fault_env(tmp_path, at=at, proc="mb-read-map", events="batch"))
    assert proc.returncode == 1, proc.stderr
    assert_one_line_error(proc, "read/map process", "SIGKILL", "--resume")
    assert reconcile(open_target(spec), default_mapping()).ok
    resume(src, spec, tmp_path / "r2", "--pipeline", "process")
    check_exactly_once(spec, src)


@pytest.mark.parametrize("seed", seeds(1, 5, base=4000))
def test_kill_minus_nine_of_the_process_group_from_outside(
        src: Source, tmp_path: Path, seed: int) -> None:
    """``kill -9 -PGID`` (coordinator and workers at once) once a random share is committed."""
    threshold = rng(seed).randint(BATCH, RECORDS // 2)
    spec = f"sqlite:{tmp_path / 'g.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench",
         *run_args(src, spec, tmp_path / "r1", "--workers", "2", "--batch-size", "10")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while committed_records(spec) < threshold:
            assert proc.poll() is None, f"finished before the kill: {proc.stderr}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    partial = reconcile(open_target(spec), default_mapping())
    assert partial.ok and threshold <= partial.records_read < RECORDS
    resume(src, spec, tmp_path / "r2", "--workers", "2")
    check_exactly_once(spec, src)


# ---- PostgreSQL: a worker killed, the server stopped, connections reset ----------------------
@pytest.fixture(scope="module")
def pg(pyodbc_module: object) -> Any:
    """A PostgreSQL server of our own: these tests stop and restart it."""
    from servers import ServerUnavailable, start_postgres

    try:
        server = start_postgres()
    except ServerUnavailable as exc:
        from conftest import unavailable

        unavailable(str(exc))
    remember_args(server)
    try:
        yield server
    finally:
        server.stop()


def pg_spec(server: Any) -> str:
    return "odbc:" + server.odbc("Protocol=7.4-1")


@pytest.mark.postgres
def test_postgres_worker_killed_then_resume(src: Source, tmp_path: Path, pg: Any) -> None:
    spec = pg_spec(pg)
    at = rng(5).randint(2, RECORDS // BATCH // 2)
    proc = bench_proc(run_args(src, spec, tmp_path / "r1", "--workers", "2"),
                 env=fault_env(tmp_path, at=at, proc="mb-worker-1"))
    assert proc.returncode == 1, proc.stderr
    assert_one_line_error(proc, r"worker 1 \(pid \d+\)", "SIGKILL")
    assert pg.password not in proc.stderr
    resume(src, spec, tmp_path / "r2", "--workers", "2")
    check_exactly_once(spec, src)


@pytest.mark.postgres
def test_postgres_stopped_mid_run_fails_naming_the_server_error_then_resume(
        src: Source, tmp_path: Path, pg: Any) -> None:
    spec = pg_spec(pg)
    flag = tmp_path / "paused"
    at = rng(6).randint(5, RECORDS // BATCH)
    # The server stays down: the run retries for the window (short here), then stops.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench",
         *run_args(src, spec, tmp_path / "r1", "--retry-window", "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=fault_env(tmp_path, at=at, events="commit", action="pause", flag=flag))
    try:
        wait_for_file(flag, proc)  # the run is about to COMMIT a batch
        stop_keeping_data(pg)
        Path(str(flag) + ".go").touch()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if pg.proc is None:
            start_again(pg)
    assert proc.returncode == 1, stderr
    done = subprocess.CompletedProcess(proc.args, 1, "", stderr)
    text = assert_one_line_error(done, "postgresql", r"--retry-window 1\b",
                                 "continue with --resume")
    assert re.search(r"terminat|server closed|connection|administrator", text, re.I), text
    assert pg.password not in stderr
    partial = reconcile(open_target(spec), default_mapping())
    assert partial.ok and 0 < partial.records_read < RECORDS
    resume(src, spec, tmp_path / "r2")
    check_exactly_once(spec, src)


def _terminate_own_backend(conn: Any) -> None:
    """A real connection reset: the server ends this session (pg_terminate_backend)."""
    import psycopg

    pid = int(conn.session_id())
    with psycopg.connect(_PG["server"].psycopg_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                (pid,)).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.01)


_PG: dict[str, Any] = {}


class _Transient:
    """Raise one transient error at the ``at``-th COMMIT of the run (then behave)."""

    def __init__(self, kind: str, at: int) -> None:
        self.kind = kind
        self.at = at
        self.n = 0

    def __call__(self, real: Any) -> Any:
        from migrator.targets.odbc import OdbcError

        def commit(conn: Any) -> None:
            self.n += 1
            if self.n != self.at:
                return real(conn)
            if self.kind == "connection_reset":
                _terminate_own_backend(conn)
                return real(conn)  # the server is gone: the driver's own error
            if self.kind == "lost_commit_ack":
                real(conn)  # the COMMIT landed, then the connection dropped
                raise OdbcError("postgresql: commit failed: server closed the connection "
                                "unexpectedly", "08S01")
            state = {"deadlock": "40P01", "serialization": "40001"}[self.kind]
            text = {"deadlock": "deadlock detected",
                    "serialization": "could not serialize access due to concurrent update"}
            raise OdbcError(f"postgresql: commit failed: ERROR: {text[self.kind]}", state)
        return commit


TRANSIENT = ["connection_reset", "deadlock", "serialization", "lost_commit_ack"]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_error_is_retried_with_bounded_backoff(
        src: Source, tmp_path: Path, pg: Any, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.targets.odbc import OdbcConnection

    _PG["server"] = pg
    spec = pg_spec(pg)
    fault = _Transient(kind, at=4)
    monkeypatch.setattr(OdbcConnection, "commit", fault(OdbcConnection.commit))
    stats = migrate(expand_inputs([str(src.dir)]), open_target(spec), default_mapping(),
                    EngineConfig(batch_size=BATCH, insert_method="values"))
    assert not stats.errors
    check_exactly_once(spec, src)


# ---- full disks ---------------------------------------------------------------------------------
def _limit_file_size(limit: int) -> Any:
    """preexec_fn: writes beyond ``limit`` bytes fail with EFBIG (SIGXFSZ ignored)."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _sqlite_full_run(src: Source, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str],
                                                           Path]:
    """``bench run`` into a SQLite file on a disk too small for it."""
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "384k") as mounted:
        db = disk / "full.db"
        args = run_args(src, f"sqlite:{db}", tmp_path / "r1")
        proc = bench_proc(args, preexec_fn=None if mounted else _limit_file_size(384 * 1024))
        keep = tmp_path / "copy"
        keep.mkdir()
        for f in disk.iterdir():  # rescue the database to a disk with room
            shutil.copy2(f, keep / f.name)
    return proc, keep / "full.db"


def test_disk_full_on_the_sqlite_target_keeps_the_database_consistent(
        src: Source, tmp_path: Path) -> None:
    proc, db = _sqlite_full_run(src, tmp_path)
    assert proc.returncode != 0
    assert re.search(r"full|space|too large", proc.stderr, re.I), proc.stderr
    spec = f"sqlite:{db}"
    partial = reconcile(open_target(spec), default_mapping())
    assert partial.ok and partial.records_read < RECORDS
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    resume(src, spec, tmp_path / "r2")  # with room again, the run continues
    check_exactly_once(spec, src)


def test_disk_full_on_the_sqlite_target_is_one_clear_line(src: Source, tmp_path: Path) -> None:
    proc, _ = _sqlite_full_run(src, tmp_path)
    assert proc.returncode == 1
    assert_one_line_error(proc, "full|space", "sqlite")


def test_results_folder_full_is_one_clear_line_and_the_database_is_kept(
        src: Source, tmp_path: Path) -> None:
    out = tmp_path / "r1"
    out.mkdir()
    # The next write lands on /dev/full: a real ENOSPC from the kernel, on any machine.
    (out / "result.json.tmp").symlink_to("/dev/full")
    spec = f"sqlite:{tmp_path / 'ok.db'}"
    proc = bench_proc(run_args(src, spec, out))
    assert reconcile(open_target(spec), default_mapping()).ok
    check_exactly_once(spec, src)
    assert proc.returncode == 1
    assert_one_line_error(proc, "result.json", "No space left")


def test_results_folder_full_keeps_the_database(src: Source, tmp_path: Path) -> None:
    out = tmp_path / "r1"
    out.mkdir()
    (out / "result.json.tmp").symlink_to("/dev/full")
    spec = f"sqlite:{tmp_path / 'ok.db'}"
    proc = bench_proc(run_args(src, spec, out))
    assert proc.returncode != 0
    assert "No space left" in proc.stderr
    assert not (out / "result.json").exists()  # no half-written result file
    check_exactly_once(spec, src)


# ---- result files damaged by a crash ------------------------------------------------------------
def test_a_truncated_result_file_is_named_and_the_complete_ones_are_kept(
        src: Source, tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 'x.db'}"
    for name in ("a", "b"):
        r = cli.invoke(app, [*run_args(src, spec, tmp_path / name), "--json"])
        assert r.exit_code == 0, r.output
    damaged = tmp_path / "b" / "result.json"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    for cmd in (["compare", str(tmp_path / "a"), str(tmp_path / "b")],
                ["report", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "rep.html")]):
        r = cli.invoke(app, cmd)
        assert r.exit_code == 1, r.output
        assert str(damaged) in r.output.replace("\n", "")
        assert "truncated or corrupted" in r.output
        assert "Traceback" not in r.output
    assert (tmp_path / "a" / "result.json").read_bytes()  # the complete one is untouched
    r = cli.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0, r.output


def test_a_sweep_killed_mid_write_resumes_keeping_every_complete_run(tmp_path: Path) -> None:
    """SIGKILL of `bench sweep` after some runs, a torn last line, then ``--resume``."""
    out = tmp_path / "sweep"
    store = out / "runs.jsonl"
    args = ["sweep", "-b", "50,100", "-n", "300", "-r", "2", "--warmup", "0", "--seed", "3",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while not store.exists() or store.read_text().count('"type":"run"') < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    lines = store.read_bytes().splitlines(keepends=True)
    complete = sum(b'"type":"run"' in line for line in lines)
    with store.open("ab") as f:  # a torn write: half of one more run line, no newline
        f.write(lines[-1][: len(lines[-1]) // 2])
    r = cli.invoke(app, ["sweep", "--resume", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "runs.jsonl" in r.output and "incomplete" in r.output
    assert f"kept the {complete} complete run(s)" in r.output.replace("\n", " ")
    assert not (out / "result.json.tmp").exists()
    import json

    doc = json.loads((out / "result.json").read_text())
    measured = [run for run in doc["runs"] if not run.get("warmup")]
    assert len(measured) == 4
