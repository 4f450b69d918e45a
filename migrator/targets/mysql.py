"""MariaDB and MySQL through MariaDB Connector/ODBC (or MySQL Connector/ODBC).

Decisions:

* Identifiers are quoted with backticks (``` `` ``` doubles an embedded one), whatever
  ``sql_mode`` says about ``ANSI_QUOTES``.
* Tables are ``ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin``: utf8mb4 stores
  every code point (emoji included; MySQL's "utf8" does not) and the binary collation
  compares keys exactly, as the other dialects do. ``VARCHAR(n)`` counts characters.
* ``str(n)`` above 4000 becomes ``LONGTEXT`` (a row holds at most 65,535 bytes of VARCHAR,
  4 bytes a character in utf8mb4); ``text`` is ``LONGTEXT``; ``datetime`` is
  ``DATETIME(6)`` (microseconds); ``bool`` is ``BOOLEAN`` (``TINYINT(1)``: reads back 0/1).
* An InnoDB index key is at most 3,072 bytes: the checkpoint unit is ``VARCHAR(768)``.
* Prepared statements take at most 65,535 placeholders; ``max_allowed_packet`` bounds a
  statement's size, so VALUES lists stay well under it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping as AnyMapping
from typing import TYPE_CHECKING, Any, ClassVar

from migrator.coerce import TEXT
from migrator.errors import TargetError
from migrator.mapping import ColumnType, Mapping, Table
from migrator.targets.base import InsertMethod
from migrator.targets.odbc import OdbcDialect

if TYPE_CHECKING:
    from migrator.runlock import LockName, LockSQL

TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
VARCHAR_MAX_CHARS = 4000
FAST_REFUSED_MARIADB = (
    "MariaDB Connector/ODBC silently lost rows under fast_executemany parameter arrays "
    "(measured with 3.1.15: 254 of 20,000 records missing after committed 1000-record "
    "batches, varying run to run); use values")


class MySQLDialect(OdbcDialect):
    name: ClassVar[str] = "mysql"
    max_params: ClassVar[int] = 65535
    max_identifier_bytes: ClassVar[int] = 64  # characters, in fact; ASCII prefixes count 1
    # (DDL commits implicitly: a fresh schema is made recognisable instead, see engine.)
    no_schema_hint: ClassVar[str] = " or another Database= in the connection string"
    session_id_sql: ClassVar[str] = "SELECT CONNECTION_ID()"
    server_version_sql: ClassVar[str] = "SELECT VERSION()"
    values_rows: ClassVar[int] = 100
    # benchmarks/insert_methods.py on MariaDB 10.11 / Connector/ODBC 3.1.15: values ≫
    # executemany; fast is refused (it loses rows, see FAST_REFUSED_MARIADB).
    auto_methods: ClassVar[tuple[str, ...]] = ("values", "fast", "executemany")

    def format_server_version(self, value: Any) -> str:
        return str(value).split("-", 1)[0]  # "10.11.18-MariaDB-0+deb12u1" → "10.11.18"

    @property
    def is_mariadb(self) -> bool:
        return bool(self.facts and "mariadb" in self.facts.dbms_name.lower())

    def quote(self, ident: str) -> str:
        if "\x00" in ident:
            raise TargetError(f"identifier {ident!r} contains NUL")
        return "`" + ident.replace("`", "``") + "`"

    def column_sql_type(self, ctype: ColumnType) -> str:
        kind = ctype.kind
        if kind == "int":
            return "INT"
        if kind == "str":
            assert ctype.length is not None
            if ctype.length > VARCHAR_MAX_CHARS:
                return "LONGTEXT"
            return f"VARCHAR({ctype.length})"
        if kind == "text":
            return "LONGTEXT"
        if kind == "datetime":
            return "DATETIME(6)"
        if kind == "bool":
            return "BOOLEAN"
        return super().column_sql_type(ctype)  # BIGINT, DECIMAL(p,s), DATE

    def create_table_sql(self, mapping: Mapping, table: Table) -> list[str]:
        return [sql + " " + TABLE_OPTIONS for sql in super().create_table_sql(mapping, table)]

    def bookkeeping_sql(self) -> list[str]:
        """The engine's tables in utf8mb4 (the checkpoint key, a 64-character digest, is
        far inside InnoDB's 3,072-byte key limit)."""
        return [f"{sql} {TABLE_OPTIONS}" for sql in super().bookkeeping_sql()]

    def registry_sql(self) -> str:
        return f"{super().registry_sql()} {TABLE_OPTIONS}"

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        return ("SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = DATABASE()", ())

    def lock_table_sql(self) -> str:
        return f"{super().lock_table_sql()} {TABLE_OPTIONS}"

    # ---- the run lock: a named lock, GET_LOCK ------------------------------------------------
    lock_identity_sql: ClassVar[str] = "SELECT DATABASE()"

    def run_lock_sql(self, name: LockName) -> LockSQL:
        """``GET_LOCK(name, 0)``. Named locks are server-wide, so the name holds the
        database's (digested: at most 64 characters). The lock session's wait_timeout is
        short, so the server ends the session of a client machine that died; the keepalive
        pings keep a live one well inside it."""
        from migrator.runlock import IDLE_LIMIT_S, LockSQL, one_is_yes

        arg = (name.text,)
        return LockSQL(
            setup=(f"SET SESSION wait_timeout = {IDLE_LIMIT_S}",),
            acquire=("SELECT GET_LOCK(?, 0)", arg),
            acquired=one_is_yes,
            held=("SELECT COALESCE(IS_USED_LOCK(?) = CONNECTION_ID(), 0)", arg),
            release=("SELECT RELEASE_LOCK(?)", arg),
            owner=("SELECT IS_USED_LOCK(?)", arg),
            teardown=("SET SESSION wait_timeout = @@GLOBAL.wait_timeout",))

    def insert_methods(self) -> list[InsertMethod]:
        driver = (self.facts.driver_name if self.facts else "").lower()
        fast = InsertMethod("fast")
        if "maodbc" in driver:
            fast = InsertMethod("fast", False, FAST_REFUSED_MARIADB)
        return [InsertMethod("executemany"), fast, InsertMethod("values"),
                InsertMethod("copy", False, "MariaDB/MySQL has no COPY (LOAD DATA is not "
                                            "wired); use values")]

    def value_adapters(self) -> AnyMapping[str, Callable[[Any], Any] | str]:
        # pyodbc binds a datetime with the precision the driver reports for TIMESTAMP (19:
        # whole seconds) and MariaDB Connector/ODBC drops the microseconds; as canonical
        # text ("YYYY-MM-DD hh:mm:ss.ffffff") they arrive exactly in DATETIME(6).
        return {"datetime": TEXT}

    def configure(self, cnxn: Any, pyodbc: Any) -> None:
        # Strings longer than pyodbc's `maxwrite` (the driver's reported VARCHAR size) go
        # through SQLPutData, which MariaDB Connector/ODBC 3.1 garbles for UTF-16 text
        # ("Memory allocation error" or mojibake, measured). Bind every string whole.
        cnxn.maxwrite = 1 << 30
        # Text crosses as UTF-8 both ways, never UTF-16: Connector/ODBC 3.1.15 miscounts a
        # UTF-16 string that starts with a code unit such as U+00D8 ("Ø"), storing one
        # character too few per such unit ("Øvergaard" → "Øvergaar", no error), and
        # decodes such text wrongly on the way back.
        cnxn.setencoding(encoding="utf-8")
        cnxn.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
        cnxn.setdecoding(pyodbc.SQL_WCHAR, encoding="utf-8")

