"""The result model: every document `bench` writes, as typed records, its versions, and I/O.

One JSON document per invocation (``result.json`` in the run folder), told apart by
``kind``: :class:`RunDocument` (`bench run`), :class:`SweepDocument` (`bench sweep`),
:class:`BaselineDocument`, :class:`CalibrationDocument`, :class:`DiagnoseDocument`
(`bench diagnose pooling`) and :class:`CompareDocument` (a `bench compare` report kept as a
result). Writers build these records; readers (the HTML report, `bench compare`, the
baseline and calibration summaries) use their attributes. :func:`load` reads a file,
upgrades an older version and returns the typed document; :meth:`Record.to_dict` and
:func:`save` write it back.

A record keeps what it does not know: keys a newer tool (or a hand-made document) added are
kept in ``unknown`` and written back, and a key the document did not hold is not written
back either, so ``load → save → load`` gives the same document.

Format history (bump :data:`SCHEMA_VERSION` and add an upgrader for every change):

- 1: first version. ``{"schema": "migration-bench/result", "schema_version": 1, "kind",
  "created", "tool", "config", "environment", "runs": [...], "verdicts": [...]}``; each run
  holds its configuration, metrics (records, stages, tables, batches), reconciliation and
  sampler series.
- 2: every run's ``config`` names all run dimensions (``batch_size``, ``workers``,
  ``pipeline``, ``queue_depth``, ``pooling``, ``insert_method``) and ``sample_interval``
  (null: not sampled); every run has a ``bottleneck`` key (null when not attributed).
  Version 1 files lacked the dimensions added later (``queue_depth``) and the sampling keys.
- 3: ``status`` (``complete``, ``failed`` or ``interrupted``) and ``error`` (the one-line
  cause, or null) on the document and on every run. Only complete runs are measurements;
  a failed or interrupted run keeps what it measured before it stopped (counts, batches,
  stages) and sweeps, baselines, comparisons and reports skip it, saying so. Version 2 runs
  become ``failed`` when they recorded an error or a reconciliation that did not hold (what
  made `bench run` exit 1), else ``complete``. Runs written since may also hold
  ``run_id`` and ``session_name`` (what the run's database sessions were named) and, in
  ``samples``, ``blockers`` (sessions seen holding a lock the run waited for); readers treat
  them as optional.
- 4: ``connection`` (``per-batch``, ``pooled`` or ``persistent``: how each batch got its
  connection) replaces ``pooling`` in every configuration — the document's, each run's,
  a sweep's dimensions, configurations and summary. Older ``pooling`` values become
  ``connection`` (``on`` → ``pooled``, ``off`` → ``per-batch``), and so do the labels that
  name them (``pooling=on`` → ``connection=pooled``). Runs written since may also hold
  ``server_throughput`` (the server's own counters beside the clients') and, for a cluster
  run, ``cluster`` (with ``cluster``, ``cluster_workers`` and ``max_sessions`` in their
  configuration); readers treat them as optional.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from migrator.connection import strategy_of_pooling
from migrator.connstr import redact_text
from migrator.errors import MigratorError

SCHEMA = "migration-bench/result"
SCHEMA_VERSION = 4
RESULT_NAME = "result.json"

COMPLETE, FAILED, INTERRUPTED = "complete", "failed", "interrupted"
STATUSES = (COMPLETE, FAILED, INTERRUPTED)

#: A configuration value: a batch size, a worker count, ``on``/``off``, a method's name.
ConfigValue = int | float | str | bool

__all__ = [
    "COMPLETE",
    "FAILED",
    "INTERRUPTED",
    "RESULT_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BaselineDocument",
    "BaselineSummary",
    "Bottleneck",
    "CalibrationDocument",
    "ClusterHost",
    "ClusterRun",
    "CompareDocument",
    "CompareSummary",
    "ConfigValue",
    "DiagnoseDocument",
    "Environment",
    "Metrics",
    "Record",
    "ResultDocument",
    "ResultFileError",
    "Run",
    "RunConfig",
    "RunDocument",
    "ServerThroughput",
    "SweepDocument",
    "SweepSummary",
    "Verdict",
    "connection_from_pooling",
    "counted_runs",
    "load",
    "new_document",
    "parse",
    "read_raw",
    "redact_deep",
    "result_path",
    "save",
    "write_json_atomic",
]


class ResultFileError(MigratorError):
    """A result file is missing, truncated, malformed, or from an unknown version."""


class ResultFormatError(ValueError):
    """A value of the wrong type inside a document; the message names where it is."""

    def __init__(self, where: str, problem: str, expected: str | None = None) -> None:
        super().__init__(f"{where or 'the document'}: {problem}")
        self.where = where
        self.expected = expected  # what the value should have been, for a union's message


# ============================================================================ records
#
# A record is a dataclass whose fields are the keys of one JSON object. The annotation of a
# field says how its value is read: a Record subclass, ``list[X]``, ``dict[str, X]``, a
# union, or a JSON scalar (``int``, ``float``, ``str``, ``bool``; ``Any`` is taken as is).
# ``omit`` in a field's metadata says when a record built by a writer leaves the key out:
# ``True`` when the value is the default, or the name of another field whose default value
# means the record has no such part (a run outside a sweep has no schedule position).

_OMIT = "omit"
#: ``metadata`` of a field a writer leaves out while it holds its default.
OMIT = {_OMIT: True}
#: ``metadata`` of the schedule fields a run outside a sweep does not have.
IN_SWEEP = {_OMIT: "config_index"}
_INTERNAL = {"internal": True}  # an attribute of the record, not a key of the document


_Converter = Callable[[Any, str], Any]


@dataclass(kw_only=True)
class Record:
    """Base of the model's records (see the comment above)."""

    #: Keys this record does not model, kept as read and written back.
    unknown: dict[str, Any] = field(default_factory=dict, repr=False, metadata=_INTERNAL)
    #: The keys the document held, in its order (None: built by a writer). A modelled key
    #: the document lacked is written back only once it is set to a value other than its
    #: default.
    read_keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False,
                                              metadata=_INTERNAL)

    #: Keys a writer's record writes first, in this order (a record read from a document
    #: keeps the document's order).
    KEY_ORDER: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """The record of one JSON object; :class:`ResultFormatError` names a bad value."""
        if not isinstance(data, Mapping):
            raise ResultFormatError(where, f"expected an object, found {_shown(data)}",
                                    "an object")
        spec = _spec(cls)
        kwargs: dict[str, Any] = {}
        for name, (convert, required) in spec.items():
            if name in data:
                kwargs[name] = convert(data[name], f"{where}.{name}" if where else name)
            elif required:
                raise ResultFormatError(where, f"has no {name!r}")
        kwargs["unknown"] = {k: v for k, v in data.items() if k not in spec}
        kwargs["read_keys"] = tuple(data)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record (lists and objects copied)."""
        out: dict[str, Any] = {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if self._writes(f, value):
                out[f.name] = _dump(value)
        for key, value in self.unknown.items():
            out.setdefault(key, _dump(value))
        # The order of the document read, else the writer's: files keep their layout.
        first = self.read_keys if self.read_keys is not None else self.KEY_ORDER
        ordered = {k: out.pop(k) for k in first if k in out}
        return {**ordered, **out}

    def holds(self, name: str) -> bool:
        """Does the document hold ``name`` (as :meth:`to_dict` writes it)?"""
        f = next((f for f in _fields(type(self)) if f.name == name), None)
        return name in self.unknown if f is None else self._writes(f, getattr(self, name))

    def _writes(self, f: dataclasses.Field[Any], value: Any) -> bool:
        if self.read_keys is not None:
            return f.name in self.read_keys or value != _default(f)
        omit = f.metadata.get(_OMIT, False)
        if omit is True:
            return bool(value != _default(f))
        if isinstance(omit, str):
            guard = next(g for g in _fields(type(self)) if g.name == omit)
            return bool(getattr(self, omit) != _default(guard))
        return True


def _fields(cls: type[Record]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


_SPECS: dict[type, dict[str, tuple[_Converter, bool]]] = {}


def _spec(cls: type[Record]) -> dict[str, tuple[_Converter, bool]]:
    """Field name → (how its value is read, whether the document must hold it)."""
    found = _SPECS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = {f.name: (_converter(hints[f.name]), _default(f) is dataclasses.MISSING)
                 for f in _fields(cls)}
        _SPECS[cls] = found
    return found


_SCALARS: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float),
                                         bool: (bool,)}


def _converter(tp: Any) -> _Converter:
    if tp is Any:
        return lambda value, where: value
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict
    if tp in _SCALARS:
        return _scalar(tp)
    if tp is type(None):
        return _none
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return _union([_converter(a) for a in args])
    if origin is list:
        return _list(_converter(args[0]))
    if origin is dict:
        return _dict(_converter(args[1]))
    raise TypeError(f"the result model cannot read values of type {tp!r}")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _none(value: Any, where: str) -> None:
    if value is not None:
        raise ResultFormatError(where, f"expected null, found {_shown(value)}", "null")


def _scalar(tp: type) -> _Converter:
    allowed = _SCALARS[tp]
    name = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[tp]

    def convert(value: Any, where: str) -> Any:
        if (isinstance(value, bool) and tp is not bool) or not isinstance(value, allowed):
            raise ResultFormatError(where, f"expected {name}, found {_shown(value)}", name)
        return value

    return convert


def _union(arms: list[_Converter]) -> _Converter:
    def convert(value: Any, where: str) -> Any:
        problems: list[ResultFormatError] = []
        for arm in arms:
            try:
                return arm(value, where)
            except ResultFormatError as exc:
                problems.append(exc)
        inside = [p for p in problems if p.where != where]
        if inside:  # the value had the right shape; something within it is wrong
            raise max(inside, key=lambda p: len(p.where))
        wanted = list(dict.fromkeys(p.expected for p in problems
                                    if p.expected and p.expected != "null"))
        raise ResultFormatError(where, f"expected {' or '.join(wanted)}, found "
                                       f"{_shown(value)}", " or ".join(wanted))

    return convert


def _list(item: _Converter) -> _Converter:
    def convert(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise ResultFormatError(where, f"expected a list, found {_shown(value)}", "a list")
        return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]

    return convert


def _dict(item: _Converter) -> _Converter:
    def convert(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ResultFormatError(where, f"expected an object, found {_shown(value)}",
                                    "an object")
        return {str(k): item(v, f"{where}.{k}") for k, v in value.items()}

    return convert


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


# ============================================================================ the host

@dataclass(kw_only=True)
class Tool(Record):
    name: str = "migration-bench"
    version: str = ""


@dataclass(kw_only=True)
class TargetFacts(Record):
    """What a result file records about the target (``display`` is redacted)."""

    scheme: str = ""
    display: str = ""
    dialect: str = ""
    dbms_name: str = ""
    dbms_version: str = ""
    driver_name: str = ""
    driver_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class DatasetFacts(Record):
    """The input's size and, for generated data, its manifest."""

    files: int | None = field(default=None, metadata=OMIT)
    bytes: int | None = field(default=None, metadata=OMIT)
    profile: str | None = field(default=None, metadata=OMIT)
    seed: int | None = field(default=None, metadata=OMIT)
    records: int | None = field(default=None, metadata=OMIT)
    invalid_rate: float | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class MappingFacts(Record):
    """Which mapping a run used (``fingerprint`` tells two mappings apart)."""

    source: str | None = None
    fingerprint: str | None = None


