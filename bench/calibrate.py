"""`bench calibrate`: an A/A measurement of how small a difference this machine can resolve.

One configuration runs under two labels, A and B, in pairs whose order is shuffled, for
``--duration`` seconds — the sweep machinery itself (plan, store, warm-up, noise gate), as a
budgeted sweep of two identical configurations with racing off. Since A and B are the same,
everything that tells them apart is noise:

* the *paired noise* — the standard deviation of the within-pair log-ratios / √2, the
  run-to-run noise a paired comparison still sees once the host's drift cancels;
* the A/A verdict — the paired test must not call A and B different, beyond its error rate;
* the *minimum detectable effect* reachable in 1, 5 and 15 minutes: the pairs that fit in
  that time at the measured run duration, through :func:`reports.stats.mde`.

The calibration is stored in the cache folder under a key of this host and target; a
`bench sweep` on the same host and target within :data:`MAX_AGE_S` uses it to say, before it
starts, whether its budget can resolve a 5% difference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.results import build_result, write_result
from bench.store import StoreContents
from bench.sweep import (
    SweepError,
    SweepPlan,
    busy_host_warning,
    cache_root,
    in_storage_order,
    measured_order,
    samples_by_config,
    slot_seconds,
    throughput,
)
from migrator.connstr import redact_connection_string
from reports.results import CalibrationDocument, Environment, Run
from reports.stats import (
    NOISE_BAND,
    describe,
    mde,
    paired_compare,
    rounds_for_mde,
)
from reports.summary import format_change, format_p

DEFAULT_DURATION_S = 60.0
LABELS = ("A", "B")
#: The horizons the MDE is reported for, in minutes.
MDE_MINUTES = (1, 5, 15)
#: A sweep uses a calibration of its host and target younger than this.
MAX_AGE_S = 24 * 3600.0
#: The difference a sweep says up front whether its budget can resolve.
TARGET_CHANGE = 0.05


def calibration_plan(*, duration_s: float, batch_size: int, warmup: int, seed: int,
                     inputs: list[str], target: str | None, mapping: str | None,
                     dataset: dict[str, Any] | None, noise_band: float) -> SweepPlan:
    """The A/A design as a sweep plan: two labels of one configuration, no racing."""
    configurations: list[dict[str, Any]] = [{"label": label, "batch_size": batch_size}
                                            for label in LABELS]
    return SweepPlan(kind="calibrate", dimensions={"batch_size": [batch_size]}, repeat=1,
                     warmup=warmup, seed=seed, inputs=inputs, target=target, mapping=mapping,
                     dataset=dataset, configurations=configurations, budget_s=duration_s,
                     noise_band=noise_band, racing=False)


def target_display(target: str | None) -> str:
    """The target as stored and keyed: connection strings redacted, the default named."""
    if target is None:
        return "sqlite (default: a fresh file per run)"
    if target.startswith("odbc:"):
        return "odbc:" + redact_connection_string(target[5:])
    return target


@dataclass(frozen=True)
class Calibration:
    """One A/A calibration, as printed, returned by ``--json`` and stored."""

    created: str
    created_unix: float
    host: str
    target: str
    records: int | None
    batch_size: int
    pairs: int
    duration_s: float
    run_s: float
    raw_cv: float | None
    log_ratio_sd: float | None
    paired_noise: float | None
    noise_band: float
    aa: dict[str, Any]
    different: bool
    mde: dict[str, float | None]
    rounds_for_5pct: int | None
    minutes_for_5pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pair_rounds(self, minutes: float, configs: int = 2) -> int:
        """Rounds of ``configs`` runs that fit in ``minutes`` at this run duration."""
        return int(minutes * 60.0 / (configs * self.run_s)) if self.run_s > 0 else 0


def analyse(plan: SweepPlan, runs: Sequence[Run], *,
            now: float | None = None) -> Calibration:
    """The calibration of a finished A/A plan's runs."""
    groups = samples_by_config(plan, runs)
    by_round = [{r.round: throughput(r) for r in rs if r.round is not None}
                for _, rs in groups]
    common = sorted(set(by_round[0]) & set(by_round[1]))
    if len(common) < 2:
        raise SweepError(f"calibration: only {len(common)} complete pair(s) ran; give it a "
                         "longer --duration")
    a = [by_round[0][r] for r in common]
    b = [by_round[1][r] for r in common]
    cmp = paired_compare(a, b, noise_band=plan.noise_band)
    measured = [r for _, rs in groups for r in rs]
    run_s = sum(slot_seconds(r) for r in measured) / len(measured)
    log_sd = None if cmp.paired_noise is None else cmp.paired_noise * math.sqrt(2.0)
    stamp = time.time() if now is None else now

    def reachable(minutes: float) -> float | None:
        pairs = int(minutes * 60.0 / (2 * run_s)) if run_s > 0 else 0
        return mde(log_sd, pairs, noise_band=plan.noise_band)

    needed = rounds_for_mde(log_sd, TARGET_CHANGE, noise_band=plan.noise_band)
    records = (plan.dataset or {}).get("records")
    return Calibration(
        created=dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds"),
        created_unix=stamp, host=socket.gethostname(), target=target_display(plan.target),
        records=int(records) if isinstance(records, int) else None,
        batch_size=int(plan.configurations[0]["batch_size"]), pairs=len(common),
        duration_s=float(plan.budget_s or 0.0), run_s=run_s,
        raw_cv=describe(a + b).cv, log_ratio_sd=log_sd, paired_noise=cmp.paired_noise,
        noise_band=plan.noise_band, aa=cmp.to_dict(), different=cmp.significant,
        mde={f"{m}m": reachable(m) for m in MDE_MINUTES},
        rounds_for_5pct=needed,
        minutes_for_5pct=None if needed is None else needed * 2 * run_s / 60.0)


