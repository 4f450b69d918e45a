"""`bench mapping suggest` and `bench mapping check` on files nobody wrote a mapping for.

Round trip on every fixture: the suggested mapping loads as it is, migrates the sample with
nothing quarantined, reads every element and attribute of it, and gives each child table as
many rows as an independent lxml count of its elements.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from test_maplang import DATA, runner

import datasets
from bench.cli import app
from migrator.mapping import ColumnType, Mapping, load_mapping
from migrator.paths import parse_rows_path, parse_value_path
from migrator.suggest import Values, find_record_elements, infer_type

DTD = DATA / "dtd"


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("orders")
    datasets.generate(out, 150, seed=21)
    return next(out.glob("*.xml"))


FIXTURES = [("mondial.xml", None), ("dblp.xml", DTD), ("dblp.xml", None),
            ("stations-utf16.xml", None), ("orders", None)]


def fixture_path(name: str, orders: Path) -> Path:
    return orders if name == "orders" else DATA / name


def table_paths(mapping: Mapping) -> dict[str, tuple[str, str]]:
    """Each table's record element and the element path of its rows from the record."""
    out: dict[str, tuple[str, str]] = {}
    for t in mapping.tables:
        if t.parent is None:
            out[t.name] = (t.record, "")
            continue
        record, base = out[t.parent]
        steps = "/".join(s.name for s in parse_rows_path(t.rows))
        out[t.name] = (record, f"{base}/{steps}".strip("/"))
    return out


def covered(mapping: Mapping) -> dict[str, set[str]]:
    """Per record element, the element and attribute paths (from the record) its columns
    read, ``…/*`` for everything inside a string() column."""
    where = table_paths(mapping)
    out: dict[str, set[str]] = {r: set() for r in mapping.record_elements}
    for t in mapping.tables:
        record, base = where[t.name]
        out[record].add(base)
        for c in t.columns:
            vp = parse_value_path(c.path)
            if vp.up or vp.ancestor:
                continue
            path = "/".join([base, *(s.name for s in vp.steps)]).strip("/")
            if vp.leaf == "attr":
                out[record].add(f"{path}/@{vp.attr}".lstrip("/"))
            elif vp.leaf == "string":
                out[record].add(f"{path}/*".lstrip("/"))
            out[record].add(path)
        for k in mapping.record(t.record).key if t.parent is None else ():
            kp = parse_value_path(k.path)
            if not kp.up:
                out[record].add("/".join(s.name for s in kp.steps) + (f"/@{kp.attr}"
                                                                      if kp.attr else ""))
    return {r: {p.lstrip("/") for p in paths} for r, paths in out.items()}


def everything(elem: Any, prefix: str = "") -> set[str]:
    """Every element and attribute path below a record (the record's own attributes too)."""
    out = {f"{prefix}@{a}".replace("/@", "/@") for a in elem.attrib}
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        path = f"{prefix}{child.tag}"
        out.add(path)
        out |= everything(child, path + "/")
    return {p[:-1] if p.endswith("/") else p for p in out}


def is_covered(path: str, paths: set[str]) -> bool:
    """Read itself, inside a string() column, or a container of something read."""
    parts = path.split("/")
    return path in paths or any("/".join(parts[:i]) + "/*" in paths
                                for i in range(1, len(parts))) \
        or any(p.startswith(path + "/") for p in paths)


