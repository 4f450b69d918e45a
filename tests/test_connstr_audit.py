"""Connection-string audit over real-world strings: what each driver reads and what it drops."""

from __future__ import annotations

import pytest

from diagnostics.connstr_audit import (
    ADONET_ONLY,
    audit_connection_string,
    classify_keyword,
    driver_family,
)
from diagnostics.pooling import suggested_ini

# (connection string, driver family, keywords flagged ADO.NET-only, other ignored keywords)
REAL_WORLD = [
    # SQL Server, Microsoft ODBC Driver 18 (SQL Server Express, with ADO.NET pool keywords)
    ("Driver={ODBC Driver 18 for SQL Server};Server=.\\SQLEXPRESS;Database=mig;"
     "Trusted_Connection=yes;TrustServerCertificate=yes;Pooling=true;Max Pool Size=100;"
     "Min Pool Size=5;Connection Lifetime=300;Load Balance Timeout=30",
     "mssql", {"Pooling", "Max Pool Size", "Min Pool Size", "Connection Lifetime",
               "Load Balance Timeout"}, set()),
    ("DRIVER={ODBC Driver 17 for SQL Server};SERVER=tcp:db.example.com,1433;DATABASE=mig;"
     "UID=app;PWD={p;ss}}w};Encrypt=yes;MARS_Connection=yes;ApplicationIntent=ReadWrite",
     "mssql", set(), set()),
    # FreeTDS
    ("Driver={FreeTDS};Server=10.0.0.5;Port=1433;Database=mig;UID=sa;PWD=x;"
     "TDS_Version=7.4;ClientCharset=UTF-8", "freetds", set(), set()),
    # psqlODBC, with the settings the README's Targets section names
    ("Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=mig;Uid=me;Pwd=s;"
     "Protocol=7.4-1;UseServerSidePrepare=0;BatchSize=1000;sslmode=prefer",
     "psqlodbc", set(), set()),
    # MariaDB Connector/ODBC
    ("Driver={MariaDB Unicode};Server=localhost;Port=3306;Database=mig;User=me;"
     "Password=s;Option=3;ConnectTimeout=5", "mariadb", set(), set()),
    # MySQL Connector/ODBC
    ("Driver={MySQL ODBC 8.0 Unicode Driver};Server=localhost;Database=mig;UID=me;PWD=s;"
     "SSLMODE=REQUIRED;NO_SSPS=1", "mysql", set(), set()),
    # DSN-only: the family comes from the DSN's driver (looked up by the caller)
    ("DSN=prod;UID=me;PWD=s", "psqlodbc", set(), set()),
    # SQLite ODBC
    ("Driver={SQLite3};Database=/tmp/x.db;Timeout=2000;SyncPragma=NORMAL", "sqlite",
     set(), set()),
    # an ADO.NET (SqlClient) string pasted by mistake into pyodbc
    ("Driver={ODBC Driver 18 for SQL Server};Data Source=db01;Initial Catalog=mig;"
     "User ID=app;Password=s;Integrated Security=SSPI;MultipleActiveResultSets=True;"
     "Pooling=false;Connect Timeout=30;Enlist=false",
     "mssql", {"Pooling", "Enlist"},
     {"Data Source", "Initial Catalog", "User ID", "Password", "Integrated Security",
      "MultipleActiveResultSets", "Connect Timeout"}),
]


@pytest.mark.parametrize(("text", "family", "adonet", "ignored"), REAL_WORLD,
                         ids=[f"{i}-{r[1]}" for i, r in enumerate(REAL_WORLD)])
def test_real_world_strings(text: str, family: str, adonet: set[str],
                            ignored: set[str]) -> None:
    audit = audit_connection_string(text, dsn_driver="PostgreSQL Unicode")
    assert audit.family == family
    assert {f.keyword for f in audit.adonet_only} == adonet
    other = {f.keyword for f in audit.findings if f.ignored and f.status != "adonet-only"}
    assert other == ignored
    # every keyword is listed once, in order, with a status
    assert audit.findings[0].keyword in ("Driver", "DRIVER", "DSN")
    # secrets never appear
    for f in audit.findings:
        if f.keyword.lower() in ("pwd", "password"):
            assert f.value == "***"
    assert "s3cret" not in str(audit.to_dict())


