"""The little of DB-API 2.0 the server samplers need (pyodbc, psycopg and sqlite3 alike)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol


class Connection(Protocol):
    def cursor(self) -> Any: ...

    def rollback(self) -> Any: ...

    def close(self) -> Any: ...


ConnectionFactory = Callable[[], Connection]
"""Opens the sampler's *own* connection; never hand it a worker's connection."""

Row = dict[str, Any]


def fetch_rows(conn: Connection, sql: str) -> list[Row]:
    """Run ``sql`` and return its rows as dicts keyed by lower-case column name."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        names = [str(col[0]).lower() for col in cursor.description or ()]
        return [dict(zip(names, tuple(row), strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def end_snapshot(conn: Connection) -> None:
    """End the implicit transaction so the next read sees fresh statistics.

    PostgreSQL caches ``pg_stat_*`` for the rest of a transaction; a non-autocommit
    connection would otherwise read the same numbers forever.
    """
    with contextlib.suppress(Exception):  # autocommit connections may refuse: nothing to end
        conn.rollback()


def sql_literal(text: str) -> str:
    """A standard SQL string literal (quotes doubled) for the few values we inline."""
    return "'" + text.replace("'", "''") + "'"


def as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
