"""Whose database sessions these are: the run id and the name every session carries.

Every connection the tool opens names itself ``migration-bench <run id>`` (a role such as
``copy`` or ``sampler`` may follow after a space), so a DBA looking at
``pg_stat_activity``, ``sys.dm_exec_sessions`` or the MariaDB processlist sees which run a
session belongs to, and the server samplers count exactly the run's sessions.

The run id travels in the environment variable :data:`RUN_ID_ENV`: :func:`run_scope` sets
it for the duration of a run, so every process the run spawns (workers, a pipeline's
mapper, pooling probes) inherits it and names its sessions the same way. Without a run
(``bench doctor``, a library call outside :func:`run_scope`), sessions are named
``migration-bench`` alone.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from migrator.errors import MigratorError

APP_NAME = "migration-bench"
RUN_ID_ENV = "MIGRATION_BENCH_RUN_ID"
# Short enough that "migration-bench <id> sampler" fits PostgreSQL's 63-byte
# application_name; only characters that need no quoting in SQL or connection strings.
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


class RunIdError(MigratorError):
    """A run id (given or from the environment) that cannot name a session."""


def new_run_id() -> str:
    """A fresh run id: 8 hex digits (unique enough among the runs one server sees)."""
    return secrets.token_hex(4)


def check_run_id(run_id: str, source: str = "run id") -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise RunIdError(f"{source} {run_id!r}: use 1 to 32 letters, digits, '.', '_' or '-'")
    return run_id


def current_run_id() -> str | None:
    """The run id this process works for (from :data:`RUN_ID_ENV`), or None."""
    value = os.environ.get(RUN_ID_ENV, "").strip()
    return check_run_id(value, RUN_ID_ENV) if value else None


def run_prefix(run_id: str | None = None) -> str:
    """``migration-bench <run id>``: what every session of the run is named, or starts
    with followed by a space and a role."""
    run_id = run_id if run_id is not None else current_run_id()
    return f"{APP_NAME} {run_id}" if run_id else APP_NAME


def session_name(role: str = "", run_id: str | None = None) -> str:
    """The name a new session carries: the run prefix, then the role if any."""
    prefix = run_prefix(run_id)
    return f"{prefix} {role}" if role else prefix


def is_run_session(name: str, prefix: str) -> bool:
    """Does a session named ``name`` belong to the run whose prefix is ``prefix``?"""
    return name == prefix or name.startswith(prefix + " ")


@contextmanager
def run_scope(run_id: str | None = None) -> Iterator[str]:
    """Make ``run_id`` (or the inherited one, or a new one) this process's run id until
    the block ends; child processes started inside inherit it."""
    previous = os.environ.get(RUN_ID_ENV)
    chosen = check_run_id(run_id) if run_id else (current_run_id() or new_run_id())
    os.environ[RUN_ID_ENV] = chosen
    try:
        yield chosen
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous
