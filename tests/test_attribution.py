"""Bottleneck attribution on synthetic series (one per label), the recorded SQL Server
Express story, and two real SQLite workloads (fsync-bound and mapping-bound)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from diagnostics.attribution import (
    LABELS,
    RULES,
    Rule,
    StageTimings,
    Verdict,
    attribute,
    derive_facts,
)
from diagnostics.host import HostSampler
from diagnostics.mssql import MssqlSampler
from diagnostics.replay import ReplayConnection
from diagnostics.sampler import SampleSeries, SamplingSession, Value

DMV = Path(__file__).parent / "data" / "dmv" / "express_slow_disk.json"


def series(metrics: Mapping[str, Value], cores: int = 2, points: int = 20) -> SampleSeries:
    """A steady synthetic series: the same values every 0.5 s (baseline row has none)."""
    rows: list[tuple[float, Mapping[str, Value]]] = [(0.0, {})]
    rows += [(0.5 * (i + 1), metrics) for i in range(points)]
    return SampleSeries.from_rows(rows, info={"host": {"cores": cores}})


def stages(
    parse: float = 0,
    map_: float = 0,
    insert: float = 0,
    commit: float = 0,
    connect: float = 0,
    wall: float = 10.0,
    workers: int = 2,
) -> StageTimings:
    return StageTimings(parse, map_, insert, commit, connect, wall, workers)


def evidence_facts(verdict: Verdict) -> set[str]:
    return {e.fact for e in verdict.evidence if e.weight > 0}


# --------------------------------------------------------------------------- each label


def test_client_cpu() -> None:
    verdict = attribute(
        stages(parse=3, map_=14, insert=2, commit=1),
        series(
            {
                "host.workers.cpu_pct": 192.0,
                "host.cpu.total_pct": 97.0,
                "host.dbserver.cpu_pct": 12.0,
                "host.db_disk.busy_pct": 6.0,
                "server.wait.client.sessions": 1.6,
                "server.wait.cpu.sessions": 0.2,
            }
        ),
    )
    assert verdict.label == "client-cpu"
    assert {"stage.client_share_pct", "client.cpu_of_capacity_pct"} <= evidence_facts(verdict)
    assert verdict.level == "high"


def test_db_cpu() -> None:
    verdict = attribute(
        stages(map_=2, insert=16, commit=2),
        series(
            {
                "server.cpu_pct": 94.0,
                "host.workers.cpu_pct": 30.0,
                "host.db_disk.busy_pct": 15.0,
                "server.wait.cpu.sessions": 3.1,
                "server.wait.data_io.sessions": 0.1,
                "server.wait.log_io.sessions": 0.2,
            }
        ),
    )
    assert verdict.label == "db-cpu"
    assert "db.cpu_pct" in evidence_facts(verdict)


def test_local_server_on_a_host_busy_with_other_work_can_still_be_db_cpu() -> None:
    # Two sessions run a costly trigger while other processes take most of the host: the
    # server gets a small share of the CPU, but it has none to spare either.
    verdict = attribute(
        stages(map_=1, insert=30, commit=1),
        series(
            {
                "host.cpu.total_pct": 100.0,
                "host.dbserver.cpu_pct": 44.0,  # % of one core: 22 % of two
                "host.workers.cpu_pct": 18.0,
                "server.wait.cpu.sessions": 1.8,
                "server.wait.client.sessions": 0.1,
            }
        ),
    )
    assert verdict.facts["db.cpu_pct"].value == pytest.approx(22.0)
    assert verdict.facts["db.cpu_spare_pct"].value == 0.0
    assert verdict.scores["db-cpu"] > 0 and verdict.label == "db-cpu", verdict.summary()
    # on an idle host the same server share is spare CPU, evidence against db-cpu
    idle = attribute(
        stages(map_=1, insert=30, commit=1),
        series({"host.cpu.total_pct": 25.0, "host.dbserver.cpu_pct": 44.0,
                "server.wait.cpu.sessions": 1.8}),
    )
    assert idle.facts["db.cpu_spare_pct"].value == 75.0
    assert idle.scores["db-cpu"] == verdict.scores["db-cpu"] - 2


def test_one_busy_session_on_a_many_core_server_is_db_cpu() -> None:
    # One worker, one server session running a costly trigger on a 16-core host: a few
    # percent of the server, all of the one core a session can use.
    verdict = attribute(
        stages(map_=1, insert=30, commit=1, workers=1),
        series(
            {
                "host.cpu.total_pct": 9.0,
                "host.dbserver.cpu_pct": 97.0,
                "host.workers.cpu_pct": 5.0,
                "server.wait.cpu.sessions": 1.0,
            },
            cores=16,
        ),
    )
    assert verdict.facts["db.cpu_pct"].value < 10
    assert verdict.facts["db.cpu_of_sessions_pct"].value == pytest.approx(97.0)
    assert verdict.label == "db-cpu", verdict.summary()
    assert "db.cpu_of_sessions_pct" in evidence_facts(verdict)


def test_sessions_waiting_on_data_reads_are_data_io_without_latency_figures() -> None:
    # PostgreSQL 15 averages its read time over OS-cache hits too, and a throttled or
    # remote disk is not busy on this host: the sessions' waits alone carry the verdict.
    verdict = attribute(
        stages(map_=1, insert=28, commit=1),
        series(
            {
                "server.data.read_latency_ms": 0.7,
                "host.db_disk.busy_pct": 9.0,
                "server.wait.data_io.sessions": 0.8,
                "server.wait.cpu.sessions": 0.02,
            }
        ),
    )
    assert verdict.label == "data-io", verdict.summary()
    assert {"waits.data_io_share_pct", "waits.data_io_sessions"} <= evidence_facts(verdict)


def test_data_io() -> None:
    verdict = attribute(
        stages(map_=1, insert=17, commit=1),
        series(
            {
                "server.cpu_pct": 12.0,
                "server.data.read_latency_ms": 45.0,
                "server.log.write_latency_ms": 1.5,
                "host.db_disk.busy_pct": 98.0,
                "host.db_disk.read_await_ms": 38.0,
                "server.wait.data_io.sessions": 3.3,
                "server.wait.log_io.sessions": 0.3,
                "server.wait.cpu.sessions": 0.1,
            }
        ),
    )
    assert verdict.label == "data-io"
    read = next(e for e in verdict.evidence if e.fact == "data.read_latency_ms")
    assert (read.value, read.threshold, read.unit, read.op) == (45.0, 20, "ms", ">")
    assert "20 ms" in read.reason


def test_log_io() -> None:
    verdict = attribute(
        stages(map_=1, insert=6, commit=12),
        series(
            {
                "server.cpu_pct": 9.0,
                "server.data.read_latency_ms": 4.0,
                "server.log.write_latency_ms": 14.0,
                "host.db_disk.busy_pct": 91.0,
                "server.wait.log_io.sessions": 3.4,
                "server.wait.data_io.sessions": 0.2,
            }
        ),
    )
    assert verdict.label == "log-io"
    log = next(e for e in verdict.evidence if e.fact == "log.write_latency_ms")
    assert log.threshold == 3 and "3 ms" in log.reason


def test_connection_overhead() -> None:
    verdict = attribute(
        stages(map_=3, insert=4, commit=1, connect=6),
        series(
            {
                "server.logins_per_s": 25.0,
                "host.db_disk.busy_pct": 8.0,
                "host.workers.cpu_pct": 40.0,
                "server.cpu_pct": 20.0,
            }
        ),
    )
    assert verdict.label == "connection-overhead"
    assert "stage.connect_share_pct" in evidence_facts(verdict)


def test_lock_contention() -> None:
    verdict = attribute(
        stages(map_=2, insert=14, commit=2),
        series(
            {
                "server.cpu_pct": 15.0,
                "server.lock_waits_per_s": 40.0,
                "host.db_disk.busy_pct": 12.0,
                "server.wait.lock.sessions": 2.9,
                "server.wait.cpu.sessions": 0.3,
                "server.wait.log_io.sessions": 0.2,
            }
        ),
    )
    assert verdict.label == "lock-contention"
    assert "waits.lock_share_pct" in evidence_facts(verdict)


def test_unknown_when_nothing_stands_out() -> None:
    verdict = attribute(
        StageTimings(),
        series({"host.cpu.total_pct": 45.0, "host.db_disk.busy_pct": 45.0, "server.cpu_pct": 40.0}),
    )
    assert verdict.label == "unknown"
    assert verdict.confidence == 0 and verdict.level == "none"


def test_every_label_has_rules_and_rules_are_data() -> None:
    assert {r.label for r in RULES} == set(LABELS)
    only_disk = (Rule("data-io", "disk.busy_pct", ">=", 50, 5, "custom rule"),)
    verdict = attribute(stages(insert=1), series({"host.db_disk.busy_pct": 60.0}), rules=only_disk)
    assert verdict.label == "data-io" and verdict.evidence[0].reason == "custom rule"


def test_stage_timings_alone_suffice_for_sqlite() -> None:
    assert attribute(stages(map_=1, insert=2, commit=9)).label == "log-io"
    assert attribute(stages(parse=2, map_=9, insert=1)).label == "client-cpu"
    facts = derive_facts(stages(map_=1, insert=1, commit=2))
    assert facts["stage.commit_share_pct"].value == pytest.approx(50.0)


def test_samples_outside_the_run_are_ignored() -> None:
    rows: list[tuple[float, Mapping[str, Value]]] = [
        (1.0, {"host.db_disk.busy_pct": 10.0}),
        (50.0, {"host.db_disk.busy_pct": 100.0}),
    ]
    facts = derive_facts(stages(insert=1, wall=10.0), SampleSeries.from_rows(rows))
    assert facts["disk.busy_pct"].value == 10.0


def test_verdict_serialises_and_summarises() -> None:
    verdict = attribute(
        stages(map_=1, insert=6, commit=12),
        series({"server.log.write_latency_ms": 14.0, "server.wait.log_io.sessions": 3.0}),
    )
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["label"] == "log-io"
    assert data["evidence"][0].keys() >= {"fact", "value", "threshold", "unit", "reason"}
    assert "log-io" in verdict.summary() and "ms" in verdict.summary()


# --------------------------------------------------------------------------- seed story


def express_series(extra_host: Mapping[str, Value] | None = None) -> SampleSeries:
    sampler = MssqlSampler(lambda: ReplayConnection.from_json(DMV))
    sampler.open()
    rows: list[tuple[float, Mapping[str, Value]]] = []
    for i in range(3):
        row = dict(sampler.sample())
        if extra_host and i:
            row.update(extra_host)
        rows.append((5.0 * i, row))
    return SampleSeries.from_rows(rows, info={"host": {"cores": 4}})


SEED_STAGES = stages(
    parse=1.1, map_=2.3, insert=118.0, commit=41.0, connect=3.9, wall=46.9, workers=4
)


def test_recorded_express_case_is_io_not_cpu() -> None:
    verdict = attribute(SEED_STAGES, express_series())
    assert verdict.label in ("log-io", "data-io")
    assert verdict.runner_up in ("log-io", "data-io") and verdict.runner_up != verdict.label
    assert verdict.scores["db-cpu"] < 0  # SQL Server CPU ~7 % counts against it
    assert verdict.facts["db.cpu_pct"].value < 10
    facts = {e.fact: e for e in (*verdict.evidence, *verdict.runner_up_evidence)}
    assert facts["log.write_latency_ms"].value == pytest.approx(25.25, abs=0.5)
    assert facts["data.read_latency_ms"].value > 20
    assert facts["waits.log_io_share_pct"].value + facts["waits.data_io_share_pct"].value > 90


def test_express_with_saturated_disk_is_still_io() -> None:
    verdict = attribute(
        SEED_STAGES,
        express_series({"host.db_disk.busy_pct": 99.0, "host.workers.cpu_pct": 18.0}),
    )
    assert verdict.label in ("log-io", "data-io")
    assert "disk.busy_pct" in evidence_facts(verdict)
    assert verdict.scores["client-cpu"] < 0


# --------------------------------------------------------------------------- a busy host


def test_host_busy_when_others_take_the_cpu_the_run_waits_for() -> None:
    """Two workers on two cores, other processes using 48% of the host and the workers'
    threads waiting for a CPU half the time: the host is busy, not the migration."""
    verdict = attribute(
        stages(parse=2, map_=5, insert=2, commit=1),
        series({"host.workers.cpu_pct": 100.0, "host.cpu.total_pct": 99.0,
                "host.others.cpu_pct": 48.0, "host.run.cpu_wait_pct": 100.0}),
    )
    assert verdict.label == "host-busy", verdict.summary()
    assert verdict.description == "host busy (other processes 48%)"
    assert verdict.facts["host.others_take_pct"].value == pytest.approx(48.0)
    assert verdict.runner_up == "client-cpu"
    # the run's own CPU is per usable core: 1 core of the 2 the workers can use
    assert verdict.facts["client.cpu_of_capacity_pct"].value == pytest.approx(50.0)
    assert verdict.facts["client.cpu_cores"].value == pytest.approx(1.0)
    assert "host.cpu_pct" not in evidence_facts(verdict) | {
        e.fact for e in verdict.runner_up_evidence}


def test_steal_time_is_a_busy_host_too() -> None:
    verdict = attribute(stages(map_=3, insert=5, commit=2),
                        series({"host.cpu.steal_pct": 25.0, "host.others.cpu_pct": 20.0,
                                "host.run.cpu_wait_pct": 60.0, "host.workers.cpu_pct": 90.0}))
    assert verdict.label == "host-busy", verdict.summary()
    assert verdict.description == "host busy (other processes 20%, steal 25%)"


def test_others_on_cores_the_run_leaves_idle_are_no_bottleneck() -> None:
    # one worker on four cores; others use half the host, i.e. two of the three idle cores
    verdict = attribute(
        stages(map_=8, insert=1, commit=1, workers=1),
        series({"host.workers.cpu_pct": 98.0, "host.others.cpu_pct": 50.0,
                "host.run.cpu_wait_pct": 3.0}, cores=4),
    )
    assert verdict.label == "client-cpu", verdict.summary()
    assert verdict.facts["host.others_take_pct"].value < 5
    assert verdict.scores["host-busy"] < 0


def test_others_busy_while_the_run_sleeps_on_io_are_no_bottleneck() -> None:
    # the run waits on commits, not for a CPU: others' CPU does not slow it down
    verdict = attribute(
        stages(map_=1, insert=1, commit=8, workers=1),
        series({"host.workers.cpu_pct": 8.0, "host.others.cpu_pct": 90.0,
                "host.run.cpu_wait_pct": 2.0, "host.db_disk.busy_pct": 95.0}),
    )
    assert verdict.label == "log-io", verdict.summary()
    assert verdict.facts["host.others_take_pct"].value == pytest.approx(2.0)


def test_a_run_asleep_on_a_lock_is_not_host_busy() -> None:
    """A busy host delays every wake-up of a run blocked on a lock, but the run asks for
    little CPU: lock contention, not a busy host."""
    verdict = attribute(
        stages(map_=1, insert=9, commit=1, workers=1),
        series({"host.workers.cpu_pct": 5.0, "host.run.cpu_wait_pct": 30.0,
                "host.others.cpu_pct": 90.0, "server.wait.lock.sessions": 1.0}),
    )
    assert verdict.label == "lock-contention", verdict.summary()
    assert verdict.facts["client.cpu_demand_pct"].value == pytest.approx(35.0)
    assert verdict.scores["host-busy"] < verdict.scores["lock-contention"]


def test_a_host_saturated_by_others_is_not_client_cpu() -> None:
    """The host's CPU at 99%, but the run's own processes use a fifth of a core: no
    client-cpu evidence from the host's total."""
    verdict = attribute(
        stages(map_=2, insert=6, commit=2, workers=1),
        series({"host.cpu.total_pct": 99.0, "host.workers.cpu_pct": 20.0,
                "host.others.cpu_pct": 89.0, "host.run.cpu_wait_pct": 1.0}),
    )
    assert verdict.label != "client-cpu", verdict.summary()
    assert verdict.scores["client-cpu"] <= 0


