"""The `bench` command line: outputs, exit codes, and one real run of the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from migrator.errors import MigratorError
from reports.results import SCHEMA_VERSION

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-data")
    result = runner.invoke(app, ["generate", "--records", "400", "--files", "2",
                                 "--invalid-rate", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "400 records (20 invalid)" in result.output
    return out


def test_run_json_has_the_documented_keys(data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--input", str(data), "--target",
                                 f"sqlite:{tmp_path / 'm.db'}", "--out", str(tmp_path / "r"),
                                 "--batch-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("records_read", "inserted", "quarantined", "elapsed_s",
                "throughput_rec_per_min", "stages", "tables", "result_file"):
        assert key in doc
    assert doc["records_read"] == 400 and doc["quarantined"] == 20
    assert doc["reconciliation"]["ok"]
    assert set(doc["stages"]) >= {"parse", "map", "insert", "commit"}
    stored = json.loads(Path(doc["result_file"]).read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and stored["kind"] == "run"
    assert stored["environment"]["dataset"]["profile"] == "orders"
    assert stored["runs"][0]["metrics"]["records_read"] == 400


def test_run_human_output_and_default_target(data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "-i", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "400 records read → 380 inserted + 20 quarantined (reconciled)" in result.stdout
    assert "rec/min" in result.stdout and "stages: " in result.stdout
    assert "bottleneck: " in result.stdout  # sampled and attributed by default
    assert (tmp_path / "r" / "mig.db").exists()  # the embedded default lives in the run folder
    assert (tmp_path / "r" / "pyperf.json").exists()


@pytest.mark.parametrize(("args", "code", "words"), [
    (["run", "-i", "{data}", "--batch-size", "0"], 2, "--batch-size"),
    (["run", "-i", "{data}", "--no-such-flag"], 2, "No such option"),
    (["generate", "--out", "{tmp}/g", "--invalid-rate", "2"], 2, "--invalid-rate"),
    (["generate", "--out", "{tmp}/g", "--records", "0"], 2, "--records"),
    (["run", "-i", "{tmp}/missing.xml"], 1, "no such file or folder"),
    (["run", "-i", "{data}", "-t", "mysql:x"], 1, "unknown target 'mysql'; use one of"),
    (["run", "-i", "{data}", "-m", "{tmp}/nope.toml"], 1, "mapping file not found"),
    (["run", "-i", "{data}", "-t", "sqlite:{tmp}/x.db", "--resume"], 1, "nothing to resume"),
    (["generate", "--out", "{tmp}/g", "--profile", "shoes"], 1, "profile"),
])
def test_errors_are_one_line_with_exit_code(data: Path, tmp_path: Path, args: list[str],
                                            code: int, words: str) -> None:
    argv = [a.format(data=data, tmp=tmp_path) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "run", "-i", str(tmp_path / "missing.xml")])
    assert result.exit_code == 1
    assert isinstance(result.exception, MigratorError)


def test_malformed_input_exits_1_after_committing_what_it_could(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<orders>\n<order id='1'>\n</orders>\n")
    result = runner.invoke(app, ["run", "-i", str(tmp_path / "bad.xml"), "--out",
                                 str(tmp_path / "r")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'bad.xml'}:3: malformed XML" in result.output


def test_console_script_end_to_end(tmp_path: Path) -> None:
    exe = shutil.which("bench")
    cmd = [exe] if exe else [sys.executable, "-m", "bench"]
    env = {**os.environ, "NO_COLOR": "1"}
    gen = subprocess.run([*cmd, "generate", "--records", "300", "--out", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert gen.returncode == 0, gen.stderr
    argv = [*cmd, "run", "--input", str(tmp_path / "d"), "--target",
            f"sqlite:{tmp_path / 'w' / 'mig.db'}", "--out", str(tmp_path / "r"), "--json"]
    # A sqlite: file in a folder that does not exist: one line, and no folder made for it.
    missing = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == (f"error: sqlite:{tmp_path / 'w' / 'mig.db'}: the folder "
                                      f"{tmp_path / 'w'} does not exist; create it first "
                                      f"(mkdir -p {tmp_path / 'w'}) or choose another path")
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()
    (tmp_path / "w").mkdir()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["inserted"] == 300
    # pyperf reads our file format.
    show = subprocess.run([sys.executable, "-m", "pyperf", "show",
                           str(tmp_path / "r" / "pyperf.json")],
                          capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    bad = subprocess.run([*cmd, "run", "--input", str(tmp_path / "nope")], capture_output=True,
                         text=True, timeout=60, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_ctrl_c_exits_130_and_resume_finishes(data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.targets.sqlite import SQLiteConnection

    real = SQLiteConnection.insert_rows
    calls = {"n": 0}

    def interrupted(self, table, columns, rows, method=None):  # type: ignore[no-untyped-def]
        calls["n"] += table == "orders"
        if calls["n"] == 3:  # in the third batch: two are committed
            raise KeyboardInterrupt
        return real(self, table, columns, rows, method)

    monkeypatch.setattr(SQLiteConnection, "insert_rows", interrupted)
    db = f"sqlite:{tmp_path / 'c.db'}"
    args = ["run", "-i", str(data), "-t", db, "-b", "50", "--out", str(tmp_path / "r1")]
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert "continue with --resume" in result.output and "Traceback" not in result.output
    monkeypatch.setattr(SQLiteConnection, "insert_rows", real)
    args[-1] = str(tmp_path / "r2")
    result = runner.invoke(app, [*args, "--resume", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["reconciliation"]["records_read"] == 400
    assert doc["skipped"] == 100
