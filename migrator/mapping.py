"""The declarative mapping: which XML elements are records and which tables they become.

A mapping is a TOML file::

    version = 2

    [record]
    element = "order"                              # one record per <order> element
    key = { path = "@id", type = "bigint" }        # identifies the record everywhere

    [[tables]]
    name = "orders"                                # the root table: one row per record
    key_column = "order_id"                        # receives the record key (primary key)
    [tables.columns]
    status = { path = "@status", type = "str(20)", required = true }
    email = { path = "customer/email", type = "str(120)" }

    [[tables]]
    name = "order_lines"                           # a child table: one row per <line>
    rows = "lines/line"                            # path of the repeated element
    position_column = "line_no"                    # 1-based position below the parent row
    [tables.columns]
    quantity = { path = "quantity", type = "int", required = true }

Keys: one value, several (``key = ["../@key", "@volume"]`` with a ``key_column`` list) or
``{ generated = true }`` (see :mod:`migrator.keys`). A child table's ``rows`` is relative to
its parent table's row element (``parent = "name"``, default the root table); its rows
carry the parent's primary key, and its own key is a position or a natural key unique
below the parent row (``key = { path = "@id", type = "int", column = "line_id" }``).
Several record types: ``[[records]]`` entries, each with ``element``, ``key`` and
``[[records.tables]]``. ``[input] dtd_dir`` names a trusted local DTD catalog;
``foreign_keys = false`` leaves out the child tables' foreign keys. Version 1 files (one
``[record]``) are version 2 files.

Paths are relative to the record element (or, for a child table's columns, to the repeated
element) and mean what XPath says (the subset is in :mod:`migrator.paths`). A column's
``a/b`` is the text of the first ``<b>`` inside any ``<a>`` in document order (XPath
``(a/b)[1]``: if the first ``<a>`` holds no ``<b>``, a later one's counts), ``a/@x`` is an
attribute, ``.`` is the element's own text. A child table's ``rows = "a/b"`` is every
``<b>`` inside every ``<a>``, in document order; positions count across all of them.
Types: ``int``, ``bigint``, ``decimal(p,s)``, ``str(n)``, ``text``, ``date``, ``datetime``,
``bool``.

This module only parses and validates; :mod:`migrator.rowmap` compiles a mapping into the
fast per-record mapper.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from migrator.coerce import coercer
from migrator.columntype import TYPE_FORMS, ColumnType
from migrator.errors import InputError, MappingError
from migrator.paths import PathError, Step, ValuePath, parse_rows_path, parse_value_path

_NAME = r"[A-Za-z_][\w.\-]*"
# A column the tool adds to the root table: each record's position in the input, which
# decides which of two records with the same key is kept (see migrator.duplicates).
POSITION_COLUMN = "mb_position"


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    type: ColumnType
    required: bool = False
    default: str | None = None  # raw text, coerced like an XML value when the path is absent

    @property
    def value_path(self) -> ValuePath:
        return parse_value_path(self.path)


@dataclass(frozen=True)
class KeyPart:
    """One value of a record's natural key: where it is and its type."""

    path: str
    type: ColumnType


GENERATED_KEY_TYPE = ColumnType("bigint")


@dataclass(frozen=True)
class Table:
    """A table of the mapping. The root table of a record has one row per record; a child
    table one row per element of ``rows`` (relative to its parent table's row element).

    ``key_columns`` carry the parent's primary key (for the root table: the record key),
    so a row's primary key is its parent's plus its own position (``position_column``) or
    natural key (``own_key``, unique within the parent row).
    """

    name: str
    key_columns: tuple[str, ...]
    key_types: tuple[ColumnType, ...]
    columns: tuple[Column, ...]
    rows: str | None = None  # None: the root table (one row per record)
    position_column: str | None = None
    own_key: Column | None = None  # a child table's natural key within its parent row
    parent: str | None = None  # the parent table (None: the root table)
    record: str = ""  # the record element

    @property
    def is_root(self) -> bool:
        return self.rows is None

    @property
    def key_column(self) -> str:
        """The first key column (the record key's, for a one-part key)."""
        return self.key_columns[0]

    @property
    def rows_steps(self) -> tuple[Step, ...]:
        """The parsed ``rows`` path (empty for the root table)."""
        return () if self.rows is None else parse_rows_path(self.rows)

    @property
    def own_columns(self) -> tuple[str, ...]:
        """The columns that identify a row within its parent row (none for the root)."""
        if self.position_column:
            return (self.position_column,)
        if self.own_key is not None:
            return (self.own_key.name,)
        return ()

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column in insert order: the key columns, the position or own key (child
        tables), the mapped ones."""
        return (*self.key_columns, *self.own_columns, *(c.name for c in self.columns))

    @property
    def primary_key(self) -> tuple[str, ...]:
        return (*self.key_columns, *self.own_columns)

    @property
    def primary_key_types(self) -> tuple[ColumnType, ...]:
        if self.position_column:
            return (*self.key_types, ColumnType("int"))
        if self.own_key is not None:
            return (*self.key_types, self.own_key.type)
        return self.key_types


@dataclass(frozen=True)
class Record:
    """A record element and its tables (the root table first, parents before children).

    ``key`` is the natural key, one or more values; empty when the key is generated from
    the record's position in its file (:mod:`migrator.keys`)."""

    element: str
    key: tuple[KeyPart, ...]
    tables: tuple[Table, ...]

    @property
    def generated(self) -> bool:
        return not self.key

    @property
    def key_types(self) -> tuple[ColumnType, ...]:
        return (GENERATED_KEY_TYPE,) if self.generated else tuple(k.type for k in self.key)

    @property
    def key_label(self) -> str:
        return "generated" if self.generated else ", ".join(k.path for k in self.key)

    @property
    def root(self) -> Table:
        return self.tables[0]

    def children(self, table: Table) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.parent == table.name)


