"""Target registry: ``SCHEME:REST`` → a :class:`Target`; dialects register by name."""

from __future__ import annotations

import importlib
import os

from migrator.errors import TargetError
from migrator.targets.base import (
    Connection,
    Dialect,
    InsertMethod,
    IntegrityViolation,
    Namespace,
    Target,
    TargetInfo,
)

# scheme → "module:Class"; imported on use so that e.g. pyodbc loads only for odbc: targets.
_SCHEMES: dict[str, str] = {
    "sqlite": "migrator.targets.sqlite:SQLiteTarget",
    "odbc": "migrator.targets.odbc:OdbcTarget",
}


def register_scheme(scheme: str, path: str) -> None:
    _SCHEMES[scheme] = path


def schemes() -> list[str]:
    return sorted(_SCHEMES)


def open_target(spec: str | None) -> Target:
    """Parse ``--target`` (or ``BENCH_TARGET``); an unknown scheme lists the valid ones."""
    spec = spec or os.environ.get("BENCH_TARGET") or ""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _SCHEMES:
        forms = ", ".join(f"{s}:..." for s in schemes())
        shown = spec.split(":", 1)[0] if spec else "(empty)"
        raise TargetError(f"unknown target {shown!r}; use one of {forms} "
                          f"(e.g. --target sqlite:work/mig.db)")
    module, _, cls = _SCHEMES[scheme].partition(":")
    try:
        target_cls = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise TargetError(f"target scheme {scheme!r} is not available: {exc}") from None
    target: Target = target_cls(rest)
    return target


__all__ = ["Connection", "Dialect", "InsertMethod", "IntegrityViolation", "Namespace", "Target",
           "TargetInfo", "open_target", "register_scheme", "schemes"]
