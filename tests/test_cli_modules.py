"""Each command module of :mod:`bench.cli` on its own: its Typer parses its options, turns
bad input into a usage error (exit 2) and does its job, without the root app.

The end-to-end behaviour of every command is tested through ``bench.cli.app`` elsewhere;
these tests pin that each module is self-contained (its own ``typer.Typer()``, the shared
options from :mod:`bench.cli.options`) and that the root app adds every one of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import typer
from typer.testing import CliRunner

from bench.cli import (
    app,
    baseline,
    calibrate,
    compare,
    diagnose,
    doctor,
    generate,
    mapping,
    report,
    run,
    sweep,
)

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})

SINGLE = {"generate": generate, "run": run, "sweep": sweep, "baseline": baseline,
          "compare": compare, "calibrate": calibrate, "report": report, "doctor": doctor}
GROUPS = {"diagnose": (diagnose, ["pooling"]), "mapping": (mapping, ["suggest", "check"])}


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_command_module_has_its_own_typer(name: str) -> None:
    module: ModuleType = SINGLE[name]
    assert isinstance(module.app, typer.Typer) and module.app is not app
    result = runner.invoke(module.app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_root_app_adds_every_command_module() -> None:
    listing = runner.invoke(app, ["--help"]).output
    for name in [*SINGLE, *GROUPS]:
        assert f" {name} " in listing, name
    for group, (module, subcommands) in GROUPS.items():
        assert isinstance(module.app, typer.Typer)
        for sub in subcommands:
            assert runner.invoke(app, [group, sub, "--help"]).exit_code == 0, (group, sub)


@pytest.mark.parametrize(("module", "args", "needle"), [
    (generate, ["--out", "x", "--records", "0"], "--records"),
    (run, ["--input", "x.xml", "--batch-size", "0"], "--batch-size"),
    (run, ["--input", "x.xml", "--workers", "0"], "--workers"),
    (run, ["--input", "x.xml", "--pipeline", "threads"], "--pipeline"),
    (sweep, ["--repeat", "3", "--budget", "1m"], "--budget and --repeat"),
    (sweep, ["--batch-sizes", "2000..50"], "--batch-sizes"),
    (baseline, ["--iterations", "0"], "--iterations"),
    (compare, ["a.json", "--alpha", "0.9"], "--alpha"),
    (calibrate, ["--duration", "soon"], "--duration"),
    (diagnose, ["--workers", "0..2"], "--workers"),  # (alone, its one command runs)
], ids=lambda v: v.__name__.rsplit(".", 1)[-1] if isinstance(v, ModuleType) else None)
def test_each_command_module_reports_a_bad_option_as_a_usage_error(
        module: ModuleType, args: list[str], needle: str, tmp_path: Path) -> None:
    result = runner.invoke(module.app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_generate_then_run_then_report_through_their_own_modules(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = runner.invoke(generate.app, ["--out", str(data), "--records", "120", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["records"] == 120
    out = tmp_path / "run"
    ran = runner.invoke(run.app, ["--input", str(data), "--out", str(out), "--no-sample",
                                  "--batch-size", "50", "--json"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["inserted"] + summary["quarantined"] == summary["records_read"] == 120
    html = tmp_path / "r.html"
    shown = runner.invoke(report.app, [summary["result_file"], "--out", str(html)])
    assert shown.exit_code == 0, shown.output
    assert html.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_mapping_module_suggests_a_mapping_its_check_accepts(tmp_path: Path) -> None:
    xml = tmp_path / "in.xml"
    xml.write_text("<export><item id='1'><name>a</name></item>"
                   "<item id='2'><name>b</name></item></export>", encoding="utf-8")
    toml = tmp_path / "m.toml"
    made = runner.invoke(mapping.app, ["suggest", str(xml), "--out", str(toml)])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(mapping.app, ["check", str(toml), str(xml), "--json"])
    assert checked.exit_code == 0, checked.output


def test_doctor_module_prints_findings_as_json() -> None:
    result = runner.invoke(doctor.app, ["--json"])
    assert result.exit_code in (0, 3), result.output
    assert json.loads(result.stdout)
