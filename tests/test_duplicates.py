"""Duplicate keys: the record that comes first in input order is kept, whatever the run.

The input holds keys repeated across files, across the byte ranges ``--workers`` cuts a file
into, inside one batch and on one line (records written side by side, so a range can start
in the middle of a line); later copies carry other values and another number of child rows,
so the stored winner is visible. Every configuration — 1, 2 or 4 workers, pipeline off or
process, a run SIGKILLed and resumed — must leave identical rows in every table (full sorted
contents, the position column included) and an identical quarantine, and the winner must be
the first copy in an independent lxml reading of the files.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import bench_proc, committed_records, fault_env
from lxml import etree
from typer.testing import CliRunner

from bench.cli import app
from migrator import (
    EngineConfig,
    ParallelCoordinator,
    RunStats,
    expand_inputs,
    load_mapping,
    open_target,
    prepare_target,
    reconcile,
)
from migrator.duplicates import InputOrder
from migrator.mapping import Mapping, parse_mapping
from migrator.partition import RangeUnit, plan_units
from migrator.producer import BatchProducer
from migrator.rowmap import RecordMapper
from migrator.writer import BatchWriter

MAPPING_TOML = """
[record]
element = "item"
key = { path = "@id", type = "bigint" }

[[tables]]
name = "dup_items"
key_column = "item_id"
[tables.columns]
name = { path = "name", type = "str(40)", required = true }
copy = { path = "@copy", type = "int" }

