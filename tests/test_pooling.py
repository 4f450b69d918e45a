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
from diagnostics import diagnosis as dx
from diagnostics.decision import SEED_LEAF, FactValue, evaluate
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
from diagnostics.strategies import (
    BY_NAME,
    STRATEGIES,
    Setting,
    apply_lines,
    flags,
    supported,
)
from migrator.connection import STRATEGIES as CONNECTION_STRATEGIES, ConnectionStrategy
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

Key = tuple[int, str | None]


class FakeMeasure:
    """Throughput from a table; records what was asked."""

    def __init__(self, table: dict[Key, list[float]],
                 strategies: tuple[str, ...] = ("per-batch", "pooled"),
                 bottleneck: dict[str, Any] | None = None) -> None:
        self.table = {k: list(v) for k, v in table.items()}
        self._strategies = strategies
        self.bottleneck = bottleneck
        self.calls: list[tuple[int | None, str | None, bool]] = []

    def strategies(self) -> tuple[str, ...]:
        return self._strategies

    def unsupported(self, *, workers: bool) -> str | None:
        return None

    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        if connection is not None and connection not in self._strategies:
            raise MeasureUnsupported(f"no {connection}")
        name = None if connection is None else connection.value
        self.calls.append((workers, name, sample))
        values = self.table.get((workers or 1, name)) or [1000.0]
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
                            "repeat": 5, "stats": stats, "client_cores": 8}
    base.update(kw)
    return DiagnosisContext(**base)


def _rounds(level: float, n: int = 10, wobble: float = 0.01) -> list[float]:
    """``n`` rounds around ``level``, with a deterministic round-to-round wobble."""
    return [level * (1 + wobble * ((7 * r) % 5 - 2)) for r in range(n)]


HOST = [1.0, 1.9, 0.7, 1.5, 0.8, 1.7, 0.6, 1.2, 1.1, 0.9]  # the host's speed per round

# The SQL Server Express story, as measurements: 2 workers are faster than 1, 4 are no
# faster than 2, and pooling costs 29% at every worker count.
EXPRESS: dict[Key, list[float]] = {
    (1, "per-batch"): _rounds(500), (1, "pooled"): _rounds(355),
    (2, "per-batch"): _rounds(800), (2, "pooled"): _rounds(568),
    (4, "per-batch"): [v * f for v, f in zip(_rounds(805), [1, .99, 1.01, 1, .98, 1.02, 1,
                                                             1.01, .99, 1], strict=True)],
    (4, "pooled"): _rounds(572)}

EXPRESS_FACTS: dict[str, FactValue] = {
    "config.intended": "on", "config.effective": True, "config.sessions_as_configured": 1,
    "config.connections": 20, "cost.connect_ms": 15.0, "cost.checkout_ms": 12.0,
    "cost.batch_ms": 62_500.0, "cost.connect_share_pct": 0.024}


def _express_bottleneck() -> PoolingResult:
    verdict = {"label": "data-io", "description": "data-file I/O", "level": "high",
               "confidence": 0.8,
               "evidence": [{"fact": "disk.busy_pct", "value": 97.0, "unit": "%", "op": ">=",
                             "threshold": 80, "reason": "database disk busy", "weight": 1}],
               "facts": {"disk.busy_pct": {"value": 97.0}, "db.cpu_pct": {"value": 8.0}}}
    return BottleneckTest().analyse(verdict, 2, "per-batch", 790.0, {"host": {"cores": 8}})


