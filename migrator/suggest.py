"""A starting mapping for an XML file never seen before, and a mapping checked on a sample.

:func:`suggest_mapping` streams a sample of the file (the hardened reader, constant memory)
and writes a commented mapping TOML that ``bench run`` accepts as it is:

* record elements: given, or inferred as the elements that repeat inside a container that
  occurs once (``<countries><country>…``), several record types when there are several;
* columns: every attribute and every element that occurs at most once in its parent,
  flattened into paths (``customer/email``, ``shipping/@method``); an element with text and
  child elements (mixed content) becomes one ``string(path)`` column; the attributes of the
  record's parent element become ``../@attr`` columns;
* child tables for elements that repeat inside their parent, nested to any depth, each row
  identified by its position;
* types from the sample's values: ``int``/``bigint`` (10× headroom), ``decimal(p,s)`` (two
  more integer digits), ``date``, ``datetime``, ``bool`` (true/false), else ``str(n)`` with
  about twice the longest value, or ``text``; every value of the sample converts under the
  strict rules of :mod:`migrator.coerce`, so the sample loads with nothing quarantined;
* ``required`` where every row of the sample has a value;
* the record key: an attribute or child element named like a key (``id``, ``key``,
  ``code``, ``…_id`` …) whose value is present and unique in every sampled record, else a
  pair of attributes unique together, else a generated key.

:func:`check_mapping` runs a mapping over a sample and reports the rows per table, the
fields that never matched and the records that would be quarantined, and why.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from migrator.coerce import coercer
from migrator.errors import InputError, MalformedXMLError
from migrator.keys import KeyCounter
from migrator.mapping import ColumnType, Mapping
from migrator.reader import RecordStream, describe_syntax_error
from migrator.rowmap import RecordMapper, RecordRejected, naive_map

DEFAULT_SAMPLE = 1000
SCAN_ELEMENTS = 200_000  # elements looked at to find the record elements
_LENGTHS = (10, 20, 40, 60, 80, 100, 150, 200, 255, 500, 1000, 2000, 4000)
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?([0-9]+)\.([0-9]+)")
_KEY_WORDS = ("id", "key", "code", "uid", "uuid", "number", "no", "nr")


# ---- finding the record elements --------------------------------------------------------------

def find_record_elements(path: str, limit: int = SCAN_ELEMENTS) -> list[str]:
    """Elements that repeat inside a container met once (the root or a child of it …),
    in document order of their first occurrence; the root's most frequent child if none."""
    counts: Counter[tuple[tuple[str, ...], str]] = Counter()
    opened: Counter[tuple[str, ...]] = Counter()
    order: list[tuple[tuple[str, ...], str]] = []
    stack: list[str] = []
    seen = 0
    try:
        with open(path, "rb") as f:
            for event, elem in etree.iterparse(f, events=("start", "end"),
                                               resolve_entities=False, no_network=True,
                                               load_dtd=False, huge_tree=False):
                if not isinstance(elem.tag, str):
                    continue
                if event == "end":
                    stack.pop()
                    _free(elem)
                    continue
                parent = tuple(stack)
                if (parent, elem.tag) not in counts:
                    order.append((parent, elem.tag))
                counts[(parent, elem.tag)] += 1
                stack.append(elem.tag)
                opened[tuple(stack)] += 1
                seen += 1
                if seen >= limit:
                    break
    except etree.XMLSyntaxError as exc:
        if not counts:
            raise MalformedXMLError(path, exc.lineno or 0,
                                    describe_syntax_error(path, exc.msg or str(exc))) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if not counts:
        raise InputError(f"{path}: no element found; is it an XML file?")
    found: list[str] = []
    for parent, tag in order:
        if parent and counts[(parent, tag)] >= 2 and opened[parent] == 1 and tag not in found \
                and not any(t in found for t in parent):
            found.append(tag)
    if found:
        return found
    root = order[0][1]
    children = [(n, tag) for (parent, tag), n in counts.items() if parent == (root,)]
    return [max(children)[1]] if children else [root]


def _free(elem: Any) -> None:
    elem.clear(keep_tail=False)
    parent = elem.getparent()
    if parent is not None:
        while elem.getprevious() is not None:
            del parent[0]


