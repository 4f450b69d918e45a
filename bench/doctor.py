"""`bench doctor`: is this machine set up to measure migrations truthfully?

In the style of ``pyperf system`` (pyperf/_system.py): every check is a small object that
looks at one thing and reports into one :class:`Collector` — ``ok``, ``warning`` or ``error``,
each with a sentence and the fix — and the collector decides the exit code (0, or 3 when
any check found an error). Checks never change the system; they only read (the
results-folder check writes one small file, or makes one folder, and deletes it).

Checks, in order: unixODBC present and its version; the ODBC drivers installed and which
``odbcinst.ini`` is in force; psqlODBC's ``CommLog=1`` trap (and other driver logging);
pooling configuration as in force; the connection string's keywords the driver would
ignore, with the keyword a misspelled one probably means (``--target``); connectivity and
DBMS version (``--target``);
permissions for server-side sampling and the views it reads on that server version
(``--target``); psutil per-disk counters and which disk holds the database — for a server
on this machine (loopback address, Unix socket, one of its own addresses) its data
directory, or why it cannot be read; free space for the results folder and whether it can
really be written; the clock source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

OK, WARNING, ERROR = "ok", "warning", "error"
EXIT_ERRORS = 3
CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
# Clock sources that cost a syscall or an I/O port read per time.perf_counter() call.
SLOW_CLOCKSOURCES = ("hpet", "acpi_pm", "jiffies", "pit")
FREE_ERROR_BYTES = 100 * 1024**2
FREE_WARNING_BYTES = 1024**3


@dataclass(frozen=True)
class Finding:
    """One result of one check: ``status`` is ok, warning or error; ``fix`` says what to do."""

    check: str
    status: str
    message: str
    fix: str = ""


@dataclass
class Collector:
    """Where checks report; decides the exit code (pyperf's ``System`` does the same)."""

    findings: list[Finding] = field(default_factory=list)

    def ok(self, check: str, message: str) -> None:
        self.findings.append(Finding(check, OK, message))

    def warning(self, check: str, message: str, fix: str) -> None:
        self.findings.append(Finding(check, WARNING, message, fix))

    def error(self, check: str, message: str, fix: str) -> None:
        self.findings.append(Finding(check, ERROR, message, fix))

    def count(self, status: str) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def exit_code(self) -> int:
        return EXIT_ERRORS if self.count(ERROR) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [asdict(f) for f in self.findings], "errors": self.count(ERROR),
                "warnings": self.count(WARNING), "exit_code": self.exit_code}


@dataclass
class DoctorContext:
    """What the checks look at: the ``--target`` (if any) and the results folder."""

    target: str | None = None
    results_dir: Path = Path("runs")
    # Filled by the checks as they learn things (one connection for all target checks).
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_odbc(self) -> bool:
        return bool(self.target and self.target.startswith("odbc:"))

    @property
    def sqlite_path(self) -> Path | None:
        if self.target is None:
            return self.results_dir / "mig.db"  # `bench run`'s default target
        if self.target.startswith("sqlite:"):
            path = self.target[len("sqlite:"):].partition("?")[0]
            return None if path == ":memory:" else Path(path)
        return None


