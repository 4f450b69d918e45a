"""SQL Server sampler: file I/O, waits and performance counters from the DMVs.

* ``sys.dm_io_virtual_file_stats(NULL, NULL)`` per file: Δreads, Δwrites, Δbytes and the
  average latency Δio_stall / Δops (``None`` when Δops = 0, never a division by zero).
* ``sys.dm_os_wait_stats``: Δwait time per wait type, benign (idle/background) waits
  filtered with the list Paul Randal and sp_BlitzFirst use, grouped into categories
  (PAGEIOLATCH_* → data I/O, WRITELOG → log I/O, SOS_SCHEDULER_YIELD → CPU, LCK_M_* →
  lock, ASYNC_NETWORK_IO → client …).
* ``sys.dm_os_performance_counters`` honouring ``cntr_type``: 272696576 cumulative →
  Δ/s; 65792 raw value; 537003264 value / its base (1073939712); 1073874176 Δvalue / Δbase.
* ``sys.dm_exec_sessions``: the run's sessions and all user sessions. The run's sessions
  are those whose ``program_name`` (the ``APP=`` keyword) is the run's prefix
  ``migration-bench <run id>`` or starts with it and a space (:mod:`migrator.session`).
* ``sys.dm_exec_requests``: what each of the run's sessions is doing at the sample — running
  (``cpu``) or waiting, its ``wait_type`` in the categories above. These per-session
  samples are ``server.wait.<category>.sessions``; the server-wide wait deltas stay as
  ``mssql.wait.*`` and ``mssql.server_wait.<category>.sessions``, and stand in for the
  per-session figures only when ``sys.dm_exec_requests`` cannot be read (``info["wait_source"]``).
* ``sys.dm_os_waiting_tasks`` with ``sys.dm_tran_locks``: while a run's session waits on a
  lock (``LCK_M_*``), who blocks it (``blocking_session_id``: program, login, host, the
  start of its request and transaction, its statement) and on which object.

Rates use the server's own clock (``ms_ticks`` / ``sample_ms``), so the time a query
takes to travel does not distort them — and recorded snapshots replay exactly in tests.
All of it needs VIEW SERVER STATE (SQL Server 2022: VIEW SERVER PERFORMANCE STATE);
without it the sampler says so once and the run continues with host sampling only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from diagnostics._dbapi import Connection, fetch_rows, sql_literal
from diagnostics.host import ServerLocation
from diagnostics.sampler import SamplerUnavailable, Value, counter_delta, ratio
from diagnostics.server import QUERY_CHARS, Blocker, DatabaseSampler

# --------------------------------------------------------------------------- queries

_CLOCK = "(SELECT ms_ticks FROM sys.dm_os_sys_info) AS ms_ticks"

PROBE_SQL = (
    "SELECT DB_NAME() AS database_name, CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))"
    " AS product_version, CAST(SERVERPROPERTY('Edition') AS NVARCHAR(128)) AS edition,"
    " cpu_count, ms_ticks FROM sys.dm_os_sys_info"
)

FILE_STATS_SQL = (
    "SELECT DB_NAME(vfs.database_id) AS database_name, mf.name AS logical_name,"
    " mf.type_desc, mf.physical_name, vfs.database_id, vfs.file_id, vfs.num_of_reads,"
    " vfs.num_of_bytes_read, vfs.io_stall_read_ms, vfs.num_of_writes,"
    " vfs.num_of_bytes_written, vfs.io_stall_write_ms, vfs.sample_ms"
    " FROM sys.dm_io_virtual_file_stats(NULL, NULL) AS vfs"
    " INNER JOIN sys.master_files AS mf"
    " ON mf.database_id = vfs.database_id AND mf.file_id = vfs.file_id"
)

WAIT_STATS_SQL = (
    "SELECT wait_type, waiting_tasks_count, wait_time_ms, signal_wait_time_ms, "
    + _CLOCK
    + " FROM sys.dm_os_wait_stats WHERE waiting_tasks_count > 0"
)

PERF_COUNTER_NAMES = (
    "Batch Requests/sec",
    "Transactions/sec",
    "Log Flushes/sec",
    "Log Bytes Flushed/sec",
    "Log Flush Waits/sec",
    "Logins/sec",
    "Logouts/sec",
    "Connection Reset/sec",
    "User Connections",
    "Lock Waits/sec",
    "Number of Deadlocks/sec",
    "Page reads/sec",
    "Page writes/sec",
    "Checkpoint pages/sec",
    "Page life expectancy",
    "Buffer cache hit ratio",
    "Buffer cache hit ratio base",
    "CPU usage %",
    "CPU usage % base",
    "Average Wait Time (ms)",
    "Average Wait Time Base",
)

PERF_COUNTERS_SQL = (
    "SELECT RTRIM(object_name) AS object_name, RTRIM(counter_name) AS counter_name,"
    " RTRIM(instance_name) AS instance_name, cntr_value, cntr_type, "
    + _CLOCK
    + " FROM sys.dm_os_performance_counters WHERE counter_name IN ("
    + ", ".join("N" + sql_literal(n) for n in PERF_COUNTER_NAMES)
    + ")"
)


def run_filter(program_name: str, alias: str = "") -> str:
    """T-SQL condition: the session is one of the run's (by ``program_name`` prefix)."""
    col = f"{alias}.program_name" if alias else "program_name"
    return (
        f"({col} = N{sql_literal(program_name)}"
        f" OR LEFT({col}, {len(program_name) + 1}) = N{sql_literal(program_name + ' ')})"
    )


