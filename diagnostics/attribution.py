"""Bottleneck attribution: which resource limited a run, and the numbers that say so.

Pure functions, no I/O. :func:`derive_facts` condenses a run's stage timings and its
sample series into named facts (means over the run); :data:`RULES` — plain data — say
which fact, compared with which threshold, counts for (positive weight) or against
(negative weight) each label; :func:`attribute` scores every label and returns a
:class:`Verdict` with the winning label, a confidence, the evidence and the runner-up.

Thresholds quoted from Microsoft's guidance for SQL Server storage: data-file reads should
average ≤ 20 ms and log-file writes ≤ 3 ms; beyond that the storage is the suspect.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from diagnostics.sampler import SampleSeries

Label = Literal[
    "client-cpu",
    "db-cpu",
    "data-io",
    "log-io",
    "connection-overhead",
    "lock-contention",
    "host-busy",
    "unknown",
]
LABELS: tuple[Label, ...] = (
    "client-cpu",
    "db-cpu",
    "data-io",
    "log-io",
    "connection-overhead",
    "lock-contention",
    "host-busy",
)
DESCRIPTIONS: Mapping[str, str] = {
    "client-cpu": "client CPU (XML parsing and mapping)",
    "db-cpu": "database server CPU",
    "data-io": "data-file I/O",
    "log-io": "log/commit I/O",
    "connection-overhead": "connection overhead",
    "lock-contention": "lock contention",
    "host-busy": "host busy (other processes' CPU or steal time)",
    "unknown": "no clear bottleneck",
}

MIN_SCORE = 2.0
"""A label needs at least this much net evidence; below it the verdict is ``unknown``."""


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage, summed over workers, and the run's wall time."""

    parse_s: float = 0.0
    map_s: float = 0.0
    insert_s: float = 0.0
    commit_s: float = 0.0
    connect_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 1

    @property
    def busy_s(self) -> float:
        return self.parse_s + self.map_s + self.insert_s + self.commit_s + self.connect_s

    @classmethod
    def from_mapping(cls, stages: Mapping[str, float], wall_s: float, workers: int) -> StageTimings:
        """From ``{"parse": s, "map": s, "insert": s, "commit": s, "connect": s}``."""
        return cls(
            parse_s=float(stages.get("parse", 0.0)),
            map_s=float(stages.get("map", 0.0)),
            insert_s=float(stages.get("insert", 0.0)),
            commit_s=float(stages.get("commit", 0.0)),
            connect_s=float(stages.get("connect", 0.0)),
            wall_s=wall_s,
            workers=workers,
        )


class Fact(NamedTuple):
    value: float
    unit: str
    source: str


class Rule(NamedTuple):
    """``fact op threshold`` is evidence for ``label`` (weight > 0) or against it (< 0)."""

    label: Label
    fact: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    weight: float
    reason: str


class Evidence(NamedTuple):
    fact: str
    value: float
    threshold: float
    unit: str
    op: str
    weight: float
    reason: str

    def __str__(self) -> str:
        rule = f"{self.op} {self.threshold:g}: {self.reason}"
        return f"{self.fact} = {self.value:.4g} {self.unit} ({rule})"


_OPS: Mapping[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}

