"""MariaDB/MySQL sampler against the session's MariaDB, checked against SHOW GLOBAL STATUS."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from diagnostics.mysql import (
    STATUS_SQL,
    MysqlSampler,
    client_port,
    parse_status,
    run_ports,
    session_category,
)


def test_parse_status_keeps_numbers_only() -> None:
    rows: list[dict[str, object]] = [
        {"variable_name": "Com_insert", "value": "12"},
        {"variable_name": "Innodb_buffer_pool_dump_status", "value": "Dumping ..."},
        {"variable_name": "Threads_connected", "value": 3},
    ]
    assert parse_status(rows) == {"Com_insert": 12.0, "Threads_connected": 3.0}


def test_status_statement_names_the_counters() -> None:
    for name in (
        "Innodb_data_fsyncs",
        "Innodb_os_log_written",
        "Innodb_row_lock_waits",
        "Threads_connected",
        "Com_insert",
    ):
        assert f"'{name}'" in STATUS_SQL


def connector(pyodbc: Any, server: Any) -> Callable[[], Any]:
    return lambda: pyodbc.connect(server.odbc(), autocommit=True)


def status(pyodbc: Any, server: Any, name: str) -> float:
    with pyodbc.connect(server.odbc(), autocommit=True) as conn:
        row = conn.cursor().execute(f"SHOW GLOBAL STATUS LIKE '{name}'").fetchone()
        return float(row[1])


@pytest.mark.mariadb
def test_known_insert_load_shows_in_status_deltas(mariadb: Any, pyodbc_module: Any) -> None:
    pyodbc = pyodbc_module
    rows = 2_000
    sampler = MysqlSampler(connector(pyodbc, mariadb))
    sampler.open()
    work = pyodbc.connect(mariadb.odbc(), autocommit=False)
    try:
        cur = work.cursor()
        cur.execute("DROP TABLE IF EXISTS sampler_load")
        cur.execute(
            "CREATE TABLE sampler_load (id INT PRIMARY KEY, payload VARCHAR(60)) ENGINE=InnoDB"
        )
        sampler.sample()
        rows_key = next(
            k
            for k in ("mysql.status.Innodb_rows_inserted", "mysql.status.Handler_write")
            if k in sampler.raw
        )
        base_rows = sampler.raw[rows_key]
        base_log = sampler.raw["mysql.status.Innodb_os_log_written"]
        cur.executemany(
            "INSERT INTO sampler_load VALUES (?, ?)", [(i, "x" * 50) for i in range(rows)]
        )
        work.commit()
        got = sampler.sample()
        inserted = sampler.raw[rows_key]
        assert inserted - base_rows >= rows
        assert inserted <= status(pyodbc, mariadb, rows_key.rsplit(".", 1)[1])
        assert sampler.raw["mysql.status.Innodb_os_log_written"] - base_log >= rows * 50
        assert (
            got["server.rows_inserted_per_s"] is not None and got["server.rows_inserted_per_s"] > 0
        )
        assert got["server.connections"] is not None and got["server.connections"] >= 2
        assert got["mysql.status.Com_insert_per_s"] is not None
        info = sampler.info()
        assert info["datadir"] and info["innodb_flush_log_at_trx_commit"] in ("0", "1", "2")
        location = sampler.server_location()
        assert mariadb.proc is not None and location.pid == mariadb.proc.pid
    finally:
        work.cursor().execute("DROP TABLE IF EXISTS sampler_load")
        work.close()
        sampler.close()


@pytest.mark.mariadb
def test_row_lock_wait_is_seen(mariadb: Any, pyodbc_module: Any) -> None:
    pyodbc = pyodbc_module
    holder = pyodbc.connect(mariadb.odbc(), autocommit=True)
    holder.cursor().execute("DROP TABLE IF EXISTS sampler_lock")
    holder.cursor().execute("CREATE TABLE sampler_lock (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    holder.cursor().execute("INSERT INTO sampler_lock VALUES (1, 0)")
    holder.autocommit = False
    holder.cursor().execute("SELECT v FROM sampler_lock WHERE id = 1 FOR UPDATE").fetchall()
    blocked = pyodbc.connect(mariadb.odbc(), autocommit=True)
    blocked.cursor().execute("SET SESSION innodb_lock_wait_timeout = 30")

    def wait_for_lock() -> None:
        with contextlib.suppress(pyodbc.Error):
            blocked.cursor().execute("UPDATE sampler_lock SET v = 1 WHERE id = 1")

    worker = threading.Thread(target=wait_for_lock)
    sampler = MysqlSampler(connector(pyodbc, mariadb))
    sampler.open()
    try:
        sampler.sample()
        base_waits = sampler.raw["mysql.status.Innodb_row_lock_waits"]
        worker.start()
        for _ in range(200):
            got = sampler.sample()
            if got.get("mysql.status.Innodb_row_lock_current_waits"):
                break
            time.sleep(0.05)
        assert got["mysql.status.Innodb_row_lock_current_waits"] == 1
        assert sampler.raw["mysql.status.Innodb_row_lock_waits"] == base_waits + 1
    finally:
        holder.rollback()
        worker.join(timeout=60)
        holder.autocommit = True
        holder.cursor().execute("DROP TABLE IF EXISTS sampler_lock")
        holder.close()
        blocked.close()
        sampler.close()


@pytest.mark.parametrize(("state", "trx", "command", "category"), [
    ("Waiting for table metadata lock", "RUNNING", "Query", "lock"),
    ("Update", "LOCK WAIT", "Execute", "lock"),
    ("Sending data", "RUNNING", "Execute", "cpu"),
    ("Commit", "RUNNING", "Query", "log_io"),
    ("", "RUNNING", "Sleep", "client"),  # inside a transaction, waiting for its client
    ("", None, "Sleep", None),
    ("", None, "Binlog Dump", None),
])
def test_session_categories(state: str, trx: str | None, command: str,
                            category: str | None) -> None:
    assert session_category(command, state, trx) == category


def test_client_port_of_a_processlist_host() -> None:
    assert client_port("127.0.0.1:53412") == 53412
    assert client_port("::1:53412") == 53412
    assert client_port("localhost") is None  # a Unix socket


@pytest.mark.mariadb
@pytest.mark.parametrize("platform", ["linux", "other"])
def test_run_ports_are_the_ports_the_server_sees(mariadb: Any, pyodbc_module: Any,
                                                 platform: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import diagnostics.mysql as mysql

    if platform == "other":  # the psutil path, as off Linux
        monkeypatch.setattr(mysql.sys, "platform", "darwin")
    conns = [pyodbc_module.connect(mariadb.odbc(), autocommit=True) for _ in range(3)]
    try:
        seen = {client_port(c.cursor().execute(
            "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
        ).fetchone()[0]) for c in conns}
        family = mysql.descendants({os.getpid()})
        assert os.getpid() in family
        assert seen <= run_ports(family, (mariadb.host, mariadb.port))
        assert run_ports(family, (mariadb.host, mariadb.port + 1)) == set()
    finally:
        for c in conns:
            c.close()
