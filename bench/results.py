"""Result files: one versioned JSON document per invocation, plus a pyperf file.

Format history (bump ``SCHEMA_VERSION`` and add an upgrader for every change):

- 1: first version. ``{"schema": "migration-bench/result", "schema_version": 1, "kind",
  "created", "tool", "config", "environment", "runs": [...], "verdicts": [...]}``; each run
  holds its configuration, metrics (records, stages, tables, batches), reconciliation and
  sampler series.
- 2: every run's ``config`` names all run dimensions (``batch_size``, ``workers``,
  ``pipeline``, ``queue_depth``, ``pooling``, ``insert_method``) and ``sample_interval``
  (null: not sampled); every run has a ``bottleneck`` key (null when not attributed).
  Version 1 files lacked the dimensions added later (``queue_depth``) and the sampling keys.
- 3: ``status`` (``complete``, ``failed`` or ``interrupted``) and ``error`` (the one-line
  cause, or null) on the document and on every run. Only complete runs are measurements;
  a failed or interrupted run keeps what it measured before it stopped (counts, batches,
  stages) and sweeps, baselines, comparisons and reports skip it, saying so. Version 2 runs
  become ``failed`` when they recorded an error or a reconciliation that did not hold (what
  made `bench run` exit 1), else ``complete``. Runs written since may also hold
  ``run_id`` and ``session_name`` (what the run's database sessions were named) and, in
  ``samples``, ``blockers`` (sessions seen holding a lock the run waited for); readers treat
  them as optional.
- 4: ``connection`` (``per-batch``, ``pooled`` or ``persistent``: how each batch got its
  connection) replaces ``pooling`` in every configuration — the document's, each run's,
  a sweep's dimensions, configurations and summary. Older ``pooling`` values become
  ``connection`` (``on`` → ``pooled``, ``off`` → ``per-batch``), and so do the labels that
  name them (``pooling=on`` → ``connection=pooled``).

The pyperf file stores *seconds per record* per configuration, so pyperf's lower-is-better
comparison reads correctly: ``python -m pyperf compare_to a/pyperf.json b/pyperf.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from migrator.connection import strategy_of_pooling
from migrator.errors import MigratorError

SCHEMA = "migration-bench/result"
SCHEMA_VERSION = 4
RESULT_NAME = "result.json"
PYPERF_NAME = "pyperf.json"

COMPLETE, FAILED, INTERRUPTED = "complete", "failed", "interrupted"
STATUSES = (COMPLETE, FAILED, INTERRUPTED)


class ResultFileError(MigratorError):
    """A result file is missing, truncated, or from an unknown version."""


def new_run_dir(base: str | Path = "runs") -> Path:
    """``runs/<timestamp>/``, made unique if two invocations start in the same second."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(base)
    candidate = root / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: replace them with null rather than write invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def build_result(kind: str, *, config: dict[str, Any], environment: dict[str, Any],
                 runs: list[dict[str, Any]], verdicts: list[dict[str, Any]] | None = None,
                 extra: dict[str, Any] | None = None, status: str = COMPLETE,
                 error: str | None = None) -> dict[str, Any]:
    from bench import __version__

    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "status": status,
        "error": error,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tool": {"name": "migration-bench", "version": __version__},
        "config": config,
        "environment": environment,
        "runs": runs,
        "verdicts": verdicts or [],
    }
    if extra:
        doc.update(extra)
    return doc


@contextmanager
def _writing(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """A full disk or a read-only folder is one clear line, and no half-written file."""
    try:
        yield
    except OSError as exc:
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
        raise ResultFileError(f"{path}: cannot write result file: "
                              f"{exc.strerror or exc} (the migration itself is committed)"
                              ) from None


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with _writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_finite(doc), f, indent=1, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def write_result(run_dir: Path, doc: dict[str, Any]) -> Path:
    path = run_dir / RESULT_NAME
    write_json_atomic(path, doc)
    return path


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result file (a run folder or the JSON itself), upgrading old versions."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_NAME
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(f"{p}: no such result file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{p}: not a valid result file (truncated or corrupted?): "
                              f"{exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultFileError(f"{p}: not a migration-bench result file")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultFileError(f"{p}: schema version {version!r} is newer than this tool "
                              f"understands ({SCHEMA_VERSION}); upgrade migration-bench")
    while version < SCHEMA_VERSION:
        doc = _UPGRADERS[version](doc)
        version = doc["schema_version"]
    return doc


RUN_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "workers": 1, "pipeline": "off",
                                "queue_depth": 2, "pooling": "off", "insert_method": "auto"}


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    for run in doc.get("runs") or []:
        if not isinstance(run, dict):
            continue
        config = run.setdefault("config", {})
        for key, value in RUN_DEFAULTS.items():
            config.setdefault(key, value)
        samples = run.get("samples")
        config.setdefault("sample_interval",
                          samples.get("interval_s") if isinstance(samples, dict) else None)
        run.setdefault("samples", None)
        run.setdefault("bottleneck", None)
    doc["schema_version"] = 2
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    for run in doc.get("runs") or []:
        if isinstance(run, dict):
            run.setdefault("error", _v2_failure(run))
            run.setdefault("status", FAILED if run["error"] else COMPLETE)
    runs = [r for r in doc.get("runs") or [] if isinstance(r, dict)]
    # A `bench run` document is its run; sweeps and baselines only ever stored finished ones.
    first_failed = next((r for r in runs if r["status"] != COMPLETE), None)
    if doc.get("kind") == "run" and first_failed is not None:
        doc.setdefault("status", FAILED)
        doc.setdefault("error", first_failed["error"])
    doc.setdefault("status", COMPLETE)
    doc.setdefault("error", None)
    doc["schema_version"] = 3
    return doc


