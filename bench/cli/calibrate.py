"""`bench calibrate`: the A/A run of :mod:`bench.calibrate`, printed and stored.

The measuring and the statistics live in :mod:`bench.calibrate` and the sweep
machinery it reuses.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Annotated, Any

import typer

from bench.calibrate import (
    DEFAULT_DURATION_S,
    MDE_MINUTES,
    aa_sentence,
    calibration_plan,
    finish_calibration,
    store_calibration,
)
from bench.cli.options import (
    TABLE_SETTINGS,
    JsonOption,
    RunFolderOption,
    abspath,
    duration_option,
    percent_option,
    positive,
    settings_options,
    user_errors,
)
from bench.cli.plans import check_inputs_before_runs, dataset_inputs, open_store, run_with_progress
from bench.sweep import DEFAULT_WARMUP, SweepError
from migrator.settings import RunSettings
from reports.results import CalibrationSummary
from reports.stats import NOISE_BAND

app = typer.Typer()


@app.command()
@settings_options("batch_size", *TABLE_SETTINGS, "retry_window",
                  helps={"batch_size": "The configuration measured under both labels."})
def calibrate(
    *,
    duration: Annotated[str, typer.Option(
        "--duration", help="How long to measure, e.g. 60, 90s, 2m (seconds when bare).")
    ] = f"{DEFAULT_DURATION_S:g}",
    records: Annotated[int | None, typer.Option(
        "--records", "-n", callback=positive("--records"),
        help="Size of the generated default dataset (use the size your sweeps use).")
    ] = None,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="XML file, folder or glob; repeat for more.")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: a fresh SQLite file per run).")
    ] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", "-m", help="Mapping TOML.")
                       ] = None,
    noise_band: Annotated[str | None, typer.Option(
        "--noise-band", help=f"As for `bench sweep` \\[default: {100 * NOISE_BAND:g}%].")
    ] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", min=0, help=f"Unmeasured runs first \\[default: {DEFAULT_WARMUP}].")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the pair order \\[default: random, recorded].")] = None,
    settings: RunSettings,  # the configuration measured, and where its tables go
    out: RunFolderOption = None,
    as_json: JsonOption = False,
) -> None:
    """A/A: one configuration under two labels in shuffled pairs — this machine's paired
    noise, the A/A verdict, and the smallest difference it resolves in 1, 5 and 15 minutes."""
    duration_s = duration_option(duration, "--duration")
    assert duration_s is not None
    band = percent_option(noise_band, "--noise-band")
    run_inputs, dataset = dataset_inputs(records, inputs, as_json)
    check_inputs_before_runs(run_inputs, mapping, target)
    plan = calibration_plan(
        duration_s=duration_s, batch_size=settings.batch_size,
        warmup=DEFAULT_WARMUP if warmup is None else warmup,
        seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
        inputs=run_inputs, target=target, mapping=abspath(mapping), dataset=dataset,
        noise_band=NOISE_BAND if band is None else band)
    plan = dataclasses.replace(plan, schema=settings.schema, table_prefix=settings.table_prefix,
                               replace_existing_tables=settings.replace_existing_tables)
    store, _ = open_store(out, resume=False)
    store.write_plan(plan.to_dict())
    run_with_progress(plan, store, Path(plan.mapping) if plan.mapping else None, as_json,
                      settings.retry_window)
    with user_errors(SweepError):
        doc, cal, result_file = finish_calibration(plan, store.contents, store.run_dir)
    assert doc.summary is not None
    stored = store_calibration(cal, plan.target)
    if as_json:
        typer.echo(json.dumps({"kind": "calibrate", "result_file": str(result_file),
                               "stored": str(stored), **cal.to_dict(),
                               "verdict": doc.summary.verdict}, indent=1))
        return
    _print(cal, doc.summary, result_file, stored)


def _print(cal: Any, summary: CalibrationSummary, result_file: Path, stored: Path) -> None:
    echo = typer.echo
    echo(f"A/A calibration: batch_size={cal.batch_size} under labels A and B, {cal.pairs} "
         f"pairs in {cal.duration_s:.0f} s on {cal.target}")
    echo(f"noise: {_pct(cal.paired_noise)} per run once runs are paired (raw CV "
         f"{_pct(cal.raw_cv)}); one run takes {cal.run_s:.2f} s")
    echo(aa_sentence(cal))
    reach = " · ".join(f"{m} min {_pct(cal.mde.get(f'{m}m'))}" for m in MDE_MINUTES)
    echo(f"smallest detectable difference between two configurations (80% power, noise band "
         f"±{100 * cal.noise_band:g}%): {reach}")
    if cal.minutes_for_5pct is not None:
        echo(f"a 5% difference needs about {cal.minutes_for_5pct:.1f} minutes of paired rounds "
             "of two configurations")
    for warning in summary.warnings:
        echo(f"warning: {warning}")
    echo(f"stored for `bench sweep` on this host and target: {stored}")
    echo(f"result: {result_file}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


__all__ = ["calibrate"]
