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

The pyperf file stores *seconds per record* per configuration, so pyperf's lower-is-better
comparison reads correctly: ``python -m pyperf compare_to a/pyperf.json b/pyperf.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from migrator.errors import MigratorError

SCHEMA = "migration-bench/result"
SCHEMA_VERSION = 2
RESULT_NAME = "result.json"
PYPERF_NAME = "pyperf.json"


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
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from bench import __version__

    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
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


# version → function turning a document of that version into the next version.
_UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


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
