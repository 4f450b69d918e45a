"""The report's sections on the server's own counters and on the machines of a cluster.

* "Measured at the server": per configuration, the rows inserted and commits per second
  the server counted (before/after readings of its counters) beside what the clients
  counted; over a ``cluster_workers`` sweep, the server's rows/s against ideal linear
  scaling from the fewest client workers — where the measured points fall away from the
  ideal line while the clients still have CPU to spare, the server is the bottleneck.
* "Machines of the cluster": the host samples of every worker machine of a cluster run,
  one timeline per host, for the last such run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reports import charts
from reports.results import ResultDocument, Run, ServerThroughput
from reports.summary import format_config
from reports.timeline import timeline_panels

# The settings that name a configuration in these sections.
_KEYS = ("batch_size", "workers", "cluster_workers", "connection", "pipeline",
         "insert_method", "max_sessions")


@dataclass(frozen=True)
class Kit:
    """What the report builds sections with (:mod:`reports.report` hands its own in, so
    this module never imports it back)."""

    section: Callable[[str, str], Any]  # Section(id, title)
    table: Callable[..., Any]  # Table(caption, headers, rows, numeric)


def cluster_sections(docs: Sequence[ResultDocument], kit: Kit) -> list[Any]:
    runs = [r for d in docs for r in d.runs if not r.warmup]
    return [s for s in (_server_section(runs, kit), _hosts_section(runs, kit)) if s.blocks]


def _fmt(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:,.{digits}f}"


def _config(run: Run) -> dict[str, Any]:
    return {k: v for k in _KEYS if (v := run.setting(k)) is not None}


def _median(values: Sequence[Any]) -> float | None:
    got = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.median(got) if got else None


def _server_section(runs: Sequence[Run], kit: Kit) -> Any:
    sec = kit.section("server-throughput", "Measured at the server")
    measured = [(r, r.server_throughput) for r in runs
                if r.server_throughput is not None and r.server_throughput.server]
    if not measured:
        return sec
    first = measured[0][1]
    assert first is not None
    sec.text(f"Throughput as the server counted it — rows inserted from {first.rows_source}, "
             f"commits from {first.commits_source}, read before the first insert and after "
             f"the last session ended — beside what the clients counted. With many clients, "
             f"the server's figure is the one to trust.", css="muted")
    groups: dict[str, list[ServerThroughput]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for run, doc in measured:
        assert doc is not None
        label = format_config(_config(run)) or "run"
        groups.setdefault(label, []).append(doc)
        configs[label] = _config(run)
    table = kit.table("Server and clients per configuration (medians over the runs)",
                      ["configuration", "runs", "server rows/s", "server commits/s",
                       "clients rows/s", "clients commits/s", "server rows / clients rows"],
                      [], frozenset({1, 2, 3, 4, 5, 6}))
    for label, docs in groups.items():
        srv = [d.server or {} for d in docs]
        cli = [d.clients for d in docs]
        ratio = _median([d.rows_ratio for d in docs])
        table.rows.append([label, str(len(docs)),
                           _fmt(_median([s.get("rows_per_s") for s in srv])),
                           _fmt(_median([s.get("commits_per_s") for s in srv])),
                           _fmt(_median([c.get("rows_per_s") for c in cli])),
                           _fmt(_median([c.get("commits_per_s") for c in cli])),
                           "—" if ratio is None else f"{ratio:.3f}"])
    _scaling(sec, groups, configs)
    sec.add_table(table)
    sec.bullets(sorted({d.warning for _, d in measured if d is not None and d.warning}),
                css="warnings")
    return sec


def _scaling(sec: Any, groups: dict[str, list[ServerThroughput]],
             configs: dict[str, dict[str, Any]]) -> None:
    """Server rows/s per number of client workers against the ideal (linear) line."""
    rest = {format_config({k: v for k, v in c.items() if k != "cluster_workers"})
            for c in configs.values()}
    if len(rest) != 1 or not all(isinstance(c.get("cluster_workers"), int)
                                 for c in configs.values()):
        return  # (the chart reads only when client workers are all that varies)
    points: dict[int, list[float]] = {}
    for label, docs in groups.items():
        points.setdefault(int(configs[label]["cluster_workers"]), []).extend(
            float(d.server["rows_per_s"]) for d in docs
            if d.server and isinstance(d.server.get("rows_per_s"), int | float))
    points = {n: v for n, v in points.items() if v}
    if len(points) < 2:
        return
    workers = sorted(points)
    median = [statistics.median(points[w]) for w in workers]
    ideal = [median[0] * w / workers[0] for w in workers]
    fig = charts.worker_scaling_chart(workers, median, [None] * len(workers),
                                      [None] * len(workers), ideal, unit="rows/s",
                                      label="rows/s at the server")
    fig.axes[0].set_xlabel("cluster workers (client processes)")
    sec.chart(fig, "Rows per second counted by the server per number of client workers, "
                   "against linear scaling: where the points fall below the line while the "
                   "clients' CPU is not saturated, the server is the bottleneck")


def _hosts_section(runs: Sequence[Run], kit: Kit) -> Any:
    sec = kit.section("cluster-hosts", "Machines of the cluster")
    with_hosts = [r for r in runs if r.cluster is not None and r.cluster.host_samples]
    if not with_hosts:
        return sec
    run = with_hosts[-1]
    cluster = run.cluster
    assert cluster is not None and cluster.host_samples is not None
    label = format_config(_config(run)) or "run"
    lost = (f", {len(cluster.lost_workers)} lost during the run" if cluster.lost_workers
            else "")
    sec.text(f"Host samples of every worker machine during the last cluster run ({label}; "
             f"cluster {cluster.cluster}, {len(cluster.workers)} worker(s){lost}).",
             css="muted")
    rows: list[list[str]] = []
    for host, entry in cluster.host_samples.items():
        series = entry.samples
        if series is None or not series.drawable:
            continue
        panels, stats_rows = timeline_panels(series)
        if panels:
            sec.chart(charts.timeline_chart(
                f"Host {host} (workers {', '.join(entry.workers)})", panels),
                f"Resource timeline of host {host}")
        rows.extend([host, *r] for r in stats_rows)
    if rows:
        sec.add_table(kit.table("Each host's series summarised (full series in the embedded "
                                "raw data)", ["host", "series", "unit", "samples", "mean",
                                              "p95", "max"], rows, frozenset({3, 4, 5, 6})))
    if cluster.tasks:
        sec.add_table(kit.table(
            "Task attempts (seconds since the run's start)",
            ["unit", "worker", "host", "status", "records", "started", "ended"],
            [[str(t.get("unit")), str(t.get("worker")), str(t.get("host")),
              str(t.get("status")), _fmt(t.get("records")), _fmt(t.get("started_s"), 2),
              _fmt(t.get("ended_s"), 2)] for t in cluster.tasks],
            frozenset({4, 5, 6})))
    return sec
