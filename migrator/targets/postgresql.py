"""PostgreSQL through psqlODBC, plus ``COPY`` through psycopg (the native bulk path).

Facts measured on Debian 12 (psqlODBC 13.02, PostgreSQL 15), which the dialect turns into
behaviour and shows in :meth:`PostgresDialect.advice`:

* psqlODBC wraps every statement in a savepoint by default (statement-level rollback,
  ``Protocol=7.4-2``); ``Protocol=7.4-1`` (transaction-level rollback, what a batch wants
  anyway) removes it and roughly doubles ``executemany``.
* ``fast_executemany`` batches only with ``UseServerSidePrepare=0``; with server-side
  prepare on (the default) it still makes one round trip per row.
* A multi-row VALUES with server-side prepare on breaks above ~7,498 parameters ("lost
  synchronization with server"), so the parameter budget is capped below that.

``copy`` opens its own psycopg session from the ODBC string's server, port, database, user
and password (``pip install 'migration-bench[postgres]'``). Once a batch used ``copy``, the
rest of that batch (its checkpoint row) runs on the same session, so the batch and its
checkpoint still commit together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from migrator import odbcini, session
from migrator.connstr import ConnectionParams
from migrator.errors import TargetError
from migrator.mapping import ColumnType
from migrator.targets.base import DEFAULT_SCHEMA, InsertMethod, Row
from migrator.targets.odbc import OdbcConnection, OdbcDialect, OdbcError, OdbcIntegrityError

if TYPE_CHECKING:
    from migrator.runlock import LockName, LockSQL

# Measured (psqlODBC 13.02, PG 15): 7,498 parameters per statement work, 7,499 fail with
# "lost synchronization with server: got message type "t", length 30002". The server's
# ParameterDescription is 6 + 4n bytes and psqlODBC rejects messages over 30,000 bytes:
# n ≤ 7,498, whatever the column types.
SSP_PARAM_LIMIT = 7498
PG_PARAM_LIMIT = 65535  # the wire protocol's Int16 parameter count


def _on(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "yes", "true", "on")


class PostgresDialect(OdbcDialect):
    name: ClassVar[str] = "postgresql"
    max_params: ClassVar[int] = PG_PARAM_LIMIT
    supports_schemas: ClassVar[bool] = True
    default_schema: ClassVar[str | None] = DEFAULT_SCHEMA
    max_identifier_bytes: ClassVar[int] = 63  # NAMEDATALEN - 1; longer names are cut
    transactional_ddl: ClassVar[bool] = True
    session_id_sql: ClassVar[str] = "SELECT pg_backend_pid()"
    server_version_sql: ClassVar[str] = "SELECT current_setting('server_version_num')"
    values_rows: ClassVar[int] = 100
    # benchmarks/insert_methods.py: copy ≫ values > fast (UseServerSidePrepare=0) > executemany
    auto_methods: ClassVar[tuple[str, ...]] = ("copy", "values", "fast", "executemany")

    # ---- driver settings ---------------------------------------------------------------------
    @property
    def server_side_prepare(self) -> bool:
        """psqlODBC's ``UseServerSidePrepare`` (default on since psqlODBC 9.6)."""
        return _on(self.params.get_any("UseServerSidePrepare"), True)

    @property
    def statement_savepoints(self) -> bool:
        """True unless ``Protocol=7.4-0``/``7.4-1`` (or ``B12``-style options) turn off
        psqlODBC's per-statement savepoint (statement-level rollback, the default)."""
        proto = (self.params.get_any("Protocol") or "").strip()
        if "-" in proto:
            return proto.rsplit("-", 1)[1] == "2"
        return True

    def format_server_version(self, value: Any) -> str:
        return pg_version(int(value))

    def param_budget(self) -> int:
        return SSP_PARAM_LIMIT if self.server_side_prepare else super().param_budget()

    def column_sql_type(self, ctype: ColumnType) -> str:
        if ctype.kind == "decimal":
            return f"NUMERIC({ctype.precision},{ctype.scale})"
        return super().column_sql_type(ctype)

    def list_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        # pg_class, not information_schema: that one hides tables we have no right on,
        # and any relation (a view, a sequence) blocks a table of the same name.
        schema = self.schema
        base = ("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
                "AND n.nspname = ")
        return (base + "?", (schema,)) if schema else (base + "current_schema()", ())

    def schema_exists_sql(self) -> str:
        return "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?"

    def insert_methods(self) -> list[InsertMethod]:
        fast = InsertMethod("fast")
        if self.server_side_prepare:
            fast = InsertMethod(
                "fast", True,
                "psqlODBC sends one round trip per row unless UseServerSidePrepare=0 "
                "is in the connection string")
        copy_reason = copy_unavailable_reason(self.params)
        return [InsertMethod("executemany"), fast, InsertMethod("values"),
                InsertMethod("copy", not copy_reason, copy_reason)]

    def advice(self) -> list[str]:
        out = []
        if self.statement_savepoints:
            out.append("psqlODBC wraps every statement in a SAVEPOINT (statement-level "
                       "rollback): add Protocol=7.4-1 to the connection string (≈2× faster "
                       "executemany; a failed batch rolls back whole either way)")
        if self.server_side_prepare:
            out.append("psqlODBC UseServerSidePrepare=1: fast_executemany makes one round "
                       "trip per row and multi-row VALUES is capped at "
                       f"{SSP_PARAM_LIMIT} parameters; UseServerSidePrepare=0 lifts both")
        return out

    # ---- the run lock: a session-level advisory lock ---------------------------------------
    lock_identity_sql: ClassVar[str] = "SELECT current_database()"

    def run_lock_sql(self, name: LockName) -> LockSQL:
        """``pg_try_advisory_lock(key)``; pg_locks shows a bigint key as classid (high 32
        bits) and objid (low 32 bits) with objsubid 1. TCP keepalives end the session of a
        client machine that died within about IDLE_LIMIT_S (the OS default is hours)."""
        from migrator.runlock import IDLE_LIMIT_S, LockSQL, one_is_yes

        key = name.number
        parts = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        mine = ("locktype = 'advisory' AND granted AND objsubid = 1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = ? AND objid::bigint = ?")
        idle = IDLE_LIMIT_S // 3
        return LockSQL(
            setup=(f"SET application_name = '{session.session_name('lock')}'",
                   f"SET tcp_keepalives_idle = {idle}",
                   f"SET tcp_keepalives_interval = {idle // 2}",
                   "SET tcp_keepalives_count = 4"),
            acquire=("SELECT CASE WHEN pg_try_advisory_lock(CAST(? AS BIGINT)) "
                     "THEN 1 ELSE 0 END", (key,)),
            acquired=one_is_yes,
            held=(f"SELECT COUNT(*) FROM pg_locks WHERE pid = pg_backend_pid() AND {mine}",
                  parts),
            release=("SELECT CASE WHEN pg_advisory_unlock(CAST(? AS BIGINT)) "
                     "THEN 1 ELSE 0 END", (key,)),
            owner=(f"SELECT pid FROM pg_locks WHERE {mine}", parts),
            teardown=("RESET application_name", "RESET tcp_keepalives_idle",
                      "RESET tcp_keepalives_interval", "RESET tcp_keepalives_count"))

    # ---- COPY through psycopg ----------------------------------------------------------------
    def copy_rows(self, conn: OdbcConnection, table: str, columns: Sequence[str],
                  rows: Sequence[Row]) -> None:
        if conn.sidecar is None:
            _open_sidecar(conn)
        self.sidecar_insert(conn, table, columns, rows)

    def sidecar_insert(self, conn: OdbcConnection, table: str, columns: Sequence[str],
                       rows: Sequence[Row]) -> None:
        q = self.quote
        sql = f"COPY {self.table_ref(table)} ({', '.join(q(c) for c in columns)}) FROM STDIN"
        psycopg = _psycopg()
        try:
            with conn.sidecar.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise _pg_error(exc, f"postgresql: COPY into {table} failed",
                            conn.sidecar) from exc

    def sidecar_execute(self, conn: OdbcConnection, sql: str, params: Sequence[Any]) -> None:
        psycopg = _psycopg()
        try:
            conn.sidecar.execute(qmark_to_pyformat(sql) if params else sql,
                                 list(params) if params else None)
        except psycopg.Error as exc:
            raise _pg_error(exc, "postgresql", conn.sidecar) from exc

    def sidecar_query(self, conn: OdbcConnection, sql: str,
                      params: Sequence[Any]) -> list[Row]:
        psycopg = _psycopg()
        try:
            cur = conn.sidecar.execute(qmark_to_pyformat(sql) if params else sql,
                                       list(params) if params else None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as exc:
            raise _pg_error(exc, "postgresql", conn.sidecar) from exc

    def sidecar_commit(self, conn: OdbcConnection) -> None:
        psycopg = _psycopg()
        try:
            conn.sidecar.commit()
        except psycopg.Error as exc:
            raise _pg_error(exc, "postgresql: commit failed", conn.sidecar) from exc

    def sidecar_rollback(self, conn: OdbcConnection) -> None:
        if not (conn.sidecar.closed or conn.sidecar.broken):
            conn.sidecar.rollback()

    def sidecar_close(self, conn: OdbcConnection) -> None:
        side, conn.sidecar = conn.sidecar, None
        if side.closed or side.broken:
            side.close()  # a dead session never goes back to the pool
            return
        if side.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE:
            try:
                side.rollback()
            except _psycopg().Error:
                side.close()
                return
        # Mirror the ODBC pooling choice: keep the session for the next checkout when the
        # driver manager pools, close it when it does not.
        pooled = conn.target.pooling if conn.target.pooling is not None \
            else odbcini.active_pooling()
        if pooled and len(conn.target.sidecar_pool) < 64:
            conn.target.sidecar_pool.append(side)
        else:
            side.close()

    def sidecar_session_id(self, conn: OdbcConnection) -> str:
        return str(conn.sidecar.info.backend_pid)


def pg_version(version_num: int) -> str:
    """``server_version_num`` as PostgreSQL writes it: 150018 → "15.18" (two parts since
    PostgreSQL 10), 90624 → "9.6.24"."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def _psycopg() -> Any:
    import psycopg

    return psycopg


def _pg_error_text(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _pg_error(exc: BaseException, what: str, session: Any = None) -> Exception:
    """psycopg's error as ours. psycopg reports a connection closed during COPY with no
    SQLSTATE; ``session.broken`` says whether the session died."""
    state = str(getattr(exc, "sqlstate", "") or "")
    text = _pg_error_text(exc)
    if state.startswith("23"):
        return OdbcIntegrityError(f"{what}: {text}", state, text)
    lost = bool(session is not None and (session.broken or session.closed))
    return OdbcError(f"{what}: {text}", state, text, dbms="postgresql", connection_lost=lost)


def qmark_to_pyformat(sql: str) -> str:
    """``?`` placeholders → psycopg's ``%s`` (and ``%`` → ``%%``), outside quoted text."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
            continue
        if ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


# ---- psycopg connection parameters from the ODBC string --------------------------------------
def _dsn_params(params: ConnectionParams) -> ConnectionParams:
    """Merge a ``DSN=name``'s entry from odbc.ini (system, then user) under the string's
    own keys, which win as they do in the driver."""
    dsn = params.get_any("DSN")
    if not dsn:
        return params
    pairs = list(params.pairs)
    files = [odbcini.system_paths().odbc_ini, Path(os.path.expanduser("~/.odbc.ini"))]
    for path in files:
        ini = odbcini.read_ini(path)
        if ini.has_section(dsn):
            pairs.extend(ini[dsn].items())
            break
    return ConnectionParams(pairs)


def psycopg_kwargs(params: ConnectionParams) -> dict[str, str]:
    """psycopg ``connect()`` keywords for the server an ODBC string names."""
    p = _dsn_params(params)
    out: dict[str, str] = {}
    host = p.get_any("Server", "Servername", "Host")
    if host:
        out["host"] = host
    port = p.get_any("Port")
    if port:
        out["port"] = port
    db = p.get_any("Database", "Dbname")
    if db:
        out["dbname"] = db
    user = p.get_any("Uid", "Username", "User", "UserName")
    if user:
        out["user"] = user
    pwd = p.get_any("Pwd", "Password")
    if pwd is not None:
        out["password"] = pwd
    ssl = p.get_any("SSLmode", "SSLMode", "sslmode")
    if ssl:
        out["sslmode"] = ssl
    return out


def copy_unavailable_reason(params: ConnectionParams) -> str:
    """"" when COPY can be used, else why not (for ``InsertMethod.reason``)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return ("needs psycopg: pip install 'psycopg[binary]' "
                "(or the extra: pip install 'migration-bench[postgres]')")
    if "dbname" not in psycopg_kwargs(params) and "host" not in psycopg_kwargs(params):
        return ("COPY opens its own psycopg session and the connection string names no "
                "Server/Database (a DSN that odbc.ini does not define?)")
    return ""


def _open_sidecar(conn: OdbcConnection) -> None:
    """Move this batch to a psycopg session: the ODBC side must have no pending writes."""
    psycopg = _psycopg()
    if conn._odbc_wrote:
        raise TargetError("postgresql: insert method 'copy' must be the first write of a "
                          "batch (this batch already wrote through ODBC, and COPY runs on "
                          "its own session)")
    if conn._odbc_dirty:  # only reads (a resume check): end that transaction
        conn.commit()
    pool = conn.target.sidecar_pool
    while pool:
        side = pool.pop()
        if not (side.closed or side.broken):
            conn.sidecar = side
            return
    kwargs = psycopg_kwargs(conn.target.params)
    try:
        conn.sidecar = psycopg.connect(**kwargs, connect_timeout=15,
                                       application_name=session.session_name("copy"))
    except psycopg.Error as exc:
        raise OdbcError(f"postgresql: COPY needs a psycopg session and it could not "
                        f"connect: {_pg_error_text(exc)}",
                        str(getattr(exc, "sqlstate", "") or ""), _pg_error_text(exc),
                        dbms="postgresql") from None
