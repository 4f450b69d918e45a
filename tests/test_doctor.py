"""`bench doctor`: each check provoked into ok / warning / error, the exit codes, --json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench import doctor
from bench.cli import app
from bench.doctor import (
    ERROR,
    OK,
    WARNING,
    Check,
    ClockSource,
    Collector,
    Connectivity,
    DiskCounters,
    DoctorContext,
    DriverLogging,
    FreeSpace,
    OdbcDrivers,
    PoolingInForce,
    SamplingPermissions,
    UnixOdbc,
    run_checks,
)
from migrator.odbcini import OdbcIniPaths

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def check(cls: type[Check], ctx: DoctorContext | None = None) -> list[tuple[str, str, str]]:
    """Run one check (with a connection when it needs one) → (status, message, fix)."""
    ctx = ctx or DoctorContext()
    checks: list[type[Check]] = [cls]
    if cls is SamplingPermissions and "connection" not in ctx.facts:
        checks = [Connectivity, cls]
    out = run_checks(ctx, checks)
    return [(f.status, f.message, f.fix) for f in out.findings if f.check == cls.name]


def statuses(findings: list[tuple[str, str, str]]) -> list[str]:
    return [s for s, _, _ in findings]


@pytest.fixture
def ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Point the checks at an odbcinst.ini with the given text."""
    def write(text: str) -> Path:
        path = tmp_path / "odbcinst.ini"
        path.write_text(text)
        paths = OdbcIniPaths(path, tmp_path / "odbc.ini", "2.3.11")
        monkeypatch.setattr("migrator.odbcini.system_paths", lambda: paths)
        return path
    return write


# ---- unixODBC and drivers -----------------------------------------------------------------------
def test_unixodbc_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "run_command", lambda argv: "unixODBC 2.3.11\n")
    monkeypatch.setattr(doctor, "import_pyodbc", lambda: object())
    [(status, msg, _)] = check(UnixOdbc)
    assert status == OK and "unixODBC 2.3.11" in msg


def test_unixodbc_missing_warns_for_sqlite_and_fails_for_odbc(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "run_command", lambda argv: None)
    [(status, msg, fix)] = check(UnixOdbc)
    assert status == WARNING and "SQLite default is unaffected" in msg
    assert "apt-get install unixodbc" in fix and "brew install unixodbc" in fix
    [(status, _, _)] = check(UnixOdbc, DoctorContext(target="odbc:Driver={X}"))
    assert status == ERROR


def test_pyodbc_not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> Any:
        raise ImportError("libodbc.so.2: cannot open shared object file")

    monkeypatch.setattr(doctor, "run_command", lambda argv: "unixODBC 2.3.11\n")
    monkeypatch.setattr(doctor, "import_pyodbc", fail)
    [(status, msg, fix)] = check(UnixOdbc)
    assert status == WARNING and "libodbc.so.2" in msg and "pip install pyodbc" in fix


class _FakePyodbc:
    def __init__(self, drivers: list[str]) -> None:
        self._drivers = drivers

    def drivers(self) -> list[str]:
        return self._drivers


def test_drivers_listed_with_the_ini_in_force(monkeypatch: pytest.MonkeyPatch,
                                              ini: Callable[[str], Path]) -> None:
    path = ini("[PostgreSQL Unicode]\nDriver=x.so\n")
    monkeypatch.setenv("ODBCSYSINI", str(path.parent))
    monkeypatch.setattr(doctor, "import_pyodbc", lambda: _FakePyodbc(["PostgreSQL Unicode"]))
    [(status, msg, _)] = check(OdbcDrivers)
    assert status == OK and str(path) in msg and "ODBCSYSINI=" in msg
    assert "PostgreSQL Unicode" in msg


def test_no_driver_and_an_unknown_driver(monkeypatch: pytest.MonkeyPatch,
                                         ini: Callable[[str], Path]) -> None:
    ini("")
    monkeypatch.setattr(doctor, "import_pyodbc", lambda: _FakePyodbc([]))
    assert statuses(check(OdbcDrivers)) == [WARNING]
    monkeypatch.setattr(doctor, "import_pyodbc", lambda: _FakePyodbc(["SQLite3"]))
    [(status, msg, _)] = check(OdbcDrivers, DoctorContext(
        target="odbc:Driver={ODBC Driver 18 for SQL Server};Server=x"))
    assert status == ERROR and "ODBC Driver 18 for SQL Server" in msg and "SQLite3" in msg


def test_real_driver_manager() -> None:
    """No monkeypatching: the machine's own unixODBC (installed by scripts/install-deps)."""
    findings = check(UnixOdbc) + check(OdbcDrivers)
    assert all(s in (OK, WARNING) for s in statuses(findings))


