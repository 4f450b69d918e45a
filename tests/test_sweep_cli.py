"""`bench sweep` end to end on the embedded SQLite default: result files, pyperf, resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyperf
import pytest
from typer.testing import CliRunner

from bench import runner as bench_runner
from bench.cli import app
from bench.store import STORE_NAME, read_store
from reports.results import SCHEMA_VERSION

cli = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def _flat(output: str) -> str:
    """The output as one line, without the frame rich draws around usage errors."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())
REAL_EXECUTE_RUN: Callable[..., Any] = bench_runner.execute_run


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))


def _slots(doc: dict[str, Any]) -> list[tuple[int, int]]:
    return sorted((r["round"], r["config_index"]) for r in doc["runs"] if not r["warmup"])


def test_tiny_sweep_writes_result_pyperf_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = cli.invoke(app, ["sweep", "--batch-sizes", "50,200", "--records", "300",
                              "--repeat", "2", "--seed", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["measured_runs"] == 4 and printed["configurations"] == 2
    summary = printed["summary"]
    for key in ("rows", "best", "knees", "warnings", "baseline_label", "best_bottleneck"):
        assert key in summary
    assert [r["label"] for r in summary["rows"]] == ["batch_size=50", "batch_size=200"]
    assert summary["baseline_label"] == "batch_size=50"  # default: the first grid point
    assert all(r["stats"]["n"] == 2 for r in summary["rows"])
    assert any("no difference can be significant" in w for w in summary["warnings"])

    doc = json.loads((out / "result.json").read_text())
    assert doc["kind"] == "sweep" and doc["schema_version"] == SCHEMA_VERSION
    assert doc["config"]["configurations"] == [{"batch_size": 50}, {"batch_size": 200}]
    assert doc["config"]["seed"] == 3 and len(doc["config"]["order"]) == 4
    assert doc["environment"]["dataset"]["records"] == 300
    measured = [r for r in doc["runs"] if not r["warmup"]]
    assert len(doc["runs"]) == 5 and doc["runs"][0]["warmup"]  # 1 warm-up by default
    assert _slots(doc) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(r["order_index"] for r in measured) == [0, 1, 2, 3]
    # the run order recorded is the order the runs happened in
    assert [[r["round"], r["config_index"]] for r in measured] == doc["config"]["order"]
    for run in measured:
        assert run["config"]["batch_size"] == [50, 200][run["config_index"]]
        assert run["metrics"]["records_read"] == 300 and run["reconciliation"]["ok"]
        assert run["metrics"]["throughput_rec_per_min"] > 0
        assert 0 < run["metrics"]["read_map_cpu_s"] < run["metrics"]["elapsed_s"]
    # every row says how much of its spread the machine's own speed explains
    for row in summary["rows"]:
        machine = row["machine_noise"]
        assert machine is None or set(machine) == {"probe_cv", "elasticity", "adjusted_cv",
                                                   "explained"}
    assert not (out / "work").exists()  # scratch databases are removed

    suite = pyperf.BenchmarkSuite.load(str(out / "pyperf.json"))
    assert sorted(suite.get_benchmark_names()) == ["batch_size=200", "batch_size=50"]
    bench50 = suite.get_benchmark("batch_size=50")
    expected = sorted(r["metrics"]["elapsed_s"] / 300 for r in measured
                      if r["config_index"] == 0)
    assert sorted(bench50.get_values()) == pytest.approx(expected)
    assert bench50.get_unit() == "second"


def test_human_output_shows_table_best_knee_and_baseline(tmp_path: Path) -> None:
    result = cli.invoke(app, ["sweep", "-b", "50,200", "-n", "300", "-r", "2", "--warmup", "0",
                              "--baseline", "batch=200", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith("use batch size ")  # the recommendation comes first
    assert lines[1].startswith("best: batch_size=")
    assert lines[2].startswith("noise: ") and lines[3].startswith("fixed design: 2 rounds")
    assert "2 configuration(s), runs paired within rounds" in out
    assert "median" in out and "CI of median" in out and "rounds" in out and "CV" in out
    assert "vs best [95% CI]" in out
    assert "vs baseline batch_size=200" in out  # the chosen baseline
    assert "baseline" in out and "result: " in out


@pytest.mark.parametrize(("args", "words"), [
    (["--batch-sizes", "2000..50"], "empty range"),
    (["--batch-sizes", "fifty"], "accepted forms"),
    (["--workers", "1..4:0"], "step must be > 0"),
    (["--pooling", "maybe"], "allowed: on, off"),
    (["--pipeline", "async"], "allowed: off, thread, process"),
    (["--baseline", "wrkers=2"], "unknown dimension 'wrkers'"),
    (["--baseline", "batch=999"], "no configuration has"),
    (["--records", "10", "--input", "x.xml"], "exclude each other"),
    (["--repeat", "0"], "--repeat"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    result = cli.invoke(app, ["sweep", "-b", "50,100", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert words in _flat(result.output)  # rich may wrap the panel
    assert not (tmp_path / "o").exists()


def test_operational_errors_exit_1_naming_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / STORE_NAME).write_text("")
    result = cli.invoke(app, ["sweep", "-b", "50", "-n", "50", "--out", str(out)])
    assert result.exit_code == 1 and "already holds a sweep" in result.output
    result = cli.invoke(app, ["sweep", "--resume", "--out", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no such sweep store" in result.output
    result = cli.invoke(app, ["sweep", "-b", "50", "-i", str(tmp_path / "missing.xml"),
                              "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "missing.xml" in result.output


def _counting(monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None
              ) -> list[Any]:
    """Wrap execute_run: count calls; raise KeyboardInterrupt on call ``fail_after + 1``."""
    real = REAL_EXECUTE_RUN
    calls: list[Any] = []

    def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append(request)
        return real(request, *args, **kwargs)

    monkeypatch.setattr(bench_runner, "execute_run", wrapped)
    return calls


def test_interrupted_sweep_resumes_with_only_the_missing_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    argv = ["sweep", "-b", "50,100,200", "-n", "200", "-r", "2", "--seed", "11",
            "--out", str(out)]
    _counting(monkeypatch, fail_after=4)  # the warm-up and 3 measured runs, then Ctrl-C
    result = cli.invoke(app, argv)
    assert result.exit_code == 130, result.output
    assert "interrupted after 3 of 6 runs" in result.output
    assert "bench sweep --resume --out" in result.output
    before = read_store(out / STORE_NAME)
    assert len(before.measured_runs()) == 3 and not (out / "result.json").exists()

    # a crash mid-write leaves a partial line: it is reported and its run is redone
    with open(out / STORE_NAME, "ab") as f:
        f.write(b'{"type":"run","run":{"order_index":3,')
    calls = _counting(monkeypatch)
    result = cli.invoke(app, ["sweep", "--resume", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert "incomplete" in result.output and STORE_NAME in result.output
    assert len(calls) == 1 + 3  # one warm-up for the new process, then the 3 missing runs
    doc = json.loads((out / "result.json").read_text())
    assert _slots(doc) == [(r, c) for r in range(2) for c in range(3)]  # none lost or repeated
    kept = {(r.round, r.config_index): r.started for r in before.measured_runs()}
    for run in doc["runs"]:
        if not run["warmup"] and (run["round"], run["config_index"]) in kept:
            assert run["started"] == kept[(run["round"], run["config_index"])]


def test_resume_can_add_repeats_but_not_change_the_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    assert cli.invoke(app, ["sweep", "-b", "50,100", "-n", "100", "-r", "1", "--warmup", "0",
                            "--out", str(out)]).exit_code == 0
    (out / "result.json").unlink()
    result = cli.invoke(app, ["sweep", "--resume", "-b", "50,200", "-n", "99", "--out", str(out)])
    text = _flat(result.output)
    assert result.exit_code == 2 and "options differ" in text and "--records 99" in text
    calls = _counting(monkeypatch)
    result = cli.invoke(app, ["sweep", "--resume", "--repeat", "2", "--warmup", "0",
                              "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2  # only round 2
    doc = json.loads((out / "result.json").read_text())
    assert doc["config"]["repeat"] == 2 and _slots(doc) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        # not `-m bench.cli`: that runs cli.py as __main__, apart from the registered app
        [sys.executable, "-c", "from bench.cli import main; main()", "sweep", "-b", "50,100",
         "-n", "600", "-r", "3", "--warmup", "0", "--seed", "5", "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = out / STORE_NAME
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and store.read_bytes().count(b'"type":"run"') >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = read_store(store)
    done = before.done_slots()
    assert 2 <= len(done) < 6, "the sweep finished before it could be killed"
    result = cli.invoke(app, ["sweep", "--resume", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "result.json").read_text())
    assert _slots(doc) == [(r, c) for r in range(3) for c in range(2)]


# ---- budgeted sweeps --------------------------------------------------------------------------

def test_budgeted_sweep_races_and_says_why_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = cli.invoke(app, ["sweep", "-b", "50,2000", "-n", "300", "--budget", "6s",
                              "--seed", "4", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["budget_s"] == 6.0 and printed["repeat"] is None
    summary = printed["summary"]
    assert summary["analysis"] == "paired within rounds"
    design = summary["design"]
    assert design["mode"] == "budget" and design["budget_s"] == 6.0
    assert design["stop_reason"] in ("budget", "one_remains", "equivalent")
    assert design["rounds"] >= 2 and design["spent_s"] > 0
    assert summary["lines"][0].startswith("use batch size ")
    assert summary["lines"][-1].startswith(f"stopped after {design['rounds']} rounds")
    assert "rounds per configuration: 50: " in summary["lines"][-1]
    assert summary["noise"]["mde_rounds"] >= 2
    doc = json.loads((out / "result.json").read_text())
    measured = [r for r in doc["runs"] if not r["warmup"]]
    assert doc["config"]["budget_s"] == 6.0 and doc["config"]["sweep_id"]
    assert [[r["round"], r["config_index"]] for r in measured] == doc["config"]["order"]
    for run in measured:
        host = run["host"]
        assert {"others_share", "steal_share", "busy_share", "disturbed"} <= set(host)
        assert run["slot_s"] >= run["wall_s"] > 0
    # Rounds are complete until the race drops a configuration.
    per_round: dict[int, set[int]] = {}
    for run in measured:
        per_round.setdefault(run["round"], set()).add(run["config_index"])
    assert sorted(per_round) == list(range(design["rounds"]))


@pytest.mark.parametrize(("args", "words"), [
    (["--budget", "2m", "--repeat", "3"], "--budget and --repeat exclude each other"),
    (["--budget", "soon"], "--budget: 'soon' is not a duration"),
    (["--budget", "0"], "is not a duration > 0"),
    (["--noise-band", "lots"], "--noise-band: 'lots' is not a percentage"),
    (["--noise-band", "80%"], "is not a noise band"),
])
def test_budget_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    result = cli.invoke(app, ["sweep", "-b", "50,100", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert words in _flat(result.output)
    assert not (tmp_path / "o").exists()


def test_a_disturbed_run_is_rerun_once_in_its_round(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import noise_gate

    calls: list[int] = []

    def second_measured_run_only(host: Any) -> bool:
        calls.append(1)
        return len(calls) == 3  # the warm-up, one measured run, then this one

    monkeypatch.setattr(noise_gate, "disturbed", second_measured_run_only)
    out = tmp_path / "g"
    result = cli.invoke(app, ["sweep", "-b", "50,200", "-n", "200", "--budget", "4s",
                              "--seed", "2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    design = json.loads(result.stdout)["summary"]["design"]
    assert design["disturbed"] == 1 and design["reruns"] == 1
    doc = json.loads((out / "result.json").read_text())
    measured = [r for r in doc["runs"] if not r["warmup"]]
    flagged = next(r for r in measured if r["host"]["disturbed"])
    again = [r for r in measured if r.get("rerun")]
    assert len(again) == 1
    assert (again[0]["round"], again[0]["config_index"]) == \
        (flagged["round"], flagged["config_index"])
    assert again[0]["sequence"] > flagged["sequence"]
    # The re-run replaces the disturbed run: one value per configuration and round.
    rows = json.loads(result.stdout)["summary"]["rows"]
    assert sum(r["stats"]["n"] for r in rows) == len(measured) - 1


def test_interrupted_budgeted_sweep_resumes_its_race(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    argv = ["sweep", "-b", "50,100,200", "-n", "200", "--budget", "5s", "--seed", "9",
            "--out", str(out)]
    _counting(monkeypatch, fail_after=5)
    result = cli.invoke(app, argv)
    assert result.exit_code == 130, result.output
    assert "interrupted after 4 runs" in result.output
    before = read_store(out / STORE_NAME)
    calls = _counting(monkeypatch)
    result = cli.invoke(app, ["sweep", "--resume", "--out", str(out), "--budget", "6s",
                              "--json"])
    assert result.exit_code == 0, result.output
    assert len(calls) > 1
    doc = json.loads((out / "result.json").read_text())
    assert doc["config"]["budget_s"] == 6.0  # a resumed budget may grow
    measured = [r for r in doc["runs"] if not r["warmup"]]
    slots = [(r["round"], r["config_index"]) for r in measured if not r.get("rerun")]
    assert len(slots) == len(set(slots))  # nothing run twice
    kept = {(r.round, r.config_index) for r in before.measured_runs()}
    assert kept <= set(slots)
    # The first round was finished in its own shuffled order.
    first = [r["config_index"] for r in measured if r["round"] == 0 and not r.get("rerun")]
    assert sorted(first) == [0, 1, 2]


def test_a_recent_calibration_forecasts_the_budget(tmp_path: Path, cache: Path) -> None:
    from bench.calibrate import Calibration, store_calibration, target_display

    cal = Calibration(created="now", created_unix=time.time() - 600, host=_hostname(),
                      target=target_display(None), records=300, batch_size=1000, pairs=30,
                      duration_s=60.0, run_s=0.2, raw_cv=0.3, log_ratio_sd=0.2,
                      paired_noise=0.2 / 2**0.5, noise_band=0.02, aa={}, different=False,
                      mde={}, rounds_for_5pct=None, minutes_for_5pct=None)
    store_calibration(cal, None, root=cache)
    result = cli.invoke(app, ["sweep", "-b", "50,100,200", "-n", "300", "--budget", "3s",
                              "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert "calibration of 10 min ago (this host and target)" in result.output
    assert "rounds of all 3 configurations" in result.output
    assert "a 5% difference needs about" in result.output


def _hostname() -> str:
    import socket

    return socket.gethostname()
