"""PostgreSQL sampler: ``pg_stat_database``, ``pg_stat_wal``, bgwriter/checkpointer,
``pg_stat_io`` (16+) and wait events of the run's backends from ``pg_stat_activity``.

The run's backends are those whose ``application_name`` is the run's prefix
(``migration-bench <run id>``, see :mod:`migrator.session`) or starts with it and a space
(``… copy`` for the COPY sessions). Their ``wait_event_type`` (Lock, LWLock, IO, Client,
IPC …) is classified by :func:`wait_category`; while one of them waits on a ``Lock``, the
sampler asks ``pg_blocking_pids()`` and ``pg_locks`` who holds it and on what relation.

Version differences handled: ``pg_stat_wal`` exists from 14 (before, WAL bytes come from
``pg_current_wal_lsn()``); 17 moved checkpoint counters to ``pg_stat_checkpointer``; 18
moved WAL write/sync counts and times from ``pg_stat_wal`` to ``pg_stat_io``. WAL and data
latencies need ``track_wal_io_timing`` / ``track_io_timing`` (reported in ``info``).
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, NamedTuple

from diagnostics._dbapi import Connection, fetch_rows, sql_literal
from diagnostics.host import ServerLocation
from diagnostics.sampler import SamplerUnavailable, Value, ratio
from diagnostics.server import QUERY_CHARS, Blocker, DatabaseSampler


class PgQueries(NamedTuple):
    """The statements one server version needs (``None``: not available there)."""

    database: str
    wal: str | None
    wal_io: str | None
    wal_lsn: str
    checkpointer: str
    bgwriter: str | None
    io: str | None


DATABASE_SQL = (
    "SELECT numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_inserted,"
    " tup_updated, tup_deleted, blk_read_time, blk_write_time, temp_bytes, deadlocks"
    " FROM pg_stat_database WHERE datname = current_database()"
)
WAL_LSN_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal_lsn_bytes"


def queries_for(version_num: int) -> PgQueries:
    """Statements for ``server_version_num`` (e.g. 150004)."""
    wal: str | None
    wal_io: str | None
    if version_num >= 180000:
        wal = "SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full FROM pg_stat_wal"
        wal_io = (
            "SELECT sum(writes) AS wal_write, sum(fsyncs) AS wal_sync,"
            " sum(write_time) AS wal_write_time, sum(fsync_time) AS wal_sync_time"
            " FROM pg_stat_io WHERE object = 'wal'"
        )
    elif version_num >= 140000:
        wal = (
            "SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full, wal_write, wal_sync,"
            " wal_write_time, wal_sync_time FROM pg_stat_wal"
        )
        wal_io = None
    else:
        wal, wal_io = None, None
    if version_num >= 170000:
        checkpointer = (
            "SELECT num_timed AS checkpoints_timed, num_requested AS checkpoints_req,"
            " write_time AS checkpoint_write_time, sync_time AS checkpoint_sync_time,"
            " buffers_written AS buffers_checkpoint FROM pg_stat_checkpointer"
        )
        bgwriter: str | None = (
            "SELECT buffers_clean, maxwritten_clean, buffers_alloc FROM pg_stat_bgwriter"
        )
    else:
        checkpointer = (
            "SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time,"
            " checkpoint_sync_time, buffers_checkpoint, buffers_clean, maxwritten_clean,"
            " buffers_backend, buffers_backend_fsync, buffers_alloc FROM pg_stat_bgwriter"
        )
        bgwriter = None
    io = None
    if version_num >= 160000:
        io = (
            "SELECT backend_type, object, coalesce(sum(reads), 0) AS reads,"
            " coalesce(sum(writes), 0) AS writes, coalesce(sum(extends), 0) AS extends,"
            " coalesce(sum(fsyncs), 0) AS fsyncs, coalesce(sum(read_time), 0) AS read_time,"
            " coalesce(sum(write_time), 0) AS write_time"
            " FROM pg_stat_io GROUP BY backend_type, object"
        )
    return PgQueries(DATABASE_SQL, wal, wal_io, WAL_LSN_SQL, checkpointer, bgwriter, io)


def activity_sql(program_name: str | None) -> str:
    """State and wait event of each client backend of the run in our database (of every
    client backend there when ``program_name`` is None); never the sampler's own."""
    app = ""
    if program_name:
        app = (
            f" AND (application_name = {sql_literal(program_name)}"
            f" OR left(application_name, {len(program_name) + 1})"
            f" = {sql_literal(program_name + ' ')})"
        )
    return (
        "SELECT pid, coalesce(wait_event_type, '') AS wait_event_type,"
        " coalesce(wait_event, '') AS wait_event, coalesce(state, '') AS state"
        " FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        f" AND datname = current_database(){app}"
    )