@dataclass(kw_only=True)
class Environment(Record):
    """Host, Python, packages, target and dataset the results were measured with."""

    host: str | None = field(default=None, metadata=OMIT)
    os: str | None = field(default=None, metadata=OMIT)
    cpu: str | None = field(default=None, metadata=OMIT)
    cpu_count: int | None = field(default=None, metadata=OMIT)
    cpu_count_physical: int | None = field(default=None, metadata=OMIT)
    ram_bytes: int | None = field(default=None, metadata=OMIT)
    python: str | None = field(default=None, metadata=OMIT)
    python_implementation: str | None = field(default=None, metadata=OMIT)
    packages: dict[str, str | None] = field(default_factory=dict, metadata=OMIT)
    target: TargetFacts | None = field(default=None, metadata=OMIT)
    dataset: DatasetFacts | None = field(default=None, metadata=OMIT)
    mapping: MappingFacts | None = field(default=None, metadata=OMIT)


# ============================================================================ a run

@dataclass(kw_only=True)
class RunConfig(Record):
    """The settings one run ran with (a sweep adds its configuration's keys)."""

    batch_size: int | None = None
    workers: int | None = None
    pipeline: str | None = None
    queue_depth: int | None = None
    #: How each batch got its connection: ``per-batch``, ``pooled`` or ``persistent``.
    connection: str | None = None
    insert_method: str | None = None
    resume: bool | None = None
    sample_interval: float | None = None
    schema: str | None = None
    table_prefix: str | None = None
    retry_window: float | None = None
    #: A cluster run's: the cluster (`--cluster`), how many of its workers the run used
    #: (a sweep dimension: always written) and its cap on units writing at once.
    cluster: str | None = field(default=None, metadata=OMIT)
    cluster_workers: int | None = None
    max_sessions: int | None = field(default=None, metadata=OMIT)

    def value(self, name: str) -> ConfigValue | None:
        """A setting by its name (a modelled one, or one a sweep's configuration added)."""
        if name in _spec(type(self)):
            found: ConfigValue | None = getattr(self, name)
            return found
        extra = self.unknown.get(name)
        return extra if isinstance(extra, int | float | str | bool) else None


