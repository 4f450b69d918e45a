"""One run per target: an exclusive lock a run holds on its target for its whole life.

Two runs writing into one target at once lose records for good: one drops the tables the
other is filling, or both continue the same checkpoints. So a run takes a lock before it
reads checkpoints or touches the schema and keeps it until its final count check; a second
run — fresh or ``--resume``, any worker count, from any machine — is refused at once with
:class:`TargetBusy`, which names the holder (run id, host, pid, started at, results folder).

The lock is held by something that dies with its holder, never by a row or a file's mere
existence, so a killed run never blocks the next one:

* SQLite: ``flock`` on ``<database>.lock`` beside the database file (the kernel drops it
  when the process dies); the file holds the holder's details.
* Servers: a lock owned by one dedicated session (PostgreSQL ``pg_try_advisory_lock``,
  MariaDB/MySQL ``GET_LOCK``, SQL Server ``sp_getapplock`` owned by the session): the server
  drops it when the session ends. The holder's details are a row of ``mb_lock``, written
  only by the session that holds the lock; a row left by a killed run is overwritten by
  the next holder and never blocks anyone, because only the server's lock decides.
  ``mb_lock`` is made only beside tables the tool made (its ``mb_tables`` registry): a run
  that the ownership check refuses leaves nothing behind. So the very first run into a
  namespace is named once its tables exist; until then a refused run sees the holder's
  server session only.

Only the coordinating process locks: worker processes of the same run share its lock.

The dialects provide the statements (:class:`LockSQL`); the targets choose the kind
(``Target.acquire_run_lock``). Use :class:`RunLock` around a whole run::

    with RunLock(target, run_id="3f9a1c2e"):  # after target.set_namespace
        stats = ParallelCoordinator(target, mapping, config).run(units, resume=resume)
        reconcile(target, mapping)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from migrator.errors import TargetError
from migrator.targets.base import LOCK_TABLE, REGISTRY_TABLE, table_exists

if TYPE_CHECKING:
    from migrator.targets.base import Connection, Target

HOLDER_CHARS = 2000  # the holder's details, as JSON
# The lock session is pinged this often; a ping that finds it dead takes the lock again.
KEEPALIVE_S = 5.0
# Until the holder's details are recorded (the run has not yet made its tables), this often.
RECORD_POLL_S = 0.25
# A server ends an idle lock session after this long (MariaDB wait_timeout, PostgreSQL TCP
# keepalives): a client machine that crashed frees the target within about a minute.
IDLE_LIMIT_S = 60
# The holder is a dead process on this host but its server session is still closing: wait
# this long for the server to notice before calling the target busy.
DEAD_HOLDER_GRACE_S = 10.0

Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Holder:
    """Who holds a target: shown to a run that is refused."""

    run_id: str
    host: str
    pid: int
    started_at: str  # ISO 8601, UTC
    session: str = ""  # the server's id of the lock session ("" for a lock file)
    results: str = ""  # where the run writes its result files

    @classmethod
    def here(cls, run_id: str, results: str = "") -> Holder:
        return cls(run_id=run_id, host=socket.gethostname(), pid=os.getpid(),
                   started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   results=results)

    def describe(self) -> str:
        started = self.started_at.replace("T", " ").replace("+00:00", " UTC")
        results = f", results in {self.results}" if self.results else ""
        return (f"run {self.run_id} (host {self.host}, pid {self.pid}, started {started}"
                f"{results})")

    def to_json(self) -> str:
        text = json.dumps(asdict(self), ensure_ascii=False)
        if len(text) > HOLDER_CHARS:  # (a very long folder: keep the rest readable)
            keep = HOLDER_CHARS - len(text) + len(self.results) - 3
            text = json.dumps(asdict(replace(self, results="…" + self.results[-keep:]
                                             if keep > 0 else "…")), ensure_ascii=False)
        return text

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Holder | None:
        """The holder a lock file or ``mb_lock`` row names; None for anything unreadable
        (a holder still writing it, a damaged file): the details are only shown."""
        if not text:
            return None
        try:
            d = json.loads(text)
            return cls(run_id=str(d["run_id"]), host=str(d["host"]), pid=int(d["pid"]),
                       started_at=str(d["started_at"]), session=str(d.get("session", "")),
                       results=str(d.get("results", "")))
        except (ValueError, TypeError, KeyError):
            return None

    def is_dead_here(self) -> bool:
        """The holder ran on this host and its process is gone."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # (EPERM: it exists, under another user)
            return False
        return False


