"""The smallest difference the default 5-minute budget can resolve here, quiet and under a
CPU hog.

Runs `bench calibrate` (an A/A run of the default dataset and batch size 1000) twice — once
as the host is, once while ``benchmarks/cpu_hog.py`` keeps every core busy for 1–4 s at a
time — and turns each calibration into the minimum detectable effect (80% power, the ±2%
noise band) of a budgeted sweep: between two configurations running every round, and
between all six configurations of the default ``--batch-sizes 50..2000`` before racing
drops any. With ``--sweep`` it also runs the default ``bench sweep`` and reports why and when
it stopped. Prints a Markdown table (docs/performance.md holds one).

    python benchmarks/mde.py [--duration 60] [--sweep] [--records 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.stats import mde  # noqa: E402

BUDGET_S = 300.0
DEFAULT_CONFIGS = 6


def _bench(*args: str, cache: Path) -> dict[str, Any]:
    # A private cache: the calibration taken under the hog must not become the one the
    # user's next `bench sweep` forecasts from.
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    out = subprocess.run([sys.executable, "-m", "bench", *args, "--json"], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _calibrate(duration: float, records: int, folder: Path, cache: Path) -> dict[str, Any]:
    return _bench("calibrate", "--duration", f"{duration:g}", "--records", str(records),
                  "--out", str(folder), cache=cache)


def _row(name: str, cal: dict[str, Any], load: float) -> list[str]:
    sd, run_s = cal["log_ratio_sd"], cal["run_s"]
    two = int(BUDGET_S / (2 * run_s))
    six = int(BUDGET_S / (DEFAULT_CONFIGS * run_s))

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    return [name, f"{load:.1f}", str(cal["pairs"]), f"{run_s:.2f}", pct(cal["raw_cv"]),
            pct(cal["paired_noise"]), f"{pct(mde(sd, two))} ({two} rounds)",
            f"{pct(mde(sd, six))} ({six} rounds)", "different" if cal["different"] else
            "equal"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per calibration")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--sweep", action="store_true", help="also run the default sweep")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mde-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        quiet = _calibrate(args.duration, args.records, work / "quiet", cache)
        rows.append(_row("as the host is", quiet, os.getloadavg()[0]))
        hog = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "cpu_hog.py"),
                                "--seconds", str(args.duration * 3 + 60)])
        try:
            noisy = _calibrate(args.duration, args.records, work / "hog", cache)
            rows.append(_row("CPU hog on every core, 1–4 s on/off", noisy,
                             os.getloadavg()[0]))
        finally:
            hog.terminate()
            hog.wait()
        sweep = _bench("sweep", "--records", str(args.records), "--out",
                       str(work / "sweep"), cache=cache) if args.sweep else None
    headers = ["host", "load avg", "A/A pairs", "s per run", "raw CV", "paired noise per run",
               "MDE, 5 min, 2 configurations", "MDE, 5 min, 6 configurations", "A/A verdict"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if sweep is not None:
        lines = sweep["summary"]["lines"]
        print()
        print(f"default `bench sweep` ({args.records:,} records): " + "; ".join(
            [lines[0], lines[-1]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
