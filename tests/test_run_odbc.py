"""`bench run` end to end against the real PostgreSQL: connection strategies, insert methods,
workers, server sampling and the bottleneck verdict in the result file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import datasets
from bench.cli import app

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})
pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("odbc-run")
    datasets.generate(out, 600, files=2, seed=4, invalid_rate=0.02)
    return out


@pytest.mark.parametrize(("flag", "method", "workers", "strategy"), [
    (["--pooling", "off"], "values", 1, "per-batch"),
    (["--pooling", "on"], "auto", 2, "pooled"),
    (["--connection", "pooled"], "executemany", 1, "pooled"),
    (["--connection", "persistent"], "auto", 2, "persistent")])
def test_bench_run_into_postgresql(postgres: Any, data: Path, tmp_path: Path, flag: list[str],
                                   method: str, workers: int, strategy: str) -> None:
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    result = runner.invoke(app, ["run", "-i", str(data), "-t", target, "-b", "100",
                                 *flag, "--insert-method", method,
                                 "--workers", str(workers), "--sample-interval", "0.1",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == 600
    assert doc["quarantined"] == 12
    assert doc["connection"] == strategy and doc["workers"] == workers
    assert postgres.password not in result.stdout  # redacted everywhere
    stored = json.loads((tmp_path / "r" / "result.json").read_text())
    assert postgres.password not in json.dumps(stored)
    run = stored["runs"][0]
    assert run["config"]["connection"] == strategy and "pooling" not in run["config"]
    assert stored["config"]["connection"] == strategy
    assert any(name.startswith(("pg.", "server.")) for name in run["samples"]["metrics"])
    assert run["bottleneck"]["label"]


def test_sweep_over_every_connection_strategy_in_one_process(postgres: Any, data: Path,
                                                             tmp_path: Path) -> None:
    # unixODBC reads its pooling choice once per process: whichever configuration comes
    # later must still get what it asked for (the coordinator migrates in a fresh worker).
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    result = runner.invoke(app, ["sweep", "-i", str(data), "-t", target, "-b", "200",
                                 "--connection", "per-batch,pooled,persistent", "--repeat",
                                 "1", "--warmup", "0", "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "s" / "result.json").read_text())
    seen = sorted(r["config"]["connection"] for r in stored["runs"] if not r.get("warmup"))
    assert seen == ["per-batch", "persistent", "pooled"]
    assert stored["config"]["dimensions"]["connection"] == ["per-batch", "pooled",
                                                            "persistent"]
    assert all(r["reconciliation"]["ok"] for r in stored["runs"])
    labels = [row["label"] for row in stored["summary"]["rows"]]
    assert [label.split(", ")[-1] for label in labels] == [
        "connection=per-batch", "connection=pooled", "connection=persistent"]


def test_sweep_pooling_alias_sweeps_the_connection_dimension(postgres: Any, data: Path,
                                                             tmp_path: Path) -> None:
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    result = runner.invoke(app, ["sweep", "-i", str(data), "-t", target, "-b", "200",
                                 "--pooling", "on,off", "--repeat", "1", "--warmup", "0",
                                 "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "s" / "result.json").read_text())
    seen = sorted(r["config"]["connection"] for r in stored["runs"] if not r.get("warmup"))
    assert seen == ["per-batch", "pooled"]
