"""The sweep result store: append, read back, resume, and a crash's truncated last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.store import STORE_NAME, RunStore, read_store, runs_in_order
from reports.results import Environment, ResultFileError, Run

PLAN = {"kind": "sweep", "dimensions": {"batch_size": [50, 100]}, "repeat": 2}


def _run(order_index: int | None, round_: int | None, config_index: int,
         warmup: bool = False) -> Run:
    return Run.from_dict({"order_index": order_index, "round": round_,
                          "config_index": config_index, "warmup": warmup,
                          "metrics": {"throughput_rec_per_min": 1000.0 + config_index}})


def _store_with_runs(tmp_path: Path, n: int) -> RunStore:
    store = RunStore(tmp_path / "s")
    store.open(resume=False)
    store.write_plan(PLAN)
    store.write_environment(Environment(host="h"))
    store.append_run(_run(None, None, 1, warmup=True))
    for k in range(n):
        store.append_run(_run(k, k // 2, k % 2))
    return store


def test_append_and_read_back(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 3)
    got = read_store(store.path)
    assert got.plan == PLAN and got.environment == Environment(host="h")
    assert got.runs == store.contents.runs  # what was written is what is read
    assert len(got.runs) == 4 and len(got.measured_runs()) == 3
    assert got.done_slots() == {(0, 0), (0, 1), (1, 0)}
    assert got.truncated is None
    assert got.good_bytes == store.path.stat().st_size
    # one JSON object per line, every line complete
    lines = store.path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["plan", "environment"] + ["run"] * 4


def test_runs_in_order_puts_warmups_first_then_schedule_order(tmp_path: Path) -> None:
    runs = [_run(2, 1, 0), _run(None, None, 1, warmup=True), _run(0, 0, 1), _run(1, 0, 0)]
    assert [r.order_index for r in runs_in_order(runs)] == [None, 0, 1, 2]


def test_a_second_sweep_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 1)
    with pytest.raises(ResultFileError, match=r"already holds a sweep.*--resume"):
        RunStore(store.run_dir).open(resume=False)


def test_resume_of_a_missing_or_empty_store_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match=f"{tmp_path}.*{STORE_NAME}: no such sweep store"):
        RunStore(tmp_path).open(resume=True)
    (tmp_path / STORE_NAME).write_text("")
    with pytest.raises(ResultFileError, match="empty sweep store"):
        RunStore(tmp_path).open(resume=True)


@pytest.mark.parametrize("cut", [1, 17, -2])
def test_a_truncated_last_line_is_reported_and_dropped(tmp_path: Path, cut: int) -> None:
    store = _store_with_runs(tmp_path, 3)
    data = store.path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    store.path.write_bytes(data[: last_start + cut] if cut > 0 else data[:cut])
    got = read_store(store.path)
    assert got.truncated is not None
    assert str(store.path) in got.truncated and "incomplete" in got.truncated
    assert "kept the 2 complete run(s)" in got.truncated
    assert len(got.measured_runs()) == 2 and got.good_bytes == last_start


def test_a_torn_line_that_ends_in_a_newline_is_also_dropped(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 2)
    with open(store.path, "ab") as f:
        f.write(b'{"type": "run", "run": {"order\n')
    got = read_store(store.path)
    assert got.truncated is not None and len(got.measured_runs()) == 2


def test_resume_cuts_the_partial_line_before_appending(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 3)
    with open(store.path, "ab") as f:
        f.write(b'{"type":"run","run":{"order_ind')  # killed mid-write
    resumed = RunStore(store.run_dir)
    contents = resumed.open(resume=True)
    assert contents.truncated and len(contents.measured_runs()) == 3
    resumed.append_run(_run(3, 1, 1))
    again = read_store(store.path)
    assert again.truncated is None
    assert again.done_slots() == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_damage_before_the_last_line_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 3)
    lines = store.path.read_bytes().split(b"\n")
    lines[3] = b"garbage"
    store.path.write_bytes(b"\n".join(lines))
    with pytest.raises(ResultFileError, match=rf"{STORE_NAME}: line 4 is not a valid store"):
        read_store(store.path)


def test_a_store_from_another_format_or_without_plan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    path.write_text(json.dumps({"type": "plan", "format": 99, "plan": {}}) + "\n")
    with pytest.raises(ResultFileError, match="store format 99"):
        read_store(path)
    path.write_text(json.dumps({"type": "run", "run": {}}) + "\n")
    with pytest.raises(ResultFileError, match="line 1: a run before any plan"):
        read_store(path)


def test_a_later_plan_record_supersedes_the_first(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 1)
    store.write_plan({**PLAN, "repeat": 5})
    assert read_store(store.path).plan == {**PLAN, "repeat": 5}


def test_non_finite_numbers_are_stored_as_null(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 0)
    run = _run(0, 0, 0)
    run.metrics.throughput_rec_per_min = float("nan")
    store.append_run(run)
    assert read_store(store.path).runs[-1].throughput is None


def test_a_run_of_the_wrong_shape_names_the_line(tmp_path: Path) -> None:
    store = _store_with_runs(tmp_path, 1)
    with open(store.path, "a") as f:
        f.write(json.dumps({"type": "run", "run": {"metrics": {"errors": "boom"}}}) + "\n")
    with pytest.raises(ResultFileError, match=rf"{STORE_NAME}: line 5: run\.metrics\.errors: "
                                              "expected a list"):
        read_store(store.path)


def test_a_sweep_over_pooling_stored_by_an_older_version_resumes_as_connection(
        tmp_path: Path) -> None:
    """A store written before the connection strategy swept ``pooling`` on/off: its plan
    and runs read back in today's terms, so ``--resume`` matches them to the grid."""
    from bench.sweep import SweepPlan

    old = {"kind": "sweep", "dimensions": {"batch_size": [50], "pooling": ["on", "off"]},
           "repeat": 2, "warmup": 0, "seed": 1, "inputs": ["d"],
           "baseline": "pooling=off",
           "configurations": [{"batch_size": 50, "pooling": "on"},
                              {"batch_size": 50, "pooling": "off"}]}
    store = RunStore(tmp_path / "s")
    store.open(resume=False)
    store.write_plan(old)
    with open(store.path, "a") as f:  # (a run as that version wrote it)
        f.write(json.dumps({"type": "run", "run": {**_run(0, 0, 1).to_dict(), "config": {
            "batch_size": 50, "pooling": "off"}}}) + "\n")
    got = read_store(store.path)
    assert got.plan is not None
    plan = SweepPlan.from_dict(got.plan)
    assert plan.dimensions == {"batch_size": [50], "connection": ["pooled", "per-batch"]}
    assert plan.configurations == [{"batch_size": 50, "connection": "pooled"},
                                   {"batch_size": 50, "connection": "per-batch"}]
    assert plan.baseline == "connection=per-batch"
    assert got.runs[0].config.to_dict() == {"batch_size": 50, "connection": "per-batch"}
