"""`bench baseline`: one configuration measured repeatedly, as a reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from bench import console as ui
from bench.baseline import DEFAULT_BATCH_SIZE, DEFAULT_ITERATIONS, finish_baseline
from bench.cli.options import (
    JsonOption,
    ReplaceTablesOption,
    RetryWindow,
    RunFolderOption,
    SchemaOption,
    TablePrefixOption,
    abspath,
    echo_json,
    positive,
    usage,
    user_errors,
)
from bench.cli.plans import (
    check_inputs_before_runs,
    check_resume,
    dataset_inputs,
    dimension_options,
    open_store,
    refresh_dataset,
    run_with_progress,
    tables_requested,
)
from bench.sweep import (
    DEFAULT_RECORDS,
    DEFAULT_WARMUP,
    DIMENSION_BY_NAME,
    POOLING_DIMENSION,
    SweepPlan,
)
from migrator.retry import DEFAULT_WINDOW_S

app = typer.Typer()


@app.command()
def baseline(
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-r", callback=positive("--iterations"),
        help=f"Measured runs \\[default: {DEFAULT_ITERATIONS}].")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", callback=positive("--batch-size"),
        help="Records per transaction.")] = DEFAULT_BATCH_SIZE,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", callback=positive("--workers"), help="Worker processes.")] = None,
    connection: Annotated[str | None, typer.Option(
        "--connection", help="per-batch, pooled or persistent.")] = None,
    pooling: Annotated[str | None, typer.Option(
        "--pooling", help="Alias of --connection: on (pooled) or off (per-batch).")] = None,
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", help="off, thread or process.")] = None,
    insert_method: Annotated[str | None, typer.Option(
        "--insert-method", help="executemany, fast, values or copy.")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", min=0, help=f"Unmeasured runs first \\[default: {DEFAULT_WARMUP}].")] = None,
    records: Annotated[int | None, typer.Option(
        "--records", "-n", callback=positive("--records"),
        help=f"Size of the generated default dataset \\[default: {DEFAULT_RECORDS}].")] = None,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="XML file, folder or glob; repeat for more.")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING.")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", "-m", help="Mapping TOML.")
                       ] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="A name for this baseline, stored in the result.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted baseline "
                                                          "(--out DIR).")] = False,
    schema: SchemaOption = None,
    table_prefix: TablePrefixOption = "",
    replace_existing_tables: ReplaceTablesOption = False,
    out: RunFolderOption = None,
    retry_window: RetryWindow = DEFAULT_WINDOW_S,
    as_json: JsonOption = False,
) -> None:
    """Run one configuration N times: mean, median, stdev, CV, CI, drift, warnings."""
    given = {"batch_size": str(batch_size),
             "workers": None if workers is None else str(workers),
             "connection": connection, "pooling": pooling, "pipeline": pipeline,
             "insert_method": insert_method}
    for key, text in given.items():
        if text is not None and "," in text:
            option = DIMENSION_BY_NAME.get(key, POOLING_DIMENSION).option
            raise usage(f"{option}: a baseline runs one "
                         "configuration; use `bench sweep` for several")
    dims = dimension_options(**given)
    if resume:
        store, stored = open_store(out, resume=True)
        assert stored is not None
        # The batch size always has a value here, so only compare what was typed.
        explicit = {k: v for k, v in dims.items()
                    if k != "batch_size" or batch_size != DEFAULT_BATCH_SIZE}
        requested = {"dimensions": {**stored.dimensions, **explicit}, "repeat": iterations,
                     "warmup": warmup, "target": target, "name": name, "records": records,
                     "inputs": [os.path.abspath(p) for p in inputs] if inputs else None,
                     "mapping": abspath(mapping),
                     **tables_requested(schema, table_prefix, replace_existing_tables)}
        plan = check_resume(stored, "baseline", requested, store)
        refresh_dataset(plan, as_json)
    else:
        run_inputs, dataset = dataset_inputs(records, inputs, as_json)
        check_inputs_before_runs(run_inputs, mapping, target)
        store, _ = open_store(out, resume=False)
        plan = SweepPlan(kind="baseline", dimensions=dims,
                         repeat=iterations or DEFAULT_ITERATIONS,
                         warmup=DEFAULT_WARMUP if warmup is None else warmup, seed=0,
                         inputs=run_inputs, target=target, mapping=abspath(mapping),
                         dataset=dataset, name=name, schema=schema, table_prefix=table_prefix,
                         replace_existing_tables=replace_existing_tables)
        store.write_plan(plan.to_dict())

    run_with_progress(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
         retry_window)
    with user_errors():
        _doc, summary, result_file, pyperf_file = finish_baseline(plan, store.contents,
                                                                  store.run_dir)
    if as_json:
        echo_json({"kind": "baseline", "run_dir": str(store.run_dir),
                    "result_file": str(result_file),
                    "pyperf_file": str(pyperf_file) if pyperf_file else None,
                    "summary": summary.to_dict()})
        return
    s = summary.stats
    echo = typer.echo
    title = f"baseline {summary.name!r}: " if summary.name else "baseline: "
    echo(f"{title}{summary.label}, {s.n} runs")
    stdev = "n/a" if s.stdev is None else f"{s.stdev:,.0f}"
    echo(f"throughput  median {s.median:,.1f} rec/min  mean {s.mean:,.1f}  stdev {stdev}  "
         f"CV {ui.pct(s.cv)}")
    echo(f"            CI of median {ui.ci(s.ci_low, s.ci_high, s.ci_confidence)}  "
         f"min {s.min:,.1f}  max {s.max:,.1f}")
    d = summary.drift
    if d.tau is not None:
        state = "significant" if d.significant else "not significant"
        total = "" if d.total_pct is None else f", {d.total_pct:+.1f}% over the series"
        echo(f"drift       Kendall tau {d.tau:+.2f}, p={d.p_value:.3f} ({state}{total})")
    m = summary.machine
    if m is not None and m.adjusted_cv is not None:
        echo(f"host        read+map CPU time of the same work CV {ui.pct(m.probe_cv)}; "
             f"CV adj. for host speed {ui.pct(m.adjusted_cv)} "
             f"({ui.pct(m.explained)} of the variance is the host's)")
    if summary.repeats_needed is not None:
        echo(f"repeats     {summary.repeats_needed} would bring the median's 95% CI within "
             "±5%")
    if summary.bottleneck:
        b = summary.bottleneck
        echo(f"bottleneck  {b['label']} — {b['description']} ({b['runs']} of {b['of']} runs)")
    for warning in summary.warnings:
        echo(f"warning: {warning}")
    echo(f"result: {result_file}")
