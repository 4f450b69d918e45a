"""What a run says about itself: zero-record input, the checks before any work, the result
file's status (complete, failed, interrupted) and ``--resume`` of a run that finished.

Unwritable folders are made for real, in ways that stop root too (these tests run as
root, whom permission bits do not stop): a path under a regular file, and a read-only
tmpfs mount where the machine lets us mount one.
"""

from __future__ import annotations

import json
import re
import signal
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
from typer.testing import CliRunner, Result

import bench.cli
import bench.runner
import datasets
from bench.cli import app
from bench.compare import compare_results
from migrator import (
    InputError,
    default_mapping,
    expand_inputs,
    finished_at,
    migrate,
    open_target,
    reconcile,
)
from migrator.errors import TargetError
from migrator.targets.sqlite import SQLiteConnection
from reports.results import Environment, ResultFileError, Run, load, read_raw, write_json_atomic

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
FIXTURES = Path(__file__).parent / "data" / "results"
COUNTRIES = '<?xml version="1.0"?>\n<countries>\n<country name="x"/>\n</countries>\n'


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("status-data")
    datasets.generate(out, 300, files=2, seed=5, invalid_rate=0.02)
    return out


def error_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return [line for line in result.output.splitlines() if line.strip()]


# ---- zero records ----------------------------------------------------------------------------
def test_zero_records_is_an_error_naming_the_element_the_file_and_its_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.xml").write_text(COUNTRIES)
    result = cli.invoke(app, ["run", "--input", "data/x.xml"])
    assert result.exit_code == 1
    assert error_lines(result) == ["error: no <order> elements in data/x.xml (its root is "
                                   "<countries>): check [record].element in the mapping"]
    assert not (tmp_path / "runs").exists()  # refused before anything was made


