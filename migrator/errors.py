"""User-facing errors.

Every error a user can cause (bad input, bad mapping, unreachable target) derives from
:class:`MigratorError`. The CLI catches that one class in one place and prints its message
as a single line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MigratorError(Exception):
    """An error caused by input or environment, reported to the user as one line."""


class UnitTaken(MigratorError):
    """Another engine committed records of a unit this one reads (``EngineConfig.
    fence_units``): this engine stopped before committing any of them again."""

    def __init__(self, unit: str, expected: int, found: int | None) -> None:
        where = "is gone" if found is None else f"says {found}"
        super().__init__(f"{unit}: another attempt at this unit is writing it (its checkpoint "
                         f"{where}, this attempt expected {expected}); this one stopped")
        self.unit = unit


class MappingError(MigratorError):
    """The mapping file is invalid. The message names the file, the key and the fix."""


class TargetError(MigratorError):
    """The target cannot be parsed, reached or used; ``detail`` is the database's own
    message, when there is one."""

    def __init__(self, message: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class DatabaseError(TargetError):
    """An error the database or its driver reported, with the facts that tell a transient
    failure from a permanent one (:func:`migrator.retry.classify`): the SQLSTATE, the
    driver's native error code, the dialect that reported it, and whether the session is
    known to be dead."""

    def __init__(self, message: str, sqlstate: str = "", detail: str = "", *,
                 native: int | None = None, dbms: str = "",
                 connection_lost: bool = False) -> None:
        super().__init__(message, detail)
        self.sqlstate = sqlstate
        self.native = native
        self.dbms = dbms
        self.connection_lost = connection_lost


class InputError(MigratorError):
    """An input path is missing or unreadable."""


class MalformedXMLError(MigratorError):
    """An input file is not well-formed XML; ``str()`` is ``file:line: message``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class ResumeError(MigratorError):
    """``--resume`` cannot continue: the checkpoints do not match the input or mapping."""


class NothingToResume(ResumeError):
    """``--resume`` on a target whose run already finished: not a failure (exit 0)."""

    def __init__(self, finished_at: str) -> None:
        super().__init__(f"nothing to resume: the run finished at {finished_at}")
        self.finished_at = finished_at
