"""`bench diagnose pooling`: the four connection-pooling tests and the decision tree.

Registered on :data:`bench.cli.app` by importing this module (``bench/cli.py`` does, at its
end). The tests themselves live in :mod:`diagnostics.pooling` and the tree in
:mod:`diagnostics.decision`; this module adapts them: it runs each measured migration
through the sweep harness (:func:`bench.sweep.execute_point`) in a fresh spawned process —
unixODBC reads its pooling setting once per process, so pooling on and off cannot share
one — samples the sampled run from here, prints and stores the results.

Exit codes: 0, or 3 when the configuration test finds the user's pooling settings
ineffective (pyperf's "not tuned"); 1 operational errors, 2 usage errors, 130 Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.cli import (
    JsonOption,
    ReplaceTablesOption,
    RunFolderOption,
    SchemaOption,
    TablePrefixOption,
    _positive,
    app,
    user_errors,
)
from bench.preflight import check_target_folder, check_target_reachable, ensure_writable_dir
from bench.ranges import RangeError, parse_range
from bench.results import build_result, new_run_dir, write_result
from bench.runner import RunRequest
from bench.sweep import (
    DEFAULT_RECORDS,
    DEFAULT_REPEAT,
    RunSettings,
    ensure_dataset,
)
from diagnostics.decision import THRESHOLDS, decision_to_dict, resolve_thresholds
from diagnostics.pooling import (
    DiagnosisContext,
    DiagnosisReport,
    MeasureUnsupported,
    PoolingDiagnosis,
    PoolingTest,
    RunMeasurement,
    TestResult,
)
from migrator.connstr import redact_connection_string
from migrator.errors import MigratorError
from migrator.pipeline import describe_exit
from migrator.session import new_run_id, run_prefix

diagnose_app = typer.Typer(name="diagnose", help="Diagnose why a migration is as fast as it "
                           "is.", no_args_is_help=True)
app.add_typer(diagnose_app, name="diagnose")

DEFAULT_WORKERS = "1,2,4"
CONFIG_FILE = "bench.toml"


# ---- measuring one run in a fresh process ---------------------------------------------------

# The child imports bench.runner only (not the CLI, whose statistics import costs seconds per
# process). It says "ready", waits for "go" (the parent's samplers are running), runs, and
# prints one JSON line. The request, which may hold a password, travels through stdin.
CHILD = r"""
import dataclasses, json, sys
from pathlib import Path
from migrator.pipeline import die_with_parent
die_with_parent()
from bench.results import load_result
from bench.runner import RunRequest, execute_run
from migrator.errors import MigratorError

job = json.loads(sys.stdin.readline())
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
work = Path(job["work_dir"])
if job["target"] is None:  # a fresh default database file per run, as the sweep does
    for suffix in ("", "-wal", "-shm", "-journal"):
        (work / f"mig.db{suffix}").unlink(missing_ok=True)
fields = {f.name: f for f in dataclasses.fields(RunRequest)}
kwargs = {"inputs": job["inputs"], "target": job["target"], "resume": False, "out": work,
          "mapping": Path(job["mapping"]) if job["mapping"] else None,
          "run_id": job.get("run_id"), **job.get("target_options", {})}
for name, value in job["config"].items():
    kind = fields[name].type
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    kwargs[name] = (value == "on") if kind.strip() == "bool" and value in ("on", "off") \
        else value
try:
    outcome = execute_run(RunRequest(**kwargs))
    doc = load_result(outcome.result_file)
    run = dict(doc["runs"][0])
    run["config"] = {**run.get("config", {}), **job["config"]}
    run["verdicts"] = doc.get("verdicts", [])
    if run.get("status", "complete") != "complete":
        print(json.dumps({"error": "the migration did not complete cleanly, so its time is "
                                   "not a measurement: " + str(run.get("error"))}))
    else:
        print(json.dumps({"run": run, "environment": doc.get("environment", {})}))
except MigratorError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def _batch_ms(run: Mapping[str, Any]) -> list[float]:
    batches = run.get("metrics", {}).get("batches") or {}
    cols = batches.get("columns") or []
    rows = batches.get("rows") or []
    idx = [cols.index(c) for c in ("parse", "map", "insert", "commit") if c in cols]
    return [1000 * sum(float(r[i]) for i in idx) for r in rows if idx]


