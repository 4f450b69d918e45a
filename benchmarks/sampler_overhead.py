"""What sampling costs: sampler CPU and migration throughput with sampling on vs off.

    python benchmarks/sampler_overhead.py [--seconds 3] [--pairs 6] [--interval 0.5]
                                          [--dsn "host=... dbname=..."]

Starts a throwaway PostgreSQL (tests/servers.py) unless ``--dsn`` is given, then:
  1. runs a migration-like workload (CPU mapping per record + batched INSERTs through
     psycopg, in this process, so the sampling thread competes for the GIL as it would in
     a sequential `bench run`) for ``--seconds``, ``--pairs`` times with sampling on and
     off, interleaved in random order, and compares median throughput (goal: < 3 % loss);
  2. reports the sampler's own cost from its SamplerOverhead (CPU of the sampling thread
     as % of one core, mean/max round time) and the CPU the sampler's PostgreSQL backend
     used on the server side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import psutil
import psycopg

from diagnostics.registry import sampling_session
from diagnostics.sampler import SamplerOverhead

BATCH = 500


def workload(dsn: str, seconds: float) -> float:
    """Records per second of map (sha256 chain) + INSERT batches for ``seconds``."""
    with psycopg.connect(dsn, application_name="migration-bench") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS overhead (id bigint, digest text)")
        conn.execute("TRUNCATE overhead")
        conn.commit()
        done = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            rows = []
            for i in range(done, done + BATCH):
                digest = str(i).encode()
                for _ in range(20):
                    digest = hashlib.sha256(digest).digest()
                rows.append((i, digest.hex()))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO overhead VALUES (%s, %s)", rows)
            conn.commit()
            done += BATCH
        return done / (time.perf_counter() - start)


def backend_cpu(dsn: str, app: str) -> float | None:
    """CPU seconds used so far by the backend(s) of application ``app`` (local server)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
            )
        ]
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        total += t.user + t.system
    return total


def run(dsn: str, seconds: float, pairs: int, interval: float) -> dict[str, Any]:
    workload(dsn, 1.0)  # warm-up: caches, table, JIT-free steady state
    order = [mode for _ in range(pairs) for mode in random.sample(["on", "off"], 2)]
    rates: dict[str, list[float]] = {"on": [], "off": []}
    overheads: list[SamplerOverhead] = []
    server_cpu: list[float] = []
    sampler_app = "migration-bench-sampler"

    def connect() -> Any:
        return psycopg.connect(dsn, application_name=sampler_app)

    for mode in order:
        if mode == "off":
            rates["off"].append(workload(dsn, seconds))
            continue
        session = sampling_session("postgresql", connect, interval=interval)
        session.start()
        cpu0 = backend_cpu(dsn, sampler_app)
        rates["on"].append(workload(dsn, seconds))
        cpu1 = backend_cpu(dsn, sampler_app)
        series = session.stop()
        if series.overhead is not None:
            overheads.append(series.overhead)
        if cpu0 is not None and cpu1 is not None and series.overhead is not None:
            server_cpu.append(100 * (cpu1 - cpu0) / series.overhead.wall_s)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {
        "interval_s": interval,
        "seconds_per_run": seconds,
        "pairs": pairs,
        "throughput_on_rec_s": on,
        "throughput_off_rec_s": off,
        "throughput_loss_pct": 100 * (off - on) / off,
        "runs_on": rates["on"],
        "runs_off": rates["off"],
        "sampler_cpu_pct_of_core": statistics.median(o.cpu_pct_of_core for o in overheads),
        "sampler_mean_round_ms": statistics.median(o.mean_round_ms for o in overheads),
        "sampler_max_round_ms": max(o.max_round_ms for o in overheads),
        "sampler_cpu_s_by_sampler": overheads[-1].per_sampler_cpu_s if overheads else {},
        "server_backend_cpu_pct_of_core": statistics.median(server_cpu) if server_cpu else None,
        "goal": "throughput loss < 3 %",
    }


def with_server(body: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    from servers import start_postgres

    server = start_postgres(fast=False)
    try:
        return body(server.psycopg_dsn())
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--dsn", help="use this PostgreSQL instead of a throwaway one")
    args = parser.parse_args(argv)

    def body(dsn: str) -> dict[str, Any]:
        return run(dsn, args.seconds, args.pairs, args.interval)

    result = body(args.dsn) if args.dsn else with_server(body)
    print(json.dumps(result, indent=2))
    loss = result["throughput_loss_pct"]
    print(
        f"\nsampling at {args.interval} s: throughput {loss:+.2f} % loss "
        f"(on {result['throughput_on_rec_s']:.0f} vs off {result['throughput_off_rec_s']:.0f} "
        f"rec/s, median of {args.pairs}); sampler thread "
        f"{result['sampler_cpu_pct_of_core']:.2f} % of a core, "
        f"{result['sampler_mean_round_ms']:.1f} ms per round; goal < 3 %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
