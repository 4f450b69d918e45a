"""What `bench sweep`, `bench baseline` and `bench calibrate` share: the dataset, the run
folder and its store, resuming, and running a plan behind a progress bar."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import typer

from bench import console as ui
from bench.cli.options import usage, user_errors, warn
from bench.preflight import check_inputs, check_target_folder, ensure_writable_dir
from bench.ranges import RangeError, parse_choices
from bench.results import new_run_dir
from bench.store import STORE_NAME, RunStore
from bench.sweep import (
    DATASET_PROFILE,
    DATASET_SEED,
    DEFAULT_RECORDS,
    Progress,
    RunContext,
    SweepPlan,
    ensure_dataset,
    parse_dimensions,
    resume_conflicts,
    run_plan,
)
from migrator.inputs import is_url
from migrator.retry import DEFAULT_WINDOW_S
from migrator.settings import SWEPT, RunSettings


def dataset_inputs(records: int | None, inputs: list[str] | None, quiet: bool
                    ) -> tuple[list[str], dict[str, Any] | None]:
    """``--input`` as given, or the cached default dataset of ``--records`` records."""
    import datasets

    if inputs:
        if records is not None:
            raise usage("--records and --input exclude each other: --records sizes the "
                         "generated default dataset, --input brings your own")
        # absolute, so that `--resume` from another folder finds the same files
        return [p if is_url(p) else os.path.abspath(p) for p in inputs], None
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
        raise usage(f"--resume: no unfinished sweep under {base}/; name it with --out DIR")
    return max(candidates, key=lambda p: (p / STORE_NAME).stat().st_mtime)


def open_store(out: Path | None, resume: bool) -> tuple[RunStore, SweepPlan | None]:
    run_dir = (out or _unfinished_run_dir()) if resume else (out or new_run_dir())
    store = RunStore(run_dir)
    with user_errors():
        if not resume or run_dir.is_dir():  # (a mistyped --resume --out makes no folder)
            ensure_writable_dir(run_dir)  # before any run: a result nobody can store is lost
        contents = store.open(resume=resume)
    if contents.truncated:
        warn(contents.truncated)
    plan = SweepPlan.from_dict(contents.plan) if contents.plan else None
    return store, plan


def run_with_progress(plan: SweepPlan, store: RunStore, mapping: Path | None, quiet: bool,
         retry_window: float = DEFAULT_WINDOW_S) -> None:
    """Run what is missing, with a progress bar; Ctrl-C says how to continue."""
    context = RunContext(inputs=plan.inputs, target=plan.target, mapping=mapping,
                         work_dir=store.run_dir / "work",
                         settings=RunSettings(schema=plan.schema, table_prefix=plan.table_prefix,
                                              replace_existing_tables=plan.replace_existing_tables,
                                              retry_window=retry_window,
                                              max_sessions=plan.max_sessions),
                         cluster=plan.cluster)
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
            run_plan(plan, store, context, on_progress=show)
        except KeyboardInterrupt:
            interrupted = True  # reported below, once the progress bar is gone
    if interrupted:
        done = len(store.contents.measured_runs())
        of = "" if budgeted else f" of {total}"
        ui.error(f"interrupted after {done}{of} runs; they are saved in "
                 f"{store.path}; continue with: bench {plan.kind} --resume --out "
                 f"{store.run_dir}")
        raise typer.Exit(130)
    shutil.rmtree(context.work_dir, ignore_errors=True)


def check_resume(plan: SweepPlan, kind: str, requested: dict[str, Any],
                  store: RunStore) -> SweepPlan:
    if plan.kind != kind:
        raise usage(f"--resume: {store.run_dir} holds a {plan.kind}, not a {kind}")
    records = requested.pop("records", None)
    problems = resume_conflicts(plan, requested)
    if records is not None and (plan.dataset or {}).get("records") != records:
        problems.append(f"--records {records}: the {kind} ran on "
                        + (f"{plan.dataset['records']} records" if plan.dataset
                           else "--input files"))
    if problems:
        raise usage(f"--resume: options differ from the interrupted {kind} in "
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


def tables_requested(settings: RunSettings) -> dict[str, Any]:
    """Where-the-tables-go options given on ``--resume`` (None: not given)."""
    return {"schema": settings.schema, "table_prefix": settings.table_prefix or None,
            "replace_existing_tables": settings.replace_existing_tables or None}


def refresh_dataset(plan: SweepPlan, quiet: bool) -> None:
    """A resumed sweep on the default dataset regenerates it if the cache was cleared
    (same seed, same bytes)."""
    if plan.dataset:
        dataset_inputs(int(plan.dataset["records"]), None, quiet)
    check_inputs_before_runs(plan.inputs, plan.mapping, plan.target)


def check_inputs_before_runs(inputs: list[str], mapping: str | Path | None,
                             target: str | None) -> None:
    """Before the first (warm-up) run: input without records, or a ``sqlite:`` file in a
    missing folder, would make every run fail or measure nothing."""
    with user_errors():
        check_target_folder(target)
        check_inputs(inputs, Path(mapping) if mapping else None)


def dimension_options(**given: str | None) -> dict[str, list[Any]]:
    try:
        dims = parse_dimensions(given)
    except RangeError as exc:
        raise usage(str(exc)) from None
    return dims


def one_configuration(given: dict[str, Any]) -> dict[str, list[Any]]:
    """``bench baseline``'s configuration: the values given (None: not given) in dimension
    order, each a one-value dimension; a choice is checked against what ``bench run``
    accepts for it (an alias flag's value too)."""
    dims: dict[str, list[Any]] = {}
    for s in SWEPT:
        value = given.get(s.name)
        alias = given.get(s.alias.name) if s.alias is not None else None
        for flag, text in ((s.flag, value), (s.alias.flag if s.alias else "", alias)):
            if s.choices is not None and text is not None and "," in str(text):
                raise usage(f"{flag}: a baseline runs one configuration; use `bench sweep` "
                            "for several")
        if value is None and alias is None:
            continue
        try:
            if s.alias is not None:
                value = str(s.alias.resolve(value, alias))
            elif s.choices is not None:
                value = parse_choices(str(value), s.choices, s.flag)[0]
        except ValueError as exc:  # (a RangeError too: it names the choices allowed)
            raise usage(str(exc)) from None
        dims[s.name] = [value]
    return dims