def sessions_sql(program_name: str) -> str:
    return (
        "SELECT COUNT(*) AS sessions,"
        " COALESCE(SUM(CASE WHEN status = N'running' THEN 1 ELSE 0 END), 0) AS running,"
        " (SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE is_user_process = 1)"
        " AS user_sessions FROM sys.dm_exec_sessions"
        f" WHERE is_user_process = 1 AND session_id <> @@SPID AND {run_filter(program_name)}"
    )


def requests_sql(program_name: str) -> str:
    """The current request of each of the run's sessions (idle sessions have none)."""
    return (
        "SELECT r.session_id, r.status, r.command, COALESCE(r.wait_type, N'') AS wait_type,"
        " r.wait_time, COALESCE(r.blocking_session_id, 0) AS blocking_session_id"
        " FROM sys.dm_exec_requests AS r"
        " INNER JOIN sys.dm_exec_sessions AS s ON s.session_id = r.session_id"
        " WHERE s.is_user_process = 1 AND r.session_id <> @@SPID"
        f" AND {run_filter(program_name, 's')}"
    )


def blocking_sql(program_name: str) -> str:
    """Who blocks the run's waiting tasks, on what (object name of the lock's resource)."""
    return (
        "SELECT wt.session_id AS waiter, wt.wait_type, wt.wait_duration_ms,"
        " wt.blocking_session_id AS blocker,"
        " COALESCE(wt.resource_description, N'') AS resource_description,"
        " COALESCE(l.resource_type, N'') AS resource_type,"
        " COALESCE(l.request_mode, N'') AS request_mode,"
        " CASE WHEN l.resource_type = N'OBJECT'"
        " THEN OBJECT_NAME(l.resource_associated_entity_id, l.resource_database_id)"
        " WHEN l.resource_type IN (N'KEY', N'PAGE', N'RID', N'HOBT')"
        " THEN (SELECT TOP (1) OBJECT_NAME(p.object_id, l.resource_database_id)"
        " FROM sys.partitions AS p WHERE p.hobt_id = l.resource_associated_entity_id)"
        " END AS object_name,"
        " COALESCE(b.program_name, N'') AS blocker_program,"
        " COALESCE(b.login_name, N'') AS blocker_login,"
        " COALESCE(b.host_name, N'') AS blocker_host,"
        " COALESCE(b.status, N'') AS blocker_status,"
        " CONVERT(NVARCHAR(33), b.last_request_start_time, 126) AS blocker_request_start,"
        " (SELECT CONVERT(NVARCHAR(33), MIN(at.transaction_begin_time), 126)"
        " FROM sys.dm_tran_session_transactions AS st"
        " INNER JOIN sys.dm_tran_active_transactions AS at"
        " ON at.transaction_id = st.transaction_id"
        " WHERE st.session_id = wt.blocking_session_id) AS blocker_transaction_start,"
        f" LEFT(COALESCE(t.text, N''), {QUERY_CHARS}) AS blocker_query"
        " FROM sys.dm_os_waiting_tasks AS wt"
        " INNER JOIN sys.dm_exec_sessions AS s ON s.session_id = wt.session_id"
        " LEFT JOIN sys.dm_tran_locks AS l ON l.lock_owner_address = wt.resource_address"
        " LEFT JOIN sys.dm_exec_sessions AS b ON b.session_id = wt.blocking_session_id"
        " LEFT JOIN sys.dm_exec_connections AS c ON c.session_id = wt.blocking_session_id"
        " OUTER APPLY sys.dm_exec_sql_text(c.most_recent_sql_handle) AS t"
        " WHERE wt.blocking_session_id IS NOT NULL"
        " AND wt.blocking_session_id <> wt.session_id AND s.is_user_process = 1"
        f" AND {run_filter(program_name, 's')}"
    )