# --------------------------------------------------------------------------- real runs


def run_sqlite(path: str, rows: int, batch: int, map_work: int, synchronous: str) -> StageTimings:
    """A miniature migration: map (CPU work per record), insert, commit per batch."""
    t_map = t_insert = t_commit = t_connect = 0.0
    started = time.perf_counter()
    t0 = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE IF NOT EXISTS rec (id INTEGER PRIMARY KEY, digest TEXT)")
    t_connect += time.perf_counter() - t0
    for start in range(0, rows, batch):
        t0 = time.perf_counter()
        mapped = []
        for i in range(start, min(start + batch, rows)):
            digest = str(i).encode()
            for _ in range(map_work):
                digest = hashlib.sha256(digest).digest()
            mapped.append((i, digest.hex()))
        t1 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO rec VALUES (?, ?)", mapped)
        t2 = time.perf_counter()
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        t_map += t1 - t0
        t_insert += t2 - t1
        t_commit += t3 - t2
    conn.close()
    return StageTimings(
        0.0, t_map, t_insert, t_commit, t_connect, time.perf_counter() - started, workers=1
    )


def sampled_run(tmp_path: Path, **workload: int | str) -> Verdict:
    db = tmp_path / "run.db"
    host = HostSampler(db_path=str(db), pids=lambda: [os.getpid()])
    with SamplingSession([host], interval=0.1) as session:
        timings = run_sqlite(str(db), **workload)  # type: ignore[arg-type]
    assert session.series is not None
    return attribute(timings, session.series)


