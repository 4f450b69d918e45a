"""Session names and the run id (migrator.session), the keywords that carry them per driver,
misspelled connection-string keywords, and PostgreSQL's version as it writes it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from migrator.connstr import parse_connection_string
from migrator.errors import MigratorError
from migrator.odbckeys import misspelled_keywords, nearest_keyword
from migrator.session import (
    RUN_ID_ENV,
    RunIdError,
    is_run_session,
    run_prefix,
    run_scope,
    session_name,
)
from migrator.targets.odbc import OdbcTarget, named_connection_string, session_keywords
from migrator.targets.postgresql import pg_version


@pytest.fixture(autouse=True)
def _no_inherited_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)


# ---- run id and names ------------------------------------------------------------------------
def test_names_outside_and_inside_a_run() -> None:
    assert session_name() == "migration-bench" and run_prefix() == "migration-bench"
    with run_scope("ab12cd34") as run_id:
        assert run_id == "ab12cd34" and os.environ[RUN_ID_ENV] == "ab12cd34"
        assert session_name() == "migration-bench ab12cd34"
        assert session_name("copy") == "migration-bench ab12cd34 copy"
    assert RUN_ID_ENV not in os.environ  # restored
    assert session_name("sampler", run_id="x1") == "migration-bench x1 sampler"


def test_a_new_id_per_run_unless_inherited() -> None:
    # a run inside a process that already has one keeps it
    with run_scope() as first, run_scope() as nested:
        assert nested == first
    with run_scope() as second:
        assert second != first and len(second) == 8


def test_child_processes_inherit_the_run() -> None:
    with run_scope("inh3rit"):
        out = subprocess.run([sys.executable, "-c", "from migrator.session import "
                              "session_name; print(session_name())"], capture_output=True,
                             text=True, check=True, env={**os.environ,
                                                         "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "migration-bench inh3rit"


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "quo'te", "x" * 33])
def test_run_ids_that_cannot_name_a_session_are_refused(bad: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RunIdError, match="letters, digits"), run_scope(bad):
        pass
    monkeypatch.setenv(RUN_ID_ENV, bad)
    with pytest.raises(MigratorError, match=RUN_ID_ENV):
        session_name()


def test_which_sessions_belong_to_a_run() -> None:
    prefix = "migration-bench ab12"
    assert is_run_session("migration-bench ab12", prefix)
    assert is_run_session("migration-bench ab12 copy", prefix)
    assert not is_run_session("migration-bench ab123", prefix)  # another run
    assert not is_run_session("migration-bench", prefix)


# ---- the keywords that carry the name --------------------------------------------------------
def test_psqlodbc_gets_application_name_after_the_users_own_pqopt() -> None:
    text = "Driver={PostgreSQL Unicode};Server=h;pqopt={connect_timeout=5}"
    named = parse_connection_string(named_connection_string(text, "psqlodbc", "migration-bench a1"))
    assert named["pqopt"] == "connect_timeout=5 application_name='migration-bench a1'"
    assert named["Server"] == "h"


def test_sql_server_app_replaces_the_users() -> None:
    text = "Driver={ODBC Driver 18 for SQL Server};Server=.;APP=MyTool;Database=mig"
    named = named_connection_string(text, "mssql", "migration-bench a1")
    params = parse_connection_string(named)
    assert params["APP"] == "migration-bench a1"
    assert [k.upper() for k, _ in params.pairs].count("APP") == 1  # (ODBC reads the first)


def test_mariadb_sets_a_session_variable_unless_the_user_has_an_initstmt() -> None:
    params = parse_connection_string("Driver={MariaDB Unicode};Server=h")
    assert session_keywords("mariadb", "migration-bench a1", params) == {
        "InitStmt": "SET @migration_bench_run='migration-bench a1'"}
    mine = parse_connection_string("Driver={MariaDB Unicode};INITSTMT={SET NAMES utf8mb4}")
    assert session_keywords("mariadb", "migration-bench a1", mine) == {}


def test_drivers_without_a_name_keyword_are_left_alone() -> None:
    text = "Driver={SQLite3};Database=/tmp/x.db"
    assert named_connection_string(text, "sqlite", "migration-bench a1") == text
    assert named_connection_string(text, "unknown", "migration-bench a1") == text


# ---- misspelled keywords ---------------------------------------------------------------------
def test_nearest_keyword_names_the_documented_spelling() -> None:
    assert nearest_keyword("Sever", "psqlodbc") == "Server"
    assert nearest_keyword("databse", "mssql") == "Database"
    assert nearest_keyword("Drvier", "mariadb") == "Driver"
    assert nearest_keyword("CompletelyDifferent", "psqlodbc") is None


def test_misspelled_keywords_skip_known_ones_and_unknown_drivers() -> None:
    keys = ["Driver", "Sever", "Port", "UseServerSidePrepare", "Frobnicate"]
    assert misspelled_keywords(keys, "psqlodbc") == [("Sever", "Server")]
    assert misspelled_keywords(keys, "unknown") == []


@pytest.mark.odbc
@pytest.mark.postgres
def test_connection_error_names_the_misspelled_keyword(postgres: Any) -> None:
    target = OdbcTarget(postgres.odbc().replace("Server=", "Sever="))
    with pytest.raises(MigratorError) as err:
        target.connect()
    message = str(err.value)
    assert "\n" not in message and postgres.password not in message
    assert message.startswith("cannot connect to odbc:")
    assert "the driver ignores Sever= (did you mean Server=?)" in message


# ---- versions --------------------------------------------------------------------------------
@pytest.mark.parametrize(("num", "text"), [(150018, "15.18"), (160000, "16.0"),
                                           (100023, "10.23"), (90624, "9.6.24")])
def test_postgres_version_from_server_version_num(num: int, text: str) -> None:
    assert pg_version(num) == text


@pytest.mark.odbc
@pytest.mark.postgres
def test_target_reports_the_servers_own_version(postgres: Any) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres.psycopg_dsn()) as conn:
        version_num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    target = OdbcTarget(postgres.odbc())
    assert target.info().dbms_version == pg_version(version_num)
    target.close()


@pytest.mark.odbc
@pytest.mark.mariadb
def test_mariadb_version_without_the_distribution_suffix(mariadb: Any,
                                                         pyodbc_module: Any) -> None:
    conn = pyodbc_module.connect(mariadb.odbc())
    full = str(conn.cursor().execute("SELECT VERSION()").fetchone()[0])
    conn.close()
    target = OdbcTarget(mariadb.odbc())
    assert target.info().dbms_version == full.split("-")[0]
    target.close()
