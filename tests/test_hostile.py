"""Hostile and broken inputs through `bench run`: each has a stated outcome, none a traceback.

Decisions (see also the docstring of migrator/reader.py):

==============================  =============================================================
input                           outcome
==============================  =============================================================
XXE, file or network            exit 0; nothing read or fetched; "a&x;b" kept as literal text
external DTD (file, network)    exit 0; not loaded, no connection attempted
billion laughs                  exit 1: "entity expansion refused", file:line, in < 10 s
invalid UTF-8, NUL byte         exit 1: malformed XML, file:line; earlier records committed
declared UTF-16, bytes UTF-8    exit 1: malformed XML + "the file declares encoding UTF-16"
declared Latin-1, bytes UTF-8   exit 0: read as declared (undetectable: every byte is Latin-1)
truncated file                  exit 1: "Premature end of data", earlier records committed
50 MB text node                 exit 1: "larger than the parser's 10 MB safety limit";
                                huge_tree stays off (it would lift every limit at once)
10,000-deep nesting             exit 1: "nested deeper than 256 levels"
empty file                      exit 1: "the file is empty (0 bytes)"
file without records            exit 0: 0 records, reconciled
duplicate record keys           quarantined as duplicate_key, within and across batches
                                and across a resume
quotes, ; and reserved words    quoted identifiers round-trip on SQLite, PostgreSQL, MariaDB
in table/column names
CLI values out of range         exit 2 naming the option
==============================  =============================================================
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bench.cli import app
from migrator import (
    EngineConfig,
    expand_inputs,
    migrate,
    open_target,
    parse_mapping,
    reconcile,
)
from migrator.targets.sqlite import SQLiteConnection

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

REC = ('<order id="{k}" status="new" currency="EUR"><created>2024-01-02T03:04:05</created>'
       '<orderDate>2024-01-02</orderDate><customer id="7"><firstName>A</firstName>'
       '<lastName>B</lastName><email>a@b.c</email></customer><shipping><address>'
       '<country>DE</country></address></shipping><totals><subtotal>1.00</subtotal>'
       '<tax>0.10</tax><total>1.10</total></totals><note>{note}</note></order>\n')


def rec(k: int, note: str = "n") -> str:
    return REC.format(k=k, note=note)


def run(tmp_path: Path, name: str, data: bytes | str, *extra: str) -> tuple[Result, Any]:
    """`bench run --json` on one file; returns the CLI result and the parsed summary."""
    f = tmp_path / f"{name}.xml"
    if isinstance(data, str):
        data = data.encode("utf-8")
    f.write_bytes(data)
    db = tmp_path / f"{name}.db"
    result = cli.invoke(app, ["run", "-i", str(f), "--target", f"sqlite:{db}",
                              "--out", str(tmp_path / f"out-{name}"), "--json", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def notes(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT note FROM orders ORDER BY order_id")]


def one_error(doc: Any, path: Path, line: int, *words: str) -> str:
    assert doc is not None
    assert len(doc["errors"]) == 1, doc["errors"]
    err = doc["errors"][0]
    assert "\n" not in err
    assert err.startswith(f"{path}:{line}: malformed XML: "), err
    for w in words:
        assert w in err, err
    assert doc["reconciliation"]["ok"]
    return str(err)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP port that records every connection made to it (none must be)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    hits: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(conn.recv(200).decode("latin-1"))
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], hits
    finally:
        stop.set()
        t.join()
        srv.close()


# ---- entities, DTDs, the network ----------------------------------------------------------------
def test_xxe_file_entity_is_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-42")
    doc_text = (f'<?xml version="1.0"?>\n<!DOCTYPE orders [<!ENTITY x SYSTEM '
                f'"file://{secret}">]>\n<orders>{rec(1, "a&x;b")}</orders>')
    result, doc = run(tmp_path, "xxe", doc_text)
    assert result.exit_code == 0, result.output
    assert doc["inserted"] == 1
    assert notes(tmp_path / "xxe.db") == ["a&x;b"]  # literal, never expanded
    for f in tmp_path.rglob("*"):
        if f.is_file() and f != secret:
            assert b"TOPSECRET" not in f.read_bytes(), f


@pytest.mark.parametrize("kind", ["entity", "dtd", "parameter-entity"])
def test_no_network_access_for_entities_or_dtds(tmp_path: Path, listener: Any,
                                                kind: str) -> None:
    port, hits = listener
    url = f"http://127.0.0.1:{port}/evil"
    head = {"entity": f'<!DOCTYPE orders [<!ENTITY x SYSTEM "{url}">]>',
            "dtd": f'<!DOCTYPE orders SYSTEM "{url}.dtd">',
            "parameter-entity": f'<!DOCTYPE orders [<!ENTITY % p SYSTEM "{url}"> %p;]>'}[kind]
    body = rec(1, "&x;" if kind == "entity" else "n")
    result, doc = run(tmp_path, kind, f'<?xml version="1.0"?>\n{head}\n<orders>{body}</orders>')
    time.sleep(0.2)
    assert hits == []
    assert result.exit_code == 0, result.output
    assert doc["inserted"] == 1


def test_external_dtd_file_is_not_loaded(tmp_path: Path) -> None:
    dtd = tmp_path / "defaults.dtd"
    dtd.write_text('<!ATTLIST order status CDATA "from-dtd">')  # would supply a default
    body = rec(1).replace(' status="new"', "")
    result, doc = run(tmp_path, "dtd",
                      f'<?xml version="1.0"?>\n<!DOCTYPE orders SYSTEM "{dtd}">\n'
                      f"<orders>{body}{rec(2)}</orders>")
    assert result.exit_code == 0, result.output
    # Without the DTD the status attribute is missing: the record is quarantined, not fed
    # a default from a file the parser should never open.
    assert (doc["inserted"], doc["quarantined"]) == (1, 1)


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    ents = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    t0 = time.perf_counter()
    result, doc = run(tmp_path, "lol", f'<?xml version="1.0"?>\n<!DOCTYPE orders [{ents}]>\n'
                                       f'<orders>{rec(1, "&l9;")}</orders>')
    assert time.perf_counter() - t0 < 10
    assert result.exit_code == 1
    one_error(doc, tmp_path / "lol.xml", 1, "entity expansion refused")


# ---- encodings and bytes ------------------------------------------------------------------------
def test_invalid_utf8_stops_the_file_at_its_line(tmp_path: Path) -> None:
    data = ("<orders>\n" + rec(1) + rec(2, "BAD")).encode() + b"</orders>"
    data = data.replace(b"BAD", b"\xff\xfe")
    result, doc = run(tmp_path, "utf8", data)
    assert result.exit_code == 1
    one_error(doc, tmp_path / "utf8.xml", 3, "Invalid bytes in character encoding")
    assert doc["inserted"] == 1  # the record before the bad bytes is committed
    assert "malformed XML" in result.output


def test_wrong_declared_multibyte_encoding_gets_a_hint(tmp_path: Path) -> None:
    text = f'<?xml version="1.0" encoding="UTF-16"?>\n<orders>{rec(1)}</orders>'
    result, doc = run(tmp_path, "enc", text.encode("utf-8"))
    assert result.exit_code == 1
    one_error(doc, tmp_path / "enc.xml", 1, 'the file declares encoding "UTF-16"')


def test_wrong_declared_single_byte_encoding_is_read_as_declared(tmp_path: Path) -> None:
    text = f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<orders>{rec(1, "é")}</orders>'
    result, _doc = run(tmp_path, "latin", text.encode("utf-8"))
    assert result.exit_code == 0, result.output
    assert notes(tmp_path / "latin.db") == ["é".encode().decode("latin-1")]


def test_nul_byte_is_malformed_xml_in_one_line(tmp_path: Path) -> None:
    data = ("<orders>\n" + rec(1) + rec(2, "b")).encode().replace(b"<note>b", b"<note>b\x00")
    result, doc = run(tmp_path, "nul", data + b"</orders>")
    assert result.exit_code == 1
    one_error(doc, tmp_path / "nul.xml", 3, "Char 0x0")
    assert doc["inserted"] == 1


def test_truncated_file_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    text = "<orders>\n" + rec(1) + rec(2) + rec(3)[:70]
    result, doc = run(tmp_path, "cut", text)
    assert result.exit_code == 1
    one_error(doc, tmp_path / "cut.xml", 4, "Premature end of data")
    assert doc["inserted"] == 2


def test_50mb_text_node_is_refused_with_the_limit_named(tmp_path: Path) -> None:
    text = "<orders>\n" + rec(1) + rec(2, "x" * (50 * 1024 * 1024)) + rec(3) + "</orders>"
    result, doc = run(tmp_path, "big", text)
    assert result.exit_code == 1
    one_error(doc, tmp_path / "big.xml", 3, "10 MB safety limit")
    assert doc["inserted"] == 1


def test_10000_deep_nesting_is_refused(tmp_path: Path) -> None:
    deep = "<a>" * 10_000 + "</a>" * 10_000
    result, doc = run(tmp_path, "deep", f"<orders>\n{rec(1)}{rec(2, deep)}</orders>")
    assert result.exit_code == 1
    one_error(doc, tmp_path / "deep.xml", 3, "nested deeper than 256 levels")
    assert doc["inserted"] == 1


def test_empty_file(tmp_path: Path) -> None:
    result, doc = run(tmp_path, "empty", b"")
    assert result.exit_code == 1
    one_error(doc, tmp_path / "empty.xml", 1, "the file is empty (0 bytes)")
    assert "empty.xml:1: malformed XML: the file is empty" in result.output.replace("\n", "")


def test_file_without_records(tmp_path: Path) -> None:
    """Zero records is an error, not a fast, reconciled run (tests/test_status.py has more)."""
    result, doc = run(tmp_path, "none", '<?xml version="1.0"?>\n<orders><other/></orders>')
    assert result.exit_code == 1, result.output
    assert doc is None and result.output.strip() == (
        f"error: no <order> elements in {tmp_path / 'none.xml'} (its root is <orders>): "
        "check [record].element in the mapping")
    assert not (tmp_path / "out-none").exists() and not (tmp_path / "none.db").exists()


# ---- duplicate keys -----------------------------------------------------------------------------
def _dup_input(folder: Path) -> Path:
    """Keys 1..40, then 5, 25, 39 again (in a later batch), then 41, and 41 again (same batch)."""
    folder.mkdir()
    keys = [*range(1, 41), 5, 25, 39, 41, 41]
    (folder / "d.xml").write_text("<orders>\n" + "".join(rec(k) for k in keys) + "</orders>")
    return folder


def _dup_check(db: Path) -> None:
    with sqlite3.connect(db) as con:
        assert [r[0] for r in con.execute("SELECT order_id FROM orders ORDER BY 1")] == \
            list(range(1, 42))
        q = sorted(con.execute("SELECT record_key, reason_code, line FROM mb_quarantine"))
    assert [(k, c) for k, c, _ in q] == [("25", "duplicate_key"), ("39", "duplicate_key"),
                                         ("41", "duplicate_key"), ("5", "duplicate_key")]
    assert sorted(line for *_, line in q) == [42, 43, 44, 46]


@pytest.mark.parametrize("batch", [1, 7, 1000])
@pytest.mark.parametrize("pipeline", ["off", "process"])
def test_duplicate_keys_quarantined_within_and_across_batches(tmp_path: Path, batch: int,
                                                              pipeline: str) -> None:
    src = _dup_input(tmp_path / "in")
    target = open_target(f"sqlite:{tmp_path / 'd.db'}")
    from migrator import default_mapping

    # (process: the inserter converts every batch, then finds the duplicates one by one)
    stats = migrate(expand_inputs([str(src)]), target, default_mapping(),
                    EngineConfig(batch_size=batch, pipeline=pipeline,
                                 convert_side="inserter" if pipeline == "process" else "auto"))
    assert (stats.inserted, stats.quarantined) == (41, 4)
    _dup_check(tmp_path / "d.db")
    assert reconcile(target, default_mapping()).ok


def test_duplicate_keys_quarantined_across_a_resume(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator import default_mapping

    src = _dup_input(tmp_path / "in")
    target = open_target(f"sqlite:{tmp_path / 'd.db'}")
    real = SQLiteConnection.commit
    calls = {"n": 0}

    def commit(self: SQLiteConnection) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # schema, then batches 1-3 committed; batch 4 interrupted
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(SQLiteConnection, "commit", commit)
    with pytest.raises(KeyboardInterrupt):
        migrate(expand_inputs([str(src)]), target, default_mapping(), EngineConfig(batch_size=10))
    monkeypatch.undo()
    assert reconcile(target, default_mapping()).records_read == 30
    migrate(expand_inputs([str(src)]), target, default_mapping(), EngineConfig(batch_size=10),
            resume=True)
    _dup_check(tmp_path / "d.db")


# ---- hostile identifiers in the mapping ----------------------------------------------------------
HOSTILE_MAPPING = '''
version = 1
[record]
element = "order"
key = { path = "@id", type = "bigint" }

[[tables]]
name = 'or"der`s; DROP TABLE x; --'
key_column = "select"
[tables.columns]
"a'b" = { path = "@status", type = "str(20)", required = true }
"c?d" = { path = "@currency", type = "str(3)" }
"e%s" = { path = "note", type = "text" }
"from" = { path = "customer/email", type = "str(120)" }
"[x]" = { path = "customer/@id", type = "int" }

[[tables]]
name = "table"
rows = "lines/line"
key_column = "order"
position_column = "group"
[tables.columns]
"user" = { path = "@sku", type = "str(40)" }
'''


def _hostile_rows(spec: str, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    mapping = parse_mapping(HOSTILE_MAPPING, source="hostile.toml")
    f = tmp_path / "h.xml"
    body = rec(7, "it's; DROP TABLE orders; -- ?%s").replace(
        "</order>", '<lines><line sku="a\'b"/><line sku="c"/></lines></order>')
    f.write_text(f"<orders>{body}{rec(8, 'x')}</orders>")
    target = open_target(spec)
    stats = migrate(expand_inputs([str(f)]), target, mapping, EngineConfig(batch_size=1))
    assert (stats.inserted, stats.quarantined, stats.errors) == (2, 0, [])
    assert reconcile(target, mapping).ok
    conn = target.connect()
    try:
        q = conn.dialect.quote
        t0, t1 = mapping.tables
        cols0 = ", ".join(q(c) for c in t0.column_names)
        ref = conn.dialect.table_ref
        rows0 = conn.query(f"SELECT {cols0} FROM {ref(t0.name)} ORDER BY {q(t0.key_column)}")
        rows1 = conn.query(f"SELECT {q('order')}, {q('group')}, {q('user')} FROM {ref(t1.name)} "
                           f"ORDER BY 1, 2")
    finally:
        conn.close()
    return [tuple(r) for r in rows0], [tuple(r) for r in rows1]


EXPECTED_ROWS = ([(7, "new", "EUR", "it's; DROP TABLE orders; -- ?%s", "a@b.c", 7),
                  (8, "new", "EUR", "x", "a@b.c", 7)],
                 [(7, 1, "a'b"), (7, 2, "c")])


def test_hostile_identifiers_round_trip_on_sqlite(tmp_path: Path) -> None:
    assert _hostile_rows(f"sqlite:{tmp_path / 'h.db'}", tmp_path) == EXPECTED_ROWS
    with sqlite3.connect(tmp_path / "h.db") as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert 'or"der`s; DROP TABLE x; --' in names and "x" not in names


@pytest.mark.postgres
def test_hostile_identifiers_round_trip_on_postgresql(tmp_path: Path, postgres: Any) -> None:
    got = _hostile_rows("odbc:" + postgres.odbc("Protocol=7.4-1"), tmp_path)
    assert got == EXPECTED_ROWS


@pytest.mark.mariadb
def test_hostile_identifiers_round_trip_on_mariadb(tmp_path: Path, mariadb: Any) -> None:
    got = _hostile_rows("odbc:" + mariadb.odbc(), tmp_path)
    assert got == EXPECTED_ROWS


def test_identifiers_the_mapping_refuses() -> None:
    from migrator import MappingError

    for bad in ('name = "a\\u0000b"', f"name = '{'x' * 64}'", "name = 'mb_checkpoint'",
                "name = '  '"):
        text = HOSTILE_MAPPING.replace("name = 'or\"der`s; DROP TABLE x; --'", bad, 1)
        with pytest.raises(MappingError, match=r"tables\[0\]\.name"):
            parse_mapping(text, source="bad.toml")


# ---- CLI values out of range --------------------------------------------------------------------
@pytest.mark.parametrize(("args", "option"), [
    (["run", "-i", "{d}", "--batch-size", "0"], "--batch-size"),
    (["run", "-i", "{d}", "--batch-size", "-5"], "--batch-size"),
    (["run", "-i", "{d}", "--batch-size", "ten"], "--batch-size"),
    (["run", "-i", "{d}", "--workers", "0"], "--workers"),
    (["run", "-i", "{d}", "--queue-depth", "0"], "--queue-depth"),
    (["run", "-i", "{d}", "--pipeline", "rocket"], "--pipeline"),
    (["generate", "--out", "{d}/g", "--records", "0"], "--records"),
    (["generate", "--out", "{d}/g", "--files", "-1"], "--files"),
    (["generate", "--out", "{d}/g", "--invalid-rate", "1.5"], "--invalid-rate"),
    (["generate", "--out", "{d}/g", "--invalid-rate", "nan"], "--invalid-rate"),
])
def test_cli_values_out_of_range_are_usage_errors(tmp_path: Path, args: list[str],
                                                  option: str) -> None:
    argv = [a.replace("{d}", str(tmp_path)) for a in args]
    result = cli.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output


def test_absurd_worker_count_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.runner

    def must_not_run(*a: Any, **k: Any) -> Any:
        raise AssertionError("the run started with --workers 100000")

    monkeypatch.setattr(bench.runner, "execute_run", must_not_run)
    monkeypatch.setattr(bench.cli.run, "execute_run", must_not_run)
    result = cli.invoke(app, ["run", "-i", str(tmp_path), "--workers", "100000"])
    assert result.exit_code == 2, result.output
    assert "--workers" in result.output


# ---- the same rules for a file cut into record ranges (--workers N on one file) -----------------
def _range_records(tmp_path: Path, text: str) -> list[Any]:
    from migrator.partition import plan_units

    f = tmp_path / "ranges.xml"
    f.write_text(text)
    units = plan_units(expand_inputs([str(f)]), 2, "order")
    assert len(units) == 2
    out: list[Any] = []
    for unit in units:
        try:
            for _, elem in unit.open_records("order"):
                out.append(elem.findtext("note"))
        except Exception as exc:
            out.append(exc)
    return out


def test_record_ranges_keep_entity_references_and_explain_limits(tmp_path: Path) -> None:
    head = '<?xml version="1.0"?>\n<!DOCTYPE orders [<!ENTITY x "X">]>\n<orders>\n'
    body = "".join(rec(k, "a&x;b") for k in range(1, 41))
    assert _range_records(tmp_path, head + body + "</orders>") == ["a&x;b"] * 40
    # The deep record comes first: it is most of the file, so the cut lands after it and the
    # first range is the one that fails, with the explained limit; the second still reads.
    deep = "<a>" * 10_000 + "</a>" * 10_000
    got = _range_records(tmp_path, "<orders>\n" + rec(0, deep)
                         + "".join(rec(k) for k in range(1, 41)) + "</orders>")
    assert "nested deeper than 256 levels" in str(got[0])
    assert len(got) == 41