RULES: tuple[Rule, ...] = (
    # client CPU: the workers are busy mapping and the server is waiting for them
    Rule(
        "client-cpu",
        "stage.client_share_pct",
        ">=",
        50,
        2,
        "parse+map take most of the workers' time",
    ),
    Rule(
        "client-cpu",
        "client.cpu_of_capacity_pct",
        ">=",
        80,
        2,
        "worker processes saturate their cores",
    ),
    # (the run's own processes: a host saturated by others is host-busy, not client-cpu)
    Rule(
        "client-cpu",
        "client.host_share_pct",
        ">=",
        85,
        1,
        "the run's own processes use most of the host's CPU",
    ),
    Rule(
        "client-cpu", "waits.client_share_pct", ">=", 30, 1, "server sessions wait for the client"
    ),
    Rule("client-cpu", "stage.db_share_pct", "<=", 30, 1, "database stages are a small share"),
    Rule("client-cpu", "client.cpu_of_capacity_pct", "<=", 30, -2, "workers' cores mostly idle"),
    # database CPU
    Rule("db-cpu", "db.cpu_pct", ">=", 80, 3, "database server CPU saturated"),
    Rule("db-cpu", "db.cpu_pct", ">=", 50, 1, "database server CPU high"),
    Rule("db-cpu", "db.cpu_spare_pct", ">=", 70, -2, "database server CPU mostly idle"),
    Rule(
        "db-cpu",
        "db.cpu_of_sessions_pct",
        ">=",
        70,
        2,
        "the run's running server sessions keep their cores busy",
    ),
    Rule("db-cpu", "waits.cpu_share_pct", ">=", 50, 2, "server time mostly running/runnable"),
    Rule("db-cpu", "stage.db_share_pct", ">=", 50, 1, "insert+commit take most of the time"),
    # data-file I/O
    Rule(
        "data-io",
        "data.read_latency_ms",
        ">",
        20,
        2,
        "Microsoft: data-file reads should average ≤ 20 ms",
    ),
    Rule("data-io", "waits.data_io_share_pct", ">=", 30, 2, "sessions wait on data-page I/O"),
    Rule(
        "data-io",
        "waits.data_io_sessions",
        ">=",
        0.5,
        1,
        "on average half a session or more waits on data-file I/O",
    ),
    Rule("data-io", "disk.busy_pct", ">=", 80, 1, "database disk busy (iostat %util)"),
    Rule("data-io", "disk.busy_pct", "<=", 20, -1, "database disk mostly idle"),
    Rule("data-io", "disk.read_await_ms", ">", 20, 1, "host sees slow reads on the database disk"),
    Rule("data-io", "stage.db_share_pct", ">=", 50, 1, "insert+commit take most of the time"),
    # log / commit I/O
    Rule(
        "log-io",
        "log.write_latency_ms",
        ">",
        3,
        2,
        "Microsoft: log-file writes should average ≤ 3 ms",
    ),
    Rule(
        "log-io",
        "waits.log_io_share_pct",
        ">=",
        30,
        2,
        "sessions wait on log flushes (WRITELOG, WALSync)",
    ),
    Rule(
        "log-io",
        "waits.log_io_sessions",
        ">=",
        0.5,
        1,
        "on average half a session or more waits on log flushes",
    ),
    Rule("log-io", "stage.commit_share_pct", ">=", 30, 2, "commits (fsync) take much of the time"),
    Rule("log-io", "disk.busy_pct", ">=", 80, 1, "database disk busy (iostat %util)"),
    Rule("log-io", "disk.busy_pct", "<=", 20, -1, "database disk mostly idle"),
    Rule("log-io", "stage.db_share_pct", ">=", 50, 1, "insert+commit take most of the time"),
    # connection overhead
    Rule(
        "connection-overhead",
        "stage.connect_share_pct",
        ">=",
        20,
        3,
        "opening connections takes a large share",
    ),
    Rule(
        "connection-overhead",
        "stage.connect_share_pct",
        ">=",
        10,
        1,
        "opening connections is noticeable",
    ),
    Rule("connection-overhead", "server.logins_per_s", ">=", 10, 1, "many logins per second"),
    Rule("connection-overhead", "stage.connect_share_pct", "<", 5, -2, "connecting is cheap"),
    # lock contention
    Rule("lock-contention", "waits.lock_share_pct", ">=", 30, 3, "sessions wait on locks"),
    Rule(
        "lock-contention",
        "waits.lock_sessions",
        ">=",
        0.5,
        1,
        "on average half a session or more blocked",
    ),
    Rule("lock-contention", "server.lock_waits_per_s", ">=", 10, 1, "frequent lock waits"),
    # host busy: other processes (or other guests, as steal time) take CPU the run could use
    Rule(
        "host-busy",
        "host.others_take_pct",
        ">=",
        30,
        3,
        "other processes took much of the CPU the run could use",
    ),
    Rule(
        "host-busy",
        "host.others_take_pct",
        ">=",
        15,
        1,
        "other processes took a noticeable share of the CPU the run could use",
    ),
    Rule("host-busy", "host.steal_pct", ">=", 10, 2, "the hypervisor ran other guests (steal)"),
    Rule(
        "host-busy",
        "host.others_cpu_pct",
        ">=",
        50,
        1,
        "other processes use half the host's CPU or more",
    ),
    Rule("host-busy", "host.others_take_pct", "<", 5, -2, "other processes left the run its CPU"),
    Rule(
        "host-busy",
        "client.cpu_demand_pct",
        "<",
        40,
        -3,
        "the run mostly slept (I/O, locks, the server), it did not wait for a CPU",
    ),
)