class TargetBusy(TargetError):
    """Another run holds the target's run lock."""

    def __init__(self, target: str, holder: Holder | None, session: str = "") -> None:
        if holder is not None:
            who = holder.describe()
        elif session:
            who = f"a run whose details are not recorded (server session {session})"
        else:
            who = "a run whose details are not recorded"
        super().__init__(f"{target} is in use by another run: {who}; wait for it to "
                         f"finish, or stop it (a stopped or killed run frees the target at "
                         f"once)")
        self.target = target
        self.holder = holder


@dataclass(frozen=True)
class LockName:
    """The lock of one target: ``text`` for named locks (at most 64 characters, MariaDB's
    limit), ``number`` for PostgreSQL's 64-bit advisory keys. Derived from the database's
    name and an optional namespace (a table prefix or schema), so runs into different
    databases, or different namespaces of one database, do not exclude each other."""

    text: str
    number: int

    @classmethod
    def of(cls, identity: str, namespace: str | None = None) -> LockName:
        digest = hashlib.sha256(
            f"migration-bench run lock\0{identity}\0{namespace or ''}".encode()).digest()
        return cls("mb-run-" + digest[:20].hex(),
                   int.from_bytes(digest[:8], "big", signed=True))


@dataclass(frozen=True)
class LockSQL:
    """A dialect's statements for a session-owned lock; each query returns one row.

    ``acquire`` returns the server's answer, read by ``acquired``; ``held`` returns 1 while
    this session holds the lock; ``owner`` returns the id of the session holding it, where
    the server shows it to any user (None: it does not).
    """

    setup: tuple[str, ...]
    acquire: Statement
    acquired: Callable[[Any], bool]
    held: Statement
    release: Statement
    owner: Statement | None
    teardown: tuple[str, ...] = ()


def one_is_yes(value: Any) -> bool:
    """``acquired`` for servers that answer 1 (taken) or 0 (held by another session);
    None (MariaDB's GET_LOCK on an error) is an error, not a busy target."""
    if value is None:
        raise TargetError("the server could not take the run lock (it answered NULL)")
    return _truthy(value)


class HeldLock(ABC):
    """A lock a run holds; :meth:`release` frees it (idempotent)."""

    @abstractmethod
    def release(self) -> None: ...

    def lost(self) -> str | None:
        """Why the lock was lost while held (another run took the target), else None."""
        return None


class NoLock(HeldLock):
    """A target no other process can open (SQLite ``:memory:``): nothing to exclude."""

    def release(self) -> None:
        pass


# ---- SQLite: a lock file ----------------------------------------------------------------------
def lock_file_path(database: str, namespace: str | None = None) -> str:
    """``<database>.lock`` beside the database file (symlinks resolved, so every name of
    one file shares one lock); a namespace gets its own file."""
    base = os.path.realpath(database)
    if namespace:
        return f"{base}.{LockName.of('', namespace).text[7:19]}.lock"
    return base + ".lock"


