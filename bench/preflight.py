"""Checks every command makes before any work, so that nothing is measured only to be lost.

* the results folder (``--out``) can be written: created if missing, then proven by writing
  and deleting a small file — permission bits alone do not tell (root ignores them; a
  read-only mount or a path under a regular file refuses everyone);
* a ``sqlite:`` target's folder exists (a typo must not become a new folder tree);
* the input holds at least one record element (:func:`migrator.reader.check_records`);
* before a multi-step measurement (``bench diagnose pooling``), the target accepts one
  connection (:func:`check_target_reachable`): one clear error instead of one per step.

Each failure is a :class:`PreflightError`: one line naming the option or file and the fix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from migrator.errors import MigratorError

PROBE_PREFIX = ".bench-write-test-"


class PreflightError(MigratorError):
    """A command cannot do its work where it was told to; nothing was started."""


def os_error_text(exc: OSError) -> str:
    """``path: reason`` for an OSError, without Python's ``[Errno N]`` decoration."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' → '.join(names)}: {reason}" if names else reason


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _probe(folder: Path) -> None:
    """Write, sync and delete a small file in ``folder`` (raises OSError)."""
    fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    try:
        os.write(fd, b"migration-bench write test\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def _file_in_the_way(folder: Path) -> Path | None:
    """The first component of ``folder`` that exists as something other than a folder."""
    for part in [*reversed(folder.parents), folder]:
        if part.exists() and not part.is_dir():
            return part
    return None


def ensure_writable_dir(folder: Path, option: str = "--out", *,
                        shown: Path | None = None) -> None:
    """Create ``folder`` (with its parents) and prove a file can be written in it.

    ``shown`` is the path the user gave, when ``folder`` is only its parent.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as exc:
        blocker = _file_in_the_way(folder)
        reason = f"{blocker} is a file, not a folder" if blocker else _reason(exc)
        raise PreflightError(f"{option} {shown or folder}: cannot write there ({reason}); "
                             f"choose a folder you can write to with {option}") from None


def ensure_writable_file(path: Path, option: str = "--out") -> None:
    """``path`` can be (re)written: it is not a folder, and its folder is writable."""
    if path.is_dir():
        raise PreflightError(f"{option} {path}: is a folder; give a file name, e.g. "
                             f"{option} {path / 'report.html'}")
    ensure_writable_dir(path.parent, option, shown=path)


def writable_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold results, or None; creates nothing that stays.

    A missing folder is fine when its nearest existing parent lets one be created.
    """
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        if existing == folder:
            _probe(folder)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing))
    except OSError as exc:
        where = folder if existing == folder else existing
        return f"cannot write in {where}: {_reason(exc)}"
    return None


def check_target_folder(spec: str | None) -> None:
    """A ``sqlite:`` target given by the user must be in an existing folder."""
    if not spec or not spec.startswith("sqlite:"):
        return
    from migrator.targets import open_target
    from migrator.targets.sqlite import SQLiteTarget

    target = open_target(spec)
    if isinstance(target, SQLiteTarget):
        target.check_folder()


def check_target_reachable(spec: str) -> None:
    """Open one connection to ``spec`` and close it; a failure raises the target's one-line
    error (which names a misspelled connection-string keyword when there is one)."""
    from migrator.targets import open_target

    target = open_target(spec)
    try:
        target.connect().close()
    finally:
        target.close()


def check_inputs(inputs: list[str], mapping: Path | None) -> list[str]:
    """Refuse input without a single record element; return the files without records
    when others have some."""
    from migrator import default_mapping, expand_inputs, load_mapping
    from migrator.reader import check_records

    loaded = load_mapping(mapping) if mapping else default_mapping()
    return check_records(expand_inputs(inputs), loaded.record_elements)
