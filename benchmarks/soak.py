"""Soak: memory, file handles, threads, processes and connections flat over a long sweep.

    python benchmarks/soak.py --minutes 30 [--target sqlite|postgres|both] [--out DIR]
                              [--records 5000] [--inproc-runs 20] [--sample 10]

Run by hand, not in CI (the README's Development section). Starts a throwaway PostgreSQL
(``tests/servers.py``, durable defaults) when a PostgreSQL target is wanted, generates one
dataset (``datasets.generate(DIR, 5000, seed=1)``) and, until the time is up, repeats a
cycle per target (alternating SQLite and ``odbc:`` PostgreSQL with ``--target both``):

1. one ``python -m bench sweep --input DIR --batch-sizes 200,1000 --workers 1,2
   --connection per-batch,pooled,persistent --repeat 2 --target …`` subprocess. A
   dimension the installed CLI refuses with exit 2 is dropped and noted in the summary.
   The subprocess tree's peak RSS and fds are polled, and any of its processes still alive
   after it exits is reported;
2. ``--inproc-runs`` calls of :func:`bench.runner.execute_run` in *this* process, cycling
   batch size x workers x pipeline, to catch leaks that only a long-lived process shows.

A sampler thread records every ``--sample`` seconds (plus an "idle" sample at each step
boundary, when no migration is running): this process's RSS, open fds and threads, its
child processes (the PostgreSQL server's tree excluded), the PostgreSQL connections to the
soak database (``pg_stat_activity``, the sampler's own excluded), the entries of /tmp, and
psqlODBC's ``CommLog`` files (``/tmp/psqlodbc_*.log``: count, size, new ones, this
process's own). ``children`` includes multiprocessing's resource tracker, which the first
spawned worker starts and which lives as long as this process (expected; it is listed
apart in the summary). A sweep that would not finish before the deadline is replaced by
in-process runs, so the soak overruns ``--minutes`` by at most one run.

Output in ``--out`` (default ``runs/soak-<timestamp>``): ``samples.csv`` (the time series),
``summary.json`` (first/last/max per metric, least-squares slope per hour after the
warm-up, the per-sweep records and the verdict), ``sweeps/`` (each sweep's run folder and
log). Verdict "no growth" when, after the warm-up (2 minutes, or the end of the first
cycle of every target if later, so one-off imports and driver loads are not read as
growth): RSS slope < 5 MB/hour, and for fds, threads, children and connections the slope
over the idle samples is <= 2/hour and the final idle value is <= the maximum of the
first 5 minutes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:  # imported lazily: spawned workers re-import this file as __mp_main__
    from servers import Server

ROOT = Path(__file__).resolve().parents[1]

RECORDS = 5000
SEED = 1
SAMPLE_S = 10.0
INPROC_RUNS = 20
SWEEP_DIMENSIONS = {"--batch-sizes": "200,1000", "--workers": "1,2",
                    "--connection": "per-batch,pooled,persistent"}
SWEEP_REPEAT = 2
INPROC_GRID = list(itertools.product((200, 1000), (1, 2), ("off", "thread", "process")))

WARMUP_S = 120.0  # minimum warm-up excluded from the slopes
EARLY_S = 300.0  # "first 5 minutes" reference window for the counts
RSS_SLOPE_MAX = 5.0  # MB per hour
COUNT_SLOPE_MAX = 2.0  # fds / threads / children / connections per hour
RSS_METRIC = "rss_mb"
COUNT_METRICS = ("fds", "threads", "children", "pg_connections")
INFO_METRICS = ("tmp_entries", "psqlodbc_logs", "psqlodbc_new", "psqlodbc_mb",
                "own_commlog_kb")
RESOURCE_TRACKER = "multiprocessing.resource_tracker"
FIELDS = ("t_s", "wall", "phase", RSS_METRIC, *COUNT_METRICS, *INFO_METRICS)


class Interrupted(Exception):
    """SIGTERM/SIGINT: stop the loop and still write the summary."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# ---- sampling ------------------------------------------------------------------------------

