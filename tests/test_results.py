"""The result model: versions, the upgrade path from files older tools wrote, round trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.results import build_result, write_result
from reports.results import (
    SCHEMA_VERSION,
    BaselineDocument,
    CompareDocument,
    DiagnoseDocument,
    ResultFileError,
    Run,
    RunConfig,
    RunDocument,
    SweepDocument,
    counted_runs,
    load,
    parse,
    read_raw,
    save,
    write_json_atomic,
)

FIXTURES = Path(__file__).parent / "data" / "results"
RESULT_FIXTURES = sorted(p for p in FIXTURES.glob("*.json")
                         if json.loads(p.read_text(encoding="utf-8")).get("schema"))


def test_the_fixtures_hold_every_kind_and_version() -> None:
    found = {(json.loads(p.read_text())["kind"], json.loads(p.read_text())["schema_version"])
             for p in RESULT_FIXTURES}
    assert {kind for kind, _ in found} >= {"run", "sweep", "baseline", "compare", "diagnose"}
    # 1 and 2 to upgrade (the current one is written below); the diagnose fixtures are at the
    # current version, as the stored diagnosis they hold is
    versions = {version for _, version in found}
    assert versions >= {1, 2} and versions <= {1, 2, SCHEMA_VERSION}


@pytest.mark.parametrize("src", RESULT_FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_round_trips_load_upgrade_save_load(src: Path, tmp_path: Path) -> None:
    doc = load(src)
    assert doc.schema_version == SCHEMA_VERSION
    saved = save(doc, tmp_path / "result.json")
    again = load(saved)
    assert again == doc
    # What is saved is the upgraded document itself: keys a reader does not model, keys the
    # file did not hold and the file's own order all survive.
    assert json.loads(saved.read_text()) == read_raw(src)
    assert list(json.loads(saved.read_text())) == list(read_raw(src))
    assert save(again, tmp_path / "twice.json").read_bytes() == saved.read_bytes()


def test_the_kind_decides_the_document_type() -> None:
    kinds = {p.stem: type(load(p)) for p in RESULT_FIXTURES}
    assert kinds["run"] is kinds["v1_first_release_run"] is RunDocument
    assert kinds["sweep"] is kinds["v2_sweep"] is SweepDocument
    assert kinds["baseline"] is BaselineDocument
    assert kinds["compare"] is CompareDocument
    assert kinds["diagnose"] is DiagnoseDocument


def test_a_version_1_file_from_the_first_release_is_upgraded(tmp_path: Path) -> None:
    # Written by `bench run` of this project's first commit and stored unchanged.
    src = FIXTURES / "v1_first_release_run.json"
    assert json.loads(src.read_text())["schema_version"] == 1
    shutil.copy(src, tmp_path / "result.json")
    doc = load(tmp_path)  # a run folder works as well as the file
    assert isinstance(doc, RunDocument)
    assert doc.schema_version == SCHEMA_VERSION == 4
    assert doc.status == "complete" and doc.error is None
    (run,) = doc.runs
    assert run.config.queue_depth == 2  # a dimension v1 did not record
    assert run.config.connection == "per-batch" and not run.config.holds("pooling")
    assert run.config.insert_method == "executemany"  # what v1 did record is kept
    assert run.config.sample_interval is None and run.bottleneck is None
    assert run.metrics.records_read == 3
    assert run.status == "complete" and run.error is None
    assert doc.config.mapping is not None and not isinstance(doc.config.mapping, str)
    assert doc.config.mapping.fingerprint == "cad7d9fc0ec63f26"


@pytest.mark.parametrize("name", ["v2_run", "v2_sweep"])
def test_version_2_files_read_as_complete(name: str) -> None:
    # Written by `bench run` and `bench sweep` of the release before result status existed.
    src = FIXTURES / f"{name}.json"
    before = json.loads(src.read_text())
    assert before["schema_version"] == 2 and "status" not in before
    doc = load(src)
    assert doc.schema_version == SCHEMA_VERSION
    assert (doc.status, doc.error) == ("complete", None)
    assert [r.status for r in doc.runs] == ["complete"] * len(before["runs"])
    assert all(r.error is None for r in doc.runs)
    # Nothing else changes: the measurements are the ones the file holds.
    assert [r.metrics.to_dict() for r in doc.runs] == [r["metrics"] for r in before["runs"]]


def test_a_version_2_run_that_recorded_an_error_reads_as_failed() -> None:
    # `bench run` on a malformed file exited 1 but wrote this like any other result.
    src = FIXTURES / "v2_failed_run.json"
    before = json.loads(src.read_text())
    assert before["runs"][0]["metrics"]["errors"]
    doc = load(src)
    assert doc.status == doc.runs[0].status == "failed"
    assert doc.error is not None and "malformed XML" in doc.error
    assert doc.error == doc.runs[0].error
    assert not doc.runs[0].is_measurement


@pytest.mark.parametrize(("name", "strategies"), [("v2_run", {"per-batch"}),
                                                  ("sweep_grid", {"per-batch", "pooled"})])
def test_pooling_of_older_files_reads_as_the_connection_strategy(
        name: str, strategies: set[str]) -> None:
    """``pooling`` on/off becomes ``connection`` pooled/per-batch wherever a configuration
    or a label names it; no ``pooling`` is left behind."""
    src = FIXTURES / f"{name}.json"
    before = json.loads(src.read_text())
    doc = load(src)
    assert {r.config.connection for r in doc.runs} == strategies
    assert [r.config.connection for r in doc.runs] == [
        {"on": "pooled", "off": "per-batch"}[r["config"]["pooling"]] for r in before["runs"]]
    assert list(doc.runs[0].config.to_dict()).index("connection") == \
        list(before["runs"][0]["config"]).index("pooling")  # in its place: labels keep order
    raw = doc.to_dict()
    for section in ("config", "runs", "summary"):
        text = json.dumps(raw.get(section))
        assert '"pooling"' not in text and "pooling=" not in text, section
    if isinstance(doc, SweepDocument):
        config, summary = doc.config, doc.summary
        assert config.dimensions["connection"] == ["per-batch", "pooled"]
        assert config.baseline == "workers=2,batch=1000,connection=per-batch"
        assert {c["connection"] for c in config.configurations} == strategies
        assert summary is not None and summary.best is not None
        assert summary.dimensions == ["batch_size", "workers", "connection"]
        assert summary.best.label == "batch_size=1000, workers=4, connection=per-batch"
        assert summary.rows[1].config == {"batch_size": 50, "workers": 1,
                                          "connection": "pooled"}
    else:
        assert isinstance(doc, RunDocument) and doc.config.connection == "per-batch"


def test_every_fixture_of_an_older_version_upgrades_to_statuses() -> None:
    for src in RESULT_FIXTURES:
        doc = load(src)
        assert doc.schema_version == SCHEMA_VERSION, src.name
        assert doc.status in ("complete", "failed"), src.name
        assert all(r.status in ("complete", "failed") for r in doc.runs), src.name


def test_newer_and_foreign_files_are_refused_with_the_file_name(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    write_json_atomic(newer, {"schema": "migration-bench/result", "schema_version": 99})
    with pytest.raises(ResultFileError, match=r"newer\.json: schema version 99 is newer"):
        load(newer)
    other = tmp_path / "other.json"
    other.write_text('{"benchmarks": []}')
    with pytest.raises(ResultFileError, match="not a migration-bench result file"):
        load(other)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"schema": "migration-bench/result"})[:20])
    with pytest.raises(ResultFileError, match="truncated or corrupted"):
        load(cut)


@pytest.mark.parametrize("command", [["report"], ["compare"]])
def test_a_reader_given_a_newer_version_fails_with_one_clear_line(
        tmp_path: Path, command: list[str]) -> None:
    doc = read_raw(FIXTURES / "v2_run.json")
    newer = tmp_path / "newer" / "result.json"
    write_json_atomic(newer, {**doc, "schema_version": SCHEMA_VERSION + 1,
                              "added_by_a_newer_tool": {"x": 1}})
    args = [*command, str(newer.parent)]
    if command == ["compare"]:
        args.append(str(FIXTURES / "v2_run.json"))
    else:
        args += ["--out", str(tmp_path / "r.html")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert str(newer) in lines[0]
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this tool understands " \
           f"({SCHEMA_VERSION}); upgrade migration-bench" in lines[0]


def test_a_value_of_the_wrong_type_is_named_with_its_place(tmp_path: Path) -> None:
    doc = read_raw(FIXTURES / "v2_sweep.json")
    doc["runs"][3]["metrics"]["throughput_rec_per_min"] = "fast"
    write_json_atomic(tmp_path / "result.json", doc)
    with pytest.raises(ResultFileError) as info:
        load(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'result.json'}: malformed sweep result: "
                               "runs[3].metrics.throughput_rec_per_min: expected a number, "
                               'found "fast"')


def test_keys_a_newer_tool_added_are_kept(tmp_path: Path) -> None:
    doc = read_raw(FIXTURES / "v2_run.json")
    doc["runs"][0]["added"] = [1, 2]
    doc["added"] = {"nested": True}
    doc["runs"][0]["config"]["pool_size"] = 4
    typed = parse(doc)
    assert typed.runs[0].setting("pool_size") == 4
    assert typed.runs[0].config.connection == "per-batch"
    assert json.loads(save(typed, tmp_path / "r.json").read_text()) == doc


def test_a_written_run_has_no_schedule_keys_and_a_sweeps_run_has_them() -> None:
    alone = Run(config=RunConfig(batch_size=100), status="complete")
    assert not {"order_index", "round", "config_index", "warmup", "rerun", "host",
                "verdicts"} & alone.to_dict().keys()
    warmup = Run(config_index=1, warmup=True, sequence=0)
    assert {k: warmup.to_dict()[k] for k in ("order_index", "round", "config_index",
                                             "warmup", "sequence")} == \
        {"order_index": None, "round": None, "config_index": 1, "warmup": True, "sequence": 0}
    assert "rerun" not in warmup.to_dict()


def test_a_new_document_is_typed_and_written_by_this_version(tmp_path: Path) -> None:
    run = {"config": {"batch_size": 100}, "metrics": {"throughput_rec_per_min": 900.0}}
    doc = build_result("run", config={"batch_size": 100}, environment={"host": "h"},
                       runs=[run])
    assert isinstance(doc, RunDocument) and doc.tool.version
    assert doc.config.batch_size == 100 and doc.runs[0].throughput == 900.0
    assert load(write_result(tmp_path, doc)) == doc
    with pytest.raises(ValueError, match="status must be one of"):
        build_result("run", config={}, environment={}, runs=[], status="done")


def test_counted_runs_leave_out_warmups_failures_and_replaced_runs() -> None:
    def run(order: int | None, round_: int | None, config: int, **more: object) -> Run:
        return Run.from_dict({"order_index": order, "round": round_, "config_index": config,
                              "sequence": order if order is not None else -1, **more})

    runs = [run(None, None, 0, warmup=True), run(0, 0, 0), run(1, 0, 1, status="failed"),
            run(2, 0, 1), run(3, 0, 0, rerun=True), run(4, 1, 1)]
    kept = counted_runs(runs)
    assert [(r.round, r.config_index, r.order_index) for r in kept] == \
        [(0, 1, 2), (0, 0, 3), (1, 1, 4)]


def test_what_bench_run_writes_is_fully_declared(tmp_path: Path) -> None:
    """Every key `bench run` writes into a run, its settings and its metrics is a field of
    the model (a setting added to the runner without its field would land in ``unknown``),
    and every sweep dimension is one of the run's settings."""
    import datasets
    from bench.runner import RunRequest, execute_run
    from migrator.settings import SWEPT

    datasets.generate(tmp_path / "data", 60, seed=3)
    outcome = execute_run(RunRequest(inputs=[str(tmp_path / "data")], batch_size=25,
                                     out=tmp_path / "r"))
    doc = load(outcome.result_file)
    assert isinstance(doc, RunDocument) and doc == outcome.document
    (run,) = doc.runs
    assert (run.unknown, run.config.unknown, run.metrics.unknown, doc.config.unknown) == \
        ({}, {}, {}, {})
    assert run.samples is not None and run.samples.unknown == {}
    assert {s.name for s in SWEPT} <= {f for f in run.config.to_dict()}
    assert run.metrics.records_read == 60 and run.config.batch_size == 25