# ---- probes: the only places that touch the system (tests replace them) ---------------------
def run_command(argv: Sequence[str]) -> str | None:
    """stdout of a command, or None when it is missing or fails."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def import_pyodbc() -> Any:
    """pyodbc, or raise :class:`migrator.errors.TargetError` saying what to install."""
    from migrator.targets.odbc import import_pyodbc as _import

    return _import()


def read_clocksource() -> str | None:
    try:
        return CLOCKSOURCE.read_text().strip() or None
    except OSError:
        return None


def disk_counters() -> dict[str, Any]:
    import psutil

    try:
        return dict(psutil.disk_io_counters(perdisk=True) or {})
    except (OSError, RuntimeError):
        return {}


# ---- the checks ----------------------------------------------------------------------------
class Check:
    """One thing to look at. ``available`` says whether it applies to this context."""

    name: ClassVar[str] = ""

    def available(self, ctx: DoctorContext) -> bool:
        return True

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        raise NotImplementedError


def _odbc_severity(ctx: DoctorContext) -> str:
    """Missing ODBC pieces are an error for an ``odbc:`` target, a warning otherwise
    (the SQLite default needs none of them)."""
    return ERROR if ctx.wants_odbc else WARNING


def _report(out: Collector, status: str, check: str, message: str, fix: str) -> None:
    (out.error if status == ERROR else out.warning)(check, message, fix)


class UnixOdbc(Check):
    name = "unixodbc"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        text = run_command(["odbcinst", "--version"])
        if text is None:
            _report(out, _odbc_severity(ctx), self.name,
                    "unixODBC (odbcinst) is not installed: odbc: targets cannot work; the "
                    "SQLite default is unaffected",
                    "apt-get install unixodbc (Debian/Ubuntu) or brew install unixodbc (macOS)")
            return
        version = text.strip().split()[-1] if text.strip() else "?"
        ctx.facts["unixodbc_version"] = version
        try:
            import_pyodbc()
        except Exception as exc:
            _report(out, _odbc_severity(ctx), self.name,
                    f"unixODBC {version} is installed but pyodbc cannot be imported: {exc}",
                    "pip install pyodbc (and apt-get install unixodbc for libodbc.so.2)")
            return
        out.ok(self.name, f"unixODBC {version}, pyodbc importable")


class OdbcDrivers(Check):
    name = "odbc-drivers"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from migrator.odbcini import system_paths

        paths = system_paths()
        sysini = os.environ.get("ODBCSYSINI")
        where = f"{paths.odbcinst_ini}" + (f" (ODBCSYSINI={sysini})" if sysini else "")
        ctx.facts["odbcinst_ini"] = str(paths.odbcinst_ini)
        try:
            drivers = list(import_pyodbc().drivers())
        except Exception:
            drivers = []
        if not drivers:
            _report(out, _odbc_severity(ctx), self.name,
                    f"no ODBC driver is registered in {where}",
                    "install a driver package (odbc-postgresql, odbc-mariadb, msodbcsql18, "
                    "libsqliteodbc) and check that it registers in odbcinst.ini")
            return
        wanted = _driver_of(ctx.target)
        if wanted and wanted not in drivers:
            out.error(self.name, f"--target names Driver={{{wanted}}}, which {where} does not "
                      f"register; installed: {', '.join(drivers)}",
                      "use one of the installed driver names, or install that driver")
            return
        out.ok(self.name, f"{len(drivers)} driver(s) in {where}: {', '.join(drivers)}")


def _driver_of(target: str | None) -> str | None:
    if not target or not target.startswith("odbc:"):
        return None
    from migrator.connstr import ConnectionStringError, parse_connection_string

    try:
        params = parse_connection_string(target[len("odbc:"):])
    except ConnectionStringError:
        return None
    driver = params.get_any("Driver")
    return driver.strip("{}") if driver else None


class DriverLogging(Check):
    """psqlODBC's ``CommLog=1`` (Debian's stock entry), ``Debug=1``, ``[ODBC] Trace=Yes``."""

    name = "driver-logging"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from migrator.odbcini import config_warnings, system_paths

        path = system_paths().odbcinst_ini
        if not path.is_file():
            out.ok(self.name, f"no {path}: nothing to log")
            return
        traps = [w for w in config_warnings(path) if "Pooling" not in w and "CPTimeout" not in w]
        for w in traps:
            fix = ("edit the driver entry (or let bench use its private ODBCSYSINI, which "
                   "turns logging off)")
            if "CommLog" in w:
                fix = (f"set CommLog=0 in {path} for that driver; a log file per process in "
                       f"/tmp measures the disk, not the migration")
            out.warning(self.name, w, fix)
        if not traps:
            out.ok(self.name, f"{path}: no driver logging (CommLog/Debug/Trace) switched on")


class PoolingInForce(Check):
    name = "pooling"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from migrator.odbcini import config_warnings, pooling_config, system_paths

        path = system_paths().odbcinst_ini
        if not path.is_file():
            out.ok(self.name, f"no {path}: driver-manager pooling is off")
            return
        cfg = pooling_config(path)
        problems = [w for w in config_warnings(path) if "Pooling" in w or "CPTimeout" in w]
        for w in problems:
            out.warning(self.name, w, "set both [ODBC] Pooling=Yes and a driver CPTimeout, or "
                        "neither; `bench run --pooling on|off` sets them in a private "
                        "ODBCSYSINI without touching /etc")
        if problems:
            return
        pooled = sorted(d for d in cfg.cp_timeout if cfg.active_for(d))
        if pooled:
            out.ok(self.name, f"{path}: pooling ON for {', '.join(pooled)} "
                   f"(CPTimeout {', '.join(str(cfg.cp_timeout[d]) for d in pooled)} s)")
        else:
            out.ok(self.name, f"{path}: pooling OFF ([ODBC] Pooling is not Yes); "
                   f"pyodbc.pooling alone changes nothing with unixODBC")


class ConnectionString(Check):
    """Keywords of an ``odbc:`` target the driver will not read (misspelled, ADO.NET-only):
    drivers ignore them silently, so a typo only ever shows as its consequence."""

    name = "connection-string"

    def available(self, ctx: DoctorContext) -> bool:
        return ctx.wants_odbc

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from diagnostics.connstr_audit import FAMILY_NAMES, audit_connection_string
        from migrator.connstr import ConnectionStringError, parse_connection_string
        from migrator.targets.odbc import string_driver

        assert ctx.target is not None
        text = ctx.target[len("odbc:"):]
        try:
            dsn_driver = string_driver(parse_connection_string(text))
        except ConnectionStringError as exc:
            out.error(self.name, f"the connection string does not parse: {exc}",
                      "write key=value pairs separated by ';', braces around values with ';'")
            return
        audit = audit_connection_string(text, dsn_driver=dsn_driver or None)
        ignored = [f for f in audit.findings if f.ignored]
        for f in ignored:
            out.warning(self.name, f"{f.keyword}={f.value}: {f.note}",
                        "fix or remove the keyword (the driver does not read it)")
        if not ignored:
            driver = FAMILY_NAMES[audit.family]
            out.ok(self.name, f"{len(audit.findings)} keyword(s), each read by {driver} or "
                   "the driver manager")


class Connectivity(Check):
    name = "connectivity"

    def available(self, ctx: DoctorContext) -> bool:
        return ctx.target is not None

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from migrator.errors import MigratorError
        from migrator.targets import open_target

        assert ctx.target is not None
        t0 = time.perf_counter()
        try:
            target = open_target(ctx.target)
            conn = target.connect()
        except MigratorError as exc:
            out.error(self.name, f"cannot connect: {exc}",
                      "check the server is running and the connection string (host, port, "
                      "database, credentials); `bench doctor --target …` repeats this check")
            return
        ms = 1000 * (time.perf_counter() - t0)
        ctx.facts["connection"] = conn
        info = target.info()
        ctx.facts["dialect"] = info.dialect
        ctx.facts["target_display"] = info.display
        version = " ".join(filter(None, [info.dbms_name, info.dbms_version]))
        driver = " ".join(filter(None, [info.driver_name, info.driver_version]))
        out.ok(self.name, f"connected to {version or info.dialect} via {driver or '?'} "
               f"in {ms:.1f} ms ({info.display})")


_PERMISSION_SQL = {
    "postgresql": (
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'member'), "
        "current_setting('server_version_num')::int "
        "FROM pg_roles WHERE rolname = current_user",
        "PostgreSQL sampling reads {views} and other sessions' wait events; without "
        "pg_monitor (or pg_read_all_stats) other sessions show as '<insufficient privilege>'",
        "GRANT pg_monitor TO <user>;"),
    "mssql": (
        "SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE')",
        "SQL Server sampling reads sys.dm_io_virtual_file_stats, sys.dm_os_wait_stats, "
        "sys.dm_os_performance_counters, sys.dm_exec_requests and sys.dm_os_waiting_tasks, "
        "which need VIEW SERVER STATE",
        "GRANT VIEW SERVER STATE TO <login>; (SQL Server 2022: VIEW SERVER PERFORMANCE "
        "STATE)"),
}


def pg_sampled_views(version_num: int | None) -> str:
    """The statistics views the PostgreSQL sampler reads on that server version (only
    those it has: pg_stat_wal from 14, pg_stat_checkpointer from 17, pg_stat_io from 16)."""
    views = ["pg_stat_activity", "pg_stat_database", "pg_locks"]
    if version_num is None or version_num >= 140000:
        views.append("pg_stat_wal")
    if version_num is not None and version_num >= 170000:
        views.append("pg_stat_checkpointer")
    views.append("pg_stat_bgwriter")
    if version_num is not None and version_num >= 160000:
        views.append("pg_stat_io")
    return ", ".join(views)


class SamplingPermissions(Check):
    name = "sampling-permissions"

    def available(self, ctx: DoctorContext) -> bool:
        return ctx.target is not None

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        conn = ctx.facts.get("connection")
        dialect = ctx.facts.get("dialect")
        if conn is None:
            out.warning(self.name, "not checked: no connection to the target",
                        "fix the connectivity error first")
            return
        if dialect not in _PERMISSION_SQL:
            what = {"sqlite": "SQLite has no server-side counters; host sampling only",
                    "mysql": "MariaDB/MySQL SHOW GLOBAL STATUS and the processlist need no "
                             "extra privilege (PROCESS shows other users' sessions)"}
            out.ok(self.name, what.get(str(dialect), f"{dialect}: no privilege needed"))
            return
        sql, why, grant = _PERMISSION_SQL[str(dialect)]
        try:
            rows = conn.query(sql)
        except Exception as exc:
            out.warning(self.name, f"could not check the sampling privileges: {exc}", grant)
            return
        views = ""
        if dialect == "postgresql" and rows and len(rows[0]) > 1:
            views = pg_sampled_views(int(rows[0][1]))
            why = why.format(views=views)
        if rows and rows[0][0] and int(rows[0][0]) == 1:
            needed = "pg_monitor/pg_read_all_stats" if dialect == "postgresql" \
                else "VIEW SERVER STATE"
            reads = f": reads {views}" if views else ""
            out.ok(self.name, f"server-side sampling allowed ({needed}){reads}")
        else:
            out.warning(self.name, f"{why}: server-side figures will be partial", grant)


_DATA_DIRECTORY_SQL = {"postgresql": "SHOW data_directory", "mysql": "SELECT @@datadir"}


def server_host(target: str | None) -> str | None:
    """Where an ``odbc:`` target's server is, as the connection string says: its
    ``Server``/``Host`` value, "" when it names none (the driver's default, a Unix socket
    for psqlODBC and MariaDB), None for other targets or a DSN (odbc.ini decides)."""
    if not target or not target.startswith("odbc:"):
        return None
    from migrator.connstr import ConnectionStringError, parse_connection_string

    try:
        params = parse_connection_string(target[len("odbc:"):])
    except ConnectionStringError:
        return None
    host = params.get_any("Server", "Servername", "Host", "Address", "Addr")
    if host is None:
        return None if params.get_any("DSN") else ""
    return host.strip()


def is_local_host(host: str) -> bool:
    """Is ``host`` this machine: a loopback address or name, a Unix-socket folder, the
    empty default, or one of this machine's own names or addresses?"""
    import ipaddress
    import socket

    name = host.strip().strip("[]").lower()
    if name.startswith("tcp:"):
        name = name[4:]
    name = name.split(",")[0].split("\\")[0]  # SQL Server: host,port and host\instance
    if name in ("", ".", "(local)", "localhost", "localhost.localdomain") or name.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback or name in _own_addresses()
    except ValueError:
        pass
    return name in (socket.gethostname().lower(), socket.getfqdn().lower())


