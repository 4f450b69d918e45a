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
3. :class:`ContentionTest` — throughput at each worker count with each connection strategy
   the runner has (:mod:`diagnostics.strategies`: per-batch, pooled, persistent), repeats
   in shuffled rounds. Runs of one round ran seconds apart, so comparisons are paired
   within rounds (the host's drift cancels in the ratio): Wilcoxon signed-rank on
   log-ratios with a noise band, Holm-corrected within each family; scaling is tested step
   by step in order and stops at the first step that is not a significant gain (a
   fixed-sequence procedure, which needs no correction). It picks the configuration to
   recommend (:meth:`ContentionGrid.recommend`): only a measured one, and the default
   unless another is significantly faster.
4. :class:`BottleneckTest` — the highest worker count with samplers; attributed bottleneck.

Migrations are run by a :class:`Measure` the caller supplies (``bench`` runs them through its
runner) and statistics by :class:`StatsBackend` (``reports.stats``): ``diagnostics`` imports
neither ``bench`` nor ``reports``.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from diagnostics.connstr_audit import ADONET_ONLY, ConnectionStringAudit, audit_connection_string
from diagnostics.decision import Decision, FactValue, evaluate, resolve_thresholds
from diagnostics.strategies import REFERENCE, STRATEGIES, flags
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
    """The runner cannot set what a test needs (e.g. no ``workers`` field)."""


# ---- what the caller supplies ---------------------------------------------------------------

@dataclass
class RunMeasurement:
    """One measured migration, as the test needs it."""

    rec_per_min: float
    elapsed_s: float
    stages: dict[str, float]
    batch_ms: list[float]  # per batch: parse+map+insert+commit (ms)
    workers: int
    connection: ConnectionStrategy | None  # (None: the runner's default)
    bottleneck: dict[str, Any] | None = None  # diagnostics Verdict.to_dict()
    run: dict[str, Any] = field(default_factory=dict)  # the run document, stored as is


class Measure(Protocol):
    def __call__(self, *, workers: int | None, connection: ConnectionStrategy | None,
                 sample: bool) -> RunMeasurement:
        """Run one migration (``None``: the runner's default); raise
        :class:`MeasureUnsupported` when the runner cannot set ``workers``/``connection``
        (a strategy of :mod:`diagnostics.strategies`)."""

    def strategies(self) -> tuple[str, ...]:
        """The connection strategies the runner can set, in :data:`STRATEGIES` order."""

    def unsupported(self, *, workers: bool) -> str | None:
        """Why the runner cannot set the worker count (None: it can)."""


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
    client_cores: int | None = field(default_factory=os.cpu_count)  # logical cores here
    thresholds: Mapping[str, float] | None = None  # the decision thresholds in force
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
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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
        return TestResult(self.number, self.name, status, verdict, title=self.title, **kw)


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
            "config.driver_section": str(facts0.get("driver_section") or ""),
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
    """Connect+close latency pooled vs unpooled, checkout cost, and what each connection
    strategy costs per batch, as a share of one batch's time."""

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
        per_batch = self._per_strategy(ctx, connect_ms, checkout_ms, batch, len(batch_ms))
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
            "connection cost per batch": per_batch or None,
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
                                    "checkout_ms": checkout, "batch_ms": batch_ms,
                                    "per_strategy": per_batch})

    @staticmethod
    def _per_strategy(ctx: DiagnosisContext, connect_ms: float | None,
                      checkout_ms: float | None, batch: float | None,
                      batches: int) -> dict[str, str]:
        """Per strategy the runner has: what getting a connection costs each batch."""
        if not batch or connect_ms is None:
            return {}
        costs: dict[str, float | None] = {
            "per-batch": connect_ms, "pooled": checkout_ms,
            # one connect per worker for the whole run, spread over its batches
            "persistent": connect_ms / batches if batches else None}
        have = ctx.measure.strategies() if ctx.measure is not None else ()
        return {name: f"{ms:.3g} ms = {100 * ms / (batch + ms):.3g}% of a batch"
                for name, ms in costs.items() if name in have and ms is not None}