def sample_records(path: str, elements: Sequence[str], sample: int,
                   dtd_dir: str | None = None) -> Iterator[Any]:
    """The first ``sample`` records of each type, as the reader yields them (valid until
    the next one)."""
    counts: Counter[str] = Counter()
    stream = RecordStream(path, elements, dtd_dir)
    for _, elem in stream:
        if counts[elem.tag] < sample:
            counts[elem.tag] += 1
            yield elem
        elif all(counts[e] >= sample for e in elements):
            return


# ---- what the sample holds ------------------------------------------------------------------

@dataclass
class Values:
    """What the values of one field looked like in the sample."""

    occurrences: int = 0
    filled: int = 0  # not empty or blank
    distinct: set[str] = field(default_factory=set)
    example: str = ""
    longest: int = 0
    texts: list[str] = field(default_factory=list)  # every filled value (type checks)

    def add(self, text: str) -> None:
        self.occurrences += 1
        if not text.strip():
            return
        self.filled += 1
        if not self.example:
            self.example = text.strip()
        self.longest = max(self.longest, len(text))
        self.distinct.add(text)
        self.texts.append(text)


@dataclass
class Node:
    """One element path below a table's row element (or the record): how often it occurs,
    its attributes, its text, and the elements below it."""

    tag: str
    count: int = 0
    most_in_parent: int = 0
    values: Values = field(default_factory=Values)
    attrs: dict[str, Values] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    mixed: bool = False  # text beside child elements
    parent_attrs: dict[str, Values] = field(default_factory=dict)  # the record's parent's

    def visit(self, elem: Any) -> None:
        self.count += 1
        for name, value in elem.attrib.items():
            if isinstance(name, str) and not name.startswith("{"):
                self.attrs.setdefault(name, Values()).add(value)
        kids = [c for c in elem if isinstance(c.tag, str)]
        if kids:
            text = (elem.text or "") + "".join(c.tail or "" for c in elem)
            if text.strip():
                self.mixed = True
            self.values.add("".join(elem.itertext()))
        else:
            self.values.add(elem.text or "")
        per_tag = Counter(c.tag for c in kids if not c.tag.startswith("{"))
        for tag, n in per_tag.items():
            child = self.children.setdefault(tag, Node(tag))
            child.most_in_parent = max(child.most_in_parent, n)
        for c in kids:
            if not c.tag.startswith("{"):
                self.children[c.tag].visit(c)


def infer_type(values: Values) -> ColumnType:
    """The narrowest type every filled value of the sample converts to, with headroom."""
    texts = [t.strip() for t in values.texts]
    if not texts:
        return ColumnType("text")
    lowered = {t.lower() for t in texts}
    if lowered <= {"true", "false"}:
        return ColumnType("bool")
    if all(_INT.fullmatch(t) for t in texts):
        biggest = max(abs(int(t)) for t in texts)
        if biggest * 10 < 2**31:
            return ColumnType("int")
        if biggest * 10 < 2**63:
            return ColumnType("bigint")
    if all(_INT.fullmatch(t) or _DECIMAL.fullmatch(t) for t in texts):
        whole = max(len(t.lstrip("-").split(".")[0].lstrip("0") or "0") for t in texts)
        scale = max((len(t.split(".")[1]) for t in texts if "." in t), default=0)
        precision = min(38, whole + 2 + scale)
        if whole + scale <= 38:
            return ColumnType("decimal", precision=max(precision, 1), scale=min(scale, 37))
    for kind in ("date", "datetime"):
        ctype = ColumnType(kind)
        if _all_convert(values.texts, ctype):
            return ctype
    longest = max(values.longest, 1)
    n = next((n for n in _LENGTHS if n >= 2 * longest), None)
    return ColumnType("str", length=n) if n is not None else ColumnType("text")


def _all_convert(texts: Sequence[str], ctype: ColumnType) -> bool:
    convert = coercer(ctype)
    try:
        for t in texts:
            convert(t)
    except ValueError:
        return False
    return True


# ---- the suggested mapping ----------------------------------------------------------------------

@dataclass
class SuggestedColumn:
    name: str
    path: str
    type: ColumnType
    required: bool
    note: str  # the comment: how often it had a value, an example

    def toml(self) -> str:
        req = ", required = true" if self.required else ""
        return (f"{self.name} = {{ path = {_quote(self.path)}, type = \"{self.type}\"{req} }}"
                f"  # {self.note}")


