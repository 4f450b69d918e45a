"""`bench generate`: a deterministic mock XML dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bench import console as ui
from bench.cli.options import (
    positive,
    user_errors,
)
from bench.preflight import ensure_writable_dir

app = typer.Typer()


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the XML files.")],
    records: Annotated[int, typer.Option("--records", "-n", help="Number of records.",
                                         callback=positive("--records"))] = 10_000,
    files: Annotated[int, typer.Option("--files", help="Split the records over K files.",
                                       callback=positive("--files"))] = 1,
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
