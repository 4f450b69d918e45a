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
* A trusted local DTD catalog (``dtd_dir``, see :class:`LocalCatalog`) is the one way to get
  named entities expanded and default attributes filled in: every DTD and external entity
  a file asks for is answered from that folder, or with nothing; the network and any other
  file are never read, and the same limits refuse an entity bomb. An entity the catalog
  does not define (or whose text holds markup) stays literal, as without a catalog, and
  the records that kept one are counted (:attr:`RecordStream.unexpanded`).
* Invalid bytes for the (declared or default UTF-8) encoding, NUL bytes, a truncated file,
  an empty file: malformed XML naming the file and line; the records before it are kept.
  A wrong *declared* single-byte encoding (``ISO-8859-1`` on UTF-8 bytes) cannot be told
  from real Latin-1 text: the file is read as it declares itself.
"""

from __future__ import annotations

import codecs
import glob
import os
import re
from collections.abc import Callable, Iterator, Mapping as AnyMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lxml import etree

from migrator.errors import InputError, MalformedXMLError
from migrator.inputs import expand_url, is_url, local_path, open_input

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


Elements = str | Sequence[str]  # the record element's name, or those of several record types


def as_elements(elements: Elements) -> tuple[str, ...]:
    return (elements,) if isinstance(elements, str) else tuple(elements)


def shown_elements(elements: Elements) -> str:
    """``<a>``, ``<a> or <b>``, ``<a>, <b> or <c>``."""
    names = [f"<{e}>" for e in as_elements(elements)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


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
        with open_input(path) as f:
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

    def open_records(self, record_elements: Elements,
                     dtd_dir: str | None = None) -> RecordStream:
        return RecordStream(self.path, record_elements, dtd_dir)


def expand_inputs(inputs: Sequence[str]) -> list[WorkUnit]:
    """Files, directories (``*.xml`` inside, recursively) and globs → sorted work units;
    ``file://`` URLs are local paths, other URLs are listed and read with fsspec."""
    if not inputs:
        raise InputError("no input given; pass --input FILE, DIR or GLOB")
    seen: dict[str, WorkUnit] = {}
    for given in inputs:
        item = local_path(given)  # (a file:// URL is a local path)
        if is_url(item):  # read with fsspec by whoever reads the unit (migrator.inputs)
            for url, size in expand_url(item):
                seen.setdefault(url, WorkUnit(url, size))
            continue
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


def inline_entity_references(elem: Any,
                             expand: Callable[[str], str | None] | None = None) -> int:
    """Replace entity references by their text: ``expand(name)``'s, or the literal
    reference (``&x;``) when there is none; returns how many stayed literal.

    With entity resolution off, ``a&x;b`` parses as text ``a``, an entity node and a tail
    ``b``: a mapper reading ``.text`` would silently lose ``b``. Keeping the reference as
    literal text loses nothing and expands nothing. Only files with a DOCTYPE can hold
    entity references, so other files never pay for this walk.
    """
    kept = 0
    for ent in list(elem.iter(etree.Entity)):
        parent = ent.getparent()
        if parent is None:
            continue
        value = expand(ent.name) if expand is not None else None
        if value is None:
            kept += 1
            value = ent.text or ""
        literal = value + (ent.tail or "")
        prev = ent.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + literal
        else:
            parent.text = (parent.text or "") + literal
        parent.remove(ent)
    return kept