@dataclass
class SuggestedTable:
    name: str
    rows: str | None  # None: the root table
    parent: str | None
    columns: list[SuggestedColumn]
    count: int
    position_column: str | None = None
    key_column: list[str] = field(default_factory=list)  # the root table's


@dataclass
class SuggestedRecord:
    element: str
    records: int
    key: list[tuple[str, ColumnType]]  # empty: generated
    key_note: str
    tables: list[SuggestedTable]


def _quote(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def snake(name: str) -> str:
    """``orderDate`` → ``order_date``, ``@x:lang`` → ``x_lang``: a column or table name."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "x"
    return ("_" + name if name[0].isdigit() else name)[:60]


class _Names:
    """Unique names (case-insensitive), within a table or across the mapping."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        self.taken = {t.lower() for t in taken}

    def new(self, wanted: str) -> str:
        base = wanted[:60] or "x"
        name, n = base, 2
        while name.lower() in self.taken or name.lower().startswith("mb_"):
            name = f"{base[:56]}_{n}"
            n += 1
        self.taken.add(name.lower())
        return name


def _note(values: Values, rows: int) -> str:
    example = values.example if len(values.example) <= 30 else values.example[:29] + "…"
    return f"{values.filled}/{rows} rows" + (f", e.g. {_quote(example)}" if example else "")


def _columns(node: Node, rows: int, names: _Names, skip: set[str]
             ) -> tuple[list[SuggestedColumn], list[tuple[str, Node]]]:
    """The columns of a table whose row element ``node`` describes, and its repeated child
    elements (rows path relative to the row element, node)."""
    cols: list[SuggestedColumn] = []
    repeated: list[tuple[str, Node]] = []

    def column(path: str, values: Values, wanted: str, string: bool = False) -> None:
        if path in skip:
            return
        ctype = infer_type(values)
        if string and ctype.kind != "str" and ctype.kind != "text":
            ctype = ColumnType("text")
        cols.append(SuggestedColumn(names.new(snake(wanted)), path, ctype,
                                    values.filled == rows and rows > 0, _note(values, rows)))

    def walk(n: Node, path: str) -> None:
        for attr, values in n.attrs.items():
            column(f"{path}/@{attr}" if path else f"@{attr}", values,
                   f"{path.replace('/', '_')}_{attr}" if path else attr)
        if path and n.mixed:  # text beside child elements: all of it, as one value
            column(f"string({path})", n.values, path.replace("/", "_"), string=True)
            return
        if path and not n.children and (n.values.filled or not n.attrs):
            column(path, n.values, path.replace("/", "_"))
        for tag, child in n.children.items():
            sub = f"{path}/{tag}" if path else tag
            if child.most_in_parent > 1:
                repeated.append((sub, child))
            else:
                walk(child, sub)

    if node.mixed or (not node.children and node.values.filled):
        column("string(.)" if node.mixed else ".", node.values, node.tag, string=node.mixed)
    if not node.mixed:
        walk(node, "")
    return cols, repeated


def _record(element: str, node: Node, table_names: _Names) -> SuggestedRecord:
    rows = node.count
    key, key_note = _choose_key(node, rows)
    root_name = table_names.new(snake(element))
    key_names = _Names()
    key_columns = [key_names.new(snake(path.replace("@", "").replace("../", "parent_")))
                   for path, _ in key] or [key_names.new(f"{snake(element)}_id")]
    names = _Names(key_columns)
    cols, repeated = _columns(node, rows, names, {path for path, _ in key})
    for attr, values in node.parent_attrs.items():
        if f"../@{attr}" not in {p for p, _ in key}:
            cols.append(SuggestedColumn(names.new(snake(f"parent_{attr}")), f"../@{attr}",
                                        infer_type(values), values.filled == rows,
                                        _note(values, rows)))
    root = SuggestedTable(root_name, None, None, cols, rows, key_column=key_columns)
    tables = [root]
    inherited = list(key_columns)

    def child_tables(parent: SuggestedTable, parent_keys: list[str],
                     found: list[tuple[str, Node]]) -> None:
        for rows_path, child in found:
            name = table_names.new(snake(f"{parent.name}_{rows_path.split('/')[-1]}"))
            taken = _Names(parent_keys)
            position = taken.new(snake(f"{rows_path.split('/')[-1]}_no"))
            ccols, deeper = _columns(child, child.count, taken, set())
            table = SuggestedTable(name, rows_path, parent.name, ccols, child.count, position)
            tables.append(table)
            child_tables(table, [*parent_keys, position], deeper)

    child_tables(root, inherited, repeated)
    return SuggestedRecord(element, rows, key, key_note, tables)


def _choose_key(node: Node, rows: int) -> tuple[list[tuple[str, ColumnType]], str]:
    """A natural key unique in the sample, or none (generated)."""
    def usable(values: Values) -> ColumnType | None:
        if values.filled != rows or len(values.distinct) != rows:
            return None
        ctype = infer_type(values)
        if ctype.kind in ("int", "bigint", "date"):
            return ctype
        if ctype.kind == "str" and (ctype.length or 0) <= 200:
            return ctype
        return None

    def keyish(name: str) -> bool:
        return snake(name).split("_")[-1] in _KEY_WORDS

    candidates: list[tuple[int, str, ColumnType]] = []
    for attr, values in node.attrs.items():
        ctype = usable(values)
        if ctype is not None and keyish(attr):
            candidates.append((ctype.kind == "str", f"@{attr}", ctype))
    for tag, child in node.children.items():
        if child.most_in_parent == 1 and not child.children and not child.attrs \
                and keyish(tag):
            ctype = usable(child.values)
            if ctype is not None:
                candidates.append((2 + (ctype.kind == "str"), tag, ctype))
    if rows and candidates:
        _, path, ctype = min(candidates)
        return [(path, ctype)], "unique in every sampled record"
    full = [(a, v) for a, v in node.attrs.items() if v.filled == rows]
    for (a, va), (b, vb) in itertools.combinations(full, 2):
        pairs = len(set(zip(va.texts, vb.texts, strict=True)))
        if rows and pairs == rows:
            return ([(f"@{a}", infer_type(va)), (f"@{b}", infer_type(vb))],
                    "the pair is unique in every sampled record")
    return [], "no value is unique in the sample: a key generated from each record's position"


def suggest(path: str, records: Sequence[str] | None = None, sample: int = DEFAULT_SAMPLE,
            dtd_dir: str | None = None) -> list[SuggestedRecord]:
    """Profile the first ``sample`` records of each record element of ``path``."""
    elements = list(records) if records else find_record_elements(path)
    nodes = {e: Node(e) for e in elements}
    for elem in sample_records(path, elements, sample, dtd_dir):
        node = nodes[elem.tag]
        node.visit(elem)
        parent = elem.getparent()
        if parent is not None and parent.getparent() is not None:  # (not the root)
            for name, value in parent.attrib.items():
                if isinstance(name, str) and not name.startswith("{"):
                    node.parent_attrs.setdefault(name, Values()).add(value)
    empty = [e for e in elements if not nodes[e].count]
    if empty:
        raise InputError(f"{path}: no <{empty[0]}> element found; name the record element "
                         f"with --record ELEMENT")
    names = _Names()
    return [_record(e, nodes[e], names) for e in elements]


def suggest_mapping(path: str, records: Sequence[str] | None = None,
                    sample: int = DEFAULT_SAMPLE, dtd_dir: str | None = None) -> str:
    """The commented mapping TOML for ``path`` (see the module's docstring)."""
    found = suggest(path, records, sample, dtd_dir)
    return render(path, found, sample, dtd_dir)


def render(path: str, found: list[SuggestedRecord], sample: int,
           dtd_dir: str | None = None) -> str:
    out = [f"# Suggested by `bench mapping suggest` from {path}",
           f"# (up to {sample} records of each type). Types, lengths and keys fit that sample:",
           "# review them, then check the mapping on more data with `bench mapping check`.",
           "version = 2", ""]
    if dtd_dir:
        out += ["[input]", f"dtd_dir = {_quote(os.path.realpath(dtd_dir))}", ""]
    for rec in found:
        out.append(f"# <{rec.element}>: {rec.records} records in the sample")
        out.append("[[records]]")
        out.append(f"element = {_quote(rec.element)}")
        if rec.key:
            parts = [f"{{ path = {_quote(p)}, type = \"{t}\" }}" for p, t in rec.key]
            value = parts[0] if len(parts) == 1 else f"[{', '.join(parts)}]"
        else:
            value = "{ generated = true }"
        out.append(f"key = {value}  # {rec.key_note}")
        for table in rec.tables:
            out.append("")
            what = "one row per record" if table.rows is None else \
                f"one row per <{table.rows.split('/')[-1]}>, {table.count} in the sample"
            out.append(f"[[records.tables]]  # {what}")
            out.append(f"name = {_quote(table.name)}")
            if table.rows is None:
                keys = table.key_column
                out.append(f"key_column = {_quote(keys[0])}" if len(keys) == 1 else
                           f"key_column = [{', '.join(_quote(k) for k in keys)}]")
            else:
                if table.parent is not None and table.parent != rec.tables[0].name:
                    out.append(f"parent = {_quote(table.parent)}")
                out.append(f"rows = {_quote(table.rows)}")
                out.append(f"position_column = {_quote(table.position_column or 'no')}")
            out.append("[records.tables.columns]")
            if not table.columns:
                out.append('present = { path = ".", type = "text" }  # (no value below it)')
            out.extend(c.toml() for c in table.columns)
        out.append("")
    return "\n".join(out)


# ---- checking a mapping on a sample -----------------------------------------------------------

@dataclass
class Rejection:
    code: str
    reason: str
    count: int
    line: int  # the first record's
    key: str | None


@dataclass
class CheckReport:
    """What a mapping makes of a sample: rows per table, fields that never matched, and the
    records that would be quarantined (grouped by code and reason)."""

    path: str
    records: dict[str, int]
    rows: dict[str, int]
    never_matched: list[str]  # "table.column (path)"
    rejected: list[Rejection]

    @property
    def quarantined(self) -> int:
        return sum(r.count for r in self.rejected)

    @property
    def ok(self) -> bool:
        return bool(sum(self.records.values())) and not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "records": self.records, "rows": self.rows,
                "never_matched": self.never_matched, "quarantined": self.quarantined,
                "rejections": [r.__dict__ for r in self.rejected], "ok": self.ok}


