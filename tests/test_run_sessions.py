"""The run's own database sessions, live: named after the run, counted by the server
samplers in ordinary runs, and a lock another session holds mid-run attributed
lock-contention with the holder named, which the decision tree takes to its lock-bound
leaf (PostgreSQL, MariaDB)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_bottleneck import LiveMeasure, LockHolder, bottleneck_test, path_of, walk

import datasets
from bench.runner import RunRequest, execute_run
from migrator.session import RUN_ID_ENV, run_scope
from migrator.targets.base import DEFAULT_SCHEMA, Namespace
from migrator.targets.odbc import OdbcTarget

pytestmark = [pytest.mark.odbc]

INTERVAL = 0.05
LOCK_ROUNDS = 40  # sampler rounds that must see the lock before it is released


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sessions")
    datasets.generate(out, 1000, seed=11)
    return out


def run(target: str, data: Path, out: Path, progress: Callable[..., None] | None = None,
        **options: Any) -> dict[str, Any]:
    request = RunRequest(inputs=[str(data)], target=target, batch_size=100,
                         sample_interval=INTERVAL, out=out, **options)
    outcome = execute_run(request, progress=progress)
    assert outcome.status == "complete", outcome.error
    doc: dict[str, Any] = json.loads(outcome.result_file.read_text())
    run_doc: dict[str, Any] = doc["runs"][0]
    return run_doc


def sessions_seen(run_doc: dict[str, Any]) -> list[float]:
    return [v for v in run_doc["samples"]["metrics"]["server.sessions"] if v is not None]


def assert_lock_contention(run_doc: dict[str, Any], holder_app: str) -> dict[str, Any]:
    verdict = run_doc["bottleneck"]
    assert verdict["label"] == "lock-contention", verdict
    blockers = verdict["blockers"]
    assert blockers, verdict
    first = blockers[0]
    assert first["samples"] >= LOCK_ROUNDS // 2
    assert holder_app in first["description"] or first["application"] == holder_app
    return dict(first)


@contextlib.contextmanager
def no_run_id() -> Iterator[None]:
    """Tests run outside any run: make sure no id leaks in from the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(RUN_ID_ENV, raising=False)
        yield


# ---- PostgreSQL -------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_sessions_are_named_after_the_run(postgres: Any) -> None:
    target = OdbcTarget(postgres.odbc())
    with no_run_id():
        with run_scope("t35t1d") as run_id:
            assert run_id == "t35t1d"
            conn = target.connect()
            try:
                assert conn.query("SHOW application_name") == [("migration-bench t35t1d",)]
            finally:
                conn.close()
        conn = target.connect()  # outside a run: the tool's name alone
        try:
            assert conn.query("SHOW application_name") == [("migration-bench",)]
        finally:
            conn.close()
    target.close()


@pytest.mark.postgres
def test_copy_session_carries_the_run_and_its_role(postgres: Any) -> None:
    pytest.importorskip("psycopg")
    target = OdbcTarget(postgres.odbc())
    target.set_namespace(Namespace("public"))
    with no_run_id(), run_scope("c0py1d"):
        setup = target.connect()
        setup.execute("DROP TABLE IF EXISTS session_copy")
        setup.execute("CREATE TABLE session_copy (id int)")
        setup.commit()
        setup.close()
        conn = target.connect()
        try:
            conn.insert_rows("session_copy", ["id"], [(1,), (2,)], "copy")
            # once a batch used COPY, its statements run on the COPY session
            assert conn.query("SHOW application_name") == [("migration-bench c0py1d copy",)]
            conn.commit()
        finally:
            conn.close()
        cleanup = target.connect()
        cleanup.execute("DROP TABLE session_copy")
        cleanup.commit()
        cleanup.close()
    target.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "workers"), [("values", 1), ("copy", 1), ("values", 2)])
def test_postgres_run_sessions_are_counted(postgres: Any, data: Path, tmp_path: Path,
                                           method: str, workers: int) -> None:
    if method == "copy":
        pytest.importorskip("psycopg")
    run_doc = run("odbc:" + postgres.odbc("Protocol=7.4-1"), data, tmp_path / "r",
                  insert_method=method, workers=workers)
    assert run_doc["run_id"] and run_doc["session_name"] == f"migration-bench {run_doc['run_id']}"
    seen = sessions_seen(run_doc)
    assert max(seen) >= 1, seen  # the run's sessions (workers' too) carry its name
    assert run_doc["samples"]["info"]["postgresql"]["dialect"] == "postgresql"


