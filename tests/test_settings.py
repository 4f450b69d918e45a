"""The run settings are declared once (:mod:`migrator.settings`) and everything else is
derived from that declaration: the options of ``bench run`` and the setting options the
other commands share, the sweep dimensions, the settings in ``bench run --json`` and the
labels reports give configurations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import datasets
from bench import sweep as sweep_module
from bench.cli import app
from bench.cli.options import TABLE_SETTINGS
from bench.cli.plans import one_configuration
from bench.runner import RunRequest
from bench.sweep import DIMENSIONS, RunContext, build_request, parse_dimensions
from migrator.settings import (
    SETTING_BY_NAME,
    SETTINGS,
    SWEPT,
    RunSettings,
    Setting,
    dimension_name,
    label,
)
from reports import report
from reports.summary import format_config, parse_baseline

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})


def _params(*path: str) -> dict[str, Any]:
    """The click parameters of ``bench <path>``, by every flag they answer to."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt: p for p in command.params for opt in p.opts}


def _shown(help_text: str) -> str:
    return help_text.replace("[", "\\[")  # (rich markup: escaped where the help is built)


def _flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


# ---- bench run: one option per setting ----------------------------------------------------------

@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_a_bench_run_option_with_its_default_and_help(s: Setting) -> None:
    params = _params("run")
    assert s.flag in params, f"bench run has no {s.flag}"
    option = params[s.flag]
    assert option.name == s.name
    if s.alias is None:
        assert option.default == s.default
        assert option.help == _shown(s.help)
    else:  # either flag gives the value: the default is said, and applied once both are read
        assert option.default is None
        assert option.help == _shown(f"{s.help} [default: {s.default}]")
        assert params[s.alias.flag].help == _shown(s.alias.help)
    if s.short:
        assert s.short in option.opts
    if s.envvar:
        assert option.envvar == s.envvar
    if s.off_flag:
        assert s.off_flag in params and params[s.off_flag].help == _shown(s.off_help)
    # and the help a user reads shows it
    text = _flat(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400"}).output)
    assert s.flag in text and " ".join(s.help.split()[:4]) in text


def test_bench_run_has_no_setting_option_the_declaration_does_not_know() -> None:
    own = {"--input", "--target", "--mapping", "--resume", "--out", "--report", "--json",
           "--help", "--cluster"}  # (where it runs, like --target: bench.runner.RunRequest)
    declared = ({s.flag for s in SETTINGS} | {s.off_flag for s in SETTINGS if s.off_flag}
                | {s.alias.flag for s in SETTINGS if s.alias})
    flags = {o for o in _params("run") if o.startswith("--")}
    assert flags - own == declared


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.choices], ids=lambda s: s.name)
def test_a_value_outside_a_settings_choices_is_a_usage_error(s: Setting,
                                                             tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "-i", str(tmp_path), s.flag, "bogus"],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert s.flag in result.output
    words = "must be one of" if s.alias is None else "is not a connection strategy"
    assert words in _flat(result.output)


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.alias], ids=lambda s: s.name)
def test_a_setting_and_its_alias_flag_must_agree(s: Setting, tmp_path: Path) -> None:
    assert s.alias is not None
    spelled, meant = s.spellings[0]
    other = next(c for c in s.choices or () if c != meant)
    result = runner.invoke(app, ["run", "-i", str(tmp_path), s.flag, other, s.alias.flag,
                                 spelled], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "disagree" in result.output and s.alias.flag in result.output
    bad = runner.invoke(app, ["run", "-i", str(tmp_path), s.alias.flag, meant],
                        env={"COLUMNS": "400"})
    assert bad.exit_code == 2 and s.alias.flag in bad.output, bad.output


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--batch-size", "0", "must be at least 1, got 0"),
    ("--queue-depth", "0", "must be at least 1, got 0"),
    ("--workers", "0", "must be 1.."),
    ("--table-prefix", "9x", "use letters, digits and _"),
    ("--schema", "no-dash", "use letters, digits and _"),
    ("--sample-interval", "0.01", "greater than or equal to 0.05"),
    ("--retry-window", "-1", "greater than or equal to 0"),
])
def test_a_value_a_setting_refuses_is_a_usage_error_naming_its_flag(
        tmp_path: Path, flag: str, value: str, words: str) -> None:
    result = runner.invoke(app, ["run", "-i", str(tmp_path), flag, value],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert flag in result.output and words in _flat(result.output)


# ---- the options other commands share --------------------------------------------------------

@pytest.mark.parametrize("command", [("sweep",), ("baseline",), ("calibrate",),
                                     ("diagnose", "pooling")], ids=" ".join)
def test_commands_that_migrate_take_the_table_settings_as_bench_run_does(
        command: tuple[str, ...]) -> None:
    run, other = _params("run"), _params(*command)
    names = [*TABLE_SETTINGS, "retry_window"] if command != ("diagnose", "pooling") \
        else list(TABLE_SETTINGS)
    for name in names:
        flag = SETTING_BY_NAME[name].flag
        mine, theirs = other[flag], run[flag]
        assert (mine.help, mine.default, mine.opts) == (theirs.help, theirs.default, theirs.opts)
    # --batch-size: the same option, described in the command's own words
    if command != ("sweep",):
        assert other["--batch-size"].default == SETTING_BY_NAME["batch_size"].default
        assert other["-b"] is other["--batch-size"]


@pytest.mark.parametrize(("command", "extra"), [
    (["calibrate"], []), (["diagnose", "pooling"], []), (["baseline"], [])])
def test_a_shared_setting_keeps_its_checks(command: list[str], extra: list[str],
                                           tmp_path: Path) -> None:
    result = runner.invoke(app, [*command, "--batch-size", "0", "--table-prefix", "ok_",
                                 "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2, result.output
    assert "--batch-size" in result.output and "at least 1" in _flat(result.output)


def test_baseline_takes_one_value_of_each_dimension_as_bench_run_does() -> None:
    params = _params("baseline")
    for s in SWEPT:
        assert s.flag in params and params[s.flag].help == _shown(s.help)
    dims = one_configuration({"batch_size": 200, "workers": None, "connection": None,
                              "pooling": "ON", "insert_method": "auto"})
    assert dims == {"batch_size": [200], "connection": ["pooled"], "insert_method": ["auto"]}
    assert one_configuration({"connection": "persistent"}) == {"connection": ["persistent"]}
    for given in ({"pooling": "on,off"}, {"connection": "pooled", "pooling": "off"},
                  {"pipeline": "warp"}):
        with pytest.raises(typer.BadParameter):
            one_configuration(given)


# ---- sweep dimensions ---------------------------------------------------------------------------

def _two_values(s: Setting) -> list[Any]:
    return list((s.sweep_choices or ())[:2]) or ([1, 2] if s.name == "workers" else [50, 100])


def test_the_sweep_dimensions_are_the_declared_sweepable_settings() -> None:
    assert [d.name for d in DIMENSIONS] == [s.name for s in SWEPT]
    for d, s in zip(DIMENSIONS, SWEPT, strict=True):
        assert s.sweep is not None
        assert (d.option, d.field, d.choices, d.series) == \
            (s.sweep.option, s.name, s.sweep_choices, s.sweep.series)
    assert tuple(s.name for s in SWEPT) == report.DIMENSIONS


@pytest.mark.parametrize("s", SWEPT, ids=lambda s: s.name)
def test_bench_sweep_parses_each_dimension_and_refuses_a_bad_value(s: Setting,
                                                                  tmp_path: Path) -> None:
    assert s.sweep is not None
    values = _two_values(s)
    text = ",".join(map(str, values))
    # --budget with --repeat is refused right after the dimensions are parsed: no run starts
    ok = runner.invoke(app, ["sweep", s.sweep.option, text, "--budget", "1m", "--repeat", "2",
                             "--out", str(tmp_path / "o")])
    assert ok.exit_code == 2 and "exclude each other" in _flat(ok.output), ok.output
    assert parse_dimensions({s.name: text}) == {s.name: values}
    bad = runner.invoke(app, ["sweep", s.sweep.option, "bogus", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and s.sweep.option in bad.output, bad.output
    if s.alias is not None:  # the alias flag sweeps the same dimension, by its spellings
        spelled = [spelling for spelling, _ in s.spellings]
        assert parse_dimensions({s.alias.name: ",".join(spelled)}) == \
            {s.name: [dict(s.spellings)[x] for x in spelled]}
        ok = runner.invoke(app, ["sweep", s.alias.flag, ",".join(spelled), "--budget", "1m",
                                 "--repeat", "2", "--out", str(tmp_path / "o")])
        assert ok.exit_code == 2 and "exclude each other" in _flat(ok.output), ok.output


@pytest.mark.parametrize("s", SWEPT, ids=lambda s: s.name)
def test_a_configuration_sets_its_setting_on_the_run_request(s: Setting,
                                                            tmp_path: Path) -> None:
    value = _two_values(s)[1]
    context = RunContext(inputs=["d"], target=None, mapping=None, work_dir=tmp_path,
                         settings=RunSettings(table_prefix="x_", retry_window=3.0))
    request = build_request({s.name: value}, context)
    assert isinstance(request, RunRequest)
    assert getattr(request, s.name) == value
    assert (request.table_prefix, request.retry_window) == ("x_", 3.0)  # the context's


def test_a_sweep_without_dimensions_sweeps_the_declared_default() -> None:
    defaults = {s.name: s.sweep.default for s in SWEPT if s.sweep and s.sweep.default}
    assert defaults == sweep_module.DEFAULT_DIMENSIONS and defaults


# ---- report labels ----------------------------------------------------------------------------

@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_a_report_label_that_names_it_back(s: Setting) -> None:
    assert label(s.name) == s.label and s.label
    value = _two_values(s)[0] if s.sweep else s.default
    assert format_config({s.name: value}).startswith(f"{s.label}=")
    for spelling in (s.label, s.name, *s.aliases, s.label.upper().replace("_", "-")):
        assert dimension_name(spelling) == s.name


def test_baseline_names_accept_labels_and_aliases() -> None:
    assert parse_baseline("batch=1000, Worker=2") == {"batch_size": "1000", "workers": "2"}
    assert label("label") == "label"  # a key that is no setting (an A/A label) stays


def test_every_swept_setting_has_a_report_section() -> None:
    dedicated = {"batch_size", "workers"}  # throughput and scaling sections of their own
    for s in SWEPT:
        assert s.name in dedicated or (s.title and s.anchor), s.name


# ---- bench run --json carries every setting -------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("settings-data")
    datasets.generate(out, 300, files=1, seed=3)
    return out


#: A value other than the default for every setting (a new setting needs one here).
CHANGED: dict[str, Any] = {
    "batch_size": 40, "workers": 2, "connection": "persistent", "pipeline": "thread",
    "queue_depth": 3,
    "insert_method": "executemany", "sample_interval": 0.2, "schema": "settings_s",
    "table_prefix": "st_", "replace_existing_tables": True, "retry_window": 5.0,
    "dtd_dir": "<dtd>", "cluster_workers": 1, "max_sessions": 1,
}


def _args(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in values.items():
        flag = SETTING_BY_NAME[name].flag
        args += [flag] if value is True else [flag, str(value)]
    return args


def _target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'm.db'}"
    server = request.getfixturevalue(backend)
    return "odbc:" + server.odbc("Protocol=7.4-1" if backend == "postgres" else "")


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc])])
def test_bench_run_json_carries_every_setting(backend: str, data: Path, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    assert set(CHANGED) == set(SETTING_BY_NAME)
    dtd = tmp_path / "dtd"
    dtd.mkdir()
    values = {**CHANGED, "dtd_dir": str(dtd), "table_prefix": f"st_{backend[:2]}_"}
    if backend != "postgres":
        del values["schema"]  # (a schema is PostgreSQL's and SQL Server's)
    for name in ("cluster_workers", "max_sessions"):  # (they size a --cluster run, which
        del values[name]  # needs no --workers: tests/test_cluster.py gives them)
    result = runner.invoke(app, ["run", "-i", str(data), "-t", _target(backend, request,
                                                                       tmp_path),
                                 *_args(values), "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == 300
    for s in SETTINGS:
        assert s.name in doc, s.name
    expected = {**values, "dtd_dir": os.path.realpath(dtd)}
    expected.setdefault("schema", doc["schema"])  # the dialect's own, where it has none
    assert {name: doc[name] for name in expected} == expected
    off = runner.invoke(app, ["run", "-i", str(data), "-t", _target(backend, request,
                                                                    tmp_path),
                              "--no-sample", "--pooling", "on",
                              "--table-prefix", f"so_{backend[:2]}_",
                              "--out", str(tmp_path / "r2"), "--json"])
    assert off.exit_code == 0, off.output
    doc = json.loads(off.stdout)
    assert doc["sample_interval"] is None and doc["connection"] == "pooled"
