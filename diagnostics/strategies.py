"""The connection strategies `bench diagnose pooling` measures, and how to apply each one.

A strategy is how a run's workers get the connection each batch is written on
(:class:`migrator.connection.ConnectionStrategy`, `bench run --connection`). The list
(:data:`STRATEGIES`) is those of the tool, with what each means here; the runner measures
those whose run setting it has (:func:`supported`), so a strategy the tool cannot run is
never measured, and therefore never recommended. :func:`apply_lines` is the exact way to use
a measured strategy: the ``bench`` flags, the ``odbcinst.ini`` lines an ODBC application
needs, and what the server must allow.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from migrator.connection import DEFAULT_STRATEGY, ConnectionStrategy

REFERENCE: str = DEFAULT_STRATEGY.value
"""The tool's default, against which the others are compared."""

CP_TIMEOUT_S = 120
"""The ``CPTimeout`` suggested for a driver whose connections are pooled: seconds an idle
pooled connection is kept, long enough to outlive the pause between two batches."""


@dataclass(frozen=True)
class Strategy:
    name: str  # a ConnectionStrategy value
    title: str  # what it does, one phrase

    @property
    def run_config(self) -> Mapping[str, str]:
        """The run setting (a sweep dimension) that selects it."""
        return {"connection": self.name}

    @property
    def flag(self) -> str:
        """The `bench run` / `bench sweep` option that selects it."""
        return f"--connection {self.name}"


_TITLES = {ConnectionStrategy.PER_BATCH: "a new physical connection for every batch",
           ConnectionStrategy.POOLED: "a connection checked out of a pool for every batch",
           ConnectionStrategy.PERSISTENT: "one connection per worker for the whole run"}
STRATEGIES: tuple[Strategy, ...] = tuple(Strategy(s.value, _TITLES[s])
                                         for s in ConnectionStrategy)
BY_NAME: dict[str, Strategy] = {s.name: s for s in STRATEGIES}


def supported(run_fields: Collection[str]) -> tuple[Strategy, ...]:
    """The strategies a runner that can set ``run_fields`` can run, in list order."""
    return tuple(s for s in STRATEGIES if all(k in run_fields for k in s.run_config))


def flags(workers: int, strategy: str | None) -> str:
    """The `bench run` options of a configuration (workers first, as the help lists them)."""
    known = BY_NAME.get(strategy or "")
    return f"--workers {workers}" + (f" {known.flag}" if known else "")


@dataclass(frozen=True)
class Setting:
    """Where the diagnosed connections come from, as far as the apply lines need it."""

    scheme: str = "sqlite"  # sqlite | odbc
    dialect: str = "sqlite"
    driver: str = ""  # the odbcinst.ini section of the driver
    ini: str = ""  # the odbcinst.ini in force
    ini_pools: bool | None = None  # does that ini pool this driver's connections now?


def apply_lines(strategy: str | None, workers: int, setting: Setting) -> list[str]:
    """The exact way to run ``workers`` workers with ``strategy``: the ``bench`` options,
    then what an application or the driver manager needs, then what the server must allow."""
    lines = [f"bench run {flags(workers, strategy)}"]
    ini = setting.ini or "odbcinst.ini"
    driver = setting.driver or "your driver"
    odbc = setting.scheme == "odbc"
    if strategy == "per-batch" and odbc and setting.ini_pools:
        lines.append(f"{ini}: [ODBC] Pooling = No (this ini pools now, whatever "
                     f"pyodbc.pooling says)")
    elif strategy == "pooled" and odbc:
        lines += [f"{ini}: [ODBC] Pooling = Yes",
                  f"{ini}: [{driver}] CPTimeout = {CP_TIMEOUT_S}",
                  "application: pyodbc.pooling = True (its default) on unixODBC 2.3.10 or "
                  "later; Pooling=/Max Pool Size= in the connection string are ADO.NET "
                  "keywords that ODBC ignores"]
    elif strategy == "pooled":
        lines.append(f"{setting.dialect} is embedded: --pooling on is migration-bench's own "
                     f"in-process pool (an application gets the same by keeping closed "
                     f"connections for reuse)")
    elif strategy == "persistent":
        lines.append("application: open one connection per worker and write every batch on "
                     "it")
    if odbc and setting.dialect in ("postgresql", "mssql", "mysql", "mariadb"):
        lines.append(f"server: accept at least {workers + 1} concurrent sessions (one per "
                     f"worker and the run lock's)")
    return lines


__all__ = [
    "BY_NAME",
    "CP_TIMEOUT_S",
    "REFERENCE",
    "STRATEGIES",
    "Setting",
    "Strategy",
    "apply_lines",
    "flags",
    "supported",
]