@dataclass(kw_only=True)
class Batches(Record):
    """Per-batch timings, column-oriented: ``rows[i][columns.index("insert")]``."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)

    def column(self, name: str) -> list[Any] | None:
        """One column's values, or None when the batches do not record it."""
        if name not in self.columns:
            return None
        k = self.columns.index(name)
        return [row[k] for row in self.rows if len(row) > k]


@dataclass(kw_only=True)
class Metrics(Record):
    """What one run measured (``migrator.RunStats.to_dict``)."""

    records_read: int | None = None
    inserted: int | None = None
    quarantined: int | None = None
    elapsed_s: float | None = None
    throughput_rec_per_min: float | None = None
    stages: dict[str, float | None] = field(default_factory=dict)
    stage_busy_s: dict[str, float | None] = field(default_factory=dict, metadata=OMIT)
    overlap_efficiency: float | None = field(default=None, metadata=OMIT)
    pipeline: str | None = field(default=None, metadata=OMIT)
    queue_depth: int | None = field(default=None, metadata=OMIT)
    max_in_flight: int | None = field(default=None, metadata=OMIT)
    converted_by_inserter: int | None = field(default=None, metadata=OMIT)
    read_map_cpu_s: float | None = field(default=None, metadata=OMIT)
    retries: int | None = field(default=None, metadata=OMIT)
    retry_wait_s: float | None = field(default=None, metadata=OMIT)
    #: Connections the writers opened or took from a pool.
    connects: int | None = field(default=None, metadata=OMIT)
    #: Per-worker statistics (files of version 1 stored the worker count here).
    workers: list[dict[str, Any]] | int | None = field(default=None, metadata=OMIT)
    tables: dict[str, int] = field(default_factory=dict)
    records: dict[str, dict[str, int]] = field(default_factory=dict, metadata=OMIT)
    unexpanded_entities: int | None = field(default=None, metadata=OMIT)
    notes: list[str] = field(default_factory=list, metadata=OMIT)
    units: list[dict[str, Any]] = field(default_factory=list, metadata=OMIT)
    errors: list[str] = field(default_factory=list)
    batches: Batches | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class Reconciliation(Record):
    """The final count check: records read = inserted + quarantined, rows per table."""

    ok: bool | None = None
    records_read: int | None = None
    inserted: int | None = None
    quarantined: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict, metadata=OMIT)
    problems: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class SamplerOverhead(Record):
    cpu_s: float | None = None
    wall_s: float | None = None
    cpu_pct_of_core: float | None = None
    rounds: int | None = None
    mean_round_ms: float | None = None
    max_round_ms: float | None = None
    per_sampler_cpu_s: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class Samples(Record):
    """A sampler series (``diagnostics.SampleSeries.to_dict``): ``metrics[name][i]`` was
    measured ``t[i]`` seconds into the run."""

    format: str | None = field(default=None, metadata=OMIT)
    interval_s: float | None = field(default=None, metadata=OMIT)
    started_at: str | None = field(default=None, metadata=OMIT)
    t: list[float] = field(default_factory=list)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict, metadata=OMIT)
    info: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=OMIT)
    warnings: list[str] = field(default_factory=list, metadata=OMIT)
    overhead: SamplerOverhead | None = field(default=None, metadata=OMIT)
    blockers: list[dict[str, Any]] = field(default_factory=list, metadata=OMIT)

    @property
    def drawable(self) -> bool:
        """At least two sampling instants: a timeline, not a dot."""
        return len(self.t) >= 2

    def column(self, name: str) -> list[float | None] | None:
        return self.metrics.get(name)


@dataclass(kw_only=True)
class Evidence(Record):
    """One rule that fired for a label (``diagnostics.attribution.Evidence``)."""

    fact: str = ""
    value: Any = None
    threshold: Any = None
    unit: str = ""
    op: str = ""
    weight: float | None = None
    reason: str = ""


@dataclass(kw_only=True)
class Blocker(Record):
    """A session that held a lock the run waited for (``diagnostics.server.Blocker``)."""

    session: Any = None
    id_label: str = "session"
    application: str = ""
    user: str = ""
    object: str = ""
    held_mode: str = ""
    samples: Any = None
    transaction_start: str = ""
    query: str = ""