def _own_addresses() -> set[str]:
    import psutil

    try:
        return {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values()
                for a in addrs}
    except (OSError, RuntimeError):
        return set()


class DiskCounters(Check):
    name = "disk-counters"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        counters = disk_counters()
        if not counters:
            out.warning(self.name, "psutil reports no per-disk I/O counters (container without "
                        "/proc/diskstats?): disk rates, IOPS and busy % will be missing",
                        "run on the host or mount /proc/diskstats; the migration still runs")
            return
        path, server_dir = self._database_path(ctx)
        if path is None:
            self._no_path(ctx, out, len(counters), server_dir)
            return
        from diagnostics.host import device_for_path

        dev = device_for_path(path)
        if dev is None:
            out.warning(self.name, f"cannot tell which disk holds {path} (tmpfs, overlay or "
                        f"network file system): its I/O cannot be attributed",
                        "put the database on a block device to sample its disk")
            return
        where = "" if ctx.sqlite_path is not None else "the server runs on this machine; "
        sampled = dev.name in counters or dev.disk in counters
        msg = (f"per-disk counters for {len(counters)} device(s); {where}{path} is on "
               f"{dev.name} (disk {dev.disk}, {dev.fstype or '?'} at {dev.mountpoint or '?'})")
        if sampled:
            out.ok(self.name, msg)
        else:
            out.warning(self.name, msg + ", which psutil does not list",
                        "check /proc/diskstats for that device")

    def _no_path(self, ctx: DoctorContext, out: Collector, devices: int,
                 server_dir: str | None) -> None:
        host = server_host(ctx.target)
        head = f"per-disk counters for {devices} device(s); "
        if host is not None and is_local_host(host):
            shown = host or "the default local socket"
            where = (f"its data directory {server_dir} is not readable by this user"
                     if server_dir else "it does not tell this user its data directory")
            fix = ("run bench as a user who can read the data directory (e.g. the server's "
                   "own account or root)")
            if not server_dir and ctx.facts.get("dialect") == "postgresql":
                fix = "GRANT pg_read_all_settings TO <user>; (SHOW data_directory needs it)"
            out.warning(self.name, f"{head}the server is local ({shown}) but {where}: the "
                        "database disk cannot be told apart from the others", fix)
        elif host:
            out.ok(self.name, f"{head}the server is remote ({host}): host disk figures are "
                   "the client's, server I/O comes from the server's own statistics")
        else:
            out.ok(self.name, f"{head}the server's location is not in the connection string "
                   "(a DSN?) and its files are not readable here: host disk figures are the "
                   "client's")

    @staticmethod
    def _database_path(ctx: DoctorContext) -> tuple[Path | None, str | None]:
        """The database's path when readable here, and the data directory the server
        reports (readable or not)."""
        if ctx.sqlite_path is not None:
            return ctx.sqlite_path, None
        conn = ctx.facts.get("connection")
        sql = _DATA_DIRECTORY_SQL.get(str(ctx.facts.get("dialect")))
        if sql is None or conn is None:
            return None, None
        try:
            reported = str(conn.query(sql)[0][0])
        except Exception:
            return None, None
        path = Path(reported)
        try:
            readable = path.is_dir() and os.access(path, os.R_OK | os.X_OK)
        except OSError:
            readable = False
        return (path if readable else None), reported


