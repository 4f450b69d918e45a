"""MariaDB/MySQL sampler: ``SHOW GLOBAL STATUS`` deltas and the run's sessions.

Fsyncs, log bytes written, row lock waits and time, rows written, statement counts and
connections; ``Threads_connected``/``Threads_running`` are gauges. Variables a server
version lacks are simply absent. ``innodb_flush_log_at_trx_commit`` and ``sync_binlog``
(what a commit costs in fsyncs) are reported in ``info``.

The run's sessions. MariaDB Connector/ODBC (3.1) has no keyword for connection attributes,
and the ``@migration_bench_run`` variable each session sets (see
:func:`migrator.targets.odbc.session_keywords`) is visible to other sessions only through
performance_schema, which MariaDB leaves off by default. So the sampler finds the run's
sessions in ``information_schema.PROCESSLIST`` by their client address: ``HOST`` is
``address:port`` of the client socket, and the run's processes (``pids``) hold exactly the
TCP sockets to the server whose local ports those are (psutil). Over a Unix socket there
is no port; then every session of the sampler's user in its database counts, and
``info["session_match"]`` says so.

Each of those sessions is classified from the processlist and ``INNODB_TRX``: an InnoDB
``LOCK WAIT`` or a "Waiting for … lock" state is ``lock``; a commit state ``log_io``; a
sleeping session inside an open transaction waits for its client (``client``); any other
running statement is ``cpu``. Lock holders come from ``INNODB_LOCK_WAITS`` (row locks) and,
for metadata locks (``LOCK TABLES``, DDL), from ``information_schema.METADATA_LOCK_INFO``
when the ``metadata_lock_info`` plugin is installed (``INSTALL SONAME
'metadata_lock_info'``); without it a metadata-lock holder cannot be named.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from diagnostics._dbapi import Connection, Row, as_float, fetch_rows, sql_literal
from diagnostics.host import ServerLocation
from diagnostics.sampler import SamplerUnavailable, Value
from diagnostics.server import QUERY_CHARS, Blocker, DatabaseSampler

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
    " @@sync_binlog AS sync_binlog, @@datadir AS datadir, @@pid_file AS pid_file,"
    " CONNECTION_ID() AS connection_id, CURRENT_USER() AS current_user_host,"
    " DATABASE() AS database_name"
)
OWN_HOST_SQL = "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
PROCESSLIST_SQL = (  # (the statement's start is enough: a multi-row INSERT is long)
    f"SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, LEFT(INFO, {QUERY_CHARS}) AS INFO"
    " FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
)
TRX_SQL = (
    "SELECT trx_mysql_thread_id, trx_state FROM information_schema.INNODB_TRX"
)
ROW_LOCK_WAITS_SQL = (
    "SELECT r.trx_mysql_thread_id AS waiter, b.trx_mysql_thread_id AS blocker,"
    " COALESCE(l.lock_table, '') AS lock_table, COALESCE(l.lock_mode, '') AS lock_mode,"
    " COALESCE(bl.lock_mode, '') AS held_mode, b.trx_started AS trx_started,"
    f" LEFT(COALESCE(b.trx_query, ''), {QUERY_CHARS}) AS trx_query"
    " FROM information_schema.INNODB_LOCK_WAITS w"
    " JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id"
    " JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
    " LEFT JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.requested_lock_id"
    " LEFT JOIN information_schema.INNODB_LOCKS bl ON bl.lock_id = w.blocking_lock_id"
)
MDL_PLUGIN_SQL = (
    "SELECT COUNT(*) AS n FROM information_schema.PLUGINS"
    " WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'"
)
MDL_HOLDERS_SQL = (
    "SELECT THREAD_ID, LOCK_MODE, TABLE_SCHEMA, TABLE_NAME"
    " FROM information_schema.METADATA_LOCK_INFO"
    " WHERE LOCK_TYPE = 'Table metadata lock'"
    " AND LOCK_MODE IN ('MDL_EXCLUSIVE', 'MDL_SHARED_NO_READ_WRITE', 'MDL_SHARED_NO_WRITE',"
    " 'MDL_SHARED_READ_ONLY')"
)
MDL_PLUGIN_NOTE = (
    "a metadata-lock holder (LOCK TABLES, DDL) can be named only with the metadata_lock_info "
    "plugin: INSTALL SONAME 'metadata_lock_info'"
)
FAMILY_REFRESH_S = 5.0  # how often the run's process tree is looked up regardless
_COMMIT_STATES = frozenset({"commit", "committing", "waiting for handler commit",
                            "commit implicit", "rollback"})
_CLIENT_STATES = frozenset({"writing to net", "reading from net", "sending to client"})


def session_category(command: str, state: str, trx_state: str | None) -> str | None:
    """Wait category of one processlist session; None when it is not working (asleep
    outside a transaction)."""
    command, low = command.strip().lower(), (state or "").strip().lower()
    if trx_state == "LOCK WAIT" or (low.startswith("waiting for") and "lock" in low):
        return "lock"
    if command == "sleep":
        return "client" if trx_state else None  # inside a transaction, waiting for us
    if command not in ("query", "execute"):
        return None  # Connect, Binlog Dump, Daemon …: not a statement of ours
    if low in _COMMIT_STATES:
        return "log_io"
    if low in _CLIENT_STATES:
        return "client"
    return "cpu"


def client_port(host: object) -> int | None:
    """The port of a processlist ``HOST`` (``127.0.0.1:53412``); None for a Unix socket
    (``localhost``)."""
    text = str(host or "")
    head, sep, tail = text.rpartition(":")
    return int(tail) if sep and head and tail.isdigit() else None


def descendants(pids: set[int]) -> set[int]:
    """``pids`` and every process below them (one pass over the process table)."""
    import psutil

    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(int(proc.info["ppid"] or 0), []).append(proc.pid)
    family: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in family:
            family.add(pid)
            todo.extend(children.get(pid, ()))
    return family


def run_ports(family: set[int], server: tuple[str, int]) -> set[int]:
    """Local ports of the TCP connections from the processes ``family`` to the server at
    ``server`` (address and port as the client sees them).

    On Linux: the socket inodes those processes hold, looked up in one read of
    ``/proc/net/tcp`` (or ``tcp6``); psutil reads that whole table once per process, which
    costs a sample several milliseconds per worker. Elsewhere, psutil."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            return _proc_net_ports(family, server)
    import psutil

    ports: set[int] = set()
    for pid in family:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                remote, local = conn.raddr, conn.laddr
                if remote and local and (remote.ip, remote.port) == server:
                    ports.add(int(local.port))
    return ports


