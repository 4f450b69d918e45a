"""Server restarts and killed sessions during a run: it finishes exactly once, no --resume.

A PostgreSQL cluster of this module's own (never the session's shared server) is restarted
with ``pg_ctl restart -m fast`` or ``-m immediate`` at a known point of the run — in the
middle of a ``COPY`` stream, between the statements of a batch inserted through ODBC
(``values``, ``executemany``), during the final count — or the run's own backend is ended
with ``pg_terminate_backend``. The point is reached deterministically: ``bench run`` (a
process of its own) waits at a fault point until the test has acted
(``tests/fault_helpers.py``); the library run is faulted in this process by patching the
driver call it is about to make. Each run must exit 0, reconciled, and hold every record
once (:func:`fault_helpers.check_exactly_once` compares with an independent mapping of the
input).

The cluster keeps ``fsync=off`` (fast) but its database commits synchronously: an immediate
shutdown loses asynchronously committed transactions that the client saw acknowledged,
which no client can recover from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import Source, check_exactly_once, fault_env, make_source, wait_for_file
from typer.testing import CliRunner

import bench.cli  # noqa: F401
from bench.cli import app
from migrator import (
    EngineConfig,
    NothingToResume,
    ParallelCoordinator,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
)

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
RECORDS = 300
BATCH = 50


# ---- a cluster we may restart ---------------------------------------------------------------
@dataclasses.dataclass
class Cluster:
    server: Any
    user: Any  # the service account pg_ctl runs as (root may not), or None

    @property
    def data(self) -> Path:
        return Path(self.server.root) / "data"

    def pg_ctl(self, *args: str, timeout: float = 120) -> None:
        from servers import pg_bin

        uid = self.user.pw_uid if self.user else None
        gid = self.user.pw_gid if self.user else None
        res = subprocess.run([str(pg_bin() / "pg_ctl"), *args, "-D", str(self.data)],
                             user=uid, group=gid, extra_groups=[] if self.user else None,
                             capture_output=True, text=True, timeout=timeout, check=False)
        assert res.returncode == 0, f"pg_ctl {' '.join(args)}: {res.stdout}{res.stderr}"

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def wait_gone(self, pid: int, timeout: float = 60) -> None:
        """Until the postmaster ``pid`` has exited (every session it served is dead)."""
        proc = self.server.proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.pid == pid:  # our own child: reap it
                if proc.poll() is not None:
                    return
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.01)
        raise AssertionError(f"postmaster {pid} did not stop")

    def restart(self, mode: str) -> threading.Thread:
        """``pg_ctl restart -m MODE``, returning once the old server is gone: the new one
        starts meanwhile, so the run meets "connection refused" and "starting up" too."""
        old = self.postmaster_pid()
        done = threading.Thread(target=self.pg_ctl, args=(
            "restart", "-m", mode, "-w", "-t", "60", "-l",
            str(Path(self.server.root) / "restart.log")), daemon=True)
        done.start()
        self.wait_gone(old)
        return done

    def start(self) -> None:
        """``pg_ctl start`` with the options the server last ran with (``restart`` reuses
        them by itself; ``start`` needs them spelt out)."""
        words = shlex.split((self.data / "postmaster.opts").read_text())
        opts = [w for i, w in enumerate(words[1:], 1)
                if w != "-D" and words[i - 1] != "-D"]
        self.pg_ctl("start", "-w", "-t", "60", "-o", shlex.join(opts), "-l",
                    str(Path(self.server.root) / "restart.log"))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def terminate(self, backend_pid: int) -> None:
        import psycopg

        with psycopg.connect(self.server.psycopg_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                (backend_pid,)).fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.01)

    def spec(self, extra: str = "") -> str:
        return "odbc:" + self.server.odbc(extra)


@pytest.fixture(scope="module")
def cluster(pyodbc_module: object) -> Iterator[Cluster]:
    import psycopg
    from servers import ServerUnavailable, _service_user, start_postgres

    try:
        server = start_postgres()
    except ServerUnavailable as exc:
        from conftest import unavailable

        unavailable(str(exc))
    c = Cluster(server, _service_user("postgres", "nobody"))
    try:
        with psycopg.connect(server.psycopg_dsn(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{server.database}" SET synchronous_commit = on')
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.pg_ctl("stop", "-m", "immediate", "-w")
        server.stop()


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("restart-src"), RECORDS, files=2, seed=23)


# ---- runs paused at a known point --------------------------------------------------------------
Act = Callable[[str], "threading.Thread | None"]  # the paused session's server id → action


def run_paused(src: Source, spec: str, tmp_path: Path, *, event: str, at: int, act: Act,
               proc_name: str = "MainProcess", extra: tuple[str, ...] = ()
               ) -> tuple[subprocess.CompletedProcess[str], str]:
    """``bench run`` in its own process, paused at its ``at``-th ``event`` until ``act`` (given
    the session id at that point) has run; returns the finished process and the session id."""
    flag = tmp_path / "paused"
    args = ["run", "--input", str(src.dir), "--target", spec, "--batch-size", str(BATCH),
            "--out", str(tmp_path / "r"), "--no-sample", "--json", *extra]
    env = fault_env(tmp_path, at=at, proc=proc_name, events=event, action="pause", flag=flag)
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    session = ""
    waiting: threading.Thread | None = None
    try:
        words = wait_for_file(flag, proc).split()
        session = words[1] if len(words) > 1 else ""
        waiting = act(session)
        Path(str(flag) + ".go").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if waiting is not None:
            waiting.join(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), session


def finished_once(done: subprocess.CompletedProcess[str], src: Source, spec: str,
                  tmp_path: Path) -> dict[str, Any]:
    """Exit 0, reconciled, a result file, the interruption retried, every record once."""
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["reconciliation"]["ok"], summary["reconciliation"]
    assert summary["records_read"] == RECORDS
    assert (tmp_path / "r" / "result.json").is_file()
    assert summary["retries"] >= 1, "the fault did not interrupt the run"
    check_exactly_once(spec, src)
    return summary


# ---- pg_ctl restart -------------------------------------------------------------------------
# (insert method, mode, event, at): rows of a COPY stream (mid-stream, or the first row of a
# later batch), or ODBC inserts into the mapping's tables (3 a batch: orders, order_lines,
# payments; the 8th is order_lines of batch 3, inside its transaction; the 4th opens batch 2).
RESTARTS = [
    ("copy", "fast", "copy_row", 310),
    ("copy", "immediate", "copy_row", 101),
    ("values", "fast", "data_insert", 8),
    ("values", "immediate", "data_insert", 4),
    ("executemany", "immediate", "data_insert", 8),
    ("executemany", "fast", "data_insert", 4),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "mode", "event", "at"), RESTARTS,
                         ids=[f"{m}-{mode}-{at}" for m, mode, _, at in RESTARTS])
def test_a_restart_during_inserts_is_survived_exactly_once(
        cluster: Cluster, src: Source, tmp_path: Path, method: str, mode: str, event: str,
        at: int) -> None:
    spec = cluster.spec()  # psqlODBC's defaults: statement savepoints, server-side prepare
    done, _ = run_paused(src, spec, tmp_path, event=event, at=at,
                         act=lambda _: cluster.restart(mode),
                         extra=("--insert-method", method))
    finished_once(done, src, spec, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_during_the_final_count_still_writes_the_result(
        cluster: Cluster, src: Source, tmp_path: Path, mode: str) -> None:
    spec = cluster.spec("Protocol=7.4-1")
    done, _ = run_paused(src, spec, tmp_path, event="count", at=1,
                         act=lambda _: cluster.restart(mode),
                         extra=("--insert-method", "values"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["reconciliation"]["ok"] and summary["records_read"] == RECORDS
    assert (tmp_path / "r" / "result.json").is_file()
    check_exactly_once(spec, src)


@dataclasses.dataclass
class Fault:
    """In this process: the ``at``-th call of a patched method first runs ``action``."""

    at: int
    action: Callable[[Any], Any]
    when: Callable[[tuple[Any, ...]], bool] = lambda args: True  # which calls count
    calls: int = 0
    waits: list[threading.Thread] = dataclasses.field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def patched(obj: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.when(args):
                return real(obj, *args, **kwargs)
            self.calls += 1
            if self.calls == self.at:
                out = self.action(obj)
                if isinstance(out, threading.Thread):
                    self.waits.append(out)
            return real(obj, *args, **kwargs)

        monkeypatch.setattr(owner, name, patched)

    def settle(self) -> None:
        assert self.calls >= self.at, f"the fault point was not reached ({self.calls} calls)"
        for t in self.waits:
            t.join(timeout=120)


@pytest.mark.postgres
def test_a_restart_with_one_connection_for_the_whole_run(
        cluster: Cluster, src: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    """The persistent strategy (the library's default): the dead session is dropped and a
    new one kept for the rest of the run."""
    from migrator.targets.odbc import OdbcConnection

    fault = Fault(7, lambda _: cluster.restart("fast"),
                  when=lambda args: not str(args[0]).startswith("mb_"))  # the mapping's tables
    fault.install(monkeypatch, OdbcConnection, "insert_rows")
    spec = cluster.spec("Protocol=7.4-1")
    stats = migrate(expand_inputs([str(src.dir)]), open_target(spec), default_mapping(),
                    EngineConfig(batch_size=BATCH, insert_method="values",
                                 connection="persistent"))
    fault.settle()
    assert stats.retries >= 1 and not stats.errors
    check_exactly_once(spec, src)


@pytest.mark.postgres
def test_a_restart_while_the_finish_is_recorded_and_read_back(
        cluster: Cluster, src: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's last write (when it finished) and ``--resume``'s first read (did it?) are
    retried like a batch: the run completes, and resuming it says there is nothing to do.
    The server is stopped just before each; it comes back while the run waits to retry."""
    import migrator.coordinator as coordinator_module
    from migrator.retry import Retry

    spec = cluster.spec("Protocol=7.4-1")
    config = EngineConfig(batch_size=BATCH, insert_method="values", connection="per-batch")
    failures: list[str] = []
    real_after = Retry.after

    def after(retry: Retry, exc: BaseException) -> None:
        failures.append(str(exc))
        if not cluster.running():
            cluster.start()
        real_after(retry, exc)

    monkeypatch.setattr(Retry, "after", after)

    def run(resume: bool) -> Any:
        return ParallelCoordinator(open_target(spec), default_mapping(), config).run(
            expand_inputs([str(src.dir)]), resume=resume)

    for name in ("mark_finished", "finished_at"):
        failures.clear()
        fault = Fault(1, lambda _: cluster.pg_ctl("stop", "-m", "immediate", "-w"))
        fault.install(monkeypatch, coordinator_module, name)
        if name == "mark_finished":
            assert not run(resume=False).errors
        else:
            with pytest.raises(NothingToResume):
                run(resume=True)
        fault.settle()
        assert failures, f"{name}: the stopped server was not met"
    check_exactly_once(spec, src)


@pytest.mark.postgres
def test_a_new_engine_meets_a_stopped_server_and_waits(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process's engine (and the read/map process) connects once to learn the
    dialect: after the run has reached the server, so a restart then is waited for too."""
    from migrator import MigrationEngine
    from migrator.retry import Retry

    failures: list[str] = []
    real_after = Retry.after

    def after(retry: Retry, exc: BaseException) -> None:
        failures.append(str(exc))
        if not cluster.running():
            cluster.start()  # the server comes back while the engine waits
        real_after(retry, exc)

    monkeypatch.setattr(Retry, "after", after)
    cluster.pg_ctl("stop", "-m", "fast", "-w")
    try:
        engine = MigrationEngine(open_target(cluster.spec()), default_mapping())
    finally:
        if not cluster.running():
            cluster.start()
    assert failures and "cannot connect" in failures[0]
    assert engine.target.dialect.name == "postgresql"


# ---- pg_terminate_backend -------------------------------------------------------------------
@pytest.mark.postgres
def test_the_copy_backend_terminated_mid_stream(cluster: Cluster, src: Source,
                                                tmp_path: Path) -> None:
    """psycopg reports it with no SQLSTATE ("server closed the connection unexpectedly")."""
    spec = cluster.spec()
    done, session = run_paused(src, spec, tmp_path, event="copy_row", at=260,
                               act=lambda backend: cluster.terminate(int(backend)),
                               extra=("--insert-method", "copy"))
    assert session
    finished_once(done, src, spec, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("method", ["values", "executemany"])
def test_the_odbc_backend_terminated_between_statements(
        cluster: Cluster, src: Source, tmp_path: Path, method: str) -> None:
    """With psqlODBC's statement savepoints the next statement fails as "internal SAVEPOINT
    failed" or "Error while preparing parameters": the session probe finds it dead."""
    spec = cluster.spec()
    done, session = run_paused(src, spec, tmp_path, event="data_insert", at=5,
                               act=lambda backend: cluster.terminate(int(backend)),
                               extra=("--insert-method", method))
    assert session
    finished_once(done, src, spec, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "event", "at"), [("values", "data_insert", 5),
                                                     ("copy", "copy_row", 260)])
def test_a_persistent_session_terminated_mid_run_is_replaced(
        cluster: Cluster, src: Source, tmp_path: Path, method: str, event: str,
        at: int) -> None:
    """``--connection persistent``: the session the run keeps for all its batches (the
    COPY session, for copy) is ended mid-run; the run connects once more, keeps the new
    session for the rest and finishes exactly once."""
    spec = cluster.spec()
    done, session = run_paused(src, spec, tmp_path, event=event, at=at,
                               act=lambda backend: cluster.terminate(int(backend)),
                               extra=("--insert-method", method, "--connection",
                                      "persistent"))
    assert session
    summary = finished_once(done, src, spec, tmp_path)
    assert summary["connection"] == "persistent"
    assert summary["connects"] == 2  # the first session and the one that replaced it


# ---- pooled sessions, two workers -----------------------------------------------------------
@pytest.mark.postgres
def test_two_pooled_workers_survive_a_restart(cluster: Cluster, src: Source,
                                              tmp_path: Path) -> None:
    """Worker 1 waits before its 4th insert until the server has been restarted; worker 2
    meets the restart wherever it is. Dead pooled sessions (driver manager and COPY) are
    dropped, not reused."""
    spec = cluster.spec()
    done, _ = run_paused(src, spec, tmp_path, event="data_insert", at=4,
                         proc_name="mb-worker-1",
                         act=lambda _: cluster.restart("fast"),
                         extra=("--workers", "2", "--pooling", "on", "--insert-method",
                                "copy"))
    finished_once(done, src, spec, tmp_path)


@pytest.mark.postgres
def test_a_worker_that_outlives_the_window_fails_in_one_line(
        cluster: Cluster, src: Source, tmp_path: Path) -> None:
    """The server stays down longer than --retry-window: one line naming the worker, the
    cause and --resume (once), exit 1; with the server back, --resume completes."""
    spec = cluster.spec("Protocol=7.4-1")
    stopped: list[bool] = []

    def stop(_: str) -> None:
        cluster.pg_ctl("stop", "-m", "fast", "-w")
        stopped.append(True)

    try:
        done, _ = run_paused(src, spec, tmp_path, event="data_insert", at=4,
                             proc_name="mb-worker-1", act=stop,
                             extra=("--workers", "2", "--retry-window", "1"))
    finally:
        if stopped:
            cluster.start()
    err = done.stderr
    assert done.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    line = lines[0]
    print(line)  # (shown with -s: the message users see)
    assert "worker" in line and "--retry-window 1" in line
    assert line.count("--resume") == 1 and line.endswith("continue with --resume"), line
    assert cluster.server.password not in err
    res = cli.invoke(app, ["run", "--input", str(src.dir), "--target", spec, "--batch-size",
                           str(BATCH), "--out", str(tmp_path / "r2"), "--no-sample", "--json",
                           "--resume"])
    assert res.exit_code == 0, res.output
    check_exactly_once(spec, src)


# ---- MariaDB: KILL CONNECTION of the run's session -----------------------------------------
@pytest.fixture(scope="module")
def maria(mariadb: Any) -> Iterator[tuple[Any, str]]:
    """A database of its own in the shared MariaDB server (only our sessions die), and an
    admin session to kill them from."""
    from migrator.targets.odbc import OdbcTarget

    admin = OdbcTarget(mariadb.odbc()).connect()
    admin.execute("CREATE DATABASE IF NOT EXISTS mb_retry")
    admin.commit()
    try:
        yield admin, "odbc:" + dataclasses.replace(mariadb, database="mb_retry").odbc()
    finally:
        admin.execute("DROP DATABASE IF EXISTS mb_retry")
        admin.commit()
        admin.close()


@pytest.mark.mariadb
@pytest.mark.parametrize("method", ["values", "executemany"])
def test_mariadb_kill_connection_during_inserts(maria: tuple[Any, str], src: Source,
                                                tmp_path: Path, method: str) -> None:
    admin, spec = maria
    done, session = run_paused(
        src, spec, tmp_path, event="data_insert", at=5,
        act=lambda conn_id: admin.execute(f"KILL CONNECTION {int(conn_id)}"),
        extra=("--insert-method", method))
    assert session
    finished_once(done, src, spec, tmp_path)


@pytest.mark.mariadb
def test_mariadb_kill_connection_of_a_persistent_session(maria: tuple[Any, str], src: Source,
                                                         tmp_path: Path) -> None:
    """The one session a persistent run writes through is killed between two inserts of
    a batch: reconnected once, kept, every record once."""
    admin, spec = maria
    done, session = run_paused(
        src, spec, tmp_path, event="data_insert", at=8,
        act=lambda conn_id: admin.execute(f"KILL CONNECTION {int(conn_id)}"),
        extra=("--insert-method", "values", "--connection", "persistent"))
    assert session
    summary = finished_once(done, src, spec, tmp_path)
    assert summary["connection"] == "persistent" and summary["connects"] == 2
