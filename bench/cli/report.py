"""`bench report RESULT… [-o report.html]`: one self-contained HTML file from result files.

A thin adapter over :func:`reports.report.write_report`, which ``run``/``sweep``/``diagnose
--report`` call too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.options import user_errors
from bench.preflight import ensure_writable_file

DEFAULT_NAME = "report.html"

app = typer.Typer()


def default_output(results: list[Path]) -> Path:
    """``report.html`` next to the first result (inside it when it is a run folder)."""
    first = results[0]
    folder = first if first.is_dir() else first.parent
    return folder / DEFAULT_NAME


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(
        help="Result files or run folders (run, sweep, baseline, compare, diagnose).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="HTML file to write \\[default: report.html next to the first "
                            "result].")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
) -> None:
    """Write a single-file HTML report (inline SVG charts, no network) for performance
    reviews."""
    from reports.report import write_report

    target = out or default_output(results)
    with user_errors():
        ensure_writable_file(target)  # before reading anything: say it now, in one line
        written = write_report(results, target, title=title)
        size = written.stat().st_size
    typer.echo(f"report: {written} ({size / 1024:,.0f} KiB)")


__all__ = ["default_output", "report"]