def expect_label(verdict: Verdict, label: str) -> None:
    """``label``, unless other processes measurably took the run's CPU meanwhile (a shared
    test machine): then the verdict must say host-busy, with ``label`` as runner-up."""
    taken = verdict.facts.get("host.others_take_pct")
    assert taken is not None  # the host sampler measured the others' share
    if verdict.label == "host-busy":
        assert taken.value >= 30 and verdict.runner_up == label, verdict.summary()
        assert verdict.description.startswith("host busy (other processes ")
    else:
        assert verdict.label == label, verdict.summary()
        if taken.value < 15:
            assert verdict.scores["host-busy"] <= 0, verdict.summary()


@pytest.mark.slow
def test_fsync_heavy_run_is_log_io(tmp_path: Path) -> None:
    verdict = sampled_run(tmp_path, rows=300, batch=1, map_work=1, synchronous="FULL")
    expect_label(verdict, "log-io")
    assert "stage.commit_share_pct" in evidence_facts(verdict) | {
        e.fact for e in verdict.runner_up_evidence}


@pytest.mark.slow
def test_cpu_heavy_mapping_into_a_fast_target_is_client_cpu(tmp_path: Path) -> None:
    verdict = sampled_run(tmp_path, rows=6_000, batch=1_000, map_work=200, synchronous="OFF")
    expect_label(verdict, "client-cpu")
    assert "stage.client_share_pct" in evidence_facts(verdict) | {
        e.fact for e in verdict.runner_up_evidence}


