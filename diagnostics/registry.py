"""Which samplers a run gets, by dialect: the one place ``bench run`` asks.

>>> session = sampling_session("postgresql", connect=lambda: psycopg.connect(dsn),
...                            pids=coordinator.worker_pids, interval=0.5, t0=run_t0)
>>> with session:
...     engine.run()
>>> series = session.series           # SampleSeries, .to_dict() for the result file
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from diagnostics._dbapi import ConnectionFactory
from diagnostics.host import HostSampler
from diagnostics.mssql import MssqlSampler
from diagnostics.mysql import MysqlSampler
from diagnostics.postgresql import PostgresSampler
from diagnostics.sampler import DEFAULT_INTERVAL, Sampler, SamplingSession
from diagnostics.server import DatabaseSampler

SERVER_SAMPLERS: dict[str, type[DatabaseSampler] | None] = {
    "mssql": MssqlSampler,
    "postgresql": PostgresSampler,
    "mysql": MysqlSampler,
    "mariadb": MysqlSampler,
    "sqlite": None,  # embedded: the host sampler and stage timings tell the story
}


def server_sampler(
    dialect: str,
    connect: ConnectionFactory | None,
    program_name: str | None = None,
    database: str | None = None,
    pids: Callable[[], Iterable[int]] | None = None,
) -> DatabaseSampler | None:
    """The server sampler for ``dialect`` (``None`` for SQLite or without ``connect``).

    ``program_name``: the run's session-name prefix (default: this process's run)."""
    try:
        cls = SERVER_SAMPLERS[dialect]
    except KeyError:
        valid = ", ".join(sorted(SERVER_SAMPLERS))
        raise ValueError(f"no sampler for dialect {dialect!r}; known: {valid}") from None
    if cls is None or connect is None:
        return None
    return cls(connect, program_name=program_name, database=database, pids=pids)


def build_samplers(
    dialect: str,
    connect: ConnectionFactory | None = None,
    *,
    pids: Callable[[], Iterable[int]] | None = None,
    db_path: str | None = None,
    program_name: str | None = None,
    database: str | None = None,
    server_port: int | None = None,
    host: bool = True,
) -> list[Sampler]:
    """Server sampler (if the dialect has one) followed by the host sampler.

    ``connect`` opens the sampler's own connection; ``pids`` lists the worker processes;
    ``db_path`` is the SQLite file (server dialects find their data directory themselves
    when the server runs on this host); ``server_port`` disambiguates local servers.
    """
    samplers: list[Sampler] = []
    server = server_sampler(dialect, connect, program_name, database, pids)
    if server is not None:
        samplers.append(server)
    if host:
        samplers.append(
            HostSampler(pids=pids, db_path=db_path, server=server, server_port=server_port)
        )
    return samplers


def sampling_session(
    dialect: str,
    connect: ConnectionFactory | None = None,
    *,
    interval: float = DEFAULT_INTERVAL,
    t0: float | None = None,
    pids: Callable[[], Iterable[int]] | None = None,
    db_path: str | None = None,
    program_name: str | None = None,
    database: str | None = None,
    server_port: int | None = None,
) -> SamplingSession:
    """A ready-to-start :class:`SamplingSession` for one run against ``dialect``."""
    samplers = build_samplers(
        dialect,
        connect,
        pids=pids,
        db_path=db_path,
        program_name=program_name,
        database=database,
        server_port=server_port,
    )
    return SamplingSession(samplers, interval=interval, t0=t0)
