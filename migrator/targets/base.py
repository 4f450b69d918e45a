"""What every database target provides; dialect modules override only what differs.

A *target* is where a run writes (``sqlite:PATH``, ``odbc:CONNECTION-STRING``); its
*dialect* owns the SQL: DDL from the mapping, identifier quoting, value adapters, insert
methods and parameter caps. Every table is named through :meth:`Dialect.table_ref`, which
qualifies a logical name (``orders``, ``mb_checkpoint``) with the target's
:class:`Namespace` (schema and prefix). The engine talks only to :class:`Target` and
:class:`Connection`, so adding a dialect never touches the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping as AnyMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from migrator.errors import TargetError
from migrator.mapping import POSITION_COLUMN, ColumnType, Mapping, Table

if TYPE_CHECKING:
    from migrator.runlock import HeldLock, Holder

Row = tuple[Any, ...]

CHECKPOINT_TABLE = "mb_checkpoint"
QUARANTINE_TABLE = "mb_quarantine"
RUN_TABLE = "mb_run"
# The tables the tool created in this namespace: only those are ever dropped or emptied.
REGISTRY_TABLE = "mb_tables"
BOOKKEEPING_TABLES = (RUN_TABLE, CHECKPOINT_TABLE, QUARANTINE_TABLE)
LOCK_TABLE = "mb_lock"  # who holds a server target's run lock (migrator.runlock)
# Format of the bookkeeping tables, stored in RUN_TABLE: --resume refuses another one.
# 2: checkpoints are keyed by unit_key, a digest of the unit id (format 1 keyed the id).
# 3: the tables are registered in REGISTRY_TABLE, quarantine keys and reasons are text.
# 4: the root table carries each record's input position (mapping.POSITION_COLUMN).
# 5: quarantined records name their record element (mappings with several record types).
CHECKPOINT_FORMAT = "5"
UNIT_ID_CHARS = 4000  # a path up to Linux's PATH_MAX, plus a byte range
# Server dialects with schemas put the tool's tables in their own schema unless told
# otherwise: a user's `orders` in the default schema can then never be in the way.
DEFAULT_SCHEMA = "migration_bench"
PREFIX_MAX_CHARS = 30
_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Namespace:
    """Where the tool's tables live in a target: a schema (None: the dialect's default)
    and a prefix put before every table name, the bookkeeping tables' included.

    Picklable: it travels to worker processes with their task.
    """

    schema: str | None = None
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and (len(self.prefix) > PREFIX_MAX_CHARS
                            or not _PREFIX_RE.fullmatch(self.prefix)):
            raise ValueError(f"--table-prefix {self.prefix!r}: use letters, digits and _, "
                             f"not starting with a digit, at most {PREFIX_MAX_CHARS} "
                             f"characters, e.g. mb1_")
        if self.schema is not None and (len(self.schema) > 63
                                        or not _SCHEMA_RE.fullmatch(self.schema)):
            raise ValueError(f"--schema {self.schema!r}: use letters, digits and _, "
                             f"not starting with a digit, at most 63 characters, e.g. "
                             f"{DEFAULT_SCHEMA}")

    def physical(self, logical: str) -> str:
        """The name a logical table (``orders``, ``mb_checkpoint``) has in the database."""
        return self.prefix + logical


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
    # Schemas: whether ``--schema`` applies, and where the tables go without it.
    supports_schemas: ClassVar[bool] = False
    default_schema: ClassVar[str | None] = None
    max_identifier_bytes: ClassVar[int] = 128
    # CREATE/DROP TABLE roll back with the transaction (PostgreSQL, SQLite, SQL Server):
    # a fresh schema is then built in one transaction, all or nothing.
    transactional_ddl: ClassVar[bool] = False
    # Where to keep the tool's tables apart instead, where --schema does not apply.
    no_schema_hint: ClassVar[str] = ""
    # Where this target's tables are; the target sets it (Target.set_namespace).
    namespace: Namespace = Namespace()

    # ---- identifiers and types -------------------------------------------------------
    def quote(self, ident: str) -> str:
        """Quote an identifier, doubling embedded quotes: names are never injected."""
        if "\x00" in ident:
            raise TargetError(f"identifier {ident!r} contains NUL")
        return '"' + ident.replace('"', '""') + '"'

    # ---- table names -----------------------------------------------------------------
    @property
    def schema(self) -> str | None:
        """The schema the tool's tables are in (None: the connection's default)."""
        schema = self.namespace.schema
        if schema is None:
            return self.default_schema
        if not self.supports_schemas:
            raise TargetError(f"--schema {schema}: {self.name} has no schemas; keep the "
                              f"tables apart with --table-prefix PREFIX"
                              f"{self.no_schema_hint} instead")
        return schema

    def check_namespace(self) -> None:
        """Raise the one-line error for a ``--schema`` this dialect cannot have."""
        _ = self.schema

    def table_name(self, logical: str) -> str:
        """The physical name of a logical table: the namespace's prefix + the name."""
        name = self.namespace.physical(logical)
        if len(name.encode("utf-8")) > self.max_identifier_bytes:
            raise TargetError(f"--table-prefix {self.namespace.prefix}: table name {name!r} "
                              f"is longer than {self.name} allows "
                              f"({self.max_identifier_bytes} bytes); use a shorter prefix")
        return name

    def table_ref(self, logical: str) -> str:
        """The qualified, quoted name of a logical table, as every statement names it."""
        name = self.quote(self.table_name(logical))
        schema = self.schema
        return f"{self.quote(schema)}.{name}" if schema else name

    def table_display(self, logical: str) -> str:
        """``schema.name`` for messages (unquoted)."""
        schema = self.schema
        name = self.table_name(logical)
        return f"{schema}.{name}" if schema else name

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        """A query listing the name of every table and view in the namespace's schema."""
        schema = self.schema
        if schema is None:
            return ("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()", ())
        return ("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                + self.placeholder, (schema,))

    def schema_exists_sql(self) -> str:
        """A query with one parameter (a schema name) returning a row if it exists."""
        return ("SELECT 1 FROM information_schema.schemata WHERE schema_name = "
                + self.placeholder)

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA {self.quote(schema)}"

    # ---- types -------------------------------------------------------------------------
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
        """The table with its primary key (the parent's key columns, then the position or
        own key of a child table) and, for a child table, a foreign key to its parent."""
        q = self.quote
        cols = [f"{q(n)} {self.column_sql_type(t)} NOT NULL"
                for n, t in zip(table.primary_key, table.primary_key_types, strict=True)]
        for c in table.columns:
            null = " NOT NULL" if c.required else ""
            cols.append(f"{q(c.name)} {self.column_sql_type(c.type)}{null}")
        if table.is_root:
            cols.append(self.position_column_sql())
        pk = ", ".join(q(n) for n in table.primary_key)
        cols.append(f"PRIMARY KEY ({pk})")
        if table.parent is not None and mapping.foreign_keys:
            parent = mapping.table(table.parent)
            mine = ", ".join(q(n) for n in table.key_columns)
            theirs = ", ".join(q(n) for n in parent.primary_key)
            cols.append(f"FOREIGN KEY ({mine}) REFERENCES {self.table_ref(parent.name)} "
                        f"({theirs})")
        return [f"CREATE TABLE {self.table_ref(table.name)} (\n  " + ",\n  ".join(cols)
                + "\n)"]

    def position_column_sql(self) -> str:
        """The root table's bookkeeping column: a record's position in the input
        (``FILE:LINE:SEQ``, see :mod:`migrator.duplicates`). Nullable, so that rows written
        by other means stay insertable; the engine always fills it."""
        return f"{self.quote(POSITION_COLUMN)} VARCHAR(64)"

    def drop_table_sql(self, name: str) -> str:
        """Drop a logical table of this namespace (callers check that the tool owns it)."""
        return f"DROP TABLE IF EXISTS {self.table_ref(name)}"

    def bookkeeping_sql(self) -> list[str]:
        """The checkpoint, quarantine and run tables the engine keeps in the target, in
        :data:`BOOKKEEPING_TABLES` order. Quarantined keys and reasons are text: a record's
        key can be as long as its element's text, and must never stop the run."""
        ref = self.table_ref
        text = self.column_sql_type(ColumnType("text"))
        return [
            f"CREATE TABLE {ref(RUN_TABLE)} (k VARCHAR(64) NOT NULL PRIMARY KEY, "
            f"v VARCHAR(4000) NOT NULL)",
            f"CREATE TABLE {ref(CHECKPOINT_TABLE)} (unit_key VARCHAR(64) NOT NULL PRIMARY KEY, "
            f"unit VARCHAR({UNIT_ID_CHARS}) NOT NULL, "
            f"records_done BIGINT NOT NULL, inserted BIGINT NOT NULL, "
            f"quarantined BIGINT NOT NULL, finished INTEGER NOT NULL, "
            f"source_bytes BIGINT NOT NULL)",
            f"CREATE TABLE {ref(QUARANTINE_TABLE)} (unit VARCHAR({UNIT_ID_CHARS}) NOT NULL, "
            f"file VARCHAR({UNIT_ID_CHARS}) NOT NULL, line BIGINT NOT NULL, "
            f"record_key {text}, "
            f"reason_code VARCHAR(40) NOT NULL, reason {text} NOT NULL, "
            f"record_element VARCHAR(200))",
        ]

    def registry_sql(self) -> str:
        """The table listing the tables the tool created here (physical name, the mapping's
        fingerprint, the run that created it, when): the only ones it drops or empties."""
        return (f"CREATE TABLE {self.table_ref(REGISTRY_TABLE)} ("
                f"table_name VARCHAR(200) NOT NULL PRIMARY KEY, "
                f"mapping_fingerprint VARCHAR(64) NOT NULL, run_id VARCHAR(64) NOT NULL, "
                f"created_at VARCHAR(40) NOT NULL)")

    def lock_table_sql(self) -> str:
        """The table naming who holds a server target's run lock (migrator.runlock)."""
        return (f"CREATE TABLE {self.table_ref(LOCK_TABLE)} (lock_key VARCHAR(64) NOT NULL "
                f"PRIMARY KEY, holder VARCHAR(2000) NOT NULL)")

    # ---- DML -------------------------------------------------------------------------
    def insert_sql(self, table_name: str, columns: Sequence[str]) -> str:
        q = self.quote
        cols = ", ".join(q(c) for c in columns)
        marks = ", ".join([self.placeholder] * len(columns))
        return f"INSERT INTO {self.table_ref(table_name)} ({cols}) VALUES ({marks})"

    def insert_methods(self) -> list[InsertMethod]:
        return [InsertMethod("executemany")]

    def select_for_update_sql(self, table: str, columns: Sequence[str],
                              key: str | Sequence[str]) -> str:
        """Read the rows whose ``key`` column(s) equal the parameters and lock them until the
        transaction ends (a concurrent writer of the same key waits). A locking read also
        sees the latest committed row where plain reads see a snapshot (InnoDB's
        REPEATABLE READ)."""
        q = self.quote
        return (f"SELECT {', '.join(q(c) for c in columns)} FROM {self.table_ref(table)} "
                f"WHERE {self.key_match(key)} FOR UPDATE")

    def key_match(self, key: str | Sequence[str]) -> str:
        """``"a" = ? AND "b" = ?`` for the key column(s)."""
        keys = [key] if isinstance(key, str) else list(key)
        return " AND ".join(f"{self.quote(k)} = {self.placeholder}" for k in keys)


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

    def discard(self) -> None:
        """Close a session that failed, never raising, and never back into a pool the
        target keeps. (An ODBC driver manager drops a dead pooled session itself, at the
        next checkout: it asks the driver for SQL_ATTR_CONNECTION_DEAD.)"""
        with contextlib.suppress(Exception):
            self.close()


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
    namespace: Namespace = Namespace()

    @abstractmethod
    def connect(self) -> Connection: ...

    def set_namespace(self, namespace: Namespace) -> None:
        """Put the tool's tables in ``namespace`` (schema, prefix) for every later statement
        of this target's connections."""
        self.namespace = namespace
        self.dialect.namespace = namespace

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

    def acquire_run_lock(self, holder: Holder, namespace: str | None = None) -> HeldLock:
        """Take this target's run lock (:class:`migrator.runlock.RunLock` calls it);
        :class:`migrator.runlock.TargetBusy` when another run holds it."""
        raise TargetError(f"{self.info().display}: this target has no run lock, so two "
                          f"runs into it at once could not be refused")


# ---- the namespace's tables, read from the database -----------------------------------------
def existing_tables(conn: Connection) -> dict[str, str]:
    """Every table and view in the namespace's schema: case-folded name → name. Names are
    compared case-folded, since SQLite and SQL Server (by default) ignore case."""
    conn.dialect.check_namespace()
    sql, params = conn.dialect.list_tables_sql()
    names = (str(r[0]) for r in conn.query(sql, params))
    return {n.casefold(): n for n in names}


def table_exists(conn: Connection, logical: str) -> bool:
    return conn.dialect.table_name(logical).casefold() in existing_tables(conn)


def ensure_schema(conn: Connection) -> None:
    """Create the namespace's schema if it is missing (committed on its own: an empty
    schema is harmless). Checked first, so a schema that exists needs no CREATE right."""
    d = conn.dialect
    schema = d.schema
    if schema is None or conn.query(d.schema_exists_sql(), (schema,)):
        return
    try:
        conn.execute(d.create_schema_sql(schema))
        conn.commit()
    except TargetError as exc:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise TargetError(
            f"cannot create schema {schema} for the tables: {error_detail(exc)}; create it "
            f"beforehand (CREATE SCHEMA {schema}), or name one you may create tables in "
            f"with --schema NAME") from exc


def statement_kind(sql: str) -> str:
    """``DROP TABLE`` for ``DROP TABLE IF EXISTS "t"``, ``UPDATE`` for an UPDATE …: what
    an error message says failed, without half a clause."""
    words = sql.split(None, 2)
    if len(words) >= 2 and words[0].upper() in ("CREATE", "DROP", "ALTER") \
            and words[1].isalpha():
        return f"{words[0]} {words[1]}".upper()
    return words[0].upper() if words else "statement"


def error_detail(exc: BaseException) -> str:
    """A database error's own text, without the "dialect: statement failed:" lead."""
    return str(getattr(exc, "detail", "") or exc)