def aa_sentence(cal: Calibration) -> str:
    """The A/A verdict in one line."""
    aa = cal.aa
    band = f"±{100 * cal.noise_band:g}%"
    low, high = aa.get("change_ci_low"), aa.get("change_ci_high")
    interval = ("" if low is None or high is None
                else f", CI {format_change(low)} to {format_change(high)}")
    detail = (f"B vs A {format_change(aa.get('change'))}{interval}, "
              f"{format_p(aa.get('p_value'))}")
    if cal.different:
        return (f"A/A verdict: DIFFERENT ({detail}) although A and B ran the same "
                "configuration: a false alarm the test allows 5% of the time, or the host "
                "changed between the labels' runs; calibrate again")
    if aa.get("outcome") == "equivalent":
        return f"A/A verdict: equal — equivalent within {band} ({detail})"
    return (f"A/A verdict: equal — no difference called ({detail}); too few pairs to prove "
            f"them within {band}")


# ---- the stored calibration ----------------------------------------------------------------

def calibration_path(target: str | None, *, root: Path | None = None,
                     host: str | None = None) -> Path:
    key = f"{host or socket.gethostname()}\n{target_display(target)}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return (root or cache_root()) / "calibrations" / f"{digest}.json"


def store_calibration(cal: Calibration, target: str | None, *,
                      root: Path | None = None) -> Path:
    path = calibration_path(target, root=root, host=cal.host)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cal.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_recent(target: str | None, *, root: Path | None = None,
                now: float | None = None, max_age_s: float = MAX_AGE_S) -> Calibration | None:
    """The stored calibration of this host and target, when it is recent enough."""
    path = calibration_path(target, root=root)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cal = Calibration(**doc)
    except (OSError, ValueError, TypeError):
        return None
    age = (time.time() if now is None else now) - cal.created_unix
    if age < 0 or age > max_age_s or cal.target != target_display(target):
        return None
    return cal


@dataclass(frozen=True)
class Forecast:
    """What a calibration says a sweep's budget can resolve."""

    calibration_age_s: float
    paired_noise: float | None
    run_s: float
    rounds_all: int
    mde_all: float | None
    rounds_two: int
    mde_two: float | None
    minutes_for_5pct: float | None
    resolves_5pct: bool

    def sentence(self, configs: int) -> str:
        age = _age(self.calibration_age_s)
        head = (f"calibration of {age} ago (this host and target): paired noise "
                f"{_pct(self.paired_noise)} per run, {self.run_s:.2f} s a run")
        rounds = (f"this budget gives about {self.rounds_all} rounds of all {configs} "
                  f"configurations (MDE {_pct(self.mde_all)})")
        if configs > 2:
            rounds += (f" and about {self.rounds_two} once racing leaves two "
                       f"(MDE {_pct(self.mde_two)})")
        if self.resolves_5pct:
            verdict = "it can resolve a 5% difference"
        elif self.minutes_for_5pct is None:
            verdict = "a 5% difference is inside the noise band"
        else:
            verdict = (f"a 5% difference needs about {math.ceil(self.minutes_for_5pct)} "
                       "minutes between two configurations: raise --budget or sweep fewer "
                       "configurations")
        return f"{head}; {rounds}: {verdict}"


def forecast(cal: Calibration, *, configs: int, budget_s: float, records: int | None,
             noise_band: float = NOISE_BAND, now: float | None = None) -> Forecast:
    """Rounds and MDE a budgeted sweep of ``configs`` configurations can expect, scaling the
    calibration's run time by the record count when the datasets differ."""
    run_s = cal.run_s
    if records and cal.records:
        run_s *= records / cal.records
    rounds_all = int(budget_s / (max(configs, 1) * run_s)) if run_s > 0 else 0
    rounds_two = int(budget_s / (2 * run_s)) if run_s > 0 else 0
    mde_all = mde(cal.log_ratio_sd, rounds_all, noise_band=noise_band)
    mde_two = mde(cal.log_ratio_sd, rounds_two, noise_band=noise_band)
    needed = rounds_for_mde(cal.log_ratio_sd, TARGET_CHANGE, noise_band=noise_band)
    best = mde_two if configs >= 2 else mde_all
    return Forecast(
        calibration_age_s=(time.time() if now is None else now) - cal.created_unix,
        paired_noise=cal.paired_noise, run_s=run_s, rounds_all=rounds_all, mde_all=mde_all,
        rounds_two=rounds_two, mde_two=mde_two,
        minutes_for_5pct=None if needed is None else needed * 2 * run_s / 60.0,
        resolves_5pct=best is not None and best <= TARGET_CHANGE)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h"


# ---- the result file -----------------------------------------------------------------------

def finish_calibration(plan: SweepPlan, contents: StoreContents, run_dir: Path
                       ) -> tuple[CalibrationDocument, Calibration, Path]:
    """Write result.json (kind ``calibrate``) and return it with the calibration."""
    cal = analyse(plan, contents.runs)
    measured = [r for r in contents.runs if not r.warmup]
    busy = busy_host_warning(measured)
    summary = {**cal.to_dict(), "verdict": aa_sentence(cal),
               "warnings": [busy] if busy else []}
    doc = build_result("calibrate",
                       config={**plan.to_dict(), "order": measured_order(contents.runs)},
                       environment=contents.environment or Environment(),
                       runs=in_storage_order(contents.runs),
                       extra={"summary": summary, "measured_runs": len(measured)})
    assert isinstance(doc, CalibrationDocument)
    return doc, cal, write_result(run_dir, doc)
