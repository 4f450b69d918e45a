"""`bench compare`: two results, or two configurations of one sweep, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench import console as ui
from bench.cli.options import (
    JsonOption,
    check_alpha,
    echo_json,
    percent_option,
    usage,
    user_errors,
    warn,
)
from bench.compare import (
    DEFAULT_THRESHOLD,
    MARKER_LEGEND,
    ThresholdError,
    compare_results,
    parse_threshold,
    row_cells,
)
from reports.stats import ALPHA, NOISE_BAND

app = typer.Typer()


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Reference result: run folder or result.json.")],
    b: Annotated[Path | None, typer.Argument(
        help="Candidate result: run folder or result.json \\[default: A, to compare two "
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
        "--alpha", callback=check_alpha,
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
        raise usage(str(exc)) from None
    band = percent_option(noise_band, "--noise-band")
    if b is None and (select_a is None or select_b is None):
        raise usage("give B, or --a and --b to compare two configurations of one sweep")
    with user_errors():
        report = compare_results(a, b, threshold=limit, alpha=alpha, select_a=select_a,
                                 select_b=select_b,
                                 noise_band=NOISE_BAND if band is None else band)
    if as_json:
        echo_json(report.to_dict())
    else:
        echo = typer.echo
        echo(f"A: {report.a}" + (f" ({select_a})" if select_a else ""))
        echo(f"B: {report.b}" + (f" ({select_b})" if select_b else ""))
        for warning in report.warnings():
            warn(warning)
        test = "signed-rank (paired)" if report.paired else "Mann-Whitney"
        rows = [row_cells(r) for r in report.rows]
        for line in ui.text_table(["", "configuration", "A rec/min", "B rec/min", "change [95% CI]",
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
