"""The mapping language on real-shaped files: nested tables, ancestor values, composite and
generated keys, several record types — end to end on SQLite, PostgreSQL and MariaDB.

Each fixture under tests/data/mapping/ is read a second time, independently, with plain
lxml calls (``find``/``findall``, no mapping code): what the target holds must be exactly
that, table by table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from typer.testing import CliRunner

from bench.cli import app
from migrator import EngineConfig, ParallelCoordinator, expand_inputs, open_target, reconcile
from migrator.errors import MappingError
from migrator.mapping import ColumnType, Mapping, load_mapping, parse_mapping
from migrator.targets.base import Connection

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
DATA = Path(__file__).parent / "data" / "mapping"

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]

Row = tuple[Any, ...]


def target_spec(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                name: str = "m.db") -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / name}"
    server = request.getfixturevalue("postgres" if backend == "postgresql" else "mariadb")
    return "odbc:" + str(server.odbc())


def canonical(value: Any, ctype: ColumnType) -> Any:
    """A value read back from any backend, as the mapping's type means it."""
    if value is None:
        return None
    kind = ctype.kind
    if kind in ("int", "bigint"):
        return int(value)
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    return str(value)


def stored(spec: str, mapping: Mapping) -> dict[str, list[Row]]:
    """Every table of the mapping, read back, canonical and sorted by primary key."""
    conn = open_target(spec).connect()
    try:
        q, ref = conn.dialect.quote, conn.dialect.table_ref
        out = {}
        for t in mapping.tables:
            types = [*t.primary_key_types, *(c.type for c in t.columns)]
            rows = conn.query(f"SELECT {', '.join(q(c) for c in t.column_names)} "
                              f"FROM {ref(t.name)}")
            out[t.name] = sorted(tuple(canonical(v, ty) for v, ty in zip(r, types, strict=True))
                                 for r in rows)
    finally:
        conn.close()
    return out


def foreign_keys(conn: Connection, table: str) -> list[tuple[str, str]]:
    """(referencing column, referenced table) of each foreign key of ``table``."""
    d = conn.dialect
    name = d.table_name(table)
    if d.name == "sqlite":
        return sorted((str(r[3]), str(r[2])) for r in
                      conn.query(f"PRAGMA foreign_key_list({d.quote(name)})"))
    schema = "DATABASE()" if d.name == "mysql" else "current_schema()"
    if d.schema is not None:
        schema = d.placeholder
    sql = ("SELECT k.column_name, k.referenced_table_name FROM "
           "information_schema.key_column_usage k WHERE k.referenced_table_name IS NOT NULL "
           f"AND k.table_name = {d.placeholder} AND k.table_schema = {schema}"
           if d.name == "mysql" else
           "SELECT k.column_name, u.table_name FROM information_schema.referential_constraints r "
           "JOIN information_schema.key_column_usage k ON k.constraint_name = r.constraint_name "
           "AND k.constraint_schema = r.constraint_schema "
           "JOIN information_schema.key_column_usage u "
           "ON u.constraint_name = r.unique_constraint_name "
           "AND u.constraint_schema = r.unique_constraint_schema "
           "AND u.ordinal_position = k.position_in_unique_constraint "
           f"WHERE k.table_name = {d.placeholder} AND k.table_schema = {schema}")
    params = (name,) if d.schema is None else (name, d.schema)
    return sorted((str(a), str(b)) for a, b in conn.query(sql, params))


