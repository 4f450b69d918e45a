"""What a run measured: counts, stage times, batches, per unit and per worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("connect", "parse", "map", "insert", "commit", "skip", "transfer")
# Which stages each half of the pipeline is busy with (``transfer``, pickling a batch to
# send it to another process and unpickling it there, is split by who does it).
READ_STAGES = ("parse", "map", "skip")
WRITE_STAGES = ("connect", "insert", "commit")


@dataclass
class BatchStat:
    """One committed batch; times in seconds, ``started``/``ended`` relative to run start."""

    index: int
    records: int
    inserted: int
    quarantined: int
    started: float
    ended: float
    parse: float
    map: float
    insert: float
    commit: float
    connect: float

    worker: int = 0

    FIELDS = ("index", "records", "inserted", "quarantined", "started", "ended",
              "parse", "map", "insert", "commit", "connect", "worker")

    def as_row(self) -> list[float | int]:
        return [getattr(self, f) for f in self.FIELDS]


@dataclass
class UnitResult:
    unit: str
    records_read: int = 0  # by this invocation
    skipped: int = 0  # records committed by an earlier, interrupted run
    finished: bool = False
    error: str | None = None


def _zero_busy() -> dict[str, float]:
    return {"read_map": 0.0, "insert": 0.0}


@dataclass
class WorkerStats:
    """One worker's share of a run: its partitions, counts and busy seconds per stage."""

    worker: int
    pid: int
    partitions: list[str]
    records_read: int = 0
    inserted: int = 0
    quarantined: int = 0
    elapsed_s: float = 0.0
    stage_busy: dict[str, float] = field(default_factory=_zero_busy)

    @property
    def rec_per_s(self) -> float:
        return self.records_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rec_per_s": self.rec_per_s}


@dataclass
class RunStats:
    records_read: int = 0
    inserted: int = 0
    quarantined: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    elapsed_s: float = 0.0
    batches: list[BatchStat] = field(default_factory=list)
    units: list[UnitResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Busy seconds of the two pipeline halves: ``read_map`` (parse, map, skip, sending) and
    # ``insert`` (connect, insert, commit, receiving); summed over workers.
    stage_busy: dict[str, float] = field(default_factory=_zero_busy)
    pipeline: str = "off"
    queue_depth: int = 0
    max_in_flight: int = 0  # most mapped batches handed to the inserter and not yet taken
    # Records the ``process`` pipeline's producer only extracted, and the inserter converted
    # (their conversion time is in stage ``map`` and in the ``insert`` half's busy time).
    converted_by_inserter: int = 0
    # CPU seconds (of the threads doing it) spent reading and mapping: the same work for the
    # same input whatever the configuration, so its spread between runs measures how fast
    # the machine was during each run (see reports.stats.machine_noise).
    read_map_cpu_s: float = 0.0
    workers: list[WorkerStats] = field(default_factory=list)
    # Transient database errors retried, and the seconds waited between attempts: a run
    # that retried measured a restart or a lock conflict as well as the migration.
    retries: int = 0
    retry_wait_s: float = 0.0
    # Connections the writers opened or checked out of a pool (reconnects included): one
    # per batch, or one per worker for the run (see migrator.connection).
    connects: int = 0
    # Per record element: records read, inserted and quarantined by this invocation.
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    # Records read that kept an entity reference literal (&x;): no DTD catalog, or one
    # that does not declare it.
    unexpanded_entities: int = 0
    # What the user should know about the run that is no error (a file --workers could
    # not cut into byte ranges, and why).
    notes: list[str] = field(default_factory=list)

    @property
    def throughput_rec_per_min(self) -> float:
        return 60.0 * self.records_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def overlap_efficiency(self) -> float:
        """(sum of stage busy times) / wall: 1.0 is no overlap, 2.0 two stages fully busy."""
        return sum(self.stage_busy.values()) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add_counts(self, r: RunStats) -> None:
        """Add another part's rows, record counts, stage times, errors and retries."""
        for table, n in r.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n
        for element, counts in r.records.items():
            mine = self.records.setdefault(element, dict.fromkeys(counts, 0))
            for k, n in counts.items():
                mine[k] = mine.get(k, 0) + n
        for stage, s in r.stages.items():
            self.stages[stage] = self.stages.get(stage, 0.0) + s
        for half, s in r.stage_busy.items():
            self.stage_busy[half] = self.stage_busy.get(half, 0.0) + s
        self.errors.extend(r.errors)
        self.max_in_flight = max(self.max_in_flight, r.max_in_flight)
        self.converted_by_inserter += r.converted_by_inserter
        self.unexpanded_entities += r.unexpanded_entities
        self.read_map_cpu_s += r.read_map_cpu_s
        self.retries += r.retries
        self.retry_wait_s += r.retry_wait_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "inserted": self.inserted,
            "quarantined": self.quarantined,
            "elapsed_s": self.elapsed_s,
            "throughput_rec_per_min": self.throughput_rec_per_min,
            "stages": dict(self.stages),
            "stage_busy_s": dict(self.stage_busy),
            "overlap_efficiency": self.overlap_efficiency,
            "pipeline": self.pipeline,
            "queue_depth": self.queue_depth,
            "max_in_flight": self.max_in_flight,
            "converted_by_inserter": self.converted_by_inserter,
            "read_map_cpu_s": self.read_map_cpu_s,
            "retries": self.retries,
            "retry_wait_s": self.retry_wait_s,
            "connects": self.connects,
            "workers": [w.to_dict() for w in self.workers],
            "tables": dict(self.rows),
            "records": {k: dict(v) for k, v in self.records.items()},
            "unexpanded_entities": self.unexpanded_entities,
            "notes": list(self.notes),
            "units": [asdict(u) for u in self.units],
            "errors": list(self.errors),
            "batches": {"columns": list(BatchStat.FIELDS),
                        "rows": [b.as_row() for b in self.batches]},
        }


Progress = Callable[[RunStats, int], None]  # (stats so far, input bytes consumed)