# ---- driver logging and pooling -----------------------------------------------------------------
def test_commlog_trap(ini: Callable[[str], Path]) -> None:
    path = ini("[ODBC]\nTrace=No\n[PostgreSQL Unicode]\nDriver=psqlodbcw.so\nCommLog=1\n"
               "Debug=0\n[SQLite3]\nDriver=libsqlite3odbc.so\n")
    [(status, msg, fix)] = check(DriverLogging)
    assert status == WARNING and "[PostgreSQL Unicode]: CommLog=1" in msg
    assert f"set CommLog=0 in {path}" in fix


def test_no_driver_logging(ini: Callable[[str], Path]) -> None:
    ini("[PostgreSQL Unicode]\nDriver=psqlodbcw.so\nCommLog=0\n")
    assert statuses(check(DriverLogging)) == [OK]


def test_trace_is_a_warning_too(ini: Callable[[str], Path]) -> None:
    ini("[ODBC]\nTrace=Yes\nTraceFile=/tmp/sql.log\n")
    [(status, msg, _)] = check(DriverLogging)
    assert status == WARNING and "Trace=Yes" in msg


@pytest.mark.parametrize(("text", "status", "words"), [
    ("[PostgreSQL Unicode]\nDriver=x\n", OK, "pooling OFF"),
    ("[ODBC]\nPooling=Yes\n[PostgreSQL Unicode]\nDriver=x\nCPTimeout=120\n", OK,
     "pooling ON for PostgreSQL Unicode (CPTimeout 120 s)"),
    ("[ODBC]\nPooling=Yes\n[PostgreSQL Unicode]\nDriver=x\n", WARNING, "pools nothing"),
    ("[PostgreSQL Unicode]\nDriver=x\nCPTimeout=60\n", WARNING, "pools nothing"),
])
def test_pooling_in_force(ini: Callable[[str], Path], text: str, status: str,
                          words: str) -> None:
    ini(text)
    [(got, msg, _)] = check(PoolingInForce)
    assert got == status and words in msg


# ---- the target ------------------------------------------------------------------------------
def test_sqlite_target_connects_and_needs_no_privilege(tmp_path: Path) -> None:
    ctx = DoctorContext(target=f"sqlite:{tmp_path / 'd.db'}", results_dir=tmp_path)
    found = {f.check: f for f in run_checks(ctx, [Connectivity, SamplingPermissions])
             .findings}
    assert found["connectivity"].status == OK and "SQLite" in found["connectivity"].message
    assert found["sampling-permissions"].status == OK
    assert "connection" not in ctx.facts  # closed by run_checks


@pytest.mark.postgres
def test_postgres_connectivity_version_and_pg_monitor(postgres: Any) -> None:
    ctx = DoctorContext(target="odbc:" + postgres.odbc())
    out = run_checks(ctx, [Connectivity, SamplingPermissions])
    [conn, perm] = out.findings
    assert conn.status == OK and "PostgreSQL" in conn.message and "psqlodbc" in conn.message
    assert postgres.password not in conn.message
    assert perm.status == OK


@pytest.mark.postgres
def test_postgres_user_without_pg_monitor_gets_the_grant(postgres: Any) -> None:
    import psycopg

    with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS mb_doctor")
        admin.execute("CREATE ROLE mb_doctor LOGIN PASSWORD 'doc-pw'")
    target = "odbc:" + postgres.odbc().replace("Uid=bench", "Uid=mb_doctor").split(";Pwd=")[0]
    target += ";Pwd=doc-pw"
    [conn, perm] = run_checks(DoctorContext(target=target),
                              [Connectivity, SamplingPermissions]).findings
    assert conn.status == OK
    assert perm.status == WARNING and "pg_monitor" in perm.message
    assert perm.fix == "GRANT pg_monitor TO <user>;"


def test_unreachable_target_is_an_error_and_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "no-such-dir" / "x" / "d.db"
    (tmp_path / "no-such-dir").write_text("a file where a folder should be")
    result = cli.invoke(app, ["doctor", "--target", f"sqlite:{bad}", "--out", str(tmp_path),
                              "--json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    conn = next(c for c in doc["checks"] if c["check"] == "connectivity")
    assert conn["status"] == ERROR and "cannot connect" in conn["message"] and conn["fix"]


class _Conn:
    def __init__(self, value: Any) -> None:
        self.value = value

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if isinstance(self.value, Exception):
            raise self.value
        assert "VIEW SERVER STATE" in sql
        return [(self.value,)]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("value", "status"), [(1, OK), (0, WARNING),
                                               (RuntimeError("no"), WARNING)])
def test_sql_server_view_server_state(value: Any, status: str) -> None:
    ctx = DoctorContext(target="odbc:x", facts={"connection": _Conn(value), "dialect": "mssql"})
    [(got, _msg, fix)] = check(SamplingPermissions, ctx)
    assert got == status
    if status == WARNING:
        assert "VIEW SERVER STATE" in fix


# ---- disks, space, clock ----------------------------------------------------------------------
def test_disk_counters_and_the_database_disk(tmp_path: Path) -> None:
    [(status, msg, _)] = check(DiskCounters, DoctorContext(target=f"sqlite:{tmp_path}/d.db"))
    assert status in (OK, WARNING)  # WARNING on a tmpfs /tmp
    assert "per-disk counters" in msg or "cannot tell" in msg


def test_no_disk_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "disk_counters", lambda: {})
    [(status, msg, _)] = check(DiskCounters)
    assert status == WARNING and "no per-disk I/O counters" in msg


