"""Engine overhead on the embedded default: the engine against its own stages measured alone.

    python benchmarks/engine_overhead.py [--records 50000] [--batch-size 1000] [--repeat 3]

In one process and one run it measures, each on the same generated input:
  1. parse + map alone   (RecordStream + RecordMapper, no database),
  2. insert alone        (the already-mapped rows, one transaction per batch, no parsing),
  3. the full engine     (MigrationEngine.run, checkpoints and quarantine included),
and prints engine throughput / serial prediction, where the serial prediction is
records / (time 1 + time 2). Goal: >= 0.90 (engine overhead <= 10%). Each part runs
``--repeat`` times and the best time counts, since noise only ever adds time.
It then checks streaming: peak RSS of `bench run` for 10k vs 100k records (--rss).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
from migrator import (
    EngineConfig,
    MigrationEngine,
    default_mapping,
    expand_inputs,
    open_target,
    prepare_target,
)
from migrator.rowmap import RecordMapper, RecordRejected

Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def parse_and_map(units, mapping, adapters, keep: bool) -> tuple[Timing, list]:  # type: ignore[no-untyped-def]
    """Read and map every record; timed without keeping the rows (keeping 50k records alive
    would make the garbage collector, not parsing, the cost being measured)."""
    mapper = RecordMapper(mapping, adapters)
    out: list = []
    gc.freeze()  # the garbage-collector policy of MigrationEngine.run: the same conditions
    t0 = _clock()
    for unit in units:
        for _, elem in unit.open_records(mapping.record_element):
            with contextlib.suppress(RecordRejected):
                rows = mapper.map(elem)
                if keep:
                    out.append(rows)
    elapsed = _since(t0)
    gc.unfreeze()
    return elapsed, out


def insert_alone(db: Path, mapping, units, mapped, batch_size: int) -> Timing:  # type: ignore[no-untyped-def]
    target = open_target(f"sqlite:{db}")
    prepare_target(target, mapping, units, resume=False)
    conn = target.connect()
    names = [t.name for t in mapping.tables]
    cols = [t.column_names for t in mapping.tables]
    batches = []
    for start in range(0, len(mapped), batch_size):
        per_table: list[list] = [[] for _ in names]
        for rec in mapped[start:start + batch_size]:
            for i, rows in enumerate(rec):
                per_table[i].extend(rows)
        batches.append(per_table)
    gc.freeze()
    t0 = _clock()
    for per_table in batches:
        conn.begin()
        for name, c, rows in zip(names, cols, per_table, strict=True):
            conn.insert_rows(name, c, rows)
        conn.commit()
    elapsed = _since(t0)
    gc.unfreeze()
    conn.close()
    return elapsed


def full_engine(db: Path, mapping, units, batch_size: int) -> Timing:  # type: ignore[no-untyped-def]
    target = open_target(f"sqlite:{db}")
    checkpoints = prepare_target(target, mapping, units, resume=False)
    engine = MigrationEngine(target, mapping, EngineConfig(batch_size=batch_size))
    t0 = _clock()
    engine.run(units, checkpoints)
    return _since(t0)


def peak_rss_kib(data: Path, work: Path) -> int:
    code = ("import resource, sys\n"
            "from migrator import migrate, expand_inputs, open_target, default_mapping\n"
            f"migrate(expand_inputs([{str(data)!r}]), open_target('sqlite:{work}/rss.db'),"
            " default_mapping())\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss", action="store_true", help="also compare peak RSS 10k vs 100k")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    mapping = default_mapping()
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.rss:
            # First, while this process is small: Linux carries ru_maxrss over fork/exec, so
            # a child started later would report this process's peak instead of its own.
            for size in (10_000, 100_000):
                d = root / f"rss{size}"
                datasets.generate(d, size, seed=2)
                rss[f"peak_rss_mib_{size}"] = round(peak_rss_kib(d, root) / 1024, 1)
        datasets.generate(root / "data", args.records, seed=1)
        units = expand_inputs([str(root / "data")])
        adapters = open_target(f"sqlite:{root}/probe.db").dialect.value_adapters()
        # Interleaved rounds; per part the best round counts (noise only adds time).
        pm_t, ins_t, eng_t = [], [], []
        for i in range(args.repeat):
            t, _ = parse_and_map(units, mapping, adapters, keep=False)
            pm_t.append(t)
            _, mapped = parse_and_map(units, mapping, adapters, keep=True)
            ins_t.append(insert_alone(root / f"ins{i}.db", mapping, units, mapped,
                                      args.batch_size))
            del mapped
            eng_t.append(full_engine(root / f"eng{i}.db", mapping, units, args.batch_size))
        n = args.records
        result = {"records": n, "batch_size": args.batch_size, "repeat": args.repeat}
        for clock, idx in (("wall", 0), ("cpu", 1)):
            pm = min(t[idx] for t in pm_t)
            ins = min(t[idx] for t in ins_t)
            eng = min(t[idx] for t in eng_t)
            result[clock] = {
                "parse_map_rec_s": round(n / pm), "insert_rec_s": round(n / ins),
                "serial_prediction_rec_s": round(n / (pm + ins)),
                "engine_rec_s": round(n / eng), "engine_rec_min": round(60 * n / eng),
                "ratio": round((pm + ins) / eng, 3),
            }
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
        result.update(rss)
    if args.json:
        print(json.dumps(result))
        return
    print(f"records {n:,}, batch size {args.batch_size}, best of {args.repeat} interleaved "
          f"rounds, load average {result['load_average_1min']}")
    print(f"  {'':18} {'wall clock':>12} {'CPU time':>12}")
    w, c = result["wall"], result["cpu"]
    for label, key in (("parse+map alone", "parse_map_rec_s"), ("insert alone", "insert_rec_s"),
                       ("serial prediction", "serial_prediction_rec_s"),
                       ("full engine", "engine_rec_s")):
        print(f"  {label:18} {w[key]:>8,} rec/s {c[key]:>8,} rec/s")
    print(f"  full engine: {w['engine_rec_min']:,} rec/min (wall clock)")
    print(f"  engine / prediction = {w['ratio']:.3f} wall, {c['ratio']:.3f} CPU  (goal >= 0.90)")
    if args.rss:
        print(f"  peak RSS: 10k records {result['peak_rss_mib_10000']} MiB, "
              f"100k records {result['peak_rss_mib_100000']} MiB")


if __name__ == "__main__":
    main()
