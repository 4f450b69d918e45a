"""Compile a :class:`~migrator.mapping.Mapping` into a fast record → rows function.

Naive mapping calls ``findtext(path)`` once per column, re-walking the record each time
(measured here 5.7x slower than the reference). Instead every table's column paths are merged
into one trie, and one pass over the record's children fills all values; converters are
resolved once, at compile time, with the target's value adapters folded in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping as AnyMapping
from typing import Any

from migrator.coerce import Converter, InvalidValue, coercer
from migrator.mapping import Column, ColumnType, Mapping, Table

Adapter = Callable[[Any], Any]
Rows = list[tuple[Any, ...]]


class RecordRejected(Exception):
    """A record violates the mapping; it is quarantined with ``code`` and ``reason``."""

    def __init__(self, code: str, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.key = key


class _Node:
    """One element step of the path trie: what to read here, where to descend."""

    __slots__ = ("attrs", "children", "text_slots")

    def __init__(self) -> None:
        self.attrs: list[tuple[str, int]] = []
        self.text_slots: list[int] = []
        self.children: dict[str, _Node] = {}


def _build_trie(paths: list[str]) -> _Node:
    root = _Node()
    for slot, path in enumerate(paths):
        node = root
        if path == ".":
            node.text_slots.append(slot)
            continue
        steps = path.split("/")
        attr = steps.pop()[1:] if steps[-1].startswith("@") else None
        for step in steps:
            node = node.children.setdefault(step, _Node())
        if attr is None:
            node.text_slots.append(slot)
        else:
            node.attrs.append((attr, slot))
    return root


def _fill(elem: Any, node: _Node, vals: list[str | None]) -> None:
    for name, slot in node.attrs:
        vals[slot] = elem.get(name)
    if node.text_slots:
        text = elem.text or ""
        for slot in node.text_slots:
            vals[slot] = text
    children = node.children
    if children:
        seen: set[str] = set()
        for child in elem:
            tag = child.tag
            sub = children.get(tag)  # comments and PIs have a non-str tag: never found
            if sub is not None and tag not in seen:  # first match, like findtext
                seen.add(tag)
                _fill(child, sub, vals)


# converter, required, empty text counts as missing, default value, label for reasons
_ColumnPlan = tuple[Converter, bool, bool, Any, str]


def _plan(table: Table, column: Column, adapters: AnyMapping[str, Adapter]) -> _ColumnPlan:
    conv = _adapted(column.type, adapters)
    default = None if column.default is None else conv(column.default)
    # An empty element is "no value" for every type but optional strings, where "" is data.
    empty_is_missing = column.required or column.type.kind not in ("str", "text")
    label = f"{table.name}.{column.name} ({column.path})"
    return conv, column.required, empty_is_missing, default, label


def _adapted(ctype: ColumnType, adapters: AnyMapping[str, Adapter]) -> Converter:
    conv = coercer(ctype)
    adapt = adapters.get(ctype.kind)
    if adapt is None:
        return conv
    return lambda text: adapt(conv(text))


def _convert(plans: list[_ColumnPlan], vals: list[str | None], out: list[Any]) -> None:
    for (conv, required, empty_is_missing, default, label), raw in zip(plans, vals, strict=True):
        if raw is None or (empty_is_missing and not raw.strip()):
            if required:
                raise RecordRejected("missing_required", f"{label}: missing required value")
            out.append(default)
            continue
        try:
            out.append(conv(raw))
        except InvalidValue as exc:
            raise RecordRejected(exc.code, f"{label}: {exc}") from None


class _ChildPlan:
    __slots__ = ("container", "item_tag", "plans", "trie", "width")

    def __init__(self, table: Table, adapters: AnyMapping[str, Adapter]) -> None:
        assert table.rows is not None
        *container, self.item_tag = table.rows.split("/")
        self.container = container
        self.trie = _build_trie([c.path for c in table.columns])
        self.plans = [_plan(table, c, adapters) for c in table.columns]
        self.width = len(table.columns)


class RecordMapper:
    """Maps one record element to one row per table, or raises :class:`RecordRejected`.

    ``map(elem)`` returns a list with one list of row tuples per table, in mapping order; the
    root table's list always holds exactly one row. ``adapters`` (from the target dialect)
    turn canonical values into what the driver stores best, e.g. ``Decimal`` → ``str`` for
    SQLite, whose default Decimal adapter costs ~30% of insert time.
    """

    def __init__(self, mapping: Mapping, adapters: AnyMapping[str, Adapter] | None = None):
        adapters = adapters or {}
        self.mapping = mapping
        root = mapping.root
        self._root_trie = _build_trie([mapping.key_path] + [c.path for c in root.columns])
        self._root_width = 1 + len(root.columns)
        self._key_conv = _adapted(mapping.key_type, adapters)
        self._key_label = f"record key ({mapping.key_path})"
        self._root_plans = [_plan(root, c, adapters) for c in root.columns]
        self._children = [_ChildPlan(t, adapters) for t in mapping.tables[1:]]

    def key_text(self, elem: Any) -> str | None:
        vals: list[str | None] = [None] * self._root_width
        _fill(elem, self._root_trie, vals)
        return vals[0]

    def map(self, elem: Any) -> list[Rows]:
        vals: list[str | None] = [None] * self._root_width
        _fill(elem, self._root_trie, vals)
        raw_key = vals[0]
        try:
            if raw_key is None or not raw_key.strip():
                raise RecordRejected("missing_required", f"{self._key_label}: missing")
            try:
                key = self._key_conv(raw_key)
            except InvalidValue as exc:
                raise RecordRejected(exc.code, f"{self._key_label}: {exc}") from None
            row: list[Any] = [key]
            _convert(self._root_plans, vals[1:], row)
            out: list[Rows] = [[tuple(row)]]
            for child in self._children:
                out.append(self._child_rows(elem, child, key))
        except RecordRejected as exc:
            exc.key = raw_key
            raise
        return out

    @staticmethod
    def _child_rows(elem: Any, child: _ChildPlan, key: Any) -> Rows:
        container = elem
        for step in child.container:
            container = container.find(step)
            if container is None:
                return []
        rows: Rows = []
        for position, item in enumerate(container.iterchildren(child.item_tag), start=1):
            vals: list[str | None] = [None] * child.width
            _fill(item, child.trie, vals)
            row: list[Any] = [key, position]
            _convert(child.plans, vals, row)
            rows.append(tuple(row))
        return rows


def naive_map(mapping: Mapping, elem: Any) -> dict[str, list[dict[str, str | None]]]:
    """Reference extraction with one ``xpath`` per column: slow, obviously correct.

    Tests compare :class:`RecordMapper` against it; it returns raw texts, not converted values.
    """
    def get(e: Any, path: str) -> str | None:
        if path == ".":
            return e.text or ""
        if "@" in path:
            found = e.xpath(path)
            return str(found[0]) if found else None
        found = e.xpath(path)
        return (found[0].text or "") if found else None

    out: dict[str, list[dict[str, str | None]]] = {}
    root = mapping.root
    out[root.name] = [{root.key_column: get(elem, mapping.key_path),
                       **{c.name: get(elem, c.path) for c in root.columns}}]
    for t in mapping.tables[1:]:
        assert t.rows is not None
        out[t.name] = [{c.name: get(item, c.path) for c in t.columns}
                       for item in elem.xpath(t.rows)]
    return out