class FreeSpace(Check):
    name = "free-space"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        probe = ctx.results_dir.resolve()
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError as exc:
            out.error(self.name, f"cannot read free space of {probe}: {exc}",
                      "choose a results folder that exists and is readable (--out)")
            return
        free = usage.free
        msg = f"{free / 1024**3:.1f} GiB free for results in {ctx.results_dir} (on {probe})"
        if free < FREE_ERROR_BYTES:
            out.error(self.name, msg + ": a run's result files and default SQLite "
                      "database will not fit", "free space or point --out elsewhere")
        elif free < FREE_WARNING_BYTES:
            out.warning(self.name, msg + ": less than 1 GiB; large runs (and the default "
                        "SQLite database in the run folder) may fill it",
                        "free space or point --out elsewhere")
        else:
            out.ok(self.name, msg)


class ResultsWritable(Check):
    """A real write, not the permission bits: root ignores those, while a read-only mount
    or a path under a regular file refuses everyone."""

    name = "results-writable"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        from bench.preflight import writable_problem

        problem = writable_problem(ctx.results_dir)
        if problem is None:
            out.ok(self.name, f"{ctx.results_dir}: a result file can be written there")
        else:
            out.error(self.name, f"{ctx.results_dir}: result files cannot be written there: "
                      f"{problem}", "point --out at a folder you can write to")


