"""The profile registry: a profile turns record keys into XML text, one record at a time."""

from __future__ import annotations

from collections.abc import Callable

from datasets._errors import DatasetError
from datasets._orders import OrdersSource
from datasets._record import INVALID_KINDS, RecordSource

__all__ = ["INVALID_KINDS", "RecordSource", "open_profile", "profiles"]

_REGISTRY: dict[str, Callable[[int], RecordSource]] = {"orders": OrdersSource}


def profiles() -> tuple[str, ...]:
    """Names of the available profiles, sorted."""
    return tuple(sorted(_REGISTRY))


def open_profile(name: str, seed: int) -> RecordSource:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise DatasetError(
            f"unknown profile {name!r}; valid profiles: {', '.join(profiles())}")
    return factory(seed)