@dataclass(kw_only=True)
class Bottleneck(Record):
    """Which resource limited a run (``diagnostics.Verdict.to_dict``), or, summarised over
    a configuration's runs, the label most of them got (``runs`` of ``of`` agreed)."""

    label: str = ""
    description: str = ""
    confidence: float | None = field(default=None, metadata=OMIT)
    level: str | None = field(default=None, metadata=OMIT)
    evidence: list[Evidence] = field(default_factory=list, metadata=OMIT)
    runner_up: str | None = field(default=None, metadata=OMIT)
    runner_up_evidence: list[Evidence] = field(default_factory=list, metadata=OMIT)
    scores: dict[str, float | None] = field(default_factory=dict, metadata=OMIT)
    facts: dict[str, Any] = field(default_factory=dict, metadata=OMIT)
    blockers: list[Blocker] = field(default_factory=list, metadata=OMIT)
    runs: int | None = field(default=None, metadata=OMIT)
    of: int | None = field(default=None, metadata=OMIT)

    def as_bottleneck(self) -> Bottleneck:
        """The bottleneck fields alone (a :class:`Verdict`'s own keys left out)."""
        data = {k: v for k, v in self.to_dict().items() if k in _spec(Bottleneck)}
        return Bottleneck.from_dict(data)


@dataclass(kw_only=True)
class Verdict(Bottleneck):
    """An entry of a document's or a run's ``verdicts``: a bottleneck (flat, or nested
    under ``verdict``), a pooling test's result, or the pooling decision."""

    KEY_ORDER: ClassVar[tuple[str, ...]] = ("kind", "scope")

    kind: str | None = field(default=None, metadata=OMIT)
    scope: str | None = field(default=None, metadata=OMIT)
    #: A nested bottleneck, or a test's one-line verdict.
    verdict: Bottleneck | str | None = field(default=None, metadata=OMIT)

    def bottleneck(self) -> Bottleneck | None:
        """The bottleneck this entry states, if it states one."""
        if isinstance(self.verdict, Bottleneck) and self.kind == "bottleneck" and \
                self.verdict.label:
            return self.verdict
        if self.label and (self.confidence is not None or self.kind == "bottleneck"):
            return self.as_bottleneck()
        return None


@dataclass(kw_only=True)
class HostLoad(Record):
    """Other processes' share of the machine while a sweep's run ran (see
    ``bench.noise_gate``); ``disturbed`` marks a run measured on a taken-over host."""

    loadavg_1m: float | None = field(default=None, metadata=OMIT)
    cpus: int | None = field(default=None, metadata=OMIT)
    cpu_s: float | None = field(default=None, metadata=OMIT)
    machine_cpu_s: float | None = field(default=None, metadata=OMIT)
    steal_s: float | None = field(default=None, metadata=OMIT)
    others_cpu_s: float | None = field(default=None, metadata=OMIT)
    others_share: float | None = field(default=None, metadata=OMIT)
    steal_share: float | None = field(default=None, metadata=OMIT)
    busy_share: float | None = field(default=None, metadata=OMIT)
    disturbed: bool = field(default=False, metadata=OMIT)


@dataclass(kw_only=True)
class ServerThroughput(Record):
    """Throughput as the server counted it, from its own counters read before and after
    the run (``diagnostics.server_counters``), beside what the clients counted: ``server``
    and ``clients`` hold ``rows_inserted``, ``commits``, ``rows_per_s``, ``commits_per_s``
    (and the server's ``window_s``, the clients' ``elapsed_s``)."""

    dialect: str | None = None
    rows_source: str | None = None
    commits_source: str | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] | None = None
    rows_ratio: float | None = field(default=None, metadata=OMIT)
    error: str | None = None
    warning: str | None = None


@dataclass(kw_only=True)
class ClusterHost(Record):
    """One machine of a cluster run: its workers and the longest of their host series."""

    workers: list[str] = field(default_factory=list)
    samples: Samples | None = None


@dataclass(kw_only=True)
class ClusterRun(Record):
    """How a cluster ran a run's units (``migrator.cluster.ClusterReport``): its workers,
    the task attempts (seconds since the run's start), lost workers, units run again, and
    per machine its host samples."""

    cluster: str | None = None
    workers: list[str] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)  # worker address → its host
    lost_workers: list[str] = field(default_factory=list)
    rerun_units: list[str] = field(default_factory=list)
    max_sessions: int | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    host_samples: dict[str, ClusterHost] | None = None


@dataclass(kw_only=True)
class Run(Record):
    """One migration: its settings, what it measured, how it ended, and — in a sweep — its
    place in the schedule (``order_index``, ``round``, ``config_index``, ``warmup``)."""

    # the schedule position (sweeps, baselines, calibrations)
    order_index: int | None = field(default=None, metadata=IN_SWEEP)
    round: int | None = field(default=None, metadata=IN_SWEEP)
    config_index: int | None = field(default=None, metadata=OMIT)
    warmup: bool = field(default=False, metadata=IN_SWEEP)
    sequence: int | None = field(default=None, metadata=OMIT)
    # how it ended
    status: str = COMPLETE
    error: str | None = None
    run_id: str | None = field(default=None, metadata=OMIT)
    session_name: str | None = field(default=None, metadata=OMIT)
    diagnose_test: str | None = field(default=None, metadata=OMIT)
    config: RunConfig = field(default_factory=RunConfig)
    metrics: Metrics = field(default_factory=Metrics)
    reconciliation: Reconciliation | None = None
    files_without_records: list[str] = field(default_factory=list)
    samples: Samples | None = None
    server_throughput: ServerThroughput | None = field(default=None, metadata=OMIT)
    cluster: ClusterRun | None = field(default=None, metadata=OMIT)
    bottleneck: Bottleneck | None = None
    verdicts: list[Verdict] | None = field(default=None, metadata=OMIT)
    # how a sweep measured it
    started: str | None = field(default=None, metadata=OMIT)
    wall_s: float | None = field(default=None, metadata=OMIT)
    host: HostLoad | None = field(default=None, metadata=OMIT)
    slot_s: float | None = field(default=None, metadata=OMIT)
    rerun: bool = field(default=False, metadata=OMIT)

    @property
    def is_measurement(self) -> bool:
        """Only a complete run's time is a measurement; a failed or interrupted one is not
        (an unknown status, in a hand-made document, counts as complete)."""
        return self.status not in (FAILED, INTERRUPTED)

    @property
    def counts(self) -> bool:
        """A measurement that is not a warm-up."""
        return self.is_measurement and not self.warmup

    def skipped_reason(self) -> str:
        """``failed: <error>`` / ``interrupted``: why the run is no measurement."""
        status = self.status if self.status in STATUSES else COMPLETE
        return f"{status}: {self.error}" if self.error else status

    @property
    def throughput(self) -> float | None:
        return self.metrics.throughput_rec_per_min

    @property
    def disturbed(self) -> bool:
        return self.host is not None and self.host.disturbed

    def attributed(self) -> Bottleneck | None:
        """The bottleneck verdict of the run, when its samples gave one (stored as the
        run's ``bottleneck`` or among its ``verdicts``)."""
        if self.bottleneck is not None and self.bottleneck.label:
            return self.bottleneck
        for verdict in self.verdicts or []:
            found = verdict.bottleneck()
            if found is not None:
                return found
        return None

    def setting(self, name: str) -> ConfigValue | None:
        return self.config.value(name)


