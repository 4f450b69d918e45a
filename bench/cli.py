"""`bench`: the command line. Each command adapts a library function; no logic lives here.

Exit codes: 0 success, 1 a user or operational error (one line, no traceback unless
``--debug``), 2 a usage error (bad flag or value), 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.preflight import ensure_writable_dir, os_error_text
from bench.runner import RunFailed, RunInterrupted, RunOutcome, RunRequest, execute_run
from migrator.errors import MigratorError, NothingToResume
from migrator.retry import DEFAULT_WINDOW_S

app = typer.Typer(
    name="bench",
    help="Benchmark and diagnose XML → SQL migrations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@contextmanager
def user_errors(*also: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can cause into one line and an exit code.

    ``also`` adds error classes of packages that cannot derive from MigratorError
    (``datasets`` depends on no other package of ours). An OSError (a folder that cannot
    be written, a full disk) is the environment's doing too: one line naming the path.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        if _state["debug"]:
            raise
        kept = (f"; what was measured is in {exc.outcome.result_file} (status interrupted)"
                if isinstance(exc, RunInterrupted) else "")
        ui.error("interrupted: the batch in progress was rolled back; "
                 f"continue with --resume{kept}")
        raise typer.Exit(130) from None
    except (MigratorError, *also) as exc:  # type: ignore[misc]  # (mypy: star in except)
        if _state["debug"]:
            raise
        ui.error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        if _state["debug"]:
            raise
        ui.error(os_error_text(exc))
        raise typer.Exit(1) from None


def _positive(name: str) -> Any:
    def check(value: int | None) -> int | None:
        if value is not None and value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
        return value
    return check


def _namespace_part(name: str, flag: str) -> Any:
    """``--schema`` / ``--table-prefix``: checked like the library checks them (exit 2)."""
    from migrator.targets.base import Namespace

    def check(value: str | None) -> str | None:
        if value:
            try:
                Namespace(**{name: value})
            except ValueError as exc:
                raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=flag) \
                    from None
        return value
    return check


# Options shared by the commands that write a run folder or print JSON.
RunFolderOption = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Run folder (default: runs/<timestamp>/).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

# Where a run's tables go; shared by every command that migrates into a target.
SchemaOption = Annotated[str | None, typer.Option(
    "--schema", callback=_namespace_part("schema", "--schema"),
    help="PostgreSQL/SQL Server: the schema for the tables [default: migration_bench, "
         "created if missing].")]
TablePrefixOption = Annotated[str, typer.Option(
    "--table-prefix", callback=_namespace_part("prefix", "--table-prefix"),
    help="Put PREFIX before every table name the tool creates (its mb_* tables too), to "
         "migrate beside same-named tables.")]
ReplaceTablesOption = Annotated[bool, typer.Option(
    "--replace-existing-tables",
    help="Drop and replace tables with the run's names that migration-bench did not "
         "create (refused by default).")]

DtdDirOption = Annotated[Path | None, typer.Option(
    "--dtd-dir", help="A trusted local DTD catalog: named entities and default attributes "
    "come from the DTD files in DIR (never from the network) [default: the mapping's "
    "[input].dtd_dir].")]

INSERT_METHODS = ("auto", "executemany", "fast", "values", "copy")
# Shared by every command that runs migrations (run, sweep, baseline).
RetryWindow = Annotated[float, typer.Option(
    "--retry-window", min=0.0, metavar="SECONDS", envvar="BENCH_RETRY_WINDOW",
    help="How long a transient database error (server restart, killed session, lost "
         "connection, deadlock) is retried before the run stops; 0 turns retries off.")]
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))


def _worker_count(value: int) -> int:
    if not 1 <= value <= MAX_WORKERS:
        raise typer.BadParameter(f"must be 1..{MAX_WORKERS} (4 per CPU, at least 64), "
                                 f"got {value}", param_hint="--workers")
    return value


def _one_of(name: str, choices: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}, got {value!r}",
                                     param_hint=name)
        return value
    return check


# ---- generate -----------------------------------------------------------------------------

@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the XML files.")],
    records: Annotated[int, typer.Option("--records", "-n", help="Number of records.",
                                         callback=_positive("--records"))] = 10_000,
    files: Annotated[int, typer.Option("--files", help="Split the records over K files.",
                                       callback=_positive("--files"))] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    invalid_rate: Annotated[float, typer.Option(
        "--invalid-rate", min=0.0, max=1.0,
        help="Share of records that violate the mapping (listed in manifest.json).")] = 0.0,
    profile: Annotated[str, typer.Option("--profile", help="Dataset profile.")] = "orders",
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Generate a deterministic mock XML dataset (and manifest.json) into --out."""
    import datasets

    with user_errors():
        ensure_writable_dir(out)
    progress = ui.progress_bar("generating", records, enabled=not as_json)
    with user_errors(datasets.DatasetError), progress as update:
        manifest = datasets.generate(out, records, files=files, seed=seed,
                                     invalid_rate=invalid_rate, profile=profile,
                                     progress=update)
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=1, ensure_ascii=False))
        return
    total = sum(f["bytes"] for f in manifest.to_dict()["files"])
    typer.echo(f"wrote {records:,} records ({len(manifest.to_dict()['invalid']):,} invalid) in "
               f"{files} file(s), {total / 1e6:.1f} MB, to {out}/ (manifest.json lists them)")


