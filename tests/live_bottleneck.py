"""Helpers for reproducing a bottleneck live and walking the decision tree over it.

A scenario is a real migration (:func:`bench.runner.execute_run`, in this process) into a
live server that something makes slow in one way: a lock held by another session, a costly
trigger, tiny batches, a mapping-heavy input, a throttled disk. :class:`LiveMeasure` adapts
it to :class:`diagnostics.pooling.Measure`, so ``bench diagnose pooling``'s own bottleneck
test (:class:`diagnostics.pooling.BottleneckTest`) samples it and turns its attributed
verdict into the decision tree's facts.

The contention test (test 3) repeats every worker count and connection strategy several
times; that is minutes of runs whose statistics a loaded two-core machine cannot make
reproducible. :data:`WORKERS_STOPPED_SCALING` stands for its outcome in the case where the
tree goes on to ask which resource saturates — no strategy significantly better than
per-batch, two workers no faster than one — made by the contention test's own analysis
from rounds of that shape (:func:`contention_facts`). The facts of the tests that do run
(configuration and connection cost where a scenario needs them, the bottleneck always)
override it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.runner import RunRequest, execute_run
from diagnostics.decision import Decision, FactValue, evaluate
from diagnostics.pooling import (
    BottleneckTest,
    ContentionTest,
    DiagnosisContext,
    RunMeasurement,
    TestResult,
    decision_facts,
)
from diagnostics.strategies import STRATEGIES
from migrator.connection import DEFAULT_STRATEGY, ConnectionStrategy
from reports import stats

SAMPLE_INTERVAL = 0.1
ROUNDS = 10


def contention_facts(rates: Mapping[tuple[int, str], float],
                     pooling_in_force: bool = False) -> dict[str, FactValue]:
    """The contention test's facts over :data:`ROUNDS` rounds at the given rates (rec/min
    per (workers, strategy)), each round a little faster or slower for all alike, as a
    host's speed drifts."""
    host = [1 + 0.01 * ((7 * r) % 5 - 2) for r in range(ROUNDS)]
    samples = {key: [rate * h * (1 + 0.002 * ((3 * r + len(key[1])) % 3 - 1))
                     for r, h in enumerate(host)] for key, rate in rates.items()}
    workers = sorted({w for w, _ in rates})
    return ContentionTest().analyse(stats, workers, samples, cores=2,
                                    pooling_in_force=pooling_in_force).facts


WORKERS_STOPPED_SCALING: dict[str, FactValue] = {
    # test 1: pooling is off and believed off (nothing says otherwise)
    "config.intended": "unstated", "config.effective": False, "config.pool_possible": True,
    "config.sessions_as_configured": 20, "config.connections": 20,
    "config.ignored_keywords": "none", "config.ini": "",
    # test 2: connecting is cheap next to a batch
    "cost.connect_ms": 4.0, "cost.checkout_ms": 0.05, "cost.batch_ms": 400.0,
    "cost.connect_share_pct": 1.0,
    # test 3: every strategy alike; 2 workers no faster than one (half of ideal scaling)
    **contention_facts({(w, s.name): 1000.0 for w in (1, 2) for s in STRATEGIES}),
}


@dataclass
class LiveMeasure:
    """:class:`diagnostics.pooling.Measure` over :func:`bench.runner.execute_run` in this
    process (``progress`` reaches the runner, so a scenario can act mid-run)."""

    inputs: Path
    target: str
    out: Path
    batch_size: int = 100
    mapping: Path | None = None
    progress: Callable[..., None] | None = None
    sample_interval: float = SAMPLE_INTERVAL
    runs: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        request = RunRequest(
            inputs=[str(self.inputs)], target=self.target, mapping=self.mapping,
            batch_size=self.batch_size, workers=workers or 1,
            connection=connection or DEFAULT_STRATEGY,
            sample_interval=self.sample_interval if sample else None,
            out=self.out / f"run{len(self.runs)}", replace_existing_tables=True)
        outcome = execute_run(request, progress=self.progress)
        assert outcome.status == "complete", outcome.error
        run: dict[str, Any] = json.loads(outcome.result_file.read_text())["runs"][0]
        self.runs.append(run)
        metrics = run["metrics"]
        batches = metrics.get("batches") or {}
        cols = batches.get("columns") or []
        idx = [cols.index(c) for c in ("parse", "map", "insert", "commit") if c in cols]
        batch_ms = [1000 * sum(float(r[i]) for i in idx) for r in batches.get("rows") or []]
        return RunMeasurement(float(metrics["throughput_rec_per_min"]),
                              float(metrics["elapsed_s"]), dict(metrics["stages"]), batch_ms,
                              workers or 1, connection, run.get("bottleneck"), run)

    def strategies(self) -> tuple[str, ...]:
        return tuple(s.name for s in STRATEGIES)

    def unsupported(self, *, workers: bool) -> str | None:
        return None

    @property
    def last(self) -> dict[str, Any]:
        return self.runs[-1]


