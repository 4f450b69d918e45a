"""The `bench` command: one root Typer that adds each command's own.

Each command lives in a module of this package with its own ``typer.Typer()``; this module
only assembles them and turns errors that escape a command into one line and exit 1.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bench import console as ui
from bench.cli import (
    baseline,
    calibrate,
    compare,
    diagnose,
    doctor,
    generate,
    mapping,
    report,
    run,
    sweep,
)
from bench.cli.options import state
from bench.preflight import os_error_text
from migrator.errors import MigratorError

app = typer.Typer(
    name="bench",
    help="Benchmark and diagnose XML → SQL migrations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.debug = debug


# The order of the help listing.
for _command in (generate, run, sweep, baseline, compare, calibrate, report, doctor):
    app.add_typer(_command.app)
app.add_typer(diagnose.app, name="diagnose")
app.add_typer(mapping.app, name="mapping")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command body (e.g. during imports)
        sys.exit(130)
    except (MigratorError, OSError) as exc:  # one escaped a command's user_errors()
        if state.debug:
            raise
        ui.error(os_error_text(exc) if isinstance(exc, OSError) else str(exc))
        sys.exit(1)