class FileLock(HeldLock):
    """``flock`` on a lock file, which holds the holder's details as JSON.

    Released, the file is removed while still locked; a run that opened it just before
    then finds the path gone (or another file there) once it gets the lock, and tries again
    on the new file, so two runs never hold two different files of one path.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str, holder: Holder, display: str) -> FileLock:
        import fcntl

        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise TargetError(f"{display}: cannot open the run lock file {path}: "
                                  f"{exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, HOLDER_CHARS * 4, 0)
                os.close(fd)
                raise TargetBusy(display, Holder.from_json(text)) from None
            except OSError as exc:
                os.close(fd)
                raise TargetError(f"{display}: cannot lock {path}: {exc.strerror}") from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder removed it as we opened it: take the new one
        try:
            data = holder.to_json().encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            pass  # the details are only shown to a refused run; the flock is the lock
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                os.unlink(self.path)
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


# ---- servers: a lock owned by one session ------------------------------------------------------
class LockSession(Protocol):
    """What :class:`SessionLock` needs of a dialect: how it names the database, and its
    statements."""

    @property
    def lock_identity_sql(self) -> str: ...

    def run_lock_sql(self, name: LockName) -> LockSQL: ...


def _value(conn: Connection, stmt: Statement) -> Any:
    rows = conn.query(*stmt)
    return rows[0][0] if rows and rows[0] else None


class SessionLock(HeldLock):
    """A lock owned by a dedicated server session, kept alive by a background thread.

    The session runs in autocommit mode: it never holds a transaction open for the length
    of the run. Every :data:`KEEPALIVE_S` the thread checks that the session still holds
    the lock; if the session died (a server restart ends every session), it connects again
    and takes the lock again, and if another run took it in between, :meth:`lost` says so.
    """

    def __init__(self, connect: Callable[[], Connection], name: LockName, sql: LockSQL,
                 holder: Holder, display: str, conn: Connection) -> None:
        self._connect = connect
        self.name = name
        self.sql = sql
        self.holder = holder
        self.display = display
        self._conn: Connection | None = conn
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._lost: str | None = None
        self.reacquired = 0
        self.recorded = _write_holder(conn, name, holder)
        self._thread = threading.Thread(target=self._keepalive, name="mb-run-lock",
                                        daemon=True)
        self._thread.start()

    # ---- taking the lock ------------------------------------------------------------------
    @classmethod
    def acquire(cls, conn: Connection, connect: Callable[[], Connection],
                dialect: LockSession, holder: Holder, display: str,
                namespace: str | None = None) -> SessionLock:
        """Take the lock on ``conn``, which becomes the lock's session (closed on
        failure); ``connect`` opens another if that session dies."""
        try:
            identity = str(_value(conn, (dialect.lock_identity_sql, ())) or "")
            name = LockName.of(identity, namespace)
            sql = dialect.run_lock_sql(name)
            holder = _take(conn, name, sql, holder, display)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return cls(connect, name, sql, holder, display, conn)

    # ---- keeping it ------------------------------------------------------------------------
    def _keepalive(self) -> None:
        while not self._stop.wait(KEEPALIVE_S if self.recorded else RECORD_POLL_S):
            try:
                with self._mutex:
                    if self._stop.is_set():
                        return
                    if not self._still_held():
                        self._take_again()
                    elif not self.recorded and self._conn is not None:
                        self.recorded = _write_holder(self._conn, self.name, self.holder)
            except Exception:  # (a failed check is tried again at the next tick)
                pass
            if self._lost is not None:
                return

    def _still_held(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            if _truthy(_value(conn, self.sql.held)):
                return True
        except Exception:
            pass
        with contextlib.suppress(Exception):
            conn.close()
        self._conn = None
        return False

    def _take_again(self) -> None:
        """The session died (or lost its lock): connect and take the lock again."""
        conn = self._connect()
        try:
            self.holder = _take(conn, self.name, self.sql, self.holder, self.display,
                                grace=False)
        except TargetBusy as exc:
            with contextlib.suppress(Exception):
                conn.close()
            self._lost = (f"the run lock on {self.display} was lost while its server "
                          f"session was down, and another run took the target "
                          f"({exc.holder.describe() if exc.holder else 'details unknown'}): "
                          f"the rows of both runs may be mixed; check the target")
            return
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._conn = conn
        self.reacquired += 1
        self.recorded = _write_holder(conn, self.name, self.holder)

    def lost(self) -> str | None:
        return self._lost

    # ---- letting it go ---------------------------------------------------------------------
    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                with contextlib.suppress(Exception):
                    conn.execute(f"DELETE FROM {conn.dialect.table_ref(LOCK_TABLE)} "
                                 f"WHERE lock_key = {conn.dialect.placeholder}",
                                 (self.name.text,))
                with contextlib.suppress(Exception):  # (a dead session holds nothing)
                    conn.query(*self.sql.release)
                for stmt in self.sql.teardown:  # (a pooled session goes back as it came)
                    with contextlib.suppress(Exception):
                        conn.execute(stmt)
                set_autocommit = getattr(conn, "set_autocommit", None)
                if set_autocommit is not None:
                    with contextlib.suppress(Exception):
                        set_autocommit(False)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "yes")
    return bool(value) if value is not None else False


def _take(conn: Connection, name: LockName, sql: LockSQL, holder: Holder, display: str,
          *, grace: bool = True) -> Holder:
    """Take the lock on ``conn`` (autocommit); :class:`TargetBusy` naming the holder when
    another session has it. Returns the holder with this session's id."""
    set_autocommit = getattr(conn, "set_autocommit", None)
    if set_autocommit is not None:
        set_autocommit(True)
    for stmt in sql.setup:
        conn.execute(stmt)
    deadline: float | None = None
    while not sql.acquired(_value(conn, sql.acquire)):
        other, session = _read_holder(conn, name, sql)
        if grace and other is not None and other.is_dead_here():
            # Its process is gone; the server has not yet ended its session.
            deadline = deadline or time.monotonic() + DEAD_HOLDER_GRACE_S
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
        raise TargetBusy(display, other, session)
    return replace(holder, session=conn.session_id())