class RunnerMeasure:
    """:class:`diagnostics.pooling.Measure` over :func:`bench.runner.execute_run`, one fresh
    process per run (unixODBC's pooling choice is per process)."""

    def __init__(self, settings: RunSettings, batch_size: int, sampling: SamplerSetup) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.sampling = sampling
        self.environment: dict[str, Any] = {}

    def __call__(self, *, workers: int | None, pooling: bool | None,
                 sample: bool) -> RunMeasurement:
        config: dict[str, Any] = {"batch_size": self.batch_size}
        if workers is not None:
            config["workers"] = workers
        if pooling is not None:
            config["pooling"] = "on" if pooling else "off"
        why = self._missing(list(config))
        if why:
            raise MeasureUnsupported(why)
        # The run's sessions carry this id, so the sampler here counts exactly them.
        run_id = new_run_id()
        job = {"config": config, "inputs": list(self.settings.inputs),
               "target": self.settings.target, "work_dir": str(self.settings.work_dir),
               "mapping": str(self.settings.mapping) if self.settings.mapping else None,
               "target_options": {k: v for k, v in self.settings.target_options().items()
                                  if v},
               "run_id": run_id}
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # stderr goes to a file: a pipe nobody reads could fill up and stall the run.
        log = open(self.settings.work_dir / "run-stderr.log", "w+", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
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
                              stages, _batch_ms(run), workers or 1, pooling, bottleneck, run)

    def unsupported(self, *, workers: bool, pooling: bool) -> str | None:
        return self._missing([n for n, wanted in (("workers", workers), ("pooling", pooling))
                              if wanted])

    @staticmethod
    def _missing(names: list[str]) -> str | None:
        fields = {f.name for f in dataclasses.fields(RunRequest)}
        missing = [name for name in names if name not in fields]
        if not missing:
            return None
        return (f"bench.runner.execute_run cannot set {' and '.join(missing)} yet "
                f"(RunRequest has no {', '.join(repr(m) for m in missing)} field)")

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


# ---- thresholds from flags and bench.toml -----------------------------------------------------

