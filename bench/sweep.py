"""Sweeps: the grid of configurations, the interleaved run order, and running it.

The pieces, each a pure function or a small object, so they test in milliseconds:

* :data:`DIMENSIONS` — the sweepable settings (those :mod:`migrator.settings` declares
  with a sweep option), the CLI option of each and the :class:`bench.runner.RunRequest`
  field it sets.
* :func:`expand_grid` — the Cartesian product of the dimensions, in option order (the first
  dimension varies slowest), which is also the order of the final table.
* :func:`schedule` — randomised interleaving: every round runs each configuration once, in
  an order shuffled by a seeded RNG; rounds repeat ``--repeat`` times. Interleaving turns
  slow changes of the machine (a neighbour's backup, thermal throttling, a filling page
  cache) into noise spread over all configurations instead of a bias against whichever ran
  last; the shuffle stops a fixed order from aliasing with periodic noise. Rounds are drawn
  one after another from one RNG stream, so raising ``--repeat`` on ``--resume`` keeps the
  rounds already run.
* :func:`execute_point` — one configuration → one :class:`RunRequest` → one measured run
  on a fresh schema (and, for the embedded default target, a fresh database file).
* :func:`run_plan` — walks the schedule, skipping slots the store already holds, appending
  each finished run to the store at once. With a time budget (``--budget``, the default)
  the schedule is not fixed in advance: :class:`bench.racing.BudgetRace` decides each
  round, drops configurations that are significantly worse and stops when the answer is
  clear or the budget is spent; runs disturbed by other processes
  (:mod:`bench.noise_gate`) are re-run once within their round.
* :func:`ensure_dataset` — the default input: generated once per (profile, records, seed)
  into the user's cache folder and reused while its manifest and file hashes match.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import noise_gate, runner
from bench.racing import MAX_ROUNDS, STOP_TEXT, BudgetRace, RacePolicy, round_order
from bench.ranges import RangeError, parse_choices, parse_range
from bench.results import build_result, write_pyperf, write_result
from bench.store import RunStore, StoreContents
from migrator.errors import MigratorError
from migrator.settings import SWEPT, RunSettings, Setting
from reports.results import (
    Bottleneck,
    ConfigValue,
    Environment,
    HostLoad,
    MappingFacts,
    Run,
    RunConfig,
    SweepDocument,
    counted_runs,
)
from reports.stats import NOISE_BAND
from reports.summary import SweepDesign, SweepSummary, format_config, summarize_sweep

# ---- defaults -------------------------------------------------------------------------------
# Why these:
# * A 5-minute budget: rounds run until the racing stops (one configuration left, the leaders
#   equivalent) or the budget is spent; the sweep reports the smallest difference it could
#   detect, and `bench calibrate` predicts that before a sweep starts.
# * 8 rounds for a fixed design with racing off (`bench diagnose pooling`): the fewest at
#   which the exact signed-rank test, Holm-corrected over up to six comparisons, can still
#   reach p < 0.05 (its smallest p is 2/2**8).
# * 1 warm-up run: absorbs what the first run of a process pays once (imports, a cold page
#   cache of the input, the first database file) instead of charging it to one configuration.
# * 5 000 records: a run into the embedded SQLite default takes seconds, not minutes, so the
#   default `bench sweep --batch-sizes 50..2000` fits its rounds into 5 minutes many times.
#   Longer runs barely lower the CV on a host whose CPU speed drifts for seconds at a time
#   (docs/performance.md, "Sweep noise": the host, not the run length, sets it). Each run's
#   read_map_cpu_s probe lets the summary separate that from the configuration's own
#   spread (reports.stats.machine_noise).
DEFAULT_RECORDS = 5000
DEFAULT_REPEAT = 8
DEFAULT_BUDGET_S = 300.0
DEFAULT_WARMUP = 1
DATASET_PROFILE = "orders"
DATASET_SEED = 0


class SweepError(MigratorError):
    """A sweep that cannot run as asked; the message is for the user as-is."""


class RunNotMeasured(SweepError):
    """A run failed: ``run`` is its record (status failed, what it measured), stored for
    the record before the sweep stops."""

    def __init__(self, message: str, run: Run, environment: Environment) -> None:
        super().__init__(message)
        self.run = run
        self.environment = environment


# ---- dimensions and the grid ----------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One sweepable setting: its name in configurations and ``--baseline``, its CLI
    option, the :class:`RunRequest` field it sets, and its choices (None: numeric, parsed
    with the range grammar). ``aliases`` are other spellings a choice may be given as."""

    name: str
    option: str
    field: str
    choices: tuple[str, ...] | None = None
    series: str = "125"  # what a bare A..B means: the 1-2-5 series, or "linear" (step 1)
    aliases: tuple[tuple[str, str], ...] = ()  # (spelling, the choice it means)

    def parse(self, text: str) -> list[ConfigValue]:
        if self.choices is None:
            return list(parse_range(text, name=self.option, series=self.series))
        meaning = dict(self.aliases)
        named = parse_choices(text, [*self.choices, *meaning], self.option)
        return list(dict.fromkeys(meaning.get(c, c) for c in named))