def run_cli(spec: str, inputs: Path, mapping: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = runner.invoke(app, ["run", "-i", str(inputs), "-t", spec, "-m", str(mapping),
                                 "-b", "2", "--no-sample", "--out", str(out), "--json",
                                 *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# ---- mondial.xml: three record types, three levels of nesting, records two levels down ----

def independent_mondial(path: Path) -> dict[str, list[Row]]:
    """What mondial.toml should store, read with plain lxml calls."""
    root = etree.parse(str(path)).getroot()
    version = root.get("version")
    out: dict[str, list[Row]] = {k: [] for k in (
        "geo_countries", "geo_provinces", "geo_cities", "geo_city_years",
        "geo_organizations", "geo_rivers")}

    def last_int(elems: list[Any], attr: str | None = None) -> int | None:
        if not elems:
            return None
        return int(elems[-1].get(attr) if attr else elems[-1].text)

    for group in root.findall("countries"):
        for c in group.findall("country"):
            code = c.get("car_code")
            names = c.findall("name")
            english = [n.text for n in names if n.get("lang") == "en"]
            pops = c.findall("population")
            census = [p for p in pops if p.get("measured") == "census"]
            out["geo_countries"].append((
                code, english[0] if english else None, names[0].text,
                Decimal(c.get("area")).quantize(Decimal("0.01")), last_int(pops),
                last_int(census, "year"), len(c.findall("province")), group.get("region"),
                version))
            for prov in c.findall("province"):
                pid = prov.get("id")
                area = prov.find("area")
                out["geo_provinces"].append((code, pid, prov.find("name").text,
                                             None if area is None else int(area.text),
                                             len(prov.findall("city"))))
                for no, city in enumerate(prov.findall("city"), start=1):
                    cpops = city.findall("population")
                    out["geo_cities"].append((
                        code, pid, no, city.get("id"), city.find("name").text,
                        last_int(cpops), last_int(cpops, "year"), prov.get("capital"), code))
                    for yno, p in enumerate(cpops, start=1):
                        out["geo_city_years"].append((code, pid, no, yno, int(p.get("year")),
                                                      int(p.text)))
    for o in root.iter("organization"):
        members = [m.get("country") for m in o.findall("members") if m.get("type") == "member"]
        out["geo_organizations"].append((
            o.get("id"), o.find("abbrev").text, o.find("name").text,
            dt.date.fromisoformat(o.get("established")), members[0] if members else None))
    for n, r in enumerate(root.iter("river"), start=1):
        elevation = r.find("source/elevation")
        to = r.find("to")
        out["geo_rivers"].append((
            river_key(path, n), r.find("name").text, int(r.find("length").text),
            None if elevation is None else int(elevation.text),
            None if to is None else to.get("water")))
    return {k: sorted(v) for k, v in out.items()}


def river_key(path: Path, ordinal: int, element: str = "river") -> int:
    """The documented generated key: BLAKE2b-64 of path, element and ordinal, >> 1."""
    blob = f"{path.resolve()}\x00{element}\x00{ordinal}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_mondial_three_record_types_nested_three_levels(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = target_spec(backend, tmp_path, request)
    doc = run_cli(spec, DATA / "mondial.xml", DATA / "mondial.toml", tmp_path / "r")
    mapping = load_mapping(DATA / "mondial.toml")
    want = independent_mondial(DATA / "mondial.xml")
    assert stored(spec, mapping) == want
    # every record type counted on its own, read back from the target too
    assert doc["records"] == {"country": {"read": 5, "inserted": 5, "quarantined": 0},
                              "organization": {"read": 3, "inserted": 3, "quarantined": 0},
                              "river": {"read": 4, "inserted": 4, "quarantined": 0}}
    rec = doc["reconciliation"]
    assert rec["ok"] and rec["records"] == {
        "country": {"inserted": 5, "quarantined": 0},
        "organization": {"inserted": 3, "quarantined": 0},
        "river": {"inserted": 4, "quarantined": 0}}
    assert doc["tables"] == {k: len(v) for k, v in want.items()}
    conn = open_target(spec).connect()
    try:
        prefix = conn.dialect.table_name("")
        fks = {t: foreign_keys(conn, t) for t in ("geo_provinces", "geo_cities",
                                                  "geo_city_years", "geo_countries")}
    finally:
        conn.close()
    assert fks == {
        "geo_countries": [],
        "geo_provinces": [("code", prefix + "geo_countries")],
        "geo_cities": [("code", prefix + "geo_provinces"),
                       ("province_id", prefix + "geo_provinces")],
        "geo_city_years": [("city_no", prefix + "geo_cities"), ("code", prefix + "geo_cities"),
                           ("province_id", prefix + "geo_cities")]}


def test_a_child_row_without_its_parent_is_refused_by_the_foreign_key(tmp_path: Path) -> None:
    """The foreign keys are real: PRAGMA foreign_keys on, an orphan row is refused."""
    spec = f"sqlite:{tmp_path / 'fk.db'}"
    run_cli(spec, DATA / "mondial.xml", DATA / "mondial.toml", tmp_path / "r")
    con = sqlite3.connect(tmp_path / "fk.db")
    con.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        con.execute("INSERT INTO geo_cities (code, province_id, city_no, city_id, name) "
                    "VALUES ('D', 'prov-D-XX', 1, 'x', 'Nowhere')")
    con.close()


# ---- keys ------------------------------------------------------------------------------------

RIVERS = """version = 2
[record]
element = "river"
key = { generated = true }
[[tables]]
name = "gk_rivers"
key_column = "river_id"
[tables.columns]
name = { path = "name", type = "str(20)", required = true }
[[tables]]
name = "gk_tributaries"
rows = "tributary"
position_column = "no"
[tables.columns]
name = { path = ".", type = "str(20)", required = true }
"""


@pytest.fixture(scope="module")
def rivers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,400 rivers without ids, only 8 distinct names (content cannot tell them apart),
    two files, 0-2 tributaries each; the rivers of a file are grouped in basins (records two
    levels below the root: the byte ranges reopen the basin around their first river)."""
    folder = tmp_path_factory.mktemp("rivers")
    for f in range(2):
        parts = ["<rivers>"]
        for i in range(1200):
            if i % 100 == 0:
                parts.append(("</basin>" if i else "") + f'<basin id="b{i // 100}">')
            parts.append(f"<river><name>R{i % 8}</name>"
                         + "".join(f"<tributary>T{j}</tributary>" for j in range(i % 3))
                         + "</river>")
        parts.append("</basin></rivers>")
        (folder / f"rivers-{f}.xml").write_text("\n".join(parts), encoding="utf-8")
    return folder


def independent_rivers(folder: Path) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {"gk_rivers": [], "gk_tributaries": []}
    for path in sorted(folder.glob("*.xml")):
        for n, r in enumerate(etree.parse(str(path)).getroot().iter("river"), start=1):
            key = river_key(path, n)
            out["gk_rivers"].append((key, r.find("name").text))
            out["gk_tributaries"].extend((key, no, t.text)
                                         for no, t in enumerate(r.findall("tributary"), 1))
    return {k: sorted(v) for k, v in out.items()}


def test_generated_keys_are_the_same_for_any_workers_pipeline_and_resume(
        rivers: Path, tmp_path: Path) -> None:
    mapping = parse_mapping(RIVERS)
    want = independent_rivers(rivers)
    assert len(want["gk_rivers"]) == len({r[0] for r in want["gk_rivers"]}) == 2400

    def migrate(db: str, workers: int, pipeline: str, resume: bool = False,
                stop_after: int | None = None) -> None:
        seen: list[int] = []

        def progress(records: int, position: int) -> None:
            if stop_after is not None and records >= stop_after and not seen:
                seen.append(records)
                raise KeyboardInterrupt

        coordinator = ParallelCoordinator(
            open_target(f"sqlite:{tmp_path / db}"), mapping,
            EngineConfig(batch_size=50, pipeline=pipeline), workers=workers,
            partitions_per_worker=3, on_progress=progress if stop_after else None)
        coordinator.run(expand_inputs([str(rivers)]), resume=resume)

    migrate("one.db", 1, "off")
    assert stored(f"sqlite:{tmp_path / 'one.db'}", mapping) == want
    migrate("two.db", 2, "process")  # byte ranges: a range counts the records before it
    con = sqlite3.connect(tmp_path / "two.db")
    units = [r[0] for r in con.execute("SELECT unit FROM mb_checkpoint")]
    con.close()
    assert sum("#" in u for u in units) >= 4, units
    assert stored(f"sqlite:{tmp_path / 'two.db'}", mapping) == want
    with pytest.raises(KeyboardInterrupt):
        migrate("resumed.db", 3, "thread", stop_after=200)
    partial = reconcile(open_target(f"sqlite:{tmp_path / 'resumed.db'}"), mapping)
    assert partial.ok and 0 < partial.records_read < 2400
    migrate("resumed.db", 1, "process", resume=True)
    assert stored(f"sqlite:{tmp_path / 'resumed.db'}", mapping) == want


COMPOSITE = """version = 2
[record]
element = "issue"
key = ["../@key", { path = "@volume", type = "int" }, { path = "@number", type = "int" }]
[[tables]]
name = "ck_issues"
key_column = ["journal", "volume", "number"]
[tables.columns]
year = { path = "@year", type = "int", required = true }
[[tables]]
name = "ck_articles"
rows = "article"
position_column = "no"
[tables.columns]
title = { path = "title", type = "str(40)", required = true }
[[tables]]
name = "ck_authors"
parent = "ck_articles"
rows = "author"
key = { path = "@id", type = "int", column = "author_id" }
[tables.columns]
name = { path = ".", type = "str(40)", required = true }
"""

ISSUES = """<dblp><journal key="j1">
<issue volume="1" number="1" year="2020"><article><title>A</title>
  <author id="7">Ann</author><author id="8">Bob</author></article>
  <article><title>A</title><author id="7">Ann</author></article></issue>
<issue volume="1" number="2" year="x"><article><title>B</title></article></issue>
<issue volume="1" number="1" year="2021"><article><title>C</title></article></issue>
<issue volume="2" number="1" year="2021"><article><title>D</title>
  <author id="9">Cid</author><author id="9">Dee</author></article></issue>
<issue volume="2" year="2022"/>
</journal><journal key="j2"><issue volume="1" number="1" year="2020"/></journal></dblp>"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_composite_keys_and_own_keys_quarantine_what_they_must(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The same volume/number in two journals are two issues; a repeated key, a missing
    part, a bad value and a duplicate own key within a parent row are quarantined with the
    key's parts joined by '/' and the record element."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "issues.xml").write_text(ISSUES, encoding="utf-8")
    (tmp_path / "m.toml").write_text(COMPOSITE, encoding="utf-8")
    spec = target_spec(backend, tmp_path, request)
    doc = run_cli(spec, tmp_path / "in", tmp_path / "m.toml", tmp_path / "r")
    assert doc["records_read"] == 6 and doc["reconciliation"]["ok"]
    mapping = parse_mapping(COMPOSITE)
    got = stored(spec, mapping)
    assert got["ck_issues"] == [("j1", 1, 1, 2020), ("j2", 1, 1, 2020)]
    assert got["ck_articles"] == [("j1", 1, 1, 1, "A"), ("j1", 1, 1, 2, "A")]
    assert got["ck_authors"] == [("j1", 1, 1, 1, 7, "Ann"), ("j1", 1, 1, 1, 8, "Bob"),
                                 ("j1", 1, 1, 2, 7, "Ann")]
    conn = open_target(spec).connect()
    try:
        q = conn.dialect.table_ref("mb_quarantine")
        rows = conn.query(f"SELECT record_key, reason_code, record_element FROM {q}")
    finally:
        conn.close()
    assert sorted((str(k), str(c), str(e)) for k, c, e in rows) == [
        ("j1/1/1", "duplicate_key", "issue"),
        ("j1/1/2", "bad_number", "issue"),
        ("j1/2/", "missing_required", "issue"),
        ("j1/2/1", "duplicate_key", "issue")]


@pytest.mark.parametrize(("change", "where", "words"), [
    ('key_column = ["journal", "volume", "number"]', "tables[0].key_column",
     "the record key has 3 part(s): give a list of 3 names"),
    ('key = ["../@key", { path', "record.key[0]", None),
    ('parent = "ck_articles"', "tables[2].parent", "no table 'nope' before this one"),
    ('key = { path = "@id", type = "int", column = "author_id" }', "tables[2].key",
     "a child table's own key is"),
    ('position_column = "no"', "tables[1].key_column", "duplicate column name 'volume'"),
])
def test_invalid_keys_and_nesting_name_the_key_and_the_fix(change: str, where: str,
                                                           words: str | None) -> None:
    replacement = {
        'key_column = ["journal", "volume", "number"]': 'key_column = ["journal", "volume"]',
        'key = ["../@key", { path': 'key = ["../@key", { path',
        'parent = "ck_articles"': 'parent = "nope"',
        'key = { path = "@id", type = "int", column = "author_id" }':
            'key = { path = "@id", type = "int" }',
        'position_column = "no"': 'position_column = "no"\nkey_column = ["volume", "volume", '
                                  '"number"]',
    }[change]
    doc = COMPOSITE.replace(change, replacement, 1)
    if words is None:  # a key part that reads an ancestor's element, not an attribute
        doc = doc.replace('"../@key"', '"../title"')
        words = "reads above the record element <issue>"
        where = "record.key[0].path"
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, source="m.toml")
    assert str(err.value).startswith(f"m.toml: {where}: "), str(err.value)
    assert words in str(err.value)


def test_a_position_column_named_like_a_carried_key_column_is_refused() -> None:
    doc = COMPOSITE.replace('key = { path = "@id", type = "int", column = "author_id" }',
                            'position_column = "no"')
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, source="m.toml")
    assert str(err.value) == (
        "m.toml: tables[2].position_column: duplicate column name 'no': a key column carried "
        "from the parent table of this table has it too; rename one (key_column renames the "
        "record key's columns here)")


def test_version_1_files_load_unchanged() -> None:
    """The built-in mapping (version 1) keeps its fingerprint, columns and keys."""
    from migrator.mapping import default_mapping

    m = default_mapping()
    assert m.fingerprint() == "cad7d9fc0ec63f26"
    assert [t.primary_key for t in m.tables] == [
        ("order_id",), ("order_id", "line_no"), ("order_id", "payment_no")]
    assert [t.parent for t in m.tables] == [None, "orders", "orders"]
    assert m.records[0].key_types == (ColumnType("bigint"),)


def test_record_elements_inside_each_other_stop_the_file_in_one_line(tmp_path: Path) -> None:
    doc = """version = 2
[[records]]
element = "a"
key = "@id"
[[records.tables]]
name = "nn_a"
key_column = "id"
[records.tables.columns]
v = "."
[[records]]
element = "b"
key = "@id"
[[records.tables]]
name = "nn_b"
key_column = "id"
[records.tables.columns]
v = "."
"""
    (tmp_path / "m.toml").write_text(doc, encoding="utf-8")
    (tmp_path / "x.xml").write_text('<r><a id="1"/><a id="2"><b id="3"/></a></r>')
    result = runner.invoke(app, ["run", "-i", str(tmp_path / "x.xml"), "-t",
                                 f"sqlite:{tmp_path / 'n.db'}", "-m", str(tmp_path / "m.toml"),
                                 "--no-sample", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "x.xml:1: a <b> record is inside a <a> record; record elements of one mapping " \
           "must not contain each other" in result.output


def test_mapping_files_in_the_fixture_folder_load(tmp_path: Path) -> None:
    for path in sorted(DATA.glob("*.toml")):
        load_mapping(path)
    shutil.copy(DATA / "mondial.toml", tmp_path / "m.toml")
    assert load_mapping(tmp_path / "m.toml").record_elements == ("country", "organization",
                                                                 "river")


# ---- duplicate keys: composite keys, nested children, two record types -----------------------

DUPS = """version = 2
[[records]]
element = "issue"
key = ["../@key", { path = "@volume", type = "int" }, { path = "@number", type = "int" }]
[[records.tables]]
name = "dk_issues"
key_column = ["journal", "volume", "number"]
[records.tables.columns]
copy = { path = "@copy", type = "int", required = true }
[[records.tables]]
name = "dk_articles"
rows = "article"
position_column = "no"
[records.tables.columns]
title = { path = "title", type = "str(40)", required = true }
[[records.tables]]
name = "dk_authors"
parent = "dk_articles"
rows = "author"
position_column = "author_no"
[records.tables.columns]
name = { path = ".", type = "str(40)", required = true }

[[records]]
element = "erratum"
key = "@id"
[[records.tables]]
name = "dk_errata"
key_column = "erratum_id"
[records.tables.columns]
copy = { path = "@copy", type = "int", required = true }
[[records.tables]]
name = "dk_erratum_lines"
rows = "line"
position_column = "no"
[records.tables.columns]
text = { path = ".", type = "str(40)", required = true }
"""


def write_dup_input(folder: Path) -> None:
    """Two files; issues repeat their (journal, volume, number) across journals' lines and
    files, each copy with another number of articles and authors; errata repeat ids."""
    import random

    r = random.Random(16)
    copies: dict[tuple[str, int, int] | str, int] = {}

    def issue(journal: str) -> str:
        key = (journal, r.randint(1, 6), r.randint(1, 3))
        copy = copies[key] = copies.get(key, -1) + 1
        articles = "".join(
            f"<article><title>{key[0]}-{key[1]}-{key[2]} c{copy} a{a}</title>"
            + "".join(f"<author>au{a}.{b}c{copy}</author>" for b in range((copy + a) % 3))
            + "</article>" for a in range(1 + (copy % 3)))
        return f'<issue volume="{key[1]}" number="{key[2]}" copy="{copy}">{articles}</issue>'

    def erratum() -> str:
        key = f"e{r.randint(1, 15)}"
        copy = copies[key] = copies.get(key, -1) + 1
        lines = "".join(f"<line>{key} c{copy} l{n}</line>" for n in range(copy % 3 + 1))
        return f'<erratum id="{key}" copy="{copy}">{lines}</erratum>'

    for name in ("a.xml", "b.xml"):
        parts = ["<dblp>"]
        for j in ("j1", "j2"):
            parts.append(f'<journal key="{j}">')
            parts += [issue(j) if r.random() < 0.7 else erratum() for _ in range(60)]
            parts.append("</journal>")
        parts.append("</dblp>")
        (folder / name).write_text("\n".join(parts), encoding="utf-8")


def independent_dups(folder: Path) -> tuple[dict[str, list[Row]], list[tuple[str, str]]]:
    """The first copy of each key in input order (files by path, document order) wins."""
    out: dict[str, list[Row]] = {k: [] for k in (
        "dk_issues", "dk_articles", "dk_authors", "dk_errata", "dk_erratum_lines")}
    seen: set[Any] = set()
    dups: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.xml")):
        for e in etree.parse(str(path)).getroot().iter("issue", "erratum"):
            if e.tag == "issue":
                key: Any = (e.getparent().get("key"), int(e.get("volume")), int(e.get("number")))
                text = "/".join(str(k) for k in key)
            else:
                key = e.get("id")
                text = key
            if (e.tag, key) in seen:
                dups.append((e.tag, text))
                continue
            seen.add((e.tag, key))
            if e.tag == "erratum":
                out["dk_errata"].append((key, int(e.get("copy"))))
                out["dk_erratum_lines"] += [(key, n, x.text) for n, x
                                            in enumerate(e.findall("line"), start=1)]
                continue
            out["dk_issues"].append((*key, int(e.get("copy"))))
            for a, art in enumerate(e.findall("article"), start=1):
                out["dk_articles"].append((*key, a, art.find("title").text))
                out["dk_authors"] += [(*key, a, b, x.text) for b, x
                                      in enumerate(art.findall("author"), start=1)]
    return {k: sorted(v) for k, v in out.items()}, sorted(dups)


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_composite_keys_evict_nested_children_of_the_later_copy(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Files given in reverse order: b.xml is read first, so its copies are stored, then
    evicted with their articles and authors (or erratum lines) when a.xml's first copies
    come; the result is the first copy in input order, per record type — with one worker,
    and with 3 workers on byte ranges committing in any order."""
    import migrator.writer

    folder = tmp_path / "in"
    folder.mkdir()
    write_dup_input(folder)
    want, dups = independent_dups(folder)
    assert len(dups) > 40 and {d[0] for d in dups} == {"issue", "erratum"}
    mapping = parse_mapping(DUPS)
    spec = target_spec(backend, tmp_path, request)
    files = sorted(str(p) for p in folder.glob("*.xml"))[::-1]
    evictions: list[Any] = []
    real_delete = migrator.writer.delete_record

    def delete_record(conn: Any, m: Any, record: Any, key: Any) -> tuple[int, ...]:
        lost = real_delete(conn, m, record, key)
        evictions.append((record.element, key, lost))
        return lost

    monkeypatch.setattr(migrator.writer, "delete_record", delete_record)
    ParallelCoordinator(open_target(spec), mapping, EngineConfig(batch_size=7),
                        workers=1).run(expand_inputs(files))
    assert stored(spec, mapping) == want
    issues = [e for e in evictions if e[0] == "issue" and e[2][2] > 0]  # authors deleted
    assert issues and any(e[0] == "erratum" for e in evictions)
    assert all(isinstance(e[1], tuple) and len(e[1]) == 3 for e in issues)

    stats = ParallelCoordinator(open_target(spec), mapping, EngineConfig(batch_size=7),
                                workers=3, partitions_per_worker=2).run(expand_inputs(files))
    assert not stats.errors
    assert stored(spec, mapping) == want
    rec = reconcile(open_target(spec), mapping)
    assert rec.ok, rec.problems
    assert rec.records == {"issue": {"inserted": len(want["dk_issues"]),
                                     "quarantined": sum(d[0] == "issue" for d in dups)},
                           "erratum": {"inserted": len(want["dk_errata"]),
                                       "quarantined": sum(d[0] == "erratum" for d in dups)}}
    conn = open_target(spec).connect()
    try:
        rows = conn.query(f"SELECT record_element, record_key, reason_code FROM "
                          f"{conn.dialect.table_ref('mb_quarantine')}")
    finally:
        conn.close()
    assert sorted((str(e), str(k)) for e, k, c in rows) == dups
    assert {str(c) for _, _, c in rows} == {"duplicate_key"}
    assert stats.records["issue"]["quarantined"] + stats.records["erratum"]["quarantined"] \
        == len(dups)
