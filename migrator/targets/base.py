"""What every database target provides; dialect modules override only what differs.

A *target* is where a run writes (``sqlite:PATH``, ``odbc:CONNECTION-STRING``); its
*dialect* owns the SQL: DDL from the mapping, identifier quoting, value adapters, insert
methods and parameter caps. The engine talks only to :class:`Target` and
:class:`Connection`, so adding a dialect never touches the engine.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping as AnyMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from migrator.errors import TargetError
from migrator.mapping import ColumnType, Mapping, Table

Row = tuple[Any, ...]

CHECKPOINT_TABLE = "mb_checkpoint"
QUARANTINE_TABLE = "mb_quarantine"
RUN_TABLE = "mb_run"
# Format of the bookkeeping tables, stored in RUN_TABLE: --resume refuses another one.
# 2: checkpoints are keyed by unit_key, a digest of the unit id (format 1 keyed the id).
CHECKPOINT_FORMAT = "2"
UNIT_ID_CHARS = 4000  # a path up to Linux's PATH_MAX, plus a byte range


def unit_key(unit_id: str) -> str:
    """The checkpoint key of a unit: 64 hex characters whatever the id's length. A unit id
    is a file path (plus ``#start-end`` for a byte range); as a key it broke the index-key
    limits of SQL Server (450 characters) and InnoDB (768) on deep folders."""
    return hashlib.sha256(unit_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class InsertMethod:
    """An insert method a dialect offers, or refuses with a reason a user can act on."""

    name: str  # executemany | fast | values | copy
    available: bool = True
    reason: str = ""


class Dialect:
    """SQL generation shared by all dialects; subclasses override what differs.

    ``name`` is the registry key (``sqlite``, ``postgresql``, ``mssql``, ``mysql``).
    """

    name: ClassVar[str] = "generic"
    placeholder: ClassVar[str] = "?"
    max_params: ClassVar[int] = 2100
    default_insert_method: ClassVar[str] = "executemany"

    # ---- identifiers and types -------------------------------------------------------
    def quote(self, ident: str) -> str:
        """Quote an identifier, doubling embedded quotes: names are never injected."""
        if "\x00" in ident:
            raise TargetError(f"identifier {ident!r} contains NUL")
        return '"' + ident.replace('"', '""') + '"'

    def column_sql_type(self, ctype: ColumnType) -> str:
        kind = ctype.kind
        if kind == "int":
            return "INTEGER"
        if kind == "bigint":
            return "BIGINT"
        if kind == "decimal":
            return f"DECIMAL({ctype.precision},{ctype.scale})"
        if kind == "str":
            return f"VARCHAR({ctype.length})"
        if kind == "text":
            return "TEXT"
        if kind == "date":
            return "DATE"
        if kind == "datetime":
            return "TIMESTAMP"
        if kind == "bool":
            return "BOOLEAN"
        raise AssertionError(kind)

    def value_adapters(self) -> AnyMapping[str, Callable[[Any], Any] | str]:
        """Per type kind, a function from the canonical Python value to the bound value, or
        ``migrator.coerce.TEXT`` for canonical text (decimal, date, datetime)."""
        return {}

    # ---- DDL -------------------------------------------------------------------------
    def create_table_sql(self, mapping: Mapping, table: Table) -> list[str]:
        q = self.quote
        cols = [f"{q(table.key_column)} {self.column_sql_type(mapping.key_type)} NOT NULL"]
        if table.position_column:
            cols.append(f"{q(table.position_column)} INTEGER NOT NULL")
        for c in table.columns:
            null = " NOT NULL" if c.required else ""
            cols.append(f"{q(c.name)} {self.column_sql_type(c.type)}{null}")
        pk = ", ".join(q(n) for n in table.primary_key)
        cols.append(f"PRIMARY KEY ({pk})")
        return [f"CREATE TABLE {q(table.name)} (\n  " + ",\n  ".join(cols) + "\n)"]

    def drop_table_sql(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS {self.quote(name)}"

    def bookkeeping_sql(self) -> list[str]:
        """The checkpoint, quarantine and run tables the engine keeps in the target."""
        q = self.quote
        return [
            f"CREATE TABLE {q(RUN_TABLE)} (k VARCHAR(64) NOT NULL PRIMARY KEY, "
            f"v VARCHAR(4000) NOT NULL)",
            f"CREATE TABLE {q(CHECKPOINT_TABLE)} (unit_key VARCHAR(64) NOT NULL PRIMARY KEY, "
            f"unit VARCHAR({UNIT_ID_CHARS}) NOT NULL, "
            f"records_done BIGINT NOT NULL, inserted BIGINT NOT NULL, "
            f"quarantined BIGINT NOT NULL, finished INTEGER NOT NULL, "
            f"source_bytes BIGINT NOT NULL)",
            f"CREATE TABLE {q(QUARANTINE_TABLE)} (unit VARCHAR({UNIT_ID_CHARS}) NOT NULL, "
            f"file VARCHAR({UNIT_ID_CHARS}) NOT NULL, line BIGINT NOT NULL, "
            f"record_key VARCHAR(200), "
            f"reason_code VARCHAR(40) NOT NULL, reason VARCHAR(4000) NOT NULL)",
        ]

    def table_exists_sql(self) -> str:
        """A query with one ``?``-style parameter (the table name) returning a row if it exists."""
        return "SELECT 1 FROM information_schema.tables WHERE table_name = " + self.placeholder

    # ---- DML -------------------------------------------------------------------------
    def insert_sql(self, table_name: str, columns: Sequence[str]) -> str:
        q = self.quote
        cols = ", ".join(q(c) for c in columns)
        marks = ", ".join([self.placeholder] * len(columns))
        return f"INSERT INTO {q(table_name)} ({cols}) VALUES ({marks})"

    def insert_methods(self) -> list[InsertMethod]:
        return [InsertMethod("executemany")]


class IntegrityViolation(Exception):
    """A constraint rejected a row (duplicate key, NOT NULL …).

    Connections translate their driver's IntegrityError into this, so the engine can retry a
    batch record by record and quarantine only the offending record.
    """


class Connection(ABC):
    """One physical (or pooled) database session, used by one thread at a time.

    ``insert_rows`` and ``execute`` raise :class:`IntegrityViolation` for constraint errors.
    """

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row],
                    method: str | None = None) -> None:
        """Insert rows inside the current transaction with the named insert method."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # Savepoints let the engine isolate one bad record inside a batch transaction.
    def savepoint(self, name: str) -> None:
        self.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        self.execute(f"ROLLBACK TO SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.execute(f"RELEASE SAVEPOINT {name}")

    def session_id(self) -> str:
        """The server's id for this session (``pg_backend_pid()``, ``@@SPID`` …)."""
        return ""


@dataclass
class TargetInfo:
    """What a result file records about a target. ``display`` never holds a secret."""

    scheme: str
    display: str
    dialect: str
    dbms_name: str = ""
    dbms_version: str = ""
    driver_name: str = ""
    driver_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Target(ABC):
    """A place to migrate into, parsed from ``SCHEME:REST``."""

    scheme: ClassVar[str]
    dialect: Dialect

    @abstractmethod
    def connect(self) -> Connection: ...

    @abstractmethod
    def info(self) -> TargetInfo: ...

    def close(self) -> None:  # noqa: B027 - an optional hook: most targets keep nothing
        """Release what the target keeps between connections (idle pooled sessions)."""

    def can_apply_pooling(self, enabled: bool) -> bool:
        """Can this process still switch pooling to ``enabled``? (unixODBC decides once per
        process; the coordinator runs the migration in a fresh worker process if not.)"""
        return True

    def picklable_spec(self) -> str:
        """The target string to rebuild this target in a worker process (may hold secrets;
        never written anywhere)."""
        raise NotImplementedError

