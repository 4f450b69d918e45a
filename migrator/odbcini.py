"""unixODBC configuration: make driver-manager pooling really on or really off.

With unixODBC (measured here: 2.3.11) pooling is decided by ``odbcinst.ini`` alone:
``[ODBC] Pooling=Yes`` plus a ``CPTimeout`` on the driver's entry. ``pyodbc.pooling=True``
without them pools nothing, and ``pyodbc.pooling=False`` does not stop an ini that pools.
So ``--pooling on|off`` is implemented by pointing the process at a private ``ODBCSYSINI``
folder holding a copy of the system's driver entries plus (on) or minus (off) those keys;
``/etc`` is never edited. unixODBC reads the setting when pyodbc allocates its environment
handle — at the first connect of a process — so :func:`activate` must run before that, in
every worker process (or the parent sets the variables and workers inherit them:
:func:`worker_environ`).

The system ``odbc.ini`` (DSNs) lives in the same folder as ``odbcinst.ini``, so it is copied
too: ``odbc:DSN=name`` keeps working. User DSNs (``~/.odbc.ini``) are unaffected.
"""

from __future__ import annotations

import atexit
import configparser
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from migrator.errors import TargetError

DEFAULT_CP_TIMEOUT = 120  # seconds an idle pooled connection is kept
_POOL_ODBC_KEYS = ("pooling",)
_POOL_DRIVER_KEYS = ("cptimeout", "cpreuse", "cptimetolive")


@dataclass(frozen=True)
class OdbcIniPaths:
    """Where unixODBC reads its files, as ``odbcinst -j`` reports them."""

    odbcinst_ini: Path
    odbc_ini: Path
    version: str = ""


def _new_parser() -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(strict=False, interpolation=None,
                                     comment_prefixes=("#", ";"), inline_comment_prefixes=None,
                                     delimiters=("=",))
    p.optionxform = str  # type: ignore[assignment,method-assign]  # keep key spelling
    return p


def system_paths() -> OdbcIniPaths:
    """The driver-manager's files (``odbcinst -j``); honours an ``ODBCSYSINI`` already set."""
    exe = shutil.which("odbcinst")
    if exe:
        try:
            out = subprocess.run([exe, "-j"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found: dict[str, str] = {}
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                found[key.strip(". ").upper()] = value.strip()
        if "DRIVERS" in found and "SYSTEM DATA SOURCES" in found:
            first = out.splitlines()[0] if out else ""
            version = first.split()[-1] if first.startswith("unixODBC") else ""
            drivers = found["DRIVERS"]
            if drivers.endswith("/"):  # printed so when ODBCINSTINI is set
                drivers += os.environ.get("ODBCINSTINI", "odbcinst.ini")
            return OdbcIniPaths(Path(drivers), Path(found["SYSTEM DATA SOURCES"]), version)
    base = Path(os.environ.get("ODBCSYSINI") or "/etc")
    return OdbcIniPaths(base / "odbcinst.ini", base / "odbc.ini")


def read_ini(path: Path) -> configparser.RawConfigParser:
    p = _new_parser()
    if path.is_file():
        try:
            p.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise TargetError(f"{path}: cannot parse ODBC ini file: {exc}") from None
    return p


def _get(section: Mapping[str, str], key: str) -> str | None:
    for k, v in section.items():
        if k.lower() == key:
            return v
    return None


def _is_yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "1", "true", "on")


@dataclass(frozen=True)
class PoolingConfig:
    """What an odbcinst.ini says about pooling; ``active_for(driver)`` is the verdict."""

    path: Path
    pooling: bool  # [ODBC] Pooling=Yes
    cp_timeout: dict[str, int] = field(default_factory=dict)  # driver → CPTimeout (>0 only)

    def active_for(self, driver: str) -> bool:
        return self.pooling and self.cp_timeout.get(driver, 0) > 0


def pooling_config(path: Path | None = None) -> PoolingConfig:
    """Read the pooling keys of ``odbcinst.ini`` (the system one by default)."""
    path = path or system_paths().odbcinst_ini
    ini = read_ini(path)
    odbc = ini["ODBC"] if ini.has_section("ODBC") else {}
    timeouts: dict[str, int] = {}
    for name in ini.sections():
        if name == "ODBC":
            continue
        raw = _get(ini[name], "cptimeout")
        try:
            t = int(raw) if raw is not None else 0
        except ValueError:
            t = 0
        if t > 0:
            timeouts[name] = t
    return PoolingConfig(path, _is_yes(_get(odbc, "pooling")), timeouts)


def build_odbcsysini(folder: str | Path, pooling: bool, *,
                     cp_timeout: int = DEFAULT_CP_TIMEOUT,
                     source: OdbcIniPaths | None = None,
                     quiet_logs: bool = False) -> Path:
    """Write ``odbcinst.ini`` (and a copy of ``odbc.ini``) into ``folder`` and return it.

    Every driver entry of the system file is copied; with ``pooling`` the ``[ODBC]``
    section gets ``Pooling=Yes`` and every driver ``CPTimeout=cp_timeout``, without it both
    are removed (``Pooling=No``). ``quiet_logs`` also sets ``CommLog=0``/``Debug=0`` (the
    test-suite uses it; product runs keep the user's driver settings and warn instead).
    """
    src = source or system_paths()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ini = read_ini(src.odbcinst_ini)
    out = _new_parser()
    out.add_section("ODBC")
    if ini.has_section("ODBC"):
        for k, v in ini["ODBC"].items():
            if k.lower() not in _POOL_ODBC_KEYS:
                out.set("ODBC", k, v)
    out.set("ODBC", "Pooling", "Yes" if pooling else "No")
    for name in ini.sections():
        if name == "ODBC":
            continue
        out.add_section(name)
        for k, v in ini[name].items():
            if k.lower() in _POOL_DRIVER_KEYS:
                continue
            if quiet_logs and k.lower() in ("commlog", "debug"):
                v = "0"
            out.set(name, k, v)
        if pooling:
            out.set(name, "CPTimeout", str(cp_timeout))
    tmp = folder / "odbcinst.ini.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("# written by migration-bench (migrator.odbcini): a private copy of\n"
                 f"# {src.odbcinst_ini} with pooling {'on' if pooling else 'off'}\n")
        out.write(fh, space_around_delimiters=False)
    tmp.replace(folder / "odbcinst.ini")
    if src.odbc_ini.is_file() and src.odbc_ini.resolve() != (folder / "odbc.ini").resolve():
        shutil.copyfile(src.odbc_ini, folder / "odbc.ini")
    elif not (folder / "odbc.ini").exists():
        (folder / "odbc.ini").write_text("", encoding="utf-8")
    return folder


