"""The mapping language: validation messages and strict type coercion."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from migrator.coerce import InvalidValue, coercer
from migrator.errors import MappingError
from migrator.mapping import ColumnType, default_mapping, load_mapping, parse_mapping

MINIMAL = """
version = 1
[record]
element = "r"
key = { path = "@id", type = "bigint" }
[[tables]]
name = "t"
key_column = "id"
[tables.columns]
v = { path = "v", type = "int" }
"""


def convert(type_text: str, value: str) -> object:
    return coercer(ColumnType.parse(type_text))(value)


def reason(type_text: str, value: str) -> str:
    with pytest.raises(InvalidValue) as info:
        convert(type_text, value)
    return info.value.code


def test_default_mapping_shape() -> None:
    m = default_mapping()
    assert m.record_element == "order"
    assert [t.name for t in m.tables] == ["orders", "order_lines", "payments"]
    assert len(m.root.columns) >= 25
    assert m.table("order_lines").primary_key == ("order_id", "line_no")
    assert m.fingerprint() == default_mapping().fingerprint()


def test_minimal_mapping_and_file_loading(tmp_path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(MINIMAL, encoding="utf-8")
    m = load_mapping(f)
    assert m.root.column_names == ("id", "v")
    assert m.source == str(f)


@pytest.mark.parametrize(("change", "key", "words"), [
    (('type = "int"', 'type = "integer"'), "tables[0].columns.v.type",
     "unknown type 'integer'"),
    (('"@id"', '"@"'), "record.key.path", "bad path"),
    (('element = "r"', 'element = ""'), "record.element", "record element"),
    (('name = "t"', 'name = "mb_t"'), "tables[0].name", "reserved"),
    (('v = { path = "v", type = "int" }', 'v = { path = "v", type = "int", default = "x" }'),
     "tables[0].columns.v.default", "not an integer"),
    (('v = { path = "v", type = "int" }', 'v = { path = "v", type = "int", color = 1 }'),
     "tables[0].columns.v.color", "unknown key"),
    (('v = { path = "v", type = "int" }', 'id = { path = "v", type = "int" }'),
     "tables[0].columns.id", "duplicate column"),
    (('type = "int"', 'type = "decimal(3,5)"'), "tables[0].columns.v.type", "s <= p"),
])
def test_invalid_mapping_names_key_and_fix(change: tuple[str, str], key: str, words: str) -> None:
    text = MINIMAL.replace(*change)
    with pytest.raises(MappingError) as info:
        parse_mapping(text, source="m.toml")
    msg = str(info.value)
    assert msg.startswith(f"m.toml: {key}:"), msg
    assert words in msg


def test_child_table_needs_position_column() -> None:
    text = MINIMAL + '[[tables]]\nname = "c"\nrows = "items/item"\nkey_column = "id"\n' \
        '[tables.columns]\nx = { path = "x", type = "int" }\n'
    with pytest.raises(MappingError, match=r"tables\[1\].position_column"):
        parse_mapping(text)


def test_bad_toml_and_missing_file(tmp_path) -> None:
    with pytest.raises(MappingError, match="not valid TOML"):
        parse_mapping("version = ", source="x.toml")
    with pytest.raises(MappingError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.toml")


# ---- coercion ---------------------------------------------------------------------------

def test_integers_and_boundaries() -> None:
    assert convert("int", " 42 ") == 42
    assert convert("int", "-2147483648") == -(2**31)
    assert convert("int", "2147483647") == 2**31 - 1
    assert reason("int", "2147483648") == "out_of_range"
    assert convert("bigint", "9223372036854775807") == 2**63 - 1
    assert reason("bigint", "9223372036854775808") == "out_of_range"
    for bad in ("1.0", "12x", "1_000", "١٢", "", "0x10"):
        assert reason("int", bad) == "bad_number", bad


def test_decimals_are_exact_and_canonical() -> None:
    assert convert("decimal(12,2)", "1.5") == Decimal("1.50")
    assert str(convert("decimal(12,2)", "1.500")) == "1.50"
    assert str(convert("decimal(5,2)", "-0.00")) == "0.00"
    assert convert("decimal(5,2)", "999.99") == Decimal("999.99")
    assert convert("decimal(38,10)", "1234567890123456789012345678.0123456789") == \
        Decimal("1234567890123456789012345678.0123456789")
    assert reason("decimal(5,2)", "1000") == "out_of_range"
    assert reason("decimal(5,2)", "1.555") == "out_of_range"  # never silently rounded
    assert reason("decimal(5,2)", "1e400") == "out_of_range"
    for bad in ("nan", "inf", "1,234.00", "12x", "1_0"):
        assert reason("decimal(12,2)", bad) == "bad_number", bad


def test_strings_count_characters() -> None:
    assert convert("str(3)", "äöü") == "äöü"
    assert convert("str(2)", "🎉🎉") == "🎉🎉"
    assert reason("str(3)", "abcd") == "too_long"
    assert convert("text", "x" * 100_000) == "x" * 100_000


def test_dates_and_datetimes() -> None:
    assert convert("date", "2024-02-29") == dt.date(2024, 2, 29)
    for bad in ("2023-02-29", "2024-13-01", "20240305", "2024-W10-2", "05/03/2024"):
        assert reason("date", bad) == "bad_date", bad
    assert convert("datetime", "2024-03-05T14:22:31") == dt.datetime(2024, 3, 5, 14, 22, 31)
    # Offsets become naive UTC.
    assert convert("datetime", "2024-03-05T14:22:31Z") == dt.datetime(2024, 3, 5, 14, 22, 31)
    assert convert("datetime", "2024-03-05T14:22:31+02:00") == \
        dt.datetime(2024, 3, 5, 12, 22, 31)
    for bad in ("2024-03-05", "2024-03-05T25:00:00", "yesterday"):
        assert reason("datetime", bad) == "bad_datetime", bad


def test_booleans() -> None:
    for text, value in (("true", True), ("1", True), ("FALSE", False), (" 0 ", False)):
        assert convert("bool", text) is value
    assert reason("bool", "yes") == "bad_bool"


@pytest.mark.parametrize("text", ["integer", "decimal(0,0)", "str(0)", "str", "varchar(10)"])
def test_unknown_types_list_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"int|decimal|str|length|need"):
        ColumnType.parse(text)


# ---- the canonical-text converters must agree with the exact ones ------------------------

_decimal_text = st.one_of(
    st.from_regex(r"\A[ ]?-?[0-9]{1,7}(\.[0-9]{0,4})?[ ]?\Z"),
    st.from_regex(r"\A[+-]?[0-9]{0,3}\.?[0-9]{0,3}([eE][+-]?[0-9]{1,2})?\Z"),
    st.text(max_size=8),
)


def _outcome(conv, text: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    try:
        return ("ok", str(conv(text)))
    except InvalidValue as exc:
        return ("error", exc.code)


@settings(max_examples=400, deadline=None)
@given(text=_decimal_text, p=st.integers(1, 12), s=st.integers(0, 4))
def test_decimal_text_agrees_with_exact_decimal(text: str, p: int, s: int) -> None:
    if s > p:
        s = p
    ctype = ColumnType.parse(f"decimal({p},{s})")
    exact = _outcome(lambda t: format(coercer(ctype)(t), "f"), text)
    fast = _outcome(coercer(ctype, as_text=True), text)
    assert fast == exact


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("date", " 2024-02-29 ", "2024-02-29"),
    ("datetime", "2024-03-05T14:22:31", "2024-03-05 14:22:31"),
    ("datetime", "2024-03-05T14:22:31.250+01:00", "2024-03-05 13:22:31.250000"),
])
def test_date_text_converters(kind: str, text: str, expected: str) -> None:
    assert coercer(ColumnType.parse(kind), as_text=True)(text) == expected
    with pytest.raises(InvalidValue):
        coercer(ColumnType.parse(kind), as_text=True)("2023-02-29T00:00:00"[:len(text)])
