"""SQL Server through Microsoft's ODBC Driver 17/18 (or FreeTDS).

SQL Server cannot run on the development machines: every statement this module emits is
parsed with sqlglot's ``tsql`` dialect in ``tests/test_mssql_tsql.py``, and the live suite
runs whenever ``BENCH_MSSQL`` holds a connection string.

Decisions:

* Identifiers are quoted ``[name]`` with ``]`` doubled — valid whatever the session's
  ``QUOTED_IDENTIFIER`` setting is.
* ``str(n)`` counts code points (Python ``len``), but ``NVARCHAR(n)`` counts UTF-16 code
  units: an emoji is two. So ``str(n)`` becomes ``NVARCHAR(2n)`` — every value the mapping
  accepts fits — and ``NVARCHAR(MAX)`` when ``2n`` exceeds 4000 (the largest sized
  NVARCHAR). NVARCHAR is variable-length: the wider declaration costs no storage.
* ``datetime`` is ``DATETIME2(6)``: microseconds, exactly what Python's datetime holds.
* ``fast`` (``fast_executemany``) sets input sizes from each batch (``setinputsizes``):
  left to SQLDescribeParam, pyodbc sizes an ``NVARCHAR(MAX)`` parameter at 2 GB per row
  (pyodbc #547, MemoryError). Strings longer than 4000 code units are bound as
  ``(SQL_WVARCHAR, 0, 0)``, which pyodbc streams instead.
* At most 2100 parameters per request; the budget keeps one free for the driver's RPC, and
  a VALUES list holds at most 1000 rows (the table value constructor's limit).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from migrator.errors import TargetError
from migrator.mapping import ColumnType
from migrator.targets.base import DEFAULT_SCHEMA, InsertMethod
from migrator.targets.odbc import OdbcDialect

if TYPE_CHECKING:
    from migrator.runlock import LockName, LockSQL

NVARCHAR_MAX_SIZED = 4000


def nvarchar_units(length: int) -> int | None:
    """UTF-16 code units needed for ``length`` code points; None → NVARCHAR(MAX)."""
    units = 2 * length
    return units if units <= NVARCHAR_MAX_SIZED else None


class MSSQLDialect(OdbcDialect):
    name: ClassVar[str] = "mssql"
    max_params: ClassVar[int] = 2100
    session_id_sql: ClassVar[str] = "SELECT @@SPID"
    values_max_rows: ClassVar[int] = 1000
    values_rows: ClassVar[int] = 100
    # Not measured here (no SQL Server on these machines): fast_executemany with parameter
    # arrays is Microsoft's documented bulk path for ODBC Driver 17/18; `bench sweep
    # --insert-method fast,values` on a real server settles it.
    auto_methods: ClassVar[tuple[str, ...]] = ("fast", "values", "executemany")
    max_sized_string: ClassVar[int] = NVARCHAR_MAX_SIZED
    supports_schemas: ClassVar[bool] = True
    default_schema: ClassVar[str | None] = DEFAULT_SCHEMA
    max_identifier_bytes: ClassVar[int] = 128  # sysname: 128 characters
    transactional_ddl: ClassVar[bool] = True

    def quote(self, ident: str) -> str:
        if "\x00" in ident:
            raise TargetError(f"identifier {ident!r} contains NUL")
        return "[" + ident.replace("]", "]]") + "]"

    def column_sql_type(self, ctype: ColumnType) -> str:
        kind = ctype.kind
        if kind == "int":
            return "INT"
        if kind == "decimal":
            return f"DECIMAL({ctype.precision},{ctype.scale})"
        if kind == "str":
            assert ctype.length is not None
            units = nvarchar_units(ctype.length)
            return f"NVARCHAR({units})" if units is not None else "NVARCHAR(MAX)"
        if kind == "text":
            return "NVARCHAR(MAX)"
        if kind == "datetime":
            return "DATETIME2(6)"
        if kind == "bool":
            return "BIT"
        return super().column_sql_type(ctype)  # BIGINT, DATE

    def bookkeeping_sql(self) -> list[str]:
        """The engine's tables, translated: NVARCHAR (Unicode file names and reasons), INT,
        and ``[file]`` quoted (FILE is a reserved word in T-SQL). The checkpoint key, a
        64-character digest, is far inside SQL Server's 900-byte index-key limit."""
        return [_tsql_bookkeeping(sql) for sql in super().bookkeeping_sql()]

    def registry_sql(self) -> str:
        return _tsql_bookkeeping(super().registry_sql())

    def lock_table_sql(self) -> str:
        return _tsql_bookkeeping(super().lock_table_sql())

    # ---- the run lock: an application lock owned by the session ------------------------------
    lock_identity_sql: ClassVar[str] = "SELECT DB_NAME()"

    def run_lock_sql(self, name: LockName) -> LockSQL:
        """``sp_getapplock`` owned by the session (not a transaction, so the lock outlives
        every batch's COMMIT), without waiting. Application locks are per database. Which
        session holds one is visible only with VIEW SERVER STATE: ``owner`` is None."""
        from migrator.runlock import LockSQL

        arg = (name.text,)
        return LockSQL(
            setup=(),
            acquire=("SET NOCOUNT ON; DECLARE @result INT; "
                     "EXEC @result = sp_getapplock @Resource = ?, @LockMode = 'Exclusive', "
                     "@LockOwner = 'Session', @LockTimeout = 0, @DbPrincipal = 'public'; "
                     "SELECT @result", arg),
            acquired=applock_granted,
            held=("SELECT CASE WHEN APPLOCK_MODE('public', ?, 'Session') = 'Exclusive' "
                  "THEN 1 ELSE 0 END", arg),
            release=("EXEC sp_releaseapplock @Resource = ?, @LockOwner = 'Session', "
                     "@DbPrincipal = 'public'", arg),
            owner=None)

    # SQL Server's savepoints: SAVE TRANSACTION / ROLLBACK TRANSACTION; nothing to release.
    # Savepoint names are plain identifiers (at most 32 characters), never quoted.
    def savepoint_sql(self, name: str) -> str:
        return f"SAVE TRANSACTION {_savepoint_name(name)}"

    def rollback_to_sql(self, name: str) -> str:
        return f"ROLLBACK TRANSACTION {_savepoint_name(name)}"

    def release_savepoint_sql(self, name: str) -> str | None:
        return None

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        schema = self.schema
        if schema is None:
            return ("SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES "
                    "WHERE TABLE_SCHEMA = SCHEMA_NAME()", ())
        return ("SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ?",
                (schema,))

    def schema_exists_sql(self) -> str:
        return "SELECT 1 FROM sys.schemas WHERE name = ?"

    def select_for_update_sql(self, table: str, columns: Sequence[str],
                              key: str | Sequence[str]) -> str:
        # T-SQL has no FOR UPDATE on plain SELECTs: an update lock held to the end instead.
        q = self.quote
        return (f"SELECT {', '.join(q(c) for c in columns)} FROM {self.table_ref(table)} "
                f"WITH (UPDLOCK, HOLDLOCK, ROWLOCK) WHERE {self.key_match(key)}")

    def param_budget(self) -> int:
        return self.max_params - 1

    def insert_methods(self) -> list[InsertMethod]:
        driver = (self.facts.driver_name if self.facts else "").lower()
        fast = InsertMethod("fast")
        if "tdsodbc" in driver or "freetds" in driver:
            fast = InsertMethod("fast", True, "FreeTDS: parameter arrays are emulated row by "
                                              "row in older versions; measure before trusting")
        return [InsertMethod("executemany"), fast, InsertMethod("values"),
                InsertMethod("copy", False, "SQL Server has no COPY; use fast "
                                            "(fast_executemany parameter arrays) or values")]

    def advice(self) -> list[str]:
        return ["SQL Server: session facts (waits, file stats) need VIEW SERVER STATE"]


