"""Regenerate the report fixtures: ``python tests/data/results/make_fixtures.py``.

Two sources, both through the product's own writers (``bench.results.build_result``, the
documents of :mod:`reports.results`):

* **real** — ``run.json`` (one `bench run`, 3 000 records, with a real host sampler
  attached), ``sweep.json`` (a real `bench sweep --batch-sizes 50..2000` on the embedded
  default, 3 repeats) and ``baseline.json`` (a real `bench baseline`, 5 iterations);
* **synthetic** — what this machine cannot measure (SQL Server, several workers, pooling,
  pipeline modes, ODBC insert methods): ``sweep_grid.json`` (batch × workers × pooling
  following the SQL Server Express case: knee at 1000, 4 workers best, pooling 29% worse, every run
  sampled), ``sweep_modes.json`` (pipeline × insert method, with overlap efficiency),
  ``compare.json`` (a kind ``compare`` document built with :func:`bench.compare.compare_results`),
  ``diagnose.json`` (the SQL Server Express story through the diagnosis code: contention
  runs, a sampled bottleneck run with SQL Server samples and a real attribution verdict,
  the stored diagnosis) and
  ``hostile.json`` (markup and a password in every field a report prints).

Synthetic numbers come from a seeded RNG, so regeneration is reproducible; the real ones
are measurements and change with the machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from bench import environment  # noqa: E402
from bench.results import build_result as new_result  # noqa: E402
from diagnostics.attribution import DESCRIPTIONS, StageTimings, attribute  # noqa: E402
from diagnostics.sampler import SampleSeries  # noqa: E402
from reports.results import finite, read_raw as load_result  # noqa: E402
from reports.summary import summarize_sweep  # noqa: E402


def build_result(kind: str, **parts: Any) -> dict[str, Any]:
    """A new document of ``kind``, as the JSON a writer saves."""
    return new_result(kind, **parts).to_dict()


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Compact JSON (the fixtures are data, not for reading): a third of the indented size."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite(doc), ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _bench(*args: str) -> None:
    subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args],
                   check=True,
                   stdout=subprocess.DEVNULL)


def real_run(work: Path) -> dict[str, Any]:
    from bench.runner import RunRequest, execute_run
    from diagnostics.host import HostSampler
    from diagnostics.sampler import SamplingSession

    _bench("generate", "-o", str(work / "data"), "-n", "3000")
    out = work / "run"
    out.mkdir(parents=True)
    with SamplingSession([HostSampler(db_path=str(out))], interval=0.05) as session:
        outcome = execute_run(RunRequest(inputs=[str(work / "data")], batch_size=200, out=out))
    doc = load_result(outcome.result_file)
    assert session.series is not None
    run = doc["runs"][0]
    run["samples"] = session.series.to_dict()
    timings = StageTimings.from_mapping(run["metrics"]["stages"], run["metrics"]["elapsed_s"], 1)
    verdict = attribute(timings, session.series).to_dict()
    run["verdicts"] = [{"kind": "bottleneck", "scope": "run", "verdict": verdict}]
    doc["verdicts"] = [{"kind": "bottleneck", "scope": "run", **verdict}]
    return doc


def real_sweep(work: Path) -> dict[str, Any]:
    _bench("sweep", "--batch-sizes", "50..2000", "--records", "2000", "--repeat", "3",
           "--warmup", "1", "--seed", "7", "-o", str(work / "sweep"), "--json")
    return load_result(work / "sweep")


def real_baseline(work: Path) -> dict[str, Any]:
    _bench("baseline", "--iterations", "5", "--records", "2000", "--batch-size", "500",
           "--name", "nightly", "-o", str(work / "baseline"), "--json")
    return load_result(work / "baseline")


# --------------------------------------------------------------------------- synthetic


def _env(display: str, dbms: str = "Microsoft SQL Server", version: str = "16.00.1000",
         dialect: str = "mssql") -> dict[str, Any]:
    env = environment.collect()
    env["host"] = "MIGRATION-VM"
    env["target"] = {"scheme": "odbc", "display": display, "dialect": dialect,
                     "dbms_name": dbms, "dbms_version": version,
                     "driver_name": "msodbcsql18.so", "driver_version": "18.03.0003",
                     "extra": {"edition": "Express Edition (64-bit)"}}
    env["dataset"] = {"files": 1, "bytes": 1_312_500, "profile": "orders", "seed": 0,
                      "records": 750, "invalid_rate": 0.0}
    return env


MSSQL = ("odbc:Driver={ODBC Driver 18 for SQL Server};Server=.\\SQLEXPRESS;Database=mig;"
         "UID=bench;PWD=***")


def _series(rng: random.Random, seconds: float, *, busy: float, cpu: float,
            server: bool) -> dict[str, Any]:
    """A plausible sampler series (format of SampleSeries.to_dict), at most ~25 rows
    (``--sample-interval`` scaled to the run's length, as a user would for long runs)."""
    interval = max(0.5, round(seconds / 24, 1))
    n = max(3, int(seconds / interval) + 2)
    t = [round(i * interval, 3) for i in range(n)]
    rows: list[tuple[float, dict[str, float | None]]] = []
    for i, when in enumerate(t):
        first = i == 0
        ramp = min(1.0, when / 1.5)

        def jitter(v: float, rel: float = 0.15) -> float:
            return float(f"{max(0.0, v * (1 + rng.uniform(-rel, rel))):.4g}")

        row: dict[str, float | None] = {
            "host.cpu.total_pct": None if first else jitter(cpu * ramp + 5),
            "host.cpu.iowait_pct": None if first else jitter(busy * 0.3 * ramp),
            "host.workers.cpu_pct": None if first else jitter(cpu * 1.6 * ramp),
            "host.db_disk.write_bytes_per_s": None if first else jitter(28e6 * ramp * busy / 90),
            "host.db_disk.read_bytes_per_s": None if first else jitter(6e6 * ramp * busy / 90),
            "host.db_disk.busy_pct": None if first else min(100.0, jitter(busy * ramp, 0.08)),
            "host.db_disk.read_await_ms": None if first else jitter(18 * busy / 90),
            "host.db_disk.write_await_ms": None if first else jitter(22 * busy / 90),
            "host.mem.used_pct": jitter(41, 0.02),
        }
        if server:
            row.update({
                "server.cpu_pct": None if first else jitter(7),
                "server.data.read_latency_ms": None if first else jitter(24 * busy / 90),
                "server.log.write_latency_ms": None if first else jitter(25 * busy / 90),
                "server.wait.data_io.sessions": None if first else jitter(1.6 * ramp),
                "server.wait.log_io.sessions": None if first else jitter(1.3 * ramp),
                "server.wait.cpu.sessions": None if first else jitter(0.25 * ramp),
                "server.wait.lock.sessions": None if first else jitter(0.05 * ramp, 0.9),
                "server.logins_per_s": None if first else jitter(3.0),
                "server.batches_per_s": None if first else jitter(180 * ramp),
            })
        rows.append((when, row))
    series = SampleSeries.from_rows(rows, interval_s=interval, info={"host": {"cores": 4}},
                                    started_at="2024-05-02T09:00:00.000+00:00")
    doc = series.to_dict()
    doc["overhead"] = {"cpu_s": 0.02, "wall_s": seconds, "cpu_pct_of_core": 0.9,
                       "rounds": n, "mean_round_ms": 3.1, "max_round_ms": 7.4,
                       "per_sampler_cpu_s": {"host": 0.012, "mssql": 0.008}}
    return doc


def _metrics(rng: random.Random, records: int, rpm: float, batch: int, workers: int,
             pipeline: str = "off") -> dict[str, Any]:
    elapsed = records / rpm * 60
    share = {"connect": 0.04, "parse": 0.08, "map": 0.12, "insert": 0.46, "commit": 0.30}
    busy = elapsed * workers * 0.92
    stages = {k: round(busy * v * rng.uniform(0.9, 1.1), 4) for k, v in share.items()}
    n_batches = -(-records // batch)
    rows = []
    for i in range(n_batches):
        start = elapsed * i / n_batches
        end = elapsed * (i + 1) / n_batches
        size = min(batch, records - i * batch)
        rows.append([i, size, size, 0, round(start, 4), round(end, 4), 0.0, 0.0,
                     round((end - start) * 0.5, 4), round((end - start) * 0.3, 4), 0.0,
                     i % workers])
    overlap = {"off": None, "thread": 0.62, "process": 0.81}[pipeline]
    return {"records_read": records, "inserted": records, "quarantined": 0,
            "elapsed_s": round(elapsed, 4), "throughput_rec_per_min": round(rpm, 2),
            "stages": stages, "pipeline": pipeline,
            "overlap_efficiency": None if overlap is None else rng.uniform(overlap - .05,
                                                                            overlap + .05),
            "tables": {"orders": records, "order_lines": int(records * 2.5),
                       "payments": int(records * 1.1)},
            "units": [], "errors": [],
            "batches": {"columns": ["index", "records", "inserted", "quarantined", "started",
                                    "ended", "parse", "map", "insert", "commit", "connect",
                                    "worker"], "rows": rows}}


def _seed_rpm(batch: int, workers: int, pooling: str) -> float:
    """The seed story's shape: 959.5 rec/min at 1000 × 4 workers, knee at 1000, pooling
    29% worse (disk-bound), 2 workers 63% below 4."""
    by_batch = {50: 0.48, 100: 0.63, 200: 0.78, 500: 0.92, 1000: 1.0, 2000: 0.99}[batch]
    by_workers = {1: 0.42, 2: 1 / 1.63, 4: 1.0}[workers]
    pool = 0.706 if pooling == "on" else 1.0
    return 959.5 * by_batch * by_workers * pool


def _sweep_doc(rng: random.Random, dims: dict[str, list[Any]], rpm_of: Any, *,
               repeat: int, sampled: bool, baseline: str | None = None) -> dict[str, Any]:
    from bench.sweep import SweepPlan

    plan_obj = SweepPlan(kind="sweep", dimensions=dims, repeat=repeat, warmup=1, seed=11,
                         inputs=["C:/exports/orders-750.xml"], target=MSSQL,
                         baseline=baseline)
    configs = plan_obj.configurations
    order = [(s.round, s.config_index) for s in plan_obj.slots()]
    runs = []
    drift_per_run = 0.0015  # a slow, real-looking warm-up of the server
    for seq, (round_, index) in enumerate(order):
        config = configs[index]
        rpm = rpm_of(config) * rng.gauss(1.0, 0.035) * (1 - drift_per_run * (len(order) - seq))
        workers = int(config.get("workers", 2))
        metrics = _metrics(rng, 750, rpm, int(config.get("batch_size", 1000)), workers,
                           str(config.get("pipeline", "off")))
        run = {"order_index": seq, "round": round_, "config_index": index, "warmup": False,
               "sequence": seq,
               "config": {"batch_size": 1000, "workers": 2, "pipeline": "off", "pooling": "off",
                          "insert_method": "fast", **config},
               "metrics": metrics,
               "reconciliation": {"ok": True, "records_read": 750, "inserted": 750,
                                  "quarantined": 0, "rows": metrics["tables"], "problems": []},
               "samples": _series(rng, metrics["elapsed_s"], busy=93, cpu=18, server=True)
               if sampled else None,
               "started": f"2024-05-02T09:{seq // 60:02d}:{seq % 60:02d}+00:00"}
        if sampled:
            series = SampleSeries.from_dict(run["samples"])
            timings = StageTimings.from_mapping(metrics["stages"], metrics["elapsed_s"], workers)
            verdict = attribute(timings, series).to_dict()
            run["verdicts"] = [{"kind": "bottleneck", "scope": "run", "verdict": verdict}]
        runs.append(run)
    grouped = [(c, [r["metrics"]["throughput_rec_per_min"] for r in runs
                    if r["config_index"] == i]) for i, c in enumerate(configs)]
    summary = summarize_sweep(grouped, baseline=baseline).to_dict()
    summary["best_bottleneck"] = None
    if sampled:
        best = summary["best"]["index"]
        labels = [r["verdicts"][0]["verdict"]["label"] for r in runs
                  if r["config_index"] == best]
        top = max(set(labels), key=labels.count)
        summary["best_bottleneck"] = {"label": top, "description": DESCRIPTIONS[top],
                                      "runs": labels.count(top), "of": len(labels)}
    plan = plan_obj.to_dict()
    return build_result("sweep", config={**plan, "order": [list(o) for o in order]},
                        environment=_env(MSSQL), runs=runs,
                        verdicts=[{"kind": "bottleneck", "scope": "best configuration",
                                   **summary["best_bottleneck"]}]
                        if summary["best_bottleneck"] else [],
                        extra={"summary": summary, "measured_runs": len(runs)})


def sweep_grid(rng: random.Random) -> dict[str, Any]:
    return _sweep_doc(rng, {"batch_size": [50, 100, 200, 500, 1000, 2000], "workers": [1, 2, 4],
                            "pooling": ["off", "on"]},
                      lambda c: _seed_rpm(c["batch_size"], c["workers"], c["pooling"]),
                      repeat=3, sampled=True, baseline="workers=2,batch=1000,pooling=off")


def sweep_modes(rng: random.Random) -> dict[str, Any]:
    gain = {"off": 1.0, "thread": 1.16, "process": 1.24}
    method = {"executemany": 0.55, "fast": 1.0, "values": 0.93}
    return _sweep_doc(rng, {"pipeline": ["off", "thread", "process"],
                            "insert_method": ["executemany", "fast", "values"]},
                      lambda c: 959.5 * gain[c["pipeline"]] * method[c["insert_method"]],
                      repeat=5, sampled=False)


def compare_doc(a: Path, b: Path) -> dict[str, Any]:
    from bench.compare import compare_results

    report = compare_results(a, b, threshold=0.05)
    data = report.to_dict()
    data["a"], data["b"] = "runs/2024-05-01/sweep_grid.json", "runs/2024-05-02/sweep_grid.json"
    return build_result("compare", config={"a": data["a"], "b": data["b"], "threshold": 0.05,
                                           "alpha": 0.05},
                        environment={}, runs=[], extra={"compare": data})


def pooling_tree() -> dict[str, Any]:
    """A small hand-written tree in the minimal documented shape (see reports.svg)."""
    return {
        "root": "configured",
        "nodes": [
            {"id": "configured", "question": "Is pooling active (server session ids repeat)?",
             "facts": ["pool.session_reuse_pct"],
             "children": [{"when": "yes", "to": "cost"}, {"when": "no", "to": "L-enable"}]},
            {"id": "L-enable", "question": "pooling inactive",
             "leaf": {"recommendation": "Enable driver-manager pooling."}},
            {"id": "cost", "question": "Is a new connection costly against one batch?",
             "children": [{"when": "no", "to": "L-off"}]},
            {"id": "L-off", "question": "cheap connections",
             "leaf": {"recommendation": "Keep pooling off."}},
        ],
        "path": [{"node": "configured", "facts": {"pool.session_reuse_pct": 100.0},
                  "answer": "yes"}, {"node": "cost", "answer": "no"}, {"node": "L-off"}],
    }


def real_diagnose(work: Path) -> dict[str, Any]:
    _bench("diagnose", "pooling", "-n", "1000", "-r", "3", "-w", "1,2", "--sample-interval",
           "0.1", "-o", str(work / "diagnose"))
    return load_result(work / "diagnose")


def diagnose_doc(rng: random.Random) -> dict[str, Any]:
    """The SQL Server Express story through the diagnosis code itself: the contention and
    bottleneck tests analyse synthetic runs, the tree walks their facts, and the stored
    diagnosis is :meth:`diagnostics.diagnosis.Diagnosis.to_dict` (as `bench diagnose
    pooling` stores it)."""
    from diagnostics import diagnosis as dx
    from diagnostics.decision import evaluate
    from diagnostics.pooling import (
        BottleneckTest,
        ConfigurationTest,
        ConnectionCostTest,
        ContentionTest,
        DiagnosisReport,
        decision_facts,
    )
    from reports import stats

    # test 3: contention, workers × strategy, 10 rounds, each round shuffled
    runs: list[dict[str, Any]] = []
    samples: dict[tuple[int, str | None], list[float]] = {}
    seq = 0
    configs = [(w, s) for w in (1, 2, 4, 8) for s in ("per-batch", "pooled", "persistent")]
    factor = {"per-batch": 1.0, "pooled": 0.706, "persistent": 1.002}
    for round_ in range(10):
        host = rng.gauss(1, 0.08)  # the host's speed this round
        for workers, strategy in rng.sample(configs, len(configs)):
            base = {1: 0.42, 2: 0.61, 4: 1.0, 8: 0.97}[workers] * 959.5
            rpm = base * factor[strategy] * host * rng.gauss(1, 0.01)
            samples.setdefault((workers, strategy), []).append(rpm)
            metrics = _metrics(rng, 750, rpm, 1000, workers)
            runs.append({"sequence": seq, "order_index": seq, "diagnose_round": round_,
                         "status": "complete", "error": None,
                         "diagnose_test": "contention", "strategy": strategy,
                         "config": {"batch_size": 1000, "workers": workers,
                                    "connection": strategy,
                                    "pipeline": "off", "insert_method": "fast"},
                         "metrics": metrics, "reconciliation": {"ok": True},
                         "samples": None})
            seq += 1
    contention = ContentionTest().analyse(stats, [1, 2, 4, 8], samples, cores=8,
                                          pooling_in_force=True)
    # test 4: one sampled run at the highest worker count
    metrics = _metrics(rng, 750, 931.0, 1000, 8)
    series = _series(rng, metrics["elapsed_s"], busy=94, cpu=17, server=True)
    timings = StageTimings.from_mapping(metrics["stages"], metrics["elapsed_s"], 8)
    verdict = attribute(timings, SampleSeries.from_dict(series)).to_dict()
    runs.append({"sequence": seq, "status": "complete", "error": None,
                 "diagnose_test": "bottleneck", "strategy": "per-batch",
                 "config": {"batch_size": 1000, "workers": 8, "connection": "per-batch",
                            "pipeline": "off", "insert_method": "fast"},
                 "metrics": metrics, "reconciliation": {"ok": True}, "samples": series,
                 "bottleneck": verdict})
    bottleneck = BottleneckTest().analyse(verdict, 8, "per-batch", 931.0,
                                          series.get("info") or {})
    config = ConfigurationTest().result(
        "ok", "pooling effective: server sessions are reused",
        numbers={"sessions (pyodbc.pooling=True)": "1/20", "[ODBC] Pooling": "Yes",
                 "CPTimeout": "60", "driver": "ODBC Driver 18 for SQL Server 18.03.0003"},
        facts={"config.intended": "on", "config.effective": True,
               "config.pool_possible": True, "config.sessions_as_configured": 1,
               "config.connections": 20, "config.ignored_keywords": "Max Pool Size",
               "config.ini": "/etc/odbcinst.ini", "dialect": "mssql",
               "config.driver_section": "ODBC Driver 18 for SQL Server"},
        messages=["Max Pool Size=100: ADO.NET only; ODBC ignores it"])
    cost = ConnectionCostTest().result(
        "ok", "a new connection costs 38.00 ms = 0.40% of a 9434 ms batch of 1000; a pooled "
              "checkout 0.900 ms",
        numbers={"unpooled connect+close median ms": 38.0, "unpooled p95 ms": 52.1,
                 "pooled checkout median ms": 0.9, "batch median ms": 9434.0,
                 "connect share of a batch %": 0.4},
        facts={"cost.connect_ms": 38.0, "cost.checkout_ms": 0.9, "cost.batch_ms": 9434.0,
               "cost.connect_share_pct": 0.4})
    results = [config, cost, contention, bottleneck]
    report = DiagnosisReport(results, evaluate(decision_facts(results)), 0)
    from migrator.connstr import redact_connection_string

    target = "odbc:" + redact_connection_string(MSSQL[5:])
    settings = {"target": target, "workers": [1, 2, 4, 8], "records": 750,
                "batch_size": 1000, "repeat": 10, "client_cores": 8,
                "strategies": ["per-batch", "pooled", "persistent"]}
    diagnosis = dx.build(report, target=target, settings=settings)
    return build_result(
        "diagnose", config=settings, environment=_env(MSSQL), runs=runs,
        verdicts=dx.verdict_summaries(diagnosis), extra={"diagnose": diagnosis.to_dict()})


HOSTILE = '<script>alert("x")</script><img src=http://evil.example/x.png onerror=alert(1)>'


def hostile_doc() -> dict[str, Any]:
    rng = random.Random(666)
    metrics = _metrics(rng, 100, 5000.0, 50, 1)
    metrics["tables"] = {f"orders{HOSTILE}": 100}
    metrics["errors"] = []
    env = _env(f"odbc:Driver={{X}};Server={HOSTILE};PWD=hunter2;Password={{s3cr;et}}")
    env["host"] = HOSTILE
    env["dataset"] = {"profile": HOSTILE, "records": 100}
    env["packages"] = {HOSTILE: "1.0"}
    tree = pooling_tree()
    tree["nodes"][0]["question"] = f"Is {HOSTILE} active?"
    tree["path"][0]["facts"] = {HOSTILE: "</script><script>alert(2)</script>"}
    samples = _series(rng, 1.2, busy=50, cpu=30, server=False)
    samples["warnings"] = [f"host: {HOSTILE}"]
    runs = []
    for i, batch in enumerate((50, 100, 200)):
        m = dict(metrics)
        m["throughput_rec_per_min"] = 5000.0 + 100 * i
        runs.append({"sequence": i, "config": {"batch_size": batch, "workers": 1,
                                               "pooling": "off", "pipeline": "off",
                                               "insert_method": HOSTILE},
                     "metrics": m, "reconciliation": {"ok": True, "problems": [HOSTILE]},
                     "samples": samples,
                     "verdicts": [{"kind": "bottleneck", "verdict": {
                         "label": HOSTILE, "description": HOSTILE, "confidence": 0.5,
                         "level": "low", "evidence": [{"fact": HOSTILE, "value": 1.0,
                                                       "threshold": 0, "unit": HOSTILE,
                                                       "op": ">", "weight": 1,
                                                       "reason": HOSTILE}]}}]})
    return build_result("run", config={"inputs": [f"/data/{HOSTILE}.xml"],
                                       "target": env["target"]["display"],
                                       "mapping": HOSTILE, "batch_size": 50},
                        environment=env, runs=runs,
                        extra={"decision_tree": tree,
                               "tests": [{"name": HOSTILE, "verdict": HOSTILE,
                                          "facts": {HOSTILE: HOSTILE}}]})


def main() -> None:
    rng = random.Random(20240502)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_json_atomic(HERE / "run.json", real_run(work))
        write_json_atomic(HERE / "sweep.json", real_sweep(work))
        write_json_atomic(HERE / "baseline.json", real_baseline(work))
        write_json_atomic(HERE / "diagnose_sqlite.json", real_diagnose(work))
        grid = sweep_grid(rng)
        write_json_atomic(HERE / "sweep_grid.json", grid)
        # a second grid a day later: 4 workers regressed by ~12% (a new index, say)
        later = json.loads(json.dumps(grid))
        for run in later["runs"]:
            if run["config"]["workers"] == 4:
                run["metrics"]["throughput_rec_per_min"] *= 0.88
        write_json_atomic(work / "a.json", grid)
        write_json_atomic(work / "b.json", later)
        write_json_atomic(HERE / "compare.json", compare_doc(work / "a.json", work / "b.json"))
    write_json_atomic(HERE / "sweep_modes.json", sweep_modes(rng))
    write_json_atomic(HERE / "diagnose.json", diagnose_doc(rng))
    write_json_atomic(HERE / "hostile.json", hostile_doc())
    for p in sorted(HERE.glob("*.json")):
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
