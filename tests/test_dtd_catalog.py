"""A trusted local DTD catalog (--dtd-dir, [input].dtd_dir): named entities and default
attributes from local files only, never the network, the same entity-expansion limits;
without it, entity references stay literal and the records holding one are counted.

The fixtures: tests/data/mapping/dblp.xml (ISO-8859-1, entities and defaults from
dtd/dblp.dtd, two entities the DTD does not define) and stations-utf16.xml (UTF-16, an
entity from the internal subset). Each is read a second time with plain lxml calls and its
own entity table, and compared with what the target holds, on every backend.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from test_hostile import listener  # noqa: F401  (a fixture: a port that records connections)
from test_maplang import BACKENDS, DATA, Row, runner, stored, target_spec

from bench.cli import app
from migrator.errors import MappingError
from migrator.mapping import load_mapping, parse_mapping

DTD = DATA / "dtd"


def entity_table() -> dict[str, str]:
    """dblp.dtd's general entities, read by lxml's DTD class (``text`` is a parameter
    entity: it never appears as &text; in a document)."""
    return {e.name: e.content for e in etree.DTD(str(DTD / "dblp.dtd")).iterentities()
            if e.name != "text"}


def text_of(elem: Any, entities: dict[str, str]) -> str:
    """``elem``'s text up to its first child element, entity references replaced by the
    table's text (those it lacks kept as ``&name;``)."""
    out = [elem.text or ""]
    for child in elem:
        if not isinstance(child, etree._Entity):
            break
        out.append(entities.get(child.name, child.text))
        out.append(child.tail or "")
    return "".join(out)


def independent_dblp(expand: bool) -> dict[str, list[Row]]:
    """What dblp.toml should store, with (``expand``) or without the DTD catalog."""
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    root = etree.parse(str(DATA / "dblp.xml"), parser).getroot()
    entities = entity_table() if expand else {}
    # The DTD's defaults, when the catalog is given: attributes the elements omit.
    defaults = {("journal", "publisher"): "Springer", ("issue", "status"): "regular",
                ("article", "reviewed"): "yes", ("article", "type"): "research",
                ("author", "role"): "author"} if expand else {}

    def attr(e: Any, name: str) -> str | None:
        value = e.get(name)
        return value if value is not None else defaults.get((e.tag, name))

    def string(e: Any) -> str:  # all text inside, entities as text_of treats them
        parts = [text_of(e, entities)]
        for child in e:
            if isinstance(child, etree._Entity):
                continue
            if not isinstance(child, etree._Comment):
                parts.append(string(child))
            parts.append(child.tail or "" if not isinstance(child, etree._Entity) else "")
        return "".join(parts)

    out: dict[str, list[Row]] = {"bib_issues": [], "bib_articles": [], "bib_authors": []}
    for journal in root.findall("journal"):
        jkey = journal.get("key")
        for issue in journal.findall("issue"):
            vol, num = int(issue.get("volume")), int(issue.get("number"))
            articles = issue.findall("article")
            out["bib_issues"].append((jkey, vol, num, int(issue.get("year")),
                                      attr(issue, "status"), attr(journal, "publisher"),
                                      len(articles)))
            for ano, art in enumerate(articles, start=1):
                title = art.find("title")
                ees = art.findall("ee")
                pages = art.find("pages")
                authors = art.findall("author")
                joined = (title.text or "") + "".join(
                    (entities.get(c.name, c.text) if isinstance(c, etree._Entity) else "")
                    + (c.tail or "") for c in title)
                out["bib_articles"].append((
                    jkey, vol, num, ano, string(title), joined, attr(art, "reviewed"),
                    attr(art, "type"), None if pages is None else pages.text,
                    ees[0].text if ees else None, ees[-1].text if ees else None, len(authors),
                    int(issue.get("year"))))
                for pno, author in enumerate(authors, start=1):
                    out["bib_authors"].append((jkey, vol, num, ano, pno,
                                               text_of(author, entities), author.get("orcid"),
                                               attr(author, "role")))
    return {k: sorted(v) for k, v in out.items()}


