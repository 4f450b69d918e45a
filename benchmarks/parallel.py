"""Workers and pipeline modes on the embedded default (SQLite): what do they buy?

    python benchmarks/parallel.py [--records 50000] [--files 8] [--batch-size 1000]
                                  [--repeat 3] [--target odbc:...] [--json]

On one generated input (one file, and the same records in ``--files`` files) it runs:
  sequential (1 worker, pipeline off), pipeline thread, pipeline process,
  2 workers, 2 workers + pipeline process,
each into a fresh SQLite file through :class:`~migrator.ParallelCoordinator` (planning and
worker start-up included, schema creation not). Rounds are interleaved (every
configuration once per round) so that load from other processes hits them alike; per
configuration the best round counts (noise only ever adds time) and the median is shown
too. It prints throughput, the ratios the project sets goals for —
pipeline ``process`` ≥ 1.4× sequential, 2 workers ≥ 1.6× one worker — the overlap
efficiency, and the 1-minute load average before and after (the machine may be shared).
It also prints the pipeline's bound from the sequential run's own stages: overlapping two
halves can at best hide the smaller one, so with all the mapping in the reading half
``process`` cannot beat (read_map + insert) / max(read_map, insert). The ``process``
pipeline moves value conversion to the inserter while the inserter keeps up, which lifts
that bound; the share of records the inserter converted is printed per configuration.
``--target`` runs against another database (e.g. PostgreSQL through ODBC); each run starts
from a fresh schema.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import datasets
from migrator import (
    EngineConfig,
    ParallelCoordinator,
    default_mapping,
    expand_inputs,
    open_target,
    reconcile,
)

CONFIGS: list[tuple[str, int, str]] = [  # (name, workers, pipeline)
    ("sequential", 1, "off"),
    ("pipeline thread", 1, "thread"),
    ("pipeline process", 1, "process"),
    ("2 workers", 2, "off"),
    ("2 workers + process", 2, "process"),
]


def one_run(data: Path, db: Path, workers: int, pipeline: str, batch_size: int,
            queue_depth: int, spec: str | None) -> dict[str, Any]:
    mapping = default_mapping()
    target = open_target(spec or f"sqlite:{db}")
    stats = ParallelCoordinator(
        target, mapping, EngineConfig(batch_size=batch_size, pipeline=pipeline,
                                      queue_depth=queue_depth),
        workers=workers).run(expand_inputs([str(data)]))
    rec = reconcile(target, mapping)
    if not rec.ok:
        raise SystemExit(f"not reconciled: {rec.problems}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return {"elapsed_s": stats.elapsed_s, "records": stats.records_read,
            "overlap_efficiency": stats.overlap_efficiency,
            "stage_busy_s": stats.stage_busy, "stages": stats.stages,
            "per_worker_rec_s": [round(w.rec_per_s) for w in stats.workers],
            "converted_by_inserter": stats.converted_by_inserter}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=8, help="files of the many-files layout")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--queue-depth", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", help="target spec (default: a fresh SQLite file per run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    result: dict[str, Any] = {"records": args.records, "batch_size": args.batch_size,
                              "target": (args.target or "sqlite").split(":", 1)[0],
                              "queue_depth": args.queue_depth, "repeat": args.repeat,
                              "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        layouts = {"one file": root / "one", f"{args.files} files": root / "many"}
        datasets.generate(layouts["one file"], args.records, seed=1)
        datasets.generate(layouts[f"{args.files} files"], args.records, files=args.files,
                          seed=1)
        result["load_average_before"] = round(os.getloadavg()[0], 2)
        times: dict[str, dict[str, list[dict[str, Any]]]] = {
            layout: {name: [] for name, _, _ in CONFIGS} for layout in layouts}
        for _ in range(args.repeat):
            for layout, data in layouts.items():
                for name, workers, pipeline in CONFIGS:
                    times[layout][name].append(one_run(data, root / "bench.db", workers,
                                                       pipeline, args.batch_size,
                                                       args.queue_depth, args.target))
        result["load_average_after"] = round(os.getloadavg()[0], 2)

    result["layouts"] = {}
    for layout, runs in times.items():
        rows = {}
        for name, rounds in runs.items():
            best = min(rounds, key=lambda r: r["elapsed_s"])
            rows[name] = {
                "best_rec_s": round(args.records / best["elapsed_s"]),
                "median_rec_s": round(args.records / statistics.median(
                    r["elapsed_s"] for r in rounds)),
                "overlap_efficiency": round(best["overlap_efficiency"], 2),
                "per_worker_rec_s": best["per_worker_rec_s"],
                "converted_by_inserter_pct": round(
                    100 * best["converted_by_inserter"] / best["records"]),
            }
        seq = rows["sequential"]["best_rec_s"]
        seq_busy = min(runs["sequential"], key=lambda r: r["elapsed_s"])["stage_busy_s"]
        rows["sequential"]["stage_busy_s"] = {k: round(v, 2) for k, v in seq_busy.items()}
        ratios = {
            "thread / sequential": rows["pipeline thread"]["best_rec_s"] / seq,
            "process / sequential (goal >= 1.4)": rows["pipeline process"]["best_rec_s"] / seq,
            "2 workers / 1 worker (goal >= 1.6)": rows["2 workers"]["best_rec_s"] / seq,
            "2 workers + process / sequential": rows["2 workers + process"]["best_rec_s"] / seq,
            "bound if mapping stayed in the reader":
                sum(seq_busy.values()) / max(seq_busy.values()),
        }
        result["layouts"][layout] = {"configs": rows,
                                     "ratios": {k: round(v, 2) for k, v in ratios.items()}}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.records:,} records into {result['target']}, batch size {args.batch_size}, "
          f"queue depth "
          f"{args.queue_depth}, best (median) of {args.repeat} interleaved rounds, "
          f"{result['cpus']} CPUs, load average {result['load_average_before']} before, "
          f"{result['load_average_after']} after")
    for layout, doc in result["layouts"].items():
        print(f"\n{layout}:")
        for name, row in doc["configs"].items():
            print(f"  {name:22} {row['best_rec_s']:>7,} rec/s ({row['median_rec_s']:>7,})  "
                  f"overlap {row['overlap_efficiency']:.2f}  "
                  f"converted by inserter {row['converted_by_inserter_pct']:>3}%  "
                  f"per worker {row['per_worker_rec_s']}")
        print(f"  sequential stage busy: {doc['configs']['sequential']['stage_busy_s']}")
        for label, ratio in doc["ratios"].items():
            print(f"  {label:40} {ratio:.2f}x")


if __name__ == "__main__":
    main()
