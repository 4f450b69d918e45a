"""Sweep planning: dimensions, the grid, the interleaved schedule, requests, the dataset cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import noise_gate, runner, sweep
from bench.ranges import RangeError
from bench.sweep import (
    RunContext,
    SweepPlan,
    build_request,
    ensure_dataset,
    expand_grid,
    majority_bottleneck,
    parse_dimensions,
    resume_conflicts,
    schedule,
    warmup_configs,
)
from migrator.connection import ConnectionStrategy
from reports.results import Run, counted_runs


def test_parse_dimensions_types_and_orders_them() -> None:
    dims = parse_dimensions({"connection": "Persistent,per-batch", "batch_size": "50..2000",
                             "workers": None, "pipeline": "process,off"})
    assert list(dims) == ["batch_size", "connection", "pipeline"]  # DIMENSIONS order
    assert dims["batch_size"] == [50, 100, 200, 500, 1000, 2000]
    assert dims["connection"] == ["persistent", "per-batch"]
    assert dims["pipeline"] == ["process", "off"]


def test_pooling_is_the_connection_dimension_under_its_old_name() -> None:
    assert parse_dimensions({"pooling": "OFF,on"}) == {"connection": ["per-batch", "pooled"]}
    # on/off are also accepted by --connection; a repeat (off = per-batch) counts once
    assert parse_dimensions({"connection": "on,per-batch,off"}) == {
        "connection": ["pooled", "per-batch"]}
    with pytest.raises(RangeError, match=r"^--pooling: 'on': --connection is given too; give "
                                         r"only --connection"):
        parse_dimensions({"connection": "pooled", "pooling": "on"})


@pytest.mark.parametrize(("given", "words"), [
    ({"batch_size": "2000..50"}, "--batch-sizes: '2000..50': empty range"),
    ({"workers": "0..4:0"}, "--workers"),
    ({"batch_size": "lots"}, "accepted forms: 50..2000 (1-2-5 series)"),
    ({"pooling": "maybe"}, "allowed: on, off"),
    ({"connection": "pool"}, "--connection: 'pool': unknown choice; allowed: per-batch, pooled, "
                             "persistent, on, off"),
    ({"pipeline": "thread,"}, "allowed: off, thread, process"),
    ({"insert_method": "bulk"}, "allowed: executemany, fast, values, copy"),
])
def test_dimension_errors_name_the_option_and_the_accepted_forms(
        given: dict[str, str], words: str) -> None:
    with pytest.raises(RangeError) as info:
        parse_dimensions(given)
    assert words in str(info.value)


def test_grid_is_the_cartesian_product_first_dimension_slowest() -> None:
    grid = expand_grid({"batch_size": [50, 100], "pooling": ["on", "off"], "workers": [1]})
    assert grid == [
        {"batch_size": 50, "pooling": "on", "workers": 1},
        {"batch_size": 50, "pooling": "off", "workers": 1},
        {"batch_size": 100, "pooling": "on", "workers": 1},
        {"batch_size": 100, "pooling": "off", "workers": 1},
    ]
    assert expand_grid({}) == [{}]
    assert len(expand_grid({"a": [1, 2, 3], "b": [1, 2], "c": ["x", "y"]})) == 12


def test_schedule_interleaves_every_configuration_once_per_round() -> None:
    slots = schedule(6, 5, seed=42)
    assert [s.order_index for s in slots] == list(range(30))
    for r in range(5):
        in_round = [s.config_index for s in slots if s.round == r]
        assert sorted(in_round) == list(range(6))
        # a round occupies one contiguous stretch of the run order
        assert [s.round for s in slots[6 * r: 6 * r + 6]] == [r] * 6
    orders = {tuple(s.config_index for s in slots if s.round == r) for r in range(5)}
    assert len(orders) > 1  # shuffled per round, not one order repeated


def test_schedule_is_reproducible_from_its_seed_and_extends_as_a_prefix() -> None:
    assert schedule(6, 3, seed=7) == schedule(6, 3, seed=7)
    assert schedule(6, 3, seed=7) != schedule(6, 3, seed=8)
    assert schedule(6, 5, seed=7)[:18] == schedule(6, 3, seed=7)  # --resume --repeat 5
    with pytest.raises(ValueError):
        schedule(0, 3, seed=1)


def test_warmups_follow_the_first_round_cycled() -> None:
    slots = schedule(3, 2, seed=1)
    first = [s.config_index for s in slots[:3]]
    assert warmup_configs(slots, 3, 0) == []
    assert warmup_configs(slots, 3, 1) == first[:1]
    assert warmup_configs(slots, 3, 4) == [*first, first[0]]


def test_plan_round_trips_and_expands_its_grid() -> None:
    plan = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 100]}, repeat=3, warmup=1,
                     seed=5, inputs=["d"])
    assert plan.configurations == [{"batch_size": 50}, {"batch_size": 100}]
    again = SweepPlan.from_dict({**plan.to_dict(), "added_by_a_newer_tool": 1})
    assert again == plan and again.slots() == plan.slots()


def test_resume_conflicts_allow_only_a_growing_repeat() -> None:
    plan = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 100]}, repeat=3, warmup=1,
                     seed=5, inputs=["d"])
    assert resume_conflicts(plan, {"repeat": 5, "seed": None, "dimensions": None}) == []
    assert resume_conflicts(plan, {"repeat": 3, "seed": 5}) == []
    problems = resume_conflicts(plan, {"repeat": 2, "seed": 6,
                                       "dimensions": {"batch_size": [50]}})
    assert len(problems) == 3 and "can only grow" in problems[0]


# ---- requests: each dimension sets its RunRequest field -----------------------------------------

def _settings(tmp_path: Path) -> RunContext:
    return RunContext(inputs=["data/"], target=None, mapping=None, work_dir=tmp_path)


def test_build_request_sets_each_dimension(tmp_path: Path) -> None:
    request = build_request({"batch_size": 200, "workers": 4, "connection": "persistent",
                             "pipeline": "thread", "insert_method": "values",
                             "label": "A"}, _settings(tmp_path))
    assert isinstance(request, runner.RunRequest)
    assert (request.batch_size, request.workers, request.connection, request.pipeline,
            request.insert_method) == (200, 4, ConnectionStrategy.PERSISTENT, "thread",
                                       "values")
    assert request.out == tmp_path and request.resume is False
    default = build_request({}, _settings(tmp_path))
    assert default.batch_size == 1000  # runner's defaults
    assert default.connection is ConnectionStrategy.PER_BATCH


def test_bottleneck_is_found_in_any_shape_and_summarised_by_majority() -> None:
    verdict = {"label": "log-io", "description": "log/commit I/O", "confidence": 0.7}

    def attributed(run: dict[str, object]) -> dict[str, object] | None:
        found = Run.from_dict(run).attributed()
        return None if found is None else found.to_dict()

    assert attributed({"bottleneck": verdict}) == verdict
    assert attributed({"verdicts": [{"kind": "bottleneck", "verdict": verdict}]}) == verdict
    assert attributed({"verdicts": [{"kind": "other"}, verdict]}) == verdict
    assert attributed({"verdicts": [], "samples": None}) is None
    runs = [Run.from_dict(r) for r in ({"bottleneck": verdict}, {"bottleneck": verdict},
                                       {"bottleneck": {**verdict, "label": "client-cpu"}}, {})]
    found = majority_bottleneck(runs)
    assert found is not None and found.to_dict() == {
        "label": "log-io", "description": "log/commit I/O", "runs": 2, "of": 4}
    assert majority_bottleneck([Run(), Run()]) is None


# ---- the default dataset cache -------------------------------------------------------------

def test_default_dataset_is_generated_once_and_reused_while_it_matches(tmp_path: Path) -> None:
    folder, generated = ensure_dataset(50, root=tmp_path)
    assert generated and folder == tmp_path / "datasets" / "orders-50-0"
    assert (folder / "manifest.json").exists()
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(50, root=tmp_path) == (folder, False)
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    # a damaged file (same size, other bytes) is noticed by its hash and regenerated
    xml = next(folder.glob("*.xml"))
    data = bytearray(xml.read_bytes())
    data[-20] ^= 1
    xml.write_bytes(bytes(data))
    assert ensure_dataset(50, root=tmp_path) == (folder, True)
    assert not list(tmp_path.glob("datasets/*.tmp-*"))
    # another size or seed is another folder
    assert ensure_dataset(60, root=tmp_path)[0].name == "orders-60-0"


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "explicit"))
    assert sweep.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("BENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sweep.cache_root() == tmp_path / "xdg" / "migration-bench"


def test_a_busy_machine_is_named_in_a_warning() -> None:
    def runs(*loads: float, workers: int = 1) -> list[Run]:
        return [Run.from_dict({"host": {"loadavg_1m": x, "cpus": 2, "cpu_s": 1.0},
                               "config": {"workers": workers}}) for x in loads]

    assert sweep.busy_host_warning(runs(0.9, 1.1, 1.5)) is None
    warning = sweep.busy_host_warning(runs(3.0, 4.6, 5.1))
    assert warning is not None
    assert "load average 4.6" in warning and "up to 5.1" in warning and "2 CPUs" in warning
    assert "about 3.6 of it not this sweep's" in warning
    # four workers on two CPUs oversubscribe the machine by themselves: not "busy"
    assert sweep.busy_host_warning(runs(4.2, 4.5, 4.4, workers=4)) is None
    assert sweep.busy_host_warning([Run(), Run.from_dict({"host": None})]) is None


def test_cpu_time_of_other_processes_is_the_preferred_evidence() -> None:
    def runs(*machine: float) -> list[Run]:
        return [Run.from_dict({"wall_s": 1.0, "host": {"loadavg_1m": 0.5, "cpus": 2,
                                                       "cpu_s": 0.98, "machine_cpu_s": m}})
                for m in machine]

    assert sweep.busy_host_warning(runs(1.0, 1.1, 1.2)) is None  # 1–11% of 2 CPUs: quiet
    warning = sweep.busy_host_warning(runs(1.7, 1.8, 1.9))
    assert warning is not None and "other processes used 41% of its CPU time" in warning
    assert "up to 46%" in warning


# ---- worker counts, the noise gate, budgeted sweeps ------------------------------------------

def test_worker_counts_expand_linearly_batch_sizes_by_the_125_series() -> None:
    dims = parse_dimensions({"workers": "1..4", "batch_size": "50..200"})
    assert dims["workers"] == [1, 2, 3, 4]
    assert dims["batch_size"] == [50, 100, 200]
    assert parse_dimensions({"workers": "1..16:x2"})["workers"] == [1, 2, 4, 8, 16]
    with pytest.raises(RangeError) as info:
        parse_dimensions({"workers": "four"})
    assert "accepted forms: 1..4 (every value)" in str(info.value)


def _mark(busy: float, steal: float, own: float) -> noise_gate.CpuMark:
    return noise_gate.CpuMark(busy, steal, own)


def test_noise_gate_flags_runs_the_host_took_over() -> None:
    start = _mark(100.0, 5.0, 10.0)
    # 2 CPUs, 1 s: our run used 0.95 s, others 0.05 s — quiet.
    quiet = noise_gate.host_load(start, _mark(101.0, 5.0, 10.95), 1.0, cpus=2)
    assert quiet["others_share"] == pytest.approx(0.025) and not quiet["disturbed"]
    # Others took 0.9 s of a saturated machine: disturbed.
    busy = noise_gate.host_load(start, _mark(101.9, 5.0, 11.0), 1.0, cpus=2)
    assert busy["others_cpu_s"] == pytest.approx(0.9) and busy["busy_share"] == 0.95
    assert busy["disturbed"]
    # The same CPU, but it was the local database server's work for this run: not others.
    served = noise_gate.host_load(start, _mark(101.9, 5.0, 11.0), 1.0, cpus=2, server_s=0.85)
    assert not served["disturbed"]
    # The hypervisor stole a fifth of the machine.
    stolen = noise_gate.host_load(start, _mark(101.4, 5.4, 11.0), 1.0, cpus=2)
    assert stolen["steal_share"] == pytest.approx(0.2) and stolen["disturbed"]
    # Without machine counters nothing is claimed.
    unknown = noise_gate.host_load(noise_gate.CpuMark(None, None, 1.0),
                                   noise_gate.CpuMark(None, None, 2.0), 1.0, cpus=2)
    assert unknown["others_share"] is None and not unknown["disturbed"]
    real = noise_gate.mark()
    assert real.busy_s is not None and real.busy_s > 0 and real.own_s > 0


def test_server_cpu_comes_from_the_runs_own_samples() -> None:
    run = Run.from_dict({"samples": {"t": [0.0, 0.5, 1.0],
                                     "metrics": {"host.dbserver.cpu_pct": [None, 40.0, 60.0]}}})
    assert noise_gate.server_cpu_seconds(run.samples, 2.0) == pytest.approx(1.0)
    assert noise_gate.server_cpu_seconds(None, 2.0) == 0.0


def _run(round_: int, config: int, order: int, value: float, *, seconds: float = 1.0,
         rerun: bool = False, sequence: int | None = None, **more: object) -> Run:
    return Run.from_dict({"round": round_, "config_index": config, "order_index": order,
                          "warmup": False, "sequence": order if sequence is None else sequence,
                          "slot_s": seconds, "rerun": rerun,
                          "metrics": {"throughput_rec_per_min": value}, **more})


def test_a_rerun_replaces_the_disturbed_run_of_its_round() -> None:
    runs = [_run(0, 0, 0, 100.0), _run(0, 1, 1, 50.0), _run(0, 0, 2, 104.0, rerun=True),
            Run.from_dict({"warmup": True, "round": None, "config_index": 0,
                           "order_index": None})]
    kept = counted_runs(runs)
    assert [(r.config_index, r.throughput) for r in kept] == [(1, 50.0), (0, 104.0)]


def test_a_resumed_race_replays_the_same_decisions() -> None:
    """Live: a race of three configurations, one clearly slower; then the same runs,
    stored, replayed — the same rounds, drops and pending work."""
    plan = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 500, 1000]}, repeat=2000,
                     warmup=1, seed=3, inputs=["d"], budget_s=1000.0)
    speed = {0: 60.0, 1: 99.0, 2: 100.0}
    live, stored, order = sweep.replay_race(plan, [])[0], [], 0
    stored.append(Run.from_dict({"warmup": True, "round": None, "config_index": 0,
                                 "slot_s": 1.0, "sequence": 0, "order_index": None}))
    live.spend(1.0)
    for round_ in range(16):
        todo = live.next_round()
        assert todo is not None
        for c in todo:
            value = speed[c] * (1 + 0.3 * math.sin(round_)) * \
                (1 + 0.03 * math.sin(7 * round_ + 2 * c))
            live.record(c, value, 1.0)
            stored.append(_run(round_, c, order, value, sequence=len(stored)))
            order += 1
        live.end_round()
    assert [e.config for e in live.eliminated()] == [0]  # dropped at the look after 10
    replayed, pending = sweep.replay_race(plan, stored)
    assert pending == [] and replayed.rounds_done == 16
    assert replayed.alive == live.alive == [1, 2]
    assert replayed.spent_s == live.spent_s
    assert [lk.to_dict() for lk in replayed.looks] == [lk.to_dict() for lk in live.looks]
    # An interrupted round: what is left of it is pending, in the round's own order.
    expected = sweep.round_order([1, 2], plan.seed, 16)
    partial = [*stored, _run(16, expected[0], order, 100.0, sequence=len(stored))]
    again, pending = sweep.replay_race(plan, partial)
    assert pending == expected[1:] and again.rounds_done == 16


def test_resume_conflicts_of_budgeted_sweeps() -> None:
    plan = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 100]}, repeat=2000,
                     warmup=1, seed=5, inputs=["d"], budget_s=300.0)
    assert resume_conflicts(plan, {"budget_s": 600.0}) == []
    assert "can only grow" in resume_conflicts(plan, {"budget_s": 60.0})[0]
    assert "races on a time budget" in resume_conflicts(plan, {"repeat": 8})[0]
    fixed = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 100]}, repeat=6,
                      warmup=1, seed=5, inputs=["d"])
    assert "fixed design of 6 repeats" in resume_conflicts(fixed, {"budget_s": 60.0})[0]
    assert resume_conflicts(plan, {"noise_band": 0.05}) == ["noise_band: stored 0.02, "
                                                            "given 0.05"]


def test_a_failed_run_is_no_measurement_in_a_replayed_race() -> None:
    """A failed run stops the sweep; resumed, its slot is still to run, and the time it
    took still counts against the budget."""
    plan = SweepPlan(kind="sweep", dimensions={"batch_size": [50, 500]}, repeat=2000,
                     warmup=0, seed=3, inputs=["d"], budget_s=100.0)
    first, second = sweep.round_order([0, 1], plan.seed, 0)
    done = _run(0, first, 0, 100.0, seconds=2.0)
    failed = _run(0, second, 1, 1.0, seconds=3.0, status="failed", error="boom")
    race, pending = sweep.replay_race(plan, [done, failed])
    assert pending == [second] and race.rounds_done == 0
    assert race.spent_s == 5.0
    assert counted_runs([done, failed]) == [done]