@dataclass(frozen=True)
class Mapping:
    records: tuple[Record, ...]
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    foreign_keys: bool = True  # child tables reference their parent table's primary key
    dtd_dir: str | None = None  # a trusted local DTD catalog (see migrator.reader)

    @property
    def tables(self) -> tuple[Table, ...]:
        """Every table of every record, in mapping order (parents before children)."""
        return tuple(t for r in self.records for t in r.tables)

    @property
    def record_elements(self) -> tuple[str, ...]:
        return tuple(r.element for r in self.records)

    # The first record's facts: what a mapping with one record type is about.
    @property
    def record_element(self) -> str:
        return self.records[0].element

    @property
    def key_path(self) -> str:
        return self.records[0].key_label

    @property
    def key_type(self) -> ColumnType:
        return self.records[0].key_types[0]

    @property
    def root(self) -> Table:
        return self.records[0].root

    @property
    def roots(self) -> tuple[Table, ...]:
        return tuple(r.root for r in self.records)

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def record(self, element: str) -> Record:
        for r in self.records:
            if r.element == element:
                return r
        raise KeyError(element)

    def fingerprint(self) -> str:
        """A stable hash of the mapping's meaning, stored with checkpoints for --resume
        (a DTD catalog changes what is stored: its folder counts too)."""
        meaning: Any = self.raw if self.dtd_dir is None else \
            {"mapping": self.raw, "dtd_dir": self.dtd_dir}
        blob = json.dumps(meaning, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_dtd_dir(self, folder: str | None) -> Mapping:
        """The same mapping reading entities and default attributes from ``folder``."""
        return self if folder is None else replace(self, dtd_dir=folder)


def load_mapping(path: str | Path) -> Mapping:
    """Load and validate a mapping TOML file; errors name the file, the key and the fix.

    A relative ``[input].dtd_dir`` is taken relative to the mapping file's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{p}: mapping file not found; pass an existing file to --mapping") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{p}: cannot read mapping: {exc}") from None
    return parse_mapping(text, source=str(p), base=p.parent)


def default_mapping() -> Mapping:
    """The mapping shipped for the default ``orders`` profile of ``bench generate``."""
    res = resources.files("migrator").joinpath("mappings/orders.toml")
    return parse_mapping(res.read_text(encoding="utf-8"), source="<builtin orders mapping>")


def parse_mapping(text: str, source: str = "<memory>", base: Path | None = None) -> Mapping:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{source}: not valid TOML: {exc}") from None
    return _Validator(source, base).mapping(doc)


_KEY_FORMS = ('{ path = "@id", type = "bigint" }, "@id", ["@volume", "@number"] or '
              '{ generated = true }')


class _Validator:
    def __init__(self, source: str, base: Path | None = None) -> None:
        self.source = source
        self.base = base

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.source}: {key}: {problem}")

    def mapping(self, doc: dict[str, Any]) -> Mapping:
        version = doc.get("version", 1)
        if version not in (1, 2):
            raise self.fail("version", f"unsupported mapping version {version!r}; use 2 "
                            f"(or 1: a version 1 file is a version 2 file with one [record])")
        unknown = set(doc) - {"version", "record", "tables", "records", "input", "foreign_keys"}
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key; expected version, record and "
                            "tables (one record type), or records, and input, foreign_keys")
        foreign_keys = doc.get("foreign_keys", True)
        if not isinstance(foreign_keys, bool):
            raise self.fail("foreign_keys", "must be true or false")
        dtd_dir = self.input(doc.get("input"))
        if "records" in doc:
            if "record" in doc or "tables" in doc:
                raise self.fail("records", "give either [record] with [[tables]] (one record "
                                "type) or [[records]] with their [[records.tables]], not both")
            listed = doc["records"]
            if not isinstance(listed, list) or not listed:
                raise self.fail("records", "need at least one [[records]] entry")
            records = tuple(self.record(r, r.get("tables") if isinstance(r, dict) else None,
                                        f"records[{i}]", f"records[{i}].tables")
                            for i, r in enumerate(listed))
        else:
            record = doc.get("record")
            if not isinstance(record, dict):
                raise self.fail("record", 'missing [record] table; add element = "..." and '
                                "key = {...} (or [[records]] for several record types)")
            records = (self.record(record, doc.get("tables"), "record", "tables"),)
        self.check_names(records, doc)
        return Mapping(records, self.source, doc, foreign_keys, dtd_dir)

    def input(self, doc: Any) -> str | None:
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise self.fail("input", 'must be a table like [input] dtd_dir = "dtd"')
        unknown = set(doc) - {"dtd_dir"}
        if unknown:
            raise self.fail(f"input.{sorted(unknown)[0]}", "unknown key; expected dtd_dir")
        value = doc.get("dtd_dir")
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail("input.dtd_dir", "must be a folder name")
        folder = Path(value)
        if not folder.is_absolute() and self.base is not None:
            folder = self.base / folder
        from migrator.reader import check_dtd_dir  # (the reader uses it too)

        try:
            return check_dtd_dir(str(folder), "input.dtd_dir")
        except InputError as exc:
            raise self.fail("input.dtd_dir", str(exc).removeprefix("input.dtd_dir ")) \
                from None

    def record(self, record: Any, tables_doc: Any, where: str, tables_where: str) -> Record:
        if not isinstance(record, dict):
            raise self.fail(where, "must be a table")
        allowed = {"element", "key"} | ({"tables"} if where.startswith("records[") else set())
        unknown = set(record) - allowed
        if unknown:
            raise self.fail(f"{where}.{sorted(unknown)[0]}",
                            f"unknown key; expected {', '.join(sorted(allowed))}")
        element = record.get("element")
        if not isinstance(element, str) or not re.fullmatch(_NAME, element):
            raise self.fail(f"{where}.element", "must be the record element's name, e.g. "
                            "\"order\"")
        key = self.record_key(record.get("key"), f"{where}.key", element)
        if not isinstance(tables_doc, list) or not tables_doc:
            raise self.fail(tables_where, "need at least one table: the first is the root "
                            "table, one row per record")
        tables: list[Table] = []
        for i, t in enumerate(tables_doc):
            tables.append(self.table(t, f"{tables_where}[{i}]", element, key, tables))
        return Record(element, key, tuple(tables))

    def record_key(self, value: Any, where: str, element: str) -> tuple[KeyPart, ...]:
        if isinstance(value, dict) and "generated" in value:
            if value != {"generated": True}:
                raise self.fail(where, "a generated key is written { generated = true } "
                                "(a bigint derived from the file and the record's position)")
            return ()
        if isinstance(value, str):
            value = {"path": value}
        if isinstance(value, dict):
            parts = [value]
        elif isinstance(value, list) and value:
            parts = [{"path": v} if isinstance(v, str) else v for v in value]
        else:
            raise self.fail(where, f"must be {_KEY_FORMS}")
        out = []
        for i, part in enumerate(parts):
            at = where if len(parts) == 1 and not isinstance(value, list) else f"{where}[{i}]"
            if not isinstance(part, dict):
                raise self.fail(at, f"must be {_KEY_FORMS}")
            unknown = set(part) - {"path", "type"}
            if unknown:
                raise self.fail(f"{at}.{sorted(unknown)[0]}", "unknown key; expected path, type")
            path = self.path(part.get("path"), f"{at}.path", element)
            ctype = self.ctype(part.get("type", "str(100)"), f"{at}.type")
            if ctype.kind in ("text", "bool"):
                raise self.fail(f"{at}.type", f"{ctype} cannot be a key; use bigint or str(n)")
            out.append(KeyPart(path, ctype))
        return tuple(out)

    def table(self, doc: Any, where: str, record: str, key: tuple[KeyPart, ...],
              earlier: list[Table]) -> Table:
        if not isinstance(doc, dict):
            raise self.fail(where, "must be a table")
        unknown = set(doc) - {"name", "key_column", "rows", "position_column", "columns",
                              "parent", "key"}
        if unknown:
            raise self.fail(f"{where}.{sorted(unknown)[0]}", "unknown key; expected name, "
                            "key_column, rows, parent, position_column, key, columns")
        name = self.ident(doc.get("name"), f"{where}.name")
        root = not earlier
        rows = doc.get("rows")
        if root:
            for k in ("rows", "parent", "position_column", "key"):
                if k in doc:
                    raise self.fail(f"{where}.{k}", "the first table is the root table (one "
                                    f"row per record): remove {k}")
        elif rows is None:
            raise self.fail(f"{where}.rows", "child tables need rows = \"path/of/element\"")
        if root:
            types = tuple(k.type for k in key) or (GENERATED_KEY_TYPE,)
            names = self.key_names(doc.get("key_column"), f"{where}.key_column", len(types))
            if names is None:
                raise self.fail(f"{where}.key_column", "the root table names its key "
                                "column(s): key_column = \"order_id\" (a list for a "
                                "composite key)")
            depth = 0
            parent = None
        else:
            parent = self.parent(doc.get("parent"), f"{where}.parent", earlier)
            inherited = parent.primary_key
            types = parent.primary_key_types
            n = len(earlier[0].key_columns)  # the record key's columns come first
            names_given = self.key_names(doc.get("key_column"), f"{where}.key_column", n)
            names = (*names_given, *inherited[n:]) if names_given else inherited
            depth = self.depth(parent, earlier)
            try:
                depth += len(parse_rows_path(rows))
            except PathError as exc:
                raise self.fail(f"{where}.rows", str(exc)) from None
        position = doc.get("position_column")
        own_key = None
        if position is not None:
            position = self.ident(position, f"{where}.position_column")
            if "key" in doc:
                raise self.fail(f"{where}.key", "a child table has a position_column or its "
                                "own key, not both")
        elif not root:
            if "key" not in doc:
                raise self.fail(f"{where}.position_column", "child tables need one, e.g. "
                                "position_column = \"line_no\" (or their own key = { path = "
                                "\"@id\", type = \"int\", column = \"line_id\" })")
            own_key = self.own_key(doc["key"], f"{where}.key", record, depth)
        cols_doc = doc.get("columns")
        if not isinstance(cols_doc, dict) or not cols_doc:
            raise self.fail(f"{where}.columns", "need at least one column")
        columns = tuple(self.column(n, c, f"{where}.columns.{n}", record, depth)
                        for n, c in cols_doc.items())
        table = Table(name, tuple(names), types, columns, rows, position, own_key,
                      None if parent is None else parent.name, record)
        if root:
            for col in table.column_names:
                if col.lower() == POSITION_COLUMN:
                    at = f"{where}.key_column" if col in names else f"{where}.columns.{col}"
                    raise self.fail(at, f"the column name {POSITION_COLUMN} is reserved (the "
                                    f"tool keeps each record's input position there); rename it")
        seen: dict[str, str] = {}
        n_keys, n_own = len(names), len(table.own_columns)
        for i, col in enumerate(table.column_names):
            if i < n_keys:
                what = "a key column" + ("" if root else " carried from the parent table")
                at = f"{where}.key_column" if "key_column" in doc else where
            elif i < n_keys + n_own:
                what = "the position column" if position else "its own key column"
                at = f"{where}.position_column" if position else f"{where}.key.column"
            else:
                what, at = "a column", f"{where}.columns.{col}"
            if col.lower() in seen:
                hint = "" if root else " (key_column renames the record key's columns here)"
                raise self.fail(at, f"duplicate column name {col!r}: {seen[col.lower()]} of "
                                f"this table has it too; rename one{hint}")
            seen[col.lower()] = what
        return table

    def key_names(self, value: Any, where: str, n: int) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or len(names) != n:
            raise self.fail(where, f"the record key has {n} part(s): give "
                            + ("one name, e.g. \"order_id\"" if n == 1 else
                               f"a list of {n} names, e.g. [\"volume\", \"number\"]"))
        return tuple(self.ident(v, where) for v in names)

    def parent(self, value: Any, where: str, earlier: list[Table]) -> Table:
        if value is None:
            return earlier[0]
        for t in earlier:
            if t.name == value:
                return t
        raise self.fail(where, f"no table {value!r} before this one; name the root table or "
                        f"an earlier child table of the same record")

    def depth(self, table: Table, earlier: list[Table]) -> int:
        """How far below the record element ``table``'s row elements are."""
        if table.parent is None:
            return 0
        parent = next(t for t in earlier if t.name == table.parent)
        return self.depth(parent, earlier) + len(table.rows_steps)

    def own_key(self, value: Any, where: str, record: str, depth: int) -> Column:
        if not isinstance(value, dict) or set(value) - {"path", "type", "column"} or \
                "column" not in value:
            raise self.fail(where, "a child table's own key is { path = \"@id\", type = "
                            "\"int\", column = \"city_id\" } (unique within its parent row)")
        column = self.ident(value["column"], f"{where}.column")
        path = self.path(value.get("path"), f"{where}.path", record, depth)
        ctype = self.ctype(value.get("type", "str(100)"), f"{where}.type")
        if ctype.kind in ("text", "bool"):
            raise self.fail(f"{where}.type", f"{ctype} cannot be a key; use bigint or str(n)")
        return Column(column, path, ctype, required=True)

    def check_names(self, records: tuple[Record, ...], doc: dict[str, Any]) -> None:
        elements = [r.element for r in records]
        for i, e in enumerate(elements):
            if e in elements[:i]:
                raise self.fail(f"records[{i}].element", f"record element {e!r} is mapped "
                                "twice; map its tables under one [[records]] entry")
        names: list[str] = []
        where = [(f"records[{i}].tables[{j}]" if "records" in doc else f"tables[{j}]")
                 for i, r in enumerate(records) for j in range(len(r.tables))]
        for r in records:
            names.extend(t.name.lower() for t in r.tables)
        for i, n in enumerate(names):
            if n in names[:i] or n.startswith("mb_"):
                raise self.fail(f"{where[i]}.name",
                                f"table name {n!r} is duplicated or reserved (mb_*)")

    def column(self, name: str, doc: Any, where: str, record: str, depth: int) -> Column:
        self.ident(name, where)
        if isinstance(doc, str):  # shorthand: column = "path"
            doc = {"path": doc, "type": "text"}
        if not isinstance(doc, dict):
            raise self.fail(where, 'must be { path = "...", type = "..." }')
        unknown = set(doc) - {"path", "type", "required", "default"}
        if unknown:
            raise self.fail(f"{where}.{sorted(unknown)[0]}",
                            "unknown key; expected path, type, required, default")
        path = self.path(doc.get("path"), f"{where}.path", record, depth)
        ctype = self.ctype(doc.get("type"), f"{where}.type")
        required = doc.get("required", False)
        if not isinstance(required, bool):
            raise self.fail(f"{where}.required", "must be true or false")
        default = doc.get("default")
        if default is not None:
            if isinstance(default, bool):
                default = "true" if default else "false"
            elif isinstance(default, int | float):
                default = str(default)
            elif not isinstance(default, str):
                raise self.fail(f"{where}.default", "must be a string, number or boolean")
            try:
                coercer(ctype)(default)  # the same rules as XML values
            except ValueError as exc:
                raise self.fail(f"{where}.default", f"{exc}; give a valid {ctype} value") \
                    from None
        return Column(name, path, ctype, required, default)

    def ident(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "must be a non-empty name")
        if "\x00" in value or len(value) > 63:
            raise self.fail(where, "names must be at most 63 characters, without NUL")
        return value

    def path(self, value: Any, where: str, record: str, depth: int = 0) -> str:
        """A value path, parsed; ``depth``: its context's levels below the record element.

        Above the record element only attributes can be read: the file is streamed, so what
        follows the record in an enclosing element is not read yet when it is mapped.
        """
        try:
            parsed = parse_value_path(value)
        except PathError as exc:
            raise self.fail(where, str(exc)) from None
        if parsed.up > depth and (parsed.leaf != "attr" or parsed.steps):
            raise self.fail(where, f"{parsed.text!r} reads above the record element "
                            f"<{record}>, where only attributes of the enclosing elements "
                            f"can be read (the file is streamed): use "
                            f"{'../' * parsed.up}@attr or ancestor::NAME/@attr")
        return parsed.text

    def ctype(self, value: Any, where: str) -> ColumnType:
        if value is None:
            raise self.fail(where, f"missing type; use one of {TYPE_FORMS}")
        try:
            return ColumnType.parse(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None


def describe(mapping: Mapping) -> AnyMapping[str, Any]:
    """A JSON-ready summary of the mapping for result files."""
    return {
        "source": mapping.source,
        "record_element": mapping.record_element,
        "record_elements": list(mapping.record_elements),
        "fingerprint": mapping.fingerprint(),
        "tables": {t.name: list(t.column_names) for t in mapping.tables},
    }
