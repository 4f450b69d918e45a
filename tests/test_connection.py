"""The connection strategy: per-batch, pooled, persistent — one setting from the flag to the
connection.

Live on SQLite, PostgreSQL and MariaDB: every strategy stores the same rows, exactly once;
the servers' own counters say how many sessions a run opened (PostgreSQL
``pg_stat_database.sessions``, MariaDB's ``Connections`` status), so ``persistent`` is seen
to open one session per worker whatever the number of batches and ``per-batch`` one per
batch; a persistent run's sessions carry the run's name.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import Source, check_exactly_once, make_source
from typer.testing import CliRunner

from bench.cli import app
from bench.runner import RunRequest, execute_run
from migrator import default_mapping, open_target
from migrator.connection import (
    ConnectionStrategy,
    ConnectionStrategyError,
    parse_connection,
    resolve_connection,
    strategy_of_pooling,
)
from migrator.session import is_run_session

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
RECORDS = 300
DATABASE = "mb_strategy"  # a database of its own: only this module's sessions are counted
STRATEGIES = list(ConnectionStrategy)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("strategy-src"), RECORDS, files=2, seed=31)


# ---- parsing -----------------------------------------------------------------------------------

def test_strategies_and_their_pooling_aliases_parse() -> None:
    assert [parse_connection(s.value) for s in STRATEGIES] == STRATEGIES
    assert parse_connection(" Persistent ") is ConnectionStrategy.PERSISTENT
    assert parse_connection("on") is ConnectionStrategy.POOLED
    assert parse_connection("OFF") is ConnectionStrategy.PER_BATCH
    assert parse_connection("on", "--pooling") is ConnectionStrategy.POOLED
    assert str(ConnectionStrategy.PER_BATCH) == "per-batch"
    assert (strategy_of_pooling("on"), strategy_of_pooling(False),
            strategy_of_pooling("maybe")) == ("pooled", "per-batch", None)


def test_a_wrong_strategy_is_one_line_listing_the_valid_values() -> None:
    with pytest.raises(ConnectionStrategyError) as info:
        parse_connection("pool")
    assert str(info.value) == ("--connection: 'pool' is not a connection strategy; use "
                               "per-batch, pooled, persistent (or on/off, as --pooling)")
    with pytest.raises(ConnectionStrategyError) as info:
        parse_connection("persistent", "--pooling")  # --pooling only knows on and off
    assert str(info.value) == ("--pooling: 'persistent' is not a connection strategy; use on "
                               "(--connection pooled) or off (--connection per-batch)")


def test_connection_and_pooling_together_must_agree() -> None:
    assert resolve_connection(None, None) is ConnectionStrategy.PER_BATCH  # bench run's default
    assert resolve_connection("persistent", None) is ConnectionStrategy.PERSISTENT
    assert resolve_connection(None, "on") is ConnectionStrategy.POOLED
    assert resolve_connection("pooled", "on") is ConnectionStrategy.POOLED
    with pytest.raises(ConnectionStrategyError) as info:
        resolve_connection("persistent", "off")
    assert str(info.value) == ("--connection persistent and --pooling off disagree "
                               "(--pooling off means --connection per-batch); give only "
                               "--connection")


def test_engine_config_and_run_request_take_a_name_or_the_enum() -> None:
    from migrator import EngineConfig

    assert EngineConfig().connection is ConnectionStrategy.PERSISTENT  # the library's default
    assert EngineConfig(connection="pooled").connection is ConnectionStrategy.POOLED  # type: ignore[arg-type]
    assert RunRequest(inputs=[]).connection is ConnectionStrategy.PER_BATCH
    with pytest.raises(ValueError, match="'sometimes' is not a connection strategy"):
        RunRequest(inputs=[], connection="sometimes")  # type: ignore[arg-type]


# ---- bench run: the flags ------------------------------------------------------------------------

def test_bench_run_conflicting_flags_are_a_usage_error(src: Source, tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "-i", str(src.dir), "--connection", "persistent",
                           "--pooling", "on", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "--connection persistent and --pooling on disagree" in res.output
    assert not (tmp_path / "r").exists()
    res = cli.invoke(app, ["run", "-i", str(src.dir), "--connection", "sometimes",
                           "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "use per-batch, pooled, persistent" in res.output


@pytest.mark.parametrize(("flags", "strategy"), [
    ([], "per-batch"), (["--pooling", "on"], "pooled"), (["--pooling", "off"], "per-batch"),
    (["--connection", "pooled", "--pooling", "on"], "pooled"),
    (["--connection", "persistent"], "persistent")])
def test_bench_run_records_the_strategy(src: Source, tmp_path: Path, flags: list[str],
                                        strategy: str) -> None:
    # (300 records in batches of 70: the last batch is not full, so no empty flush follows)
    res = cli.invoke(app, ["run", "-i", str(src.dir), *flags, "-b", "70", "--no-sample",
                           "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["connection"] == strategy and "pooling" not in summary
    doc = json.loads((tmp_path / "r" / "result.json").read_text())
    assert doc["config"]["connection"] == doc["runs"][0]["config"]["connection"] == strategy
    # per batch (pooled or not): a checkout per batch; persistent: one for the run
    batches = len(doc["runs"][0]["metrics"]["batches"]["rows"])
    assert batches == 5
    assert summary["connects"] == (1 if strategy == "persistent" else batches)


# ---- backends ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_database(postgres: Any) -> Iterator[Any]:
    psycopg = pytest.importorskip("psycopg")
    with _pg_admin(postgres, psycopg) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    try:
        yield dataclasses.replace(postgres, database=DATABASE)
    finally:
        with _pg_admin(postgres, psycopg) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _pg_admin(server: Any, psycopg: Any) -> Any:
    """An autocommit session in the ``postgres`` database: it is never one of the counted."""
    return psycopg.connect(host=server.host, port=server.port, user=server.user,
                           password=server.password, dbname="postgres", autocommit=True)


@pytest.fixture(scope="module")
def maria_database(mariadb: Any) -> Iterator[Any]:
    from migrator.targets.odbc import OdbcTarget

    admin = OdbcTarget(mariadb.odbc()).connect()
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    admin.commit()
    try:
        yield dataclasses.replace(mariadb, database=DATABASE)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.commit()
        admin.close()


def _spec(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'strategy.db'}"
    if backend == "postgres":
        return "odbc:" + request.getfixturevalue("pg_database").odbc("Protocol=7.4-1")
    return "odbc:" + request.getfixturevalue("maria_database").odbc()


def _table_contents(spec: str) -> dict[str, list[str]]:
    """Every row of the mapping's tables and of the quarantine, as the driver returns it."""
    conn = open_target(spec).connect()
    try:
        ref = conn.dialect.table_ref
        names = [t.name for t in default_mapping().tables] + ["mb_quarantine"]
        return {name: sorted(repr(row) for row in conn.query(f"SELECT * FROM {ref(name)}"))
                for name in names}
    finally:
        conn.close()


