"""The run settings, declared once.

A run setting is a choice that changes how a migration runs but not what it migrates: the
batch size, the worker count, the pipeline, how tables are named, how long errors are
retried... :class:`RunSettings` is a dataclass with one field per setting, and each field
carries, besides its type and default, how the setting is given and shown (a
:class:`Setting`): its command-line flag and help, the values it accepts, whether a sweep
can vary it (and with which option), and how reports label it.

Everything else is derived from this one declaration: the options of ``bench run`` and the
run-setting options of the other commands (:mod:`bench.cli.options`), the sweep dimensions
(:mod:`bench.sweep`), the settings in ``bench run --json``, and the labels of configurations
in summaries and reports (:func:`label`). A setting added here appears in all of them.

What a single invocation is about — the input, the target, the mapping, the run folder,
resuming — is not a setting: :class:`bench.runner.RunRequest` adds it.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from migrator.config import PIPELINE_MODES
from migrator.connection import (
    DEFAULT_STRATEGY,
    POOLING_ALIASES,
    STRATEGIES,
    ConnectionStrategy,
    parse_connection,
    resolve_connection,
)
from migrator.retry import DEFAULT_WINDOW_S
from migrator.targets.base import Namespace
from migrator.targets.odbc import INSERT_METHODS

__all__ = [
    "MAX_WORKERS",
    "SETTINGS",
    "SETTING_BY_NAME",
    "SWEPT",
    "Alias",
    "RunSettings",
    "Setting",
    "Sweep",
    "choice_named",
    "dimension_name",
    "label",
]

T = TypeVar("T")

#: Worker processes a run may have: 4 per CPU, and at least 64 whatever the machine.
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))

_KEY = "migration-bench setting"


@dataclass(frozen=True)
class Sweep:
    """How a sweep varies a setting.

    ``help`` may name ``{grammar}`` (the range grammar of a numeric setting, filled in by
    the command line), ``{choices}`` (the values swept, comma-joined) and ``{default}``.
    """

    option: str
    help: str
    short: str | None = None
    series: str = "125"  # numeric: what a bare A..B means, the 1-2-5 series or "linear"
    choices: tuple[str, ...] | None = None  # None: the setting's own choices
    default: str | None = None  # what a sweep that names no dimension sweeps


@dataclass(frozen=True)
class Alias:
    """A second flag for a setting, whose values are the setting's other spellings
    (:attr:`Setting.spellings`): ``--pooling on`` for ``--connection pooled``."""

    flag: str
    help: str  # as `bench run` takes it
    sweep_help: str  # as a sweep takes it
    #: The setting's value from what was given to the setting's flag and to this one (None:
    #: not given); ValueError (its message names the flags) when they disagree or are wrong.
    resolve: Callable[[Any, Any], Any]

    @property
    def name(self) -> str:
        """Its name in a sweep's dimension texts (``pooling``)."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Setting:
    """How one field of :class:`RunSettings` is given, checked and shown.

    ``name``, ``default`` and ``annotation`` come from the field itself.
    """

    flag: str
    help: str
    short: str | None = None
    choices: tuple[str, ...] | None = None
    #: Raises ValueError (its message says what is wrong, without the flag) for a value
    #: the setting refuses; checked where the value is given.
    check: Callable[[Any], None] | None = None
    minimum: float | None = None  # a bound the command line checks and its help shows
    metavar: str | None = None
    envvar: str | None = None
    cli_type: Any = None  # the command line's type, when not the field's (a Path for a str)
    #: Turns a value given by name into the field's (an enum's member); ValueError if none.
    parse: Callable[[Any], Any] | None = None
    spellings: tuple[tuple[str, str], ...] = ()  # (another spelling, the choice it means)
    alias: Alias | None = None
    #: A second flag that turns the setting off (its value None), and that flag's help.
    off_flag: str | None = None
    off_help: str = ""
    sweep: Sweep | None = None
    label: str = ""  # how reports name it in a configuration ("batch_size=500"); "": name
    aliases: tuple[str, ...] = ()  # other spellings of the label (``--baseline batch=…``)
    title: str | None = None  # reports: the title of its section, when it has one
    anchor: str | None = None  # reports: the id of that section
    name: str = ""
    default: Any = None
    annotation: Any = None

    @property
    def sweep_choices(self) -> tuple[str, ...] | None:
        """The values a sweep may take (None: numeric, the range grammar)."""
        if self.sweep is None:
            return None
        return self.sweep.choices or self.choices


