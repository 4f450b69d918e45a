"""EngineConfig: how one engine reads, maps and writes (batch size, pipeline, retries)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.connection import ConnectionStrategy, parse_connection
from migrator.retry import RetryPolicy

PIPELINE_MODES = ("off", "thread", "process")
CONVERT_SIDES = ("auto", "reader", "inserter")


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 1000
    insert_method: str | None = None  # None: the dialect's default
    # How each batch gets its connection (migrator.connection); a strategy's pooling is
    # applied in every process (workers too) before its first connect. The library keeps
    # one connection per engine; `bench run` defaults to a new one per batch.
    connection: ConnectionStrategy = ConnectionStrategy.PERSISTENT
    pipeline: str = "off"  # off | thread | process: how reading+mapping overlaps inserting
    queue_depth: int = 2  # mapped batches waiting for the inserter, at most (backpressure)
    # ``process`` pipeline only: which side checks and converts a batch's values. ``auto``
    # gives them to the inserter while it keeps up (the producer did not have to wait to
    # hand over its last batch) and keeps them in the producer when it does not.
    convert_side: str = "auto"  # auto | reader | inserter
    # How long transient database errors (a restart, a killed session, a deadlock) are
    # retried: reconnecting, the "did this batch commit?" check and the retry itself.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Check in every batch transaction, under a lock on the units' checkpoint rows, that
    # each unit is where this engine left it. Set where the same unit may be read by two
    # engines at once (a cluster that reran the task of a worker it believed lost): the
    # second one stops with UnitTaken instead of committing the records again.
    fence_units: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        # ("pooled" as well as ConnectionStrategy.POOLED; an unknown name is a ValueError)
        object.__setattr__(self, "connection", parse_connection(self.connection))
        if self.pipeline not in PIPELINE_MODES:
            raise ValueError(f"pipeline must be one of {', '.join(PIPELINE_MODES)}, "
                             f"got {self.pipeline!r}")
        if self.queue_depth < 1:
            raise ValueError("queue_depth must be >= 1")
        if self.convert_side not in CONVERT_SIDES:
            raise ValueError(f"convert_side must be one of {', '.join(CONVERT_SIDES)}, "
                             f"got {self.convert_side!r}")
