"""When a run finished, recorded in the target beside its checkpoints.

A run that read every unit to the end without an error writes ``finished_at`` (UTC, ISO
8601) into the run table (``mb_run``, a key/value table) in its own transaction. A fresh
run recreates that table, so the key belongs to the target's latest run; ``--resume``
reads it and reports that there is nothing to resume instead of measuring an empty run.
"""

from __future__ import annotations

import datetime as dt

from migrator.targets.base import RUN_TABLE, Target, table_exists

FINISHED_KEY = "finished_at"


def mark_finished(target: Target, when: dt.datetime | None = None) -> str:
    """Record that the target's run finished (now, unless ``when``); returns the stamp."""
    stamp = (when or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    conn = target.connect()
    try:
        d = conn.dialect
        conn.begin()
        try:
            conn.execute(f"DELETE FROM {d.table_ref(RUN_TABLE)} WHERE k = {d.placeholder}",
                         (FINISHED_KEY,))
            conn.insert_rows(RUN_TABLE, ("k", "v"), [(FINISHED_KEY, stamp)])
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        conn.close()
    return stamp


def finished_at(target: Target) -> str | None:
    """When the target's run finished, or None (no run, or one that did not finish)."""
    conn = target.connect()
    try:
        d = conn.dialect
        if not table_exists(conn, RUN_TABLE):
            return None
        rows = conn.query(f"SELECT v FROM {d.table_ref(RUN_TABLE)} WHERE k = {d.placeholder}",
                          (FINISHED_KEY,))
    finally:
        conn.close()
    return str(rows[0][0]) if rows else None