def _v2_failure(run: dict[str, Any]) -> str | None:
    """The first error a version 2 run recorded, or None when it ended cleanly."""
    metrics = run.get("metrics")
    errors = (metrics.get("errors") if isinstance(metrics, dict) else None) or []
    if errors:
        return str(errors[0])
    rec = run.get("reconciliation")
    if isinstance(rec, dict) and rec.get("ok") is False:
        problems = rec.get("problems") or ["the counts did not reconcile"]
        return f"not reconciled: {problems[0]}"
    return None


def _v3_to_v4(doc: dict[str, Any]) -> dict[str, Any]:
    for key in ("config", "summary", "compare"):
        if key in doc:
            doc[key] = connection_from_pooling(doc[key])
    for run in doc.get("runs") or []:
        if isinstance(run, dict) and "config" in run:
            run["config"] = connection_from_pooling(run["config"])
    doc["schema_version"] = 4
    return doc


_POOLING_LABEL = re.compile(r"\bpooling=(on|off)\b")


def _relabel(match: re.Match[str]) -> str:
    return f"connection={strategy_of_pooling(match.group(1))}"


def connection_from_pooling(value: Any) -> Any:
    """A configuration (or a sweep plan, or a summary) written before the connection
    strategy, in today's terms: a ``pooling`` on/off key becomes ``connection`` in its
    place (pooled/per-batch), a ``pooling`` dimension's values likewise, and labels that
    say ``pooling=on`` say ``connection=pooled``. Anything else is returned as it is."""
    if isinstance(value, str):
        return _POOLING_LABEL.sub(_relabel, value)
    if isinstance(value, list):
        return [connection_from_pooling(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "pooling":
            converted = _pooling_value(item)
            if converted is not None:
                out.setdefault("connection", converted)
                continue
        if key == "dimensions" and isinstance(item, list):  # (a summary's dimension names)
            item = ["connection" if d == "pooling" else d for d in item]
        out[key] = connection_from_pooling(item)
    return out


def _pooling_value(value: Any) -> Any:
    """``on`` → ``pooled`` (a list of them: each); None when ``value`` is no pooling."""
    if isinstance(value, list):
        values = [strategy_of_pooling(v) for v in value]
        return values if value and None not in values else None
    return strategy_of_pooling(value)


# version → function turning a document of that version into the next version.
_UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2,
                                                                    2: _v2_to_v3,
                                                                    3: _v3_to_v4}


def run_status(run: Any) -> str:
    """A run's ``status``; a run without one (a hand-made document) counts as complete."""
    status = run.get("status") if isinstance(run, dict) else None
    return str(status) if status in STATUSES else COMPLETE


def is_measurement(run: Any) -> bool:
    """Only a complete run's time is a measurement; failed and interrupted ones are not."""
    return run_status(run) == COMPLETE


def describe_skipped(run: Any) -> str:
    """``failed: <error>`` / ``interrupted``: why a run is not taken as a measurement."""
    status = run_status(run)
    error = run.get("error") if isinstance(run, dict) else None
    return f"{status}: {error}" if error else status


def write_pyperf(path: Path, benchmarks: dict[str, Sequence[float]],
                 metadata: dict[str, Any] | None = None) -> Path:
    """One pyperf benchmark per configuration; values are seconds per record."""
    import pyperf

    if not benchmarks:
        raise ValueError("no benchmark to write")
    suite = None
    for name, values in benchmarks.items():
        good = [float(v) for v in values if v > 0 and math.isfinite(v)]
        if not good:
            continue
        meta: dict[str, Any] = {"name": name, "unit": "second"}
        for k, v in (metadata or {}).items():
            if isinstance(v, str | int | float) and k not in meta:
                meta[k] = v
        # pyperf keeps one Run per process; each of our measurements is one Run.
        runs = [pyperf.Run([v], metadata=meta, collect_metadata=False) for v in good]
        bench = pyperf.Benchmark(runs)
        if suite is None:
            suite = pyperf.BenchmarkSuite([bench])
        else:
            suite.add_benchmark(bench)
    if suite is None:
        raise ValueError("no positive measurement to write")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        suite.dump(str(path), replace=True)
    return path
