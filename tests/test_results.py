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
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    (run,) = doc["runs"]
    assert run["config"]["queue_depth"] == 2  # a dimension v1 did not record
    assert run["config"]["insert_method"] == "executemany"  # what v1 did record is kept
    assert run["config"]["sample_interval"] is None and run["bottleneck"] is None
    assert run["metrics"]["records_read"] == 3


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
