"""Pooling that really happens: the server's session ids decide, not our flags.

Each case runs in a fresh process (unixODBC reads the pooling setting once per process, at
the first connect), opens and closes connections through :class:`OdbcTarget` with
``pooling`` on or off, and reports the server session ids it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from servers import Server

ROOT = Path(__file__).resolve().parents[1]
CYCLES = 6

CHILD = textwrap.dedent("""
    import json, sys, time
    from migrator.targets.odbc import OdbcTarget
    mode, conn_string, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    target = OdbcTarget(conn_string, pooling={"on": True, "off": False}.get(mode))
    if mode == "pyodbc-flag-only":
        import pyodbc
        pyodbc.pooling = True
    ids, seconds = [], []
    for _ in range(cycles):
        t0 = time.perf_counter()
        conn = target.connect()
        seconds.append(time.perf_counter() - t0)
        ids.append(conn.session_id())
        conn.close()
    import os
    print(json.dumps({"ids": ids, "seconds": seconds,
                      "odbcsysini": os.environ.get("ODBCSYSINI", "")}))
""")


def run_cycles(mode: str, conn_string: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, conn_string, str(CYCLES)],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def server(request: pytest.FixtureRequest) -> Server:
    srv: Server = request.getfixturevalue(request.param)
    return srv


@pytest.mark.odbc
def test_pooling_on_reuses_the_server_session(server: Server) -> None:
    result = run_cycles("on", server.odbc())
    assert len(set(result["ids"])) == 1, result["ids"]
    assert "mb-odbc-pool-on" in str(result["odbcsysini"])


@pytest.mark.odbc
def test_pooling_off_opens_a_new_session_every_time(server: Server) -> None:
    result = run_cycles("off", server.odbc())
    assert len(set(result["ids"])) == CYCLES, result["ids"]


@pytest.mark.odbc
def test_pyodbc_pooling_flag_alone_pools_nothing(server: Server) -> None:
    """With unixODBC, pyodbc.pooling=True without the ini keys does nothing."""
    result = run_cycles("pyodbc-flag-only", server.odbc())
    assert len(set(result["ids"])) == CYCLES, result["ids"]


@pytest.mark.odbc
@pytest.mark.postgres
def test_copy_sessions_follow_the_pooling_choice(postgres: Server) -> None:
    """The COPY path's psycopg sessions are kept for reuse only while pooling is on."""
    child = textwrap.dedent("""
        import json, sys
        from migrator.targets.base import Namespace
        from migrator.targets.odbc import OdbcTarget
        target = OdbcTarget(sys.argv[2], pooling=sys.argv[1] == "on")
        target.set_namespace(Namespace(schema="public"))  # (where the table below is)
        conn = target.connect()
        conn.execute("DROP TABLE IF EXISTS pool_copy_t")
        conn.execute("CREATE TABLE pool_copy_t (a int)")
        conn.commit()
        conn.close()
        ids = []
        for i in range(4):
            conn = target.connect()
            conn.insert_rows("pool_copy_t", ["a"], [(i,)], "copy")
            ids.append(conn.session_id())
            conn.commit()
            conn.close()
        print(json.dumps(ids))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seen = {}
    for mode in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", child, mode, postgres.odbc()],
                             capture_output=True, text=True, env=env, timeout=60, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        seen[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(set(seen["on"])) == 1
    assert len(set(seen["off"])) == 4
