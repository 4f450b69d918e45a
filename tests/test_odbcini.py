"""The private ODBCSYSINI that makes --pooling on|off true, and the CommLog trap."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator import odbcini
from migrator.errors import TargetError

SYSTEM = """\
[PostgreSQL Unicode]
Description=PostgreSQL ODBC driver (Unicode version)
Driver=psqlodbcw.so
Debug=0
CommLog=1
UsageCount=1

[MariaDB Unicode]
Driver=libmaodbc.so
CPTimeout=30
"""


@pytest.fixture
def system(tmp_path: Path) -> odbcini.OdbcIniPaths:
    (tmp_path / "etc").mkdir()
    inst = tmp_path / "etc" / "odbcinst.ini"
    inst.write_text(SYSTEM)
    dsn = tmp_path / "etc" / "odbc.ini"
    dsn.write_text("[prod]\nDriver=PostgreSQL Unicode\nServername=db\n")
    return odbcini.OdbcIniPaths(inst, dsn)


def test_pooling_on_adds_the_keys_to_every_driver(tmp_path: Path,
                                                   system: odbcini.OdbcIniPaths) -> None:
    folder = odbcini.build_odbcsysini(tmp_path / "on", True, cp_timeout=77, source=system)
    cfg = odbcini.pooling_config(folder / "odbcinst.ini")
    assert cfg.pooling
    assert cfg.cp_timeout == {"PostgreSQL Unicode": 77, "MariaDB Unicode": 77}
    assert cfg.active_for("PostgreSQL Unicode")
    text = (folder / "odbcinst.ini").read_text()
    assert "Driver=psqlodbcw.so" in text and "CommLog=1" in text  # user settings kept
    assert (folder / "odbc.ini").read_text().startswith("[prod]")  # DSNs keep working


def test_pooling_off_removes_them(tmp_path: Path, system: odbcini.OdbcIniPaths) -> None:
    folder = odbcini.build_odbcsysini(tmp_path / "off", False, source=system)
    cfg = odbcini.pooling_config(folder / "odbcinst.ini")
    assert not cfg.pooling and cfg.cp_timeout == {}
    assert not cfg.active_for("MariaDB Unicode")


def test_quiet_logs_turns_commlog_off(tmp_path: Path, system: odbcini.OdbcIniPaths) -> None:
    folder = odbcini.build_odbcsysini(tmp_path / "q", False, source=system, quiet_logs=True)
    assert odbcini.config_warnings(folder / "odbcinst.ini") == []


def test_commlog_trap_and_half_configured_pooling_are_reported(
        system: odbcini.OdbcIniPaths) -> None:
    warnings = odbcini.config_warnings(system.odbcinst_ini)
    assert any("[PostgreSQL Unicode]: CommLog=1" in w and "/tmp" in w for w in warnings)
    assert any("CPTimeout but [ODBC] Pooling is not Yes" in w for w in warnings)


def test_apply_environ_points_unixodbc_at_the_folder(tmp_path: Path) -> None:
    env = {"ODBCINSTINI": "other.ini", "PATH": "/bin"}
    odbcini.apply_environ(tmp_path, env)
    assert env == {"ODBCSYSINI": str(tmp_path), "PATH": "/bin"}


def test_a_late_pooling_change_is_refused(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(odbcini, "_active", False)
    monkeypatch.setattr(odbcini, "_folder", tmp_path)
    monkeypatch.setattr(odbcini, "_env_allocated", True)
    assert odbcini.activate(False) == tmp_path  # same choice: no-op
    with pytest.raises(TargetError, match="before the first connection"):
        odbcini.activate(True)


@pytest.mark.odbc
def test_system_paths_follow_odbcsysini(pyodbc_module: object) -> None:
    paths = odbcini.system_paths()
    assert paths.odbcinst_ini.name == "odbcinst.ini"
    assert paths.odbcinst_ini.is_file()