def all_queries(program_name: str = "migration-bench") -> dict[str, str]:
    """Every statement the sampler sends, by name (the tests parse each with sqlglot)."""
    return {
        "probe": PROBE_SQL,
        "file_stats": FILE_STATS_SQL,
        "wait_stats": WAIT_STATS_SQL,
        "perf_counters": PERF_COUNTERS_SQL,
        "sessions": sessions_sql(program_name),
        "requests": requests_sql(program_name),
        "blocking": blocking_sql(program_name),
    }


# --------------------------------------------------------------------------- waits

BENIGN_WAITS = frozenset(
    [
        "BROKER_EVENTHANDLER",
        "BROKER_RECEIVE_WAITFOR",
        "BROKER_TASK_STOP",
        "BROKER_TO_FLUSH",
        "BROKER_TRANSMITTER",
        "CHECKPOINT_QUEUE",
        "CHKPT",
        "CLR_AUTO_EVENT",
        "CLR_MANUAL_EVENT",
        "CLR_SEMAPHORE",
        "CXCONSUMER",
        "DBMIRROR_DBM_EVENT",
        "DBMIRROR_EVENTS_QUEUE",
        "DBMIRROR_WORKER_QUEUE",
        "DBMIRRORING_CMD",
        "DIRTY_PAGE_POLL",
        "DISPATCHER_QUEUE_SEMAPHORE",
        "EXECSYNC",
        "FSAGENT",
        "FT_IFTS_SCHEDULER_IDLE_WAIT",
        "FT_IFTSHC_MUTEX",
        "HADR_CLUSAPI_CALL",
        "HADR_FILESTREAM_IOMGR_IOCOMPLETION",
        "HADR_LOGCAPTURE_WAIT",
        "HADR_NOTIFICATION_DEQUEUE",
        "HADR_TIMER_TASK",
        "HADR_WORK_QUEUE",
        "KSOURCE_WAKEUP",
        "LAZYWRITER_SLEEP",
        "LOGMGR_QUEUE",
        "MEMORY_ALLOCATION_EXT",
        "ONDEMAND_TASK_QUEUE",
        "PARALLEL_REDO_DRAIN_WORKER",
        "PARALLEL_REDO_LOG_CACHE",
        "PARALLEL_REDO_TRAN_LIST",
        "PARALLEL_REDO_WORKER_SYNC",
        "PARALLEL_REDO_WORKER_WAIT_WORK",
        "PREEMPTIVE_HADR_LEASE_MECHANISM",
        "PREEMPTIVE_SP_SERVER_DIAGNOSTICS",
        "PREEMPTIVE_OS_LIBRARYOPS",
        "PREEMPTIVE_OS_COMOPS",
        "PREEMPTIVE_OS_CRYPTOPS",
        "PREEMPTIVE_OS_PIPEOPS",
        "PREEMPTIVE_OS_AUTHENTICATIONOPS",
        "PREEMPTIVE_OS_GENERICOPS",
        "PREEMPTIVE_OS_VERIFYTRUST",
        "PREEMPTIVE_OS_FILEOPS",
        "PREEMPTIVE_OS_DEVICEOPS",
        "PREEMPTIVE_OS_QUERYREGISTRY",
        "PREEMPTIVE_OS_WRITEFILE",
        "PREEMPTIVE_XE_CALLBACKEXECUTE",
        "PREEMPTIVE_XE_DISPATCHER",
        "PREEMPTIVE_XE_GETTARGETSTATE",
        "PREEMPTIVE_XE_SESSIONCOMMIT",
        "PREEMPTIVE_XE_TARGETINIT",
        "PREEMPTIVE_XE_TARGETFINALIZE",
        "PVS_PREALLOCATE",
        "PWAIT_ALL_COMPONENTS_INITIALIZED",
        "PWAIT_DIRECTLOGCONSUMER_GETNEXT",
        "PWAIT_EXTENSIBILITY_CLEANUP_TASK",
        "QDS_PERSIST_TASK_MAIN_LOOP_SLEEP",
        "QDS_ASYNC_QUEUE",
        "QDS_CLEANUP_STALE_QUERIES_TASK_MAIN_LOOP_SLEEP",
        "QDS_SHUTDOWN_QUEUE",
        "REDO_THREAD_PENDING_WORK",
        "REQUEST_FOR_DEADLOCK_SEARCH",
        "RESOURCE_QUEUE",
        "SERVER_IDLE_CHECK",
        "SLEEP_BPOOL_FLUSH",
        "SLEEP_DBSTARTUP",
        "SLEEP_DCOMSTARTUP",
        "SLEEP_MASTERDBREADY",
        "SLEEP_MASTERMDREADY",
        "SLEEP_MASTERUPGRADED",
        "SLEEP_MSDBSTARTUP",
        "SLEEP_SYSTEMTASK",
        "SLEEP_TASK",
        "SLEEP_TEMPDBSTARTUP",
        "SNI_HTTP_ACCEPT",
        "SOS_WORK_DISPATCHER",
        "SP_SERVER_DIAGNOSTICS_SLEEP",
        "SQLTRACE_BUFFER_FLUSH",
        "SQLTRACE_INCREMENTAL_FLUSH_SLEEP",
        "SQLTRACE_WAIT_ENTRIES",
        "VDI_CLIENT_OTHER",
        "WAIT_FOR_RESULTS",
        "WAITFOR",
        "WAITFOR_TASKSHUTDOWN",
        "WAIT_XTP_HOST_WAIT",
        "WAIT_XTP_OFFLINE_CKPT_NEW_LOG",
        "WAIT_XTP_CKPT_CLOSE",
        "WAIT_XTP_RECOVERY",
        "XE_BUFFERMGR_ALLPROCESSED_EVENT",
        "XE_DISPATCHER_JOIN",
        "XE_DISPATCHER_WAIT",
        "XE_LIVE_TARGET_TVF",
        "XE_TIMER_EVENT",
    ]
)
"""Idle and background waits that say nothing about a workload (Paul Randal's list, as
used by sp_BlitzFirst and dbatools' Get-DbaWaitStatistic)."""

