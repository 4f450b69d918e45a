"""Cut input files into record ranges so that N workers get balanced bytes.

All input files are laid end to end as one virtual byte stream, which is cut into ``pieces``
equal stretches; a cut that falls inside a file moves forward to the next start tag of a
record element — a direct child of the root where the file has such records, else a record
at any depth (:func:`deep_record_starts`). Each piece of a file is a :class:`RangeUnit` with
its own checkpoint (id ``PATH#START-END``); a file without a cut stays a plain
:class:`~migrator.reader.WorkUnit` (id ``PATH``), as in a sequential run, and
:func:`plan_units` says why in one line.

Finding a record boundary needs the parser state at the cut, so a file is scanned once,
in chunks (memory stays flat), from the end of its root start tag: comments, CDATA
sections and processing instructions are skipped as a whole (a ``<order`` inside them is
not a tag) and element depth is counted from ``<``, ``</`` and self-closing tags between
them (quoted attribute values respected). A piece is parsed as the file's prolog and root
start tag followed by the piece's bytes and the root end tag, so namespaces, entity
declarations and absolute line numbers stay right. For records deeper in the file, the
start tags of the elements enclosing the cut follow the root's (their line breaks made
spaces, which attribute values read as spaces anyway), and the piece ends by closing the
elements that enclose the next cut: the enclosing elements' attributes are the file's.

Limits: a file in an encoding that is not ASCII-compatible (UTF-16/32) or with a prolog
over 1 MiB is not cut (:func:`plan_units` says why); a record element nested in itself is
not supported. A wrong cut could only come from markup that is not well-formed, and then
the piece fails to parse and names its line — it never loses or duplicates a record
silently.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from migrator.errors import InputError
from migrator.inputs import open_input
from migrator.reader import Elements, RecordStream, WorkUnit, as_elements, shown_elements

_CHUNK = 1 << 20
_POSITION = re.compile(r",? line \d+, column \d+\s*$")
_NAME_END = b" \t\r\n/>"


@dataclass(frozen=True)
class RangeUnit(WorkUnit):
    """Records of ``path`` whose start tags lie in ``[start, end)``; ``size`` is the file's.

    ``start`` is 0 or the offset of a record's start tag; ``end`` is the next piece's
    ``start`` or the file size.
    """

    start: int = 0
    end: int = 0
    # The start tags of the elements below the root that enclose the record at ``start``
    # and the one at ``end`` (records deep in the file); None: not known yet (a unit
    # rebuilt from its id on --resume), found again when the range is opened.
    head: tuple[bytes, ...] | None = field(default=None, compare=False)
    tail: tuple[bytes, ...] | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"{self.path}#{self.start}-{self.end}"

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    def open_records(self, record_elements: Elements,
                     dtd_dir: str | None = None) -> RecordStream:
        return RangeRecordStream(self, record_elements, dtd_dir)


def unit_bytes(unit: WorkUnit) -> int:
    """Bytes of input a unit covers (a whole file's size, or a range's length)."""
    return unit.nbytes if isinstance(unit, RangeUnit) else unit.size


# ---- prolog ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prolog:
    """Where the root start tag ends (``body``: first byte after its ``>``), its name, line."""

    body: int
    root: bytes
    line: int  # 1-based line of ``body``


def read_prolog(path: str, limit: int = 1 << 20) -> Prolog | None:
    """Locate the root start tag; None for an empty root, odd encodings or a huge prolog."""
    with open_input(path) as f:
        head = f.read(limit)
    if head.startswith((b"\xfe\xff", b"\xff\xfe", b"\x00", b"\x4c\x6f\xa7\x94")) or \
            b"\x00" in head[:4]:
        return None  # UTF-16/32 or EBCDIC: a byte search for "<order" would not find tags
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    n = len(head)
    while True:
        while i < n and head[i] in b" \t\r\n":
            i += 1
        if head.startswith(b"<?", i):
            j = head.find(b"?>", i + 2)
            if j < 0:
                return None
            i = j + 2
        elif head.startswith(b"<!--", i):
            j = head.find(b"-->", i + 4)
            if j < 0:
                return None
            i = j + 3
        elif head.startswith(b"<!DOCTYPE", i):
            i = _skip_doctype(head, i + 9)
            if i < 0:
                return None
        elif head.startswith(b"<", i) and i + 1 < n:
            j = i + 1
            while j < n and head[j] not in _NAME_END:
                j += 1
            name = head[i + 1:j]
            end = _tag_end(head, j)
            if end < 0 or not name or head[end - 2:end] == b"/>":
                return None
            return Prolog(end, name, head.count(b"\n", 0, end) + 1)
        else:
            return None


def _skip_doctype(buf: bytes, i: int) -> int:
    """Index after the DOCTYPE declaration starting before ``i``, or -1."""
    depth = 0
    n = len(buf)
    while i < n:
        c = buf[i]
        if c in b"\"'":
            j = buf.find(bytes([c]), i + 1)
            if j < 0:
                return -1
            i = j + 1
            continue
        if buf.startswith(b"<!--", i):
            j = buf.find(b"-->", i + 4)
            if j < 0:
                return -1
            i = j + 3
            continue
        if buf.startswith(b"<?", i):
            j = buf.find(b"?>", i + 2)
            if j < 0:
                return -1
            i = j + 2
            continue
        if c == ord("["):
            depth += 1
        elif c == ord("]"):
            depth -= 1
        elif c == ord(">") and depth <= 0:
            return i + 1
        i += 1
    return -1


def _tag_end(buf: bytes, i: int) -> int:
    """Index after the ``>`` closing the tag that continues at ``i`` (quotes respected)."""
    n = len(buf)
    while i < n:
        c = buf[i]
        if c in b"\"'":
            j = buf.find(bytes([c]), i + 1)
            if j < 0:
                return -1
            i = j + 1
        elif c == ord(">"):
            return i + 1
        else:
            i += 1
    return -1


# ---- record boundaries ----------------------------------------------------------------------

def _opener(record_elements: Elements) -> re.Pattern[bytes]:
    """Comment, CDATA or PI start, or a start tag named like a record element.

    ``order`` (no namespace) is only ever written ``<order``; ``{urn:x}order`` may be
    ``<order`` under a default namespace or ``<p:order`` (the prefix alternative costs
    5× the scan time, so it is only used then).
    """
    names = []
    prefix = b""
    for element in as_elements(record_elements):
        ns, _, local = element.rpartition("}")
        if ns:
            prefix = rb"(?:[A-Za-z_][\w.\-]*:)?"
        names.append(re.escape(local.encode()))
    alternatives = names[0] if len(names) == 1 else b"(?:" + b"|".join(names) + b")"
    return re.compile(rb"<(?:!--|!\[CDATA\[|\?|" + prefix + alternatives + rb"[\s/>])")


# A whole start tag that closes itself, attribute values (which may hold '>') included.
_SELF_CLOSING = re.compile(rb"""<[^<>"']*(?:(?:"[^"]*"|'[^']*')[^<>"']*)*/>""")


def _depth_change(buf: bytes, a: int, b: int) -> int:
    """Depth after ``buf[a:b]`` minus depth before; the stretch holds only tags and text
    (comments, CDATA and PIs are skipped before), and no tag is cut at either end."""
    change = buf.count(b"<", a, b) - 2 * buf.count(b"</", a, b)
    i = buf.find(b"/>", a, b)
    while i >= 0:  # a "/>" closes a tag only if the text from the last "<" is that tag
        if _SELF_CLOSING.fullmatch(buf, max(a, buf.rfind(b"<", a, i)), i + 2):
            change -= 1
        i = buf.find(b"/>", i + 2, b)
    return change


def record_starts(path: str, record_element: Elements, targets: Sequence[int],
                  prolog: Prolog | None = None) -> list[int]:
    """For each target offset (ascending), the offset of the first record start tag at or
    after it that is a child of the root; targets past the last record get no cut.

    The result is ascending and duplicate-free; a cut never lands on the first record (that
    would leave an empty first piece).
    """
    prolog = prolog or read_prolog(path)
    if prolog is None or not targets:
        return []
    pattern = _opener(record_element)
    pending = sorted(targets)
    cuts: list[int] = []
    first_record = -1
    depth = 1  # inside the root
    with open_input(path) as f:
        f.seek(prolog.body)
        base = prolog.body  # file offset of buf[0]
        buf = b""
        pos = 0  # depth is counted up to here
        scan = 0  # the next construct or record start is searched from here
        eof = False
        while pending:
            if not eof:
                chunk = f.read(_CHUNK)
                eof = not chunk
                buf = buf[pos:] + chunk
                base += pos
                scan -= pos
                pos = 0
            limit = len(buf) if eof else buf.rfind(b"<")  # no tag straddles the limit
            if limit <= pos:
                if eof:
                    break
                continue
            while pending and pos < limit:  # (a construct may end beyond the limit)
                m = pattern.search(buf, scan, limit)
                gap_end = m.start() if m else limit
                depth += _depth_change(buf, pos, gap_end)
                if m is None:
                    pos = scan = limit
                    break
                s = m.start()
                opener = buf[s + 1:s + 3]
                if opener in (b"!-", b"![") or opener.startswith(b"?"):
                    term = b"-->" if opener == b"!-" else b"]]>" if opener == b"![" else b"?>"
                    j = buf.find(term, m.end())
                    if j < 0:
                        pos = scan = s  # finish the construct with the next chunk
                        if eof:
                            pending = []
                        break
                    pos = scan = j + len(term)
                    continue
                if depth < 1:
                    pending = []  # past the root's end tag
                    break
                if depth == 1:
                    offset = base + s
                    if first_record < 0:
                        first_record = offset
                    while pending and pending[0] <= offset:
                        pending.pop(0)
                        if offset != first_record and (not cuts or cuts[-1] != offset):
                            cuts.append(offset)
                pos, scan = s, s + 1  # the record's own tag is counted with the next gap
            if eof and pos >= limit:
                break
    return cuts


# ---- where a range's first record stands among the records of its line -------------------
#
# A record's position in its file is (line, seq): the line lxml reports for it (``sourceline``,
# the line where its start tag *ends*) and how many records before it report the same line.
# The whole-file reader counts seq as it goes; a range that starts in the middle of a line
# (records written side by side) starts counting at the number of earlier records whose
# start tag ends on that line, so positions do not depend on where the file was cut.

def _start_tag_end(f: IO[bytes], start: int) -> int:
    """Offset just past the ``>`` of the start tag at ``start`` (quoted values respected)."""
    f.seek(start)
    buf = b""
    step = 4096
    while True:
        chunk = f.read(step)
        buf += chunk
        end = _tag_end(buf, 1)
        if end >= 0 or not chunk:
            return start + (end if end >= 0 else len(buf))
        step = min(step * 4, _CHUNK)


def _line_start(f: IO[bytes], pos: int) -> int:
    """Offset of the first byte of the line holding byte ``pos``."""
    step = 4096
    while pos > 0:
        lo = max(0, pos - step)
        f.seek(lo)
        i = f.read(pos - lo).rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
        step = min(step * 4, _CHUNK)
    return 0


def _record_tag_ends(path: str, record_element: Elements, begin: int, stop: int
                     ) -> Iterator[int]:
    """Offsets just past the start tag of every record element whose ``<`` lies in
    ``[begin, stop)``, skipping comments, CDATA sections and PIs; ``begin`` must be outside
    any of them (the end of the root start tag is)."""
    pattern = _opener(record_element)
    with open_input(path) as f:
        f.seek(begin)
        base, buf, scan, eof = begin, b"", 0, False
        while True:
            if not eof:
                chunk = f.read(_CHUNK)
                eof = not chunk
                buf = buf[scan:] + chunk
                base += scan
                scan = 0
            limit = len(buf) if eof else buf.rfind(b"<")  # no opener straddles the limit
            while scan < limit:
                m = pattern.search(buf, scan, limit)
                if m is None:
                    scan = limit
                    break
                s = m.start()
                if base + s >= stop:
                    return
                opener = buf[s + 1:s + 3]
                if opener in (b"!-", b"![") or opener.startswith(b"?"):
                    term = b"-->" if opener == b"!-" else b"]]>" if opener == b"![" else b"?>"
                    j = buf.find(term, m.end())
                    end = j + len(term) if j >= 0 else -1
                else:
                    end = _tag_end(buf, m.end() - 1)
                    if end >= 0:
                        yield base + end
                if end < 0:
                    scan = s  # finish it with the next chunk
                    break
                scan = end
            if eof:
                return


def range_first_seq(unit: RangeUnit, record_element: Elements, prolog: Prolog) -> int:
    """How many records before the range's first one report the same line as it."""
    if unit.start <= prolog.body:
        return 0
    with open_input(unit.path) as f:
        tag_end = _start_tag_end(f, unit.start)
        f.seek(unit.start)
        if b"\n" in f.read(tag_end - unit.start):
            return 0  # its start tag ends on a later line than any earlier record's
        line = _line_start(f, unit.start)
        lo = max(line, prolog.body)
        if unit.start - lo < _CHUNK:
            f.seek(lo)
            if b">" not in f.read(unit.start - lo):
                return 0  # only indentation before it: the usual case
    return sum(1 for end in _record_tag_ends(unit.path, record_element, prolog.body,
                                             unit.start) if end > line)


