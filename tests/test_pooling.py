"""The four pooling tests: against SQLite and a real PostgreSQL (pooling verified by backend
pids), the unixODBC trap, the statistics of the contention test, and `bench diagnose pooling`.

Migrations run through the real runner (:class:`bench.isolated.RunnerMeasure`, one
process per run) on a small cached dataset, so the whole file stays well under a minute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from servers import Server
from typer.testing import CliRunner

from bench.cli import app
from bench.isolated import RunnerMeasure, SamplerSetup
from bench.sweep import RunContext, ensure_dataset
from diagnostics.decision import FactValue
from diagnostics.pooling import (
    EXIT_INEFFECTIVE,
    BottleneckTest,
    ConfigurationTest,
    ConnectionCostTest,
    ContentionTest,
    DiagnosisContext,
    MeasureUnsupported,
    PoolingDiagnosis,
    PoolingTest,
    RunMeasurement,
    Status,
    TestResult as PoolingResult,
    run_probe,
)
from migrator.connection import ConnectionStrategy
from reports import stats

RECORDS = 300
BATCH = 100
CONNECTIONS = 6


@pytest.fixture(scope="module")
def dataset() -> str:
    folder, _ = ensure_dataset(RECORDS)
    return str(folder)


def _measure(dataset: str, work: Path, target: str | None, dialect: str) -> RunnerMeasure:
    work.mkdir(parents=True, exist_ok=True)
    spec = target or f"sqlite:{work / 'mig.db'}"
    sampling = SamplerSetup(spec, str(work / "mig.db") if target is None else None, 0.05)
    sampling.dialect = dialect
    return RunnerMeasure(RunContext([dataset], target, None, work), BATCH, sampling)


# ---- fakes for the pure parts -----------------------------------------------------------------

class FakeMeasure:
    """Throughput from a table; records what was asked."""

    def __init__(self, table: dict[tuple[int | None, bool | None], list[float]],
                 pooling_supported: bool = True, bottleneck: dict[str, Any] | None = None
                 ) -> None:
        self.table = {k: list(v) for k, v in table.items()}
        self.pooling_supported = pooling_supported
        self.bottleneck = bottleneck
        self.calls: list[tuple[int | None, bool | None, bool]] = []

    def unsupported(self, *, workers: bool, pooling: bool) -> str | None:
        if pooling and not self.pooling_supported:
            return "RunRequest has no 'pooling' field"
        return None

    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        if connection is not None and not self.pooling_supported:
            raise MeasureUnsupported("no pooling")
        pooling = None if connection is None else connection is ConnectionStrategy.POOLED
        self.calls.append((workers, pooling, sample))
        values = self.table.get((workers, pooling)) or [1000.0]
        v = values.pop(0) if len(values) > 1 else values[0]
        return RunMeasurement(v, 1.0, {}, [250.0, 260.0], workers or 1, connection,
                              self.bottleneck if sample else None, {"fake": True})


class Given(PoolingTest):
    """A test whose result is given (the parts under test are the others)."""

    def __init__(self, like: type[PoolingTest], status: Status,
                 facts: dict[str, FactValue]) -> None:
        self.number, self.name, self.title = like.number, like.name, like.title  # type: ignore[misc]
        self.status, self.facts = status, facts

    def run(self, ctx: DiagnosisContext) -> PoolingResult:
        return self.result(self.status, "given", facts=dict(self.facts))


def _ctx(**kw: Any) -> DiagnosisContext:
    base: dict[str, Any] = {"target": "sqlite:/nonexistent/x.db", "workers": (1, 2, 4),
                            "repeat": 5, "stats": stats}
    base.update(kw)
    return DiagnosisContext(**base)


def test_contention_statistics_seed_shape() -> None:
    """Pooling costs 29% at 4 workers, significantly: 8 rounds, paired within rounds and
    Holm-corrected over the three worker counts."""
    samples: dict[tuple[int, bool | None], Sequence[float]] = {
        (1, False): [500, 510, 495, 505, 498, 502, 507, 499],
        (1, True): [480, 470, 490, 475, 485, 478, 482, 476],
        (2, False): [590, 600, 585, 595, 588, 592, 597, 590],
        (2, True): [560, 550, 570, 565, 555, 561, 558, 566],
        (4, False): [959, 950, 965, 955, 962, 958, 953, 961],
        (4, True): [677, 680, 670, 675, 690, 681, 676, 684],
    }
    result = ContentionTest().analyse(stats, [1, 2, 4], samples)
    f = result.facts
    assert f["contention.max_workers"] == 4
    assert f["contention.pooling_significant"] is True
    assert f["contention.pooling_change_pct"] == pytest.approx(-29.3, abs=0.5)
    assert f["contention.efficiency_pct"] == pytest.approx(100 * 959 / (4 * 500), abs=1)
    assert f["contention.scales_to"] == 4  # each step is a significant gain here
    assert "significant" in result.verdict


def test_contention_scaling_stops_where_gains_stop() -> None:
    samples: dict[tuple[int, bool | None], Sequence[float]] = {
        (1, None): [500, 505, 498, 502, 499, 503, 501, 497],
        (2, None): [800, 790, 805, 810, 795, 802, 798, 806],
        (4, None): [805, 795, 800, 790, 812, 799, 803, 797]}
    result = ContentionTest().analyse(stats, [1, 2, 4], samples)
    assert result.facts["contention.scales_to"] == 2
    assert result.facts["contention.pooling_significant"] is None  # not measured: no guess


def test_contention_pairs_runs_within_rounds() -> None:
    """The host's speed swings by a factor of two between rounds; within each round pooling
    costs 8%. Pooled over rounds that is invisible; paired, it is clear."""
    host = [1.0, 1.9, 0.7, 1.5, 0.8, 1.7, 0.6, 1.2]
    samples: dict[tuple[int, bool | None], Sequence[float]] = {
        (1, False): [500 * h for h in host], (1, True): [460 * h * 1.001 for h in host],
        (2, False): [900 * h for h in host], (2, True): [828 * h * 0.999 for h in host]}
    result = ContentionTest().analyse(stats, [1, 2], samples)
    assert result.details["paired"] is True
    assert result.facts["contention.pooling_significant"] is True
    assert result.facts["contention.pooling_change_pct"] == pytest.approx(-8.0, abs=0.2)
    assert result.facts["contention.scales_to"] == 2
    assert "p (signed-rank, paired, Holm)" in result.numbers
    top = result.details["table"][-1]["pooling"]
    assert top["paired"] and top["p_adjusted"] == pytest.approx(2 * 2 / 2**8)
    assert not stats.compare(samples[(2, False)], samples[(2, True)]).significant
    # A missing run breaks the rounds: the test falls back to unpaired statistics.
    broken = dict(samples)
    broken[(2, True)] = list(samples[(2, True)])[:-1]
    fallback = ContentionTest().analyse(stats, [1, 2], broken)
    assert fallback.details["paired"] is False and "p (Mann-Whitney)" in fallback.numbers


def test_contention_runs_interleaved_and_degrades_without_pooling() -> None:
    fake = FakeMeasure({(1, None): [100.0], (2, None): [190.0]}, pooling_supported=False)
    ctx = _ctx(workers=(1, 2), repeat=2, measure=fake)
    result = ContentionTest().run(ctx)
    assert result.status == "warning" and "pooling on/off not compared" in result.messages[0]
    assert sorted(c[:2] for c in fake.calls) == [(1, None), (1, None), (2, None), (2, None)]
    assert len(ctx.runs) == 4 and {r["diagnose_test"] for r in ctx.runs} == {"contention"}


def test_collector_flow_with_a_fake_runner() -> None:
    """Tests 2–4 feed the tree; an I/O-bound verdict leads to the SQL Server Express leaf."""
    verdict = {"label": "data-io", "description": "data-file I/O", "level": "high",
               "evidence": [{"fact": "disk.busy_pct", "value": 97.0, "unit": "%",
                             "reason": "disk busy", "weight": 1}],
               "facts": {"disk.busy_pct": {"value": 97.0}, "db.cpu_pct": {"value": 8.0},
                         "client.cpu_of_capacity_pct": {"value": 12.0}}}
    fake = FakeMeasure({(1, False): [500, 510, 495, 505, 498],
                        (1, True): [480, 470, 490, 475, 485],
                        (4, False): [700, 690, 710, 705, 695],
                        (4, True): [500, 495, 505, 490, 510]}, bottleneck=verdict)
    ctx = _ctx(workers=(1, 4), measure=fake)
    config = Given(ConfigurationTest, "ok", {"config.intended": "unstated",
                                            "config.effective": True, "dialect": "sqlite"})
    cost = Given(ConnectionCostTest, "ok", {
        "cost.connect_ms": 15.0, "cost.checkout_ms": 12.0, "cost.batch_ms": 2000.0,
        "cost.connect_share_pct": 0.7})
    report = PoolingDiagnosis(ctx, [config, cost, ContentionTest(), BottleneckTest()]).run()
    assert [r.status for r in report.results] == ["ok", "ok", "ok", "ok"]
    assert report.decision.leaf == "io_bound", report.decision.lines()
    assert report.exit_code == 0
    assert fake.calls[-1] == (4, False, True)  # the sampled run: highest worker count


def test_collector_reports_unavailable_tests() -> None:
    ctx = _ctx(measure=None, stats=None)
    report = PoolingDiagnosis(ctx, [ContentionTest(), BottleneckTest()]).run()
    assert [r.status for r in report.results] == ["unavailable", "unavailable"]
    assert report.decision.leaf == "incomplete"


# ---- SQLite -----------------------------------------------------------------------------------

def test_sqlite_configuration_and_cost(dataset: str, tmp_path: Path) -> None:
    measure = _measure(dataset, tmp_path / "work", None, "sqlite")
    ctx = _ctx(target=f"sqlite:{tmp_path / 'work' / 'mig.db'}", connections=CONNECTIONS,
               measure=measure, batch_size=BATCH)
    report = PoolingDiagnosis(ctx, [ConfigurationTest(), ConnectionCostTest()]).run()
    config, cost = report.results
    assert config.status == "ok", config
    # --pooling on means the SQLite target's own pool: a pooled probe reuses one session.
    assert config.facts["config.effective"] is True
    assert config.facts["config.pool_possible"] is True
    assert config.facts["config.sessions_as_configured"] == CONNECTIONS
    assert any("embedded" in m for m in config.messages)
    assert float(cost.facts["cost.connect_ms"] or 0) > 0
    assert float(cost.facts["cost.batch_ms"] or 0) > 0
    assert 0 < float(cost.facts["cost.connect_share_pct"] or 0) < 100
    assert ctx.runs and ctx.runs[0]["metrics"]["records_read"] == RECORDS


def test_the_probe_runs_from_any_folder_with_the_environment_it_inherits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    probe = run_probe(f"sqlite:{tmp_path / 'probe.db'}", "on", 3)
    assert not probe.error and len(probe.session_ids) == 3 and probe.reused is True


def test_the_probe_is_the_module_the_given_environment_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m diagnostics.pooling`` is looked up on the import path of the environment
    the probe is given, not in a folder derived from where this package lies: a package
    placed first on that path is the one that runs (run from another folder: ``-m`` looks
    in the working folder first)."""
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "planted" / "diagnostics"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("")
    (planted / "pooling.py").write_text("print('{\"ids\": [\"planted\"]}')\n")
    path = [str(planted.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    probe = run_probe(f"sqlite:{tmp_path / 'probe.db'}", "on", 3, environ=env)
    assert probe.session_ids == ["planted"] and not probe.error


def test_sampled_run_attributes_a_bottleneck(dataset: str, tmp_path: Path) -> None:
    measure = _measure(dataset, tmp_path / "work", None, "sqlite")
    m = measure(workers=None, connection=None, sample=True)
    assert m.bottleneck is not None and m.bottleneck["label"]
    assert m.run["samples"] and m.run["bottleneck"]["label"] == m.bottleneck["label"]
    assert len(m.batch_ms) == RECORDS // BATCH


def test_cli_on_sqlite(dataset: str, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
    out = tmp_path / "run"
    res = runner.invoke(app, ["diagnose", "pooling", "--records", str(RECORDS),
                              "--batch-size", str(BATCH), "--workers", "1,2", "--repeat", "1",
                              "--connections", "4", "--sample-interval", "0.05",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [t["name"] for t in doc["tests"]] == ["configuration", "connection-cost",
                                                 "contention", "bottleneck"]
    assert doc["decision"]["path"][0]["node"] == "config"
    stored = json.loads((out / "result.json").read_text())
    assert stored["kind"] == "diagnose"
    assert stored["diagnose"]["decision"]["nodes"]
    assert len(stored["runs"]) >= 2
    assert {v["kind"] for v in stored["verdicts"]} == {"pooling-test", "pooling-decision"}


def test_cli_usage_errors() -> None:
    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
    res = runner.invoke(app, ["diagnose", "pooling", "--threshold", "NOPE=1"])
    assert res.exit_code == 2 and "POOLING_GAIN_PCT" in res.output
    res = runner.invoke(app, ["diagnose", "pooling", "--expect", "maybe"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["diagnose", "pooling", "--workers", "0..2"])
    assert res.exit_code == 2


# ---- PostgreSQL -------------------------------------------------------------------------------

def _pids(result: Any, probe: str) -> list[str]:
    ids: list[str] = result.details["probes"][probe]["session_ids"]
    return ids


@pytest.mark.odbc
@pytest.mark.postgres
def test_postgres_pooling_verified_by_backend_pids(postgres: Server) -> None:
    ctx = _ctx(target="odbc:" + postgres.odbc(), connections=CONNECTIONS)
    report = PoolingDiagnosis(ctx, [ConfigurationTest(), ConnectionCostTest()]).run()
    config, cost = report.results
    # the test session's ini does not pool: pyodbc.pooling on or off, every connection is new
    assert len(set(_pids(config, "requested_on"))) == CONNECTIONS
    assert len(set(_pids(config, "requested_off"))) == CONNECTIONS
    assert any("pyodbc.pooling makes no difference" in m for m in config.messages)
    # migration-bench's private ini really pools: one backend pid for all checkouts
    assert len(set(_pids(config, "forced_on"))) == 1
    assert len(set(_pids(config, "forced_off"))) == CONNECTIONS
    assert all(p.isdigit() for p in _pids(config, "forced_on"))
    assert config.status == "ok" and config.facts["config.effective"] is False
    assert config.facts["config.pool_possible"] is True
    assert config.numbers["unixODBC"] and config.numbers["driver"]
    assert report.exit_code == 0
    # a pooled checkout is far cheaper than a new connection
    assert cost.facts["cost.checkout_ms"] is not None and cost.facts["cost.connect_ms"]
    assert float(cost.facts["cost.checkout_ms"]) < float(cost.facts["cost.connect_ms"]) / 5


@pytest.mark.odbc
@pytest.mark.postgres
def test_the_unixodbc_trap_is_detected(postgres: Server, tmp_path: Path) -> None:
    """pyodbc.pooling=False with an odbcinst.ini that pools: pooling is on anyway → exit 3."""
    from migrator.odbcini import build_odbcsysini

    folder = build_odbcsysini(tmp_path / "ini", pooling=True, quiet_logs=True)
    env = {**os.environ, "ODBCSYSINI": str(folder)}
    env.pop("ODBCINSTINI", None)
    ctx = _ctx(target="odbc:" + postgres.odbc(), connections=CONNECTIONS,
               pyodbc_pooling=False, environ=env)
    report = PoolingDiagnosis(ctx, [ConfigurationTest()]).run()
    config = report.results[0]
    assert config.status == "ineffective"
    assert "believed off" in config.verdict and "trap" in config.verdict
    assert len(set(_pids(config, "requested_off"))) == 1
    assert config.numbers["[ODBC] Pooling"] == "Yes" and config.numbers["CPTimeout"]
    assert report.exit_code == EXIT_INEFFECTIVE
    assert report.decision.leaf == "trap_config"


@pytest.mark.odbc
@pytest.mark.postgres
def test_adonet_pool_keywords_are_intent_that_does_nothing(postgres: Server) -> None:
    target = "odbc:" + postgres.odbc("Pooling=true;Max Pool Size=50")
    ctx = _ctx(target=target, connections=CONNECTIONS)
    report = PoolingDiagnosis(ctx, [ConfigurationTest()]).run()
    config = report.results[0]
    assert config.status == "ineffective" and "NOT effective" in config.verdict
    assert config.details["intended_source"] == "connection-string keywords"
    assert "PoolMaxSize=50" in config.details["suggested_ini"]
    assert any(m.startswith("Max Pool Size=50: ADO.NET") for m in config.messages)
    assert report.exit_code == EXIT_INEFFECTIVE
    assert report.decision.leaf == "fix_config"
    assert "Pooling, Max Pool Size" in report.decision.recommendation


@pytest.mark.odbc
@pytest.mark.postgres
def test_postgres_contention_and_bottleneck(postgres: Server, dataset: str,
                                            tmp_path: Path) -> None:
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    measure = _measure(dataset, tmp_path / "work", target, "postgresql")
    if measure.unsupported(workers=True, pooling=False):
        pytest.skip(str(measure.unsupported(workers=True, pooling=False)))
    ctx = _ctx(target=target, workers=(1, 2), repeat=1, measure=measure, batch_size=BATCH)
    report = PoolingDiagnosis(ctx, [ContentionTest(), BottleneckTest()]).run()
    contention, bottleneck = report.results
    assert contention.status in ("ok", "warning"), contention
    assert contention.facts["contention.max_workers"] == 2
    assert contention.facts["contention.efficiency_pct"] is not None
    assert bottleneck.status == "ok", bottleneck
    assert bottleneck.facts["bottleneck.label"]
    sampled = ctx.runs[-1]
    assert sampled["diagnose_test"] == "bottleneck" and sampled["samples"]
    assert any(name.startswith("server.") for name in sampled["samples"].get("names", [])
               ) or sampled["samples"]


@pytest.mark.odbc
@pytest.mark.postgres
def test_cli_stops_at_an_unreachable_target_with_one_line(postgres: Server,
                                                          tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
    target = "odbc:" + postgres.odbc().replace("Server=", "Sever=")
    out = tmp_path / "run"
    res = runner.invoke(app, ["diagnose", "pooling", "--target", target, "--workers", "1",
                              "--records", str(RECORDS), "--out", str(out)])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output  # one connection, one error: no test ran
    assert lines[0].startswith("error: cannot connect to odbc:")
    assert "did you mean Server=?" in lines[0] and postgres.password not in lines[0]
    assert not out.exists()  # nothing measured, no run folder


@pytest.mark.odbc
@pytest.mark.postgres
def test_sampled_run_in_its_own_process_counts_that_runs_sessions(
        postgres: Server, dataset: str, tmp_path: Path) -> None:
    # The parent samples; the run is a child process: they share the run id it is given.
    measure = _measure(dataset, tmp_path / "work", "odbc:" + postgres.odbc(), "postgresql")
    m = measure(workers=None, connection=None, sample=True)
    sessions = [v for v in m.run["samples"]["metrics"]["server.sessions"] if v is not None]
    assert max(sessions) >= 1, sessions
    assert m.run["session_name"] == f"migration-bench {m.run['run_id']}"