class Sampler:
    """Samples this process and its surroundings into ``samples.csv``, thread-safely."""

    def __init__(self, csv_path: Path, server: Server | None, interval: float) -> None:
        self.proc = psutil.Process()
        self.server = server
        self.interval = interval
        self.t0 = time.monotonic()
        self.phase = "start"
        self.rows: list[dict[str, Any]] = []
        self.seen_children: dict[int, psutil.Process] = {}
        self._tmp_initial = set(os.listdir("/tmp"))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pg: Any = None
        self._fh = csv_path.open("w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._fh, fieldnames=FIELDS)
        self._csv.writeheader()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 30)
        if self._pg is not None:
            self._pg.close()
        self._fh.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    # -- the metrics
    def _server_pids(self) -> set[int]:
        if self.server is None or self.server.proc is None:
            return set()
        pid = self.server.proc.pid
        try:
            return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
        except psutil.Error:
            return {pid}

    def children(self) -> list[psutil.Process]:
        """Live descendants of this process, the PostgreSQL server's tree excluded."""
        skip = self._server_pids()
        try:
            kids = [c for c in self.proc.children(recursive=True) if c.pid not in skip]
        except psutil.Error:
            return []
        for c in kids:
            self.seen_children.setdefault(c.pid, c)
        return kids

    def pg_connections(self) -> int | None:
        if self.server is None:
            return None
        import psycopg

        for _ in range(2):
            try:
                if self._pg is None or self._pg.closed:
                    self._pg = psycopg.connect(self.server.psycopg_dsn(), autocommit=True,
                                               connect_timeout=5)
                row = self._pg.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.server.database,)).fetchone()
                return int(row[0]) if row else None
            except psycopg.Error:
                if self._pg is not None:
                    self._pg.close()
                self._pg = None
        return None

    def _tmp(self) -> dict[str, Any]:
        names = os.listdir("/tmp")
        logs = [n for n in names if n.startswith("psqlodbc_") and n.endswith(".log")]
        sizes: dict[str, int] = {}
        for n in logs:
            try:
                sizes[n] = os.stat(f"/tmp/{n}").st_size
            except OSError:
                continue
        own = sum(s for n, s in sizes.items() if _log_pid(n) == os.getpid())
        return {"tmp_entries": len(names), "psqlodbc_logs": len(logs),
                "psqlodbc_new": sum(1 for n in logs if n not in self._tmp_initial),
                "psqlodbc_mb": round(sum(sizes.values()) / 2**20, 3),
                "own_commlog_kb": round(own / 1024, 1)}

    def sample(self, phase: str | None = None) -> dict[str, Any]:
        """Take one sample now; ``phase`` overrides the current phase (e.g. "idle")."""
        with self._lock:
            try:
                rss = self.proc.memory_info().rss / 2**20
                fds, threads = self.proc.num_fds(), self.proc.num_threads()
            except psutil.Error:
                rss, fds, threads = float("nan"), -1, -1
            row: dict[str, Any] = {
                "t_s": round(self.elapsed(), 2),
                "wall": dt.datetime.now().isoformat(timespec="seconds"),
                "phase": phase or self.phase, RSS_METRIC: round(rss, 2), "fds": fds,
                "threads": threads, "children": len(self.children()),
                "pg_connections": self.pg_connections(), **self._tmp()}
            self.rows.append(row)
            self._csv.writerow(row)
            self._fh.flush()
            return row


# ---- the work ------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepRecord:
    target: str
    index: int
    start_s: float
    duration_s: float
    returncode: int
    runs: int  # configurations x (repeat + warm-up)
    measured_runs: int
    peak_tree_rss_mb: float
    peak_tree_fds: int
    leftover_processes: list[int]
    out: str


