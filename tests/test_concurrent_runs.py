"""One run per target, end to end: real `bench run` processes into one target at once.

The first run is held still at a known point (the fault hook of tests/fault_helpers.py
pauses it between two batches, in the coordinator or in a worker) so it is provably still
running when the second starts. The second — fresh or ``--resume``, 1 or 2 workers — must
be refused at once with one line naming the holder, without touching the target; the
first then finishes exactly once. A holder killed with SIGKILL must free the target at
once: ``--resume`` right after finishes exactly once.

On SQLite, the live PostgreSQL and the live MariaDB.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (
    Source,
    bench_proc,
    check_exactly_once,
    committed_records,
    fault_env,
    make_source,
    wait_for_file,
)

from migrator import default_mapping, open_target, reconcile
from migrator.runlock import RunLock, TargetBusy

RECORDS = 2000
BATCH = 50

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("lock-src"), RECORDS, files=2, seed=23)


@dataclass(frozen=True)
class Into:
    """A target of these tests: its spec, the secret it must never print, and the insert
    method. MariaDB Connector/ODBC now and then fails a multi-row VALUES insert from two
    workers with "Memory allocation error (0)", whatever the run lock: these tests insert
    row by row there (the lock does not depend on the insert method)."""

    spec: str
    secret: str = ""
    method: str = "auto"


@pytest.fixture(params=BACKENDS)
def into(request: pytest.FixtureRequest, tmp_path: Path) -> Into:
    if request.param == "sqlite":
        return Into(f"sqlite:{tmp_path / 'one.db'}")
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        return Into("odbc:" + server.odbc("Protocol=7.4-1"), server.password)
    server = request.getfixturevalue("mariadb")
    return Into("odbc:" + server.odbc(), server.password, "executemany")


def run_args(src: Source, into: Into, out: Path, *extra: str) -> list[str]:
    return ["run", "--input", str(src.dir), "--target", into.spec, "--batch-size", str(BATCH),
            "--out", str(out), "--no-sample", "--insert-method", into.method, *extra]


@contextmanager
def paused_run(args: list[str], tmp: Path, name: str, *, workers: int
               ) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`bench ARGS` stopped as it cuts its 3rd batch (in worker 1 with workers), after
    committing two: it holds the target and has written to it. Yields (process, go-file);
    touching the go-file lets it finish. Killed if the test fails."""
    flag = tmp / f"{name}.paused"
    env = fault_env(tmp, at=3, proc="mb-worker-1" if workers > 1 else "MainProcess",
                    events="batch", action="pause", flag=flag)
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_file(flag, proc)
        wait_named(spec_of(args))
        yield proc, Path(str(flag) + ".go")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def spec_of(args: list[str]) -> str:
    return args[args.index("--target") + 1]


