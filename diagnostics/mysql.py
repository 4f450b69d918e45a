"""MariaDB/MySQL sampler: ``SHOW GLOBAL STATUS`` deltas.

Fsyncs, log bytes written, row lock waits and time, rows written, statement counts and
connections; ``Threads_connected``/``Threads_running`` are gauges. Variables a server
version lacks are simply absent. ``innodb_flush_log_at_trx_commit`` and ``sync_binlog``
(what a commit costs in fsyncs) are reported in ``info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from diagnostics._dbapi import Connection, as_float, fetch_rows, sql_literal
from diagnostics.host import ServerLocation
from diagnostics.sampler import SamplerUnavailable, Value
from diagnostics.server import DatabaseSampler

STATUS_COUNTERS = (
    "Innodb_data_fsyncs",
    "Innodb_data_reads",
    "Innodb_data_writes",
    "Innodb_data_read",
    "Innodb_data_written",
    "Innodb_os_log_written",
    "Innodb_os_log_fsyncs",
    "Innodb_log_writes",
    "Innodb_log_waits",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_rows_inserted",
    "Innodb_buffer_pool_reads",
    "Innodb_buffer_pool_read_requests",
    "Innodb_buffer_pool_wait_free",
    "Innodb_buffer_pool_pages_flushed",
    "Handler_write",
    "Com_insert",
    "Com_commit",
    "Handler_commit",
    "Questions",
    "Connections",
    "Aborted_connects",
    "Bytes_received",
)
STATUS_GAUGES = (
    "Threads_connected",
    "Threads_running",
    "Innodb_row_lock_current_waits",
    "Innodb_buffer_pool_pages_dirty",
)

STATUS_SQL = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(
    ", ".join(sql_literal(n) for n in STATUS_COUNTERS + STATUS_GAUGES)
)
SETTINGS_SQL = (
    "SELECT VERSION() AS version, @@innodb_flush_log_at_trx_commit AS flush_log_at_trx_commit,"
    " @@sync_binlog AS sync_binlog, @@datadir AS datadir, @@pid_file AS pid_file"
)


def parse_status(rows: list[dict[str, object]]) -> dict[str, float]:
    """``SHOW STATUS`` rows → {variable: value}; non-numeric values are dropped."""
    out: dict[str, float] = {}
    for row in rows:
        values = list(row.values())
        name, value = str(values[0]), as_float(values[1])
        if value is not None:
            out[name] = value
    return out


class MysqlSampler(DatabaseSampler):
    """Samples a MariaDB or MySQL server through its own connection."""

    dialect: ClassVar[str] = "mysql"

    def probe(self) -> None:
        assert self.conn is not None
        try:
            row = fetch_rows(self.conn, SETTINGS_SQL)[0]
            parse_status(fetch_rows(self.conn, STATUS_SQL))
        except Exception as exc:
            raise SamplerUnavailable(f"cannot read MariaDB/MySQL status: {exc}") from exc
        self.facts.update(
            server_version=str(row["version"]),
            innodb_flush_log_at_trx_commit=str(row["flush_log_at_trx_commit"]),
            sync_binlog=str(row["sync_binlog"]),
            datadir=str(row["datadir"]),
            pid_file=str(row["pid_file"]),
        )

    def server_location(self) -> ServerLocation:
        pid: int | None = None
        pid_file = self.facts.get("pid_file")
        if pid_file:
            try:
                pid = int(Path(str(pid_file)).read_text().strip())
            except (OSError, ValueError):
                pid = None
        datadir = self.facts.get("datadir")
        return ServerLocation(pid=pid, data_paths=(str(datadir),) if datadir else ())

    def read(self, conn: Connection) -> dict[str, Value]:
        now = self.now()
        status = parse_status(fetch_rows(conn, STATUS_SQL))
        counters = {k: status.get(k) for k in STATUS_COUNTERS}
        out: dict[str, Value] = self.counters("mysql.status", counters, now)
        for gauge in STATUS_GAUGES:
            if gauge in status:
                out[f"mysql.status.{gauge}"] = status[gauge]
                self.raw[f"mysql.status.{gauge}"] = status[gauge]

        def rate(name: str) -> float | None:
            return out.get(f"mysql.status.{name}_per_s")

        log_fsyncs = rate("Innodb_os_log_fsyncs")
        out["server.log.flushes_per_s"] = (
            log_fsyncs if log_fsyncs is not None else rate("Innodb_data_fsyncs")
        )
        out["server.log.bytes_per_s"] = rate("Innodb_os_log_written")
        out["server.commits_per_s"] = rate("Com_commit")
        # MariaDB 10.6+ dropped Innodb_rows_inserted; Handler_write counts row writes
        inserted = rate("Innodb_rows_inserted")
        out["server.rows_inserted_per_s"] = (
            inserted if inserted is not None else rate("Handler_write")
        )
        out["server.data.reads_per_s"] = rate("Innodb_data_reads")
        out["server.logins_per_s"] = rate("Connections")
        out["server.lock_waits_per_s"] = rate("Innodb_row_lock_waits")
        lock_ms = rate("Innodb_row_lock_time")  # ms of lock wait per second
        out["server.wait.lock.sessions"] = None if lock_ms is None else lock_ms / 1000.0
        if "Threads_connected" in status:
            out["server.connections"] = status["Threads_connected"]
        if "Threads_running" in status:
            # our own SHOW STATUS is one of the running threads
            out["server.active.sessions"] = max(status["Threads_running"] - 1.0, 0.0)
        return out