def check_mapping(mapping: Mapping, path: str, sample: int = DEFAULT_SAMPLE) -> CheckReport:
    """Map the first ``sample`` records of each type of ``path`` as a run would (keys,
    conversions, rejections), without a database."""
    mapper = RecordMapper(mapping)
    generated = frozenset(r.element for r in mapping.records if r.generated)
    keys = KeyCounter(path, generated) if generated else None
    records = dict.fromkeys(mapping.record_elements, 0)
    rows = {t.name: 0 for t in mapping.tables}
    matched: dict[tuple[str, str], bool] = {(t.name, c.name): False
                                            for t in mapping.tables for c in t.columns}
    rejected: dict[tuple[str, str], Rejection] = {}
    counts: Counter[str] = Counter()
    stream = RecordStream(path, mapping.record_elements, mapping.dtd_dir)
    for line, elem in stream:
        key = keys.next(elem.tag) if keys is not None else None
        if counts[elem.tag] >= sample:
            if all(counts[e] >= sample for e in records):
                break
            continue
        counts[elem.tag] += 1
        records[elem.tag] += 1
        for table, found in naive_map(mapping, elem, key).items():
            t = mapping.table(table)
            for row in found:
                for c in t.columns:
                    if row.get(c.name) is not None:
                        matched[(table, c.name)] = True
        try:
            mapped = mapper.map(elem, key) if mapper.generated else mapper.map(elem)
        except RecordRejected as rej:
            group = rejected.get((rej.code, rej.reason))
            if group is None:
                rejected[(rej.code, rej.reason)] = Rejection(rej.code, rej.reason, 1, line,
                                                             rej.key)
            else:
                group.count += 1
            continue
        for t, table_rows in zip(mapping.tables, mapped, strict=True):
            rows[t.name] += len(table_rows)
    never = [f"{t.name}.{c.name} ({c.path})" for t in mapping.tables for c in t.columns
             if not matched[(t.name, c.name)]]
    return CheckReport(path, records, rows, never, sorted(rejected.values(),
                                                          key=lambda r: -r.count))
