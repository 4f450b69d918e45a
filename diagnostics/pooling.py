"""The four connection-pooling diagnostic tests, as check objects feeding one collector.

Shaped like pyperf's ``_system.py``: each test is a small class (:class:`PoolingTest`) with
``available()`` (why it cannot run here, or None) and ``run()`` (its :class:`TestResult`:
a one-line verdict, key numbers, the details to store, and the facts the decision tree
reads). :class:`PoolingDiagnosis` runs them in order, lets later tests read earlier results,
and decides the exit code: 3 when the configuration test finds the user's settings
ineffective (pyperf's "not tuned"), else 0.

1. :class:`ConfigurationTest` — connection-string audit, the unixODBC settings in force and
   the empirical check: child processes open and close ``connections`` connections and
   report the server session ids. Each probe is its own process because unixODBC reads
   its pooling setting once per process.
2. :class:`ConnectionCostTest` — connect+close latency pooled vs unpooled (from the probes),
   pooled checkout cost, and that cost as a share of one batch's time (from a real run).
3. :class:`ContentionTest` — throughput at each worker count, pooling on and off, repeats in
   shuffled rounds; scaling efficiency and whether pooling changes it significantly. Runs
   of one round ran seconds apart, so comparisons are paired within rounds (the host's
   drift cancels in the ratio): Wilcoxon signed-rank on log-ratios with a noise band,
   Holm-corrected over the worker counts for pooling; scaling is tested step by step in
   order and stops at the first step that is not a significant gain (a fixed-sequence
   procedure, which needs no correction).
4. :class:`BottleneckTest` — the highest worker count with samplers; attributed bottleneck.

Migrations are run by a :class:`Measure` the caller supplies (``bench`` runs them through its
runner) and statistics by :class:`StatsBackend` (``reports.stats``): ``diagnostics`` imports
neither ``bench`` nor ``reports``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from diagnostics.connstr_audit import ADONET_ONLY, ConnectionStringAudit, audit_connection_string
from diagnostics.decision import Decision, FactValue, evaluate
from migrator.connection import ConnectionStrategy

CONNECTIONS = 20
"""Connections each probe opens and closes: enough that reuse shows as fewer server sessions."""
MIN_UNIXODBC_WIDE_POOLING = (2, 3, 10)
"""unixODBC pools connections made with the wide (W) API — pyodbc's — from 2.3.10 on."""
PROBE_TIMEOUT_S = 120.0
EXIT_OK = 0
EXIT_INEFFECTIVE = 3

Status = Literal["ok", "ineffective", "warning", "unavailable", "error"]


class MeasureUnsupported(Exception):
    """The runner cannot set what a test needs (e.g. no ``workers`` field yet)."""


# ---- what the caller supplies ---------------------------------------------------------------

@dataclass
class RunMeasurement:
    """One measured migration, as the test needs it."""

    rec_per_min: float
    elapsed_s: float
    stages: dict[str, float]
    batch_ms: list[float]  # per batch: parse+map+insert+commit (ms)
    workers: int
    connection: ConnectionStrategy | None
    bottleneck: dict[str, Any] | None = None  # diagnostics Verdict.to_dict()
    run: dict[str, Any] = field(default_factory=dict)  # the run document, stored as is


class Measure(Protocol):
    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        """Run one migration (``None``: the runner's default); raise
        :class:`MeasureUnsupported` when the runner cannot set ``workers``/``connection``."""

    def unsupported(self, *, workers: bool, pooling: bool) -> str | None:
        """Why the runner cannot set worker count / pooling (None: it can)."""


class StatsBackend(Protocol):
    def describe(self, values: Sequence[float]) -> Any: ...

    def compare(self, a: Sequence[float], b: Sequence[float], *,
                higher_is_better: bool = True) -> Any: ...

    def paired_compare(self, a: Sequence[float], b: Sequence[float], *,
                       higher_is_better: bool = True) -> Any: ...

    def holm_family(self, comparisons: Sequence[Any]) -> list[Any]: ...


@dataclass
class DiagnosisContext:
    """Everything the four tests share; ``results`` fills as they finish."""

    target: str  # sqlite:PATH or odbc:CONNECTION-STRING (may hold secrets: never stored)
    workers: tuple[int, ...] = (1, 2, 4)
    batch_size: int = 1000
    repeat: int = 5
    connections: int = CONNECTIONS
    expect: bool | None = None  # --expect on|off: what the user believes
    pyodbc_pooling: bool | None = None  # what the user's code sets (None: pyodbc's default)
    measure: Measure | None = None
    stats: StatsBackend | None = None
    environ: Mapping[str, str] | None = None  # for probe processes (default: os.environ)
    seed: int = 0
    progress: Callable[[str], None] | None = None
    results: dict[str, TestResult] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # every measured run, in order

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)