def wait_named(spec: str, timeout: float = 60) -> None:
    """Until a refused run would name the holder: on a server, its details are recorded
    once its tables exist (a refused run sees only its session before)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with RunLock(open_target(spec), run_id="probe"):
                raise AssertionError("the paused run does not hold its target")
        except TargetBusy as busy:
            if busy.holder is not None:
                return
        assert time.monotonic() < deadline, "the holder's details were never recorded"
        time.sleep(0.02)


def finish(proc: subprocess.Popen[str], go: Path) -> None:
    go.touch()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "reconciled" in out and "NOT reconciled" not in out


def assert_refused(done: subprocess.CompletedProcess[str], holder_out: Path,
                   holder_pid: int, secret: str) -> str:
    """Exit 1 and exactly one line naming the holder: run id, host, pid, start, results
    folder. Returns the run id it names."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    line = errors[0]
    print(line)  # (shown with -s: what a user sees)
    assert "is in use by another run" in line
    host = re.escape(f"(host {socket.gethostname()}, pid {holder_pid}, started ")
    folder = re.escape(f" UTC, results in {holder_out})")
    found = re.search(r"run (\S+) " + host + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d" + folder, line)
    assert found, line
    if secret:
        assert secret not in done.stderr
    return found.group(1)


def second_run(src: Source, into: Into, tmp: Path, *extra: str) -> tuple[
        subprocess.CompletedProcess[str], Path]:
    out = tmp / "second"
    return bench_proc(run_args(src, into, out, *extra), timeout=60), out


def interrupted(src: Source, into: Into, tmp: Path) -> None:
    """A run SIGKILLed after a few batches: a target to resume."""
    killed = bench_proc(run_args(src, into, tmp / "killed"),
                        env=fault_env(tmp, at=5, events="batch"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert 0 < committed_records(into.spec) < RECORDS


# (first run, second run): fresh or --resume, 1 or 2 workers
CASES = [
    pytest.param((), (), id="fresh+fresh"),
    pytest.param((), ("--resume",), id="fresh+resume"),
    pytest.param(("--resume",), ("--resume",), id="resume+resume"),
    pytest.param(("--workers", "2"), ("--resume", "--workers", "2"),
                 id="fresh-w2+resume-w2"),
    pytest.param(("--resume", "--workers", "2"), ("--workers", "2"),
                 id="resume-w2+fresh-w2"),
]


@pytest.mark.parametrize(("first", "second"), CASES)
def test_a_second_run_is_refused_and_the_first_completes_exactly_once(
        src: Source, into: Into, tmp_path: Path, first: tuple[str, ...],
        second: tuple[str, ...]) -> None:
    if "--resume" in first:
        interrupted(src, into, tmp_path)
    workers = 2 if "--workers" in first else 1
    holder_out = tmp_path / "first"
    with paused_run(run_args(src, into, holder_out, *first), tmp_path, "first",
                    workers=workers) as (proc, go):
        before = committed_records(into.spec)
        done, out = second_run(src, into, tmp_path, *second)
        named = assert_refused(done, holder_out, proc.pid, into.secret)
        if workers == 1:  # (worker 2 of the first run keeps committing)
            assert committed_records(into.spec) == before  # the second touched nothing
        assert not (out / "result.json").exists()
        finish(proc, go)
    check_exactly_once(into.spec, src)
    result = json.loads((holder_out / "result.json").read_text())
    assert result["runs"][0]["run_id"] == named  # the run it named is the one that ran


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_killed_holder_frees_the_target_at_once(
        src: Source, into: Into, tmp_path: Path, workers: str) -> None:
    """SIGKILL of the `bench run` process (its workers die with it): `--resume` right
    after is not refused and finishes exactly once."""
    spec = into.spec
    with paused_run(run_args(src, into, tmp_path / "first", "--workers", workers),
                    tmp_path, "first", workers=int(workers)) as (proc, _go):
        with pytest.raises(TargetBusy), RunLock(open_target(spec), run_id="probe"):
            pass  # it holds the target now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = reconcile(open_target(spec), default_mapping())
    assert partial.ok and 0 < partial.records_read < RECORDS
    resumed = bench_proc(run_args(src, into, tmp_path / "resumed", "--resume",
                                  "--workers", workers))
    assert resumed.returncode == 0, resumed.stderr
    check_exactly_once(spec, src)


def test_without_the_lock_the_same_schedule_loses_records(
        src: Source, tmp_path: Path) -> None:
    """The schedule above is a real conflict: with the lock switched off in the second
    run, the first no longer completes exactly once (on SQLite)."""
    into = Into(f"sqlite:{tmp_path / 'one.db'}")
    hook = tmp_path / "nolock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "from migrator.runlock import NoLock\n"
        "from migrator.targets.sqlite import SQLiteTarget\n"
        "SQLiteTarget.acquire_run_lock = lambda self, holder, namespace=None: NoLock()\n")
    env: dict[str, Any] = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with paused_run(run_args(src, into, tmp_path / "first"), tmp_path, "first",
                    workers=1) as (proc, go):
        done = bench_proc(run_args(src, into, tmp_path / "second", "--resume"), env=env,
                          timeout=120)
        assert done.returncode == 0, done.stderr  # it ran: nothing kept it out
        go.touch()
        proc.communicate(timeout=180)
    with pytest.raises(AssertionError):
        check_exactly_once(into.spec, src)