@dataclasses.dataclass
class Soak:
    args: argparse.Namespace
    out: Path
    dataset: Path
    targets: dict[str, str]  # name -> target spec
    sampler: Sampler
    dimensions: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    dropped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    sweeps: list[SweepRecord] = dataclasses.field(default_factory=list)
    inproc: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    boundary_leftovers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    first_cycle_end: dict[str, float] = dataclasses.field(default_factory=dict)

    def log(self, msg: str) -> None:
        print(f"[{self.sampler.elapsed():7.1f}s] {msg}", flush=True)

    # -- subprocess sweeps
    def sweep(self, name: str) -> SweepRecord:
        """One `bench sweep` subprocess. A dimension the CLI refuses (exit 2 naming its
        option), or that makes the first sweep of a target fail (non-zero exit naming the
        dimension, e.g. pooling that one process cannot switch), is dropped for that target,
        noted, and the sweep retried without it."""
        dims = self.dimensions.setdefault(name, dict(SWEEP_DIMENSIONS))
        while True:
            index = len(self.sweeps) + 1
            folder = self.out / "sweeps" / f"{index:03d}-{name}"
            folder.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "bench", "sweep", "--input", str(self.dataset),
                   *itertools.chain.from_iterable(dims.items()),
                   "--repeat", str(SWEEP_REPEAT), "--target", self.targets[name],
                   "--out", str(folder), "--json"]
            rec = self._run_sweep(name, index, folder, cmd)
            if rec.returncode == 0:
                return rec
            err = " ".join(re.sub("[\u2500-\u257f]", " ", folder.with_suffix(
                ".stderr").read_text(errors="replace")).split())
            first = not any(s.target == name and s.returncode == 0 for s in self.sweeps)
            refused = next((o for o in dims if o != "--batch-sizes" and (
                o in err if rec.returncode == 2 else
                first and o.lstrip("-").rstrip("s") in err.lower())), None)
            if refused is None:
                self.sweeps.append(rec)
                self.errors.append(f"sweep {index} ({name}) exited {rec.returncode}: "
                                   f"{err[-300:]}")
                return rec
            reason = err[err.find("Invalid value"):] if "Invalid value" in err else err[-300:]
            self.dropped.append({"target": name, "option": refused, "value": dims.pop(refused),
                                 "exit": str(rec.returncode), "stderr": reason})
            self.log(f"`bench sweep` on {name} failed on {refused} (exit {rec.returncode}): "
                     f"dropped that dimension for {name}")
            for leftover in (folder, folder.with_suffix(".stdout"),
                             folder.with_suffix(".stderr")):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def _run_sweep(self, name: str, index: int, folder: Path,
                   cmd: list[str]) -> SweepRecord:
        self.sampler.phase = f"sweep:{name}"
        start = self.sampler.elapsed()
        peak_rss = 0.0
        peak_fds = 0
        seen: dict[int, psutil.Process] = {}
        with folder.with_suffix(".stdout").open("wb") as out, \
                folder.with_suffix(".stderr").open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
            try:
                root = psutil.Process(proc.pid)
                seen[proc.pid] = root
                while proc.poll() is None:
                    rss, fds = _tree(root, seen)
                    peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
                    time.sleep(0.5)
            except BaseException:
                proc.terminate()
                proc.wait(timeout=60)
                raise
        alive = [p.pid for p in seen.values() if _alive(p)]
        doc = _json_or_none(folder.with_suffix(".stdout"))
        runs = measured = 0
        if doc:
            measured = int(doc.get("measured_runs", 0))
            runs = int(doc["configurations"]) * (int(doc["repeat"]) + int(doc["warmup"]))
        rec = SweepRecord(name, index, round(start, 1), round(self.sampler.elapsed() - start, 1),
                          proc.returncode, runs, measured, round(peak_rss, 1), peak_fds,
                          alive, str(folder))
        if proc.returncode == 0:
            self.sweeps.append(rec)
        self.log(f"sweep {index} {name}: exit {proc.returncode}, {runs} runs "
                     f"({measured} measured) in {rec.duration_s:.0f}s, peak tree RSS "
                     f"{peak_rss:.0f} MB, {peak_fds} fds, leftover {alive or 'none'}")
        return rec

    # -- in-process runs
    def inproc_block(self, name: str, deadline: float) -> None:
        from bench.runner import RunRequest, execute_run

        self.sampler.phase = f"inproc:{name}"
        stats = self.inproc.setdefault(name, {"runs": 0, "failed": 0, "records": 0,
                                              "seconds": 0.0})
        run_dir = self.out / "work" / f"inproc-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.args.inproc_runs):
            if self.sampler.elapsed() >= deadline:
                break
            batch, workers, pipeline = INPROC_GRID[stats["runs"] % len(INPROC_GRID)]
            t0 = time.perf_counter()
            try:
                outcome = execute_run(RunRequest(
                    inputs=[str(self.dataset)], target=self.targets_inproc(name),
                    batch_size=batch, workers=workers, pipeline=pipeline, out=run_dir))
                problems = list(outcome.stats.errors) + list(outcome.reconciliation.problems)
                stats["records"] += outcome.stats.records_read
                if problems or not outcome.reconciliation.ok:
                    stats["failed"] += 1
                    self.errors.append(f"in-process {name} run {stats['runs'] + 1}: "
                                       f"{problems[:1]}")
            except Exception as exc:  # recorded, the soak goes on
                stats["failed"] += 1
                self.errors.append(f"in-process {name} run {stats['runs'] + 1} "
                                   f"(batch={batch}, workers={workers}, pipeline={pipeline}): "
                                   f"{type(exc).__name__}: {exc}")
            stats["runs"] += 1
            stats["seconds"] = round(stats["seconds"] + time.perf_counter() - t0, 1)
        self.log(f"in-process {name}: {stats['runs']} runs so far, {stats['failed']} failed"
                 + (f" (last error: {self.errors[-1]})" if stats["failed"] else ""))

    def targets_inproc(self, name: str) -> str:
        if name == "sqlite":
            return f"sqlite:{self.out / 'work' / 'inproc.db'}"
        return self.targets[name]

    def boundary(self, label: str) -> None:
        """An idle sample between steps, and a check that nothing was left running."""
        time.sleep(1.0)  # let exiting workers be reaped
        row = self.sampler.sample("idle")
        kids = [k for k in self.sampler.children()
                if RESOURCE_TRACKER not in " ".join(_cmdline(k))]
        if kids or (row["pg_connections"] or 0) > 0:
            self.boundary_leftovers.append({
                "t_s": row["t_s"], "after": label, "children": [
                    {"pid": k.pid, "cmdline": " ".join(_cmdline(k))[:200]} for k in kids],
                "pg_connections": row["pg_connections"]})
            self.log(f"after {label}: {len(kids)} child processes, "
                     f"{row['pg_connections']} PostgreSQL connections left")

    # -- the loop
    def run(self) -> None:
        deadline = self.args.minutes * 60.0
        names = list(self.targets)
        self.boundary("start")
        for cycle in itertools.count():
            name = names[cycle % len(names)]
            if self.sampler.elapsed() >= deadline:
                break
            last = [s.duration_s for s in self.sweeps if s.target == name
                    and s.returncode == 0]
            if not last or self.sampler.elapsed() + last[-1] < deadline:
                self.sweep(name)
                self.boundary(f"sweep {len(self.sweeps)} ({name})")
            self.inproc_block(name, deadline)
            self.boundary(f"in-process block ({name})")
            self.first_cycle_end.setdefault(name, self.sampler.elapsed())


