"""Options and error handling shared by the `bench` commands.

Exit codes: 0 success, 1 a user or operational error (one line, no traceback unless
``--debug``), 2 a usage error (bad flag or value), 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.compare import ThresholdError, parse_threshold
from bench.preflight import os_error_text
from bench.ranges import DurationError, parse_duration
from bench.runner import RunInterrupted
from migrator.connection import ConnectionStrategy, ConnectionStrategyError, resolve_connection
from migrator.errors import MigratorError


class _State:
    """Set by the root command's ``--debug`` before any command runs."""

    debug = False


state = _State()


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
        if state.debug:
            raise
        kept = (f"; what was measured is in {exc.outcome.result_file} (status interrupted)"
                if isinstance(exc, RunInterrupted) else "")
        ui.error("interrupted: the batch in progress was rolled back; "
                 f"continue with --resume{kept}")
        raise typer.Exit(130) from None
    except (MigratorError, *also) as exc:  # type: ignore[misc]  # (mypy: star in except)
        if state.debug:
            raise
        ui.error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        if state.debug:
            raise
        ui.error(os_error_text(exc))
        raise typer.Exit(1) from None


def positive(name: str) -> Any:
    def check(value: int | None) -> int | None:
        if value is not None and value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
        return value
    return check


def namespace_part(name: str, flag: str) -> Any:
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
    "--schema", callback=namespace_part("schema", "--schema"),
    help="PostgreSQL/SQL Server: the schema for the tables \\[default: migration_bench, "
         "created if missing].")]
TablePrefixOption = Annotated[str, typer.Option(
    "--table-prefix", callback=namespace_part("prefix", "--table-prefix"),
    help="Put PREFIX before every table name the tool creates (its mb_* tables too), to "
         "migrate beside same-named tables.")]
ReplaceTablesOption = Annotated[bool, typer.Option(
    "--replace-existing-tables",
    help="Drop and replace tables with the run's names that migration-bench did not "
         "create (refused by default).")]

DtdDirOption = Annotated[Path | None, typer.Option(
    "--dtd-dir", help="A trusted local DTD catalog: named entities and default attributes "
    "come from the DTD files in DIR (never from the network) \\[default: the mapping's "
    "\\[input].dtd_dir].")]

INSERT_METHODS = ("auto", "executemany", "fast", "values", "copy")
# Shared by every command that runs migrations (run, sweep, baseline).
RetryWindow = Annotated[float, typer.Option(
    "--retry-window", min=0.0, metavar="SECONDS", envvar="BENCH_RETRY_WINDOW",
    help="How long a transient database error (server restart, killed session, lost "
         "connection, deadlock) is retried before the run stops; 0 turns retries off.")]
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))


def worker_count(value: int) -> int:
    if not 1 <= value <= MAX_WORKERS:
        raise typer.BadParameter(f"must be 1..{MAX_WORKERS} (4 per CPU, at least 64), "
                                 f"got {value}", param_hint="--workers")
    return value


def connection_option(connection: str | None, pooling: str | None) -> ConnectionStrategy:
    """``--connection`` and its alias ``--pooling`` as one strategy (exit 2 when wrong)."""
    try:
        return resolve_connection(connection, pooling)
    except ConnectionStrategyError as exc:
        raise typer.BadParameter(str(exc)) from None


def one_of(name: str, choices: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}, got {value!r}",
                                     param_hint=name)
        return value
    return check


RANGE_HELP = "range grammar: 50..2000 (1-2-5 series), 100..1000:100, 1..64:x2, 50,100,500"
WORKERS_HELP = "also 2..16:2, 1..64:x2, 1,2,4"


def warn(message: str) -> None:
    ui.console(stderr=True).print(f"warning: {message}", markup=False)


def usage(message: str) -> typer.BadParameter:
    """A usage error (exit 2); the message already names the option."""
    return typer.BadParameter(message)


def abspath(path: Path | None) -> str | None:
    return os.path.abspath(path) if path is not None else None


def echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=1, ensure_ascii=False))


def duration_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, name=option)
    except DurationError as exc:
        raise usage(str(exc)) from None


def percent_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = parse_threshold(text)
    except ThresholdError:
        raise usage(f"{option}: {text!r} is not a percentage; expected e.g. 2% or 2") from None
    if value >= 0.5:
        raise usage(f"{option}: {text} is not a noise band (use a few percent, e.g. 2%)")
    return value


def check_alpha(value: float) -> float:
    if not 0.0 < value <= 0.5:
        raise typer.BadParameter(f"must be in (0, 0.5], e.g. 0.05; got {value:g}",
                                 param_hint="--alpha")
    return value