# ---- run ----------------------------------------------------------------------------------

@app.command()
def run(
    inputs: Annotated[list[str], typer.Option(
        "--input", "-i", help="XML file, folder or glob; repeat for more.")],
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: sqlite in the run folder).")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", "-m", help="Mapping TOML file (default: the built-in orders mapping).")
    ] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", help="Records per transaction.",
        callback=_positive("--batch-size"))] = 1000,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run in the same target.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run folder for result files (default: runs/<timestamp>/).")
    ] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", help="Worker processes; a large file is split into record ranges.",
        callback=_worker_count)] = 1,
    pipeline: Annotated[str, typer.Option(
        "--pipeline", help="Overlap reading+mapping with inserting: off, thread or process.",
        callback=_one_of("--pipeline", ("off", "thread", "process")))] = "off",
    queue_depth: Annotated[int, typer.Option(
        "--queue-depth", help="Mapped batches that may wait for the inserter (pipeline).",
        callback=_positive("--queue-depth"))] = 2,
    pooling: Annotated[str, typer.Option(
        "--pooling", help="off: each batch opens a new connection; on: each batch takes one "
        "from a pool (unixODBC driver-manager pooling, made real via a private ODBCSYSINI).",
        callback=_one_of("--pooling", ("on", "off")))] = "off",
    insert_method: Annotated[str, typer.Option(
        "--insert-method", help="executemany, fast, values, copy, or auto (the dialect's "
        "fastest correct method, measured).",
        callback=_one_of("--insert-method", INSERT_METHODS))] = "auto",
    sample_interval: Annotated[float, typer.Option(
        "--sample-interval", min=0.05, help="Seconds between host and server samples.")] = 0.5,
    no_sample: Annotated[bool, typer.Option(
        "--no-sample", help="Do not sample host and server during the run.")] = False,
    report: Annotated[bool, typer.Option(
        "--report", help="Also write report.html next to the result file.")] = False,
    schema: SchemaOption = None,
    table_prefix: TablePrefixOption = "",
    replace_existing_tables: ReplaceTablesOption = False,
    retry_window: RetryWindow = DEFAULT_WINDOW_S,
    dtd_dir: DtdDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Migrate XML into a database once, measuring every stage."""
    request = RunRequest(inputs=inputs, target=target, mapping=mapping, batch_size=batch_size,
                         resume=resume, out=out, workers=workers, pipeline=pipeline,
                         queue_depth=queue_depth, pooling=pooling, insert_method=insert_method,
                         sample_interval=None if no_sample else sample_interval,
                         schema=schema, table_prefix=table_prefix,
                         replace_existing_tables=replace_existing_tables,
                         retry_window=retry_window,
                         dtd_dir=str(dtd_dir) if dtd_dir else None)
    progress = ui.progress_bar("migrating", None, unit="bytes", enabled=not as_json)
    stopped: RunFailed | RunInterrupted | None = None
    with user_errors(), progress as update:
        try:
            outcome = execute_run(request, progress=update)
        except NothingToResume as exc:
            _nothing_to_resume(exc, as_json)
            return
        except (RunFailed, RunInterrupted) as exc:
            if _state["debug"]:
                raise
            outcome, stopped = exc.outcome, exc
    summary = outcome.summary()
    if report:
        from reports.report import write_report

        with user_errors():
            summary["report_file"] = str(write_report([outcome.result_file],
                                                      outcome.run_dir / "report.html"))
    if stopped is not None:
        _stopped(outcome, summary, stopped, as_json)
    if as_json:
        typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))
    else:
        _print_run(summary)
    problems = summary["errors"] + summary["reconciliation"]["problems"]
    for p in problems:  # on stderr with --json too: a script sees the cause without parsing
        ui.error(p)
    if problems:
        raise typer.Exit(1)


def _nothing_to_resume(exc: NothingToResume, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"status": "nothing to resume", "finished_at": exc.finished_at,
                               "message": str(exc), "result_file": None}, indent=1))
    else:
        typer.echo(str(exc))


def _stopped(outcome: RunOutcome, summary: dict[str, Any],
             stopped: RunFailed | RunInterrupted, as_json: bool) -> None:
    """A run an error or Ctrl-C stopped: its partial result, then the one-line cause."""
    if as_json:
        typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))
    else:
        typer.echo(f"result: {outcome.result_file} (status {outcome.status}: "
                   f"{outcome.stats.records_read:,} records before it stopped; not a "
                   "measurement)")
    if isinstance(stopped, RunInterrupted):
        ui.error("interrupted: the batch in progress was rolled back; continue with --resume")
        raise typer.Exit(130)
    ui.error(str(stopped))
    raise typer.Exit(1)


def _print_run(s: dict[str, Any]) -> None:
    con = ui.console()
    rec = s["reconciliation"]
    ok = "[green]reconciled[/]" if not rec["problems"] else "[red]NOT reconciled[/]"
    con.print(f"[bold]{s['records_read']:,}[/] records read → [bold]{s['inserted']:,}[/] "
              f"inserted + [bold]{s['quarantined']:,}[/] quarantined ({ok}) "
              f"in {s['elapsed_s']:.2f} s")
    rps = s["throughput_rec_per_min"] / 60
    con.print(f"throughput [bold]{s['throughput_rec_per_min']:,.0f} rec/min[/] "
              f"({rps:,.0f} rec/s), batch size {s['batch_size']}, target {s['target']}")
    busy = sum(s["stages"].values()) or 1.0
    parts = [f"{k} {v:.2f} s ({100 * v / busy:.0f}%)" for k, v in s["stages"].items() if v]
    con.print("stages: " + " · ".join(parts), markup=False)
    where = f" (in {s['schema']}.{s.get('table_prefix', '')}*)" if s.get("schema") else \
        f" (as {s['table_prefix']}*)" if s.get("table_prefix") else ""
    con.print(f"tables{where}: " + " · ".join(f"{k} {v:,}" for k, v in s["tables"].items()),
              markup=False)
    per_type = s.get("records") or {}
    if len(per_type) > 1:
        con.print("records: " + " · ".join(
            f"<{k}> {v['read']:,} read → {v['inserted']:,} inserted + {v['quarantined']:,} "
            f"quarantined" for k, v in per_type.items()), markup=False)
    if s.get("workers", 1) > 1 or s.get("pipeline", "off") != "off":
        busy_s = " · ".join(f"{k} {v:.2f} s" for k, v in s["stage_busy_s"].items())
        con.print(f"workers {s['workers']} · pipeline {s['pipeline']} · busy {busy_s} · "
                  f"overlap efficiency {s['overlap_efficiency']:.2f}", markup=False)
        for w in s["per_worker"]:
            con.print(f"  worker {w['worker']}: {w['records_read']:,} records in "
                      f"{w['elapsed_s']:.2f} s ({w['rec_per_s']:,.0f} rec/s)", markup=False)
    if s.get("skipped"):
        con.print(f"resumed: {s['skipped']:,} records were committed by the interrupted run")
    if s.get("unexpanded_entities"):
        why = f"the DTD catalog {s['dtd_dir']} does not define them" if s.get("dtd_dir") \
            else "no DTD defines them: give the DTDs with --dtd-dir DIR"
        con.print(f"{s['unexpanded_entities']:,} records kept entity references such as &name; "
                  f"as they are ({why})", markup=False)
    for note in s.get("notes") or []:
        con.print(note, markup=False)
    empty = s.get("files_without_records") or []
    if empty:
        con.print(f"input files without records (the others had some): {', '.join(empty)}",
                  markup=False)
    if s.get("retries"):
        con.print(f"retried {s['retries']} transient database error(s), waiting "
                  f"{s['retry_wait_s']:.1f} s: the times include the interruption",
                  markup=False)
    b = s.get("bottleneck")
    if b:
        evidence = "; ".join(f"{e['reason']} ({e['value']:.3g} {e['unit']} vs {e['op']} "
                             f"{e['threshold']})" for e in b.get("evidence", [])[:2])
        con.print(f"bottleneck: {b['label']} — {b['description']} "
                  f"(confidence {b['confidence']:.2f}): {evidence}", markup=False)
        for blocker in (b.get("blockers") or [])[:3]:
            con.print(f"  blocked by {blocker.get('description', '?')}", markup=False)
    failed = "" if s.get("status", "complete") == "complete" else \
        f" (status {s['status']}: not a measurement)"
    con.print(f"result: {s['result_file']}{failed}", markup=False)


# The other commands live in their own modules and register themselves on ``app``.
from bench import (  # noqa: E402,F401
    calibrate_cmd as _calibrate_cmd,  # calibrate
    commands as _commands,  # sweep, baseline, compare
    diagnose_cmd as _diagnose_cmd,  # diagnose pooling
    doctor_cmd as _doctor_cmd,  # doctor
    mapping_cmd as _mapping_cmd,  # mapping suggest, mapping check
    report_cmd as _report_cmd,  # report
)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command body (e.g. during imports)
        sys.exit(130)
    except (MigratorError, OSError) as exc:  # one escaped a command's user_errors()
        if _state["debug"]:
            raise
        ui.error(os_error_text(exc) if isinstance(exc, OSError) else str(exc))
        sys.exit(1)

