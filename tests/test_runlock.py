"""The run lock as a library (migrator.runlock): SQLite lock files, session locks on the
live PostgreSQL and MariaDB, the SQL Server statements parsed as T-SQL.

The end-to-end guarantee — a second `bench run` refused while the first finishes exactly
once, a killed holder freeing the target at once — is tests/test_concurrent_runs.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp
from typer.testing import CliRunner

import migrator.runlock as runlock
from bench.cli import app
from migrator import default_mapping, open_target, prepare_target
from migrator.errors import TargetError
from migrator.runlock import (
    DEAD_HOLDER_GRACE_S,
    FileLock,
    Holder,
    LockName,
    RunLock,
    SessionLock,
    TargetBusy,
    lock_file_path,
    lock_namespace,
)
from migrator.session import session_name
from migrator.targets.base import (
    LOCK_TABLE,
    Connection,
    Dialect,
    Namespace,
    Target,
    table_exists,
)
from migrator.targets.mssql import MSSQLDialect, applock_granted

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the holder's details --------------------------------------------------------------------
def test_holder_round_trips_and_garbage_reads_as_unknown() -> None:
    h = Holder.here("3f9a1c2e", "runs/20240501-120000")
    assert h.host == socket.gethostname() and h.pid == os.getpid()
    assert Holder.from_json(h.to_json()) == h
    for junk in (None, "", b"", "{", "[]", '{"run_id": 1}', b"\xff\xfe", '{"pid": "x"}'):
        assert Holder.from_json(junk) is None
    text = h.describe()
    assert text.startswith("run 3f9a1c2e (host ") and f"pid {os.getpid()}" in text
    assert text.endswith(" UTC, results in runs/20240501-120000)")
    assert Holder.here("x").describe().endswith(" UTC)")  # (no folder: not named)


def test_a_very_long_results_folder_still_fits_the_holder_column() -> None:
    h = Holder.here("3f9a1c2e", "/deep" * 1000 + "/run")
    text = h.to_json()
    assert len(text) <= runlock.HOLDER_CHARS
    back = Holder.from_json(text)
    assert back is not None and back.pid == h.pid and back.run_id == "3f9a1c2e"
    assert back.results.startswith("…") and back.results.endswith("/deep/run")


def test_busy_message_names_the_holder_or_says_it_is_unknown() -> None:
    h = Holder("3f9a1c2e", "db-client-7", 4242, "2024-05-01T12:00:00+00:00",
               results="runs/20240501-120000")
    msg = str(TargetBusy("sqlite:t.db", h))
    assert msg == ("sqlite:t.db is in use by another run: run 3f9a1c2e (host db-client-7, "
                   "pid 4242, started 2024-05-01 12:00:00 UTC, results in "
                   "runs/20240501-120000); wait for it to finish, or stop it (a stopped or "
                   "killed run frees the target at once)")
    assert "server session 77" in str(TargetBusy("odbc:x", None, "77"))
    assert "not recorded" in str(TargetBusy("odbc:x", None))
    assert isinstance(TargetBusy("x", None), TargetError)  # the CLI: one line, exit 1


def test_lock_names_depend_on_database_and_namespace() -> None:
    a, b = LockName.of("mbtest"), LockName.of("other")
    assert a == LockName.of("mbtest", None) == LockName.of("mbtest", "")
    assert a != b and a != LockName.of("mbtest", "p_")
    assert len(a.text) <= 64 and a.text.startswith("mb-run-")  # MariaDB's limit
    assert -(2**63) <= a.number < 2**63  # a PostgreSQL bigint


# ---- SQLite: the lock file -------------------------------------------------------------------
def test_sqlite_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec = f"sqlite:{tmp_path / 'sub' / 't.db'}"
    with RunLock(open_target(spec), run_id="runs/first") as first:
        lock_file = tmp_path / "sub" / "t.db.lock"
        assert Holder.from_json(lock_file.read_text()) == first.holder
        with pytest.raises(TargetBusy) as busy, RunLock(open_target(spec), run_id="runs/2"):
            pass
        assert busy.value.holder == first.holder
        assert str(busy.value).startswith(f"{spec} is in use by another run: run runs/first")
    assert not lock_file.exists()  # released: nothing left beside the database
    with RunLock(open_target(spec), run_id="runs/third"):
        pass


def test_sqlite_lock_file_of_a_dead_run_never_blocks(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    stale = Holder("runs/killed", socket.gethostname(), dead_pid(), "2024-01-01T00:00:00+00:00")
    Path(lock_file_path(str(db))).write_text(stale.to_json())  # what a SIGKILL leaves
    with RunLock(open_target(f"sqlite:{db}"), run_id="runs/next") as lock:
        assert Holder.from_json(Path(lock_file_path(str(db))).read_text()) == lock.holder


def test_sqlite_lock_is_shared_by_every_name_of_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "real.db"
    (tmp_path / "link.db").symlink_to(db)
    with RunLock(open_target(f"sqlite:{db}"), run_id="runs/a"), \
            pytest.raises(TargetBusy):
        RunLock(open_target(f"sqlite:{tmp_path / 'link.db'}"), run_id="runs/b").__enter__()
    monkeypatch.chdir(tmp_path)
    with RunLock(open_target("sqlite:real.db?synchronous=FULL"), run_id="runs/c"), \
            pytest.raises(TargetBusy):
        RunLock(open_target(f"sqlite:{db}"), run_id="runs/d").__enter__()


def test_sqlite_namespaces_lock_separately(tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 't.db'}"
    with RunLock(open_target(spec), run_id="a", namespace="p1_"):
        with RunLock(open_target(spec), run_id="b", namespace="p2_"):
            pass
        with pytest.raises(TargetBusy), RunLock(open_target(spec), run_id="c",
                                                namespace="p1_"):
            pass


def test_sqlite_in_memory_has_nothing_to_lock() -> None:
    with RunLock(open_target("sqlite::memory:"), run_id="a"), \
            RunLock(open_target("sqlite::memory:"), run_id="b"):
        pass


def test_a_lock_file_replaced_while_waiting_is_not_trusted(tmp_path: Path) -> None:
    """The holder removes the file as it releases; a run that opened the old file before
    must not hold it while a third run locks the new one."""
    path = str(tmp_path / "t.db.lock")
    first = FileLock.acquire(path, Holder.here("a"), "sqlite:t.db")
    fd = os.open(path, os.O_RDWR)  # a second run opened it…
    first.release()  # …and the holder left: the path is gone
    third = FileLock.acquire(path, Holder.here("c"), "sqlite:t.db")
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free, but stale:
    assert not runlock._same_file(fd, path)  # FileLock.acquire tries the new path again
    os.close(fd)
    with pytest.raises(TargetBusy):
        FileLock.acquire(path, Holder.here("b"), "sqlite:t.db")
    third.release()


def test_sqlite_through_odbc_shares_the_native_lock(tmp_path: Path, sqlite_odbc: str) -> None:
    db = sqlite_odbc.split("Database=", 1)[1]
    with RunLock(open_target(f"sqlite:{db}"), run_id="native"):
        with pytest.raises(TargetBusy) as busy, RunLock(open_target("odbc:" + sqlite_odbc),
                                                        run_id="odbc"):
            pass
        assert busy.value.holder is not None and busy.value.holder.run_id == "native"
    with RunLock(open_target("odbc:" + sqlite_odbc), run_id="odbc"), \
            pytest.raises(TargetBusy):
        RunLock(open_target(f"sqlite:{db}"), run_id="native").__enter__()


def test_every_command_that_runs_is_refused_on_a_held_target(tmp_path: Path) -> None:
    """`bench sweep` (and baseline, diagnose) run through bench.runner.execute_run."""
    spec = f"sqlite:{tmp_path / 't.db'}"
    with RunLock(open_target(spec), run_id="runs/holder"):
        r = cli.invoke(app, ["sweep", "-t", spec, "-b", "50", "-n", "200", "-r", "1",
                             "--warmup", "0", "--out", str(tmp_path / "s")])
    assert r.exit_code == 1, r.output
    assert "in use by another run: run runs/holder" in r.output
    assert "Traceback" not in r.output


def test_a_target_without_a_run_lock_refuses_to_run() -> None:
    class Bare(Target):
        scheme = "bare"
        dialect = Dialect()

        def connect(self) -> Connection:
            raise AssertionError

        def info(self) -> Any:
            from migrator.targets.base import TargetInfo

            return TargetInfo("bare", "bare:x", "generic")

    with pytest.raises(TargetError, match="no run lock"), RunLock(Bare(), run_id="a"):
        pass


# ---- SQL Server: statements and answers --------------------------------------------------------
def _named_args(tree: Any) -> dict[str, str]:
    return {e.this.sql(dialect="tsql"): e.expression.sql(dialect="tsql")
            for e in tree.find_all(exp.EQ)}


def test_mssql_lock_statements_parse_as_tsql_and_ask_for_a_session_lock_now() -> None:
    sql = MSSQLDialect().run_lock_sql(LockName.of("mig"))
    statements = [sql.acquire, sql.held, sql.release]
    assert all(params == (LockName.of("mig").text,) for _, params in statements)
    batch = sqlglot.parse(sql.acquire[0], read="tsql")
    kinds = [type(t).__name__ for t in batch]
    assert kinds[-1] == "Select" and "Execute" in kinds
    execute = next(t for t in batch if type(t).__name__ == "Execute")
    text = execute.sql(dialect="tsql")
    assert "sp_getapplock" in text
    for arg in ("@LockOwner = 'Session'", "@LockTimeout = 0", "@LockMode = 'Exclusive'",
                "@Resource = ?"):
        assert arg in text, text
    release = sqlglot.parse_one(sql.release[0], read="tsql").sql(dialect="tsql")
    assert "sp_releaseapplock" in release and "@LockOwner = 'Session'" in release
    held = sqlglot.parse_one(sql.held[0], read="tsql")
    assert isinstance(held, exp.Select) and "APPLOCK_MODE" in held.sql(dialect="tsql")
    sqlglot.parse_one(MSSQLDialect().lock_identity_sql, read="tsql")
    table = sqlglot.parse_one(MSSQLDialect().lock_table_sql(), read="tsql")
    assert isinstance(table, exp.Create) and "NVARCHAR(2000)" in table.sql(dialect="tsql")
    assert sql.owner is None  # only VIEW SERVER STATE shows who holds an applock


@pytest.mark.parametrize(("code", "granted"), [(0, True), (1, True), (-1, False),
                                               ("0", True), ("-1", False)])
def test_mssql_applock_answers(code: Any, granted: bool) -> None:
    assert applock_granted(code) is granted


@pytest.mark.parametrize("code", [-2, -3, -999, None, "x"])
def test_mssql_applock_errors_are_errors_not_a_busy_target(code: Any) -> None:
    with pytest.raises(TargetError) as err:
        applock_granted(code)
    assert not isinstance(err.value, TargetBusy)
    assert "sp_getapplock" in str(err.value)


# ---- live servers: session locks -------------------------------------------------------------
SERVERS = [
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("postgres" if request.param == "postgresql" else "mariadb")


# The tests' tables: a namespace of their own, which the tool has claimed (its mb_tables
# registry exists), as any run has once its tables are made.
PREFIX = "lk_"
_CLAIMED: set[str] = set()


def _target(spec: str, prefix: str = PREFIX) -> Target:
    target = open_target(spec)
    target.set_namespace(Namespace(prefix=prefix))
    return target


def server_spec(server: Any) -> str:
    spec = "odbc:" + server.odbc("Protocol=7.4-1" if server.kind == "postgresql" else "")
    if spec not in _CLAIMED:
        prepare_target(_target(spec), default_mapping(), [], resume=False)
        _CLAIMED.add(spec)
    return spec


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runlock, "KEEPALIVE_S", 0.05)


def _session_lock(lock: RunLock) -> SessionLock:
    held = lock._held
    assert isinstance(held, SessionLock)
    return held


def _raw(spec: str) -> Any:
    conn = _target(spec).connect()
    conn.set_autocommit(True)
    return conn


def _end_session(spec: str, session: str) -> None:
    """The server ends a session (an administrator, a restart, a network cut)."""
    admin = _raw(spec)
    try:
        if admin.dialect.name == "postgresql":
            admin.query("SELECT pg_terminate_backend(?)", (int(session),))
        else:
            admin.execute(f"KILL {int(session)}")
        deadline = time.monotonic() + 10
        while session in _sessions(admin) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        admin.close()


def _sessions(conn: Any) -> set[str]:
    sql = ("SELECT pid FROM pg_stat_activity" if conn.dialect.name == "postgresql"
           else "SELECT id FROM information_schema.processlist")
    return {str(r[0]) for r in conn.query(sql)}


def test_server_second_lock_is_refused_naming_the_holder(server: Any) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="runs/first") as first:
        held = _session_lock(first)
        assert held.holder.session  # the server's id of the lock session, recorded
        with pytest.raises(TargetBusy) as busy, RunLock(_target(spec), run_id="b"):
            pass
        assert busy.value.holder == held.holder
        assert str(busy.value).startswith(f"{_target(spec).info().display} is in use "
                                          f"by another run: run runs/first (host ")
        assert server.password not in str(busy.value)
        probe = _raw(spec)
        try:  # the lock session holds it, and only that session
            assert not runlock._truthy(runlock._value(probe, held.sql.held))
            owner = runlock._value(probe, held.sql.owner) if held.sql.owner else None
            assert str(owner) == held.holder.session
            # Autocommit: the lock session never sits in an open transaction.
            if probe.dialect.name == "postgresql":
                state = probe.query("SELECT state FROM pg_stat_activity WHERE pid = ?",
                                    (int(held.holder.session),))
                assert state == [("idle",)]
        finally:
            probe.close()
    with RunLock(_target(spec), run_id="runs/again"):
        pass  # released


def test_server_namespaces_lock_separately(server: Any) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="a", namespace="p1_"):
        with RunLock(_target(spec), run_id="b", namespace="p2_"), \
                RunLock(_target(spec), run_id="c"):
            pass
        with pytest.raises(TargetBusy), RunLock(_target(spec), run_id="d",
                                                namespace="p1_"):
            pass


def _lock_name(conn: Any) -> LockName:
    """The name a run's lock has on this connection's database and namespace."""
    identity = str(conn.query(conn.dialect.lock_identity_sql)[0][0])
    return LockName.of(identity, lock_namespace(conn.target))


def _record(conn: Any, name: LockName, holder: Holder, *, replace: bool = True) -> None:
    """Write a holder row as a run would (or as a killed run leaves it)."""
    table = conn.dialect.table_ref(LOCK_TABLE)
    if replace:
        conn.execute(f"DELETE FROM {table} WHERE lock_key = ?", (name.text,))
    conn.execute(f"INSERT INTO {table} (lock_key, holder) VALUES (?, ?)",
                 (name.text, holder.to_json()))


def _take_raw(spec: str) -> tuple[Any, LockName]:
    """Another session takes the target's lock without recording itself."""
    conn = _raw(spec)
    name = _lock_name(conn)
    sql = conn.dialect.run_lock_sql(name)
    assert sql.acquired(runlock._value(conn, sql.acquire))
    return conn, name


