"""`bench run --cluster` and `bench sweep --cluster` on Dask distributed, against SQLite and
the live PostgreSQL (and MariaDB for the server's counters): the rows of `--workers 2`, a
worker SIGKILLed mid-run on a cluster started with the `dask` command-line tools, inputs a
worker cannot read, the session cap, Ctrl-C, the exactly-once fence of a unit attempted
twice, and what the result file and the report carry (the server's own counters, the
workers' host samples).

One LocalCluster is shared by the tests that call the library; the CLI tests start their
own (`--cluster local:2`), as a user's run does."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (
    Source,
    bench_proc,
    check_exactly_once,
    committed_records,
    fault_env,
    make_source,
)
from servers import free_port
from typer.testing import CliRunner

from bench.cli import app
from bench.runner import RunRequest, execute_run
from migrator import (
    EngineConfig,
    MigrationEngine,
    Namespace,
    default_mapping,
    expand_inputs,
    open_target,
    prepare_target,
    reconcile,
)
from migrator.cluster import Cluster, ClusterError
from migrator.errors import UnitTaken

distributed = pytest.importorskip("distributed")
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("cluster") / "data", 1200, files=2, seed=17)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """For the tests that migrate several times."""
    return make_source(tmp_path_factory.mktemp("small") / "data", 400, files=2, seed=19)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A LocalCluster of two worker processes, shared by this module's library tests."""
    with Cluster("local:2") as c:
        yield c