def run(spec: str, out: Path, *extra: str, inputs: Path = DATA / "dblp.xml",
        mapping: Path = DATA / "dblp.toml") -> dict[str, Any]:
    result = runner.invoke(app, ["run", "-i", str(inputs), "-t", spec, "-m", str(mapping),
                                 "-b", "2", "--no-sample", "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", BACKENDS)
def test_catalog_expands_entities_and_fills_default_attributes(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = target_spec(backend, tmp_path, request)
    doc = run(spec, tmp_path / "r", "--dtd-dir", str(DTD))
    want = independent_dblp(expand=True)
    assert stored(spec, load_mapping(DATA / "dblp.toml")) == want
    names = {r[5] for r in want["bib_authors"]}
    assert {"Jürgen Müller", "Søren Kierkegård", "Björn &Aring;ström"} <= names
    # &Aring;, &euml; and &icirc; are not in dblp.dtd: kept literal, two records counted
    assert doc["unexpanded_entities"] == 2 and doc["reconciliation"]["ok"]


def test_without_a_catalog_entities_stay_literal_and_are_counted(tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 'plain.db'}"
    doc = run(spec, tmp_path / "r")
    want = independent_dblp(expand=False)
    got = stored(spec, load_mapping(DATA / "dblp.toml"))
    assert got == want
    assert ("journals/vldb", 31, 1, 1, 1, "J&uuml;rgen M&uuml;ller", "0000-0001-0000-0001",
            None) in got["bib_authors"]
    assert {r[4] for r in got["bib_issues"]} == {None, "special"}  # no DTD defaults
    assert doc["unexpanded_entities"] == 4
    plain = runner.invoke(app, ["run", "-i", str(DATA / "dblp.xml"), "-t",
                                f"sqlite:{tmp_path / 'p2.db'}", "-m", str(DATA / "dblp.toml"),
                                "--no-sample", "--out", str(tmp_path / "r2")])
    assert "4 records kept entity references such as &name; as they are (no DTD defines " \
           "them: give the DTDs with --dtd-dir DIR)" in plain.output


def test_mapping_names_the_catalog_relative_to_its_own_folder(tmp_path: Path) -> None:
    folder = tmp_path / "maps"
    folder.mkdir()
    shutil.copytree(DTD, folder / "dtds")
    text = (DATA / "dblp.toml").read_text(encoding="utf-8")
    (folder / "m.toml").write_text(text.replace("version = 2\n",
                                                'version = 2\n[input]\ndtd_dir = "dtds"\n'),
                                   encoding="utf-8")
    m = load_mapping(folder / "m.toml")
    assert m.dtd_dir == str((folder / "dtds").resolve())
    spec = f"sqlite:{tmp_path / 'rel.db'}"
    doc = run(spec, tmp_path / "r", mapping=folder / "m.toml")
    assert doc["unexpanded_entities"] == 2
    assert stored(spec, m) == independent_dblp(expand=True)
    # the catalog changes what is stored: a run with another one is another mapping
    assert m.fingerprint() != load_mapping(DATA / "dblp.toml").fingerprint()
    shutil.rmtree(folder / "dtds")
    with pytest.raises(MappingError, match=r"m\.toml: input\.dtd_dir: .*dtds: no such folder"):
        load_mapping(folder / "m.toml")
    bad = runner.invoke(app, ["run", "-i", str(DATA / "dblp.xml"), "-m", str(DATA / "dblp.toml"),
                              "--dtd-dir", str(tmp_path / "none"), "--no-sample",
                              "--out", str(tmp_path / "r3")])
    assert bad.exit_code == 1
    assert f"--dtd-dir {tmp_path / 'none'}: no such folder" in bad.output


BIB = """version = 2
[record]
element = "issue"
key = "@volume"
[[tables]]
name = "hx_issues"
key_column = "volume"
[tables.columns]
note = { path = "note", type = "text" }
status = { path = "@status", type = "str(10)" }
"""


def test_the_catalog_never_reads_another_file_or_the_network(
        tmp_path: Path, listener: tuple[int, list[str]]) -> None:  # noqa: F811
    """The DOCTYPE asks for the DTD over HTTP: the catalog's dblp.dtd answers (its defaults
    apply), no connection is made; an entity pointing at a file outside the catalog and
    one on the network stay literal; nothing of the secret file is read."""
    port, hits = listener
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.xml").write_text(
        f'<!DOCTYPE dblp SYSTEM "http://127.0.0.1:{port}/dblp.dtd" [\n'
        f'<!ENTITY secret SYSTEM "file://{secret}">\n'
        f'<!ENTITY remote SYSTEM "http://127.0.0.1:{port}/x.ent">\n]>\n'
        f'<dblp><journal key="j"><issue volume="1" number="1">'
        f"<note>a&secret;b&remote;c&uuml;</note></issue></journal></dblp>",
        encoding="utf-8")
    (tmp_path / "m.toml").write_text(BIB, encoding="utf-8")
    spec = f"sqlite:{tmp_path / 'h.db'}"
    doc = run(spec, tmp_path / "r", "--dtd-dir", str(DTD), inputs=tmp_path / "in",
              mapping=tmp_path / "m.toml")
    assert hits == []
    rows = stored(spec, parse_mapping(BIB))["hx_issues"]
    assert rows == [("1", "a&secret;b&remote;cü", "regular")]
    assert doc["unexpanded_entities"] == 1


def test_an_entity_bomb_in_the_catalog_is_refused(tmp_path: Path) -> None:
    catalog = tmp_path / "dtd"
    catalog.mkdir()
    (catalog / "bomb.dtd").write_text('<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)), encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.xml").write_text(
        '<!DOCTYPE dblp SYSTEM "bomb.dtd">\n<dblp><journal key="j">\n'
        '<issue volume="1"><note>ok</note></issue>\n'
        '<issue volume="2"><note>&l9;</note></issue></journal></dblp>', encoding="utf-8")
    (tmp_path / "m.toml").write_text(BIB, encoding="utf-8")
    result = runner.invoke(app, ["run", "-i", str(tmp_path / "in"), "-t",
                                 f"sqlite:{tmp_path / 'b.db'}", "-m", str(tmp_path / "m.toml"),
                                 "--dtd-dir", str(catalog), "--no-sample",
                                 "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["records_read"] == 1 and doc["reconciliation"]["ok"]  # the record before
    (error,) = doc["errors"]
    assert error.startswith(f"{tmp_path / 'in' / 'b.xml'}:"), error
    assert "malformed XML: entity expansion refused" in error


# ---- UTF-16: an internal subset, readings in days in stations ---------------------------------

def independent_stations(expand: bool) -> dict[str, list[Row]]:
    parser = etree.XMLParser(resolve_entities=expand, load_dtd=expand, no_network=True)
    root = etree.parse(str(DATA / "stations-utf16.xml"), parser).getroot()
    out: dict[str, list[Row]] = {"wx_stations": [], "wx_days": [], "wx_readings": []}
    exported = dt.datetime(2024, 3, 1, 6, 0, 0)
    for st in root.findall("station"):
        sid = int(st.get("id"))
        loc = st.find("location")
        note = st.find("note")
        out["wx_stations"].append((
            sid, st.find("name").text, str(st.get("active") == "true"),
            Decimal(loc.get("lat")), Decimal(loc.get("lon")), int(loc.get("elevation")),
            None if note is None else "".join(note.itertext()), root.get("network"),
            exported))
        for day in st.findall("day"):
            date = dt.date.fromisoformat(day.get("date"))
            readings = day.findall("reading")
            temps = [r for r in readings if r.get("kind") == "temp"]
            out["wx_days"].append((sid, date, len(readings),
                                   Decimal(temps[-1].text) if temps else None))
            for no, r in enumerate(readings, start=1):
                out["wx_readings"].append((sid, date, no, int(r.get("hour")), r.get("kind"),
                                           Decimal(r.text)))
    return {k: sorted(v) for k, v in out.items()}


def canonical_stations(rows: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """Booleans and datetimes as every backend gives them back, canonical."""
    def fix(row: Row) -> Row:
        return tuple(str(bool(int(v))) if v in ("0", "1") else
                     dt.datetime.fromisoformat(v) if isinstance(v, str) and v[:4] == "2024"
                     and len(v) > 10 else v for v in row)
    out = {k: sorted(fix(r) for r in v) for k, v in rows.items()}
    out["wx_days"] = sorted((r[0], dt.date.fromisoformat(str(r[1])[:10]), *r[2:])
                            for r in out["wx_days"])
    out["wx_readings"] = sorted((r[0], dt.date.fromisoformat(str(r[1])[:10]), *r[2:])
                                for r in out["wx_readings"])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_utf16_stations_three_levels(backend: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    spec = target_spec(backend, tmp_path, request)
    doc = run(spec, tmp_path / "r", "--dtd-dir", str(DTD), inputs=DATA / "stations-utf16.xml",
              mapping=DATA / "stations.toml")
    assert doc["reconciliation"]["ok"] and doc["records_read"] == 4
    got = canonical_stations(stored(spec, load_mapping(DATA / "stations.toml")))
    assert got == independent_stations(expand=True)
    assert got["wx_stations"][0][7] == "Deutscher Wetterdienst"
