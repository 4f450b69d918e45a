"""The result store of a sweep: one JSON line per finished run, appended as it finishes.

A sweep runs for minutes; a crash, a power cut or Ctrl-C must lose at most the run in
progress. So every record is one line of ``runs.jsonl`` in the run folder, written with a
single ``write`` of the whole line, flushed and fsync'ed before the next run starts. The
final ``result.json`` is derived from this file when the sweep ends; ``--resume`` reads
it back and runs only what is missing.

Format (``STORE_FORMAT`` 1), one JSON object per line, told apart by ``"type"``:

- ``plan``        — what the sweep will run (grid, repeats, seed, inputs, target). The
  first line; a later ``plan`` line supersedes it (``--resume --repeat 8`` extends a sweep).
- ``environment`` — host/DBMS metadata, written once, after the first run.
- ``run``         — one finished run: ``order_index`` (its position in the schedule),
  ``round``, ``config_index``, ``warmup`` and the run's own document (status, config,
  metrics, reconciliation, samples, verdicts). A run whose ``status`` is not ``complete``
  is kept for the record but is no measurement: its slot counts as not done.

Only the last line can be incomplete (a crash mid-write): it is reported with the file
name and dropped — the complete runs before it are kept, and ``--resume`` cuts the partial
line off before appending. A damaged line anywhere else is not a crash artefact; it is an
error naming the file and line, because silently skipping runs would bias the results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.results import (
    Environment,
    ResultFileError,
    ResultFormatError,
    Run,
    connection_from_pooling,
    finite,
)

STORE_NAME = "runs.jsonl"
STORE_FORMAT = 1


@dataclass
class StoreContents:
    """Everything a store file holds, after dropping a truncated last line."""

    path: Path
    plan: dict[str, Any] | None = None
    environment: Environment | None = None
    runs: list[Run] = field(default_factory=list)
    #: A human-readable note when the last line was incomplete (and dropped), else None.
    truncated: str | None = None
    #: Length in bytes of the complete part of the file (where appending must resume).
    good_bytes: int = 0

    def measured_runs(self) -> list[Run]:
        """Complete, non-warm-up runs: a failed or interrupted run is kept in the store
        (with what it measured) but is no measurement, and its slot is run again."""
        return [r for r in self.runs if r.counts]

    def unfinished_runs(self) -> list[Run]:
        """Runs stored with status failed or interrupted."""
        return [r for r in self.runs if not r.is_measurement]

    def done_slots(self) -> set[tuple[int, int]]:
        """``(round, config_index)`` of every measured run already stored."""
        return {(r.round, r.config_index) for r in self.measured_runs()
                if r.round is not None and r.config_index is not None}


def store_path(run_dir: Path) -> Path:
    return run_dir / STORE_NAME


def read_store(path: Path) -> StoreContents:
    """Parse a store file. A truncated last line is dropped and described in
    ``truncated``; any other damage raises :class:`ResultFileError` naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such sweep store") from None
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read: {exc}") from None
    contents = StoreContents(path=path)
    lines = data.split(b"\n")
    # After the final newline split() yields b""; anything else there lacks its newline.
    tail = lines.pop()
    offset = 0
    for number, raw in enumerate(lines, start=1):
        record = _decode(raw)
        if record is None:
            if number == len(lines) and not tail:
                # A complete-looking but unparsable last line: a torn write that happened
                # to end where a newline had been buffered. Same treatment as a partial one.
                contents.truncated = _truncation_note(path, number, raw, contents)
                contents.good_bytes = offset
                return contents
            raise ResultFileError(f"{path}: line {number} is not a valid store record; the "
                                  "file was edited or corrupted (only the last line can be "
                                  "cut short by a crash)")
        _add(contents, record, path, number)
        offset += len(raw) + 1
    contents.good_bytes = offset
    if tail.strip():
        contents.truncated = _truncation_note(path, len(lines) + 1, tail, contents)
    elif tail:
        contents.good_bytes = offset  # stray whitespace: harmless, overwritten on append
    if contents.plan is None and (contents.runs or contents.environment):
        raise ResultFileError(f"{path}: no plan record; not a sweep store")
    return contents