@dataclass
class TestResult:
    """What one test found (``__test__``: not a pytest test class, despite its name)."""

    __test__: ClassVar[bool] = False
    number: int
    name: str
    status: Status
    verdict: str  # one line
    numbers: dict[str, Any] = field(default_factory=dict)  # key numbers, printed
    facts: dict[str, FactValue] = field(default_factory=dict)  # read by the decision tree
    details: dict[str, Any] = field(default_factory=dict)  # stored, not printed
    messages: list[str] = field(default_factory=list)  # warnings and advice, printed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the probe: a child process that opens and closes connections ---------------------------

ProbeMode = Literal["as-configured", "on", "off"]


@dataclass
class ProbeResult:
    mode: str
    pyodbc_pooling: bool | None
    session_ids: list[str] = field(default_factory=list)
    connect_s: list[float] = field(default_factory=list)
    close_s: list[float] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def distinct(self) -> int:
        return len(set(self.session_ids))

    @property
    def reused(self) -> bool | None:
        """Did any checkout get a session seen before? None without session ids."""
        if not self.session_ids or not all(self.session_ids):
            return None
        return self.distinct < len(self.session_ids)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "distinct_sessions": self.distinct, "reused": self.reused}


def run_probe(target: str, mode: ProbeMode, cycles: int, *,
              pyodbc_pooling: bool | None = None,
              environ: Mapping[str, str] | None = None) -> ProbeResult:
    """Open and close ``cycles`` connections in a fresh process; the connection string goes
    through stdin, never the command line (``ps`` would show its password)."""
    cmd = [sys.executable, "-m", "diagnostics.pooling", "probe", mode, str(cycles),
           {True: "on", False: "off", None: "default"}[pyodbc_pooling]]
    # The child imports the installed package (or a checkout on the PYTHONPATH ``environ``
    # carries): what it runs is what this process would import.
    env = dict(os.environ if environ is None else environ)
    try:
        out = subprocess.run(cmd, input=target, capture_output=True, text=True, env=env,
                             timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return ProbeResult(mode, pyodbc_pooling, error=f"probe timed out after "
                                                       f"{PROBE_TIMEOUT_S:.0f} s")
    lines = out.stdout.strip().splitlines()
    if not lines:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit {out.returncode}"]
        return ProbeResult(mode, pyodbc_pooling, error=f"probe failed: {tail[0]}")
    data = json.loads(lines[-1])
    return ProbeResult(mode, pyodbc_pooling, data.get("ids", []), data.get("connect_s", []),
                       data.get("close_s", []), data.get("facts", {}), data.get("error", ""))


def _probe_child(mode: str, cycles: int, flag: str) -> dict[str, Any]:
    """The probe's body (in the child process). Connections are kept referenced until the
    end so an in-process id (SQLite) cannot be recycled by the allocator."""
    from migrator import odbcini
    from migrator.errors import MigratorError
    from migrator.targets import open_target

    spec = sys.stdin.read().strip()
    out: dict[str, Any] = {"ids": [], "connect_s": [], "close_s": [], "facts": {}}
    facts = out["facts"]
    scheme = spec.partition(":")[0]
    try:
        if scheme == "odbc":
            facts.update(_unixodbc_facts(spec.partition(":")[2]))
            from migrator.targets.odbc import OdbcTarget, import_pyodbc

            pyodbc = import_pyodbc()
            facts["pyodbc_version"] = str(getattr(pyodbc, "version", ""))
            if flag != "default":
                pyodbc.pooling = flag == "on"
            facts["pyodbc_pooling"] = bool(pyodbc.pooling)
            target: Any = OdbcTarget(spec.partition(":")[2],
                                     pooling={"on": True, "off": False}.get(mode))
        else:
            target = open_target(spec)
            if mode != "as-configured":
                setter = getattr(target, "set_pooling", None)
                if setter is None:
                    facts["pool_supported"] = False
                    if mode == "on":
                        out["error"] = (f"the {scheme} target has no connection pool in this "
                                        f"version")
                        return out
                else:
                    facts["pool_supported"] = True
                    setter(mode == "on")
        kept = []
        for _ in range(cycles):
            t0 = time.perf_counter()
            conn = target.connect()
            t1 = time.perf_counter()
            out["ids"].append(str(conn.session_id()))
            t2 = time.perf_counter()
            conn.close()
            t3 = time.perf_counter()
            kept.append(conn)
            out["connect_s"].append(t1 - t0)
            out["close_s"].append(t3 - t2)
        info = target.info()
        facts.update({"dialect": info.dialect, "dbms_name": info.dbms_name,
                      "dbms_version": info.dbms_version, "driver_name": info.driver_name,
                      "driver_version": info.driver_version, "display": info.display})
        if scheme == "odbc":
            facts["odbcsysini_used"] = os.environ.get("ODBCSYSINI", "")
            facts["private_ini"] = odbcini.active_pooling() is not None
    except MigratorError as exc:
        out["error"] = str(exc)
    return out


def _unixodbc_facts(connection_string: str) -> dict[str, Any]:
    """The driver manager's files and pooling keys as this process sees them."""
    from migrator import odbcini
    from migrator.connstr import parse_connection_string

    paths = odbcini.system_paths()
    facts: dict[str, Any] = {"unixodbc_version": paths.version,
                             "odbcinst_ini": str(paths.odbcinst_ini),
                             "odbc_ini": str(paths.odbc_ini),
                             "odbcsysini": os.environ.get("ODBCSYSINI", "")}
    try:
        params = parse_connection_string(connection_string)
    except ValueError:
        return facts
    driver = (params.get_any("Driver") or "").strip("{}")
    dsn = params.get_any("DSN") or ""
    if dsn and not driver:
        odbc_ini = odbcini.read_ini(paths.odbc_ini)
        user_ini = odbcini.read_ini(Path.home() / ".odbc.ini")
        for ini in (user_ini, odbc_ini):
            if ini.has_section(dsn):
                driver = next((v for k, v in ini[dsn].items() if k.lower() == "driver"), "")
                break
        facts["dsn_driver"] = driver
    facts["driver_section"] = driver
    ini = odbcini.read_ini(paths.odbcinst_ini)

    def get(section: str, key: str) -> str | None:
        if not ini.has_section(section):
            return None
        return next((v for k, v in ini[section].items() if k.lower() == key.lower()), None)

    facts["ini"] = {
        "Pooling": get("ODBC", "Pooling"), "PoolMaxSize": get("ODBC", "PoolMaxSize"),
        "PoolWaitTimeout": get("ODBC", "PoolWaitTimeout"),
        "CPTimeout": get(driver, "CPTimeout"), "CPTimeToLive": get(driver, "CPTimeToLive"),
        "CPProbe": get(driver, "CPProbe"), "driver_registered": ini.has_section(driver)}
    cfg = odbcini.pooling_config(paths.odbcinst_ini)
    facts["ini_pools"] = cfg.active_for(driver)
    facts["ini_warnings"] = odbcini.config_warnings(paths.odbcinst_ini)
    return facts


def _probe_main(argv: Sequence[str]) -> int:
    mode, cycles, flag = argv[0], int(argv[1]), argv[2]
    print(json.dumps(_probe_child(mode, cycles, flag)))
    return 0


# ---- helpers ---------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def suggested_ini(driver: str, audit: ConnectionStringAudit | None,
                  cp_timeout: int = 120) -> str:
    """The odbcinst.ini lines that really turn pooling on, translating ADO.NET keywords."""
    odbc = ["[ODBC]", "Pooling=Yes"]
    drv = [f"[{driver or 'your driver'}]", f"CPTimeout={cp_timeout}"]
    for f in audit.pooling_keywords if audit else []:
        key = f.keyword.lower().replace(" ", "")
        if key == "maxpoolsize" and f.value.isdigit():
            odbc.append(f"PoolMaxSize={f.value}")
        elif key == "connectionlifetime" and f.value.isdigit() and int(f.value) > 0:
            drv.append(f"CPTimeToLive={f.value}")
        elif key == "loadbalancetimeout" and f.value.isdigit() and int(f.value) > 0:
            drv[1] = f"CPTimeout={f.value}"
    return "\n".join([*odbc, "", *drv])