def test_unknown_lists_each_piece_of_evidence_once() -> None:
    # stage.db_share_pct >= 50 supports db-cpu, data-io and log-io: one line, not three
    verdict = attribute(stages(map_=1, insert=6, commit=1))
    assert verdict.label == "unknown"
    shown = [(e.fact, e.reason) for e in verdict.evidence]
    assert shown.count(("stage.db_share_pct", "insert+commit take most of the time")) == 1
    assert len(shown) == len(set(shown))


def test_lock_contention_names_the_blocker_from_the_series() -> None:
    blocker = {"session": "4711", "id_label": "pid", "application": "nightly-report",
               "object": "table orders", "samples": 12,
               "description": "pid 4711 (application 'nightly-report') on table orders"}
    rows: list[tuple[float, Mapping[str, Value]]] = [(0.0, {})]
    rows += [(0.5 * (i + 1), {"server.wait.lock.sessions": 1.0}) for i in range(10)]
    verdict = attribute(stages(map_=1, insert=9, commit=1),
                        SampleSeries.from_rows(rows, blockers=[blocker]))
    assert verdict.label == "lock-contention"
    assert verdict.summary().endswith("blocked by pid 4711 (application 'nightly-report') on "
                                      "table orders")
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["blockers"] == [blocker]
    again = SampleSeries.from_dict(SampleSeries.from_rows(rows, blockers=[blocker]).to_dict())
    assert again.blockers == (blocker,)
