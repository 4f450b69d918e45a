"""How each batch gets its database connection: the connection strategy, decided here.

Three strategies, one measured dimension (``bench run --connection``, a sweep dimension):

* ``per-batch`` — every batch opens a new physical connection and closes it after its
  commit. Driver-manager pooling is turned off for the process, so the close is real.
* ``pooled`` — every batch checks a connection out of a pool and gives it back: unixODBC's
  driver-manager pool (made effective with a private ``ODBCSYSINI``, see
  :mod:`migrator.odbcini`), or the SQLite target's small in-process pool.
* ``persistent`` — each worker opens one connection when it starts and keeps it for the
  whole run. Pooling plays no part, so the process's pooling setting is left as it is.

``--pooling on`` and ``--pooling off`` are aliases of ``pooled`` and ``per-batch``.

Whatever the strategy, a batch commits with its checkpoint rows in one transaction and a
transient failure is retried by :class:`migrator.retry.RetryPolicy` (see
:meth:`migrator.writer.BatchWriter.write`): the failed session is discarded, never given
back to a pool nor kept, and the next attempt connects afresh — for ``persistent`` that
new session is then kept for the rest of the run.

unixODBC reads its pooling setting once per process, before the first connection:
:func:`can_apply` says whether this process can still take the strategy's setting (the
coordinator migrates in a fresh worker process when it cannot), :func:`apply_strategy`
sets it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from enum import StrEnum

from migrator.errors import MigratorError, TargetError
from migrator.targets.base import Connection, Target


class ConnectionStrategy(StrEnum):
    """How each batch gets its connection (a ``str``: its value)."""

    PER_BATCH = "per-batch"
    POOLED = "pooled"
    PERSISTENT = "persistent"

    @property
    def per_batch_checkout(self) -> bool:
        """Does every batch take a connection and give it back (pooled or not)?"""
        return self is not ConnectionStrategy.PERSISTENT

    @property
    def driver_pooling(self) -> bool | None:
        """The pooling the target must have in this process (None: leave it as it is)."""
        return {ConnectionStrategy.PER_BATCH: False, ConnectionStrategy.POOLED: True,
                ConnectionStrategy.PERSISTENT: None}[self]


STRATEGIES: tuple[str, ...] = tuple(s.value for s in ConnectionStrategy)
DEFAULT_STRATEGY = ConnectionStrategy.PER_BATCH  # what `bench run` does unless told
#: ``--pooling`` values and the strategy each one names.
POOLING_ALIASES: dict[str, ConnectionStrategy] = {"on": ConnectionStrategy.POOLED,
                                                  "off": ConnectionStrategy.PER_BATCH}


class ConnectionStrategyError(MigratorError, ValueError):
    """A connection strategy (or ``--pooling`` alias) that is not one; a usage error."""


def _valid(option: str) -> str:
    if option == "--pooling":
        return "use on (--connection pooled) or off (--connection per-batch)"
    return f"use {', '.join(STRATEGIES)} (or on/off, as --pooling)"


def parse_connection(value: str | ConnectionStrategy,
                     option: str = "--connection") -> ConnectionStrategy:
    """``per-batch``, ``pooled``, ``persistent`` — or the aliases ``on`` (pooled) and
    ``off`` (per-batch) — as a :class:`ConnectionStrategy`; anything else is
    :class:`ConnectionStrategyError` naming ``option`` and the valid values."""
    if isinstance(value, ConnectionStrategy):
        return value
    text = str(value).strip().lower()
    if option == "--pooling":
        if text in POOLING_ALIASES:
            return POOLING_ALIASES[text]
    else:
        with contextlib.suppress(ValueError):
            return ConnectionStrategy(text)
        if text in POOLING_ALIASES:
            return POOLING_ALIASES[text]
    raise ConnectionStrategyError(f"{option}: {value!r} is not a connection strategy; "
                                  f"{_valid(option)}")


def resolve_connection(connection: str | None, pooling: str | None) -> ConnectionStrategy:
    """The strategy ``--connection`` and its alias ``--pooling`` choose together: either
    one, both when they agree, :data:`DEFAULT_STRATEGY` when neither is given."""
    chosen = parse_connection(connection) if connection is not None else None
    alias = parse_connection(pooling, "--pooling") if pooling is not None else None
    if chosen is not None and alias is not None and chosen is not alias:
        raise ConnectionStrategyError(
            f"--connection {chosen} and --pooling {pooling} disagree (--pooling {pooling} "
            f"means --connection {alias}); give only --connection")
    return chosen or alias or DEFAULT_STRATEGY


def strategy_of_pooling(value: object) -> str | None:
    """The strategy an old result's ``pooling`` value (``on``/``off``, or a boolean)
    meant; None when it is neither."""
    if isinstance(value, bool):
        return (ConnectionStrategy.POOLED if value else ConnectionStrategy.PER_BATCH).value
    alias = POOLING_ALIASES.get(str(value).strip().lower()) if value is not None else None
    return alias.value if alias is not None else None


# ---- the process's pooling ------------------------------------------------------------------

def can_apply(target: Target, strategy: ConnectionStrategy) -> bool:
    """Can this process still give ``target`` the pooling ``strategy`` needs?"""
    pooling = strategy.driver_pooling
    return pooling is None or target.can_apply_pooling(pooling)


def apply_strategy(target: Target, strategy: ConnectionStrategy) -> None:
    """Give ``target`` the pooling ``strategy`` needs, in this process (before its first
    connection: unixODBC decides once per process)."""
    pooling = strategy.driver_pooling
    if pooling is None:
        return
    setter = getattr(target, "set_pooling", None)
    if setter is None:
        if not pooling:
            return  # (a target without a pool opens a new connection on every connect)
        raise TargetError(f"{target.info().display}: this target cannot pool connections; "
                          f"use --connection per-batch or persistent")
    setter(pooling)


# ---- the writer's connections ---------------------------------------------------------------

class BatchConnections:
    """Where a writer's batches get their connection, per strategy: the one place that
    decides when a connection is opened, given back, kept or thrown away.

    ``on_connect(seconds)`` is told of every connection opened (or checked out of a pool).
    """

    def __init__(self, target: Target, strategy: ConnectionStrategy,
                 on_connect: Callable[[float], None]) -> None:
        self.target = target
        self.strategy = strategy
        self.on_connect = on_connect
        self._held: Connection | None = None  # persistent: the worker's connection

    def open(self) -> None:
        """Persistent: connect now, before the first batch (the caller retries)."""
        if not self.strategy.per_batch_checkout:
            self.checkout()

    def checkout(self) -> tuple[Connection, float]:
        """The connection for the next batch, and the seconds spent connecting (0 when
        the persistent connection is already open)."""
        if self._held is not None:
            return self._held, 0.0
        t0 = time.perf_counter()
        conn = self.target.connect()
        dt = time.perf_counter() - t0
        if not self.strategy.per_batch_checkout:
            self._held = conn
        self.on_connect(dt)
        return conn, dt

    def give_back(self, conn: Connection) -> None:
        """After a committed batch: per-batch closes, pooled returns it, persistent keeps."""
        if self.strategy.per_batch_checkout:
            conn.close()

    def failed(self, conn: Connection) -> None:
        """After a batch failed on ``conn`` (rolled back): a checked-out session is
        thrown away, never given back to a pool; the persistent one is dropped by
        :meth:`drop` when the failure is retried, and closed by :meth:`close` if not."""
        if self.strategy.per_batch_checkout:
            conn.discard()

    def drop(self) -> None:
        """A transient error: the session may be dead, so the next checkout reconnects.
        Idle pooled sessions are dropped too: after a server restart they are all dead."""
        if self._held is not None:
            conn, self._held = self._held, None
            conn.discard()
        with contextlib.suppress(Exception):
            self.target.close()

    def close(self) -> None:
        """The end of the writer's work: the persistent connection is closed."""
        if self._held is not None:
            conn, self._held = self._held, None
            conn.close()


__all__ = ["DEFAULT_STRATEGY", "POOLING_ALIASES", "STRATEGIES", "BatchConnections",
           "ConnectionStrategy", "ConnectionStrategyError", "apply_strategy", "can_apply",
           "parse_connection", "resolve_connection", "strategy_of_pooling"]