def _dimension(setting: Setting) -> Dimension:
    assert setting.sweep is not None
    return Dimension(setting.name, setting.sweep.option, setting.name, setting.sweep_choices,
                     setting.sweep.series, setting.spellings)


def _alias_dimension(setting: Setting) -> Dimension:
    """The setting's dimension under its alias flag, which takes the other spellings."""
    assert setting.alias is not None
    spelled = tuple(spelling for spelling, _ in setting.spellings)
    return Dimension(setting.alias.name, setting.alias.flag, setting.name, spelled,
                     aliases=setting.spellings)


DIMENSIONS: tuple[Dimension, ...] = tuple(_dimension(s) for s in SWEPT)
DIMENSION_BY_NAME = {d.name: d for d in DIMENSIONS}
#: ``--pooling on,off``: a dimension under its alias flag (on: pooled, off: per-batch).
ALIAS_DIMENSIONS = {s.alias.name: _alias_dimension(s) for s in SWEPT if s.alias is not None}
#: What a sweep that names no dimension sweeps (``--batch-sizes 50..2000``).
DEFAULT_DIMENSIONS: dict[str, str] = {s.name: s.sweep.default for s in SWEPT
                                      if s.sweep is not None and s.sweep.default}

Config = dict[str, ConfigValue]


def parse_dimensions(given: Mapping[str, str | None]) -> dict[str, list[ConfigValue]]:
    """``{"batch_size": "50..2000", "connection": "per-batch,persistent"}`` → typed value
    lists, in :data:`DIMENSIONS` order; None values (option not given) are left out.
    ``pooling`` (``on,off``) is the connection dimension under its alias. Raises
    :class:`bench.ranges.RangeError` (a usage error) for malformed values."""
    given = dict(given)
    by_alias = {ALIAS_DIMENSIONS[name].field: (ALIAS_DIMENSIONS[name], given.pop(name))
                for name in list(given) if name in ALIAS_DIMENSIONS}
    unknown = set(given) - set(DIMENSION_BY_NAME)
    if unknown:
        raise ValueError(f"unknown dimension(s): {', '.join(sorted(unknown))}")
    parsed: dict[str, list[ConfigValue]] = {}
    for dim in DIMENSIONS:
        text = given.get(dim.name)
        alias, alias_text = by_alias.get(dim.name, (None, None))
        if alias is not None and alias_text is not None:
            if text is not None:
                spelled = ",".join(s for s, _ in dim.aliases)
                meant = ",".join(c for _, c in dim.aliases)
                raise RangeError(alias.option, alias_text, f"{dim.option} is given too",
                                 f"give only {dim.option} ({alias.option} {spelled} is its "
                                 f"alias for {meant})")
            parsed[dim.name] = alias.parse(alias_text)
        elif text is not None:
            parsed[dim.name] = dim.parse(text)
    return parsed


def expand_grid(dimensions: Mapping[str, Sequence[ConfigValue]]) -> list[Config]:
    """The Cartesian product, first dimension slowest: ``{"a": [1, 2], "b": ["x", "y"]}``
    → a=1,b=x; a=1,b=y; a=2,b=x; a=2,b=y. No dimension → one empty configuration."""
    names = list(dimensions)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(dimensions[n] for n in names))]


@dataclass(frozen=True)
class Slot:
    """One measured run of the schedule."""

    order_index: int
    round: int
    config_index: int


