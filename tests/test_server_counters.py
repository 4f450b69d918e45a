"""The server-side throughput counters (diagnostics.server_counters): every statement parsed
by a real SQL parser for its dialect (SQL Server cannot run here; PostgreSQL and MariaDB
run them live in tests/test_cluster.py), and the comparison the result file carries."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from diagnostics.server_counters import (
    CounterReading,
    CounterSource,
    ServerCounters,
    counter_source,
)

TABLES = ["orders", "order_lines", "payments"]


def parse(sql: str, dialect: str) -> Any:
    tree = sqlglot.parse_one(sql, read=dialect)
    assert tree is not None
    return tree


def test_sql_server_counters_parse_as_t_sql() -> None:
    source = counter_source("mssql", "migration_bench", TABLES)
    assert source is not None
    rows = parse(source.rows_sql, "tsql")
    names = {t.name for t in rows.find_all(exp.Table) if t.name}  # ('': the DMV function)
    assert names == {"tables", "schemas"}
    assert "dm_db_index_operational_stats" in rows.sql("tsql").lower()
    assert {n.this for n in rows.find_all(exp.National)} == {"migration_bench", *TABLES}
    commits = parse(source.commits_sql, "tsql")
    assert [t.name for t in commits.find_all(exp.Table)] == ["dm_os_performance_counters"]
    assert "Write Transactions/sec" in commits.sql("tsql")


def test_postgresql_counters_parse_and_name_the_run_tables() -> None:
    source = counter_source("postgresql", "mb", TABLES, "migration-bench 1a2b")
    assert source is not None and source.open_sessions_sql is not None
    rows = parse(source.rows_sql, "postgres")
    assert [t.name for t in rows.find_all(exp.Table)] == ["pg_stat_user_tables"]
    assert {lit.this for lit in rows.find_all(exp.Literal) if lit.is_string} == {"mb", *TABLES}
    parse(source.commits_sql, "postgres")
    sessions = parse(source.open_sessions_sql, "postgres")
    assert {lit.this for lit in sessions.find_all(exp.Literal) if lit.is_string} == \
        {"migration-bench 1a2b", "migration-bench 1a2b copy"}


def test_names_with_quotes_stay_literals() -> None:
    source = counter_source("postgresql", "o'brien", ["a'b"])
    assert source is not None
    rows = parse(source.rows_sql, "postgres")
    assert {lit.this for lit in rows.find_all(exp.Literal) if lit.is_string} == \
        {"o'brien", "a'b"}


def test_no_server_no_counters() -> None:
    assert counter_source("sqlite", None, TABLES) is None


def _counters(before: CounterReading | None, after: CounterReading | None) -> ServerCounters:
    source = CounterSource("postgresql", "SELECT 1 AS value", "rows", "SELECT 1 AS value",
                           "commits")
    counters = ServerCounters(lambda: None, source)  # type: ignore[arg-type,return-value]
    counters.before_reading, counters.after_reading = before, after
    return counters


def test_server_and_clients_side_by_side() -> None:
    doc = _counters(CounterReading(10.0, 1000.0, 50.0),
                    CounterReading(14.0, 9000.0, 90.0)).to_dict(
        client_rows=8000, client_commits=32, client_elapsed_s=2.0)
    assert doc["server"] == {"rows_inserted": 8000, "commits": 40, "window_s": 4.0,
                             "rows_per_s": 2000.0, "commits_per_s": 10.0}
    assert doc["clients"]["rows_per_s"] == 4000.0 and doc["clients"]["commits_per_s"] == 16.0
    assert doc["rows_ratio"] == 1.0


def test_a_counter_not_yet_published_counts_from_zero() -> None:
    # (a table created by the run: PostgreSQL has no row for it before its first insert)
    doc = _counters(CounterReading(0.0, None, 5.0),
                    CounterReading(2.0, 300.0, 9.0)).to_dict(
        client_rows=300, client_commits=3, client_elapsed_s=1.0)
    assert doc["server"]["rows_inserted"] == 300


def test_without_an_after_reading_there_is_no_server_figure() -> None:
    doc = _counters(CounterReading(0.0, 1.0, 1.0), None).to_dict(
        client_rows=10, client_commits=1, client_elapsed_s=1.0)
    assert doc["server"] is None and doc["clients"]["rows_inserted"] == 10