def _tsql_bookkeeping(sql: str) -> str:
    """Generic bookkeeping DDL in T-SQL: NVARCHAR (Unicode file names and reasons), INT,
    and ``[file]`` quoted (FILE is a reserved word)."""
    sql = re.sub(r"\bVARCHAR\(", "NVARCHAR(", sql)
    sql = re.sub(r"\bINTEGER\b", "INT", sql)
    return re.sub(r"([(,]\s*)file\b", r"\1[file]", sql)


# sp_getapplock's return codes: 0 granted, 1 granted after waiting, -1 timed out (another
# session holds it), -2 cancelled, -3 chosen as deadlock victim, -999 a parameter error.
APPLOCK_ERRORS = {-2: "the request was cancelled", -3: "chosen as a deadlock victim",
                  -999: "a parameter or call error"}


def applock_granted(code: Any) -> bool:
    """True when ``sp_getapplock`` granted the lock, False when another session holds it;
    any other answer is an error, never a busy target."""
    try:
        value = int(code)
    except (TypeError, ValueError):
        value = None
    if value in (0, 1):
        return True
    if value == -1:
        return False
    reason = APPLOCK_ERRORS.get(value or 0, f"it answered {code!r}")
    raise TargetError(f"mssql: sp_getapplock could not take the run lock: {reason}")


def _savepoint_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", name):
        raise TargetError(f"savepoint name {name!r} must be a plain identifier of at most "
                          f"32 characters")
    return name