# ---- the tests -------------------------------------------------------------------------------

class PoolingTest(ABC):
    """One diagnostic test (pyperf's ``Operation``): ``available`` then ``run``."""

    number: ClassVar[int]
    name: ClassVar[str]
    title: ClassVar[str]

    def available(self, ctx: DiagnosisContext) -> str | None:
        """Why this test cannot run here (None: it can)."""
        return None

    @abstractmethod
    def run(self, ctx: DiagnosisContext) -> TestResult: ...

    def result(self, status: Status, verdict: str, **kw: Any) -> TestResult:
        return TestResult(self.number, self.name, status, verdict, **kw)


class ConfigurationTest(PoolingTest):
    """Is pooling configured the way the user believes? Audit, then verify empirically."""

    number, name, title = 1, "configuration", "Configuration"

    def run(self, ctx: DiagnosisContext) -> TestResult:
        scheme, _, rest = ctx.target.partition(":")
        if scheme == "odbc":
            return self._odbc(ctx, rest)
        return self._embedded(ctx, scheme)

    # -- ODBC
    def _odbc(self, ctx: DiagnosisContext, rest: str) -> TestResult:
        n = ctx.connections
        believed_flag = ctx.pyodbc_pooling  # None: the user's code leaves pyodbc's default
        ctx.note("configuration: probing connections as configured (pyodbc.pooling on/off)")
        req_on = run_probe(ctx.target, "as-configured", n, pyodbc_pooling=True,
                           environ=ctx.environ)
        req_off = run_probe(ctx.target, "as-configured", n, pyodbc_pooling=False,
                            environ=ctx.environ)
        ctx.note("configuration: probing with migration-bench's pooling on and off")
        forced_on = run_probe(ctx.target, "on", n, environ=ctx.environ)
        forced_off = run_probe(ctx.target, "off", n, environ=ctx.environ)
        probes = {"requested_on": req_on, "requested_off": req_off,
                  "forced_on": forced_on, "forced_off": forced_off}
        errors = [f"{k}: {p.error}" for k, p in probes.items() if p.error]
        facts0 = next((p.facts for p in probes.values() if p.facts.get("driver_name")),
                      req_on.facts)
        audit = audit_connection_string(rest, driver=str(facts0.get("driver_name") or ""),
                                        dsn_driver=str(facts0.get("dsn_driver") or "") or None)
        details: dict[str, Any] = {"audit": audit.to_dict(),
                                   "probes": {k: p.to_dict() for k, p in probes.items()}}
        if req_on.error and req_off.error:
            return self.result("error", f"cannot connect: {req_on.error}", details=details,
                               messages=errors)
        user_flag = True if believed_flag is None else believed_flag
        as_run = req_on if user_flag else req_off
        effective = as_run.reused
        intended, source = self._intent(ctx, audit)
        unix_version = str(facts0.get("unixodbc_version") or "")
        ini = dict(facts0.get("ini") or {})
        messages = list(errors)
        for f in audit.findings:
            if f.status == "adonet-only":
                messages.append(f"{f.keyword}={f.value}: {f.note}")
            elif f.ignored:
                messages.append(f"{f.keyword}: {f.note}")
        if audit.duplicates:
            messages.append(f"repeated keyword(s) {', '.join(audit.duplicates)}: ODBC uses the "
                            f"first occurrence")
        if req_on.reused is not None and req_on.reused == req_off.reused:
            messages.append(f"pyodbc.pooling makes no difference here (on: {req_on.distinct}, "
                            f"off: {req_off.distinct} sessions for {n} connections): unixODBC's "
                            f"odbcinst.ini decides")
        if unix_version and version_tuple(unix_version) < MIN_UNIXODBC_WIDE_POOLING:
            messages.append(f"unixODBC {unix_version} does not pool wide-API (pyodbc) "
                            f"connections; pooling needs unixODBC ≥ 2.3.10")
        if forced_on.reused is False:
            messages.append("even migration-bench's private ini (Pooling=Yes, CPTimeout) did "
                            "not reuse sessions: this driver/driver manager does not pool")
        messages.extend(str(w) for w in facts0.get("ini_warnings") or [])
        ignored = [f.keyword for f in audit.pooling_keywords]
        driver = str(facts0.get("driver_section") or "")
        ini_text = suggested_ini(driver, audit)
        details.update({"ini": ini, "suggested_ini": ini_text, "intended_source": source})
        numbers = {
            "pyodbc.pooling": "default (True)" if believed_flag is None else believed_flag,
            "sessions (pyodbc.pooling=True)": f"{req_on.distinct}/{n}",
            "sessions (pyodbc.pooling=False)": f"{req_off.distinct}/{n}",
            "sessions (--pooling on)": f"{forced_on.distinct}/{n}",
            "sessions (--pooling off)": f"{forced_off.distinct}/{n}",
            "odbcinst.ini": facts0.get("odbcinst_ini"),
            "[ODBC] Pooling": ini.get("Pooling"), "PoolMaxSize": ini.get("PoolMaxSize"),
            "CPTimeout": ini.get("CPTimeout"), "CPTimeToLive": ini.get("CPTimeToLive"),
            "driver": f"{facts0.get('driver_name', '')} {facts0.get('driver_version', '')}"
                      .strip(),
            "unixODBC": unix_version or None,
            "pyodbc": facts0.get("pyodbc_version"),
        }
        facts: dict[str, FactValue] = {
            "config.intended": intended, "config.effective": effective,
            "config.pool_possible": forced_on.reused,
            "config.sessions_as_configured": as_run.distinct if as_run.session_ids else None,
            "config.connections": n,
            "config.ignored_keywords": ", ".join(ignored) or "none",
            "config.ini": str(facts0.get("odbcinst_ini") or ""),
            "dialect": str(facts0.get("dialect") or ""),
        }
        status, verdict = self._verdict(intended, effective, source, forced_on.reused)
        if status == "ineffective" and intended == "on":
            messages.append("odbcinst.ini lines that enable pooling:\n" + ini_text)
        return self.result(status, verdict, numbers=numbers, facts=facts, details=details,
                           messages=messages)

    @staticmethod
    def _intent(ctx: DiagnosisContext, audit: ConnectionStringAudit | None
                ) -> tuple[str, str]:
        if ctx.expect is not None:
            return ("on" if ctx.expect else "off"), "--expect"
        from_string = audit.intended_pooling() if audit else None
        if from_string is not None:
            return ("on" if from_string else "off"), "connection-string keywords"
        if ctx.pyodbc_pooling is not None:
            return ("on" if ctx.pyodbc_pooling else "off"), "pyodbc.pooling"
        return "unstated", "nothing says"

    @staticmethod
    def _verdict(intended: str, effective: bool | None, source: str,
                 possible: bool | None) -> tuple[Status, str]:
        if effective is None:
            return "warning", "cannot tell whether pooling is effective (no session ids)"
        if intended == "on" and not effective:
            fix = " (--pooling on makes it effective)" if possible else ""
            return "ineffective", (f"pooling NOT effective although intended ({source}): "
                                   f"every connection was a new server session{fix}")
        if intended == "off" and effective:
            return "ineffective", (f"pooling EFFECTIVE although believed off ({source}): "
                                   f"odbcinst.ini pools whatever pyodbc.pooling says "
                                   f"(the unixODBC trap)")
        if effective:
            return "ok", "pooling effective: server sessions are reused"
        return "ok", "pooling not effective: every connection is a new server session"

    # -- SQLite and other embedded targets
    def _embedded(self, ctx: DiagnosisContext, scheme: str) -> TestResult:
        n = ctx.connections
        ctx.note(f"configuration: opening {n} {scheme} connections with pooling on and off")
        on = run_probe(ctx.target, "on", n, environ=ctx.environ)
        off = run_probe(ctx.target, "off", n, environ=ctx.environ)
        if off.error:
            return self.result("error", f"cannot connect: {off.error}",
                               details={"probes": {"on": on.to_dict(), "off": off.to_dict()}})
        supported = bool(on.facts.get("pool_supported", off.facts.get("pool_supported")))
        effective: bool | None = on.reused if supported and not on.error else False
        intended, source = self._intent(ctx, None)
        messages = [f"{scheme} is embedded: no server sessions, no driver manager, no "
                    f"odbcinst.ini; --pooling on means migration-bench's own in-process pool"]
        if not supported:
            messages.append(f"this version's {scheme} target has no pool (no set_pooling): "
                            f"every checkout opens the file")
        status, verdict = self._verdict(intended, effective, source, None)
        if status == "ok":
            verdict = ("our in-process pool is effective: connections are reused"
                       if effective else "no pooling applies: every checkout opens the file")
        numbers = {"pool available": supported,
                   "connections (pool on)": f"{on.distinct}/{n}" if not on.error else None,
                   "connections (pool off)": f"{off.distinct}/{n}"}
        facts: dict[str, FactValue] = {
            "config.intended": intended, "config.effective": effective,
            "config.pool_possible": on.reused if supported else False,
            "config.sessions_as_configured": off.distinct, "config.connections": n,
            "config.ignored_keywords": "none", "config.ini": "",
            "dialect": str(off.facts.get("dialect") or scheme)}
        return self.result(status, verdict, numbers=numbers, facts=facts, messages=messages,
                           details={"probes": {"on": on.to_dict(), "off": off.to_dict()},
                                    "intended_source": source})


