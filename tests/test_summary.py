"""The sweep summary on synthetic sweeps, starting with the seed's own story."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from reports.summary import (
    BaselineError,
    ConfigValue,
    SweepSummary,
    format_change,
    format_p,
    parse_baseline,
    resolve_baseline,
    summarize_sweep,
)

Results = list[tuple[Mapping[str, ConfigValue], Sequence[float]]]

# Relative run-to-run noise of five repeats, ±1.2%: the median sample is exactly the target.
NOISE = (-0.012, 0.008, 0.0, -0.005, 0.011)
SIZES = (50, 100, 200, 500, 1000, 2000)


def runs(median: float, noise: Sequence[float] = NOISE) -> list[float]:
    return [median * (1 + d) for d in noise]


def noisy_runs(median: float, cv: float, n: int, seed: int) -> list[float]:
    return list(median * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def seed_sweep() -> Results:
    """The seed notes: 50..2000, 1000 optimal and flat beyond, 959.5 rec/min with 4 workers,
    588.7 with 2 workers at the same batch size (+63%)."""
    curves = {
        2: {50: 200.0, 100: 300.0, 200: 420.0, 500: 530.0, 1000: 588.7, 2000: 585.0},
        4: {50: 310.0, 100: 470.0, 200: 640.0, 500: 850.0, 1000: 959.5, 2000: 957.0},
    }
    results: Results = []
    for workers, curve in curves.items():
        for size, median in curve.items():
            # A different run order for 2000, so it is not a scaled copy of 1000.
            noise = NOISE[::-1] if size == 2000 else NOISE
            results.append(({"batch_size": size, "workers": workers}, runs(median, noise)))
    return results


@pytest.fixture(scope="module")
def seed_summary() -> SweepSummary:
    # Computed once: every test below reads the same immutable summary.
    return summarize_sweep(seed_sweep(), baseline="workers=2,batch=1000")


def row(summary: SweepSummary, **config: ConfigValue) -> int:
    return next(i for i, r in enumerate(summary.rows) if dict(r.config) == config)


def test_seed_story(seed_summary: SweepSummary) -> None:
    summary = seed_summary
    assert summary.dimensions == ("batch_size", "workers")
    assert summary.baseline.label == "batch_size=1000, workers=2"
    assert summary.baseline.vs_baseline_text == "baseline"

    headline = summary.rows[row(summary, batch_size=1000, workers=4)]
    assert headline.stats.median == pytest.approx(959.5)
    assert headline.vs_baseline_text == "+63% vs workers=2 (p=0.008)"
    assert headline.vs_baseline is not None and headline.vs_baseline.verdict == "-"

    best = summary.best
    assert best.label == "batch_size=1000, workers=4"
    assert best.runner_up_label == "batch_size=2000, workers=4"
    # "flat beyond": 2000 is within the noise, so 1000 is best but not significantly.
    assert not best.significantly_better
    assert best.tied_with == ("batch_size=2000, workers=4",)
    assert "not significantly better than the runner-up batch_size=2000, workers=4" in (
        best.sentence
    )

    knees = {k.group_label: k for k in summary.knees}
    assert set(knees) == {"workers=2", "workers=4"}
    assert knees["workers=4"].knee_batch_size == 1000
    assert knees["workers=4"].kind == "knee"
    assert knees["workers=4"].sentence == "diminishing returns beyond 1000 (workers=4)"
    assert knees["workers=4"].within_noise == (1000, 2000)
    assert knees["workers=2"].knee_batch_size == 1000

    json.dumps(summary.to_dict(), allow_nan=False)


def test_rows_name_only_the_dimensions_that_differ(seed_summary: SweepSummary) -> None:
    texts = {r.label: r.vs_baseline_text for r in seed_summary.rows}
    assert texts["batch_size=2000, workers=4"].endswith("vs batch_size=1000, workers=2 (p=0.008)")
    assert texts["batch_size=2000, workers=2"].startswith("-0.6% vs batch_size=1000 (not signif")


def test_default_baseline_is_the_first_grid_point() -> None:
    summary = summarize_sweep(seed_sweep())
    assert summary.baseline_index == 0
    assert summary.rows[0].is_baseline and summary.rows[0].vs_baseline is None
    assert sum(r.is_baseline for r in summary.rows) == 1


def test_clear_winner_is_significantly_better() -> None:
    results: Results = [
        ({"workers": 1}, runs(500.0)),
        ({"workers": 2}, runs(800.0)),
        ({"workers": 4}, runs(960.0)),
    ]
    best = summarize_sweep(results).best
    assert best.label == "workers=4"
    assert best.significantly_better
    assert best.tied_with == ()
    assert best.sentence.endswith(
        "significantly better than the runner-up workers=2 (+20%, p=0.008)"
    )


def test_ties_are_not_significantly_better() -> None:
    same = runs(700.0)
    results: Results = [({"pooling": "off"}, same), ({"pooling": "on"}, list(same))]
    best = summarize_sweep(results).best
    assert best.label == "pooling=off"  # equal medians: grid order decides, deterministically
    assert not best.significantly_better
    assert best.vs_runner_up is not None and best.vs_runner_up.mannwhitney_p == 1.0
    assert "treat them as tied" in best.sentence


def test_knee_on_a_monotone_plateau() -> None:
    curve = {100: 200.0, 200: 400.0, 500: 800.0, 1000: 1000.0, 2000: 1004.0, 5000: 1008.0}
    results: Results = [
        ({"batch_size": b}, runs(m, NOISE[i:] + NOISE[:i]))
        for i, (b, m) in enumerate(curve.items())
    ]
    (knee,) = summarize_sweep(results).knees
    assert knee.best_batch_size == 5000  # the nominal best, by a hair
    assert knee.knee_batch_size == 1000
    assert knee.within_noise == (1000, 2000, 5000)
    assert knee.group_label == "" and knee.sentence == "diminishing returns beyond 1000"


def test_knee_when_a_larger_batch_is_worse_again() -> None:
    curve = {50: 300.0, 100: 600.0, 200: 900.0, 500: 1000.0, 1000: 880.0, 2000: 700.0}
    (knee,) = summarize_sweep([({"batch_size": b}, runs(m)) for b, m in curve.items()]).knees
    assert (knee.best_batch_size, knee.knee_batch_size, knee.kind) == (500, 500, "knee")


def test_flat_curve() -> None:
    rng_runs = [
        ({"batch_size": b}, runs(1000.0, NOISE[i:] + NOISE[:i])) for i, b in enumerate(SIZES)
    ]
    (knee,) = summarize_sweep(rng_runs).knees
    assert (knee.kind, knee.knee_batch_size) == ("flat", 50)
    assert knee.sentence.startswith("no measurable effect of batch size")


def test_still_rising_curve() -> None:
    curve = [({"batch_size": b}, runs(100.0 * (i + 1))) for i, b in enumerate(SIZES)]
    (knee,) = summarize_sweep(curve).knees
    assert (knee.kind, knee.knee_batch_size) == ("still_rising", 2000)
    assert "extend the range" in knee.sentence


def test_knee_with_three_repeats_relies_on_the_ci() -> None:
    # 3 vs 3 runs can never be significant, yet 500 is plainly below 1000: the CI condition
    # keeps the knee from collapsing to the smallest batch size.
    three = (-0.01, 0.0, 0.01)
    curve = {50: 300.0, 100: 500.0, 500: 850.0, 1000: 960.0, 2000: 958.0}
    summary = summarize_sweep([({"batch_size": b}, runs(m, three)) for b, m in curve.items()])
    (knee,) = summary.knees
    assert knee.knee_batch_size == 1000
    assert summary.warnings[0].startswith("with 3 run(s) per configuration no difference can be")
    assert "at least 4 times" in summary.warnings[0]


def test_noise_is_reported_not_ranked() -> None:
    # CV 20% and five repeats: a 5% difference in medians is not a finding.
    results: Results = [
        ({"workers": 2}, noisy_runs(600.0, 0.20, 5, seed=1)),
        ({"workers": 4}, noisy_runs(630.0, 0.20, 5, seed=2)),
    ]
    summary = summarize_sweep(results)
    other = summary.rows[1]
    assert other.vs_baseline is not None and not other.vs_baseline.significant
    assert "not significant" in other.vs_baseline_text
    assert not summary.best.significantly_better
    assert any("high variation" in w for w in summary.warnings)


def test_identical_warnings_are_reported_once(seed_summary: SweepSummary) -> None:
    too_few = [w for w in seed_summary.warnings if "too few repeats" in w]
    assert len(too_few) == 1 and too_few[0].startswith("all configurations: ")


def test_lower_is_better_for_times() -> None:
    results: Results = [
        ({"batch_size": b}, runs(m))
        for b, m in {100: 0.30, 500: 0.12, 1000: 0.10, 2000: 0.1002}.items()
    ]
    summary = summarize_sweep(results, higher_is_better=False, unit="ms/record")
    assert summary.best.label == "batch_size=1000"
    (knee,) = summary.knees
    assert knee.knee_batch_size == 1000
    assert summary.rows[2].vs_baseline_text.startswith("-67% vs batch_size=100 (p=0.008)")
    assert summary.rows[2].vs_baseline is not None
    assert summary.rows[2].vs_baseline.verdict == "-"


def test_single_configuration_and_single_run() -> None:
    summary = summarize_sweep([({"batch_size": 1000}, [959.5])])
    assert summary.best.sentence.endswith("the only configuration")
    assert summary.knees == ()
    json.dumps(summary.to_dict(), allow_nan=False)
    one_run = summarize_sweep([({"batch_size": 100}, [5.0]), ({"batch_size": 200}, [6.0])])
    assert one_run.knees[0].kind == "undetermined"
    json.dumps(one_run.to_dict(), allow_nan=False)


def test_no_batch_dimension_no_knee() -> None:
    assert summarize_sweep([({"workers": 1}, runs(1.0)), ({"workers": 2}, runs(2.0))]).knees == ()


def test_inconsistent_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        summarize_sweep([({"workers": 1}, [1.0]), ({"workers": 1}, [2.0])])
    with pytest.raises(ValueError, match="does not have the dimensions"):
        summarize_sweep([({"workers": 1}, [1.0]), ({"pooling": "on"}, [2.0])])
    with pytest.raises(ValueError):
        summarize_sweep([])


# --------------------------------------------------------------------------- baseline


def test_parse_baseline_aliases() -> None:
    dims = ["batch_size", "workers", "insert_method"]
    assert parse_baseline("workers=2,batch=1000", dims) == {"workers": "2", "batch_size": "1000"}
    assert parse_baseline(" Batch-Size = 500 , insert-method=copy", dims) == {
        "batch_size": "500",
        "insert_method": "copy",
    }
    assert parse_baseline("anything=1") == {"anything": "1"}  # no dimensions: no check


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads=2", "unknown dimension 'threads'; dimensions of this sweep: batch_size, workers"),
        ("workers", "'workers' is not DIM=VALUE"),
        ("workers=", "'workers=' is not DIM=VALUE"),
        ("", "empty"),
        ("batch=1,batch_size=2", "dimension 'batch_size' given twice"),
    ],
)
def test_parse_baseline_errors(text: str, message: str) -> None:
    with pytest.raises(BaselineError, match=message):
        parse_baseline(text, ["batch_size", "workers"])


def test_resolve_baseline_matches_typed_values() -> None:
    configs: list[Mapping[str, ConfigValue]] = [
        {"batch_size": 1000, "pooling": "off", "fast": True},
        {"batch_size": 1000, "pooling": "on", "fast": True},
        {"batch_size": 2000, "pooling": "on", "fast": False},
    ]
    assert resolve_baseline({"pooling": "ON", "batch_size": "1000"}, configs) == 1
    assert resolve_baseline({"batch_size": "2e3"}, configs) == 2
    assert resolve_baseline({"fast": "off"}, configs) == 2
    with pytest.raises(BaselineError, match="matches 2 configurations; also give pooling"):
        resolve_baseline({"batch_size": "1000"}, configs)
    with pytest.raises(BaselineError, match="values in this sweep: batch_size: 1000, 2000"):
        resolve_baseline({"batch_size": "500"}, configs)
    with pytest.raises(BaselineError, match="unknown dimension 'workers'"):
        resolve_baseline({"workers": "2"}, configs)


def test_summarize_reports_bad_baseline() -> None:
    with pytest.raises(BaselineError, match="dimensions of this sweep: batch_size, workers"):
        summarize_sweep(seed_sweep(), baseline="threads=2")


def test_formatting() -> None:
    assert format_change(959.5 / 588.7 - 1) == "+63%"
    assert format_change(-0.0998) == "-10%"
    assert format_change(0.021) == "+2.1%"
    assert format_change(None) == "n/a"
    assert format_p(2 / 252) == "p=0.008"
    assert format_p(0.0001) == "p<0.001"
    assert format_p(None) == "p=n/a"


def test_probes_attribute_spread_to_the_machine_without_moving_medians() -> None:
    speed = (1.0, 0.86, 1.1, 0.92, 1.16, 0.95)
    results: Results = [({"batch_size": b}, [m * s for s in speed])
                        for b, m in ((100, 180_000.0), (1000, 240_000.0))]
    probes = [[2.0 / s for s in speed], [2.0 / s for s in speed]]
    with_probe = summarize_sweep(results, probes=probes)
    without = summarize_sweep(results)
    for a, b in zip(with_probe.rows, without.rows, strict=True):
        assert a.stats == b.stats and a.vs_baseline == b.vs_baseline  # raw statistics
        assert a.machine is not None and a.machine.adjusted_cv == pytest.approx(0, abs=1e-9)
        assert b.machine is None
    assert with_probe.best.index == without.best.index == 1
    doc = with_probe.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["rows"][1]["machine_noise"]["explained"] == pytest.approx(1.0)
    assert any("the machine's speed explains it" in w for w in with_probe.warnings)
    assert not any("machine" in w for w in without.warnings)
    # A configuration without probes (an old result file) just goes without.
    partial = summarize_sweep(results, probes=[probes[0], None])
    assert partial.rows[0].machine is not None and partial.rows[1].machine is None
