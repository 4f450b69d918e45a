"""Which keywords of an ODBC connection string the driver will actually read.

ODBC drivers ignore keywords they do not know — silently: ``SQLDriverConnect`` succeeds and
the setting simply never happens. The classic trap, which `bench diagnose pooling` looks for
first, is an ADO.NET / SqlClient connection string pasted into pyodbc:
``Pooling=true;Max Pool Size=100`` reads like connection pooling and does nothing, because
pooling under ODBC belongs to the driver manager, not to the connection string.

:func:`audit_connection_string` classifies every keyword against the keyword table of the
driver family (:data:`migrator.odbckeys.DRIVER_KEYWORDS`, taken from each driver's
documentation), flags the ADO.NET-only ones (:data:`ADONET_ONLY`) with the real ODBC way to
get their effect, names the ADO.NET spellings of keywords ODBC spells differently
(:data:`ADONET_SPELLINGS`), and for any other unknown keyword the documented one it most
probably misspells (``Sever`` → "did you mean Server?").
Pure functions, no I/O; values of secret keys never appear in the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from migrator.connstr import (
    ConnectionStringError,
    is_secret_key,
    parse_connection_string,
)
from migrator.odbckeys import (
    DRIVER_KEYWORDS,
    DRIVER_MANAGER_KEYWORDS,
    FAMILY_NAMES,
    Family,
    driver_family,
    nearest_keyword,
    norm as _norm,
)

Status = Literal["known", "adonet-only", "adonet-spelling", "unknown", "driver-manager"]

__all__ = ["ADONET_ONLY", "ADONET_SPELLINGS", "DRIVER_KEYWORDS", "FAMILY_NAMES",
           "ConnectionStringAudit", "KeywordFinding", "audit_connection_string",
           "classify_keyword", "driver_family"]


@dataclass(frozen=True)
class OdbcWay:
    """What an ADO.NET-only keyword was meant to do, and how ODBC really does it."""

    meaning: str
    unixodbc: str
    windows: str


# SqlClient / ADO.NET connection-pool keywords: no ODBC driver reads them. Under ODBC the
# driver manager pools (unixODBC: odbcinst.ini; Windows: SQL_ATTR_CONNECTION_POOLING, which
# is what pyodbc.pooling sets). Key names of unixODBC 2.3.11, read from libodbc.so.2.
ADONET_ONLY: dict[str, OdbcWay] = {
    _norm("Pooling"): OdbcWay(
        "turn connection pooling on/off",
        "odbcinst.ini: [ODBC] Pooling=Yes plus CPTimeout=<seconds> in the driver's section "
        "(bench: --pooling on writes a private ODBCSYSINI with both)",
        "pyodbc.pooling = True/False before the first connect (the driver manager pools)"),
    _norm("Max Pool Size"): OdbcWay(
        "cap the pooled connections",
        "odbcinst.ini: [ODBC] PoolMaxSize=<n> (PoolWaitTimeout=<s> for how long to wait "
        "at the cap)",
        "no per-pool cap in the Windows driver manager; bound it with your worker count"),
    _norm("Min Pool Size"): OdbcWay(
        "keep connections open while idle",
        "no pre-opened minimum in unixODBC; idle connections stay pooled for CPTimeout "
        "seconds (driver section)",
        "no minimum; CPTimeout in the driver's registry key keeps idle ones"),
    _norm("Connection Lifetime"): OdbcWay(
        "retire pooled connections older than N seconds",
        "odbcinst.ini: CPTimeToLive=<seconds> in the driver's section",
        "no equivalent; CPTimeout bounds idle time only"),
    _norm("Load Balance Timeout"): OdbcWay(
        "close pooled connections idle longer than N seconds",
        "odbcinst.ini: CPTimeout=<seconds> in the driver's section",
        "CPTimeout in the driver's registry key"),
    _norm("Connection Reset"): OdbcWay(
        "reset the session when a pooled connection is reused",
        "the driver resets on reuse when it supports it (SQL Server: sp_reset_connection); "
        "not configurable from the connection string",
        "as on unixODBC"),
    _norm("Enlist"): OdbcWay(
        "enlist in the ambient System.Transactions transaction",
        "no ODBC equivalent (distributed transactions are not used by this tool)",
        "no ODBC equivalent"),
    _norm("Persist Security Info"): OdbcWay(
        "keep the password readable on the connection object",
        "no ODBC equivalent (ODBC never exposes the password after connecting)",
        "no ODBC equivalent"),
    _norm("Asynchronous Processing"): OdbcWay(
        "allow async commands", "no ODBC connection-string equivalent", "no equivalent"),
}

# ADO.NET spellings of settings ODBC has under another name: (ODBC keyword, note).
ADONET_SPELLINGS: dict[str, tuple[str, str]] = {
    _norm("Data Source"): ("Server", "SqlClient's server keyword"),
    _norm("Initial Catalog"): ("Database", "SqlClient's database keyword"),
    _norm("User ID"): ("UID", "SqlClient's user keyword"),
    _norm("Integrated Security"): ("Trusted_Connection=yes", "Windows authentication"),
    _norm("MultipleActiveResultSets"): ("MARS_Connection=yes", "MARS"),
    _norm("Application Name"): ("APP", "application name shown by the server"),
    _norm("Connect Timeout"): ("pyodbc.connect(timeout=…)", "login timeout"),
    _norm("Connection Timeout"): ("pyodbc.connect(timeout=…)", "login timeout"),
    _norm("Packet Size"): ("(driver default; not settable on ODBC Driver 17/18)", "TDS packet"),
    _norm("Workstation ID"): ("WSID", "client host name shown by the server"),
}


@dataclass(frozen=True)
class KeywordFinding:
    keyword: str  # as written
    value: str  # "***" for secrets
    status: Status
    note: str = ""

    @property
    def ignored(self) -> bool:
        """Will the driver (probably) not act on this keyword?"""
        return self.status in ("adonet-only", "adonet-spelling", "unknown")


@dataclass(frozen=True)
class ConnectionStringAudit:
    driver: str  # the Driver=/DSN's driver as given ("" when neither)
    family: Family
    dsn: str
    findings: tuple[KeywordFinding, ...]
    duplicates: tuple[str, ...] = ()
    error: str = ""

    @property
    def adonet_only(self) -> list[KeywordFinding]:
        return [f for f in self.findings if f.status == "adonet-only"]

    @property
    def pooling_keywords(self) -> list[KeywordFinding]:
        """The ADO.NET pool keywords present: evidence the user believes pooling is set
        up from the connection string."""
        pool = {_norm(k) for k in ("Pooling", "Max Pool Size", "Min Pool Size",
                                   "Connection Lifetime", "Load Balance Timeout")}
        return [f for f in self.findings if _norm(f.keyword) in pool]

    def intended_pooling(self) -> bool | None:
        """What the connection string says the user wants: ``Pooling=false`` → False, any
        other pool keyword → True, none → None (it does not say)."""
        for f in self.pooling_keywords:
            if _norm(f.keyword) == "pooling":
                return f.value.strip().lower() not in ("false", "no", "0", "off")
        return True if self.pooling_keywords else None

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "family": self.family,
                "family_name": FAMILY_NAMES[self.family], "dsn": self.dsn,
                "findings": [{**asdict(f), "ignored": f.ignored} for f in self.findings],
                "duplicates": list(self.duplicates), "error": self.error,
                "adonet_only": [f.keyword for f in self.adonet_only],
                "intended_pooling": self.intended_pooling()}


def classify_keyword(key: str, family: Family) -> tuple[Status, str]:
    """``(status, note)`` of one keyword for one driver family."""
    k = _norm(key)
    if k in DRIVER_MANAGER_KEYWORDS:
        return "driver-manager", "read by the driver manager"
    if k in ADONET_ONLY:
        way = ADONET_ONLY[k]
        return "adonet-only", (f"ADO.NET/SqlClient only — ODBC ignores it ({way.meaning}); "
                               f"ODBC way: {way.unixodbc}; on Windows: {way.windows}")
    known = DRIVER_KEYWORDS.get(family)
    if known is not None and k in known:
        return "known", ""
    if k in ADONET_SPELLINGS:
        odbc, what = ADONET_SPELLINGS[k]
        return "adonet-spelling", f"ADO.NET spelling ({what}); ODBC: {odbc}"
    if known is None:
        return "unknown", "driver not identified: cannot tell whether it reads this keyword"
    near = nearest_keyword(key, family)
    hint = f" (did you mean {near}?)" if near else ""
    return "unknown", f"not a documented {FAMILY_NAMES[family]} keyword: probably ignored{hint}"


def audit_connection_string(text: str, *, driver: str | None = None,
                            dsn_driver: str | None = None) -> ConnectionStringAudit:
    """Classify every keyword of ``text``.

    ``driver`` overrides the family detection (e.g. the connected driver's name from
    ``SQLGetInfo``); ``dsn_driver`` is the ``Driver`` of the DSN in odbc.ini when the string
    names a ``DSN`` (the caller looks it up: this function does no I/O).
    """
    try:
        params = parse_connection_string(text)
    except ConnectionStringError as exc:
        return ConnectionStringAudit("", "unknown", "", (), (), str(exc))
    given_driver = params.get_any("Driver") or ""
    dsn = params.get_any("DSN") or ""
    name = driver or given_driver or dsn_driver or ""
    family = driver_family(name)
    if family == "unknown" and driver:  # SQLGetInfo names a library; try the string too
        family = driver_family(given_driver or dsn_driver or "")
    seen: dict[str, int] = {}
    findings: list[KeywordFinding] = []
    for key, value in params.pairs:
        seen[_norm(key)] = seen.get(_norm(key), 0) + 1
        status, note = classify_keyword(key, family)
        shown = "***" if is_secret_key(key) else value
        findings.append(KeywordFinding(key, shown, status, note))
    dups = tuple(k for k, n in seen.items() if n > 1)
    return ConnectionStringAudit(given_driver or dsn_driver or "", family, dsn,
                                 tuple(findings), dups)
