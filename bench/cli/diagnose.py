"""`bench diagnose pooling`: the four connection-pooling tests and the decision tree.

The tests live in :mod:`diagnostics.pooling` and the tree in :mod:`diagnostics.decision`;
each measured migration runs in a fresh process (:mod:`bench.isolated`) — unixODBC reads its
pooling setting once per process, so pooling on and off cannot share one — and the sampled
run is sampled from here.

Exit codes: 0, or 3 when the configuration test finds the user's pooling settings
ineffective (pyperf's "not tuned"); 1 operational errors, 2 usage errors, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.cli.options import (
    TABLE_SETTINGS,
    JsonOption,
    RunFolderOption,
    positive,
    settings_options,
    user_errors,
)
from bench.isolated import RunnerMeasure, SamplerSetup
from bench.preflight import check_target_folder, check_target_reachable, ensure_writable_dir
from bench.ranges import RangeError, parse_range
from bench.results import build_result, new_run_dir, write_result
from bench.sweep import DEFAULT_RECORDS, RunContext, ensure_dataset
from diagnostics import diagnosis as dx
from diagnostics.decision import THRESHOLDS, resolve_thresholds
from diagnostics.pooling import DiagnosisContext, PoolingDiagnosis, PoolingTest, TestResult
from migrator.connstr import redact_connection_string
from migrator.errors import MigratorError
from migrator.settings import RunSettings

app = typer.Typer(name="diagnose", help="Diagnose why a migration is as fast as it is.",
                  no_args_is_help=True)

DEFAULT_REPEAT = 10
"""Rounds by default: enough for the smallest exact signed-rank p (2 / 2**n) to survive
Holm's correction over a dozen comparisons."""
DEFAULT_WORKERS = (1, 2, 4)
"""Worker counts measured by default: those of them the client has logical cores for."""
CONFIG_FILE = "bench.toml"


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


# ---- printing: the lines diagnostics.diagnosis renders (the HTML report shows the same) ------

def _print(lines: list[str]) -> None:
    con = ui.console()
    for line in lines:
        con.print(line, markup=False, soft_wrap=True)


def default_workers(cores: int | None) -> tuple[int, ...]:
    """:data:`DEFAULT_WORKERS` up to the client's logical cores (more would measure the
    client's oversubscription, not the target): ask for more with --workers."""
    return tuple(w for w in DEFAULT_WORKERS if w <= max(1, cores or 1))


# ---- the command ------------------------------------------------------------------------------

@app.command("pooling")
@settings_options("batch_size", *TABLE_SETTINGS, helps={
    "batch_size": "Records per transaction (the batch whose time connection cost is compared "
                  "with)."})
def pooling(
    *,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: a SQLite file in the run "
             "folder).")] = None,
    workers: Annotated[str | None, typer.Option(
        "--workers", "-w", help="Worker counts for the contention test (range grammar); "
        "counts above the client's logical cores are measured and labelled "
        "oversubscribed. \\[default: 1,2,4 up to the client's logical cores]")] = None,
    records: Annotated[int, typer.Option(
        "--records", "-n", callback=positive("--records"),
        help="Size of the generated, cached dataset each run migrates.")] = DEFAULT_RECORDS,
    repeat: Annotated[int, typer.Option(
        "--repeat", "-r", callback=positive("--repeat"),
        help="Rounds of the contention test: each runs every (workers, connection "
             "strategy) configuration once, in a shuffled order.")
    ] = DEFAULT_REPEAT,
    connections: Annotated[int, typer.Option(
        "--connections", callback=positive("--connections"),
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
    settings: RunSettings,  # the runs' batch size, and where their tables go
    out: RunFolderOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the four pooling tests (configuration, connection cost, contention, bottleneck)
    and walk the pooling decision tree."""
    cores = os.cpu_count()
    try:
        worker_counts = (tuple(parse_range(workers, name="--workers", series="linear"))
                         if workers is not None else default_workers(cores))
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
        context = RunContext(inputs=[str(folder)], target=target, mapping=None,
                             work_dir=work_dir, settings=settings)
        sampling = SamplerSetup(spec, str(work_dir / "mig.db") if spec.startswith("sqlite:")
                                else None, sample_interval)
        measure = RunnerMeasure(context, settings.batch_size, sampling)
        from reports import stats

        err = ui.console(stderr=True)
        ctx = DiagnosisContext(
            target=spec, workers=worker_counts, batch_size=settings.batch_size, repeat=repeat,
            connections=connections, expect=expected, pyodbc_pooling=flag, measure=measure,
            stats=stats, client_cores=cores, thresholds=values,
            progress=None if as_json else (
                lambda text: err.print(f"  … {text}", markup=False, style="dim")))

        def on_result(test: PoolingTest, result: TestResult) -> None:
            if test.name == "configuration":
                sampling.dialect = str(result.facts.get("dialect") or "sqlite")
            if not as_json:
                _print(dx.test_lines(result))

        report = PoolingDiagnosis(ctx, on_result=on_result, thresholds=values).run()
        config = {"target": display, "workers": list(worker_counts), "records": records,
                  "batch_size": settings.batch_size, "repeat": repeat,
                  "connections": connections, "expect": expect,
                  "pyodbc_pooling": pyodbc_pooling, "thresholds": values,
                  "client_cores": cores, "strategies": list(measure.strategies())}
        diagnosis = dx.build(report, target=display, settings=config)
        doc = build_result(
            "diagnose", config=config,
            environment=measure.environment or _environment(records),
            runs=ctx.runs, verdicts=dx.verdict_summaries(diagnosis),
            extra={"diagnose": diagnosis.to_dict()})
        result_file = write_result(run_dir, doc)
    if as_json:
        typer.echo(json.dumps({**diagnosis.to_dict(), "result_file": str(result_file)},
                              indent=1, ensure_ascii=False, default=str))
    else:
        _print(dx.decision_lines(diagnosis))
        ui.console().print(f"result: {result_file}", markup=False)
    if diagnosis.exit_code:
        raise typer.Exit(diagnosis.exit_code)


def _environment(records: int) -> dict[str, Any]:
    from bench import environment

    return environment.collect(None, {"records": records})