def worker_environ(folder: str | Path) -> dict[str, str]:
    """The variables that point unixODBC at ``folder`` (merge into a worker's env, and
    drop any ``ODBCINSTINI`` there: the file is always ``odbcinst.ini``)."""
    return {"ODBCSYSINI": str(folder)}


def apply_environ(folder: str | Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Point ``environ`` (``os.environ`` by default) at ``folder``.

    unixODBC caches the ini location in static variables on first use, so in a process
    this works only before the first ODBC call (connect, ``pyodbc.drivers()``)."""
    env = os.environ if environ is None else environ
    env.update(worker_environ(folder))
    env.pop("ODBCINSTINI", None)


# ---- process state -------------------------------------------------------------------------
# unixODBC reads Pooling once, when the process's environment handle is allocated (pyodbc's
# first connect). These remember what this process chose so a late change is refused.
_active: bool | None = None
_folder: Path | None = None
_env_allocated = False


def mark_env_allocated() -> None:
    """Called by the ODBC target just before its first ``pyodbc.connect`` in the process."""
    global _env_allocated
    _env_allocated = True


def env_allocated() -> bool:
    """Has this process opened an ODBC connection (so unixODBC has read its ini)?"""
    return _env_allocated


def active_pooling() -> bool | None:
    """True/False once :func:`activate` ran in this process, None when never chosen."""
    return _active


def activate(pooling: bool, *, cp_timeout: int = DEFAULT_CP_TIMEOUT,
             folder: str | Path | None = None) -> Path:
    """Make this process's ODBC connections pool (or not), before the first connect.

    Builds the private ``ODBCSYSINI`` folder (a temporary one unless ``folder`` is given)
    and sets ``ODBCSYSINI``/``ODBCINSTINI`` in ``os.environ`` (inherited by workers started
    afterwards). Calling again with the same choice is a no-op; a different choice after
    the first connect raises :class:`TargetError`, because unixODBC would ignore it.
    """
    global _active, _folder
    if _active is not None and _folder is not None:
        if _active == pooling:
            return _folder
        if _env_allocated:
            raise TargetError(
                f"pooling is already {'on' if _active else 'off'} in this process and unixODBC "
                f"reads it only before the first connection; choose --pooling before "
                f"connecting (or use a new worker process)")
    if _env_allocated and _active is None:
        raise TargetError("an ODBC connection was opened before --pooling was applied; "
                          "unixODBC reads the pooling setting only once per process")
    if folder is not None:
        target = Path(folder)
    else:
        target = Path(tempfile.mkdtemp(prefix=f"mb-odbc-pool-{'on' if pooling else 'off'}-"))
        # Removed when this process exits; workers started from it end before it does.
        atexit.register(shutil.rmtree, target, True)
    build_odbcsysini(target, pooling, cp_timeout=cp_timeout)
    apply_environ(target)
    _active, _folder = pooling, target
    try:
        import pyodbc

        # Harmless with unixODBC (the ini decides) and required by Windows' driver manager.
        pyodbc.pooling = pooling
    except ImportError:
        pass
    return target


# ---- warnings (bench doctor) -----------------------------------------------------------------
def config_warnings(path: Path | None = None) -> list[str]:
    """Traps in an odbcinst.ini worth a ``doctor`` warning, one line each.

    Debian's stock psqlODBC entry has ``CommLog=1``: every process writes a communication
    log into /tmp (extra I/O inside the measurement, files piling up).
    """
    path = path or system_paths().odbcinst_ini
    ini = read_ini(path)
    warnings: list[str] = []
    for name in ini.sections():
        section = ini[name]
        if name == "ODBC":
            if _is_yes(_get(section, "trace")):
                warnings.append(f"{path} [ODBC]: Trace=Yes logs every ODBC call "
                                f"(TraceFile={_get(section, 'tracefile') or '?'}); "
                                f"set Trace=No for benchmarks")
            continue
        if _is_yes(_get(section, "commlog")):
            warnings.append(f"{path} [{name}]: CommLog=1 writes a communication log file per "
                            f"process into /tmp (slows inserts, fills the disk); set CommLog=0")
        if _is_yes(_get(section, "debug")):
            warnings.append(f"{path} [{name}]: Debug=1 writes a debug log per process; "
                            f"set Debug=0")
    cfg = pooling_config(path)
    if cfg.pooling and not cfg.cp_timeout:
        warnings.append(f"{path}: [ODBC] Pooling=Yes but no driver has CPTimeout: unixODBC "
                        f"pools nothing")
    if not cfg.pooling and cfg.cp_timeout:
        warnings.append(f"{path}: drivers have CPTimeout but [ODBC] Pooling is not Yes: "
                        f"unixODBC pools nothing")
    return warnings
