"""`bench baseline`: one configuration measured repeatedly, as a reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.baseline import DEFAULT_ITERATIONS, finish_baseline
from bench.cli.cluster import ClusterOption, check_cluster_options
from bench.cli.options import (
    TABLE_SETTINGS,
    JsonOption,
    RunFolderOption,
    abspath,
    configuration_options,
    echo_json,
    positive,
    settings_options,
    user_errors,
)
from bench.cli.plans import (
    check_inputs_before_runs,
    check_resume,
    dataset_inputs,
    one_configuration,
    open_store,
    refresh_dataset,
    run_with_progress,
    tables_requested,
)
from bench.sweep import DEFAULT_RECORDS, DEFAULT_WARMUP, SweepPlan
from migrator.settings import SETTING_BY_NAME, RunSettings

app = typer.Typer()


@app.command()
@configuration_options()
@settings_options(*TABLE_SETTINGS, "retry_window")
def baseline(
    *,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-r", callback=positive("--iterations"),
        help=f"Measured runs \\[default: {DEFAULT_ITERATIONS}].")] = None,
    configuration: dict[str, Any],  # the sweep dimensions as `bench run` takes them
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
    settings: RunSettings,  # what every run of the baseline shares
    cluster: ClusterOption = None,
    out: RunFolderOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run one configuration N times: mean, median, stdev, CV, CI, drift, warnings."""
    check_cluster_options(cluster, configuration.get("cluster_workers"), None,
                          workers=configuration.get("workers"))
    dims = one_configuration(configuration)
    if resume:
        store, stored = open_store(out, resume=True)
        assert stored is not None
        # The batch size always has a value here, so only compare what was typed.
        explicit = {k: v for k, v in dims.items()
                    if k != "batch_size" or v != [SETTING_BY_NAME[k].default]}
        requested = {"dimensions": {**stored.dimensions, **explicit}, "repeat": iterations,
                     "warmup": warmup, "target": target, "name": name, "records": records,
                     "inputs": [os.path.abspath(p) for p in inputs] if inputs else None,
                     "mapping": abspath(mapping), "cluster": cluster,
                     **tables_requested(settings)}
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
                         dataset=dataset, name=name, schema=settings.schema,
                         table_prefix=settings.table_prefix,
                         replace_existing_tables=settings.replace_existing_tables,
                         cluster=cluster)
        store.write_plan(plan.to_dict())

    run_with_progress(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
                      settings.retry_window)
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
        echo(f"bottleneck  {b.label} — {b.description} ({b.runs} of {b.of} runs)")
    for warning in summary.warnings:
        echo(f"warning: {warning}")
    echo(f"result: {result_file}")