def counted_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs that count, in the order they ran: complete ones (a failed or interrupted
    run is no measurement), no warm-ups, and of a disturbed run and its re-run in the same
    round only the re-run."""
    def position(item: tuple[int, Run]) -> tuple[int, int, int]:
        i, run = item
        for value in (run.order_index, run.sequence):
            if value is not None:
                return value, run.sequence or 0, i
        return i, 0, i

    latest: dict[tuple[int, int | None] | int, Run] = {}
    for i, run in sorted(enumerate(runs), key=position):
        if run.counts:
            key = (run.round, run.config_index) if run.round is not None else -1 - i
            latest.pop(key, None)  # (a re-run takes the place of the run it replaces)
            latest[key] = run
    return list(latest.values())


# ============================================================================ statistics
# The stored form of reports.stats / reports.summary objects (their ``to_dict``).

@dataclass(kw_only=True)
class StatsRecord(Record):
    """``reports.stats.Stats``: one configuration's samples summarised."""

    n: int
    median: float
    mean: float | None = None
    stdev: float | None = None
    cv: float | None = None
    min: float | None = None
    max: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_confidence: float | None = None
    outlier_indices: list[int] = field(default_factory=list)
    outlier_values: list[float] = field(default_factory=list)
    ci_method: str | None = None
    outlier_method: str | None = None


@dataclass(kw_only=True)
class DriftRecord(Record):
    """``reports.stats.Drift``: a trend across run order."""

    n: int | None = None
    tau: float | None = None
    p_value: float | None = None
    slope_pct: float | None = None
    total_pct: float | None = None
    significant: bool = False
    method: str | None = None


@dataclass(kw_only=True)
class MachineNoiseRecord(Record):
    """``reports.stats.MachineNoise``: the host's share of a configuration's spread."""

    probe_cv: float | None = None
    elasticity: float | None = None
    adjusted_cv: float | None = None
    explained: float | None = None


@dataclass(kw_only=True)
class ComparisonRecord(Record):
    """``reports.stats.Comparison`` or ``PairedComparison``: ``b`` against ``a``."""

    n_a: int | None = field(default=None, metadata=OMIT)
    n_b: int | None = field(default=None, metadata=OMIT)
    median_a: float | None = field(default=None, metadata=OMIT)
    median_b: float | None = field(default=None, metadata=OMIT)
    change: float | None = field(default=None, metadata=OMIT)
    change_ci_low: float | None = field(default=None, metadata=OMIT)
    change_ci_high: float | None = field(default=None, metadata=OMIT)
    mannwhitney_p: float | None = field(default=None, metadata=OMIT)
    p_value: float | None = field(default=None, metadata=OMIT)
    significant: bool | None = field(default=None, metadata=OMIT)
    equivalent: bool | None = field(default=None, metadata=OMIT)
    outcome: str | None = field(default=None, metadata=OMIT)
    verdict: str | None = field(default=None, metadata=OMIT)

    @property
    def deciding_p(self) -> float | None:
        """The p-value that decided: the paired test's, else Mann-Whitney's."""
        return self.p_value if self.p_value is not None else self.mannwhitney_p


@dataclass(kw_only=True)
class SummaryRow(Record):
    """``reports.summary.ConfigRow``: one line of the sweep table."""

    config: dict[str, ConfigValue]
    label: str = ""
    stats: StatsRecord
    drift: DriftRecord | None = None
    warnings: list[str] = field(default_factory=list)
    is_baseline: bool = False
    vs_baseline: ComparisonRecord | None = None
    vs_baseline_text: str = ""
    machine_noise: MachineNoiseRecord | None = field(default=None, metadata=OMIT)
    rounds: int | None = field(default=None, metadata=OMIT)
    vs_best: ComparisonRecord | None = field(default=None, metadata=OMIT)
    vs_best_text: str = field(default="", metadata=OMIT)
    eliminated_at: int | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class BestRecord(Record):
    """``reports.summary.BestConfig``."""

    index: int
    config: dict[str, ConfigValue] = field(default_factory=dict)
    label: str = ""
    sentence: str = ""


@dataclass(kw_only=True)
class KneeRecord(Record):
    """``reports.summary.Knee``: the knee of one batch-size curve."""

    group_label: str = ""
    knee_batch_size: ConfigValue | None = None
    kind: str = ""
    sentence: str = ""


@dataclass(kw_only=True)
class LevelShiftRecord(Record):
    """``reports.stats.LevelShift``: the host changed speed at ``round``."""

    round: int | None = None
    rounds: int | None = None
    change: float | None = None
    p_value: float | None = None
    significant: bool = False
    paired_label: str | None = None
    paired_before: float | None = None
    paired_after: float | None = None
    paired_p: float | None = None
    paired_consistent: bool | None = None


@dataclass(kw_only=True)
class NoiseRecord(Record):
    level_shift: LevelShiftRecord | None = None