_EXACT_CATEGORY = {
    "WRITELOG": "log_io",
    "LOGBUFFER": "log_io",
    "LOG_RATE_GOVERNOR": "log_io",
    "POOL_LOG_RATE_GOVERNOR": "log_io",
    "HADR_SYNC_COMMIT": "log_io",
    "IO_COMPLETION": "other_io",
    "ASYNC_IO_COMPLETION": "other_io",
    "WRITE_COMPLETION": "other_io",
    "BACKUPIO": "other_io",
    "SOS_SCHEDULER_YIELD": "cpu",
    "THREADPOOL": "cpu",
    "CXPACKET": "parallelism",
    "CXSYNC_PORT": "parallelism",
    "CXSYNC_CONSUMER": "parallelism",
    "ASYNC_NETWORK_IO": "client",
    "CMEMTHREAD": "memory",
    "RESOURCE_SEMAPHORE": "memory",
    "RESOURCE_SEMAPHORE_QUERY_COMPILE": "memory",
    "OLEDB": "network",
    "MSQL_DQ": "network",
}
_PREFIX_CATEGORY = (
    ("PAGEIOLATCH_", "data_io"),
    ("LCK_M_", "lock"),
    ("PAGELATCH_", "latch"),
    ("LATCH_", "latch"),
    ("PREEMPTIVE_", "other"),
)


def request_category(status: str, wait_type: str) -> str | None:
    """Category of one ``sys.dm_exec_requests`` row: running or runnable (waiting for a
    CPU) is ``cpu``; a suspended request is its wait's category; None when not working."""
    status = status.strip().lower()
    if status in ("running", "runnable"):
        return "cpu" if not wait_type or status == "runnable" else wait_category(wait_type)
    if status == "suspended" and wait_type:
        return wait_category(wait_type)
    return None


def wait_category(wait_type: str) -> str | None:
    """Neutral category of a SQL Server wait type; ``None`` for a benign wait."""
    if wait_type in BENIGN_WAITS:
        return None
    if wait_type in _EXACT_CATEGORY:
        return _EXACT_CATEGORY[wait_type]
    for prefix, category in _PREFIX_CATEGORY:
        if wait_type.startswith(prefix):
            return category
    return "other"


# --------------------------------------------------------------------------- readings


