"""`bench sweep`: the same migration over a grid of settings, paired and raced."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.cli.cluster import ClusterOption, check_cluster_options
from bench.cli.options import (
    TABLE_SETTINGS,
    JsonOption,
    RunFolderOption,
    abspath,
    duration_option,
    echo_json,
    percent_option,
    positive,
    settings_options,
    sweep_options,
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
from bench.racing import MAX_ROUNDS
from bench.sweep import (
    DEFAULT_BUDGET_S,
    DEFAULT_DIMENSIONS,
    DEFAULT_RECORDS,
    DEFAULT_WARMUP,
    SweepPlan,
    finish_sweep,
)
from migrator.settings import RunSettings
from reports.stats import NOISE_BAND
from reports.summary import BaselineError, format_change, format_p, parse_baseline, resolve_baseline

app = typer.Typer()


@app.command()
@sweep_options()
@settings_options(*TABLE_SETTINGS, "retry_window", "max_sessions")
def sweep(
    *,
    dimensions: dict[str, str | None],  # each sweep dimension's option, in declared order
    budget: Annotated[str | None, typer.Option(
        "--budget", help="Time budget, e.g. 5m, 90s, 1h: rounds race the configurations and "
                         "stop when the answer is clear \\[default: 5m unless --repeat].")
    ] = None,
    repeat: Annotated[int | None, typer.Option(
        "--repeat", "-r", callback=positive("--repeat"),
        help="A fixed design instead of a budget: exactly this many rounds, no racing.")
    ] = None,
    noise_band: Annotated[str | None, typer.Option(
        "--noise-band", help="Differences inside ±this are not called; leaders inside it "
                             f"are equivalent \\[default: {100 * NOISE_BAND:g}%].")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", min=0, help=f"Unmeasured runs before measuring \\[default: "
                                f"{DEFAULT_WARMUP}].")] = None,
    records: Annotated[int | None, typer.Option(
        "--records", "-n", callback=positive("--records"),
        help=f"Size of the generated, cached default dataset \\[default: "
             f"{DEFAULT_RECORDS}].")] = None,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="XML file, folder or glob instead of the default dataset; "
                              "repeat for more.")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: a fresh SQLite file per run "
             "in the run folder).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", "-m", help="Mapping TOML file (default: the built-in orders mapping).")
    ] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help='Configuration to compare the others with, e.g. "workers=2,'
                           'batch=1000" \\[default: the first configuration].')] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the run-order shuffle \\[default: random, recorded].")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted sweep (--out DIR, default: the latest "
                         "unfinished one under runs/).")] = False,
    settings: RunSettings,  # what every run of the sweep shares
    cluster: ClusterOption = None,
    out: RunFolderOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sweep configurations in randomised interleaved rounds, paired within rounds: the
    recommendation, the best, the knee, the change vs a baseline."""
    dims = dimension_options(**dimensions)
    budget_s = duration_option(budget, "--budget")
    band = percent_option(noise_band, "--noise-band")
    if budget_s is not None and repeat is not None:
        raise usage("--budget and --repeat exclude each other: --budget races the "
                     "configurations for a time, --repeat runs a fixed number of rounds")
    check_cluster_options(cluster, dimensions.get("cluster_workers"), settings.max_sessions,
                          workers=dimensions.get("workers"))
    if resume:
        store, stored = open_store(out, resume=True)
        assert stored is not None  # open(resume=True) refuses a store without a plan
        requested = {"dimensions": dims or None, "repeat": repeat, "budget_s": budget_s,
                     "noise_band": band, "warmup": warmup, "records": records,
                     "seed": seed, "target": target, "baseline": baseline,
                     "inputs": [os.path.abspath(p) for p in inputs] if inputs else None,
                     "mapping": abspath(mapping), "cluster": cluster,
                     "max_sessions": settings.max_sessions,
                     **tables_requested(settings)}
        plan = check_resume(stored, "sweep", requested, store)
        refresh_dataset(plan, as_json)
    else:
        if not dims:
            dims = dimension_options(**DEFAULT_DIMENSIONS)
        fixed = repeat is not None
        plan = SweepPlan(kind="sweep", dimensions=dims,
                         repeat=repeat if repeat is not None else MAX_ROUNDS,
                         warmup=DEFAULT_WARMUP if warmup is None else warmup,
                         seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
                         inputs=[], target=target, mapping=abspath(mapping), baseline=baseline,
                         schema=settings.schema, table_prefix=settings.table_prefix,
                         replace_existing_tables=settings.replace_existing_tables,
                         budget_s=None if fixed else (budget_s or DEFAULT_BUDGET_S),
                         noise_band=NOISE_BAND if band is None else band,
                         sweep_id=uuid.uuid4().hex, cluster=cluster,
                         max_sessions=settings.max_sessions)
        if baseline is not None:
            try:
                resolve_baseline(parse_baseline(baseline, list(dims)), plan.configurations)
            except BaselineError as exc:
                raise usage(str(exc)) from None
        run_inputs, dataset = dataset_inputs(records, inputs, as_json)
        check_inputs_before_runs(run_inputs, mapping, target)
        store, _ = open_store(out, resume=False)
        plan = SweepPlan.from_dict({**plan.to_dict(), "inputs": run_inputs, "dataset": dataset})
        store.write_plan(plan.to_dict())

    outlook = _forecast(plan)
    if outlook and not as_json:
        ui.console(stderr=True).print(outlook, markup=False)
    run_with_progress(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
                      settings.retry_window)
    with user_errors():
        doc, result_file, pyperf_file = finish_sweep(plan, store.contents, store.run_dir)
    summary = doc.summary.to_dict() if doc.summary is not None else {}
    if as_json:
        echo_json({"kind": "sweep", "run_dir": str(store.run_dir),
                    "result_file": str(result_file),
                    "pyperf_file": str(pyperf_file) if pyperf_file else None,
                    "store": str(store.path), "configurations": len(plan.configurations),
                    "repeat": None if plan.budgeted else plan.repeat,
                    "budget_s": plan.budget_s, "noise_band": plan.noise_band,
                    "warmup": plan.warmup, "seed": plan.seed, "forecast": outlook,
                    "measured_runs": doc.measured_runs, "summary": summary})
        return
    _print_sweep(plan, summary, result_file, pyperf_file)


