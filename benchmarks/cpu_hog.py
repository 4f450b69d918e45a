"""An on/off CPU hog: one process per core this process may run on, each pinned to its core,
alternating busy and idle phases of 1–4 seconds (seeded), for a fixed time.

It is the noisy neighbour of ``tests/test_live_noise.py`` and ``benchmarks/mde.py``: a host
that is taken over part of the time, at random moments, the way a shared CI runner or a
staging VM is. SIGTERM (or SIGINT) stops the hog and its workers at once.

    python benchmarks/cpu_hog.py --seconds 120 [--seed 1] [--busy 1..4] [--idle 1..4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import time
from types import FrameType


def _phases(low: float, high: float, rng: random.Random) -> float:
    return rng.uniform(low, high)


def _work(core: int, seconds: float, seed: int, busy: tuple[float, float],
          idle: tuple[float, float]) -> None:
    """One worker: pinned to ``core``, busy/idle phases until the deadline."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    rng = random.Random(seed * 1000 + core)
    deadline = time.monotonic() + seconds
    spin = 0
    # Start at a random point of a cycle, so the cores' phases are not aligned.
    time.sleep(min(rng.uniform(0, idle[1]), max(0.0, deadline - time.monotonic())))
    while time.monotonic() < deadline:
        end = min(deadline, time.monotonic() + _phases(*busy, rng))
        while time.monotonic() < end:
            spin = (spin * 31 + 7) % 1_000_003
        time.sleep(max(0.0, min(deadline - time.monotonic(), _phases(*idle, rng))))


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("..")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--busy", type=_range, default=(1.0, 4.0), help="seconds, A..B")
    parser.add_argument("--idle", type=_range, default=(1.0, 4.0), help="seconds, A..B")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else list(range(os.cpu_count() or 1))
    children: list[int] = []
    for core in cores:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _work(core, args.seconds, args.seed, args.busy, args.idle)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
