"""`bench baseline`: one configuration run N times, to know how far its number can be trusted.

A baseline is a sweep of a single configuration (same plan, store, schedule, warm-up and
resume), summarised differently: not "which configuration is best" but "how fast is this
one, and how far can the number be trusted" — mean, median, stdev, CV, the median's
confidence interval, drift across the iterations, and how many iterations the observed
noise calls for. The result file has kind ``baseline``; ``bench compare`` takes it like
any other result file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.results import build_result, write_result
from bench.store import StoreContents
from bench.sweep import (
    SweepError,
    SweepPlan,
    busy_host_warning,
    in_storage_order,
    majority_bottleneck,
    read_map_cpu,
    samples_by_config,
    seconds_per_record,
    skipped_warning,
    throughput,
    write_pyperf_file,
)
from reports.results import BaselineDocument, Bottleneck, Environment, Run
from reports.stats import (
    Drift,
    MachineNoise,
    Stats,
    describe,
    drift,
    instability_warnings,
    machine_noises,
    repeats_needed,
)
from reports.summary import format_config

DEFAULT_ITERATIONS = 10


@dataclass(frozen=True)
class BaselineSummary:
    """The statistics of one configuration's iterations (throughput in rec/min)."""

    name: str | None
    config: dict[str, Any]
    label: str
    stats: Stats
    seconds_per_record: Stats
    drift: Drift
    repeats_needed: int | None
    warnings: tuple[str, ...]
    bottleneck: Bottleneck | None
    machine: MachineNoise | None = None  # the host's share of the spread, when probed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": dict(self.config),
            "label": self.label,
            "unit": "rec/min",
            "stats": self.stats.to_dict(),
            "seconds_per_record": self.seconds_per_record.to_dict(),
            "drift": self.drift.to_dict(),
            "repeats_needed": self.repeats_needed,
            "warnings": list(self.warnings),
            "bottleneck": None if self.bottleneck is None else self.bottleneck.to_dict(),
            "machine_noise": None if self.machine is None else self.machine.to_dict(),
        }


def summarize_baseline(name: str | None, config: Mapping[str, Any],
                       runs: Sequence[Run]) -> BaselineSummary:
    """Statistics of ``runs`` (measured runs of one configuration, in run order)."""
    if not runs:
        raise SweepError("the baseline has no measured run yet; resume it")
    values = [throughput(r) for r in runs]
    per_record = [v for v in (seconds_per_record(r) for r in runs) if v]
    stats = describe(values)
    trend = drift(values)
    busy = busy_host_warning(runs)
    (machine,) = machine_noises([(values, read_map_cpu(runs))])
    return BaselineSummary(
        name=name,
        config=dict(config),
        label=format_config(config),
        stats=stats,
        seconds_per_record=describe(per_record or [0.0]),
        drift=trend,
        repeats_needed=repeats_needed(values),
        warnings=(*([busy] if busy else []),
                  *instability_warnings(stats, trend, machine=machine)),
        bottleneck=majority_bottleneck(runs),
        machine=machine,
    )


def finish_baseline(plan: SweepPlan, contents: StoreContents, run_dir: Path
                    ) -> tuple[BaselineDocument, BaselineSummary, Path, Path | None]:
    """Write result.json (kind ``baseline``) and pyperf.json from the store's runs."""
    if len(plan.configurations) != 1:
        raise SweepError("a baseline has exactly one configuration")
    groups = samples_by_config(plan, contents.runs)
    config, runs = groups[0]
    summary = summarize_baseline(plan.name, config, runs)
    skipped = skipped_warning(contents)
    if skipped:
        summary = replace(summary, warnings=(*summary.warnings, skipped))
    doc = build_result(
        "baseline",
        config={**plan.to_dict(), "order": [[s.round, s.config_index] for s in plan.slots()]},
        environment=contents.environment or Environment(),
        runs=in_storage_order(contents.runs),
        verdicts=[{"kind": "bottleneck", "scope": "baseline", **summary.bottleneck.to_dict()}]
        if summary.bottleneck else [],
        extra={"summary": summary.to_dict(), "measured_runs": len(runs)},
    )
    assert isinstance(doc, BaselineDocument)
    result_file = write_result(run_dir, doc)
    pyperf_file = write_pyperf_file(run_dir / "pyperf.json", groups,
                                    {"description": "migration-bench baseline, seconds per "
                                                    "record"})
    return doc, summary, result_file, pyperf_file
