"""One measured migration (`bench run`): resolve defaults, migrate, reconcile, store.

Before any work the run checks what would make its measurement worthless or lost (see
:mod:`bench.preflight`): input without a single record element, a results folder it cannot
write, a ``sqlite:`` file in a folder that does not exist. Those are refusals, as are the
errors found while preparing the target: one line, no result file.

Once the migration has started, every ending writes a result file with its ``status``:
``complete``; ``failed`` (an error stopped it, or it ended with errors or counts that do not
reconcile; :class:`RunFailed` is raised when an exception stopped it); ``interrupted``
(Ctrl-C; :class:`RunInterrupted` is raised). A failed or interrupted result keeps what was
measured until then, and only a complete run gets a pyperf file: the others are not
measurements.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import environment
from bench.clusters import open_cluster, sample_worker_hosts, server_counters
from bench.preflight import check_target_folder, ensure_writable_dir
from bench.results import build_result, new_run_dir, write_pyperf, write_result
from bench.sampling import attribute_run, start_sampling
from migrator import (
    EngineConfig,
    Namespace,
    ParallelCoordinator,
    Reconciliation,
    RetryPolicy,
    RunStats,
    default_mapping,
    expand_inputs,
    load_mapping,
    open_target,
    reconcile_retrying,
)
from migrator.cluster import Cluster, ClusterCoordinator
from migrator.connection import apply_strategy, can_apply
from migrator.errors import MigratorError
from migrator.mapping import Mapping, describe as describe_mapping
from migrator.reader import WorkUnit, check_dtd_dir, check_records
from migrator.runlock import RunLock
from migrator.session import run_scope, session_name
from migrator.settings import RunSettings
from reports.results import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    Bottleneck,
    ClusterRun,
    Metrics,
    Reconciliation as ReconciliationRecord,
    Run,
    RunConfig,
    RunDocument,
    Samples,
    ServerThroughput,
)


@dataclass(frozen=True, kw_only=True)
class RunRequest(RunSettings):
    """One migration to measure: how it runs (the :class:`RunSettings` it extends) and what
    only this invocation has — the input, the target, the mapping, the run folder."""

    inputs: list[str]
    target: str | None = None
    mapping: Path | None = None
    resume: bool = False
    out: Path | None = None
    # Names every database session of the run (migrator.session); None: a new one.
    run_id: str | None = None
    # Run the units on a Dask cluster (local[:N] or tcp://HOST:PORT) instead of --workers
    # processes (the cluster_workers and max_sessions settings size such a run).
    cluster: str | None = None


@dataclass
class RunOutcome:
    request: RunRequest
    run_dir: Path
    target_display: str
    stats: RunStats
    reconciliation: Reconciliation | None  # None: not checked (the run did not finish)
    result_file: Path
    pyperf_file: Path | None
    document: RunDocument  # what result_file holds
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = COMPLETE
    error: str | None = None
    files_without_records: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        rec = self.reconciliation
        return {
            "status": self.status,
            "error": self.error,
            "records_read": s.records_read,
            "inserted": s.inserted,
            "quarantined": s.quarantined,
            "skipped": sum(u.skipped for u in s.units),
            "elapsed_s": round(s.elapsed_s, 6),
            "throughput_rec_per_min": round(s.throughput_rec_per_min, 1),
            # Every run setting, as requested; the schema and the DTD catalog as used
            # (the dialect's default schema, the mapping's catalog) below.
            **self.request.values(),
            "stages": {k: round(v, 6) for k, v in s.stages.items()},
            "stage_busy_s": {k: round(v, 6) for k, v in s.stage_busy.items()},
            "overlap_efficiency": round(s.overlap_efficiency, 4),
            "max_in_flight": s.max_in_flight,
            "converted_by_inserter": s.converted_by_inserter,
            "read_map_cpu_s": round(s.read_map_cpu_s, 6),
            "retries": s.retries,
            "retry_wait_s": round(s.retry_wait_s, 3),
            "connects": s.connects,
            "per_worker": [{**w.to_dict(), "elapsed_s": round(w.elapsed_s, 6),
                            "rec_per_s": round(w.rec_per_s, 1)} for w in s.workers],
            "tables": dict(s.rows),
            "records": {k: dict(v) for k, v in s.records.items()},
            "unexpanded_entities": s.unexpanded_entities,
            "notes": list(s.notes),
            "dtd_dir": self.extra.get("dtd_dir"),
            "target": self.target_display,
            "schema": self.extra.get("schema"),
            "reconciliation": _reconciliation(rec),
            "files_without_records": list(self.files_without_records),
            "errors": list(s.errors),
            "bottleneck": self.extra.get("bottleneck"),
            "cluster": self.extra.get("cluster"),
            "server_throughput": self.extra.get("server_throughput"),
            "run_id": self.extra.get("run_id"),
            "result_file": str(self.result_file),
            "pyperf_file": str(self.pyperf_file) if self.pyperf_file else None,
        }


INTERRUPTED_ERROR = "interrupted (Ctrl-C or SIGINT); continue with --resume"


class RunFailed(MigratorError):
    """The migration started and an error stopped it. The message is the error's; the
    result file (status ``failed``) keeps what was measured, described by ``outcome``."""

    def __init__(self, message: str, outcome: RunOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a started migration; its result file says ``interrupted``."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__()
        self.outcome = outcome


def _reconciliation(rec: Reconciliation | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"ok": rec.ok, "records_read": rec.records_read, "inserted": rec.inserted,
            "quarantined": rec.quarantined, "rows": rec.rows, "records": rec.records,
            "problems": list(rec.problems)}


def _dataset_facts(units: list[WorkUnit]) -> dict[str, Any]:
    """The generator's manifest, when the input came from `bench generate`."""
    folders = {Path(u.path).parent for u in units}
    facts: dict[str, Any] = {"files": len(units), "bytes": sum(u.size for u in units)}
    for folder in sorted(folders):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                m = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            facts.update({k: m.get(k) for k in ("profile", "seed", "records", "invalid_rate")})
            break
    return facts


