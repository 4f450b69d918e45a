"""The compiled mapper against a slow, obviously-correct reference (one xpath per column)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from lxml import etree

from migrator.coerce import coercer
from migrator.mapping import default_mapping, parse_mapping
from migrator.reader import RecordStream
from migrator.rowmap import RecordMapper, RecordRejected, naive_map

ORDER = """<order id="42" status="new" currency="EUR">
  <created>2024-03-05T14:22:31+01:00</created><orderDate>2024-03-05</orderDate>
  <!-- a comment --><?pi data?>
  <customer id="7" vip="true"><firstName>Zoë</firstName><lastName>山田 &amp; Co</lastName>
    <email>z@example.com</email><loyaltyPoints>12</loyaltyPoints></customer>
  <shipping method="express"><address><city>Zürich</city><country>CH</country></address>
    <cost>4.5</cost></shipping>
  <totals><subtotal>10.00</subtotal><tax>1.00</tax><total>15.50</total></totals>
  <note><![CDATA[<b>bold</b> & 🎉]]></note>
  <lines><line sku="A"><quantity>2</quantity><unitPrice>5</unitPrice></line>
    <!-- between --><line sku="B"><quantity>1</quantity><unitPrice>0.5</unitPrice>
    <discountPct>10</discountPct></line></lines>
</order>"""


def mapped(xml: str) -> list:
    """``map``, checked against the same work in two halves (``extract`` → ``convert``, as
    the process pipeline may do it): same rows, or the same rejection."""
    mapper = RecordMapper(default_mapping())
    elem = etree.fromstring(xml)
    try:
        whole = mapper.map(elem)
    except RecordRejected as rej:
        with pytest.raises(RecordRejected) as split:
            mapper.convert(pickle.loads(pickle.dumps(mapper.extract(elem))))
        assert (split.value.code, split.value.reason, split.value.key) == \
            (rej.code, rej.reason, rej.key)
        raise
    assert mapper.convert(pickle.loads(pickle.dumps(mapper.extract(elem)))) == whole
    return whole


def test_maps_every_table_and_converts() -> None:
    orders, lines, payments = mapped(ORDER)
    m = default_mapping()
    row = dict(zip(m.root.column_names, orders[0], strict=True))
    assert row["order_id"] == 42
    assert row["customer_vip"] is True
    assert row["last_name"] == "山田 & Co"
    assert row["note"] == "<b>bold</b> & 🎉"
    assert str(row["ship_cost"]) == "4.50"
    assert row["discount"] is not None and str(row["discount"]) == "0.00"  # default
    assert row["gift_wrap"] is False  # default
    assert row["phone"] is None  # optional, absent
    assert row["created_at"].hour == 13  # +01:00 → UTC
    assert [(r[0], r[1], r[2]) for r in lines] == [(42, 1, "A"), (42, 2, "B")]
    assert str(lines[1][-1]) == "10.00"
    assert payments == []


def test_agrees_with_reference_extraction() -> None:
    m = default_mapping()
    elem = etree.fromstring(ORDER)
    ref = naive_map(m, elem)
    got = RecordMapper(m).map(elem)
    for table, rows in zip(m.tables, got, strict=True):
        assert len(rows) == len(ref[table.name])
        for row, ref_row in zip(rows, ref[table.name], strict=True):
            values = dict(zip(table.column_names, row, strict=True))
            for col in table.columns:
                raw = ref_row[col.name]
                if raw is None or (not raw.strip() and col.type.kind not in ("str", "text")):
                    expected = None if col.default is None else coercer(col.type)(col.default)
                else:
                    expected = coercer(col.type)(raw)
                assert values[col.name] == expected, (table.name, col.name)


@pytest.mark.parametrize(("old", "new", "code", "column"), [
    ("<email>z@example.com</email>", "", "missing_required", "orders.email"),
    ("<email>z@example.com</email>", "<email>  </email>", "missing_required", "orders.email"),
    ("<quantity>2</quantity>", "<quantity>2x</quantity>", "bad_number", "order_lines.quantity"),
    ("2024-03-05</orderDate>", "2024-02-30</orderDate>", "bad_date", "orders.order_date"),
    ("Zoë</firstName>", "Z" * 61 + "</firstName>", "too_long", "orders.first_name"),
    ('vip="true"', 'vip="maybe"', "bad_bool", "orders.customer_vip"),
    ('id="42"', 'id="x"', "bad_number", "record key"),
    ('<order id="42"', "<order", "missing_required", "record key"),
])
def test_rejections_carry_code_column_and_key(old: str, new: str, code: str,
                                              column: str) -> None:
    assert old in ORDER
    with pytest.raises(RecordRejected) as info:
        mapped(ORDER.replace(old, new, 1))
    assert info.value.code == code
    assert info.value.reason.startswith(column)
    if column != "record key":
        assert info.value.key == "42"


def test_adapters_are_applied_after_coercion() -> None:
    m = default_mapping()
    mapper = RecordMapper(m, {"decimal": str, "bool": int})
    orders, lines, _ = mapper.map(etree.fromstring(ORDER))
    row = dict(zip(m.root.column_names, orders[0], strict=True))
    assert row["subtotal"] == "10.00" and row["customer_vip"] == 1
    assert lines[0][-2] == "5.00"


def test_paths_of_every_form(tmp_path: Path) -> None:
    m = parse_mapping("""
