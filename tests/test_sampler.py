"""The sampling framework: counters → rates, the sampling thread, warnings, JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping

import pytest

from diagnostics.sampler import (
    SERIES_FORMAT,
    CounterRates,
    InfoValue,
    SamplerUnavailable,
    SampleSeries,
    SamplingSession,
    Value,
    counter_delta,
    ratio,
    unit_of,
)


def test_counter_delta_normal_reset_and_wrap() -> None:
    assert counter_delta(100, 150) == 50
    assert counter_delta(100, 100) == 0
    # reset to zero (server restart, DBCC SQLPERF CLEAR): the new value is the increase
    assert counter_delta(5_000, 120) == 120
    # a 32-bit counter that wrapped
    assert counter_delta(2**32 - 10, 5, wrap=2**32) == 15
    # "wrapped" by more than half the range is a reset, not a wrap
    assert counter_delta(100, 5, wrap=2**32) == 5


def test_counter_rates_first_sample_gives_no_rate_and_never_negative() -> None:
    rates = CounterRates()
    assert rates.rate("x", 1_000, now=10.0) is None
    assert rates.rate("x", 1_500, now=10.5) == pytest.approx(1_000.0)
    assert rates.rate("x", 200, now=11.0) == pytest.approx(400.0)  # reset: counted from 0
    assert rates.resets == 1
    assert rates.rate("x", 200, now=11.0) is None  # no time passed
    rates.forget_missing([])
    assert rates.rate("x", 300, now=12.0) is None  # forgotten: first sample again


def test_ratio_guards_zero_ops() -> None:
    assert ratio(250, 10) == 25
    assert ratio(0, 0) is None
    assert ratio(5, 0) is None


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("host.disk.vda.write_bytes_per_s", "B/s"),
        ("server.log.flushes_per_s", "1/s"),
        ("host.cpu.core0_pct", "%"),
        ("server.log.write_latency_ms", "ms"),
        ("host.mem.available_bytes", "B"),
        ("server.wait.log_io.sessions", "sessions"),
        ("host.workers.processes", ""),
    ],
)
def test_unit_from_metric_name(name: str, unit: str) -> None:
    assert unit_of(name) == unit


class CountingSampler:
    """A cumulative counter growing by 10 per call, reported as a rate, plus a gauge."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.calls = 0
        self.opened = self.closed = False
        self.rates = CounterRates()
        self.t = 0.0

    def open(self) -> None:
        self.opened = True

    def sample(self) -> Mapping[str, Value]:
        self.calls += 1
        self.t += 1.0  # a synthetic clock: one "second" per call
        return {
            f"{self.name}.things_per_s": self.rates.rate("things", 10.0 * self.calls, self.t),
            f"{self.name}.calls": float(self.calls),
        }

    def info(self) -> Mapping[str, InfoValue]:
        return {"kind": "counting"}

    def close(self) -> None:
        self.closed = True


class BrokenSampler(CountingSampler):
    def sample(self) -> Mapping[str, Value]:
        self.calls += 1
        raise ConnectionError("server went away")


class UnavailableSampler(CountingSampler):
    def open(self) -> None:
        raise SamplerUnavailable("needs VIEW SERVER STATE")


class GatedSampler(CountingSampler):
    """Lets the test wait until a number of rounds happened, without timing assertions."""

    def __init__(self, rounds: int) -> None:
        super().__init__("gated")
        self.enough = threading.Event()
        self.rounds = rounds

    def sample(self) -> Mapping[str, Value]:
        out = super().sample()
        if self.calls >= self.rounds:
            self.enough.set()
        return out


def test_session_series_baseline_rates_and_final_round() -> None:
    sampler = CountingSampler()
    session = SamplingSession([sampler], interval=0.01)
    session.start()
    assert sampler.opened and sampler.calls >= 1  # baseline taken before start() returns
    series = session.stop()
    assert sampler.closed
    assert len(series.t) == sampler.calls >= 2  # baseline + final round at least
    assert list(series.t) == sorted(series.t) and series.t[0] >= 0
    rates = series.metrics["fake.things_per_s"]
    assert rates[0] is None  # first sample: no interval yet
    assert all(r == pytest.approx(10.0) for r in rates[1:])
    assert series.info == {"fake": {"kind": "counting"}}
    assert series.overhead is not None
    assert series.overhead.rounds == len(series.t)
    assert series.overhead.cpu_s >= 0 and series.overhead.wall_s >= 0
    assert set(series.overhead.per_sampler_cpu_s) == {"fake"}


def test_session_keeps_sampling_when_one_sampler_fails() -> None:
    good, broken = GatedSampler(rounds=4), BrokenSampler("broken")
    with SamplingSession([broken, good], interval=0.005) as session:
        assert good.enough.wait(timeout=30)
    series = session.series
    assert series is not None
    assert good.calls >= 4
    failures = [w for w in series.warnings if "sampling failed" in w]
    assert len(failures) == 1 and "server went away" in failures[0]  # warned once
    assert any("dropped after 5 failed rounds" in w for w in series.warnings)
    assert broken.calls == 5  # dropped, not retried forever
    assert "gated.things_per_s" in series.metrics


def test_unavailable_sampler_is_a_warning_not_a_crash() -> None:
    good = CountingSampler()
    with SamplingSession([UnavailableSampler("mssql"), good], interval=0.01) as session:
        pass
    assert session.series is not None
    assert session.series.warnings == ("mssql: needs VIEW SERVER STATE",)
    assert "fake.calls" in session.series.metrics


def test_t0_aligns_timestamps_with_the_run_clock() -> None:
    ticks = iter(float(x) for x in range(100, 10_000))
    session = SamplingSession(
        [CountingSampler()], interval=0.01, t0=90.0, clock=lambda: next(ticks)
    )
    series = session.start().stop()
    assert series.t[0] >= 10.0  # the fake clock started at 100, the run at 90


def test_series_json_round_trip() -> None:
    with SamplingSession([CountingSampler()], interval=0.01) as session:
        pass
    assert session.series is not None
    data = json.loads(json.dumps(session.series.to_dict()))
    assert data["format"] == SERIES_FORMAT
    assert data["units"]["fake.things_per_s"] == "1/s"
    again = SampleSeries.from_dict(data)
    assert again == session.series
    with pytest.raises(ValueError, match="format"):
        SampleSeries.from_dict({**data, "format": "other/9"})


def test_series_statistics_skip_missing_values() -> None:
    series = SampleSeries.from_rows(
        [(0.0, {"a_pct": None}), (0.5, {"a_pct": 10.0}), (1.0, {"a_pct": 30.0, "b": 1.0})]
    )
    assert series.metrics["b"] == (None, None, 1.0)
    assert series.mean("a_pct") == 20.0
    assert series.peak("a_pct") == 30.0
    assert series.mean("a_pct", end=0.6) == 10.0
    assert series.mean("missing") is None


def test_invalid_interval_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        SamplingSession([], interval=0)