def execute_run(request: RunRequest, progress: Callable[..., None] | None = None,
                cluster: Cluster | None = None) -> RunOutcome:
    """One measured run; with ``request.cluster``, on ``cluster`` when given (a sweep keeps
    one open for all its runs), else on one opened for this run."""
    if request.cluster and cluster is None:
        with open_cluster(request.cluster, request.cluster_workers) as opened:
            return execute_run(request, progress, opened)
    run_dir = request.out or new_run_dir()
    mapping = load_mapping(request.mapping) if request.mapping else default_mapping()
    mapping = mapping.with_dtd_dir(check_dtd_dir(request.dtd_dir))
    units = expand_inputs(request.inputs)
    without_records = check_records(units, mapping.record_elements)
    check_target_folder(request.target)
    created = not run_dir.exists()
    ensure_writable_dir(run_dir)
    try:
        with run_scope(request.run_id) as run_id:  # (inherited by the workers it spawns)
            return _migrate(request, run_dir, mapping, units, without_records, progress,
                            run_id, cluster)
    except BaseException:
        if created:  # a refusal (nothing to resume, say) leaves no empty run folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # (only when empty: a result file or database stays)
        raise


def _migrate(request: RunRequest, run_dir: Path, mapping: Mapping, units: list[WorkUnit],
             without_records: list[str], progress: Callable[..., None] | None,
             run_id: str, cluster: Cluster | None) -> RunOutcome:
    target_spec = request.target or f"sqlite:{run_dir / 'mig.db'}"
    target = open_target(target_spec)
    target.set_namespace(Namespace(request.schema, request.table_prefix))
    if can_apply(target, request.connection):
        apply_strategy(target, request.connection)  # before the first connect here
    # (otherwise the coordinator migrates in a fresh worker process, where it applies)
    total_bytes = sum(u.size for u in units)
    config = EngineConfig(batch_size=request.batch_size, pipeline=request.pipeline,
                          queue_depth=request.queue_depth, connection=request.connection,
                          insert_method=None if request.insert_method == "auto"
                          else request.insert_method,
                          retry=RetryPolicy(window_s=request.retry_window))

    def on_progress(records: int, done_bytes: int) -> None:
        if progress is not None:
            progress(done_bytes, total=total_bytes, info=f"{records:,} records")

    counters = server_counters(target, target_spec, mapping, run_id)
    started = counters.before if counters is not None else None
    coordinator: ParallelCoordinator | ClusterCoordinator
    if cluster is not None:
        coordinator = ClusterCoordinator(target, mapping, config, cluster=cluster,
                                         workers=request.cluster_workers,
                                         max_sessions=request.max_sessions,
                                         on_progress=on_progress, on_started=started)
    else:
        coordinator = ParallelCoordinator(target, mapping, config, workers=request.workers,
                                          on_progress=on_progress, on_started=started)
    # One run per target: held from before the checkpoints are read until the final count
    # check; a second run is refused here, before it touches anything (TargetBusy).
    with RunLock(target, run_id=run_id, results=str(run_dir)):
        session = hosts = None
        if request.sample_interval:
            session = start_sampling(target, target_spec, request.sample_interval,
                                     t0=time.monotonic())
            if cluster is not None:
                hosts = sample_worker_hosts(cluster, request.sample_interval)
        stopped_by: BaseException | None = None
        try:
            stats = coordinator.run(units, resume=request.resume,
                                    replace_existing=request.replace_existing_tables)
        except (MigratorError, KeyboardInterrupt) as exc:
            if not coordinator.started or coordinator.partial is None:
                target.close()
                raise  # refused before the migration started: nothing was measured
            stats, stopped_by = coordinator.partial, exc
        finally:
            series = session.stop() if session is not None else None
            host_samples = hosts.stop() if hosts is not None else None
        target.close()  # (pooled sessions end: their counters reach the server's views)
        if counters is not None and counters.before_reading is not None:
            counters.after()
        try:
            status, error, rec = _ending(stopped_by, stats, target, mapping,
                                         config.retry)
        except MigratorError as exc:  # the final count check could not be made
            status, error, rec, stopped_by = FAILED, str(exc), None, exc
    info = target.info()
    tables_in = {"schema": target.dialect.schema, "table_prefix": request.table_prefix}
    workers_used = len(coordinator.report.workers) if isinstance(
        coordinator, ClusterCoordinator) else request.workers
    throughput = counters.to_dict(client_rows=sum(stats.rows.values()),
                                  client_commits=len(stats.batches),
                                  client_elapsed_s=stats.elapsed_s) \
        if counters is not None and counters.before_reading is not None else None
    cluster_doc = None
    if isinstance(coordinator, ClusterCoordinator):
        cluster_doc = {**coordinator.report.to_dict(), "host_samples": host_samples}
    run = Run(
        status=status, error=error, run_id=run_id, session_name=session_name(run_id=run_id),
        config=RunConfig(batch_size=request.batch_size, workers=request.workers,
                         pipeline=request.pipeline, queue_depth=request.queue_depth,
                         connection=request.connection.value,
                         insert_method=config.insert_method
                         or target.dialect.default_insert_method, resume=request.resume,
                         sample_interval=request.sample_interval,
                         schema=target.dialect.schema, table_prefix=request.table_prefix,
                         retry_window=request.retry_window, cluster=request.cluster,
                         cluster_workers=request.cluster_workers,
                         max_sessions=request.max_sessions),
        metrics=Metrics.from_dict(stats.to_dict()),
        reconciliation=None if rec is None else ReconciliationRecord.from_dict(
            _reconciliation(rec)),
        files_without_records=without_records,
        samples=Samples.from_dict(series.to_dict()) if series is not None else None,
        server_throughput=None if throughput is None
        else ServerThroughput.from_dict(throughput),
        cluster=None if cluster_doc is None else ClusterRun.from_dict(cluster_doc),
        bottleneck=Bottleneck.from_dict(attribute_run(stats, series, workers_used))
        if series is not None and status == COMPLETE else None,
    )
    doc = build_result(
        "run",
        config={"inputs": [u.path for u in units], "target": info.display,
                "mapping": describe_mapping(mapping), "batch_size": request.batch_size,
                "workers": request.workers, "pipeline": request.pipeline,
                "dtd_dir": mapping.dtd_dir,
                "queue_depth": request.queue_depth,
                "connection": request.connection.value,
                "insert_method": request.insert_method, "resume": request.resume,
                **tables_in, "replace_existing_tables": request.replace_existing_tables,
                **_cluster_config(request)},
        environment=environment.collect(info, _dataset_facts(units)),
        runs=[run], status=status, error=error,
    )
    assert isinstance(doc, RunDocument)
    result_file = write_result(run_dir, doc)
    pyperf_file = None
    if status == COMPLETE and stats.records_read:  # only a complete run is a measurement
        pyperf_file = write_pyperf(run_dir / "pyperf.json",
                                   {f"batch_size={request.batch_size}":
                                    [stats.elapsed_s / stats.records_read]})
    outcome = RunOutcome(request, run_dir, info.display, stats, rec, result_file, pyperf_file,
                         doc, {"bottleneck": None if run.bottleneck is None
                               else run.bottleneck.to_dict(),
                               "schema": tables_in["schema"], "run_id": run_id,
                               "dtd_dir": mapping.dtd_dir,
                               "cluster": _cluster_summary(cluster_doc),
                               "server_throughput": throughput},
                         status, error, without_records)
    if isinstance(stopped_by, KeyboardInterrupt):
        raise RunInterrupted(outcome) from stopped_by
    if stopped_by is not None:
        raise RunFailed(str(stopped_by), outcome) from stopped_by
    return outcome


