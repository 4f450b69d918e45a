"""Host samplers on the machines of a cluster run (``bench run --cluster``).

Every worker samples its machine (:class:`diagnostics.host.HostSampler`: CPU per core,
memory, disks, and its own process's CPU) from the run's start, on the run's clock: the
coordinator's wall-clock start, so the series of all machines line up with its batch
times (as far as the machines' clocks agree). At the end the coordinator collects the
series; the workers of one machine sampled the same host, so the longest of their series
stands for the machine, and a worker lost during the run leaves its machine sampled by
the others. Imported only for cluster runs (it needs Dask distributed).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import Any

from distributed import WorkerPlugin

from diagnostics.host import HostSampler
from diagnostics.sampler import SamplingSession


class HostSamplingPlugin(WorkerPlugin):
    """Samples this worker's machine for one run."""

    def __init__(self, interval: float, wall0: float) -> None:
        self.interval = interval
        self.wall0 = wall0

    def setup(self, worker: Any) -> None:
        # The run's clock: seconds since the coordinator's start, on this machine's
        # monotonic clock.
        t0 = time.monotonic() - (time.time() - self.wall0)
        pid = os.getpid()
        self.host = socket.gethostname()
        self.address = str(worker.address)
        self.session = SamplingSession([HostSampler(pids=lambda: [pid])],
                                       interval=self.interval, t0=t0)
        self.session.start()

    def teardown(self, worker: Any) -> None:
        with contextlib.suppress(Exception):
            self.session.stop()

    def collect(self) -> dict[str, Any]:
        return {"host": self.host, "worker": self.address, "pid": os.getpid(),
                "samples": self.session.stop().to_dict()}


def collect_samples(name: str, dask_worker: Any = None) -> dict[str, Any] | None:
    plugin = dask_worker.plugins.get(name) if dask_worker is not None else None
    return plugin.collect() if isinstance(plugin, HostSamplingPlugin) else None


class ClusterHostSampling:
    """The coordinator's side: start sampling on every worker, then collect per host."""

    def __init__(self, client: Any, interval: float, wall0: float) -> None:
        self.client = client
        self.name = f"migration-bench-hosts-{uuid.uuid4().hex[:8]}"
        self.plugin = HostSamplingPlugin(interval, wall0)
        self.warning: str | None = None

    def start(self) -> ClusterHostSampling:
        self.client.register_plugin(self.plugin, name=self.name)
        return self

    def stop(self) -> dict[str, dict[str, Any]]:
        """Per host: its workers and the longest of their series."""
        try:
            answers = self.client.run(collect_samples, self.name, on_error="ignore")
        except Exception as exc:
            self.warning = f"host samples of the workers could not be collected: {exc}"
            answers = {}
        finally:
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(self.name)
        hosts: dict[str, dict[str, Any]] = {}
        for answer in answers.values():
            if not answer:
                continue
            entry = hosts.setdefault(answer["host"], {"workers": [], "samples": None})
            entry["workers"].append(answer["worker"])
            samples = answer["samples"]
            if entry["samples"] is None or len(samples["t"]) > len(entry["samples"]["t"]):
                entry["samples"] = samples
        for entry in hosts.values():
            entry["workers"].sort()
        return dict(sorted(hosts.items()))
