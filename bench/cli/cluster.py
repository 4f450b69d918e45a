"""The command-line options of cluster runs (`bench run`, `bench sweep`) and the lines
`bench run` prints about a cluster and the server's own counters."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from migrator.cluster import CLUSTER_FORMS, ClusterSpec


def _cluster(value: str | None) -> str | None:
    if value is not None:
        try:
            ClusterSpec.parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--cluster") from None
    return value


ClusterOption = Annotated[str | None, typer.Option(
    "--cluster", callback=_cluster, metavar="local[:N]|tcp://HOST:PORT",
    help=f"Run the work units on a Dask cluster ({CLUSTER_FORMS}): local\\[:N] starts N "
         "worker processes here, tcp://HOST:PORT joins a running `dask scheduler`. "
         "Needs pip install 'migration-bench\\[cluster]'.")]


def check_cluster_options(cluster: str | None, cluster_workers: Any, max_sessions: int | None,
                          *, workers: int | str | None) -> None:
    """Usage errors (exit 2) of flags that need ``--cluster`` or exclude it."""
    if cluster is None:
        for flag, value in (("--cluster-workers", cluster_workers),
                            ("--max-sessions", max_sessions)):
            if value is not None:
                raise typer.BadParameter(f"{flag} needs --cluster (it sizes a cluster run)",
                                         param_hint=flag)
        return
    if workers not in (None, 1, "1"):
        raise typer.BadParameter("--workers starts processes on this machine; with --cluster "
                                 "the cluster's workers run the units: use --cluster-workers",
                                 param_hint="--workers")


def describe_cluster_run(summary: dict[str, Any]) -> list[str]:
    """The lines `bench run` prints about the cluster and the server's counters."""
    lines = []
    c = summary.get("cluster")
    if c:
        lost = f"; lost {len(c['lost_workers'])} worker(s)" if c.get("lost_workers") else ""
        rerun = f", {len(c['rerun_units'])} unit(s) run again" if c.get("rerun_units") else ""
        cap = f", at most {c['max_sessions']} session(s)" if c.get("max_sessions") else ""
        lines.append(f"cluster {c['cluster']}: {len(c['workers'])} worker(s) on "
                     f"{len(c['hosts']) or '?'} host(s){cap}{lost}{rerun}")
    t = summary.get("server_throughput")
    if t and t.get("server"):
        srv, cli = t["server"], t["clients"]
        lines.append(f"at the server: {_num(srv['rows_per_s'])} rows/s and "
                     f"{_num(srv['commits_per_s'])} commits/s ({_num(srv['rows_inserted'])} "
                     f"rows, {_num(srv['commits'])} commits in {srv['window_s']:.2f} s); "
                     f"the clients counted {_num(cli['rows_per_s'])} rows/s and "
                     f"{_num(cli['commits_per_s'])} commits/s")
    if t and (t.get("warning") or t.get("error")):
        lines.append(f"server counters: {t.get('error') or t.get('warning')}")
    return lines


def _num(value: Any) -> str:
    return "?" if value is None else f"{value:,.0f}"
