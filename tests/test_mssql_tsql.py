"""Every T-SQL statement the mssql dialect emits, parsed by a real T-SQL parser (sqlglot),
since SQL Server cannot run here. The live suite runs when BENCH_MSSQL is set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from migrator.engine import (
    REGISTRY_COLUMNS,
    _fresh_schema,
    _load_for_resume,
    reconcile,
    survey,
)
from migrator.mapping import ColumnType, default_mapping, load_mapping, parse_mapping
from migrator.reader import WorkUnit
from migrator.targets.base import (
    CHECKPOINT_FORMAT,
    Connection,
    Namespace,
    Row,
    Target,
    TargetInfo,
)
from migrator.targets.mssql import MSSQLDialect, nvarchar_units

D = MSSQLDialect()


def tsql(sql: str) -> Any:
    tree = sqlglot.parse_one(sql, read="tsql")
    assert tree is not None
    return tree


NESTED = Path(__file__).parent / "data" / "mapping"


def all_statements() -> list[str]:
    m = default_mapping()
    out = [s for t in m.tables for s in D.create_table_sql(m, t)]
    for name in ("mondial.toml", "dblp.toml"):  # nested tables, composite and own keys
        nested = load_mapping(NESTED / name)
        out += [s for t in nested.tables for s in D.create_table_sql(nested, t)]
    out += D.bookkeeping_sql()
    out += [D.drop_table_sql(t.name) for t in m.tables]
    out += [D.insert_sql(t.name, t.column_names) for t in m.tables]
    out += [D.values_sql(m.root.name, m.root.column_names, 3), D.list_tables_sql()[0],
            D.schema_exists_sql(), D.create_schema_sql("migration_bench"), D.registry_sql(),
            D.session_id_sql, D.rollback_to_sql("mb_record"),
            D.select_for_update_sql(m.root.name, ("order_id", "mb_position"), "order_id"),
            D.select_for_update_sql("bib_issues", ("journal", "volume", "number", "mb_position"),
                                    ("journal", "volume", "number"))]
    return out


class Recorder(Connection):
    """Keeps every statement the engine sends (SQL Server cannot run here); answers the
    catalog queries as a database holding the tables in ``tables`` would."""

    def __init__(self, dialect: MSSQLDialect, tables: Sequence[str],
                 owned: Sequence[str], meta: dict[str, str]) -> None:
        self.dialect = dialect
        self.tables = list(tables)
        self.owned = list(owned)
        self.meta = meta
        self.sql: list[str] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.sql.append(sql)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.sql.append(sql)
        if "INFORMATION_SCHEMA.TABLES" in sql:
            return [(t,) for t in self.tables]
        if "sys.schemas" in sql:
            return []
        if sql.startswith(f"SELECT {', '.join(REGISTRY_COLUMNS)} "):
            return [(t, "f", "r", "now") for t in self.owned]
        if sql.startswith("SELECT k, v"):
            return list(self.meta.items())
        if "COALESCE" in sql:
            return [(0, 0, 0)]
        if "COUNT(*)" in sql:
            return [(0,)]
        return []

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row],
                    method: str | None = None) -> None:
        self.sql.append(self.dialect.insert_sql(table, columns))

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class RecorderTarget(Target):
    scheme = "recorder"

    def __init__(self, conn: Recorder) -> None:
        self.conn = conn
        self.dialect = conn.dialect

    def connect(self) -> Recorder:
        return self.conn

    def info(self) -> TargetInfo:
        return TargetInfo("recorder", "recorder", "mssql")


def engine_statements() -> list[str]:
    """What a fresh schema (replacing a foreign table and its own), resume and reconcile
    send to SQL Server, in a prefixed namespace."""
    d = MSSQLDialect()
    d.namespace = Namespace(prefix="t1_")
    m = default_mapping()
    units = [WorkUnit("data/a.xml", 100)]
    conn = Recorder(d, ["t1_mb_tables", "t1_orders", "t1_mb_run", "t1_payments"],
                    ["t1_mb_run", "t1_payments"], {})
    _fresh_schema(conn, m, units, replace_existing=True, run_id="r1")
    empty = Recorder(d, [], [], {})
    _fresh_schema(empty, m, units, replace_existing=False, run_id="r2")
    names = [f"t1_{t.name}" for t in m.tables] + ["t1_mb_run", "t1_mb_checkpoint",
                                                  "t1_mb_quarantine", "t1_mb_tables"]
    meta = {"checkpoint_format": CHECKPOINT_FORMAT, "schema_state": "complete",
            "mapping_fingerprint": m.fingerprint()}
    resumed = Recorder(d, names, names, meta)
    survey(resumed)
    with pytest.raises(Exception, match="input changed"):
        _load_for_resume(resumed, m, units)  # (the recorder holds no checkpoint rows)
    reconcile(RecorderTarget(resumed), m)
    return conn.sql + empty.sql + resumed.sql


def test_the_engine_qualifies_every_table_with_schema_and_prefix() -> None:
    statements = engine_statements()
    assert any(s.startswith("DROP TABLE IF EXISTS [migration_bench].[t1_orders]")
               for s in statements)
    assert any("CREATE TABLE [migration_bench].[t1_mb_tables]" in s for s in statements)
    assert "CREATE SCHEMA [migration_bench]" in statements
    for sql in statements:
        for table in tsql(sql).find_all(exp.Table):
            if table.db.upper() in ("INFORMATION_SCHEMA", "SYS") or not table.name:
                continue
            assert table.db == "migration_bench", sql
            assert table.name.startswith("t1_"), sql


@pytest.mark.parametrize("sql", engine_statements())
def test_every_engine_statement_parses_as_tsql(sql: str) -> None:
    tsql(sql)


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


def test_nested_tables_carry_their_parents_keys_with_a_foreign_key() -> None:
    m = load_mapping(NESTED / "dblp.toml")
    sql = D.create_table_sql(m, m.table("bib_authors"))[0]
    tree = tsql(sql)
    cols = {c.name: c.args["kind"].sql(dialect="tsql").upper()
            for c in tree.find_all(exp.ColumnDef)}
    assert list(cols)[:5] == ["journal", "volume", "number", "article_no", "author_no"]
    assert cols["journal"] == "NVARCHAR(80)" and cols["volume"] in ("INT", "INTEGER")
    assert "[volume] INT NOT NULL" in sql
    assert "PRIMARY KEY ([journal], [volume], [number], [article_no], [author_no])" in sql
    fk = tree.find(exp.ForeignKey)
    assert fk is not None
    assert [e.name for e in fk.expressions] == ["journal", "volume", "number", "article_no"]
    ref = fk.args["reference"].this
    assert ref.this.name == "bib_articles" and ref.this.db == "migration_bench"
    assert [e.name for e in ref.expressions] == ["journal", "volume", "number", "article_no"]


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
    assert sql.startswith("CREATE TABLE [migration_bench].[we]]ird [t]]]")
    tree = tsql(sql)
    assert tree.find(exp.Table).name == "we]ird [t]"
    assert {c.name for c in tree.find_all(exp.ColumnDef)} == {"id]", "a]b", "mb_position"}


def test_bookkeeping_fits_sql_server_limits() -> None:
    sqls = [*D.bookkeeping_sql(), D.registry_sql()]
    assert all("VARCHAR(" not in s.replace("NVARCHAR(", "") for s in sqls)
    checkpoint = next(s for s in sqls if "mb_checkpoint" in s)
    # The key is a 64-character digest (128 bytes): far inside the 900-byte index-key limit.
    assert "unit_key NVARCHAR(64) NOT NULL PRIMARY KEY" in checkpoint
    assert "unit NVARCHAR(4000) NOT NULL" in checkpoint
    for sql in sqls:
        tsql(sql)  # each statement parses as T-SQL
    quarantine = next(s for s in sqls if "mb_quarantine" in s)
    assert "[file] NVARCHAR" in quarantine  # FILE is reserved in T-SQL
    # Keys and reasons of any length: NVARCHAR(MAX), which a batch never outgrows.
    assert "record_key NVARCHAR(MAX)," in quarantine
    assert "reason NVARCHAR(MAX) NOT NULL" in quarantine
    registry = next(s for s in sqls if "mb_tables" in s)
    assert "table_name NVARCHAR(200) NOT NULL PRIMARY KEY" in registry  # 400 bytes < 900


def test_tables_go_to_a_schema_of_their_own_by_default() -> None:
    d = MSSQLDialect()
    assert d.table_ref("orders") == "[migration_bench].[orders]"
    d.namespace = Namespace(schema="stage", prefix="x_")
    assert d.table_ref("mb_checkpoint") == "[stage].[x_mb_checkpoint]"
    assert d.list_tables_sql()[1] == ("stage",)
    tree = tsql(d.insert_sql("orders", ["a"]))
    assert tree.find(exp.Table).db == "stage"


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
