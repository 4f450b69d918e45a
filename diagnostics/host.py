"""Host measurements with psutil: disks, CPU, memory, our workers and a local DB server.

The figures are the ones ``iostat -x`` and ``top`` show, computed from the same kernel
counters (``/proc/diskstats``, ``/proc/stat``, ``/proc/<pid>/stat``):

* disk read/write bytes/s and IOPS — Δsectors·512 / Δt and Δios / Δt (``rkB/s``, ``r/s``);
* disk busy % — Δio_ticks / Δt, ``iostat``'s ``%util`` (Linux only);
* read/write await ms — Δ(time spent reading) / Δreads (``r_await``);
* CPU % per core — Δ(non-idle, non-iowait jiffies) / Δ(all jiffies), as ``top``/``mpstat``;
* process CPU % — Δ(user+system) / Δt of a process *tree*, in % of one core as ``top``;
* other processes' CPU % — the host's busy CPU less the run's process trees (this process,
  the worker pids) and the local database server's, in % of the host's whole CPU (the
  number ``host busy`` verdicts quote); steal % — time the hypervisor gave to other guests;
* the run's CPU wait % — Δ(run-queue delay) / Δt summed over the threads of the run's
  processes but the sampler's own (``/proc/<pid>/task/<tid>/schedstat``, Linux): time they
  were ready to run but waited for a CPU, in % of one core. Other processes' CPU only
  matters when this is high.

Tests check the disk and CPU figures against an independent parse of ``/proc/diskstats``
and ``/proc/stat`` taken over the same window.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import psutil

from diagnostics.sampler import CounterRates, InfoValue, Value, ratio

IGNORED_DEVICES = re.compile(r"^(loop|zram|ram|fd|sr)\d+$")
"""Pseudo and removable devices that never hold a database; ignored unless asked for."""

SERVER_PROCESS_NAMES = ("postgres", "postmaster", "mariadbd", "mysqld", "sqlservr")

_ACCESS_ERRORS = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
_PROC_STAT = Path("/proc/self/stat").exists()
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- readings


class CpuReading(NamedTuple):
    """Host CPU over one interval, in % of the time (as ``mpstat``)."""

    total_pct: float
    per_core_pct: tuple[float, ...]
    iowait_pct: float
    steal_pct: float


class MemoryReading(NamedTuple):
    """Host memory at the sample instant (as ``free``)."""

    total_bytes: int
    available_bytes: int
    used_pct: float
    swap_used_pct: float


class DiskRates(NamedTuple):
    """One block device over one interval (as ``iostat -x``)."""

    device: str
    read_bytes_per_s: float
    write_bytes_per_s: float
    reads_per_s: float
    writes_per_s: float
    busy_pct: float | None
    read_await_ms: float | None
    write_await_ms: float | None


class ProcessCpu(NamedTuple):
    """CPU of a set of process trees over one interval, in % of one core (as ``top``)."""

    cpu_pct: float
    processes: int


class HostReading(NamedTuple):
    """Everything the host sampler read in one round; rates are ``None`` on the first."""

    interval_s: float | None
    cpu: CpuReading | None
    memory: MemoryReading
    disks: tuple[DiskRates, ...]
    workers: ProcessCpu | None
    client: ProcessCpu | None
    server: ProcessCpu | None
    server_read_bytes_per_s: float | None
    server_write_bytes_per_s: float | None
    run: ProcessCpu | None = None
    """This process's tree and the worker pids' trees, each process once."""
    others_pct: float | None = None
    """CPU of every other process, in % of the host's whole CPU (as ``total_pct``)."""
    run_wait_pct: float | None = None
    """Run-queue delay of the run's threads, in % of one core (Linux)."""


class DeviceInfo(NamedTuple):
    """The block device holding a path: ``name`` as in ``/proc/diskstats``."""

    name: str
    disk: str
    mountpoint: str
    fstype: str


class ServerLocation(NamedTuple):
    """Where a database server lives, as far as its own sampler could tell."""

    pid: int | None
    data_paths: tuple[str, ...]


class ServerLocator(Protocol):
    """Implemented by the database samplers; lets the host sampler find the server."""

    def server_location(self) -> ServerLocation: ...


