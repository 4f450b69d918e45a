"""The sampling framework: a background thread polling a list of samplers.

A *sampler* reads one source (the host, a database server) and returns a flat mapping of
metric name → value. Names are dotted and end in their unit (see :func:`unit_of`), e.g.
``host.disk.vda.write_bytes_per_s`` or ``server.log.write_latency_ms``. Cumulative counters
are turned into per-interval rates by :class:`CounterRates`, so every value in a series
describes the interval that *ends* at its timestamp.

:class:`SamplingSession` runs the samplers every ``interval`` seconds on its own thread and
produces a :class:`SampleSeries` whose timestamps are seconds since the run start
(monotonic clock), so the series lines up with the batch timings the engine records against
the same ``t0``. The session measures its own cost (CPU seconds of the sampling thread) so
the report can quote the overhead next to the results.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

SERIES_FORMAT = "migration-bench.samples/1"
"""Version tag of :meth:`SampleSeries.to_dict`. History: 1 — first version; ``blockers``
(lock holders) was added later as an optional key, empty when absent."""

DEFAULT_INTERVAL = 0.5
MAX_CONSECUTIVE_FAILURES = 5
"""A sampler failing this many rounds in a row is dropped (its connection is likely gone)."""

Value = float | None
InfoValue = str | int | float | bool | None


class SamplerUnavailable(Exception):
    """Raised by :meth:`Sampler.open` when a source cannot be sampled at all.

    The message is shown to the user as-is, so it says what is missing and how to fix it
    (e.g. the VIEW SERVER STATE permission). The session continues without that sampler.
    """


@runtime_checkable
class Sampler(Protocol):
    """One source of measurements. Called only from the sampling thread after ``open``."""

    name: str

    def open(self) -> None:
        """Prepare (connect, probe permissions). May raise :class:`SamplerUnavailable`."""

    def sample(self) -> Mapping[str, Value]:
        """Return metric name → value; rates are ``None`` on the first call."""

    def info(self) -> Mapping[str, InfoValue]:
        """Static facts learnt while sampling (device, server pid, version …)."""

    def close(self) -> None:
        """Release resources; must not raise."""


# --------------------------------------------------------------------------- counters


def counter_delta(previous: float, current: float, wrap: float | None = None) -> float:
    """Increase of a cumulative counter between two readings; never negative.

    A counter that went down was reset (server restart, ``DBCC SQLPERF(... CLEAR)``,
    ``pg_stat_reset()``) or wrapped. For a wrap at ``wrap`` (e.g. ``2**32``) the increase
    is ``current + wrap - previous``; otherwise the counter restarted from zero, and the
    best estimate of the increase is ``current`` itself (the convention of Prometheus'
    ``rate()``).
    """
    if current >= previous:
        return current - previous
    if wrap is not None and previous < wrap:
        wrapped = current + wrap - previous
        if wrapped <= wrap / 2:
            return wrapped
    return current


class CounterRates:
    """Turns cumulative counters into per-second rates between successive readings.

    ``rate(key, value, now)`` returns ``None`` the first time a key is seen (no interval
    yet), and ``Δvalue / Δt`` afterwards. ``delta`` returns the raw increase instead.
    Resets are handled by :func:`counter_delta` and counted in :attr:`resets`.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}
        self.resets = 0

    def delta(self, key: str, value: float, now: float) -> tuple[float, float] | None:
        """Return ``(Δvalue, Δt)`` since the previous reading of ``key``, or ``None``."""
        previous = self._last.get(key)
        self._last[key] = (now, value)
        if previous is None:
            return None
        then, old = previous
        elapsed = now - then
        if elapsed <= 0:
            return None
        if value < old:
            self.resets += 1
        return counter_delta(old, value), elapsed

    def rate(self, key: str, value: float, now: float) -> float | None:
        got = self.delta(key, value, now)
        if got is None:
            return None
        increase, elapsed = got
        return increase / elapsed

    def forget_missing(self, seen: Iterable[str]) -> None:
        """Drop keys not in ``seen`` (a file or wait type that disappeared)."""
        keep = set(seen)
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` or ``None`` when the denominator is zero (Δops = 0)."""
    if denominator <= 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------- units

_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("bytes_per_s", "B/s"),
    ("per_s", "1/s"),
    ("_pct", "%"),
    ("_ms", "ms"),
    ("_bytes", "B"),
    ("sessions", "sessions"),
    ("_s", "s"),
    ("cores", "cores"),
)


def unit_of(metric: str) -> str:
    """The unit encoded in a metric name's suffix ("" for plain counts)."""
    leaf = metric.rsplit(".", 1)[-1]
    for suffix, unit in _UNIT_SUFFIXES:
        if leaf.endswith(suffix):
            return unit
    return ""


# --------------------------------------------------------------------------- series


@dataclass(frozen=True)
class SamplerOverhead:
    """What sampling itself cost: CPU of the sampling thread over the sampled wall time."""

    cpu_s: float
    wall_s: float
    rounds: int
    mean_round_ms: float
    max_round_ms: float
    per_sampler_cpu_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def cpu_pct_of_core(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "cpu_pct_of_core": self.cpu_pct_of_core,
            "rounds": self.rounds,
            "mean_round_ms": self.mean_round_ms,
            "max_round_ms": self.max_round_ms,
            "per_sampler_cpu_s": dict(self.per_sampler_cpu_s),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplerOverhead:
        return cls(
            cpu_s=float(data["cpu_s"]),
            wall_s=float(data["wall_s"]),
            rounds=int(data["rounds"]),
            mean_round_ms=float(data["mean_round_ms"]),
            max_round_ms=float(data["max_round_ms"]),
            per_sampler_cpu_s={k: float(v) for k, v in data["per_sampler_cpu_s"].items()},
        )


@dataclass(frozen=True)
class SampleSeries:
    """A column-oriented time series: ``metrics[name][i]`` was measured at ``t[i]``.

    ``t`` is seconds since the run start (monotonic). The first row is the baseline taken
    when sampling started; rate metrics are ``None`` there. ``info`` holds static facts per
    sampler (``info["host"]["db_device"]`` …), ``warnings`` what the user should know about
    missing or failed sources.
    """

    interval_s: float
    started_at: str
    t: tuple[float, ...]
    metrics: Mapping[str, tuple[Value, ...]]
    info: Mapping[str, Mapping[str, InfoValue]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    overhead: SamplerOverhead | None = None
    blockers: tuple[Mapping[str, Any], ...] = ()
    """Sessions seen holding a lock one of the run's sessions waited for (see
    :class:`diagnostics.server.Blocker`), most often seen first; times in run time."""

    @property
    def units(self) -> dict[str, str]:
        return {name: unit_of(name) for name in self.metrics}

    def values(
        self, name: str, start: float | None = None, end: float | None = None
    ) -> list[float]:
        """The non-missing values of one metric, optionally within ``[start, end]``."""
        column = self.metrics.get(name, ())
        out: list[float] = []
        for when, value in zip(self.t, column, strict=False):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if start is not None and when < start:
                continue
            if end is not None and when > end:
                continue
            out.append(value)
        return out

    def mean(self, name: str, start: float | None = None, end: float | None = None) -> float | None:
        got = self.values(name, start, end)
        return sum(got) / len(got) if got else None

    def peak(self, name: str, start: float | None = None, end: float | None = None) -> float | None:
        got = self.values(name, start, end)
        return max(got) if got else None

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.metrics if n.startswith(prefix))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SERIES_FORMAT,
            "interval_s": self.interval_s,
            "started_at": self.started_at,
            "t": list(self.t),
            "metrics": {name: list(col) for name, col in sorted(self.metrics.items())},
            "units": dict(sorted(self.units.items())),
            "info": {k: dict(v) for k, v in self.info.items()},
            "warnings": list(self.warnings),
            "overhead": self.overhead.to_dict() if self.overhead else None,
            "blockers": [dict(b) for b in self.blockers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleSeries:
        if data.get("format") != SERIES_FORMAT:
            raise ValueError(
                f"not a sample series of format {SERIES_FORMAT}: {data.get('format')!r}"
            )
        overhead = data.get("overhead")
        return cls(
            interval_s=float(data["interval_s"]),
            started_at=str(data["started_at"]),
            t=tuple(float(x) for x in data["t"]),
            metrics={k: tuple(v) for k, v in data["metrics"].items()},
            info={k: dict(v) for k, v in data.get("info", {}).items()},
            warnings=tuple(data.get("warnings", ())),
            overhead=SamplerOverhead.from_dict(overhead) if overhead else None,
            blockers=tuple(dict(b) for b in data.get("blockers") or ()),  # (absent before)
        )

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[tuple[float, Mapping[str, Value]]],
        interval_s: float = DEFAULT_INTERVAL,
        info: Mapping[str, Mapping[str, InfoValue]] | None = None,
        warnings: Sequence[str] = (),
        overhead: SamplerOverhead | None = None,
        started_at: str = "",
        blockers: Sequence[Mapping[str, Any]] = (),
    ) -> SampleSeries:
        """Build a series from ``(t, {metric: value})`` rows; absent metrics become ``None``."""
        names = sorted({name for _, row in rows for name in row})
        metrics = {name: tuple(row.get(name) for _, row in rows) for name in names}
        return cls(
            interval_s=interval_s,
            started_at=started_at,
            t=tuple(when for when, _ in rows),
            metrics=metrics,
            info=dict(info or {}),
            warnings=tuple(warnings),
            overhead=overhead,
            blockers=tuple(blockers),
        )


# --------------------------------------------------------------------------- session


@dataclass
class _SamplerState:
    sampler: Sampler
    cpu_s: float = 0.0
    failures: int = 0
    warned: bool = False
    active: bool = True


class SamplingSession:
    """Samples ``samplers`` every ``interval`` seconds on a daemon thread.

    ``t0`` is the run start on the ``time.monotonic`` clock (default: when ``start`` is
    called); give the same value the engine uses for its batch timestamps. ``start`` opens
    every sampler in the calling thread (so a missing permission is reported before the run
    starts), then waits for the baseline round; ``stop`` takes a final round and returns the
    series. Also a context manager (``with SamplingSession(...) as s: ...; s.series``).
    """

    def __init__(
        self,
        samplers: Sequence[Sampler],
        interval: float = DEFAULT_INTERVAL,
        t0: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"sample interval must be positive, got {interval}")
        self.interval = interval
        self._clock = clock
        self._t0 = t0
        self._states = [_SamplerState(s) for s in samplers]
        self._rows: list[tuple[float, dict[str, Value]]] = []
        self._warnings: list[str] = []
        self._stop = threading.Event()
        self._baseline_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._round_ms: list[float] = []
        self._thread_cpu_s = 0.0
        self._wall_start = 0.0
        self._wall_end = 0.0
        self._started_at = ""
        self.series: SampleSeries | None = None

    @property
    def t0(self) -> float:
        if self._t0 is None:
            raise RuntimeError("sampling has not started")
        return self._t0

    def warn(self, message: str) -> None:
        with self._lock:
            if message not in self._warnings:
                self._warnings.append(message)

    # -- lifecycle

    def start(self) -> SamplingSession:
        if self._thread is not None:
            raise RuntimeError("sampling session already started")
        for state in self._states:
            try:
                state.sampler.open()
            except SamplerUnavailable as exc:
                state.active = False
                self.warn(f"{state.sampler.name}: {exc}")
            except Exception as exc:  # a sampler must never break the run
                state.active = False
                self.warn(f"{state.sampler.name}: cannot start sampling: {exc!r}")
        if self._t0 is None:
            self._t0 = self._clock()
        self._started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        self._baseline_done.wait()
        return self

    def stop(self) -> SampleSeries:
        if self._thread is None:
            raise RuntimeError("sampling session was not started")
        if self.series is not None:
            return self.series
        self._stop.set()
        self._thread.join()
        for state in self._states:
            try:
                state.sampler.close()
            except Exception as exc:
                self.warn(f"{state.sampler.name}: close failed: {exc!r}")
        rounds = len(self._round_ms)
        overhead = SamplerOverhead(
            cpu_s=self._thread_cpu_s,
            wall_s=max(self._wall_end - self._wall_start, 0.0),
            rounds=rounds,
            mean_round_ms=sum(self._round_ms) / rounds if rounds else 0.0,
            max_round_ms=max(self._round_ms, default=0.0),
            per_sampler_cpu_s={s.sampler.name: s.cpu_s for s in self._states},
        )
        info: dict[str, dict[str, InfoValue]] = {}
        for state in self._states:
            try:
                info[state.sampler.name] = dict(state.sampler.info())
            except Exception as exc:
                self.warn(f"{state.sampler.name}: info failed: {exc!r}")
        self.series = SampleSeries.from_rows(
            self._rows,
            interval_s=self.interval,
            info=info,
            warnings=self._warnings,
            overhead=overhead,
            started_at=self._started_at,
            blockers=self._blockers(),
        )
        return self.series

    def _blockers(self) -> list[dict[str, Any]]:
        """What the samplers that track lock holders saw, on the run's clock."""
        found: list[dict[str, Any]] = []
        for state in self._states:
            report = getattr(state.sampler, "blockers", None)
            if report is None:
                continue
            try:
                found.extend(b.to_dict(self.t0) for b in report())
            except Exception as exc:
                self.warn(f"{state.sampler.name}: lock holders unavailable: {exc!r}")
        return sorted(found, key=lambda b: -int(b.get("samples", 0)))

    def __enter__(self) -> SamplingSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the thread

    def _run(self) -> None:
        cpu_start = time.thread_time()
        self._wall_start = self._clock()
        try:
            self._round()
            self._baseline_done.set()
            next_due = self._clock() + self.interval
            while not self._stop.wait(timeout=max(next_due - self._clock(), 0.0)):
                self._round()
                now = self._clock()
                # Fixed-rate schedule; when a round overruns, skip ticks instead of bursting.
                next_due += self.interval * max(1, math.ceil((now - next_due) / self.interval))
            self._round()  # the final, partial interval
        finally:
            self._baseline_done.set()
            self._wall_end = self._clock()
            self._thread_cpu_s = time.thread_time() - cpu_start

    def _round(self) -> None:
        began = time.perf_counter()
        row: dict[str, Value] = {}
        for state in self._states:
            if not state.active:
                continue
            cpu_before = time.thread_time()
            try:
                row.update(state.sampler.sample())
                state.failures = 0
            except Exception as exc:
                state.failures += 1
                if not state.warned:
                    state.warned = True
                    self.warn(
                        f"{state.sampler.name}: sampling failed ({exc!r}); "
                        "continuing with the other samplers"
                    )
                if state.failures >= MAX_CONSECUTIVE_FAILURES:
                    state.active = False
                    self.warn(f"{state.sampler.name}: dropped after {state.failures} failed rounds")
            finally:
                state.cpu_s += time.thread_time() - cpu_before
        when = self._clock() - self.t0
        self._rows.append((when, row))
        self._round_ms.append((time.perf_counter() - began) * 1000.0)
