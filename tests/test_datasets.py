"""The mock dataset generator: determinism, shape, manifest, and agreement with the mapper.

Every test writes real files into ``tmp_path`` and reads them back with lxml, independently
of the generator's own bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import datasets
from datasets import INVALID_KINDS, DatasetError, Manifest
from migrator.mapping import default_mapping
from migrator.rowmap import RecordMapper, RecordRejected, naive_map

_REPO = Path(__file__).resolve().parents[1]
CENT = Decimal("0.01")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _orders(path: Path) -> list[Any]:
    return list(etree.parse(str(path), _PARSER).getroot().iterchildren("order"))


def _all_orders(folder: Path, manifest: Manifest) -> list[Any]:
    return [o for f in manifest.files for o in _orders(folder / f.name)]


def _record_texts(folder: Path, manifest: Manifest) -> list[str]:
    """Each record's exact text, cut at its start tag (independent of lxml)."""
    out: list[str] = []
    for f in manifest.files:
        body = (folder / f.name).read_text(encoding="utf-8")
        out.extend("  <order " + part for part in body.split("\n  <order ")[1:])
    return [t.split("  </order>")[0] for t in out]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """3,001 records over 3 files with 5% invalid records (shared, read-only)."""
    out = tmp_path_factory.mktemp("orders")
    return out, datasets.generate(out, 3001, files=3, seed=11, invalid_rate=0.05)


# ---- determinism ---------------------------------------------------------------------------

def test_profiles_lists_orders() -> None:
    assert datasets.profiles() == ("orders",)


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = datasets.generate(tmp_path / "a", 500, files=2, seed=3, invalid_rate=0.1)
    b = datasets.generate(tmp_path / "b", 500, files=2, seed=3, invalid_rate=0.1)
    assert a == b
    for name in ["orders-0001.xml", "orders-0002.xml", "manifest.json"]:
        assert _sha(tmp_path / "a" / name) == _sha(tmp_path / "b" / name)


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    a = datasets.generate(tmp_path / "a", 200, seed=1)
    b = datasets.generate(tmp_path / "b", 200, seed=2)
    assert a.files[0].sha256 != b.files[0].sha256


PINNED_SHA256 = "ab37f90b834dbe99c18a4d429095da62d446fb067a9957cbf829fef3ca2c142b"


def test_output_is_pinned(tmp_path: Path) -> None:
    """Guards against silent drift (a Python RNG change, an accidental edit of the profile).

    If you change the orders profile on purpose, update the digest and say so in the commit.
    """
    m = datasets.generate(tmp_path, 50, seed=0, invalid_rate=0.1)
    assert m.files[0].sha256 == PINNED_SHA256, m.files[0].sha256



def test_split_does_not_change_records(tmp_path: Path) -> None:
    one = datasets.generate(tmp_path / "one", 301, files=1, seed=5)
    four = datasets.generate(tmp_path / "four", 301, files=4, seed=5)
    assert _record_texts(tmp_path / "one", one) == _record_texts(tmp_path / "four", four)
    assert one.expected_rows == four.expected_rows


def test_invalid_rate_changes_only_the_invalid_records(tmp_path: Path) -> None:
    clean = datasets.generate(tmp_path / "clean", 400, seed=9)
    dirty = datasets.generate(tmp_path / "dirty", 400, seed=9, invalid_rate=0.1)
    bad = {int(k) - 100001 for k in dirty.invalid_keys()}
    a, b = _record_texts(tmp_path / "clean", clean), _record_texts(tmp_path / "dirty", dirty)
    assert [i for i in range(400) if a[i] != b[i]] == sorted(bad)


# ---- files, keys, manifest -----------------------------------------------------------------

def test_records_split_evenly_with_contiguous_keys(tmp_path: Path) -> None:
    m = datasets.generate(tmp_path, 10, files=3)
    assert [(f.name, f.records, f.first_key, f.last_key) for f in m.files] == [
        ("orders-0001.xml", 4, "100001", "100004"),
        ("orders-0002.xml", 3, "100005", "100007"),
        ("orders-0003.xml", 3, "100008", "100010"),
    ]
    for f in m.files:
        path = tmp_path / f.name
        assert f.bytes == path.stat().st_size
        assert f.sha256 == _sha(path)
        assert [o.get("id") for o in _orders(path)] == [
            str(k) for k in range(int(f.first_key), int(f.last_key) + 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "orders-0001.xml", "orders-0002.xml", "orders-0003.xml"]


def test_files_are_well_formed_with_unique_increasing_keys(
        sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    keys = [int(o.get("id")) for o in _all_orders(folder, m)]
    assert len(keys) == m.records == 3001
    assert keys == list(range(100001, 100001 + 3001))
    for f in m.files:
        text = (folder / f.name).read_text(encoding="utf-8")
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
        assert text.endswith("</orders>\n")


def test_manifest_round_trips(sample: tuple[Path, Manifest], tmp_path: Path) -> None:
    folder, m = sample
    assert Manifest.load(folder) == m
    assert Manifest.load(folder / "manifest.json") == m
    doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(doc) == {"format", "profile", "seed", "records", "invalid_rate", "files",
                        "invalid", "expected_rows"}
    assert doc["format"] == 1 and doc["profile"] == "orders" and doc["seed"] == 11
    assert doc["invalid"][0].keys() == {"file", "line", "key", "kind", "column"}

    with pytest.raises(DatasetError, match="no manifest"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**doc, "format": 99}))
    with pytest.raises(DatasetError, match="format 99"):
        Manifest.load(tmp_path)
    del doc["files"]
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="files"):
        Manifest.load(tmp_path)