def test_adonet_pool_keywords_come_with_the_odbc_way() -> None:
    audit = audit_connection_string(REAL_WORLD[0][0])
    notes = {f.keyword: f.note for f in audit.adonet_only}
    assert "[ODBC] Pooling=Yes" in notes["Pooling"] and "CPTimeout" in notes["Pooling"]
    assert "PoolMaxSize" in notes["Max Pool Size"]
    assert "CPTimeToLive" in notes["Connection Lifetime"]
    assert "CPTimeout" in notes["Load Balance Timeout"]
    assert audit.intended_pooling() is True
    for key in ("pooling", "maxpoolsize", "minpoolsize", "connectionlifetime",
                "loadbalancetimeout"):
        assert key in ADONET_ONLY


def test_intent_read_from_the_string() -> None:
    assert audit_connection_string("Driver={X};Pooling=false").intended_pooling() is False
    assert audit_connection_string("Driver={X};Max Pool Size=5").intended_pooling() is True
    assert audit_connection_string("Driver={X};Server=a").intended_pooling() is None


def test_suggested_ini_translates_the_pool_keywords() -> None:
    audit = audit_connection_string(REAL_WORLD[0][0])
    ini = suggested_ini("ODBC Driver 18 for SQL Server", audit)
    assert ini.splitlines() == ["[ODBC]", "Pooling=Yes", "PoolMaxSize=100", "",
                                "[ODBC Driver 18 for SQL Server]", "CPTimeout=30",
                                "CPTimeToLive=300"]


def test_driver_family_from_names_and_libraries() -> None:
    assert driver_family("psqlodbcw.so") == "psqlodbc"
    assert driver_family("libmaodbc.so") == "mariadb"
    assert driver_family("{ODBC Driver 17 for SQL Server}") == "mssql"
    assert driver_family("libtdsodbc.so") == "freetds"
    assert driver_family("libsqlite3odbc.so") == "sqlite"
    assert driver_family("Oracle 19 ODBC driver") == "unknown"


def test_connected_driver_name_decides_over_the_string() -> None:
    # SQLGetInfo's library name (psqlodbcw.so) identifies a DSN's driver
    audit = audit_connection_string("DSN=prod;Protocol=7.4-1", driver="psqlodbcw.so")
    assert audit.family == "psqlodbc"
    assert not any(f.ignored for f in audit.findings)


def test_unknown_driver_and_unknown_keyword() -> None:
    assert classify_keyword("Frobnicate", "psqlodbc")[0] == "unknown"
    status, note = classify_keyword("Server", "unknown")
    assert status == "unknown" and "not identified" in note
    assert classify_keyword("DSN", "mssql")[0] == "driver-manager"


def test_duplicates_and_bad_strings() -> None:
    audit = audit_connection_string("Driver={PostgreSQL Unicode};Port=1;port=2")
    assert audit.duplicates == ("port",)
    broken = audit_connection_string("Driver={unterminated;PWD=s3cret")
    assert broken.error and not broken.findings


def test_misspelled_keyword_names_the_one_it_probably_means() -> None:
    audit = audit_connection_string("Driver={PostgreSQL Unicode};Sever=127.0.0.1;Port=5432;"
                                    "Databse=mig;Frobnicate=1")
    notes = {f.keyword: f.note for f in audit.findings}
    assert notes["Sever"].endswith("(did you mean Server?)")
    assert notes["Databse"].endswith("(did you mean Database?)")
    assert "did you mean" not in notes["Frobnicate"]
    assert all(f.ignored for f in audit.findings if f.keyword in ("Sever", "Databse"))
