"""The `bench doctor` command: render :mod:`bench.doctor`'s findings; exit 0, or 3 on errors.

The checks and the exit-code rule live in :mod:`bench.doctor`; this only adapts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bench import console as ui
from bench.cli.options import JsonOption
from bench.doctor import ERROR, OK, WARNING, DoctorContext, Finding, run_checks

app = typer.Typer()

_MARK = {OK: "[green]ok[/]     ", WARNING: "[yellow]warning[/]", ERROR: "[red]error[/]  "}


def _show(finding: Finding) -> None:
    from rich.markup import escape

    con = ui.console()
    con.print(f"{_MARK[finding.status]} [bold]{finding.check}[/]: {escape(finding.message)}")
    if finding.fix:
        con.print(f"         fix: {escape(finding.fix)}")


@app.command()
def doctor(
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="BENCH_TARGET",
        help="Also check connectivity, DBMS version and sampling permissions of this target.")
    ] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Results folder whose free space is checked.")] = Path("runs"),
    as_json: JsonOption = False,
) -> None:
    """Check this machine's setup for truthful measurements (exit 3 when any error)."""
    ctx = DoctorContext(target=target, results_dir=out)
    collector = run_checks(ctx, on_finding=None if as_json else _show)
    if as_json:
        typer.echo(json.dumps(collector.to_dict(), indent=1, ensure_ascii=False))
    else:
        errors, warnings = collector.count(ERROR), collector.count(WARNING)
        ui.console().print(f"{len(collector.findings)} checks: {errors} error(s), "
                           f"{warnings} warning(s)")
    if collector.exit_code:
        raise typer.Exit(collector.exit_code)
