"""Helpers for the fault-injection, hostile-input and fuzz suites (tests/test_faults*.py …).

Sizes: CI runs every case small; ``BENCH_LONG=1`` runs them at full size (more kill seeds,
more records, longer fuzzing). pytest options must live in conftest.py, so the switch is
an environment variable::

    BENCH_LONG=1 pytest tests/test_faults.py tests/test_fuzz.py

Fault points in real processes: :func:`fault_env` returns an environment whose
``PYTHONPATH`` holds a ``sitecustomize`` that patches the engine's database calls in every
Python process of the run — the CLI, its spawned workers and the pipeline's read/map
process alike (spawned children inherit the environment). In the process named by
``MB_FAULT_PROC`` it counts events (``insert`` before ``insert_rows``, ``commit`` before a
COMMIT, ``committed`` after one, ``batch`` when the reader cuts a batch, ``ddl`` after a
CREATE or DROP statement other than the run lock's ``mb_lock``, ``data_insert`` before
``insert_rows`` into one of the mapping's tables, ``copy_row`` before each row written to a
PostgreSQL ``COPY`` stream, ``count`` before the final count's query) and at the
``MB_FAULT_AT``-th one either SIGKILLs itself (``kill``) or writes a flag file
(``PID [SESSION-ID]``: the server's id of the session at that point) and waits for the test
to say go (``pause``, to stop or restart a database server, or end that session, at a known
point).

Reconciliation: :func:`check_exactly_once` compares what the target holds, table by table,
with an independent mapping of the source (``migrator.rowmap.naive_map`` per record, the
generator's manifest for the invalid records): every valid record's rows once, every
invalid record in quarantine once with its reason, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

import datasets
from migrator import Namespace, Target, default_mapping, open_target, reconcile
from migrator.mapping import Mapping
from migrator.rowmap import naive_map

LONG = os.environ.get("BENCH_LONG") == "1"


def long_or(short: int, long: int) -> int:
    """``short`` in CI, ``long`` under ``BENCH_LONG=1``."""
    return long if LONG else short


def seeds(short: int, long: int, base: int = 1000) -> list[int]:
    return list(range(base, base + long_or(short, long)))


# ---- fault points in real processes ---------------------------------------------------------
_HOOK = textwrap.dedent('''
    """Fault hook installed by tests/fault_helpers.py (only when MB_FAULT_AT is set)."""
    import multiprocessing
    import os
    import signal
    import time

    _count = [0]


    def _backend(obj):
        """The server's id of the session at the fault point ("" if none)."""
        try:
            if hasattr(obj, "session_id"):  # a migrator connection
                return str(obj.session_id())
            if hasattr(obj, "connection"):  # a psycopg Copy
                return str(obj.connection.info.backend_pid)
        except Exception:
            pass
        return ""


    def _hit(kind, obj=None):
        env = os.environ
        if kind not in env.get("MB_FAULT_EVENTS", "insert,commit,committed").split(","):
            return
        if multiprocessing.current_process().name != env.get("MB_FAULT_PROC", "MainProcess"):
            return
        _count[0] += 1
        if _count[0] != int(env["MB_FAULT_AT"]):
            return
        if env.get("MB_FAULT_ACTION", "kill") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)
        flag = env["MB_FAULT_FLAG"]
        with open(flag + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {_backend(obj)}".strip())
        os.replace(flag + ".tmp", flag)
        deadline = time.monotonic() + 120
        while not os.path.exists(flag + ".go") and time.monotonic() < deadline:
            time.sleep(0.02)


    def _wrap(cls, name, before, after=None):
        real = getattr(cls, name)

        def patched(self, *args, **kwargs):
            _hit(before, self)
            out = real(self, *args, **kwargs)
            if after:
                _hit(after, self)
            return out

        setattr(cls, name, patched)


    def _wrap_ddl(cls):
        real = cls.execute

        def patched(self, sql, *args, **kwargs):
            out = real(self, sql, *args, **kwargs)
            # (The run lock's mb_lock is made by its own session, whenever the tool's
            # tables exist: not a statement of the schema's preparation.)
            if sql.lstrip().upper().startswith(("CREATE", "DROP")) and "mb_lock" not in sql:
                _hit("ddl")
            return out

        cls.execute = patched


    def _wrap_data_insert(cls):
        real = cls.insert_rows

        def patched(self, table, *args, **kwargs):
            if not table.startswith("mb_"):  # the mapping's tables, not the bookkeeping
                _hit("data_insert", self)
            return real(self, table, *args, **kwargs)

        cls.insert_rows = patched


    def _wrap_count(cls):
        real = cls.query

        def patched(self, sql, *args, **kwargs):
            if "SUM(records_done)" in sql:  # the final count (migrator.engine.reconcile)
                _hit("count", self)
            return real(self, sql, *args, **kwargs)

        cls.query = patched


    def install():
        from migrator.producer import BatchProducer
        from migrator.targets.odbc import OdbcConnection
        from migrator.targets.sqlite import SQLiteConnection

        for cls in (SQLiteConnection, OdbcConnection):
            _wrap(cls, "insert_rows", "insert")
            _wrap(cls, "commit", "commit", "committed")
            _wrap_ddl(cls)
            _wrap_data_insert(cls)
            _wrap_count(cls)
        _wrap(BatchProducer, "_take", "batch")
        if "copy_row" in os.environ.get("MB_FAULT_EVENTS", ""):
            import psycopg

            _wrap(psycopg.Copy, "write_row", "copy_row")  # rows of a COPY stream
''')

_SITECUSTOMIZE = textwrap.dedent('''
    import os
    if os.environ.get("MB_FAULT_AT"):
        import mb_fault_hook
        mb_fault_hook.install()
''')


def fault_env(tmp: Path, *, at: int, proc: str = "MainProcess",
              events: str = "insert,commit,committed", action: str = "kill",
              flag: Path | None = None) -> dict[str, str]:
    """The environment of a subprocess that faults at its ``at``-th event in ``proc``."""
    hook_dir = tmp / "fault-hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "mb_fault_hook.py").write_text(_HOOK)
    (hook_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "MB_FAULT_AT": str(at), "MB_FAULT_PROC": proc, "MB_FAULT_EVENTS": events,
        "MB_FAULT_ACTION": action, "NO_COLOR": "1", "COLUMNS": "200"}
    if flag is not None:
        env["MB_FAULT_FLAG"] = str(flag)
    return env


def bench_proc(args: list[str], env: dict[str, str] | None = None, timeout: float = 180,
          **kw: Any) -> subprocess.CompletedProcess[str]:
    """``bench ARGS`` as a real process (``python -m bench``)."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False, **kw)


def wait_for_file(path: Path, proc: subprocess.Popen[Any], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before the fault "
                                 f"point: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no fault point reached within {timeout}s")
        time.sleep(0.02)
    return path.read_text()


# ---- the independent reference: what the source says the target must hold -------------------
@dataclass
class Source:
    """A generated dataset and the rows an independent mapping of it expects per table."""

    dir: Path
    manifest: datasets.Manifest
    expected: dict[str, Counter[tuple[Any, ...]]]  # table → primary-key tuples (a multiset)

    @property
    def records(self) -> int:
        return self.manifest.records


def _key(mapping: Mapping, text: str | None) -> Any:
    assert text is not None
    return int(text) if mapping.key_type.kind in ("int", "bigint") else text


def expected_rows(folder: Path, mapping: Mapping, invalid_keys: frozenset[str]
                  ) -> dict[str, Counter[tuple[Any, ...]]]:
    """Primary keys of every row the source should produce, by ``naive_map`` (xpath)."""
    out: dict[str, Counter[tuple[Any, ...]]] = {t.name: Counter() for t in mapping.tables}
    for path in sorted(folder.glob("*.xml")):
        for _, elem in etree.iterparse(str(path), tag=mapping.record_element,
                                       resolve_entities=False, no_network=True):
            raw = naive_map(mapping, elem)
            root = mapping.root
            key_text = raw[root.name][0][root.key_column]
            if key_text is not None and key_text.strip() in invalid_keys:
                elem.clear()
                continue
            key = _key(mapping, key_text)
            out[root.name][(key,)] += 1
            for t in mapping.tables[1:]:
                for pos, _ in enumerate(raw[t.name], start=1):
                    out[t.name][(key, pos)] += 1
            elem.clear()
    return out


def make_source(folder: Path, records: int, *, files: int = 3, seed: int = 7,
                invalid_rate: float = 0.03) -> Source:
    manifest = datasets.generate(folder, records, files=files, seed=seed,
                                 invalid_rate=invalid_rate)
    mapping = default_mapping()
    exp = expected_rows(folder, mapping, manifest.invalid_keys())
    assert {t: sum(c.values()) for t, c in exp.items()} == dict(manifest.expected_rows)
    return Source(folder, manifest, exp)


def target_in(spec: str, namespace: Namespace | None = None) -> Target:
    """``open_target(spec)``, its tables in ``namespace`` (schema, prefix) when given."""
    target = open_target(spec)
    if namespace is not None:
        target.set_namespace(namespace)
    return target


def db_rows(spec: str, mapping: Mapping, namespace: Namespace | None = None
            ) -> dict[str, Counter[tuple[Any, ...]]]:
    conn = target_in(spec, namespace).connect()
    try:
        q = conn.dialect.quote
        ref = conn.dialect.table_ref
        out = {}
        for t in mapping.tables:
            cols = ", ".join(q(c) for c in t.primary_key)
            out[t.name] = Counter(tuple(int(v) if isinstance(v, int | float) else v
                                        for v in r)
                                  for r in conn.query(f"SELECT {cols} FROM {ref(t.name)}"))
        return out
    finally:
        conn.close()


def db_quarantine(spec: str, namespace: Namespace | None = None
                  ) -> Counter[tuple[str, int, str, str]]:
    conn = target_in(spec, namespace).connect()
    try:
        rows = conn.query("SELECT file, line, record_key, reason_code FROM "
                          + conn.dialect.table_ref("mb_quarantine"))
    finally:
        conn.close()
    return Counter((Path(str(f)).name, int(line), str(k), str(c)) for f, line, k, c in rows)


def check_exactly_once(spec: str, src: Source, namespace: Namespace | None = None) -> None:
    """Every valid record inserted once (row sets equal the independent mapping), every
    invalid one quarantined once with its reason, and the checkpoints say the same."""
    mapping = default_mapping()
    rec = reconcile(target_in(spec, namespace), mapping)
    assert rec.ok, rec.problems
    assert rec.records_read == src.records
    got = db_rows(spec, mapping, namespace)
    for table, want in src.expected.items():
        have = got[table]
        dup = [k for k, n in have.items() if n > 1]
        assert not dup, f"{table}: duplicated rows {dup[:5]}"
        missing = want - have
        extra = have - want
        assert not missing and not extra, (
            f"{table}: {sum(missing.values())} rows missing (e.g. {list(missing)[:3]}), "
            f"{sum(extra.values())} unexpected (e.g. {list(extra)[:3]})")
    want_q = Counter((i.file, i.line, i.key, i.kind) for i in src.manifest.invalid)
    assert db_quarantine(spec, namespace) == want_q


def committed_records(spec: str) -> int:
    """Records the checkpoints say are done (0 when the schema does not exist yet)."""
    try:
        conn = open_target(spec).connect()
    except Exception:
        return 0
    try:
        return int(conn.query("SELECT COALESCE(SUM(records_done), 0) FROM "
                              + conn.dialect.table_ref("mb_checkpoint"))[0][0])
    except Exception:
        return 0
    finally:
        conn.close()


def rng(seed: int) -> random.Random:
    return random.Random(seed)


# ---- a PostgreSQL server we may stop and start again -----------------------------------------
def stop_keeping_data(server: Any) -> None:
    """Fast shutdown (SIGINT) of a ``tests/servers.py`` PostgreSQL, keeping its data folder:
    every session is terminated, as in a crash of the database host's service."""
    proc = server.proc
    assert proc is not None
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    server.proc = None


def start_again(server: Any, timeout: float = 60) -> None:
    """Start the same cluster on the same port with the same options."""
    assert server.proc is None
    data = server.root / "data"
    st = data.stat()
    owner = {"user": st.st_uid, "group": st.st_gid, "extra_groups": []} \
        if os.geteuid() == 0 and st.st_uid != 0 else {}
    args = getattr(server, "_mb_args", None)
    assert args is not None, "remember_args(server) before stopping it"
    with (server.root / "server.log").open("ab") as log:
        server.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True,
                                       env={**os.environ, "LC_ALL": "C.UTF-8"}, **owner)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(
                (server.host, server.port), timeout=0.5):
            break
        if server.proc.poll() is not None:
            raise AssertionError(f"postgres did not restart:\n{server.log_tail()}")
        time.sleep(0.05)
    # The port opens before logins are accepted ("the database system is starting up").
    import psycopg

    while True:
        try:
            psycopg.connect(server.psycopg_dsn(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def remember_args(server: Any) -> None:
    server._mb_args = list(server.proc.args)


# ---- small disks -------------------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a ``size`` tmpfs on ``path`` when we may (root, a mount namespace that allows
    it); yields False when we may not (the caller falls back to ``RLIMIT_FSIZE``)."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, check=False) if os.geteuid() == 0 else None
    mounted = res is not None and res.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
