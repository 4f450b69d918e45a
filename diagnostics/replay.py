"""Record and replay SQL Server DMV snapshots.

SQL Server cannot run everywhere our tests run, so the sampler's delta, ratio and category
logic is tested on recorded snapshots: :func:`record_mssql_snapshots` captures them from a
live server (``python -m diagnostics.replay "DRIVER=...;SERVER=..." out.json``), and
:class:`ReplayConnection` plays them back through the DB-API calls the sampler makes.

File format: ``{"description", "program_name", "database", "probe": [row],
"snapshots": [{"file_stats": [rows], "wait_stats": [...], "perf_counters": [...],
"sessions": [...], "requests": [...], "blocking": [...]}, ...]}`` — rows are objects keyed
by column name. A section a recording lacks (``requests`` and ``blocking`` came later)
fails when queried, as the DMV would on a server that refuses it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diagnostics._dbapi import Connection, fetch_rows
from diagnostics.mssql import all_queries

# which recorded section answers a statement: the first marker found in the SQL wins
_MARKERS = (
    ("dm_os_waiting_tasks", "blocking"),
    ("dm_exec_requests", "requests"),
    ("dm_io_virtual_file_stats", "file_stats"),
    ("dm_os_wait_stats", "wait_stats"),
    ("dm_os_performance_counters", "perf_counters"),
    ("dm_exec_sessions", "sessions"),
    ("SERVERPROPERTY", "probe"),
)


class ReplayError(Exception):
    """Raised by a replayed statement, e.g. to imitate a permission error."""


class _ReplayCursor:
    def __init__(self, owner: ReplayConnection) -> None:
        self._owner = owner
        self._rows: list[dict[str, Any]] = []
        self.description: list[tuple[str | None, ...]] | None = None

    def execute(self, sql: str) -> _ReplayCursor:
        self._owner.executed.append(sql)
        if self._owner.error is not None:
            raise ReplayError(self._owner.error)
        section = next((name for marker, name in _MARKERS if marker in sql), None)
        if section is None:
            raise ReplayError(f"no recorded answer for: {sql[:80]}")
        self._rows = self._owner.next_rows(section)
        names = list(self._rows[0]) if self._rows else []
        self.description = [(n, None, None, None, None, None, None) for n in names]
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in self._rows]

    def close(self) -> None:
        pass


class ReplayConnection:
    """A DB-API connection answering each DMV query with its next recorded snapshot.

    Each section advances on its own: the k-th ``dm_os_wait_stats`` query gets the k-th
    recorded wait snapshot. Past the end, the last snapshot repeats. ``error`` makes every
    statement fail with that message (e.g. a VIEW SERVER STATE denial).
    """

    def __init__(
        self,
        snapshots: Sequence[Mapping[str, list[dict[str, Any]]]],
        probe: list[dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> None:
        self.snapshots = list(snapshots)
        self.probe = probe or []
        self.error = error
        self.executed: list[str] = []
        self._next: dict[str, int] = {}
        self.closed = False

    @classmethod
    def from_json(cls, path: str | Path, error: str | None = None) -> ReplayConnection:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(doc["snapshots"], doc.get("probe"), error)

    def next_rows(self, section: str) -> list[dict[str, Any]]:
        if section == "probe":
            return [dict(r) for r in self.probe]
        index = self._next.get(section, 0)
        self._next[section] = index + 1
        snapshot = self.snapshots[min(index, len(self.snapshots) - 1)]
        if section not in snapshot:
            raise ReplayError(f"{section} was not recorded")
        return [dict(r) for r in snapshot[section]]

    def cursor(self) -> _ReplayCursor:
        return _ReplayCursor(self)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def record_mssql_snapshots(
    conn: Connection, count: int = 3, interval: float = 5.0, program_name: str = "migration-bench"
) -> dict[str, Any]:
    """Capture ``count`` snapshots of every DMV the sampler reads, ``interval`` s apart."""
    queries = all_queries(program_name)
    probe = fetch_rows(conn, queries["probe"])
    snapshots: list[dict[str, Any]] = []
    for i in range(count):
        if i:
            time.sleep(interval)
        snapshots.append(
            {name: fetch_rows(conn, sql) for name, sql in queries.items() if name != "probe"}
        )
    return {
        "description": "recorded with diagnostics.replay",
        "program_name": program_name,
        "database": probe[0]["database_name"] if probe else None,
        "probe": probe,
        "snapshots": snapshots,
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m diagnostics.replay ODBC-CONNECTION-STRING OUT.json", file=sys.stderr
        )
        return 2
    import pyodbc

    conn = pyodbc.connect(argv[0], autocommit=True)
    doc = record_mssql_snapshots(conn)
    Path(argv[1]).write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