def bottleneck_test(measure: LiveMeasure, workers: int = 1,
                    ctx: DiagnosisContext | None = None) -> TestResult:
    """``bench diagnose pooling``'s test 4 over one live run at ``workers`` workers."""
    ctx = ctx or DiagnosisContext(target=measure.target, workers=(workers,), measure=measure)
    result = BottleneckTest().run(ctx)
    assert result.status == "ok", result
    return result


def walk(*results: TestResult, context: Mapping[str, FactValue] = WORKERS_STOPPED_SCALING
         ) -> Decision:
    """The decision tree over the measured results, ``context`` standing in for the tests
    that were not run."""
    return evaluate({**context, **decision_facts(results)})


def path_of(decision: Decision) -> list[str]:
    return [step.node for step in decision.path]


def why(result: TestResult) -> str:
    """The verdict in one line, for assertion messages: label, scores and the facts."""
    v: dict[str, Any] = result.details["verdict"]
    facts = {k: round(f["value"], 1) for k, f in v["facts"].items()}
    return f"{v['label']} scores={v['scores']} facts={facts}"


def label_of(result: TestResult) -> str:
    verdict: dict[str, Any] = result.details["verdict"]
    return str(verdict["label"])


BUSY_TAKE_PCT = 30.0
"""The share of the run's CPU other processes must have been measured taking (while its
threads waited for a CPU) for a scenario on this shared machine to come out host-busy."""


def reproduced(result: TestResult, label: str) -> str:
    """The label the scenario reproduced: ``label``, or — when other processes on the test
    machine measurably took the CPU the run waited for — host-busy, with ``label`` the
    runner-up. The label the tree was walked with is returned; anything else fails."""
    verdict: dict[str, Any] = result.details["verdict"]
    if verdict["label"] == "host-busy" and label != "host-busy":
        take = (verdict["facts"].get("host.others_take_pct") or {}).get("value")
        assert take is not None and take >= BUSY_TAKE_PCT, why(result)
        assert verdict["runner_up"] == label, why(result)
        return "host-busy"
    assert verdict["label"] == label, why(result)
    return label


def walk_as(label: str, *results: TestResult,
            context: Mapping[str, FactValue] = WORKERS_STOPPED_SCALING) -> Decision:
    """The tree over the results as if the sampled run had been attributed ``label`` (the
    runner-up of a busy host's verdict): the path the scenario's own label takes."""
    return evaluate({**context, **decision_facts(results), "bottleneck.label": label})


class LockHolder:
    """A ``progress`` callback: after the run's first committed batch, another session
    takes a lock on a table the run writes; it is released once the sampler has looked for
    its holder in ``rounds`` rounds (counted on the real sampler method), or after a
    deadline, so a sampler that never sees the wait fails the test instead of hanging."""

    def __init__(self, take: Callable[[], Any], release: Callable[[Any], None],
                 rounds: int) -> None:
        self.take, self.release = take, release
        self.wanted = rounds
        self.rounds = 0
        self.seen = threading.Event()
        self.thread: threading.Thread | None = None

    def counting(self, method: Callable[..., None]) -> Callable[..., None]:
        def wrapper(*args: Any, **kwargs: Any) -> None:
            method(*args, **kwargs)
            self.rounds += 1
            if self.rounds >= self.wanted:
                self.seen.set()
        return wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.thread is not None:
            return
        holder = self.take()  # between batches: the run holds no lock on the table now

        def release_later() -> None:
            self.seen.wait(timeout=120)
            self.release(holder)

        self.thread = threading.Thread(target=release_later, daemon=True)
        self.thread.start()


class OnceAfterFirstBatch:
    """A ``progress`` callback that runs ``action`` once, after the first committed batch
    (the run has created its tables by then and holds no lock on them between batches)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = False

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if not self.done:
            self.done = True
            self.action()
