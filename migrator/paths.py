"""The path language of mappings: a small XPath subset, parsed once when a mapping loads.

A *value path* says where a column's text is, relative to its context element (the record,
or a child table's row element)::

    .                 the element's own text (before its first child, as lxml's ``.text``)
    text()            the element's text nodes joined (mixed content: ``a<b>x</b>c`` → ``ac``)
    string(a)         all the text inside the first <a>, its descendants' too (``axc``)
    @x                an attribute
    a/b               the text of the first <b> in any <a>, in document order (XPath (a/b)[1])
    a/@x  a/text()    the same, reading an attribute or the joined text of the first match
    a[1]  a[last()]   the first / last <a> of each context (positions count per parent)
    a[@x='v'] a[@x]   the <a> whose attribute x is 'v' / that has an attribute x
    ..  ../@x  ../a   the parent element (repeat ``../`` to go further up)
    ancestor::t/@x    attribute x of an enclosing <t> (the outermost one that has it)
    count(a/b)        how many elements a path matches (0 when none)

Predicates combine as ``a[@x='v'][2]``: attribute tests first, then at most one position.
A *rows path* (a child table's ``rows``) is child steps with predicates only, e.g.
``province/city[@capital='yes']``. Anything else is refused with the position of the first
character that is not understood and the supported forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"[A-Za-z_][\w.\-]*")
VALUE_FORMS = ("a/b, @x, a/@x, ., text(), a/text(), string(a), a[1], a[last()], a[@x='v'], "
               "a[@x], ../@x, ../a, ancestor::NAME/@x, count(a/b)")
ROWS_FORMS = "a, a/b, a[1], a[last()], a[@x='v'], a[@x]/b"


class PathError(ValueError):
    """A path outside the subset: the message names the position and the supported forms."""

    def __init__(self, path: str, pos: int, problem: str, forms: str = VALUE_FORMS) -> None:
        shown = repr(path)
        where = f" at position {pos + 1}" if 0 <= pos < len(path) else ""
        super().__init__(f"bad path {shown}{where}: {problem}; supported forms: {forms}")
        self.path = path
        self.pos = pos


@dataclass(frozen=True)
class Pred:
    """One predicate: ``attr`` (``[@name='value']``, or ``[@name]`` when ``value`` is None),
    ``pos`` (``[index]``, 1-based) or ``last`` (``[last()]``)."""

    kind: str
    name: str = ""
    value: str | None = None
    index: int = 0

    @property
    def positional(self) -> bool:
        return self.kind in ("pos", "last")

    def xpath(self) -> str:
        if self.kind == "pos":
            return f"[{self.index}]"
        if self.kind == "last":
            return "[last()]"
        if self.value is None:
            return f"[@{self.name}]"
        quote = "'" if "'" not in self.value else '"'
        return f"[@{self.name}={quote}{self.value}{quote}]"


@dataclass(frozen=True)
class Step:
    """A child step: an element name and its predicates."""

    name: str
    preds: tuple[Pred, ...] = ()

    @property
    def filters(self) -> tuple[Pred, ...]:
        return tuple(p for p in self.preds if not p.positional)

    @property
    def position(self) -> Pred | None:
        return next((p for p in self.preds if p.positional), None)

    def xpath(self) -> str:
        return self.name + "".join(p.xpath() for p in self.preds)


@dataclass(frozen=True)
class ValuePath:
    """A parsed value path. ``leaf``: ``text`` (the first match's ``.text``), ``join`` (its
    text nodes joined), ``string`` (all text inside it), ``attr`` (attribute ``attr`` of
    the first match that has it) or ``count`` (how many elements match). The element is
    reached from the context by ``up`` parent steps or the ``ancestor`` axis, then
    ``steps``."""

    text: str
    steps: tuple[Step, ...] = ()
    leaf: str = "text"
    attr: str | None = None
    up: int = 0
    ancestor: str | None = None

    @property
    def origin(self) -> tuple[int, str | None]:
        return self.up, self.ancestor

    def element_xpath(self) -> str:
        """XPath of the elements the path reads from (``.`` for the context itself)."""
        parts = [".."] * self.up
        if self.ancestor is not None:
            parts.append(f"ancestor::{self.ancestor}")
        parts.extend(s.xpath() for s in self.steps)
        return "/".join(parts) or "."

    def xpath(self) -> str:
        """The whole path as XPath (what lxml evaluates in the reference mapper)."""
        base = self.element_xpath()
        if self.leaf == "attr":
            return f"@{self.attr}" if base == "." else f"{base}/@{self.attr}"
        if self.leaf in ("count", "string"):
            return f"{self.leaf}({base})"
        return base


class _Parser:
    def __init__(self, text: str, forms: str) -> None:
        self.s = text
        self.i = 0
        self.forms = forms

    def fail(self, problem: str, at: int | None = None) -> PathError:
        return PathError(self.s, self.i if at is None else at, problem, self.forms)

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def peek(self, text: str) -> bool:
        return self.s.startswith(text, self.i)

    def skip_spaces(self) -> None:
        while not self.at_end() and self.s[self.i] in " \t":
            self.i += 1

    def expect(self, text: str, problem: str) -> None:
        if not self.peek(text):
            raise self.fail(problem)
        self.i += len(text)

    def name(self, what: str = "an element name") -> str:
        m = NAME_RE.match(self.s, self.i)
        if m is None:
            raise self.unexpected(what)
        self.i = m.end()
        if self.peek("::") or self.peek(":"):
            if self.s[m.start():m.end()] == "ancestor" and self.peek("::"):
                raise self.fail("ancestor:: may only start a path", m.start())
            raise self.fail("axes other than ancestor:: and names with a namespace prefix "
                            "are not supported", m.start())
        if self.peek("("):
            raise self.fail("the only functions are text() at the end of a path and "
                            "count(...) or string(...) around a whole path", m.start())
        return m.group()

    def unexpected(self, what: str) -> PathError:
        if self.at_end():
            return self.fail(f"the path ends where {what} should follow")
        c = self.s[self.i]
        if self.peek("//"):
            return self.fail("'//' (any depth) is not supported: write every step")
        if c == "/" and self.i > 0 and self.s[self.i - 1] == "/":
            return self.fail("'//' (any depth) is not supported: write every step", self.i - 1)
        if c == "*":
            return self.fail("wildcards are not supported: name the element")
        if self.peek(".."):
            return self.fail("'..' may only start a path (../../a/@x)")
        if c == "@":
            return self.fail("an attribute can only be the last step")
        if self.peek("text()"):
            return self.fail("text() can only be the last step")
        if c == "/":
            return self.fail("a path starts with a name, '.', '..', '@' or ancestor:: "
                             "(paths are relative, never absolute)")
        return self.fail(f"expected {what}, found {c!r}")

    def preds(self) -> tuple[Pred, ...]:
        out: list[Pred] = []
        while self.peek("["):
            start = self.i
            self.i += 1
            self.skip_spaces()
            m = re.compile(r"\d+").match(self.s, self.i)
            if m is not None:
                index = int(m.group())
                if index < 1:
                    raise self.fail("positions start at 1", m.start())
                self.i = m.end()
                pred = Pred("pos", index=index)
            elif self.peek("last()"):
                self.i += len("last()")
                pred = Pred("last")
            elif self.peek("@"):
                self.i += 1
                name = self.name("an attribute name")
                self.skip_spaces()
                value = None
                if self.peek("="):
                    self.i += 1
                    self.skip_spaces()
                    value = self.quoted()
                pred = Pred("attr", name=name, value=value)
            else:
                raise self.fail("predicates are [N], [last()], [@x='v'] or [@x]")
            self.skip_spaces()
            self.expect("]", "a predicate ends with ']'")
            if out and out[-1].positional:
                raise self.fail("a position ([N] or [last()]) must be the last predicate of "
                                "its step", start)
            out.append(pred)
        return tuple(out)

    def quoted(self) -> str:
        if self.at_end() or self.s[self.i] not in "'\"":
            raise self.fail("the value of an attribute test is quoted: [@x='v']")
        quote = self.s[self.i]
        end = self.s.find(quote, self.i + 1)
        if end < 0:
            raise self.fail("the quoted value is not closed")
        value = self.s[self.i + 1:end]
        self.i = end + 1
        return value

    def step(self) -> Step:
        name = self.name()
        return Step(name, self.preds())

    def slash(self) -> bool:
        """Consume a '/' between steps; False at the end of the path."""
        if self.at_end():
            return False
        if not self.peek("/"):
            raise self.unexpected("'/'")
        self.i += 1
        if self.at_end():
            raise self.fail("a path does not end with '/'", self.i - 1)
        if self.peek("/"):
            raise self.unexpected("a step")
        return True


def parse_value_path(text: object) -> ValuePath:
    """Parse a column's (or key's) path; raise :class:`PathError` outside the subset."""
    if not isinstance(text, str) or not text.strip():
        raise PathError(str(text), -1, "a path is a non-empty string")
    s = text.strip()
    for fn in ("count", "string"):
        if s.startswith(f"{fn}(") and s.endswith(")"):
            start = len(fn) + 1
            inner = _relative(_Parser(s, VALUE_FORMS), start, len(s) - 1)
            if inner.leaf != "text" or (fn == "count" and not inner.steps
                                        and inner.ancestor is None and not inner.up):
                raise PathError(s, start, f"{fn}() takes a path of elements, such as "
                                f"{fn}(a/b)")
            return ValuePath(s, inner.steps, fn, None, inner.up, inner.ancestor)
    return _relative(_Parser(s, VALUE_FORMS), 0, len(s))


def _relative(p: _Parser, start: int, end: int) -> ValuePath:
    """Parse ``p.s[start:end]`` as a relative path (``p.s`` is kept whole for messages)."""
    full = p.s
    p.s = full[:end]
    p.i = start
    try:
        return _relative_body(p, full[start:end])
    finally:
        p.s = full


def _relative_body(p: _Parser, text: str) -> ValuePath:
    if p.s[p.i:] == ".":
        return ValuePath(text)
    up = 0
    ancestor = None
    if p.peek("ancestor::"):
        p.i += len("ancestor::")
        ancestor = p.name()
        if p.peek("["):
            raise p.fail("predicates on ancestor:: are not supported")
        if not p.slash() or not p.peek("@"):
            raise p.fail("ancestor::NAME reads an attribute: ancestor::NAME/@x")
    else:
        while p.peek(".."):
            up += 1
            p.i += 2
            if not p.slash():
                return ValuePath(text, up=up)
    steps: list[Step] = []
    while True:
        if p.peek("@"):
            p.i += 1
            attr = p.name("an attribute name")
            if not p.at_end():
                raise p.fail("an attribute can only be the last step")
            return ValuePath(text, tuple(steps), "attr", attr, up, ancestor)
        if p.peek("text()"):
            p.i += len("text()")
            if not p.at_end():
                raise p.fail("text() can only be the last step")
            return ValuePath(text, tuple(steps), "join", None, up, ancestor)
        if p.peek(".") and not p.peek(".."):
            raise p.fail("'.' is a whole path on its own ('./a' is written 'a')")
        steps.append(p.step())
        if not p.slash():
            return ValuePath(text, tuple(steps), "text", None, up, ancestor)


def parse_rows_path(text: object) -> tuple[Step, ...]:
    """Parse a child table's ``rows`` path: child steps with predicates only."""
    if not isinstance(text, str) or not text.strip():
        raise PathError(str(text), -1, "rows is a non-empty element path", ROWS_FORMS)
    p = _Parser(text.strip(), ROWS_FORMS)
    steps: list[Step] = []
    while True:
        if p.peek("@") or p.peek("text()") or p.peek("..") or p.peek("ancestor::") or \
                p.peek("count("):
            raise p.fail("rows names elements: child steps with predicates only")
        steps.append(p.step())
        if not p.slash():
            return tuple(steps)
