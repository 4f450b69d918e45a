"""Streaming, hardened XML record reader.

Records are read with lxml ``iterparse`` and discarded as soon as they are mapped, so memory
stays flat however large a file is. The parser never resolves entities, never loads a DTD
and never touches the network: an XXE payload stays an inert entity reference, and a
``<!DOCTYPE … SYSTEM "missing.dtd">`` does not stop a file from loading.

Hostile inputs and what they get (tests/test_hostile.py holds one case for each):

* XXE (``SYSTEM "file:///…"`` or ``"http://…"``) and external DTDs: nothing is read or
  fetched; an entity reference stays literal text (``a&x;b``), never expanded, never lost.
* Entity expansion bombs ("billion laughs"), text nodes over 10 MB and nesting deeper than
  256 levels: refused by libxml2's safety limits, reported as malformed XML naming the file
  and line. ``huge_tree`` stays off on purpose: it lifts all three limits at once, and a
  legitimate record holds no 10 MB text value (a larger value belongs in a file reference).
* Invalid bytes for the (declared or default UTF-8) encoding, NUL bytes, a truncated file,
  an empty file: malformed XML naming the file and line; the records before it are kept.
  A wrong *declared* single-byte encoding (``ISO-8859-1`` on UTF-8 bytes) cannot be told
  from real Latin-1 text: the file is read as it declares itself.
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
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
# libxml2's safety limits speak of parser flags a user cannot set; say what was refused.
_LIMITS = (
    (re.compile(r"Text node too long|huge text node", re.I),
     "a text node is larger than the parser's 10 MB safety limit (refused on purpose)"),
    (re.compile(r"Excessive depth in document: (\d+)", re.I),
     "elements are nested deeper than {0} levels (parser safety limit)"),
    (re.compile(r"amplification|entity reference loop|entities? .*(?:too many|exceed)", re.I),
     "entity expansion refused (an entity bomb such as \"billion laughs\"?)"),
)


def describe_syntax_error(path: str, raw: str) -> str:
    """lxml's message as one line, its safety limits in plain words, an encoding hint."""
    msg = " ".join(_POSITION.sub("", raw.strip()).split())
    for pattern, text in _LIMITS:
        m = pattern.search(msg)
        if m:
            return f"malformed XML: {text.format(*m.groups())} ({msg})"
    out = f"malformed XML: {msg}"
    if "encoding" in msg.lower() or "blank needed" in msg.lower() or \
            "document is empty" in msg.lower():
        declared = _declared_encoding(path)
        if declared and declared.upper().replace("_", "-") not in ("UTF-8", "UTF8"):
            out += (f"; the file declares encoding \"{declared}\": check that its bytes "
                    f"really are {declared}")
    return out


def _declared_encoding(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    m = _DECLARED.match(head.lstrip(b"\xef\xbb\xbf"))
    return m.group(1).decode("ascii") if m else None


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


def inline_entity_references(elem: Any) -> None:
    """Replace unexpanded entity references by their literal text (``&x;``).

    With entity resolution off, ``a&x;b`` parses as text ``a``, an entity node and a tail
    ``b``: a mapper reading ``.text`` would silently lose ``b``. Keeping the reference as
    literal text loses nothing and expands nothing. Only files with a DOCTYPE can hold
    entity references, so other files never pay for this walk.
    """
    for ent in list(elem.iter(etree.Entity)):
        parent = ent.getparent()
        if parent is None:
            continue
        literal = (ent.text or "") + (ent.tail or "")
        prev = ent.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + literal
        else:
            parent.text = (parent.text or "") + literal
        parent.remove(ent)


class RecordStream:
    """Iterates ``(line, element)`` for every record element of one file.

    The element is valid until the next iteration, when it is cleared together with its
    preceding siblings. ``position`` is the byte offset read so far (for progress bars).
    Malformed XML raises :class:`MalformedXMLError` naming the file and line.

    ``first_seq`` (set once the first record is read): how many records before the first
    one yielded report the same line (see :func:`migrator.partition.range_first_seq`);
    0 for a whole file.
    """

    first_seq = 0

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

    def _records(self, source: IO[bytes] | Any, shift: int = 0
                 ) -> Iterator[tuple[int, Any]]:
        """Parse ``source`` (a file, or a record range made to look like one), yielding
        ``(line + shift, element)`` and freeing each record once the caller moves on."""
        events = etree.iterparse(
            source, events=("end",), tag=self.record_element,
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            remove_blank_text=False, huge_tree=False,
        )
        entities: bool | None = None  # does this file declare a DOCTYPE? (first record)
        try:
            for _, elem in events:
                if entities is None:
                    entities = bool(elem.getroottree().docinfo.doctype)
                if entities:
                    inline_entity_references(elem)
                yield (elem.sourceline or 0) + shift, elem
                # Free what we have read: the record and anything before it.
                elem.clear(keep_tail=False)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
        except etree.XMLSyntaxError as exc:
            raise MalformedXMLError(self.path, (exc.lineno or 0) + shift, describe_syntax_error(
                self.path, exc.msg or str(exc))) from None
        except OSError as exc:
            raise InputError(f"{self.path}: read failed: {exc}") from None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in finally below
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror}") from None
        try:
            if os.fstat(self._file.fileno()).st_size == 0:
                raise MalformedXMLError(self.path, 1, "malformed XML: the file is empty "
                                        "(0 bytes), not an XML document")
            yield from self._records(self._file)
        finally:
            self._file.close()