class ContentionTest(PoolingTest):
    """Throughput per (worker count, connection strategy), in shuffled rounds; scaling,
    each strategy against per-batch, and the configuration to recommend."""

    number, name, title = 3, "contention", "Contention"

    def available(self, ctx: DiagnosisContext) -> str | None:
        if ctx.measure is None or ctx.stats is None:
            return "no runner/statistics supplied"
        return ctx.measure.unsupported(workers=True)

    def run(self, ctx: DiagnosisContext) -> TestResult:
        assert ctx.measure is not None and ctx.stats is not None
        workers = sorted(set(ctx.workers))
        supported = ctx.measure.strategies()
        modes: tuple[str | None, ...] = supported or (None,)
        configs = [(w, s) for w in workers for s in modes]
        samples: dict[tuple[int, str | None], list[float]] = {c: [] for c in configs}
        rng = random.Random(ctx.seed)
        order: list[tuple[int, tuple[int, str | None]]] = []
        for r in range(ctx.repeat):  # interleaved rounds, shuffled (as the sweep does)
            rnd = list(configs)
            rng.shuffle(rnd)
            order.extend((r, c) for c in rnd)
        for i, (r, (w, s)) in enumerate(order, 1):
            ctx.note(f"contention: run {i}/{len(order)} (round {r + 1}, workers={w}, "
                     f"connections {s or 'default'})")
            m = ctx.measure(workers=w, connection=_enum(s), sample=False)
            samples[(w, s)].append(m.rec_per_min)
            ctx.runs.append({**m.run, "diagnose_test": self.name, "order_index": i - 1,
                             "diagnose_round": r, "strategy": s or "default"})
        config = ctx.results.get("configuration")
        result = self.analyse(ctx.stats, workers, samples, cores=ctx.client_cores,
                              thresholds=ctx.thresholds, batch_size=ctx.batch_size,
                              pooling_in_force=bool(config and
                                                    config.facts.get("config.effective")))
        if not supported:
            result.status = "warning"
            result.messages.insert(0, "connection strategies not compared: the runner "
                                      "cannot set them")
        return result

    def analyse(self, stats: StatsBackend, workers: Sequence[int],
                samples: Mapping[tuple[int, str | None], Sequence[float]], *,
                cores: int | None = None, thresholds: Mapping[str, float] | None = None,
                batch_size: int = 1000, pooling_in_force: bool = False) -> TestResult:
        """Statistics over measured samples (pure; tests call it with synthetic ones).
        ``samples`` is keyed by (workers, strategy) — strategy None alone when the runner
        could not set one; each list holds one value per round, in round order. Lists of
        equal length are compared paired within rounds; otherwise (a run missing) as
        independent samples."""
        limits = resolve_thresholds(thresholds)
        grid = ContentionGrid(stats, sorted(workers), samples, cores)
        rec = grid.recommend()
        ref, base, top_w = grid.reference, grid.workers[0], grid.workers[-1]
        eff = grid.efficiency(top_w, ref) if len(grid.workers) > 1 else None
        scales_to = grid.scales_to(ref)
        poor = eff is not None and eff < limits["SCALING_EFFICIENCY_MIN_PCT"]
        strategy = grid.strategy_effect(rec.config[0], rec.config[1], pooling_in_force)
        more = grid.more_workers(rec.config)
        facts: dict[str, FactValue] = {
            "contention.max_workers": top_w, "contention.efficiency_pct": eff,
            "contention.scales_to": scales_to,
            "contention.scaling_significant": scales_to > base,
            "contention.workers": rec.config[0],
            "contention.strategy": rec.config[1] or "default",
            "contention.flags": flags(*rec.config),
            "contention.median": grid.median(rec.config),
            "contention.default_median": grid.median(grid.default),
            "contention.gain_pct": rec.gain.change_pct if rec.gain else None,
            "contention.gain_significant": bool(rec.gain and rec.gain.outcome == "better"),
            "contention.rounds": grid.rounds,
            "contention.client_cores": cores,
            "contention.oversubscribed": ", ".join(
                str(w) for w in grid.workers if grid.oversubscribed(w)) or "none",
            **strategy.facts(), **more.facts(),
            "contention.rec_text": rec.text(grid),
            "contention.scaling_text": (
                f"{_workers(top_w)} reach {eff:.0f}% of ideal scaling" if eff is not None
                else f"scaling not measured (only {_workers(base)})"),
            "contention.sweep": flags(*rec.config),  # (`bench sweep` takes the same)
            "contention.batch_sizes": f"{max(1, batch_size // 5)}..{batch_size * 5}",
        }
        numbers: dict[str, Any] = {
            f"rec/min ({s or 'default'})": {w: grid.median((w, s)) for w in grid.workers}
            for s in grid.strategies}
        numbers.update({
            "efficiency at max %": _r(eff, 1),
            "scales to workers": scales_to,
            "rounds": grid.rounds,
            "client logical cores": cores,
        })
        if facts["contention.oversubscribed"] != "none":
            numbers["oversubscribed workers"] = facts["contention.oversubscribed"]
        for v in strategy.comparisons:
            numbers[f"{v.b} vs {v.a}"] = v.text()
        if rec.gain is not None:
            numbers[f"{rec.gain.b} vs {rec.gain.a}"] = rec.gain.text()
        messages = []
        if grid.underpowered():
            messages.append(f"{grid.rounds} round(s) cannot reach p < 0.05 once corrected "
                            f"for {grid.family_size()} comparisons: raise --repeat to "
                            f"{grid.rounds_needed()} or more")
        for w in grid.workers:
            if grid.oversubscribed(w):
                messages.append(f"{w} workers on {cores} logical cores: oversubscribed "
                                f"(measured because --workers asked for it)")
        verdict = self._verdict(grid, eff, scales_to, poor, rec, strategy)
        details = {
            "paired": grid.paired, "rounds": grid.rounds, "reference": ref or "default",
            "client_cores": cores, "table": grid.table(),
            "comparisons": {"strategies": [v.to_dict() for v in strategy.all],
                            "scaling": [v.to_dict() for v in grid.scaling(ref)],
                            "vs_default": [v.to_dict() for v in rec.vs_default],
                            "more_workers": [more.versus.to_dict()] if more.versus else []},
            "recommended": {"workers": rec.config[0], "strategy": rec.config[1] or "default",
                            "label": grid.label(rec.config), "flags": flags(*rec.config),
                            "median": grid.median(rec.config),
                            "gain": rec.gain.to_dict() if rec.gain else None,
                            "fastest": grid.label(grid.fastest())},
            "samples": {f"workers={w},strategy={s or 'default'}": list(v)
                        for (w, s), v in samples.items()},
        }
        return self.result("warning" if poor else "ok", verdict, numbers=numbers, facts=facts,
                           messages=messages, details=details)

    @staticmethod
    def _verdict(grid: ContentionGrid, eff: float | None, scales_to: int, poor: bool,
                 rec: Recommended, strategy: StrategyEffect) -> str:
        base, top_w = grid.workers[0], grid.workers[-1]
        if eff is None:
            head = f"only {_workers(base)} measured: scaling not measured"
        else:
            over = (f" (oversubscribed: {grid.cores} logical cores)"
                    if grid.oversubscribed(top_w) else "")
            head = (f"{_workers(top_w)}{over} reach {eff:.0f}% of ideal scaling"
                    + (": workers do not scale" if poor else ""))
            head += (f"; significantly faster than {_workers(base)} up to "
                     f"{_workers(scales_to)}" if scales_to > base
                     else f"; no worker count significantly faster than {_workers(base)}")
        if strategy.comparisons:
            head += f"; {strategy.summary()}"
        return head + f"; recommended: {grid.label(rec.config)} " \
                      f"({grid.median(rec.config):,.0f} rec/min)"