class ConnectionCostTest(PoolingTest):
    """Connect+close latency pooled vs unpooled, checkout cost, share of one batch."""

    number, name, title = 2, "connection-cost", "Connection cost"

    def run(self, ctx: DiagnosisContext) -> TestResult:
        probes = ctx.results.get("configuration")
        pd = (probes.details.get("probes", {}) if probes else {})
        off = pd.get("forced_off") or pd.get("off") or {}
        on = pd.get("forced_on") or pd.get("on") or {}
        if not off.get("connect_s"):
            return self.result("unavailable", "no unpooled connection timings (the "
                               "configuration test could not connect)")
        unpooled = [1000 * (a + b) for a, b in zip(off["connect_s"], off["close_s"],
                                                   strict=True)]
        pooled_ok = bool(on.get("connect_s")) and on.get("reused")
        pooled = ([1000 * (a + b) for a, b in zip(on["connect_s"][1:], on["close_s"][1:],
                                                  strict=True)] if pooled_ok else [])
        checkout = [1000 * a for a in on["connect_s"][1:]] if pooled_ok else []
        batch_ms: list[float] = []
        messages: list[str] = []
        if ctx.measure is not None:
            ctx.note(f"connection cost: one run at batch size {ctx.batch_size} for the batch "
                     f"time")
            try:
                m = ctx.measure(workers=None, connection=None, sample=False)
            except MeasureUnsupported as exc:
                messages.append(f"batch time not measured: {exc}")
            else:
                ctx.runs.append({**m.run, "diagnose_test": self.name})
                batch_ms = m.batch_ms
        connect_ms = median(unpooled)
        batch = median(batch_ms)
        share = (100 * connect_ms / (batch + connect_ms)
                 if connect_ms is not None and batch else None)
        checkout_ms = median(checkout)
        pooled_share = (100 * checkout_ms / (batch + checkout_ms)
                        if checkout_ms is not None and batch else None)
        numbers = {
            "unpooled connect+close median ms": _r(connect_ms),
            "unpooled p95 ms": _r(percentile(unpooled, 95)),
            "pooled connect+close median ms": _r(median(pooled)),
            "pooled p95 ms": _r(percentile(pooled, 95)),
            "pooled checkout median ms": _r(checkout_ms),
            "batch median ms": _r(batch, 1),
            "batch size": ctx.batch_size,
            "connect share of a batch %": _r(share, 2),
            "pooled checkout share %": _r(pooled_share, 3),
        }
        if not pooled_ok:
            messages.append("no pooled timings: pooling could not be made effective here")
        if share is None:
            verdict = f"a new connection costs {connect_ms:.2f} ms (batch time unknown)"
        else:
            verdict = (f"a new connection costs {connect_ms:.2f} ms = {share:.2f}% of a "
                       f"{batch:.0f} ms batch of {ctx.batch_size}")
            if checkout_ms is not None:
                verdict += f"; a pooled checkout {checkout_ms:.3f} ms"
        facts: dict[str, FactValue] = {
            "cost.connect_ms": connect_ms, "cost.checkout_ms": checkout_ms,
            "cost.batch_ms": batch, "cost.connect_share_pct": share}
        return self.result("ok" if share is not None else "warning", verdict, numbers=numbers,
                           facts=facts, messages=messages,
                           details={"unpooled_ms": unpooled, "pooled_ms": pooled,
                                    "checkout_ms": checkout, "batch_ms": batch_ms})