def test_invalid_entries_point_at_their_order_start_tags(
        sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    lines = {f.name: (folder / f.name).read_text(encoding="utf-8").split("\n")
             for f in m.files}
    by_key = {o.get("id"): o for o in _all_orders(folder, m)}
    assert m.invalid
    for entry in m.invalid:
        assert lines[entry.file][entry.line - 1].startswith(f'  <order id="{entry.key}"')
        assert by_key[entry.key].sourceline == entry.line
        file = next(f for f in m.files if f.name == entry.file)
        assert int(file.first_key) <= int(entry.key) <= int(file.last_key)


@pytest.mark.parametrize(("records", "rate"), [
    (1000, 0.0), (1000, 0.013), (997, 0.25), (10, 1.0), (3, 0.5), (1, 0.4)])
def test_invalid_rate_is_exact(tmp_path: Path, records: int, rate: float) -> None:
    m = datasets.generate(tmp_path, records, invalid_rate=rate, seed=2)
    expected = math.floor(records * rate + 0.5)
    assert len(m.invalid) == expected == datasets.invalid_count(records, rate)
    assert len(m.invalid_keys()) == expected
    assert [e.kind for e in m.invalid] == [
        INVALID_KINDS[i % len(INVALID_KINDS)] for i in range(expected)]
    assert m.expected_rows["orders"] == records - expected == m.valid_records


def test_invalid_records_are_spread_over_the_files(sample: tuple[Path, Manifest]) -> None:
    _, m = sample
    assert len(m.invalid) == 150
    assert {e.file for e in m.invalid} == {f.name for f in m.files}
    assert set(Counter(e.kind for e in m.invalid).values()) == {150 // 4, 150 // 4 + 1}


def test_regenerating_removes_files_of_the_previous_generation(tmp_path: Path) -> None:
    datasets.generate(tmp_path, 30, files=3)
    (tmp_path / "mine.xml").write_text("<keep/>")
    datasets.generate(tmp_path, 30, files=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "mine.xml", "orders-0001.xml"]


def test_progress_reports_records_written(tmp_path: Path) -> None:
    seen: list[int] = []
    datasets.generate(tmp_path, 2500, files=2, progress=seen.append)
    assert seen == [1000, 2000, 2500]
    seen.clear()
    datasets.generate(tmp_path, 2000, progress=seen.append)
    assert seen == [1000, 2000]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"records": 0}, "records must be at least 1"),
    ({"records": 5, "files": 0}, "files must be between 1 and"),
    ({"records": 5, "files": 6}, "files must be between 1 and"),
    ({"records": 5, "invalid_rate": -0.1}, "invalid_rate must be"),
    ({"records": 5, "invalid_rate": 1.5}, "invalid_rate must be"),
    ({"records": 5, "invalid_rate": float("nan")}, "invalid_rate must be"),
    ({"records": 5, "profile": "invoices"}, "unknown profile 'invoices'; valid profiles: orders"),
    ({"records": 5, "seed": 1.5}, "seed must be an integer"),
    ({"records": "5"}, "records must be an integer"),
])
def test_bad_arguments_raise_dataset_error(
        tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(message)):
        datasets.generate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    assert issubclass(DatasetError, ValueError)


# ---- agreement with the shipped mapping ----------------------------------------------------

