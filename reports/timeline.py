"""The resource timelines of the HTML report: a run's sampler series as chart panels.

:func:`timeline_panels` turns one run's :class:`reports.results.Samples` into the panels
:func:`reports.charts.timeline_chart` draws — the database disk (or the busiest disk),
CPU, the server's waits and I/O latencies — and one summary row per series it read;
:func:`batch_ends` gives the commits to mark on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from reports import charts
from reports.results import Run, Samples

__all__ = ["batch_ends", "timeline_panels"]


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def batch_ends(run: Run, limit: int = 300) -> list[float]:
    """When the run's batches ended (its commits), at most ``limit`` of them."""
    ended = run.metrics.batches.column("ended") if run.metrics.batches is not None else None
    ends = [float(v) for v in ended or [] if _num(v)]
    if len(ends) > limit:  # too many to draw one by one: an even subsample
        step = len(ends) / limit
        ends = [ends[int(i * step)] for i in range(limit)]
    return ends


@dataclass
class _Traces:
    """The series of one run, read into chart traces; ``used`` keeps every one read, for
    the table that summarises them."""

    series: Samples
    cores: float
    used: list[tuple[str, str, Sequence[float | None]]] = field(default_factory=list)

    def values(self, name: str, scale: float = 1.0) -> list[float | None] | None:
        column = self.series.column(name)
        if not column or all(v is None for v in column):
            return None
        return [None if v is None else float(v) * scale for v in column]

    def trace(self, label: str, name: str, unit: str, scale: float = 1.0
              ) -> charts.Trace | None:
        values = self.values(name, scale)
        if values is None:
            return None
        self.used.append((label, unit, values))
        if sum(v is not None for v in values) < 2:
            return None  # one sample is a dot, not a timeline: the table shows it
        return charts.Trace(label, [float(x) for x in self.series.t], values)

    def traces(self, *wanted: tuple[str, str, str, float] | None) -> list[charts.Trace]:
        found = (self.trace(*w) for w in wanted if w is not None)
        return [t for t in found if t is not None]


def _cores(series: Samples) -> float:
    host = series.info.get("host") or {}
    cores = _num(host.get("cores"))
    if cores:
        return cores
    return float(len([n for n in series.metrics if n.startswith("host.cpu.core")]) or 1)


def timeline_panels(series: Samples) -> tuple[list[charts.Panel], list[list[str]]]:
    traces = _Traces(series, _cores(series))
    disk = ("host.db_disk" if traces.values("host.db_disk.busy_pct") or
            traces.values("host.db_disk.write_bytes_per_s") else _busiest_disk(series))
    panels = [p for p in (_disk_panel(traces, disk), _cpu_panel(traces),
                          _waits_panel(traces), _latency_panel(traces, disk)) if p is not None]
    rows = []
    for label, unit, values in traces.used:
        got = sorted(v for v in values if v is not None)
        if not got:
            continue
        p95 = got[min(len(got) - 1, math.ceil(0.95 * len(got)) - 1)]
        rows.append([label, unit or series.units.get(label, ""), str(len(got)),
                     f"{sum(got) / len(got):,.2f}", f"{p95:,.2f}", f"{got[-1]:,.2f}"])
    return panels, rows


def _disk_panel(traces: _Traces, disk: str | None) -> charts.Panel | None:
    if not disk:
        return None
    name = "database disk" if disk == "host.db_disk" else disk.removeprefix("host.disk.")
    left = traces.traces((f"{name} write MB/s", f"{disk}.write_bytes_per_s", "MB/s", 1e-6),
                         (f"{name} read MB/s", f"{disk}.read_bytes_per_s", "MB/s", 1e-6))
    right = traces.traces((f"{name} busy %", f"{disk}.busy_pct", "%", 1.0))
    return charts.Panel("disk (MB/s)", left, "busy (%)", right) if left or right else None


def _cpu_panel(traces: _Traces) -> charts.Panel | None:
    cpu = traces.traces(("host CPU %", "host.cpu.total_pct", "%", 1.0),
                        ("I/O wait %", "host.cpu.iowait_pct", "%", 1.0),
                        ("workers % of host", "host.workers.cpu_pct", "%", 1 / traces.cores),
                        ("local DB server % of host", "host.dbserver.cpu_pct", "%",
                         1 / traces.cores),
                        ("DB server CPU % (counters)", "server.cpu_pct", "%", 1.0))
    return charts.Panel("CPU (%)", cpu, ylim=(0, 105)) if cpu else None


def _waits_panel(traces: _Traces) -> charts.Panel | None:
    waits = []
    for name in sorted(n for n in traces.series.metrics if n.startswith("server.wait.")
                       and n.endswith(".sessions")):
        category = name.removeprefix("server.wait.").removesuffix(".sessions")
        tr = traces.trace(f"{category.replace('_', ' ')}", name, "sessions")
        if tr is not None:
            waits.append(charts.Trace(tr.label, tr.t,
                                      [0.0 if v is None else v for v in tr.values]))
    return charts.Panel("server waits (sessions)", waits, stacked=True) if waits else None


def _latency_panel(traces: _Traces, disk: str | None) -> charts.Panel | None:
    latency = traces.traces(
        ("data-file read ms", "server.data.read_latency_ms", "ms", 1.0),
        ("log-file write ms", "server.log.write_latency_ms", "ms", 1.0),
        ("disk read await ms", f"{disk}.read_await_ms", "ms", 1.0) if disk else None,
        ("disk write await ms", f"{disk}.write_await_ms", "ms", 1.0) if disk else None)
    if not latency:
        return None
    guides = []
    if traces.values("server.data.read_latency_ms"):
        guides.append((20.0, "data reads ≤ 20 ms (Microsoft)"))
    if traces.values("server.log.write_latency_ms"):
        guides.append((3.0, "log writes ≤ 3 ms (Microsoft)"))
    return charts.Panel("latency (ms)", latency, guides=guides)


def _busiest_disk(series: Samples) -> str | None:
    best: tuple[float, str] | None = None
    for name, column in series.metrics.items():
        if name.startswith("host.disk.") and name.endswith(".busy_pct"):
            got = [v for v in column if v is not None]
            if got:
                mean = sum(got) / len(got)
                if best is None or mean > best[0]:
                    best = (mean, name.rsplit(".", 1)[0])
    return best[1] if best else None
