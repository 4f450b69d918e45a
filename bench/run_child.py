"""``python -m bench.run_child``: the process :class:`bench.isolated.RunnerMeasure` starts
for one measured run.

Protocol on stdin/stdout, one JSON line each: the parent sends the job; the child answers
``{"ready": true}`` once its imports are done and waits for a "go" line (the parent's
samplers are running by then); it runs the configuration through
:func:`bench.sweep.execute_point` and answers ``{"run": …, "environment": …}`` or
``{"error": …}``. It imports the runner and the sweep harness, not the command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from migrator.procs import die_with_parent


def main() -> None:
    die_with_parent()
    from bench.sweep import RunContext, RunNotMeasured, execute_point
    from migrator.errors import MigratorError
    from migrator.settings import RunSettings

    job: dict[str, Any] = json.loads(sys.stdin.readline())
    context = RunContext(inputs=list(job["inputs"]), target=job["target"],
                         mapping=Path(job["mapping"]) if job["mapping"] else None,
                         work_dir=Path(job["work_dir"]),
                         settings=RunSettings(**job.get("settings", {})))
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    try:
        run, environment = execute_point(job["config"], context, run_id=job.get("run_id"))
    except RunNotMeasured as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
    except MigratorError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
    else:
        print(json.dumps({"run": run.to_dict(), "environment": environment.to_dict()},
                         default=str), flush=True)


if __name__ == "__main__":
    main()