def range_origins(units: Sequence[WorkUnit], record_element: Elements
                  ) -> list[tuple[int, int]]:
    """``(line, seq)`` of the first record of each unit of one file (``units`` ordered by
    start): no record of a unit comes before it, every record of the previous unit does.
    ``(0, 0)`` for the unit that starts the file. Reads the file once up to the last range."""
    out: list[tuple[int, int]] = []
    prolog: Prolog | None = None
    lines, counted = 0, 0  # newlines before offset ``counted``
    for unit in units:
        if not isinstance(unit, RangeUnit) or unit.start == 0:
            out.append((0, 0))
            continue
        prolog = prolog or read_prolog(unit.path)
        if prolog is None:
            raise InputError(f"{unit.id}: cannot read the file's prolog to place this "
                             f"record range")
        with open_input(unit.path) as f:
            tag_end = _start_tag_end(f, unit.start)
        lines += count_lines(unit.path, tag_end, counted)
        counted = tag_end
        out.append((lines + 1, range_first_seq(unit, record_element, prolog)))
    return out


def records_before(path: str, offset: int, elements: Elements) -> dict[str, int]:
    """How many start tags of each record element lie before byte ``offset`` (comments,
    CDATA sections and processing instructions skipped): the count a reader of the whole
    file has reached when it meets the first record at ``offset``. Reads the file up to
    there, in chunks."""
    counts = dict.fromkeys(as_elements(elements), 0)
    prolog = read_prolog(path)
    if prolog is None or offset <= prolog.body:
        return counts
    pattern = _opener(elements)
    with open_input(path) as f:
        f.seek(prolog.body)
        left = offset - prolog.body
        buf = b""
        scan = 0
        while True:
            chunk = f.read(min(_CHUNK, left)) if left > 0 else b""
            left -= len(chunk)
            eof = not chunk
            buf = buf[scan:] + chunk
            scan = 0
            limit = len(buf) if eof else buf.rfind(b"<")  # no opener straddles the limit
            while True:
                m = pattern.search(buf, scan, max(limit, scan))
                if m is None:
                    scan = max(limit, scan)
                    break
                s = m.start()
                opener = buf[s + 1:s + 3]
                if opener in (b"!-", b"![") or opener.startswith(b"?"):
                    term = b"-->" if opener == b"!-" else b"]]>" if opener == b"![" else b"?>"
                    j = buf.find(term, m.end())
                    if j < 0:
                        scan = s  # finish it with the next chunk
                        break
                    scan = j + len(term)
                    continue
                name = buf[s + 1:m.end() - 1].decode("ascii", "replace")
                name = name.rpartition(":")[2]
                for element in counts:
                    if element.rpartition("}")[2] == name:
                        counts[element] += 1
                scan = m.end()
            if eof:
                return counts


