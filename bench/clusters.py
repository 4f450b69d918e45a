"""What `bench run --cluster` adds around a migration: the cluster, the workers' host
samplers and the server's own counters (:mod:`diagnostics.server_counters`, read for every
run into a database server, cluster or not)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from bench.sampling import sampler_connect
from migrator.cluster import Cluster, ClusterError, ClusterSpec
from migrator.mapping import Mapping
from migrator.session import run_prefix
from migrator.targets import Target


def parse_cluster(text: str) -> ClusterSpec:
    """``--cluster`` checked like the library checks it (ValueError: a usage error)."""
    return ClusterSpec.parse(text)


@contextlib.contextmanager
def open_cluster(spec: str, workers: int | None = None) -> Iterator[Cluster]:
    """The cluster of ``--cluster``, open for the block (a local one big enough for
    ``workers``)."""
    try:
        cluster = Cluster(spec, min_workers=workers or 0)
    except ValueError as exc:
        raise ClusterError(f"--cluster {exc}") from None
    with cluster:
        yield cluster


def sample_worker_hosts(cluster: Cluster, interval: float) -> Any:
    """Host samplers started on every worker of ``cluster`` (``.stop()`` collects them,
    per host), on the clock of a run starting now."""
    from diagnostics.cluster_hosts import ClusterHostSampling

    return ClusterHostSampling(cluster.client, interval, time.time()).start()


def server_counters(target: Target, target_spec: str, mapping: Mapping,
                    run_id: str) -> Any:
    """A :class:`diagnostics.server_counters.ServerCounters` for a run into a database
    server, None for SQLite."""
    from diagnostics.server_counters import ServerCounters, counter_source

    dialect = target.dialect.name
    connect = sampler_connect(target_spec, dialect, run_id)
    if connect is None:
        return None
    d = target.dialect
    source = counter_source(dialect, d.schema, [d.table_name(t.name) for t in mapping.tables],
                            run_prefix(run_id))
    return ServerCounters(connect, source) if source is not None else None