class LocalCatalog(etree.Resolver):
    """Answers every request for a DTD or an external entity from one trusted folder.

    The answer is the folder's file named like the last part of the system identifier
    (``dblp.dtd`` for ``SYSTEM "dblp.dtd"`` or ``"http://dblp.org/dblp.dtd"``), or, when
    there is none, an empty document: libxml2 itself never opens a file or the network.
    ``misses`` lists what was asked for and not found.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = os.path.realpath(folder)
        self.misses: list[str] = []

    def find(self, url: str | None) -> str | None:
        if not url:
            return None
        name = url.replace("\\", "/").rsplit("/", 1)[-1].split("?", 1)[0].split("#", 1)[0]
        if not name or name in (".", ".."):
            return None
        candidate = os.path.realpath(os.path.join(self.folder, name))
        if os.path.dirname(candidate) != self.folder or not os.path.isfile(candidate):
            return None  # (a symbolic link out of the folder is not in the catalog)
        return candidate

    # (lxml-stubs describe Resolver without the context argument lxml passes)
    def resolve(self, system_url: str | None, public_id: str | None,  # type: ignore[override]
                context: Any) -> Any:
        found = self.find(system_url)
        if found is None:
            self.misses.append(system_url or public_id or "")
            return self.resolve_string("", context)  # type: ignore[call-arg]
        return self.resolve_filename(found, context)  # type: ignore[attr-defined]


def check_dtd_dir(folder: str | None, what: str = "--dtd-dir") -> str | None:
    """The catalog folder as an absolute path; :class:`InputError` if it is not a folder."""
    if folder is None:
        return None
    if not os.path.isdir(folder):
        raise InputError(f"{what} {folder}: no such folder; give the folder holding the "
                         f"DTD files the input refers to")
    return os.path.realpath(folder)


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))


def doctype_text(path: str, limit: int = 1 << 20) -> str:
    """The file's document type declaration, internal subset included ("" if none)."""
    with open_input(path) as f:
        head = f.read(limit)
    encoding = "utf-8"
    for bom, name in _BOMS:
        if head.startswith(bom):
            head, encoding = head[len(bom):], name
            break
    else:
        m = _DECLARED.match(head)
        if m:
            encoding = m.group(1).decode("ascii")
    try:
        text = head.decode(encoding, errors="replace")
    except LookupError:
        text = head.decode("utf-8", errors="replace")
    start = text.find("<!DOCTYPE")
    if start < 0:
        return ""
    depth, i, quote = 0, start + 9, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                return ""
            i = end + 3
            continue
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == ">" and depth <= 0:
            return text[start:i + 1]
        i += 1
    return ""


class EntityExpander:
    """The text of a named entity, as the file's DTDs (from the catalog) declare it.

    Each name is expanded once per file by libxml2 itself, in a small document carrying the
    file's own document type declaration — so nested entities, character references and
    the internal subset mean what they mean to any XML parser, and libxml2's limits refuse
    an entity bomb (raised as :class:`etree.XMLSyntaxError`). None: the entity is not
    declared, refers to a file the catalog does not hold, or its text holds markup.
    """

    def __init__(self, path: str, folder: str) -> None:
        self.path = path
        self.folder = folder
        self.cache: dict[str, str | None] = {}
        self._doctype: str | None = None

    def __call__(self, name: str) -> str | None:
        if name not in self.cache:
            self.cache[name] = self._expand(name)
        return self.cache[name]

    def _expand(self, name: str) -> str | None:
        if self._doctype is None:
            self._doctype = doctype_text(self.path)
        if not self._doctype:
            return None
        doc = (f'<?xml version="1.0" encoding="UTF-8"?>\n{self._doctype}'
               f"<mb-entity>&{name};</mb-entity>")
        parser = etree.XMLParser(load_dtd=True, resolve_entities=True, no_network=True,
                                 huge_tree=False, attribute_defaults=False)
        catalog = LocalCatalog(self.folder)
        parser.resolvers.add(catalog)
        try:
            root = etree.fromstring(doc.encode("utf-8", "surrogatepass"), parser,
                                    base_url=self.path)
        except etree.XMLSyntaxError as exc:
            if any(p.search(exc.msg or "") for p, _ in _LIMITS):
                raise
            return None  # (not declared)
        if len(root) or (catalog.misses and not root.text):
            return None
        return root.text or ""


def _empty(f: IO[bytes]) -> bool:
    """Is the file that ``f`` just opened empty? (Its position is left at the start.)"""
    try:
        return os.fstat(f.fileno()).st_size == 0
    except (OSError, AttributeError, ValueError):  # not an OS file (a URL's)
        empty = not f.read(1)
        f.seek(0)
        return empty