def count_lines(path: str, end: int, start: int = 0) -> int:
    """Newlines in bytes ``[start, end)`` of a file (chunked: memory stays flat)."""
    n = 0
    left = end - start
    with open_input(path) as f:
        f.seek(start)
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n



# ---- records at any depth -------------------------------------------------------------------

@dataclass(frozen=True)
class Cut:
    """A record start to cut at, and the start tags of the elements (below the root) that
    enclose it."""

    offset: int
    ancestors: tuple[bytes, ...]


@dataclass
class DeepScan:
    """What :func:`deep_record_starts` found: the cuts, the records seen, and why it had to
    stop early (markup it cannot follow), if it did."""

    cuts: list[Cut]
    records: int
    problem: str = ""
    first_depth: int = -1  # elements between the root and the first record (-1: none)


class _Window:
    """A window over a file, addressed by absolute offsets; what lies before the point of
    interest is dropped, so memory stays about one chunk plus the longest tag."""

    def __init__(self, f: IO[bytes], start: int) -> None:
        f.seek(start)
        self.f = f
        self.base = start
        self.buf = b""
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def drop(self, upto: int) -> None:
        """Forget what lies before ``upto`` (copied away only once it is a chunk's worth)."""
        k = upto - self.base
        if k >= _CHUNK or (k > 0 and k * 2 >= len(self.buf)):
            self.buf = self.buf[k:]
            self.base = upto

    def need(self, end: int) -> bool:
        """Make bytes up to absolute ``end`` available (False at the end of the file)."""
        while self.base + len(self.buf) < end:
            if not self.more():
                return False
        return True

    def search(self, pattern: re.Pattern[bytes], pos: int, overlap: int = 64
               ) -> tuple[int, int, bytes] | None:
        """The first match at or after ``pos``: (start, end, matched bytes)."""
        while True:
            m = pattern.search(self.buf, max(0, pos - self.base))
            if m is not None and (self.eof or m.end() + overlap <= len(self.buf)):
                return self.base + m.start(), self.base + m.end(), m.group()
            if m is None:
                self.drop(max(pos, self.base + len(self.buf) - overlap))
                pos = max(pos, self.base)
            if not self.more():
                if m is None:
                    m = pattern.search(self.buf, max(0, pos - self.base))
                    if m is None:
                        return None
                return self.base + m.start(), self.base + m.end(), m.group()

    def find(self, needle: bytes, pos: int) -> int:
        """Absolute offset of the first ``needle`` at or after ``pos`` (-1: none)."""
        while True:
            i = self.buf.find(needle, pos - self.base)
            if i >= 0:
                return self.base + i
            self.drop(max(pos, self.base + len(self.buf) - len(needle)))
            pos = max(pos, self.base)
            if not self.more():
                return -1

    def tag_end(self, pos: int) -> int:
        """Absolute offset after the ``>`` of the tag whose name starts at ``pos``."""
        while True:
            end = _tag_end(self.buf, pos - self.base)
            if end >= 0:
                return self.base + end
            if not self.more():
                return -1

    def bytes(self, a: int, b: int) -> bytes:
        return self.buf[a - self.base:b - self.base]


