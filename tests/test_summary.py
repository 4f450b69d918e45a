"""The sweep summary on synthetic sweeps, starting with the SQL Server Express case."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from reports.summary import (
    BaselineError,
    ConfigValue,
    SweepDesign,
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
    """The SQL Server Express case: 50..2000, 1000 optimal and flat beyond, 959.5 rec/min
    with 4 workers, 588.7 with 2 workers at the same batch size (+63%)."""
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
    # --pooling's spelling names the connection strategy it stands for
    dims = ["workers", "connection"]
    assert parse_baseline("pooling=on,workers=2", dims) == {"connection": "pooled",
                                                            "workers": "2"}
    assert parse_baseline("connection=OFF", dims) == {"connection": "per-batch"}
    assert parse_baseline("connection=persistent", dims) == {"connection": "persistent"}


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


# --------------------------------------------------------------------------- paired rounds


def paired_sweep(curve: Mapping[int, float], rounds: int = 30, jitter: float = 0.0015,
                 seed: int = 11, host_cv: float = 0.4) -> tuple[Results, list[list[int]]]:
    """Batch sizes with these true throughputs, run in rounds on a host whose speed swings
    by ``host_cv`` between rounds; ``jitter`` is each run's own noise."""
    rng = np.random.default_rng(seed)
    host = np.exp(rng.normal(0, host_cv, rounds))
    results: Results = []
    for size, value in curve.items():
        runs_ = value * host * np.exp(rng.normal(0, jitter, rounds))
        results.append(({"batch_size": size}, list(runs_)))
    return results, [list(range(rounds))] * len(curve)


SEED_CURVE = {50: 472_000.0, 100: 548_000.0, 200: 600_000.0, 500: 635_200.0,
              1000: 640_000.0, 2000: 646_850.0}


def test_paired_summary_recommends_the_knee_first() -> None:
    results, rounds = paired_sweep(SEED_CURVE)
    summary = summarize_sweep(results, rounds=rounds)
    assert summary.paired
    assert summary.recommendation == ("use batch size 500: within 1.8% of the best (2000); "
                                      "batch size 50 costs 27%")
    assert summary.lines[0] == summary.recommendation
    assert summary.lines[1].startswith("best: batch_size=2000 (")
    assert "equivalent within ±2%: batch_size=500, batch_size=1000" in summary.lines[1]
    assert "significantly worse: batch_size=50, batch_size=100, batch_size=200" in \
        summary.lines[1]
    assert summary.lines[2].startswith("noise: 0.")  # the host's 40% swings paired away
    assert "mostly the host's drift, which pairing cancels" in summary.lines[2]
    (knee,) = summary.knees
    assert (knee.kind, knee.knee_batch_size, knee.best_batch_size) == ("knee", 500, 2000)
    assert knee.within_noise == (500, 1000, 2000)
    assert knee.knee_change == pytest.approx(-0.018, abs=0.001)
    # Per-configuration warnings are consolidated into the noise line.
    assert not any("high variation" in w for w in summary.warnings)
    assert summary.effects["batch_size"].significant
    json.dumps(summary.to_dict(), allow_nan=False)


def test_paired_rows_compare_with_baseline_and_best_holm_corrected() -> None:
    results, rounds = paired_sweep(SEED_CURVE)
    summary = summarize_sweep(results, rounds=rounds, baseline="batch=200")
    base = summary.rows[2]
    assert base.is_baseline and base.vs_baseline_text == "baseline"
    row = summary.rows[5]
    assert row.vs_baseline is not None and row.vs_baseline.outcome == "better"
    assert row.vs_baseline_text.startswith("+7.8% vs batch_size=200 (CI +7")
    assert row.vs_best_text == "best" and row.rounds == 30
    fifty = summary.rows[0].vs_best
    assert fifty is not None and fifty.outcome == "worse"
    assert fifty.p_adjusted is not None and fifty.p_value is not None
    # vs best is the plain comparison; the family (best vs each) used for ties is Holm's.
    best = summary.best
    assert best.vs_runner_up is not None and best.vs_runner_up.p_adjusted is not None
    assert best.vs_runner_up.p_adjusted >= best.vs_runner_up.p_value  # type: ignore[operator]
    assert best.equivalent_to == ("batch_size=1000", "batch_size=500")  # best first


def test_paired_knee_names_what_is_still_undecided() -> None:
    # Noisier runs: 500 (1.8% below) can no longer be told from the band's edge.
    results, rounds = paired_sweep(SEED_CURVE, jitter=0.02)
    summary = summarize_sweep(results, rounds=rounds)
    (knee,) = summary.knees
    assert 500 in knee.undecided
    assert knee.kind in ("knee", "still_rising", "undetermined")
    if knee.knee_batch_size is not None and knee.knee_batch_size > 500:
        assert "500 undecided" in knee.sentence


