"""`bench calibrate`: the A/A run end to end, its statistics, the stored calibration and the
forecast a sweep makes from it."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.calibrate import (
    Calibration,
    analyse,
    calibration_path,
    calibration_plan,
    forecast,
    load_recent,
    store_calibration,
    target_display,
)
from bench.cli import app
from reports.results import Run

cli = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def _flat(output: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cal-cache")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    return cache


def test_calibrate_json_reports_noise_verdict_and_mde(tmp_path: Path) -> None:
    out = tmp_path / "c"
    result = cli.invoke(app, ["calibrate", "--duration", "5", "--records", "200",
                              "--seed", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "calibrate" and doc["pairs"] >= 2
    assert set(doc["mde"]) == {"1m", "5m", "15m"}
    one, five, fifteen = (doc["mde"][k] for k in ("1m", "5m", "15m"))
    assert one is not None and five is not None and fifteen is not None
    assert one >= five >= fifteen > 0.02  # more time, smaller differences; never the band
    assert doc["paired_noise"] > 0 and doc["run_s"] > 0
    assert doc["aa"]["paired"] is True and doc["aa"]["n"] == doc["pairs"]
    assert doc["different"] is doc["aa"]["significant"]
    assert doc["verdict"].startswith("A/A verdict: ")
    stored = Path(doc["stored"])
    assert stored.is_file() and json.loads(stored.read_text())["pairs"] == doc["pairs"]
    result_doc = json.loads((out / "result.json").read_text())
    assert result_doc["kind"] == "calibrate"
    runs = [r for r in result_doc["runs"] if not r["warmup"]]
    labels = {(r["round"], r["config"]["label"]) for r in runs}
    for round_ in {r["round"] for r in runs}:
        if round_ < doc["pairs"]:
            assert {(round_, "A"), (round_, "B")} <= labels  # each pair has both labels
    assert all(r["config"]["batch_size"] == 1000 for r in runs)
    # The labels are not dimensions: the runner ran the one configuration under both.
    assert {r["config"]["label"] for r in runs} == {"A", "B"}


def test_calibrate_human_output_and_the_sweep_it_informs(tmp_path: Path) -> None:
    result = cli.invoke(app, ["calibrate", "--duration", "4", "--records", "200",
                              "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "A/A calibration: batch_size=1000 under labels A and B" in out
    assert re.search(r"noise: [\d.]+% per run once runs are paired", out)
    assert "A/A verdict: " in out
    assert re.search(r"1 min [\d.]+% · 5 min [\d.]+% · 15 min [\d.]+%", out)
    assert "stored for `bench sweep` on this host and target" in out
    # A sweep of the same host and target now says up front what its budget can resolve.
    result = cli.invoke(app, ["sweep", "-b", "50,200", "-n", "200", "--budget", "2s",
                              "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "calibration of under a minute ago (this host and target)" in result.output
    # Two configurations of one calibration compare paired, by label.
    result = cli.invoke(app, ["compare", str(tmp_path / "c"), "--a", "label=A", "--b",
                              "label=B", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["analysis"] == "paired within rounds"


@pytest.mark.parametrize(("args", "words"), [
    (["--duration", "soon"], "--duration: 'soon' is not a duration"),
    (["--noise-band", "x"], "--noise-band: 'x' is not a percentage"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_calibrate_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    result = cli.invoke(app, ["calibrate", *args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert words in _flat(result.output)


def _runs(pairs: list[tuple[float, float]], seconds: float = 0.5) -> list[Run]:
    runs: list[Run] = []
    for r, (a, b) in enumerate(pairs):
        for c, value in ((0, a), (1, b)):
            runs.append(Run.from_dict({"round": r, "config_index": c, "order_index": len(runs),
                                       "sequence": len(runs), "warmup": False,
                                       "slot_s": seconds,
                                       "metrics": {"throughput_rec_per_min": value}}))
    return runs


def _plan(duration: float = 60.0) -> Any:
    return calibration_plan(duration_s=duration, batch_size=500, warmup=1, seed=1,
                            inputs=["d"], target=None, mapping=None,
                            dataset={"records": 5000}, noise_band=0.02)


def test_analysis_of_an_a_a_run() -> None:
    # The host swings by ±40% between pairs; within a pair the two labels agree to ~1%.
    pairs = [(1000 * f, 1000 * f * (1 + 0.01 * math.sin(7 * r)))
             for r, f in enumerate([1.0, 1.4, 0.6, 1.2, 0.8, 1.1, 0.9, 1.3, 0.7, 1.0,
                                    1.25, 0.75, 1.05, 0.95, 1.15, 0.85])]
    cal = analyse(_plan(), _runs(pairs), now=1_000_000.0)
    assert cal.pairs == 16 and cal.run_s == 0.5 and cal.batch_size == 500
    assert cal.raw_cv is not None and cal.raw_cv > 0.2
    assert cal.paired_noise is not None and cal.paired_noise < 0.01
    assert not cal.different and cal.aa["outcome"] == "equivalent"
    # 1 minute of 0.5 s runs is 60 pairs: the MDE there is the band plus a sliver.
    assert cal.mde["1m"] is not None and 0.02 < cal.mde["1m"] < 0.025
    assert cal.rounds_for_5pct is not None and cal.rounds_for_5pct < 60
    assert cal.records == 5000 and cal.target == target_display(None)
    with pytest.raises(Exception, match="complete pair"):
        analyse(_plan(), _runs(pairs[:1]))


def test_stored_calibrations_are_found_by_host_and_target_while_recent(tmp_path: Path) -> None:
    cal = analyse(_plan(), _runs([(1000.0, 1010.0), (900.0, 905.0), (1100.0, 1090.0)]),
                  now=time.time() - 3600)
    path = store_calibration(cal, None, root=tmp_path)
    assert path == calibration_path(None, root=tmp_path)
    assert load_recent(None, root=tmp_path) == cal
    assert load_recent("sqlite:/elsewhere.db", root=tmp_path) is None  # another target
    assert load_recent(None, root=tmp_path, max_age_s=60) is None  # too old
    path.write_text("{not json")
    assert load_recent(None, root=tmp_path) is None
    secret = "odbc:Driver={PostgreSQL Unicode};Server=h;Uid=u;Pwd=hunter2"
    assert "hunter2" not in target_display(secret)


def test_forecast_from_a_calibration() -> None:
    cal = Calibration(created="", created_unix=0.0, host="h", target="t", records=5000,
                      batch_size=1000, pairs=30, duration_s=60.0, run_s=1.0, raw_cv=0.3,
                      log_ratio_sd=0.1, paired_noise=0.1 / math.sqrt(2), noise_band=0.02,
                      aa={}, different=False, mde={}, rounds_for_5pct=None,
                      minutes_for_5pct=None)
    six = forecast(cal, configs=6, budget_s=300.0, records=5000, now=600.0)
    assert six.rounds_all == 50 and six.rounds_two == 150
    assert six.mde_two is not None and six.mde_all is not None and six.mde_two < six.mde_all
    assert six.resolves_5pct  # 150 rounds of 0.1 log-ratio sd: about 4.3%
    text = six.sentence(6)
    assert text.startswith("calibration of 10 min ago (this host and target)")
    assert "about 50 rounds of all 6 configurations" in text and "about 150 once" in text
    assert "it can resolve a 5% difference" in text
    # Twice the records, twice the run time: half the rounds.
    assert forecast(cal, configs=2, budget_s=300.0, records=10000).rounds_all == 75
    short = forecast(cal, configs=6, budget_s=30.0, records=5000)
    assert not short.resolves_5pct
    assert "a 5% difference needs about" in short.sentence(6)