_PG_TIME = "YYYY-MM-DD HH24:MI:SS TZ"


def blockers_sql(waiting_pids: list[int]) -> str:
    """Who holds the locks the given backends wait for, and on what: one row per (waiting
    lock, blocking backend), from ``pg_locks`` and ``pg_blocking_pids()``."""
    pids = ", ".join(str(int(p)) for p in waiting_pids)
    return (
        "SELECT w.pid AS waiter, w.mode AS wanted_mode,"
        " CASE WHEN w.relation IS NOT NULL THEN 'table ' || w.relation::regclass::text"
        " WHEN w.transactionid IS NOT NULL"
        " THEN 'a row lock (transaction ' || w.transactionid::text || ')'"
        " ELSE w.locktype END AS object,"
        " b.pid AS blocker, coalesce(b.application_name, '') AS application,"
        " coalesce(b.usename::text, '') AS usr,"
        " coalesce(host(b.client_addr), CASE WHEN b.pid IS NOT NULL"
        " THEN 'local socket' END, '') AS client,"
        " coalesce(b.state, '') AS state,"
        f" coalesce(to_char(b.query_start, '{_PG_TIME}'), '') AS query_start,"
        f" coalesce(to_char(b.xact_start, '{_PG_TIME}'), '') AS xact_start,"
        " extract(epoch FROM now() - b.xact_start) AS xact_age_s,"
        f" left(coalesce(b.query, ''), {QUERY_CHARS}) AS query,"
        " coalesce((SELECT string_agg(DISTINCT h.mode, ', ') FROM pg_locks h"
        " WHERE h.pid = bp.pid AND h.granted AND w.relation IS NOT NULL"
        " AND h.relation = w.relation), '') AS held_mode"
        " FROM pg_locks w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)"
        " LEFT JOIN pg_stat_activity b ON b.pid = bp.pid"
        f" WHERE NOT w.granted AND w.pid IN ({pids})"
    )


_DATA_IO_EVENTS = frozenset(
    {
        "DataFileRead",
        "DataFilePrefetch",
        "DataFileWrite",
        "DataFileExtend",
        "DataFileFlush",
        "DataFileSync",
        "DataFileImmediateSync",
        "DataFileTruncate",
        "RelationMapRead",
        "RelationMapWrite",
    }
)
_LOG_LWLOCKS = frozenset({"WALWrite", "WALInsert", "WALBufMapping", "WALWriteLock"})
_BUSY_STATES = frozenset({"active", "idle in transaction", "idle in transaction (aborted)"})


def wait_category(event_type: str, event: str, state: str) -> str | None:
    """Map a ``pg_stat_activity`` wait onto a neutral category; ``None`` = not working.

    An active backend with no wait event is running on CPU. ``idle`` backends are not
    counted; ``idle in transaction`` ones waiting on ``ClientRead`` are waiting for us.
    """
    if state not in _BUSY_STATES:
        return None
    if not event_type:
        return "cpu" if state == "active" else None
    if event_type == "IO":
        if event.startswith("WAL"):
            return "log_io"
        return "data_io" if event in _DATA_IO_EVENTS else "other_io"
    if event_type == "LWLock":
        return "log_io" if event in _LOG_LWLOCKS else "latch"
    if event_type == "Lock":
        return "lock"
    if event_type == "BufferPin":
        return "latch"
    if event_type == "Client":
        return "client"
    if event_type == "IPC" and event == "SyncRep":
        return "log_io"
    if event_type in ("Activity", "Timeout", "Extension"):
        return "other"
    return "other"


