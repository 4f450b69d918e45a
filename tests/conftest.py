"""Shared fixtures.

Database servers (``postgres``, ``mariadb``): started once per test session by
``tests/servers.py`` (initdb/pg_ctl-style throwaway cluster, mariadb-install-db datadir),
each on a free port of 127.0.0.1, stopped and removed at the end. A test that needs one
takes the fixture and carries the matching marker (``@pytest.mark.postgres``)::

    @pytest.mark.postgres
    def test_copy(postgres):
        target = OdbcTarget(postgres.odbc("Protocol=7.4-1"))

Missing binaries or ODBC drivers skip those tests with the reason — except under CI
(``CI=true``) or ``BENCH_REQUIRE_SERVERS=1``, where they fail: the test command installs
everything, so a missing server is a broken setup, not an optional feature. A server that
is installed but does not start always fails, with its log.

ODBC: before any test connects, the session points unixODBC at a test-local ``ODBCSYSINI``
(a copy of the system's driver entries, pooling off, driver logs off), so results do not
depend on /etc/odbcinst.ini and psqlODBC's ``CommLog=1`` does not litter /tmp.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    Server,
    ServerStartError,
    ServerUnavailable,
    start_mariadb,
    start_postgres,
)


def _servers_required() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or \
        os.environ.get("BENCH_REQUIRE_SERVERS") == "1"


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI) for a missing server, driver or library."""
    if _servers_required():
        pytest.fail(f"{reason} (required under CI / BENCH_REQUIRE_SERVERS=1: run "
                    f"scripts/install-deps)", pytrace=False)
    pytest.skip(reason)


# ---- ODBC environment ----------------------------------------------------------------------
_ODBC_DIR: Path | None = None
if shutil.which("odbcinst"):
    from migrator.odbcini import apply_environ, build_odbcsysini

    _ODBC_DIR = Path(tempfile.mkdtemp(prefix="mb-test-odbc-"))
    build_odbcsysini(_ODBC_DIR, pooling=False, quiet_logs=True)
    apply_environ(_ODBC_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ODBC_DIR is not None:
        shutil.rmtree(_ODBC_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def pyodbc_module() -> object:
    """pyodbc, or skip/fail when unixODBC (libodbc.so.2) or pyodbc is missing."""
    try:
        import pyodbc
    except ImportError as exc:
        unavailable(f"pyodbc cannot be imported ({exc}); apt-get install unixodbc")
    return pyodbc


# ---- database servers ----------------------------------------------------------------------
def _start(kind: str) -> Server:
    try:
        return start_postgres() if kind == "postgres" else start_mariadb()
    except ServerUnavailable as exc:
        unavailable(str(exc))
    except ServerStartError as exc:
        pytest.fail(f"the {kind} test server did not start: {exc}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres(pyodbc_module: object) -> Iterator[Server]:
    """A throwaway PostgreSQL server: ``.odbc(extra)``, ``.psycopg_dsn()``, host/port/…"""
    server = _start("postgres")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb(pyodbc_module: object) -> Iterator[Server]:
    """A throwaway MariaDB server: ``.odbc(extra)``, host/port/user/password/database."""
    server = _start("mariadb")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqlite_odbc(tmp_path: Path, pyodbc_module: object) -> str:
    """An ODBC connection string for a fresh SQLite file through the SQLite ODBC driver."""
    from servers import odbc_driver

    try:
        driver = odbc_driver("SQLite3")
    except ServerUnavailable as exc:
        unavailable(str(exc))
    return f"Driver={{{driver}}};Database={tmp_path / 'odbc.db'}"
