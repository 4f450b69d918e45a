"""`bench run`: one migration, measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.cli.cluster import ClusterOption, check_cluster_options, describe_cluster_run
from bench.cli.options import (
    JsonOption,
    settings_options,
    state,
    user_errors,
)
from bench.runner import RunFailed, RunInterrupted, RunOutcome, RunRequest, execute_run
from migrator.errors import NothingToResume
from migrator.settings import RunSettings

app = typer.Typer()


@app.command()
@settings_options()
def run(
    *,
    inputs: Annotated[list[str], typer.Option(
        "--input", "-i", help="XML file, folder or glob; repeat for more.")],
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="sqlite:PATH or odbc:CONNECTION-STRING (default: sqlite in the run folder).")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", "-m", help="Mapping TOML file (default: the built-in orders mapping).")
    ] = None,
    settings: RunSettings,  # every run setting's option, in declared order
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run in the same target.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run folder for result files (default: runs/<timestamp>/).")
    ] = None,
    report: Annotated[bool, typer.Option(
        "--report", help="Also write report.html next to the result file.")] = False,
    cluster: ClusterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Migrate XML into a database once, measuring every stage."""
    check_cluster_options(cluster, settings.cluster_workers, settings.max_sessions,
                          workers=settings.workers)
    request = RunRequest(inputs=inputs, target=target, mapping=mapping, resume=resume,
                         out=out, cluster=cluster, **settings.values())
    progress = ui.progress_bar("migrating", None, unit="bytes", enabled=not as_json)
    stopped: RunFailed | RunInterrupted | None = None
    with user_errors(), progress as update:
        try:
            outcome = execute_run(request, progress=update)
        except NothingToResume as exc:
            _nothing_to_resume(exc, as_json)
            return
        except (RunFailed, RunInterrupted) as exc:
            if state.debug:
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
    if s.get("workers", 1) > 1 or s.get("pipeline", "off") != "off" or s.get("cluster"):
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
    for line in describe_cluster_run(s):
        con.print(line, markup=False)
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