def _cluster_config(request: RunRequest) -> dict[str, Any]:
    """The cluster settings of a run's configuration (none for a run without one)."""
    if not request.cluster:
        return {}
    return {"cluster": request.cluster, "cluster_workers": request.cluster_workers,
            "max_sessions": request.max_sessions}


def _cluster_summary(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """What `bench run --json` says about the cluster (the result file has the rest)."""
    if doc is None:
        return None
    return {"cluster": doc["cluster"], "workers": doc["workers"],
            "hosts": sorted(doc.get("host_samples") or {}),
            "lost_workers": doc["lost_workers"], "rerun_units": doc["rerun_units"],
            "max_sessions": doc["max_sessions"]}


def _ending(stopped_by: BaseException | None, stats: RunStats, target: Any,
            mapping: Mapping, retry: RetryPolicy
            ) -> tuple[str, str | None, Reconciliation | None]:
    """The run's status, its error and, for a run that ended, the final count check."""
    if stopped_by is not None:
        target.close()
        if isinstance(stopped_by, KeyboardInterrupt):
            return INTERRUPTED, INTERRUPTED_ERROR, None
        return FAILED, str(stopped_by), None
    try:
        rec = reconcile_retrying(target, mapping, retry)
    finally:
        target.close()  # idle pooled sessions must not outlive the run
    problems = [*stats.errors, *(f"not reconciled: {p}" for p in rec.problems)]
    return (FAILED, problems[0], rec) if problems else (COMPLETE, None, rec)