class PostgresSampler(DatabaseSampler):
    """Samples one PostgreSQL server through its own connection (psycopg or pyodbc)."""

    dialect: ClassVar[str] = "postgresql"

    def probe(self) -> None:
        assert self.conn is not None
        try:
            row = fetch_rows(
                self.conn,
                "SELECT current_setting('server_version_num')::int AS version_num,"
                " current_setting('server_version') AS version,"
                " current_setting('track_io_timing') AS track_io_timing,"
                " pg_backend_pid() AS backend_pid, current_database() AS database",
            )[0]
        except Exception as exc:
            raise SamplerUnavailable(f"cannot read PostgreSQL settings: {exc}") from exc
        self.version_num = int(row["version_num"])
        self.queries = queries_for(self.version_num)
        self.backend_pid = int(row["backend_pid"])
        self.facts.update(
            server_version=str(row["version"]),
            database=str(row["database"]),
            track_io_timing=str(row["track_io_timing"]),
        )
        if self.version_num >= 140000:
            wal_timing = fetch_rows(self.conn, "SHOW track_wal_io_timing")[0]
            self.facts["track_wal_io_timing"] = str(next(iter(wal_timing.values())))
        sync_method = fetch_rows(self.conn, "SHOW wal_sync_method")[0]
        self.facts["wal_sync_method"] = str(next(iter(sync_method.values())))
        try:
            self.facts["data_directory"] = str(
                fetch_rows(self.conn, "SHOW data_directory")[0]["data_directory"]
            )
        except Exception:  # needs superuser or pg_read_all_settings
            self.conn.rollback()
        try:
            self.facts["reads_all_stats"] = bool(
                fetch_rows(
                    self.conn,
                    "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                    " OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS ok",
                )[0]["ok"]
            )
        except Exception:
            self.conn.rollback()
        self._activity_sql = activity_sql(self.program_name or None)

    def server_location(self) -> ServerLocation:
        """The postmaster is the parent of our backend — when the server runs here."""
        pid: int | None = None
        try:
            import psutil

            backend = psutil.Process(self.backend_pid)
            if "postgres" in backend.name() or "postmaster" in backend.name():
                pid = backend.ppid()
        except Exception:
            pid = None
        path = self.facts.get("data_directory")
        return ServerLocation(pid=pid, data_paths=(str(path),) if path else ())

    def read(self, conn: Connection) -> dict[str, Value]:
        now = self.now()
        q = self.queries
        out: dict[str, Value] = {}
        db = _first(fetch_rows(conn, q.database))
        out["server.connections"] = _num(db.get("numbackends"))
        d = self.deltas(
            "db",
            {k: _num(v) for k, v in db.items() if k != "numbackends"},
            now,
        )
        for key, got in d.items():
            if got is not None and not key.endswith("_time"):
                out[f"pg.db.{key}_per_s"] = got[0] / got[1]
        out["server.commits_per_s"] = out.get("pg.db.xact_commit_per_s")
        out["server.rows_inserted_per_s"] = out.get("pg.db.tup_inserted_per_s")
        out["server.data.reads_per_s"] = out.get("pg.db.blks_read_per_s")
        reads, read_time = d.get("blks_read"), d.get("blk_read_time")
        hits = d.get("blks_hit")
        if reads and read_time and self.facts.get("track_io_timing") == "on":
            out["server.data.read_latency_ms"] = ratio(read_time[0], reads[0])
        if reads and hits:
            out["pg.db.cache_hit_pct"] = _pct(hits[0], hits[0] + reads[0])

        lsn = _first(fetch_rows(conn, q.wal_lsn))
        lsn_rate = self.counters("wal", {"lsn_bytes": _num(lsn.get("wal_lsn_bytes"))}, now)
        out["server.log.bytes_per_s"] = lsn_rate.get("wal.lsn_bytes_per_s")
        if q.wal is not None:
            wal = _first(fetch_rows(conn, q.wal))
            if q.wal_io is not None:
                wal.update(_first(fetch_rows(conn, q.wal_io)))
            w = self.deltas("wal", {k: _num(v) for k, v in wal.items()}, now)
            for key, got in w.items():
                if got is not None and not key.endswith("_time"):
                    out[f"pg.wal.{key}_per_s"] = got[0] / got[1]
            out["server.log.bytes_per_s"] = out.get("pg.wal.wal_bytes_per_s")
            writes_sync = _writes_are_flushes(str(self.facts.get("wal_sync_method", "")))
            out["server.log.flushes_per_s"] = out.get(
                "pg.wal.wal_write_per_s" if writes_sync else "pg.wal.wal_sync_per_s")
            if self.facts.get("track_wal_io_timing") == "on":
                syncs, sync_time = w.get("wal_sync"), w.get("wal_sync_time")
                writes, write_time = w.get("wal_write"), w.get("wal_write_time")
                if writes and write_time:
                    out["pg.wal.write_latency_ms"] = ratio(write_time[0], writes[0])
                if writes_sync:  # each write is durable by itself (wal_sync stays 0)
                    out["server.log.write_latency_ms"] = out.get("pg.wal.write_latency_ms")
                elif syncs and sync_time:
                    out["pg.wal.sync_latency_ms"] = ratio(sync_time[0], syncs[0])
                if not writes_sync and syncs and sync_time and write_time:
                    # one durable flush = its write() plus its fsync()
                    out["server.log.write_latency_ms"] = ratio(
                        write_time[0] + sync_time[0], syncs[0]
                    )

        ckpt = _first(fetch_rows(conn, q.checkpointer))
        if q.bgwriter is not None:
            ckpt.update(_first(fetch_rows(conn, q.bgwriter)))
        out.update(
            self.counters(
                "pg.bgwriter",
                {k: _num(v) for k, v in ckpt.items() if not k.endswith("_time")},
                now,
            )
        )

        if q.io is not None:
            io_counters: dict[str, float | None] = {}
            for row in fetch_rows(conn, q.io):
                stem = f"{_slug(row['backend_type'])}.{_slug(row['object'])}"
                for op in ("reads", "writes", "extends", "fsyncs"):
                    io_counters[f"{stem}.{op}"] = _num(row[op])
            out.update({k: v for k, v in self.counters("pg.io", io_counters, now).items() if v})

        out.update(self._waits(conn))
        return out

    def _waits(self, conn: Connection) -> dict[str, Value]:
        categories: Counter[str] = Counter()
        events: Counter[str] = Counter()
        sessions = 0
        lock_waiters: list[int] = []
        for row in fetch_rows(conn, self._activity_sql):
            sessions += 1
            category = wait_category(row["wait_event_type"], row["wait_event"], row["state"])
            if category is None:
                continue
            categories[category] += 1
            label = (
                f"{row['wait_event_type']}:{row['wait_event']}" if row["wait_event_type"] else "CPU"
            )
            events[label] += 1
            if category == "lock":
                lock_waiters.append(int(row["pid"]))
        if lock_waiters:  # (only then: pg_blocking_pids() is not free)
            self._find_blockers(conn, lock_waiters)
        out: dict[str, Value] = {"server.sessions": float(sessions)}
        out["server.active.sessions"] = float(sum(categories.values()))
        for category in (
            "cpu",
            "data_io",
            "log_io",
            "lock",
            "latch",
            "client",
            "other_io",
            "other",
        ):
            out[f"server.wait.{category}.sessions"] = float(categories.get(category, 0))
        for label, n in events.items():
            out[f"pg.wait.{label}.sessions"] = float(n)
        return out


    def _find_blockers(self, conn: Connection, waiters: list[int]) -> None:
        now = self.now()
        seen: dict[tuple[str, str], tuple[Blocker, set[int]]] = {}
        for row in fetch_rows(conn, blockers_sql(waiters)):
            if row["blocker"] is None:
                continue
            age = _num(row["xact_age_s"])
            found = Blocker(
                session=str(row["blocker"]),
                id_label="pid",
                application=str(row["application"]),
                user=str(row["usr"]),
                client=str(row["client"]),
                state=str(row["state"]),
                query_start=str(row["query_start"]),
                transaction_start=str(row["xact_start"]),
                transaction_age_s=round(age, 3) if age is not None else None,
                query=" ".join(str(row["query"]).split()),
                object=str(row["object"]),
                lock_mode=str(row["wanted_mode"]),
                held_mode=str(row["held_mode"]),
            )
            entry = seen.setdefault((found.session, found.object), (found, set()))
            entry[1].add(int(row["waiter"]))
        for found, waiting in seen.values():
            self.note_blocker(found, len(waiting), now)


def _writes_are_flushes(wal_sync_method: str) -> bool:
    """``open_datasync``/``open_sync`` open the WAL with O_DSYNC/O_SYNC: every write is a
    durable flush and ``pg_stat_wal.wal_sync`` counts none of them."""
    return wal_sync_method.startswith("open_")


def _first(rows: list[dict[str, object]]) -> dict[str, object]:
    return dict(rows[0]) if rows else {}


def _num(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole > 0 else None


def _slug(value: object) -> str:
    return str(value).replace(" ", "_")
