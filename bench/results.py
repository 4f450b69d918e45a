"""Where `bench`'s commands put their results: run folders, result documents, pyperf files.

The documents themselves — their records, versions and upgraders, how they are read and
written — are :mod:`reports.results`; this module adds what only the writer knows (the
tool's version, the folder of this invocation) and the pyperf file.

The pyperf file stores *seconds per record* per configuration, so pyperf's lower-is-better
comparison reads correctly: ``python -m pyperf compare_to a/pyperf.json b/pyperf.json``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reports.results import (
    COMPLETE,
    RESULT_NAME,
    AnyDocument,
    Environment,
    Record,
    ResultDocument,
    Run,
    Tool,
    Verdict,
    new_document,
    save,
    writing,
)

PYPERF_NAME = "pyperf.json"


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


def build_result(kind: str, *, config: Record | Mapping[str, Any],
                 environment: Environment | Mapping[str, Any],
                 runs: Iterable[Run | Mapping[str, Any]],
                 verdicts: Iterable[Verdict | Mapping[str, Any]] | None = None,
                 extra: Mapping[str, Any] | None = None, status: str = COMPLETE,
                 error: str | None = None) -> AnyDocument:
    """A new result document of ``kind`` written by this version of migration-bench."""
    from bench import __version__

    return new_document(kind, tool=Tool(name="migration-bench", version=__version__),
                        config=config, environment=environment, runs=runs,
                        verdicts=verdicts or (), extra=extra, status=status, error=error)


def write_result(run_dir: Path, doc: ResultDocument) -> Path:
    """``run_dir/result.json``, written atomically."""
    return save(doc, run_dir / RESULT_NAME)


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
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        suite.dump(str(path), replace=True)
    return path
