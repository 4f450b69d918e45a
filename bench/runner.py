"""One measured migration (`bench run`): resolve defaults, migrate, reconcile, store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import environment
from bench.results import build_result, new_run_dir, write_pyperf, write_result
from bench.sampling import attribute_run, start_sampling
from migrator import (
    EngineConfig,
    ParallelCoordinator,
    Reconciliation,
    RunStats,
    default_mapping,
    expand_inputs,
    load_mapping,
    open_target,
    reconcile,
)
from migrator.engine import apply_pooling
from migrator.mapping import describe as describe_mapping
from migrator.reader import WorkUnit


@dataclass
class RunRequest:
    inputs: list[str]
    target: str | None = None
    mapping: Path | None = None
    batch_size: int = 1000
    resume: bool = False
    out: Path | None = None
    workers: int = 1
    pipeline: str = "off"
    queue_depth: int = 2
    # "off": every batch opens a new physical connection; "on": every batch takes one from a
    # pool (unixODBC driver-manager pooling, or the SQLite target's small pool) — SPEC §4.
    pooling: str = "off"
    insert_method: str = "auto"  # auto: the dialect's fastest correct method
    sample_interval: float | None = 0.5  # None: no sampling


@dataclass
class RunOutcome:
    request: RunRequest
    run_dir: Path
    target_display: str
    stats: RunStats
    reconciliation: Reconciliation
    result_file: Path
    pyperf_file: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        rec = self.reconciliation
        return {
            "records_read": s.records_read,
            "inserted": s.inserted,
            "quarantined": s.quarantined,
            "skipped": sum(u.skipped for u in s.units),
            "elapsed_s": round(s.elapsed_s, 6),
            "throughput_rec_per_min": round(s.throughput_rec_per_min, 1),
            "batch_size": self.request.batch_size,
            "workers": self.request.workers,
            "pipeline": self.request.pipeline,
            "queue_depth": self.request.queue_depth,
            "stages": {k: round(v, 6) for k, v in s.stages.items()},
            "stage_busy_s": {k: round(v, 6) for k, v in s.stage_busy.items()},
            "overlap_efficiency": round(s.overlap_efficiency, 4),
            "max_in_flight": s.max_in_flight,
            "converted_by_inserter": s.converted_by_inserter,
            "read_map_cpu_s": round(s.read_map_cpu_s, 6),
            "per_worker": [{**w.to_dict(), "elapsed_s": round(w.elapsed_s, 6),
                            "rec_per_s": round(w.rec_per_s, 1)} for w in s.workers],
            "tables": dict(s.rows),
            "target": self.target_display,
            "reconciliation": {"ok": rec.ok, "records_read": rec.records_read,
                               "inserted": rec.inserted, "quarantined": rec.quarantined,
                               "rows": rec.rows, "problems": list(rec.problems)},
            "errors": list(s.errors),
            "pooling": self.request.pooling,
            "insert_method": self.request.insert_method,
            "bottleneck": self.extra.get("bottleneck"),
            "result_file": str(self.result_file),
            "pyperf_file": str(self.pyperf_file) if self.pyperf_file else None,
        }


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


def execute_run(request: RunRequest,
                progress: Callable[..., None] | None = None) -> RunOutcome:
    run_dir = request.out or new_run_dir()
    mapping = load_mapping(request.mapping) if request.mapping else default_mapping()
    units = expand_inputs(request.inputs)
    target_spec = request.target or f"sqlite:{run_dir / 'mig.db'}"
    target = open_target(target_spec)
    pooling = request.pooling == "on"
    if target.can_apply_pooling(pooling):
        apply_pooling(target, pooling)  # before the first connect of this process
    # (otherwise the coordinator migrates in a fresh worker process, where it applies)
    total_bytes = sum(u.size for u in units)
    config = EngineConfig(batch_size=request.batch_size, pipeline=request.pipeline,
                          queue_depth=request.queue_depth, pooling=pooling,
                          connection_per_batch=True,
                          insert_method=None if request.insert_method == "auto"
                          else request.insert_method)

    def on_progress(records: int, done_bytes: int) -> None:
        if progress is not None:
            progress(done_bytes, total=total_bytes, info=f"{records:,} records")

    coordinator = ParallelCoordinator(target, mapping, config, workers=request.workers,
                                      on_progress=on_progress)
    session = None
    if request.sample_interval:
        session = start_sampling(target, target_spec, request.sample_interval,
                                 t0=time.monotonic())
    try:
        stats = coordinator.run(units, resume=request.resume)
    finally:
        series = session.stop() if session is not None else None
    try:
        rec = reconcile(target, mapping)
    finally:
        target.close()  # idle pooled sessions must not outlive the run
    info = target.info()
    run_doc = {
        "config": {"batch_size": request.batch_size, "workers": request.workers,
                   "pipeline": request.pipeline, "queue_depth": request.queue_depth,
                   "pooling": request.pooling, "insert_method": config.insert_method
                   or target.dialect.default_insert_method, "resume": request.resume,
                   "sample_interval": request.sample_interval},
        "metrics": stats.to_dict(),
        "reconciliation": {"ok": rec.ok, "records_read": rec.records_read,
                           "inserted": rec.inserted, "quarantined": rec.quarantined,
                           "rows": rec.rows, "problems": list(rec.problems)},
        "samples": series.to_dict() if series is not None else None,
        "bottleneck": attribute_run(stats, series, request.workers) if series is not None
        else None,
    }
    doc = build_result(
        "run",
        config={"inputs": [u.path for u in units], "target": info.display,
                "mapping": describe_mapping(mapping), "batch_size": request.batch_size,
                "workers": request.workers, "pipeline": request.pipeline,
                "queue_depth": request.queue_depth, "pooling": request.pooling,
                "insert_method": request.insert_method, "resume": request.resume},
        environment=environment.collect(info, _dataset_facts(units)),
        runs=[run_doc],
    )
    result_file = write_result(run_dir, doc)
    pyperf_file = None
    if stats.records_read:
        pyperf_file = write_pyperf(run_dir / "pyperf.json",
                                   {f"batch_size={request.batch_size}":
                                    [stats.elapsed_s / stats.records_read]})
    return RunOutcome(request, run_dir, info.display, stats, rec, result_file, pyperf_file,
                      {"bottleneck": run_doc["bottleneck"]})