def test_a_stale_holder_row_is_never_shown_and_never_blocks(server: Any) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="runs/old"):
        pass
    conn = _raw(spec)
    name = _lock_name(conn)
    stale = Holder("runs/killed", "elsewhere", 1, "2024-01-01T00:00:00+00:00", "999999")
    _record(conn, name, stale)
    conn.close()
    with RunLock(_target(spec), run_id="runs/new") as lock:  # the row does not block
        assert _session_lock(lock).holder.run_id == "runs/new"
    raw, _ = _take_raw(spec)  # held by a session whose row is not (yet) written
    try:
        probe = _raw(spec)
        _record(probe, name, stale, replace=False)
        probe.close()
        with pytest.raises(TargetBusy) as busy, RunLock(_target(spec), run_id="x"):
            pass
        assert busy.value.holder is None  # the stale row names a session that is gone
        assert f"server session {raw.session_id()}" in str(busy.value)
        assert "runs/killed" not in str(busy.value)
    finally:
        raw.close()


def test_a_dead_local_holder_whose_session_is_closing_is_waited_for(
        server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's process is gone but the server has not ended its session yet: the
    next run waits for the server (at most DEAD_HOLDER_GRACE_S) instead of refusing."""
    spec = server_spec(server)
    raw, name = _take_raw(spec)
    dead = Holder("runs/killed", socket.gethostname(), dead_pid(),
                  "2024-01-01T00:00:00+00:00", raw.session_id())
    _record(raw, name, dead)
    waiting = threading.Event()
    real_sleep = time.sleep

    def close_soon() -> None:
        waiting.wait(DEAD_HOLDER_GRACE_S)
        raw.close()  # the server ends the dead holder's session

    def sleep(s: float) -> None:
        waiting.set()  # the next run is waiting for the server, not refused
        real_sleep(s)

    closer = threading.Thread(target=close_soon)
    closer.start()
    try:
        monkeypatch.setattr(runlock.time, "sleep", sleep)
        with RunLock(_target(spec), run_id="runs/next") as lock:
            assert _session_lock(lock).holder.run_id == "runs/next"
    finally:
        monkeypatch.undo()
        closer.join()
    assert waiting.is_set()


def test_a_live_holder_elsewhere_is_refused_at_once(server: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = server_spec(server)
    raw, name = _take_raw(spec)
    try:
        alive = Holder("runs/other", "another-host", os.getpid(), "2024-01-01T00:00:00+00:00",
                       raw.session_id())
        _record(raw, name, alive)

        def no_sleep(s: float) -> None:
            raise AssertionError("a live holder must be refused without waiting")

        monkeypatch.setattr(runlock.time, "sleep", no_sleep)
        with pytest.raises(TargetBusy) as busy, RunLock(_target(spec), run_id="x"):
            pass
        assert busy.value.holder == alive
    finally:
        monkeypatch.undo()
        raw.close()


def _wait_until(cond: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_lock_session_ended_by_the_server_is_taken_again(server: Any,
                                                           fast_keepalive: None) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="runs/long") as lock:
        held = _session_lock(lock)
        first = held.holder.session
        _end_session(spec, first)
        _wait_until(lambda: held.reacquired >= 1, "the lock was not taken again")
        assert held.holder.session != first
        with pytest.raises(TargetBusy) as busy, RunLock(_target(spec), run_id="b"):
            pass
        assert busy.value.holder == held.holder  # the new session's row
    with RunLock(_target(spec), run_id="runs/after"):
        pass


def test_a_lock_taken_by_another_run_while_the_session_was_down_fails_the_run(
        server: Any, fast_keepalive: None) -> None:
    spec = server_spec(server)
    with pytest.raises(TargetError, match=r"was lost.*another run took the target") as err, \
            RunLock(_target(spec), run_id="runs/long") as lock:
        held = _session_lock(lock)
        with held._mutex:  # the keepalive waits: the other run gets in first
            _end_session(spec, held.holder.session)
            other = RunLock(_target(spec), run_id="runs/intruder").__enter__()
        _wait_until(lambda: held.lost() is not None, "the loss was not noticed")
    assert "runs/intruder" in str(err.value)
    other.__exit__(None, None, None)


def test_the_lock_session_gives_its_settings_back(server: Any) -> None:
    """With pooling on, the lock session goes back to the pool: as it came."""
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="a") as lock:
        held = _session_lock(lock)
        conn = held._conn
        assert conn is not None
        pg = conn.dialect.name == "postgresql"
        setting = ("SELECT current_setting('application_name')" if pg
                   else "SELECT @@SESSION.wait_timeout")
        during = conn.query(setting)[0][0]
        assert during == (session_name("lock") if pg else runlock.IDLE_LIMIT_S)
        keep = conn.close
        conn.close = lambda: None
    try:
        after = conn.query(setting)[0][0]
        assert after != during
        assert not conn.query(f"SELECT 1 FROM {conn.dialect.table_ref(LOCK_TABLE)} "
                              f"WHERE lock_key = ?",
                              (held.name.text,))
    finally:
        keep()


@pytest.fixture
def _no_threads_left() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "mb-run-lock"]


def test_released_locks_leave_no_keepalive_thread(server: Any, _no_threads_left: None) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="a"):
        assert any(t.name == "mb-run-lock" for t in threading.enumerate())
    with pytest.raises(TargetBusy), RunLock(_target(spec), run_id="b"), \
            RunLock(_target(spec), run_id="c"):
        pass


def test_holder_json_is_what_the_row_holds(server: Any) -> None:
    spec = server_spec(server)
    with RunLock(_target(spec), run_id="runs/json") as lock:
        held = _session_lock(lock)
        probe = _raw(spec)
        try:
            row = probe.query(f"SELECT holder FROM {probe.dialect.table_ref(LOCK_TABLE)} "
                              f"WHERE lock_key = ?",
                              (held.name.text,))
        finally:
            probe.close()
        assert json.loads(row[0][0])["run_id"] == "runs/json"


# ---- a server restart ends every session, the lock's too -------------------------------------
@pytest.fixture(scope="module")
def own_pg(pyodbc_module: object) -> Iterator[Any]:
    """A PostgreSQL server of our own: this test stops and starts it."""
    from fault_helpers import remember_args
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


@pytest.mark.postgres
@pytest.mark.odbc
def test_the_lock_is_taken_again_after_a_server_restart(own_pg: Any,
                                                        fast_keepalive: None) -> None:
    from fault_helpers import start_again, stop_keeping_data

    spec = server_spec(own_pg)
    with RunLock(_target(spec), run_id="runs/through-a-restart") as lock:
        held = _session_lock(lock)
        stop_keeping_data(own_pg)  # every session ends, the lock session too
        start_again(own_pg)
        _wait_until(lambda: held.reacquired >= 1, "the lock was not taken again")
        with pytest.raises(TargetBusy) as busy, RunLock(_target(spec), run_id="b"):
            pass
        assert busy.value.holder is not None
        assert busy.value.holder.run_id == "runs/through-a-restart"


def test_nothing_is_made_beside_tables_the_tool_did_not_make(
        server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a run has made its tables (a first run, or one the ownership check will
    refuse), the lock makes no table: a refused run sees the holder's session only, and
    the holder is named as soon as its tables exist."""
    monkeypatch.setattr(runlock, "RECORD_POLL_S", 0.02)
    spec = server_spec(server)
    prefix = f"lk{os.getpid()}_"
    with RunLock(_target(spec, prefix), run_id="runs/first-ever") as lock:
        held = _session_lock(lock)
        probe = _target(spec, prefix).connect()
        try:
            assert not table_exists(probe, LOCK_TABLE)
            with pytest.raises(TargetBusy) as busy, RunLock(_target(spec, prefix),
                                                            run_id="b"):
                pass
            assert busy.value.holder is None
            assert f"server session {held.holder.session}" in str(busy.value)
            prepare_target(_target(spec, prefix), default_mapping(), [], resume=False)
            _wait_until(lambda: held.recorded, "the holder was not recorded")
            assert table_exists(probe, LOCK_TABLE)
            with pytest.raises(TargetBusy) as busy, RunLock(_target(spec, prefix),
                                                            run_id="c"):
                pass
            assert busy.value.holder == held.holder
        finally:
            probe.close()