@pytest.mark.parametrize(("name", "dtd"), FIXTURES)
def test_suggested_mapping_loads_every_element_of_the_sample(
        name: str, dtd: Path | None, orders: Path, tmp_path: Path) -> None:
    path = fixture_path(name, orders)
    extra = ["--dtd-dir", str(dtd)] if dtd else []
    made = runner.invoke(app, ["mapping", "suggest", str(path), "-o",
                               str(tmp_path / "m.toml"), *extra])
    assert made.exit_code == 0, made.output
    mapping = load_mapping(tmp_path / "m.toml")  # as it is
    result = runner.invoke(app, ["run", "-i", str(path), "-t", f"sqlite:{tmp_path / 's.db'}",
                                 "-m", str(tmp_path / "m.toml"), "--no-sample",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["quarantined"] == 0 and doc["reconciliation"]["ok"]
    # every element and attribute of every record is read by a column, a key or a rows path
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.parse(str(path), parser).getroot()
    paths = covered(mapping)
    for record in mapping.record_elements:
        elems = list(root.iter(record))
        assert elems and doc["records"][record]["inserted"] == len(elems)
        missing = {p for e in elems for p in everything(e) if not is_covered(p, paths[record])}
        assert not missing, (record, sorted(missing))
    # each table has one row per element of its path (an independent count)
    for table, (record, rows) in table_paths(mapping).items():
        want = sum(len(e.xpath(rows)) if rows else 1 for e in root.iter(record))
        assert doc["tables"][table] == want, table


def test_records_are_found_inside_containers() -> None:
    assert find_record_elements(str(DATA / "mondial.xml")) == ["country", "organization",
                                                                "river"]
    assert find_record_elements(str(DATA / "stations-utf16.xml")) == ["station"]
    assert find_record_elements(str(DATA / "dblp.xml")) == ["journal"]


def test_record_option_picks_the_element_and_its_key(tmp_path: Path) -> None:
    made = runner.invoke(app, ["mapping", "suggest", str(DATA / "dblp.xml"), "--record",
                               "issue", "--dtd-dir", str(DTD)])
    assert made.exit_code == 0, made.output
    text = made.stdout
    assert 'element = "issue"' in text and "rows = \"article\"" in text
    # volume and number repeat across issues, and no attribute is named like a key
    assert "key = [{ path = \"@volume\", type = \"int\" }, { path = \"@number\", " \
           "type = \"int\" }]  # the pair is unique in every sampled record" in text
    assert 'title = { path = "string(title)"' in text
    assert f'dtd_dir = "{DTD.resolve()}"' in text
    missing = runner.invoke(app, ["mapping", "suggest", str(DATA / "dblp.xml"), "--record",
                                  "volume"])
    assert missing.exit_code == 1
    assert "no <volume> element found; name the record element with --record ELEMENT" \
        in missing.output
    nofile = runner.invoke(app, ["mapping", "suggest", str(tmp_path / "none.xml")])
    assert nofile.exit_code == 1 and "none.xml: no such file" in nofile.output


def values(*texts: str) -> Values:
    v = Values()
    for t in texts:
        v.add(t)
    return v


@pytest.mark.parametrize(("texts", "expected"), [
    (["1", "-20", "300"], "int"),
    (["1", "300000000"], "bigint"),  # 10× headroom above the int range
    (["007", "12"], "str(10)"),  # a leading zero: a code, not a number
    (["12.5", "3.25", "100"], "decimal(7,2)"),  # 3 integer digits + 2, 2 decimals
    (["2024-02-29", "1999-12-31"], "date"),
    (["2024-02-29T10:00:00Z", "2024-03-01 06:00:00"], "datetime"),
    (["true", "False"], "bool"),
    (["1", "0"], "int"),
    (["x" * 45], "str(100)"),
    (["x" * 2500], "text"),
    (["", "  "], "text"),  # never a value in the sample
])
def test_types_come_from_the_sample_with_headroom(texts: list[str], expected: str) -> None:
    assert str(infer_type(values(*texts))) == expected
    assert ColumnType.parse(expected)


STATIONS = """version = 2
[record]
element = "station"
key = { path = "@id", type = "int" }
[[tables]]
name = "ck_stations"
key_column = "id"
[tables.columns]
name = { path = "name", type = "str(16)", required = true }
elevation = { path = "location/@elevation", type = "int", required = true }
radar = { path = "radar/@band", type = "str(4)" }
[[tables]]
name = "ck_readings"
rows = "day/reading"
position_column = "no"
[tables.columns]
value = { path = ".", type = "decimal(3,1)", required = true }
"""


def test_check_reports_rows_unmatched_fields_and_rejections(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(STATIONS, encoding="utf-8")
    result = runner.invoke(app, ["mapping", "check", str(tmp_path / "m.toml"),
                                 str(DATA / "stations-utf16.xml"), "--json"])
    assert result.exit_code == 1  # records would be quarantined
    doc = json.loads(result.stdout)
    assert doc["records"] == {"station": 4}
    assert doc["never_matched"] == ["ck_stations.radar (radar/@band)"]
    # Hamburg-Fuhlsbüttel is longer than 16; München's 2.25 has 2 decimals
    reasons = {(r["code"], r["reason"]) for r in doc["rejections"]}
    assert reasons == {
        ("too_long", "ck_stations.name (name): too long: 19 characters > 16"),
        ("out_of_range", "ck_readings.value (.): 2.25 has more than 1 decimal places")}
    assert doc["quarantined"] == 2
    assert doc["rows"] == {"ck_stations": 2, "ck_readings": 2}
    text = runner.invoke(app, ["mapping", "check", str(tmp_path / "m.toml"),
                               str(DATA / "stations-utf16.xml")])
    assert text.exit_code == 1
    assert "fields that never matched (1): ck_stations.radar (radar/@band)" in text.output
    assert "2 records would be quarantined:" in text.output
    assert re.search(r"too_long ×1: ck_stations\.name \(name\): too long: 19 characters "
                     r"> 16 \(first at line \d+, key 10147\)", text.output)
    good = runner.invoke(app, ["mapping", "check", str(DATA / "stations.toml"),
                               str(DATA / "stations-utf16.xml")])
    assert good.exit_code == 0 and "no record would be quarantined" in good.output


@pytest.mark.parametrize("backend", [
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
])
@pytest.mark.parametrize("name", ["mondial.xml", "stations-utf16.xml"])
def test_suggested_types_hold_on_server_databases(backend: str, name: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """Strict types on the servers: the suggested lengths, precisions and keys hold."""
    from test_maplang import target_spec

    made = runner.invoke(app, ["mapping", "suggest", str(DATA / name), "-o",
                               str(tmp_path / "m.toml")])
    assert made.exit_code == 0, made.output
    spec = target_spec(backend, tmp_path, request)
    result = runner.invoke(app, ["run", "-i", str(DATA / name), "-t", spec, "-m",
                                 str(tmp_path / "m.toml"), "--no-sample",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["quarantined"] == 0 and doc["reconciliation"]["ok"]
