"""The streaming writer: records → files, invalid-record selection, the manifest.

Memory is flat in the number of records: each record is rendered to a string, appended to a
small chunk, and the chunk is encoded, hashed and written; only the manifest's list of
invalid records grows (with the invalid count, not with N).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from datasets._errors import DatasetError
from datasets._manifest import FORMAT, MANIFEST_NAME, FileEntry, InvalidRecord, Manifest
from datasets._profiles import INVALID_KINDS, RecordSource, open_profile

PROGRESS_EVERY = 1000
_CHUNK_RECORDS = 128       # records per write(): ~250 KB, keeps syscalls and memory small


def invalid_count(records: int, invalid_rate: float) -> int:
    """Exactly how many records are made invalid: ``records * rate`` rounded half up."""
    return math.floor(records * invalid_rate + 0.5)


class InvalidSelector:
    """Chooses exactly ``k`` of ``n`` record positions, uniformly, in one streaming pass.

    Selection sampling (Knuth's Algorithm S): position ``i`` is taken with probability
    (still needed) / (still left). Constant memory, and only ``random()`` is used, whose
    output is stable across Python versions.
    """

    def __init__(self, n: int, k: int, rng: random.Random) -> None:
        self._left = n
        self._needed = k
        self._random = rng.random

    def take(self) -> bool:
        left, needed = self._left, self._needed
        self._left = left - 1
        if needed and left * self._random() < needed:
            self._needed = needed - 1
            return True
        return False


def check_arguments(records: int, files: int, seed: int, invalid_rate: float) -> None:
    for name, value in (("records", records), ("files", files), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(f"{name} must be an integer, got {value!r}")
    if records < 1:
        raise DatasetError(f"records must be at least 1, got {records}")
    if not 1 <= files <= records:
        raise DatasetError(
            f"files must be between 1 and the number of records ({records}), got {files}")
    if isinstance(invalid_rate, bool) or not isinstance(invalid_rate, int | float) \
            or not 0.0 <= invalid_rate <= 1.0:
        raise DatasetError(
            f"invalid_rate must be a number between 0 and 1 (e.g. 0.01 for 1%), "
            f"got {invalid_rate!r}")


def file_names(profile: str, files: int) -> list[str]:
    """``orders-0001.xml`` …; at least four digits, more if there are more files."""
    width = max(4, len(str(files)))
    return [f"{profile}-{i:0{width}d}.xml" for i in range(1, files + 1)]


def split(records: int, files: int) -> list[int]:
    """Records per file, as even as possible; the first files take the remainder."""
    base, extra = divmod(records, files)
    return [base + (1 if i < extra else 0) for i in range(files)]


def generate(out_dir: str | Path, records: int, *, files: int = 1, seed: int = 0,
             invalid_rate: float = 0.0, profile: str = "orders",
             progress: Callable[[int], None] | None = None) -> Manifest:
    """Write ``files`` XML files holding ``records`` records, and ``manifest.json``.

    Same arguments → byte-identical files and manifest. Exactly
    :func:`invalid_count` records are invalid, at positions chosen by selection sampling
    from the seed; their kinds cycle through ``missing_required``, ``bad_number``,
    ``bad_date``, ``too_long`` in record order. ``progress(n)`` is called with the number
    of records written so far, every 1000 records and once at the end.
    """
    check_arguments(records, files, seed, invalid_rate)
    source = open_profile(profile, seed)
    invalid_rate = float(invalid_rate)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot create output folder: {exc}") from None
    names = file_names(profile, files)
    stale = _previous_files(out).difference(names)
    # A crash while rewriting must not leave a manifest describing files that changed.
    (out / MANIFEST_NAME).unlink(missing_ok=True)

    selector = InvalidSelector(
        records, invalid_count(records, invalid_rate),
        random.Random(f"{profile}/{seed}/invalid-positions"))
    writer = _Writer(source, selector, progress)
    entries = [writer.write_file(out / name, count) for name, count in zip(
        names, split(records, files), strict=True)]
    if progress is not None and writer.written % PROGRESS_EVERY:
        progress(writer.written)

    manifest = Manifest(
        format=FORMAT, profile=profile, seed=seed, records=records,
        invalid_rate=invalid_rate, files=tuple(entries), invalid=tuple(writer.invalid),
        expected_rows=dict(zip(source.tables, writer.rows, strict=True)))
    manifest.save(out)
    for name in sorted(stale):
        (out / name).unlink(missing_ok=True)
    return manifest


class _Writer:
    def __init__(self, source: RecordSource, selector: InvalidSelector,
                 progress: Callable[[int], None] | None) -> None:
        self.source = source
        self.selector = selector
        self.progress = progress
        self.key = source.first_key
        self.written = 0
        self.invalid: list[InvalidRecord] = []
        self.rows = [0] * len(source.tables)

    def write_file(self, path: Path, count: int) -> FileEntry:
        source, take, progress = self.source, self.selector.take, self.progress
        name = path.name
        digest = hashlib.sha256()
        size = 0
        header = source.header()
        line = header.count("\n") + 1        # line of the next record's start tag
        first_key = self.key
        chunk = [header]
        row_counts: list[tuple[int, ...]] = []   # per valid record of the current chunk
        try:
            with path.open("wb") as fh:
                for _ in range(count):
                    key = self.key
                    kind = None
                    if take():
                        kind = INVALID_KINDS[len(self.invalid) % len(INVALID_KINDS)]
                    text, rows, column = source.render(key, kind)
                    if kind is None:
                        row_counts.append(rows)
                    else:
                        assert column is not None
                        self.invalid.append(InvalidRecord(name, line, str(key), kind, column))
                    line += text.count("\n")
                    chunk.append(text)
                    self.key = key + 1
                    self.written += 1
                    if len(chunk) >= _CHUNK_RECORDS:
                        size += _flush(fh, digest, chunk)
                        self._add_rows(row_counts)
                    if progress is not None and self.written % PROGRESS_EVERY == 0:
                        progress(self.written)
                chunk.append(source.footer())
                size += _flush(fh, digest, chunk)
                self._add_rows(row_counts)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot write: {exc}") from None
        return FileEntry(name, count, str(first_key), str(self.key - 1), size,
                         digest.hexdigest())

    def _add_rows(self, row_counts: list[tuple[int, ...]]) -> None:
        if row_counts:
            self.rows = [total + sum(column) for total, column in zip(
                self.rows, zip(*row_counts, strict=True), strict=True)]
            row_counts.clear()


def _flush(fh: BinaryIO, digest: hashlib._Hash, chunk: list[str]) -> int:
    data = "".join(chunk).encode("utf-8")
    chunk.clear()
    digest.update(data)
    fh.write(data)
    return len(data)


def _previous_files(out: Path) -> set[str]:
    """Files an earlier generation listed in this folder's manifest (to remove if stale)."""
    path = out / MANIFEST_NAME
    if not path.exists():
        return set()
    try:
        old = Manifest.load(path)
    except DatasetError:
        return set()
    # Only plain XML file names inside this folder: never follow a path out of it.
    return {f.name for f in old.files if Path(f.name).name == f.name and f.name.endswith(".xml")}
