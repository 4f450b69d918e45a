"""Child processes: how they are started, tied to their parent, and described when they end.

For the coordinator's workers, the pipeline's read/map process and any other child process
the tool starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import signal
import sys
from collections.abc import Iterator
from typing import Any

from migrator.errors import MigratorError


def spawn_context() -> Any:
    """Worker and producer processes are spawned: forking a process with threads (the
    thread pipeline, pyodbc, the progress bar) can copy a held lock into the child."""
    return mp.get_context("spawn")


@contextlib.contextmanager
def main_not_reimported() -> Iterator[None]:
    """Start spawned children without re-running a console script's ``__main__``.

    A spawned child first runs the parent's ``__main__`` file (as ``__mp_main__``). For a
    console-script shim such as ``bench`` that imports the whole CLI (scipy included) in
    every worker — seconds of CPU per process. Our entry points live in importable modules,
    so while starting a child the shim's path is hidden; ``*.py`` scripts (which may define
    things the child unpickles) are left alone.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or path.endswith(".py") or \
            getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so that no child outlives a
    killed coordinator (best effort elsewhere)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def describe_error(exc: BaseException) -> str:
    """One line: the message of a user-facing error, else ``Type: message``."""
    if isinstance(exc, MigratorError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