def test_database_on_an_unknown_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "disk_counters", lambda: {"vda": object()})
    monkeypatch.setattr("diagnostics.host.device_for_path", lambda p: None)
    [(status, msg, _)] = check(DiskCounters, DoctorContext(target=f"sqlite:{tmp_path}/d.db"))
    assert status == WARNING and "cannot tell which disk" in msg


@pytest.mark.parametrize(("free", "status"), [(50 * 1024**2, ERROR), (500 * 1024**2, WARNING),
                                              (50 * 1024**3, OK)])
def test_free_space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, free: int,
                    status: str) -> None:
    import shutil

    usage = shutil._ntuple_diskusage(100 * 1024**3, 0, free)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: usage)
    [(got, msg, _)] = check(FreeSpace, DoctorContext(results_dir=tmp_path / "runs" / "new"))
    assert got == status and str(tmp_path / "runs" / "new") in msg


@pytest.mark.parametrize(("source", "status"), [("tsc", OK), ("kvm-clock", OK),
                                                ("hpet", WARNING), (None, OK)])
def test_clock_source(monkeypatch: pytest.MonkeyPatch, source: str | None, status: str) -> None:
    monkeypatch.setattr(doctor, "read_clocksource", lambda: source)
    [(got, msg, fix)] = check(ClockSource)
    assert got == status and f"clock source {source or 'unknown'}" in msg
    if status == WARNING:
        assert "tsc" in fix


def test_clock_not_monotonic_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.get_clock_info

    class Info:
        implementation, monotonic, resolution, adjustable = "fake()", False, 1e-9, True

    monkeypatch.setattr(doctor.time, "get_clock_info",
                        lambda name: Info() if name == "perf_counter" else real(name))
    assert statuses(check(ClockSource)) == [ERROR]


# ---- the collector and the command ----------------------------------------------------------
def test_a_crashing_check_is_reported_not_raised() -> None:
    class Broken(Check):
        name = "broken"

        def run(self, ctx: DoctorContext, out: Collector) -> None:
            raise KeyError("boom")

    out = run_checks(DoctorContext(), [Broken])
    assert out.exit_code == 3 and "the check itself failed: KeyError" in out.findings[0].message


def test_exit_codes_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "read_clocksource", lambda: "tsc")
    ok = cli.invoke(app, ["doctor", "--out", str(tmp_path), "--json"])
    doc = json.loads(ok.stdout)
    assert set(doc) == {"checks", "errors", "warnings", "exit_code"}
    assert {c["check"] for c in doc["checks"]} >= {"unixodbc", "odbc-drivers", "pooling",
                                                   "driver-logging", "disk-counters",
                                                   "free-space", "clock"}
    assert all(set(c) == {"check", "status", "message", "fix"} for c in doc["checks"])
    assert ok.exit_code == doc["exit_code"] == (3 if doc["errors"] else 0)
    monkeypatch.setattr(doctor, "read_clocksource", lambda: "hpet")
    human = cli.invoke(app, ["doctor", "--out", str(tmp_path)])
    assert "warning clock:" in human.output and "fix: " in human.output
    assert "checks:" in human.output
    monkeypatch.setattr(doctor, "disk_counters", lambda: 1 / 0)
    bad = cli.invoke(app, ["doctor", "--out", str(tmp_path)])
    assert bad.exit_code == 3 and "error   disk-counters" in bad.output


def test_doctor_as_a_real_process(tmp_path: Path) -> None:
    code = ("import bench.cli, sys; sys.argv = ['bench'] + sys.argv[1:]; "
            "bench.cli.main()")
    proc = subprocess.run([sys.executable, "-c", code, "doctor", "--json", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == doc["exit_code"] in (0, 3)


# ---- server version, sampled views, locality --------------------------------------------------
@pytest.mark.postgres
def test_postgres_version_views_and_local_data_directory(postgres: Any) -> None:
    import psycopg

    from migrator.targets.postgresql import pg_version

    with psycopg.connect(postgres.psycopg_dsn()) as conn:
        num = int(conn.execute("SHOW server_version_num").fetchone()[0])
        data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])
    ctx = DoctorContext(target="odbc:" + postgres.odbc())
    found = {f.check: f for f in run_checks(ctx, [Connectivity, SamplingPermissions,
                                                  DiskCounters]).findings}
    assert f"connected to PostgreSQL {pg_version(num)} via" in found["connectivity"].message
    perm = found["sampling-permissions"]
    assert perm.status == OK and "pg_stat_activity" in perm.message
    assert ("pg_stat_io" in perm.message) == (num >= 160000)
    disk = found["disk-counters"]
    if disk.status == OK:  # (a tmpfs /tmp gives "cannot tell which disk" instead)
        assert f"the server runs on this machine; {data_dir} is on" in disk.message
        assert "remote" not in disk.message


