"""Result files: versioning and the upgrade path from files older tools wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.results import SCHEMA_VERSION, ResultFileError, load_result, write_json_atomic

FIXTURES = Path(__file__).parent / "data" / "results"


def test_a_version_1_file_from_the_first_release_is_upgraded(tmp_path: Path) -> None:
    # Written by `bench run` of this project's first commit and stored unchanged.
    src = FIXTURES / "v1_first_release_run.json"
    assert json.loads(src.read_text())["schema_version"] == 1
    shutil.copy(src, tmp_path / "result.json")
    doc = load_result(tmp_path)  # a run folder works as well as the file
    assert doc["schema_version"] == SCHEMA_VERSION == 4
    assert doc["status"] == "complete" and doc["error"] is None
    (run,) = doc["runs"]
    assert run["config"]["queue_depth"] == 2  # a dimension v1 did not record
    assert run["config"]["connection"] == "per-batch" and "pooling" not in run["config"]
    assert run["config"]["insert_method"] == "executemany"  # what v1 did record is kept
    assert run["config"]["sample_interval"] is None and run["bottleneck"] is None
    assert run["metrics"]["records_read"] == 3
    assert run["status"] == "complete" and run["error"] is None


@pytest.mark.parametrize("name", ["v2_run", "v2_sweep"])
def test_version_2_files_read_as_complete(name: str) -> None:
    # Written by `bench run` and `bench sweep` of the release before result status existed.
    src = FIXTURES / f"{name}.json"
    before = json.loads(src.read_text())
    assert before["schema_version"] == 2 and "status" not in before
    doc = load_result(src)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert (doc["status"], doc["error"]) == ("complete", None)
    assert [r["status"] for r in doc["runs"]] == ["complete"] * len(before["runs"])
    assert all(r["error"] is None for r in doc["runs"])
    # Nothing else changes: the measurements are the ones the file holds.
    assert [r["metrics"] for r in doc["runs"]] == [r["metrics"] for r in before["runs"]]


def test_a_version_2_run_that_recorded_an_error_reads_as_failed() -> None:
    # `bench run` on a malformed file exited 1 but wrote this like any other result.
    src = FIXTURES / "v2_failed_run.json"
    before = json.loads(src.read_text())
    assert before["runs"][0]["metrics"]["errors"]
    doc = load_result(src)
    assert doc["status"] == doc["runs"][0]["status"] == "failed"
    assert "malformed XML" in doc["error"] and doc["error"] == doc["runs"][0]["error"]


@pytest.mark.parametrize(("name", "strategies"), [("v2_run", {"per-batch"}),
                                                  ("sweep_grid", {"per-batch", "pooled"})])
def test_pooling_of_older_files_reads_as_the_connection_strategy(
        name: str, strategies: set[str]) -> None:
    """``pooling`` on/off becomes ``connection`` pooled/per-batch wherever a configuration
    or a label names it; no ``pooling`` is left behind."""
    src = FIXTURES / f"{name}.json"
    before = json.loads(src.read_text())
    doc = load_result(src)
    runs = doc["runs"]
    assert {r["config"]["connection"] for r in runs} == strategies
    assert [r["config"]["connection"] for r in runs] == [
        {"on": "pooled", "off": "per-batch"}[r["config"]["pooling"]] for r in before["runs"]]
    assert list(runs[0]["config"]).index("connection") == \
        list(before["runs"][0]["config"]).index("pooling")  # in its place: labels keep order
    for section in ("config", "runs", "summary"):
        text = json.dumps(doc.get(section))
        assert '"pooling"' not in text and "pooling=" not in text, section
    if name == "sweep_grid":
        config = doc["config"]
        assert config["dimensions"]["connection"] == ["per-batch", "pooled"]
        assert config["baseline"] == "workers=2,batch=1000,connection=per-batch"
        assert {c["connection"] for c in config["configurations"]} == strategies
        summary = doc["summary"]
        assert summary["dimensions"] == ["batch_size", "workers", "connection"]
        assert summary["best"]["label"] == "batch_size=1000, workers=4, connection=per-batch"
        assert summary["rows"][1]["config"] == {"batch_size": 50, "workers": 1,
                                                "connection": "pooled"}
    else:
        assert doc["config"]["connection"] == "per-batch"


def test_every_fixture_of_an_older_version_upgrades_to_statuses() -> None:
    for src in sorted(FIXTURES.glob("*.json")):
        doc = load_result(src) if json.loads(src.read_text()).get("schema") else None
        if doc is None:
            continue
        assert doc["schema_version"] == SCHEMA_VERSION, src.name
        assert doc["status"] in ("complete", "failed"), src.name
        assert all(r["status"] in ("complete", "failed") for r in doc["runs"]), src.name


def test_newer_and_foreign_files_are_refused_with_the_file_name(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    write_json_atomic(newer, {"schema": "migration-bench/result", "schema_version": 99})
    with pytest.raises(ResultFileError, match=r"newer\.json: schema version 99 is newer"):
        load_result(newer)
    other = tmp_path / "other.json"
    other.write_text('{"benchmarks": []}')
    with pytest.raises(ResultFileError, match="not a migration-bench result file"):
        load_result(other)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"schema": "migration-bench/result"})[:20])
    with pytest.raises(ResultFileError, match="truncated or corrupted"):
        load_result(cut)