def schedule(n_configs: int, repeat: int, seed: int) -> list[Slot]:
    """Rounds of all configurations, each round in its own seeded shuffle."""
    if n_configs < 1 or repeat < 1:
        raise ValueError("a schedule needs at least one configuration and one repeat")
    rng = random.Random(seed)
    slots: list[Slot] = []
    for round_ in range(repeat):
        order = list(range(n_configs))
        rng.shuffle(order)
        slots.extend(Slot(len(slots), round_, i) for i in order)
    return slots


def warmup_configs(slots: Sequence[Slot], n_configs: int, warmup: int) -> list[int]:
    """Configurations of the ``warmup`` unmeasured runs: the first round's order, cycled."""
    first_round = [s.config_index for s in slots[:n_configs]]
    return [first_round[k % len(first_round)] for k in range(warmup)] if first_round else []


# ---- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPlan:
    """Everything that decides what a sweep runs; stored first in the run store, so
    ``--resume`` continues exactly this sweep."""

    kind: str                                   # "sweep" or "baseline"
    dimensions: dict[str, list[ConfigValue]]
    repeat: int
    warmup: int
    seed: int
    inputs: list[str]
    target: str | None = None
    mapping: str | None = None
    baseline: str | None = None
    dataset: dict[str, Any] | None = None       # the cached default dataset, if used
    name: str | None = None                     # a named baseline
    configurations: list[Config] = field(default_factory=list)
    schema: str | None = None                   # where the tables go (see RunSettings)
    table_prefix: str = ""
    replace_existing_tables: bool = False
    budget_s: float | None = None               # a racing sweep's budget; None: fixed
    noise_band: float = NOISE_BAND
    sweep_id: str | None = None                 # pairs result files of one sweep
    racing: bool = True                         # budgeted: drop what is clearly worse
    cluster: str | None = None                  # --cluster: runs on a Dask cluster
    max_sessions: int | None = None

    def __post_init__(self) -> None:
        if not self.configurations:
            object.__setattr__(self, "configurations", expand_grid(self.dimensions))

    @property
    def budgeted(self) -> bool:
        return self.budget_s is not None

    def slots(self) -> list[Slot]:
        """The fixed design's schedule (a budgeted sweep decides its rounds as it runs)."""
        return schedule(len(self.configurations), self.repeat, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SweepPlan:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def resume_conflicts(stored: SweepPlan, requested: Mapping[str, Any]) -> list[str]:
    """Options given on ``--resume`` that contradict the stored plan (``repeat`` of a fixed
    design and ``budget_s`` of a budgeted one may grow)."""
    problems = []
    for key, value in requested.items():
        if value is None:
            continue
        have = getattr(stored, key)
        if key == "repeat" and stored.budgeted:
            problems.append(f"--repeat {value}: this sweep races on a time budget; give "
                            "--budget to extend it")
        elif key == "budget_s" and not stored.budgeted:
            problems.append(f"--budget: this sweep has a fixed design of {stored.repeat} "
                            "repeats; give --repeat to extend it")
        elif key in ("repeat", "budget_s"):
            if value < have:
                what, unit = (("--repeat", "repeats") if key == "repeat"
                              else ("--budget", "seconds"))
                problems.append(f"{what} {value:g} is less than the {have:g} {unit} "
                                "already planned (a resumed sweep can only grow)")
        elif value != have:
            problems.append(f"{key}: stored {have!r}, given {value!r}")
    return problems


# ---- one run ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunContext:
    """What every run of a sweep shares: the input, the target, the mapping, a scratch
    folder, and the settings the sweep does not vary."""

    inputs: list[str]
    target: str | None
    mapping: Path | None
    work_dir: Path  # scratch folder: the run's own result files, the default SQLite file
    settings: RunSettings = field(default_factory=RunSettings)
    # --cluster, and the cluster open for the sweep's runs (run_plan opens it once).
    cluster: str | None = None
    open_cluster: Any = field(default=None, compare=False, repr=False)


#: Configuration keys that name a configuration without setting anything (the labels of an
#: A/A calibration): they never reach the runner.
LABEL_KEYS = frozenset({"label"})


def build_request(config: Mapping[str, ConfigValue], context: RunContext,
                  run_id: str | None = None) -> runner.RunRequest:
    """The :class:`RunRequest` of one configuration: the context's settings, and the
    configuration's values for its dimensions. ``run_id`` names the run's sessions
    (default: a new id)."""
    kwargs: dict[str, Any] = {**context.settings.values(), "inputs": list(context.inputs),
                              "target": context.target, "mapping": context.mapping,
                              "resume": False, "out": context.work_dir, "run_id": run_id,
                              "cluster": context.cluster}
    for name, value in config.items():
        if name not in LABEL_KEYS:
            kwargs[DIMENSION_BY_NAME[name].field] = value
    return runner.RunRequest(**kwargs)


def _fresh_default_database(work_dir: Path) -> None:
    # The embedded default is a file in the scratch folder: delete it so every run starts
    # from an empty file (a dropped-and-recreated schema would reuse freed pages).
    for suffix in ("", "-wal", "-shm", "-journal"):
        (work_dir / f"mig.db{suffix}").unlink(missing_ok=True)


def execute_point(config: Mapping[str, ConfigValue], context: RunContext,
                  run_id: str | None = None) -> tuple[Run, Environment]:
    """Run one configuration once on a fresh schema.

    Returns the run (effective config, metrics, reconciliation, samples, the verdicts of its
    result file, and ``host``: other processes' CPU and steal time during the run, with the
    noise gate's ``disturbed`` flag) and the environment the run collected (with the
    mapping's fingerprint, so `bench compare` can tell datasets apart).
    """
    slot0 = time.perf_counter()
    request = build_request(config, context, run_id)
    if context.target is None:
        _fresh_default_database(context.work_dir)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    before = noise_gate.mark()
    t0 = time.perf_counter()
    try:
        outcome = runner.execute_run(request, cluster=context.open_cluster)
    except runner.RunFailed as exc:  # (its result file says failed, with the error)
        outcome = exc.outcome
    wall = time.perf_counter() - t0
    after = noise_gate.mark()
    doc = outcome.document
    measured = doc.runs[0]
    load = noise_gate.host_load(before, after, wall,
                                server_s=noise_gate.server_cpu_seconds(measured.samples, wall))
    # A record of this sweep's own (read_keys None): written with its schedule position.
    run = dataclasses.replace(
        measured, read_keys=None,
        config=RunConfig.from_dict({**measured.config.to_dict(), **config}),
        verdicts=list(doc.verdicts), started=started, wall_s=round(wall, 6),
        host=HostLoad.from_dict({"loadavg_1m": _loadavg(), **load}),
        slot_s=round(time.perf_counter() - slot0, 6))
    environment = doc.environment
    mapping = doc.config.mapping
    if environment.mapping is None and isinstance(mapping, MappingFacts):
        environment.mapping = MappingFacts(source=mapping.source,
                                           fingerprint=mapping.fingerprint)
    if not run.is_measurement:
        raise RunNotMeasured(f"{format_config(config) or 'the run'}: the migration did not "
                             "complete cleanly, so its time is not a measurement: "
                             f"{run.error or run.status}", run, environment)
    return run, environment


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


#: Share of the machine's CPU time used by other processes during a run above which the
#: results are called disturbed: on a two-core host one busy neighbour already shares a
#: core and the caches with the run, which spreads single-process throughput far beyond the
#: noise band (docs/performance.md, "Sweep noise").
BUSY_SHARE_WARN = 0.20


def busy_host_warning(runs: Sequence[Run]) -> str | None:
    """A warning when other processes competed for the machine during the measured runs.

    Preferred evidence: the machine's busy CPU time over each run (``/proc/stat``) minus
    this process's and its workers' own, as a share of the machine (wall time × CPUs).
    Elsewhere, the 1-minute load average at the end of each run, less one runnable process
    per worker of that run. High CVs on a busy machine are the machine's doing, not the
    configuration's, and the user should know.
    """
    shares: list[float] = []
    loads: list[float] = []
    others: list[float] = []
    cpus = 0
    for run in runs:
        host = run.host
        if host is None:
            continue
        cpus = cpus or int(host.cpus or 0)
        wall = float(run.wall_s or 0)
        if host.machine_cpu_s is not None and wall > 0 and cpus:
            foreign = max(0.0, float(host.machine_cpu_s) - float(host.cpu_s or 0))
            shares.append(foreign / (wall * cpus))
        if host.loadavg_1m is not None:
            workers = run.config.workers or 1
            loads.append(float(host.loadavg_1m))
            others.append(float(host.loadavg_1m) - float(workers))
    if shares:
        shares.sort()
        median = shares[len(shares) // 2]
        if median <= BUSY_SHARE_WARN:
            return None
        return (f"the machine was busy: other processes used {100 * median:.0f}% of its CPU "
                f"time during the median run (up to {100 * shares[-1]:.0f}%, {cpus} CPUs); "
                "they compete for cores and caches, so expect noisy results — rerun on a "
                "quiet machine")
    if not loads or not cpus:
        return None
    loads.sort()
    others.sort()
    median, median_others = loads[len(loads) // 2], others[len(others) // 2]
    if median <= cpus or median_others < 1.0:
        return None
    return (f"the machine was busy: load average {median:.1f} (median over the runs, up to "
            f"{loads[-1]:.1f}) on {cpus} CPUs, about {median_others:.1f} of it not this "
            "sweep's; other processes competed for the CPU, so expect noisy results — rerun "
            "on a quiet machine")


# ---- the sweep loop --------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """Where a sweep is, for the progress bar (a budgeted sweep counts seconds)."""

    completed: int
    total: int
    label: str
    round: int
    warmup: bool
    racing: int | None = None  # budgeted: configurations still in the race


ProgressCallback = Callable[[Progress], None]

#: A budgeted sweep stops re-running disturbed runs once more than this share of its runs
#: (of at least RERUN_SAMPLE) were disturbed: the host is busy throughout, and a re-run
#: would not find a quieter moment. Below it the disturbances come and go (a neighbour's
#: bursts), and a re-run has a fair chance of a quiet moment.
RERUN_LIMIT = 0.75
RERUN_SAMPLE = 6


def run_plan(plan: SweepPlan, store: RunStore, context: RunContext,
             on_progress: ProgressCallback | None = None) -> StoreContents:
    """Run what ``plan`` still needs, appending each run to the store as it ends.

    Warm-up runs (``plan.warmup``) come first on every start, resumed or not, because what
    they absorb — imports, a cold page cache, the first database file — belongs to the
    process. They are stored with ``warmup: true`` and never enter the statistics.
    """
    context.work_dir.mkdir(parents=True, exist_ok=True)
    if context.cluster and context.open_cluster is None:
        # One cluster for every run of the sweep (big enough for its largest run).
        from bench.clusters import open_cluster

        largest = max((int(c.get("cluster_workers") or 0) for c in plan.configurations),
                      default=0)
        with open_cluster(context.cluster, largest or None) as cluster:
            return run_plan(plan, store, dataclasses.replace(context, open_cluster=cluster),
                            on_progress)
    if plan.budgeted:
        _run_budgeted(plan, store, context, on_progress)
    else:
        _run_fixed(plan, store, context, on_progress)
    return store.contents


def _run_fixed(plan: SweepPlan, store: RunStore, context: RunContext,
               on_progress: ProgressCallback | None) -> None:
    slots = plan.slots()
    done = store.contents.done_slots()
    todo = [s for s in slots if (s.round, s.config_index) not in done]
    completed = len(slots) - len(todo)
    n = len(plan.configurations)

    def report(label: str, round_: int, warmup: bool) -> None:
        if on_progress is not None:
            on_progress(Progress(completed, len(slots), label, round_, warmup))

    if todo:
        for k, index in enumerate(warmup_configs(slots, n, plan.warmup)):
            config = plan.configurations[index]
            report(f"warm-up {k + 1}/{plan.warmup}: {format_config(config)}", 0, True)
            run, environment = _measure(store, config, context, order_index=None,
                                        round_=None, config_index=index, warmup=True)
            _record(store, run, environment, order_index=None, round_=None,
                    config_index=index, warmup=True)
    for slot in todo:
        config = plan.configurations[slot.config_index]
        report(format_config(config), slot.round, False)
        where: dict[str, Any] = {"order_index": slot.order_index, "round_": slot.round,
                                 "config_index": slot.config_index, "warmup": False}
        run, environment = _measure(store, config, context, **where)
        _record(store, run, environment, **where)
        completed += 1
        report(format_config(config), slot.round, False)


def slot_seconds(run: Run) -> float:
    """What a stored run cost the budget: its whole slot (setup included), else its wall."""
    value = run.slot_s if run.slot_s is not None else run.wall_s
    return float(value) if value is not None else 0.0


def replay_race(plan: SweepPlan, runs: Sequence[Run]) -> tuple[BudgetRace, list[int]]:
    """The race as the stored runs left it — every look re-decided from the same data, so
    a resumed sweep drops the same configurations — and the configurations still to run in
    an unfinished round (empty when the last round is complete)."""
    assert plan.budget_s is not None
    policy = RacePolicy(noise_band=plan.noise_band) if plan.racing else \
        RacePolicy(noise_band=plan.noise_band, min_rounds=MAX_ROUNDS + 1)  # never looks
    race = BudgetRace(len(plan.configurations), plan.budget_s, plan.seed, policy)
    by_round: dict[int, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.sequence or 0):
        if run.round is None or not run.counts:
            race.spend(slot_seconds(run))  # (a failed run cost time, measured nothing)
        else:
            by_round.setdefault(run.round, []).append(run)
    pending: list[int] = []
    for round_ in sorted(by_round):
        if round_ != race.rounds_done or race.stop_reason is not None:
            break  # not a continuation of what the race decided: ignore (never written)
        expected = round_order(race.alive, plan.seed, round_)
        ran = set()
        for run in by_round[round_]:
            index = _config_index(run)
            race.record(index, throughput(run), slot_seconds(run))
            ran.add(index)
        pending = [c for c in expected if c not in ran]
        if pending:
            break
        race.end_round()
    return race, pending


def _run_budgeted(plan: SweepPlan, store: RunStore, context: RunContext,
                  on_progress: ProgressCallback | None) -> None:
    race, pending = replay_race(plan, store.contents.runs)
    total = round(race.budget_s)
    measured = [r for r in store.contents.runs if not r.warmup]
    counts = {"measured": len(measured), "disturbed": sum(r.disturbed for r in measured)}

    def report(label: str, warmup: bool) -> None:
        if on_progress is not None:
            on_progress(Progress(min(total, round(race.spent_s)), total, label,
                                 race.rounds_done, warmup, len(race.alive)))

    order = pending or race.next_round()
    if order is None:
        return
    for k in range(plan.warmup):
        index = order[k % len(order)]
        config = plan.configurations[index]
        report(f"warm-up {k + 1}/{plan.warmup}: {format_config(config)}", True)
        where: dict[str, Any] = {"order_index": None, "round_": None, "config_index": index,
                                 "warmup": True}
        run, environment = _measure(store, config, context, **where)
        _record(store, run, environment, **where)
        race.spend(slot_seconds(run))
    while order is not None:
        _run_round(plan, store, context, race, list(order), counts, report)
        race.end_round()
        order = race.next_round()


def _run_round(plan: SweepPlan, store: RunStore, context: RunContext, race: BudgetRace,
               queue: list[int], counts: dict[str, int],
               report: Callable[[str, bool], None]) -> None:
    """One round of a budgeted sweep; a disturbed run is re-run once at the round's end."""
    rerun: set[int] = set()
    while queue:
        index = queue.pop(0)
        config = plan.configurations[index]
        report(format_config(config), False)
        again = index in rerun
        where: dict[str, Any] = {"order_index": counts["measured"],
                                 "round_": race.rounds_done, "config_index": index,
                                 "warmup": False, "rerun": again}
        run, environment = _measure(store, config, context, **where)
        _record(store, run, environment, **where)
        counts["measured"] += 1
        race.record(index, throughput(run), slot_seconds(run))
        if not run.disturbed:
            continue
        counts["disturbed"] += 1
        expected = race.round_seconds([index]) or 0.0
        busy_throughout = (counts["measured"] >= RERUN_SAMPLE and
                           counts["disturbed"] > RERUN_LIMIT * counts["measured"])
        if not again and not busy_throughout and race.spent_s + expected <= race.budget_s:
            rerun.add(index)
            queue.append(index)
    report("", False)


def _measure(store: RunStore, config: Config, context: RunContext, **where: Any
             ) -> tuple[Run, Environment]:
    """:func:`execute_point`; a failed run is stored (status failed) before the sweep stops,
    so what it measured is kept and ``--resume`` runs its slot again."""
    try:
        return execute_point(config, context)
    except RunNotMeasured as exc:
        _record(store, exc.run, exc.environment, **where)
        raise


def _record(store: RunStore, run: Run, environment: Environment, *,
            order_index: int | None, round_: int | None, config_index: int,
            warmup: bool, rerun: bool = False) -> None:
    if store.contents.environment is None and environment.to_dict():
        store.write_environment(environment)
    store.append_run(dataclasses.replace(
        run, order_index=order_index, round=round_, config_index=config_index, warmup=warmup,
        sequence=len(store.contents.runs), rerun=rerun))


# ---- results ---------------------------------------------------------------------------------

def _config_index(run: Run) -> int:
    if run.config_index is None:
        raise SweepError(f"run {run.sequence}: a sweep's run without its configuration index")
    return run.config_index


def _round(run: Run) -> int:
    if run.round is None:
        raise SweepError(f"run {run.sequence}: a measured run without its round")
    return run.round


def throughput(run: Run) -> float:
    if run.throughput is None:
        raise SweepError(f"run {run.sequence}: no throughput recorded")
    return float(run.throughput)


def seconds_per_record(run: Run) -> float | None:
    records = run.metrics.records_read or 0
    return float(run.metrics.elapsed_s or 0.0) / records if records else None


def read_map_cpu(runs: Sequence[Run]) -> list[float] | None:
    """The runs' machine-speed probe (CPU seconds of reading and mapping the same input),
    or None when a run lacks it (a result file from before the probe existed)."""
    values = [run.metrics.read_map_cpu_s for run in runs]
    if any(v is None or v <= 0 for v in values):
        return None
    return [float(v) for v in values if v is not None]


def samples_by_config(plan: SweepPlan, runs: Sequence[Run]) -> list[tuple[Config, list[Run]]]:
    """Measured runs of each configuration in grid order, each list in run order."""
    grouped: list[list[Run]] = [[] for _ in plan.configurations]
    for run in counted_runs(runs):
        grouped[_config_index(run)].append(run)
    return list(zip(plan.configurations, grouped, strict=True))


def majority_bottleneck(runs: Sequence[Run]) -> Bottleneck | None:
    """The label most of ``runs`` were attributed to, with how many agreed."""
    verdicts = [v for v in (r.attributed() for r in runs) if v is not None]
    if not verdicts:
        return None
    label, count = Counter(v.label for v in verdicts).most_common(1)[0]
    example = next(v for v in verdicts if v.label == label)
    return Bottleneck(label=label, description=example.description or label, runs=count,
                      of=len(runs))


def skipped_warning(contents: StoreContents) -> str | None:
    """Say that failed or interrupted runs were left out of the statistics, and why."""
    unfinished = contents.unfinished_runs()
    if not unfinished:
        return None
    first = unfinished[0]
    return (f"{len(unfinished)} run(s) did not complete and are not measurements (left out "
            f"of every statistic; their slots were run again): first "
            f"{format_config(first.config.to_dict()) or 'run'} {first.skipped_reason()}")


def pyperf_name(config: Mapping[str, ConfigValue]) -> str:
    return format_config(config) or "migration"


def write_pyperf_file(path: Path, groups: Sequence[tuple[Config, Sequence[Run]]],
                      metadata: Mapping[str, Any] | None = None) -> Path | None:
    """One pyperf benchmark per configuration, values in seconds per record."""
    benchmarks: dict[str, Sequence[float]] = {}
    for config, runs in groups:
        values = [v for v in (seconds_per_record(r) for r in runs) if v]
        if values:
            benchmarks[pyperf_name(config)] = values
    if not benchmarks:
        return None
    return write_pyperf(path, benchmarks, dict(metadata or {}))


def sweep_design(plan: SweepPlan, runs: Sequence[Run]) -> SweepDesign:
    """How the stored sweep was run, for its summary."""
    measured = [r for r in runs if r.counts]
    disturbed = sum(r.disturbed for r in measured)
    reruns = sum(r.rerun for r in measured)
    if not plan.budgeted:
        return SweepDesign("fixed", plan.repeat, disturbed=disturbed, reruns=reruns)
    race, pending = replay_race(plan, runs)
    if not pending:
        race.next_round()  # sets why the race stopped, if it did
    stop = race.stop_reason
    eliminated = {e.config: e.rounds for e in race.eliminated()}
    return SweepDesign("budget", race.rounds_done, stop_reason=stop,
                       stop_text=STOP_TEXT.get(stop or "", "interrupted"),
                       budget_s=race.budget_s, spent_s=race.spent_s, eliminated=eliminated,
                       disturbed=disturbed, reruns=reruns)


def summarize(plan: SweepPlan, runs: Sequence[Run]) -> SweepSummary:
    groups = samples_by_config(plan, runs)
    missing = [format_config(c) for c, rs in groups if not rs]
    if missing:
        raise SweepError(f"no measured run of {', '.join(missing)}; resume the sweep")
    return summarize_sweep([(config, [throughput(r) for r in rs]) for config, rs in groups],
                           baseline=plan.baseline,
                           probes=[read_map_cpu(rs) for _, rs in groups],
                           rounds=[[_round(r) for r in rs] for _, rs in groups],
                           noise_band=plan.noise_band, design=sweep_design(plan, runs))


def in_storage_order(runs: Sequence[Run]) -> list[Run]:
    """The runs as they were stored (warm-ups and failed runs included)."""
    return sorted(runs, key=lambda r: r.sequence or 0)


def measured_order(runs: Sequence[Run]) -> list[list[int]]:
    """``[round, config_index]`` of every non-warm-up run, in storage order."""
    return [[_round(r), _config_index(r)] for r in in_storage_order(runs) if not r.warmup]


def finish_sweep(plan: SweepPlan, contents: StoreContents, run_dir: Path
                 ) -> tuple[SweepDocument, Path, Path | None]:
    """Write result.json (kind ``sweep``) and pyperf.json from the store's runs, as this
    process holds them; return the document and both paths."""
    summary = summarize(plan, contents.runs)
    groups = samples_by_config(plan, contents.runs)
    best_runs = groups[summary.best.index][1]
    bottleneck = majority_bottleneck(best_runs)
    measured = contents.measured_runs()
    warnings = list(summary.warnings)
    busy = busy_host_warning(measured)
    if busy:
        warnings.insert(0, busy)
    skipped = skipped_warning(contents)
    if skipped:
        warnings.append(skipped)
    order = (measured_order(contents.runs) if plan.budgeted
             else [[s.round, s.config_index] for s in plan.slots()])
    doc = build_result(
        plan.kind,
        config={**plan.to_dict(), "order": order,
                "interleaving": "rounds of all configurations still racing, each round "
                                "shuffled (random.Random(f'{seed}:{round}'))" if plan.budgeted
                else "rounds of all configurations, each round shuffled "
                     "(random.Random(seed))"},
        environment=contents.environment or Environment(),
        runs=in_storage_order(contents.runs),
        verdicts=[{"kind": "bottleneck", "scope": "best configuration",
                   **bottleneck.to_dict()}] if bottleneck else [],
        extra={"summary": {**summary.to_dict(), "best_bottleneck": bottleneck,
                           "warnings": warnings},
               "measured_runs": len(measured)},
    )
    assert isinstance(doc, SweepDocument)
    result_file = write_result(run_dir, doc)
    pyperf_file = write_pyperf_file(run_dir / "pyperf.json", groups,
                                    {"description": f"migration-bench {plan.kind}, seconds "
                                                    "per record"})
    return doc, result_file, pyperf_file


# ---- the default dataset ---------------------------------------------------------------------

def cache_root() -> Path:
    """``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/migration-bench``, else
    ``~/.cache/migration-bench``."""
    explicit = os.environ.get("BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "migration-bench"


def _dataset_matches(folder: Path, records: int, seed: int, profile: str) -> bool:
    import datasets

    try:
        manifest = datasets.Manifest.load(folder)
    except datasets.DatasetError:
        return False
    if (manifest.records, manifest.seed, manifest.profile, manifest.invalid_rate) != \
            (records, seed, profile, 0.0):
        return False
    for entry in manifest.files:
        path = folder / entry.name
        try:
            if path.stat().st_size != entry.bytes:
                return False
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            return False
        if digest.hexdigest() != entry.sha256:
            return False
    return True


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def ensure_dataset(records: int, *, seed: int = DATASET_SEED, profile: str = DATASET_PROFILE,
                   root: Path | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[Path, bool]:
    """The cached default dataset folder, generating it if absent or damaged.

    Returns ``(folder, generated)``. Generation goes to a private temporary folder renamed
    into place, so two sweeps starting together never read a half-written dataset.
    """
    import datasets

    folder = (root or cache_root()) / "datasets" / f"{profile}-{records}-{seed}"
    if _dataset_matches(folder, records, seed, profile):
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{folder.name}.tmp-*"):
        if not _alive(stale.name.rpartition("-")[2]):  # left by a generator that died
            shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.generate(tmp, records, seed=seed, profile=profile, progress=progress)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _dataset_matches(folder, records, seed, profile):  # not a concurrent twin
            raise
    return folder, True
