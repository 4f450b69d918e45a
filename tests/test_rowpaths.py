"""Mapping paths mean what XPath says, and multi-step paths read every match.

A child table's ``rows = "a/b"`` is every ``<b>`` inside every ``<a>`` (XPath ``a/b``), and
a column's ``a/b`` is the first of those in document order (XPath ``(a/b)[1]``), whichever
``<a>`` holds it; predicates (``a[2]``, ``a[last()]``, ``a[@x='p']``), parent and ancestor
steps, ``text()`` and ``count()`` too. The compiled mapper (``map``, and ``extract`` →
``convert`` as the process pipeline cuts it) is compared with
:func:`migrator.rowmap.naive_map`, which asks lxml's XPath directly, on random nested
documents (records below enclosing elements, mixed content, comments) and random mappings;
and end to end on every backend with the shape that used to lose rows: countries →
provinces → cities.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import long_or
from hypothesis import HealthCheck, given, settings, strategies as st
from lxml import etree
from typer.testing import CliRunner

from bench.cli import app
from migrator import EngineConfig, expand_inputs, migrate, open_target, reconcile
from migrator.errors import MappingError
from migrator.mapping import Mapping, parse_mapping
from migrator.rowmap import RecordMapper, RecordRejected, naive_map, naive_rows

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})

# ---- the compiled mapper against XPath, on random documents and mappings -------------------

NAMES = ("a", "b", "c")  # few names: the same step matches often, at many depths
ATTRS = ("x", "y")
REQUIRED = st.integers(0, 7).map(lambda i: i == 7)  # mostly optional: rows, not rejections


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    text: str | None
    tail: str | None
    children: list[Node | str]  # str: a comment, which no path matches

    def build(self, parent: Any = None) -> Any:
        elem = etree.Element(self.tag) if parent is None else \
            etree.SubElement(parent, self.tag)
        for name, value in self.attrs.items():
            elem.set(name, value)
        elem.text = self.text
        elem.tail = self.tail
        for child in self.children:
            if isinstance(child, Node):
                child.build(elem)
            else:  # a comment, and text after it: more mixed content for text()
                comment = etree.Comment(child)
                comment.tail = "z"
                elem.append(comment)
        return elem


# One draw each (cheap to generate): attributes, and a text or tail.
ATTR_SETS = st.sampled_from([{}, {"x": "p"}, {"y": "q"}, {"x": ""}, {"x": "q", "y": "p"},
                             {"y": " "}, {"x": "r s", "y": ""}])
TEXTS = st.sampled_from([None, "", " ", "p", "q", "r s", "\n  "])


def _node(tag: st.SearchStrategy[str], children: st.SearchStrategy[list[Node | str]]
          ) -> st.SearchStrategy[Node]:
    return st.builds(Node, tag=tag, attrs=ATTR_SETS, text=TEXTS, tail=TEXTS, children=children)


def _flat(groups: list[list[Node | str]]) -> list[Node | str]:
    return [item for group in groups for item in group]


def siblings(depth: int) -> st.SearchStrategy[list[Node | str]]:
    """1–3 sibling elements of one name (each nested ``depth`` levels deep at most), or a
    comment: a step of a path then often matches several elements."""
    kids = st.just([]) if depth == 0 else st.lists(siblings(depth - 1), max_size=3).map(_flat)
    return st.one_of(st.just(["note"]),
                     *(st.lists(_node(st.just(tag), kids), min_size=1, max_size=3)
                       for tag in NAMES))


RECORDS = st.builds(Node, tag=st.just("r"), attrs=st.just({"k": "key"}),
                    text=TEXTS, tail=st.none(),
                    children=st.lists(siblings(3), min_size=1, max_size=4).map(_flat))
# The record sits two levels below the document's root, as in <w><w><r>: paths above it
# read the enclosing elements' attributes (ancestor::w/@x is the outermost one's, if it has
# one: XPath's document order).
WRAPPERS = st.tuples(ATTR_SETS, ATTR_SETS)
STEPS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
# Mostly none: a path with a predicate on every step rarely matches anything.
PREDICATES = st.sampled_from(["", "", "", "", "[1]", "[2]", "[last()]", "[@x='p']", "[@x]",
                              "[@y='q'][1]", "[@x='q'][last()]"])
ANCESTORS = (*NAMES, "r", "w")



def element_paths(node: Node, prefix: str = "", depth: int = 3) -> set[str]:
    """Every element path of 1..``depth`` steps that matches something below ``node``."""
    found: set[str] = set()
    for child in node.children:
        if isinstance(child, Node):
            path = prefix + child.tag
            found.add(path)
            if depth > 1:
                found |= element_paths(child, path + "/", depth - 1)
    return found


def lxml_paths(elem: Any, prefix: str = "", depth: int = 3) -> set[str]:
    """:func:`element_paths` of a built element."""
    found: set[str] = set()
    for child in elem.iterchildren(tag=etree.Element):
        path = prefix + child.tag
        found.add(path)
        if depth > 1:
            found |= lxml_paths(child, path + "/", depth - 1)
    return found


def descendants(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        if isinstance(child, Node):
            out.extend(descendants(child))
    return out


@dataclass
class Case:
    record: Node
    wrappers: tuple[dict[str, str], dict[str, str]]
    mapping: Mapping
    generated: int | None  # the key passed in, when the mapping generates it

    def element(self) -> Any:
        """The record element, serialized inside its enclosing elements and parsed again,
        as a record reaches the mapper from a file."""
        outer = etree.Element("w", self.wrappers[0])
        etree.SubElement(outer, "w", self.wrappers[1]).append(self.record.build())
        return etree.fromstring(etree.tostring(outer)).find("w/r")


OTHER_RECORD = """[[records]]
element = "other"
key = "@k"
[[records.tables]]
name = "o0"
key_column = "k"
[records.tables.columns]
v = "."
[[records.tables]]
name = "o1"
rows = "a"
position_column = "pos"
[records.tables.columns]
v = "."
"""


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A record ``<r k="key">`` and a mapping of it: a key (mostly ``@k``; or composite,
    or generated), a root table and 1–4 child tables, each below the root or an earlier
    child table, whose ``rows`` paths (relative to the parent's row element) have 1–3
    steps; a child table is identified by its position or by its own key. Element paths
    are drawn at random, or among those the record (or, below a child table, some element
    of it) holds, so that most of them match something, often several times; some steps
    get a predicate. Columns read texts, attributes, joined text nodes, counts, parents
    (as far up as the record's enclosing elements) and ancestors' attributes. Sometimes
    a second record type is mapped too (its tables get no rows from ``<r>``). Every column
    is ``text``, so a row holds the raw texts. Hypothesis draws 0 more often than other
    integers: 0 picks the common case below."""
    record = draw(RECORDS)
    built = record.build()
    from_record = sorted(element_paths(record))
    from_any = sorted(set().union(*(element_paths(n) for n in descendants(record))))

    def plain_steps(present: list[str]) -> str:
        deep = [path for path in present if "/" in path]
        choice = draw(st.integers(0, 3))
        if choice <= 1 and deep:  # what used to lose rows: matches in several branches
            return draw(st.sampled_from(deep))
        if choice <= 2 and present:
            return draw(st.sampled_from(present))
        return draw(STEPS)

    def steps(present: list[str]) -> str:
        return "/".join(step + draw(PREDICATES) for step in plain_steps(present).split("/"))

    def attr() -> str:
        return "@" + draw(st.sampled_from(ATTRS))

    def field(present: list[str], depth: int) -> str:
        """A value path from a context ``depth`` levels below the record element."""
        form = draw(st.sampled_from(["steps", "steps/@", ".", "@", "steps/text()", "text()",
                                     "count", "string", "up", "ancestor"]))
        if form in (".", "text()"):
            return form
        if form == "@":
            return attr()
        if form in ("count", "string"):
            return f"{form}({steps(present)})"
        if form == "ancestor":
            return f"ancestor::{draw(st.sampled_from(ANCESTORS))}/{attr()}"
        if form == "up":
            up = draw(st.integers(1, depth + 2))
            if up > depth:  # above the record: only the enclosing elements' attributes
                return "../" * up + attr()
            rest = draw(st.sampled_from(["", "/@x", "/a", "/b/@y", "/text()", "/c[1]"]))
            return "/".join([".."] * up) + rest
        path = steps(present)
        return path if form == "steps" else f"{path}/{form.split('/')[1].replace('@', attr())}"

    def columns(present: list[str], depth: int) -> str:
        if draw(st.booleans()):
            paths = [field(present, depth) for _ in range(draw(st.integers(1, 3)))]
        else:  # below one shared element path: a value found in one match of it must
            # survive the later matches visited for its neighbours' sake
            base = steps(present)
            paths = [base + draw(st.sampled_from(["", "/@x", "/@y", "/a", "/b/@x",
                                                  "/text()", "/a[last()]"]))
                     for _ in range(draw(st.integers(2, 3)))]
        return "".join(f'c{i} = {{ path = "{path}", type = "text", '
                       f'required = {str(draw(REQUIRED)).lower()} }}\n'
                       for i, path in enumerate(paths))

    key_form = draw(st.integers(0, 5))
    if key_form == 4:
        key, key_column = (f'["@k", "{field(from_record, 0)}"]', '["k", "k2"]')
    elif key_form == 5:
        key, key_column = "{ generated = true }", '"k"'
    else:
        key = f'"{field(from_record, 0)}"' if draw(st.integers(0, 4)) == 4 else '"@k"'
        key_column = '"k"'
    many = draw(st.integers(0, 3)) == 3
    prefix = "records.tables" if many else "tables"
    doc = (f'{"[[records]]" if many else "[record]"}\nelement = "r"\n'
           f"key = {key}\n"
           f'[[{prefix}]]\nname = "t0"\nkey_column = {key_column}\n[{prefix}.columns]\n'
           f'{columns(from_record, 0)}')
    depths = [0]
    items = [[built]]  # each table's row elements (the root's: the record)
    for n in range(1, draw(st.integers(1, 4)) + 1):
        # below the previous table half of the time: chains of 2-4 levels are common
        parent = n - 1 if draw(st.booleans()) else draw(st.integers(0, n - 1))
        below = sorted(set().union(set(), *(lxml_paths(e) for e in items[parent])))
        shallow = [path for path in below if "/" not in path]
        if parent and shallow and draw(st.booleans()):  # one step down: deep chains match
            rows = draw(st.sampled_from(shallow))
        else:
            rows = steps(below or from_any)
        items.append([x for e in items[parent] for x in naive_rows(e, rows)])
        depth = depths[parent] + rows.count("/") + 1
        depths.append(depth)
        own = (f'position_column = "p{n}"' if draw(st.integers(0, 3)) else
               f'key = {{ path = "{field(from_any, depth)}", type = "str(100)", '
               f'column = "o{n}" }}')
        doc += (f'[[{prefix}]]\nname = "t{n}"\nparent = "t{parent}"\nrows = "{rows}"\n'
                f'{own}\n[{prefix}.columns]\n{columns(from_any, depth)}')
    if many:
        doc = doc + OTHER_RECORD if draw(st.booleans()) else OTHER_RECORD + doc
    doc = "version = 2\n" + doc
    generated = draw(st.integers(0, 2**63 - 1)) if key_form == 5 else None
    return Case(record, draw(WRAPPERS), parse_mapping(doc), generated)


