"""`bench compare`: matching, markers, exit codes and JSON, on synthetic result files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.compare import compare_results, parse_threshold
from bench.results import build_result, write_result

cli = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def _flat(output: str) -> str:
    """The output as one line, without the frame rich draws around usage errors."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())

BASE = [1000.0, 1010.0, 990.0, 1005.0, 995.0, 1002.0]


def _scaled(factor: float) -> list[float]:
    return [v * factor for v in BASE]


def _write(folder: Path, groups: list[tuple[dict[str, Any], list[float]]],
           kind: str = "sweep") -> Path:
    """A result file as `bench sweep` writes it, with these throughputs (run order)."""
    runs = []
    order = 0
    for index, (config, values) in enumerate(groups):
        for round_, value in enumerate(values):
            runs.append({"order_index": order, "round": round_, "config_index": index,
                         "warmup": False, "config": config,
                         "metrics": {"throughput_rec_per_min": value, "records_read": 1000,
                                     "elapsed_s": 60_000 / value}})
            order += 1
    runs.append({**runs[0], "warmup": True, "order_index": None,
                 "metrics": {"throughput_rec_per_min": 1.0}})  # must be ignored
    doc = build_result(kind, config={"configurations": [c for c, _ in groups]},
                       environment={}, runs=runs)
    write_result(folder, doc)
    return folder


def _pair(tmp_path: Path, factor: float, configs: int = 2) -> tuple[Path, Path]:
    a = [({"batch_size": 100 * (i + 1)}, _scaled(1.0 + i)) for i in range(configs)]
    b = [({"batch_size": 100 * (i + 1)}, _scaled((1.0 + i) * factor)) for i in range(configs)]
    return _write(tmp_path / "a", a), _write(tmp_path / "b", b)


@pytest.mark.parametrize(("factor", "code", "marker"), [
    (0.70, 1, "+"),   # 30% slower, significant: a regression
    (1.00, 0, "~"),   # identical
    (1.30, 0, "-"),   # 30% faster
    (0.98, 0, " "),   # significant but within the 5% threshold
])
def test_exit_code_and_marker(tmp_path: Path, factor: float, code: int, marker: str) -> None:
    a, b = _pair(tmp_path, factor)
    result = cli.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert [r["marker"] for r in doc["rows"]] == [marker, marker]
    assert doc["exit_code"] == code and doc["regressions"] == (2 if code else 0)
    assert doc["geometric_mean_change"] == pytest.approx(factor - 1, abs=1e-9)
    for row in doc["rows"]:
        assert row["n_a"] == row["n_b"] == 6  # the warm-up run is left out
        assert row["mannwhitney_p"] is not None and "meaning" in row


def test_threshold_decides_what_counts_as_a_regression(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, 0.70)
    assert cli.invoke(app, ["compare", str(a), str(b), "--threshold", "50%"]).exit_code == 0
    assert cli.invoke(app, ["compare", str(a), str(b), "--fail-on-regression", "10"]
                      ).exit_code == 1
    assert parse_threshold("5%") == parse_threshold("5") == pytest.approx(0.05)


def test_human_output_has_markers_table_and_sentence(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, 0.70)
    result = cli.invoke(app, ["compare", str(a / "result.json"), str(b)])
    assert result.exit_code == 1
    out = result.stdout
    assert "+  batch_size=100" in out and "-30%" in out and "p=0.002" in out
    assert "2 significant regression(s) beyond 5%" in out
    assert "markers: + significantly worse" in out


def test_few_runs_are_never_called_significant(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [({"batch_size": 100}, [1000.0, 1001.0])])
    b = _write(tmp_path / "b", [({"batch_size": 100}, [500.0, 501.0])])
    report = compare_results(a, b)
    assert report.rows[0].marker == "~" and report.exit_code == 0
    assert report.rows[0].comparison.underpowered


def test_configurations_match_on_shared_dimensions(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [({"batch_size": 100}, BASE), ({"batch_size": 200}, BASE),
                                ({"batch_size": 500}, BASE)])
    b = _write(tmp_path / "b", [({"batch_size": 200, "workers": 2}, BASE),
                                ({"batch_size": 100, "workers": 2}, _scaled(0.5)),
                                ({"batch_size": 1000, "workers": 2}, BASE)])
    report = compare_results(a, b)
    assert [(r.label, r.marker) for r in report.rows] == [("batch_size=100", "+"),
                                                          ("batch_size=200", "~")]
    assert report.only_in_a == ("batch_size=500",)
    assert report.only_in_b == ("batch_size=1000, workers=2",)


