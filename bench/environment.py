"""Environment metadata stored with every result: enough to tell two machines apart."""

from __future__ import annotations

import os
import platform
import socket
import sys
from dataclasses import asdict
from importlib import metadata
from typing import Any

from migrator.targets import TargetInfo

PACKAGES = ("migration-bench", "lxml", "pyodbc", "psutil", "rich", "typer", "pyperf",
            "matplotlib", "jinja2", "scipy", "psycopg")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect(target: TargetInfo | None = None, dataset: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    import psutil

    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": _versions(),
    }
    if target is not None:
        env["target"] = asdict(target)  # display is already redacted by the target
    if dataset is not None:
        env["dataset"] = dataset
    return env