Rows_ = list[list[tuple[Any, ...]]]


def expected(mapping: Mapping, elem: Any, generated: int | None = None
             ) -> Rows_ | tuple[str, str, str | None]:
    """The rows ``naive_map`` implies, or the rejection (code, reason, key text) the mapper
    must raise: the key first, then each row as it is met (depth first: a row, then the
    rows of its child tables), its own key before its columns."""
    visits: list[tuple[Any, dict[str, Any]]] = []
    ref = naive_map(mapping, elem, generated, visits)
    record = mapping.record(elem.tag)
    root = record.root
    keys = [ref[root.name][0][column] for column in root.key_columns]
    key = str(generated) if generated is not None else keys[0] if len(keys) == 1 else \
        "/".join(k or "" for k in keys)
    for part, value in zip(record.key, keys, strict=False):  # (none when generated)
        if value is None or not value.strip():
            return "missing_required", f"record key ({part.path}): missing", key
    for table, raw in visits:
        checked = ([table.own_key] if table.own_key else []) + list(table.columns)
        for c in checked:
            value = raw[c.name]
            if c.required and (value is None or not value.strip()):
                return ("missing_required",
                        f"{table.name}.{c.name} ({c.path}): missing required value", key)
    return [[tuple(raw[name] for name in table.column_names) for raw in ref[table.name]]
            for table in mapping.tables]