def _log_pid(name: str) -> int | None:
    """The pid psqlODBC puts at the end of a log name: psqlodbc_python3_root1234.log."""
    m = re.search(r"(\d+)\.log$", name)
    return int(m.group(1)) if m else None


def _tree(root: psutil.Process, seen: dict[int, psutil.Process]) -> tuple[float, int]:
    """(RSS in MB, open fds) of ``root`` and its descendants now; remembers every pid."""
    rss, fds = 0, 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    for p in procs:
        seen.setdefault(p.pid, p)
        try:
            rss += p.memory_info().rss
            fds += p.num_fds()
        except psutil.Error:
            continue
    return rss / 2**20, fds


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# ---- analysis ------------------------------------------------------------------------------

def _series(rows: list[dict[str, Any]], metric: str) -> Iterator[tuple[float, float]]:
    for r in rows:
        v = r.get(metric)
        if v is not None and v == v and v != -1:  # skip None, NaN and failed reads
            yield float(r["t_s"]), float(v)


def _slope(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Least-squares slope per hour (scipy.stats.linregress) with its standard error."""
    from scipy.stats import linregress

    if len(points) < 3 or len({t for t, _ in points}) < 2:
        return None
    ts, vs = zip(*points, strict=True)
    if len(set(vs)) == 1:
        return {"per_hour": 0.0, "stderr_per_hour": 0.0, "r": 0.0, "n": len(points)}
    fit = linregress([t / 3600 for t in ts], vs)
    return {"per_hour": round(float(fit.slope), 4),
            "stderr_per_hour": round(float(fit.stderr), 4),
            "r": round(float(fit.rvalue), 4), "n": len(points)}


def analyse(rows: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """first/last/max per metric, slopes after the warm-up, and the verdict."""
    idle = [r for r in rows if r["phase"] == "idle"]
    metrics: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for m in (RSS_METRIC, *COUNT_METRICS, *INFO_METRICS):
        pts = list(_series(rows, m))
        if not pts:
            continue
        after = [p for p in pts if p[0] >= warmup_s]
        idle_pts = list(_series(idle, m))
        idle_after = [p for p in idle_pts if p[0] >= warmup_s]
        early = [v for t, v in pts if t <= EARLY_S]
        entry: dict[str, Any] = {
            "first": pts[0][1], "last": pts[-1][1], "max": max(v for _, v in pts),
            "min": min(v for _, v in pts),
            "max_first_5min": max(early) if early else None,
            "slope_after_warmup": _slope(after),
            "slope_after_2min": _slope([p for p in pts if p[0] >= WARMUP_S]),
            "idle_first": idle_pts[0][1] if idle_pts else None,
            "idle_last": idle_pts[-1][1] if idle_pts else None,
            "idle_max": max(v for _, v in idle_pts) if idle_pts else None,
            "idle_slope_after_warmup": _slope(idle_after)}
        metrics[m] = entry
        if m == RSS_METRIC:
            s = entry["slope_after_warmup"]
            ok = s is not None and s["per_hour"] < RSS_SLOPE_MAX
            checks.append({"metric": m, "ok": ok, "rule": f"slope < {RSS_SLOPE_MAX} MB/hour",
                           "slope_per_hour": s and s["per_hour"]})
        elif m in COUNT_METRICS:
            s = entry["idle_slope_after_warmup"]
            slope_ok = s is None or s["per_hour"] <= COUNT_SLOPE_MAX
            ref = entry["max_first_5min"]
            level_ok = entry["idle_last"] is None or ref is None or entry["idle_last"] <= ref
            checks.append({"metric": m, "ok": slope_ok and level_ok,
                           "rule": f"idle slope <= {COUNT_SLOPE_MAX}/hour and final idle "
                                   f"value <= max of the first {EARLY_S / 60:.0f} minutes",
                           "slope_per_hour": s and s["per_hour"],
                           "final_idle": entry["idle_last"], "max_first_5min": ref})
    if not checks or any(c["slope_per_hour"] is None and c["metric"] == RSS_METRIC
                         for c in checks):
        verdict = "insufficient data (run longer than the warm-up)"
    else:
        verdict = "no growth" if all(c["ok"] for c in checks) else "growth"
    return {"metrics": metrics, "checks": checks, "verdict": verdict}


# ---- main ----------------------------------------------------------------------------------

def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=30.0, help="soak duration [30]")
    p.add_argument("--target", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder [runs/soak-<timestamp>]")
    p.add_argument("--records", type=int, default=RECORDS, help=f"dataset size [{RECORDS}]")
    p.add_argument("--inproc-runs", type=int, default=INPROC_RUNS,
                   help=f"in-process runs after each sweep [{INPROC_RUNS}]")
    p.add_argument("--sample", type=float, default=SAMPLE_S,
                   help=f"sampling interval in seconds [{SAMPLE_S:g}]")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.records <= 0 or args.inproc_runs <= 0 or args.sample <= 0:
        p.error("--minutes, --records, --inproc-runs and --sample must be positive")
    return args


def _code_state() -> dict[str, Any]:
    """HEAD and uncommitted files (read-only git), since the tree may change under a soak."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30, check=False).stdout.strip()
        except OSError:
            return ""
    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain").splitlines()}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from servers import start_postgres

    import datasets

    out = (args.out or ROOT / "runs" / f"soak-{dt.datetime.now():%Y%m%d-%H%M%S}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = dt.datetime.now().isoformat(timespec="seconds")
    code_at_start = _code_state()
    dataset = out / "dataset"
    datasets.generate(dataset, args.records, seed=SEED)
    server = start_postgres(fast=False, database="soak") \
        if args.target in ("postgres", "both") else None
    targets: dict[str, str] = {}
    if args.target in ("sqlite", "both"):
        targets["sqlite"] = f"sqlite:{out / 'work' / 'sweep.db'}"
    if server is not None:
        targets["postgres"] = "odbc:" + server.odbc()
    sampler = Sampler(out / "samples.csv", server, args.sample)
    soak = Soak(args, out, dataset, targets, sampler)
    interrupted: str | None = None
    try:
        sampler.start()
        print(f"soak: {args.minutes:g} min, targets {', '.join(targets)}, output {out}",
              flush=True)
        try:
            soak.run()
        except Interrupted as exc:
            interrupted = str(exc)
            soak.log(f"interrupted by {exc}")
        soak.boundary("end")
    finally:
        sampler.close()
        if server is not None:
            server.stop()
    # multiprocessing's resource tracker (one per process, started by the first spawn)
    # lives as long as this process: expected, reported apart from real leftovers.
    alive = [{"pid": p.pid, "cmdline": " ".join(_cmdline(p))[:200]}
             for p in sampler.seen_children.values() if _alive(p)]
    leftover = [a for a in alive if RESOURCE_TRACKER not in a["cmdline"]]
    helpers = [a for a in alive if RESOURCE_TRACKER in a["cmdline"]]
    warmup = max([WARMUP_S, *soak.first_cycle_end.values()])
    analysis = analyse(sampler.rows, warmup)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started, "duration_s": round(sampler.elapsed(), 1),
        "code_at_start": code_at_start, "code_at_end": _code_state(),
        "interrupted": interrupted, "records": args.records, "targets": list(targets),
        "sweep_options": soak.dimensions, "dropped_dimensions": soak.dropped,
        "sweeps_per_target": {n: sum(1 for s in soak.sweeps if s.target == n
                                     and s.returncode == 0) for n in targets},
        "failed_sweeps_per_target": {n: sum(1 for s in soak.sweeps if s.target == n
                                            and s.returncode != 0) for n in targets},
        "sweep_runs_per_target": {n: sum(s.runs for s in soak.sweeps if s.target == n)
                                  for n in targets},
        "inproc_per_target": soak.inproc,
        "warmup_s": round(warmup, 1),
        "thresholds": {"rss_mb_per_hour": RSS_SLOPE_MAX, "count_per_hour": COUNT_SLOPE_MAX,
                       "early_window_s": EARLY_S},
        **analysis,
        "sweeps": [dataclasses.asdict(s) for s in soak.sweeps],
        "boundary_leftovers": soak.boundary_leftovers,
        "processes_alive_after_soak": leftover,
        "helpers_alive_after_soak": helpers,
        "errors": soak.errors,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: summary[k] for k in (
        "duration_s", "sweep_options", "sweeps_per_target", "sweep_runs_per_target",
        "inproc_per_target", "dropped_dimensions", "verdict", "checks", "errors")}, indent=1))
    print(f"wrote {out / 'samples.csv'} and {out / 'summary.json'}")
    return 0 if analysis["verdict"] == "no growth" and not soak.errors else 1


if __name__ == "__main__":
    sys.exit(main())