def test_two_single_configuration_files_compare_directly(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [({"batch_size": 1000, "workers": 2}, BASE)], kind="baseline")
    b = _write(tmp_path / "b", [({"batch_size": 1000, "workers": 4}, _scaled(1.63))],
               kind="baseline")
    report = compare_results(a, b)
    assert report.rows[0].label == "batch_size=1000, workers=2 → batch_size=1000, workers=4"
    assert report.rows[0].marker == "-"
    assert report.rows[0].comparison.change == pytest.approx(0.63)


def test_a_bench_run_result_compares_as_one_sample(tmp_path: Path) -> None:
    run = {"config": {"batch_size": 100, "resume": False},
           "metrics": {"throughput_rec_per_min": 900.0}}
    write_result(tmp_path / "r", build_result("run", config={}, environment={}, runs=[run]))
    a = _write(tmp_path / "a", [({"batch_size": 100}, BASE)])
    report = compare_results(a, tmp_path / "r")
    assert report.rows[0].marker == "~" and report.rows[0].comparison.n_b == 1


@pytest.mark.parametrize(("setup", "words"), [
    ("missing", "no such result file"),
    ("garbage", "not a valid result file"),
    ("kind", "a result of kind 'report' has no throughput samples"),
    ("malformed", "malformed sweep result"),
    ("disjoint", "no configuration in common"),
    ("interrupted", "has no result.json yet"),
])
def test_result_file_problems_exit_1_naming_the_file(tmp_path: Path, setup: str,
                                                     words: str) -> None:
    a = _write(tmp_path / "a", [({"batch_size": 100}, BASE), ({"batch_size": 200}, BASE)])
    b = tmp_path / "b"
    b.mkdir()
    if setup == "garbage":
        (b / "result.json").write_text('{"schema": "migration-bench/res')
    elif setup == "kind":
        write_result(b, build_result("report", config={}, environment={}, runs=[]))
    elif setup == "malformed":
        write_result(b, build_result("sweep", config={}, environment={}, runs=[]))
    elif setup == "disjoint":
        _write(b, [({"batch_size": 300}, BASE), ({"batch_size": 400}, BASE)])
    elif setup == "interrupted":
        (b / "runs.jsonl").write_text("")
    result = cli.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 1, result.output
    text = _flat(result.output)
    assert words in text and str(b) in text
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "words"), [
    (["--threshold", "lots"], "not a percentage"),
    (["--threshold", "-5%"], "must be a percentage"),
    (["--alpha", "0"], "--alpha"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    a, b = _pair(tmp_path, 1.0)
    result = cli.invoke(app, ["compare", str(a), str(b), *args])
    assert result.exit_code == 2, result.output
    assert words in _flat(result.output)


# ---- paired comparisons within one sweep; different datasets ----------------------------------

#: A host whose speed swings by ±40% from round to round.
HOST = [1.0, 1.4, 0.6, 1.3, 0.7, 1.2, 0.8, 1.1, 0.9, 1.25]


def _sweep_with_rounds(folder: Path, factor: float, *, sweep_id: str = "s1",
                       dataset: dict[str, Any] | None = None) -> Path:
    """A sweep of two batch sizes run in rounds on the swinging host; the second is
    ``factor`` times the first within every round."""
    runs = []
    for round_, speed in enumerate(HOST):
        for index, value in ((0, 1000.0 * speed), (1, 1000.0 * speed * factor *
                                                   (1 + 0.002 * (-1) ** round_))):
            runs.append({"order_index": len(runs), "round": round_, "config_index": index,
                         "warmup": False, "sequence": len(runs),
                         "config": {"batch_size": [100, 200][index]},
                         "metrics": {"throughput_rec_per_min": value}})
    doc = build_result("sweep", config={"configurations": [{"batch_size": 100},
                                                           {"batch_size": 200}],
                                        "sweep_id": sweep_id},
                       environment={"dataset": dataset or {"records": 5000, "files": 1}},
                       runs=runs)
    write_result(folder, doc)
    return folder


def test_two_configurations_of_one_sweep_compare_paired(tmp_path: Path) -> None:
    sweep = _sweep_with_rounds(tmp_path / "s", 1.06)
    result = cli.invoke(app, ["compare", str(sweep), "--a", "batch=100", "--b", "batch=200",
                              "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["analysis"] == "paired within rounds"
    (row,) = doc["rows"]
    assert row["marker"] == "-" and row["paired"] and row["n"] == len(HOST)
    assert row["change"] == pytest.approx(0.06, abs=0.003)
    # The same runs pooled: the host's swings hide the 6%.
    pooled = compare_results(sweep, sweep, select_a="batch=100", select_b="batch=200")
    assert pooled.paired  # same file: still paired
    from reports.stats import compare as unpaired

    values = json.loads((sweep / "result.json").read_text())["runs"]
    a = [r["metrics"]["throughput_rec_per_min"] for r in values if r["config_index"] == 0]
    b = [r["metrics"]["throughput_rec_per_min"] for r in values if r["config_index"] == 1]
    assert not unpaired(a, b).significant
    human = cli.invoke(app, ["compare", str(sweep), "--a", "batch=100", "--b", "batch=200"])
    assert "signed-rank (paired)" in human.stdout and "(paired within rounds)" in human.stdout


def test_equivalent_within_the_band_gets_its_own_marker(tmp_path: Path) -> None:
    sweep = _sweep_with_rounds(tmp_path / "s", 1.005)
    report = compare_results(sweep, select_a="batch=100", select_b="batch=200")
    assert report.rows[0].marker == "=" and report.exit_code == 0


def test_runs_of_separate_sweeps_are_not_paired(tmp_path: Path) -> None:
    a = _sweep_with_rounds(tmp_path / "a", 1.0, sweep_id="one")
    b = _sweep_with_rounds(tmp_path / "b", 1.0, sweep_id="two")
    report = compare_results(a, b)
    assert not report.paired and report.to_dict()["analysis"] == "unpaired"


def test_different_datasets_are_warned_about_not_compared(tmp_path: Path) -> None:
    a = _sweep_with_rounds(tmp_path / "a", 1.0, sweep_id="one",
                           dataset={"records": 5000, "files": 1, "invalid_rate": 0.0})
    b = _sweep_with_rounds(tmp_path / "b", 0.5, sweep_id="two",
                           dataset={"records": 20000, "files": 4, "invalid_rate": 0.0})
    result = cli.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output  # no regression is claimed
    doc = json.loads(result.stdout)
    assert not doc["comparable"] and doc["regressions"] == 0
    assert doc["dataset_differences"] == ["records 5,000 vs 20,000", "files 1 vs 4"]
    assert {r["marker"] for r in doc["rows"]} == {"?"}
    assert doc["geometric_mean_change"] is None
    human = cli.invoke(app, ["compare", str(a), str(b)])
    text = _flat(human.output)
    assert "A and B ran different datasets (records 5,000 vs 20,000; files 1 vs 4)" in text
    assert "not compared: different datasets" in text


def test_mapping_fingerprints_must_match(tmp_path: Path) -> None:
    a = _sweep_with_rounds(tmp_path / "a", 1.0, sweep_id="one")
    b = _sweep_with_rounds(tmp_path / "b", 1.0, sweep_id="two")
    for folder, fingerprint in ((a, "aaaa1111"), (b, "bbbb2222")):
        doc = json.loads((folder / "result.json").read_text())
        doc["environment"]["mapping"] = {"source": "m.toml", "fingerprint": fingerprint}
        (folder / "result.json").write_text(json.dumps(doc))
    report = compare_results(a, b)
    assert report.dataset_differences == ("mapping aaaa1111 vs bbbb2222",)


def test_selection_errors_name_the_file_and_the_option(tmp_path: Path) -> None:
    sweep = _sweep_with_rounds(tmp_path / "s", 1.0)
    result = cli.invoke(app, ["compare", str(sweep), "--a", "batch=300", "--b", "batch=200"])
    assert result.exit_code == 1
    assert "--a: no configuration has batch_size=300" in _flat(result.output)
    result = cli.invoke(app, ["compare", str(sweep)])
    assert result.exit_code == 2 and "give B, or --a and --b" in _flat(result.output)
