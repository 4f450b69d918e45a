"""SQL Server, live: runs only when BENCH_MSSQL holds a connection string, e.g.

    BENCH_MSSQL='Driver={ODBC Driver 18 for SQL Server};Server=.\\SQLEXPRESS;Database=mig;
    Trusted_Connection=yes;TrustServerCertificate=yes' scripts/test -m mssql

The shared backend suite (tests/test_odbc_backends.py) also runs against it; these are the
SQL Server-specific checks: UTF-16 lengths, (MAX) columns under fast_executemany, @@SPID.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from migrator.mapping import parse_mapping
from migrator.targets.base import ensure_schema
from migrator.targets.odbc import OdbcConnection, OdbcTarget

pytestmark = [pytest.mark.mssql, pytest.mark.odbc,
              pytest.mark.skipif(not os.environ.get("BENCH_MSSQL"),
                                 reason="BENCH_MSSQL is not set")]

MAPPING = parse_mapping("""
[record]
element = "r"
key = { path = "@id", type = "bigint" }
[[tables]]
name = "bench_live_t"
key_column = "id"
[tables.columns]
short = { path = "s", type = "str(10)" }
long = { path = "l", type = "text" }
""")


@pytest.fixture
def conn(pyodbc_module: object) -> Iterator[OdbcConnection]:
    c = OdbcTarget(os.environ["BENCH_MSSQL"].removeprefix("odbc:")).connect()
    d = c.dialect
    ensure_schema(c)  # (the tool's tables go to the migration_bench schema)
    c.execute(d.drop_table_sql("bench_live_t"))
    for sql in d.create_table_sql(MAPPING, MAPPING.root):
        c.execute(sql)
    c.commit()
    yield c
    c.rollback()
    c.execute(d.drop_table_sql("bench_live_t"))
    c.commit()
    c.close()


@pytest.mark.parametrize("method", ["executemany", "fast", "values"])
def test_emoji_at_full_length_and_max_text_round_trip(conn: OdbcConnection, method: str) -> None:
    rows = [(1, "😀" * 10, "x" * 100_000 + "😀"), (2, "東" * 10, None), (3, None, "")]
    conn.insert_rows("bench_live_t", ["id", "short", "long"], rows, method)
    conn.commit()
    got = [tuple(r) for r in conn.query(f"SELECT id, short, long FROM "
                                        f"{conn.dialect.table_ref('bench_live_t')} ORDER BY id")]
    assert got == rows


def test_dialect_and_session(conn: OdbcConnection) -> None:
    assert conn.dialect.name == "mssql"
    assert conn.session_id().isdigit()