def test_zero_records_in_several_files_names_the_first_and_the_count(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.xml").write_text(COUNTRIES)
    result = cli.invoke(app, ["run", "-i", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"error: no <order> elements in any of the 3 input files (the first, "
        f"{tmp_path / 'a.xml'}, has the root <countries>): check [record].element in the "
        "mapping"]


def test_records_in_a_namespace_are_named_as_the_reason(tmp_path: Path) -> None:
    f = tmp_path / "ns.xml"
    f.write_text('<orders xmlns="urn:shop"><order id="1"/></orders>')
    with pytest.raises(InputError, match=r"no <order> elements in .*ns\.xml \(its root is "
                                         r"<orders>\): its <order> elements are in the "
                                         r"namespace 'urn:shop'"):
        migrate(expand_inputs([str(f)]), open_target(f"sqlite:{tmp_path / 'n.db'}"),
                default_mapping())
    assert not (tmp_path / "n.db").exists()


def test_files_without_records_beside_others_are_named_and_the_run_succeeds(
        data: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in data.glob("*.xml"):
        (mixed / f.name).write_bytes(f.read_bytes())
    (mixed / "zz-countries.xml").write_text(COUNTRIES)
    empty = str((mixed / "zz-countries.xml").resolve())
    result = cli.invoke(app, ["run", "-i", str(mixed), "--out", str(tmp_path / "r"), "--json",
                              "--no-sample"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete" and summary["records_read"] == 300
    assert summary["files_without_records"] == [empty]
    stored = read_raw(tmp_path / "r")
    assert stored["runs"][0]["files_without_records"] == [empty]
    human = cli.invoke(app, ["run", "-i", str(mixed), "--out", str(tmp_path / "r2"),
                             "--no-sample"])
    assert human.exit_code == 0, human.output
    assert f"input files without records (the others had some): {empty}" in human.stdout


@pytest.mark.parametrize("command", [["sweep", "--batch-sizes", "100,200"],
                                     ["baseline", "--iterations", "2"]])
def test_sweep_and_baseline_refuse_zero_records_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a run started on input without records")

    monkeypatch.setattr(bench.runner, "execute_run", must_not_run)
    (tmp_path / "x.xml").write_text(COUNTRIES)
    result = cli.invoke(app, [*command, "-i", str(tmp_path / "x.xml"), "--out",
                              str(tmp_path / "s")])
    assert result.exit_code == 1
    assert error_lines(result) == [f"error: no <order> elements in {tmp_path / 'x.xml'} (its "
                                   "root is <countries>): check [record].element in the "
                                   "mapping"]
    assert not (tmp_path / "s").exists()  # no store, no plan, no folder


# ---- an unwritable --out, for every command that writes ---------------------------------------
@pytest.fixture(params=["under-a-file", "read-only-mount"])
def unwritable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write results into, root included."""
    if request.param == "under-a-file":
        (tmp_path / "file.txt").write_text("a regular file\n")
        yield tmp_path / "file.txt" / "sub"
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                           capture_output=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mount.stderr!r}")
    try:
        yield ro / "results"
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True, check=False)


def _never(what: str) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{what} ran although --out cannot be written")
    return fail


def _commands(data: Path, out: Path) -> dict[str, list[str]]:
    return {
        "run": ["run", "-i", str(data), "--out", str(out)],
        "sweep": ["sweep", "-i", str(data), "-b", "100,200", "--out", str(out)],
        "baseline": ["baseline", "-i", str(data), "--out", str(out)],
        "diagnose": ["diagnose", "pooling", "--records", "100", "--out", str(out)],
        "report": ["report", str(FIXTURES / "run.json"), "--out", str(out / "report.html")],
        "generate": ["generate", "--records", "10", "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["run", "sweep", "baseline", "diagnose", "report",
                                     "generate"])
def test_an_unwritable_out_is_one_line_before_any_work(
        data: Path, unwritable: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.cli.diagnose
    import reports.report

    monkeypatch.setattr(bench.runner, "ParallelCoordinator", _never("a migration"))
    monkeypatch.setattr(bench.runner, "execute_run", _never("a measured run"))
    monkeypatch.setattr(bench.cli.diagnose, "ensure_dataset", _never("the dataset"))
    monkeypatch.setattr(reports.report, "load_documents", _never("reading results"))
    monkeypatch.setattr(datasets, "generate", _never("generating"))
    result = cli.invoke(app, _commands(data, unwritable)[command])
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert line.startswith("error: --out ") and str(unwritable) in line, line
    assert re.search(r"cannot write there \((\S+ is a file, not a folder|Read-only file "
                     r"system)\); choose a folder you can write to with --out", line), line
    if unwritable.parent.is_file():  # the path given is named, and the file in its way
        given = _commands(data, unwritable)[command][-1]
        assert line.startswith(f"error: --out {given}: ")
        assert f"({unwritable.parent} is a file, not a folder)" in line, line


def test_an_unwritable_out_in_a_real_process_is_one_line(data: Path, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "sweep"
    proc = bench_proc(["sweep", "-i", str(data), "-b", "100,200", "--out", str(out)])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --out {out}: cannot write there ({tmp_path / 'file.txt'} is a file, not a "
        "folder); choose a folder you can write to with --out"]
    assert proc.stdout == ""


def test_doctor_tests_that_results_can_really_be_written(unwritable: Path,
                                                         tmp_path: Path) -> None:
    bad = cli.invoke(app, ["doctor", "--out", str(unwritable), "--json"])
    doc = json.loads(bad.stdout)
    (found,) = [c for c in doc["checks"] if c["check"] == "results-writable"]
    assert found["status"] == "error" and str(unwritable) in found["message"]
    assert "--out" in found["fix"]
    assert bad.exit_code == 3
    good = cli.invoke(app, ["doctor", "--out", str(tmp_path / "new" / "runs"), "--json"])
    (ok,) = [c for c in json.loads(good.stdout)["checks"] if c["check"] == "results-writable"]
    assert ok["status"] == "ok"
    assert not (tmp_path / "new").exists()  # a check, not a change: nothing is left behind


def test_a_sqlite_file_in_a_missing_folder_is_refused_and_not_created(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.runner, "execute_run", _never("a measured run"))
    db = tmp_path / "nowhere" / "deeper" / "t.db"
    for command in (["run", "-i", str(data), "--out", str(tmp_path / "r")],
                    ["sweep", "-i", str(data), "-b", "100,200", "--out", str(tmp_path / "s")]):
        result = cli.invoke(app, [*command, "--target", f"sqlite:{db}"])
        assert result.exit_code == 1
        assert error_lines(result) == [
            f"error: sqlite:{db}: the folder {db.parent} does not exist; create it first "
            f"(mkdir -p {db.parent}) or choose another path"]
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(TargetError, match="does not exist"):
        open_target(f"sqlite:{db}").connect()
    assert not (tmp_path / "nowhere").exists()


def test_any_oserror_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The dataset cache under a regular file: an OSError no preflight anticipates.
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "file.txt" / "cache"))
    result = cli.invoke(app, ["sweep", "--records", "50", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"error: {tmp_path / 'file.txt' / 'cache' / 'datasets'}: Not a directory"]


# ---- result status ---------------------------------------------------------------------------
def test_a_complete_run_says_so(data: Path, tmp_path: Path) -> None:
    result = cli.invoke(app, ["run", "-i", str(data), "--out", str(tmp_path / "r"),
                              "--no-sample", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = read_raw(tmp_path / "r")
    assert (doc["status"], doc["error"]) == ("complete", None)
    assert (doc["runs"][0]["status"], doc["runs"][0]["error"]) == ("complete", None)
    assert (tmp_path / "r" / "pyperf.json").exists()


class _FailAt:
    """SQLite's COMMIT raising ``exc`` at its ``at``-th call (the schema's is the first)."""

    def __init__(self, at: int, exc: BaseException) -> None:
        self.at, self.exc, self.n = at, exc, 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = SQLiteConnection.commit

        def commit(conn: SQLiteConnection) -> None:
            self.n += 1
            if self.n == self.at:
                conn.rollback()
                raise self.exc
            real(conn)

        monkeypatch.setattr(SQLiteConnection, "commit", commit)


def _committed(spec: str) -> int:
    return reconcile(open_target(spec), default_mapping()).records_read


@pytest.mark.parametrize("as_json", [False, True])
def test_a_failed_run_keeps_its_partial_measurements_and_says_failed(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    spec = f"sqlite:{tmp_path / 'f.db'}"
    cause = "sqlite:f.db: commit failed: disk I/O error"
    _FailAt(5, TargetError(cause)).install(monkeypatch)  # after 3 committed batches
    result = cli.invoke(app, ["run", "-i", str(data), "-t", spec, "-b", "40", "--no-sample",
                              "--out", str(tmp_path / "r"), *(["--json"] if as_json else [])])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip() == f"error: {cause}"  # on stderr with --json too
    doc = read_raw(tmp_path / "r")
    (run,) = doc["runs"]
    assert doc["status"] == run["status"] == "failed" and doc["error"] == run["error"] == cause
    # What it measured before the error: exactly what the target committed.
    assert run["metrics"]["records_read"] == _committed(spec) == 120
    assert len(run["metrics"]["batches"]["rows"]) == 3
    assert run["metrics"]["stages"]["parse"] > 0 and run["metrics"]["elapsed_s"] > 0
    assert run["reconciliation"] is None and run["bottleneck"] is None
    assert not (tmp_path / "r" / "pyperf.json").exists()  # not a measurement
    if as_json:
        summary = json.loads(result.stdout)
        assert (summary["status"], summary["error"]) == ("failed", cause)
        assert summary["records_read"] == 120
    else:
        assert f"result: {tmp_path / 'r' / 'result.json'} (status failed: 120 records " \
               "before it stopped; not a measurement)" in result.stdout
    # The committed batches stay, and --resume finishes the run.
    monkeypatch.undo()
    again = cli.invoke(app, ["run", "-i", str(data), "-t", spec, "-b", "40", "--no-sample",
                             "--resume", "--out", str(tmp_path / "r2"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["skipped"] == 120 and _committed(spec) == 300


def test_a_run_that_ends_with_errors_is_failed_and_says_so_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<orders>\n<order id='1'>\n</orders>\n")
    result = cli.invoke(app, ["run", "-i", str(tmp_path / "bad.xml"), "--out",
                              str(tmp_path / "r"), "--json", "--no-sample"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "malformed XML" in summary["error"]
    assert result.stderr.strip() == f"error: {summary['error']}"
    assert read_raw(tmp_path / "r")["status"] == "failed"
    assert not (tmp_path / "r" / "pyperf.json").exists()


def test_ctrl_c_writes_an_interrupted_result_with_what_was_measured(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = f"sqlite:{tmp_path / 'i.db'}"
    _FailAt(4, KeyboardInterrupt()).install(monkeypatch)  # after 2 committed batches
    result = cli.invoke(app, ["run", "-i", str(data), "-t", spec, "-b", "50", "--no-sample",
                              "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    result_file = tmp_path / "r" / "result.json"
    assert result.stderr.strip() == ("error: interrupted: the batch in progress was rolled "
                                     "back; continue with --resume")
    assert f"result: {result_file} (status interrupted" in result.stdout
    doc = read_raw(result_file)
    assert doc["status"] == doc["runs"][0]["status"] == "interrupted"
    assert doc["runs"][0]["error"].startswith("interrupted")
    assert doc["runs"][0]["metrics"]["records_read"] == _committed(spec) == 100


def test_sigint_with_workers_keeps_what_each_worker_committed_and_resume_finishes(
        tmp_path: Path) -> None:
    src: Source = make_source(tmp_path / "src", 1200, files=2, seed=23)
    spec = f"sqlite:{tmp_path / 'w.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "-i", str(src.dir), "-t", spec, "-b", "10",
         "--workers", "2", "--no-sample", "--out", str(tmp_path / "r1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while committed_records(spec) < 100:
            assert proc.poll() is None, f"finished before the interrupt: {proc.communicate()}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the coordinator
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "continue with --resume" in stderr
    doc = read_raw(tmp_path / "r1")
    run = doc["runs"][0]
    assert doc["status"] == run["status"] == "interrupted"
    assert doc["error"] == "interrupted (Ctrl-C or SIGINT); continue with --resume"
    committed = _committed(spec)
    # Every worker reported what it had committed when it stopped.
    assert 100 <= run["metrics"]["records_read"] == committed < src.records
    assert sum(w["records_read"] for w in run["metrics"]["workers"]) == committed
    resumed = cli.invoke(app, ["run", "-i", str(src.dir), "-t", spec, "-b", "10",
                               "--workers", "2", "--no-sample", "--resume", "--out",
                               str(tmp_path / "r2"), "--json"])
    assert resumed.exit_code == 0, resumed.output
    check_exactly_once(spec, src)


def test_a_killed_worker_fails_the_run_with_a_failed_result(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 800, files=2, seed=29, invalid_rate=0.0)
    spec = f"sqlite:{tmp_path / 'k.db'}"
    proc = bench_proc(["run", "-i", str(src.dir), "-t", spec, "-b", "20", "--workers", "2",
                       "--no-sample", "--out", str(tmp_path / "r"), "--json"],
                      env=fault_env(tmp_path, at=9, proc="mb-worker-1"))
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert re.match(r"error: worker 1 \(pid \d+\) failed on .*SIGKILL", line), line
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed" and f"error: {summary['error']}" == line
    doc = read_raw(tmp_path / "r")
    assert doc["runs"][0]["status"] == "failed"
    # The killed worker could not report its share; the target's checkpoints have it.
    assert doc["runs"][0]["metrics"]["records_read"] <= _committed(spec)
    assert not (tmp_path / "r" / "pyperf.json").exists()


# ---- failed runs are never measurements -------------------------------------------------------
def _sweep_with_a_failed_run(tmp_path: Path) -> tuple[Path, Path]:
    doc = read_raw(FIXTURES / "v2_sweep.json")
    good = tmp_path / "good.json"
    write_json_atomic(good, doc)
    measured = [r for r in doc["runs"] if not r.get("warmup")]
    # One more run of the first configuration, that failed: kept, but never a measurement.
    failed = json.loads(json.dumps(measured[0]))
    failed.update(status="failed", error="server closed the connection",
                  order_index=len(doc["runs"]), sequence=len(doc["runs"]))
    failed["metrics"]["throughput_rec_per_min"] = 1.0  # would be a huge regression
    doc["runs"].insert(0, failed)
    bad = tmp_path / "bad.json"
    write_json_atomic(bad, doc)
    return good, bad


def test_compare_skips_failed_runs_and_says_so(tmp_path: Path) -> None:
    good, bad = _sweep_with_a_failed_run(tmp_path)
    report = compare_results(good, bad)
    assert report.skipped == (f"{bad}: run 1 failed: server closed the connection",)
    assert [r.comparison.n_b for r in report.rows] == [r.comparison.n_a for r in report.rows]
    assert not report.regressions  # the failed run's 1 rec/min was not counted
    shown = cli.invoke(app, ["compare", str(good), str(bad)])
    assert f"skipped, not a measurement: {bad}: run 1 failed: server closed the connection" \
        in shown.stdout
    failed_run = FIXTURES / "v2_failed_run.json"
    with pytest.raises(ResultFileError, match=r"no measured run in this result file \(run 1 "
                                              r"failed: .*malformed XML"):
        compare_results(FIXTURES / "v2_run.json", failed_run)


def test_the_report_leaves_failed_runs_out_and_says_so(tmp_path: Path) -> None:
    from reports.report import build_report, collect_runs

    good, bad = _sweep_with_a_failed_run(tmp_path)
    assert len(collect_runs([load(bad)])) == len(collect_runs([load(good)]))
    report = build_report([read_raw(FIXTURES / "v2_failed_run.json")])
    text = json.dumps([[*b.items, b.text] for s in report.sections for b in s.blocks])
    assert "These result files hold no measured run." in text
    assert "run 1 of run failed:" in text and "not a measurement" in text


def test_a_sweep_stores_a_failed_run_as_failed_and_never_counts_it(data: Path,
                                                                   tmp_path: Path) -> None:
    from bench.store import read_store

    out = tmp_path / "s"
    result = cli.invoke(app, ["sweep", "-i", str(data), "--insert-method", "fast",
                              "--repeat", "2", "--warmup", "0", "--out", str(out)])
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "insert_method=fast: the migration did not complete cleanly, so its time is not a " \
           "measurement: insert method 'fast' is not available for sqlite" in line
    contents = read_store(out / "runs.jsonl")
    (failed,) = contents.runs
    assert failed.status == "failed" and failed.metrics.records_read == 0
    assert contents.measured_runs() == [] and contents.done_slots() == set()
    assert not (out / "result.json").exists()


def test_a_sweep_summary_skips_stored_failed_runs_with_a_warning(tmp_path: Path) -> None:
    from bench.store import StoreContents
    from bench.sweep import SweepPlan, finish_sweep

    doc = read_raw(FIXTURES / "v2_sweep.json")
    plan = SweepPlan.from_dict(doc["config"])
    runs = [dict(r) for r in doc["runs"]]
    extra = {**runs[-1], "status": "failed", "error": "boom", "sequence": len(runs),
             "metrics": {**runs[-1]["metrics"], "throughput_rec_per_min": 1.0}}
    contents = StoreContents(path=tmp_path / "runs.jsonl", plan=doc["config"],
                             environment=Environment.from_dict(doc["environment"]),
                             runs=[Run.from_dict(r) for r in [*runs, extra]])
    out, _, _ = finish_sweep(plan, contents, tmp_path)
    assert out.measured_runs == len([r for r in runs if not r.get("warmup")])
    assert out.summary is not None
    assert [row.stats.n for row in out.summary.rows] == \
        [row["stats"]["n"] for row in doc["summary"]["rows"]]
    assert any("1 run(s) did not complete and are not measurements" in w and "boom" in w
               for w in out.summary.warnings)


# ---- --resume of a run that finished --------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres,
                                                                      pytest.mark.odbc]),
                        pytest.param("mariadb", marks=[pytest.mark.mariadb,
                                                       pytest.mark.odbc])])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'done.db'}"
    if request.param == "postgresql":
        return "odbc:" + str(request.getfixturevalue("postgres").odbc("Protocol=7.4-1"))
    return "odbc:" + str(request.getfixturevalue("mariadb").odbc())


def test_resume_of_a_finished_run_says_so_and_writes_nothing(data: Path, tmp_path: Path,
                                                             target: str) -> None:
    first = cli.invoke(app, ["run", "-i", str(data), "-t", target, "-b", "100", "--no-sample",
                             "--out", str(tmp_path / "r1"), "--json"])
    assert first.exit_code == 0, first.output
    stamp = finished_at(open_target(target))
    assert stamp is not None
    created = read_raw(tmp_path / "r1")["created"]
    assert abs(_epoch(stamp) - _epoch(created)) < 120  # (recorded by this run)
    again = cli.invoke(app, ["run", "-i", str(data), "-t", target, "-b", "100", "--no-sample",
                             "--resume", "--out", str(tmp_path / "r2")])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"nothing to resume: the run finished at {stamp}"
    assert not (tmp_path / "r2").exists()  # no result, no run folder
    as_json = cli.invoke(app, ["run", "-i", str(data), "-t", target, "--resume", "--json",
                               "--out", str(tmp_path / "r3")])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["finished_at"] == stamp
    assert not (tmp_path / "r3").exists()


def test_a_run_that_did_not_finish_records_no_finish(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<orders>\n<order id='1'>\n</orders>\n")
    spec = f"sqlite:{tmp_path / 'b.db'}"
    cli.invoke(app, ["run", "-i", str(tmp_path / "bad.xml"), "-t", spec, "--no-sample",
                     "--out", str(tmp_path / "r")])
    assert finished_at(open_target(spec)) is None
    again = cli.invoke(app, ["run", "-i", str(tmp_path / "bad.xml"), "-t", spec, "--resume",
                             "--no-sample", "--out", str(tmp_path / "r2")])
    assert "nothing to resume" not in again.output  # it tries again, and fails again
    assert again.exit_code == 1


def _epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp).timestamp()
