"""Cutting files into record ranges: every record exactly once, with its absolute line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import datasets
from migrator import MalformedXMLError, WorkUnit, expand_inputs, partition as part
from migrator.partition import (
    RangeUnit,
    assign,
    plan_units,
    read_prolog,
    record_starts,
    units_from_ids,
)

# A record element hidden where it is not a tag: comments, CDATA, PIs, the DOCTYPE's
# internal subset; '>' and '/>' in attribute values, text and CDATA.
TRICKY = """<?xml version="1.0" encoding="UTF-8"?>
<!-- before the root: <order id="c0"> -->
<?app-info <order id="pi0"/> ?>
<!DOCTYPE orders [
  <!ENTITY fake "<order id='e0'/>">
  <!-- in the subset: <order> ] > -->
]>
<!-- another comment <order/> -->
<orders xmlns:x="urn:x" note="a > b">
  <!-- <order id="c1"> -->
  <order id="1"><a><![CDATA[<order id="cd1"> ]] /> ]]></a></order>
  <?pi <order id="pi1"?>
  <order id="2"
         status="new"><a>x</a><orders-note>not a record</orders-note></order>
  <order id="3"/>
  <group><order id="nested"/></group>
  <order id="4"><!-- <order id="c4"> --><a>text with
  two lines</a></order><order id="5"><a><![CDATA[
  <order id="cd5">
  ]]></a></order>
  <orderx id="not-a-record"/>
  <order id="6"><b x="1"/><c note="a/> b > c"/>text with /> in it<d/></order>
  <order id="7" note="x > y" flag='/>'/><order id="8"/>
</orders>
<!-- after the root: <order id="c9"> -->
"""


def records(units: list[WorkUnit]) -> list[tuple[int, str | None]]:
    """(line, id) of every record element, unit after unit, as the engine reads them."""
    out = []
    for u in units:
        for line, elem in u.open_records("order"):
            out.append((line, elem.get("id")))
    return out


def whole(path: Path) -> list[tuple[int, str | None]]:
    return records([WorkUnit(str(path), path.stat().st_size)])


def pieces(path: Path, n: int) -> list[WorkUnit]:
    return plan_units([WorkUnit(str(path), path.stat().st_size)], n, "order")


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    p = tmp_path / "tricky.xml"
    p.write_text(TRICKY, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("part")
    datasets.generate(out, 120, seed=9, invalid_rate=0.05)
    return next(out.glob("*.xml"))


def test_prolog_ends_after_the_root_start_tag(tricky: Path) -> None:
    prolog = read_prolog(str(tricky))
    assert prolog is not None and prolog.root == b"orders"
    text = tricky.read_bytes()
    assert text[:prolog.body].endswith(b'note="a > b">')
    assert prolog.line == text[:prolog.body].count(b"\n") + 1


def test_cuts_land_only_on_records_that_are_children_of_the_root(tricky: Path) -> None:
    data = tricky.read_bytes()
    cuts = record_starts(str(tricky), "order", list(range(0, len(data), 7)))
    starts = {data.index(f'<order id="{k}"'.encode()) for k in "2345678"}
    assert set(cuts) == starts  # never a comment, CDATA, PI, nested or the first record


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 16, 64, 1 << 20])
def test_chunk_edges_do_not_change_the_cuts(tricky: Path, generated: Path, chunk: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reference = {p: record_starts(str(p), "order", list(range(1, p.stat().st_size, 97)))
                 for p in (tricky, generated)}
    monkeypatch.setattr(part, "_CHUNK", chunk)
    for p, cuts in reference.items():
        assert record_starts(str(p), "order", list(range(1, p.stat().st_size, 97))) == cuts


@pytest.mark.parametrize("n", [2, 3, 4, 7, 50])
def test_pieces_read_every_record_once_with_absolute_lines(tricky: Path, generated: Path,
                                                           n: int) -> None:
    for p in (tricky, generated):
        units = pieces(p, n)
        assert any(isinstance(u, RangeUnit) for u in units)
        assert records(units) == whole(p)
        ranges = [(u.start, u.end) for u in units if isinstance(u, RangeUnit)]
        assert ranges[0][0] == 0 and ranges[-1][1] == p.stat().st_size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_pieces_are_balanced_in_bytes(generated: Path) -> None:
    units = pieces(generated, 4)
    sizes = [part.unit_bytes(u) for u in units]
    assert len(units) == 4
    assert max(sizes) - min(sizes) < 2 * 3000  # within a record or two of equal


def test_tiny_file_gives_at_most_one_piece_per_record(tmp_path: Path) -> None:
    one = tmp_path / "one.xml"
    one.write_text('<orders><order id="1"/></orders>')
    assert pieces(one, 3) == [WorkUnit(str(one), one.stat().st_size)]
    two = tmp_path / "two.xml"
    two.write_text('<orders>\n<order id="1"/>\n<order id="2"/>\n</orders>\n')
    units = pieces(two, 8)
    assert len(units) == 2 and records(units) == [(2, "1"), (3, "2")]
    empty = tmp_path / "empty.xml"
    empty.write_text("<orders/>")
    assert pieces(empty, 3) == [WorkUnit(str(empty), empty.stat().st_size)]


def test_many_files_are_cut_as_one_stream(tmp_path: Path) -> None:
    m = datasets.generate(tmp_path / "d", 90, files=3, seed=4)
    files = expand_inputs([str(tmp_path / "d")])
    units = plan_units(files, 2, "order")
    # the middle file is cut in two, the others stay whole (their ids stay the path)
    assert [type(u).__name__ for u in units] == ["WorkUnit", "RangeUnit", "RangeUnit",
                                                 "WorkUnit"]
    assert len(records(units)) == m.records
    groups = assign(units, 2)
    loads = [sum(part.unit_bytes(u) for u in g) for g in groups]
    assert abs(loads[0] - loads[1]) < 0.1 * sum(loads)


def test_utf16_files_are_not_cut(tmp_path: Path) -> None:
    p = tmp_path / "u16.xml"
    p.write_bytes('<?xml version="1.0" encoding="UTF-16"?><orders><order id="1"/>'
                  '<order id="2"/></orders>'.encode("utf-16"))
    assert pieces(p, 2) == [WorkUnit(str(p), p.stat().st_size)]


def test_malformed_xml_in_a_piece_names_the_absolute_line(generated: Path,
                                                          tmp_path: Path) -> None:
    lines = generated.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = max(i for i, line in enumerate(lines) if "<quantity>" in line)
    lines[bad] = lines[bad].replace("<quantity>", "<quantity oops>")
    p = tmp_path / "bad.xml"
    p.write_text("".join(lines), encoding="utf-8")
    last = pieces(p, 3)[-1]
    assert isinstance(last, RangeUnit) and last.start > 0
    with pytest.raises(MalformedXMLError) as err:
        records([last])
    assert err.value.line == bad + 1


def test_resume_rebuilds_the_interrupted_runs_units(generated: Path, tmp_path: Path) -> None:
    files = [WorkUnit(str(generated), generated.stat().st_size)]
    units = plan_units(files, 3, "order")
    other = WorkUnit(str(tmp_path / "new.xml"), 10)
    rebuilt = units_from_ids([u.id for u in units] + ["/gone.xml#0-5"], [*files, other])
    assert rebuilt == [*units, other]  # an unknown id is left for prepare_target to name