def _enum(strategy: str | None) -> ConnectionStrategy | None:
    return None if strategy is None else ConnectionStrategy(strategy)


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def _p_text(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.1 else f"p={p:.2f}"


@dataclass(frozen=True)
class Versus:
    """``b`` against ``a`` (labels of two measured configurations): the change of b's
    throughput with its interval and p (Holm-adjusted within its family when paired), and
    the outcome from b's side: better, worse, equivalent or inconclusive."""

    a: str
    b: str
    n: int
    median_a: float
    median_b: float
    change_pct: float | None
    ci_low_pct: float | None
    ci_high_pct: float | None
    ci_confidence: float | None
    p: float | None
    outcome: str
    paired: bool
    underpowered: bool
    family: int = 1  # comparisons its p is corrected over (Holm); 1: none

    @classmethod
    def of(cls, a: str, b: str, cmp: Any, family: int = 1) -> Versus:
        d = cmp.to_dict()

        def pct(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else 100 * float(v)

        paired = bool(d.get("paired"))
        if paired:
            outcome, p = str(d["outcome"]), d.get("p_adjusted", d.get("p_value"))
        else:
            outcome = {"-": "better", "+": "worse"}.get(str(d.get("verdict")), "inconclusive")
            p = d.get("mannwhitney_p")
        return cls(a, b, int(d.get("n_a") or 0), float(d["median_a"]), float(d["median_b"]),
                   pct("change"), pct("change_ci_low"), pct("change_ci_high"),
                   d.get("ci_confidence"), None if p is None else float(p), outcome, paired,
                   bool(d.get("underpowered")), family if paired else 1)

    def text(self) -> str:
        """``-29.4% (95% CI -31.0%..-27.2%, p=0.008, 8 paired rounds: worse)``"""
        if self.change_pct is None:
            return f"change unknown ({self.outcome})"
        inside = []
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            level = f"{100 * self.ci_confidence:.0f}% " if self.ci_confidence else ""
            inside.append(f"{level}CI {self.ci_low_pct:+.1f}%..{self.ci_high_pct:+.1f}%")
        inside.append(_p_text(self.p))
        if self.family > 1:
            inside.append(f"Holm over {self.family}")
        inside.append(f"{self.n} {'paired rounds' if self.paired else 'runs each'}: "
                      f"{self.meaning()}")
        return f"{self.change_pct:+.1f}% ({', '.join(inside)})"

    def meaning(self) -> str:
        """The outcome in words; a significant change whose interval reaches into the noise
        band is said to be so, not called insignificant."""
        if self.outcome == "inconclusive" and self.p is not None and self.p < 0.05:
            return "significant, but not beyond the noise band"
        return OUTCOME_WORDS.get(self.outcome, self.outcome)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Versus:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


OUTCOME_WORDS = {"better": "significantly faster", "worse": "significantly slower",
                 "equivalent": "equivalent within the noise band",
                 "inconclusive": "not significant"}

Config = tuple[int, str | None]


@dataclass(frozen=True)
class Recommended:
    config: Config
    gain: Versus | None  # against the default configuration (None: it is the default)
    vs_default: tuple[Versus, ...]  # every configuration against the default (one family)

    def text(self, grid: ContentionGrid) -> str:
        """The configuration to use, how, and the numbers that chose it."""
        label, med = grid.label(self.config), grid.median(self.config)
        head = f"{label} ({flags(*self.config)}): {med:,.0f} rec/min median"
        fastest = grid.fastest()
        if self.gain is None:
            text = f"the default, {head} over {grid.rounds} round(s)"
            others = [v for v in self.vs_default if v.b == grid.label(fastest)]
            if fastest != self.config and others:
                text += (f"; no measured configuration is significantly faster (fastest "
                         f"median: {others[0].b}, {others[0].text()})")
            elif fastest == self.config:
                text += "; the fastest measured"
            if grid.underpowered():
                text += (f"; {grid.rounds} round(s) cannot show a significant difference: "
                         f"raise --repeat to {grid.rounds_needed()}")
            return text
        text = f"{head}, {self.gain.text()} against the default {self.gain.a}"
        if fastest != self.config:
            text += f"; statistically tied with the fastest median, {grid.label(fastest)}"
        return text


@dataclass(frozen=True)
class StrategyEffect:
    """Each strategy against the reference at the recommended worker count."""

    workers: int
    chosen: str | None  # the recommended strategy
    comparisons: tuple[Versus, ...]  # at ``workers``
    all: tuple[Versus, ...]  # at every worker count (the whole Holm family)
    pooling_in_force: bool

    def _alt(self) -> Versus | None:
        for v in self.comparisons:
            if v.b.endswith(f", {self.chosen} connections"):
                return v
        return max(self.comparisons, key=lambda v: v.median_b, default=None)

    def summary(self) -> str:
        """``vs per-batch at 2 workers: pooled -3.1% (not significant)``"""
        parts = [f"{_strategy_of(v.b)} {v.change_pct:+.1f}% ({v.meaning()})"
                 for v in self.comparisons if v.change_pct is not None]
        ref = _strategy_of(self.comparisons[0].a) if self.comparisons else REFERENCE
        return f"vs {ref} at {_workers(self.workers)}: " + ", ".join(parts)

    def text(self) -> str:
        if not self.comparisons:
            return "connection strategies were not compared"
        out = []
        for v in self.comparisons:
            line = f"{_strategy_of(v.b)} connections measured {v.text()} against " \
                   f"{_strategy_of(v.a)} at {_workers(self.workers)}"
            if _strategy_of(v.b) == "pooled" and v.outcome == "worse":
                line += " — disable pooling" if self.pooling_in_force else " — keep pooling off"
            out.append(line)
        return "; ".join(out)

    def facts(self) -> dict[str, FactValue]:
        alt = self._alt()
        return {"contention.strategy_alt": _strategy_of(alt.b) if alt else None,
                "contention.strategy_change_pct": alt.change_pct if alt else None,
                "contention.strategy_significant": bool(alt and alt.outcome == "better"),
                "contention.strategy_text": self.text()}


@dataclass(frozen=True)
class MoreWorkers:
    """The next worker count above the recommended one, same strategy (if measured)."""

    workers: int
    versus: Versus | None
    measured_max: int
    cores: int | None

    def text(self) -> str:
        v = self.versus
        if v is None:
            if self.cores and self.workers < self.cores:
                return (f"{_workers(self.workers)} is the most measured; the client has "
                        f"{self.cores} logical cores: bench diagnose pooling --workers "
                        f"{self.workers},{self.cores} would tell whether more help")
            cores = f" ({self.cores} logical cores on the client)" if self.cores else ""
            return f"{_workers(self.workers)} is the most measured{cores}"
        more = _workers_of(v.b)
        if v.outcome == "worse":
            return (f"More workers measured slower ({more}: {v.text()} against "
                    f"{self.workers}): don't add workers")
        if v.outcome == "better":
            return f"{more} measured {v.text()} against {self.workers}"
        return (f"{more} measured {v.text()} against {self.workers}: no gain beyond the "
                f"noise, don't add workers")

    def facts(self) -> dict[str, FactValue]:
        v = self.versus
        return {"contention.more_workers": _workers_n(v.b) if v else None,
                "contention.more_change_pct": v.change_pct if v else None,
                "contention.more_outcome": v.outcome if v else None,
                "contention.more_text": self.text()}


def _strategy_of(label: str) -> str:
    return label.rsplit(", ", 1)[-1].split(" ")[0]


def _workers_n(label: str) -> int:
    return int(label.split(" ", 1)[0])


def _workers_of(label: str) -> str:
    return _workers(_workers_n(label))


class ContentionGrid:
    """The contention test's samples with the statistics the verdict and the tree read.

    Every comparison reported belongs to one family, fixed before looking at the data
    (:meth:`pairs`): each configuration against the default (fewest workers, per-batch), and
    each strategy against per-batch at the other worker counts. It is Holm-corrected as a
    whole, so a pair has one p wherever it is shown. The only other comparison shown is the
    recommended configuration against the next worker count with its strategy, when that
    pair is not in the family (one comparison, uncorrected)."""

    def __init__(self, stats: StatsBackend, workers: Sequence[int],
                 samples: Mapping[tuple[int, str | None], Sequence[float]],
                 cores: int | None) -> None:
        self.stats, self.workers, self.samples, self.cores = stats, list(workers), samples, cores
        order = [s.name for s in STRATEGIES]
        self.strategies: list[str | None] = [
            s for s in (*order, None) if (self.workers[0], s) in samples]
        self.reference: str | None = (REFERENCE if REFERENCE in self.strategies
                                      else self.strategies[0])
        self.configs: list[Config] = [(w, s) for w in self.workers for s in self.strategies]
        self.paired = len({len(samples[c]) for c in self.configs}) == 1
        self.rounds = min(len(samples[c]) for c in self.configs)
        self.default: Config = (self.workers[0], self.reference)
        self._desc = {c: stats.describe(samples[c]) for c in self.configs}
        pairs = self.pairs()
        self.compared: dict[tuple[Config, Config], Versus] = dict(
            zip(pairs, self.family(pairs), strict=True))

    # -- single numbers
    def median(self, c: Config) -> float:
        return float(self._desc[c].median)

    def oversubscribed(self, w: int) -> bool:
        return self.cores is not None and w > self.cores

    def label(self, c: Config) -> str:
        w, s = c
        over = " (oversubscribed)" if self.oversubscribed(w) else ""
        return f"{_workers(w)}{over}, {s or 'default'} connections"

    def efficiency(self, w: int, s: str | None) -> float | None:
        base = self.workers[0]
        ideal = self.median((base, s)) * w / base
        return 100 * self.median((w, s)) / ideal if ideal else None

    def fastest(self) -> Config:
        return max(self.configs, key=self.median)  # (the simplest of equal medians)

    # -- comparisons
    def pairs(self) -> list[tuple[Config, Config]]:
        """The family: every configuration against the default, then every strategy
        against the reference at each other worker count."""
        ref = self.reference
        out = [(self.default, c) for c in self.configs if c != self.default]
        out += [((w, ref), (w, s)) for w in self.workers[1:] for s in self.strategies
                if s != ref]
        return out

    def _raw(self, a: Config, b: Config) -> Any:
        if self.paired:
            return self.stats.paired_compare(self.samples[a], self.samples[b],
                                             higher_is_better=True)
        return self.stats.compare(self.samples[a], self.samples[b], higher_is_better=True)

    def family(self, pairs: Sequence[tuple[Config, Config]]) -> list[Versus]:
        """Each pair compared, Holm-corrected over ``pairs`` when paired."""
        raw = [self._raw(a, b) for a, b in pairs]
        if self.paired and raw:
            raw = self.stats.holm_family(raw)
        return [Versus.of(self.label(a), self.label(b), r, len(pairs))
                for (a, b), r in zip(pairs, raw, strict=True)]

    def get(self, a: Config, b: Config) -> Versus:
        """``b`` against ``a``: the family's comparison, else a single one."""
        found = self.compared.get((a, b))
        return found if found is not None else self.family([(a, b)])[0]

    def scales_to(self, s: str | None) -> int:
        """The most workers whose throughput (strategy ``s``) is significantly above the
        default's; the default's worker count when none is."""
        better = [w for w in self.workers[1:]
                  if self.get(self.default, (w, s)).outcome == "better"]
        return max(better, default=self.workers[0])

    def scaling(self, s: str | None) -> list[Versus]:
        return [self.get(self.default, (w, s)) for w in self.workers[1:]]

    def family_size(self) -> int:
        return max(1, len(self.compared))

    def underpowered(self) -> bool:
        """Can the corrected family reach significance at all with these rounds?"""
        return self.rounds < self.rounds_needed()

    def rounds_needed(self) -> int:
        """Rounds at which the family's smallest possible p survives Holm's correction
        (exact signed-rank: 2 / 2**n)."""
        n = 2
        while 2.0 ** (1 - n) * self.family_size() >= 0.05:
            n += 1
        return n

    def recommend(self) -> Recommended:
        """The simplest configuration (fewest workers, then strategy order) among those
        significantly faster than the default that the fastest of them does not
        significantly beat; the default when none is significantly faster."""
        vs_default = tuple(self.compared[(self.default, c)] for c in self.configs
                           if c != self.default)
        winners = [c for c in self.configs if c != self.default
                   and self.compared[(self.default, c)].outcome == "better"]
        if not winners:
            return Recommended(self.default, None, vs_default)
        top = max(winners, key=self.median)
        rest = [c for c in winners if c != top]
        # (a choice among the winners, not a reported comparison)
        beaten = {c for c, v in zip(rest, self.family([(c, top) for c in rest]), strict=True)
                  if v.outcome == "better"}
        chosen = next(c for c in winners if c == top or c not in beaten)
        return Recommended(chosen, self.compared[(self.default, chosen)], vs_default)

    def strategy_effect(self, w: int, chosen: str | None,
                        pooling_in_force: bool) -> StrategyEffect:
        ref = self.reference
        every = tuple(self.get((x, ref), (x, s)) for x in self.workers for s in self.strategies
                      if s != ref)
        here = tuple(self.get((w, ref), (w, s)) for s in self.strategies if s != ref)
        return StrategyEffect(w, chosen, here, every, pooling_in_force)

    def more_workers(self, c: Config) -> MoreWorkers:
        w, s = c
        above = [x for x in self.workers if x > w]
        v = self.get(c, (above[0], s)) if above else None
        return MoreWorkers(w, v, self.workers[-1], self.cores)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.configs:
            d = self._desc[c]
            rows.append({"workers": c[0], "strategy": c[1] or "default",
                         "label": self.label(c), "n": d.n, "median": d.median,
                         "ci_low": d.ci_low, "ci_high": d.ci_high,
                         "ci_confidence": d.ci_confidence,
                         "efficiency_pct": (self.efficiency(*c) if len(self.workers) > 1
                                            else None),
                         "oversubscribed": self.oversubscribed(c[0]),
                         "vs_default": (self.compared[(self.default, c)].to_dict()
                                        if c != self.default else None)})
        return rows


class BottleneckTest(PoolingTest):
    """The highest worker count, sampled: which resource saturates, with the evidence."""

    number, name, title = 4, "bottleneck", "Bottleneck"

    def available(self, ctx: DiagnosisContext) -> str | None:
        if ctx.measure is None:
            return "no runner supplied"
        return ctx.measure.unsupported(workers=True)

    def run(self, ctx: DiagnosisContext) -> TestResult:
        assert ctx.measure is not None
        w = max(ctx.workers)
        strategy = self._strategy(ctx, w)
        ctx.note(f"bottleneck: one sampled run at {w} workers, connections "
                 f"{strategy or 'default'}")
        m = ctx.measure(workers=w, connection=_enum(strategy), sample=True)
        ctx.runs.append({**m.run, "diagnose_test": self.name, "strategy": strategy or "default"})
        v = m.bottleneck
        if not v:
            return self.result("warning", "no samples: no bottleneck could be attributed",
                               facts={"bottleneck.label": None})
        return self.analyse(v, w, strategy, m.rec_per_min, (m.run.get("samples") or {})
                            .get("info") or {})

    @staticmethod
    def _strategy(ctx: DiagnosisContext, w: int) -> str | None:
        """The fastest strategy the contention test measured at ``w`` workers."""
        supported = ctx.measure.strategies() if ctx.measure is not None else ()
        contention = ctx.results.get("contention")
        rows = [r for r in (contention.details.get("table") or [] if contention else [])
                if r.get("workers") == w and r.get("strategy") in supported]
        if rows:
            return str(max(rows, key=lambda r: float(r["median"]))["strategy"])
        return REFERENCE if REFERENCE in supported else (supported[0] if supported else None)

    def analyse(self, v: Mapping[str, Any], workers: int, strategy: str | None,
                rec_per_min: float, info: Mapping[str, Any]) -> TestResult:
        """The verdict of the sampled run as the tree reads it (pure)."""
        facts_in = v.get("facts") or {}

        def fact(name: str) -> float | None:
            f = facts_in.get(name)
            return float(f["value"]) if isinstance(f, Mapping) and "value" in f else None

        host = info.get("host") or {}
        cores = host.get("cores")
        local = bool(host.get("dbserver_pid"))
        server_cores = (info.get("mssql") or {}).get("cpu_count") or (cores if local else None)
        label = v.get("label")
        usable = max(1, min(workers, int(cores))) if cores else None
        blockers = [b for b in v.get("blockers") or [] if isinstance(b, Mapping)]
        # Each fact once, its strongest rule first (an unknown verdict lists every label's
        # rules, and a fact may pass two thresholds of one label).
        by_fact: dict[str, Mapping[str, Any]] = {}
        for e in sorted((e for e in v.get("evidence") or [] if e.get("weight", 0) > 0),
                        key=lambda e: -float(e.get("weight", 0))):
            by_fact.setdefault(str(e.get("fact")), e)
        evidence = [evidence_text(e) for e in by_fact.values()][:4]
        server_text = (f"; the database server runs on this host and shares its {cores} cores"
                       if local and cores else f"; the server has {server_cores} cores"
                       if server_cores else "")
        numbers = {"workers": workers, "connections": strategy or "default",
                   "rec/min": round(rec_per_min, 1), "label": label,
                   "confidence": v.get("level"), "disk busy %": _r(fact("disk.busy_pct"), 1),
                   "server CPU %": _r(fact("db.cpu_pct"), 1),
                   "run's CPU (cores)": _r(fact("client.cpu_cores"), 2),
                   "usable cores": usable,
                   "run's CPU % of usable cores": _r(fact("client.cpu_of_capacity_pct"), 1),
                   "other processes' CPU % of host": _r(fact("host.others_cpu_pct"), 1),
                   "steal %": _r(fact("host.steal_pct"), 1),
                   "server cores": server_cores}
        facts: dict[str, FactValue] = {
            "bottleneck.label": label,
            "bottleneck.description": str(v.get("description") or ""),
            "bottleneck.workers": workers,
            "bottleneck.strategy": strategy or "default",
            "bottleneck.disk_busy_pct": fact("disk.busy_pct"),
            "bottleneck.db_cpu_pct": fact("db.cpu_pct"),
            "bottleneck.client_cpu_pct": fact("client.cpu_of_capacity_pct"),
            "bottleneck.client_cores": fact("client.cpu_cores"),
            "bottleneck.usable_cores": usable,
            "bottleneck.others_cpu_pct": fact("host.others_cpu_pct"),
            "bottleneck.steal_pct": fact("host.steal_pct"),
            "bottleneck.lock_share_pct": fact("waits.lock_share_pct"),
            "bottleneck.connect_share_pct": fact("stage.connect_share_pct"),
            "bottleneck.blocker": (f" (blocked by {blockers[0].get('description')})"
                                   if blockers and label == "lock-contention" else ""),
            "server.cores": server_cores, "server.local": local,
            "bottleneck.server_text": server_text,
            "bottleneck.evidence": "; ".join(evidence[:3]) or "no rule fired"}
        conf = v.get("confidence")
        verdict = (f"{label} — {v.get('description', '')}"
                   + (f" (confidence {v.get('level')}, {float(conf):.2f})"
                      if conf is not None and label != "unknown" else ""))
        if facts["bottleneck.blocker"]:
            verdict += str(facts["bottleneck.blocker"])
        return self.result("ok" if label != "unknown" else "warning", verdict,
                           numbers=numbers, facts=facts, messages=evidence,
                           details={"verdict": dict(v)})


def evidence_text(e: Mapping[str, Any]) -> str:
    """``client.cpu_of_capacity_pct = 95% of 2 usable cores (>= 80: …)``"""
    unit = str(e.get("unit") or "")
    value = f"{float(e['value']):.4g}" + (unit if unit.startswith("%") else f" {unit}")
    rule = f"{e.get('op', '')} {float(e['threshold']):g}: " if "threshold" in e else ""
    return f"{e['fact']} = {value.strip()} ({rule}{e.get('reason', '')})"


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
    "ContentionGrid",
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
    "Versus",
    "decision_facts",
    "evidence_text",
    "run_probe",
    "suggested_ini",
]


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "probe":
        raise SystemExit(_probe_main(sys.argv[2:]))
    raise SystemExit("usage: python -m diagnostics.pooling probe MODE CYCLES FLAG < target")
