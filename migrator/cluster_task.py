"""What travels between a cluster run's coordinator (:mod:`migrator.cluster`) and its
workers (:mod:`migrator.cluster_worker`): the run, each attempt's outcome, and what every
worker must be able to do. Plain picklable dataclasses; no Dask here."""

from __future__ import annotations

from dataclasses import dataclass

from migrator.batch import Checkpoint
from migrator.config import EngineConfig
from migrator.duplicates import InputOrder
from migrator.mapping import Mapping
from migrator.stats import RunStats
from migrator.targets.base import Namespace


@dataclass(frozen=True)
class ClusterRun:
    """Everything a worker needs to migrate the run's units (picklable; the target as its
    spec, which may hold a password: it goes to the workers only, never to a file)."""

    name: str  # the plugin's name on the workers: unique per run
    run_id: str
    target_spec: str
    namespace: Namespace
    mapping: Mapping
    config: EngineConfig
    order: InputOrder
    workers: tuple[str, ...]  # the chosen workers' addresses (their number is the index + 1)


@dataclass
class UnitOutcome:
    """What one attempt at a unit did, as its task returns it."""

    unit: str
    status: str  # done | stopped | taken (another attempt writes it) | failed
    at_start: Checkpoint  # the unit's checkpoint when this attempt started
    stats: RunStats | None
    worker: str
    host: str
    pid: int
    started: float  # wall clock (time.time()) of the engine's start, and of its end
    ended: float
    error: str = ""
    detail: str = ""
    session: str = ""  # the server's id of the session a persistent worker thread kept


@dataclass(frozen=True)
class WorkerCheck:
    """What the run needs every worker to be able to do, checked before anything is
    inserted."""

    paths: tuple[str, ...]
    sqlite_file: str | None  # a sqlite: target's file: only workers on this host may write
    client_host: str
    pipeline: str
    odbc_pooling: bool | None = None  # an ODBC target's pooling (decided once per process)