def _truncation_note(path: Path, number: int, raw: bytes, contents: StoreContents) -> str:
    kept = len(contents.measured_runs())
    return (f"{path}: line {number} is incomplete ({len(raw)} bytes, cut short by a crash "
            f"or kill); dropped it and kept the {kept} complete run(s) before it")


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "type" in record else None


def _add(contents: StoreContents, record: dict[str, Any], path: Path, number: int) -> None:
    kind = record["type"]
    try:
        _add_record(contents, kind, record, path, number)
    except ResultFormatError as exc:
        raise ResultFileError(f"{path}: line {number}: {exc}") from None


def _add_record(contents: StoreContents, kind: str, record: dict[str, Any], path: Path,
                number: int) -> None:
    if kind == "plan":
        if record.get("format") != STORE_FORMAT:
            raise ResultFileError(f"{path}: line {number}: store format "
                                  f"{record.get('format')!r} is not {STORE_FORMAT}; this "
                                  "sweep was written by another version of migration-bench")
        # (a sweep stored before the connection strategy swept ``pooling``: resumed as such)
        contents.plan = connection_from_pooling(record["plan"])
    elif kind == "environment":
        contents.environment = Environment.from_dict(record.get("environment"), "environment")
    elif kind == "run":
        if contents.plan is None:
            raise ResultFileError(f"{path}: line {number}: a run before any plan record")
        run = record.get("run")
        if isinstance(run, dict) and "config" in run:  # (written before the strategy)
            run = {**run, "config": connection_from_pooling(run["config"])}
        contents.runs.append(Run.from_dict(run, "run"))
    # Unknown record types are skipped: a newer tool may add informational ones.


class RunStore:
    """Append-only writer of a ``runs.jsonl`` file.

    ``open(resume=False)`` refuses a folder that already holds a store (a second sweep
    must not silently mix its runs into the first one); ``resume=True`` reads it and
    truncates an incomplete last line before appending.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = store_path(run_dir)
        self.contents = StoreContents(path=self.path)

    def open(self, *, resume: bool) -> StoreContents:
        if resume:
            self.contents = read_store(self.path)
            if self.contents.plan is None:
                raise ResultFileError(f"{self.path}: empty sweep store; nothing to resume "
                                      "(start the sweep again without --resume)")
            if self.contents.truncated:
                with open(self.path, "r+b") as f:
                    f.truncate(self.contents.good_bytes)
                    f.flush()
                    os.fsync(f.fileno())
            return self.contents
        if self.path.exists():
            raise ResultFileError(f"{self.run_dir}: already holds a sweep ({STORE_NAME}); "
                                  "continue it with --resume or choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.contents

    def write_plan(self, plan: dict[str, Any]) -> None:
        self._append({"type": "plan", "format": STORE_FORMAT, "plan": plan})
        self.contents.plan = plan

    def write_environment(self, environment: Environment) -> None:
        self._append({"type": "environment", "environment": environment.to_dict()})
        self.contents.environment = environment

    def append_run(self, run: Run) -> None:
        self._append({"type": "run", "run": run.to_dict()})
        self.contents.runs.append(run)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(finite(record), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")) + "\n"
        # One write of the whole line in append mode, then fsync: a crash leaves either
        # the full line or a prefix of it, which read_store recognises as truncated.
        with open(self.path, "ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def runs_in_order(runs: Iterable[Run]) -> list[Run]:
    """Runs sorted by their position in the schedule (warm-ups first, as they ran)."""
    def key(run: Run) -> tuple[bool, int, int]:
        index = run.order_index
        return (not run.warmup, -1 if index is None else index, run.sequence or 0)

    return sorted(runs, key=key)