# --------------------------------------------------------------------------- facts

WAIT_FACTS = ("cpu", "data_io", "log_io", "other_io", "lock", "latch", "client")


def derive_facts(timings: StageTimings, series: SampleSeries | None = None) -> dict[str, Fact]:
    """Condense a run into the named facts the rules read (means over ``[0, wall]``)."""
    facts: dict[str, Fact] = {}

    def put(name: str, value: float | None, unit: str, source: str) -> None:
        if value is not None:
            facts[name] = Fact(float(value), unit, source)

    busy = timings.busy_s
    if busy > 0:
        put(
            "stage.client_share_pct",
            100 * (timings.parse_s + timings.map_s) / busy,
            "%",
            "stage timings",
        )
        put(
            "stage.db_share_pct",
            100 * (timings.insert_s + timings.commit_s) / busy,
            "%",
            "stage timings",
        )
        put("stage.commit_share_pct", 100 * timings.commit_s / busy, "%", "stage timings")
        put("stage.connect_share_pct", 100 * timings.connect_s / busy, "%", "stage timings")
    if series is None:
        return facts

    end = timings.wall_s if timings.wall_s > 0 else None

    def mean(name: str) -> float | None:
        return series.mean(name, 0.0, end)

    cores = _cores(series)
    put("host.cpu_pct", mean("host.cpu.total_pct"), "%", "host CPU")
    put("host.iowait_pct", mean("host.cpu.iowait_pct"), "%", "host CPU")
    put("host.steal_pct", mean("host.cpu.steal_pct"), "%", "host CPU")
    client_cpu = mean("host.workers.cpu_pct")
    source = "the run's process tree"
    if client_cpu is None:
        client_cpu, source = mean("host.client.cpu_pct"), "client process tree"
    usable = max(1, min(timings.workers, cores))  # cores the run's workers can keep busy
    of_usable = f"of {usable} usable core" + ("s" if usable > 1 else "")
    if client_cpu is not None:
        put("client.cpu_pct", client_cpu, "% of a core", source)
        put("client.cpu_cores", client_cpu / 100, of_usable, source)
        put("client.cpu_of_capacity_pct", client_cpu / usable, f"% {of_usable}", source)
        put("client.host_share_pct", client_cpu / cores, f"% of the host's {cores} cores", source)
    waited = mean("host.run.cpu_wait_pct")
    if waited is not None:
        put(
            "client.cpu_wait_pct",
            waited / usable,
            f"% {of_usable}",
            "run-queue delay of the run's threads",
        )
        if client_cpu is not None:  # running or ready to run: what the run asked of the CPU
            put(
                "client.cpu_demand_pct",
                (client_cpu + waited) / usable,
                f"% {of_usable}",
                "the run's CPU plus its run-queue delay",
            )
    others = mean("host.others.cpu_pct")
    if others is not None:
        put(
            "host.others_cpu_pct",
            others,
            f"% of the host's {cores} cores",
            "host CPU less the run's and the database server's processes",
        )
        # Others slow the run down by the CPU its threads waited for while they ran: no more
        # than the others used, nor than what the run fell short of its usable cores; in %
        # of those cores. (Without the wait measured: what others used beyond the cores the
        # run did not use.)
        others_cores = others / 100 * cores
        short = max(0.0, usable - (client_cpu or 0.0) / 100)
        if waited is not None:
            taken = min(waited / 100, others_cores, short)
        else:
            taken = max(0.0, others_cores + usable - cores)
        put(
            "host.others_take_pct",
            100 * taken / usable,
            f"% {of_usable}",
            "CPU other processes took while the run's threads waited for one",
        )

    db_cpu = mean("server.cpu_pct")
    local = mean("host.dbserver.cpu_pct")
    if db_cpu is not None:
        put("db.cpu_pct", db_cpu, "%", "server counters")
    elif local is not None:
        put("db.cpu_pct", local / cores, "%", "local server process")
    host_cpu = mean("host.cpu.total_pct")
    if db_cpu is not None:
        put("db.cpu_spare_pct", 100 - db_cpu, "%", "server counters")
    elif local is not None and host_cpu is not None:
        # A local server's spare CPU is the host's idle CPU: on a host kept busy by other
        # work it has none to spare, however small its own share.
        put("db.cpu_spare_pct", 100 - host_cpu, "%", "host CPU")
    running = mean("server.wait.cpu.sessions")
    if local is not None and running is not None:
        # A session runs on one core at a time: a run with one busy session cannot use more
        # than one of the server's cores however CPU-bound it is (cf. client.cpu_of_capacity).
        capacity = 100.0 * max(1.0, min(running, float(cores)))
        put("db.cpu_of_sessions_pct", 100 * local / capacity, "%", "local server process")

    disk = "host.db_disk"
    if not series.values(f"{disk}.busy_pct"):
        disk = _busiest_disk(series, end) or disk
    put("disk.busy_pct", mean(f"{disk}.busy_pct"), "%", disk)
    put("disk.read_await_ms", mean(f"{disk}.read_await_ms"), "ms", disk)
    put("disk.write_await_ms", mean(f"{disk}.write_await_ms"), "ms", disk)

    put("data.read_latency_ms", mean("server.data.read_latency_ms"), "ms", "server file stats")
    put("log.write_latency_ms", mean("server.log.write_latency_ms"), "ms", "server file stats")
    put("server.logins_per_s", mean("server.logins_per_s"), "1/s", "server counters")
    put("server.lock_waits_per_s", mean("server.lock_waits_per_s"), "1/s", "server counters")
    put("server.log_flushes_per_s", mean("server.log.flushes_per_s"), "1/s", "server counters")

    waits = {c: mean(f"server.wait.{c}.sessions") for c in WAIT_FACTS}
    known = {c: v for c, v in waits.items() if v is not None}
    total = sum(known.values())
    for category, value in known.items():
        put(f"waits.{category}_sessions", value, "sessions", "server waits")
        if total > 0:
            put(f"waits.{category}_share_pct", 100 * value / total, "%", "server waits")
    return facts


