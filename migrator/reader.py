"""Streaming, hardened XML record reader.

Records are read with lxml ``iterparse`` and discarded as soon as they are mapped, so memory
stays flat however large a file is. The parser never resolves entities, never loads a DTD
and never touches the network: an XXE payload stays an inert entity reference, and a
``<!DOCTYPE … SYSTEM "missing.dtd">`` does not stop a file from loading.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lxml import etree

from migrator.errors import InputError, MalformedXMLError

_POSITION = re.compile(r",? line \d+, column \d+\s*$")


@dataclass(frozen=True)
class WorkUnit:
    """A piece of input one engine reads start to end; its ``id`` keys its checkpoint.

    The whole file is one unit; the coordinator may cut a large file into record ranges.
    """

    path: str
    size: int

    @property
    def id(self) -> str:
        return self.path

    def open_records(self, record_element: str) -> RecordStream:
        return RecordStream(self.path, record_element)


def expand_inputs(inputs: Sequence[str]) -> list[WorkUnit]:
    """Files, directories (``*.xml`` inside, recursively) and globs → sorted work units."""
    if not inputs:
        raise InputError("no input given; pass --input FILE, DIR or GLOB")
    seen: dict[str, WorkUnit] = {}
    for item in inputs:
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"--input {item}: the pattern matches no file")
            paths = [Path(m) for m in matches if os.path.isfile(m)]
        else:
            p = Path(item)
            if p.is_dir():
                paths = sorted(q for q in p.rglob("*.xml") if q.is_file())
                if not paths:
                    raise InputError(f"--input {item}: the folder holds no .xml file")
            elif p.is_file():
                paths = [p]
            else:
                raise InputError(f"--input {item}: no such file or folder")
        for path in paths:
            resolved = str(path.resolve())
            if resolved not in seen:
                try:
                    size = path.stat().st_size
                except OSError as exc:
                    raise InputError(f"{path}: cannot read: {exc.strerror}") from None
                seen[resolved] = WorkUnit(resolved, size)
    return list(seen.values())


class RecordStream:
    """Iterates ``(line, element)`` for every record element of one file.

    The element is valid until the next iteration, when it is cleared together with its
    preceding siblings. ``position`` is the byte offset read so far (for progress bars).
    Malformed XML raises :class:`MalformedXMLError` naming the file and line.
    """

    def __init__(self, path: str, record_element: str) -> None:
        self.path = path
        self.record_element = record_element
        self._file: IO[bytes] | None = None

    @property
    def position(self) -> int:
        f = self._file
        if f is None or f.closed:
            return 0
        try:
            return f.tell()
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in finally below
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror}") from None
        try:
            events = etree.iterparse(
                self._file, events=("end",), tag=self.record_element,
                resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                remove_blank_text=False, huge_tree=False,
            )
            try:
                for _, elem in events:
                    yield elem.sourceline or 0, elem
                    # Free what we have read: the record and anything before it.
                    elem.clear(keep_tail=False)
                    parent = elem.getparent()
                    if parent is not None:
                        while elem.getprevious() is not None:
                            del parent[0]
            except etree.XMLSyntaxError as exc:
                line = exc.lineno or 0
                # lxml appends ", line N, column M"; our prefix already names the line.
                msg = _POSITION.sub("", (exc.msg or str(exc)).strip())
                raise MalformedXMLError(self.path, line, f"malformed XML: {msg}") from None
            except OSError as exc:
                raise InputError(f"{self.path}: read failed: {exc}") from None
        finally:
            self._file.close()
