"""Charts for the HTML report: functions that take plain data and return matplotlib figures.

No I/O and no pyplot (its global state leaks between figures): every function builds a
:class:`matplotlib.figure.Figure` directly; :func:`reports.svg.figure_to_svg` serialises it.

Conventions every chart follows, so a reviewer reads them without us:

* a title, axis labels with units, and a legend whenever there is more than one series;
* the Okabe–Ito palette (distinguishable with the common colour-vision deficiencies) *and*
  a different marker and line style per series, so a greyscale print still tells them apart;
* batch size on a log axis (the sweep's 1-2-5 series is evenly spaced there);
* confidence bands as light fills with the interval's level in the legend.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before any backend is touched; harmless when already set
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

__all__ = [
    "MARKERS",
    "OKABE_ITO",
    "Bars",
    "Curve",
    "Panel",
    "Trace",
    "bar_chart",
    "change_chart",
    "run_order_chart",
    "throughput_chart",
    "timeline_chart",
    "value_label",
    "worker_scaling_chart",
    "wrap_title",
]

#: Okabe & Ito (2008), "Color Universal Design": blue, orange, green, vermillion, purple,
#: sky blue, yellow, black — in an order whose first few differ in lightness too.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 3)))
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")

rcParams["svg.fonttype"] = "none"      # text stays text: small, searchable, copyable
rcParams["svg.hashsalt"] = "migration-bench"  # stable ids: the same data, the same bytes
rcParams["path.simplify"] = True

_SIZE = (7.2, 3.6)


def style(i: int) -> dict[str, object]:
    """Colour, marker and line style of series ``i`` (cycles after eight)."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def _figure(size: tuple[float, float] = _SIZE) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    return fig


