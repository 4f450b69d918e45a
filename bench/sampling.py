"""Host and server sampling around a measured run (`bench run`, `bench diagnose pooling`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from migrator.targets import Target

SAMPLED_DIALECTS = ("mssql", "postgresql", "mysql", "mariadb", "sqlite")


def sampler_connect(target_spec: str, dialect: str,
                    run_id: str | None = None) -> Callable[[], Any] | None:
    """The sampler's OWN DB-API connection factory (never a worker's connection); its
    session is named ``migration-bench <run id> sampler``."""
    scheme, _, rest = target_spec.partition(":")
    if scheme != "odbc" or dialect == "sqlite":
        return None

    def connect() -> Any:
        from migrator.connstr import parse_connection_string
        from migrator.odbckeys import driver_family
        from migrator.session import session_name
        from migrator.targets.odbc import import_pyodbc, named_connection_string, string_driver

        family = driver_family(string_driver(parse_connection_string(rest)))
        text = named_connection_string(rest, family, session_name("sampler", run_id))
        return import_pyodbc().connect(text, autocommit=True, timeout=15)

    return connect


def our_pids() -> list[int]:
    """This process and its children: the coordinator, workers, a pipeline's mapper."""
    import psutil

    me = psutil.Process()
    pids = [me.pid]
    with contextlib.suppress(psutil.Error):
        pids.extend(c.pid for c in me.children(recursive=True))
    return pids


def start_sampling(target: Target, target_spec: str, interval: float,
                   t0: float | None = None) -> Any:
    """A started :class:`diagnostics.SamplingSession` for a run into ``target``, counting
    the sessions of this process's run (:func:`migrator.session.run_scope`)."""
    from diagnostics import sampling_session
    from migrator.session import run_prefix

    dialect = target.dialect.name
    if dialect not in SAMPLED_DIALECTS:
        dialect = "sqlite"  # host sampling only
    db_path = getattr(target, "path", None)
    session = sampling_session(dialect, sampler_connect(target_spec, dialect),
                               interval=interval, t0=t0, pids=our_pids,
                               db_path=str(db_path) if db_path and db_path != ":memory:"
                               else None, program_name=run_prefix())
    session.start()
    return session


def attribute_run(stats: Any, series: Any, workers: int) -> dict[str, Any]:
    from diagnostics import StageTimings, attribute

    timings = StageTimings.from_mapping(dict(stats.stages), stats.elapsed_s, workers)
    verdict: dict[str, Any] = attribute(timings, series).to_dict()
    return verdict


__all__ = ["attribute_run", "our_pids", "sampler_connect", "start_sampling"]