_MARKUP = re.compile(rb"<")
_SKIP = {b"<!--": (b"-->", 4), b"<![CDATA[": (b"]]>", 9), b"<?": (b"?>", 2)}
_NAME_TAIL = re.compile(rb"[\s/>]")


def tag_name(tag: bytes) -> bytes:
    """``order`` for ``<order id="1">`` (and for ``</order>``)."""
    start = 2 if tag.startswith(b"</") else 1
    m = _NAME_TAIL.search(tag, start)
    return tag[start:m.start()] if m else tag[start:]


def _one_line(tag: bytes) -> bytes:
    """A start tag on one line: attribute values read line breaks as spaces anyway."""
    return tag.replace(b"\r\n", b" ").replace(b"\r", b" ").replace(b"\n", b" ")


def deep_record_starts(path: str, record_elements: Elements, targets: Sequence[int],
                       prolog: Prolog | None = None) -> DeepScan:
    """For each target offset (ascending), the first record start at or after it, at any
    depth, with the start tags of the elements enclosing it; the first record is never a
    cut. Reads the file once, tag by tag between records, and skips each record's body
    with one search for its end tag (comments, CDATA sections and PIs skipped whole)."""
    prolog = prolog or read_prolog(path)
    if prolog is None:
        return DeepScan([], 0, "its prolog cannot be read")
    wanted: set[bytes] = set()
    for element in as_elements(record_elements):
        wanted.add(element.rpartition("}")[2].encode())
    pending = sorted(targets)
    cuts: list[Cut] = []
    stack: list[bytes] = []
    records, first, first_depth = 0, -1, -1
    with open_input(path) as f:
        w = _Window(f, prolog.body)
        pos = prolog.body
        while pending:
            found = w.search(_MARKUP, pos, overlap=9)
            if found is None:
                return DeepScan(cuts, records, "the root element is not closed")
            lt = found[0]
            w.drop(lt)
            w.need(lt + 9)
            head = w.bytes(lt, lt + 9)
            skip = next((v for k, v in _SKIP.items() if head.startswith(k)), None)
            if skip is not None:
                term, n = skip
                end = w.search(re.compile(re.escape(term)), lt + n, overlap=len(term))
                if end is None:
                    return DeepScan(cuts, records, f"a construct at byte {lt} is not closed")
                pos = end[1]
                continue
            if head.startswith(b"<!"):
                return DeepScan(cuts, records, f"a declaration at byte {lt} inside the root")
            end_at = w.tag_end(lt + 1)
            if end_at < 0:
                return DeepScan(cuts, records, f"the tag at byte {lt} is not closed")
            tag = w.bytes(lt, end_at)
            pos = end_at
            if tag.startswith(b"</"):
                if not stack:
                    break  # the root's end tag
                stack.pop()
                continue
            name = tag_name(tag)
            closed = tag.endswith(b"/>")
            if name.rpartition(b":")[2] not in wanted:
                if not closed:
                    stack.append(tag)
                continue
            records += 1
            if first < 0:
                first, first_depth = lt, len(stack)
            while pending and pending[0] <= lt:
                pending.pop(0)
                if lt != first and (not cuts or cuts[-1].offset != lt):
                    cuts.append(Cut(lt, tuple(_one_line(t) for t in stack)))
            if closed:
                continue
            pos = _skip_body(w, name, pos)
            if pos < 0:
                return DeepScan(cuts, records, f"the record at byte {lt} is not closed",
                                first_depth)
    return DeepScan(cuts, records, "", first_depth)