def _forecast(plan: SweepPlan) -> str | None:
    """What a recent calibration of this host and target says about the budget."""
    if plan.budget_s is None or len(plan.configurations) < 2:
        return None
    from bench.calibrate import forecast, load_recent

    cal = load_recent(plan.target)
    if cal is None:
        return None
    records = (plan.dataset or {}).get("records")
    outlook = forecast(cal, configs=len(plan.configurations), budget_s=plan.budget_s,
                       records=records if isinstance(records, int) else None,
                       noise_band=plan.noise_band)
    return outlook.sentence(len(plan.configurations))


def _paired_cell(cmp: dict[str, Any] | None) -> str:
    """``-0.7% [-1.7% to +0.4%] equivalent``: a paired comparison in one table cell."""
    if not cmp:
        return "—"
    change = format_change(cmp.get("change"))
    low, high = cmp.get("change_ci_low"), cmp.get("change_ci_high")
    ci = "" if low is None or high is None else \
        f" [{format_change(low)} to {format_change(high)}]"
    word = {"better": "better", "worse": "worse", "equivalent": "equivalent"}.get(
        str(cmp.get("outcome")), "not separable")
    return f"{change}{ci} {word}"


def _print_sweep(plan: SweepPlan, summary: dict[str, Any], result_file: Path,
                 pyperf_file: Path | None) -> None:
    echo = typer.echo
    for line in summary.get("lines") or []:
        echo(line)
    echo("")
    best = summary["best"]
    rows = []
    for i, row in enumerate(summary["rows"]):
        s = row["stats"]
        dropped = " (dropped)" if row.get("eliminated_at") else ""
        rows.append(["*" if i == best["index"] else " ",
                     row["label"] or "(single configuration)", f"{s['median']:,.0f}",
                     ui.ci(s["ci_low"], s["ci_high"], s["ci_confidence"]),
                     f"{row.get('rounds')}{dropped}", ui.pct(s["cv"]),
                     "best" if i == best["index"] else _paired_cell(row.get("vs_best")),
                     "baseline" if row["is_baseline"] else _paired_cell(row["vs_baseline"])])
    echo(f"{len(plan.configurations)} configuration(s), runs paired within rounds "
         f"(seed {plan.seed}), rec/min:")
    headers = ["", "configuration", "median", "CI of median", "rounds", "CV",
               "vs best [95% CI]", f"vs baseline {summary['baseline_label']}"]
    for line in ui.text_table(headers, rows, right={2, 4, 5}):
        echo(line)
    echo("")
    echo(best["sentence"])
    for knee in summary["knees"]:
        echo(knee["sentence"])
    for dim, effect in (summary.get("effects") or {}).items():
        if effect.get("p_value") is None:
            continue
        verdict = "matters" if effect["significant"] else "no detectable effect"
        echo(f"does {dim} matter? {verdict} (Friedman {format_p(effect['p_value'])}, "
             f"{effect['blocks']} complete rounds)")
    bottleneck = summary.get("best_bottleneck")
    if bottleneck:
        echo(f"bottleneck of the best configuration: {bottleneck['label']} — "
             f"{bottleneck['description']} ({bottleneck['runs']} of {bottleneck['of']} runs)")
    for warning in summary["warnings"]:
        echo(f"warning: {warning}")
    echo(f"result: {result_file}" + (f"  (pyperf: {pyperf_file})" if pyperf_file else ""))
