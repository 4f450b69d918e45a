"""Host and database samplers, bottleneck attribution, pooling diagnostics.

Sampling a run::

    from diagnostics import sampling_session, attribute, StageTimings

    session = sampling_session("postgresql", connect=open_sampler_connection,
                               pids=worker_pids, interval=0.5, t0=run_t0)
    with session:
        ...                                   # the migration
    series = session.series                  # SampleSeries; .to_dict() → result file
    verdict = attribute(StageTimings.from_mapping(stage_seconds, wall_s, workers), series)
    print(verdict.summary())                 # .to_dict() → result file

``diagnostics`` may import ``migrator`` but never ``bench`` or ``reports``.
"""

from diagnostics.attribution import LABELS, StageTimings, Verdict, attribute
from diagnostics.host import HostSampler, device_for_path
from diagnostics.mssql import MssqlSampler
from diagnostics.mysql import MysqlSampler
from diagnostics.postgresql import PostgresSampler
from diagnostics.registry import SERVER_SAMPLERS, build_samplers, sampling_session, server_sampler
from diagnostics.sampler import (
    DEFAULT_INTERVAL,
    Sampler,
    SamplerOverhead,
    SamplerUnavailable,
    SampleSeries,
    SamplingSession,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "LABELS",
    "SERVER_SAMPLERS",
    "HostSampler",
    "MssqlSampler",
    "MysqlSampler",
    "PostgresSampler",
    "SampleSeries",
    "Sampler",
    "SamplerOverhead",
    "SamplerUnavailable",
    "SamplingSession",
    "StageTimings",
    "Verdict",
    "attribute",
    "build_samplers",
    "device_for_path",
    "sampling_session",
    "server_sampler",
]
