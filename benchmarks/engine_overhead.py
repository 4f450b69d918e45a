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
import json
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


def parse_and_map(units, mapping, adapters) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    mapper = RecordMapper(mapping, adapters)
    out = []
    t0 = time.perf_counter()
    for unit in units:
        for _, elem in unit.open_records(mapping.record_element):
            with contextlib.suppress(RecordRejected):
                out.append(mapper.map(elem))
    return time.perf_counter() - t0, out


def insert_alone(db: Path, mapping, units, mapped, batch_size: int) -> float:  # type: ignore[no-untyped-def]
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
    t0 = time.perf_counter()
    for per_table in batches:
        conn.begin()
        for name, c, rows in zip(names, cols, per_table, strict=True):
            conn.insert_rows(name, c, rows)
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def full_engine(db: Path, mapping, units, batch_size: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    target = open_target(f"sqlite:{db}")
    checkpoints = prepare_target(target, mapping, units, resume=False)
    stats = MigrationEngine(target, mapping, EngineConfig(batch_size=batch_size)).run(
        units, checkpoints)
    return stats.elapsed_s, stats.records_read


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
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        datasets.generate(root / "data", args.records, seed=1)
        units = expand_inputs([str(root / "data")])
        adapters = open_target(f"sqlite:{root}/probe.db").dialect.value_adapters()
        pm_times, ins_times, eng_times = [], [], []
        mapped: list = []
        for i in range(args.repeat):
            t, mapped = parse_and_map(units, mapping, adapters)
            pm_times.append(t)
            ins_times.append(insert_alone(root / f"ins{i}.db", mapping, units, mapped,
                                          args.batch_size))
            t, n = full_engine(root / f"eng{i}.db", mapping, units, args.batch_size)
            eng_times.append(t)
        n = args.records
        pm, ins, eng = min(pm_times), min(ins_times), min(eng_times)
        predicted = n / (pm + ins)
        actual = n / eng
        result = {
            "records": n, "batch_size": args.batch_size, "repeat": args.repeat,
            "parse_map_rec_s": round(n / pm), "insert_rec_s": round(n / ins),
            "serial_prediction_rec_s": round(predicted), "engine_rec_s": round(actual),
            "engine_rec_min": round(actual * 60), "ratio": round(actual / predicted, 3),
        }
        if args.rss:
            for size in (10_000, 100_000):
                d = root / f"rss{size}"
                datasets.generate(d, size, seed=2)
                result[f"peak_rss_mib_{size}"] = round(peak_rss_kib(d, root) / 1024, 1)
    if args.json:
        print(json.dumps(result))
        return
    print(f"records {n:,}, batch size {args.batch_size}, best of {args.repeat}")
    print(f"  parse+map alone   {result['parse_map_rec_s']:>9,} rec/s")
    print(f"  insert alone      {result['insert_rec_s']:>9,} rec/s")
    print(f"  serial prediction {result['serial_prediction_rec_s']:>9,} rec/s")
    print(f"  full engine       {result['engine_rec_s']:>9,} rec/s "
          f"({result['engine_rec_min']:,} rec/min)")
    print(f"  engine / prediction = {result['ratio']:.3f}  (goal >= 0.90)")
    if args.rss:
        print(f"  peak RSS: 10k records {result['peak_rss_mib_10000']} MiB, "
              f"100k records {result['peak_rss_mib_100000']} MiB")


if __name__ == "__main__":
    main()
