"""SQLite through the SQLite ODBC driver (``Driver=SQLite3;Database=PATH``).

Types and value adapters are the native SQLite target's, so both targets store identical
rows. ``fast`` is refused: the SQLite ODBC driver crashes the process (segfault) or fails
("Converting decimal loses precision") under pyodbc's ``fast_executemany`` — measured on
Debian 12's libsqliteodbc 0.9998. There is no server session id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping as AnyMapping, Sequence
from typing import Any, ClassVar

from migrator.connstr import ConnectionParams
from migrator.mapping import ColumnType
from migrator.targets.base import InsertMethod
from migrator.targets.odbc import ConnectionFacts, OdbcConnection, OdbcDialect
from migrator.targets.sqlite import SQLiteDialect

FAST_REFUSED = ("the SQLite ODBC driver crashes the process (segfault) or fails with "
                "'Converting decimal loses precision' under fast_executemany; "
                "use executemany or values")


class SQLiteOdbcDialect(OdbcDialect):
    name: ClassVar[str] = "sqlite"
    max_params: ClassVar[int] = 32766  # SQLITE_MAX_VARIABLE_NUMBER since 3.32
    session_id_sql: ClassVar[str] = ""
    values_rows: ClassVar[int] = 100
    auto_methods: ClassVar[tuple[str, ...]] = ("values", "executemany")
    max_identifier_bytes: ClassVar[int] = SQLiteDialect.max_identifier_bytes
    transactional_ddl: ClassVar[bool] = SQLiteDialect.transactional_ddl
    no_schema_hint: ClassVar[str] = SQLiteDialect.no_schema_hint

    def __init__(self, params: ConnectionParams | None = None,
                 facts: ConnectionFacts | None = None) -> None:
        super().__init__(params, facts)
        self._native = SQLiteDialect()

    def column_sql_type(self, ctype: ColumnType) -> str:
        return self._native.column_sql_type(ctype)

    def value_adapters(self) -> AnyMapping[str, Callable[[Any], Any] | str]:
        return self._native.value_adapters()

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        return self._native.list_tables_sql()

    def select_for_update_sql(self, table: str, columns: Sequence[str],
                              key: str | Sequence[str]) -> str:
        # (Not the native dialect's: the table is named in this dialect's namespace.)
        return super().select_for_update_sql(table, columns, key).removesuffix(" FOR UPDATE")

    def database_file(self, conn: OdbcConnection) -> str | None:
        """The file SQLite opened (a ``DSN=`` names it only in odbc.ini): a native
        ``sqlite:`` run on the same file takes the same lock file."""
        for _seq, name, file, *_ in conn.query("PRAGMA database_list"):
            if name == "main":
                return str(file or "")
        return ""

    def insert_methods(self) -> list[InsertMethod]:
        return [InsertMethod("executemany"), InsertMethod("fast", False, FAST_REFUSED),
                InsertMethod("values"),
                InsertMethod("copy", False, "SQLite has no COPY; use values or executemany")]
