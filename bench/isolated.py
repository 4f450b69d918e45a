"""One measured migration in a fresh process, sampled from this one.

:class:`RunnerMeasure` is the :class:`diagnostics.pooling.Measure` that `bench diagnose
pooling` uses: unixODBC reads its pooling choice once per process, so every run gets a
process of its own (:mod:`bench.run_child`, which runs it through the sweep harness,
:func:`bench.sweep.execute_point`). The child says "ready" once its imports are done and
waits for "go", so that the samplers started here cover the run and not the imports. The
request, which may hold a password, travels through stdin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench.runner import RunRequest
from bench.sweep import DIMENSIONS, RunContext
from diagnostics.pooling import MeasureUnsupported, RunMeasurement
from diagnostics.strategies import BY_NAME, supported
from migrator.connection import ConnectionStrategy
from migrator.errors import MigratorError
from migrator.procs import describe_exit
from migrator.session import new_run_id, run_prefix


def batch_ms(run: Mapping[str, Any]) -> list[float]:
    batches = run.get("metrics", {}).get("batches") or {}
    cols = batches.get("columns") or []
    rows = batches.get("rows") or []
    idx = [cols.index(c) for c in ("parse", "map", "insert", "commit") if c in cols]
    return [1000 * sum(float(r[i]) for i in idx) for r in rows if idx]


class RunnerMeasure:
    """:class:`diagnostics.pooling.Measure` over :func:`bench.runner.execute_run`, one fresh
    process per run (unixODBC's pooling choice is per process)."""

    def __init__(self, context: RunContext, batch_size: int, sampling: SamplerSetup) -> None:
        self.context = context
        self.batch_size = batch_size
        self.sampling = sampling
        self.environment: dict[str, Any] = {}

    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        config: dict[str, Any] = {"batch_size": self.batch_size}
        if workers is not None:
            config["workers"] = workers
        if connection is not None:
            if connection not in self.strategies():
                raise MeasureUnsupported(f"the runner cannot set connection strategy "
                                         f"{connection!r}")
            config.update(BY_NAME[connection.value].run_config)
        # The run's sessions carry this id, so the sampler here counts exactly them.
        run_id = new_run_id()
        job = {"config": config, "inputs": list(self.context.inputs),
               "target": self.context.target, "work_dir": str(self.context.work_dir),
               "mapping": str(self.context.mapping) if self.context.mapping else None,
               "settings": self.context.settings.values(), "run_id": run_id}
        # stderr goes to a file: a pipe nobody reads could fill up and stall the run.
        log = open(self.context.work_dir / "run-stderr.log", "w+", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "bench.run_child"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                text=True)
        assert proc.stdin is not None and proc.stdout is not None
        session = None
        series = None
        wall = 0.0
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            self._line(proc)  # ready: imports done
            if sample:
                session = self.sampling.session(proc.pid, workers or 1, run_id)
                session.start()
            t0 = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            msg = self._line(proc)
            wall = time.monotonic() - t0
        except (EOFError, BrokenPipeError):
            msg = {}
        finally:
            if session is not None:
                series = session.stop()
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            log.seek(0)
            err = log.read().strip().splitlines()
            log.close()
        if not msg:
            raise MigratorError(f"diagnose: the run process died "
                                f"({describe_exit(proc.returncode)})"
                                + (f": {err[-1]}" if err else ""))
        if "error" in msg:
            raise MigratorError(f"diagnose: the measured run failed: {msg['error']}")
        run = msg["run"]
        self.environment = self.environment or msg.get("environment", {})
        metrics = run.get("metrics", {})
        stages = {k: float(v) for k, v in (metrics.get("stages") or {}).items()}
        elapsed = float(metrics.get("elapsed_s") or wall)
        bottleneck = None
        if series is not None:
            from diagnostics import StageTimings, attribute

            # The sampling window is the whole run as seen from here (schema, migration,
            # reconciliation), so the final sample falls inside it.
            timings = StageTimings.from_mapping(stages, max(elapsed, wall), workers or 1)
            bottleneck = attribute(timings, series).to_dict()
            run = {**run, "samples": series.to_dict(), "bottleneck": bottleneck}
        return RunMeasurement(float(metrics.get("throughput_rec_per_min") or 0.0), elapsed,
                              stages, batch_ms(run), workers or 1, connection, bottleneck,
                              run)

    def strategies(self) -> tuple[str, ...]:
        """The connection strategies whose setting is a sweep dimension the installed runner
        has (the run child runs its configuration through the sweep harness)."""
        fields = {f.name for f in dataclasses.fields(RunRequest)}
        return tuple(s.name for s in supported({d.name for d in DIMENSIONS
                                                if d.field in fields}))

    def unsupported(self, *, workers: bool) -> str | None:
        """The runner sets the worker count."""
        return None

    @staticmethod
    def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise EOFError
        data: dict[str, Any] = json.loads(line)
        return data


class SamplerSetup:
    """Builds the sampling session of the bottleneck run (host + the dialect's server)."""

    def __init__(self, target: str, db_path: str | None, interval: float = 0.5) -> None:
        self.target = target
        self.db_path = db_path
        self.interval = interval
        self.dialect = "sqlite"

    def session(self, pid: int, workers: int, run_id: str | None = None) -> Any:
        """Sampling of the run process ``pid`` whose sessions carry ``run_id``."""
        from bench.sampling import SAMPLED_DIALECTS, sampler_connect
        from diagnostics import sampling_session

        dialect = self.dialect if self.dialect in SAMPLED_DIALECTS else "sqlite"
        return sampling_session(dialect, sampler_connect(self.target, dialect, run_id),
                                interval=self.interval, pids=lambda: [pid],
                                db_path=self.db_path, program_name=run_prefix(run_id))
