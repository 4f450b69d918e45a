"""Transient database errors, and the one bounded policy that retries them.

A server restart (``pg_ctl restart``, a failover), a killed session, a deadlock victim or a
serialization failure ends a statement but not the migration: the same work, tried again on
a fresh connection a moment later, succeeds. Everything that follows such an error — closing
the dead session, reconnecting, asking the checkpoint rows whether a COMMIT whose
acknowledgement was lost did land, running the batch again — happens inside one
:class:`Retry`, so a failure *during* recovery (the server still starting up) is just another
failed attempt. The policy bounds the total time (``--retry-window``), not the number of
attempts: a restart takes as long as it takes, and the run either gets through within the
window or stops with one line naming the cause and ``--resume``.

:func:`classify` decides what is transient from structured facts first — the SQLSTATE, the
driver's native error code (per DBMS: MariaDB and SQL Server number their errors
differently), and whether the session is known to be dead — and reads the message text only
when the driver gave nothing better (psycopg reports a connection closed during ``COPY``
with no SQLSTATE; psqlODBC reports some lost connections as ``HY000``).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from migrator.errors import TargetError

T = TypeVar("T")

DEFAULT_WINDOW_S = 30.0

# What kind of transient failure an error is (None: permanent).
LOST = "connection lost"  # the session died or the server could not be reached
SERVER = "server unavailable"  # shutting down, starting up, recovering, ended the session
CONFLICT = "conflict"  # deadlock victim, serialization failure, lock wait timeout, busy

# SQLSTATEs that say "try again" whatever the DBMS. Class 08 (connection exception) is
# matched by prefix below.
_STATES = {
    "40001": CONFLICT,  # serialization failure (also SQL Server's and MariaDB's deadlock)
    "40P01": CONFLICT,  # PostgreSQL deadlock detected
    "55P03": CONFLICT,  # PostgreSQL lock_not_available (lock_timeout)
    "57P01": SERVER,  # admin_shutdown: pg_terminate_backend, pg_ctl stop -m fast
    "57P02": SERVER,  # crash_shutdown: another backend crashed, pg_ctl stop -m immediate
    "57P03": SERVER,  # cannot_connect_now: starting up, shutting down, recovery
    "HYT00": LOST,  # timeout expired (login or query): the server did not answer
    "HYT01": LOST,  # connection timeout expired
}
# SQLSTATEs that are never transient, whatever the message says: authentication and
# authorisation, a missing database, syntax and access rules, data errors.
_PERMANENT_CLASSES = ("28", "3D", "42", "22", "23", "0A")

# Native error codes, per dialect name (``migrator.targets``): the numbers overlap between
# DBMSs, so a code is read only for the DBMS that reported it.
_NATIVE: dict[str, dict[int, str]] = {
    "mysql": {  # MariaDB / MySQL server and Connector/C client errors
        1053: SERVER,  # ER_SERVER_SHUTDOWN: server shutdown in progress
        1158: LOST, 1159: LOST, 1160: LOST, 1161: LOST,  # ER_NET_READ/WRITE errors
        1205: CONFLICT,  # ER_LOCK_WAIT_TIMEOUT
        1213: CONFLICT,  # ER_LOCK_DEADLOCK
        1927: LOST,  # ER_CONNECTION_KILLED: KILL CONNECTION
        4031: LOST,  # ER_CLIENT_INTERACTION_TIMEOUT: disconnected for inactivity
        2002: LOST, 2003: LOST,  # CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR: can't connect
        2006: LOST,  # CR_SERVER_GONE_ERROR: server has gone away
        2013: LOST,  # CR_SERVER_LOST: lost connection during query
        2055: LOST,  # CR_SERVER_LOST_EXTENDED
        5013: LOST, 5014: LOST,  # Connector/C 3: read / write error on the socket
    },
    "mssql": {  # SQL Server and Azure SQL
        1205: CONFLICT,  # chosen as deadlock victim
        -2: LOST,  # timeout expired
        64: LOST, 233: LOST,  # the connection was closed / no process on the other end
        10053: LOST, 10054: LOST, 10060: LOST,  # aborted / reset / timed out (transport)
        40197: SERVER, 40501: SERVER, 40613: SERVER,  # Azure: reconfiguration, busy, moving
        49918: SERVER, 49919: SERVER, 49920: SERVER,  # Azure: too many operations
        10928: SERVER, 10929: SERVER,  # Azure: resource limits
    },
    "sqlite": {5: CONFLICT, 6: CONFLICT},  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
}

# Message text, only when the structured facts said nothing: lower-case fragments of what
# psycopg, psqlODBC, MariaDB Connector/ODBC, Microsoft's driver and sqlite3 print.
_WORDS = (
    ("the database system is shutting down", SERVER),
    ("the database system is starting up", SERVER),
    ("the database system is in recovery mode", SERVER),
    ("the database system is not yet accepting connections", SERVER),
    ("the database system is not accepting connections", SERVER),
    ("terminating connection due to administrator command", SERVER),
    ("server shutdown in progress", SERVER),
    ("server closed the connection unexpectedly", LOST),
    ("connection has been lost", LOST),
    ("connection is lost", LOST),
    ("connection lost", LOST),
    ("the connection is down", LOST),
    ("connection not open", LOST),
    ("connection is closed", LOST),
    ("connection refused", LOST),
    ("could not connect to server", LOST),
    ("can't connect to", LOST),
    ("lost connection", LOST),
    ("server has gone away", LOST),
    ("communication link failure", LOST),
    ("connection reset", LOST),
    ("broken pipe", LOST),
    ("no connection to the server", LOST),
    ("ssl connection has been closed unexpectedly", LOST),
    ("deadlock", CONFLICT),
    ("could not serialize access", CONFLICT),
    ("lock wait timeout exceeded", CONFLICT),
    ("database is locked", CONFLICT),
    ("database is busy", CONFLICT),
    ("database table is locked", CONFLICT),
)
# ... and text that rules a retry out (a connect error says "08001" for a wrong password
# too, so the words decide there).
_PERMANENT_WORDS = ("password authentication failed", "authentication failed",
                    "access denied", "login failed", "no pg_hba.conf entry",
                    "permission denied", "does not exist", "unknown database")

# MariaDB Connector/ODBC 3.1 now and then fails a multi-row insert from one of several
# concurrent sessions with "Memory allocation error (0)" (SQLSTATE HY001); the same batch on
# a fresh session goes through (tests/test_concurrent_runs.py). The session is discarded.
_MARIADB_DRIVER_FAULT = "memory allocation error"

_NATIVE_IN_PYODBC = re.compile(r"\((-?\d+)\) \(SQL\w+\)")


def native_code(message: str) -> int | None:
    """The native error code pyodbc puts in its message: ``[state] text (CODE) (SQLFunc)``
    (the first diagnostic record's)."""
    m = _NATIVE_IN_PYODBC.search(message)
    return int(m.group(1)) if m else None


def classify(exc: BaseException) -> str | None:
    """``LOST``, ``SERVER`` or ``CONFLICT`` when trying again later may succeed, else None.

    Reads the structured facts a :class:`migrator.errors.DatabaseError` keeps (or a raw
    driver exception carries), then the message as a fallback.
    """
    state = str(getattr(exc, "sqlstate", "") or "")
    native = getattr(exc, "native", None)
    dbms = str(getattr(exc, "dbms", "") or "")
    text = " ".join(str(exc).split()).lower()
    if native is None:  # a raw pyodbc error: (state, "[state] text (CODE) (SQLFunc)")
        args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
        if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            state = state or args[0]
            native = native_code(args[1])
    if state[:2] in _PERMANENT_CLASSES:
        return None
    if getattr(exc, "connection_lost", False):
        return LOST
    if state in _STATES:
        return _STATES[state]
    if native is not None and dbms in _NATIVE:
        code = native & 0xFF if dbms == "sqlite" else native  # extended → primary code
        if code in _NATIVE[dbms]:
            return _NATIVE[dbms][code]
    if any(w in text for w in _PERMANENT_WORDS):
        return None
    if dbms == "mysql" and (state == "HY001" or _MARIADB_DRIVER_FAULT in text):
        return LOST
    if state.startswith("08"):
        return LOST
    for words, kind in _WORDS:
        if words in text:
            return kind
    return None


def is_transient(exc: BaseException) -> bool:
    """Would the same work probably succeed if tried again on a fresh connection?"""
    return classify(exc) is not None


class RetryExhausted(TargetError):
    """A transient failure outlived the retry window: one line, the cause and the way on."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long transient failures are retried, and how far apart the attempts are.

    ``window_s`` bounds the time from an operation's first failure to its last attempt;
    0 turns retries off. Delays start at ``first_delay_s`` and double up to
    ``max_delay_s``, each scaled by a random factor in ``1 ± jitter`` so that workers that
    failed together do not retry together.
    """

    window_s: float = DEFAULT_WINDOW_S
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.window_s >= 0:  # (rejects NaN too)
            raise ValueError(f"retry window must be >= 0 seconds, got {self.window_s}")
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ValueError("retry delays must satisfy 0 < first_delay_s <= max_delay_s")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("retry factor must be >= 1 and jitter in [0, 1)")

    def start(self, what: str = "", *, clock: Callable[[], float] | None = None,
              sleep: Callable[[float], None] | None = None,
              rng: random.Random | None = None) -> Retry:
        """A fresh retry state for one operation (``what`` prefixes the final message)."""
        return Retry(self, what, clock=clock, sleep=sleep, rng=rng)

    def call(self, fn: Callable[[], T], what: str = "",
             cleanup: Callable[[], None] | None = None) -> T:
        """``fn()``, tried again after each transient :class:`TargetError` (``cleanup()``
        first: close what the failed attempt left open) until the window is spent."""
        retry = self.start(what)
        while True:
            try:
                return fn()
            except TargetError as exc:
                if cleanup is not None:
                    cleanup()
                retry.after(exc)


class Retry:
    """The retry state of one operation: call :meth:`after` with each failure."""

    def __init__(self, policy: RetryPolicy, what: str = "", *,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.policy = policy
        self.what = what
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self._rng = rng  # (made on the first failure: most operations never fail)
        self.failures = 0
        self.waited = 0.0  # seconds slept between attempts
        self._first: float | None = None

    def after(self, exc: BaseException) -> None:
        """Return when the next attempt may start; raise ``exc`` itself when it is
        permanent, :class:`RetryExhausted` when the window is spent."""
        if not is_transient(exc):
            raise exc
        now = self.clock()
        if self._first is None:
            self._first = now
        self.failures += 1
        p = self.policy
        left = p.window_s - (now - self._first)
        if left <= 0:
            raise RetryExhausted(self._give_up(exc, now - self._first)) from exc
        base = min(p.max_delay_s, p.first_delay_s * p.factor ** (self.failures - 1))
        if self._rng is None:
            self._rng = random.Random()
        delay = min(left, base * self._rng.uniform(1 - p.jitter, 1 + p.jitter))
        self.sleep(delay)
        self.waited += delay

    def _give_up(self, exc: BaseException, elapsed: float) -> str:
        cause = " ".join(str(exc).split()) or type(exc).__name__
        head = f"{self.what}: {cause}" if self.what else cause
        if self.policy.window_s == 0:
            how = "retries are off (--retry-window 0)"
        else:
            how = (f"still failing after {self.failures - 1} retries in {elapsed:.1f} s "
                   f"(--retry-window {self.policy.window_s:g})")
        return f"{head} — {how}; committed batches are kept — continue with --resume"