@pytest.mark.postgres
def test_postgres_held_lock_is_lock_contention_naming_the_holder(
        postgres: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg = pytest.importorskip("psycopg")
    from diagnostics.postgresql import PostgresSampler

    def take() -> Any:
        conn = psycopg.connect(postgres.psycopg_dsn(), application_name="nightly-report")
        # held until rollback; the run's tables are in the tool's schema
        conn.execute(f'LOCK TABLE "{DEFAULT_SCHEMA}"."orders" IN ACCESS EXCLUSIVE MODE')
        return conn

    def release(conn: Any) -> None:
        conn.rollback()
        conn.close()

    holder = LockHolder(take, release, LOCK_ROUNDS)
    monkeypatch.setattr(PostgresSampler, "_find_blockers",
                        holder.counting(PostgresSampler._find_blockers))
    # through `bench diagnose pooling`'s bottleneck test, on to the decision tree
    measure = LiveMeasure(data, "odbc:" + postgres.odbc("Protocol=7.4-1"), tmp_path,
                          progress=holder, sample_interval=INTERVAL)
    result = bottleneck_test(measure)
    run_doc = measure.last
    assert holder.seen.is_set(), f"the sampler looked for the holder {holder.rounds} times"
    blocker = assert_lock_contention(run_doc, "nightly-report")
    assert blocker["id_label"] == "pid" and int(blocker["session"]) > 0
    assert blocker["object"] == f"table {DEFAULT_SCHEMA}.orders"
    assert blocker["held_mode"] == "AccessExclusiveLock"
    assert blocker["query_start"] and "LOCK TABLE" in blocker["query"]
    assert f"pid {blocker['session']} (application 'nightly-report'" in blocker["description"]
    waits = run_doc["samples"]["metrics"]["server.wait.lock.sessions"]
    assert max(v for v in waits if v is not None) >= 1
    assert_lock_bound(result)


def assert_lock_bound(result: Any) -> None:
    """The diagnosis goes on from the held lock to the lock-bound leaf and says so."""
    assert result.facts["bottleneck.label"] == "lock-contention"
    decision = walk(result)
    assert path_of(decision)[-2:] == ["saturation", "lock_bound"], decision.lines()
    assert decision.path[-2].facts["bottleneck.label"] == "lock-contention"
    assert "lock" in decision.verdict
    # the advice names the session that held the lock, and the measured configuration
    assert "Sessions wait on locks (blocked by " in decision.recommendation
    assert str(result.facts["bottleneck.blocker"]).strip(" ()").removeprefix("blocked by ") \
        in decision.recommendation
    assert decision.recommendation.startswith("Use ")


# ---- MariaDB ----------------------------------------------------------------------------------
DETACH = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)
"""
HOLD_TABLE_LOCK = """
import sys, pyodbc
conn = pyodbc.connect(sys.stdin.readline().strip(), autocommit=True)
conn.cursor().execute("LOCK TABLES `orders` WRITE")
print("locked", flush=True)
sys.stdin.readline()
conn.cursor().execute("UNLOCK TABLES")
conn.close()
"""


@pytest.mark.mariadb
def test_mariadb_sessions_are_named_and_counted(mariadb: Any, data: Path,
                                                tmp_path: Path) -> None:
    target = OdbcTarget(mariadb.odbc())
    with no_run_id(), run_scope("m4r1a"):
        conn = target.connect()
        try:
            assert conn.query("SELECT @migration_bench_run") == [("migration-bench m4r1a",)]
        finally:
            conn.close()
    run_doc = run("odbc:" + mariadb.odbc(), data, tmp_path / "r", workers=2)
    seen = sessions_seen(run_doc)
    assert max(seen) >= 1, seen
    info = run_doc["samples"]["info"]["mysql"]
    assert info["session_match"] == "client TCP ports of the run's processes"


@pytest.mark.mariadb
def test_mariadb_table_lock_is_lock_contention_naming_the_holder(
        mariadb: Any, pyodbc_module: Any, data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnostics.mysql import MysqlSampler

    pyodbc = pyodbc_module
    admin = pyodbc.connect(mariadb.odbc(), autocommit=True)
    try:  # metadata-lock holders are visible only through this plugin (shipped with MariaDB)
        admin.cursor().execute("INSTALL SONAME 'metadata_lock_info'")
    except pyodbc.Error as exc:
        if "already" not in str(exc).lower():
            pytest.skip(f"metadata_lock_info plugin not available: {exc}")
    admin.close()

    def take() -> Any:
        # Not a descendant of this process: the sampler tells MariaDB sessions apart by the
        # processes that own their sockets, and this test process runs the migration.
        launcher = subprocess.Popen([sys.executable, "-c", DETACH, HOLD_TABLE_LOCK],
                                    text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert launcher.stdin is not None and launcher.stdout is not None
        launcher.wait(timeout=30)  # (the holder it started lives on, adopted by init)
        launcher.stdin.write(mariadb.odbc() + "\n")
        launcher.stdin.flush()
        assert launcher.stdout.readline().strip() == "locked"
        return launcher

    def release(launcher: Any) -> None:
        launcher.stdin.write("release\n")
        launcher.stdin.flush()
        assert launcher.stdout.read() == ""  # EOF: the holder unlocked and exited
        launcher.stdin.close()
        launcher.stdout.close()

    holder = LockHolder(take, release, LOCK_ROUNDS)
    monkeypatch.setattr(MysqlSampler, "_find_blockers",
                        holder.counting(MysqlSampler._find_blockers))
    measure = LiveMeasure(data, "odbc:" + mariadb.odbc(), tmp_path, progress=holder,
                          sample_interval=INTERVAL)
    result = bottleneck_test(measure)
    run_doc = measure.last
    assert holder.seen.is_set(), f"the sampler looked for the holder {holder.rounds} times"
    verdict = run_doc["bottleneck"]
    assert verdict["label"] == "lock-contention", verdict
    blocker = verdict["blockers"][0]
    assert blocker["id_label"] == "thread" and blocker["object"].endswith(".orders")
    assert blocker["held_mode"] == "MDL_SHARED_NO_READ_WRITE"
    assert blocker["user"] == mariadb.user and blocker["samples"] >= LOCK_ROUNDS // 2
    assert_lock_bound(result)