@pytest.mark.postgres
def test_local_server_that_hides_its_data_directory(postgres: Any) -> None:
    import psycopg

    with psycopg.connect(postgres.psycopg_dsn(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS mb_doctor_dir")
        admin.execute("CREATE ROLE mb_doctor_dir LOGIN PASSWORD 'dir-pw'")
        num = int(admin.execute("SHOW server_version_num").fetchone()[0])
    target = "odbc:" + postgres.odbc().replace("Uid=bench", "Uid=mb_doctor_dir").split(
        ";Pwd=")[0] + ";Pwd=dir-pw"
    found = {f.check: f for f in run_checks(DoctorContext(target=target),
                                            [Connectivity, SamplingPermissions,
                                             DiskCounters]).findings}
    disk = found["disk-counters"]
    assert disk.status == WARNING
    assert "the server is local (127.0.0.1) but it does not tell this user its data " \
           "directory" in disk.message
    assert disk.fix.startswith("GRANT pg_read_all_settings")
    perm = found["sampling-permissions"]  # the views named are the ones this server has
    assert perm.status == WARNING and "pg_stat_activity" in perm.message
    assert ("pg_stat_io" in perm.message) == (num >= 160000)


class _Remote:
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [("/var/lib/postgresql/16/main",)]  # a path of the server's machine

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("server", "expected"), [
    ("db.example.com", "the server is remote (db.example.com)"),
    ("127.0.0.1", "the server is local (127.0.0.1) but its data directory "
                  "/var/lib/postgresql/16/main is not readable by this user"),
])
def test_remote_and_unreadable_local_servers(server: str, expected: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "disk_counters", lambda: {"vda": object()})
    monkeypatch.setattr("pathlib.Path.is_dir", lambda self: False)  # not on this machine
    ctx = DoctorContext(target=f"odbc:Driver={{PostgreSQL Unicode}};Server={server};Uid=u",
                        facts={"connection": _Remote(), "dialect": "postgresql"})
    [(status, msg, _)] = check(DiskCounters, ctx)
    assert expected in msg
    assert status == (OK if server == "db.example.com" else WARNING)


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("", True),
    ("/var/run/postgresql", True), (".\\SQLEXPRESS", True), ("tcp:127.0.0.1,1433", True),
    ("db.example.com", False), ("10.254.254.254", False)])
def test_local_hosts(host: str, local: bool) -> None:
    assert doctor.is_local_host(host) is local


def test_server_host_from_the_connection_string() -> None:
    assert doctor.server_host("odbc:Driver={X};Server=db1;Port=5") == "db1"
    assert doctor.server_host("odbc:Driver={X};Database=mig") == ""  # the driver's default
    assert doctor.server_host("odbc:DSN=prod") is None  # odbc.ini decides
    assert doctor.server_host("sqlite:x.db") is None


@pytest.mark.parametrize(("num", "io"), [(150018, False), (160004, True), (None, False)])
def test_sampled_views_follow_the_version(num: int | None, io: bool) -> None:
    views = doctor.pg_sampled_views(num)
    assert ("pg_stat_io" in views) is io
    assert ("pg_stat_checkpointer" in views) is (num is not None and num >= 170000)


def test_connection_string_keywords_the_driver_ignores() -> None:
    ctx = DoctorContext(target="odbc:Driver={PostgreSQL Unicode};Sever=db1;Port=5432;"
                               "Pwd=s3cret;Max Pool Size=10")
    findings = check(doctor.ConnectionString, ctx)
    assert statuses(findings) == [WARNING, WARNING]
    assert findings[0][1] == ("Sever=db1: not a documented psqlODBC (PostgreSQL) keyword: "
                              "probably ignored (did you mean Server?)")
    assert findings[1][1].startswith("Max Pool Size=10: ADO.NET/SqlClient only")
    assert all("s3cret" not in msg for _, msg, _ in findings)
    ok = check(doctor.ConnectionString,
               DoctorContext(target="odbc:Driver={PostgreSQL Unicode};Server=db1;Pwd=x"))
    assert statuses(ok) == [OK] and "3 keyword(s)" in ok[0][1]
    assert check(doctor.ConnectionString, DoctorContext(target="sqlite:x.db")) == []
