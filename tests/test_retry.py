"""The retry policy and the transient-error classifier (no server needed, except the last
tests, which read the facts real drivers report on a killed session).

The classifier table holds error messages as the drivers print them: psqlODBC, psycopg and
MariaDB Connector/ODBC ones were captured from the servers the suite starts (a killed
backend, ``pg_ctl restart``, ``KILL CONNECTION``, a lock wait, a deadlock); SQL Server ones
are the documented messages of Microsoft's ODBC driver. Each goes through the translation
the targets use (``_wrap`` for pyodbc, ``_pg_error`` for psycopg), so the table also checks
that the SQLSTATE and native code survive it.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import datasets
from bench.cli import app
from migrator import (
    EngineConfig,
    RetryExhausted,
    RetryPolicy,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
    reconcile,
)
from migrator.errors import DatabaseError, TargetError
from migrator.retry import CONFLICT, LOST, SERVER, classify, native_code
from migrator.targets.postgresql import _pg_error

pyodbc = pytest.importorskip("pyodbc", reason="pyodbc needs unixODBC")
cli = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})

# (driver error class, sqlstate, message as pyodbc prints it, dialect) → expected kind
PG_ODBC = [
    # pg_terminate_backend, then the next statement of the batch
    ("OperationalError", "08S01", "[08S01] SQLNumParams unable due to the connection lost "
     "(35) (SQLNumParams)", LOST),
    ("OperationalError", "08S01", "[08S01] FATAL:  terminating connection due to "
     "administrator command\nserver closed the connection unexpectedly\n\tThis probably "
     "means the server terminated abnormally\n\tbefore or while processing the request.\n;"
     "\nThe connection has been lost (35) (SQLExecDirectW)", LOST),
    ("Error", "57P01", "[57P01] FATAL: terminating connection due to administrator command "
     "(108) (SQLEndTran)", SERVER),
    ("OperationalError", "08S01", "[08S01] The connection is down\nFailed to send 'select "
     "1';\nThe connection is down\nFailed to send 'select 1' (26) (SQLExecDirectW)", LOST),
    # pg_ctl restart -m fast / -m immediate, then the next statement
    ("Error", "HY000", "[HY000] The connection has been lost;\nError while preparing "
     "parameters (1) (SQLExecDirectW)", LOST),
    # connecting while the server is down or restarting
    ("OperationalError", "08001", '[08001] connection to server at "127.0.0.1", port 5432 '
     "failed: Connection refused\n\tIs the server running on that host and accepting "
     "TCP/IP connections?\n (101) (SQLDriverConnect)", LOST),
    ("OperationalError", "08001", '[08001] connection to server at "127.0.0.1", port 5432 '
     "failed: FATAL:  the database system is starting up\n (101) (SQLDriverConnect)", LOST),
    ("Error", "40P01", "[40P01] ERROR: deadlock detected; Error while executing the query "
     "(1) (SQLExecDirectW)", CONFLICT),
    ("Error", "40001", "[40001] ERROR: could not serialize access due to concurrent update; "
     "(1) (SQLEndTran)", CONFLICT),
    # permanent
    ("OperationalError", "08001", '[08001] connection to server at "127.0.0.1", port 5432 '
     'failed: FATAL:  password authentication failed for user "bench"\n (101) '
     "(SQLDriverConnect)", None),
    ("ProgrammingError", "42P01", '[42P01] ERROR: relation "orders" does not exist; Error '
     "while executing the query (1) (SQLExecDirectW)", None),
    ("Error", "22001", "[22001] ERROR: value too long for type character varying(40); "
     "(1) (SQLExecDirectW)", None),
    # psqlODBC's statement-level savepoint after the backend died says nothing about the
    # connection: the session probe decides (test_a_dead_session_is_found_by_the_probe)
    ("Error", "HY000", "[HY000] internal SAVEPOINT failed (8) (SQLExecDirectW)", None),
]
MARIADB = [
    ("OperationalError", "08S01", "[08S01] [ma-3.1.15][10.11.18-MariaDB]Server has gone away "
     "(2006) (SQLPrepare)", LOST),
    ("OperationalError", "08S01", "[08S01] [ma-3.1.15]Lost connection to server during "
     "query (2013) (SQLEndTran)", LOST),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Write error: Broken pipe (32) "
     "(5014) (SQLExecDirectW)", LOST),
    ("Error", "HY000", "[HY000] [ma-3.1.15]Can't connect to server on '127.0.0.1' (115) "
     "(2002) (SQLDriverConnect)", LOST),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Connection was killed (1927) "
     "(SQLExecDirectW)", LOST),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Lock wait timeout exceeded; "
     "try restarting transaction (1205) (SQLExecDirectW)", CONFLICT),
    ("Error", "40001", "[40001] [ma-3.1.15][10.11.18-MariaDB]Deadlock found when trying to "
     "get lock; try restarting transaction (1213) (SQLExecDirectW)", CONFLICT),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Server shutdown in progress "
     "(1053) (SQLExecDirectW)", SERVER),
    # a driver fault under concurrent multi-row inserts; a fresh session does not repeat it
    ("Error", "HY001", "[HY001] [ma-3.1.15]Memory allocation error (0) (SQLExecDirectW)", LOST),
    ("Error", "HY000", "[HY000] [ma-3.1.15]Memory allocation error (0) (SQLExecute)", LOST),
    # permanent
    ("Error", "28000", "[28000] [ma-3.1.15]Access denied for user 'bench'@'localhost' "
     "(using password: YES) (1045) (SQLDriverConnect)", None),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Unknown database 'nope' "
     "(1049) (SQLDriverConnect)", None),
    ("Error", "22001", "[22001] [ma-3.1.15][10.11.18-MariaDB]Data too long for column "
     "'name' at row 1 (1406) (SQLExecDirectW)", None),
    ("Error", "HY000", "[HY000] [ma-3.1.15][10.11.18-MariaDB]Query execution was "
     "interrupted (1317) (SQLExecDirectW)", None),
]
MSSQL_PREFIX = "[Microsoft][ODBC Driver 18 for SQL Server]"
MSSQL = [
    ("Error", "40001", f"[40001] {MSSQL_PREFIX}[SQL Server]Transaction (Process ID 53) was "
     "deadlocked on lock resources with another process and has been chosen as the deadlock "
     "victim. Rerun the transaction. (1205) (SQLExecDirectW)", CONFLICT),
    ("OperationalError", "08S01", f"[08S01] {MSSQL_PREFIX}TCP Provider: Error code 0x2746 "
     "(10054) (SQLExecDirectW)", LOST),
    ("OperationalError", "08S01", f"[08S01] {MSSQL_PREFIX}Communication link failure (0) "
     "(SQLExecDirectW)", LOST),
    ("OperationalError", "HYT00", f"[HYT00] {MSSQL_PREFIX}Login timeout expired (0) "
     "(SQLDriverConnect)", LOST),
    ("Error", "HY000", f"[HY000] {MSSQL_PREFIX}[SQL Server]Database 'mig' on server 'x' is "
     "not currently available. Please retry the connection later. (40613) "
     "(SQLDriverConnect)", SERVER),
    ("Error", "HY000", f"[HY000] {MSSQL_PREFIX}[SQL Server]The service is currently busy. "
     "Retry the request after 10 seconds. (40501) (SQLExecDirectW)", SERVER),
    ("Error", "HY000", f"[HY000] {MSSQL_PREFIX}[SQL Server]The service has encountered an "
     "error processing your request. Please try again. (40197) (SQLExecDirectW)", SERVER),
    ("Error", "HY000", f"[HY000] {MSSQL_PREFIX}Shared Memory Provider: No process is on the "
     "other end of the pipe. (233) (SQLExecDirectW)", LOST),
    # permanent
    ("ProgrammingError", "42S02", f"[42S02] {MSSQL_PREFIX}[SQL Server]Invalid object name "
     "'orders'. (208) (SQLExecDirectW)", None),
    ("InterfaceError", "28000", f"[28000] {MSSQL_PREFIX}[SQL Server]Login failed for user "
     "'sa'. (18456) (SQLDriverConnect)", None),
]
CASES = [(*c, "postgresql") for c in PG_ODBC] + [(*c, "mysql") for c in MARIADB] + \
    [(*c, "mssql") for c in MSSQL]


@pytest.mark.parametrize(("cls", "state", "message", "kind", "dbms"), CASES,
                         ids=[f"{c[4]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_pyodbc_errors_are_classified_from_their_facts(cls: str, state: str, message: str,
                                                       kind: str | None, dbms: str) -> None:
    from migrator.targets.odbc import OdbcError, _wrap

    raw = getattr(pyodbc, cls)(state, message)
    err = _wrap(raw, f"{dbms}: insert into orders (values) failed", dbms)
    assert isinstance(err, OdbcError)
    assert err.sqlstate == state
    assert err.native == native_code(message)
    assert err.dbms == dbms
    assert classify(err) == kind
    assert "\n" not in str(err)  # one line, whatever the driver printed


def test_native_codes_are_read_per_dbms() -> None:
    """1205 is a deadlock on SQL Server and a lock wait timeout on MariaDB (both transient),
    but a code means nothing for another DBMS: 2006 from SQL Server is not 'gone away'."""
    assert classify(DatabaseError("x", "HY000", native=2006, dbms="mysql")) == LOST
    assert classify(DatabaseError("x", "HY000", native=2006, dbms="mssql")) is None
    assert classify(DatabaseError("x", "HY000", native=40613, dbms="mssql")) == SERVER
    assert classify(DatabaseError("x", "HY000", native=40613, dbms="mysql")) is None


PSYCOPG = [
    # pg_terminate_backend before / during COPY, -m fast, -m immediate
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
     SERVER),
    (psycopg.OperationalError("sending copy data failed: server closed the connection "
                              "unexpectedly\n\tThis probably means the server terminated "
                              "abnormally\n\tbefore or while processing the request."), LOST),
    (psycopg.OperationalError("consuming input failed: server closed the connection "
                              "unexpectedly\n\tThis probably means the server terminated "
                              "abnormally\n\tbefore or while processing the request."), LOST),
    (psycopg.OperationalError("the connection is lost"), LOST),
    (psycopg.errors.CannotConnectNow("the database system is shutting down"), SERVER),
    (psycopg.errors.CrashShutdown("terminating connection because of crash of another "
                                  "server process"), SERVER),
    (psycopg.errors.DeadlockDetected("deadlock detected"), CONFLICT),
    (psycopg.errors.SerializationFailure("could not serialize access due to concurrent "
                                         "update"), CONFLICT),
    (psycopg.errors.UndefinedTable('relation "orders" does not exist'), None),
    (psycopg.errors.InvalidTextRepresentation('invalid input syntax for type integer: "x"'),
     None),
]


@pytest.mark.parametrize(("raw", "kind"), PSYCOPG, ids=[type(e).__name__ + str(i)
                                                       for i, (e, _) in enumerate(PSYCOPG)])
def test_psycopg_errors_are_classified_from_their_facts(raw: Exception,
                                                        kind: str | None) -> None:
    err = _pg_error(raw, "postgresql: COPY into orders failed")
    assert classify(err) == kind
    assert getattr(err, "sqlstate", "") == (getattr(raw, "sqlstate", None) or "")


def test_a_broken_copy_session_is_lost_whatever_the_message() -> None:
    """psycopg says ``broken`` when the session died; the text is then irrelevant."""
    class Session:
        broken = True
        closed = True

    err = _pg_error(psycopg.OperationalError("something unforeseen"), "postgresql", Session())
    assert classify(err) == LOST


def test_a_busy_sqlite_database_is_a_conflict(tmp_path: Path) -> None:
    """A real SQLITE_BUSY (another connection holds the write lock), through the target."""
    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # (as the target opens it)
    holder.execute("CREATE TABLE t (k INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    conn = open_target(f"sqlite:{db}?busy_timeout=0").connect()
    try:
        with pytest.raises(DatabaseError) as info:
            conn.execute("INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        conn.close()
    assert info.value.native is not None and info.value.native & 0xFF == sqlite3.SQLITE_BUSY
    assert classify(info.value) == CONFLICT


# ---- the policy, on a clock the test controls ----------------------------------------------
class FakeTime:
    """A clock that only moves when the code under test sleeps (or an attempt takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


LOST_ERR = DatabaseError("postgresql: insert into orders (copy) failed: server closed the "
                         "connection unexpectedly", dbms="postgresql", connection_lost=True)


def _always_failing(policy: RetryPolicy, t: FakeTime, attempt_s: float = 0.0,
                    seed: int = 1) -> tuple[RetryExhausted, int]:
    retry = policy.start("", clock=t.clock, sleep=t.sleep, rng=random.Random(seed))
    attempts = 0
    while True:
        attempts += 1
        t.now += attempt_s  # the attempt itself takes time (a connect timing out, say)
        try:
            retry.after(LOST_ERR)
        except RetryExhausted as exc:
            return exc, attempts


@pytest.mark.parametrize("window", [0.5, 5.0, 30.0])
@pytest.mark.parametrize("attempt_s", [0.0, 0.3])
def test_the_window_bounds_the_time_spent_retrying(window: float, attempt_s: float) -> None:
    t = FakeTime()
    first_failure = t.now + attempt_s
    exc, attempts = _always_failing(RetryPolicy(window_s=window), t, attempt_s)
    # The window runs from the first failure; no attempt starts after it ends (the last
    # one may itself take attempt_s).
    assert t.now - first_failure <= window + attempt_s + 1e-9
    assert sum(t.sleeps) <= window + 1e-9
    assert attempts == len(t.sleeps) + 1
    text = str(exc)
    assert "\n" not in text
    assert "server closed the connection unexpectedly" in text
    assert f"--retry-window {window:g}" in text
    assert text.endswith("continue with --resume")
    assert isinstance(exc.__cause__, DatabaseError)


def test_delays_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    t = FakeTime()
    policy = RetryPolicy(window_s=60, first_delay_s=0.1, max_delay_s=2.0, jitter=0.5)
    _always_failing(policy, t)
    for i, d in enumerate(t.sleeps[:-1]):  # (the last one is cut to the window's end)
        base = min(2.0, 0.1 * 2 ** i)
        assert 0.5 * base - 1e-12 <= d <= 1.5 * base + 1e-12, (i, d)
    assert len(t.sleeps) > 25  # past the doubling, the cap keeps attempts coming
    # Two workers that failed together do not retry in lockstep.
    t2 = FakeTime()
    _always_failing(policy, t2, seed=2)
    assert t.sleeps[:5] != t2.sleeps[:5]


def test_a_permanent_error_is_raised_at_once_without_waiting() -> None:
    t = FakeTime()
    retry = RetryPolicy().start(clock=t.clock, sleep=t.sleep)
    permanent = DatabaseError("postgresql: ERROR: relation \"x\" does not exist", "42P01")
    with pytest.raises(DatabaseError) as info:
        retry.after(permanent)
    assert info.value is permanent
    assert t.sleeps == [] and retry.failures == 0


def test_window_zero_turns_retries_off() -> None:
    t = FakeTime()
    exc, attempts = _always_failing(RetryPolicy(window_s=0), t)
    assert attempts == 1 and t.sleeps == []
    assert "retries are off (--retry-window 0)" in str(exc)
    assert str(exc).endswith("continue with --resume")


def test_call_retries_until_success_and_cleans_up_between_attempts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = FakeTime()
    monkeypatch.setattr("migrator.retry.time", SimpleNamespace(monotonic=t.clock,
                                                               sleep=t.sleep))
    calls: list[str] = []

    def flaky() -> str:
        calls.append("try")
        if len([c for c in calls if c == "try"]) < 4:
            raise LOST_ERR
        return "ok"

    assert RetryPolicy(window_s=10).call(flaky, cleanup=lambda: calls.append("clean")) == "ok"
    assert calls == ["try", "clean"] * 3 + ["try"]
    assert len(t.sleeps) == 3


def test_the_policy_refuses_nonsense() -> None:
    for bad in ({"window_s": -1}, {"window_s": float("nan")}, {"first_delay_s": 0},
                {"first_delay_s": 3, "max_delay_s": 2}, {"jitter": 1}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_the_engine_config_carries_the_policy_to_workers() -> None:
    import pickle

    config = EngineConfig(retry=RetryPolicy(window_s=7))
    assert pickle.loads(pickle.dumps(config)).retry.window_s == 7
    assert EngineConfig().retry.window_s == 30


# ---- the engine: a real busy SQLite, retried inside one batch ------------------------------
def test_a_locked_sqlite_database_is_retried_and_the_run_is_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the write lock when the batch commits; the retry waits for it.
    The lock is released when the writer drops its connection after the first failure, so
    the test does not depend on timing."""
    from migrator.writer import BatchWriter

    m = datasets.generate(tmp_path / "d", 200, seed=3, invalid_rate=0.05)
    db = tmp_path / "m.db"
    spec = f"sqlite:{db}?busy_timeout=0"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    drops: list[int] = []
    real_drop = BatchWriter._drop_connection
    real_once = BatchWriter._write_once

    def write_once(self: BatchWriter, batch: Any) -> Any:
        if not drops and len(self.stats.batches) == 2:  # the third batch meets the lock
            holder.execute("BEGIN EXCLUSIVE")
            drops.append(0)
        return real_once(self, batch)

    def drop(self: BatchWriter) -> None:
        real_drop(self)
        drops.append(1)
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    monkeypatch.setattr(BatchWriter, "_write_once", write_once)
    monkeypatch.setattr(BatchWriter, "_drop_connection", drop)
    try:
        stats = migrate(expand_inputs([str(tmp_path / "d")]), open_target(spec),
                        default_mapping(), EngineConfig(batch_size=30))
    finally:
        holder.close()
    assert drops == [0, 1]  # the lock was met once, and the retry went through
    assert stats.retries == 1 and stats.retry_wait_s > 0
    rec = reconcile(open_target(spec), default_mapping())
    assert rec.ok, rec.problems
    assert rec.records_read == 200 and rec.quarantined == len(m.invalid)


def test_a_failed_attempt_does_not_quarantine_a_record_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with duplicate keys goes in record by record, each duplicate rolled back to
    its savepoint and moved to the rejects. The session fails transiently half-way through
    (after the first duplicate was moved); the retry starts from the batch as it was, so
    every duplicate is quarantined once and the counts reconcile."""
    from migrator.targets.sqlite import SQLiteConnection

    m = datasets.generate(tmp_path / "d", 40, seed=5)
    src = tmp_path / "d" / m.files[0].name
    (tmp_path / "d" / "again.xml").write_bytes(src.read_bytes())  # every key twice
    spec = f"sqlite:{tmp_path / 'dup.db'}"
    real = SQLiteConnection.rollback_to
    seen: list[str] = []

    def rollback_to(self: SQLiteConnection, name: str) -> None:
        real(self, name)
        seen.append(name)
        if len(seen) == 2:  # the second duplicate of the run: the first one is moved
            raise DatabaseError("sqlite: rollback to savepoint failed: database is locked",
                                native=5, dbms="sqlite")

    monkeypatch.setattr(SQLiteConnection, "rollback_to", rollback_to)
    stats = migrate(expand_inputs([str(tmp_path / "d")]), open_target(spec),
                    default_mapping(), EngineConfig(batch_size=25))
    assert len(seen) > 2 and stats.retries == 1
    assert stats.inserted == 40 and stats.quarantined == 40
    rec = reconcile(open_target(spec), default_mapping())
    assert rec.ok, rec.problems
    assert rec.quarantine_rows == 40 and rec.inserted == 40


# ---- live: what the drivers report on a killed session -------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("protocol", ["7.4-1", "7.4-2"])
@pytest.mark.parametrize("method", ["values", "executemany"])
def test_a_dead_session_is_found_by_the_probe(postgres: Any, protocol: str,
                                              method: str) -> None:
    """psqlODBC reports a statement on a terminated backend as anything from 08S01 to
    HY000 "internal SAVEPOINT failed"; whatever it says, the error is marked lost."""
    from migrator.targets.base import Namespace
    from migrator.targets.odbc import OdbcTarget

    target = OdbcTarget(postgres.odbc(f"Protocol={protocol}"))
    target.set_namespace(Namespace(schema="pg_temp"))  # (the session's own temporary schema)
    conn = target.connect()
    try:
        conn.execute("CREATE TEMPORARY TABLE probe_t (k INTEGER PRIMARY KEY)")
        conn.insert_rows("probe_t", ["k"], [(1,)], method)
        with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (int(conn.session_id()),))
        with pytest.raises(TargetError) as info:
            conn.insert_rows("probe_t", ["k"], [(2,), (3,)], method)
    finally:
        conn.discard()
    assert getattr(info.value, "connection_lost", False), str(info.value)
    assert classify(info.value) == LOST


@pytest.mark.postgres
def test_the_probe_leaves_a_live_session_alone(postgres: Any) -> None:
    """A permanent error on a live session stays permanent (the probe's SELECT 1 works)."""
    from migrator.targets.odbc import OdbcTarget

    conn = OdbcTarget(postgres.odbc("Protocol=7.4-1")).connect()
    try:
        with pytest.raises(TargetError) as info:
            conn.execute("SELECT * FROM no_such_table_here")
        conn.rollback()
        assert conn.query("SELECT 1") == [(1,)]
    finally:
        conn.close()
    assert not getattr(info.value, "connection_lost", False)
    assert classify(info.value) is None


@pytest.mark.mariadb
def test_mariadb_kill_connection_is_lost(mariadb: Any) -> None:
    from migrator.targets.odbc import OdbcTarget

    target = OdbcTarget(mariadb.odbc())
    conn = target.connect()
    admin = OdbcTarget(mariadb.odbc()).connect()
    try:
        conn.execute("CREATE TEMPORARY TABLE probe_t (k INTEGER PRIMARY KEY)")
        admin.execute(f"KILL CONNECTION {int(conn.session_id())}")
        with pytest.raises(TargetError) as info:
            conn.insert_rows("probe_t", ["k"], [(2,), (3,)], "values")
    finally:
        conn.discard()
        admin.close()
    assert getattr(info.value, "dbms", "") == "mysql"
    assert getattr(info.value, "native", None) in (2006, 2013, 1927)
    assert classify(info.value) == LOST


# ---- the command line ------------------------------------------------------------------------
def test_bench_run_hands_the_window_to_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--retry-window 0``: the locked database is not waited for; the run stops with one
    line naming the cause and the way on."""
    from migrator.writer import BatchWriter

    datasets.generate(tmp_path / "d", 200, seed=3)
    db = tmp_path / "m.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    real_once = BatchWriter._write_once

    def write_once(self: BatchWriter, batch: Any) -> Any:
        if len(self.stats.batches) == 2 and not holder.in_transaction:
            holder.execute("BEGIN EXCLUSIVE")
        return real_once(self, batch)

    monkeypatch.setattr(BatchWriter, "_write_once", write_once)
    try:
        res = cli.invoke(app, [
            "run", "-i", str(tmp_path / "d"), "-t", f"sqlite:{db}?busy_timeout=0",
            "--batch-size", "30", "--no-sample", "--out", str(tmp_path / "r"),
            "--retry-window", "0"])
    finally:
        holder.close()
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "database is locked" in errors[0]
    assert "retries are off (--retry-window 0)" in errors[0]
    assert errors[0].endswith("continue with --resume")
    assert reconcile(open_target(f"sqlite:{db}"), default_mapping()).records_read == 60


@pytest.mark.parametrize("command", ["run", "sweep", "baseline", "calibrate"])
def test_every_command_that_runs_migrations_records_its_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    datasets.generate(tmp_path / "d", 60, seed=3)
    out = tmp_path / "out"
    args = {"run": ["run", "-i", str(tmp_path / "d"), "--no-sample"],
            "sweep": ["sweep", "-b", "20,40", "-i", str(tmp_path / "d"), "-r", "1",
                      "--warmup", "0"],
            "baseline": ["baseline", "-i", str(tmp_path / "d"), "-r", "2", "--warmup", "0"],
            "calibrate": ["calibrate", "-i", str(tmp_path / "d"), "--duration", "1",
                          "--warmup", "0"]}
    res = cli.invoke(app, [*args[command], "--retry-window", "7.5", "--out", str(out),
                           "--json"])
    assert res.exit_code == 0, res.output
    runs = json.loads((out / "result.json").read_text())["runs"]
    assert runs and all(r["config"]["retry_window"] == 7.5 for r in runs)


@pytest.mark.parametrize("command", ["run", "sweep", "baseline", "calibrate"])
def test_a_negative_window_is_a_usage_error(tmp_path: Path, command: str) -> None:
    res = cli.invoke(app, [command, "-i", str(tmp_path), "--retry-window", "-1"])
    assert res.exit_code == 2, res.output
    assert "--retry-window" in res.output