def outcome(fn: Any, *args: Any) -> Rows_ | tuple[str, str, str | None]:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except RecordRejected as rej:
        return rej.code, rej.reason, rej.key


@settings(max_examples=long_or(150, 5000), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_compiled_mapper_equals_xpath_reference(case: Case) -> None:
    mapping = case.mapping
    elem = case.element()
    want = expected(mapping, elem, case.generated)
    mapper = RecordMapper(mapping)
    args = (elem,) if case.generated is None else (elem, case.generated)
    assert outcome(mapper.map, *args) == want, mapper.map.__doc__
    texts = pickle.loads(pickle.dumps(mapper.extract(*args)))
    assert outcome(mapper.convert, texts) == want, mapper.extract.__doc__


# ---- the cases that used to go wrong, spelled out -------------------------------------------

MULTI = parse_mapping("""
[record]
element = "r"
key = { path = "@id", type = "bigint" }
[[tables]]
name = "t"
key_column = "k"
[tables.columns]
deep = { path = "a/b", type = "text" }
deep_attr = { path = "a/b/@x", type = "text" }
[[tables]]
name = "two"
rows = "a/b"
key_column = "k"
position_column = "pos"
[tables.columns]
x = { path = "@x", type = "text" }
[[tables]]
name = "three"
rows = "a/b/c"
key_column = "k"
position_column = "pos"
[tables.columns]
v = { path = ".", type = "text" }
""")

DOC = """<r id="1">
  <a/>
  <a><b>first b</b><b x="1"><c>1</c><c>2</c></b></a>
  <z><b x="no"/></z>
  <a><b x="2"/><b x="3"><c>3</c></b></a>
</r>"""


def test_rows_path_walks_every_branch_and_value_path_takes_the_first_match() -> None:
    mapper = RecordMapper(MULTI)
    elem = etree.fromstring(DOC)
    root, two, three = mapper.map(elem)
    # the first <a> has no <b>: the value comes from the second, as XPath (a/b)[1] says
    assert root == [(1, "first b", "1")]
    assert two == [(1, 1, None), (1, 2, "1"), (1, 3, "2"), (1, 4, "3")]
    assert three == [(1, 1, "1"), (1, 2, "2"), (1, 3, "3")]
    assert len(two) == len(elem.xpath("a/b")) and len(three) == len(elem.xpath("a/b/c"))
    assert mapper.convert(mapper.extract(elem)) == [root, two, three]


FORMS_DOC = """
[record]
element = "country"
key = { path = "@car_code", type = "str(4)" }
[[tables]]
name = "countries"
key_column = "code"
[tables.columns]
latest = { path = "population[last()]", type = "bigint" }
latest_year = { path = "population[last()]/@year", type = "int" }
first = { path = "population[1]", type = "bigint" }
census_2011 = { path = "population[@year='2011']", type = "bigint" }
english = { path = "name[@lang='en']", type = "str(40)" }
any_lang = { path = "name[@lang]/@lang", type = "str(4)" }
note = { path = "note/text()", type = "text" }
note_first = { path = "note", type = "text" }
provinces = { path = "count(province)", type = "int" }
cities = { path = "count(province/city)", type = "int" }
continent = { path = "../@name", type = "str(20)" }
world = { path = "ancestor::world/@version", type = "str(10)" }
[[tables]]
name = "cities"
rows = "province/city[@capital='yes']"
key_column = "code"
position_column = "no"
[tables.columns]
name = { path = ".", type = "str(40)" }
province = { path = "../@name", type = "str(40)" }
country = { path = "../../@car_code", type = "str(4)" }
continent = { path = "../../../@name", type = "str(20)" }
siblings = { path = "count(../city)", type = "int" }
[[tables]]
name = "last_city"
rows = "province[last()]/city[last()]"
key_column = "code"
position_column = "no"
[tables.columns]
name = { path = "text()", type = "str(40)" }
"""
FORMS = parse_mapping(FORMS_DOC)

WORLD = """<world version="2.1"><continent name="Europe">
<country car_code="D">
  <name lang="de">Deutschland</name><name lang="en">Germany</name>
  <population year="1990">79</population><population year="2011">80</population>
  <population year="2023">84</population>
  <note>big <!-- c --> and <b>federal</b>, 16 states</note>
  <province name="Bayern"><city capital="yes">München</city><city>Nürnberg</city></province>
  <province name="Berlin"><city capital="yes">Berlin</city></province>
  <province name="Saarland"><city>Homburg</city><city capital="yes">Saarbrücken</city>
    <city>Neunkirchen</city></province>
</country></continent></world>"""


def test_predicates_ancestors_text_and_count() -> None:
    elem = etree.fromstring(WORLD).find("continent/country")
    mapper = RecordMapper(FORMS)
    countries, cities, last = mapper.map(elem)
    assert countries == [("D", 84, 2023, 79, 80, "Germany", "de",
                          "big  and , 16 states", "big ", 3, 6, "Europe", "2.1")]
    assert cities == [("D", 1, "München", "Bayern", "D", "Europe", 2),
                      ("D", 2, "Berlin", "Berlin", "D", "Europe", 1),
                      ("D", 3, "Saarbrücken", "Saarland", "D", "Europe", 3)]
    assert last == [("D", 1, "Neunkirchen")]
    assert mapper.convert(mapper.extract(elem)) == [countries, cities, last]
    # the XPath reference reads the same texts
    assert expected(FORMS, elem) == [[tuple(v if isinstance(v, int) and i == 1 and rows is not
                                            countries else str(v) for i, v in enumerate(row))
                                      for row in rows] for rows in (countries, cities, last)]


@pytest.mark.parametrize(("path", "where", "words"), [
    ("a//b", "position 2", "'//' (any depth) is not supported"),
    ("*/b", "position 1", "wildcards are not supported"),
    ("a/../b", "position 3", "'..' may only start a path"),
    ("a[2][@x]", "position 5", "must be the last predicate"),
    ("following-sibling::a", "position 1", "axes other than ancestor::"),
    ("concat(a)", "position 1", "the only functions are text()"),
    ("a[x=1]", "position 3", "predicates are [N], [last()], [@x='v'] or [@x]"),
    ("ancestor::issue/title", "position 17", "ancestor::NAME reads an attribute"),
])
def test_paths_outside_the_subset_are_refused_at_load(path: str, where: str,
                                                       words: str) -> None:
    doc = FORMS_DOC.replace('"population[last()]"', repr(path).replace("'", '"')
                            if "'" not in path else f"'{path}'")
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, source="m.toml")
    message = str(err.value)
    assert message.startswith("m.toml: tables[0].columns.latest.path: bad path"), message
    assert where in message and words in message
    assert "supported forms: a/b, @x, a/@x, ., text()" in message


