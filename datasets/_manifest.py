"""``manifest.json``: what a generation wrote, and what a migration of it must produce.

Format history (``"format"``):
  1 — first version: files with sizes and hashes, invalid records with file/line/key/kind/
      column, expected rows per table for the valid records.
The manifest holds no wall-clock time, so it is byte-identical for identical arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets._errors import DatasetError

FORMAT = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One generated XML file. Keys are record keys as written (text, like quarantine keys)."""

    name: str
    records: int
    first_key: str
    last_key: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class InvalidRecord:
    """One injected invalid record: where it starts and the quarantine reason it must get.

    ``line`` is the 1-based line of the record's start tag; ``kind`` is a reason code of
    ``migrator/coerce.py``; ``column`` is the ``table.column`` the defect violates.
    """

    file: str
    line: int
    key: str
    kind: str
    column: str


@dataclass(frozen=True)
class Manifest:
    format: int
    profile: str
    seed: int
    records: int
    invalid_rate: float
    files: tuple[FileEntry, ...]
    invalid: tuple[InvalidRecord, ...]
    expected_rows: Mapping[str, int] = field(default_factory=dict)

    @property
    def valid_records(self) -> int:
        return self.records - len(self.invalid)

    def invalid_keys(self) -> frozenset[str]:
        return frozenset(rec.key for rec in self.invalid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "profile": self.profile,
            "seed": self.seed,
            "records": self.records,
            "invalid_rate": self.invalid_rate,
            "files": [asdict(f) for f in self.files],
            "invalid": [asdict(i) for i in self.invalid],
            "expected_rows": dict(self.expected_rows),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        tmp.replace(path)       # a reader never sees a half-written manifest
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read ``manifest.json``; ``path`` may be the file or the dataset folder."""
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST_NAME
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{p}: no manifest; generate the dataset first") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{p}: cannot read manifest: {exc}") from None
        return cls.from_dict(doc, source=str(p))

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<manifest>") -> Manifest:
        if not isinstance(doc, dict):
            raise DatasetError(f"{source}: manifest must be a JSON object")
        version = doc.get("format")
        if version != FORMAT:
            raise DatasetError(
                f"{source}: manifest format {version!r} is not supported (expected {FORMAT}); "
                "regenerate the dataset")
        try:
            return cls(
                format=FORMAT,
                profile=str(doc["profile"]),
                seed=int(doc["seed"]),
                records=int(doc["records"]),
                invalid_rate=float(doc["invalid_rate"]),
                files=tuple(FileEntry(**f) for f in doc["files"]),
                invalid=tuple(InvalidRecord(**i) for i in doc["invalid"]),
                expected_rows={str(k): int(v) for k, v in doc["expected_rows"].items()},
            )
        except KeyError as exc:
            raise DatasetError(f"{source}: manifest lacks key {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{source}: malformed manifest: {exc}") from None
