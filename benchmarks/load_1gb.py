"""Load held: a ~1 GB generated input through `bench run`, with the child's peak RSS.

    python benchmarks/load_1gb.py [--records 480000] [--workers 1] [--pipeline off]
                                  [--batch-size 1000] [--keep DIR] [--json]

Generates ``--records`` orders (≈ 2.2 kB each: 480,000 ≈ 1 GB) into a work folder, runs
``python -m bench run`` on them in a subprocess and polls the RSS of that process *and its
children* (workers, the pipeline's read/map process) with psutil every 0.1 s. ``ru_maxrss``
is not used: Linux carries a parent's peak over fork/exec, so it would report the
generator's memory, not the run's.

Streaming means memory flat in the input size: the report shows the RSS after the first
10% of the input and at the peak, and their ratio (≈ 1 when flat). Throughput is the run's
own figure (records/min from its result file) and the wall time of the subprocess.

The 30-minute soak (memory, file handles and connections flat over a long sweep) is run by
hand: ``bench sweep --records 200000 --repeat 30 …`` while watching the same figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

import datasets

POLL_S = 0.1


@dataclass
class MemoryTrace:
    """RSS of a process tree over time: ``samples`` are (seconds, bytes of the whole tree)."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    peak_main: int = 0  # the `bench run` process alone
    peak_tree: int = 0  # it and its children at the same instant
    peak_fds: int = 0

    def add(self, t: float, main: int, tree: int, fds: int) -> None:
        self.samples.append((t, tree))
        self.peak_main = max(self.peak_main, main)
        self.peak_tree = max(self.peak_tree, tree)
        self.peak_fds = max(self.peak_fds, fds)

    def rss_at(self, share: float, migrating_s: float) -> int:
        """Tree RSS at ``share`` of the migration itself: the last ``migrating_s`` seconds
        of the trace (before them the process was importing, not migrating)."""
        if not self.samples:
            return 0
        end = self.samples[-1][0]
        start = max(0.0, end - migrating_s)
        return next(rss for t, rss in self.samples if t >= start + share * migrating_s)


def _tree(proc: psutil.Process) -> tuple[int, int, int]:
    """(RSS of proc, RSS of proc + children, open fds of the tree)."""
    try:
        main = proc.memory_info().rss
        fds = proc.num_fds()
        tree = main
        for child in proc.children(recursive=True):
            try:
                tree += child.memory_info().rss
                fds += child.num_fds()
            except psutil.Error:
                continue
        return main, tree, fds
    except psutil.Error:
        return 0, 0, 0


def watch(argv: list[str]) -> tuple[int, float, MemoryTrace, str]:
    """Run ``argv``, polling its process tree; returns (exit code, wall s, trace, stderr)."""
    trace = MemoryTrace()
    t0 = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        ps = psutil.Process(child.pid)
        while child.poll() is None:
            main, tree, fds = _tree(ps)
            if tree:
                trace.add(time.perf_counter() - t0, main, tree, fds)
            time.sleep(POLL_S)
        _, err = child.communicate()
    return child.returncode, time.perf_counter() - t0, trace, err.decode(errors="replace")


def main(args: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=480_000)
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pipeline", default="off", choices=["off", "thread", "process"])
    ap.add_argument("--target", default=None, help="default: sqlite in the work folder")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (and reuse)")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args(args)

    work = opts.keep or Path(tempfile.mkdtemp(prefix="mb-load-"))
    data = work / f"data-{opts.records}"
    try:
        t = time.perf_counter()
        if not (data / "manifest.json").is_file():
            datasets.generate(data, opts.records, files=opts.files, seed=1)
        gen_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in data.glob("*.xml"))
        run_dir = work / f"run-{time.strftime('%H%M%S')}"
        target = opts.target or f"sqlite:{run_dir / 'mig.db'}"
        argv = [sys.executable, "-m", "bench", "run", "--input", str(data), "--target", target,
                "--batch-size", str(opts.batch_size), "--workers", str(opts.workers),
                "--pipeline", opts.pipeline, "--out", str(run_dir), "--json"]
        code, wall, trace, err = watch(argv)
        if code != 0:
            print(f"bench run failed (exit {code}):\n{err}", file=sys.stderr)
            return 1
        result = json.loads((run_dir / "result.json").read_text())
        metrics: dict[str, Any] = result["runs"][0]["metrics"]
        early = trace.rss_at(0.1, metrics["elapsed_s"])
        report = {
            "records": opts.records, "input_bytes": size, "generate_s": round(gen_s, 1),
            "workers": opts.workers, "pipeline": opts.pipeline,
            "batch_size": opts.batch_size, "wall_s": round(wall, 1),
            "run_elapsed_s": round(metrics["elapsed_s"], 1),
            "throughput_rec_per_min": round(metrics["throughput_rec_per_min"]),
            "input_mb_per_s": round(size / 1e6 / metrics["elapsed_s"], 1),
            "peak_rss_main_mb": round(trace.peak_main / 2**20, 1),
            "peak_rss_tree_mb": round(trace.peak_tree / 2**20, 1),
            "rss_at_10pct_mb": round(early / 2**20, 1),
            "peak_over_10pct": round(trace.peak_tree / early, 3) if early else None,
            "peak_open_fds": trace.peak_fds,
            "reconciled": result["runs"][0]["reconciliation"]["ok"],
            "samples": len(trace.samples),
            **{"trace": asdict(trace)["samples"][:: max(1, len(trace.samples) // 50)]},
        }
        if opts.json:
            print(json.dumps(report, indent=1))
        else:
            for k, v in report.items():
                if k != "trace":
                    print(f"{k:>24}: {v}")
        return 0 if report["reconciled"] else 1
    finally:
        if opts.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