@pytest.mark.parametrize(("path", "ok"), [
    ("../../../@name", True), ("../../../../@version", True), ("ancestor::world/@version", True),
    ("../../name", True), ("../../../name", False), ("count(../../..)", False),
    ("../../../text()", False),
])
def test_above_the_record_only_attributes_are_read(path: str, ok: bool) -> None:
    """A city's context is 2 levels below <country>: 3 ``..`` reach its <continent>, whose
    children may follow the record in the file (not read yet when it is mapped)."""
    doc = FORMS_DOC.replace('province = { path = "../@name"', f'province = {{ path = "{path}"')
    if ok:
        parse_mapping(doc)
        return
    with pytest.raises(MappingError, match=r"tables\[1\]\.columns\.province\.path: .* reads "
                       r"above the record element <country>, where only attributes"):
        parse_mapping(doc)


# ---- end to end: countries → provinces → cities on every backend ----------------------------

NESTED = """version = 1
[record]
element = "country"
key = { path = "@id", type = "bigint" }

[[tables]]
name = "nest_countries"
key_column = "country_id"
[tables.columns]
name = { path = "name", type = "str(40)", required = true }
first_city = { path = "province/city/name", type = "str(40)" }

[[tables]]
name = "nest_cities"
rows = "province/city"
key_column = "country_id"
position_column = "city_no"
[tables.columns]
name = { path = "name", type = "str(40)", required = true }
province = { path = "@province", type = "str(40)" }
population = { path = "population", type = "bigint" }
"""