def test_the_sql_server_express_story_from_measurements() -> None:
    """Pooling −29% (significant), no scaling past 2 workers, the disk saturated: disable
    pooling, overlap I/O with mapping, tune the batch size, don't add workers — and use the
    measured configuration, with its numbers."""
    contention = ContentionTest().analyse(stats, [1, 2, 4], EXPRESS, cores=8,
                                          pooling_in_force=True)
    f = contention.facts
    assert (f["contention.workers"], f["contention.strategy"]) == (2, "per-batch")
    assert f["contention.flags"] == flags(2, "per-batch")
    assert f["contention.strategy_alt"] == "pooled"
    assert f["contention.strategy_change_pct"] == pytest.approx(-29, abs=0.5)
    assert f["contention.strategy_significant"] is False  # (significantly slower)
    assert f["contention.scales_to"] == 4  # 4 workers beat 1 too, just not 2
    assert contention.status == "warning" and "workers do not scale" in contention.verdict
    facts = {**EXPRESS_FACTS, **f, **_express_bottleneck().facts}
    decision = evaluate(facts)
    assert decision.leaf == SEED_LEAF, decision.lines()
    rec = decision.recommendation
    assert rec.startswith(f"Use 2 workers, per-batch connections ({flags(2, 'per-batch')}): "
                          "800 rec/min median, +60.0% (")
    assert "against the default 1 worker, per-batch connections" in rec
    for words in ("disable pooling", "pipeline", "batch size", "don't add workers",
                  "4 workers measured +0.", "pooled connections measured -29."):
        assert words in rec, (words, rec)
    assert f"bench sweep --pipeline off,thread --batch-sizes 200..5000 " \
           f"{flags(2, 'per-batch')}" in rec
    assert "data-io: disk.busy_pct = 97%" in decision.rationale


def test_workers_measured_slower_are_never_recommended() -> None:
    """The SQLite case: 1 worker 546,928, 2 workers 355,553, 4 workers 287,567 rec/min on a
    2-core client. No "Contention (ok)" at 13% efficiency, 4 workers labelled oversubscribed,
    and the advice is 1 worker, because more measured slower."""
    samples: dict[Key, Sequence[float]] = {
        (1, "per-batch"): [546_928 * h for h in HOST],
        (2, "per-batch"): [355_553 * h * (1 + 0.01 * (r % 3)) for r, h in enumerate(HOST)],
        (4, "per-batch"): [287_567 * h * (1 - 0.01 * (r % 2)) for r, h in enumerate(HOST)]}
    contention = ContentionTest().analyse(stats, [1, 2, 4], samples, cores=2)
    f = contention.facts
    assert contention.status == "warning"
    assert contention.verdict.startswith("4 workers (oversubscribed: 2 logical cores) reach "
                                         "13% of ideal scaling: workers do not scale; no "
                                         "worker count significantly faster than 1 worker")
    assert "up to 1 workers" not in contention.verdict
    assert f["contention.oversubscribed"] == "4"
    assert any("4 workers on 2 logical cores: oversubscribed" in m for m in contention.messages)
    assert (f["contention.workers"], f["contention.strategy"]) == (1, "per-batch")
    assert str(f["contention.more_text"]).startswith(
        "More workers measured slower (2 workers: -3")
    assert "don't add workers" in str(f["contention.more_text"])
    bottleneck = {"bottleneck.label": "client-cpu", "bottleneck.workers": 4,
                  "bottleneck.evidence": "stage.client_share_pct = 74% (>= 50: parse+map)",
                  "bottleneck.server_text": ""}
    decision = evaluate({**BASE_FACTS, **f, **bottleneck})
    assert decision.leaf == "client_cpu_bound"
    assert decision.recommendation.startswith("Use the default, 1 worker, per-batch "
                                              f"connections ({flags(1, 'per-batch')})")
    assert "up to the core count" not in decision.recommendation
    assert "More workers measured slower" in decision.recommendation


BASE_FACTS: dict[str, FactValue] = {
    "config.intended": "unstated", "config.effective": False,
    "cost.connect_ms": 0.3, "cost.checkout_ms": 0.0, "cost.batch_ms": 80.0,
    "cost.connect_share_pct": 0.4}


