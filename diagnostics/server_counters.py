"""Throughput measured at the server: its own cumulative counters, read before and after.

When several clients drive one server, the honest throughput is what the server did,
measured once by the coordinator from counters the server keeps — HammerDB's rule — and
not the clients' own counts added up (a client's clock, its retries and its idea of a
commit are its own). So a run reads, on its own session, the rows the server inserted and
the transactions it committed just before the first record is inserted and again once the
workers' sessions have ended, and reports both figures per second beside the clients'.

Per dialect (the ``*_source`` texts name them in the result file):

* PostgreSQL — rows: Σ ``n_tup_ins`` of the run's tables in ``pg_stat_user_tables``
  (inserts of transactions that rolled back included: the server did that work);
  commits: ``xact_commit`` of the database in ``pg_stat_database`` (every session's, the
  sampler's read-only ones too). A backend reports its counters when its transaction ends,
  at most once a second while busy, and when it exits: the after-reading is repeated until
  two readings agree.
* MariaDB/MySQL — ``SHOW GLOBAL STATUS``: rows ``Innodb_rows_inserted``, or where the
  server has no such counter (MariaDB 10.6 and later) ``Handler_write``, rows the storage
  engines were asked to write; commits ``Com_commit``. The whole server's: other
  databases' work counts too.
* SQL Server — rows: Σ ``leaf_insert_count`` of the run's tables' heap or clustered index
  in ``sys.dm_db_index_operational_stats``; commits: the database's ``Write
  Transactions/sec`` in ``sys.dm_os_performance_counters`` (a cumulative count despite
  its name, ``cntr_type`` 272696576). Needs VIEW SERVER STATE.
* SQLite has no server: nothing to read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics._dbapi import Connection, ConnectionFactory, as_float, fetch_rows, sql_literal

# How long the after-reading may wait for the counters to settle, and between two reads.
SETTLE_S = 2.0
SETTLE_STEP_S = 0.2


@dataclass(frozen=True)
class CounterSource:
    """The statements that read one dialect's counters; each returns one row with a
    ``value`` column (NULL when nothing is counted yet)."""

    dialect: str
    rows_sql: str
    rows_source: str
    commits_sql: str
    commits_source: str
    settles: bool = False  # the server publishes counters late: re-read until they agree
    # How many of the run's sessions are still open (PostgreSQL: an idle session publishes
    # its last second of counters up to 10 s late); None: not asked.
    open_sessions_sql: str | None = None


@dataclass(frozen=True)
class CounterReading:
    at: float  # time.monotonic() when read
    rows_inserted: float | None
    commits: float | None


def _in_list(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + sql_literal(n) for n in names) or "NULL"


def postgres_source(schema: str, tables: Sequence[str], run_prefix: str | None = None
                    ) -> CounterSource:
    sessions = None
    if run_prefix:
        sessions = ("SELECT count(*) AS value FROM pg_stat_activity WHERE application_name IN "
                    f"({_in_list([run_prefix, run_prefix + ' copy'])})")
    return CounterSource(
        "postgresql",
        "SELECT sum(n_tup_ins) AS value FROM pg_stat_user_tables WHERE schemaname = "
        f"{sql_literal(schema)} AND relname IN ({_in_list(tables)})",
        "pg_stat_user_tables.n_tup_ins of the run's tables",
        "SELECT xact_commit AS value FROM pg_stat_database WHERE datname = current_database()",
        "pg_stat_database.xact_commit",
        settles=True,
        open_sessions_sql=sessions,
    )


def mysql_source() -> CounterSource:
    return CounterSource(
        "mysql",
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_rows_inserted', 'Handler_write')",
        "SHOW GLOBAL STATUS Innodb_rows_inserted, else Handler_write (whole server)",
        "SHOW GLOBAL STATUS WHERE Variable_name = 'Com_commit'",
        "SHOW GLOBAL STATUS Com_commit (whole server)",
    )


def mssql_source(schema: str, tables: Sequence[str]) -> CounterSource:
    return CounterSource(
        "mssql",
        "SELECT SUM(s.leaf_insert_count) AS value"
        " FROM sys.dm_db_index_operational_stats(DB_ID(), NULL, NULL, NULL) AS s"
        " JOIN sys.tables AS t ON t.object_id = s.object_id"
        " JOIN sys.schemas AS sc ON sc.schema_id = t.schema_id"
        f" WHERE s.index_id IN (0, 1) AND sc.name = N{sql_literal(schema)}"
        f" AND t.name IN ({_in_list(tables, 'N')})",
        "sys.dm_db_index_operational_stats.leaf_insert_count of the run's tables",
        "SELECT cntr_value AS value FROM sys.dm_os_performance_counters"
        " WHERE counter_name = N'Write Transactions/sec'"
        " AND object_name LIKE N'%:Databases' AND instance_name = DB_NAME()",
        "sys.dm_os_performance_counters Write Transactions/sec (cumulative)",
    )


def counter_source(dialect: str, schema: str | None, tables: Sequence[str],
                   run_prefix: str | None = None) -> CounterSource | None:
    """The counters of ``dialect`` for the run's physical ``tables`` in ``schema``; None
    where there is no server (SQLite). ``run_prefix``: what the run's sessions are named
    (:func:`migrator.session.run_prefix`)."""
    if dialect == "postgresql":
        return postgres_source(schema or "public", tables, run_prefix)
    if dialect in ("mysql", "mariadb"):
        return mysql_source()
    if dialect == "mssql":
        return mssql_source(schema or "dbo", tables)
    return None


# Of several status variables a statement returns, the one to use (the first present).
_PREFERRED = ("innodb_rows_inserted", "handler_write")


def _value(conn: Connection, sql: str) -> float | None:
    rows = fetch_rows(conn, sql)
    if not rows:
        return None
    named = {str(r.get("variable_name", "")).lower(): r for r in rows}
    row = next((named[n] for n in _PREFERRED if n in named), rows[0])
    return as_float(row.get("value", row.get("variable_value")))


def read_counters(conn: Connection, source: CounterSource) -> CounterReading:
    return CounterReading(time.monotonic(), _value(conn, source.rows_sql),
                          _value(conn, source.commits_sql))


class ServerCounters:
    """Reads a server's counters on its own connection: ``before()`` once the target is
    prepared, ``after()`` once the run's sessions have ended; ``to_dict`` compares."""

    def __init__(self, connect: ConnectionFactory, source: CounterSource) -> None:
        self.connect = connect
        self.source = source
        self.before_reading: CounterReading | None = None
        self.after_reading: CounterReading | None = None
        self.error: str | None = None
        self.open_sessions: int | None = None

    def _read(self) -> CounterReading | None:
        try:
            conn = self.connect()
        except Exception as exc:  # (measuring must never break the run)
            self.error = f"cannot connect to read the server's counters: {exc}"
            return None
        try:
            reading = read_counters(conn, self.source)
            if self.source.open_sessions_sql is not None:
                self.open_sessions = int(_value(conn, self.source.open_sessions_sql) or 0)
            return reading
        except Exception as exc:
            self.error = f"cannot read the server's counters: {exc}"
            return None
        finally:
            conn.close()

    def before(self) -> None:
        self.before_reading = self._read()

    def after(self) -> None:
        reading = self._read()
        if self.source.settles and reading is not None:
            deadline = time.monotonic() + SETTLE_S
            while time.monotonic() < deadline:
                time.sleep(SETTLE_STEP_S)
                again = self._read()
                if again is None:
                    break
                # (Rows only: every reading's own statements are commits too.)
                settled = again.rows_inserted == reading.rows_inserted
                reading = again
                if settled:
                    break
        self.after_reading = reading

    def to_dict(self, *, client_rows: int, client_commits: int, client_elapsed_s: float
                ) -> dict[str, Any]:
        """Server and clients side by side: totals and per second (the server's over the
        time between its two readings, the clients' over the run's elapsed time)."""
        clients = {"rows_inserted": client_rows, "commits": client_commits,
                   "elapsed_s": round(client_elapsed_s, 6),
                   "rows_per_s": _per_s(client_rows, client_elapsed_s),
                   "commits_per_s": _per_s(client_commits, client_elapsed_s)}
        doc: dict[str, Any] = {"dialect": self.source.dialect,
                               "rows_source": self.source.rows_source,
                               "commits_source": self.source.commits_source,
                               "clients": clients, "server": None, "error": self.error,
                               "warning": None}
        if self.open_sessions:
            doc["warning"] = (f"{self.open_sessions} of the run's sessions were still open "
                              f"(pooled) at the final reading: the server may count their "
                              f"last second of work later")
        a, b = self.before_reading, self.after_reading
        if a is None or b is None:
            return doc
        window = b.at - a.at
        rows = _delta(a.rows_inserted, b.rows_inserted)
        commits = _delta(a.commits, b.commits)
        doc["server"] = {"rows_inserted": rows, "commits": commits,
                         "window_s": round(window, 6),
                         "rows_per_s": _per_s(rows, window),
                         "commits_per_s": _per_s(commits, window)}
        doc["rows_ratio"] = round(rows / client_rows, 4) if rows is not None and client_rows \
            else None
        return doc


def _delta(before: float | None, after: float | None) -> int | None:
    if after is None:
        return None
    return int(after - (before or 0.0))


def _per_s(value: float | None, seconds: float) -> float | None:
    if value is None or seconds <= 0:
        return None
    return round(value / seconds, 3)
