"""The backend suite: the same tests against every live ODBC dialect.

PostgreSQL (psqlODBC defaults, and tuned: ``UseServerSidePrepare=0;Protocol=7.4-1``),
MariaDB and SQLite through their ODBC drivers always; SQL Server when ``BENCH_MSSQL``
holds a connection string. Every insert method that a backend offers must store exactly
the same table contents (all rows compared, not counts); refused methods must refuse with
a reason, never crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from backend_rows import adapt, canonical_rows, column_types, default_rows

from migrator.errors import TargetError
from migrator.mapping import Mapping, parse_mapping
from migrator.targets.base import (
    CHECKPOINT_TABLE,
    QUARANTINE_TABLE,
    RUN_TABLE,
    UNIT_ID_CHARS,
    IntegrityViolation,
    Namespace,
    ensure_schema,
    table_exists,
    unit_key,
)
from migrator.targets.odbc import OdbcConnection, OdbcError, OdbcTarget

BACKENDS = [
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("postgresql-tuned", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
    pytest.param("sqlite-odbc", marks=[pytest.mark.odbc]),
    pytest.param("mssql", marks=[pytest.mark.mssql, pytest.mark.odbc,
                                 pytest.mark.skipif(not os.environ.get("BENCH_MSSQL"),
                                                    reason="BENCH_MSSQL is not set")]),
]
EXPECTED_DIALECT = {"postgresql": "postgresql", "postgresql-tuned": "postgresql",
                    "mariadb": "mysql", "sqlite-odbc": "sqlite", "mssql": "mssql"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def conn_string(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres").odbc())
    if backend == "postgresql-tuned":
        return str(request.getfixturevalue("postgres").odbc(
            "UseServerSidePrepare=0;Protocol=7.4-1"))
    if backend == "mariadb":
        return str(request.getfixturevalue("mariadb").odbc())
    if backend == "sqlite-odbc":
        return str(request.getfixturevalue("sqlite_odbc"))
    request.getfixturevalue("pyodbc_module")
    return os.environ["BENCH_MSSQL"].removeprefix("odbc:")


# The tables these tests create and drop themselves carry a prefix of their own: the
# servers are shared with the `bench run` tests, which refuse tables they did not create.
TEST_NAMESPACE = Namespace(prefix="backend_")


@pytest.fixture
def conn(conn_string: str) -> Iterator[OdbcConnection]:
    target = OdbcTarget(conn_string)
    target.set_namespace(TEST_NAMESPACE)
    c = target.connect()
    ensure_schema(c)
    yield c
    c.rollback()
    c.close()


def recreate(c: OdbcConnection, mapping: Mapping) -> None:
    d = c.dialect
    for table in reversed(mapping.tables):
        c.execute(d.drop_table_sql(table.name))
    for table in mapping.tables:
        for sql in d.create_table_sql(mapping, table):
            c.execute(sql)
    c.commit()


def read_table(c: OdbcConnection, mapping: Mapping, name: str) -> list[tuple[Any, ...]]:
    t = mapping.table(name)
    q = c.dialect.quote
    cols = ", ".join(q(n) for n in t.column_names)
    rows = c.query(f"SELECT {cols} FROM {c.dialect.table_ref(name)}")
    return canonical_rows(rows, column_types(mapping, t))


def test_dialect_and_facts_come_from_the_server(conn: OdbcConnection, backend: str) -> None:
    info = conn.target.info()
    assert info.dialect == EXPECTED_DIALECT[backend] == conn.dialect.name
    assert info.dbms_name and info.driver_name and info.driver_version
    assert "***" in info.display or "pwd" not in conn.target.connection_string.lower()
    pwd = conn.target.params.get_any("Pwd", "Password")
    if pwd:
        assert pwd not in info.display and pwd not in repr(conn.target.params)
    sid = conn.session_id()
    if backend == "sqlite-odbc":
        assert sid == ""
    else:
        assert sid.isdigit()
        assert conn.session_id() == sid  # stable within one session


def test_every_method_stores_identical_contents(conn: OdbcConnection) -> None:
    mapping, raw = default_rows(records=12)
    adapters = conn.dialect.value_adapters()
    expected = {t.name: canonical_rows(raw[t.name], column_types(mapping, t))
                for t in mapping.tables}
    tried = []
    for m in conn.dialect.insert_methods():
        if not m.available:
            with pytest.raises(TargetError, match="refused") as exc:
                conn.insert_rows(mapping.root.name, mapping.root.column_names,
                                 raw[mapping.root.name][:1], m.name)
            assert m.reason in str(exc.value)
            continue
        recreate(conn, mapping)
        conn.begin()
        for t in mapping.tables:
            rows = adapt(raw[t.name], column_types(mapping, t), adapters)
            conn.insert_rows(t.name, t.column_names, rows, m.name)
        conn.commit()
        for t in mapping.tables:
            assert read_table(conn, mapping, t.name) == expected[t.name], (m.name, t.name)
        conn.commit()
        tried.append(m.name)
    assert {"executemany", "values"} <= set(tried)
    if conn.dialect.name == "mysql" and "maodbc" in conn.target.facts().driver_name.lower():
        assert "fast" not in tried  # refused: loses rows (FAST_REFUSED_MARIADB)
    assert conn.dialect.resolve_method("auto") != "auto"


def test_bookkeeping_tables_are_created(conn: OdbcConnection) -> None:
    d = conn.dialect
    for name in (RUN_TABLE, CHECKPOINT_TABLE, QUARANTINE_TABLE):
        conn.execute(d.drop_table_sql(name))
    for sql in d.bookkeeping_sql():
        conn.execute(sql)
    conn.commit()
    for name in (RUN_TABLE, CHECKPOINT_TABLE, QUARANTINE_TABLE):
        assert table_exists(conn, name), name
    assert not table_exists(conn, "no_such_table")
    q = d.quote
    ref = d.table_ref
    # Unit ids are paths (+ a byte range): deep folders make them longer than any server's
    # index-key limit (SQL Server 450 characters, InnoDB 768), so the key is a digest.
    folder = "data/ørders-😀/" + "d" * 3800
    units = [f"{folder}/a.xml#0-99999999", f"{folder}/b.xml#0-99999999"]
    assert all(len(u.encode("utf-16-le")) // 2 <= UNIT_ID_CHARS for u in units)
    conn.insert_rows(QUARANTINE_TABLE, ["unit", "file", "line", "record_key", "reason_code",
                                        "reason"],
                     [(units[0], units[0].split("#")[0], 7, None, "too_long", "x" * 4000),
                      (units[1], "b.xml", 8, "k" * 5000, "duplicate_key", "y" * 20_000)],
                     None)
    for i, unit in enumerate(units):
        conn.execute(f"INSERT INTO {ref(CHECKPOINT_TABLE)} (unit_key, unit, records_done, "
                     f"inserted, quarantined, finished, source_bytes) "
                     f"VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [unit_key(unit), unit, 1000, 3500 + i, 2, 1, 123])
    conn.commit()
    got = conn.query(f"SELECT {q('unit')}, {q('inserted')} FROM {ref(CHECKPOINT_TABLE)} "
                     f"WHERE unit_key = ?", [unit_key(units[1])])
    assert got == [(units[1], 3501)]
    # Keys and reasons of any length are kept whole (text columns, not VARCHAR(n)).
    assert sorted(conn.query(f"SELECT {q('file')}, record_key, reason "
                             f"FROM {ref(QUARANTINE_TABLE)}"), key=lambda r: str(r[0])) == \
        [("b.xml", "k" * 5000, "y" * 20_000), (units[0].split("#")[0], None, "x" * 4000)]


def test_rollback_discards_the_batch(conn: OdbcConnection) -> None:
    mapping, raw = default_rows(records=3)
    recreate(conn, mapping)
    root = mapping.root
    rows = adapt(raw[root.name], column_types(mapping, root), conn.dialect.value_adapters())
    conn.begin()
    conn.insert_rows(root.name, root.column_names, rows, "auto")
    conn.rollback()
    assert read_table(conn, mapping, root.name) == []


@pytest.mark.parametrize("method", ["auto", "values", "executemany"])
def test_duplicate_key_is_an_integrity_violation(conn: OdbcConnection, method: str) -> None:
    """The engine retries a batch record by record on IntegrityViolation: every method
    (COPY included) must raise exactly that, as one line."""
    mapping, raw = default_rows(records=1)
    recreate(conn, mapping)
    root = mapping.root
    rows = adapt(raw[root.name], column_types(mapping, root), conn.dialect.value_adapters())
    conn.insert_rows(root.name, root.column_names, rows, method)
    conn.commit()
    with pytest.raises(IntegrityViolation) as exc:
        conn.insert_rows(root.name, root.column_names, rows, method)
    assert "\n" not in str(exc.value)
    conn.rollback()


def test_savepoints_isolate_one_bad_record(conn: OdbcConnection) -> None:
    mapping, raw = default_rows(records=2)
    recreate(conn, mapping)
    root = mapping.root
    rows = adapt(raw[root.name], column_types(mapping, root), conn.dialect.value_adapters())
    conn.insert_rows(root.name, root.column_names, rows[:1], "auto")
    conn.savepoint("mb_record")
    with pytest.raises(IntegrityViolation):
        conn.insert_rows(root.name, root.column_names, rows[:1], "auto")
    conn.rollback_to("mb_record")
    conn.savepoint("mb_record")
    conn.insert_rows(root.name, root.column_names, rows[1:], "auto")
    conn.release("mb_record")
    conn.commit()
    assert [r[0] for r in read_table(conn, mapping, root.name)] == [r[0] for r in rows]


def test_connection_errors_are_one_line_and_redacted(conn_string: str) -> None:
    from migrator.connstr import parse_connection_string, with_params

    params = parse_connection_string(conn_string)
    if "Port" not in params:
        pytest.skip("no server to misdirect")
    bad = with_params(conn_string, Port="1", Pwd="s3cr3t-value")
    with pytest.raises(OdbcError) as exc:
        OdbcTarget(bad).connect()
    assert "s3cr3t-value" not in str(exc.value) and "\n" not in str(exc.value)
    assert "cannot connect to odbc:" in str(exc.value)


WIDE_COLUMNS = 400


@pytest.fixture
def wide_mapping() -> Mapping:
    cols = "\n".join(f'c{i:03d} = {{ path = "c{i:03d}", type = "int" }}'
                     for i in range(WIDE_COLUMNS - 1))
    return parse_mapping(f"""
