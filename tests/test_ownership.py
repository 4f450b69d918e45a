"""The target belongs to the user: `bench` drops or empties only the tables it created.

Every test runs in a database of its own — a fresh SQLite file, a fresh PostgreSQL or
MariaDB database on the session's servers, dropped afterwards — with the user's own tables
made through the user's own session (sqlite3, psycopg, pyodbc), beside what the tool does.

Covered: a user's ``orders`` (1,000 rows, and a table with a foreign key pointing at it) is
refused in one line and left untouched; ``--table-prefix`` migrates beside it;
``--replace-existing-tables`` replaces it (and says clearly when a foreign key forbids it);
``--schema`` on PostgreSQL; the tool replaces its own tables run after run; quarantined keys
and reasons of any length; SIGKILL after each statement of schema creation, then
``--resume`` explains and a fresh run recovers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import Source, bench_proc, check_exactly_once, fault_env, make_source
from typer.testing import CliRunner, Result

import bench.cli  # noqa: F401
from bench.cli import app
from migrator import Namespace, open_target, parse_mapping, reconcile
from migrator.mapping import default_mapping

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
RECORDS = 120
BATCH = 25
USER_ROWS = [(i, f"the user's order {i}") for i in range(1, 1001)]
TOOL_TABLES = {"orders", "order_lines", "payments", "mb_checkpoint", "mb_quarantine",
               "mb_run", "mb_tables"}

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.odbc]),
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.odbc]),
]
SERVERS = BACKENDS[1:]


class UserSession:
    """The database's owner, working beside the tool through their own connection."""

    def __init__(self, backend: str, conn: Any) -> None:
        self.backend = backend
        self.conn = conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        cur.close()

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.backend == "sqlite":  # one transaction, not one per row (and fsync)
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany(sql, [tuple(r) for r in rows])
            return
        cur = self.conn.cursor()
        cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        cur.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        out = [tuple(r) for r in cur.fetchall()]
        cur.close()
        return out

    def tables(self, schema: str | None = None) -> set[str]:
        """Tables in ``schema`` (PostgreSQL; default: public), the database (MariaDB) or
        the file (SQLite)."""
        if self.backend == "sqlite":
            return {r[0] for r in self.rows("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}
        if self.backend == "postgresql":
            return {r[0] for r in self.rows("SELECT tablename FROM pg_tables "
                                             "WHERE schemaname = ?", (schema or "public",))}
        return {r[0] for r in self.rows("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = DATABASE()")}


@dataclasses.dataclass
class Db:
    backend: str
    spec: str  # --target
    user: UserSession
    # The options that make the tool write where the user's own tables are: PostgreSQL
    # keeps its tables in a schema of their own unless told otherwise.
    beside_user: list[str]

    def namespace(self, *args: str) -> Namespace:
        """The namespace the tool uses with these command-line options."""
        opts = dict(zip(args[::2], args[1::2], strict=False))
        schema = opts.get("--schema")
        return Namespace(schema=schema, prefix=opts.get("--table-prefix", ""))


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    backend = request.param
    name = f"own_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = tmp_path / "target.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")  # (enforced, as a user would have it)
        yield Db(backend, f"sqlite:{path}", UserSession(backend, conn), [])
        conn.close()
        return
    if backend == "postgresql":
        import psycopg

        server = request.getfixturevalue("postgres")
        with psycopg.connect(server.psycopg_dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        mine = dataclasses.replace(server, database=name)
        conn = psycopg.connect(mine.psycopg_dsn(), autocommit=True)
        try:
            yield Db(backend, "odbc:" + mine.odbc("Protocol=7.4-1"),
                     UserSession(backend, conn), ["--schema", "public"])
        finally:
            conn.close()
            with psycopg.connect(server.psycopg_dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        return
    import pyodbc

    server = request.getfixturevalue("mariadb")
    admin = pyodbc.connect(server.odbc(), autocommit=True)
    admin.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    mine = dataclasses.replace(server, database=name)
    conn = pyodbc.connect(mine.odbc(), autocommit=True)
    try:
        yield Db(backend, "odbc:" + mine.odbc(), UserSession(backend, conn), [])
    finally:
        conn.close()
        admin.execute(f"DROP DATABASE `{name}`")
        admin.close()


def with_backends(params: list[Any]) -> Any:
    return pytest.mark.parametrize("db", params, indirect=True)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("own-src"), RECORDS, files=2, seed=12,
                       invalid_rate=0.05)


def make_user_tables(db: Db, *, foreign_key: bool = True) -> None:
    """The user's ``orders`` with 1,000 rows, and ``invoices`` pointing at it."""
    u = db.user
    u.run("CREATE TABLE orders (order_id INTEGER NOT NULL PRIMARY KEY, "
          "note VARCHAR(40) NOT NULL)")
    u.run_many("INSERT INTO orders (order_id, note) VALUES (?, ?)", USER_ROWS)
    if foreign_key:
        u.run("CREATE TABLE invoices (invoice_id INTEGER NOT NULL PRIMARY KEY, "
              "order_id INTEGER NOT NULL, "
              "FOREIGN KEY (order_id) REFERENCES orders (order_id))")
        u.run_many("INSERT INTO invoices (invoice_id, order_id) VALUES (?, ?)",
                   [(i, i * 10) for i in range(1, 11)])


def user_rows_untouched(db: Db, foreign_key: bool = True) -> None:
    assert sorted(db.user.rows("SELECT order_id, note FROM orders")) == USER_ROWS
    if foreign_key:
        assert sorted(db.user.rows("SELECT invoice_id, order_id FROM invoices")) == \
            [(i, i * 10) for i in range(1, 11)]


def run(db: Db, src: Source, out: Path, *extra: str) -> Result:
    return cli.invoke(app, ["run", "-i", str(src.dir), "-t", db.spec, "-b", str(BATCH),
                            "--no-sample", "--out", str(out), "--json", *extra])


def one_error_line(result: Result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert re.search(w, lines[0]), f"{w!r} not in {lines[0]!r}"
    print(lines[0])  # (shown with -s: the message a user sees)
    return lines[0]


# ---- a user's table in the way ---------------------------------------------------------------

@with_backends(BACKENDS)
def test_a_user_table_with_a_mapping_name_is_refused_and_left_untouched(
        db: Db, src: Source, tmp_path: Path) -> None:
    make_user_tables(db)
    before = db.user.tables()
    result = run(db, src, tmp_path / "r", *db.beside_user)
    line = one_error_line(result, r"\borders\b", "did not create", "nothing was changed",
                          "--table-prefix PREFIX", "--replace-existing-tables")
    assert ("--schema NAME" in line) == (db.backend == "postgresql")
    assert "DROP TABLE IF" not in line
    user_rows_untouched(db)
    assert db.user.tables() == before  # refused before anything was created or dropped
    assert not (tmp_path / "r" / "result.json").exists()


@with_backends(BACKENDS)
def test_a_table_prefix_migrates_beside_the_user_table_and_reconciles(
        db: Db, src: Source, tmp_path: Path) -> None:
    make_user_tables(db)
    args = [*db.beside_user, "--table-prefix", "mb1_", "--workers", "2"]
    result = run(db, src, tmp_path / "r", *args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"] and doc["records_read"] == RECORDS
    assert doc["table_prefix"] == "mb1_"
    user_rows_untouched(db)
    assert {f"mb1_{t}" for t in TOOL_TABLES} <= db.user.tables()
    check_exactly_once(db.spec, src, db.namespace(*args))
    # A fresh run over its own prefixed tables replaces them; resume finds them too.
    again = run(db, src, tmp_path / "r2", *args)
    assert again.exit_code == 0, again.output
    resumed = run(db, src, tmp_path / "r3", *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    check_exactly_once(db.spec, src, db.namespace(*args))
    user_rows_untouched(db)


@with_backends(BACKENDS)
def test_replace_existing_tables_replaces_the_user_table(
        db: Db, src: Source, tmp_path: Path) -> None:
    make_user_tables(db, foreign_key=False)
    result = run(db, src, tmp_path / "r", *db.beside_user, "--replace-existing-tables")
    assert result.exit_code == 0, result.output
    check_exactly_once(db.spec, src, db.namespace(*db.beside_user))
    assert db.user.rows("SELECT COUNT(*) FROM orders")[0][0] == src.expected["orders"].total()
    # ... and from now on the table is the tool's: a plain fresh run replaces it again.
    again = run(db, src, tmp_path / "r2", *db.beside_user)
    assert again.exit_code == 0, again.output
    check_exactly_once(db.spec, src, db.namespace(*db.beside_user))


@with_backends(SERVERS)
def test_replacing_a_table_a_foreign_key_points_at_fails_in_one_clear_line(
        db: Db, src: Source, tmp_path: Path) -> None:
    make_user_tables(db)
    result = run(db, src, tmp_path / "r", *db.beside_user, "--replace-existing-tables")
    line = one_error_line(result, r"cannot drop (public\.)?orders to replace it",
                          "--table-prefix",
                          r"(?i)foreign key|depend|referenced")
    assert "DROP TABLE IF" not in line
    user_rows_untouched(db)


@with_backends(SERVERS)
def test_a_user_foreign_key_on_the_tools_table_stops_a_fresh_run_in_one_clear_line(
        db: Db, src: Source, tmp_path: Path) -> None:
    first = run(db, src, tmp_path / "r1")
    assert first.exit_code == 0, first.output
    orders = "migration_bench.orders" if db.backend == "postgresql" else "orders"
    db.user.run(f"CREATE TABLE notes (order_id BIGINT NOT NULL, "
                f"FOREIGN KEY (order_id) REFERENCES {orders} (order_id))")
    again = run(db, src, tmp_path / "r2")
    line = one_error_line(again, rf"cannot drop {orders}, which migration-bench created",
                          r"(?i)foreign key|depend", "--table-prefix")
    assert "DROP TABLE IF" not in line
    assert "notes" in db.user.tables()
    if db.backend == "postgresql":  # one transaction: the complete run is still there
        check_exactly_once(db.spec, src)


@with_backends(BACKENDS)
def test_a_second_fresh_run_replaces_the_tools_own_tables(
        db: Db, src: Source, tmp_path: Path) -> None:
    for i in range(2):
        result = run(db, src, tmp_path / f"r{i}")
        assert result.exit_code == 0, result.output
        check_exactly_once(db.spec, src)
    conn = open_target(db.spec).connect()
    try:
        ref = conn.dialect.table_ref
        owned = {str(r[0]) for r in conn.query(f"SELECT table_name FROM {ref('mb_tables')}")}
        fingerprints = {str(r[0]) for r in conn.query(
            f"SELECT mapping_fingerprint FROM {ref('mb_tables')}")}
    finally:
        conn.close()
    assert owned == TOOL_TABLES - {"mb_tables"}
    assert fingerprints == {default_mapping().fingerprint()}


@with_backends(SERVERS[:1])
def test_postgresql_keeps_its_tables_in_a_schema_of_their_own(
        db: Db, src: Source, tmp_path: Path) -> None:
    make_user_tables(db)  # in public, where the user works
    result = run(db, src, tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"] == "migration_bench"
    assert db.user.tables("migration_bench") >= TOOL_TABLES
    assert db.user.tables("public") == {"orders", "invoices"}
    user_rows_untouched(db)
    check_exactly_once(db.spec, src)
    # --schema: another schema, created when missing, COPY and ODBC inserts alike.
    for method in ("copy", "values"):
        named = run(db, src, tmp_path / f"s-{method}", "--schema", "stage",
                    "--insert-method", method, "--workers", "2")
        assert named.exit_code == 0, named.output
        assert db.user.tables("stage") >= TOOL_TABLES
        check_exactly_once(db.spec, src, Namespace(schema="stage"))
    user_rows_untouched(db)


@with_backends([BACKENDS[0], BACKENDS[2]])
def test_schema_is_refused_where_the_dialect_has_no_schemas(
        db: Db, src: Source, tmp_path: Path) -> None:
    result = run(db, src, tmp_path / "r", "--schema", "stage")
    one_error_line(result, "--schema stage", "has no schemas", "--table-prefix PREFIX")
    assert not db.user.tables() & TOOL_TABLES


def test_tables_of_a_version_that_recorded_nothing_are_named_and_replaced_on_request(
        src: Source, tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 't.db'}"
    out = cli.invoke(app, ["run", "-i", str(src.dir), "-t", spec, "--no-sample", "--out",
                           str(tmp_path / "r1")])
    assert out.exit_code == 0, out.output
    with sqlite3.connect(tmp_path / "t.db") as con:  # what an earlier version left behind
        con.execute("DROP TABLE mb_tables")
    db = Db("sqlite", spec, UserSession("sqlite", None), [])
    refused = run(db, src, tmp_path / "r2")
    one_error_line(refused, "orders, order_lines, payments, mb_run, mb_checkpoint",
                   "did not record its tables", "--replace-existing-tables")
    resumed = run(db, src, tmp_path / "r3", "--resume", "--schema", "x")
    one_error_line(resumed, "--schema x: sqlite has no schemas")
    replaced = run(db, src, tmp_path / "r4", "--replace-existing-tables")
    assert replaced.exit_code == 0, replaced.output
    check_exactly_once(spec, src)


def test_a_bad_prefix_or_schema_is_a_usage_error(src: Source, tmp_path: Path) -> None:
    for flag, value in (("--table-prefix", "1x"), ("--table-prefix", 'a"b'),
                        ("--schema", "x" * 64), ("--table-prefix", "p" * 31)):
        result = cli.invoke(app, ["run", "-i", str(src.dir), "-t",
                                  f"sqlite:{tmp_path / 't.db'}", flag, value])
        assert result.exit_code == 2, result.output
        assert flag in result.output
    assert not (tmp_path / "t.db").exists()


@with_backends(SERVERS[:1])
def test_a_prefix_too_long_for_the_server_is_refused_before_anything(
        db: Db, src: Source, tmp_path: Path) -> None:
    mapping = tmp_path / "long.toml"
    mapping.write_text(LONG_NAME_MAPPING)
    result = run(db, src, tmp_path / "r", "--mapping", str(mapping), "--table-prefix",
                 "p" * 30)
    one_error_line(result, "--table-prefix", "63 bytes", "shorter prefix")
    assert not db.user.tables("migration_bench")


LONG_NAME_MAPPING = f"""
[record]
element = "order"
key = {{ path = "@id", type = "bigint" }}
[[tables]]
name = "{'o' * 40}"
key_column = "order_id"
[tables.columns]
status = {{ path = "@status", type = "str(20)" }}
"""


# ---- sweeps and diagnose run fresh schemas again and again ------------------------------------

def test_a_sweep_refuses_a_user_table_and_runs_beside_it_with_a_prefix(
        src: Source, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, note TEXT)")
        con.executemany("INSERT INTO orders VALUES (?, ?)", USER_ROWS)
    args = ["sweep", "-i", str(src.dir), "-t", f"sqlite:{path}", "-b", "40,80",
            "--repeat", "2", "--warmup", "0", "--json"]
    refused = cli.invoke(app, [*args, "--out", str(tmp_path / "s1")])
    assert refused.exit_code == 1, refused.output
    assert "did not create" in refused.stderr and "--table-prefix" in refused.stderr
    ok = cli.invoke(app, [*args, "--out", str(tmp_path / "s2"), "--table-prefix", "sw_"])
    assert ok.exit_code == 0, ok.output
    stored = json.loads((tmp_path / "s2" / "result.json").read_text())
    assert len([r for r in stored["runs"] if not r.get("warmup")]) == 4
    assert all(r["reconciliation"]["ok"] for r in stored["runs"])
    with sqlite3.connect(path) as con:
        assert sorted(con.execute("SELECT order_id, note FROM orders")) == USER_ROWS
        assert con.execute("SELECT COUNT(*) FROM sw_orders").fetchone()[0] == \
            src.expected["orders"].total()
    # A baseline over the same target and prefix: its own tables, replaced run after run.
    base = cli.invoke(app, ["baseline", "-i", str(src.dir), "-t", f"sqlite:{path}", "-b", "40",
                            "--iterations", "2", "--warmup", "0", "--table-prefix", "sw_",
                            "--out", str(tmp_path / "b"), "--json"])
    assert base.exit_code == 0, base.output


def test_diagnose_runs_its_measurements_in_the_namespace(src: Source, tmp_path: Path) -> None:
    from bench.isolated import RunnerMeasure, SamplerSetup
    from bench.sweep import RunContext
    from migrator.settings import RunSettings

    path = tmp_path / "t.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, note TEXT)")
        con.executemany("INSERT INTO orders VALUES (?, ?)", USER_ROWS)
    work = tmp_path / "work"
    work.mkdir()
    spec = f"sqlite:{path}"
    context = RunContext(inputs=[str(src.dir)], target=spec, mapping=None, work_dir=work,
                         settings=RunSettings(table_prefix="dg_"))
    measure = RunnerMeasure(context, 40, SamplerSetup(spec, str(path)))
    m = measure(workers=1, connection=None, sample=False)
    assert m.run["reconciliation"]["ok"]
    assert m.run["config"]["table_prefix"] == "dg_"
    with sqlite3.connect(path) as con:
        assert sorted(con.execute("SELECT order_id, note FROM orders")) == USER_ROWS
    check_exactly_once(spec, src, Namespace(prefix="dg_"))


# ---- bookkeeping never stops a run -----------------------------------------------------------

LONG_KEY = "9" * 5000  # too many digits for a bigint: quarantined, key kept whole
LONG_TEXT_KEY = "k" * 5000


def long_key_source(folder: Path) -> Path:
    """40 generated valid orders, then two whose keys are 5,000 characters long."""
    import datasets

    datasets.generate(folder, 40, files=1, seed=5, invalid_rate=0.0)
    (path,) = folder.glob("*.xml")
    bad = "".join(f'<order id="{k}" status="new" currency="EUR"/>'
                  for k in (LONG_KEY, LONG_TEXT_KEY))
    path.write_text(path.read_text().replace("</orders>", bad + "</orders>"))
    return folder


@with_backends(BACKENDS)
def test_a_quarantined_5000_character_key_is_stored_whole_and_the_run_reconciles(
        db: Db, tmp_path: Path) -> None:
    folder = long_key_source(tmp_path / "in")
    result = cli.invoke(app, ["run", "-i", str(folder), "-t", db.spec, "-b", "50",
                              "--no-sample", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"]
    assert (doc["records_read"], doc["inserted"], doc["quarantined"]) == (42, 40, 2)
    conn = open_target(db.spec).connect()
    try:
        rows = conn.query(f"SELECT record_key, reason_code, reason "
                          f"FROM {conn.dialect.table_ref('mb_quarantine')}")
    finally:
        conn.close()
    assert sorted(str(r[0]) for r in rows) == sorted([LONG_KEY, LONG_TEXT_KEY])
    assert {str(r[1]) for r in rows} == {"bad_number"}


DUP_MAPPING = """
[record]
element = "item"
key = {{ path = "@id", type = "str({n})" }}
[[tables]]
name = "items"
key_column = "id"
[tables.columns]
note = {{ path = "@note", type = "str(20)" }}
"""


@with_backends(BACKENDS)
def test_a_long_duplicate_key_and_the_databases_whole_reason_are_quarantined(
        db: Db, tmp_path: Path) -> None:
    """The database's own message for a duplicate key is stored whole, however long (on
    PostgreSQL it repeats the key: longer than the 1,000 characters reasons were cut to).
    InnoDB indexes at most 3,072 bytes, 768 utf8mb4 characters: a shorter key there."""
    n = 1500 if db.backend == "postgresql" else 600
    text = DUP_MAPPING.format(n=n)
    mapping = tmp_path / "dup.toml"
    mapping.write_text(text)
    key = "d" * n
    items = "".join(f'<item id="{"x" * (n - 10)}{i:010d}" note="n"/>' for i in range(30))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dup.xml").write_text(
        f'<items><item id="{key}" note="first"/>{items}<item id="{key}" note="again"/>'
        f"</items>")
    result = cli.invoke(app, ["run", "-i", str(tmp_path / "in"), "-t", db.spec, "-b", "50",
                              "-m", str(mapping), "--no-sample", "--out",
                              str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciliation"]["ok"]
    assert (doc["records_read"], doc["inserted"], doc["quarantined"]) == (32, 31, 1)
    target = open_target(db.spec)
    conn = target.connect()
    try:
        (stored_key, code, reason), = conn.query(
            f"SELECT record_key, reason_code, reason "
            f"FROM {conn.dialect.table_ref('mb_quarantine')}")
    finally:
        conn.close()
    assert stored_key == key and code == "duplicate_key"
    if db.backend == "postgresql":
        assert key in str(reason) and len(str(reason)) > 1500
    assert reconcile(target, parse_mapping(text)).ok


# ---- killed while creating the schema --------------------------------------------------------

HALF_BUILT = r"stopped while it was preparing its tables.*run again without --resume"
NOTHING = r"nothing to resume.*without --resume"


def _kill_at_each_schema_statement(db: Db, src: Source, tmp_path: Path) -> list[str]:
    """Fresh runs killed after the 1st, 2nd, … CREATE/DROP until one completes; after each
    kill ``--resume`` must explain in one line. Returns the messages."""
    messages = []
    for at in range(1, 60):
        args = ["run", "-i", str(src.dir), "-t", db.spec, "-b", str(BATCH), "--no-sample",
                "--out", str(tmp_path / f"k{at}")]
        killed = bench_proc(args, env=fault_env(tmp_path, at=at, events="ddl"))
        if killed.returncode == 0:
            assert at > 6, "fewer CREATE/DROP statements than the schema has tables"
            return messages
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = run(db, src, tmp_path / f"r{at}", "--resume")
        messages.append(one_error_line(resumed, f"{HALF_BUILT}|{NOTHING}"))
    raise AssertionError("the run never completed")


@with_backends(BACKENDS)
def test_sigkill_after_each_schema_statement_then_resume_explains_and_a_fresh_run_recovers(
        db: Db, src: Source, tmp_path: Path) -> None:
    messages = _kill_at_each_schema_statement(db, src, tmp_path)
    if db.backend == "mariadb":  # DDL commits at once: half-built schemas, recognised
        assert any(re.search(HALF_BUILT, m) for m in messages)
    else:  # one transaction: a killed creation leaves nothing of the tool's behind
        assert all(re.search(NOTHING, m) for m in messages)
    # The loop ended with a fresh run that completed over what the last kill left.
    check_exactly_once(db.spec, src)


@with_backends(BACKENDS)
def test_sigkill_while_replacing_a_complete_run(db: Db, src: Source, tmp_path: Path) -> None:
    """Killed while a fresh run replaces a complete one: PostgreSQL and SQLite keep the
    complete run as it was; MariaDB's half-built schema is named by --resume; a fresh run
    recovers on every backend."""
    first = run(db, src, tmp_path / "first")
    assert first.exit_code == 0, first.output
    for at in (1, 9):  # after the first DROP; after the drops and 3 of the CREATEs
        args = ["run", "-i", str(src.dir), "-t", db.spec, "-b", str(BATCH), "--no-sample",
                "--out", str(tmp_path / f"k{at}")]
        killed = bench_proc(args, env=fault_env(tmp_path, at=at, events="ddl"))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if db.backend == "mariadb":
            one_error_line(run(db, src, tmp_path / f"r{at}", "--resume"), HALF_BUILT)
        else:
            check_exactly_once(db.spec, src)  # the complete run, untouched
        again = run(db, src, tmp_path / f"again{at}")
        assert again.exit_code == 0, again.output
        check_exactly_once(db.spec, src)
