"""The cluster's own overhead: 2 Dask workers against `--workers 2` on one machine.

    python benchmarks/cluster.py [--records 50000] [--batch-size 1000] [--repeat 5]
                                 [--targets sqlite,postgresql] [--json]

One generated input (``--records`` records in 4 files) is migrated by two configurations:
``--workers 2`` (:class:`~migrator.ParallelCoordinator`: two spawned worker processes) and
``--cluster local:2`` (:class:`~migrator.cluster.ClusterCoordinator` on a LocalCluster of
two single-threaded worker processes, started once before the rounds, as a standing
cluster is). Both time planning, starting or reaching their workers and migrating, not the
schema's preparation; each run starts from a fresh schema. Targets: the embedded SQLite
(a fresh file per run) and PostgreSQL — a durable throwaway server started from
tests/servers.py (fsync on), reached through psqlODBC with ``Protocol=7.4-1``.

Rounds are interleaved (each configuration once per round, in alternating order) so that
load from other processes hits both alike. Per configuration the best and the median round
are shown; the ratio cluster / workers is given for the best rounds and as the median of
the rounds' own ratios (the two runs of a round ran back to back, so a host whose speed
drifts hits both alike). The goal: cluster / workers ≥ 0.9 on each target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import datasets  # noqa: E402
from migrator import (  # noqa: E402
    EngineConfig,
    Namespace,
    ParallelCoordinator,
    default_mapping,
    expand_inputs,
    open_target,
    reconcile,
)
from migrator.cluster import Cluster, ClusterCoordinator  # noqa: E402

CONFIGS = ("--workers 2", "--cluster local:2")


def one_run(config: str, data: Path, spec: str, batch_size: int,
            cluster: Cluster) -> dict[str, Any]:
    mapping = default_mapping()
    target = open_target(spec)
    target.set_namespace(Namespace("mb_bench_cluster") if spec.startswith("odbc:")
                         else Namespace())
    engine = EngineConfig(batch_size=batch_size)
    coordinator: ParallelCoordinator | ClusterCoordinator
    if config == "--workers 2":
        coordinator = ParallelCoordinator(target, mapping, engine, workers=2)
    else:
        coordinator = ClusterCoordinator(target, mapping, engine, cluster=cluster, workers=2)
    stats = coordinator.run(expand_inputs([str(data)]))
    rec = reconcile(target, mapping)
    target.close()
    if not rec.ok or rec.records_read != stats.records_read:
        raise SystemExit(f"{config}: not reconciled: {rec.problems}")
    return {"elapsed_s": stats.elapsed_s, "records": stats.records_read}


def measure(name: str, spec_for: Any, data: Path, args: argparse.Namespace,
            cluster: Cluster) -> dict[str, Any]:
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for r in range(args.repeat):
        order = CONFIGS if r % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            run = one_run(config, data, spec_for(), args.batch_size, cluster)
            times[config].append(run["elapsed_s"])
    rows = {c: {"best_rec_s": round(args.records / min(t)),
                "median_rec_s": round(args.records / statistics.median(t))}
            for c, t in times.items()}
    ratio = rows["--cluster local:2"]["best_rec_s"] / rows["--workers 2"]["best_rec_s"]
    paired = [w / c for w, c in zip(times["--workers 2"], times["--cluster local:2"],
                                    strict=True)]
    return {"target": name, "configs": rows, "ratio_best": round(ratio, 3),
            "ratio_paired_median": round(statistics.median(paired), 3),
            "ratios_per_round": [round(r, 3) for r in paired]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--targets", default="sqlite,postgresql")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    result: dict[str, Any] = {"records": args.records, "batch_size": args.batch_size,
                              "repeat": args.repeat, "cpus": os.cpu_count(),
                              "load_average_before": round(os.getloadavg()[0], 2),
                              "targets": []}
    with tempfile.TemporaryDirectory() as tmp, Cluster("local:2") as cluster:
        root = Path(tmp)
        data = root / "data"
        datasets.generate(data, args.records, files=4, seed=5)
        for name in targets:
            if name == "sqlite":
                counter = iter(range(10**6))
                result["targets"].append(measure(
                    name, lambda c=counter: f"sqlite:{root / f'run{next(c)}.db'}", data, args,
                    cluster))
            elif name == "postgresql":
                from servers import start_postgres

                pg = start_postgres(fast=False)
                try:
                    spec = "odbc:" + pg.odbc("Protocol=7.4-1")
                    result["targets"].append(measure(name, lambda s=spec: s, data, args,
                                                     cluster))
                finally:
                    pg.stop()
            else:
                raise SystemExit(f"--targets: unknown target {name!r} (sqlite, postgresql)")
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.records:,} records in 4 files, batch size {args.batch_size}, best (median) "
          f"of {args.repeat} interleaved rounds, {result['cpus']} CPUs, load average "
          f"{result['load_average_before']} before, {result['load_average_after']} after")
    print(f"| target | {' | '.join(CONFIGS)} | cluster / workers, best rounds | "
          f"cluster / workers, median of the rounds' ratios (goal >= 0.9) |")
    print("|---|---|---|---|---|")
    for t in result["targets"]:
        cells = [f"{t['configs'][c]['best_rec_s']:,} rec/s ({t['configs'][c]['median_rec_s']:,})"
                 for c in CONFIGS]
        print(f"| {t['target']} | {' | '.join(cells)} | {t['ratio_best']:.2f} | "
              f"{t['ratio_paired_median']:.2f} ({', '.join(map(str, t['ratios_per_round']))}) |")


if __name__ == "__main__":
    main()
