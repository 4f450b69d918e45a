"""The declarative mapping: which XML element is a record and which tables it becomes.

A mapping is a TOML file::

    version = 1

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
    key_column = "order_id"                        # the parent record's key
    position_column = "line_no"                    # 1-based position within the record
    [tables.columns]
    quantity = { path = "quantity", type = "int", required = true }

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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from migrator.errors import MappingError
from migrator.paths import PathError, Step, ValuePath, parse_rows_path, parse_value_path

TYPE_FORMS = "int, bigint, decimal(p,s), str(n), text, date, datetime, bool"
_TYPE_RE = re.compile(
    r"^\s*(?P<kind>int|bigint|text|date|datetime|bool)\s*$"
    r"|^\s*decimal\s*\(\s*(?P<p>\d+)\s*,\s*(?P<s>\d+)\s*\)\s*$"
    r"|^\s*str\s*\(\s*(?P<n>\d+)\s*\)\s*$"
)
_NAME = r"[A-Za-z_][\w.\-]*"
# A column the tool adds to the root table: each record's position in the input, which
# decides which of two records with the same key is kept (see migrator.duplicates).
POSITION_COLUMN = "mb_position"


@dataclass(frozen=True)
class ColumnType:
    """A column type of the mapping language, independent of any database dialect."""

    kind: str  # int | bigint | decimal | str | text | date | datetime | bool
    length: int | None = None  # str(n)
    precision: int | None = None  # decimal(p,s)
    scale: int | None = None

    def __str__(self) -> str:
        if self.kind == "str":
            return f"str({self.length})"
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        return self.kind

    @classmethod
    def parse(cls, text: str) -> ColumnType:
        """Parse ``decimal(12,2)``, ``str(40)``, ``bigint`` …; raise ValueError with the forms."""
        m = _TYPE_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"unknown type {text!r}; use one of {TYPE_FORMS}")
        if m.group("kind"):
            return cls(m.group("kind"))
        if m.group("n") is not None:
            n = int(m.group("n"))
            if not 1 <= n <= 1_000_000:
                raise ValueError(f"str({n}): length must be 1..1000000 (use text for longer)")
            return cls("str", length=n)
        p, s = int(m.group("p")), int(m.group("s"))
        if not (1 <= p <= 38 and 0 <= s <= p):
            raise ValueError(f"decimal({p},{s}): need 1 <= p <= 38 and 0 <= s <= p")
        return cls("decimal", precision=p, scale=s)


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
class Table:
    name: str
    key_column: str
    columns: tuple[Column, ...]
    rows: str | None = None  # None: the root table (one row per record)
    position_column: str | None = None

    @property
    def is_root(self) -> bool:
        return self.rows is None

    @property
    def rows_steps(self) -> tuple[Step, ...]:
        """The parsed ``rows`` path (empty for the root table)."""
        return () if self.rows is None else parse_rows_path(self.rows)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column in insert order: the key, the position (child tables), the mapped ones."""
        names = [self.key_column]
        if self.position_column:
            names.append(self.position_column)
        names.extend(c.name for c in self.columns)
        return tuple(names)

    @property
    def primary_key(self) -> tuple[str, ...]:
        if self.position_column:
            return (self.key_column, self.position_column)
        return (self.key_column,)