def digest(spec: str, namespace: Namespace | None = None) -> dict[str, str]:
    """Order-independent fingerprint of every mapped table and of the quarantine."""
    target = open_target(spec)
    if namespace is not None:
        target.set_namespace(namespace)
    conn = target.connect()
    out = {}
    try:
        for t in default_mapping().tables:
            rows = sorted(repr(tuple(str(v) for v in r))
                          for r in conn.query(f"SELECT * FROM {conn.dialect.table_ref(t.name)}"))
            out[t.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        quarantine = sorted(repr(tuple(str(v) for v in r)) for r in conn.query(
            "SELECT file, line, record_key, reason_code, reason FROM "
            + conn.dialect.table_ref("mb_quarantine")))
        out["mb_quarantine"] = hashlib.sha256("\n".join(quarantine).encode()).hexdigest()
    finally:
        conn.close()
    return out


def result(run_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    run: dict[str, Any] = doc["runs"][0]
    return run


# ---- the same rows as --workers 2 ------------------------------------------------------------

def _same_rows_as_two_workers(source: Source, tmp_path: Path, spec: str,
                              spaces: tuple[Namespace, Namespace]) -> None:
    runs = {}
    for name, how, ns in (("workers", ["--workers", "2"], spaces[0]),
                          ("cluster", ["--cluster", "local:2"], spaces[1])):
        where = (["--schema", ns.schema] if ns.schema else []) + \
            (["--table-prefix", ns.prefix] if ns.prefix else [])
        inputs = ["-i", "file://" + str(source.dir)] if name == "cluster" else \
            ["-i", str(source.dir)]
        res = runner.invoke(app, ["run", *inputs, "-t", spec, "-b", "100", *how, *where,
                                  "--out", str(tmp_path / name), "--json"])
        assert res.exit_code == 0, res.output
        runs[name] = json.loads(res.stdout)
        check_exactly_once(spec, source, ns)
    assert digest(spec, spaces[0]) == digest(spec, spaces[1])
    w, c = runs["workers"], runs["cluster"]
    for key in ("records_read", "inserted", "quarantined", "tables"):
        assert w[key] == c[key]
    assert len(c["per_worker"]) == 2
    assert c["cluster"]["cluster"] == "local:2" and len(c["cluster"]["workers"]) == 2
    stored = result(tmp_path / "cluster")
    assert stored["config"]["cluster"] == "local:2"
    assert {t["status"] for t in stored["cluster"]["tasks"]} == {"done"}
    assert stored["cluster"]["host_samples"], "no host sampled"


def test_local_cluster_gives_the_rows_of_two_workers_on_sqlite(source: Source,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "both.db"
    _same_rows_as_two_workers(source, tmp_path, f"sqlite:{db}",
                              (Namespace(prefix="w_"), Namespace(prefix="c_")))
    assert result(tmp_path / "cluster").get("server_throughput") is None  # no server to ask


@pytest.mark.postgres
@pytest.mark.odbc
def test_local_cluster_gives_the_rows_of_two_workers_on_postgresql(
        source: Source, tmp_path: Path, postgres: Any) -> None:
    spec = "odbc:" + postgres.odbc("Protocol=7.4-1")
    spaces = (Namespace("mb_cl_w"), Namespace("mb_cl_c"))
    _same_rows_as_two_workers(source, tmp_path, spec, spaces)
    run = result(tmp_path / "cluster")
    assert postgres.password not in json.dumps(run)
    srv = run["server_throughput"]
    rows = sum(run["metrics"]["tables"].values())
    assert srv["server"]["rows_inserted"] == srv["clients"]["rows_inserted"] == rows
    assert srv["server"]["commits"] >= len(run["metrics"]["batches"]["rows"])


# ---- a cluster of separate processes, one worker SIGKILLed mid-run --------------------------

@contextlib.contextmanager
def dask_cluster(tmp: Path, worker_env: list[dict[str, str]]) -> Iterator[str]:
    """`dask scheduler` and one `dask worker` per environment, as separate processes."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(args: list[str], env: dict[str, str], name: str) -> None:
        log = (tmp / f"{name}.log").open("wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=tmp))

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
              dict(os.environ), "scheduler")
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.5):
                break
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        for i, env in enumerate(worker_env, 1):
            start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                   "--no-nanny", "--no-dashboard", "--name", f"w{i}"], env, f"worker{i}")
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(len(worker_env), timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


@pytest.mark.postgres
@pytest.mark.odbc
@pytest.mark.slow
def test_killed_worker_units_run_again_exactly_once(tmp_path: Path, postgres: Any) -> None:
    src = make_source(tmp_path / "data", 1000, files=2, seed=23)
    spec = "odbc:" + postgres.odbc("Protocol=7.4-1")
    # The second worker SIGKILLs itself right after its 3rd committed batch: mid-unit.
    doomed = fault_env(tmp_path, at=3, events="committed")
    with dask_cluster(tmp_path, [dict(os.environ), doomed]) as address:
        proc = bench_proc(["run", "-i", str(src.dir), "-t", spec, "-b", "50",
                           "--cluster", address, "--sample-interval", "0.2",
                           "--schema", "mb_cl_kill", "--out", str(tmp_path / "r")],
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"cluster {address}: 2 worker(s) on 1 host(s); lost 1 worker(s)" in proc.stdout
    assert "at the server: " in proc.stdout and "the clients counted" in proc.stdout
    check_exactly_once(spec, src, Namespace("mb_cl_kill"))
    run = result(tmp_path / "r")
    cluster = run["cluster"]
    assert len(cluster["lost_workers"]) == 1
    assert cluster["rerun_units"], "the lost worker's unit did not run again"
    assert run["status"] == "complete" and run["reconciliation"]["ok"]
    assert run["metrics"]["records_read"] == src.records
    # Measured at the server, as well as by the clients.
    srv = run["server_throughput"]
    rows = sum(sum(c.values()) for c in src.expected.values())
    assert srv["server"]["rows_inserted"] == rows
    assert srv["server"]["rows_per_s"] > 0 and srv["server"]["commits_per_s"] > 0
    assert srv["rows_source"].startswith("pg_stat_user_tables")
    # Host samples of the worker machine(s), on the run's clock.
    hosts = cluster["host_samples"]
    assert hosts
    for entry in hosts.values():
        assert len(entry["samples"]["t"]) >= 2
        assert any(v is not None for v in entry["samples"]["metrics"]["host.cpu.total_pct"])
    assert postgres.password not in json.dumps(run)


# ---- what every worker must be able to do ---------------------------------------------------

def test_input_a_worker_cannot_read_is_one_line_before_any_insert(source: Source,
                                                                  tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    url = "memory://only-here/orders.xml"  # in this process's memory: no worker sees it
    with fsspec.open(url, "wb") as f:
        f.write(next(source.dir.glob("*.xml")).read_bytes())
    db = tmp_path / "t.db"
    res = runner.invoke(app, ["run", "-i", url, "-t", f"sqlite:{db}", "--cluster", "local:2",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "worker tcp://127.0.0.1:" in lines[0]
    assert "cannot read memory:///only-here/orders.xml" in lines[0]
    assert "Traceback" not in res.output
    assert not db.exists() or not open_target(f"sqlite:{db}").connect().query(
        "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert not (tmp_path / "r" / "result.json").exists()


def test_inputs_as_fsspec_urls_migrate_like_files(source: Source, tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    for path in source.dir.glob("*.xml"):
        with fsspec.open(f"memory://urls/{path.name}", "wb") as f:
            f.write(path.read_bytes())
    from migrator import ParallelCoordinator

    units = expand_inputs(["memory://urls"])
    assert [u.path for u in units] == [f"memory:///urls/{p.name}"
                                      for p in sorted(source.dir.glob("*.xml"))]
    # Cut into byte ranges and read in this process (memory:// lives here only).
    target = open_target(f"sqlite:{tmp_path / 'u.db'}")
    coordinator = ParallelCoordinator(target, default_mapping(), EngineConfig(batch_size=70),
                                      workers=1, partitions_per_worker=1)
    from migrator.partition import plan_units

    pieces = plan_units(units, 5, default_mapping().record_elements)
    assert len(pieces) > len(units)
    stats = coordinator.run(pieces)
    assert stats.records_read == source.records
    check_exactly_once(f"sqlite:{tmp_path / 'u.db'}", source)


def test_max_sessions_caps_the_units_writing_at_once(source: Source, tmp_path: Path,
                                                     cluster: Cluster) -> None:
    request = RunRequest(inputs=[str(source.dir)], target=f"sqlite:{tmp_path / 'm.db'}",
                         batch_size=100, out=tmp_path / "r", cluster="local:2",
                         max_sessions=1, sample_interval=None)
    outcome = execute_run(request, cluster=cluster)
    assert outcome.status == "complete"
    check_exactly_once(f"sqlite:{tmp_path / 'm.db'}", source)
    tasks = sorted(result(tmp_path / "r")["cluster"]["tasks"], key=lambda t: t["started_s"])
    assert len(tasks) >= 3 and len({t["worker"] for t in tasks}) == 2
    for earlier, later in itertools.pairwise(tasks):
        assert later["started_s"] >= earlier["ended_s"], "two units wrote at once"


def test_cluster_workers_picks_that_many_workers(source: Source, tmp_path: Path,
                                                 cluster: Cluster) -> None:
    request = RunRequest(inputs=[str(source.dir)], target=f"sqlite:{tmp_path / 'one.db'}",
                         out=tmp_path / "r", cluster="local:2", cluster_workers=1,
                         sample_interval=None)
    outcome = execute_run(request, cluster=cluster)
    assert len(outcome.summary()["cluster"]["workers"]) == 1
    assert len({t["worker"] for t in result(tmp_path / "r")["cluster"]["tasks"]}) == 1
    with pytest.raises(ClusterError, match=r"2 worker\(s\) connected, the run asks for 3"):
        cluster.workers(3, timeout_s=0.5)


# ---- Ctrl-C ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_and_resume_completes(tmp_path: Path) -> None:
    src = make_source(tmp_path / "data", 2500, files=2, seed=29)
    spec = f"sqlite:{tmp_path / 'c.db'}"
    args = [sys.executable, "-m", "bench", "run", "-i", str(src.dir), "-t", spec, "-b", "5",
            "--cluster", "local:2", "--no-sample", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while committed_records(spec) < 100:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no batch committed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "continue with --resume" in err and "Traceback" not in err
    run = result(tmp_path / "r")
    assert run["status"] == "interrupted"
    assert 0 < committed_records(spec) < src.records
    again = bench_proc(["run", "-i", str(src.dir), "-t", spec, "-b", "200", "--resume",
                        "--cluster", "local:2", "--no-sample", "--out", str(tmp_path / "r2"),
                        "--json"])
    assert again.returncode == 0, again.stderr
    check_exactly_once(spec, src)


# ---- exactly once when a unit is attempted twice --------------------------------------------

@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def any_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'f.db'}"
    server = request.getfixturevalue(request.param)
    extra = "Protocol=7.4-1" if request.param == "postgres" else ""
    return "odbc:" + server.odbc(extra)


def test_a_second_attempt_at_a_unit_stops_before_inserting_again(any_target: str,
                                                                 source: Source) -> None:
    mapping = default_mapping()
    target = open_target(any_target)
    target.set_namespace(Namespace(prefix="fence_"))
    units = expand_inputs([str(source.dir)])
    checkpoints = prepare_target(target, mapping, units, resume=False)
    config = EngineConfig(batch_size=150, fence_units=True)
    first = MigrationEngine(target, mapping, config).run(units[:1], checkpoints)
    assert first.records_read > 0
    # A second attempt that still believes the unit is untouched (the checkpoint it read
    # before the first attempt committed) stops at its first batch, inserting nothing.
    with pytest.raises(UnitTaken, match="another attempt at this unit"):
        MigrationEngine(target, mapping, config).run(units[:1], checkpoints)
    MigrationEngine(target, mapping, config).run(units[1:], checkpoints)
    rec = reconcile(target, mapping)
    assert rec.ok, rec.problems
    check_exactly_once(any_target, source, Namespace(prefix="fence_"))


# ---- the optional extra ---------------------------------------------------------------------

def test_the_default_install_never_imports_dask() -> None:
    code = ("import sys, bench.cli, bench.runner, bench.sweep, migrator, diagnostics, "
            "reports.report, migrator.cluster\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_without_dask_cluster_runs_say_how_to_install_it(source: Source,
                                                          tmp_path: Path) -> None:
    fake = tmp_path / "no-dask"
    fake.mkdir()
    (fake / "distributed.py").write_text("raise ImportError('No module named distributed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = bench_proc(["run", "-i", str(source.dir), "--cluster", "local:2",
                       "--out", str(tmp_path / "r")], env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'migration-bench[cluster]'" in lines[0], lines


def test_a_scheduler_that_is_not_there_is_one_line(source: Source, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    res = runner.invoke(app, ["run", "-i", str(source.dir), "--cluster", address,
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--cluster {address}: no scheduler answers there" in lines[0]
    assert "dask scheduler" in lines[0]


@pytest.mark.parametrize(("args", "flag"), [
    (["--cluster", "lokal:2"], "--cluster"),
    (["--cluster", "local:0"], "--cluster"),
    (["--cluster", "tcp://host-without-port"], "--cluster"),
    (["--cluster-workers", "2"], "--cluster-workers"),
    (["--max-sessions", "2"], "--max-sessions"),
    (["--cluster", "local:2", "--workers", "2"], "--workers"),
])
def test_cluster_usage_errors(source: Source, args: list[str], flag: str) -> None:
    res = runner.invoke(app, ["run", "-i", str(source.dir), *args])
    assert res.exit_code == 2, res.output
    assert flag in res.output


# ---- sweeps, the server's counters and the report -------------------------------------------

@pytest.mark.postgres
@pytest.mark.odbc
def test_sweep_over_cluster_workers_measured_at_the_server(small: Source, tmp_path: Path,
                                                           postgres: Any) -> None:
    spec = "odbc:" + postgres.odbc("Protocol=7.4-1")
    res = runner.invoke(app, ["sweep", "-i", str(small.dir), "-t", spec, "-b", "100",
                              "--cluster", "local:2", "--cluster-workers", "1,2",
                              "--repeat", "2", "--warmup", "0", "--schema", "mb_cl_sweep",
                              "--out", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "s" / "result.json").read_text())
    runs = [r for r in doc["runs"] if not r.get("warmup")]
    assert sorted(r["config"]["cluster_workers"] for r in runs) == [1, 1, 2, 2]
    for run in runs:
        assert run["reconciliation"]["ok"]
        used = {t["worker"] for t in run["cluster"]["tasks"]}
        assert len(used) == run["config"]["cluster_workers"]
        srv = run["server_throughput"]["server"]
        assert srv["rows_inserted"] == sum(run["metrics"]["tables"].values())
    rows = doc["summary"]["rows"]
    assert [r["config"]["cluster_workers"] for r in rows] == [1, 2]
    assert rows[1]["vs_baseline"] is not None  # paired within rounds like any dimension
    from reports.report import write_report

    html = write_report([tmp_path / "s" / "result.json"], tmp_path / "report.html").read_text()
    assert 'id="server-throughput"' in html and "Rows per second counted by the server" in html
    assert 'id="cluster-hosts"' in html and "Resource timeline of host" in html


@pytest.mark.mariadb
@pytest.mark.odbc
def test_server_counters_of_a_run_without_cluster_on_mariadb(source: Source, tmp_path: Path,
                                                              mariadb: Any) -> None:
    spec = "odbc:" + mariadb.odbc()
    res = runner.invoke(app, ["run", "-i", str(source.dir), "-t", spec, "-b", "100",
                              "--table-prefix", "cnt_", "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    srv = json.loads(res.stdout)["server_throughput"]
    rows = srv["clients"]["rows_inserted"]
    assert rows == sum(sum(c.values()) for c in source.expected.values())
    # Innodb_rows_inserted is the whole server's: the run's rows, its quarantine and
    # bookkeeping rows; nothing else wrote meanwhile.
    assert rows <= srv["server"]["rows_inserted"] <= rows + source.manifest.records
    assert srv["server"]["commits"] >= srv["clients"]["commits"] > 0
    assert "SHOW GLOBAL STATUS" in srv["rows_source"]


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_local_cluster_switches_odbc_pooling_between_runs(small: Source, tmp_path: Path,
                                                            postgres: Any,
                                                            cluster: Cluster) -> None:
    # unixODBC reads its pooling choice once per process: the second run's workers must
    # still get what it asks for (a local cluster's processes are restarted for it).
    spec = "odbc:" + postgres.odbc("Protocol=7.4-1")
    workers = []
    for connection in ("pooled", "per-batch"):
        request = RunRequest(inputs=[str(small.dir)], target=spec, batch_size=100,
                             connection=connection, schema="mb_cl_pool", cluster="local:2",
                             out=tmp_path / connection, sample_interval=None)
        assert execute_run(request, cluster=cluster).status == "complete"
        run = result(tmp_path / connection)
        assert run["config"]["connection"] == connection
        workers.append(set(run["cluster"]["workers"]))
        check_exactly_once(spec, small, Namespace("mb_cl_pool"))
    assert not workers[0] & workers[1], "the workers were not restarted for the switch"


@pytest.mark.postgres
@pytest.mark.odbc
def test_persistent_keeps_one_session_per_worker_for_the_whole_run(
        small: Source, tmp_path: Path, postgres: Any, cluster: Cluster) -> None:
    spec = "odbc:" + postgres.odbc("Protocol=7.4-1")
    request = RunRequest(inputs=[str(small.dir)], target=spec, batch_size=50,
                         connection="persistent", schema="mb_cl_keep", cluster="local:2",
                         insert_method="values", out=tmp_path / "r", sample_interval=None)
    assert execute_run(request, cluster=cluster).status == "complete"
    check_exactly_once(spec, small, Namespace("mb_cl_keep"))
    tasks = result(tmp_path / "r")["cluster"]["tasks"]
    assert len(tasks) > 2  # more tasks than worker threads ...
    sessions = {t["worker"]: set() for t in tasks}
    for t in tasks:
        assert t["session"].isdigit(), t  # (a PostgreSQL backend's pid)
        sessions[t["worker"]].add(t["session"])
    # ... and one session per worker thread, kept from its first task to its last.
    assert all(len(kept) == 1 for kept in sessions.values()), sessions
    assert len(set().union(*sessions.values())) == len(sessions) == 2


def test_a_baseline_runs_on_one_cluster(small: Source, tmp_path: Path) -> None:
    res = runner.invoke(app, ["baseline", "-i", str(small.dir), "-t",
                              f"sqlite:{tmp_path / 'b.db'}", "--cluster", "local:2",
                              "--cluster-workers", "1", "--iterations", "2", "--warmup", "0",
                              "--out", str(tmp_path / "b"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    runs = [r for r in doc["runs"] if not r.get("warmup")]
    assert len(runs) == 2
    for run in runs:
        assert run["config"]["cluster"] == "local:2" and run["reconciliation"]["ok"]
        assert len({t["worker"] for t in run["cluster"]["tasks"]}) == 1
    alone = runner.invoke(app, ["baseline", "-i", str(small.dir), "--cluster-workers", "1",
                                "--out", str(tmp_path / "x")])
    assert alone.exit_code == 2 and "--cluster-workers needs --cluster" in alone.output