[record]
element = "r"
key = { path = "k", type = "str(10)" }
[[tables]]
name = "t"
key_column = "key"
[tables.columns]
own = { path = ".", type = "text" }
attr = { path = "@a", type = "int" }
deep = { path = "x/y/@b", type = "int" }
first = { path = "x/z", type = "text" }
""")
    doc = tmp_path / "r.xml"
    doc.write_text("<rs><r a='1'>hello<k>K1</k><x><z>first</z><y b='2'/><z>second</z></x>"
                   "</r></rs>")
    # An element is only valid until the stream moves on: map it inside the loop.
    got = [RecordMapper(m).map(elem) for _, elem in RecordStream(str(doc), "r")]
    assert got == [[[("K1", "hello", 1, 2, "first")]]]


def test_extract_holds_only_texts_and_convert_agrees_with_map(tmp_path: Path) -> None:
    """The process pipeline's split: every record of a dataset with invalid records, under
    the adapters of every dialect, gives the same rows or the same rejection both ways;
    what crosses between the halves is plain str/None in tuples and lists."""
    import importlib

    import datasets
    from migrator.targets.odbc import ODBC_DIALECTS
    from migrator.targets.sqlite import SQLiteDialect

    datasets.generate(tmp_path, 300, seed=4, invalid_rate=0.2)
    m = default_mapping()
    classes = [SQLiteDialect] + [getattr(importlib.import_module(ref.split(":")[0]),
                                         ref.split(":")[1]) for ref in ODBC_DIALECTS.values()]
    mappers = [RecordMapper(m, cls().value_adapters()) for cls in classes]

    def texts_only(value: object) -> bool:
        if isinstance(value, (tuple, list)):
            return all(texts_only(v) for v in value)
        return value is None or type(value) is str

    rejected = 0
    for path in sorted(tmp_path.glob("*.xml")):
        for _, elem in RecordStream(str(path), m.record_element):
            for mapper in mappers:
                texts = mapper.extract(elem)
                assert texts_only(texts)
                try:
                    whole = mapper.map(elem)
                except RecordRejected as rej:
                    rejected += 1
                    with pytest.raises(RecordRejected) as split:
                        mapper.convert(texts)
                    assert (split.value.code, split.value.reason, split.value.key) == \
                        (rej.code, rej.reason, rej.key)
                else:
                    assert mapper.convert(texts) == whole
    assert rejected > 0
