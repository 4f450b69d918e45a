"""What each ODBC driver family reads from a connection string (its documented keywords).

ODBC drivers ignore keywords they do not know, silently: a misspelled ``Sever=`` connects
to the default server (for psqlODBC, a Unix socket) and the error names the socket, not the
typo. :func:`misspelled_keywords` finds such keys and the documented keyword each probably
meant (:mod:`difflib`), for connection errors and :mod:`diagnostics.connstr_audit`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Literal

Family = Literal["mssql", "freetds", "psqlodbc", "mariadb", "mysql", "sqlite", "unknown"]

FAMILY_NAMES: dict[str, str] = {
    "mssql": "Microsoft ODBC Driver for SQL Server",
    "freetds": "FreeTDS",
    "psqlodbc": "psqlODBC (PostgreSQL)",
    "mariadb": "MariaDB Connector/ODBC",
    "mysql": "MySQL Connector/ODBC",
    "sqlite": "SQLite ODBC (Christian Werner)",
    "unknown": "an unidentified driver",
}


def norm(key: str) -> str:
    """A keyword as drivers compare it: case, spaces and underscores do not matter."""
    return key.strip().lower().replace(" ", "").replace("_", "")


# Read by the driver manager itself (SQLDriverConnect), whatever the driver.
DRIVER_MANAGER_NAMES: tuple[str, ...] = ("Driver", "DSN", "FileDSN", "SaveFile")

# Per driver family, the keywords its documentation lists (aliases included). A keyword
# missing here is reported as "unknown to this driver": probably ignored, worth a look.
KEYWORD_NAMES: dict[str, tuple[str, ...]] = {
    # learn.microsoft.com: "DSN and connection string keywords and attributes" (17/18).
    "mssql": (
        "Server", "Address", "Addr", "Database", "UID", "PWD", "Trusted_Connection",
        "Encrypt", "TrustServerCertificate", "HostNameInCertificate", "ServerCertificate",
        "MultiSubnetFailover", "ApplicationIntent", "APP", "WSID", "Language",
        "MARS_Connection", "Authentication", "ColumnEncryption", "ConnectRetryCount",
        "ConnectRetryInterval", "KeepAlive", "KeepAliveInterval", "AnsiNPW",
        "AttachDBFileName", "AutoTranslate", "Description", "Failover_Partner",
        "FailoverPartnerSPN", "ServerSPN", "QuotedId", "Regional", "Network", "Net",
        "TransparentNetworkIPResolution", "UseFMTONLY", "LongAsMax", "ClientCertificate",
        "ClientKey", "KeystoreAuthentication", "KeystorePrincipalId", "KeystoreSecret",
        "IpAddressPreference", "StatsLog_On", "StatsLogFile", "GetDataExtensions",
        "Replication", "RetryExec", "SQLSetConnectAttr"),
    # freetds.org userguide: "ODBC-only connection attributes" + odbc.ini keys.
    "freetds": (
        "Server", "Servername", "Address", "Port", "Database", "UID", "PWD",
        "TDS_Version", "ClientCharset", "APP", "WSID", "Language", "Trusted_Connection",
        "Encryption", "Encrypt", "AttachDbFilename", "Domain", "UseNTLMv2", "REALM",
        "ServerSPN", "MARS_Connection", "Timeout", "ConnectTimeout", "TextSize",
        "ApplicationIntent", "DebugFlags", "DumpFile", "Description", "HostName",
        "CAFile", "CRLFile", "Check_Certificate_Hostname", "SSL_Version"),
    # odbc.postgresql.org/docs/config-opt.html (long names; the two-letter aliases are rare).
    "psqlodbc": (
        "Servername", "Server", "Port", "Database", "UID", "Username", "PWD", "Password",
        "SSLmode", "ReadOnly", "Protocol", "UseDeclareFetch", "Fetch", "UseServerSidePrepare",
        "BatchSize", "CommLog", "Debug", "ConnSettings", "pqopt", "MaxVarcharSize",
        "MaxLongVarcharSize", "TextAsLongVarchar", "UnknownsAsLongVarchar", "BoolsAsChar",
        "Parse", "LFConversion", "UpdatableCursors", "TrueIsMinus1", "ByteaAsLongVarBinary",
        "LowerCaseIdentifier", "ShowOidColumn", "FakeOidIndex", "RowVersioning",
        "ShowSystemTables", "UnknownSizes", "ExtraSysTablePrefixes", "GssAuthUseGSS",
        "XaOpt", "KeepaliveTime", "KeepaliveInterval", "OptionalErrors", "FetchRefcursors",
        "IgnoreTimeout", "NumericAsLongVarchar", "Description", "Optimizer", "Ksqo",
        "DisallowPremature"),
    # mariadb.com: "About MariaDB Connector/ODBC" — connection parameters.
    "mariadb": (
        "Server", "Port", "Database", "DB", "UID", "User", "PWD", "Password", "Socket",
        "Option", "Options", "Charset", "InitStmt", "ConnectTimeout", "ReadTimeout",
        "WriteTimeout", "SSLKey", "SSLCert", "SSLCA", "SSLCAPath", "SSLCipher", "SSLVerify",
        "SSLCRL", "SSLCRLPath", "TlsVersion", "TlsPeerFP", "TlsPeerFPList", "ForceTLS",
        "NamedPipe", "TCPIP", "Description", "AutoReconnect", "NoBigint", "NoCache",
        "MultiStatements", "NoSsps", "NoLocalInfile", "UseCompression", "ServerKey",
        "OPT_MULTI_STATEMENTS", "NO_SSPS"),
    # dev.mysql.com: "Connector/ODBC Connection Parameters".
    "mysql": (
        "Server", "Port", "Database", "DB", "UID", "User", "PWD", "Password", "Socket",
        "Option", "Charset", "InitStmt", "SSLMode", "SSLKey", "SSLCert", "SSLCA",
        "SSLCAPath", "SSLCipher", "SSLVerify", "ReadTimeout", "WriteTimeout",
        "Interactive", "Prefetch", "No_SSPS", "Auto_Reconnect", "Multi_Statements",
        "No_Prompt", "Description", "Big_Packets", "Compressed_Proto", "Enable_Cleartext_Plugin",
        "Get_Server_Public_Key", "Default_Auth", "Plugin_Dir", "No_Schema", "No_Cache",
        "Log_Query", "Min_Date_To_Zero", "Zero_Date_To_Min", "TLS_Versions"),
    # ch-werner.de/sqliteodbc: DSN keys of sqlite3odbc.
    "sqlite": (
        "Database", "Timeout", "StepAPI", "SyncPragma", "NoTXN", "ShortNames", "LongNames",
        "NoCreat", "NoWCHAR", "FKSupport", "JournalMode", "LoadExt", "OEMCP", "BigInt",
        "JDConv", "Description", "Attach"),
}

DRIVER_MANAGER_KEYWORDS = frozenset(norm(n) for n in DRIVER_MANAGER_NAMES)
DRIVER_KEYWORDS: dict[str, frozenset[str]] = {
    family: frozenset(norm(n) for n in names) for family, names in KEYWORD_NAMES.items()}

# How close (difflib ratio on normalised keys) a keyword must be to count as a misspelling:
# "Sever" → "Server" is 0.91, "Databse" → "Database" 0.93; unrelated keys stay below.
SUGGEST_CUTOFF = 0.8


def driver_family(driver: str) -> Family:
    """The family of a driver from its registered name or library path."""
    d = driver.strip().strip("{}").lower()
    if not d:
        return "unknown"
    if "freetds" in d or "tdsodbc" in d:
        return "freetds"
    if "sql server" in d or "msodbcsql" in d or "sql native client" in d:
        return "mssql"
    if "postgres" in d or "psqlodbc" in d:
        return "psqlodbc"
    if "mariadb" in d or "maodbc" in d:
        return "mariadb"
    if "mysql" in d or "myodbc" in d:
        return "mysql"
    if "sqlite" in d:
        return "sqlite"
    return "unknown"


def nearest_keyword(key: str, family: str) -> str | None:
    """The documented keyword of ``family`` (or of the driver manager) that ``key`` most
    probably misspells, as documented; None when nothing is close."""
    names = [*DRIVER_MANAGER_NAMES, *KEYWORD_NAMES.get(family, ())]
    by_norm = {norm(n): n for n in names}
    found = difflib.get_close_matches(norm(key), list(by_norm), n=1, cutoff=SUGGEST_CUTOFF)
    return by_norm[found[0]] if found else None


def is_known(key: str, family: str) -> bool:
    k = norm(key)
    return k in DRIVER_MANAGER_KEYWORDS or k in DRIVER_KEYWORDS.get(family, frozenset())


def misspelled_keywords(keys: Iterable[str], family: str) -> list[tuple[str, str]]:
    """``(key as written, keyword it probably means)`` for each key the family's driver
    does not document but that is close to one it does."""
    if family not in KEYWORD_NAMES:
        return []
    out: list[tuple[str, str]] = []
    for key in keys:
        if is_known(key, family):
            continue
        near = nearest_keyword(key, family)
        if near is not None:
            out.append((key, near))
    return out