def setting(default: T, flag: str, help: str, **spec: Any) -> T:
    """A :class:`RunSettings` field: its default and its :class:`Setting`."""
    return field(default=default, metadata={_KEY: Setting(flag, help, **spec)})


# ---- checks -------------------------------------------------------------------------------

def _at_least(low: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and value < low:
            raise ValueError(f"must be at least {low}, got {value}")
    return check


def _worker_count(value: Any) -> None:
    if value is not None and not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"must be 1..{MAX_WORKERS} (4 per CPU, at least 64), got {value}")


def _namespace(part: str) -> Callable[[Any], None]:
    """``--schema`` / ``--table-prefix``: the names :class:`Namespace` accepts."""
    def check(value: Any) -> None:
        if value:
            try:
                Namespace(**{part: value})
            except ValueError as exc:  # "--schema 'x': use letters…": the flag is shown apart
                raise ValueError(str(exc).split(": ", 1)[1]) from None
    return check


# ---- the declaration ----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How a migration runs. Each field's :class:`Setting` says how it is given and shown;
    the order of the fields is the order of the options and of the sweep dimensions (the
    first dimension varies slowest)."""

    batch_size: int = setting(
        1000, "--batch-size", "Records per transaction.", short="-b", check=_at_least(1),
        sweep=Sweep("--batch-sizes", "Batch sizes to sweep, {grammar}. Default {default} when "
                    "no dimension is given.", short="-b", default="50..2000"),
        aliases=("batch", "batches", "batch_sizes"))
    workers: int = setting(
        1, "--workers", "Worker processes; a large file is split into record ranges.",
        short="-w", check=_worker_count,
        sweep=Sweep("--workers", "Worker processes to sweep: {grammar}.", short="-w",
                    series="linear"),
        aliases=("worker",))
    # How each batch gets its connection (migrator.connection): a new one per batch, a
    # checkout from a pool, or one per worker for the whole run. A name is accepted too.
    connection: ConnectionStrategy = setting(  # noqa: RUF009 (a field(), as every one here)
        DEFAULT_STRATEGY, "--connection", "per-batch: each batch opens a new connection; "
        "pooled: each batch takes one from a pool (unixODBC driver-manager pooling, made real "
        "via a private ODBCSYSINI); persistent: one connection per worker for the whole run.",
        choices=STRATEGIES, parse=parse_connection,
        spellings=tuple((alias, strategy.value) for alias, strategy in POOLING_ALIASES.items()),
        alias=Alias("--pooling", "Alias: on is --connection pooled, off is per-batch.",
                    "Alias of --connection: on,off is pooled,per-batch.", resolve_connection),
        sweep=Sweep("--connection", "Connection strategies to sweep: {choices}."),
        aliases=("pooling",),
        title="Connection strategy (per-batch, pooled, persistent)", anchor="connection")
    pipeline: str = setting(
        "off", "--pipeline", "Overlap reading+mapping with inserting: off, thread or process.",
        choices=PIPELINE_MODES,
        sweep=Sweep("--pipeline", "Pipeline modes to sweep: {choices}."),
        title="Pipeline modes and overlap efficiency", anchor="pipeline")
    queue_depth: int = setting(
        2, "--queue-depth", "Mapped batches that may wait for the inserter (pipeline).",
        check=_at_least(1))
    insert_method: str = setting(
        "auto", "--insert-method", "executemany, fast, values, copy, or auto (the dialect's "
        "fastest correct method, measured).", choices=("auto", *INSERT_METHODS),
        sweep=Sweep("--insert-method", "Insert methods to sweep: {choices} (as the target's "
                    "dialect supports).", choices=INSERT_METHODS),
        title="Insert methods", anchor="insert-methods")
    sample_interval: float | None = setting(
        0.5, "--sample-interval", "Seconds between host and server samples.", minimum=0.05,
        cli_type=float, off_flag="--no-sample",
        off_help="Do not sample host and server during the run.")
    # Where the tables go (None: the dialect's default schema) and whether same-named
    # tables the tool did not create may be replaced (refused otherwise).
    schema: str | None = setting(
        None, "--schema", "PostgreSQL/SQL Server: the schema for the tables [default: "
        "migration_bench, created if missing].", check=_namespace("schema"))
    table_prefix: str = setting(
        "", "--table-prefix", "Put PREFIX before every table name the tool creates (its mb_* "
        "tables too), to migrate beside same-named tables.", check=_namespace("prefix"))
    replace_existing_tables: bool = setting(
        False, "--replace-existing-tables", "Drop and replace tables with the run's names that "
        "migration-bench did not create (refused by default).")
    retry_window: float = setting(
        DEFAULT_WINDOW_S, "--retry-window", "How long a transient database error (server "
        "restart, killed session, lost connection, deadlock) is retried before the run "
        "stops; 0 turns retries off.", minimum=0.0, metavar="SECONDS",
        envvar="BENCH_RETRY_WINDOW")
    # A trusted local DTD catalog: named entities and default attributes come from there.
    dtd_dir: str | None = setting(
        None, "--dtd-dir", "A trusted local DTD catalog: named entities and default attributes "
        "come from the DTD files in DIR (never from the network) [default: the mapping's "
        "[input].dtd_dir].", cli_type=Path | None)
    # A cluster run (`--cluster`, bench.runner.RunRequest): on how many of the cluster's
    # workers (None: all of them), and how many units may write at once across the cluster
    # (None: one per worker thread). A sweep varies the first like the worker count.
    cluster_workers: int | None = setting(
        None, "--cluster-workers", "With --cluster: use this many of the cluster's workers "
        "[default: all].", check=_at_least(1),
        sweep=Sweep("--cluster-workers", "Cluster workers to sweep (needs --cluster): "
                    "{grammar}.", series="linear"),
        aliases=("cluster_worker",), title="Client workers of a cluster",
        anchor="cluster-workers")
    max_sessions: int | None = setting(
        None, "--max-sessions", "With --cluster: at most this many units write at once "
        "across the cluster (database sessions) [default: one per worker thread].",
        check=_at_least(1))

    def __post_init__(self) -> None:
        for s in SETTINGS:
            if s.parse is not None:  # (frozen: set as dataclasses do in __init__)
                object.__setattr__(self, s.name, s.parse(getattr(self, s.name)))

    def values(self) -> dict[str, Any]:
        """Every setting by name (what ``bench run --json`` reports)."""
        return {s.name: getattr(self, s.name) for s in SETTINGS}


def _declared() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(RunSettings)
    return tuple(dataclasses.replace(f.metadata[_KEY], name=f.name, default=f.default,
                                     annotation=hints[f.name],
                                     label=f.metadata[_KEY].label or f.name)
                 for f in dataclasses.fields(RunSettings))


#: Every setting, in declaration order (the order of options and of sweep dimensions).
SETTINGS: tuple[Setting, ...] = _declared()
SETTING_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
#: The settings a sweep can vary, in the order their dimensions vary (first: slowest).
SWEPT: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.sweep is not None)


def label(key: str) -> str:
    """How reports name a configuration key (a setting's label; any other key as it is)."""
    found = SETTING_BY_NAME.get(key)
    return found.label if found is not None else key


def choice_named(name: str, spelling: str) -> str:
    """The choice of setting ``name`` that ``spelling`` stands for (``on`` → ``pooled`` for
    ``connection``), whatever its case; any other spelling as it is."""
    found = SETTING_BY_NAME.get(name)
    meant = dict(found.spellings) if found is not None else {}
    return meant.get(spelling.strip().lower(), spelling.strip())


def dimension_name(spelling: str) -> str:
    """The setting a label, an alias or the name itself stands for (``batch`` →
    ``batch_size``); any other spelling as it is. Case and ``-``/``_`` do not matter."""
    key = spelling.strip().lower().replace("-", "_")
    for s in SETTINGS:
        if key in (s.name, s.label, *s.aliases):
            return s.name
    return key