# ---- is there anything to migrate? ------------------------------------------------------------

@dataclass(frozen=True)
class FileScan:
    """What a cheap look at one file found: a record element or not, and its root element.

    ``found`` is None when the look could not tell (the file is malformed or unreadable
    before any record): the run itself reports that, with the file and line.
    """

    path: str
    found: bool | None
    root: str | None = None
    namespace: str | None = None  # of a same-named element in a namespace, if one was seen


def scan_for_records(path: str, record_element: str) -> FileScan:
    """Parse ``path`` until its first ``<record_element>``; for a file that has none, parse
    it to the end (as a run would) in constant memory and report its root element."""
    root: str | None = None
    namespace: str | None = None
    try:
        with open(path, "rb") as f:
            events = etree.iterparse(f, events=("start", "end"), resolve_entities=False,
                                     no_network=True, load_dtd=False, dtd_validation=False,
                                     huge_tree=False)
            for event, elem in events:
                if root is None:
                    root = _shown_name(elem)
                if event == "start":
                    if elem.tag == record_element:
                        return FileScan(path, True, root)
                    continue
                qname = etree.QName(elem)
                if namespace is None and qname.namespace and \
                        qname.localname == record_element:
                    namespace = qname.namespace
                # Free what was read, so a large file without records costs no memory.
                elem.clear(keep_tail=False)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
    except (etree.XMLSyntaxError, OSError):
        return FileScan(path, None, root)
    return FileScan(path, False, root, namespace)


def _shown_name(elem: Any) -> str:
    qname = etree.QName(elem)
    return f"{elem.prefix}:{qname.localname}" if elem.prefix else qname.localname


def _shown_path(path: str) -> str:
    """A path under the current folder as a relative one, as the user probably typed it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(os.pardir) else rel


def check_records(units: Sequence[WorkUnit], record_element: str) -> list[str]:
    """Refuse input in which no file holds a ``<record_element>``; return the files that
    hold none while others do (the run goes on and names them).

    Raises :class:`InputError` naming the element, the (first) file, its actual root
    element and the fix: a run over such input would "succeed" with 0 records, and a sweep
    would measure nothing and call it a result.
    """
    scans = [scan_for_records(u.path, record_element) for u in units]
    if any(s.found is not False for s in scans):
        return [s.path for s in scans if s.found is False]
    first = scans[0]
    where = _shown_path(first.path)
    root = f"<{first.root}>" if first.root else "no element"
    if first.namespace is not None:
        fix = (f"its <{record_element}> elements are in the namespace {first.namespace!r}, "
               "and a mapping's element names match elements without a namespace only")
    else:
        fix = "check [record].element in the mapping"
    if len(scans) == 1:
        raise InputError(f"no <{record_element}> elements in {where} (its root is {root}): "
                         f"{fix}")
    raise InputError(f"no <{record_element}> elements in any of the {len(scans)} input files "
                     f"(the first, {where}, has the root {root}): {fix}")
