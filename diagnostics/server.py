"""What every database sampler shares: its own connection, counters, facts and waits.

Dialect modules (:mod:`diagnostics.mssql`, :mod:`diagnostics.postgresql`,
:mod:`diagnostics.mysql`) subclass :class:`DatabaseSampler` and override ``probe`` and
``read``. Metrics common to all dialects use the ``server.`` prefix so bottleneck
attribution can read them without knowing the dialect:

========================================  ==============================================
``server.cpu_pct``                        server CPU, % of the host (SQL Server pools)
``server.commits_per_s``                  committed transactions
``server.rows_inserted_per_s``            rows inserted
``server.data.reads_per_s``               physical data reads
``server.data.read_latency_ms``           average data read latency over the interval
``server.data.write_latency_ms``          average data write latency
``server.log.flushes_per_s``              log flushes (WAL syncs, InnoDB log fsyncs)
``server.log.bytes_per_s``                log bytes written
``server.log.write_latency_ms``           average log write/flush latency
``server.logins_per_s``                   new connections (logins)
``server.connection_resets_per_s``        pooled-session resets (SQL Server)
``server.lock_waits_per_s``               lock waits that started in the interval
``server.sessions``                       the run's sessions on the server
``server.active.sessions``                the run's sessions working (running or waiting)
``server.wait.<category>.sessions``       the run's sessions in that state, per category
========================================  ==============================================

*The run's sessions* are the ones named after the run (:mod:`migrator.session`):
``application_name`` (PostgreSQL) or ``program_name`` (SQL Server) equal to the run's
prefix ``migration-bench <run id>`` or starting with it and a space; MariaDB cannot name a
session where others see it without performance_schema, so its sampler matches the
processlist by the client TCP ports of the run's processes (:mod:`diagnostics.mysql`). The
sampler's own session never counts.

``server.wait.*.sessions`` is the number of the run's sessions found in that state at each
sample — "average active sessions" per category over a run, comparable across dialects.
``cpu`` means running. When a sampler cannot see per-session waits (a SQL Server recording
without ``sys.dm_exec_requests``), it falls back to server-wide wait time per wall time.

Lock waits also name their cause: each sampler reports the sessions that held the lock a
run's session waited for (:class:`Blocker`), and :class:`SamplingSession` stores them in the
series' ``blockers``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from diagnostics._dbapi import Connection, ConnectionFactory, end_snapshot
from diagnostics.host import ServerLocation
from diagnostics.sampler import CounterRates, InfoValue, Value
from migrator import session

WAIT_CATEGORIES = (
    "cpu",
    "data_io",
    "log_io",
    "other_io",
    "lock",
    "latch",
    "client",
    "memory",
    "network",
    "parallelism",
    "other",
)
"""Dialect-neutral wait categories; the dialect modules map their wait names onto these."""

QUERY_CHARS = 200  # of a blocker's statement, enough to recognise it


@dataclass
class Blocker:
    """A session that held a lock one of the run's sessions waited for, as sampled.

    ``session`` is the server's id for it (PostgreSQL backend pid, SQL Server session_id,
    MariaDB thread id); ``query_start`` / ``transaction_start`` are the server's clock as
    text; ``object`` is what was waited for (a table, or a resource the server names);
    ``lock_mode`` the mode the run's session asked for and ``held_mode`` the one the
    blocker held, where the server tells. ``samples`` counts the samples that saw it block
    and ``waiting`` the most of the run's sessions it blocked at once. ``first_seen_s`` and
    ``last_seen_s`` are on the sampler's monotonic clock until :meth:`to_dict` converts
    them to seconds since the run started.
    """

    session: str
    id_label: str = "session"  # what the server calls the id: pid, session, thread
    application: str = ""
    user: str = ""
    client: str = ""
    state: str = ""
    query_start: str = ""
    transaction_start: str = ""
    transaction_age_s: float | None = None
    query: str = ""
    object: str = ""
    lock_mode: str = ""
    held_mode: str = ""
    waiting: int = 0
    samples: int = 0
    first_seen_s: float = 0.0
    last_seen_s: float = 0.0

    def to_dict(self, t0: float = 0.0) -> dict[str, Any]:
        out = asdict(self)
        out["first_seen_s"] = round(self.first_seen_s - t0, 3)
        out["last_seen_s"] = round(self.last_seen_s - t0, 3)
        out["description"] = describe_blocker(out)
        return out


def describe_blocker(b: Mapping[str, Any]) -> str:
    """One line naming a blocker: who, since when, on what."""
    who = f"{b.get('id_label') or 'session'} {b.get('session')}"
    app = b.get("application")
    who += f" (application '{app}'" if app else " (no application name"
    if b.get("user"):
        who += f", user {b['user']}"
    if b.get("client"):
        who += f", from {b['client']}"
    who += ")"
    held = f" holding {b['held_mode']}" if b.get("held_mode") else ""
    what = f" on {b['object']}" if b.get("object") else ""
    line = f"{who}{held}{what}"
    if b.get("lock_mode"):
        line += f", which the run's sessions waited for ({b['lock_mode']})"
    since = []
    if b.get("transaction_start"):
        since.append(f"its transaction started {b['transaction_start']}")
    if b.get("query_start"):
        since.append(f"its statement started {b['query_start']}")
    if since:
        line += "; " + ", ".join(since)
    if b.get("query"):
        line += f"; statement: {str(b['query']).rstrip('; ')}"
    if b.get("samples"):
        line += f"; seen in {b['samples']} sample(s)"
    return line


class DatabaseSampler:
    """Base class: owns a connection made by ``connect`` (never a worker's connection).

    ``program_name`` is the run's session-name prefix (default: this process's run, see
    :func:`migrator.session.run_prefix`); ``pids`` lists the run's processes, for dialects
    that find the run's sessions by their client sockets (MariaDB).
    """

    dialect: ClassVar[str] = ""

    def __init__(
        self,
        connect: ConnectionFactory,
        program_name: str | None = None,
        database: str | None = None,
        pids: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.name = self.dialect
        self._connect = connect
        self.program_name = program_name or session.run_prefix()
        self.database = database
        self.pids = pids
        self._blockers: dict[tuple[str, str], Blocker] = {}
        self.rates = CounterRates()
        self.conn: Connection | None = None
        self.facts: dict[str, InfoValue] = {"dialect": self.dialect}
        self.raw: dict[str, float] = {}
        """The cumulative counters of the last reading (for tests and debugging)."""

    def open(self) -> None:
        conn = self._connect()
        # sqlite3 < 3.12 has no such attribute; the rollback after each read covers it
        with contextlib.suppress(Exception):
            conn.autocommit = True  # type: ignore[attr-defined]
        self.conn = conn
        try:
            self.probe()
        finally:
            end_snapshot(conn)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    def info(self) -> Mapping[str, InfoValue]:
        return dict(self.facts)

    def sample(self) -> dict[str, Value]:
        if self.conn is None:
            raise RuntimeError(f"{self.name} sampler is not open")
        try:
            return self.read(self.conn)
        finally:
            end_snapshot(self.conn)

    def server_location(self) -> ServerLocation:
        return ServerLocation(pid=None, data_paths=())

    def blockers(self) -> list[Blocker]:
        """The sessions seen holding locks the run's sessions waited for."""
        return list(self._blockers.values())

    def note_blocker(self, found: Blocker, waiting: int, now: float) -> None:
        """Record one sample's sighting of ``found`` blocking ``waiting`` of our sessions
        (once per sample per blocker and object: call with the sample's totals)."""
        key = (found.session, found.object)
        known = self._blockers.get(key)
        if known is None:
            found.first_seen_s = now
            known = self._blockers[key] = found
        else:  # the latest statement and state describe it best
            for name in ("state", "query_start", "query", "held_mode", "transaction_age_s"):
                value = getattr(found, name)
                if value not in (None, ""):
                    setattr(known, name, value)
        known.samples += 1
        known.waiting = max(known.waiting, waiting)
        known.last_seen_s = now

    # -- for subclasses

    def probe(self) -> None:
        """Check permissions and capabilities once; raise ``SamplerUnavailable`` if none."""

    def read(self, conn: Connection) -> dict[str, Value]:
        raise NotImplementedError

    def counters(
        self, prefix: str, values: Mapping[str, float | None], now: float
    ) -> dict[str, Value]:
        """Rates (``<prefix>.<name>_per_s``) for a mapping of cumulative counters."""
        out: dict[str, Value] = {}
        for key, value in values.items():
            if value is None:
                continue
            self.raw[f"{prefix}.{key}"] = value
            out[f"{prefix}.{key}_per_s"] = self.rates.rate(f"{prefix}.{key}", value, now)
        return out

    def deltas(
        self, prefix: str, values: Mapping[str, float | None], now: float
    ) -> dict[str, tuple[float, float] | None]:
        """Raw ``(Δvalue, Δt)`` for cumulative counters (for latencies = Δstall / Δops)."""
        out: dict[str, tuple[float, float] | None] = {}
        for key, value in values.items():
            if value is None:
                out[key] = None
                continue
            self.raw[f"{prefix}.{key}"] = value
            out[key] = self.rates.delta(f"{prefix}.{key}", value, now)
        return out

    @staticmethod
    def now() -> float:
        return time.monotonic()