def _skip_body(w: _Window, name: bytes, pos: int) -> int:
    """Offset after the end tag of the record whose body starts at ``pos`` (-1: none): the
    first ``</name>`` that no comment, CDATA section or PI before it hides. Looks at one
    window at a time: the part of the body a window held is dropped only once it holds
    neither the end tag nor the start of a construct."""
    close = b"</" + name
    keep = len(close) + 9  # a tag or construct start split by the window's end
    while True:
        at = pos - w.base
        end = w.buf.find(close, at)
        limit = end if end >= 0 else len(w.buf)
        hidden = min((i for i in (w.buf.find(b"<!", at, limit), w.buf.find(b"<?", at, limit))
                      if i >= 0), default=-1)
        if hidden >= 0:
            start = w.base + hidden
            if not w.need(start + 9) and w.base + len(w.buf) < start + 2:
                return -1
            head = w.bytes(start, start + 9)
            skip = next((v for k, v in _SKIP.items() if head.startswith(k)), None)
            if skip is None:
                if len(head) < 9 and not w.eof:
                    continue  # (need() could not give 9 bytes yet: look again)
                return -1  # a declaration inside a record
            term, n = skip
            stop = w.find(term, start + n)
            if stop < 0:
                return -1
            pos = stop + len(term)
            continue
        if end >= 0:
            tail = w.base + end + len(close)
            if not w.need(tail + 1):
                return -1
            if w.bytes(tail, tail + 1) in (b">", b" ", b"\t", b"\n", b"\r"):
                stop = w.find(b">", tail)
                return -1 if stop < 0 else stop + 1
            pos = tail  # (</order-note>: another element)
            continue
        w.drop(max(pos, w.base + len(w.buf) - keep))
        pos = max(pos, w.base)
        if not w.more():
            return -1


