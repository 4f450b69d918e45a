"""Input paths longer than any server's index-key limit (SQL Server 450 characters,
InnoDB 768, the old VARCHAR(1000) column) migrate, resume and split into byte ranges on
every real backend: checkpoints are keyed by a digest of the unit id, which is kept whole."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import datasets
from bench.cli import app
from migrator import EngineConfig, ResumeError, default_mapping, expand_inputs, migrate, reconcile
from migrator.batch import MappedBatch
from migrator.targets import open_target
from migrator.targets.base import Connection
from migrator.writer import BatchWriter

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})
RECORDS = 300

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("deep")
    for part in "abcde":
        folder = folder / (part * 200)  # (a path component may be 255 bytes)
    datasets.generate(folder, RECORDS, seed=8, invalid_rate=0.05)
    assert len(str(folder)) > 1000
    return folder


def target_spec(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'deep.db'}"
    server = request.getfixturevalue("postgres" if backend == "postgresql" else "mariadb")
    return "odbc:" + str(server.odbc())


@pytest.mark.parametrize("backend", BACKENDS)
def test_deep_paths_resume_exactly_once(backend: str, deep: Path, tmp_path: Path,
                                        request: pytest.FixtureRequest,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = target_spec(backend, tmp_path, request)
    mapping = default_mapping()
    real = BatchWriter._save_checkpoints
    calls = {"n": 0}

    def interrupted(self: BatchWriter, conn: Connection, batch: MappedBatch) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # three batches committed, the fourth rolled back
            raise KeyboardInterrupt
        real(self, conn, batch)

    monkeypatch.setattr(BatchWriter, "_save_checkpoints", interrupted)
    with pytest.raises(KeyboardInterrupt):
        migrate(expand_inputs([str(deep)]), open_target(spec), mapping,
                EngineConfig(batch_size=40))
    partial = reconcile(open_target(spec), mapping)
    assert partial.ok and partial.records_read == 120
    monkeypatch.setattr(BatchWriter, "_save_checkpoints", real)
    stats = migrate(expand_inputs([str(deep)]), open_target(spec), mapping,
                    EngineConfig(batch_size=40), resume=True)
    assert stats.records_read == RECORDS - 120
    done = reconcile(open_target(spec), mapping)
    assert done.ok, done.problems
    assert done.records_read == RECORDS == done.inserted + done.quarantined
    assert done.quarantined == round(RECORDS * 0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deep_paths_split_into_ranges_across_workers(backend: str, deep: Path, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    spec = target_spec(backend, tmp_path, request)
    result = runner.invoke(app, ["run", "-i", str(deep), "-t", spec, "-b", "50",
                                 "--workers", "2", "--no-sample", "--out",
                                 str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == RECORDS
    ranges = [p for w in doc["per_worker"] for p in w["partitions"]]
    assert len(ranges) >= 2 and all("#" in p and len(p) > 1000 for p in ranges)
    if backend == "sqlite":  # the whole id is stored beside its key
        with sqlite3.connect(tmp_path / "deep.db") as con:
            stored = sorted(r[0] for r in con.execute("SELECT unit FROM mb_checkpoint"))
        assert stored == sorted(ranges)


def test_resume_refuses_checkpoints_of_an_older_format(deep: Path, tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 'old.db'}"
    migrate(expand_inputs([str(deep)]), open_target(spec), default_mapping())
    with sqlite3.connect(tmp_path / "old.db") as con:  # what format 1 wrote: no such row
        con.execute("DELETE FROM mb_run WHERE k = 'checkpoint_format'")
    with pytest.raises(ResumeError, match=r"older migration-bench.*without --resume"):
        migrate(expand_inputs([str(deep)]), open_target(spec), default_mapping(),
                resume=True)