[[tables]]
name = "dup_item_tags"
rows = "tags/tag"
key_column = "item_id"
position_column = "tag_no"
[tables.columns]
tag = { path = ".", type = "str(20)", required = true }
"""
BATCH = 16
cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


# ---- the input ------------------------------------------------------------------------------
def _item(key: int, copy: int, *, valid: bool = True, split_tag: bool = False) -> str:
    name = "" if not valid else f"<name>item {key} copy {copy}</name>"
    tags = "".join(f"<tag>k{key}c{copy}t{t}</tag>" for t in range([1, 3, 0, 2][copy % 4]))
    head = f'<item\n  id="{key}" copy="{copy}">' if split_tag else \
        f'<item id="{key}" copy="{copy}">'
    return f"{head}{name}<tags>{tags}</tags></item>"


def write_input(folder: Path, seed: int = 5) -> Path:
    """Two files (``a.xml`` comes first): pretty-printed records, a long line of records
    side by side, start tags over two lines; about one record in five repeats an earlier
    key (some three times), and some first copies are invalid (so a later copy wins).
    ``BATCH`` does not divide the number of records in b.xml."""
    r = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    copies: dict[int, int] = {}
    next_key = [1]

    def record() -> str:
        if copies and r.random() < 0.2:
            key = r.choice(sorted(copies))
        else:
            key = next_key[0]
            next_key[0] += 1
        copy = copies.get(key, -1) + 1
        copies[key] = copy
        return _item(key, copy, valid=r.random() > 0.04, split_tag=r.random() < 0.05)

    a = ["<?xml version='1.0' encoding='UTF-8'?>", "<items>"]
    a += [f"  {record()}" for _ in range(120)]
    a.append("  " + "".join(record() for _ in range(330)))  # one long line
    a += [f"  {record()}" for _ in range(150)]
    a.append("</items>")
    (folder / "a.xml").write_text("\n".join(a) + "\n", encoding="utf-8")
    b = ["<?xml version='1.0' encoding='UTF-8'?>", "<items>"]
    b += [f"  {record()}" for _ in range(200)]
    # The first keys of a.xml once more at the end of b.xml: read in argument order
    # (--input b.xml --input a.xml) one batch holds both copies, the later one first.
    b += [f"  {_item(key, copies[key] + 1)}" for key in range(1, 6)]
    b.append("</items>")
    (folder / "b.xml").write_text("\n".join(b) + "\n", encoding="utf-8")
    return folder


@dataclass
class Expected:
    """What an independent reading of the files says the target must hold."""

    items: list[tuple[Any, ...]]  # (item_id, name, copy)
    tags: list[tuple[Any, ...]]  # (item_id, tag_no, tag)
    quarantine: list[tuple[str, int, str, str]]  # (file name, line, key, reason code)
    records: int


def read_independently(folder: Path) -> Expected:
    """Files in path order, records in document order (lxml); a record without a name is
    invalid; the first valid record of each key wins, the later ones are duplicates."""
    items, tags, quarantine = [], [], []
    seen: set[int] = set()
    records = 0
    for path in sorted(folder.glob("*.xml")):
        for _, e in etree.iterparse(str(path), tag="item"):
            records += 1
            key = int(e.get("id"))
            name = e.findtext("name")
            where = (path.name, e.sourceline, str(key))
            if not name:
                quarantine.append((*where, "missing_required"))
            elif key in seen:
                quarantine.append((*where, "duplicate_key"))
            else:
                seen.add(key)
                items.append((key, name, int(e.get("copy"))))
                tags += [(key, i, t.text) for i, t in enumerate(e.iter("tag"), start=1)]
    return Expected(sorted(items), sorted(tags), sorted(quarantine), records)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_input(tmp_path_factory.mktemp("dups"))


@pytest.fixture(scope="module")
def mapping(data: Path) -> Mapping:
    path = data.parent / "dups.toml"
    path.write_text(MAPPING_TOML)
    return load_mapping(path)


@pytest.fixture(scope="module")
def expected(data: Path) -> Expected:
    exp = read_independently(data)
    dups = [q for q in exp.quarantine if q[3] == "duplicate_key"]
    assert len(dups) > 100 and len(exp.quarantine) > len(dups)  # the input does its job
    return exp


# ---- reading the target ---------------------------------------------------------------------
@dataclass
class Contents:
    tables: dict[str, list[tuple[Any, ...]]]  # every column, sorted
    quarantine: list[tuple[str, int, str, str, str]]  # file name, line, key, code, reason

    def items(self) -> list[tuple[Any, ...]]:
        return [r[:3] for r in self.tables["dup_items"]]


def _plain(v: Any) -> Any:
    return int(v) if isinstance(v, int) else v


def read_target(spec: str, mapping: Mapping) -> Contents:
    rec = reconcile(open_target(spec), mapping)
    assert rec.ok, rec.problems
    conn = open_target(spec).connect()
    try:
        q, ref = conn.dialect.quote, conn.dialect.table_ref
        tables = {}
        for t in mapping.tables:
            cols = [*t.column_names, *(["mb_position"] if t.is_root else [])]
            rows = conn.query(f"SELECT {', '.join(q(c) for c in cols)} FROM {ref(t.name)}")
            tables[t.name] = sorted(tuple(_plain(v) for v in r) for r in rows)
        quarantine = sorted(
            (Path(str(f)).name, int(line), str(k), str(c), str(reason)) for f, line, k, c, reason
            in conn.query("SELECT file, line, record_key, reason_code, reason "
                          f"FROM {ref('mb_quarantine')}"))
        # Every unit's own counts add up: an evicted record moved from inserted to
        # quarantined in the checkpoint of the unit that read it.
        per_unit = conn.query("SELECT unit, records_done, inserted, quarantined "
                              f"FROM {ref('mb_checkpoint')}")
        by_unit = dict(conn.query(f"SELECT unit, COUNT(*) FROM {ref('mb_quarantine')} "
                                  "GROUP BY unit"))
    finally:
        conn.close()
    for unit, done, ins, qua in per_unit:
        assert int(done) == int(ins) + int(qua), unit
        assert int(by_unit.get(unit, 0)) == int(qua), unit
    return Contents(tables, quarantine)


def check_against_reading(got: Contents, exp: Expected) -> None:
    assert got.items() == exp.items
    assert got.tables["dup_item_tags"] == exp.tags
    assert [q[:4] for q in got.quarantine] == exp.quarantine
    # The database's own words and the rule (the runs compare them whole).
    assert all("the first in input order is kept" in q[4]
               for q in got.quarantine if q[3] == "duplicate_key")


def migrate_with(spec: str, data: Path, mapping: Mapping, workers: int, pipeline: str,
                 *, reverse: bool = False) -> None:
    """A fresh run; ``reverse``: the files given in reverse order (``--input b --input a``),
    which is read in that order but is the same input order."""
    files = sorted(str(p) for p in data.glob("*.xml"))
    config = EngineConfig(batch_size=BATCH, pipeline=pipeline)
    stats = ParallelCoordinator(open_target(spec), mapping, config, workers=workers).run(
        expand_inputs(files[::-1] if reverse else files))
    assert stats.inserted + stats.quarantined == stats.records_read
    assert not stats.errors


# ---- positions do not depend on how a file is cut ---------------------------------------------
def _positions(units: list[Any], mapping: Mapping) -> list[tuple[str, int, int, str]]:
    producer = BatchProducer(mapping, RecordMapper(mapping), 10_000)
    out = []
    for batch in producer.batches(units, {}):
        out += [(path, line, seq, uid) for uid, path, line, _, _, seq in batch.records]
    return out


def test_positions_are_the_same_whichever_way_the_files_are_cut(
        data: Path, mapping: Mapping) -> None:
    files = expand_inputs([str(data)])
    whole = _positions(files, mapping)
    assert len({p[:3] for p in whole}) == len(whole)  # a position names one record
    assert max(p[2] for p in whole) > 20  # the long line: seq counts records side by side
    for pieces in (2, 4, 7, 31):
        units = plan_units(files, pieces, mapping.record_element)
        ranges = [u for u in units if isinstance(u, RangeUnit)]
        assert ranges, pieces
        cut = _positions(units, mapping)
        assert [p[:3] for p in cut] == [p[:3] for p in whole], pieces
        # ... and every position leads back to the unit that read it.
        order = InputOrder(units)
        for path, line, seq, uid in cut:
            unit, at = order.locate(order.position(path, line, seq), mapping.record_element)
            assert (unit.id, at) == (uid, line)


def test_a_range_starting_inside_the_long_line_counts_the_records_before_it(
        data: Path, mapping: Mapping) -> None:
    files = expand_inputs([str(data)])
    inside = [u for u in plan_units(files, 31, mapping.record_element)
              if isinstance(u, RangeUnit) and u.start > 0]
    seqs = []
    for u in inside:
        stream = u.open_records(mapping.record_element)
        next(iter(stream))
        seqs.append(stream.first_seq)
    assert any(s > 0 for s in seqs) and 0 in seqs


def test_the_position_column_name_is_reserved() -> None:
    from migrator import MappingError

    bad = MAPPING_TOML.replace('copy = { path = "@copy"', 'MB_Position = { path = "@copy"')
    with pytest.raises(MappingError, match=r"tables\[0\]\.columns\.MB_Position.*reserved"):
        parse_mapping(bad, source="m.toml")


# ---- every configuration, every database ------------------------------------------------------
BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]
# (workers, pipeline, files given in reverse order)
CONFIGS = [(1, "off", False), (2, "off", False), (4, "off", False), (1, "process", True),
           (4, "process", False), (1, "off", True)]


@pytest.fixture(params=BACKENDS)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'dups.db'}"
    elif request.param == "postgresql":
        yield "odbc:" + request.getfixturevalue("postgres").odbc("Protocol=7.4-1")
    else:
        yield "odbc:" + request.getfixturevalue("mariadb").odbc()


def test_first_in_input_order_wins_whatever_the_workers_and_pipeline(
        spec: str, data: Path, mapping: Mapping, expected: Expected) -> None:
    seen: dict[tuple[int, str, bool], Contents] = {}
    for workers, pipeline, reverse in CONFIGS:
        migrate_with(spec, data, mapping, workers, pipeline, reverse=reverse)
        seen[workers, pipeline, reverse] = read_target(spec, mapping)
    first = seen[CONFIGS[0]]
    check_against_reading(first, expected)
    for config, got in seen.items():
        assert got.tables == first.tables, config
        assert got.quarantine == first.quarantine, config


# (workers, pipeline, files in reverse order, the process killed, its events counted, killed
# at the n-th, workers on --resume)
KILLS = [("4", "off", False, "mb-worker-3", "committed", 3, "1"),
         ("2", "process", False, "mb-worker-1", "commit", 4, "2"),
         ("1", "process", True, "MainProcess", "insert", 40, "2")]


def test_sigkill_and_resume_keep_the_first_in_input_order(
        spec: str, data: Path, mapping: Mapping, expected: Expected, tmp_path: Path) -> None:
    """A worker or the whole run is SIGKILLed (between batches, before a COMMIT, in the
    middle of a batch), then ``--resume`` finishes it: the same rows and quarantine as an
    uninterrupted run."""
    migrate_with(spec, data, mapping, 1, "off")
    reference = read_target(spec, mapping)
    check_against_reading(reference, expected)
    files = sorted(str(p) for p in data.glob("*.xml"))
    kills = KILLS if spec.startswith("sqlite:") else KILLS[::2]  # (servers: fewer, slower)
    for i, (workers, pipeline, reverse, victim, events, at, then) in enumerate(kills):
        args = ["run", "--target", spec, "--mapping", str(data.parent / "dups.toml"),
                "--batch-size", str(BATCH), "--pipeline", pipeline, "--no-sample"]
        inputs = [a for f in (files[::-1] if reverse else files) for a in ("--input", f)]
        killed = bench_proc([*args, *inputs, "--workers", workers,
                             "--out", str(tmp_path / f"k{i}")],
                            env=fault_env(tmp_path, at=at, proc=victim, events=events))
        if victim == "MainProcess":
            assert killed.returncode == -signal.SIGKILL, killed.stderr
        else:
            assert killed.returncode == 1 and "SIGKILL" in killed.stderr, killed.stderr
        assert 0 < committed_records(spec) < expected.records
        # Resumed in-process, with the files in path order and another worker count.
        resumed = cli.invoke(app, [*args, "--input", str(data), "--workers", then, "--resume",
                                   "--out", str(tmp_path / f"r{i}")])
        assert resumed.exit_code == 0, resumed.output
        got = read_target(spec, mapping)
        assert got.tables == reference.tables, kills[i]
        assert got.quarantine == reference.quarantine, kills[i]


# ---- writers racing for the same keys -----------------------------------------------------------
def _race_input(folder: Path, keys: int) -> list[Any]:
    """``a.xml``, ``b.xml``, ``c.xml`` hold the same keys (copies 0, 1, 2)."""
    folder.mkdir()
    for copy, name in enumerate("abc"):
        body = "\n".join(f"  {_item(k, copy)}" for k in range(1, keys + 1))
        (folder / f"{name}.xml").write_text(f"<items>\n{body}\n</items>\n")
    return expand_inputs([str(folder)])


def _writer_thread(spec: str, mapping: Mapping, order: InputOrder, unit: Any,
                   checkpoints: dict[str, Any], errors: list[BaseException],
                   hold: tuple[threading.Event, threading.Event] | None = None
                   ) -> threading.Thread:
    """A BatchWriter of its own (own connection) writing one unit; with ``hold``, it sets
    the first event once its batch is written but not committed, and waits for the
    second before committing."""
    target = open_target(spec)
    stats = RunStats(rows={t.name: 0 for t in mapping.tables})
    writer = BatchWriter(target, mapping, EngineConfig(batch_size=100), stats, 0.0,
                         order=order)
    if hold is not None:
        ready, go = hold
        save = writer._save_checkpoints

        def held(conn: Any, batch: Any) -> None:
            save(conn, batch)
            ready.set()
            go.wait(60)

        writer._save_checkpoints = held  # type: ignore[method-assign]
    producer = BatchProducer(mapping, RecordMapper(mapping, target.dialect.value_adapters()),
                             100)

    def run() -> None:
        try:
            for batch in producer.batches([unit], checkpoints):
                writer.write(batch)
        except BaseException as exc:  # (raised again in the test's thread)
            errors.append(exc)
        finally:
            writer.close()
            target.close()

    return threading.Thread(target=run, daemon=True)


def test_concurrent_writers_leave_the_first_copy_whoever_commits_first(
        spec: str, mapping: Mapping, tmp_path: Path) -> None:
    """The last copy commits first and holds its transaction open while the others try the
    same keys (they wait on its rows, then find them taken); then all race at once. Whatever
    the interleaving — and deadlocks retried on the way — a.xml's copies are stored and the
    others quarantined, each once."""
    units = _race_input(tmp_path / "race", keys=12)
    order = InputOrder(units)
    for r in range(3):
        checkpoints = prepare_target(open_target(spec), mapping, units, resume=False)
        errors: list[BaseException] = []
        ready, go = threading.Event(), threading.Event()
        late = _writer_thread(spec, mapping, order, units[2], checkpoints, errors, (ready, go))
        late.start()
        assert ready.wait(60)
        others = [_writer_thread(spec, mapping, order, u, checkpoints, errors)
                  for u in (units[:2] if r % 2 else units[1::-1])]
        for t in others:
            t.start()
        time.sleep(0.3)  # (let them block on the held rows; the outcome must not depend on it)
        go.set()
        for t in [late, *others]:
            t.join(120)
        assert not errors, errors
        got = read_target(spec, mapping)
        assert got.items() == [(k, f"item {k} copy 0", 0) for k in range(1, 13)]
        assert [q[:4] for q in got.quarantine] == sorted(
            (name, line, str(line - 1), "duplicate_key")
            for name in ("b.xml", "c.xml") for line in range(2, 14))