def range_context(unit: RangeUnit, record_elements: Elements
                  ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The enclosing start tags of the records at ``unit.start`` and ``unit.end`` (for a
    unit rebuilt from its id): scanned again, up to the range's end."""
    targets = [t for t in (unit.start, unit.end) if 0 < t < unit.size]
    scan = deep_record_starts(unit.path, record_elements, targets)
    at = {c.offset: c.ancestors for c in scan.cuts}
    head = at.get(unit.start, ()) if unit.start else ()
    tail = at.get(unit.end, ()) if unit.end < unit.size else ()
    return head, tail


# ---- planning ---------------------------------------------------------------------------------

def plan_units(files: Sequence[WorkUnit], pieces: int, record_element: Elements,
               notes: list[str] | None = None) -> list[WorkUnit]:
    """Cut the files into about ``pieces`` units of equal bytes, at record boundaries.

    A file that should have been cut and cannot be is read whole by one worker; ``notes``
    gets one line per such file saying why."""
    total = sum(f.size for f in files)
    if pieces <= 1 or total == 0:
        return list(files)
    step = total / pieces
    marks = [round(k * step) for k in range(1, pieces)]
    out: list[WorkUnit] = []
    offset = 0
    for f in files:
        inside = [m - offset for m in marks if offset < m < offset + f.size]
        offset += f.size
        if not inside:
            out.append(f)
            continue
        units, why = _cut(f, record_element, inside)
        out.extend(units)
        if why and notes is not None:
            notes.append(f"not split: {Path(f.path).name}: {why}; one worker reads it whole")
    return out


def _cut(f: WorkUnit, elements: Elements, inside: list[int]) -> tuple[list[WorkUnit], str]:
    """The pieces of one file, or the file whole and why it cannot be cut."""
    prolog = read_prolog(f.path)
    if prolog is None:
        return [f], _why_no_prolog(f.path)
    # Where the first record is a child of the root, the faster scan of those records.
    first = deep_record_starts(f.path, elements, [prolog.body], prolog)
    cuts = record_starts(f.path, elements, inside, prolog) if first.first_depth == 0 else []
    if cuts:  # records that are children of the root: nothing to reopen
        bounds = [0, *cuts, f.size]
        return [RangeUnit(f.path, f.size, a, b, (), ())
                for a, b in itertools.pairwise(bounds)], ""
    scan = deep_record_starts(f.path, elements, inside, prolog)
    if not scan.cuts:
        names = shown_elements(elements)
        if scan.problem:
            return [f], f"its markup could not be followed ({scan.problem})"
        if scan.records <= 1:
            return [f], (f"it holds {'one' if scan.records else 'no'} {names} record"
                         f"{'' if scan.records else 's'}, and a record is never split")
        return [f], (f"its {scan.records} {names} records all start before the first cut "
                     f"point (the rest of the file holds none)")
    deep = [Cut(0, ()), *scan.cuts, Cut(f.size, ())]
    return [RangeUnit(f.path, f.size, a.offset, b.offset, a.ancestors, b.ancestors)
            for a, b in itertools.pairwise(deep)], ""


def _why_no_prolog(path: str) -> str:
    with open_input(path) as f:
        head = f.read(4)
    if head.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in head:
        return ("it is in UTF-16 or UTF-32, and byte ranges are cut only in encodings that "
                "write markup as ASCII (UTF-8, ISO-8859-*, Windows-125x)")
    return ("its root start tag was not found in its first MiB (a prolog that large, an "
            "empty root element, or not XML)")


def units_from_ids(ids: Sequence[str], files: Sequence[WorkUnit]) -> list[WorkUnit]:
    """Rebuild the units of an interrupted run from its checkpoint ids (for ``--resume``).

    Resuming reuses the interrupted run's pieces whatever ``--workers`` is now. Ids that do
    not parse or name a file that is no longer input are left out, and files no id covers
    are added whole: :func:`~migrator.engine.prepare_target` then names the difference.
    """
    by_path = {f.path: f for f in files}
    out: list[WorkUnit] = []
    covered: set[str] = set()
    for uid in ids:
        path, sep, rng = uid.rpartition("#")
        if sep and path in by_path:
            a, dash, b = rng.partition("-")
            if dash and a.isdigit() and b.isdigit():
                out.append(RangeUnit(path, by_path[path].size, int(a), int(b)))
                covered.add(path)
                continue
        if uid in by_path:
            out.append(by_path[uid])
            covered.add(uid)
    out.extend(f for f in files if f.path not in covered)
    return out


def assign(units: Sequence[WorkUnit], workers: int) -> list[list[WorkUnit]]:
    """Largest unit first to the least-loaded worker; each list keeps the input order."""
    loads = [0] * workers
    picks: list[list[int]] = [[] for _ in range(workers)]
    order = sorted(range(len(units)), key=lambda i: -unit_bytes(units[i]))
    for i in order:
        w = loads.index(min(loads))
        loads[w] += unit_bytes(units[i])
        picks[w].append(i)
    return [[units[i] for i in sorted(p)] for p in picks if p]


# ---- reading a range ------------------------------------------------------------------------

class _RangeFile:
    """A read-only file object: prolog bytes + ``path[start:end]`` + the root end tag."""

    def __init__(self, f: IO[bytes], head: bytes, start: int, end: int, tail: bytes) -> None:
        self._f = f
        self._parts: list[bytes] = [head] if head else []
        self._tail = tail
        self._left = end - start
        f.seek(start)
        self.consumed = 0  # bytes of the range read so far

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 30
        if self._parts:
            part = self._parts[0]
            out, rest = part[:size], part[size:]
            if rest:
                self._parts[0] = rest
            else:
                self._parts.pop(0)
            return out
        if self._left > 0:
            data = self._f.read(min(size, self._left))
            if data:
                self._left -= len(data)
                self.consumed += len(data)
                return data
            self._left = 0
        if self._tail:
            out, self._tail = self._tail[:size], self._tail[size:]
            return out
        return b""

    def close(self) -> None:
        self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed


class RangeRecordStream(RecordStream):
    """Records of one :class:`RangeUnit`, with the file's absolute line numbers."""

    def __init__(self, unit: RangeUnit, record_elements: Elements,
                 dtd_dir: str | None = None) -> None:
        super().__init__(unit.path, record_elements, dtd_dir)
        self.unit = unit
        self._range: _RangeFile | None = None

    def records_before(self) -> dict[str, int]:
        return records_before(self.unit.path, self.unit.start, self.elements)

    @property
    def position(self) -> int:
        return self._range.consumed if self._range is not None else 0

    def _open(self) -> tuple[_RangeFile, int]:
        u = self.unit
        prolog = read_prolog(u.path)
        if prolog is None:
            raise InputError(f"{u.id}: cannot read the file's prolog to parse this record "
                             f"range; run it with --workers 1")
        enclosing, closing = (u.head, u.tail) if u.head is not None and u.tail is not None \
            else range_context(u, self.elements)
        f = open_input(u.path)  # (closed by the stream's finally)
        tail = b"" if u.end >= u.size else \
            b"".join(b"</" + tag_name(t) + b">" for t in reversed(closing)) \
            + b"</" + prolog.root + b">"
        if u.start == 0:
            return _RangeFile(f, b"", 0, u.end, tail), 0
        f.seek(0)
        head = f.read(prolog.body) + b"".join(enclosing)
        # The range's first byte lands on the root tag's line: shift lines by the difference.
        shift = count_lines(u.path, u.start) + 1 - prolog.line
        self.first_seq = range_first_seq(u, self.elements, prolog)
        return _RangeFile(f, head, u.start, u.end, tail), shift

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            src, shift = self._open()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        self._range = src
        self._file = None
        try:
            yield from self._records(src, shift)
        finally:
            src.close()


def describe(units: Sequence[WorkUnit]) -> str:
    """``a.xml#0-100, b.xml`` with file names only (for messages)."""
    return ", ".join(Path(u.path).name + u.id[len(u.path):] for u in units)