# --------------------------------------------------------------------------- devices


def device_for_path(path: str | os.PathLike[str]) -> DeviceInfo | None:
    """Which block device holds ``path`` (a database file or data directory).

    Uses the file system's ``st_dev`` → ``/sys/dev/block/MAJ:MIN``; for file systems
    without a real device number (btrfs, some overlays) falls back to the longest
    matching mount point. ``None`` when it cannot be known (tmpfs, remote paths).
    """
    probe = Path(path).expanduser()
    try:
        probe = probe.resolve()
    except OSError:
        return None
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    mount = _mount_for(probe)
    mountpoint, fstype, source = mount if mount else ("", "", "")
    dev = probe.stat().st_dev
    sys_link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    name: str | None = None
    if os.major(dev) != 0 and sys_link.exists():
        name = sys_link.resolve().name
    elif source.startswith("/dev/"):
        name = Path(source).resolve().name
    if not name:
        return None
    return DeviceInfo(name=name, disk=_parent_disk(name), mountpoint=mountpoint, fstype=fstype)


def _mount_for(path: Path) -> tuple[str, str, str] | None:
    best: tuple[str, str, str] | None = None
    text = str(path)
    for part in psutil.disk_partitions(all=True):
        mp = part.mountpoint
        inside = text == mp or text.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) > len(best[0])):
            best = (mp, part.fstype, part.device)
    return best


def _parent_disk(name: str) -> str:
    """``sda2`` → ``sda``; a whole disk (or an unknown layout) is its own parent."""
    sys_block = Path("/sys/class/block") / name
    if (sys_block / "partition").exists():
        return sys_block.resolve().parent.name
    return name


# --------------------------------------------------------------------------- processes


class ProcessTable(NamedTuple):
    """One pass over all processes: parent, cumulative CPU and start time of each.

    Scanning /proc once per round and deriving every process tree from it keeps the
    sampler cheap (psutil's ``children()`` rescans /proc on each call).
    """

    children: Mapping[int, tuple[int, ...]]
    cpu_s: Mapping[int, float]
    created: Mapping[int, float]

    @classmethod
    def scan(cls) -> ProcessTable:
        if _PROC_STAT:
            return cls._scan_linux()
        return cls._scan_psutil()

    @classmethod
    def _scan_linux(cls) -> ProcessTable:
        """/proc/<pid>/stat read directly: one open per process, ~10× cheaper than psutil."""
        kids: dict[int, list[int]] = {}
        cpu: dict[int, float] = {}
        created: dict[int, float] = {}
        tick = _CLK_TCK
        boot = psutil.boot_time()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    raw = fh.read()
            except OSError:  # exited meanwhile
                continue
            f = raw[raw.rfind(b")") + 2 :].split()
            pid, ppid = int(entry.name), int(f[1])
            cpu[pid] = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
            created[pid] = boot + int(f[19]) / tick
            kids.setdefault(ppid, []).append(pid)
        return cls({k: tuple(v) for k, v in kids.items()}, cpu, created)

    @classmethod
    def _scan_psutil(cls) -> ProcessTable:
        kids: dict[int, list[int]] = {}
        cpu: dict[int, float] = {}
        created: dict[int, float] = {}
        for proc in psutil.process_iter(["ppid", "cpu_times", "create_time"], ad_value=None):
            info = proc.info
            t = info["cpu_times"]
            if t is None:
                continue
            # reaped children's CPU moves into the parent's children_user/system
            cpu[proc.pid] = t.user + t.system + t.children_user + t.children_system
            created[proc.pid] = info["create_time"] or 0.0
            if info["ppid"] is not None:
                kids.setdefault(info["ppid"], []).append(proc.pid)
        return cls({k: tuple(v) for k, v in kids.items()}, cpu, created)

    def tree(self, root: int) -> list[int]:
        """``root`` and all its live descendants (empty if ``root`` is gone)."""
        if root not in self.cpu_s:
            return []
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(self.children.get(pid, ()))
        return out

    def tree_cpu_s(self, root: int, exclude: frozenset[int] = frozenset()) -> float | None:
        """Cumulative CPU seconds of a process tree, exited descendants included.

        Root-with-reaped-children plus the live descendants is a counter that keeps
        growing while children come and go (a PostgreSQL backend per connection).
        """
        pids = self.tree(root)
        if not pids:
            return None
        return sum(self.cpu_s[p] for p in pids if p not in exclude)


