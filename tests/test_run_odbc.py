"""`bench run` end to end against the real PostgreSQL: pooling, insert methods, workers,
server sampling and the bottleneck verdict in the result file."""

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


@pytest.mark.parametrize(("pooling", "method", "workers"), [
    ("off", "values", 1), ("on", "auto", 2), ("on", "executemany", 1)])
def test_bench_run_into_postgresql(postgres: Any, data: Path, tmp_path: Path, pooling: str,
                                   method: str, workers: int) -> None:
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    result = runner.invoke(app, ["run", "-i", str(data), "-t", target, "-b", "100",
                                 "--pooling", pooling, "--insert-method", method,
                                 "--workers", str(workers), "--sample-interval", "0.1",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == 600
    assert doc["quarantined"] == 12
    assert doc["pooling"] == pooling and doc["workers"] == workers
    assert postgres.password not in result.stdout  # redacted everywhere
    stored = json.loads((tmp_path / "r" / "result.json").read_text())
    assert postgres.password not in json.dumps(stored)
    run = stored["runs"][0]
    assert run["config"]["pooling"] == pooling
    assert any(name.startswith(("pg.", "server.")) for name in run["samples"]["metrics"])
    assert run["bottleneck"]["label"]


def test_sweep_over_pooling_on_and_off_in_one_process(postgres: Any, data: Path,
                                                      tmp_path: Path) -> None:
    # unixODBC reads its pooling choice once per process: whichever configuration comes
    # second must still get what it asked for (the coordinator migrates in a fresh worker).
    target = "odbc:" + postgres.odbc("Protocol=7.4-1")
    result = runner.invoke(app, ["sweep", "-i", str(data), "-t", target, "-b", "200",
                                 "--pooling", "on,off", "--repeat", "1", "--warmup", "0",
                                 "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "s" / "result.json").read_text())
    seen = sorted(r["config"]["pooling"] for r in stored["runs"] if not r.get("warmup"))
    assert seen == ["off", "on"]
    assert all(r["reconciliation"]["ok"] for r in stored["runs"])