@dataclass(kw_only=True)
class SweepSummary(Record):
    """What `bench sweep` concluded (``reports.summary.SweepSummary.to_dict`` plus the best
    configuration's bottleneck and the sweep's own warnings)."""

    dimensions: list[str] = field(default_factory=list)
    unit: str = "rec/min"
    lines: list[str] = field(default_factory=list, metadata=OMIT)
    rows: list[SummaryRow] = field(default_factory=list)
    baseline_index: int | None = None
    best: BestRecord | None = None
    knees: list[KneeRecord] = field(default_factory=list)
    noise: NoiseRecord | None = field(default=None, metadata=OMIT)
    warnings: list[str] = field(default_factory=list)
    best_bottleneck: Bottleneck | None = field(default=None, metadata=OMIT)

    def best_row(self) -> SummaryRow | None:
        index = self.best.index if self.best is not None else None
        return self.rows[index] if index is not None and 0 <= index < len(self.rows) else None

    def level_shift(self) -> LevelShiftRecord | None:
        """The host's significant level shift, if the summary found one."""
        shift = self.noise.level_shift if self.noise is not None else None
        return shift if shift is not None and shift.significant and \
            shift.round is not None else None


@dataclass(kw_only=True)
class BaselineSummary(Record):
    """What `bench baseline` concluded (``bench.baseline.BaselineSummary.to_dict``)."""

    name: str | None = None
    config: dict[str, ConfigValue] = field(default_factory=dict)
    label: str = ""
    unit: str = "rec/min"
    stats: StatsRecord | None = None
    seconds_per_record: StatsRecord | None = None
    drift: DriftRecord | None = None
    repeats_needed: int | None = None
    warnings: list[str] = field(default_factory=list)
    bottleneck: Bottleneck | None = None
    machine_noise: MachineNoiseRecord | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class CalibrationSummary(Record):
    """What `bench calibrate` concluded (``bench.calibrate.Calibration`` and its verdict)."""

    created: str = ""
    created_unix: float | None = None
    host: str = ""
    target: str = ""
    records: int | None = None
    batch_size: int | None = None
    pairs: int | None = None
    duration_s: float | None = None
    run_s: float | None = None
    raw_cv: float | None = None
    log_ratio_sd: float | None = None
    paired_noise: float | None = None
    noise_band: float | None = None
    aa: dict[str, Any] = field(default_factory=dict)
    different: bool = False
    mde: dict[str, float | None] = field(default_factory=dict)
    rounds_for_5pct: int | None = None
    minutes_for_5pct: float | None = None
    verdict: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class CompareRow(ComparisonRecord):
    """One matched configuration of a comparison (``bench.compare.CompareRow.to_dict``)."""

    KEY_ORDER: ClassVar[tuple[str, ...]] = ("label", "config_a", "config_b", "marker",
                                            "meaning", "regression")

    label: str = ""
    config_a: dict[str, ConfigValue] = field(default_factory=dict)
    config_b: dict[str, ConfigValue] = field(default_factory=dict)
    marker: str = "~"
    meaning: str = ""
    regression: bool = False


@dataclass(kw_only=True)
class CompareSummary(Record):
    """A `bench compare` report (``bench.compare.CompareReport.to_dict``)."""

    a: str = ""
    b: str = ""
    threshold: float | None = None
    alpha: float | None = None
    rows: list[CompareRow] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    geometric_mean_change: float | None = None
    sentence: str = ""

    #: The keys that make a JSON object a `bench compare --json` report.
    SIGNATURE: ClassVar[frozenset[str]] = frozenset({"rows", "sentence", "a", "b"})


# ============================================================================ documents

@dataclass(kw_only=True)
class SweepConfig(Record):
    """A sweep's plan as stored (``bench.sweep.SweepPlan``), with its run order."""

    kind: str = ""
    dimensions: dict[str, list[ConfigValue]] = field(default_factory=dict)
    repeat: int | None = None
    warmup: int | None = None
    seed: int | None = None
    inputs: list[str] = field(default_factory=list)
    target: str | None = None
    mapping: str | None = None
    baseline: str | None = None
    dataset: dict[str, Any] | None = None
    name: str | None = None
    configurations: list[dict[str, ConfigValue]] = field(default_factory=list)
    schema: str | None = field(default=None, metadata=OMIT)
    table_prefix: str = field(default="", metadata=OMIT)
    replace_existing_tables: bool = field(default=False, metadata=OMIT)
    budget_s: float | None = field(default=None, metadata=OMIT)
    noise_band: float | None = field(default=None, metadata=OMIT)
    sweep_id: str | None = field(default=None, metadata=OMIT)
    racing: bool | None = field(default=None, metadata=OMIT)
    #: ``[round, config_index]`` of every measured slot, in run order.
    order: list[list[int]] = field(default_factory=list)
    interleaving: str | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class RunInvocation(Record):
    """What `bench run` was asked to do."""

    inputs: list[str] = field(default_factory=list)
    target: str | None = None
    #: The mapping's description (a hand-made document may name it by its path only).
    mapping: MappingFacts | str | None = None
    batch_size: int | None = None
    workers: int | None = field(default=None, metadata=OMIT)
    pipeline: str | None = field(default=None, metadata=OMIT)
    dtd_dir: str | None = field(default=None, metadata=OMIT)
    queue_depth: int | None = field(default=None, metadata=OMIT)
    connection: str | None = field(default=None, metadata=OMIT)
    insert_method: str | None = field(default=None, metadata=OMIT)
    resume: bool | None = field(default=None, metadata=OMIT)
    schema: str | None = field(default=None, metadata=OMIT)
    table_prefix: str | None = field(default=None, metadata=OMIT)
    replace_existing_tables: bool | None = field(default=None, metadata=OMIT)
    cluster: str | None = field(default=None, metadata=OMIT)
    cluster_workers: int | None = field(default=None, metadata=OMIT)
    max_sessions: int | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class DiagnoseConfig(Record):
    """What `bench diagnose pooling` was asked to do (``target`` redacted)."""

    target: str | None = None
    workers: list[int] = field(default_factory=list)
    records: int | None = None
    batch_size: int | None = None
    repeat: int | None = None
    connections: int | None = field(default=None, metadata=OMIT)
    expect: str | None = field(default=None, metadata=OMIT)
    pyodbc_pooling: str | None = field(default=None, metadata=OMIT)
    thresholds: dict[str, Any] = field(default_factory=dict, metadata=OMIT)