def wrap_title(text: str, width_in: float, fontsize: float = 11.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (an
    average glyph of the default sans-serif is about 0.6 em wide; a line keeps a margin
    for the axes' left offset), so no title runs off the figure."""
    chars = max(20, int(width_in * 72 * 0.85 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_long_words=True)) or text


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    width = float(ax.get_figure().get_figwidth())  # type: ignore[union-attr]
    # Pre-wrapped for the figure's width, and wrap=True for what that estimate misses
    # (an axes pushed right by long tick labels): matplotlib re-wraps at the figure's edge.
    ax.set_title(wrap_title(title, width), fontsize=11, loc="left", wrap=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if legend and len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=8, frameon=False)


def _thousands(value: float, _pos: object = None) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def value_label(value: float) -> str:
    """A bar's label: thousands compact (``647k``), small values with their digits
    (``0.24``, not ``0``)."""
    if abs(value) >= 10_000:
        return _thousands(round(value))
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:.3g}"


# --------------------------------------------------------------------------- throughput


@dataclass
class Curve:
    """One line of the throughput chart: a group of configurations differing in batch size."""

    label: str
    x: Sequence[float]
    median: Sequence[float]
    ci_low: Sequence[float | None]
    ci_high: Sequence[float | None]
    points: Sequence[Sequence[float]] = ()   # every run per x, drawn faintly
    knee: float | None = None
    best: float | None = None


def throughput_chart(curves: Sequence[Curve], *, unit: str = "rec/min",
                     ci_label: str = "CI of the median") -> Figure:
    """Throughput vs batch size (log x), one line per group, CI bands, knee and best marked."""
    fig = _figure((7.2, 4.0))
    ax = fig.add_subplot()
    knee_drawn = False
    for i, curve in enumerate(curves):
        st = style(i)
        colour = str(st["color"])
        for x, values in zip(curve.x, curve.points, strict=False):
            ax.scatter([x] * len(values), values, s=8, color=colour, alpha=0.35,
                       marker=str(st["marker"]), linewidths=0, zorder=2)
        lows = [lo if lo is not None else m for lo, m in zip(curve.ci_low, curve.median,
                                                             strict=True)]
        highs = [hi if hi is not None else m for hi, m in zip(curve.ci_high, curve.median,
                                                              strict=True)]
        if any(lo is not None for lo in curve.ci_low):
            ax.fill_between(curve.x, lows, highs, color=colour, alpha=0.15, linewidth=0,
                            label=f"{curve.label}: {ci_label}" if len(curves) == 1 else None)
        ax.plot(curve.x, curve.median, label=curve.label or "median", markersize=5,
                linewidth=1.6, zorder=3, **st)  # type: ignore[arg-type]
        if curve.knee is not None and curve.knee in curve.x:
            # A dotted vertical line, as the caption says, in the curve's colour.
            k = list(curve.x).index(curve.knee)
            ax.axvline(curve.knee, color=colour, linestyle=":", linewidth=1.6, zorder=1,
                       label="knee" if not knee_drawn else None)
            knee_drawn = True
            if len(curves) <= 2:
                ax.annotate(f"knee {curve.knee:g}", (curve.knee, curve.median[k]),
                            xytext=(6, -14), textcoords="offset points", fontsize=8,
                            color="#222")
        if curve.best is not None and curve.best in curve.x:
            b = list(curve.x).index(curve.best)
            ax.scatter([curve.best], [curve.median[b]], s=110, facecolors="none",
                       edgecolors="#000", linewidths=1.4, zorder=4,
                       label="best" if i == 0 else None)
    ax.set_xscale("log")
    xs = sorted({x for c in curves for x in c.x})
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.xaxis.set_minor_locator(LogLocator(subs="auto"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylim(bottom=0)
    _finish(ax, "Throughput vs batch size (median; band: CI of the median)",
            "batch size (records per transaction, log scale)", f"throughput ({unit})")
    return fig


def worker_scaling_chart(workers: Sequence[int], median: Sequence[float],
                         ci_low: Sequence[float | None], ci_high: Sequence[float | None],
                         ideal: Sequence[float], *, unit: str = "rec/min",
                         label: str = "measured") -> Figure:
    """Throughput per worker count against linear (ideal) scaling from the fewest workers."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(workers, ideal, color="#555555", linestyle="--", marker="", linewidth=1.2,
            label="ideal (linear from the fewest workers)")
    lows = [m - lo if lo is not None else 0.0 for lo, m in zip(ci_low, median, strict=True)]
    highs = [hi - m if hi is not None else 0.0 for hi, m in zip(ci_high, median, strict=True)]
    st = style(0)
    ax.errorbar(workers, median, yerr=[lows, highs], capsize=3, markersize=6,
                label=f"{label} (median, CI)", **st)  # type: ignore[arg-type]
    for w, m, i in zip(workers, median, ideal, strict=True):
        if i > 0:
            ax.annotate(f"{100 * m / i:.0f}%", (w, m), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8)
    ax.set_xticks(list(workers))
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    _finish(ax, "Worker scaling against ideal (labels: % of ideal)", "worker processes",
            f"throughput ({unit})")
    return fig


# --------------------------------------------------------------------------- bars


@dataclass
class Bars:
    """Grouped bars: ``values[s][c]`` is series ``s`` in category ``c``."""

    title: str
    categories: Sequence[str]
    series: Sequence[str]
    values: Sequence[Sequence[float | None]]
    ci_low: Sequence[Sequence[float | None]] | None = None
    ci_high: Sequence[Sequence[float | None]] | None = None
    xlabel: str = ""
    ylabel: str = "throughput (rec/min)"
    #: optional second quantity per bar shown as a marker on a right axis (0–100 %)
    secondary: Sequence[Sequence[float | None]] | None = None
    secondary_label: str = ""


def bar_chart(spec: Bars) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    n_series = max(len(spec.series), 1)
    width = 0.8 / n_series
    positions = list(range(len(spec.categories)))
    ax2 = ax.twinx() if spec.secondary is not None else None
    for s, name in enumerate(spec.series):
        colour = OKABE_ITO[s % len(OKABE_ITO)]
        xs = [p - 0.4 + width * (s + 0.5) for p in positions]
        vals = [v if v is not None else 0.0 for v in spec.values[s]]
        yerr = None
        if spec.ci_low is not None and spec.ci_high is not None:
            yerr = [[(v - lo) if lo is not None and v is not None else 0.0
                     for v, lo in zip(spec.values[s], spec.ci_low[s], strict=True)],
                    [(hi - v) if hi is not None and v is not None else 0.0
                     for v, hi in zip(spec.values[s], spec.ci_high[s], strict=True)]]
        ax.bar(xs, vals, width=width * 0.92, color=colour, edgecolor="#222", linewidth=0.6,
               hatch=HATCHES[s % len(HATCHES)], label=name, yerr=yerr, capsize=3,
               error_kw={"linewidth": 0.9})
        for x, v in zip(xs, spec.values[s], strict=True):
            if v is not None:
                ax.annotate(value_label(v), (x, v), xytext=(0, 2), textcoords="offset "
                            "points", ha="center", va="bottom", fontsize=7)
        if ax2 is not None and spec.secondary is not None:
            sec = spec.secondary[s]
            pts = [(x, v) for x, v in zip(xs, sec, strict=True) if v is not None]
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none",
                         marker=MARKERS[(s + 1) % len(MARKERS)], markersize=8,
                         markerfacecolor="white", markeredgecolor="#000",
                         label=f"{spec.secondary_label}" if s == 0 else None)
    ax.set_xticks(positions, list(spec.categories))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylim(bottom=0)
    if ax2 is not None:
        ax2.set_ylim(0, 105)
        ax2.set_ylabel(spec.secondary_label)
        ax2.spines["top"].set_visible(False)
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        _finish(ax, spec.title, spec.xlabel, spec.ylabel, legend=False)
        ax.legend(handles + h2, labels + l2, fontsize=8, frameon=False, loc="upper left")
    else:
        _finish(ax, spec.title, spec.xlabel, spec.ylabel, legend=len(spec.series) > 1)
    return fig


def change_chart(labels: Sequence[str], change_pct: Sequence[float | None],
                 ci_low_pct: Sequence[float | None], ci_high_pct: Sequence[float | None],
                 markers: Sequence[str], threshold_pct: float | None = None) -> Figure:
    """Per-configuration change B vs A (horizontal bars, CI whiskers, asv markers)."""
    height = max(2.4, 0.42 * len(labels) + 1.3)
    fig = _figure((7.2, height))
    ax = fig.add_subplot()
    ys = list(range(len(labels)))[::-1]
    for y, c, lo, hi, mark in zip(ys, change_pct, ci_low_pct, ci_high_pct, markers,
                                  strict=True):
        if c is None:
            continue
        colour = OKABE_ITO[3] if mark == "+" else OKABE_ITO[2] if mark == "-" else "#999999"
        hatch = "//" if mark == "+" else ".." if mark == "-" else ""
        ax.barh(y, c, color=colour, edgecolor="#222", linewidth=0.6, hatch=hatch, height=0.6)
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color="#000", linewidth=1.1)
        ax.annotate(f"{mark.strip() or '·'} {c:+.1f}%", (c, y), xytext=(4 if c >= 0 else -4, 0),
                    textcoords="offset points", va="center",
                    ha="left" if c >= 0 else "right", fontsize=8)
    ax.axvline(0, color="#000", linewidth=0.8)
    if threshold_pct:
        for t in (-threshold_pct, threshold_pct):
            ax.axvline(t, color="#555", linestyle=":", linewidth=0.9)
    ax.set_yticks(ys, list(labels))
    _finish(ax, "Change of median throughput, B vs A (whiskers: 95% CI; dotted: threshold)",
            "change of median throughput (%)", "configuration", legend=False)
    return fig


# --------------------------------------------------------------------------- run order


def run_order_chart(groups: Mapping[str, Sequence[tuple[int, float]]],
                    *, unit: str = "rec/min",
                    marks: Sequence[tuple[float, str]] = ()) -> Figure:
    """Throughput of every measured run in execution order, one marker per configuration,
    so a trend over time (warm-up, throttling, a neighbour) stands out from the grid;
    ``marks`` are dashed vertical lines (the host's level shift)."""
    fig = _figure()
    ax = fig.add_subplot()
    for x, label in marks:
        ax.axvline(x, color="#D55E00", linestyle="--", linewidth=1.0, zorder=0)
        ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                    textcoords="offset points", fontsize=7, color="#8a3000")
    every = sorted(p for pts in groups.values() for p in pts)
    if len(groups) > 1:
        ax.plot([p[0] for p in every], [p[1] for p in every], color="#bbbbbb", linewidth=0.6,
                zorder=1, label="all runs in order")
    for i, (label, pts) in enumerate(groups.items()):
        st = style(i)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label or "runs",
                linestyle="none", marker=st["marker"], color=st["color"], markersize=5,
                zorder=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylim(bottom=0)
    _finish(ax, "Throughput in run order (exposes drift)", "run order (measured runs)",
            f"throughput ({unit})", legend=False)
    if len(groups) > 1:
        ax.legend(fontsize=7, frameon=False, ncol=2 if len(groups) > 6 else 1,
                  loc="lower left")
    return fig


# --------------------------------------------------------------------------- timelines


@dataclass
class Trace:
    label: str
    t: Sequence[float]
    values: Sequence[float | None]


@dataclass
class Panel:
    """One row of a timeline: traces on a left axis, optional traces on a right axis,
    optional horizontal guidance lines (e.g. Microsoft's 20 ms / 3 ms)."""

    ylabel: str
    traces: Sequence[Trace]
    right_ylabel: str = ""
    right_traces: Sequence[Trace] = ()
    stacked: bool = False
    guides: Sequence[tuple[float, str]] = ()
    ylim: tuple[float, float] | None = None
    right_ylim: tuple[float, float] | None = None


def _segments(t: Sequence[float], values: Sequence[float | None]
              ) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for x, v in zip(t, values, strict=False):
        xs.append(x)
        ys.append(math.nan if v is None else float(v))
    return xs, ys


def timeline_chart(title: str, panels: Sequence[Panel],
                   batch_ends: Sequence[float] = (), run_end: float | None = None) -> Figure:
    """Stacked panels sharing the time axis; batch boundaries as thin vertical lines."""
    n = max(len(panels), 1)
    fig = Figure(figsize=(7.2, 1.2 + 1.75 * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(wrap_title(title, 7.2), fontsize=11, x=0.01, ha="left", wrap=True)
    for ax, panel in zip(axes, panels, strict=False):
        for b in batch_ends:
            ax.axvline(b, color="#bbbbbb", linewidth=0.5, zorder=0)
        if run_end is not None:
            ax.axvline(run_end, color="#000", linewidth=0.8, linestyle="--", zorder=0)
        if panel.stacked and panel.traces:
            xs = list(panel.traces[0].t)
            stack = [[0.0 if v is None else float(v) for v in tr.values] for tr in panel.traces]
            ax.stackplot(xs, *stack, labels=[tr.label for tr in panel.traces],
                         colors=[OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(stack))],
                         hatch=[HATCHES[i % len(HATCHES)] for i in range(len(stack))],
                         edgecolor="#333", linewidth=0.3, alpha=0.85)
        else:
            for i, tr in enumerate(panel.traces):
                xs, ys = _segments(tr.t, tr.values)
                st = style(i)
                ax.plot(xs, ys, label=tr.label, linewidth=1.2, markersize=3,
                        markevery=max(1, len(xs) // 12), **st)
        for value, label in panel.guides:
            ax.axhline(value, color="#D55E00", linestyle="--", linewidth=0.9)
            ax.annotate(label, (0.995, value), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=7, color="#8a3000")
        ax.set_ylabel(panel.ylabel, fontsize=8)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, color="#e4e4e4", linewidth=0.5)
        ax.tick_params(labelsize=8)
        handles, labels = ax.get_legend_handles_labels()
        if panel.right_traces:
            ax2 = ax.twinx()
            for j, tr in enumerate(panel.right_traces):
                xs, ys = _segments(tr.t, tr.values)
                k = len(panel.traces) + j
                ax2.plot(xs, ys, label=tr.label, linewidth=1.0, markersize=3,
                         markevery=max(1, len(xs) // 12), **style(k))
            ax2.set_ylabel(panel.right_ylabel, fontsize=8)
            ax2.set_ylim(*(panel.right_ylim or (0, 105)))
            ax2.tick_params(labelsize=8)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if handles:  # above the plot area, never over the data
            ax.legend(handles, labels, fontsize=7, frameon=False, loc="lower left",
                      bbox_to_anchor=(0.0, 1.0), borderaxespad=0.1,
                      ncol=min(4, len(handles)))
    axes[-1].set_xlabel("time since run start (s); grey lines: batch commits")
    return fig
