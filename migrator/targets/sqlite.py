"""The embedded default target: ``sqlite:PATH`` through the standard library's sqlite3.

``sqlite:PATH?journal_mode=DELETE&synchronous=FULL`` sets PRAGMAs; the defaults are WAL with
``synchronous=NORMAL``: a committed batch survives a killed process (what ``--resume``
needs), not a power cut.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping as AnyMapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

from migrator.coerce import TEXT
from migrator.errors import DatabaseError, TargetError
from migrator.mapping import ColumnType
from migrator.targets.base import (
    Connection,
    Dialect,
    InsertMethod,
    IntegrityViolation,
    Row,
    Target,
    TargetInfo,
    statement_kind,
)

if TYPE_CHECKING:
    from migrator.runlock import HeldLock, Holder

POOL_SIZE = 4  # idle connections kept per process
DEFAULT_PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL"}
_PRAGMA_VALUE = re.compile(r"^[A-Za-z0-9_\-]+$")
_PRAGMAS = {"journal_mode", "synchronous", "cache_size", "temp_store", "locking_mode",
            "page_size", "mmap_size", "busy_timeout"}


class SQLiteDialect(Dialect):
    name: ClassVar[str] = "sqlite"
    placeholder: ClassVar[str] = "?"
    max_params: ClassVar[int] = 32766  # SQLITE_MAX_VARIABLE_NUMBER since 3.32
    default_insert_method: ClassVar[str] = "executemany"
    max_identifier_bytes: ClassVar[int] = 1000  # no limit of its own; keep names sane
    transactional_ddl: ClassVar[bool] = True
    no_schema_hint: ClassVar[str] = " or another database file"

    def column_sql_type(self, ctype: ColumnType) -> str:
        if ctype.kind == "decimal":
            # SQLite has no exact decimal: NUMERIC affinity would turn "12.50" into a REAL.
            # Canonical decimal text keeps every digit; the declared type documents p,s.
            return f"TEXT /* decimal({ctype.precision},{ctype.scale}) */"
        if ctype.kind == "bool":
            return "INTEGER /* bool */"
        return super().column_sql_type(ctype)

    def value_adapters(self) -> AnyMapping[str, Callable[[Any], Any] | str]:
        # Converting here is deliberate: sqlite3's default Decimal adapter path costs ~30%
        # of insert time, and its date/datetime adapters are deprecated since Python 3.12.
        # TEXT: the mapper's converters produce canonical text directly (no Decimal/date
        # object is built only to be formatted again).
        return {"decimal": TEXT, "date": TEXT, "datetime": TEXT, "bool": int}

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        return "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')", ()

    def insert_methods(self) -> list[InsertMethod]:
        return [InsertMethod("executemany"), InsertMethod("values")]

    def select_for_update_sql(self, table: str, columns: Sequence[str],
                              key: str | Sequence[str]) -> str:
        # No FOR UPDATE in SQLite: a writing transaction already excludes every other writer.
        return super().select_for_update_sql(table, columns, key).removesuffix(" FOR UPDATE")


class SQLiteConnection(Connection):
    def __init__(self, path: str, pragmas: dict[str, str], dialect: SQLiteDialect) -> None:
        self.dialect: SQLiteDialect = dialect
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30,
                                       check_same_thread=False)
            for k, v in pragmas.items():
                self._db.execute(f"PRAGMA {k}={v}")
        except sqlite3.Error as exc:
            raise TargetError(f"sqlite:{path}: cannot open database: {exc}") from None
        self._path = path
        self._pool: list[SQLiteConnection] | None = None
        self._sql_cache: dict[tuple[str, tuple[str, ...], int], str] = {}

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Constraint errors → IntegrityViolation (the engine isolates the record); any other
        SQLite error (disk full, locked, I/O) → one clear TargetError line."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(f"{what}: {exc}") from exc
        except sqlite3.Error as exc:
            raise DatabaseError(f"sqlite:{self._path}: {what} failed: {exc}", "", str(exc),
                                native=getattr(exc, "sqlite_errorcode", None),
                                dbms="sqlite") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._errors(statement_kind(sql).lower()):
            self._db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._errors("query"):
            return list(self._db.execute(sql, params).fetchall())

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row],
                    method: str | None = None) -> None:
        if not rows:
            return
        with self._errors(f"insert into {table}"):
            self._insert(table, columns, rows, method or self.dialect.default_insert_method)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Row],
                method: str) -> None:
        if method == "executemany":
            key = (table, tuple(columns), 1)
            sql = self._sql_cache.get(key)
            if sql is None:
                sql = self._sql_cache[key] = self.dialect.insert_sql(table, columns)
            self._db.executemany(sql, rows)
        elif method == "values":
            self._insert_values(table, columns, rows)
        else:
            raise TargetError(f"insert method {method!r} is not available for sqlite; "
                              f"use executemany or values")

    def _insert_values(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        width = len(columns)
        per_stmt = max(1, min(500, self.dialect.max_params // width))
        for start in range(0, len(rows), per_stmt):
            chunk = rows[start:start + per_stmt]
            key = (table, tuple(columns), len(chunk))
            sql = self._sql_cache.get(key)
            if sql is None:
                one = "(" + ", ".join("?" * width) + ")"
                head = self.dialect.insert_sql(table, columns).split(" VALUES ")[0]
                sql = self._sql_cache[key] = head + " VALUES " + ", ".join([one] * len(chunk))
            self._db.execute(sql, [v for row in chunk for v in row])

    def begin(self) -> None:
        with self._errors("begin"):
            self._db.execute("BEGIN")

    def commit(self) -> None:
        with self._errors("commit"):
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            with self._errors("rollback"):
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        pool = self._pool
        if pool is not None and len(pool) < POOL_SIZE:
            # Back to the pool, reset like a driver manager resets a pooled session.
            self.rollback()
            pool.append(self)
            return
        self._db.close()

    def session_id(self) -> str:
        return f"sqlite-{os.getpid()}-{id(self._db):x}"

    def discard(self) -> None:
        self._pool = None  # (not back to the pool)
        with suppress(sqlite3.Error):
            self._db.close()


class SQLiteTarget(Target):
    scheme: ClassVar[str] = "sqlite"

    def __init__(self, rest: str) -> None:
        path, _, query = rest.partition("?")
        if not path:
            raise TargetError("sqlite: needs a file path, e.g. --target sqlite:work/mig.db")
        pragmas = dict(DEFAULT_PRAGMAS)
        for k, v in parse_qsl(query, keep_blank_values=True):
            if k not in _PRAGMAS or not _PRAGMA_VALUE.match(v):
                raise TargetError(f"sqlite:{rest}: unsupported option {k}={v!r}; "
                                  f"known: {', '.join(sorted(_PRAGMAS))}")
            pragmas[k] = v
        self.path = path
        self.pragmas = pragmas
        self.dialect: SQLiteDialect = SQLiteDialect()
        self._spec = rest
        self.pooling: bool | None = None
        self._idle: list[SQLiteConnection] = []

    def set_pooling(self, enabled: bool) -> None:
        """A small per-process pool: ``close()`` keeps the connection for the next
        ``connect()``, so a pooled checkout skips opening the file and the PRAGMAs (the
        reuse is visible in :meth:`SQLiteConnection.session_id`)."""
        self.pooling = enabled
        if not enabled:
            self.close()

    def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn._pool = None
            conn.close()

    def connect(self) -> SQLiteConnection:
        if self.pooling and self._idle:
            return self._idle.pop()
        conn = self._open()
        if self.pooling:
            conn._pool = self._idle
        return conn

    def check_folder(self) -> None:
        """The database file's folder must exist: a mistyped path must not quietly become
        a new folder tree holding a new, empty database."""
        if self.path == ":memory:":
            return
        parent = Path(self.path).parent
        if not parent.is_dir():
            what = "is not a folder" if parent.exists() else "does not exist"
            raise TargetError(f"sqlite:{self.path}: the folder {parent} {what}; create it "
                              f"first (mkdir -p {parent}) or choose another path")

    def _open(self) -> SQLiteConnection:
        self.check_folder()
        return SQLiteConnection(self.path, self.pragmas, self.dialect)

    def acquire_run_lock(self, holder: Holder, namespace: str | None = None) -> HeldLock:
        """``flock`` on ``<database>.lock``; ``:memory:`` is private to its connection, so
        there is nothing another run could open."""
        from migrator.runlock import FileLock, NoLock, lock_file_path

        if self.path == ":memory:":
            return NoLock()
        self.check_folder()
        return FileLock.acquire(lock_file_path(self.path, namespace), holder,
                                f"sqlite:{self._spec}")

    def info(self) -> TargetInfo:
        return TargetInfo(scheme="sqlite", display=f"sqlite:{self._spec}", dialect="sqlite",
                          dbms_name="SQLite", dbms_version=sqlite3.sqlite_version,
                          driver_name="python sqlite3", driver_version=sqlite3.sqlite_version,
                          extra={"pragmas": self.pragmas})

    def picklable_spec(self) -> str:
        return f"sqlite:{self._spec}"