def tree_io_bytes(pids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Per-process (read_bytes, write_bytes) of live processes (Linux /proc/<pid>/io)."""
    out: dict[int, tuple[int, int]] = {}
    for pid in pids:
        try:
            io = psutil.Process(pid).io_counters()
        except (*_ACCESS_ERRORS, AttributeError):
            continue
        out[pid] = (io.read_bytes, io.write_bytes)
    return out


def others_cpu_pct(
    cpu: CpuReading | None, run: ProcessCpu | None, server: ProcessCpu | None
) -> float | None:
    """CPU of the processes that are neither the run's nor the database server's, in % of
    the host's whole CPU: the host's busy time less theirs (kernel work for other
    processes included). ``None`` until both the host and the run have an interval."""
    if cpu is None or run is None or not cpu.per_core_pct:
        return None
    cores = len(cpu.per_core_pct)
    ours = run.cpu_pct + (server.cpu_pct if server is not None else 0.0)
    # The two readings are taken a few milliseconds apart: never below zero.
    return max(0.0, cpu.total_pct - ours / cores)


def find_server_process(
    names: Iterable[str] = SERVER_PROCESS_NAMES, port: int | None = None
) -> psutil.Process | None:
    """The root process of a local database server, or ``None`` if not found or ambiguous.

    With ``port``, the process listening on that TCP port wins (several servers may run on
    one host); without it, a single candidate root is accepted.
    """
    wanted = set(names)
    roots: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "ppid"]):
        try:
            if proc.info["name"] not in wanted:
                continue
            parent = proc.parent()
            if parent is not None and parent.name() in wanted:
                continue
        except _ACCESS_ERRORS:
            continue
        roots.append(proc)
    if port is not None:
        try:
            listening = {
                c.pid
                for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            }
        except (psutil.AccessDenied, OSError):
            listening = set()
        for proc in roots:
            if proc.pid in listening:
                return proc
        return None
    return roots[0] if len(roots) == 1 else None


def outermost(table: ProcessTable, pids: Iterable[int]) -> list[int]:
    """The pids none of whose ancestors is among ``pids``: each process tree once.

    A caller may list a process and its children (``bench run`` lists itself and its
    workers); summing the tree of each would count every worker twice.
    """
    wanted = set(pids)
    nested: set[int] = set()
    for pid in wanted:
        nested.update(table.tree(pid)[1:])
    return sorted(wanted - nested)


def run_delay_s(pids: Iterable[int], skip: frozenset[int] = frozenset()) -> dict[int, float]:
    """Per process, the seconds its threads (but those in ``skip``) spent runnable but
    waiting for a CPU (the second field of each ``/proc/<pid>/task/<tid>/schedstat``); Linux
    only, else empty."""
    out: dict[int, float] = {}
    if not _PROC_STAT:
        return out
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:  # exited meanwhile
            continue
        total = 0
        for tid in tasks:
            if int(tid) in skip:
                continue
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                    total += int(fh.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        out[pid] = total / 1e9
    return out


class _RunDelay:
    """Run-queue delay of a changing set of processes, as a rate (% of one core). A thread
    that exits takes its count with it, so the sum is taken per process and a process's
    drop is not counted as negative time."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._last_wall: float | None = None
        self._prev_now: float | None = None

    def rate(
        self,
        table: ProcessTable,
        pids: Iterable[int],
        now: float,
        skip: frozenset[int] = frozenset(),
    ) -> float | None:
        wall = time.time()
        current = run_delay_s(pids, skip)
        increase = 0.0
        for pid, waited in current.items():
            if pid in self._last:
                increase += max(waited - self._last[pid], 0.0)
            elif self._last_wall is not None and table.created.get(pid, 0.0) >= self._last_wall:
                increase += waited
        previous_now = self._prev_now
        first = self._last_wall is None
        self._last, self._last_wall, self._prev_now = current, wall, now
        if first or previous_now is None or now <= previous_now or not current:
            return None
        return 100.0 * increase / (now - previous_now)


class _PidSetCpu:
    """CPU of a changing set of process trees (our workers), as a rate."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._last_wall: float | None = None
        self._prev_now: float | None = None

    def rate(
        self, table: ProcessTable, pids: Iterable[int], now: float, exclude: frozenset[int]
    ) -> ProcessCpu | None:
        wall = time.time()
        current: dict[int, float] = {}
        increase = 0.0
        for pid in outermost(table, pids):
            used = table.tree_cpu_s(pid, exclude)
            if used is None:
                continue
            current[pid] = used
            if pid in self._last:
                increase += max(used - self._last[pid], 0.0)
            elif self._last_wall is not None and table.created[pid] >= self._last_wall:
                increase += used  # started within the interval: all of its CPU is new
        first = self._last_wall is None
        previous_now = self._prev_now
        self._last, self._last_wall, self._prev_now = current, wall, now
        if first or previous_now is None or now <= previous_now:
            return None
        return ProcessCpu(100.0 * increase / (now - previous_now), len(current))


# --------------------------------------------------------------------------- sampler


@dataclass
class HostSampler:
    """Samples the host with psutil; metric names start with ``host.``.

    ``pids`` returns the worker processes to account as *client CPU* (their trees);
    ``db_path`` is the SQLite file or server data directory whose device is reported as
    ``host.db_disk.*``; ``server`` (a database sampler) helps find the local server
    process and its data directory; ``server_port`` picks the right server when several
    run here.
    """

    pids: Callable[[], Iterable[int]] | None = None
    db_path: str | None = None
    server: ServerLocator | None = None
    server_pid: int | None = None
    server_port: int | None = None
    include_all_devices: bool = False
    name: str = "host"

    def __post_init__(self) -> None:
        self._rates = CounterRates()
        self._workers = _PidSetCpu()
        self._run = _PidSetCpu()
        self._run_delay = _RunDelay()
        self._server_proc: psutil.Process | None = None
        self._server_io: dict[int, tuple[int, int]] = {}
        self._located = False
        self._db_device: DeviceInfo | None = None
        self._info: dict[str, InfoValue] = {"cores": psutil.cpu_count() or 1}
        self._own_pid = os.getpid()

    # -- Sampler protocol

    def open(self) -> None:
        if self.db_path:
            self._db_device = device_for_path(self.db_path)
            self._note_device(self.db_path)

    def close(self) -> None:
        pass

    def info(self) -> Mapping[str, InfoValue]:
        return dict(self._info)

    def sample(self) -> dict[str, Value]:
        if not self._located:
            self._locate_server()
        return self.metrics(self.read())

    # -- reading

    def read(self) -> HostReading:
        """Take one reading; rates cover the time since the previous call."""
        now = time.monotonic()
        cpu = self._read_cpu(now)
        memory = self._read_memory()
        disks = self._read_disks(now)
        table = ProcessTable.scan()
        server_tree = table.tree(self._server_proc.pid) if self._server_proc else []
        server_pids = frozenset(server_tree)
        workers = None
        if self.pids is not None:
            workers = self._workers.rate(table, self.pids(), now, exclude=server_pids)
        client = self._tree_rate("client", table.tree_cpu_s(self._own_pid, server_pids), now)
        server = None
        read_bps = write_bps = None
        if self._server_proc is not None:
            server = self._tree_rate("server", table.tree_cpu_s(self._server_proc.pid), now)
            read_bps, write_bps = self._server_io_rates(server_tree, now)
        roots = [self._own_pid, *(self.pids() if self.pids is not None else ())]
        run = self._run.rate(table, roots, now, exclude=server_pids)
        members = {p for root in outermost(table, roots) for p in table.tree(root)}
        # (not the sampler's own thread: it is no part of the migration's demand for CPU)
        waited = self._run_delay.rate(
            table, members - server_pids, now, frozenset({threading.get_native_id()})
        )
        interval = self._interval(now)
        return HostReading(
            interval,
            cpu,
            memory,
            disks,
            workers,
            client,
            server,
            read_bps,
            write_bps,
            run,
            others_cpu_pct(cpu, run, server),
            waited,
        )

    def _interval(self, now: float) -> float | None:
        got = self._rates.delta("__clock__", now, now)
        return got[1] if got else None

    def _read_cpu(self, now: float) -> CpuReading | None:
        per_core: list[float] = []
        total_busy = total_all = total_iowait = total_steal = 0.0
        complete = True
        for i, t in enumerate(psutil.cpu_times(percpu=True)):
            fields = t._asdict()
            # guest time is already included in user/nice (as psutil and top count it)
            everything = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
            idle = fields["idle"] + fields.get("iowait", 0.0)
            d_all = self._rates.delta(f"cpu{i}.all", everything, now)
            d_idle = self._rates.delta(f"cpu{i}.idle", idle, now)
            d_iowait = self._rates.delta(f"cpu{i}.iowait", fields.get("iowait", 0.0), now)
            d_steal = self._rates.delta(f"cpu{i}.steal", fields.get("steal", 0.0), now)
            if d_all is None or d_idle is None or d_iowait is None or d_steal is None:
                complete = False
                continue
            span = d_all[0]
            busy = max(span - d_idle[0], 0.0)
            per_core.append(100.0 * busy / span if span > 0 else 0.0)
            total_busy += busy
            total_all += span
            total_iowait += d_iowait[0]
            total_steal += d_steal[0]
        if not complete or total_all <= 0:
            return None
        return CpuReading(
            total_pct=100.0 * total_busy / total_all,
            per_core_pct=tuple(per_core),
            iowait_pct=100.0 * total_iowait / total_all,
            steal_pct=100.0 * total_steal / total_all,
        )

    @staticmethod
    def _read_memory() -> MemoryReading:
        vm = psutil.virtual_memory()
        try:
            swap_pct = psutil.swap_memory().percent
        except (RuntimeError, OSError):
            swap_pct = 0.0
        return MemoryReading(vm.total, vm.available, vm.percent, swap_pct)

    def _read_disks(self, now: float) -> tuple[DiskRates, ...]:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
        out: list[DiskRates] = []
        for dev, c in sorted(counters.items()):
            if not self.include_all_devices and IGNORED_DEVICES.match(dev):
                continue
            rb = self._rates.delta(f"disk.{dev}.rb", c.read_bytes, now)
            wb = self._rates.delta(f"disk.{dev}.wb", c.write_bytes, now)
            rc = self._rates.delta(f"disk.{dev}.rc", c.read_count, now)
            wc = self._rates.delta(f"disk.{dev}.wc", c.write_count, now)
            rt = self._rates.delta(f"disk.{dev}.rt", c.read_time, now)
            wt = self._rates.delta(f"disk.{dev}.wt", c.write_time, now)
            busy_time = getattr(c, "busy_time", None)
            bt = None if busy_time is None else self._rates.delta(f"disk.{dev}.bt", busy_time, now)
            if rb is None or wb is None or rc is None or wc is None or rt is None or wt is None:
                continue
            span = rb[1]
            busy = None if bt is None else min(100.0, 100.0 * bt[0] / (bt[1] * 1000.0))
            out.append(
                DiskRates(
                    device=dev,
                    read_bytes_per_s=rb[0] / span,
                    write_bytes_per_s=wb[0] / span,
                    reads_per_s=rc[0] / span,
                    writes_per_s=wc[0] / span,
                    busy_pct=busy,
                    read_await_ms=ratio(rt[0], rc[0]),
                    write_await_ms=ratio(wt[0], wc[0]),
                )
            )
        return tuple(out)

    def _tree_rate(self, key: str, used: float | None, now: float) -> ProcessCpu | None:
        if used is None:
            return None
        rate = self._rates.rate(f"proc.{key}", used, now)
        if rate is None:
            return None
        return ProcessCpu(100.0 * rate, 1)

    def _server_io_rates(
        self, pids: Iterable[int], now: float
    ) -> tuple[float | None, float | None]:
        current = tree_io_bytes(pids)
        first = not self._server_io
        read = write = 0
        for pid, (r, w) in current.items():
            old = self._server_io.get(pid)
            if old is not None:
                read += max(r - old[0], 0)
                write += max(w - old[1], 0)
        self._server_io = current
        got = self._rates.delta("proc.server.io_clock", now, now)
        if first or got is None:
            return None, None
        return read / got[1], write / got[1]

    # -- finding the server

    def _locate_server(self) -> None:
        self._located = True
        location = None
        if self.server is not None:
            try:
                location = self.server.server_location()
            except Exception as exc:
                self._info["server_location_error"] = repr(exc)
        pid = self.server_pid or (location.pid if location else None)
        proc: psutil.Process | None = None
        if pid:
            try:
                proc = psutil.Process(pid)
            except _ACCESS_ERRORS:
                proc = None
        if proc is None and (self.server is not None or self.server_port is not None):
            proc = find_server_process(port=self.server_port)
        if proc is not None:
            self._server_proc = proc
            self._info["dbserver_pid"] = proc.pid
            with contextlib.suppress(*_ACCESS_ERRORS):
                self._info["dbserver_name"] = proc.name()
        if self._db_device is None and location:
            for path in location.data_paths:
                self._db_device = device_for_path(path) if os.path.exists(path) else None
                if self._db_device is not None:
                    self._note_device(path)
                    break

    def _note_device(self, path: str) -> None:
        self._info["db_path"] = path
        if self._db_device is not None:
            self._info["db_device"] = self._db_device.name
            self._info["db_disk"] = self._db_device.disk
            self._info["db_mountpoint"] = self._db_device.mountpoint
            self._info["db_fstype"] = self._db_device.fstype

    # -- flattening

    def metrics(self, reading: HostReading) -> dict[str, Value]:
        out: dict[str, Value] = {
            "host.mem.used_pct": reading.memory.used_pct,
            "host.mem.available_bytes": float(reading.memory.available_bytes),
            "host.mem.swap_used_pct": reading.memory.swap_used_pct,
        }
        if reading.cpu is not None:
            out["host.cpu.total_pct"] = reading.cpu.total_pct
            out["host.cpu.iowait_pct"] = reading.cpu.iowait_pct
            out["host.cpu.steal_pct"] = reading.cpu.steal_pct
            for i, pct in enumerate(reading.cpu.per_core_pct):
                out[f"host.cpu.core{i}_pct"] = pct
        db_dev = self._db_device.name if self._db_device else None
        for d in reading.disks:
            prefixes = [f"host.disk.{d.device}"]
            if d.device == db_dev:
                prefixes.append("host.db_disk")
            for p in prefixes:
                out[f"{p}.read_bytes_per_s"] = d.read_bytes_per_s
                out[f"{p}.write_bytes_per_s"] = d.write_bytes_per_s
                out[f"{p}.reads_per_s"] = d.reads_per_s
                out[f"{p}.writes_per_s"] = d.writes_per_s
                out[f"{p}.busy_pct"] = d.busy_pct
                out[f"{p}.read_await_ms"] = d.read_await_ms
                out[f"{p}.write_await_ms"] = d.write_await_ms
        if reading.workers is not None:
            out["host.workers.cpu_pct"] = reading.workers.cpu_pct
            out["host.workers.processes"] = float(reading.workers.processes)
        if reading.client is not None:
            out["host.client.cpu_pct"] = reading.client.cpu_pct
        if reading.run is not None:
            out["host.run.cpu_pct"] = reading.run.cpu_pct
        if reading.others_pct is not None:
            out["host.others.cpu_pct"] = reading.others_pct
        if reading.run_wait_pct is not None:
            out["host.run.cpu_wait_pct"] = reading.run_wait_pct
        if reading.server is not None:
            out["host.dbserver.cpu_pct"] = reading.server.cpu_pct
        if reading.server_read_bytes_per_s is not None:
            out["host.dbserver.read_bytes_per_s"] = reading.server_read_bytes_per_s
        if reading.server_write_bytes_per_s is not None:
            out["host.dbserver.write_bytes_per_s"] = reading.server_write_bytes_per_s
        return out
