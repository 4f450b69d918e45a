"""migrator: stream XML records into SQL tables, in batches, exactly once.

The public API is the names below; everything else is an implementation detail.

    >>> from migrator import default_mapping, expand_inputs, open_target, migrate
    >>> stats = migrate(expand_inputs(["data/"]), open_target("sqlite:work/mig.db"),
    ...                 default_mapping())                                   # doctest: +SKIP
"""

from __future__ import annotations

from migrator.batch import Checkpoint
from migrator.cluster import Cluster, ClusterCoordinator, ClusterError, ClusterSpec
from migrator.config import PIPELINE_MODES, EngineConfig
from migrator.connection import ConnectionStrategy
from migrator.coordinator import ParallelCoordinator, WorkerFailed
from migrator.engine import (
    MigrationEngine,
    Reconciliation,
    TableOwnershipError,
    prepare_target,
    reconcile,
    reconcile_retrying,
)
from migrator.errors import (
    InputError,
    MalformedXMLError,
    MappingError,
    MigratorError,
    NothingToResume,
    ResumeError,
    TargetError,
)
from migrator.mapping import Mapping, default_mapping, load_mapping, parse_mapping
from migrator.partition import RangeUnit
from migrator.pipeline import PipelineError
from migrator.reader import WorkUnit, check_records, expand_inputs
from migrator.retry import RetryExhausted, RetryPolicy
from migrator.rowmap import RecordMapper, RecordRejected
from migrator.runstate import finished_at, mark_finished
from migrator.stats import STAGES, BatchStat, RunStats, WorkerStats
from migrator.suggest import CheckReport, check_mapping, suggest_mapping
from migrator.targets import Namespace, Target, open_target


def migrate(units: list[WorkUnit], target: Target, mapping: Mapping,
            config: EngineConfig | None = None, *, resume: bool = False,
            replace_existing: bool = False) -> RunStats:
    """Prepare the target (fresh schema, or resume) and run one engine over ``units``.

    Input in which no file holds a record element is refused first (:class:`InputError`).
    """
    check_records(units, mapping.record_elements)
    checkpoints = prepare_target(target, mapping, units, resume=resume,
                                 replace_existing=replace_existing,
                                 retry=(config or EngineConfig()).retry)
    return MigrationEngine(target, mapping, config).run(units, checkpoints)


__all__ = [
    "PIPELINE_MODES", "STAGES", "BatchStat", "CheckReport", "Checkpoint", "Cluster",
    "ClusterCoordinator", "ClusterError", "ClusterSpec", "ConnectionStrategy", "EngineConfig",
    "InputError", "MalformedXMLError", "Mapping", "MappingError", "MigrationEngine",
    "MigratorError", "Namespace", "NothingToResume", "ParallelCoordinator", "PipelineError",
    "RangeUnit", "Reconciliation", "RecordMapper", "RecordRejected", "ResumeError",
    "RetryExhausted", "RetryPolicy", "RunStats", "TableOwnershipError", "Target", "TargetError",
    "WorkUnit", "WorkerFailed", "WorkerStats", "check_mapping", "check_records",
    "default_mapping", "expand_inputs", "finished_at", "load_mapping", "mark_finished",
    "migrate", "open_target", "parse_mapping", "prepare_target", "reconcile",
    "reconcile_retrying", "suggest_mapping",
]
