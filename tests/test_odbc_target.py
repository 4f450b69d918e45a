"""The odbc: target without a server: lazy pyodbc, errors, method choice, helpers."""

from __future__ import annotations

import builtins
import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from migrator.connstr import parse_connection_string
from migrator.errors import TargetError
from migrator.targets import open_target
from migrator.targets.odbc import (
    MISSING_UNIXODBC,
    PYODBC_MAX_PARAMS,
    ConnectionFacts,
    OdbcTarget,
    dialect_for,
    fast_input_sizes,
    import_pyodbc,
    odbc_error_text,
)
from migrator.targets.postgresql import (
    SSP_PARAM_LIMIT,
    PostgresDialect,
    psycopg_kwargs,
    qmark_to_pyformat,
)
from migrator.targets.sqlite_odbc import SQLiteOdbcDialect

ROOT = Path(__file__).resolve().parents[1]


def test_sqlite_default_never_imports_pyodbc(tmp_path: Path) -> None:
    code = ("import sys; from migrator.targets import open_target; "
            f"t = open_target('sqlite:{tmp_path / 'x.db'}'); c = t.connect(); c.close(); "
            "import migrator.targets.odbc; "
            "assert 'pyodbc' not in sys.modules, 'pyodbc imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr


def test_missing_unixodbc_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyodbc":
            raise ImportError("libodbc.so.2: cannot open shared object file: No such file "
                              "or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pyodbc", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TargetError) as exc:
        import_pyodbc()
    assert str(exc.value) == MISSING_UNIXODBC
    assert "apt-get install unixodbc" in str(exc.value)
    assert "brew install unixodbc" in str(exc.value)
    with pytest.raises(TargetError, match=r"libodbc\.so\.2"):
        OdbcTarget("Driver={PostgreSQL Unicode};Server=h").connect()


def test_target_strings_are_checked_and_shown_redacted() -> None:
    with pytest.raises(TargetError, match="needs a connection string"):
        open_target("odbc:")
    with pytest.raises(TargetError, match="unterminated") as exc:
        open_target("odbc:Driver={x;PWD=hunter2")
    assert "hunter2" not in str(exc.value)
    t = open_target("odbc:Driver={PostgreSQL Unicode};Server=h;Uid=u;Pwd={p;w}")
    assert isinstance(t, OdbcTarget)
    assert t.display == "odbc:Driver={PostgreSQL Unicode};Server=h;Uid=u;Pwd=***"
    assert t.picklable_spec().endswith("Pwd={p;w}")


def test_unknown_dbms_lists_the_supported_dialects() -> None:
    facts = ConnectionFacts("Oracle", "19c", "liboraodbc.so", "19.1")
    with pytest.raises(TargetError, match="PostgreSQL, SQL Server, MariaDB/MySQL, SQLite"):
        dialect_for(facts, parse_connection_string("DSN=x"))


@pytest.mark.parametrize("dbms, dialect", [
    ("PostgreSQL", "postgresql"), ("Microsoft SQL Server", "mssql"), ("MariaDB", "mysql"),
    ("MySQL", "mysql"), ("SQLite", "sqlite")])
def test_dialect_comes_from_the_dbms_name(dbms: str, dialect: str) -> None:
    facts = ConnectionFacts(dbms, "1", "drv.so", "1")
    assert dialect_for(facts, parse_connection_string("DSN=x")).name == dialect


def test_fast_is_refused_for_the_sqlite_odbc_driver_with_a_reason() -> None:
    d = SQLiteOdbcDialect()
    with pytest.raises(TargetError, match="segfault"):
        d.resolve_method("fast")
    assert d.resolve_method("auto") == "values"


def test_psqlodbc_caps_follow_server_side_prepare() -> None:
    on = PostgresDialect(parse_connection_string("Driver=x"))
    off = PostgresDialect(parse_connection_string("Driver=x;UseServerSidePrepare=0"))
    assert on.param_budget() == SSP_PARAM_LIMIT == 7498
    assert off.param_budget() == PYODBC_MAX_PARAMS
    assert on.values_rows_per_statement(31, 1000) == 7498 // 31
    assert "UseServerSidePrepare=0" in on.method("fast").reason
    assert any("Protocol=7.4-1" in a for a in on.advice())
    tuned = PostgresDialect(parse_connection_string("UseServerSidePrepare=0;Protocol=7.4-1"))
    assert tuned.advice() == []


def test_psycopg_parameters_come_from_the_odbc_string() -> None:
    p = parse_connection_string("Driver={PostgreSQL Unicode};Servername=db;Port=6432;"
                                "Database=mig;Username=me;Password={a;b};SSLmode=require")
    assert psycopg_kwargs(p) == {"host": "db", "port": "6432", "dbname": "mig", "user": "me",
                                 "password": "a;b", "sslmode": "require"}


def test_qmark_to_pyformat_leaves_quoted_text_alone() -> None:
    assert qmark_to_pyformat("UPDATE t SET a = ?, b = '?%' WHERE \"c?\" = ? AND d LIKE '5%'") \
        == "UPDATE t SET a = %s, b = '?%%' WHERE \"c?\" = %s AND d LIKE '5%%'"


class _FakePyodbc:
    SQL_WVARCHAR = -9
    SQL_DECIMAL = 3
    SQL_TYPE_TIMESTAMP = 93


def test_fast_input_sizes_count_utf16_units_and_decimal_digits() -> None:
    rows = [(1, "😀😀", Decimal("12.5"), dt.datetime(2024, 1, 1), None),
            (2, "abc", Decimal("-1234.567"), None, None)]
    sizes = fast_input_sizes(rows, 5, _FakePyodbc, max_sized=4000)
    assert sizes == [None, (-9, 4, 0), (3, 7, 3), (93, 26, 6), None]
    long = [(1, "x" * 4001)]
    assert fast_input_sizes(long, 2, _FakePyodbc, max_sized=4000)[1] == (-9, 0, 0)


def test_odbc_error_text_strips_the_driver_prefixes() -> None:
    exc = Exception("08001", "[08001] [unixODBC]could not connect to server (101) "
                             "(SQLDriverConnect)")
    assert odbc_error_text(exc) == "could not connect to server (101)"
    own = Exception("The SQL contains -336 parameter markers", "HY000")
    assert odbc_error_text(own) == "The SQL contains -336 parameter markers"
