"""Noise gating: was the host taken over by other work while a run was measured?

Around every measured run the sweep reads the machine's cumulative CPU times (psutil, i.e.
``/proc/stat`` on Linux) and this process's own CPU time including its finished worker
processes. What the machine spent beyond that — minus a local database server's share,
which belongs to the run — is other processes' CPU; ``steal`` is time the hypervisor gave
to other guests while ours wanted the CPU. A run is *disturbed* when

* the hypervisor stole at least :data:`STEAL_SHARE` of the machine's time, or
* the machine was saturated (at least :data:`SATURATED_SHARE` busy) while other processes
  took at least :data:`OTHERS_SHARE` of it: they competed for the cores the run needed.

A disturbed run is kept, flagged, and (in a budgeted sweep) re-run once later in the same
round, so the round's pairing still holds; the summary counts them.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.results import Samples

#: Steal time above this share of the machine means the VM's host was busy elsewhere.
STEAL_SHARE = 0.10
#: The machine counts as saturated above this busy share (all CPUs, the run's time).
SATURATED_SHARE = 0.90
#: Other processes taking this share of a saturated machine competed with the run.
OTHERS_SHARE = 0.25


@dataclass(frozen=True)
class CpuMark:
    """Cumulative CPU counters at one instant."""

    busy_s: float | None  # whole machine, all CPUs (None where psutil cannot tell)
    steal_s: float | None
    own_s: float  # this process and its finished children


def mark() -> CpuMark:
    own = _own_cpu_seconds()
    try:
        import psutil

        times = psutil.cpu_times()
    except (ImportError, OSError, RuntimeError):  # pragma: no cover - exotic platforms
        return CpuMark(None, None, own)
    steal = float(getattr(times, "steal", 0.0) or 0.0)
    idle = float(times.idle) + float(getattr(times, "iowait", 0.0) or 0.0)
    busy = sum(float(v) for v in times) - idle - float(getattr(times, "guest", 0.0) or 0.0) \
        - float(getattr(times, "guest_nice", 0.0) or 0.0)  # guest time is inside user time
    return CpuMark(busy, steal, own)


def _own_cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers of a run)."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def server_cpu_seconds(samples: Samples | None, wall_s: float) -> float:
    """CPU seconds a local database server spent during the run, from the run's own host
    samples (``host.dbserver.cpu_pct``, percent of one core), 0 when there are none."""
    column = samples.column("host.dbserver.cpu_pct") if samples is not None else None
    values = [float(v) for v in column or [] if v is not None]
    return sum(values) / len(values) / 100.0 * wall_s if values else 0.0


def host_load(before: CpuMark, after: CpuMark, wall_s: float, *, server_s: float = 0.0,
              cpus: int | None = None) -> dict[str, Any]:
    """What the run's ``host`` record stores: own, machine, steal and others' CPU seconds,
    their shares of the machine, and whether the run was disturbed."""
    cpus = cpus or os.cpu_count() or 1
    own = max(0.0, after.own_s - before.own_s)
    out: dict[str, Any] = {"cpus": cpus, "cpu_s": round(own, 6), "machine_cpu_s": None,
                           "steal_s": None, "others_cpu_s": None, "others_share": None,
                           "steal_share": None, "busy_share": None, "disturbed": False}
    if before.busy_s is None or after.busy_s is None or wall_s <= 0:
        return out
    capacity = wall_s * cpus
    busy = max(0.0, after.busy_s - before.busy_s)
    steal = max(0.0, (after.steal_s or 0.0) - (before.steal_s or 0.0))
    others = max(0.0, busy - steal - own - server_s)
    out.update(machine_cpu_s=round(busy, 3), steal_s=round(steal, 3),
               others_cpu_s=round(others, 3), others_share=round(others / capacity, 4),
               steal_share=round(steal / capacity, 4),
               busy_share=round(min(1.0, busy / capacity), 4))
    out["disturbed"] = disturbed(out)
    return out


def disturbed(host: Mapping[str, Any]) -> bool:
    """The rule of the module docstring, on a run's ``host`` record."""
    steal = host.get("steal_share")
    others = host.get("others_share")
    busy = host.get("busy_share")
    if isinstance(steal, int | float) and steal >= STEAL_SHARE:
        return True
    return (isinstance(others, int | float) and isinstance(busy, int | float)
            and others >= OTHERS_SHARE and busy >= SATURATED_SHARE)