class ContentionTest(PoolingTest):
    """Throughput per worker count with pooling on and off; scaling and pooling's effect."""

    number, name, title = 3, "contention", "Contention"

    def available(self, ctx: DiagnosisContext) -> str | None:
        if ctx.measure is None or ctx.stats is None:
            return "no runner/statistics supplied"
        return ctx.measure.unsupported(workers=True, pooling=False)

    def run(self, ctx: DiagnosisContext) -> TestResult:
        assert ctx.measure is not None and ctx.stats is not None
        workers = sorted(set(ctx.workers))
        no_pooling = ctx.measure.unsupported(workers=True, pooling=True)
        modes: tuple[bool | None, ...] = (None,) if no_pooling else (False, True)
        configs = [(w, p) for w in workers for p in modes]
        samples: dict[tuple[int, bool | None], list[float]] = {c: [] for c in configs}
        rng = random.Random(ctx.seed)
        order: list[tuple[int, bool | None]] = []
        for _ in range(ctx.repeat):  # interleaved rounds, shuffled (as the sweep does)
            rnd = list(configs)
            rng.shuffle(rnd)
            order.extend(rnd)
        for i, (w, p) in enumerate(order, 1):
            ctx.note(f"contention: run {i}/{len(order)} (workers={w}, "
                     f"pooling={_mode(p)})")
            m = ctx.measure(workers=w, connection=_strategy(p), sample=False)
            samples[(w, p)].append(m.rec_per_min)
            ctx.runs.append({**m.run, "diagnose_test": self.name, "order_index": i - 1})
        result = self.analyse(ctx.stats, workers, samples)
        if no_pooling:
            result.status = "warning"
            result.messages.insert(0, f"pooling on/off not compared: {no_pooling}")
        return result

    def analyse(self, stats: StatsBackend, workers: Sequence[int],
                samples: Mapping[tuple[int, bool | None], Sequence[float]]) -> TestResult:
        """Statistics over measured samples (pure; tests call it with synthetic ones).
        ``samples`` is keyed by (workers, pooling) with pooling False/True, or None alone
        when the runner could not set pooling; each list holds one value per round, in
        round order. Lists of equal length are compared paired within rounds; otherwise
        (a run missing) as independent samples."""
        modes = [p for p in (False, True, None) if (workers[0], p) in samples]
        ref = modes[0]  # scaling is judged with pooling off (the default) when measured
        paired = len({len(v) for v in samples.values()}) == 1

        def versus(a: Sequence[float], b: Sequence[float]) -> Any:
            if paired:
                return stats.paired_compare(a, b, higher_is_better=True)
            return stats.compare(a, b, higher_is_better=True)

        table: list[dict[str, Any]] = []
        base = workers[0]
        base_med = {p: stats.describe(samples[(base, p)]).median for p in modes}
        pooling_cmp = []
        for w in workers:
            row: dict[str, Any] = {"workers": w}
            for p in modes:
                d = stats.describe(samples[(w, p)])
                ideal = base_med[p] * w / base
                row[_mode(p)] = {"stats": d.to_dict(), "median": d.median,
                                 "efficiency_pct": 100 * d.median / ideal if ideal else None}
            if False in modes and True in modes:
                pooling_cmp.append(versus(samples[(w, False)], samples[(w, True)]))
            table.append(row)
        if pooling_cmp:
            family = stats.holm_family(pooling_cmp) if paired else pooling_cmp
            for row, cmp in zip(table, family, strict=True):
                row["pooling"] = cmp.to_dict()
        top = table[-1]
        cmp_top: dict[str, Any] = top.get("pooling") or {}
        scales_to = base
        for prev, cur in itertools.pairwise(workers):
            c = versus(samples[(prev, ref)], samples[(cur, ref)])
            if c.verdict != "-":  # not a significant improvement
                break
            scales_to = cur
        change = cmp_top.get("change")
        change_pct = None if change is None else 100 * change
        eff = top[_mode(ref)]["efficiency_pct"] if len(workers) > 1 else None
        p_top = cmp_top.get("p_adjusted", cmp_top.get("mannwhitney_p"))
        numbers: dict[str, Any] = {
            f"rec/min (pooling {_mode(p)})": {r["workers"]: round(r[_mode(p)]["median"], 1)
                                              for r in table} for p in modes}
        numbers.update({
            "efficiency at max %": _r(eff, 1),
            "scales to workers": scales_to,
            f"pooling change at {top['workers']} workers %": _r(change_pct, 1),
            "significant": cmp_top.get("significant"),
            ("p (signed-rank, paired, Holm)" if paired else "p (Mann-Whitney)"): _r(p_top, 4),
        })
        messages = []
        if cmp_top.get("underpowered"):
            messages.append(f"{cmp_top.get('n_a')} vs {cmp_top.get('n_b')} runs cannot reach "
                            f"p < 0.05: raise --repeat to 8 or more")
        verdict = (f"{top['workers']} workers reach "
                   + (f"{eff:.0f}% of ideal scaling" if eff is not None else "—")
                   + f" (significant gains up to {scales_to} workers)")
        if cmp_top:
            sig = ("significant" if cmp_top.get("significant") else
                   "equivalent within the noise band" if cmp_top.get("equivalent") else
                   "not significant")
            verdict += ("; pooling changes throughput by "
                        + (f"{change_pct:+.1f}%" if change_pct is not None else "?")
                        + f" at {top['workers']} workers ({sig})")
        facts: dict[str, FactValue] = {
            "contention.max_workers": top["workers"], "contention.efficiency_pct": eff,
            "contention.scales_to": scales_to, "contention.pooling_change_pct": change_pct,
            "contention.pooling_significant": (bool(cmp_top.get("significant"))
                                               if cmp_top else None)}
        return self.result("ok", verdict, numbers=numbers, facts=facts, messages=messages,
                           details={"table": table, "paired": paired, "samples": {
                               f"workers={w},pooling={_mode(p)}": list(v)
                               for (w, p), v in samples.items()}})