def _run(src: Source, spec: str, out: Path, strategy: ConnectionStrategy, *,
         batch_size: int = 50, workers: int = 1, run_id: str | None = None,
         method: str = "auto", progress: Callable[..., None] | None = None
         ) -> dict[str, Any]:
    outcome = execute_run(RunRequest(inputs=[str(src.dir)], target=spec, batch_size=batch_size,
                                     workers=workers, connection=strategy,
                                     insert_method=method, sample_interval=None, out=out,
                                     run_id=run_id),
                          progress=progress)
    assert outcome.status == "complete", outcome.error
    return outcome.summary()


BACKENDS = [pytest.param("sqlite"),
            pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.odbc]),
            pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_strategy_stores_the_same_rows_exactly_once(
        backend: str, src: Source, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = _spec(backend, request, tmp_path)
    contents: dict[ConnectionStrategy, dict[str, list[str]]] = {}
    for strategy in STRATEGIES:
        summary = _run(src, spec, tmp_path / strategy.value, strategy, workers=2)
        assert summary["connection"] == strategy.value
        check_exactly_once(spec, src)
        contents[strategy] = _table_contents(spec)
    first = contents[ConnectionStrategy.PER_BATCH]
    assert sum(len(rows) for rows in first.values()) > RECORDS
    for strategy in STRATEGIES[1:]:
        for name, rows in first.items():  # (every row, every column, as read back)
            other = contents[strategy][name]
            diff = sorted(set(rows) ^ set(other))[:4]
            assert other == rows, (strategy, name, diff)


# ---- sessions, counted by the server ----------------------------------------------------------

class PgSessions:
    """Sessions ever opened to the module's database: ``pg_stat_database.sessions``. A
    backend adds itself when it ends, before it leaves ``pg_stat_activity``: so the count
    is read once no session of the database is left."""

    def __init__(self, server: Any) -> None:
        import psycopg

        self.admin = _pg_admin(server, psycopg)

    def count(self) -> int:
        deadline = time.monotonic() + 30
        while self.admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                 (DATABASE,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the run's sessions did not end"
            time.sleep(0.02)
        self.admin.execute("SELECT pg_stat_clear_snapshot()")
        row = self.admin.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                                 (DATABASE,)).fetchone()
        return int(row[0])

    def names(self) -> list[tuple[int, str]]:
        """(pid, application name) of the sessions connected to the database now."""
        rows = self.admin.execute("SELECT pid, application_name FROM pg_stat_activity "
                                  "WHERE datname = %s", (DATABASE,)).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def close(self) -> None:
        self.admin.close()


class MariaSessions:
    """Connections the server accepted (the ``Connections`` status counter): the counting
    session is opened first, and nothing else uses the server while a test runs."""

    def __init__(self, server: Any) -> None:
        from migrator.targets.odbc import OdbcTarget

        self.admin = OdbcTarget(server.odbc()).connect()
        self.admin.set_autocommit(True)

    def count(self) -> int:
        rows = self.admin.query("SHOW GLOBAL STATUS LIKE 'Connections'")
        return int(rows[0][1])

    def close(self) -> None:
        self.admin.close()


@dataclasses.dataclass
class Counted:
    """A server database of this module's own, its session counter, and the insert method
    the runs use with the server sessions each writer connection opens (COPY adds a
    psycopg session to the ODBC one)."""

    spec: str
    sessions: Any
    method: str
    per_connection: int = 1


@pytest.fixture(params=[
    pytest.param(("postgres", "values"), marks=[pytest.mark.postgres, pytest.mark.odbc],
                 id="postgres-values"),
    pytest.param(("postgres", "copy"), marks=[pytest.mark.postgres, pytest.mark.odbc],
                 id="postgres-copy"),
    pytest.param(("mariadb", "values"), marks=[pytest.mark.mariadb, pytest.mark.odbc],
                 id="mariadb-values")])
def counted(request: pytest.FixtureRequest) -> Iterator[Counted]:
    backend, method = request.param
    if backend == "postgres":
        server = request.getfixturevalue("pg_database")
        found = Counted("odbc:" + server.odbc("Protocol=7.4-1"), PgSessions(server), method,
                        2 if method == "copy" else 1)
    else:
        server = request.getfixturevalue("maria_database")
        found = Counted("odbc:" + server.odbc(), MariaSessions(server), method)
    try:
        yield found
    finally:
        found.sessions.close()


def test_persistent_opens_one_session_per_worker_per_batch_one_per_batch(
        counted: Counted, src: Source, tmp_path: Path) -> None:
    """Two workers, each strategy: the sessions a run opens beyond those all runs open
    (the run lock's, the schema's, each worker's first contact, the final count) are
    the writers' — two for persistent whatever the number of batches, one per batch
    for per-batch. Pooled takes one per batch from the pool, which opens far fewer."""
    persistent, per_batch = ConnectionStrategy.PERSISTENT, ConnectionStrategy.PER_BATCH
    pooled = ConnectionStrategy.POOLED
    runs = [(persistent, 25), (persistent, 50), (per_batch, 25)]
    if counted.method != "copy":
        runs += [(per_batch, 50), (pooled, 25)]
    opened: dict[tuple[ConnectionStrategy, int], int] = {}
    summaries: dict[tuple[ConnectionStrategy, int], dict[str, Any]] = {}
    for strategy, batch_size in runs:
        before = counted.sessions.count()
        summary = _run(src, counted.spec, tmp_path / f"{strategy.value}-{batch_size}",
                       strategy, batch_size=batch_size, workers=2, method=counted.method)
        opened[(strategy, batch_size)] = counted.sessions.count() - before
        summaries[(strategy, batch_size)] = summary
        assert summary["reconciliation"]["ok"] and summary["records_read"] == RECORDS
    # persistent: the same sessions whatever the number of batches (12 or 6 of them)
    assert opened[(persistent, 25)] == opened[(persistent, 50)], opened
    for (strategy, batch_size), summary in summaries.items():
        if strategy is persistent:
            assert summary["connects"] == 2  # one per worker
            continue
        writes = summary["connects"]
        assert writes >= RECORDS // batch_size, writes  # every batch connected
        if strategy is per_batch:  # the server saw those writers' sessions beside the rest
            assert opened[(strategy, batch_size)] - opened[(persistent, batch_size)] == \
                counted.per_connection * (writes - 2), (opened, writes)
    if (pooled, 25) in opened:  # a checkout per batch, from a pool that opens far fewer
        assert summaries[(pooled, 25)]["connects"] == summaries[(per_batch, 25)]["connects"]
        assert opened[(pooled, 25)] < opened[(per_batch, 25)], opened


@pytest.mark.postgres
@pytest.mark.odbc
def test_persistent_sessions_carry_the_run_name(pg_database: Any, src: Source,
                                                tmp_path: Path) -> None:
    """Seen from pg_stat_activity while the run commits its batches (COPY, the default on
    PostgreSQL): every session in the database is the run's, and the batches are written
    by the two workers' persistent COPY sessions only."""
    sessions = PgSessions(pg_database)
    seen: list[tuple[int, str]] = []

    def progress(*_: Any, **__: Any) -> None:
        seen.extend(sessions.names())

    try:
        _run(src, "odbc:" + pg_database.odbc("Protocol=7.4-1"), tmp_path / "r",
             ConnectionStrategy.PERSISTENT, batch_size=10, workers=2, run_id="p3rs1st",
             progress=progress)
    finally:
        sessions.close()
    assert seen, "no batch was reported"
    assert all(is_run_session(name, "migration-bench p3rs1st") for _, name in seen), seen
    writers = {pid for pid, name in seen if name == "migration-bench p3rs1st copy"}
    assert 1 <= len(writers) <= 2, seen  # 30 batches, at most one session per worker
