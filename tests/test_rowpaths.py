"""Multi-step mapping paths read every match, in document order.

A child table's ``rows = "a/b"`` is every ``<b>`` inside every ``<a>`` (XPath ``a/b``), and
a column's ``a/b`` is the first of those in document order (XPath ``(a/b)[1]``), whichever
``<a>`` holds it. The compiled mapper (``map``, and ``extract`` → ``convert`` as the process
pipeline cuts it) is compared with :func:`migrator.rowmap.naive_map`, which asks lxml's XPath
directly, on random nested documents and random mappings; and end to end on every backend
with the shape that used to lose rows: countries → provinces → cities.
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
from migrator.mapping import Mapping, parse_mapping
from migrator.rowmap import RecordMapper, RecordRejected, naive_map

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
            else:
                elem.append(etree.Comment(child))
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
STEPS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)



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


def descendants(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        if isinstance(child, Node):
            out.extend(descendants(child))
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[Node, Mapping]:
    """A record ``<r k="key">`` and a mapping of it: a key path (mostly ``@k``), a root
    table and 1–3 child tables whose ``rows`` paths have 1–3 steps. Element paths are
    drawn at random, or among those the record (or, for a child table's columns, some
    element of it) holds, so that most of them match something, often several times.
    Every column is ``text``, so a row holds the raw texts. Hypothesis draws 0 more
    often than other integers: 0 picks the common case below."""
    record = draw(RECORDS)
    from_record = sorted(element_paths(record))
    from_any = sorted(set().union(*(element_paths(n) for n in descendants(record))))

    def steps(present: list[str]) -> str:
        deep = [path for path in present if "/" in path]
        choice = draw(st.integers(0, 3))
        if choice <= 1 and deep:  # what used to lose rows: matches in several branches
            return draw(st.sampled_from(deep))
        if choice <= 2 and present:
            return draw(st.sampled_from(present))
        return draw(STEPS)

    def field(present: list[str]) -> str:
        form = draw(st.sampled_from(["steps", "steps/@", ".", "@"]))
        if form in (".", "@"):
            return "." if form == "." else "@" + draw(st.sampled_from(ATTRS))
        path = steps(present)
        return path if form == "steps" else f"{path}/@{draw(st.sampled_from(ATTRS))}"

    def columns(present: list[str]) -> str:
        if draw(st.booleans()):
            paths = [field(present) for _ in range(draw(st.integers(1, 3)))]
        else:  # below one shared element path: a value found in one match of it must
            # survive the later matches visited for its neighbours' sake
            base = steps(present)
            paths = [base + draw(st.sampled_from(["", "/@x", "/@y", "/a", "/b/@x"]))
                     for _ in range(draw(st.integers(2, 3)))]
        return "".join(f'c{i} = {{ path = "{path}", type = "text", '
                       f'required = {str(draw(REQUIRED)).lower()} }}\n'
                       for i, path in enumerate(paths))

    key = field(from_record) if draw(st.integers(0, 4)) == 4 else "@k"
    doc = (f'version = 1\n[record]\nelement = "r"\n'
           f'key = {{ path = "{key}", type = "str(100)" }}\n'
           f'[[tables]]\nname = "t0"\nkey_column = "k"\n[tables.columns]\n'
           f'{columns(from_record)}')
    for n in range(1, draw(st.integers(1, 3)) + 1):
        doc += (f'[[tables]]\nname = "t{n}"\nrows = "{steps(from_record)}"\n'
                f'key_column = "k"\nposition_column = "pos"\n[tables.columns]\n'
                f'{columns(from_any)}')
    return record, parse_mapping(doc)


def expected(mapping: Mapping, elem: Any) -> list[list[tuple[Any, ...]]] | tuple[str, str]:
    """The rows ``naive_map`` implies, or the rejection (code, reason) the mapper must raise:
    the key first, then the columns in mapping order, item by item."""
    ref = naive_map(mapping, elem)
    root = mapping.root
    key = ref[root.name][0][root.key_column]
    if key is None or not key.strip():
        return "missing_required", f"record key ({mapping.key_path}): missing"
    out: list[list[tuple[Any, ...]]] = []
    for table in mapping.tables:
        rows = []
        for pos, raw in enumerate(ref[table.name], start=1):
            for c in table.columns:
                value = raw[c.name]
                if c.required and (value is None or not value.strip()):
                    return ("missing_required",
                            f"{table.name}.{c.name} ({c.path}): missing required value")
            values = tuple(raw[c.name] for c in table.columns)
            rows.append((key, *values) if table.is_root else (key, pos, *values))
        out.append(rows)
    return out


def outcome(fn: Any, arg: Any) -> list[list[tuple[Any, ...]]] | tuple[str, str]:
    try:
        return fn(arg)  # type: ignore[no-any-return]
    except RecordRejected as rej:
        return rej.code, rej.reason


@settings(max_examples=long_or(150, 5000), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_compiled_mapper_equals_xpath_reference(case: tuple[Node, Mapping]) -> None:
    record, mapping = case
    # Serialized and parsed again, as a record reaches the mapper from a file.
    elem = etree.fromstring(etree.tostring(record.build()))
    want = expected(mapping, elem)
    mapper = RecordMapper(mapping)
    assert outcome(mapper.map, elem) == want, mapper.map.__doc__
    texts = pickle.loads(pickle.dumps(mapper.extract(elem)))
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