[record]
element = "r"
key = {{ path = "@id", type = "bigint" }}
[[tables]]
name = "wide_t"
key_column = "id"
[tables.columns]
{cols}
""")


def test_values_chunks_a_wide_table_under_the_parameter_cap(
        conn: OdbcConnection, wide_mapping: Mapping) -> None:
    """400 columns × enough rows that one statement would exceed every cap."""
    d = conn.dialect
    per = d.values_rows_per_statement(WIDE_COLUMNS, 10_000)
    assert per * WIDE_COLUMNS <= d.param_budget() <= d.max_params
    assert (per + 1) * WIDE_COLUMNS > d.param_budget() or per == d.values_max_rows
    recreate(conn, wide_mapping)
    n = 3 * per + 7  # several full statements and a partial one
    rows = [(k, *range(k, k + WIDE_COLUMNS - 1)) for k in range(n)]
    t = wide_mapping.root
    conn.target.values_rows = 10_000  # ask for more than the cap allows
    conn.insert_rows(t.name, t.column_names, rows, "values")
    conn.commit()
    cols = ", ".join(d.quote(c) for c in t.column_names)
    got = conn.query(f"SELECT {cols} FROM {d.table_ref(t.name)} ORDER BY 1")
    assert [tuple(r) for r in got] == rows


#: Text whose first UTF-16 unit ends in a byte 0xD8..0xDB (what a high surrogate starts
#: with): MariaDB Connector/ODBC 3.1, given such text as UTF-16, dropped a character per
#: such unit without an error.
SURROGATE_LOOKALIKES = ["Øvergaard", "Ùa", "Úb", "Ûc", "ØØØØ", "付款", "Ø", "aØ", "😀Ø"]


def test_text_starting_like_a_surrogate_is_stored_whole(conn: OdbcConnection) -> None:
    mapping = parse_mapping("""
[record]
element = "r"
key = { path = "@id", type = "int" }
[[tables]]
name = "text_probe"
key_column = "id"
[tables.columns]
s = { path = "s", type = "str(40)" }
""")
    expected = [(i, text) for i, text in enumerate(SURROGATE_LOOKALIKES)]
    for m in conn.dialect.insert_methods():
        if not m.available:
            continue
        recreate(conn, mapping)
        conn.begin()
        conn.insert_rows("text_probe", ["id", "s"], expected, m.name)
        conn.commit()
        d = conn.dialect
        got = conn.query(f"SELECT {d.quote('id')}, {d.quote('s')} "
                         f"FROM {d.table_ref('text_probe')} ORDER BY 1")
        conn.commit()
        assert [(int(i), s) for i, s in got] == expected, m.name


def test_unknown_method_lists_the_valid_ones(conn: OdbcConnection) -> None:
    with pytest.raises(TargetError, match="executemany, fast, values, copy"):
        conn.insert_rows("x", ["a"], [(1,)], "bulk")