@dataclass(frozen=True)
class Mapping:
    record_element: str
    key_path: str
    key_type: ColumnType
    tables: tuple[Table, ...]
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> Table:
        return self.tables[0]

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A stable hash of the mapping's meaning, stored with checkpoints for --resume."""
        blob = json.dumps(self.raw, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_mapping(path: str | Path) -> Mapping:
    """Load and validate a mapping TOML file; errors name the file, the key and the fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{p}: mapping file not found; pass an existing file to --mapping") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{p}: cannot read mapping: {exc}") from None
    return parse_mapping(text, source=str(p))


def default_mapping() -> Mapping:
    """The mapping shipped for the default ``orders`` profile of ``bench generate``."""
    res = resources.files("migrator").joinpath("mappings/orders.toml")
    return parse_mapping(res.read_text(encoding="utf-8"), source="<builtin orders mapping>")


def parse_mapping(text: str, source: str = "<memory>") -> Mapping:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{source}: not valid TOML: {exc}") from None
    return _Validator(source).mapping(doc)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.source}: {key}: {problem}")

    def mapping(self, doc: dict[str, Any]) -> Mapping:
        version = doc.get("version", 1)
        if version != 1:
            raise self.fail("version", f"unsupported mapping version {version!r}; use 1")
        unknown = set(doc) - {"version", "record", "tables"}
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key; expected version, record, tables")
        record = doc.get("record")
        if not isinstance(record, dict):
            raise self.fail("record", 'missing [record] table; add element = "..." and key = {...}')
        element = record.get("element")
        if not isinstance(element, str) or not re.fullmatch(_NAME, element):
            raise self.fail("record.element", "must be the record element's name, e.g. \"order\"")
        key = record.get("key")
        if not isinstance(key, dict):
            raise self.fail("record.key", 'must be a table like { path = "@id", type = "bigint" }')
        key_path = self.path(key.get("path"), "record.key.path", element)
        key_type = self.ctype(key.get("type", "str(100)"), "record.key.type")
        if key_type.kind in ("text", "bool"):
            raise self.fail("record.key.type", f"{key_type} cannot be a key; use bigint or str(n)")

        tables_doc = doc.get("tables")
        if not isinstance(tables_doc, list) or not tables_doc:
            raise self.fail("tables", "need at least one [[tables]] entry (the root table)")
        tables = tuple(self.table(t, i, element) for i, t in enumerate(tables_doc))
        if not tables[0].is_root:
            raise self.fail("tables[0].rows", "the first table is the root table: remove rows")
        for i, t in enumerate(tables[1:], start=1):
            if t.is_root:
                raise self.fail(f"tables[{i}].rows", "child tables need rows = \"path/of/element\"")
        names = [t.name.lower() for t in tables]
        for i, n in enumerate(names):
            if n in names[:i] or n.startswith("mb_"):
                raise self.fail(f"tables[{i}].name",
                                f"table name {tables[i].name!r} is duplicated or reserved (mb_*)")
        root = tables[0]
        for name in root.column_names:
            if name.lower() == POSITION_COLUMN:
                where = "key_column" if name == root.key_column else f"columns.{name}"
                raise self.fail(f"tables[0].{where}",
                                f"the column name {POSITION_COLUMN} is reserved (the tool "
                                f"keeps each record's input position there); rename it")
        return Mapping(element, key_path, key_type, tables, self.source, doc)

    def table(self, doc: Any, i: int, record: str) -> Table:
        where = f"tables[{i}]"
        if not isinstance(doc, dict):
            raise self.fail(where, "must be a table")
        unknown = set(doc) - {"name", "key_column", "rows", "position_column", "columns"}
        if unknown:
            raise self.fail(f"{where}.{sorted(unknown)[0]}", "unknown key; expected name, "
                            "key_column, rows, position_column, columns")
        name = self.ident(doc.get("name"), f"{where}.name")
        key_column = self.ident(doc.get("key_column"), f"{where}.key_column")
        rows = doc.get("rows")
        depth = 0  # how far below the record element the table's row elements are
        if rows is not None:
            try:
                depth = len(parse_rows_path(rows))
            except PathError as exc:
                raise self.fail(f"{where}.rows", str(exc)) from None
        position = doc.get("position_column")
        if position is not None:
            position = self.ident(position, f"{where}.position_column")
        if rows is None and position is not None:
            raise self.fail(f"{where}.position_column", "only child tables (with rows) have one")
        if rows is not None and position is None:
            raise self.fail(f"{where}.position_column",
                            "child tables need one, e.g. position_column = \"line_no\"")
        cols_doc = doc.get("columns")
        if not isinstance(cols_doc, dict) or not cols_doc:
            raise self.fail(f"{where}.columns", "need at least one column")
        columns = tuple(self.column(n, c, f"{where}.columns.{n}", record, depth)
                        for n, c in cols_doc.items())
        seen = {key_column.lower()} | ({position.lower()} if position else set())
        for c in columns:
            if c.name.lower() in seen:
                raise self.fail(f"{where}.columns.{c.name}", "duplicate column name")
            seen.add(c.name.lower())
        return Table(name, key_column, columns, rows, position)

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
            from migrator.coerce import coercer  # the same rules as XML values

            try:
                coercer(ctype)(default)
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
        "fingerprint": mapping.fingerprint(),
        "tables": {t.name: list(t.column_names) for t in mapping.tables},
    }
