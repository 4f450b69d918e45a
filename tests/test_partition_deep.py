"""Byte ranges for records below the root's children: every record once, with its absolute
line and its enclosing elements' attributes, however the file is cut; a file that cannot be
cut says why in one line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from test_maplang import DATA, independent_mondial, runner, stored

from bench.cli import app
from migrator import WorkUnit, partition as part
from migrator.mapping import load_mapping
from migrator.partition import RangeUnit, deep_record_starts, plan_units, units_from_ids

# Records two and three levels down; what looks like a record where it is not one (comments,
# CDATA, PIs, attribute values with '>' and '/>'); start tags over several lines, with
# namespace declarations the pieces must carry; a self-closing record; a record's own end tag
# inside its CDATA; other elements between the records.
TRICKY = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE lib [ <!ENTITY e "<issue id='e0'/>"> ]>
<lib xmlns:x="urn:x" note="a > b">
  <!-- <issue id="c0"> -->
  <journal key="j1"
           x:kind="a/> b">
    <title>J1</title>
    <issue id="1"><a><![CDATA[</issue> <issue id="cd1"> ]]></a></issue>
    <?pi <issue id="pi1"?>
    <issue
       id="2" status="new"><a>x</a></issue>
    <issue id="3"/>
    <shelf n="s1"><issue id="4"><!-- </issue> --><a>two
    lines</a></issue><issue id="5"/></shelf>
  </journal>
  <journal key="j2"><issue id="6" note="x > y"><b/></issue><issue id="7"/>
    <extra><deep><issue id="8"/></deep></extra>
  </journal>
  <issue id="9"/>
</lib>
"""


def records(units: list[Any], element: str = "issue") -> list[tuple[int, str | None, Any]]:
    """(line, id, what the enclosing elements say) of every record, unit after unit."""
    out = []
    for u in units:
        for line, elem in u.open_records(element):
            above = [(a.tag, sorted(a.attrib.items())) for a in elem.iterancestors()]
            out.append((line, elem.get("id"), above))
    return out


def whole(path: Path, element: str = "issue") -> list[tuple[int, str | None, Any]]:
    return records([WorkUnit(str(path), path.stat().st_size)], element)


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    p = tmp_path / "tricky.xml"
    p.write_text(TRICKY, encoding="utf-8")
    return p


def test_cuts_land_on_records_at_any_depth_with_their_enclosing_tags(tricky: Path) -> None:
    data = tricky.read_bytes()
    scan = deep_record_starts(str(tricky), "issue", list(range(1, len(data), 5)))
    starts = {data.index(f'<issue id="{k}"'.encode()) for k in "6789"}
    starts.add(data.index(b"<issue\n       id=\"2\""))
    starts |= {data.index(f'<issue id="{k}"'.encode()) for k in "345"}
    assert {c.offset for c in scan.cuts} == starts  # never a comment, CDATA, PI or the first
    by_offset = {c.offset: c.ancestors for c in scan.cuts}
    assert by_offset[data.index(b'<issue id="4"')] == (
        b'<journal key="j1"            x:kind="a/> b">', b'<shelf n="s1">')
    assert by_offset[data.index(b'<issue id="8"')] == (b'<journal key="j2">', b"<extra>",
                                                       b"<deep>")
    assert by_offset[data.index(b'<issue id="9"')] == ()
    assert scan.records == 9 and not scan.problem


@pytest.mark.parametrize("n", [2, 3, 4, 9, 40])
def test_pieces_read_every_record_once_with_lines_and_ancestors(tricky: Path, n: int) -> None:
    units = plan_units([WorkUnit(str(tricky), tricky.stat().st_size)], n, "issue")
    assert any(isinstance(u, RangeUnit) for u in units)
    assert records(units) == whole(tricky)
    ranges = [(u.start, u.end) for u in units if isinstance(u, RangeUnit)]
    assert ranges[0][0] == 0 and ranges[-1][1] == tricky.stat().st_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    # --resume rebuilds the units from their ids: the enclosing tags are found again
    again = units_from_ids([u.id for u in units], [WorkUnit(str(tricky),
                                                            tricky.stat().st_size)])
    assert all(isinstance(u, RangeUnit) and u.head is None for u in again)
    assert records(again) == whole(tricky)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_chunk_edges_do_not_change_the_deep_cuts(tricky: Path, chunk: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    targets = list(range(1, tricky.stat().st_size, 11))
    reference = deep_record_starts(str(tricky), "issue", targets)
    monkeypatch.setattr(part, "_CHUNK", chunk)
    assert deep_record_starts(str(tricky), "issue", targets) == reference


@pytest.mark.parametrize("fixture", ["mondial.xml", "dblp.xml"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_real_shaped_files_two_levels_down(fixture: str, n: int) -> None:
    path = DATA / fixture
    elements = ("country", "organization", "river") if fixture == "mondial.xml" else ("issue",)
    units = plan_units([WorkUnit(str(path), path.stat().st_size)], n, elements)
    assert sum(isinstance(u, RangeUnit) for u in units) >= 2
    assert records(units, elements) == whole(path, elements)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [2, 3])
def test_mondial_with_workers_on_byte_ranges(workers: int, tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 'w.db'}"
    result = runner.invoke(app, ["run", "-i", str(DATA / "mondial.xml"), "-t", spec, "-m",
                                 str(DATA / "mondial.toml"), "-w", str(workers), "-b", "2",
                                 "--no-sample", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["notes"] == [] and doc["reconciliation"]["ok"]
    assert len(doc["per_worker"]) == workers
    assert all(w["records_read"] > 0 for w in doc["per_worker"])  # nobody sits idle
    assert stored(spec, load_mapping(DATA / "mondial.toml")) == \
        independent_mondial(DATA / "mondial.xml")


def test_files_that_cannot_be_cut_say_why_in_one_line(tmp_path: Path) -> None:
    one = tmp_path / "one.xml"
    one.write_text("<lib><journal><issue id='1'>" + "<a>x</a>" * 2000
                   + "</issue></journal></lib>")
    broken = tmp_path / "broken.xml"  # a comment that never ends, after the first record
    broken.write_text("<lib><j><issue id='1'/><!-- " + "<issue id='2'/>" * 500)
    (tmp_path / "m.toml").write_text("""version = 2
[record]
element = "issue"
key = "@id"
[[tables]]
name = "nd_issues"
key_column = "id"
[tables.columns]
a = "a"
""", encoding="utf-8")
    notes: list[str] = []
    units = plan_units([WorkUnit(str(p), p.stat().st_size) for p in (one, broken)], 8,
                       "issue", notes)
    assert notes == [
        "not split: one.xml: it holds one <issue> record, and a record is never split; one "
        "worker reads it whole",
        "not split: broken.xml: its markup could not be followed (a construct at byte 23 is "
        "not closed); one worker reads it whole"]
    assert [type(u) for u in units] == [WorkUnit, WorkUnit]
    utf16 = tmp_path / "u16.xml"
    utf16.write_text("<lib>" + "<issue id='1'><a>é</a></issue>" * 400 + "</lib>",
                     encoding="utf-16")
    result = runner.invoke(app, ["run", "-i", str(utf16), "-t", f"sqlite:{tmp_path / 'u.db'}",
                                 "-m", str(tmp_path / "m.toml"), "-w", "2", "--no-sample",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert ("not split: u16.xml: it is in UTF-16 or UTF-32, and byte ranges are cut only in "
            "encodings that write markup as ASCII") in result.output