def test_the_simplest_of_the_configurations_the_fastest_does_not_beat() -> None:
    """2 and 4 workers both beat 1; 4 is not significantly faster than 2: use 2. Persistent
    connections beat per-batch by 12% at every worker count: use them."""
    samples: dict[Key, Sequence[float]] = {
        (1, "per-batch"): [500 * h for h in HOST], (1, "pooled"): [501 * h for h in HOST],
        (1, "persistent"): [560 * h for h in HOST],
        (2, "per-batch"): [900 * h for h in HOST], (2, "pooled"): [899 * h for h in HOST],
        (2, "persistent"): [1008 * h for h in HOST],
        (4, "per-batch"): [902 * h for h in HOST], (4, "pooled"): [903 * h for h in HOST],
        (4, "persistent"): [1010 * h * (1 + 0.004 * (r % 3 - 1)) for r, h in enumerate(HOST)]}
    result = ContentionTest().analyse(stats, [1, 2, 4], samples, cores=8)
    f = result.facts
    assert (f["contention.workers"], f["contention.strategy"]) == (2, "persistent")
    assert f["contention.flags"] == "--workers 2 --connection persistent"
    assert BY_NAME["persistent"].flag == "--connection persistent"
    assert f["contention.strategy_alt"] == "persistent"
    assert f["contention.strategy_change_pct"] == pytest.approx(12, abs=0.3)
    assert f["contention.strategy_significant"] is True
    assert "statistically tied with the fastest median, 4 workers, persistent" in str(
        f["contention.rec_text"])
    decision = evaluate({**BASE_FACTS, **f, "bottleneck.label": "unknown"})
    assert decision.leaf == "change_strategy"
    assert decision.verdict == "persistent connections help significantly"
    # every comparison shown belongs to one family: one p per pair, wherever it appears
    seen: dict[tuple[str, str], str] = {}
    comparisons = result.details["comparisons"]
    for v in [*comparisons["strategies"], *comparisons["vs_default"], *comparisons["scaling"]]:
        assert seen.setdefault((v["a"], v["b"]), v["text"]) == v["text"]


def test_contention_scaling_without_strategies() -> None:
    samples: dict[Key, Sequence[float]] = {
        (1, None): [500 * h for h in HOST], (2, None): [800 * h for h in HOST],
        (4, None): [805 * h * (1 + 0.003 * (r % 3 - 1)) for r, h in enumerate(HOST)]}
    result = ContentionTest().analyse(stats, [1, 2, 4], samples)
    assert result.facts["contention.scales_to"] == 4  # 4 beats the default (1 worker)
    assert result.facts["contention.workers"] == 2  # but not 2 workers: 2 is enough
    assert result.facts["contention.strategy_significant"] is False
    assert result.facts["contention.strategy_alt"] is None  # not measured: no guess


def test_contention_pairs_runs_within_rounds() -> None:
    """The host's speed swings by a factor of two between rounds; within each round pooling
    costs 8%. Pooled over rounds that is invisible; paired, it is clear."""
    host = HOST[:8]
    samples: dict[Key, Sequence[float]] = {
        (1, "per-batch"): [500 * h for h in host], (1, "pooled"): [460 * h * 1.001 for h in host],
        (2, "per-batch"): [900 * h for h in host], (2, "pooled"): [828 * h * 0.999 for h in host]}
    result = ContentionTest().analyse(stats, [1, 2], samples)
    assert result.details["paired"] is True
    assert result.facts["contention.strategy_alt"] == "pooled"
    assert result.facts["contention.strategy_change_pct"] == pytest.approx(-8.0, abs=0.2)
    assert result.facts["contention.scales_to"] == 2
    pooled = result.details["comparisons"]["strategies"]
    assert pooled[-1]["outcome"] == "worse" and pooled[-1]["paired"]
    # one Holm family of the 4 comparisons: the smallest exact p (2/2**8) times 4
    assert min(v["p"] for v in pooled) == pytest.approx(4 * 2 / 2**8)
    assert not stats.compare(samples[(2, "per-batch")], samples[(2, "pooled")]).significant
    # A missing run breaks the rounds: the test falls back to unpaired statistics.
    broken = dict(samples)
    broken[(2, "pooled")] = list(samples[(2, "pooled")])[:-1]
    fallback = ContentionTest().analyse(stats, [1, 2], broken)
    assert fallback.details["paired"] is False
    assert "runs each" in fallback.details["comparisons"]["strategies"][0]["text"]


