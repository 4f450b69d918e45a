"""PostgreSQL sampler against the session's test server, checked against pg_stat_* read
directly; version-specific statements checked without a server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from diagnostics.host import find_server_process
from diagnostics.postgresql import (
    PostgresSampler,
    activity_sql,
    blockers_sql,
    queries_for,
    wait_category,
)
from diagnostics.registry import sampling_session

APP = "migration-bench-test"


# --------------------------------------------------------------------------- no server


@pytest.mark.parametrize(
    ("version", "wal", "wal_io", "checkpointer", "io"),
    [
        (130012, False, False, "pg_stat_bgwriter", False),
        (140009, True, False, "pg_stat_bgwriter", False),
        (150004, True, False, "pg_stat_bgwriter", False),
        (160002, True, False, "pg_stat_bgwriter", True),
        (170000, True, False, "pg_stat_checkpointer", True),
        (180000, True, True, "pg_stat_checkpointer", True),
    ],
)
def test_statements_follow_the_server_version(
    version: int, wal: bool, wal_io: bool, checkpointer: str, io: bool
) -> None:
    q = queries_for(version)
    assert (q.wal is not None) == wal
    assert (q.wal_io is not None) == wal_io
    assert checkpointer in q.checkpointer
    assert (q.io is not None) == io
    if version >= 180000:
        assert q.wal is not None and "wal_sync" not in q.wal  # moved to pg_stat_io in 18
    elif wal:
        assert q.wal is not None and "wal_sync_time" in q.wal


@pytest.mark.parametrize(
    ("event_type", "event", "state", "category"),
    [
        ("IO", "WALSync", "active", "log_io"),
        ("IO", "WALWrite", "active", "log_io"),
        ("LWLock", "WALWrite", "active", "log_io"),
        ("IO", "DataFileRead", "active", "data_io"),
        ("IO", "DataFileExtend", "active", "data_io"),
        ("Lock", "transactionid", "active", "lock"),
        ("LWLock", "BufferContent", "active", "latch"),
        ("", "", "active", "cpu"),
        ("Client", "ClientRead", "idle in transaction", "client"),
        ("Client", "ClientRead", "idle", None),
    ],
)
def test_wait_event_categories(
    event_type: str, event: str, state: str, category: str | None
) -> None:
    assert wait_category(event_type, event, state) == category


def test_activity_query_quotes_the_program_name() -> None:
    assert "application_name = 'o''brien'" in activity_sql("o'brien")
    assert "application_name" not in activity_sql(None)


def test_activity_query_matches_the_run_and_its_roles_only() -> None:
    sql = activity_sql("migration-bench ab12")
    assert "application_name = 'migration-bench ab12'" in sql
    # "… ab12 copy" is the run's; "… ab123" (another run) is not: no LIKE, a prefix + space
    assert "left(application_name, 21) = 'migration-bench ab12 '" in sql
    assert "pid <> pg_backend_pid()" in sql


def test_blockers_query_asks_only_about_the_waiting_backends() -> None:
    sql = blockers_sql([101, 202])
    assert "pg_blocking_pids(w.pid)" in sql and "w.pid IN (101, 202)" in sql
    assert "NOT w.granted" in sql and "regclass" in sql


# --------------------------------------------------------------------------- live

psycopg = pytest.importorskip("psycopg")


def connector(server: Any, app: str = "migration-bench-sampler") -> Callable[[], Any]:
    return lambda: psycopg.connect(server.psycopg_dsn(), application_name=app)


def direct(server: Any, sql: str) -> Any:
    with psycopg.connect(server.psycopg_dsn(), autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def sample_until(sampler: PostgresSampler, done: Callable[[], bool], attempts: int = 100) -> None:
    """Sample until ``done`` (statistics reach pg_stat_* asynchronously)."""
    for _ in range(attempts):
        sampler.sample()
        if done():
            return
        time.sleep(0.1)
    raise AssertionError("statistics never showed the load")


@pytest.mark.postgres
def test_known_insert_load_shows_in_tup_inserted_and_wal(postgres: Any) -> None:
    rows = 5_000
    with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS sampler_load")
        setup.execute("CREATE TABLE sampler_load (id int, payload text)")
    sampler = PostgresSampler(connector(postgres), program_name=APP)
    sampler.open()
    try:
        sampler.sample()
        base_inserted = sampler.raw["db.tup_inserted"]
        base_wal = sampler.raw["wal.wal_bytes"]
        with psycopg.connect(postgres.psycopg_dsn(), application_name=APP) as worker:
            with worker.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sampler_load VALUES (%s, %s)",
                    [(i, "x" * 50) for i in range(rows)],
                )
            worker.commit()
        sample_until(sampler, lambda: sampler.raw["db.tup_inserted"] - base_inserted >= rows)
        got = sampler.sample()
        # the sampler's cumulative reading equals pg_stat_database queried directly
        assert sampler.raw["db.tup_inserted"] == direct(
            postgres,
            "SELECT tup_inserted FROM pg_stat_database WHERE datname = current_database()",
        )
        wal_now = direct(postgres, "SELECT wal_bytes FROM pg_stat_wal")
        assert base_wal + rows * 50 <= sampler.raw["wal.wal_bytes"] <= wal_now
        assert got["server.rows_inserted_per_s"] is not None
        assert got["server.log.bytes_per_s"] is not None and got["server.log.bytes_per_s"] >= 0
        info = sampler.info()
        assert info["server_version"] and info["data_directory"]
    finally:
        sampler.close()
        with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as cleanup:
            cleanup.execute("DROP TABLE IF EXISTS sampler_load")


@pytest.mark.postgres
def test_lock_wait_of_our_backend_is_counted(postgres: Any) -> None:
    with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS sampler_lock")
        setup.execute("CREATE TABLE sampler_lock (id int)")
    holder = psycopg.connect(postgres.psycopg_dsn(), application_name="someone-else")
    holder.execute("LOCK TABLE sampler_lock IN ACCESS EXCLUSIVE MODE")
    blocked = psycopg.connect(postgres.psycopg_dsn(), application_name=APP, autocommit=True)
    worker = threading.Thread(target=lambda: blocked.execute("INSERT INTO sampler_lock VALUES (1)"))
    worker.start()
    sampler = PostgresSampler(connector(postgres), program_name=APP)
    sampler.open()
    try:
        for _ in range(200):
            got = sampler.sample()
            if got.get("server.wait.lock.sessions"):
                break
            time.sleep(0.05)
        assert got["server.wait.lock.sessions"] == 1
        assert got["pg.wait.Lock:relation.sessions"] == 1
        assert got["server.sessions"] == 1  # the holder is another application
    finally:
        holder.rollback()
        worker.join(timeout=30)
        holder.close()
        blocked.close()
        sampler.close()
        with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as cleanup:
            cleanup.execute("DROP TABLE IF EXISTS sampler_lock")


@pytest.mark.postgres
def test_session_finds_the_local_server_process_and_its_disk(postgres: Any) -> None:
    assert postgres.proc is not None
    found = find_server_process(port=postgres.port)
    assert found is not None and found.pid == postgres.proc.pid
    session = sampling_session("postgresql", connector(postgres), interval=0.05, program_name=APP)
    with session, psycopg.connect(postgres.psycopg_dsn(), application_name=APP) as worker:
        worker.execute("SELECT count(*) FROM generate_series(1, 200000)").fetchone()
    series = session.series
    assert series is not None
    assert series.warnings == ()
    assert series.info["host"]["dbserver_pid"] == postgres.proc.pid
    assert "db_device" in series.info["host"]
    assert series.info["postgresql"]["dialect"] == "postgresql"
    assert series.values("host.dbserver.cpu_pct")
    assert series.values("server.commits_per_s")
    assert series.overhead is not None and series.overhead.rounds == len(series.t)
