"""`bench baseline`: statistics of one configuration, its result file, and compare on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.baseline import summarize_baseline
from bench.cli import app
from reports.results import Run
from reports.stats import describe

cli = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def _flat(output: str) -> str:
    """The output as one line, without the frame rich draws around usage errors."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def _runs(values: list[float]) -> list[Run]:
    return [Run.from_dict({"metrics": {"throughput_rec_per_min": v, "records_read": 600,
                                       "elapsed_s": 600 * 60 / v}}) for v in values]


def test_summary_statistics_match_the_stats_module() -> None:
    values = [950.0, 960.0, 940.0, 955.0, 965.0, 945.0, 958.0, 952.0, 948.0, 961.0]
    summary = summarize_baseline("prod", {"batch_size": 1000, "workers": 4}, _runs(values))
    assert summary.stats == describe(values)
    assert summary.label == "batch_size=1000, workers=4"
    assert summary.seconds_per_record.median == pytest.approx(60 / summary.stats.median,
                                                              rel=1e-3)
    assert summary.stats.ci_confidence is not None and summary.stats.ci_confidence >= 0.95
    assert not summary.drift.significant and summary.repeats_needed is not None
    assert summary.warnings == ()
    doc = summary.to_dict()
    for key in ("name", "config", "stats", "drift", "repeats_needed", "warnings",
                "bottleneck", "seconds_per_record"):
        assert key in doc


def test_drift_and_noise_become_warnings() -> None:
    drifting = [1000.0 - 30 * i for i in range(10)]
    summary = summarize_baseline(None, {"batch_size": 100}, _runs(drifting))
    assert summary.drift.significant
    assert any("drift across run order" in w for w in summary.warnings)
    noisy = [1000.0, 700.0, 1300.0, 800.0, 1200.0, 900.0]
    assert any("high variation" in w for w in
               summarize_baseline(None, {}, _runs(noisy)).warnings)


def test_host_speed_is_separated_from_the_configurations_own_noise() -> None:
    speed = [1.0, 0.8, 1.2, 0.9, 1.15, 0.85, 1.05, 0.95]  # the VM's, run by run
    runs = _runs([240_000.0 * s for s in speed])
    for run, s in zip(runs, speed, strict=True):
        run.metrics.read_map_cpu_s = 1.5 / s
    summary = summarize_baseline(None, {"batch_size": 1000}, runs)
    assert summary.machine is not None
    assert summary.machine.adjusted_cv == pytest.approx(0.0, abs=1e-9)
    assert summary.to_dict()["machine_noise"]["explained"] == pytest.approx(1.0)
    assert any("the machine's speed explains it" in w for w in summary.warnings)
    # result files from before the probe: no machine noise, the plain warning
    old = summarize_baseline(None, {"batch_size": 1000}, _runs([240_000.0 * s for s in speed]))
    assert old.machine is None and not any("machine" in w for w in old.warnings)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bl-cache"))


def test_baseline_end_to_end_and_compare_against_itself(tmp_path: Path) -> None:
    out = tmp_path / "bl"
    result = cli.invoke(app, ["baseline", "--iterations", "3", "--records", "200",
                              "--batch-size", "100", "--warmup", "0", "--name", "dev",
                              "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["kind"] == "baseline"
    summary = printed["summary"]
    assert summary["name"] == "dev" and summary["config"] == {"batch_size": 100}
    assert summary["stats"]["n"] == 3 and summary["stats"]["mean"] > 0
    assert "machine_noise" in summary  # (None when 3 runs give the fit no usable slope)
    doc = json.loads((out / "result.json").read_text())
    assert doc["kind"] == "baseline" and doc["config"]["configurations"] == [{"batch_size": 100}]
    assert len([r for r in doc["runs"] if not r["warmup"]]) == 3
    assert (out / "pyperf.json").exists()

    # Against itself: the same runs, paired round by round, are equivalent.
    human = cli.invoke(app, ["compare", str(out), str(out)])
    assert human.exit_code == 0, human.output
    assert "=  batch_size=100" in human.stdout


def test_baseline_human_output(tmp_path: Path) -> None:
    result = cli.invoke(app, ["baseline", "-r", "2", "-n", "200", "--warmup", "0",
                              "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("baseline: batch_size=1000, 2 runs")
    assert "median" in out and "stdev" in out and "CV" in out and "CI of median" in out
    assert "warning: " in out


@pytest.mark.parametrize(("args", "words"), [
    (["--pooling", "on,off"], "use `bench sweep` for several"),
    (["--pipeline", "warp"], "allowed: off, thread, process"),
    (["--iterations", "0"], "--iterations"),
])
def test_baseline_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    result = cli.invoke(app, ["baseline", *args, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert words in _flat(result.output)
