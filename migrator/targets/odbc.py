"""``odbc:CONNECTION-STRING`` targets through pyodbc (and ``odbc:DSN=name``).

The dialect is detected from the connected server's ``SQL_DBMS_NAME`` — never guessed from
the string — and chosen from :data:`ODBC_DIALECTS`. ``pyodbc`` is imported on first use
only: it needs the unixODBC driver manager (``libodbc.so.2``), and the SQLite default must
work without it.

Insert methods (``insert_rows(..., method)``):

* ``executemany`` — pyodbc ``executemany``: one execute per row (one round trip each).
* ``fast`` — pyodbc ``fast_executemany``: ODBC parameter arrays, where the driver has them.
* ``values`` — multi-row ``INSERT … VALUES (…), (…)`` sized under the dialect's and the
  driver's parameter cap.
* ``copy`` — PostgreSQL ``COPY … FROM STDIN`` through psycopg (the native bulk path).
* ``auto`` (or None) — the dialect's measured fastest correct method.

Transactions: pyodbc runs with autocommit off, so a transaction starts with the first
statement; :meth:`OdbcConnection.begin` only marks the batch boundary. When ``copy`` is
used, the batch's remaining statements (the checkpoint row) run on the same psycopg
session, so the batch still commits atomically with its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from migrator import odbcini, session
from migrator.connstr import (
    ConnectionParams,
    ConnectionStringError,
    parse_connection_string,
    redact_connection_string,
    with_params,
)
from migrator.errors import DatabaseError, TargetError
from migrator.odbckeys import driver_family, misspelled_keywords
from migrator.retry import CONFLICT, LOST, SERVER, classify, native_code
from migrator.targets.base import (
    Connection,
    Dialect,
    InsertMethod,
    IntegrityViolation,
    Namespace,
    Row,
    Target,
    TargetInfo,
    statement_kind,
)

if TYPE_CHECKING:
    from migrator.runlock import HeldLock, Holder, LockName, LockSQL

INSERT_METHODS = ("executemany", "fast", "values", "copy")
# pyodbc counts parameter markers in a signed 16-bit SQLSMALLINT: 65,200 parameters become
# "-336 parameter markers" (measured). Whatever the server allows, one statement binds
# at most this many through pyodbc.
PYODBC_MAX_PARAMS = 32767
LOGIN_TIMEOUT = 15  # seconds

MISSING_UNIXODBC = (
    "odbc: targets need the unixODBC driver manager (libodbc.so.2), which is not installed; "
    "install it: apt-get install unixodbc (Debian/Ubuntu) or brew install unixodbc (macOS)")

# SQL_DBMS_NAME prefix (lower case) → "module:Class". Imported lazily, like the schemes.
ODBC_DIALECTS: dict[str, str] = {
    "postgresql": "migrator.targets.postgresql:PostgresDialect",
    "microsoft sql server": "migrator.targets.mssql:MSSQLDialect",
    "mariadb": "migrator.targets.mysql:MySQLDialect",
    "mysql": "migrator.targets.mysql:MySQLDialect",
    "sqlite": "migrator.targets.sqlite_odbc:SQLiteOdbcDialect",
}


def import_pyodbc() -> Any:
    """``import pyodbc`` or a one-line :class:`TargetError` saying how to install what's
    missing (unixODBC for the shared library, pip for the module)."""
    try:
        import pyodbc
    except ImportError as exc:
        text = str(exc)
        if "libodbc" in text or "cannot open shared object" in text or "Library not loaded" \
                in text:
            raise TargetError(MISSING_UNIXODBC) from None
        raise TargetError(f"odbc: targets need the pyodbc module ({text}); "
                          f"pip install pyodbc") from None
    return pyodbc


def _state_and_text(exc: BaseException) -> tuple[str, str]:
    """pyodbc errors carry ``(sqlstate, message)`` — or, raised by pyodbc itself,
    ``(message, sqlstate)``."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2:
        a, b = str(args[0]), str(args[1])
        if len(a) == 5 and a.isalnum() and a == a.upper():
            return a, b
        return b, a
    return "", str(exc)


_ODBC_FUNCTION = re.compile(r" \(SQL[A-Za-z]+\)")


