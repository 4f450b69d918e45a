"""The `bench sweep`, `bench baseline` and `bench compare` commands.

Registered on :data:`bench.cli.app` by importing this module (``bench/cli.py`` does, at its
end). Like the rest of the CLI these only adapt library functions — :mod:`bench.sweep`,
:mod:`bench.baseline`, :mod:`bench.compare` — and render their results: argument errors
exit 2, result-file and migration errors exit 1 (one line, naming the file), Ctrl-C 130
with the command that continues the sweep.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.baseline import DEFAULT_BATCH_SIZE, DEFAULT_ITERATIONS, finish_baseline
from bench.cli import (
    JsonOption,
    ReplaceTablesOption,
    RetryWindow,
    RunFolderOption,
    SchemaOption,
    TablePrefixOption,
    _positive,
    app,
    user_errors,
)
from bench.compare import (
    DEFAULT_THRESHOLD,
    MARKER_LEGEND,
    ThresholdError,
    compare_results,
    parse_threshold,
    row_cells,
)
from bench.preflight import check_inputs, check_target_folder, ensure_writable_dir
from bench.racing import MAX_ROUNDS
from bench.ranges import DurationError, RangeError, parse_duration
from bench.results import new_run_dir
from bench.store import STORE_NAME, RunStore
from bench.sweep import (
    DATASET_PROFILE,
    DATASET_SEED,
    DEFAULT_BATCH_SIZES,
    DEFAULT_BUDGET_S,
    DEFAULT_RECORDS,
    DEFAULT_WARMUP,
    DIMENSION_BY_NAME,
    Progress,
    RunSettings,
    SweepPlan,
    UnsupportedDimension,
    check_supported,
    ensure_dataset,
    finish_sweep,
    parse_dimensions,
    resume_conflicts,
    run_plan,
)
from migrator.retry import DEFAULT_WINDOW_S
from reports.stats import ALPHA, NOISE_BAND
from reports.summary import (
    BaselineError,
    format_change,
    format_p,
    parse_baseline,
    resolve_baseline,
)

_RANGE_HELP = "range grammar: 50..2000 (1-2-5 series), 100..1000:100, 1..64:x2, 50,100,500"
_WORKERS_HELP = "also 2..16:2, 1..64:x2, 1,2,4"


def _warn(message: str) -> None:
    ui.console(stderr=True).print(f"warning: {message}", markup=False)


def _usage(message: str) -> typer.BadParameter:
    """A usage error (exit 2); the message already names the option."""
    return typer.BadParameter(message)


# ---- shared plumbing -------------------------------------------------------------------------

def _dataset_inputs(records: int | None, inputs: list[str] | None, quiet: bool
                    ) -> tuple[list[str], dict[str, Any] | None]:
    """``--input`` as given, or the cached default dataset of ``--records`` records."""
    import datasets

    if inputs:
        if records is not None:
            raise _usage("--records and --input exclude each other: --records sizes the "
                         "generated default dataset, --input brings your own")
        # absolute, so that `--resume` from another folder finds the same files
        return [os.path.abspath(p) for p in inputs], None
    count = records if records is not None else DEFAULT_RECORDS
    progress = ui.progress_bar("generating dataset", count, enabled=not quiet)
    with user_errors(datasets.DatasetError), progress as update:
        folder, generated = ensure_dataset(count, progress=update)
    if generated and not quiet:
        ui.console(stderr=True).print(f"generated the default dataset ({count:,} records) in "
                                      f"{folder}", markup=False)
    dataset = {"profile": DATASET_PROFILE, "records": count, "seed": DATASET_SEED,
               "folder": str(folder)}
    return [str(folder)], dataset


def _unfinished_run_dir(base: Path = Path("runs")) -> Path:
    candidates = [p.parent for p in base.glob(f"*/{STORE_NAME}")
                  if not (p.parent / "result.json").exists()]
    if not candidates:
        raise _usage(f"--resume: no unfinished sweep under {base}/; name it with --out DIR")
    return max(candidates, key=lambda p: (p / STORE_NAME).stat().st_mtime)


def _open_store(out: Path | None, resume: bool) -> tuple[RunStore, SweepPlan | None]:
    run_dir = (out or _unfinished_run_dir()) if resume else (out or new_run_dir())
    store = RunStore(run_dir)
    with user_errors():
        if not resume or run_dir.is_dir():  # (a mistyped --resume --out makes no folder)
            ensure_writable_dir(run_dir)  # before any run: a result nobody can store is lost
        contents = store.open(resume=resume)
    if contents.truncated:
        _warn(contents.truncated)
    plan = SweepPlan.from_dict(contents.plan) if contents.plan else None
    return store, plan


def _run(plan: SweepPlan, store: RunStore, mapping: Path | None, quiet: bool,
         retry_window: float = DEFAULT_WINDOW_S) -> None:
    """Run what is missing, with a progress bar; Ctrl-C says how to continue."""
    settings = RunSettings(inputs=plan.inputs, target=plan.target, mapping=mapping,
                           work_dir=store.run_dir / "work", schema=plan.schema,
                           table_prefix=plan.table_prefix,
                           replace_existing_tables=plan.replace_existing_tables,
                           retry_window=retry_window)
    budgeted = plan.budget_s is not None
    total = round(plan.budget_s) if plan.budget_s is not None else \
        len(plan.configurations) * plan.repeat
    bar = ui.progress_bar(plan.kind, total, unit="seconds" if budgeted else "runs",
                          enabled=not quiet)
    interrupted = False
    with user_errors(), bar as update:
        def show(p: Progress) -> None:
            if p.warmup:
                where = "warm-up"
            elif budgeted:
                where = f"round {p.round + 1} · {p.racing} racing"
            else:
                where = f"round {p.round + 1}/{plan.repeat}"
            update(p.completed, info=f"{p.label} · {where}" if p.label else where)

        try:
            run_plan(plan, store, settings, on_progress=show)
        except KeyboardInterrupt:
            interrupted = True  # reported below, once the progress bar is gone
    if interrupted:
        done = len(store.contents.measured_runs())
        of = "" if budgeted else f" of {total}"
        ui.error(f"interrupted after {done}{of} runs; they are saved in "
                 f"{store.path}; continue with: bench {plan.kind} --resume --out "
                 f"{store.run_dir}")
        raise typer.Exit(130)
    shutil.rmtree(settings.work_dir, ignore_errors=True)


def _check_resume(plan: SweepPlan, kind: str, requested: dict[str, Any],
                  store: RunStore) -> SweepPlan:
    if plan.kind != kind:
        raise _usage(f"--resume: {store.run_dir} holds a {plan.kind}, not a {kind}")
    records = requested.pop("records", None)
    problems = resume_conflicts(plan, requested)
    if records is not None and (plan.dataset or {}).get("records") != records:
        problems.append(f"--records {records}: the {kind} ran on "
                        + (f"{plan.dataset['records']} records" if plan.dataset
                           else "--input files"))
    if problems:
        raise _usage(f"--resume: options differ from the interrupted {kind} in "
                     f"{store.run_dir}: {'; '.join(problems)}. Resume without them, or "
                     "start a new one with another --out")
    repeat = requested.get("repeat")
    if repeat is not None and repeat > plan.repeat:
        plan = SweepPlan.from_dict({**plan.to_dict(), "repeat": repeat})
        store.write_plan(plan.to_dict())
    budget = requested.get("budget_s")
    if budget is not None and plan.budget_s is not None and budget > plan.budget_s:
        plan = SweepPlan.from_dict({**plan.to_dict(), "budget_s": budget})
        store.write_plan(plan.to_dict())
    return plan


def _tables_requested(schema: str | None, prefix: str, replace: bool) -> dict[str, Any]:
    """Where-the-tables-go options given on ``--resume`` (None: not given)."""
    return {"schema": schema, "table_prefix": prefix or None,
            "replace_existing_tables": replace or None}


def _refresh_dataset(plan: SweepPlan, quiet: bool) -> None:
    """A resumed sweep on the default dataset regenerates it if the cache was cleared
    (same seed, same bytes)."""
    if plan.dataset:
        _dataset_inputs(int(plan.dataset["records"]), None, quiet)
    _check_inputs(plan.inputs, plan.mapping, plan.target)


def _check_inputs(inputs: list[str], mapping: str | Path | None, target: str | None) -> None:
    """Before the first (warm-up) run: input without records, or a ``sqlite:`` file in a
    missing folder, would make every run fail or measure nothing."""
    with user_errors():
        check_target_folder(target)
        check_inputs(inputs, Path(mapping) if mapping else None)


def _dimension_options(**given: str | None) -> dict[str, list[Any]]:
    try:
        dims = parse_dimensions(given)
        check_supported(list(dims))
    except (RangeError, UnsupportedDimension) as exc:
        raise _usage(str(exc)) from None
    return dims


def _abspath(path: Path | None) -> str | None:
    return os.path.abspath(path) if path is not None else None


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=1, ensure_ascii=False))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = ["-" * w if h else " " * w for h, w in zip(headers, widths, strict=True)]
    return [line(headers), line(rule), *(line(r) for r in rows)]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(low: float | None, high: float | None, confidence: float | None) -> str:
    if low is None or high is None:
        return "n/a"
    return f"{low:,.0f}–{high:,.0f} ({100 * (confidence or 0):.0f}%)"


# ---- sweep -----------------------------------------------------------------------------------

@app.command()
def sweep(
    batch_sizes: Annotated[str | None, typer.Option(
        "--batch-sizes", "-b",
        help=f"Batch sizes to sweep, {_RANGE_HELP}. Default {DEFAULT_BATCH_SIZES} when no "
             "dimension is given.")] = None,
    workers: Annotated[str | None, typer.Option(
        "--workers", "-w", help=f"Worker processes to sweep: 1..4 is 1,2,3,4; "
                                f"{_WORKERS_HELP}.")] = None,
    pooling: Annotated[str | None, typer.Option(
        "--pooling", help="Connection pooling to sweep: on,off.")] = None,
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", help="Pipeline modes to sweep: off,thread,process.")] = None,
    insert_method: Annotated[str | None, typer.Option(
        "--insert-method", help="Insert methods to sweep: executemany,fast,values,copy "
                                "(as the target's dialect supports).")] = None,
    budget: Annotated[str | None, typer.Option(
        "--budget", help="Time budget, e.g. 5m, 90s, 1h: rounds race the configurations and "
                         "stop when the answer is clear \\[default: 5m unless --repeat].")
    ] = None,
    repeat: Annotated[int | None, typer.Option(
        "--repeat", "-r", callback=_positive("--repeat"),
        help="A fixed design instead of a budget: exactly this many rounds, no racing.")
    ] = None,
    noise_band: Annotated[str | None, typer.Option(
        "--noise-band", help="Differences inside ±this are not called; leaders inside it "
                             f"are equivalent \\[default: {100 * NOISE_BAND:g}%].")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", min=0, help=f"Unmeasured runs before measuring [default: "
                                f"{DEFAULT_WARMUP}].")] = None,
    records: Annotated[int | None, typer.Option(
        "--records", "-n", callback=_positive("--records"),
        help=f"Size of the generated, cached default dataset [default: "
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
                           'batch=1000" [default: the first configuration].')] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the run-order shuffle [default: random, recorded].")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted sweep (--out DIR, default: the latest "
                         "unfinished one under runs/).")] = False,
    schema: SchemaOption = None,
    table_prefix: TablePrefixOption = "",
    replace_existing_tables: ReplaceTablesOption = False,
    out: RunFolderOption = None,
    retry_window: RetryWindow = DEFAULT_WINDOW_S,
    as_json: JsonOption = False,
) -> None:
    """Sweep configurations in randomised interleaved rounds, paired within rounds: the
    recommendation, the best, the knee, the change vs a baseline."""
    given = {"batch_size": batch_sizes, "workers": workers, "pooling": pooling,
             "pipeline": pipeline, "insert_method": insert_method}
    dims = _dimension_options(**given)
    budget_s = _duration_option(budget, "--budget")
    band = _percent_option(noise_band, "--noise-band")
    if budget_s is not None and repeat is not None:
        raise _usage("--budget and --repeat exclude each other: --budget races the "
                     "configurations for a time, --repeat runs a fixed number of rounds")
    if resume:
        store, stored = _open_store(out, resume=True)
        assert stored is not None  # open(resume=True) refuses a store without a plan
        requested = {"dimensions": dims or None, "repeat": repeat, "budget_s": budget_s,
                     "noise_band": band, "warmup": warmup, "records": records,
                     "seed": seed, "target": target, "baseline": baseline,
                     "inputs": [os.path.abspath(p) for p in inputs] if inputs else None,
                     "mapping": _abspath(mapping),
                     **_tables_requested(schema, table_prefix, replace_existing_tables)}
        plan = _check_resume(stored, "sweep", requested, store)
        _refresh_dataset(plan, as_json)
    else:
        if not dims:
            dims = _dimension_options(batch_size=DEFAULT_BATCH_SIZES)
        fixed = repeat is not None
        plan = SweepPlan(kind="sweep", dimensions=dims,
                         repeat=repeat if repeat is not None else MAX_ROUNDS,
                         warmup=DEFAULT_WARMUP if warmup is None else warmup,
                         seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
                         inputs=[], target=target, mapping=_abspath(mapping), baseline=baseline,
                         schema=schema, table_prefix=table_prefix,
                         replace_existing_tables=replace_existing_tables,
                         budget_s=None if fixed else (budget_s or DEFAULT_BUDGET_S),
                         noise_band=NOISE_BAND if band is None else band,
                         sweep_id=uuid.uuid4().hex)
        if baseline is not None:
            try:
                resolve_baseline(parse_baseline(baseline, list(dims)), plan.configurations)
            except BaselineError as exc:
                raise _usage(str(exc)) from None
        run_inputs, dataset = _dataset_inputs(records, inputs, as_json)
        _check_inputs(run_inputs, mapping, target)
        store, _ = _open_store(out, resume=False)
        plan = SweepPlan.from_dict({**plan.to_dict(), "inputs": run_inputs, "dataset": dataset})
        store.write_plan(plan.to_dict())

    outlook = _forecast(plan)
    if outlook and not as_json:
        ui.console(stderr=True).print(outlook, markup=False)
    _run(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
         retry_window)
    with user_errors():
        doc, result_file, pyperf_file = finish_sweep(plan, store.contents, store.run_dir)
    if as_json:
        _echo_json({"kind": "sweep", "run_dir": str(store.run_dir),
                    "result_file": str(result_file),
                    "pyperf_file": str(pyperf_file) if pyperf_file else None,
                    "store": str(store.path), "configurations": len(plan.configurations),
                    "repeat": None if plan.budgeted else plan.repeat,
                    "budget_s": plan.budget_s, "noise_band": plan.noise_band,
                    "warmup": plan.warmup, "seed": plan.seed, "forecast": outlook,
                    "measured_runs": doc["measured_runs"], "summary": doc["summary"]})
        return
    _print_sweep(plan, doc["summary"], result_file, pyperf_file)


def _duration_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, name=option)
    except DurationError as exc:
        raise _usage(str(exc)) from None


def _percent_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = parse_threshold(text)
    except ThresholdError:
        raise _usage(f"{option}: {text!r} is not a percentage; expected e.g. 2% or 2") from None
    if value >= 0.5:
        raise _usage(f"{option}: {text} is not a noise band (use a few percent, e.g. 2%)")
    return value


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
                     _ci(s["ci_low"], s["ci_high"], s["ci_confidence"]),
                     f"{row.get('rounds')}{dropped}", _pct(s["cv"]),
                     "best" if i == best["index"] else _paired_cell(row.get("vs_best")),
                     "baseline" if row["is_baseline"] else _paired_cell(row["vs_baseline"])])
    echo(f"{len(plan.configurations)} configuration(s), runs paired within rounds "
         f"(seed {plan.seed}), rec/min:")
    headers = ["", "configuration", "median", "CI of median", "rounds", "CV",
               "vs best [95% CI]", f"vs baseline {summary['baseline_label']}"]
    for line in _table(headers, rows, right={2, 4, 5}):
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


# ---- baseline --------------------------------------------------------------------------------

@app.command()
def baseline(
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-r", callback=_positive("--iterations"),
        help=f"Measured runs [default: {DEFAULT_ITERATIONS}].")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", callback=_positive("--batch-size"),
        help="Records per transaction.")] = DEFAULT_BATCH_SIZE,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", callback=_positive("--workers"), help="Worker processes.")] = None,
    pooling: Annotated[str | None, typer.Option("--pooling", help="on or off.")] = None,
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", help="off, thread or process.")] = None,
    insert_method: Annotated[str | None, typer.Option(
        "--insert-method", help="executemany, fast, values or copy.")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", min=0, help=f"Unmeasured runs first [default: {DEFAULT_WARMUP}].")] = None,
    records: Annotated[int | None, typer.Option(
        "--records", "-n", callback=_positive("--records"),
        help=f"Size of the generated default dataset [default: {DEFAULT_RECORDS}].")] = None,
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
             "pooling": pooling, "pipeline": pipeline, "insert_method": insert_method}
    for key, text in given.items():
        if text is not None and "," in text:
            raise _usage(f"{DIMENSION_BY_NAME[key].option}: a baseline runs one "
                         "configuration; use `bench sweep` for several")
    dims = _dimension_options(**given)
    if resume:
        store, stored = _open_store(out, resume=True)
        assert stored is not None
        # The batch size always has a value here, so only compare what was typed.
        explicit = {k: v for k, v in dims.items()
                    if k != "batch_size" or batch_size != DEFAULT_BATCH_SIZE}
        requested = {"dimensions": {**stored.dimensions, **explicit}, "repeat": iterations,
                     "warmup": warmup, "target": target, "name": name, "records": records,
                     "inputs": [os.path.abspath(p) for p in inputs] if inputs else None,
                     "mapping": _abspath(mapping),
                     **_tables_requested(schema, table_prefix, replace_existing_tables)}
        plan = _check_resume(stored, "baseline", requested, store)
        _refresh_dataset(plan, as_json)
    else:
        run_inputs, dataset = _dataset_inputs(records, inputs, as_json)
        _check_inputs(run_inputs, mapping, target)
        store, _ = _open_store(out, resume=False)
        plan = SweepPlan(kind="baseline", dimensions=dims,
                         repeat=iterations or DEFAULT_ITERATIONS,
                         warmup=DEFAULT_WARMUP if warmup is None else warmup, seed=0,
                         inputs=run_inputs, target=target, mapping=_abspath(mapping),
                         dataset=dataset, name=name, schema=schema, table_prefix=table_prefix,
                         replace_existing_tables=replace_existing_tables)
        store.write_plan(plan.to_dict())

    _run(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
         retry_window)
    with user_errors():
        _doc, summary, result_file, pyperf_file = finish_baseline(plan, store.contents,
                                                                  store.run_dir)
    if as_json:
        _echo_json({"kind": "baseline", "run_dir": str(store.run_dir),
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
         f"CV {_pct(s.cv)}")
    echo(f"            CI of median {_ci(s.ci_low, s.ci_high, s.ci_confidence)}  "
         f"min {s.min:,.1f}  max {s.max:,.1f}")
    d = summary.drift
    if d.tau is not None:
        state = "significant" if d.significant else "not significant"
        total = "" if d.total_pct is None else f", {d.total_pct:+.1f}% over the series"
        echo(f"drift       Kendall tau {d.tau:+.2f}, p={d.p_value:.3f} ({state}{total})")
    m = summary.machine
    if m is not None and m.adjusted_cv is not None:
        echo(f"host        read+map CPU time of the same work CV {_pct(m.probe_cv)}; "
             f"CV adj. for host speed {_pct(m.adjusted_cv)} "
             f"({_pct(m.explained)} of the variance is the host's)")
    if summary.repeats_needed is not None:
        echo(f"repeats     {summary.repeats_needed} would bring the median's 95% CI within "
             "±5%")
    if summary.bottleneck:
        b = summary.bottleneck
        echo(f"bottleneck  {b['label']} — {b['description']} ({b['runs']} of {b['of']} runs)")
    for warning in summary.warnings:
        echo(f"warning: {warning}")
    echo(f"result: {result_file}")


# ---- compare ---------------------------------------------------------------------------------

def _check_alpha(value: float) -> float:
    if not 0.0 < value <= 0.5:
        raise typer.BadParameter(f"must be in (0, 0.5], e.g. 0.05; got {value:g}",
                                 param_hint="--alpha")
    return value


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Reference result: run folder or result.json.")],
    b: Annotated[Path | None, typer.Argument(
        help="Candidate result: run folder or result.json [default: A, to compare two "
             "configurations of one sweep with --a and --b].")] = None,
    select_a: Annotated[str | None, typer.Option(
        "--a", help='Compare only this configuration of A, e.g. "batch=200".')] = None,
    select_b: Annotated[str | None, typer.Option(
        "--b", help='Compare only this configuration of B, e.g. "batch=2000".')] = None,
    threshold: Annotated[str, typer.Option(
        "--threshold", "--fail-on-regression",
        help="Exit 1 when a configuration is significantly slower by more than this.")
    ] = f"{100 * DEFAULT_THRESHOLD:g}%",
    alpha: Annotated[float, typer.Option(
        "--alpha", callback=_check_alpha,
        help="Significance level (Mann-Whitney U; the signed-rank test when paired).")
    ] = ALPHA,
    noise_band: Annotated[str | None, typer.Option(
        "--noise-band", help="Paired comparisons: differences inside ±this are not called "
                             f"\\[default: {100 * NOISE_BAND:g}%].")] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare two result files per configuration (paired when both come from the rounds of
    one sweep); exit 1 on a significant regression."""
    try:
        limit = parse_threshold(threshold)
    except ThresholdError as exc:
        raise _usage(str(exc)) from None
    band = _percent_option(noise_band, "--noise-band")
    if b is None and (select_a is None or select_b is None):
        raise _usage("give B, or --a and --b to compare two configurations of one sweep")
    with user_errors():
        report = compare_results(a, b, threshold=limit, alpha=alpha, select_a=select_a,
                                 select_b=select_b,
                                 noise_band=NOISE_BAND if band is None else band)
    if as_json:
        _echo_json(report.to_dict())
    else:
        echo = typer.echo
        echo(f"A: {report.a}" + (f" ({select_a})" if select_a else ""))
        echo(f"B: {report.b}" + (f" ({select_b})" if select_b else ""))
        for warning in report.warnings():
            _warn(warning)
        test = "signed-rank (paired)" if report.paired else "Mann-Whitney"
        rows = [row_cells(r) for r in report.rows]
        for line in _table(["", "configuration", "A rec/min", "B rec/min", "change [95% CI]",
                            test, "n A/B"], rows, right={2, 3}):
            echo(line)
        for label in report.only_in_a:
            echo(f"only in A (not compared): {label}")
        for label in report.only_in_b:
            echo(f"only in B (not compared): {label}")
        for note in report.skipped:
            echo(f"skipped, not a measurement: {note}")
        echo("")
        echo(report.sentence())
        shown = {r.marker for r in report.rows} | {"+", "-", "~", " "}
        echo("markers: " + "; ".join(f"{k.strip() or 'blank'} {v}"
                                     for k, v in MARKER_LEGEND.items() if k in shown))
    if report.exit_code:
        raise typer.Exit(report.exit_code)


__all__ = ["baseline", "compare", "sweep"]