def _cores(series: SampleSeries) -> int:
    host = series.info.get("host", {})
    cores = host.get("cores")
    if isinstance(cores, int | float) and cores > 0:
        return int(cores)
    return max(1, len(series.names("host.cpu.core")))


def _busiest_disk(series: SampleSeries, end: float | None) -> str | None:
    best: tuple[float, str] | None = None
    for name in series.names("host.disk."):
        if name.endswith(".busy_pct"):
            value = series.mean(name, 0.0, end)
            if value is not None and (best is None or value > best[0]):
                best = (value, name.rsplit(".", 1)[0])
    return best[1] if best else None


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """The bottleneck of one run, with the evidence that decided it."""

    label: Label
    confidence: float
    evidence: tuple[Evidence, ...]
    runner_up: Label | None
    runner_up_evidence: tuple[Evidence, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    facts: Mapping[str, Fact] = field(default_factory=dict)
    blockers: tuple[Mapping[str, Any], ...] = ()
    """Sessions seen holding locks the run waited for (:attr:`SampleSeries.blockers`)."""

    @property
    def description(self) -> str:
        others = self.facts.get("host.others_cpu_pct")
        if self.label == "host-busy" and others is not None:
            steal = self.facts.get("host.steal_pct")
            extra = f", steal {steal.value:.0f}%" if steal is not None and steal.value >= 1 else ""
            return f"host busy (other processes {others.value:.0f}%{extra})"
        return DESCRIPTIONS[self.label]

    @property
    def level(self) -> str:
        if self.label == "unknown":
            return "none"
        return "high" if self.confidence >= 0.6 else "medium" if self.confidence >= 0.4 else "low"

    def summary(self) -> str:
        """One line for the console: label, confidence and the strongest evidence."""
        head = f"bottleneck: {self.label} — {self.description} (confidence {self.level}"
        head += f", {self.confidence:.2f})"
        support = [e for e in self.evidence if e.weight > 0][:3]
        if support:
            head += ": " + "; ".join(str(e) for e in support)
        if self.runner_up:
            head += f"; runner-up {self.runner_up}"
        if self.label == "lock-contention" and self.blockers:
            head += f"; blocked by {self.blockers[0].get('description', '?')}"
        return head

    def to_dict(self) -> dict[str, Any]:
        def ev(items: Iterable[Evidence]) -> list[dict[str, Any]]:
            return [e._asdict() for e in items]

        return {
            "label": self.label,
            "description": self.description,
            "confidence": round(self.confidence, 3),
            "level": self.level,
            "evidence": ev(self.evidence),
            "runner_up": self.runner_up,
            "runner_up_evidence": ev(self.runner_up_evidence),
            "scores": dict(self.scores),
            "facts": {k: f._asdict() for k, f in sorted(self.facts.items())},
            "blockers": [dict(b) for b in self.blockers],
        }


def evaluate(rules: Iterable[Rule], facts: Mapping[str, Fact]) -> dict[str, list[Evidence]]:
    """The rules whose condition holds, grouped by label (missing facts are skipped)."""
    fired: dict[str, list[Evidence]] = {label: [] for label in LABELS}
    for rule in rules:
        fact = facts.get(rule.fact)
        if fact is None or not _OPS[rule.op](fact.value, rule.threshold):
            continue
        fired.setdefault(rule.label, []).append(
            Evidence(
                rule.fact, fact.value, rule.threshold, fact.unit, rule.op, rule.weight, rule.reason
            )
        )
    return fired


_TIEBREAK_FACT = {
    "client-cpu": "client.cpu_of_capacity_pct",
    "db-cpu": "db.cpu_pct",
    "data-io": "waits.data_io_share_pct",
    "log-io": "waits.log_io_share_pct",
    "connection-overhead": "stage.connect_share_pct",
    "lock-contention": "waits.lock_share_pct",
    "host-busy": "host.others_take_pct",
}


def attribute(
    timings: StageTimings,
    series: SampleSeries | None = None,
    rules: Iterable[Rule] = RULES,
) -> Verdict:
    """Decide the bottleneck of one run from its stage timings and sample series; a
    verdict carries the lock holders the samplers saw, so lock contention names them."""
    facts = derive_facts(timings, series)
    verdict = decide(facts, rules)
    if series is not None and series.blockers:
        verdict = replace(verdict, blockers=tuple(series.blockers))
    return verdict


def decide(facts: Mapping[str, Fact], rules: Iterable[Rule] = RULES) -> Verdict:
    """Score each label from the facts; ties go to the label with the larger share."""
    fired = evaluate(rules, facts)
    scores: dict[str, float] = {
        label: float(sum(e.weight for e in fired.get(label, []))) for label in LABELS
    }

    def rank(label: Label) -> tuple[float, float]:
        tie = facts.get(_TIEBREAK_FACT[label])
        return scores[label], tie.value if tie else 0.0

    ordered = sorted(LABELS, key=rank, reverse=True)
    top, second = ordered[0], ordered[1]
    s1, s2 = scores[top], max(scores[second], 0.0)
    if s1 < MIN_SCORE:
        return Verdict(
            label="unknown",
            confidence=0.0,
            evidence=_distinct(e for label in ordered for e in fired[label] if e.weight > 0),
            runner_up=top if s1 > 0 else None,
            scores=scores,
            facts=dict(facts),
        )
    confidence = (s1 - s2 / 2) / (s1 + 1)
    runner_up: Label | None = second if scores[second] > 0 else None
    return Verdict(
        label=top,
        confidence=max(0.0, min(1.0, confidence)),
        evidence=tuple(_by_weight(fired[top])),
        runner_up=runner_up,
        runner_up_evidence=tuple(_by_weight(fired[second])) if runner_up else (),
        scores=scores,
        facts=dict(facts),
    )


def _distinct(items: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """Each piece of evidence once: several labels share rules (``stage.db_share_pct``
    supports db-cpu, data-io and log-io), and a list of everything seen would repeat it."""
    seen: set[tuple[str, str, float, str]] = set()
    out: list[Evidence] = []
    for e in items:
        key = (e.fact, e.op, e.threshold, e.reason)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return tuple(out)


def _by_weight(items: Iterable[Evidence]) -> list[Evidence]:
    return sorted(items, key=lambda e: -e.weight)