COUNTRIES = 40

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]


@pytest.fixture(scope="module")
def countries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Countries with 1–6 provinces of 0–8 cities each; the first province of every odd
    country is empty, so its first city lies in a later province. Cities directly under a
    country are not in ``province/city``."""
    rng = random.Random(12)
    out = tmp_path_factory.mktemp("countries")
    parts = ["<countries>"]
    for c in range(1, COUNTRIES + 1):
        parts.append(f'<country id="{c}"><name>Country {c}</name>')
        parts.append('<city province="none"><name>Capital</name></city>')
        for p in range(rng.randint(1, 6)):
            parts.append(f"<province><name>P{c}.{p}</name>")
            for i in range(0 if p == 0 and c % 2 else rng.randint(0, 8)):
                parts.append(f'<city province="P{c}.{p}"><name>City {c}.{p}.{i}</name>'
                             f"<population>{rng.randint(1, 10**7)}</population></city>")
            parts.append("</province>")
        parts.append("</country>")
    parts.append("</countries>")
    (out / "countries.xml").write_text("\n".join(parts), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def mapping_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mapping") / "countries.toml"
    path.write_text(NESTED, encoding="utf-8")
    return path


def independent_cities(folder: Path) -> list[tuple[int, int, str]]:
    """(country, position, city name) for every city inside a province, read by XPath."""
    root = etree.parse(str(folder / "countries.xml")).getroot()
    out = []
    for country in root.xpath("country"):
        for pos, name in enumerate(country.xpath("province/city/name/text()"), start=1):
            out.append((int(country.get("id")), pos, str(name)))
    assert len(out) == len(root.xpath("country/province/city"))
    # the cities of the first province are a minority: reading only those loses most
    assert sum(len(c.xpath("province[1]/city")) for c in root.xpath("country")) < len(out) / 2
    return out


def target_spec(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'nested.db'}"
    server = request.getfixturevalue("postgres" if backend == "postgresql" else "mariadb")
    return "odbc:" + str(server.odbc())


def stored(spec: str) -> tuple[list[tuple[int, int, str]], dict[int, str | None]]:
    """The cities table, and each country's first_city, read back from the target."""
    conn = open_target(spec).connect()
    try:
        q, ref = conn.dialect.quote, conn.dialect.table_ref
        cities = conn.query(f"SELECT {q('country_id')}, {q('city_no')}, {q('name')} "
                            f"FROM {ref('nest_cities')}")
        firsts = conn.query(f"SELECT {q('country_id')}, {q('first_city')} "
                            f"FROM {ref('nest_countries')}")
    finally:
        conn.close()
    return (sorted((int(c), int(n), str(name)) for c, n, name in cities),
            {int(c): None if f is None else str(f) for c, f in firsts})