def _mode(pooling: bool | None) -> str:
    return {True: "on", False: "off", None: "default"}[pooling]


def _strategy(pooling: bool | None) -> ConnectionStrategy | None:
    """Pooling on/off as the connection strategy that measures it (None: the default)."""
    return {True: ConnectionStrategy.POOLED, False: ConnectionStrategy.PER_BATCH,
            None: None}[pooling]


class BottleneckTest(PoolingTest):
    """The highest worker count, sampled: which resource saturates, with the evidence."""

    number, name, title = 4, "bottleneck", "Bottleneck"

    def available(self, ctx: DiagnosisContext) -> str | None:
        if ctx.measure is None:
            return "no runner supplied"
        return ctx.measure.unsupported(workers=True, pooling=False)

    def run(self, ctx: DiagnosisContext) -> TestResult:
        assert ctx.measure is not None
        w = max(ctx.workers)
        intended = ctx.results.get("configuration")
        pooling: bool | None = bool(intended and
                                    intended.facts.get("config.intended") == "on")
        notes = []
        why = ctx.measure.unsupported(workers=True, pooling=True)
        if why:
            pooling = None
            notes.append(f"run with the runner's default pooling: {why}")
        ctx.note(f"bottleneck: one sampled run at {w} workers, pooling {_mode(pooling)}")
        m = ctx.measure(workers=w, connection=_strategy(pooling), sample=True)
        ctx.runs.append({**m.run, "diagnose_test": self.name})
        v = m.bottleneck
        if not v:
            return self.result("warning", "no samples: no bottleneck could be attributed",
                               facts={"bottleneck.label": None})
        facts_in = v.get("facts") or {}

        def fact(name: str) -> float | None:
            f = facts_in.get(name)
            return float(f["value"]) if isinstance(f, dict) and "value" in f else None

        evidence = list(dict.fromkeys(  # (an unknown verdict lists every label's rules)
            f"{e['fact']} = {e['value']:.4g} {e['unit']} ({e['reason']})"
            for e in (v.get("evidence") or []) if e.get("weight", 0) > 0))[:4]
        numbers = {"workers": w, "pooling": _mode(pooling),
                   "rec/min": round(m.rec_per_min, 1), "label": v.get("label"),
                   "confidence": v.get("level"), "disk busy %": _r(fact("disk.busy_pct"), 1),
                   "server CPU %": _r(fact("db.cpu_pct"), 1),
                   "client CPU % of cores": _r(fact("client.cpu_of_capacity_pct"), 1)}
        facts: dict[str, FactValue] = {
            "bottleneck.label": v.get("label"),
            "bottleneck.disk_busy_pct": fact("disk.busy_pct"),
            "bottleneck.db_cpu_pct": fact("db.cpu_pct"),
            "bottleneck.client_cpu_pct": fact("client.cpu_of_capacity_pct")}
        verdict = f"bottleneck: {v.get('label')} — {v.get('description', '')}"
        if evidence:
            verdict += f" ({evidence[0]})"
        return self.result("ok", verdict, numbers=numbers, facts=facts,
                           messages=notes + evidence, details={"verdict": v})