def _thresholds(flags: list[str] | None, config_file: Path | None) -> dict[str, float]:
    overrides: dict[str, float] = {}
    path = config_file or Path(CONFIG_FILE)
    if path.is_file():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise typer.BadParameter(f"{path}: {exc}", param_hint="--config") from None
        table = doc.get("diagnose", {}).get("thresholds", {})
        if not isinstance(table, dict):
            raise typer.BadParameter(f"{path}: [diagnose.thresholds] must be a table")
        for k, v in table.items():
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise typer.BadParameter(f"{path}: threshold {k} must be a number")
            overrides[k] = float(v)
    elif config_file is not None:
        raise typer.BadParameter(f"{path}: no such file", param_hint="--config")
    for item in flags or []:
        name, sep, value = item.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"{item!r}: use NAME=NUMBER, NAME one of "
                                     f"{', '.join(THRESHOLDS)}", param_hint="--threshold")
    try:
        return resolve_thresholds(overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--threshold") from None


def _on_off(value: str | None, option: str) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v not in ("on", "off"):
        raise typer.BadParameter(f"use on or off, got {value!r}", param_hint=option)
    return v == "on"


# ---- printing ---------------------------------------------------------------------------------

def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _print_result(test: PoolingTest, result: TestResult) -> None:
    con = ui.console()
    mark = {"ok": "ok", "ineffective": "INEFFECTIVE", "warning": "warning",
            "unavailable": "not run", "error": "error"}[result.status]
    con.print(f"[{test.number}/4] {test.title} ({mark}): {result.verdict}", markup=False)
    shown = [f"{k} {_show(v)}" for k, v in result.numbers.items() if v is not None]
    if shown:
        con.print("      " + " · ".join(shown), markup=False)
    for m in result.messages:
        con.print("      ! " + m.replace("\n", "\n        "), markup=False)


def _print_decision(report: DiagnosisReport) -> None:
    con = ui.console()
    con.print("decision path:", markup=False)
    for line in report.decision.lines():
        con.print("  " + line, markup=False)


# ---- the command ------------------------------------------------------------------------------

@diagnose_app.command("pooling")
def pooling(
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: a SQLite file in the run "
             "folder).")] = None,
    workers: Annotated[str, typer.Option(
        "--workers", "-w", help="Worker counts for the contention test (range grammar).")
    ] = DEFAULT_WORKERS,
    records: Annotated[int, typer.Option(
        "--records", "-n", callback=_positive("--records"),
        help="Size of the generated, cached dataset each run migrates.")] = DEFAULT_RECORDS,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", callback=_positive("--batch-size"),
        help="Records per transaction (the batch whose time connection cost is compared "
             "with).")] = 1000,
    repeat: Annotated[int, typer.Option(
        "--repeat", "-r", callback=_positive("--repeat"),
        help="Runs per (workers, pooling) configuration in the contention test.")
    ] = DEFAULT_REPEAT,
    connections: Annotated[int, typer.Option(
        "--connections", callback=_positive("--connections"),
        help="Connections each configuration probe opens and closes.")] = 20,
    expect: Annotated[str | None, typer.Option(
        "--expect", help="What you believe pooling is: on or off (default: what the "
                         "connection string or --pyodbc-pooling says).")] = None,
    pyodbc_pooling: Annotated[str | None, typer.Option(
        "--pyodbc-pooling", help="pyodbc.pooling as your application sets it: on or off "
                                 "(default: pyodbc's default, on).")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="Override a decision threshold: NAME=NUMBER (repeatable; also "
                            "\\[diagnose.thresholds] in bench.toml).")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help=f"Configuration file (default: ./{CONFIG_FILE} when present).")
    ] = None,
    sample_interval: Annotated[float, typer.Option(
        "--sample-interval", min=0.01, help="Seconds between samples in the bottleneck "
                                            "test.")] = 0.5,
    schema: SchemaOption = None,
    table_prefix: TablePrefixOption = "",
    replace_existing_tables: ReplaceTablesOption = False,
    out: RunFolderOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the four pooling tests (configuration, connection cost, contention, bottleneck)
    and walk the pooling decision tree."""
    try:
        worker_counts = tuple(parse_range(workers, name="--workers", series="linear"))
    except RangeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from None
    values = _thresholds(threshold, config_file)
    expected = _on_off(expect, "--expect")
    flag = _on_off(pyodbc_pooling, "--pyodbc-pooling")
    run_dir = out or new_run_dir()
    work_dir = run_dir / "work"
    given = target or os.environ.get("BENCH_TARGET")
    with user_errors():  # before any measurement: where the target is, where results go
        check_target_folder(target)
        if given:  # one connection first: an unreachable target stops here, once
            check_target_reachable(given)
        ensure_writable_dir(run_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
    spec = given or f"sqlite:{work_dir / 'mig.db'}"
    display = ("odbc:" + redact_connection_string(spec[5:]) if spec.startswith("odbc:")
               else spec)

    with user_errors():
        import datasets

        try:
            folder, _ = ensure_dataset(records)
        except datasets.DatasetError as exc:
            raise MigratorError(str(exc)) from None
        settings = RunSettings(inputs=[str(folder)], target=target, mapping=None,
                               work_dir=work_dir, schema=schema, table_prefix=table_prefix,
                               replace_existing_tables=replace_existing_tables)
        sampling = SamplerSetup(spec, str(work_dir / "mig.db") if spec.startswith("sqlite:")
                                else None, sample_interval)
        measure = RunnerMeasure(settings, batch_size, sampling)
        from reports import stats

        err = ui.console(stderr=True)
        ctx = DiagnosisContext(
            target=spec, workers=worker_counts, batch_size=batch_size, repeat=repeat,
            connections=connections, expect=expected, pyodbc_pooling=flag, measure=measure,
            stats=stats, progress=None if as_json else (
                lambda text: err.print(f"  … {text}", markup=False, style="dim")))

        def on_result(test: PoolingTest, result: TestResult) -> None:
            if test.name == "configuration":
                sampling.dialect = str(result.facts.get("dialect") or "sqlite")
            if not as_json:
                _print_result(test, result)

        report = PoolingDiagnosis(ctx, on_result=on_result, thresholds=values).run()
        decision = decision_to_dict(report.decision)
        tests = [r.to_dict() for r in report.results]
        doc = build_result(
            "diagnose",
            config={"target": display, "workers": list(worker_counts), "records": records,
                    "batch_size": batch_size, "repeat": repeat, "connections": connections,
                    "expect": expect, "pyodbc_pooling": pyodbc_pooling, "thresholds": values},
            environment=measure.environment or _environment(records),
            runs=ctx.runs,
            verdicts=[{"kind": "pooling-test", **t} for t in tests]
            + [{"kind": "pooling-decision", "leaf": decision["leaf"],
                "verdict": decision["verdict"], "recommendation": decision["recommendation"],
                "rationale": decision["rationale"]}],
            extra={"diagnose": {"tests": tests, "decision": decision,
                                "exit_code": report.exit_code}})
        result_file = write_result(run_dir, doc)
    if as_json:
        typer.echo(json.dumps({"tests": tests, "decision": decision,
                               "exit_code": report.exit_code,
                               "result_file": str(result_file)}, indent=1,
                              ensure_ascii=False, default=str))
    else:
        _print_decision(report)
        ui.console().print(f"result: {result_file}", markup=False)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _environment(records: int) -> dict[str, Any]:
    from bench import environment

    return environment.collect(None, {"records": records})