def check_target(spec: str, folder: Path) -> None:
    want = independent_cities(folder)
    cities, firsts = stored(spec)
    assert len(cities) == len(want)
    assert cities == sorted(want)
    first: dict[int, str | None] = dict.fromkeys(range(1, COUNTRIES + 1))
    first.update((c, name) for c, pos, name in want if pos == 1)
    assert firsts == first
    assert sum(name is not None for name in first.values()) > COUNTRIES // 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_run_stores_the_cities_of_every_province(
        backend: str, countries: Path, mapping_file: Path, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    spec = target_spec(backend, tmp_path, request)
    result = runner.invoke(app, ["run", "-i", str(countries), "-t", spec, "-m",
                                 str(mapping_file), "-b", "7", "--no-sample",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    want = independent_cities(countries)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == COUNTRIES
    assert doc["reconciliation"]["rows"]["nest_cities"] == len(want)
    check_target(spec, countries)


@pytest.mark.parametrize("backend", BACKENDS)
def test_process_pipeline_converting_in_the_inserter_stores_every_city(
        backend: str, countries: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The split pipeline: the reader only extracts texts, the inserter converts them."""
    spec = target_spec(backend, tmp_path, request)
    mapping = parse_mapping(NESTED)
    stats = migrate(expand_inputs([str(countries)]), open_target(spec), mapping,
                    EngineConfig(batch_size=7, pipeline="process", convert_side="inserter"))
    assert stats.converted_by_inserter == COUNTRIES
    rec = reconcile(open_target(spec), mapping)
    assert rec.ok, rec.problems
    assert rec.rows["nest_cities"] == len(independent_cities(countries))
    check_target(spec, countries)
