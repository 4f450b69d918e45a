"""Deterministic mock XML datasets for migration benchmarks.

    >>> import datasets
    >>> manifest = datasets.generate("data/", 20_000, files=4, seed=7, invalid_rate=0.01)
    >>> manifest.expected_rows        # rows the valid records must become
    >>> datasets.Manifest.load("data/").invalid[0]   # file, line, key, kind, column

Same arguments give byte-identical files. ``manifest.json`` records every file's hash and
every injected invalid record with the quarantine reason a migration must report. This
package depends on no other package of the project; its errors are :class:`DatasetError`.
"""

from __future__ import annotations

from datasets._errors import DatasetError
from datasets._generate import generate, invalid_count
from datasets._manifest import FileEntry, InvalidRecord, Manifest
from datasets._profiles import INVALID_KINDS, profiles

__all__ = [
    "INVALID_KINDS",
    "DatasetError",
    "FileEntry",
    "InvalidRecord",
    "Manifest",
    "generate",
    "invalid_count",
    "profiles",
]