def _proc_net_ports(family: set[int], server: tuple[str, int]) -> set[int]:
    inodes: set[str] = set()
    for pid in family:
        with contextlib.suppress(OSError):  # (gone, or another user's)
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    ipv6 = ":" in server[0]
    port_hex = f":{server[1]:04X} "  # (a cheap test before splitting a line)
    ports: set[int] = set()
    with open("/proc/net/tcp6" if ipv6 else "/proc/net/tcp", encoding="ascii") as table:
        next(table, None)  # the header
        for line in table:
            if port_hex not in line:
                continue
            fields = line.split()
            if len(fields) < 10 or fields[9] not in inodes:
                continue
            remote_addr, _, remote_port = fields[2].partition(":")
            if int(remote_port, 16) != server[1]:
                continue
            # IPv4 addresses are little-endian hex; IPv6 ones are matched by port alone
            if not ipv6 and socket.inet_ntoa(bytes.fromhex(remote_addr)[::-1]) != server[0]:
                continue
            ports.add(int(fields[1].partition(":")[2], 16))
    return ports


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
        self._user = str(row["current_user_host"] or "").rpartition("@")[0]
        self._database = str(row["database_name"] or "")
        self._server = self._server_address()
        self._family: set[int] = set()
        self._family_at = float("-inf")
        self.facts["session_match"] = (
            "client TCP ports of the run's processes"
            if self._server and self.pids is not None
            else f"every session of user {self._user} in database {self._database or '?'} "
            "(no TCP port to match the run's processes by)"
        )
        try:
            self._mdl_plugin = bool(int(fetch_rows(self.conn, MDL_PLUGIN_SQL)[0]["n"]))
        except Exception:
            self._mdl_plugin = False

    def _server_address(self) -> tuple[str, int] | None:
        """The server's address and port as this process's sampler socket sees it (found
        by the local port the server reports for the sampler's own session)."""
        assert self.conn is not None
        try:
            import psutil

            port = client_port(fetch_rows(self.conn, OWN_HOST_SQL)[0]["host"])
            if port is None:
                return None
            for conn in psutil.Process().net_connections(kind="tcp"):
                if conn.laddr and conn.laddr.port == port and conn.raddr:
                    return (str(conn.raddr.ip), int(conn.raddr.port))
        except Exception:
            return None
        return None

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
        out.update(self._sessions(conn))
        return out

    def _ours(self, rows: list[Row], *, fresh: bool = False) -> list[Row]:
        if self._server is not None and self.pids is not None:
            ports = run_ports(self._family, self._server)
            # The run's processes change rarely (workers start), its sockets often: look
            # the process tree up again only when a session of our user and database is
            # unexplained, or now and then.
            unexplained = any(client_port(r["host"]) not in ports and self._same_user(r)
                              for r in rows)
            now = self.now()
            if fresh or unexplained or now - self._family_at >= FAMILY_REFRESH_S:
                self._family = descendants(set(self.pids()))
                self._family_at = now
                ports = run_ports(self._family, self._server)
            return [r for r in rows if client_port(r["host"]) in ports]
        return [r for r in rows if self._same_user(r)]

    def _same_user(self, row: Row) -> bool:
        return str(row["user"] or "") == self._user and str(row["db"] or "") == self._database

    def _sessions(self, conn: Connection) -> dict[str, Value]:
        processes = fetch_rows(conn, PROCESSLIST_SQL)
        ours = self._ours(processes)
        trx = {int(r["trx_mysql_thread_id"]): str(r["trx_state"])
               for r in fetch_rows(conn, TRX_SQL)}
        categories: Counter[str] = Counter()
        waiters: list[Row] = []
        for row in ours:
            category = session_category(str(row["command"] or ""), str(row["state"] or ""),
                                        trx.get(int(row["id"])))
            if category is None:
                continue
            categories[category] += 1
            if category == "lock":
                waiters.append(row)
        if waiters:
            # A lock holder must not be mistaken for one of ours: a process that has left
            # the run's tree since the family was last looked up would be, so look again.
            family = {int(r["id"]) for r in self._ours(processes, fresh=True)}
            self._find_blockers(conn, waiters, family, trx)
        out: dict[str, Value] = {
            "server.sessions": float(len(ours)),
            "server.active.sessions": float(sum(categories.values())),
        }
        for category in ("cpu", "data_io", "log_io", "lock", "latch", "client", "other_io",
                         "other"):
            out[f"server.wait.{category}.sessions"] = float(categories.get(category, 0))
        return out

    def _find_blockers(self, conn: Connection, waiters: list[Row], ours: set[int],
                       trx: dict[int, str]) -> None:
        now = self.now()
        found: dict[tuple[str, str], tuple[Blocker, set[int]]] = {}
        waiting_ids = {int(r["id"]) for r in waiters}
        explained: set[int] = set()  # waiters whose InnoDB row lock names its holder
        if any(trx.get(i) == "LOCK WAIT" for i in waiting_ids):
            for row in fetch_rows(conn, ROW_LOCK_WAITS_SQL):
                if int(row["waiter"]) not in waiting_ids:
                    continue
                b = self._blocker(conn, int(row["blocker"]), f"rows of {row['lock_table']}",
                                  str(row["lock_mode"]), str(row["held_mode"]),
                                  str(row["trx_started"] or ""), str(row["trx_query"]))
                found.setdefault((b.session, b.object), (b, set()))[1].add(int(row["waiter"]))
                explained.add(int(row["waiter"]))
        # The rest wait on a metadata or table lock (LOCK TABLES, DDL), which InnoDB's row
        # lock waits do not list, whatever state their transaction reports.
        mdl = [r for r in waiters if int(r["id"]) not in explained]
        if mdl and self._mdl_plugin:
            for row in fetch_rows(conn, MDL_HOLDERS_SQL):
                holder = int(row["thread_id"])
                table = f"{row['table_schema']}.{row['table_name']}"
                if holder in ours or (self._database and row["table_schema"] != self._database):
                    continue
                b = self._blocker(conn, holder, f"table {table}", "metadata lock",
                                  str(row["lock_mode"]), "", "")
                entry = found.setdefault((b.session, b.object), (b, set()))
                entry[1].update(int(r["id"]) for r in mdl
                                if str(row["table_name"]) in str(r["info"] or ""))
        elif mdl:
            self.facts["blockers_note"] = MDL_PLUGIN_NOTE
        for blocker, waiting in found.values():
            self.note_blocker(blocker, len(waiting), now)

    def _blocker(self, conn: Connection, thread: int, what: str, wanted: str, held: str,
                 trx_started: str, query: str) -> Blocker:
        rows = fetch_rows(conn, "SELECT USER, HOST, COMMAND, STATE, TIME, INFO"
                                f" FROM information_schema.PROCESSLIST WHERE ID = {thread}")
        info: dict[str, Any] = rows[0] if rows else {}
        return Blocker(
            session=str(thread), id_label="thread", user=str(info.get("user") or ""),
            client=str(info.get("host") or ""),
            state=" ".join(filter(None, (str(info.get("command") or ""),
                                         str(info.get("state") or "")))),
            transaction_start=trx_started,
            query=" ".join((query or str(info.get("info") or ""))[:QUERY_CHARS].split()),
            object=what, lock_mode=wanted, held_mode=held)
