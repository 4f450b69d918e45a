"""Every T-SQL statement the mssql dialect emits, parsed by a real T-SQL parser (sqlglot),
since SQL Server cannot run here. The live suite runs when BENCH_MSSQL is set."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from migrator.mapping import ColumnType, default_mapping, parse_mapping
from migrator.targets.mssql import MSSQLDialect, nvarchar_units

D = MSSQLDialect()


def tsql(sql: str) -> Any:
    tree = sqlglot.parse_one(sql, read="tsql")
    assert tree is not None
    return tree


def all_statements() -> list[str]:
    m = default_mapping()
    out = [s for t in m.tables for s in D.create_table_sql(m, t)]
    out += D.bookkeeping_sql()
    out += [D.drop_table_sql(t.name) for t in m.tables]
    out += [D.insert_sql(t.name, t.column_names) for t in m.tables]
    out += [D.values_sql(m.root.name, m.root.column_names, 3), D.table_exists_sql(),
            D.session_id_sql, D.rollback_to_sql("mb_record")]
    return out


def test_savepoints_use_tsql_syntax() -> None:
    # sqlglot 30 does not parse SAVE TRANSACTION; the form is SQL Server's documented one.
    assert D.savepoint_sql("mb_record") == "SAVE TRANSACTION mb_record"
    assert D.rollback_to_sql("mb_record") == "ROLLBACK TRANSACTION mb_record"
    assert D.release_savepoint_sql("mb_record") is None


@pytest.mark.parametrize("sql", all_statements())
def test_every_statement_parses_as_tsql(sql: str) -> None:
    tsql(sql)


def test_create_table_types_and_keys() -> None:
    m = default_mapping()
    sql = D.create_table_sql(m, m.table("order_lines"))[0]
    tree = tsql(sql)
    assert isinstance(tree, exp.Create)
    cols = {c.name: c.args["kind"].sql(dialect="tsql").upper()
            for c in tree.find_all(exp.ColumnDef)}
    assert cols["order_id"] == "BIGINT"
    assert cols["line_no"] == "INTEGER" or cols["line_no"] == "INT"
    assert cols["sku"] == "NVARCHAR(80)"  # str(40): 40 code points, up to 80 UTF-16 units
    assert cols["unit_price"] in ("DECIMAL(12, 2)", "NUMERIC(12, 2)")
    assert "[unit_price] DECIMAL(12,2) NOT NULL" in sql
    assert "PRIMARY KEY ([order_id], [line_no])" in sql
    orders = D.create_table_sql(m, m.root)[0]
    assert "[created_at] DATETIME2(6) NOT NULL" in orders
    assert "[customer_vip] BIT" in orders and "[comment] NVARCHAR(MAX)" in orders


@pytest.mark.parametrize("length, units", [(1, 2), (20, 40), (2000, 4000), (2001, None)])
def test_nvarchar_counts_utf16_units(length: int, units: int | None) -> None:
    assert nvarchar_units(length) == units
    expected = f"NVARCHAR({units})" if units else "NVARCHAR(MAX)"
    assert D.column_sql_type(ColumnType("str", length=length)) == expected


def test_identifiers_with_brackets_are_escaped() -> None:
    m = parse_mapping("""
[record]
element = "r"
key = { path = "@id", type = "bigint" }
[[tables]]
name = "we]ird [t]"
key_column = "id]"
[tables.columns]
"a]b" = { path = "a", type = "str(5)" }
""")
    sql = D.create_table_sql(m, m.root)[0]
    assert sql.startswith("CREATE TABLE [we]]ird [t]]]")
    tree = tsql(sql)
    assert tree.find(exp.Table).name == "we]ird [t]"
    assert {c.name for c in tree.find_all(exp.ColumnDef)} == {"id]", "a]b"}


def test_bookkeeping_fits_sql_server_limits() -> None:
    sqls = D.bookkeeping_sql()
    assert all("VARCHAR(" not in s.replace("NVARCHAR(", "") for s in sqls)
    checkpoint = next(s for s in sqls if "mb_checkpoint" in s)
    # The key is a 64-character digest (128 bytes): far inside the 900-byte index-key limit.
    assert "unit_key NVARCHAR(64) NOT NULL PRIMARY KEY" in checkpoint
    assert "unit NVARCHAR(4000) NOT NULL" in checkpoint
    for sql in sqls:
        tsql(sql)  # each statement parses as T-SQL
    quarantine = next(s for s in sqls if "mb_quarantine" in s)
    assert "[file] NVARCHAR" in quarantine  # FILE is reserved in T-SQL


def test_parameter_caps() -> None:
    assert D.param_budget() < 2100
    assert D.values_rows_per_statement(31, 1000) == 2099 // 31
    assert D.values_rows_per_statement(1, 5000) == 1000  # table value constructor limit
    sql = D.values_sql("t", ["a", "b"], D.values_rows_per_statement(2, 5000))
    assert sql.count("?") <= 2100
    tsql(sql)


def test_methods() -> None:
    assert D.resolve_method("auto") == "fast"
    assert not D.method("copy").available
