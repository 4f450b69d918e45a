"""Insert-only throughput per dialect × insert method, with PostgreSQL COPY as reference.

    python benchmarks/insert_methods.py [--records 50000] [--batch 1000] [--max-seconds 20]

Starts durable throwaway PostgreSQL and MariaDB servers (tests/servers.py, fsync on), maps
the default ``orders`` dataset once per dialect (its value adapters applied, as the engine
does), then inserts it batch by batch — one transaction per batch, every table of the
mapping — with each insert method. Slow methods stop after ``--max-seconds`` and are
rated on the batches they finished. Also measures connect+close latency with unixODBC
pooling on and off, in fresh processes. The numbers choose each dialect's ``auto``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import start_mariadb, start_postgres  # noqa: E402

import datasets  # noqa: E402
from migrator.mapping import Mapping, default_mapping  # noqa: E402
from migrator.odbcini import apply_environ, build_odbcsysini  # noqa: E402
from migrator.reader import RecordStream  # noqa: E402
from migrator.rowmap import RecordMapper, RecordRejected  # noqa: E402
from migrator.targets.base import ensure_schema  # noqa: E402
from migrator.targets.odbc import OdbcTarget  # noqa: E402

Batch = list[list[tuple[Any, ...]]]  # one row list per table


def mapped_batches(xml: Path, mapping: Mapping, adapters: Any, batch: int) -> list[Batch]:
    mapper = RecordMapper(mapping, adapters)
    out: list[Batch] = []
    cur: Batch = [[] for _ in mapping.tables]
    n = 0
    for _line, elem in RecordStream(str(xml), mapping.record_element):
        try:
            for i, rows in enumerate(mapper.map(elem)):
                cur[i].extend(rows)
        except RecordRejected:
            continue
        n += 1
        if n % batch == 0:
            out.append(cur)
            cur = [[] for _ in mapping.tables]
    if any(cur):
        out.append(cur)
    return out


def measure(conn_string: str, method: str, batches: Sequence[Batch], mapping: Mapping,
            batch: int, max_seconds: float, values_rows: int | None = None) -> dict[str, Any]:
    target = OdbcTarget(conn_string, values_rows=values_rows)
    conn = target.connect()
    d = conn.dialect
    ensure_schema(conn)  # (tables go to the dialect's schema: migration_bench on PostgreSQL)
    for t in reversed(mapping.tables):
        conn.execute(d.drop_table_sql(t.name))
    for t in mapping.tables:
        for sql in d.create_table_sql(mapping, t):
            conn.execute(sql)
    conn.commit()
    done = 0
    t0 = time.perf_counter()
    for b in batches:
        conn.begin()
        for t, rows in zip(mapping.tables, b, strict=True):
            conn.insert_rows(t.name, t.column_names, rows, method)
        conn.commit()
        done += len(b[0])
        if time.perf_counter() - t0 > max_seconds:
            break
    seconds = time.perf_counter() - t0
    got = conn.query(f"SELECT COUNT(*) FROM {d.table_ref(mapping.root.name)}")[0][0]
    conn.commit()
    conn.close()
    assert int(got) == done, (got, done)
    return {"records": done, "seconds": seconds, "rec_per_s": done / seconds}


CONNECT_CHILD = """
import json, sys, time
from migrator.targets.odbc import OdbcTarget
t = OdbcTarget(sys.argv[2], pooling=sys.argv[1] == "on")
t.connect().close()  # warm: driver loaded, first session in the pool
xs = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter(); c = t.connect(); xs.append(time.perf_counter() - t0); c.close()
print(json.dumps(xs))
"""


def connect_latency(conn_string: str, pooling: str, n: int = 50) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CONNECT_CHILD, pooling, conn_string, str(n)],
                         capture_output=True, text=True, env=env, check=True, timeout=120)
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1])) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    mapping = default_mapping()
    work = Path(tempfile.mkdtemp(prefix="mb-bench-insert-"))
    # Driver entries as installed, minus Debian's CommLog=1 (a log file per process in
    # /tmp) and with pooling off; the latency children choose pooling themselves.
    apply_environ(build_odbcsysini(work / "odbc", pooling=False, quiet_logs=True))
    datasets.generate(work, args.records, files=1, seed=1, invalid_rate=0.0)
    xml = next(work.glob("*.xml"))
    results: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []

    pg = start_postgres(fast=False)
    mdb = start_mariadb(fast=False)
    try:
        configs = [
            ("postgresql", "psqlODBC defaults", pg.odbc()),
            ("postgresql", "UseServerSidePrepare=0;Protocol=7.4-1",
             pg.odbc("UseServerSidePrepare=0;Protocol=7.4-1")),
            ("postgresql", "Protocol=7.4-1", pg.odbc("Protocol=7.4-1")),
            ("mariadb", "defaults", mdb.odbc()),
        ]
        for dialect, label, cs in configs:
            probe = OdbcTarget(cs)
            adapters = probe.dialect.value_adapters()
            batches = mapped_batches(xml, mapping, adapters, args.batch)
            methods: list[tuple[str, int | None]] = [("executemany", None), ("fast", None),
                                                     ("values", 50), ("values", 100),
                                                     ("values", 1000)]
            methods.append(("copy", None))
            for method, vrows in methods:
                offered = probe.dialect.method(method)
                if not offered.available:
                    print(f"{dialect:<11} {label:<38} {method:<18} refused: {offered.reason}")
                    continue
                r = measure(cs, method, batches, mapping, args.batch, args.max_seconds, vrows)
                name = method if vrows is None else f"values({vrows} rows)"
                results.append({"dialect": dialect, "settings": label, "method": name, **r})
                print(f"{dialect:<11} {label:<38} {name:<18} {r['rec_per_s']:>9,.0f} rec/s "
                      f"({r['records']} rec in {r['seconds']:.1f}s)", flush=True)
            for pooling in ("off", "on"):
                ms = connect_latency(cs, pooling)
                latency.append({"dialect": dialect, "settings": label, "pooling": pooling,
                                "median_ms": ms})
                print(f"{dialect:<11} {label:<38} connect+close pooling={pooling}: "
                      f"{ms:.3f} ms", flush=True)
    finally:
        pg.stop()
        mdb.stop()
        shutil.rmtree(work, ignore_errors=True)

    copies = {r["settings"]: r["rec_per_s"] for r in results if r["method"] == "copy"}
    best_copy = max(copies.values(), default=None)
    print("\nSummary (records/s; ratio to PostgreSQL COPY measured with the same settings, "
          "else to the best COPY):")
    for r in results:
        copy = copies.get(r["settings"], best_copy)
        ratio = f"{r['rec_per_s'] / copy:6.2f}× COPY" if copy else ""
        print(f"  {r['dialect']:<11} {r['settings']:<38} {r['method']:<18} "
              f"{r['rec_per_s']:>9,.0f}  {ratio}")
    if args.json:
        args.json.write_text(json.dumps({"records": args.records, "batch": args.batch,
                                         "results": results, "connect": latency}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