@dataclass(kw_only=True)
class ResultDocument(Record):
    """What every kind of result document holds."""

    KEY_ORDER: ClassVar[tuple[str, ...]] = (
        "schema", "schema_version", "kind", "status", "error", "created", "tool", "config",
        "environment", "runs", "verdicts")
    KIND: ClassVar[str] = ""

    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    kind: str = ""
    status: str = COMPLETE
    error: str | None = None
    created: str = ""
    tool: Tool = field(default_factory=Tool)
    environment: Environment = field(default_factory=Environment)
    runs: list[Run] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    #: Where the document was read from (not part of it).
    source: str | None = field(default=None, compare=False, metadata=_INTERNAL)

    def invocation(self) -> dict[str, Any]:
        """The document's ``config`` as stored."""
        raise NotImplementedError

    def default_batch_size(self) -> int | None:
        """The batch size the whole invocation ran with, when it names one."""
        return None

    def unfinished(self) -> list[tuple[int, Run]]:
        """Failed or interrupted runs (with their position in ``runs``)."""
        return [(i, r) for i, r in enumerate(self.runs) if not r.is_measurement]

    def bottleneck_verdicts(self) -> Iterator[Verdict]:
        """The document's verdicts that name a label (a bottleneck's)."""
        return (v for v in self.verdicts if v.holds("label"))


@dataclass(kw_only=True)
class OtherDocument(ResultDocument):
    """A document of a kind this version has no model for (its config kept as is)."""

    config: dict[str, Any] = field(default_factory=dict)

    def invocation(self) -> dict[str, Any]:
        return dict(self.config)


@dataclass(kw_only=True)
class RunDocument(ResultDocument):
    KIND: ClassVar[str] = "run"

    config: RunInvocation = field(default_factory=RunInvocation)

    def invocation(self) -> dict[str, Any]:
        return self.config.to_dict()

    def default_batch_size(self) -> int | None:
        return self.config.batch_size


@dataclass(kw_only=True)
class PlannedDocument(ResultDocument):
    """A sweep, baseline or calibration: runs of a plan, summarised."""

    config: SweepConfig = field(default_factory=SweepConfig)
    measured_runs: int | None = field(default=None, metadata=OMIT)

    def invocation(self) -> dict[str, Any]:
        return self.config.to_dict()


@dataclass(kw_only=True)
class SweepDocument(PlannedDocument):
    KIND: ClassVar[str] = "sweep"

    summary: SweepSummary | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class BaselineDocument(PlannedDocument):
    KIND: ClassVar[str] = "baseline"

    summary: BaselineSummary | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class CalibrationDocument(PlannedDocument):
    KIND: ClassVar[str] = "calibrate"

    summary: CalibrationSummary | None = field(default=None, metadata=OMIT)


@dataclass(kw_only=True)
class DiagnoseDocument(ResultDocument):
    """`bench diagnose pooling`: the measured runs and the diagnosis, which is
    ``diagnostics``' own (its tests, the decision and the exit code), kept as it gives it."""

    KIND: ClassVar[str] = "diagnose"

    config: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    diagnose: dict[str, Any] = field(default_factory=dict, metadata=OMIT)

    def invocation(self) -> dict[str, Any]:
        return self.config.to_dict()

    def default_batch_size(self) -> int | None:
        return self.config.batch_size


@dataclass(kw_only=True)
class CompareDocument(ResultDocument):
    KIND: ClassVar[str] = "compare"

    config: dict[str, Any] = field(default_factory=dict)
    compare: CompareSummary = field(default_factory=CompareSummary)

    def invocation(self) -> dict[str, Any]:
        return dict(self.config)


_KINDS: dict[str, type[ResultDocument]] = {
    cls.KIND: cls for cls in (RunDocument, SweepDocument, BaselineDocument,
                              CalibrationDocument, DiagnoseDocument, CompareDocument)}

AnyDocument = (RunDocument | SweepDocument | BaselineDocument | CalibrationDocument
               | DiagnoseDocument | CompareDocument | OtherDocument)


# ============================================================================ versions

RUN_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "workers": 1, "pipeline": "off",
                                "queue_depth": 2, "pooling": "off", "insert_method": "auto"}


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    for run in doc.get("runs") or []:
        if not isinstance(run, dict):
            continue
        config = run.setdefault("config", {})
        for key, value in RUN_DEFAULTS.items():
            config.setdefault(key, value)
        samples = run.get("samples")
        config.setdefault("sample_interval",
                          samples.get("interval_s") if isinstance(samples, dict) else None)
        run.setdefault("samples", None)
        run.setdefault("bottleneck", None)
    doc["schema_version"] = 2
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    for run in doc.get("runs") or []:
        if isinstance(run, dict):
            run.setdefault("error", _v2_failure(run))
            run.setdefault("status", FAILED if run["error"] else COMPLETE)
    runs = [r for r in doc.get("runs") or [] if isinstance(r, dict)]
    # A `bench run` document is its run; sweeps and baselines only ever stored finished ones.
    first_failed = next((r for r in runs if r["status"] != COMPLETE), None)
    if doc.get("kind") == "run" and first_failed is not None:
        doc.setdefault("status", FAILED)
        doc.setdefault("error", first_failed["error"])
    doc.setdefault("status", COMPLETE)
    doc.setdefault("error", None)
    doc["schema_version"] = 3
    return doc


def _v2_failure(run: dict[str, Any]) -> str | None:
    """The first error a version 2 run recorded, or None when it ended cleanly."""
    metrics = run.get("metrics")
    errors = (metrics.get("errors") if isinstance(metrics, dict) else None) or []
    if errors:
        return str(errors[0])
    rec = run.get("reconciliation")
    if isinstance(rec, dict) and rec.get("ok") is False:
        problems = rec.get("problems") or ["the counts did not reconcile"]
        return f"not reconciled: {problems[0]}"
    return None


def _v3_to_v4(doc: dict[str, Any]) -> dict[str, Any]:
    for key in ("config", "summary", "compare"):
        if key in doc:
            doc[key] = connection_from_pooling(doc[key])
    for run in doc.get("runs") or []:
        if isinstance(run, dict) and "config" in run:
            run["config"] = connection_from_pooling(run["config"])
    doc["schema_version"] = 4
    return doc


