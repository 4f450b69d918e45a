"""HostSampler figures checked against independent readings of /proc over the same window.

Each check brackets the reference reading inside the sampler's interval
(sampler read → /proc read → load → /proc read → sampler read), so the sampler's figure
must be at least the reference and exceed it only by what happened in the microsecond gaps.
Nothing asserts on elapsed wall time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.attribution import StageTimings, attribute
from diagnostics.host import IGNORED_DEVICES, HostSampler, device_for_path
from diagnostics.sampler import SamplingSession

pytestmark = pytest.mark.skipif(not Path("/proc/diskstats").exists(), reason="Linux /proc needed")

MiB = 1024 * 1024


def diskstats(device: str) -> dict[str, int]:
    """Fields of /proc/diskstats for one device (Documentation/admin-guide/iostats.rst)."""
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == device:
            return {
                "reads": int(f[3]),
                "sectors_read": int(f[5]),
                "writes": int(f[7]),
                "sectors_written": int(f[9]),
                "io_ticks_ms": int(f[12]),
            }
    raise LookupError(device)


def proc_stat_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the aggregate "cpu" line of /proc/stat, as mpstat counts."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total - idle - iowait, total


def proc_pid_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_device_for_path_matches_the_kernel_device_numbers(tmp_path: Path) -> None:
    info = device_for_path(tmp_path / "not-yet" / "db.sqlite")  # walks up to what exists
    if info is None:
        pytest.skip("the test folder is not on a block device")
    dev = os.stat(tmp_path).st_dev
    names = {
        line.split()[2]
        for line in Path("/proc/diskstats").read_text().splitlines()
        if (int(line.split()[0]), int(line.split()[1])) == (os.major(dev), os.minor(dev))
    }
    assert names == {info.name} or info.name in names
    assert Path(tmp_path).resolve().as_posix().startswith(info.mountpoint)


def test_disk_write_figures_match_proc_diskstats(tmp_path: Path) -> None:
    info = device_for_path(tmp_path)
    if info is None:
        pytest.skip("the test folder is not on a block device")
    host = HostSampler(db_path=str(tmp_path))
    host.open()
    host.read()
    before = diskstats(info.name)
    size = 16 * MiB
    with open(tmp_path / "load.bin", "wb") as fh:
        for _ in range(size // MiB):
            fh.write(os.urandom(MiB))
            fh.flush()
            os.fsync(fh.fileno())
    after = diskstats(info.name)
    reading = host.read()
    assert reading.interval_s is not None
    disk = next(d for d in reading.disks if d.device == info.name)

    ref_bytes = (after["sectors_written"] - before["sectors_written"]) * 512
    ref_writes = after["writes"] - before["writes"]
    ref_ticks = after["io_ticks_ms"] - before["io_ticks_ms"]
    got_bytes = disk.write_bytes_per_s * reading.interval_s
    got_writes = disk.writes_per_s * reading.interval_s
    assert ref_bytes >= size  # fsync put our bytes on the device
    assert got_bytes == pytest.approx(ref_bytes, rel=0.10, abs=2 * MiB)
    assert got_bytes >= ref_bytes - 1  # the sampler's window contains the reference's
    assert got_writes >= ref_writes - 0.5
    assert got_writes == pytest.approx(ref_writes, rel=0.10, abs=20)
    assert disk.busy_pct is not None and 0 <= disk.busy_pct <= 100
    got_ticks = disk.busy_pct / 100 * reading.interval_s * 1000
    assert got_ticks >= ref_ticks - 1 or disk.busy_pct == 100
    # the database device is mirrored under host.db_disk.*
    metrics = host.metrics(reading)
    assert metrics["host.db_disk.write_bytes_per_s"] == disk.write_bytes_per_s
    assert host.info()["db_device"] == info.name


def test_cpu_figures_match_proc_stat() -> None:
    host = HostSampler()
    host.open()
    host.read()
    busy0, total0 = proc_stat_cpu()
    sum(i * i for i in range(3_000_000))  # a fixed amount of work, not a fixed time
    busy1, total1 = proc_stat_cpu()
    reading = host.read()
    assert reading.cpu is not None
    ref_pct = 100 * (busy1 - busy0) / (total1 - total0)
    assert reading.cpu.total_pct == pytest.approx(ref_pct, abs=7.5)
    assert len(reading.cpu.per_core_pct) == os.cpu_count()
    assert all(0 <= p <= 100 for p in reading.cpu.per_core_pct)
    assert reading.memory.total_bytes > reading.memory.available_bytes > 0


def test_worker_process_cpu_matches_proc_pid_stat() -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sum(i * i for i in range(4_000_000)); print('done', flush=True);"
            " sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            host = HostSampler(pids=lambda: [child.pid])
            host.open()
            host.read()
            ref0 = proc_pid_cpu_s(child.pid)
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "done"
            ref1 = proc_pid_cpu_s(child.pid)
            reading = host.read()
        finally:
            child.kill()
    assert reading.workers is not None and reading.interval_s is not None
    got_s = reading.workers.cpu_pct / 100 * reading.interval_s
    assert got_s >= (ref1 - ref0) - 0.02  # one clock tick of rounding
    assert got_s == pytest.approx(ref1 - ref0, abs=0.1)
    assert reading.workers.processes == 1


def test_pseudo_devices_ignored_by_default() -> None:
    host = HostSampler()
    host.read()
    names = {d.device for d in host.read().disks}
    assert not any(IGNORED_DEVICES.match(n) for n in names)
    everything = HostSampler(include_all_devices=True)
    everything.read()
    assert names <= {d.device for d in everything.read().disks}


def test_sample_flattens_to_unit_suffixed_metrics() -> None:
    host = HostSampler()
    host.open()
    first = host.sample()
    assert "host.cpu.total_pct" not in first  # no interval yet
    assert first["host.mem.used_pct"] is not None
    sum(i * i for i in range(1_000_000))  # let a few clock ticks pass
    second = host.sample()
    assert second["host.cpu.total_pct"] is not None
    assert "host.client.cpu_pct" in second
    assert host.info()["cores"] == os.cpu_count()


BURN = "import sys; sum(i * i for i in range(int(sys.argv[1]))); print('done', flush=True);" \
       " sys.stdin.read()"


def test_a_process_and_its_children_are_counted_once() -> None:
    """`bench run` lists itself and its workers: each worker's CPU is counted once, not once
    as a pid of its own and again inside its parent's tree."""
    with subprocess.Popen([sys.executable, "-c", BURN, "6000000"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            host = HostSampler(pids=lambda: [os.getpid(), child.pid])
            host.open()
            host.read()
            ref0 = proc_pid_cpu_s(child.pid) + proc_pid_cpu_s(os.getpid())
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "done"
            ref1 = proc_pid_cpu_s(child.pid) + proc_pid_cpu_s(os.getpid())
            reading = host.read()
        finally:
            child.kill()
    assert reading.workers is not None and reading.interval_s is not None
    got_s = reading.workers.cpu_pct / 100 * reading.interval_s
    assert reading.workers.processes == 1  # one tree: this process's
    assert got_s == pytest.approx(ref1 - ref0, abs=0.1)  # twice that if counted twice
    assert reading.run is not None
    assert reading.run.cpu_pct == pytest.approx(reading.workers.cpu_pct, abs=1.0)


@pytest.fixture
def hogs() -> Iterator[list[int]]:
    """Two CPU hogs that are not this process's descendants (orphaned by a shell that exits
    at once), as another user's jobs would be; killed by pid at the end."""
    out = subprocess.run(
        ["sh", "-c", f"for i in 1 2; do '{sys.executable}' -c 'while True: pass' "
                     ">/dev/null 2>&1 & echo $!; done"],
        capture_output=True, text=True, check=True)
    pids = [int(x) for x in out.stdout.split()]
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_other_processes_cpu_and_a_busy_host_verdict(hogs: list[int]) -> None:
    """Two hogs outside the run and a run of two CPU-bound workers on this host: the
    sampler counts the hogs as other processes, sees the workers wait for a CPU, and the
    verdict is host-busy."""
    assert all(Path(f"/proc/{pid}").exists() for pid in hogs)
    workers = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2)]
    try:
        host = HostSampler(pids=lambda: [w.pid for w in workers])
        with SamplingSession([host], interval=0.2) as session:
            time.sleep(2.0)  # the sampling window, not an assertion on time
    finally:
        for w in workers:
            w.kill()
            w.wait()
    series = session.series
    assert series is not None
    others = [v for v in series.values("host.others.cpu_pct") if v is not None]
    waited = [v for v in series.values("host.run.cpu_wait_pct") if v is not None]
    assert others and waited
    cores = os.cpu_count() or 1
    # two busy hogs: at least a third of a core each, whatever else runs here
    assert sum(others) / len(others) >= 100 * 0.66 / cores
    assert sum(waited) / len(waited) > 0
    verdict = attribute(StageTimings(map_s=9.0, insert_s=1.0, wall_s=2.0, workers=2),
                        series)
    if cores <= 2:  # the hogs take cores the workers could use
        assert verdict.label == "host-busy", verdict.summary()
        assert verdict.description.startswith("host busy (other processes ")