def test_mapper_accepts_valid_and_rejects_invalid_records_with_their_kind(
        sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    mapper = RecordMapper(default_mapping())
    invalid = {e.key: e for e in m.invalid}
    rows = [0, 0, 0]
    for order in _all_orders(folder, m):
        key = order.get("id")
        if key in invalid:
            with pytest.raises(RecordRejected) as caught:
                mapper.map(order)
            assert caught.value.code == invalid[key].kind, (key, caught.value.reason)
            assert caught.value.reason.startswith(invalid[key].column + " "), key
            assert caught.value.key == key
        else:
            for i, table_rows in enumerate(mapper.map(order)):
                rows[i] += len(table_rows)
    assert dict(zip(["orders", "order_lines", "payments"], rows, strict=True)) \
        == m.expected_rows


def test_expected_rows_match_an_independent_count(sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    bad = m.invalid_keys()
    valid = [o for o in _all_orders(folder, m) if o.get("id") not in bad]
    assert m.expected_rows == {
        "orders": len(valid),
        "order_lines": sum(len(o.xpath("lines/line")) for o in valid),
        "payments": sum(len(o.xpath("payments/payment")) for o in valid),
    }
    mean_lines = m.expected_rows["order_lines"] / len(valid)
    assert 2.2 <= mean_lines <= 2.9
    assert {len(o.xpath("lines/line")) for o in valid} == {0, 1, 2, 3, 4, 5}
    assert {len(o.xpath("payments/payment")) for o in valid} == {0, 1, 2, 3}


def test_every_mapping_path_occurs_and_strings_fit(sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    mapping = default_mapping()
    bad = m.invalid_keys()
    valid = [o for o in _all_orders(folder, m) if o.get("id") not in bad]
    present: Counter[str] = Counter()
    for order in valid:
        raw = naive_map(mapping, order)
        for table in mapping.tables:
            for row in raw[table.name]:
                for column in table.columns:
                    value = row[column.name]
                    if value is None:
                        assert not column.required, (order.get("id"), column.name)
                        continue
                    present[f"{table.name}.{column.name}"] += 1
                    if column.type.kind == "str":
                        assert column.type.length is not None
                        assert len(value) <= column.type.length, (column.name, value)
    every = {f"{t.name}.{c.name}" for t in mapping.tables for c in t.columns}
    assert every == set(present), every - set(present)
    # optional elements are sometimes absent
    for name in ["orders.phone", "orders.birth_date", "orders.shipped_at", "orders.note",
                 "orders.sales_rep"]:
        assert 0 < present[name] < len(valid), name


def test_totals_are_consistent(sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    bad = m.invalid_keys()
    for order in _all_orders(folder, m):
        if order.get("id") in bad:
            continue

        def money(path: str, elem: Any = order) -> Decimal:
            text = elem.findtext(path)
            assert re.fullmatch(r"\d+\.\d\d", text), (path, text)
            return Decimal(text)

        subtotal = sum(
            ((Decimal(line.findtext("quantity")) * money("unitPrice", line)
              * (100 - money("discountPct", line)) / 100).quantize(CENT, ROUND_HALF_UP)
             for line in order.iterfind("lines/line")), Decimal(0))
        assert money("totals/subtotal") == subtotal
        assert money("totals/total") == (money("totals/subtotal") + money("totals/tax")
                                         - money("totals/discount") + money("shipping/cost"))
        payments = [money("amount", p) for p in order.iterfind("payments/payment")]
        if payments:
            assert sum(payments) == money("totals/total")


# ---- content -------------------------------------------------------------------------------

def test_record_size_in_range(sample: tuple[Path, Manifest]) -> None:
    _, m = sample
    mean = sum(f.bytes for f in m.files) / m.records
    assert 1500 <= mean <= 2500, mean


def test_text_needs_escaping_and_non_ascii_survives(sample: tuple[Path, Manifest]) -> None:
    folder, m = sample
    raw = "".join((folder / f.name).read_text(encoding="utf-8") for f in m.files)
    for needle in ["&amp;", "&lt;", "&gt;", "]]]]><![CDATA[>", "<!--", "<?audit",
                   "Zoë", "Zürich", "São Paulo", "Kraków", "東京", "山田", "🎁"]:
        assert needle in raw, needle
    bad = m.invalid_keys()
    orders = [o for o in _all_orders(folder, m) if o.get("id") not in bad]
    comments = [o.findtext("comment") for o in orders]
    assert all(80 <= len(c) <= 400 for c in comments)
    assert any(c != c.encode("ascii", "ignore").decode() for c in comments)
    joined = "".join(comments)
    assert all(ch in joined for ch in "&<>\"'")
    notes = [o.findtext("note") for o in orders if o.find("note") is not None]
    assert any("]]>" in n for n in notes) and any("<tags>" in n for n in notes)
    created = [o.findtext("created") for o in orders]
    assert any(c.endswith("Z") for c in created)
    assert any(c.endswith("+02:00") for c in created)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", c) for c in created)
    # comments and PIs sit between the elements of some orders
    assert any(isinstance(child, etree._Comment) for o in orders for child in o)
    assert any(isinstance(child, etree._ProcessingInstruction) for o in orders for child in o)


def _peak_rss_kib(out: Path, records: int) -> int:
    """Peak RSS of a fresh interpreter that generates ``records`` records."""
    code = ("import resource, sys, datasets; "
            "datasets.generate(sys.argv[1], int(sys.argv[2]), invalid_rate=0.01); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, str(out), str(records)],
                          cwd=_REPO, capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_memory_is_flat_in_the_number_of_records(tmp_path: Path) -> None:
    small = _peak_rss_kib(tmp_path / "small", 5_000)
    large = _peak_rss_kib(tmp_path / "large", 50_000)
    assert large - small < 4 * 1024, (small, large)     # 10x the records, < 4 MiB more