class RecordStream:
    """Iterates ``(line, element)`` for every record element of one file (of every record
    type: ``record_elements`` may name several).

    The element is valid until the next iteration, when it is cleared together with its
    preceding siblings and those of its ancestors (so records deep in a file free what
    they leave behind too; the ancestors themselves stay, with their attributes).
    ``position`` is the byte offset read so far (for progress bars). Malformed XML raises
    :class:`MalformedXMLError` naming the file and line; a record element inside another
    one of a different record type raises :class:`InputError` (each would free the other).

    ``dtd_dir``: a trusted local DTD catalog (:class:`LocalCatalog`): named entities and
    default attributes come from there. ``unexpanded``: how many records kept an entity
    reference literal (all that hold one, without a catalog).

    ``first_seq`` (set once the first record is read): how many records before the first
    one yielded report the same line (see :func:`migrator.partition.range_first_seq`);
    0 for a whole file.
    """

    first_seq = 0

    def __init__(self, path: str, record_elements: Elements,
                 dtd_dir: str | None = None) -> None:
        self.path = path
        self.elements = as_elements(record_elements)
        self.record_element = self.elements[0]
        self.dtd_dir = dtd_dir
        self.unexpanded = 0
        self._file: IO[bytes] | None = None

    def records_before(self) -> AnyMapping[str, int]:
        """How many elements of each record type come before the first one this stream
        yields (none for a whole file)."""
        return {}

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
        elements = self.elements
        catalog = self.dtd_dir is not None
        events = etree.iterparse(
            source, events=("end",), tag=elements[0] if len(elements) == 1 else elements,
            resolve_entities=False, no_network=True, load_dtd=catalog,
            attribute_defaults=catalog, dtd_validation=False,
            remove_blank_text=False, huge_tree=False,
        )
        expand = None
        if self.dtd_dir is not None:
            events.resolvers.add(LocalCatalog(self.dtd_dir))
            expand = EntityExpander(self.path, self.dtd_dir)
        entities: bool | None = None  # does this file declare a DOCTYPE? (first record)
        several = frozenset(elements) if len(elements) > 1 else None
        try:
            for _, elem in events:
                if entities is None:
                    entities = bool(elem.getroottree().docinfo.doctype)
                if entities:
                    try:
                        kept = inline_entity_references(elem, expand)
                    except etree.XMLSyntaxError as exc:  # an entity bomb in the catalog
                        raise MalformedXMLError(self.path, (elem.sourceline or 0) + shift,
                                                describe_syntax_error(
                                                    self.path, exc.msg or str(exc))) from None
                    if kept:
                        self.unexpanded += 1
                if several is not None:
                    self._check_not_nested(elem, several, shift)
                yield (elem.sourceline or 0) + shift, elem
                # Free what we have read: the record and anything before it, at every level.
                elem.clear(keep_tail=False)
                node = elem
                parent = node.getparent()
                while parent is not None:
                    while node.getprevious() is not None:
                        del parent[0]
                    node, parent = parent, parent.getparent()
        except etree.XMLSyntaxError as exc:
            raise MalformedXMLError(self.path, (exc.lineno or 0) + shift, describe_syntax_error(
                self.path, exc.msg or str(exc))) from None
        except OSError as exc:
            raise InputError(f"{self.path}: read failed: {exc}") from None

    def _check_not_nested(self, elem: Any, elements: frozenset[str], shift: int) -> None:
        for above in elem.iterancestors():
            if above.tag in elements:
                raise InputError(
                    f"{self.path}:{(elem.sourceline or 0) + shift}: a <{elem.tag}> record is "
                    f"inside a <{above.tag}> record; record elements of one mapping must not "
                    f"contain each other (map the inner ones as a child table of the outer "
                    f"record type)")

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            self._file = open_input(self.path)  # (closed in the finally below)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            if _empty(self._file):
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


def scan_for_records(path: str, record_elements: Elements) -> FileScan:
    """Parse ``path`` until its first record element; for a file that has none, parse it
    to the end (as a run would) in constant memory and report its root element."""
    wanted = frozenset(as_elements(record_elements))
    root: str | None = None
    namespace: str | None = None
    try:
        with open_input(path) as f:
            events = etree.iterparse(f, events=("start", "end"), resolve_entities=False,
                                     no_network=True, load_dtd=False, dtd_validation=False,
                                     huge_tree=False)
            for event, elem in events:
                if root is None:
                    root = _shown_name(elem)
                if event == "start":
                    if elem.tag in wanted:
                        return FileScan(path, True, root)
                    continue
                qname = etree.QName(elem)
                if namespace is None and qname.namespace and qname.localname in wanted:
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


def check_records(units: Sequence[WorkUnit], record_elements: Elements) -> list[str]:
    """Refuse input in which no file holds a record element; return the files that hold
    none while others do (the run goes on and names them).

    Raises :class:`InputError` naming the element, the (first) file, its actual root
    element and the fix: a run over such input would "succeed" with 0 records, and a sweep
    would measure nothing and call it a result.
    """
    scans = [scan_for_records(u.path, record_elements) for u in units]
    names = shown_elements(record_elements)
    if any(s.found is not False for s in scans):
        return [s.path for s in scans if s.found is False]
    first = scans[0]
    where = _shown_path(first.path)
    root = f"<{first.root}>" if first.root else "no element"
    if first.namespace is not None:
        fix = (f"its {names} elements are in the namespace {first.namespace!r}, "
               "and a mapping's element names match elements without a namespace only")
    else:
        fix = "check [record].element in the mapping"
    if len(scans) == 1:
        raise InputError(f"no {names} elements in {where} (its root is {root}): "
                         f"{fix}")
    raise InputError(f"no {names} elements in any of the {len(scans)} input files "
                     f"(the first, {where}, has the root {root}): {fix}")