def test_contention_runs_in_shuffled_rounds_over_the_runners_strategies() -> None:
    fake = FakeMeasure({(1, "per-batch"): [100.0], (2, "per-batch"): [190.0]},
                       strategies=("per-batch",))
    ctx = _ctx(workers=(1, 2), repeat=2, measure=fake)
    result = ContentionTest().run(ctx)
    assert sorted(c[:2] for c in fake.calls) == [(1, "per-batch"), (1, "per-batch"),
                                                 (2, "per-batch"), (2, "per-batch")]
    assert [r["diagnose_round"] for r in ctx.runs] == [0, 0, 1, 1]
    assert {r["diagnose_test"] for r in ctx.runs} == {"contention"}
    assert result.facts["contention.strategy"] == "per-batch"
    nothing = FakeMeasure({}, strategies=())
    ctx = _ctx(workers=(1, 2), repeat=1, measure=nothing)
    result = ContentionTest().run(ctx)
    assert result.status == "warning" and "not compared" in result.messages[0]
    assert {c[1] for c in nothing.calls} == {None}


def test_collector_flow_with_a_fake_runner() -> None:
    """Tests 2–4 feed the tree; an I/O-bound verdict leads to the SQL Server Express leaf."""
    verdict = {"label": "data-io", "description": "data-file I/O", "level": "high",
               "evidence": [{"fact": "disk.busy_pct", "value": 97.0, "unit": "%",
                             "reason": "disk busy", "weight": 1}],
               "facts": {"disk.busy_pct": {"value": 97.0}, "db.cpu_pct": {"value": 8.0},
                         "client.cpu_of_capacity_pct": {"value": 12.0}}}
    fake = FakeMeasure(dict(EXPRESS), bottleneck=verdict)
    ctx = _ctx(workers=(1, 2, 4), repeat=10, measure=fake)
    config = Given(ConfigurationTest, "ok", {"config.intended": "on",
                                            "config.effective": True, "dialect": "sqlite"})
    cost = Given(ConnectionCostTest, "ok", {
        "cost.connect_ms": 15.0, "cost.checkout_ms": 12.0, "cost.batch_ms": 2000.0,
        "cost.connect_share_pct": 0.7})
    report = PoolingDiagnosis(ctx, [config, cost, ContentionTest(), BottleneckTest()]).run()
    assert [r.status for r in report.results] == ["ok", "ok", "warning", "ok"]
    assert report.decision.leaf == "io_bound", report.decision.lines()
    assert report.exit_code == 0
    # the sampled run: the highest worker count, with its fastest strategy
    assert fake.calls[-1] == (4, "per-batch", True)
    diagnosis = dx.build(report, target=ctx.target)
    assert diagnosis.recommendation.configuration["flags"] == flags(2, "per-batch")
    assert diagnosis.recommendation.apply[0] == f"bench run {flags(2, 'per-batch')}"
    again = dx.Diagnosis.from_dict(json.loads(json.dumps(diagnosis.to_dict())))
    assert again.lines() == diagnosis.lines()
    assert again.to_dict() == json.loads(json.dumps(diagnosis.to_dict()))


def test_collector_reports_unavailable_tests() -> None:
    ctx = _ctx(measure=None, stats=None)
    report = PoolingDiagnosis(ctx, [ContentionTest(), BottleneckTest()]).run()
    assert [r.status for r in report.results] == ["unavailable", "unavailable"]
    assert report.decision.leaf == "incomplete"
    diagnosis = dx.build(report, target=ctx.target)
    assert diagnosis.recommendation.configuration == {} and not diagnosis.recommendation.apply


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
    # --json prints the stored diagnosis itself, and where it is stored
    assert doc.pop("result_file") == str(out / "result.json")
    assert doc == stored["diagnose"]
    assert len(stored["runs"]) >= 2
    assert {v["kind"] for v in stored["verdicts"]} == {"pooling-test", "pooling-decision"}
    decision = next(v for v in stored["verdicts"] if v["kind"] == "pooling-decision")
    assert decision["recommendation"] == doc["recommendation"]["text"]


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
    assert measure.unsupported(workers=True) is None
    ctx = _ctx(target=target, workers=(1, 2), repeat=1, measure=measure, batch_size=BATCH)
    report = PoolingDiagnosis(ctx, [ContentionTest(), BottleneckTest()]).run()
    contention, bottleneck = report.results
    assert contention.status in ("ok", "warning"), contention
    assert contention.facts["contention.max_workers"] == 2
    assert contention.facts["contention.efficiency_pct"] is not None
    label = bottleneck.facts["bottleneck.label"]
    assert label, bottleneck
    # "unknown" is no verdict to act on: said as a warning, not ok
    assert bottleneck.status == ("warning" if label == "unknown" else "ok"), bottleneck
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