def _read_holder(conn: Connection, name: LockName, sql: LockSQL) -> tuple[Holder | None, str]:
    """The recorded holder, if the row belongs to the session that holds the lock now, and
    that session's id where the server shows it."""
    session = ""
    if sql.owner is not None:
        with contextlib.suppress(Exception):
            session = str(_value(conn, sql.owner) or "")
    holder = None
    with contextlib.suppress(Exception):
        d = conn.dialect
        holder = Holder.from_json(_value(conn, (
            f"SELECT holder FROM {d.table_ref(LOCK_TABLE)} WHERE lock_key = {d.placeholder}",
            (name.text,))))
    if holder is not None and session and holder.session != session:
        holder = None  # a row left by an earlier holder: its details would mislead
    return holder, session


def _write_holder(conn: Connection, name: LockName, holder: Holder) -> bool:
    """Record the holder's details for a refused run to show; False while the namespace
    holds no table of the tool's (nothing is created in a user's schema or database before
    the ownership check passed). Best effort: the server's lock is the lock, and a run must
    not fail because ``mb_lock`` cannot be written."""
    d = conn.dialect
    q = d.table_ref(LOCK_TABLE)
    p = d.placeholder
    try:
        if not table_exists(conn, LOCK_TABLE):
            if not table_exists(conn, REGISTRY_TABLE):
                return False
            conn.execute(d.lock_table_sql())
        conn.execute(f"DELETE FROM {q} WHERE lock_key = {p}", (name.text,))
        conn.execute(f"INSERT INTO {q} (lock_key, holder) VALUES ({p}, {p})",
                     (name.text, holder.to_json()))
    except Exception:
        return True  # (not writable: no use trying again every tick)
    return True


# ---- the context manager ------------------------------------------------------------------------
def lock_namespace(target: Target) -> str | None:
    """The lock namespace of the run's tables: their schema and prefix (see
    ``Target.set_namespace``). Runs into different namespaces of one database use different
    tables, bookkeeping included, so they do not exclude each other; None when the tables
    are in the database's default place."""
    dialect = target.dialect
    schema, prefix = dialect.schema, dialect.namespace.prefix
    if not schema and not prefix:
        return None
    return f"{schema or ''}\0{prefix}"



class RunLock:
    """Hold ``target``'s run lock for the ``with`` block; :class:`TargetBusy` on entry when
    another run holds it. The lock covers the namespace the target's tables are in
    (:func:`lock_namespace`), or ``namespace`` when given."""

    def __init__(self, target: Target, *, run_id: str, results: str = "",
                 namespace: str | None = None) -> None:
        self.target = target
        self.namespace = namespace
        self.holder = Holder.here(run_id, results)
        self._held: HeldLock | None = None

    def __enter__(self) -> RunLock:
        namespace = self.namespace
        if namespace is None:
            namespace = lock_namespace(self.target)
        self._held = self.target.acquire_run_lock(self.holder, namespace)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        lost = held.lost()
        held.release()
        if lost is not None and exc_type is None:
            raise TargetError(lost)
