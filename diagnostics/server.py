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
``server.sessions``                       our sessions on the server
``server.wait.<category>.sessions``       average sessions waiting, per wait category
========================================  ==============================================

``server.wait.*.sessions`` is wait-time per wall-time (SQL Server: Δwait_ms / Δt_ms) or,
for PostgreSQL, the sampled number of our backends in that state: both are "average active
sessions" in that category, so they compare across dialects. ``cpu`` means running.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import ClassVar

from diagnostics._dbapi import Connection, ConnectionFactory, end_snapshot
from diagnostics.host import ServerLocation
from diagnostics.sampler import CounterRates, InfoValue, Value

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

DEFAULT_PROGRAM_NAME = "migration-bench"


class DatabaseSampler:
    """Base class: owns a connection made by ``connect`` (never a worker's connection)."""

    dialect: ClassVar[str] = ""

    def __init__(
        self,
        connect: ConnectionFactory,
        program_name: str = DEFAULT_PROGRAM_NAME,
        database: str | None = None,
    ) -> None:
        self.name = self.dialect
        self._connect = connect
        self.program_name = program_name
        self.database = database
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