class FileIo(NamedTuple):
    """One database file over one interval (from ``sys.dm_io_virtual_file_stats``)."""

    database: str
    logical_name: str
    kind: str  # ROWS or LOG
    reads: float
    writes: float
    read_bytes: float
    write_bytes: float
    read_stall_ms: float
    write_stall_ms: float
    interval_s: float

    @property
    def read_latency_ms(self) -> float | None:
        return ratio(self.read_stall_ms, self.reads)

    @property
    def write_latency_ms(self) -> float | None:
        return ratio(self.write_stall_ms, self.writes)


class WaitDelta(NamedTuple):
    """One wait type over one interval (from ``sys.dm_os_wait_stats``)."""

    wait_type: str
    category: str
    waits: float
    wait_ms: float
    signal_ms: float
    interval_s: float

    @property
    def avg_wait_ms(self) -> float | None:
        return ratio(self.wait_ms, self.waits)


PERF_COUNTER_RAW = 65792  # PERF_COUNTER_LARGE_RAWCOUNT: use as is
PERF_COUNTER_BULK = 272696576  # PERF_COUNTER_BULK_COUNT: cumulative, Δ/s
PERF_RAW_FRACTION = 537003264  # PERF_LARGE_RAW_FRACTION: value / base
PERF_AVERAGE_BULK = 1073874176  # PERF_AVERAGE_BULK: Δvalue / Δbase
PERF_RAW_BASE = 1073939712  # PERF_LARGE_RAW_BASE: the base of the two above


