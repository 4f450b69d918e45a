"""MigrationEngine on real SQLite and real files: counts, quarantine, resume, failures."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import datasets
from migrator import (
    EngineConfig,
    MigrationEngine,
    ResumeError,
    default_mapping,
    expand_inputs,
    migrate,
    open_target,
    parse_mapping,
    prepare_target,
    reconcile,
)
from migrator.targets.sqlite import SQLiteConnection


@dataclass
class Dataset:
    """A generated dataset: its folder plus the manifest's fields."""

    dir: Path
    manifest: datasets.Manifest

    def __getattr__(self, name: str) -> Any:
        return getattr(self.manifest, name)


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("orders")
    return Dataset(out, datasets.generate(out, 3000, files=3, seed=11, invalid_rate=0.02))


def data_dir(d: Dataset) -> Path:
    return d.dir


def table_digest(db: Path) -> dict[str, str]:
    """Order-independent fingerprint of every mapped table's contents."""
    con = sqlite3.connect(db)
    out = {}
    for t in default_mapping().tables:
        rows = sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t.name}"'))
        out[t.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    con.close()
    return out


def quarantined(db: Path) -> set[tuple[str, int, str, str]]:
    con = sqlite3.connect(db)
    rows = {(Path(f).name, line, key, code) for f, line, key, code in
            con.execute("SELECT file, line, record_key, reason_code FROM mb_quarantine")}
    con.close()
    return rows


def expected_quarantine(m: Dataset) -> set[tuple[str, int, str, str]]:
    return {(i.file, i.line, i.key, i.kind) for i in m.invalid}


def test_counts_reconcile_with_independent_counts(orders: Dataset,
                                                  tmp_path: Path) -> None:
    units = expand_inputs([str(data_dir(orders))])
    target = open_target(f"sqlite:{tmp_path / 'm.db'}")
    stats = migrate(units, target, default_mapping(), EngineConfig(batch_size=250))

    independent = sum(1 for u in units for _ in etree.iterparse(u.path, tag="order"))
    assert stats.records_read == independent == orders.records
    assert stats.inserted + stats.quarantined == stats.records_read
    assert stats.quarantined == len(orders.invalid) > 0
    rec = reconcile(target, default_mapping())
    assert rec.ok, rec.problems
    assert rec.rows == orders.expected_rows == stats.rows
    assert quarantined(tmp_path / "m.db") == expected_quarantine(orders)
    assert len(stats.batches) == -(-orders.records // 250)
    assert all(stats.stages[s] > 0 for s in ("parse", "map", "insert", "commit"))


def test_batch_size_never_changes_the_result(orders: Dataset, tmp_path: Path) -> None:
    digests = []
    for size in (1, 7, 5000):
        db = tmp_path / f"b{size}.db"
        migrate(expand_inputs([str(data_dir(orders))]), open_target(f"sqlite:{db}"),
                default_mapping(), EngineConfig(batch_size=size))
        digests.append(table_digest(db))
    assert digests[0] == digests[1] == digests[2]


def test_insert_methods_agree(orders: Dataset, tmp_path: Path) -> None:
    digests = []
    for method in ("executemany", "values"):
        db = tmp_path / f"{method}.db"
        migrate(expand_inputs([str(data_dir(orders))]), open_target(f"sqlite:{db}"),
                default_mapping(), EngineConfig(batch_size=333, insert_method=method))
        digests.append(table_digest(db))
    assert digests[0] == digests[1]


KILLER = textwrap.dedent("""
    import os, signal, sys
    from migrator.targets.sqlite import SQLiteConnection
    from bench.cli import main
    commits = {"n": 0}
    real_commit = SQLiteConnection.commit
    def commit(self):
        commits["n"] += 1
        if commits["n"] == int(os.environ["KILL_AT_COMMIT"]):
            os.kill(os.getpid(), signal.SIGKILL)   # mid-transaction: rows sent, no COMMIT
        real_commit(self)
    SQLiteConnection.commit = commit
    sys.argv = ["bench"] + sys.argv[1:]
    main()
""")


@pytest.mark.parametrize("kill_at", [3, 9])  # commit 1 is the schema setup
def test_resume_after_sigkill_is_exactly_once(orders: Dataset, tmp_path: Path,
                                              kill_at: int) -> None:
    db = tmp_path / "k.db"
    args = ["run", "--input", str(data_dir(orders)), "--target", f"sqlite:{db}",
            "--batch-size", "200", "--out", str(tmp_path / "r1")]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True,
                            env={**os.environ, "KILL_AT_COMMIT": str(kill_at)}, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    # The killed run committed some batches and nothing of the one in flight.
    partial = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert partial.ok and 0 < partial.records_read < orders.records

    args[-1] = str(tmp_path / "r2")
    resumed = subprocess.run([sys.executable, "-m", "bench", *args, "--resume", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    final = reconcile(open_target(f"sqlite:{db}"), default_mapping())
    assert final.ok, final.problems
    assert final.records_read == orders.records
    assert final.rows == orders.expected_rows
    assert quarantined(db) == expected_quarantine(orders)

    fresh = tmp_path / "fresh.db"
    migrate(expand_inputs([str(data_dir(orders))]), open_target(f"sqlite:{fresh}"),
            default_mapping())
    assert table_digest(db) == table_digest(fresh)


def test_interrupt_rolls_back_the_batch_in_flight(orders: Dataset, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = SQLiteConnection.insert_rows

    def insert_rows(self, table, columns, rows, method=None):  # type: ignore[no-untyped-def]
        calls["n"] += not table.startswith("mb_")  # (the 10th insert of records)
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(self, table, columns, rows, method)

    monkeypatch.setattr(SQLiteConnection, "insert_rows", insert_rows)
    target = open_target(f"sqlite:{tmp_path / 'i.db'}")
    units = expand_inputs([str(data_dir(orders))])
    with pytest.raises(KeyboardInterrupt):
        migrate(units, target, default_mapping(), EngineConfig(batch_size=100))
    partial = reconcile(target, default_mapping())
    assert partial.ok and partial.records_read % 100 == 0 and partial.records_read > 0

    monkeypatch.setattr(SQLiteConnection, "insert_rows", real)
    migrate(units, target, default_mapping(), EngineConfig(batch_size=100), resume=True)
    final = reconcile(target, default_mapping())
    assert final.ok and final.rows == orders.expected_rows


def test_malformed_file_keeps_earlier_records_and_names_line(tmp_path: Path) -> None:
    m = datasets.generate(tmp_path / "d", 300, files=3, seed=5)
    broken = tmp_path / "d" / m.files[1].name
    text = broken.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = next(i for i, line in enumerate(text) if 'id="' in line and i > len(text) // 2)
    broken.write_text("".join(text[:cut]) + "<order id=\"x\"><oops></order>\n",
                      encoding="utf-8")
    target = open_target(f"sqlite:{tmp_path / 'm.db'}")
    stats = migrate(expand_inputs([str(tmp_path / "d")]), target, default_mapping(),
                    EngineConfig(batch_size=1000))
    assert len(stats.errors) == 1
    assert stats.errors[0].startswith(f"{broken}:{cut + 1}: malformed XML")
    done = {u.unit: u for u in stats.units}
    assert not done[str(broken)].finished
    # Every record before the bad line is committed; the other two files are complete.
    good_before = sum(1 for line in text[:cut] if line.lstrip().startswith("<order "))
    rec = reconcile(target, default_mapping())
    assert rec.ok
    assert rec.records_read == m.files[0].records + good_before + m.files[2].records


def test_duplicate_keys_are_quarantined_not_fatal(tmp_path: Path) -> None:
    m = datasets.generate(tmp_path / "d", 50, seed=2)
    src = tmp_path / "d" / m.files[0].name
    (tmp_path / "d" / "copy.xml").write_bytes(src.read_bytes())
    target = open_target(f"sqlite:{tmp_path / 'm.db'}")
    stats = migrate(expand_inputs([str(tmp_path / "d")]), target, default_mapping(),
                    EngineConfig(batch_size=30))
    assert stats.records_read == 100
    assert stats.inserted == 50 and stats.quarantined == 50
    assert {code for *_, code in quarantined(tmp_path / "m.db")} == {"duplicate_key"}
    assert reconcile(target, default_mapping()).ok


def test_resume_refuses_what_it_cannot_continue(orders: Dataset,
                                                tmp_path: Path) -> None:
    units = expand_inputs([str(data_dir(orders))])
    target = open_target(f"sqlite:{tmp_path / 'r.db'}")
    with pytest.raises(ResumeError, match="nothing to resume"):
        prepare_target(target, default_mapping(), units, resume=True)
    prepare_target(target, default_mapping(), units, resume=False)
    other = parse_mapping(Path(default_mapping().source).read_text()
                          if Path(default_mapping().source).exists()
                          else _builtin_text().replace('"str(20)"', '"str(21)"', 1))
    with pytest.raises(ResumeError, match="mapping changed"):
        prepare_target(target, other, units, resume=True)
    with pytest.raises(ResumeError, match="input changed"):
        prepare_target(target, default_mapping(), units[:1], resume=True)


def _builtin_text() -> str:
    from importlib import resources
    return resources.files("migrator").joinpath("mappings/orders.toml").read_text()


def test_connection_per_batch_opens_one_connection_per_batch(
        orders: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = {"n": 0}
    target = open_target(f"sqlite:{tmp_path / 'c.db'}")
    real = type(target).connect

    def connect(self):  # type: ignore[no-untyped-def]
        opened["n"] += 1
        return real(self)

    units = expand_inputs([str(data_dir(orders))])
    checkpoints = prepare_target(target, default_mapping(), units, resume=False)
    monkeypatch.setattr(type(target), "connect", connect)
    stats = MigrationEngine(target, default_mapping(),
                            EngineConfig(batch_size=500, connection="per-batch")
                            ).run(units, checkpoints)
    # six batches, then one small transaction marking the last file finished
    assert len(stats.batches) == 6 and opened["n"] == 7
    assert stats.stages["connect"] > 0


@pytest.mark.parametrize(("strategy", "checkouts", "opened"), [
    ("per-batch", 7, 7), ("pooled", 7, 1), ("persistent", 1, 1)])
def test_each_strategy_gets_connections_its_way(
        orders: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str,
        checkouts: int, opened: int) -> None:
    """Six batches and the small transaction marking the last file finished: a checkout
    each (per-batch: a new connection each; pooled: one connection reused), or one
    connection for all of them (persistent)."""
    target = open_target(f"sqlite:{tmp_path / 's.db'}")
    units = expand_inputs([str(data_dir(orders))])
    checkpoints = prepare_target(target, default_mapping(), units, resume=False)
    counts = {"connect": 0, "open": 0}
    real_connect, real_open = type(target).connect, type(target)._open  # type: ignore[attr-defined]

    def connect(self):  # type: ignore[no-untyped-def]
        counts["connect"] += 1
        return real_connect(self)

    def _open(self):  # type: ignore[no-untyped-def]
        counts["open"] += 1
        return real_open(self)

    monkeypatch.setattr(type(target), "connect", connect)
    monkeypatch.setattr(type(target), "_open", _open)
    stats = MigrationEngine(target, default_mapping(),
                            EngineConfig(batch_size=500, connection=strategy)  # type: ignore[arg-type]
                            ).run(units, checkpoints)
    target.close()
    assert len(stats.batches) == 6
    assert (counts["connect"], counts["open"], stats.connects) == (checkouts, opened, checkouts)
    assert stats.to_dict()["connects"] == checkouts


def test_sqlite_pool_reuses_sessions(tmp_path: Path) -> None:
    target = open_target(f"sqlite:{tmp_path / 'p.db'}")
    unpooled = set()
    kept = []
    for _ in range(5):
        conn = target.connect()
        unpooled.add(conn.session_id())
        kept.append(conn)  # keep it alive so no id is recycled
    assert len(unpooled) == 5
    for conn in kept:
        conn.close()
    target.set_pooling(True)  # type: ignore[attr-defined]
    pooled = set()
    for _ in range(5):
        conn = target.connect()
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.begin()
        conn.execute("INSERT INTO t VALUES (1)")  # left uncommitted: reset on return
        pooled.add(conn.session_id())
        conn.close()
    assert len(pooled) == 1
    conn = target.connect()
    assert conn.query("SELECT COUNT(*) FROM t") == [(0,)]
    conn.close()
    target.set_pooling(False)  # type: ignore[attr-defined]


def test_runs_with_pooling_leave_no_connection_open(orders: Dataset, tmp_path: Path) -> None:
    """The soak found each --pooling on run leaving its idle SQLite connection open."""
    import psutil

    from bench.runner import RunRequest, execute_run

    db = tmp_path / "leak.db"
    me = psutil.Process()
    for i in range(3):
        execute_run(RunRequest(inputs=[str(orders.dir)], target=f"sqlite:{db}",
                               connection="pooled", sample_interval=None, out=tmp_path / f"r{i}"))
    still_open = [f.path for f in me.open_files() if f.path.startswith(str(db))]
    assert still_open == []