def test_paired_flat_and_rising_curves() -> None:
    flat, rounds = paired_sweep({b: 1000.0 for b in SIZES}, jitter=0.001)
    (knee,) = summarize_sweep(flat, rounds=rounds).knees
    assert (knee.kind, knee.knee_batch_size) == ("flat", 50)
    summary = summarize_sweep(flat, rounds=rounds)
    assert summary.recommendation.startswith("use batch size 50: within ")
    rising, rounds = paired_sweep({b: 100.0 * (i + 1) for i, b in enumerate(SIZES)})
    summary = summarize_sweep(rising, rounds=rounds)
    (knee,) = summary.knees
    assert (knee.kind, knee.knee_batch_size) == ("still_rising", 2000)
    assert summary.recommendation.startswith("use batch size 2000: 20% faster than the "
                                             "runner-up (1000)")


def test_paired_ties_are_said_to_be_ties() -> None:
    results, rounds = paired_sweep({1: 1000.0, 2: 1001.0}, jitter=0.03, rounds=12)
    summary = summarize_sweep([({"workers": c["batch_size"]}, v) for c, v in results],
                              rounds=rounds)
    assert not summary.best.significantly_better
    assert "not separable from the runner-up" in summary.best.sentence or \
        "equivalent to the runner-up" in summary.best.sentence
    assert summary.recommendation.startswith("use workers 2 (the best measured;") or \
        summary.recommendation.startswith("use workers 1 (the best measured;")


def test_design_line_says_why_the_race_stopped() -> None:
    results, rounds = paired_sweep(SEED_CURVE)
    rounds[0] = rounds[0][:10]  # batch size 50 was dropped after 10 rounds
    results[0] = (results[0][0], list(results[0][1])[:10])
    design = SweepDesign("budget", 30, stop_reason="equivalent",
                         stop_text="the leaders are equivalent within the noise band",
                         budget_s=300.0, spent_s=131.6, eliminated={0: 10}, disturbed=3,
                         reruns=2)
    summary = summarize_sweep(results, rounds=rounds, design=design)
    assert summary.lines[3] == (
        "stopped after 30 rounds, 2m12s of a 5m budget: the leaders are equivalent within "
        "the noise band; rounds per configuration: 50: 10, 100: 30, 200: 30, 500: 30, "
        "1000: 30, 2000: 30")
    assert "3 run(s) disturbed by other processes, 2 re-run" in summary.lines[2]
    assert summary.rows[0].eliminated_at == 10 and summary.rows[0].rounds == 10
    assert summary.to_dict()["design"]["eliminated"] == {"0": 10}
    fixed = summarize_sweep(results, rounds=rounds, design=SweepDesign("fixed", 30))
    assert fixed.lines[3].startswith("fixed design: 30 rounds (rounds per configuration: 50:")


def test_unpaired_summary_has_its_own_headline() -> None:
    summary = summarize_sweep(seed_sweep(), baseline="workers=2,batch=1000")
    assert not summary.paired
    assert summary.lines[0].startswith("use batch_size=1000, workers=4")
    assert summary.lines[-1].startswith("noise: CV ") and "unpaired" in summary.lines[-1]


def test_a_level_shift_that_changes_the_difference_is_not_called_harmless() -> None:
    """Under a contended host the difference itself can change: 10% before the shift, 40%
    after. The summary shows both and says the ratio changed, not that it is unaffected."""
    rng = np.random.default_rng(12)
    host = np.r_[np.ones(15), np.full(15, 0.4)] * np.exp(rng.normal(0, 0.01, 30))
    gain = np.r_[np.full(15, 1.10), np.full(15, 1.40)] * np.exp(rng.normal(0, 0.01, 30))
    results: Results = [({"batch_size": 200}, list(1000 * host)),
                        ({"batch_size": 2000}, list(1000 * host * gain))]
    summary = summarize_sweep(results, rounds=[list(range(30))] * 2)
    shift = summary.noise.level_shift if summary.noise else None
    assert shift is not None and shift.significant and shift.round == 15
    assert shift.paired_consistent is False
    assert shift.paired_before == pytest.approx(0.10, abs=0.01)
    assert shift.paired_after == pytest.approx(0.40, abs=0.02)
    warning = next(w for w in summary.warnings if "changed speed" in w)
    assert "the difference itself changed with the host's state" in warning
    assert "unaffected" not in warning
    assert "(changed with the host's state)" in summary.lines[2]


def test_a_single_unlabelled_run_warns_without_an_empty_label() -> None:
    from reports.summary import summarize_sweep

    summary = summarize_sweep([({}, [1000.0])])
    assert summary.warnings, "a single run must be warned about"
    assert all(not w.startswith(":") and not w.startswith(" ") for w in summary.warnings), \
        summary.warnings
    assert any(w.startswith("a single run:") for w in summary.warnings), summary.warnings