def file_deltas(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[FileIo]:
    """Per-file I/O between two ``dm_io_virtual_file_stats`` snapshots.

    Δt comes from ``sample_ms`` (the server's clock). A file absent before (database
    created meanwhile) counts from zero; a counter that went down counts from its reset.
    """
    old = {(r["database_id"], r["file_id"]): r for r in before}
    out: list[FileIo] = []
    for row in after:
        prev = old.get((row["database_id"], row["file_id"]))
        if prev is None:
            continue
        elapsed_ms = counter_delta(float(prev["sample_ms"]), float(row["sample_ms"]))
        if elapsed_ms <= 0:
            continue

        def d(col: str, prev: Mapping[str, Any] = prev, row: Mapping[str, Any] = row) -> float:
            return counter_delta(float(prev[col]), float(row[col]))

        out.append(
            FileIo(
                database=str(row["database_name"]),
                logical_name=str(row["logical_name"]),
                kind=str(row["type_desc"]),
                reads=d("num_of_reads"),
                writes=d("num_of_writes"),
                read_bytes=d("num_of_bytes_read"),
                write_bytes=d("num_of_bytes_written"),
                read_stall_ms=d("io_stall_read_ms"),
                write_stall_ms=d("io_stall_write_ms"),
                interval_s=elapsed_ms / 1000.0,
            )
        )
    return out


def wait_deltas(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> tuple[list[WaitDelta], int]:
    """Non-benign wait deltas between two snapshots, and how many counters were reset.

    A wait type missing before had a zero count (the query skips zero rows). When the
    stats were cleared (``DBCC SQLPERF('sys.dm_os_wait_stats', CLEAR)``), the new values
    are what accumulated since the clear.
    """
    if not before or not after:
        return [], 0
    elapsed_ms = counter_delta(float(before[0]["ms_ticks"]), float(after[0]["ms_ticks"]))
    if elapsed_ms <= 0:
        return [], 0
    old = {r["wait_type"]: r for r in before}
    resets = 0
    out: list[WaitDelta] = []
    for row in after:
        wait_type = str(row["wait_type"])
        category = wait_category(wait_type)
        if category is None:
            continue
        prev = old.get(wait_type)
        if prev is not None and float(row["wait_time_ms"]) < float(prev["wait_time_ms"]):
            resets += 1

        def d(
            col: str, prev: Mapping[str, Any] | None = prev, row: Mapping[str, Any] = row
        ) -> float:
            return counter_delta(float(prev[col]) if prev else 0.0, float(row[col]))

        waits, wait_ms = d("waiting_tasks_count"), d("wait_time_ms")
        if waits == 0 and wait_ms == 0:
            continue
        out.append(
            WaitDelta(
                wait_type, category, waits, wait_ms, d("signal_wait_time_ms"), elapsed_ms / 1000
            )
        )
    return out, resets


class CounterValue(NamedTuple):
    """A performance counter over one interval, per its ``cntr_type``."""

    object_name: str
    counter_name: str
    instance_name: str
    value: float | None
    kind: str  # rate, raw, ratio, average


def _base_name(counter: str) -> str:
    """The base counter's name: "CPU usage %" → "cpu usage % base",
    "Average Wait Time (ms)" → "average wait time base"."""
    return re.sub(r"\s*\(ms\)", "", counter.lower()).strip() + " base"


def counter_values(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[CounterValue]:
    """Interpret ``dm_os_performance_counters`` rows by ``cntr_type``.

    ``object_name`` is shortened to the part after ``:`` (``MSSQL$SQLEXPRESS:Databases``
    → ``Databases``) so default and named instances read alike. Rates need ``before``.
    """

    def key(r: Mapping[str, Any]) -> tuple[str, str, str]:
        obj = str(r["object_name"]).split(":", 1)[-1].strip()
        return obj, str(r["counter_name"]).strip(), str(r["instance_name"]).strip()

    now = {key(r): r for r in after}
    then = {key(r): r for r in before}
    bases = {
        (k[0], k[1].lower(), k[2]): (k, r)
        for k, r in now.items()
        if int(r["cntr_type"]) == PERF_RAW_BASE
    }
    elapsed_s: float | None = None
    if before and after:
        ms = counter_delta(float(before[0]["ms_ticks"]), float(after[0]["ms_ticks"]))
        elapsed_s = ms / 1000.0 if ms > 0 else None
    out: list[CounterValue] = []
    for k, row in now.items():
        kind_code = int(row["cntr_type"])
        value = float(row["cntr_value"])
        obj, name, inst = k
        if kind_code == PERF_COUNTER_RAW:
            out.append(CounterValue(obj, name, inst, value, "raw"))
        elif kind_code == PERF_COUNTER_BULK:
            prev = then.get(k)
            rate = None
            if prev is not None and elapsed_s:
                rate = counter_delta(float(prev["cntr_value"]), value) / elapsed_s
            out.append(CounterValue(obj, name, inst, rate, "rate"))
        elif kind_code in (PERF_RAW_FRACTION, PERF_AVERAGE_BULK):
            found = bases.get((obj, _base_name(name), inst))
            if found is None:
                continue
            base_key, base = found
            if kind_code == PERF_RAW_FRACTION:
                frac = ratio(value, float(base["cntr_value"]))
                pct = None if frac is None else 100.0 * frac
                out.append(CounterValue(obj, name, inst, pct, "ratio"))
            else:
                prev, prev_base = then.get(k), then.get(base_key)
                avg = None
                if prev is not None and prev_base is not None:
                    avg = ratio(
                        counter_delta(float(prev["cntr_value"]), value),
                        counter_delta(float(prev_base["cntr_value"]), float(base["cntr_value"])),
                    )
                out.append(CounterValue(obj, name, inst, avg, "average"))
    return out


# --------------------------------------------------------------------------- sampler

_PERMISSION = re.compile(r"VIEW SERVER (PERFORMANCE )?STATE|\(300\)", re.IGNORECASE)

PERMISSION_WARNING = (
    "SQL Server sampling is off: the login lacks VIEW SERVER STATE (SQL Server 2022: VIEW "
    "SERVER PERFORMANCE STATE), which the DMVs need. Grant it with "
    "`GRANT VIEW SERVER STATE TO [login]`; sampling continues with host figures only."
)


def is_permission_error(exc: BaseException) -> bool:
    return bool(_PERMISSION.search(str(exc)))


class MssqlSampler(DatabaseSampler):
    """Samples SQL Server DMVs through its own (pyodbc) connection."""

    dialect: ClassVar[str] = "mssql"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._previous: dict[str, list[dict[str, Any]]] = {}
        self.files: list[FileIo] = []
        self.waits: list[WaitDelta] = []
        self.perf: list[CounterValue] = []
        self.resets = 0
        self.physical_names: tuple[str, ...] = ()

    def probe(self) -> None:
        assert self.conn is not None
        try:
            row = fetch_rows(self.conn, PROBE_SQL)[0]
        except Exception as exc:
            if is_permission_error(exc):
                raise SamplerUnavailable(PERMISSION_WARNING) from exc
            raise SamplerUnavailable(f"cannot query SQL Server DMVs: {exc}") from exc
        if self.database is None:
            self.database = str(row["database_name"])
        self.facts.update(
            database=self.database,
            product_version=str(row["product_version"]),
            edition=str(row["edition"]),
            cpu_count=int(row["cpu_count"]),
        )

    def server_location(self) -> ServerLocation:
        return ServerLocation(pid=None, data_paths=self.physical_names)

    def read(self, conn: Connection) -> dict[str, Value]:
        snap = {
            "file_stats": fetch_rows(conn, FILE_STATS_SQL),
            "wait_stats": fetch_rows(conn, WAIT_STATS_SQL),
            "perf_counters": fetch_rows(conn, PERF_COUNTERS_SQL),
            "sessions": fetch_rows(conn, sessions_sql(self.program_name)),
        }
        requests: list[dict[str, Any]] | None
        try:
            requests = fetch_rows(conn, requests_sql(self.program_name))
        except Exception as exc:  # server-wide waits stand in (see the module doc)
            requests = None
            self.facts["wait_source"] = (
                f"server-wide (sys.dm_os_wait_stats): sys.dm_exec_requests failed: {exc}")
        prev = self._previous
        self._previous = snap
        if not self.physical_names:
            self.physical_names = tuple(
                str(r["physical_name"])
                for r in snap["file_stats"]
                if r.get("database_name") == self.database and r.get("physical_name")
            )
        self.files = file_deltas(prev.get("file_stats", []), snap["file_stats"])
        self.waits, resets = wait_deltas(prev.get("wait_stats", []), snap["wait_stats"])
        self.resets += resets
        self.perf = counter_values(prev.get("perf_counters", []), snap["perf_counters"])
        out: dict[str, Value] = {}
        out.update(self._file_metrics())
        server_wide = self._wait_metrics(bool(prev))
        out.update(server_wide)
        out.update(self._counter_metrics())
        sess = snap["sessions"][0] if snap["sessions"] else {}
        out["server.sessions"] = float(sess.get("sessions") or 0)
        out["server.active.sessions"] = float(sess.get("running") or 0)
        out["mssql.user_sessions"] = float(sess.get("user_sessions") or 0)
        if requests is not None:
            self.facts["wait_source"] = "the run's sessions (sys.dm_exec_requests)"
            for key in [k for k in server_wide if k.startswith("server.wait.")]:
                category = key[len("server.wait."):]
                out[f"mssql.server_wait.{category}"] = out.pop(key)
            out.update(self._session_waits(conn, requests))
        return out

    def _session_waits(self, conn: Connection, requests: list[dict[str, Any]]) -> dict[str, Value]:
        counts = dict.fromkeys(("cpu", "data_io", "log_io", "other_io", "lock", "latch",
                                "client"), 0)
        blocked = False
        for row in requests:
            category = request_category(str(row["status"] or ""), str(row["wait_type"] or ""))
            if category is None:
                continue
            counts[category] = counts.get(category, 0) + 1
            blocked = blocked or (category == "lock" and int(row["blocking_session_id"] or 0) > 0)
        out: dict[str, Value] = {f"server.wait.{c}.sessions": float(n) for c, n in counts.items()}
        out["server.active.sessions"] = float(sum(counts.values()))
        if blocked:  # (only then: the blocking query joins several DMVs)
            self._find_blockers(conn)
        return out

    def _find_blockers(self, conn: Connection) -> None:
        now = self.now()
        seen: dict[tuple[str, str], tuple[Blocker, set[int]]] = {}
        for row in fetch_rows(conn, blocking_sql(self.program_name)):
            what = str(row.get("object_name") or "") or str(row["resource_description"])
            kind = str(row["resource_type"] or "").lower()
            found = Blocker(
                session=str(row["blocker"]),
                application=str(row["blocker_program"]),
                user=str(row["blocker_login"]),
                client=str(row["blocker_host"]),
                state=str(row["blocker_status"]),
                query_start=str(row.get("blocker_request_start") or ""),
                transaction_start=str(row.get("blocker_transaction_start") or ""),
                query=" ".join(str(row["blocker_query"]).split()),
                object=(f"{kind} of {what}" if kind not in ("", "object") and what
                        else f"table {what}" if what else kind),
                lock_mode=str(row["request_mode"] or row["wait_type"]),
            )
            entry = seen.setdefault((found.session, found.object), (found, set()))
            entry[1].add(int(row["waiter"]))
        for found, waiting in seen.values():
            self.note_blocker(found, len(waiting), now)

    def _file_metrics(self) -> dict[str, Value]:
        out: dict[str, Value] = {}
        totals: dict[str, list[float]] = {}
        for f in self.files:
            stem = f"mssql.file.{f.database}.{f.logical_name}"
            out[f"{stem}.reads_per_s"] = f.reads / f.interval_s
            out[f"{stem}.writes_per_s"] = f.writes / f.interval_s
            out[f"{stem}.read_bytes_per_s"] = f.read_bytes / f.interval_s
            out[f"{stem}.write_bytes_per_s"] = f.write_bytes / f.interval_s
            out[f"{stem}.read_latency_ms"] = f.read_latency_ms
            out[f"{stem}.write_latency_ms"] = f.write_latency_ms
            if f.database != self.database:
                continue
            part = "log" if f.kind == "LOG" else "data"
            acc = totals.setdefault(part, [0.0] * 7)
            for i, v in enumerate(
                (f.reads, f.writes, f.read_bytes, f.write_bytes, f.read_stall_ms, f.write_stall_ms)
            ):
                acc[i] += v
            acc[6] = f.interval_s
        for part, (reads, writes, rbytes, wbytes, rstall, wstall, span) in totals.items():
            out[f"server.{part}.reads_per_s"] = reads / span
            out[f"server.{part}.writes_per_s"] = writes / span
            out[f"server.{part}.read_bytes_per_s"] = rbytes / span
            out[f"server.{part}.write_bytes_per_s"] = wbytes / span
            out[f"server.{part}.read_latency_ms"] = ratio(rstall, reads)
            out[f"server.{part}.write_latency_ms"] = ratio(wstall, writes)
        return out

    def _wait_metrics(self, have_interval: bool) -> dict[str, Value]:
        """Server-wide wait deltas: ``server.wait.<category>.sessions`` as Δwait / Δt."""
        out: dict[str, Value] = {}
        if not have_interval:
            return out
        per_category: dict[str, float] = dict.fromkeys(
            ("cpu", "data_io", "log_io", "other_io", "lock", "latch", "client"), 0.0
        )
        for w in self.waits:
            per_category[w.category] = per_category.get(w.category, 0.0) + w.wait_ms / (
                w.interval_s * 1000.0
            )
            out[f"mssql.wait.{w.wait_type}.ms_per_s"] = w.wait_ms / w.interval_s
            out[f"mssql.wait.{w.wait_type}.avg_ms"] = w.avg_wait_ms
        for category, sessions in per_category.items():
            out[f"server.wait.{category}.sessions"] = sessions
        signal = sum(w.signal_ms for w in self.waits)
        total = sum(w.wait_ms for w in self.waits)
        if self.waits:
            out["mssql.signal_wait_pct"] = 100.0 * signal / total if total else None
        lock_waits = sum(w.waits for w in self.waits if w.category == "lock")
        if self.waits:
            out["mssql.lock_waits_started_per_s"] = lock_waits / self.waits[0].interval_s
        return out

    def _counter_metrics(self) -> dict[str, Value]:
        out: dict[str, Value] = {}
        db_instance = self.database or "_Total"
        for c in self.perf:
            if c.object_name == "Databases" and c.instance_name not in (db_instance, "_Total"):
                continue
            if c.object_name == "Resource Pool Stats" and c.instance_name != "default":
                continue
            slug = re.sub(r"[^a-z0-9]+", "_", c.counter_name.lower()).strip("_")
            suffix = {"rate": "per_s", "ratio": "pct", "average": "avg", "raw": ""}[c.kind]
            if c.kind == "rate" and slug.endswith("_sec"):
                slug = slug[: -len("_sec")]
            inst = f".{c.instance_name}" if c.instance_name else ""
            name = f"mssql.counter.{c.object_name.replace(' ', '_')}{inst}.{slug}"
            out[f"{name}_{suffix}" if suffix else name] = c.value

        def pick(obj: str, counter: str, instance: str = "") -> float | None:
            for c in self.perf:
                if (c.object_name, c.counter_name, c.instance_name) == (obj, counter, instance):
                    return c.value
            return None

        out["server.cpu_pct"] = pick("Resource Pool Stats", "CPU usage %", "default")
        out["server.batches_per_s"] = pick("SQL Statistics", "Batch Requests/sec")
        out["server.commits_per_s"] = pick("Databases", "Transactions/sec", db_instance)
        out["server.log.flushes_per_s"] = pick("Databases", "Log Flushes/sec", db_instance)
        out["server.log.bytes_per_s"] = pick("Databases", "Log Bytes Flushed/sec", db_instance)
        out["server.logins_per_s"] = pick("General Statistics", "Logins/sec")
        out["server.connection_resets_per_s"] = pick("General Statistics", "Connection Reset/sec")
        out["server.connections"] = pick("General Statistics", "User Connections")
        out["server.lock_waits_per_s"] = pick("Locks", "Lock Waits/sec", "_Total")
        return out
