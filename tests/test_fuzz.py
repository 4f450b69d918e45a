"""Property-based fuzzing of the reader + mapper (hypothesis).

Valid generated records are mutated — bytes flipped, cut, inserted — and read back through
:class:`migrator.reader.RecordStream` and :class:`migrator.rowmap.RecordMapper`. Whatever the
bytes, every record ends as mapped rows or a :class:`RecordRejected` with a known reason
code, and a broken file ends with a :class:`MalformedXMLError` naming ``file:line``: never
another exception. Brief in CI; ``BENCH_LONG=1`` runs 20× more examples.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import long_or
from hypothesis import HealthCheck, given, settings, strategies as st

import datasets
from migrator import default_mapping
from migrator.coerce import REASON_CODES
from migrator.errors import InputError, MalformedXMLError
from migrator.reader import RecordStream
from migrator.rowmap import RecordMapper, RecordRejected
from migrator.targets.sqlite import SQLiteDialect

EXAMPLES = long_or(150, 3000)
MAPPING = default_mapping()
MAPPERS = [RecordMapper(MAPPING), RecordMapper(MAPPING, SQLiteDialect().value_adapters())]


@pytest.fixture(scope="module")
def seed_doc() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        m = datasets.generate(d, 6, seed=4, invalid_rate=0.3)
        return (Path(d) / m.files[0].name).read_bytes()


_SPICY = [b"<", b">", b"&", b";", b"&amp;", b"&#0;", b"&#xD800;", b"]]>", b"<!--", b"\x00",
          b"\xff", b"\xc3", b"\xe2\x82", b"\"", b"'", b"/", b"=", b"<!DOCTYPE x [<!ENTITY e "
          b"'v'>]>", b"&e;", b"<?xml version='1.0' encoding='latin-1'?>", b"\r", b"\t",
          b"9" * 30, b"-", b".", b"e9", b"NaN", b"2024-02-30", b"T25:00:00", b"</order>",
          b"<order id='1'>", b"<line sku=''/>", b"\xef\xbb\xbf"]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            chunk = draw(st.sampled_from(_SPICY) | st.binary(min_size=1, max_size=8))
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
        elif op == "cut":
            end = min(len(data), pos + draw(st.integers(1, 200)))
            data[pos:end] = b""
    return bytes(data)


def split_map(mapper: RecordMapper, elem: Any) -> Any:
    """``map`` as the process pipeline does it when the inserter converts: in two halves,
    with the extracted texts pickled in between. Must agree with ``map`` on everything."""
    try:
        whole: Any = mapper.map(elem)
    except RecordRejected as rej:
        whole = (rej.code, rej.reason, rej.key)
    try:
        halves: Any = mapper.convert(pickle.loads(pickle.dumps(mapper.extract(elem))))
    except RecordRejected as rej:
        halves = (rej.code, rej.reason, rej.key)
    assert halves == whole
    if isinstance(whole, tuple):
        raise RecordRejected(*whole)
    return whole


def outcomes(path: Path) -> Iterator[str]:
    """Read and map every record; yield "rows" or the reject code per record."""
    for _, elem in RecordStream(str(path), MAPPING.record_element):
        for mapper in MAPPERS:
            try:
                rows = split_map(mapper, elem)
            except RecordRejected as rej:
                assert rej.code in REASON_CODES, rej.code
                assert rej.reason and "\n" not in rej.reason
                yield rej.code
            else:
                assert len(rows) == len(MAPPING.tables) and len(rows[0]) == 1
                assert isinstance(rows[0][0][0], int)
                yield "rows"


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_records_map_reject_or_fail_with_file_and_line(seed_doc: bytes,
                                                               data: st.DataObject) -> None:
    blob = data.draw(mutated(seed_doc))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.xml"
        path.write_bytes(blob)
        try:
            seen = list(outcomes(path))
        except MalformedXMLError as exc:
            assert str(exc).startswith(f"{path}:{exc.line}: malformed XML: "), str(exc)
            assert exc.line >= 0 and "\n" not in str(exc)
            return
        except InputError as exc:  # pragma: no cover - only for unreadable files
            pytest.fail(f"unexpected InputError on a readable file: {exc}")
        assert all(s == "rows" or s in REASON_CODES for s in seen)


def test_the_seed_document_itself_maps(seed_doc: bytes, tmp_path: Path) -> None:
    path = tmp_path / "seed.xml"
    path.write_bytes(seed_doc)
    seen = list(outcomes(path))
    assert "rows" in seen and set(seen) - {"rows"}  # both outcomes are exercised