_POOLING_LABEL = re.compile(r"\bpooling=(on|off)\b")


def _relabel(match: re.Match[str]) -> str:
    return f"connection={strategy_of_pooling(match.group(1))}"


def connection_from_pooling(value: Any) -> Any:
    """A configuration (or a sweep plan, or a summary) written before the connection
    strategy, in today's terms: a ``pooling`` on/off key becomes ``connection`` in its
    place (pooled/per-batch), a ``pooling`` dimension's values likewise, and labels that
    say ``pooling=on`` say ``connection=pooled``. Anything else is returned as it is."""
    if isinstance(value, str):
        return _POOLING_LABEL.sub(_relabel, value)
    if isinstance(value, list):
        return [connection_from_pooling(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "pooling":
            converted = _pooling_value(item)
            if converted is not None:
                out.setdefault("connection", converted)
                continue
        if key == "dimensions" and isinstance(item, list):  # (a summary's dimension names)
            item = ["connection" if d == "pooling" else d for d in item]
        out[key] = connection_from_pooling(item)
    return out


def _pooling_value(value: Any) -> Any:
    """``on`` → ``pooled`` (a list of them: each); None when ``value`` is no pooling."""
    if isinstance(value, list):
        values = [strategy_of_pooling(v) for v in value]
        return values if value and None not in values else None
    return strategy_of_pooling(value)


# version → function turning a raw document of that version into the next version. The
# upgraders work on the raw JSON, before it is typed: an old file need not fit the model.
_UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2,
                                                                    2: _v2_to_v3,
                                                                    3: _v3_to_v4}


def upgrade(doc: Mapping[str, Any], shown: str = "the document") -> dict[str, Any]:
    """A copy of a raw result document brought to :data:`SCHEMA_VERSION`; a foreign or a
    newer document raises :class:`ResultFileError` naming ``shown``."""
    if not isinstance(doc, Mapping) or doc.get("schema") != SCHEMA:
        raise ResultFileError(f"{shown}: not a migration-bench result file")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise ResultFileError(f"{shown}: schema version {version!r} is newer than this tool "
                              f"understands ({SCHEMA_VERSION}); upgrade migration-bench")
    if version < 1:
        raise ResultFileError(f"{shown}: schema version {version!r} was never written by "
                              "migration-bench")
    out = copy.deepcopy(dict(doc))
    while version < SCHEMA_VERSION:
        out = _UPGRADERS[version](out)
        version = out["schema_version"]
    return out


# ============================================================================ reading


def result_path(path: str | Path) -> Path:
    """The result file of a run folder, or the file itself."""
    p = Path(path)
    return p / RESULT_NAME if p.is_dir() else p


def read_json(path: str | Path) -> Any:
    """A result file's JSON as it is (a run folder or the file itself)."""
    p = result_path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(f"{p}: no such result file") from None
    except IsADirectoryError:
        raise ResultFileError(f"{p}: is a folder without a {RESULT_NAME}") from None
    except OSError as exc:
        raise ResultFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{p}: not a valid result file (truncated or corrupted?): "
                              f"{exc}") from None


def read_raw(path: str | Path) -> dict[str, Any]:
    """A result file as a raw dict, upgraded to the current version (for tools that edit
    documents; readers want :func:`load`)."""
    return upgrade(read_json(path), str(result_path(path)))


def parse(doc: Mapping[str, Any], *, source: str | None = None) -> AnyDocument:
    """The typed document of a raw one (upgraded first when it is older)."""
    shown = source or "the document"
    raw = upgrade(doc, shown)
    kind = raw.get("kind")
    cls = _KINDS.get(kind, OtherDocument) if isinstance(kind, str) else OtherDocument
    try:
        typed = cls.from_dict(raw)
    except ResultFormatError as exc:
        raise ResultFileError(f"{shown}: malformed {kind} result: {exc}") from None
    typed.source = source
    return typed  # type: ignore[return-value]


def load(path: str | Path) -> AnyDocument:
    """Read a result file (a run folder or the JSON itself) as its typed document,
    upgrading an older version; any problem is a :class:`ResultFileError` naming the file."""
    return parse(read_json(path), source=str(result_path(path)))


def redact_deep(obj: Any) -> Any:
    """A JSON value with every secret in every string (keys too) masked
    (:func:`migrator.connstr.redact_text`)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        return {redact_text(str(k)): redact_deep(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_deep(v) for v in obj]
    return obj


# ============================================================================ writing


def new_document(kind: str, *, tool: Tool, config: Record | Mapping[str, Any],
                 environment: Environment | Mapping[str, Any],
                 runs: Iterable[Run | Mapping[str, Any]],
                 verdicts: Iterable[Verdict | Mapping[str, Any]] = (),
                 extra: Mapping[str, Any] | None = None, status: str = COMPLETE,
                 error: str | None = None) -> AnyDocument:
    """A new document of ``kind``, created now; its parts may be records or raw dicts
    (``extra``: the kind's own keys, e.g. ``summary``)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    raw = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind, "status": status,
        "error": error, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tool": tool.to_dict(), "config": _dump(config), "environment": _dump(environment),
        "runs": [_dump(r) for r in runs], "verdicts": [_dump(v) for v in verdicts],
        **{k: _dump(v) for k, v in (extra or {}).items()},
    }
    return parse(raw, source=f"the new {kind} document")


def finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: replace them with null rather than write invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


@contextmanager
def writing(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """A full disk or a read-only folder is one clear line, and no half-written file."""
    try:
        yield
    except OSError as exc:
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
        raise ResultFileError(f"{path}: cannot write result file: "
                              f"{exc.strerror or exc} (the migration itself is committed)"
                              ) from None


def write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(finite(dict(doc)), f, indent=1, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def save(doc: ResultDocument, path: str | Path) -> Path:
    """Write ``doc`` to ``path`` atomically (an existing folder gets its ``result.json``);
    returns the file written."""
    target = result_path(path)
    write_json_atomic(target, doc.to_dict())
    return target
