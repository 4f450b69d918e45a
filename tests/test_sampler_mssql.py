"""SQL Server sampler: T-SQL parsed by sqlglot, logic replayed on recorded DMV snapshots.

tests/data/dmv/express_slow_disk.json holds three snapshots ~5 s apart of an Express
instance on a slow disk (PAGEIOLATCH_SH and WRITELOG dominating, log writes ~25 ms,
CPU ~7 %); between the 2nd and 3rd the wait stats were cleared (a counter reset), the log
file and tempdb have no reads (Δops = 0) and LCK_M_X first appears in the 2nd.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from diagnostics.attribution import StageTimings, attribute
from diagnostics.mssql import (
    BENIGN_WAITS,
    PERF_AVERAGE_BULK,
    PERF_COUNTER_BULK,
    PERF_RAW_BASE,
    PERF_RAW_FRACTION,
    MssqlSampler,
    all_queries,
    counter_values,
    file_deltas,
    is_permission_error,
    request_category,
    wait_category,
    wait_deltas,
)
from diagnostics.replay import ReplayConnection
from diagnostics.sampler import SamplingSession

sqlglot = pytest.importorskip("sqlglot")

FIXTURE = Path(__file__).parent / "data" / "dmv" / "express_slow_disk.json"
PERMISSION_DENIED = (
    "('42000', \"[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]VIEW SERVER "
    "STATE permission was denied on object 'server', database 'master'. (300) "
    '(SQLExecDirectW)")'
)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def snap(recorded: dict[str, Any], i: int, section: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = recorded["snapshots"][i][section]
    return rows


# --------------------------------------------------------------------------- T-SQL


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_every_query_parses_as_tsql(name: str) -> None:
    sql = all_queries("o'brien app")[name]  # a quote in the program name must stay quoted
    parsed = sqlglot.parse(sql, read="tsql")
    assert len(parsed) == 1 and parsed[0] is not None
    # round-trips through the T-SQL generator, so it is T-SQL sqlglot fully understood
    assert sqlglot.transpile(sql, read="tsql", write="tsql")[0]


def test_queries_read_the_documented_dmvs() -> None:
    q = all_queries()
    assert "sys.dm_io_virtual_file_stats(NULL, NULL)" in q["file_stats"]
    assert "sys.dm_os_wait_stats" in q["wait_stats"]
    assert "sys.dm_os_performance_counters" in q["perf_counters"]
    assert "sys.dm_exec_sessions" in q["sessions"]
    assert "N'migration-bench'" in q["sessions"]


# --------------------------------------------------------------------------- waits


@pytest.mark.parametrize(
    ("wait", "category"),
    [
        ("PAGEIOLATCH_SH", "data_io"),
        ("PAGEIOLATCH_EX", "data_io"),
        ("WRITELOG", "log_io"),
        ("SOS_SCHEDULER_YIELD", "cpu"),
        ("LCK_M_IX", "lock"),
        ("LCK_M_X", "lock"),
        ("ASYNC_NETWORK_IO", "client"),
        ("PAGELATCH_EX", "latch"),
        ("IO_COMPLETION", "other_io"),
        ("SOME_NEW_WAIT", "other"),
        ("LAZYWRITER_SLEEP", None),
        ("SQLTRACE_INCREMENTAL_FLUSH_SLEEP", None),
        ("XE_TIMER_EVENT", None),
        ("DIRTY_PAGE_POLL", None),
    ],
)
def test_wait_categories(wait: str, category: str | None) -> None:
    assert wait_category(wait) == category


def test_benign_list_does_not_hide_workload_waits() -> None:
    for wait in (
        "WRITELOG",
        "PAGEIOLATCH_SH",
        "SOS_SCHEDULER_YIELD",
        "LCK_M_X",
        "ASYNC_NETWORK_IO",
    ):
        assert wait not in BENIGN_WAITS


def test_wait_deltas_between_recorded_snapshots(recorded: dict[str, Any]) -> None:
    waits, resets = wait_deltas(snap(recorded, 0, "wait_stats"), snap(recorded, 1, "wait_stats"))
    by_type = {w.wait_type: w for w in waits}
    assert resets == 0
    assert by_type["WRITELOG"].wait_ms == 10_400 and by_type["WRITELOG"].waits == 400
    assert by_type["WRITELOG"].avg_wait_ms == pytest.approx(26.0)
    assert by_type["PAGEIOLATCH_SH"].wait_ms == 7_800
    assert by_type["WRITELOG"].interval_s == pytest.approx(5.0)
    # first seen in this interval: counted from zero
    assert by_type["LCK_M_X"].wait_ms == 180 and by_type["LCK_M_X"].category == "lock"
    # benign and unchanged waits are not reported
    assert "LAZYWRITER_SLEEP" not in by_type and "LCK_M_IX" not in by_type
    dominant = sorted(waits, key=lambda w: -w.wait_ms)[:2]
    assert {w.wait_type for w in dominant} == {"WRITELOG", "PAGEIOLATCH_SH"}


def test_wait_stats_clear_is_a_reset_not_a_negative_delta(recorded: dict[str, Any]) -> None:
    waits, resets = wait_deltas(snap(recorded, 1, "wait_stats"), snap(recorded, 2, "wait_stats"))
    assert resets > 0
    assert all(w.wait_ms >= 0 and w.waits >= 0 for w in waits)
    by_type = {w.wait_type: w for w in waits}
    assert by_type["WRITELOG"].wait_ms == 6_120  # accumulated since the clear


# --------------------------------------------------------------------------- files


def test_file_latency_is_stall_over_ops(recorded: dict[str, Any]) -> None:
    files = file_deltas(snap(recorded, 0, "file_stats"), snap(recorded, 1, "file_stats"))
    by_name = {(f.database, f.logical_name): f for f in files}
    data, log = by_name["mig", "mig"], by_name["mig", "mig_log"]
    assert data.interval_s == pytest.approx(5.0)
    assert data.reads == 310 and data.read_latency_ms == pytest.approx(24.0)
    assert log.writes == 400 and log.write_latency_ms == pytest.approx(25.0)
    assert log.write_bytes == 11_980_800


def test_zero_ops_gives_no_latency_not_a_division_error(recorded: dict[str, Any]) -> None:
    files = file_deltas(snap(recorded, 0, "file_stats"), snap(recorded, 1, "file_stats"))
    by_name = {(f.database, f.logical_name): f for f in files}
    assert by_name["mig", "mig_log"].reads == 0
    assert by_name["mig", "mig_log"].read_latency_ms is None
    assert by_name["tempdb", "tempdev"].write_latency_ms is None


# --------------------------------------------------------------------------- counters


def test_performance_counters_honour_cntr_type(recorded: dict[str, Any]) -> None:
    values = counter_values(snap(recorded, 0, "perf_counters"), snap(recorded, 1, "perf_counters"))
    got = {(v.object_name, v.counter_name, v.instance_name): v for v in values}
    # 272696576: cumulative → per second over the server's ms_ticks
    assert got["SQL Statistics", "Batch Requests/sec", ""].value == pytest.approx(64.0)
    assert got["Databases", "Log Flushes/sec", "mig"].value == pytest.approx(80.0)
    assert got["General Statistics", "Logins/sec", ""].value == pytest.approx(0.8)
    # 65792: the raw value
    assert got["General Statistics", "User Connections", ""].value == 6
    # 537003264: value / base, instantaneous
    assert got["Resource Pool Stats", "CPU usage %", "default"].value == pytest.approx(
        100 * 1_533 / 21_600
    )
    assert got["Buffer Manager", "Buffer cache hit ratio", ""].kind == "ratio"
    # 1073874176: Δvalue / Δbase ("Average Wait Time (ms)" / "Average Wait Time Base")
    assert got["Locks", "Average Wait Time (ms)", "_Total"].value == pytest.approx(60.0)
    # bases are inputs, not results
    assert ("Resource Pool Stats", "CPU usage % base", "default") not in got


def test_rates_need_two_snapshots(recorded: dict[str, Any]) -> None:
    values = counter_values([], snap(recorded, 0, "perf_counters"))
    rates = [v for v in values if v.kind == "rate"]
    assert rates and all(v.value is None for v in rates)
    assert next(v for v in values if v.counter_name == "User Connections").value == 6


def test_ratio_with_zero_base_is_none() -> None:
    rows = [
        {
            "object_name": "SQLServer:Buffer Manager",
            "counter_name": "Buffer cache hit ratio",
            "instance_name": "",
            "cntr_value": 0,
            "cntr_type": PERF_RAW_FRACTION,
            "ms_ticks": 1,
        },
        {
            "object_name": "SQLServer:Buffer Manager",
            "counter_name": "Buffer cache hit ratio base",
            "instance_name": "",
            "cntr_value": 0,
            "cntr_type": PERF_RAW_BASE,
            "ms_ticks": 1,
        },
    ]
    (value,) = counter_values(rows, rows)
    assert value.value is None


def test_counter_reset_on_restart_never_goes_negative() -> None:
    def row(v: int, t: int) -> dict[str, Any]:
        return {
            "object_name": "SQLServer:SQL Statistics",
            "counter_name": "Batch Requests/sec",
            "instance_name": "",
            "cntr_value": v,
            "cntr_type": PERF_COUNTER_BULK,
            "ms_ticks": t,
        }

    (value,) = counter_values([row(1_000_000, 10_000)], [row(500, 12_000)])
    assert value.value == pytest.approx(250.0)
    avg = {
        "object_name": "x:Locks",
        "counter_name": "Average Wait Time (ms)",
        "instance_name": "",
        "cntr_value": 1,
        "cntr_type": PERF_AVERAGE_BULK,
        "ms_ticks": 1,
    }
    assert counter_values([], [avg]) == []  # an average without its base is skipped


# --------------------------------------------------------------------------- sampler


def test_sampler_replays_the_express_story() -> None:
    sampler = MssqlSampler(lambda: ReplayConnection.from_json(FIXTURE))
    sampler.open()
    assert sampler.info()["edition"] == "Express Edition (64-bit)"
    assert sampler.database == "mig"
    first = sampler.sample()
    assert first["server.cpu_pct"] == pytest.approx(7.0)
    assert first["server.log.flushes_per_s"] is None  # no interval yet
    second = sampler.sample()
    assert second["server.log.write_latency_ms"] == pytest.approx(25.0)
    assert second["server.data.read_latency_ms"] == pytest.approx(24.0)
    assert second["server.log.read_latency_ms"] is None  # Δops = 0
    assert second["server.log.flushes_per_s"] == pytest.approx(80.0)
    assert second["server.log.bytes_per_s"] == pytest.approx(11_980_800 / 5)
    assert second["server.logins_per_s"] == pytest.approx(0.8)
    assert second["server.sessions"] == 4
    waiting = {k: v for k, v in second.items() if k.startswith("server.wait.")}
    assert max(waiting, key=lambda k: waiting[k] or 0) == "server.wait.log_io.sessions"
    assert second["server.wait.log_io.sessions"] == pytest.approx(10_400 / 5_000)
    assert second["server.wait.data_io.sessions"] == pytest.approx((7_800 + 1_050) / 5_000)
    cpu = second["server.cpu_pct"]
    assert cpu is not None and cpu < 10
    third = sampler.sample()
    assert sampler.resets > 0
    assert all(v is None or v >= 0 for k, v in third.items() if k.startswith("server.wait."))
    assert sampler.server_location().data_paths[0].endswith("mig.mdf")
    sampler.close()


def test_missing_view_server_state_is_one_clear_warning() -> None:
    assert is_permission_error(Exception(PERMISSION_DENIED))
    assert not is_permission_error(Exception("Login timeout expired"))
    conn = ReplayConnection.from_json(FIXTURE, error=PERMISSION_DENIED)
    with SamplingSession([MssqlSampler(lambda: conn)], interval=0.01) as session:
        pass
    series = session.series
    assert series is not None
    assert len(series.warnings) == 1
    assert "VIEW SERVER STATE" in series.warnings[0]
    assert "GRANT VIEW SERVER STATE" in series.warnings[0]
    assert not any(name.startswith("server.") for name in series.metrics)
    assert len(conn.executed) == 1  # probed once, then left alone


# --------------------------------------------------------------------------- the run's sessions

LOCK_FIXTURE = Path(__file__).parent / "data" / "dmv" / "lock_wait.json"


def test_queries_count_only_the_runs_sessions() -> None:
    q = all_queries("migration-bench ab12")
    for name, column in (("sessions", "program_name"), ("requests", "s.program_name"),
                         ("blocking", "s.program_name")):
        assert f"{column} = N'migration-bench ab12'" in q[name]
        # "… ab12 copy" is the run's too; "… ab123" is another run
        assert f"LEFT({column}, 21) = N'migration-bench ab12 '" in q[name]
    assert "session_id <> @@SPID" in q["sessions"]  # never the sampler's own session
    assert "r.session_id <> @@SPID" in q["requests"]
    assert "sys.dm_exec_requests" in q["requests"]
    assert "sys.dm_os_waiting_tasks" in q["blocking"] and "sys.dm_tran_locks" in q["blocking"]


@pytest.mark.parametrize(("status", "wait", "category"), [
    ("running", "", "cpu"), ("runnable", "", "cpu"), ("suspended", "LCK_M_X", "lock"),
    ("suspended", "WRITELOG", "log_io"), ("suspended", "PAGEIOLATCH_SH", "data_io"),
    ("suspended", "WAITFOR", None), ("sleeping", "", None), ("background", "", None)])
def test_request_categories(status: str, wait: str, category: str | None) -> None:
    assert request_category(status, wait) == category


def test_recorded_lock_wait_counts_the_runs_sessions_and_names_the_blocker() -> None:
    sampler = MssqlSampler(lambda: ReplayConnection.from_json(LOCK_FIXTURE))
    sampler.open()
    first = sampler.sample()
    assert first["server.sessions"] == 4
    assert first["server.wait.lock.sessions"] == 3 and first["server.wait.cpu.sessions"] == 1
    second = sampler.sample()
    assert second["server.wait.lock.sessions"] == 4 and second["server.active.sessions"] == 4
    # the server-wide wait deltas stay available under their own name
    assert second["mssql.server_wait.lock.sessions"] == pytest.approx(18_600 / 5_000)
    assert sampler.info()["wait_source"] == "the run's sessions (sys.dm_exec_requests)"
    sampler.sample()
    [blocker] = sampler.blockers()
    assert blocker.session == "61" and blocker.samples == 3 and blocker.waiting == 4
    assert blocker.application == "Microsoft SQL Server Management Studio - Query"
    assert blocker.user == "CORP\\dba" and blocker.client == "DBA-LAPTOP"
    assert blocker.object == "table orders" and blocker.lock_mode == "IX"
    assert blocker.transaction_start == "2024-05-14T10:31:02.113"
    assert "TABLOCKX" in blocker.query
    sampler.close()


def test_recorded_lock_wait_is_lock_contention_naming_the_blocker() -> None:
    conn = ReplayConnection.from_json(LOCK_FIXTURE)
    deadline = time.monotonic() + 30
    with SamplingSession([MssqlSampler(lambda: conn)], interval=0.01) as session:
        while len([q for q in conn.executed if "dm_exec_requests" in q]) < 3 \
                and time.monotonic() < deadline:
            time.sleep(0.01)
    series = session.series
    assert series is not None and series.blockers
    verdict = attribute(StageTimings(parse_s=0.4, map_s=0.8, insert_s=52.0, commit_s=0.6,
                                     connect_s=0.3, wall_s=15.0, workers=4), series)
    assert verdict.label == "lock-contention"
    assert verdict.blockers[0]["session"] == "61"
    summary = verdict.summary()
    assert "blocked by session 61 (application 'Microsoft SQL Server Management Studio" in \
        summary and "on table orders" in summary
    assert verdict.to_dict()["blockers"][0]["samples"] >= 3


def test_recording_without_requests_falls_back_to_server_wide_waits() -> None:
    sampler = MssqlSampler(lambda: ReplayConnection.from_json(FIXTURE))
    sampler.open()
    sampler.sample()
    second = sampler.sample()
    assert str(sampler.info()["wait_source"]).startswith("server-wide (sys.dm_os_wait_stats)")
    assert second["server.wait.log_io.sessions"] == pytest.approx(10_400 / 5_000)
    assert "mssql.server_wait.log_io.sessions" not in second
    assert sampler.blockers() == []
    sampler.close()