class ClockSource(Check):
    name = "clock"

    def run(self, ctx: DoctorContext, out: Collector) -> None:
        info = time.get_clock_info("perf_counter")
        source = read_clocksource()
        resolution_ns = info.resolution * 1e9
        desc = f"perf_counter: {info.implementation}, resolution {resolution_ns:.0f} ns, " \
               f"monotonic {info.monotonic}; clock source {source or 'unknown'}"
        if not info.monotonic:
            out.error(self.name, desc + ": time.perf_counter is not monotonic, durations "
                      "can be negative", "use a platform with a monotonic clock")
        elif source in SLOW_CLOCKSOURCES:
            out.warning(self.name, desc + f": {source} costs microseconds per clock read, "
                        "inflating per-record timings",
                        "use tsc if the CPU has a stable one: echo tsc > "
                        f"{CLOCKSOURCE.parent / 'current_clocksource'} (or clocksource=tsc "
                        "on the kernel command line)")
        elif resolution_ns > 1000:
            out.warning(self.name, desc + ": coarser than 1 µs", "use a finer clock source")
        else:
            out.ok(self.name, desc)


CHECKS: tuple[type[Check], ...] = (UnixOdbc, OdbcDrivers, DriverLogging, PoolingInForce,
                                   ConnectionString, Connectivity, SamplingPermissions,
                                   DiskCounters, FreeSpace, ResultsWritable, ClockSource)


def run_checks(ctx: DoctorContext, checks: Sequence[type[Check]] = CHECKS,
               on_finding: Callable[[Finding], None] | None = None) -> Collector:
    """Run every applicable check; a check that crashes is itself reported as an error."""
    out = Collector()
    try:
        for cls in checks:
            check = cls()
            if not check.available(ctx):
                continue
            before = len(out.findings)
            try:
                check.run(ctx, out)
            except Exception as exc:  # a doctor must not die of what it diagnoses
                out.error(check.name, f"the check itself failed: {type(exc).__name__}: {exc}",
                          "report this as a bug of migration-bench (bench --debug doctor)")
            if on_finding is not None:
                for f in out.findings[before:]:
                    on_finding(f)
    finally:
        conn = ctx.facts.pop("connection", None)
        if conn is not None:
            conn.close()
    return out
