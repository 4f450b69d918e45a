"""`bench mapping suggest FILE` and `bench mapping check MAPPING FILE`: write a starting
mapping for a file never seen before, and check a mapping on a sample of a file.

Thin adapters over :mod:`migrator.suggest`: errors are one line (exit 1), bad
options exit 2; ``check`` exits 1 when a sampled record would be quarantined or no record
was found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bench import console as ui
from bench.cli.options import DtdDirOption, JsonOption, positive, user_errors
from bench.preflight import ensure_writable_file

app = typer.Typer(name="mapping", help="Write a starting mapping for a file, or "
                          "check a mapping on a sample of one.", no_args_is_help=True)

SampleOption = Annotated[int, typer.Option(
    "--sample", "-n", help="Records of each type to read.", callback=positive("--sample"))]


@app.command("suggest")
def suggest(
    file: Annotated[Path, typer.Argument(help="The XML file to describe.")],
    record: Annotated[list[str] | None, typer.Option(
        "--record", "-r", help="The record element (repeat for several record types) "
        "\\[default: the elements that repeat inside a container].")] = None,
    sample: SampleOption = 1000,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the mapping to this file \\[default: standard output].")
    ] = None,
    dtd_dir: DtdDirOption = None,
) -> None:
    """Write a commented mapping TOML for FILE that `bench run` accepts as it is."""
    from migrator.reader import check_dtd_dir
    from migrator.suggest import suggest_mapping

    with user_errors():
        if out is not None:
            ensure_writable_file(out)
        text = suggest_mapping(_input(file), record, sample,
                               check_dtd_dir(str(dtd_dir) if dtd_dir else None))
        if out is None:
            typer.echo(text, nl=False)
            return
        out.write_text(text, encoding="utf-8")
    ui.console(stderr=True).print(f"wrote {out}: check it with `bench mapping check {out} "
                                  f"{file}`", markup=False)


@app.command("check")
def check(
    mapping: Annotated[Path, typer.Argument(help="The mapping TOML file.")],
    file: Annotated[Path, typer.Argument(help="An XML file to check it on.")],
    sample: SampleOption = 1000,
    dtd_dir: DtdDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Map a sample of FILE without a database: rows per table, fields that never match,
    records that would be quarantined and why."""
    from migrator.mapping import load_mapping
    from migrator.reader import check_dtd_dir
    from migrator.suggest import check_mapping

    with user_errors():
        loaded = load_mapping(mapping).with_dtd_dir(
            check_dtd_dir(str(dtd_dir) if dtd_dir else None))
        report = check_mapping(loaded, _input(file), sample)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
    else:
        _print_check(report)
    if not report.ok:
        raise typer.Exit(1)


def _input(file: Path) -> str:
    from migrator.errors import InputError

    if not file.is_file():
        raise InputError(f"{file}: no such file; give an XML file")
    return str(file)


def _print_check(report: object) -> None:
    from migrator.suggest import CheckReport

    assert isinstance(report, CheckReport)
    con = ui.console()
    out = lambda text: con.print(text, markup=False)  # noqa: E731
    counts = " · ".join(f"<{k}> {v:,}" for k, v in report.records.items())
    out(f"sampled records of {report.path}: {counts}")
    out("rows: " + " · ".join(f"{k} {v:,}" for k, v in report.rows.items()))
    if report.never_matched:
        out(f"fields that never matched ({len(report.never_matched)}): "
            + ", ".join(report.never_matched))
    if not sum(report.records.values()):
        out("no record element found: check the element names of the mapping")
    if report.rejected:
        out(f"{report.quarantined:,} records would be quarantined:")
        for r in report.rejected:
            out(f"  {r.code} ×{r.count}: {r.reason} (first at line {r.line}, key {r.key})")
    else:
        out("no record would be quarantined")


__all__ = ["check", "suggest"]