def odbc_error_text(exc: BaseException) -> str:
    """pyodbc's ``('08001', '[08001] [unixODBC]msg (101) (SQLDriverConnect)')`` → ``msg``."""
    text = _state_and_text(exc)[1]
    while text.startswith("["):
        end = text.find("]")
        if end < 0:
            break
        text = text[end + 1:].lstrip()
    text = _ODBC_FUNCTION.sub("", text)  # " (SQLExecDirectW)": which call, not what failed
    return " ".join(text.split())


class OdbcError(DatabaseError):
    """A database error from the driver, as one line; ``sqlstate`` keeps the class
    (``23xxx`` integrity, ``08xxx`` connection …), ``detail`` the server's own words,
    ``native`` the driver's error number."""


class OdbcIntegrityError(IntegrityViolation):
    """A constraint rejected a row (SQLSTATE 23xxx): the engine retries record by record."""

    def __init__(self, message: str, sqlstate: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail


# Communication link failure, connection does not exist, connection failure, transaction
# resolution unknown: an established session died. (08001/08004, a connection that could not
# be made or was rejected, may be a wrong password: the classifier reads those.)
_SESSION_DIED = ("08S01", "08003", "08006", "08007")
_INTEGRITY_WORDS = ("constraint failed", "unique constraint", "duplicate entry",
                    "duplicate key", "violates")


def _wrap(exc: BaseException, what: str, dbms: str = "") -> OdbcError | OdbcIntegrityError:
    state, raw = _state_and_text(exc)
    text = odbc_error_text(exc)
    if state.startswith("23") or any(w in text.lower() for w in _INTEGRITY_WORDS):
        return OdbcIntegrityError(f"{what}: {text}", state, text)
    return OdbcError(f"{what}: {text}", state, text, native=native_code(raw), dbms=dbms,
                     connection_lost=state in _SESSION_DIED)


@dataclass(frozen=True)
class ConnectionFacts:
    """What the driver says about the server after connecting (``SQLGetInfo``)."""

    dbms_name: str
    dbms_version: str
    driver_name: str
    driver_version: str
    driver_odbc_version: str = ""


class OdbcDialect(Dialect):
    """The behaviour shared by dialects reached through ODBC; subclasses state the facts."""

    name: ClassVar[str] = "odbc"
    placeholder: ClassVar[str] = "?"
    session_id_sql: ClassVar[str] = ""
    # Rows in one multi-row VALUES (SQL Server's table value constructor allows 1000).
    values_max_rows: ClassVar[int] = 100_000
    # Rows per statement the `values` method aims for (measured, see benchmarks/).
    values_rows: ClassVar[int] = 100
    # Method chosen by `auto`, from benchmarks/insert_methods.py (numbers in the module doc).
    auto_methods: ClassVar[tuple[str, ...]] = ("values", "executemany")
    # Longest string (UTF-16 code units) bound as a sized parameter under `fast`; longer
    # ones are bound as size 0, which pyodbc streams (SQL Server's (MAX) types).
    max_sized_string: ClassVar[int] = 1_000_000_000
    # The server's own version, where the driver's SQL_DBMS_VER misleads (psqlODBC reports
    # PostgreSQL 15.18 as "15.0.18"); read once, with the connection facts.
    server_version_sql: ClassVar[str] = ""

    def __init__(self, params: ConnectionParams | None = None,
                 facts: ConnectionFacts | None = None) -> None:
        self.params = params if params is not None else ConnectionParams([])
        self.facts = facts

    # ---- capabilities ------------------------------------------------------------------------
    def param_budget(self) -> int:
        """Most parameters one statement may bind with this driver and its settings."""
        return min(self.max_params, PYODBC_MAX_PARAMS)

    def values_rows_per_statement(self, width: int, wanted: int | None = None) -> int:
        per = min(self.param_budget() // max(1, width), self.values_max_rows,
                  wanted or self.values_rows)
        return max(1, per)

    def insert_methods(self) -> list[InsertMethod]:
        return [InsertMethod("executemany"), InsertMethod("fast"), InsertMethod("values"),
                InsertMethod("copy", False, f"{self.name} has no COPY path; "
                                            f"use values or fast")]

    def method(self, name: str) -> InsertMethod:
        for m in self.insert_methods():
            if m.name == name:
                return m
        raise TargetError(f"unknown insert method {name!r}; use one of "
                          f"{', '.join(INSERT_METHODS)} or auto")

    def resolve_method(self, name: str | None, exclude: Sequence[str] = ()) -> str:
        """``auto``/None → the measured best available method; others are checked."""
        if name in (None, "", "auto"):
            available = {m.name for m in self.insert_methods()
                         if m.available and m.name not in exclude}
            for cand in self.auto_methods:
                if cand in available:
                    return cand
            return "executemany"
        assert name is not None
        m = self.method(name)
        if not m.available:
            raise TargetError(f"insert method {name!r} refused for {self.describe()}: "
                              f"{m.reason}")
        return name

    def format_server_version(self, value: Any) -> str:
        """The answer of :attr:`server_version_sql` as a version string."""
        return str(value)

    def describe(self) -> str:
        if self.facts is None:
            return self.name
        return f"{self.facts.dbms_name} via {self.facts.driver_name} {self.facts.driver_version}"

    def advice(self) -> list[str]:
        """Driver settings that change performance, as facts to show (doctor, reports)."""
        return []

    # ---- SQL ---------------------------------------------------------------------------------
    def values_sql(self, table: str, columns: Sequence[str], nrows: int) -> str:
        one = "(" + ", ".join([self.placeholder] * len(columns)) + ")"
        head = self.insert_sql(table, columns).rsplit(" VALUES ", 1)[0]
        return head + " VALUES " + ", ".join([one] * nrows)

    def savepoint_sql(self, name: str) -> str:
        return f"SAVEPOINT {self.quote(name)}"

    def rollback_to_sql(self, name: str) -> str:
        return f"ROLLBACK TO SAVEPOINT {self.quote(name)}"

    def release_savepoint_sql(self, name: str) -> str | None:
        return f"RELEASE SAVEPOINT {self.quote(name)}"

    # ---- the run lock (migrator.runlock) -----------------------------------------------------
    # A query returning the database's name: with a namespace, it names the lock.
    lock_identity_sql: ClassVar[str] = ""

    def run_lock_sql(self, name: LockName) -> LockSQL:
        """The statements of the session-owned lock that keeps a second run out."""
        raise TargetError(f"{self.name}: no run lock for this database, so two runs into "
                          f"it at once could not be refused")

    def database_file(self, conn: OdbcConnection) -> str | None:
        """For a file database reached through ODBC, the file to lock beside ("" for an
        in-memory one); None for a server."""
        return None

    # ---- driver hooks ------------------------------------------------------------------------
    def configure(self, cnxn: Any, pyodbc: Any) -> None:
        """Per-connection driver setup (encodings, session settings)."""

    # ---- the COPY path (PostgreSQL overrides) ------------------------------------------------
    def copy_rows(self, conn: OdbcConnection, table: str, columns: Sequence[str],
                  rows: Sequence[Row]) -> None:
        raise TargetError(f"insert method 'copy' is not available for {self.name}")

    def sidecar_execute(self, conn: OdbcConnection, sql: str, params: Sequence[Any]) -> None:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_query(self, conn: OdbcConnection, sql: str,
                      params: Sequence[Any]) -> list[Row]:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_insert(self, conn: OdbcConnection, table: str, columns: Sequence[str],
                       rows: Sequence[Row]) -> None:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_commit(self, conn: OdbcConnection) -> None:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_rollback(self, conn: OdbcConnection) -> None:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_close(self, conn: OdbcConnection) -> None:
        raise AssertionError("no sidecar session for this dialect")

    def sidecar_session_id(self, conn: OdbcConnection) -> str:
        raise AssertionError("no sidecar session for this dialect")


def _utf16_units(text: str) -> int:
    n = len(text)
    if not text.isascii():
        n += sum(1 for ch in text if ord(ch) > 0xFFFF)  # astral: a surrogate pair
    return n


def fast_input_sizes(rows: Sequence[Row], width: int, pyodbc: Any,
                     max_sized: int) -> list[Any]:
    """``cursor.setinputsizes`` for one ``fast_executemany`` batch: every string column as
    ``SQL_WVARCHAR`` sized to its longest value in UTF-16 code units (what pyodbc's
    buffer holds), decimals with the batch's largest precision and scale, datetimes with
    microseconds; other types are left to pyodbc (None)."""
    longest = [0] * width
    is_str = [False] * width
    dec_int = [-1] * width
    dec_scale = [0] * width
    is_dt = [False] * width
    for row in rows:
        for j, v in enumerate(row):
            if isinstance(v, str):
                is_str[j] = True
                n = _utf16_units(v)
                if n > longest[j]:
                    longest[j] = n
            elif isinstance(v, Decimal):
                _sign, digits, exp = v.as_tuple()
                scale = max(0, -int(exp))
                ints = max(1, len(digits) + int(exp))
                dec_int[j] = max(dec_int[j], ints)
                dec_scale[j] = max(dec_scale[j], scale)
            elif isinstance(v, datetime.datetime):
                is_dt[j] = True
    sizes: list[Any] = []
    for j in range(width):
        if is_str[j]:
            n = max(1, longest[j])
            sizes.append((pyodbc.SQL_WVARCHAR, n if n <= max_sized else 0, 0))
        elif dec_int[j] >= 0:
            sizes.append((pyodbc.SQL_DECIMAL, dec_int[j] + dec_scale[j], dec_scale[j]))
        elif is_dt[j]:
            # yyyy-mm-dd hh:mm:ss.ffffff: without it psqlODBC drops the microseconds
            sizes.append((pyodbc.SQL_TYPE_TIMESTAMP, 26, 6))
        else:
            sizes.append(None)
    return sizes


def dialect_for(facts: ConnectionFacts, params: ConnectionParams) -> OdbcDialect:
    """The dialect for the connected DBMS; an unknown one lists the supported names."""
    dbms = facts.dbms_name.strip().lower()
    for prefix, path in ODBC_DIALECTS.items():
        if dbms.startswith(prefix):
            module, _, cls = path.partition(":")
            dialect_cls = getattr(importlib.import_module(module), cls)
            dialect: OdbcDialect = dialect_cls(params, facts)
            return dialect
    known = sorted({p.split(":")[1] for p in ODBC_DIALECTS.values()})
    raise TargetError(f"odbc: connected to {facts.dbms_name!r} ({facts.driver_name}), which "
                      f"has no dialect; supported: {', '.join(known)} "
                      f"(PostgreSQL, SQL Server, MariaDB/MySQL, SQLite)")


# A session's name goes into the connection string, so the driver sends it at login: free,
# where a statement after connecting would cost a round trip on every (pooled) checkout.
MARIADB_SESSION_VARIABLE = "migration_bench_run"


def session_keywords(family: str, name: str, params: ConnectionParams) -> dict[str, str]:
    """The connection-string keywords that make a driver of ``family`` name its session
    ``name``; {} for a driver with no such keyword (SQLite, unknown drivers).

    * psqlODBC: ``pqopt`` (libpq options sent at login) ``application_name``, after the
      user's own pqopt options (libpq keeps the last value of a repeated option);
    * SQL Server and FreeTDS: ``APP`` (``program_name`` in ``sys.dm_exec_sessions``);
    * MariaDB/MySQL Connector/ODBC: no keyword adds connection attributes (3.1), so
      ``InitStmt`` sets the session variable ``@migration_bench_run``, which the server
      shows in ``performance_schema.user_variables_by_thread`` (when performance_schema is
      on); a string with its own ``InitStmt`` keeps it.
    """
    if family == "psqlodbc":
        own = (params.get_any("pqopt") or "").strip()
        return {"pqopt": (own + " " if own else "") + f"application_name='{name}'"}
    if family in ("mssql", "freetds"):
        return {"APP": name}
    if family in ("mariadb", "mysql") and params.get_any("InitStmt") is None:
        return {"InitStmt": f"SET @{MARIADB_SESSION_VARIABLE}='{name}'"}
    return {}


def named_connection_string(text: str, family: str, name: str) -> str:
    """``text`` with the keywords that name the session ``name`` (see
    :func:`session_keywords`); unchanged for drivers that cannot."""
    updates = session_keywords(family, name, parse_connection_string(text))
    return with_params(text, **updates) if updates else text


def string_driver(params: ConnectionParams) -> str:
    """The driver a connection string names: ``Driver=``, or its ``DSN``'s driver in
    odbc.ini (system, then user); "" when neither says."""
    driver = (params.get_any("Driver") or "").strip().strip("{}")
    dsn = params.get_any("DSN")
    if driver or not dsn:
        return driver
    for path in (odbcini.system_paths().odbc_ini, Path(os.path.expanduser("~/.odbc.ini"))):
        ini = odbcini.read_ini(path)
        if ini.has_section(dsn):
            return str(ini[dsn].get("Driver", "") or ini[dsn].get("driver", "")).strip()
    return ""


class OdbcConnection(Connection):
    """One ODBC session (pooled by unixODBC when pooling is on)."""

    dialect: OdbcDialect

    def __init__(self, target: OdbcTarget, cnxn: Any, pyodbc: Any,
                 dialect: OdbcDialect) -> None:
        self.target = target
        self.dialect = dialect
        self.cnxn = cnxn
        self.pyodbc = pyodbc
        self._cursor: Any = None
        self._fast_cursor: Any = None
        self._sql_cache: dict[tuple[str, tuple[str, ...], int], str] = {}
        self._odbc_dirty = False  # statements ran on the ODBC session since the last commit
        self._odbc_wrote = False  # … and some of them wrote
        self.sidecar: Any = None  # psycopg connection once `copy` was used (PostgreSQL)
        self.closed = False

    # ---- plumbing ----------------------------------------------------------------------------
    def cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self.cnxn.cursor()
        return self._cursor

    def _fast(self) -> Any:
        if self._fast_cursor is None:
            self._fast_cursor = self.cnxn.cursor()
            self._fast_cursor.fast_executemany = True
        return self._fast_cursor

    def _cached_sql(self, table: str, columns: Sequence[str], nrows: int) -> str:
        key = (table, tuple(columns), nrows)
        sql = self._sql_cache.get(key)
        if sql is None:
            sql = (self.dialect.insert_sql(table, columns) if nrows == 0
                   else self.dialect.values_sql(table, columns, nrows))
            self._sql_cache[key] = sql
        return sql

    def _error(self, exc: BaseException, what: str) -> OdbcError | OdbcIntegrityError:
        """The driver's error as ours, saying whether the session died with it."""
        err = _wrap(exc, what, self.dialect.name)
        if isinstance(err, OdbcError) and not err.connection_lost and \
                (err.sqlstate == "" or err.sqlstate.startswith("HY")) and \
                classify(err) != CONFLICT:  # (a deadlock victim's session is alive)
            err.connection_lost = self._session_lost()
        return err

    def _session_lost(self) -> bool:
        """Is the session dead? Asked after an error whose SQLSTATE does not say: psqlODBC
        reports a session ended mid-batch as ``HY000`` "internal SAVEPOINT failed" or
        "Error while preparing parameters". A trivial query on a fresh statement then fails
        with a connection error; on a live session it succeeds, or fails for the aborted
        transaction (which the caller rolls back anyway)."""
        try:
            cur = self.cnxn.cursor()
            try:
                cur.execute("SELECT 1").fetchall()
            finally:
                cur.close()
        except self.pyodbc.Error as exc:
            return classify(exc) in (LOST, SERVER)
        return False

    # ---- Connection API ----------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self.sidecar is not None:
            self.dialect.sidecar_execute(self, sql, params)
            return
        try:
            self.cursor().execute(sql, *([list(params)] if params else []))
        except self.pyodbc.Error as exc:
            raise self._error(exc, f"{self.dialect.name}: {statement_kind(sql)} failed") \
                from exc
        self._odbc_dirty = self._odbc_wrote = True

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self.sidecar is not None:
            return self.dialect.sidecar_query(self, sql, params)
        try:
            cur = self.cursor().execute(sql, *([list(params)] if params else []))
            self._odbc_dirty = True
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        except self.pyodbc.Error as exc:
            raise self._error(exc, f"{self.dialect.name}: query failed") from exc

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row],
                    method: str | None = None) -> None:
        if not rows:
            return
        name = self.dialect.resolve_method(method)
        if name == "copy" and method in (None, "", "auto") and self.sidecar is None \
                and self._odbc_wrote:
            # COPY runs on its own session: a batch that already wrote through ODBC
            # continues there, with the best method that does not need COPY.
            name = self.dialect.resolve_method("auto", exclude=("copy",))
        if self.sidecar is not None and name != "copy":
            # Once a batch moved to the COPY session, it stays there (one transaction).
            self.dialect.sidecar_insert(self, table, columns, rows)
            return
        try:
            if name == "executemany":
                self.cursor().executemany(self._cached_sql(table, columns, 0), rows)
            elif name == "fast":
                self._insert_fast(table, columns, rows)
            elif name == "values":
                self._insert_values(table, columns, rows)
            elif name == "copy":
                self.dialect.copy_rows(self, table, columns, rows)
                return
        except self.pyodbc.Error as exc:
            raise self._error(exc, f"{self.dialect.name}: insert into {table} ({name}) failed") \
                from exc
        self._odbc_dirty = self._odbc_wrote = True

    def _insert_fast(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        cur = self._fast()
        # Parameter arrays are fixed-width buffers. Without sizes pyodbc asks the driver
        # (SQLDescribeParam) — which psqlODBC without server-side prepare cannot answer
        # (strings then get 255 characters), and SQL Server answers 2 GB for (MAX)
        # columns (pyodbc #547). So sizes come from the batch itself.
        cur.setinputsizes(fast_input_sizes(rows, len(columns), self.pyodbc,
                                           self.dialect.max_sized_string))
        cur.executemany(self._cached_sql(table, columns, 0), rows)

    def _insert_values(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        per = self.dialect.values_rows_per_statement(len(columns), self.target.values_rows)
        cur = self.cursor()
        full_sql = self._cached_sql(table, columns, per)
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            sql = full_sql if len(chunk) == per else self._cached_sql(table, columns,
                                                                       len(chunk))
            cur.execute(sql, [v for row in chunk for v in row])

    def begin(self) -> None:
        """Transactions start implicitly (autocommit off); nothing to send."""

    def savepoint(self, name: str) -> None:
        self.execute(self.dialect.savepoint_sql(name))

    def rollback_to(self, name: str) -> None:
        self.execute(self.dialect.rollback_to_sql(name))

    def release(self, name: str) -> None:
        sql = self.dialect.release_savepoint_sql(name)
        if sql:
            self.execute(sql)

    def commit(self) -> None:
        if self.sidecar is not None:
            self.dialect.sidecar_commit(self)
        if self._odbc_dirty:
            try:
                self.cnxn.commit()
            except self.pyodbc.Error as exc:
                raise self._error(exc, f"{self.dialect.name}: commit failed") from exc
            self._odbc_dirty = self._odbc_wrote = False

    def rollback(self) -> None:
        if self.sidecar is not None:
            self.dialect.sidecar_rollback(self)
        if self.closed:
            return
        try:
            self.cnxn.rollback()
        except self.pyodbc.Error as exc:
            raise self._error(exc, f"{self.dialect.name}: rollback failed") from exc
        self._odbc_dirty = self._odbc_wrote = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sidecar is not None:
            self.dialect.sidecar_close(self)
        for cur in (self._cursor, self._fast_cursor):
            if cur is not None:
                with contextlib.suppress(self.pyodbc.Error):
                    cur.close()
        # Uncommitted work is rolled back (pyodbc does it on close, pooled or not).
        with contextlib.suppress(self.pyodbc.Error):
            self.cnxn.close()

    def set_autocommit(self, on: bool) -> None:
        """Commit every statement as it runs (the run lock's session: it must never keep a
        transaction open for the length of a run)."""
        try:
            self.cnxn.autocommit = on
        except self.pyodbc.Error as exc:
            raise _wrap(exc, f"{self.dialect.name}: autocommit failed") from exc

    def session_id(self) -> str:
        """The server's session id: ``pg_backend_pid()``, ``@@SPID``, ``CONNECTION_ID()``;
        "" where there is no server (SQLite)."""
        if self.sidecar is not None:
            return str(self.dialect.sidecar_session_id(self))
        if not self.dialect.session_id_sql:
            return ""
        try:
            row = self.cursor().execute(self.dialect.session_id_sql).fetchone()
        except self.pyodbc.Error as exc:
            raise self._error(exc, f"{self.dialect.name}: session id query failed") from exc
        self._odbc_dirty = True
        return str(row[0])


class OdbcTarget(Target):
    """``odbc:<connection string>``; the dialect is known after the first connect."""

    scheme: ClassVar[str] = "odbc"

    def __init__(self, rest: str, *, pooling: bool | None = None,
                 values_rows: int | None = None) -> None:
        rest = rest.strip()
        if not rest:
            raise TargetError("odbc: needs a connection string, e.g. --target "
                              "'odbc:Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;"
                              "Database=mig;Uid=me;Pwd=...' or odbc:DSN=name")
        try:
            self.params = parse_connection_string(rest)
        except ConnectionStringError as exc:
            raise TargetError(f"odbc:{redact_connection_string(rest)}: {exc}") from None
        if not self.params:
            raise TargetError("odbc: the connection string has no key=value pairs")
        self.connection_string = rest
        self.display = "odbc:" + redact_connection_string(rest)
        self.pooling = pooling
        self.values_rows = values_rows
        self._dialect: OdbcDialect | None = None
        self._facts: ConnectionFacts | None = None
        self.last_connect_seconds = 0.0
        # Idle psycopg sessions of the COPY path, reused while pooling is on.
        self.sidecar_pool: list[Any] = []
        self._family = driver_family(string_driver(self.params))
        self._named: tuple[str, str] = ("", "")  # (session name, connection string)

    # ---- dialect -----------------------------------------------------------------------------
    @property  # type: ignore[override]
    def dialect(self) -> OdbcDialect:
        """The detected dialect; connects once to find out if not yet connected."""
        if self._dialect is None:
            self.connect().close()
        assert self._dialect is not None
        return self._dialect

    @dialect.setter
    def dialect(self, value: OdbcDialect) -> None:
        self._dialect = value

    def set_pooling(self, enabled: bool) -> None:
        """Choose driver-manager pooling for this process (before its first connect)."""
        self.pooling = enabled

    def set_namespace(self, namespace: Namespace) -> None:
        # (without connecting: the dialect, once detected, gets it in connect())
        self.namespace = namespace
        if self._dialect is not None:
            self._dialect.namespace = namespace

    def close(self) -> None:
        # Idle psycopg sessions of the COPY path; the driver manager owns its own pool.
        while self.sidecar_pool:
            with contextlib.suppress(Exception):
                self.sidecar_pool.pop().close()

    def can_apply_pooling(self, enabled: bool) -> bool:
        active = odbcini.active_pooling()
        if active is not None:
            return active == enabled
        return not odbcini.env_allocated()

    # ---- connecting --------------------------------------------------------------------------
    def connect(self) -> OdbcConnection:
        if self.pooling is not None:
            odbcini.activate(self.pooling)
        pyodbc = import_pyodbc()
        odbcini.mark_env_allocated()
        text = self.session_string()
        t0 = time.perf_counter()
        try:
            cnxn = pyodbc.connect(text, autocommit=False, timeout=LOGIN_TIMEOUT)
        except pyodbc.Error as exc:
            raise self._connect_error(exc, pyodbc) from None
        self.last_connect_seconds = time.perf_counter() - t0
        if self._dialect is None:
            try:
                self._learn_facts(cnxn, pyodbc)
            except BaseException:
                cnxn.close()
                raise
        dialect = self._dialect
        assert dialect is not None
        dialect.namespace = self.namespace
        try:
            dialect.configure(cnxn, pyodbc)
        except pyodbc.Error as exc:
            cnxn.close()
            raise _wrap(exc, f"{self.display}: session setup failed") from None
        return OdbcConnection(self, cnxn, pyodbc, dialect)

    def session_string(self) -> str:
        """The connection string a new session connects with: the user's, plus the
        keywords that name it after the run (:mod:`migrator.session`)."""
        name = session.session_name()
        if self._named[0] != name:
            self._named = (name, named_connection_string(self.connection_string,
                                                         self._family, name))
        return self._named[1]

    def _learn_facts(self, cnxn: Any, pyodbc: Any) -> None:
        facts = ConnectionFacts(
            dbms_name=str(cnxn.getinfo(pyodbc.SQL_DBMS_NAME) or ""),
            dbms_version=str(cnxn.getinfo(pyodbc.SQL_DBMS_VER) or ""),
            driver_name=str(cnxn.getinfo(pyodbc.SQL_DRIVER_NAME) or ""),
            driver_version=str(cnxn.getinfo(pyodbc.SQL_DRIVER_VER) or ""),
            driver_odbc_version=str(cnxn.getinfo(pyodbc.SQL_DRIVER_ODBC_VER) or ""),
        )
        dialect = dialect_for(facts, self.params)
        if dialect.server_version_sql:
            try:
                row = cnxn.cursor().execute(dialect.server_version_sql).fetchone()
                facts = dataclasses.replace(
                    facts, dbms_version=dialect.format_server_version(row[0]))
                cnxn.rollback()
            except pyodbc.Error:
                pass  # keep the driver's figure
            dialect.facts = facts
        if self._family == "unknown":  # (a DSN whose driver odbc.ini did not tell)
            self._family = driver_family(facts.driver_name)
            self._named = ("", "")  # name the next sessions with the family's keyword
        self._facts, self._dialect = facts, dialect

    def _connect_error(self, exc: BaseException, pyodbc: Any) -> TargetError:
        text = odbc_error_text(exc)
        hint = ""
        low = text.lower()
        if "can't open lib" in low or "data source name not found" in low \
                or "file not found" in low:
            drivers = ", ".join(pyodbc.drivers()) or "none"
            hint = (f"; installed ODBC drivers: {drivers} (see odbcinst -q -d; "
                    f"DSNs: odbcinst -q -s)")
        # A misspelled keyword is ignored by the driver, which then fails on a default
        # (a Unix socket for a missing Server): name the typo, not only its symptom.
        typos = misspelled_keywords([k for k, _ in self.params.pairs], self._family)
        if typos:
            hint += "; " + "; ".join(f"the driver ignores {key}= (did you mean {near}=?)"
                                     for key, near in typos)
        state, raw = _state_and_text(exc)
        # (no connection_lost: a refused or failed login says nothing about a session)
        return OdbcError(f"cannot connect to {self.display}: {text}{hint}", state, text,
                         native=native_code(raw),
                         dbms=self._dialect.name if self._dialect is not None else "")

    def facts(self) -> ConnectionFacts:
        if self._facts is None:
            self.connect().close()
        assert self._facts is not None
        return self._facts

    def info(self) -> TargetInfo:
        f = self.facts()
        d = self.dialect
        return TargetInfo(
            scheme="odbc", display=self.display, dialect=d.name, dbms_name=f.dbms_name,
            dbms_version=f.dbms_version, driver_name=f.driver_name,
            driver_version=f.driver_version,
            extra={
                "driver_odbc_version": f.driver_odbc_version,
                "insert_methods": {m.name: (m.reason or "available") if not m.available
                                   else "available" for m in d.insert_methods()},
                "auto_method": d.resolve_method("auto"),
                "param_budget": d.param_budget(),
                "pooling": self.pooling,
                "advice": d.advice(),
            })

    def picklable_spec(self) -> str:
        return "odbc:" + self.connection_string

    def acquire_run_lock(self, holder: Holder, namespace: str | None = None) -> HeldLock:
        """A lock owned by a dedicated session of the server (a lock file beside a file
        database)."""
        from migrator.runlock import FileLock, NoLock, SessionLock, lock_file_path

        conn = self.connect()
        try:
            path = conn.dialect.database_file(conn)
        except BaseException:
            conn.close()
            raise
        if path is None:  # a server: this session becomes the lock's
            return SessionLock.acquire(conn, self.connect, conn.dialect, holder,
                                       self.display, namespace)
        conn.close()
        if not path:
            return NoLock()
        return FileLock.acquire(lock_file_path(path, namespace), holder, self.display)