@pytest.mark.odbc
@pytest.mark.postgres
def test_cli_on_postgres_measures_every_strategy_and_recommends_one_of_them(
        postgres: Server, tmp_path: Path) -> None:
    """`bench diagnose pooling --workers 1,2` on a live PostgreSQL: every connection strategy
    the runner has is measured at both worker counts, in every round, and the
    recommendation is one of those measured configurations, with the way to apply it."""
    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
    out = tmp_path / "run"
    res = runner.invoke(app, ["diagnose", "pooling", "--target", "odbc:" + postgres.odbc(),
                              "--workers", "1,2", "--records", "1000", "--batch-size", "250",
                              "--repeat", "2", "--connections", "4", "--sample-interval",
                              "0.1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "result.json").read_text())["diagnose"]
    strategies = doc["settings"]["strategies"]
    assert strategies == list(RunnerMeasure(RunContext([], None, None, tmp_path), BATCH,
                                            SamplerSetup("sqlite:x", None)).strategies())
    # every strategy the tool has, and only those
    assert strategies == ["per-batch", "pooled", "persistent"] == list(CONNECTION_STRATEGIES)
    contention = next(t for t in doc["tests"] if t["name"] == "contention")
    measured = {(r["workers"], r["strategy"]) for r in contention["details"]["table"]}
    assert measured == {(w, s) for w in (1, 2) for s in strategies}
    assert {r["n"] for r in contention["details"]["table"]} == {2}
    rec = doc["recommendation"]
    chosen = (rec["configuration"]["workers"], rec["configuration"]["strategy"])
    assert chosen in measured
    assert rec["apply"][0] == f"bench run {rec['configuration']['flags']}"
    assert any(line.startswith("server: accept at least") for line in rec["apply"])
    assert f"recommendation: {rec['text']}" in res.stdout
    # the sampled run counted the run's own sessions on the server
    sampled = next(r for r in json.loads((out / "result.json").read_text())["runs"]
                   if r["diagnose_test"] == "bottleneck")
    sessions = [v for v in sampled["samples"]["metrics"]["server.sessions"] if v is not None]
    assert sessions and max(sessions) >= 1


def test_the_strategies_are_the_tools_and_a_runner_without_them_measures_none() -> None:
    assert [s.name for s in STRATEGIES] == list(CONNECTION_STRATEGIES)
    assert [s.name for s in supported({"workers", "connection"})] == list(CONNECTION_STRATEGIES)
    assert BY_NAME["pooled"].flag == "--connection pooled"
    assert supported({"workers", "pooling"}) == ()  # (a runner without --connection)
    fake = FakeMeasure({}, strategies=())
    ContentionTest().run(_ctx(workers=(1,), repeat=1, measure=fake))
    assert {c[1] for c in fake.calls} == {None}


def test_apply_lines_say_where_each_setting_goes() -> None:
    odbc = Setting("odbc", "postgresql", "PostgreSQL Unicode", "/etc/odbcinst.ini", False)
    pooled = apply_lines("pooled", 2, odbc)
    assert pooled[0] == f"bench run {flags(2, 'pooled')}"
    assert "/etc/odbcinst.ini: [ODBC] Pooling = Yes" in pooled
    assert "/etc/odbcinst.ini: [PostgreSQL Unicode] CPTimeout = 120" in pooled
    assert pooled[-1].startswith("server: accept at least 3 concurrent sessions")
    trap = apply_lines("per-batch", 1, Setting("odbc", "mssql", "X", "/o/odbcinst.ini", True))
    assert trap[1].startswith("/o/odbcinst.ini: [ODBC] Pooling = No")
    assert apply_lines("per-batch", 1, Setting()) == [f"bench run {flags(1, 'per-batch')}"]
    embedded = apply_lines("pooled", 1, Setting())
    assert "in-process pool" in embedded[1] and not any("odbcinst" in x for x in embedded)
    assert "one connection per worker" in apply_lines("persistent", 4, Setting())[1]