TESTS: tuple[type[PoolingTest], ...] = (ConfigurationTest, ConnectionCostTest, ContentionTest,
                                        BottleneckTest)


# ---- the collector ----------------------------------------------------------------------------

@dataclass
class DiagnosisReport:
    results: list[TestResult]
    decision: Decision
    exit_code: int

    def facts(self) -> dict[str, FactValue]:
        return decision_facts(self.results)


def decision_facts(results: Sequence[TestResult]) -> dict[str, FactValue]:
    """The flat fact mapping the decision tree reads, merged from the four results."""
    out: dict[str, FactValue] = {}
    for r in results:
        out.update(r.facts)
    return out


class PoolingDiagnosis:
    """Runs the tests in order and collects their results (pyperf's ``System``)."""

    def __init__(self, ctx: DiagnosisContext,
                 tests: Sequence[PoolingTest] | None = None,
                 on_result: Callable[[PoolingTest, TestResult], None] | None = None,
                 thresholds: Mapping[str, float] | None = None) -> None:
        self.ctx = ctx
        self.tests = list(tests) if tests is not None else [t() for t in TESTS]
        self.on_result = on_result
        self.thresholds = thresholds

    def run(self) -> DiagnosisReport:
        results: list[TestResult] = []
        for test in self.tests:
            reason = test.available(self.ctx)
            if reason is not None:
                result = test.result("unavailable", f"not run: {reason}")
            else:
                try:
                    result = test.run(self.ctx)
                except MeasureUnsupported as exc:
                    result = test.result("unavailable", f"cannot run: {exc}")
            self.ctx.results[test.name] = result
            results.append(result)
            if self.on_result is not None:
                self.on_result(test, result)
        decision = evaluate(decision_facts(results), self.thresholds)
        return DiagnosisReport(results, decision, self.exit_code(results))

    @staticmethod
    def exit_code(results: Sequence[TestResult]) -> int:
        config = next((r for r in results if r.name == "configuration"), None)
        return EXIT_INEFFECTIVE if config is not None and config.status == "ineffective" \
            else EXIT_OK


__all__ = [
    "ADONET_ONLY",
    "CONNECTIONS",
    "EXIT_INEFFECTIVE",
    "EXIT_OK",
    "TESTS",
    "BottleneckTest",
    "ConfigurationTest",
    "ConnectionCostTest",
    "ContentionTest",
    "DiagnosisContext",
    "DiagnosisReport",
    "Measure",
    "MeasureUnsupported",
    "PoolingDiagnosis",
    "PoolingTest",
    "ProbeResult",
    "RunMeasurement",
    "StatsBackend",
    "Status",
    "TestResult",
    "decision_facts",
    "run_probe",
    "suggested_ini",
]


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "probe":
        raise SystemExit(_probe_main(sys.argv[2:]))
    raise SystemExit("usage: python -m diagnostics.pooling probe MODE CYCLES FLAG < target")
