"""The single-file HTML report: result documents in, one self-contained HTML file out.

``write_report(result_paths, out_path)`` is the whole public API (plus :func:`build_report`
and :func:`render_html` for callers that already hold documents). It reads result files of
every kind (``run``, ``sweep``, ``baseline``, ``compare``, ``diagnose``; also the
``bench compare --json`` output), builds a list of :class:`Section` objects — each one
present only when its data exists — and renders them with a jinja2 template (autoescape
on). Charts are inline SVG (:mod:`reports.charts`, :mod:`reports.svg`), CSS is inline, the
raw documents are embedded as JSON for re-analysis, and nothing is fetched from anywhere:
the file opens from disk, offline, and prints with one section per page.

Everything shown comes from the documents, and everything from the documents is escaped
by the template (or by matplotlib / :func:`xml.sax.saxutils.escape` inside SVG).
Connection-string secrets are masked once, on load (:func:`redact`), before anything is
rendered or embedded, whatever the writer already did.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from migrator.connection import STRATEGIES
from migrator.settings import SWEPT, label as setting_label
from reports import charts
from reports.stats import Comparison, PairedComparison, compare as compare_samples, paired_compare
from reports.summary import (
    bottleneck_of,
    format_change,
    format_config,
    format_p,
    summarize_sweep,
)
from reports.svg import TreeView, figure_to_svg, normalise_tree, tree_svg

__all__ = [
    "Block",
    "Report",
    "Section",
    "Table",
    "build_report",
    "load_documents",
    "redact",
    "render_html",
    "write_report",
]

#: Dimensions a configuration is keyed on, in the order the sweep prints them.
DIMENSIONS = tuple(s.name for s in SWEPT)
#: Values shown in this order where a dimension has them (the rest alphabetically after).
_VALUE_ORDER = ("off", "on", *STRATEGIES)
TEMPLATE = "report.html.j2"

# --------------------------------------------------------------------------- redaction

_SECRET_KV = re.compile(
    r"(?i)\b(pwd|password|passwd|pass|secret|token|api[_-]?key|access[_-]?key)(\s*=\s*)"
    r"(\{(?:[^}]|\}\})*\}|[^;,\s\"']*)")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s]+:)([^@/\s]+)(@)")


def redact(text: str) -> str:
    """Mask ``PWD=…``/``Password=…`` (ODBC, braces included) and ``user:pass@`` in URLs."""
    text = _SECRET_KV.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}***{m.group(3)}", text)


def _redact_deep(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {redact(str(k)): _redact_deep(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact_deep(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- loading


def _load_one(path: Path) -> dict[str, Any]:
    from bench.results import RESULT_NAME, ResultFileError, load_result

    try:
        return load_result(path)
    except ResultFileError:
        # `bench compare --json` prints a report, not a result file: accept it as is.
        p = path / RESULT_NAME if path.is_dir() else path
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = None
        if isinstance(raw, dict) and {"rows", "sentence", "a", "b"} <= raw.keys():
            return {"schema": "migration-bench/compare", "kind": "compare", "compare": raw,
                    "runs": [], "verdicts": [], "environment": {}, "config": {}}
        raise


def load_documents(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Load and redact result documents (a run folder or its ``result.json`` each)."""
    docs = []
    for path in paths:
        doc = _load_one(Path(path))
        doc["_source"] = str(path)
        docs.append(_redact_deep(doc))
    return docs


# --------------------------------------------------------------------------- the model


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()   # columns right-aligned


@dataclass
class Block:
    """One item of a section: a paragraph, a bullet list, a chart (SVG) or a table."""

    kind: str  # "text" | "list" | "svg" | "table" | "pre"
    text: str = ""
    items: list[str] = field(default_factory=list)
    svg: str = ""
    table: Table | None = None
    caption: str = ""
    css: str = ""


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self, text: str, css: str = "") -> None:
        self.blocks.append(Block("text", text=text, css=css))

    def bullets(self, items: Sequence[str], css: str = "") -> None:
        if items:
            self.blocks.append(Block("list", items=list(items), css=css))

    def chart(self, fig: Any, caption: str) -> None:
        self.blocks.append(Block("svg", svg=figure_to_svg(fig, title=caption), caption=caption))
        fig.clear()

    def svg(self, svg: str, caption: str) -> None:
        self.blocks.append(Block("svg", svg=svg, caption=caption))

    def add_table(self, table: Table) -> None:
        self.blocks.append(Block("table", table=table))


@dataclass
class Report:
    title: str
    generated: str
    sources: list[str]
    kinds: list[str]
    sections: list[Section]
    raw_json: str
    raw_note: str = ""


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _fmt(value: Any, digits: int = 0) -> str:
    number = _num(value)
    if number is None:
        return "—" if value is None else str(value)
    return f"{number:,.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    number = _num(value)
    return "—" if number is None else f"{100 * number:.{digits}f}%"


def _ci_text(stats: Mapping[str, Any]) -> str:
    lo, hi, conf = stats.get("ci_low"), stats.get("ci_high"), stats.get("ci_confidence")
    if lo is None or hi is None:
        return "—"
    confidence = _num(conf)
    level = f" ({100 * confidence:.0f}%)" if confidence is not None else ""
    return f"{_fmt(lo)}–{_fmt(hi)}{level}"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sort_key(value: Any) -> tuple[int, float, str]:
    number = _num(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


@dataclass
class RunPoint:
    order: int
    config: dict[str, Any]
    throughput: float
    run: dict[str, Any]
    source: int


def _run_config(run: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(run.get("config") or {})
    metrics = run.get("metrics") or {}
    if "batch_size" not in config and doc.get("config", {}).get("batch_size") is not None:
        config["batch_size"] = doc["config"]["batch_size"]
    if "workers" in config and not isinstance(config["workers"], int | float):
        config.pop("workers")
    if "workers" not in config and isinstance(metrics.get("workers"), int):
        config["workers"] = metrics["workers"]
    return {k: config[k] for k in DIMENSIONS if k in config and config[k] is not None}


def is_measurement(run: Mapping[str, Any]) -> bool:
    """A run without a status (older files, once upgraded, always have one) is complete;
    a failed or interrupted run measured something, but is no measurement."""
    return run.get("status", "complete") == "complete"


def unfinished_runs(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per failed or interrupted run: what the report leaves out, and why."""
    lines = []
    for doc in docs:
        for i, run in enumerate(doc.get("runs") or []):
            if isinstance(run, Mapping) and not is_measurement(run):
                error = f": {run['error']}" if run.get("error") else ""
                where = f"run {i + 1} of {doc.get('_source') or doc.get('kind')}"
                lines.append(f"{where} {run.get('status')}{error} — not a measurement, left "
                             "out of every chart and statistic")
    return lines


def collect_runs(docs: Sequence[Mapping[str, Any]]) -> list[RunPoint]:
    """Every measured (complete, non-warm-up) run with a throughput, in execution order."""
    points: list[RunPoint] = []
    order = 0
    for d, doc in enumerate(docs):
        runs = [r for r in doc.get("runs") or [] if isinstance(r, Mapping)]

        def position(item: tuple[int, Mapping[str, Any]]) -> tuple[float, int]:
            i, r = item
            for key in ("sequence", "order_index"):
                if _num(r.get(key)) is not None:
                    return float(r[key]), i
            return float(i), i

        # Of a disturbed run and its re-run in the same round, only the re-run counts.
        replaced = {id(r) for r in _replaced_runs(runs)}
        for _, run in sorted(enumerate(runs), key=position):
            if run.get("warmup") or not is_measurement(run) or id(run) in replaced:
                continue
            value = _num((run.get("metrics") or {}).get("throughput_rec_per_min"))
            if value is None:
                continue
            points.append(RunPoint(order, _run_config(run, doc), value, dict(run), d))
            order += 1
    return points


def _replaced_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Runs a later run of the same round and configuration replaced (a re-run)."""
    latest: dict[tuple[Any, Any], Mapping[str, Any]] = {}
    replaced: list[Mapping[str, Any]] = []
    for run in sorted((r for r in runs if isinstance(r.get("round"), int)
                       and not r.get("warmup") and is_measurement(r)),
                      key=lambda r: float(_num(r.get("sequence")) or 0.0)):
        key = (run.get("round"), run.get("config_index"))
        if key in latest:
            replaced.append(latest[key])
        latest[key] = run
    return replaced


def _varying(points: Sequence[RunPoint]) -> list[str]:
    dims = []
    for dim in DIMENSIONS:
        values = {json.dumps(p.config.get(dim)) for p in points}
        if len(values) > 1:
            dims.append(dim)
    return dims


def _key(config: Mapping[str, Any], dims: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    return tuple((d, config.get(d)) for d in dims)


ConfigKey = tuple[tuple[str, Any], ...]


def _summary_for(docs: Sequence[Mapping[str, Any]], points: Sequence[RunPoint]
                 ) -> tuple[dict[str, Any] | None, dict[ConfigKey, list[RunPoint]]]:
    """The sweep summary (stored by `bench sweep` when one sweep file is given, else computed
    with the same function from the runs) and the runs of each configuration."""
    sweeps = [d for d in docs if d.get("kind") == "sweep" and isinstance(d.get("summary"), Mapping)]
    stored = sweeps[0]["summary"] if len(sweeps) == 1 and all(
        p.source == docs.index(sweeps[0]) for p in points) else None
    dims = list(stored.get("dimensions") or []) if stored is not None else _varying(points)
    groups: dict[ConfigKey, list[RunPoint]] = OrderedDict()
    for p in sorted(points, key=lambda p: [_sort_key(p.config.get(d)) for d in dims]):
        groups.setdefault(_key(p.config, dims), []).append(p)
    for members in groups.values():
        members.sort(key=lambda p: p.order)
    if stored is not None:
        return dict(stored), groups
    if not groups:
        return None, groups
    baseline = None
    for doc in docs:
        if doc.get("kind") == "sweep" and isinstance(doc.get("config"), Mapping):
            baseline = doc["config"].get("baseline")
    try:
        summary = summarize_sweep([(dict(k), [p.throughput for p in v])
                                   for k, v in groups.items()], baseline=baseline)
    except ValueError:
        summary = summarize_sweep([(dict(k), [p.throughput for p in v])
                                   for k, v in groups.items()])
    return summary.to_dict(), groups


def _row_for(summary: Mapping[str, Any], config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for row in summary.get("rows") or []:
        if all(json.dumps(row["config"].get(k)) == json.dumps(v) for k, v in config.items()):
            return row
    return None


# --------------------------------------------------------------------------- sections


class _Builder:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.points = collect_runs(docs)
        self.summary, self.groups = _summary_for(docs, self.points)
        self.dims: list[str] = list(self.summary.get("dimensions") or []) if self.summary else []
        self.trees = [(d, *t) for d in docs for t in [_find_tree(d)] if t is not None]
        self.sections: list[Section] = []
        self.drawn: set[int] = set()  # id() of the sample series drawn in timelines

    # -- lookups

    def samples_of(self, config: Mapping[str, Any]) -> list[float]:
        key = _key(config, self.dims)
        return [p.throughput for p in self.groups.get(key, [])]

    def runs_of(self, config: Mapping[str, Any]) -> list[RunPoint]:
        return self.groups.get(_key(config, self.dims), [])

    def paired(self) -> bool:
        """Do the runs come from the rounds of one sweep (so comparisons pair them)?"""
        return (len({p.source for p in self.points}) == 1 and bool(self.points)
                and all(isinstance(p.run.get("round"), int) for p in self.points))

    def versus(self, ref: Mapping[str, Any], config: Mapping[str, Any]
               ) -> Comparison | PairedComparison | None:
        """``config`` against ``ref``: paired within rounds when the runs have rounds of one
        sweep, else as independent samples; None without runs on a side."""
        a, b = self.runs_of(ref), self.runs_of(config)
        if not a or not b:
            return None
        if self.paired():
            by_a = {p.run["round"]: p.throughput for p in a}
            by_b = {p.run["round"]: p.throughput for p in b}
            common = sorted(set(by_a) & set(by_b))
            if common:
                return paired_compare([by_a[r] for r in common], [by_b[r] for r in common])
        return compare_samples([p.throughput for p in a], [p.throughput for p in b],
                               change_ci=False)

    def rows(self) -> list[Mapping[str, Any]]:
        return list(self.summary.get("rows") or []) if self.summary else []

    def best_row(self) -> Mapping[str, Any] | None:
        if not self.summary or not self.rows():
            return None
        index = self.summary.get("best", {}).get("index")
        rows = self.rows()
        return rows[index] if isinstance(index, int) and 0 <= index < len(rows) else None

    def bottleneck(self) -> Mapping[str, Any] | None:
        if self.summary and isinstance(self.summary.get("best_bottleneck"), Mapping):
            found: Mapping[str, Any] = self.summary["best_bottleneck"]
            return found
        for doc in self.docs:
            summary = doc.get("summary")
            if isinstance(summary, Mapping) and isinstance(summary.get("bottleneck"), Mapping):
                stored: Mapping[str, Any] = summary["bottleneck"]
                return stored
        best = self.best_row()
        runs = self.runs_of(best["config"]) if best else [p for p in self.points]
        for p in runs:
            verdict = bottleneck_of(p.run)
            if verdict is not None:
                return verdict
        for doc in self.docs:
            for v in doc.get("verdicts") or []:
                if isinstance(v, Mapping) and v.get("kind") == "bottleneck" and "label" in v:
                    return v
        return None

    # -- sections, in reading order

    def build(self) -> list[Section]:
        self.summary_section()
        self.throughput_section()
        self.scaling_section()
        for s in SWEPT:  # (batch size and workers have the sections above)
            if s.title and s.anchor:
                self.dimension_section(s.name, s.title, s.anchor)
        self.compare_section()
        self.bottleneck_section()
        self.tree_section()
        self.timeline_section()
        self.run_order_section()
        self.runs_table_section()
        self.environment_section()
        return [s for s in self.sections if s.blocks]

    def summary_section(self) -> None:
        sec = Section("summary", "Summary")
        self.sections.append(sec)
        kinds = sorted({str(d.get("kind")) for d in self.docs})
        n = len(self.points)
        sentences: list[str] = []
        unit = str(self.summary.get("unit", "rec/min")) if self.summary else "rec/min"
        rows = self.rows()
        if rows and len(rows) > 1 and self.summary:
            best = self.summary.get("best") or {}
            best_row = self.best_row()
            stats = best_row["stats"] if best_row else {}
            # The ten-second summary first: what to use, the best and its ties, the noise.
            lines = [str(line) for line in self.summary.get("lines") or []]
            sentences.extend(_capital(line) + "." for line in lines)
            if lines:
                sentences.append(_capital(str(best.get("sentence", ""))) + ".")
            elif best.get("sentence"):
                sentences.append(_capital(str(best["sentence"])) +
                                 f" ({stats.get('n', '?')} runs per configuration).")
            else:
                sentences.append(
                    f"Best configuration: {best.get('label') or 'the only one'} at "
                    f"{_fmt(stats.get('median'))} {unit} median (CI {_ci_text(stats)}).")
            knees = list(self.summary.get("knees") or [])
            best_cfg = (best_row or {}).get("config") or {}
            best_group = _label(best_cfg, [d for d in self.dims if d != "batch_size"])
            mine = [k for k in knees if str(k.get("group_label", "")) == best_group]
            for knee in mine or knees[:1]:
                sentences.append(_capital(str(knee.get("sentence", ""))) + ".")
            if len(knees) > 1:
                sentences.append(f"Knees of the other {len(knees) - 1} group(s): see "
                                 "“Throughput vs batch size”.")
            if best_row and not best_row.get("is_baseline"):
                base_index = self.summary.get("baseline_index")
                base_label = rows[base_index]["label"] if isinstance(base_index, int) else ""
                sentences.append(f"Best vs baseline ({base_label}): "
                                 f"{best_row.get('vs_baseline_text', '')}.")
        elif rows:
            stats = rows[0]["stats"]
            label = rows[0].get("label") or _describe_single(self.points)
            runs = "run" if stats.get("n") == 1 else "runs"
            ci = "" if stats.get("ci_low") is None else f" (CI {_ci_text(stats)})"
            cv = "" if stats.get("cv") is None else f", CV {_pct(stats.get('cv'))}"
            sentences.append(f"{label}: {_fmt(stats.get('median'))} {unit} median over "
                             f"{stats.get('n')} {runs}{ci}{cv}.")
        if n == 1:
            m = self.points[0].run.get("metrics") or {}
            rec = self.points[0].run.get("reconciliation") or {}
            state = ("reconciled (read = inserted + quarantined)" if rec.get("ok")
                     else "NOT reconciled" if rec else "")
            sentences.append(
                f"{_fmt(m.get('records_read'))} records read, {_fmt(m.get('inserted'))} "
                f"inserted, {_fmt(m.get('quarantined'))} quarantined in "
                f"{_fmt(m.get('elapsed_s'), 2)} s{'; ' + state if state else ''}.")
        for doc in self.docs:
            if doc.get("kind") == "baseline" and isinstance(doc.get("summary"), Mapping):
                s = doc["summary"]
                d = s.get("drift") or {}
                if d.get("tau") is not None:
                    sig = "significant" if d.get("significant") else "not significant"
                    sentences.append(f"Drift across the baseline's runs: Kendall tau "
                                     f"{d['tau']:+.2f}, {format_p(d.get('p_value'))} ({sig}).")
                if s.get("repeats_needed"):
                    sentences.append(f"{s['repeats_needed']} runs would bring the median's "
                                     "95% CI within ±5%.")
        bottleneck = self.bottleneck()
        if bottleneck:
            agreed = (f" ({bottleneck['runs']} of {bottleneck['of']} runs)"
                      if "runs" in bottleneck and "of" in bottleneck else "")
            conf = (f", confidence {bottleneck['level']}" if bottleneck.get("level") else "")
            sentences.append(f"Bottleneck: {bottleneck.get('label')} — "
                             f"{bottleneck.get('description', '')}{agreed}{conf}.")
        for _doc, view, raw in self.trees:
            rec = _recommendation(raw, view)
            verdict = f" ({raw['verdict']})" if raw.get("verdict") else ""
            if rec:
                sentences.append(f"Pooling recommendation{verdict}: {rec}")
            elif view.outcome is None:
                sentences.append("Pooling decision tree: evaluation did not reach a leaf.")
        for doc in self.docs:
            if doc.get("kind") == "compare" and isinstance(doc.get("compare"), Mapping):
                sentences.append(f"Comparison: {doc['compare'].get('sentence', '')}.")
        if not sentences:
            sentences.append("These result files hold no measured run.")
        sec.bullets(sentences, css="verdicts")
        warnings: list[str] = []
        if self.summary:
            warnings.extend(str(w) for w in self.summary.get("warnings") or [])
        for doc in self.docs:
            s = doc.get("summary")
            if doc.get("kind") == "baseline" and isinstance(s, Mapping):
                warnings.extend(str(w) for w in s.get("warnings") or [])
            for run in doc.get("runs") or []:
                samples = run.get("samples") if isinstance(run, Mapping) else None
                if isinstance(samples, Mapping):
                    warnings.extend(f"sampler: {w}" for w in samples.get("warnings") or [])
        warnings.extend(unfinished_runs(self.docs))
        warnings = list(OrderedDict.fromkeys(warnings))
        if warnings:
            sec.text("Instability and measurement warnings:", css="warn-head")
            sec.bullets(warnings, css="warnings")
        sec.text(f"Built from {len(self.docs)} result file(s) of kind {', '.join(kinds)}, "
                 f"{n} measured run(s).", css="muted")
        if rows and len(rows) > 1:
            sec = Section("configurations", "All configurations")
            self.sections.append(sec)
            table = Table("All configurations (median throughput and its CI; ★ best)",
                          ["configuration", "n", f"median ({unit})", "CI of median", "CV",
                           "CV adj. for host speed", "vs baseline"], [],
                          frozenset({1, 2, 4, 5}))
            best_index = (self.summary or {}).get("best", {}).get("index")
            for i, row in enumerate(rows):
                s = row["stats"]
                mark = "★ " if i == best_index else ""
                machine = row.get("machine_noise") or {}
                table.rows.append([mark + str(row.get("label")), str(s.get("n")),
                                   _fmt(s.get("median")), _ci_text(s), _pct(s.get("cv")),
                                   _pct(machine.get("adjusted_cv")),
                                   str(row.get("vs_baseline_text", ""))])
            sec.add_table(table)
            if any(row.get("machine_noise") for row in rows):
                sec.text("CV adj. for host speed: the CV with the machine's own speed taken "
                         "out, measured inside each run as the CPU time of the same read+map "
                         "work. A diagnostic of whether the spread is the configuration's or "
                         "the host's; medians, intervals and significance use raw times.",
                         css="muted")

    def throughput_section(self) -> None:
        if "batch_size" not in self.dims or not self.summary:
            return
        rows = self.rows()
        if len({json.dumps(r["config"].get("batch_size")) for r in rows}) < 2:
            return
        sec = Section("throughput", "Throughput vs batch size")
        self.sections.append(sec)
        knees = {str(k.get("group_label", "")): k for k in self.summary.get("knees") or []}
        best = self.best_row()
        grouped: dict[str, list[Mapping[str, Any]]] = OrderedDict()
        others = [d for d in self.dims if d != "batch_size"]
        for row in sorted(rows, key=lambda r: [_sort_key(r["config"].get(d)) for d in others]
                          + [_sort_key(r["config"].get("batch_size"))]):
            grouped.setdefault(format_config({d: row["config"].get(d) for d in others}),
                               []).append(row)
        curves: list[charts.Curve] = []
        table = Table("Throughput per batch size (data behind the chart)",
                      ["group", "batch size", "n", "median (rec/min)", "CI of median", "CV",
                       "vs baseline"], [], frozenset({1, 2, 3, 5}))
        for label, members in grouped.items():
            members = [m for m in members if _num(m["config"].get("batch_size")) is not None]
            if not members:
                continue
            xs = [float(m["config"]["batch_size"]) for m in members]
            found = knees.get(label, {})
            knee = found.get("knee_batch_size") if found.get("kind") == "knee" else None
            curves.append(charts.Curve(
                label=_curve_label(label), x=xs,
                median=[float(m["stats"]["median"]) for m in members],
                ci_low=[_num(m["stats"].get("ci_low")) for m in members],
                ci_high=[_num(m["stats"].get("ci_high")) for m in members],
                points=[self.samples_of(m["config"]) for m in members],
                knee=_num(knee),
                best=_num(best["config"].get("batch_size")) if best is not None and
                best in members else None))
            for m in members:
                s = m["stats"]
                table.rows.append([label or "all", _value_text(m["config"]["batch_size"]),
                                   str(s.get("n")), _fmt(s.get("median")), _ci_text(s),
                                   _pct(s.get("cv")), str(m.get("vs_baseline_text", ""))])
        sentences = [_capital(str(k.get("sentence"))) + "." for k in knees.values()
                     if k.get("sentence")]
        sec.bullets(sentences)
        level = _ci_level(rows)
        sec.chart(charts.throughput_chart(curves, ci_label=f"{level} CI of the median"),
                  "Throughput vs batch size, one line per worker count / group; bands: "
                  f"{level} confidence interval of the median; faint points: every run; "
                  "circle: best; dotted line: knee")
        sec.add_table(table)

    def scaling_section(self) -> None:
        if "workers" not in self.dims or not self.summary:
            return
        best_by_w: dict[float, Mapping[str, Any]] = {}
        for row in self.rows():
            w = _num(row["config"].get("workers"))
            if w is None:
                continue
            if w not in best_by_w or row["stats"]["median"] > best_by_w[w]["stats"]["median"]:
                best_by_w[w] = row
        if len(best_by_w) < 2:
            return
        sec = Section("scaling", "Worker scaling")
        self.sections.append(sec)
        ws = sorted(best_by_w)
        medians = [float(best_by_w[w]["stats"]["median"]) for w in ws]
        base = medians[0] / ws[0] if ws[0] > 0 else 0.0
        ideal = [base * w for w in ws]
        eff = [m / i if i > 0 else None for m, i in zip(medians, ideal, strict=True)]
        efficient = [int(w) for w, e in zip(ws, eff, strict=True) if e is not None and e >= 0.7]
        sec.bullets([
            f"Scaling efficiency at {int(ws[-1])} workers: {_pct(eff[-1], 0)} of ideal "
            f"(linear from {int(ws[0])} worker{'s' if ws[0] != 1 else ''}).",
            f"Workers at ≥ 70% of ideal: {', '.join(map(str, efficient)) or 'none'}."
            " Each point is the best configuration at that worker count."])
        sec.chart(charts.worker_scaling_chart(
            [int(w) for w in ws], medians,
            [_num(best_by_w[w]["stats"].get("ci_low")) for w in ws],
            [_num(best_by_w[w]["stats"].get("ci_high")) for w in ws], ideal),
            "Throughput by worker count against ideal linear scaling")
        table = Table("Worker scaling (data behind the chart)",
                      ["workers", "configuration", "median (rec/min)", "CI of median",
                       "ideal (rec/min)", "efficiency"], [], frozenset({0, 2, 4, 5}))
        for w, i, e in zip(ws, ideal, eff, strict=True):
            row = best_by_w[w]
            table.rows.append([str(int(w)), str(row["label"]), _fmt(row["stats"]["median"]),
                               _ci_text(row["stats"]), _fmt(i), _pct(e, 0)])
        sec.add_table(table)

    def dimension_section(self, dim: str, title: str, ident: str) -> None:
        if dim not in self.dims or not self.summary:
            return
        rows = self.rows()
        values = sorted({json.dumps(r["config"].get(dim)) for r in rows})
        if len(values) < 2:
            return
        sec = Section(ident, title)
        self.sections.append(sec)
        shown = setting_label(dim)  # how configurations name it
        others = [d for d in self.dims if d != dim]
        series = sorted({_value_text(r["config"].get(dim)) for r in rows},
                        key=lambda v: (_VALUE_ORDER.index(v) if v in _VALUE_ORDER
                                       else len(_VALUE_ORDER), v))
        categories: list[str] = []
        cells: dict[tuple[str, str], Mapping[str, Any]] = {}
        for row in sorted(rows, key=lambda r: [_sort_key(r["config"].get(d)) for d in others]):
            cat = format_config({d: row["config"].get(d) for d in others}) or "all"
            if cat not in categories:
                categories.append(cat)
            cells[(cat, _value_text(row["config"].get(dim)))] = row
        if len(categories) > 12:  # keep the chart readable: the 12 best groups
            score = {c: max(float(cells[(c, s)]["stats"]["median"]) for s in series
                            if (c, s) in cells) for c in categories}
            categories = sorted(categories, key=lambda c: -score[c])[:12]
            sec.text("Showing the 12 groups with the highest throughput; the table lists all.",
                     css="muted")

        def grid(field_: str) -> list[list[float | None]]:
            return [[_num(cells[(c, s)]["stats"].get(field_)) if (c, s) in cells else None
                     for c in categories] for s in series]

        overlap: list[list[float | None]] | None = None
        if dim == "pipeline":
            overlap = [[_median([_num(p.run.get("metrics", {}).get("overlap_efficiency"))
                                 for p in self.runs_of(cells[(c, s)]["config"])], scale=100)
                        if (c, s) in cells else None for c in categories] for s in series]
            if not any(v is not None for row in overlap for v in row):
                overlap = None
        sec.chart(charts.bar_chart(charts.Bars(
            title=f"Throughput by {dim.replace('_', ' ')} (median, whiskers: CI)",
            categories=[_curve_label(c) for c in categories],
            series=[f"{shown}={s}" for s in series],
            values=grid("median"), ci_low=grid("ci_low"), ci_high=grid("ci_high"),
            xlabel=", ".join(others) or "", secondary=overlap,
            secondary_label="overlap efficiency (%)")), f"{title}: median throughput")
        # the table: each category, each value, and the change of each value vs the first
        headers = ["group", shown, "n", "median (rec/min)", "CI of median",
                   f"change vs {shown}={series[0]}",
                   "p (paired in rounds)" if self.paired() else "p (Mann-Whitney)"]
        if dim == "pipeline":
            headers.append("overlap efficiency")
        table = Table(f"{title} (data behind the chart)", headers, [], frozenset({2, 3}))
        sentences = []
        for cat in OrderedDict.fromkeys(k[0] for k in cells):
            ref = cells.get((cat, series[0]))
            for s in series:
                found = cells.get((cat, s))
                if found is None:
                    continue
                row = found
                change, p_text = "—", "—"
                if ref is not None and row is not ref:
                    cmp = self.versus(ref["config"], row["config"])
                    if cmp is not None:
                        change = format_change(cmp.change)
                        p = cmp.p_value if isinstance(cmp, PairedComparison) \
                            else cmp.mannwhitney_p
                        p_text = f"{format_p(p)}{' (significant)' if cmp.significant else ''}"
                        sig = ("significant" if cmp.significant else "equivalent" if
                               getattr(cmp, "equivalent", False) else "not significant")
                        sentences.append(f"{cat}: {shown}={s} {change} vs {shown}={series[0]} "
                                         f"({format_p(p)}, {sig}).")
                line = [cat, s, str(row["stats"].get("n")), _fmt(row["stats"]["median"]),
                        _ci_text(row["stats"]), change, p_text]
                if dim == "pipeline":
                    eff = _median([_num(p.run.get("metrics", {}).get("overlap_efficiency"))
                                   for p in self.runs_of(row["config"])], scale=100)
                    line.append("—" if eff is None else f"{eff:.0f}%")
                table.rows.append(line)
        if len(sentences) <= 6:
            sec.bullets(sentences)
        sec.add_table(table)

    def compare_section(self) -> None:
        for doc in self.docs:
            data = doc.get("compare")
            if doc.get("kind") != "compare" or not isinstance(data, Mapping):
                continue
            sec = Section("compare", "Comparison of two result files")
            self.sections.append(sec)
            sec.bullets([f"A (reference): {data.get('a')}", f"B (candidate): {data.get('b')}",
                         str(data.get("sentence", ""))])
            rows = [r for r in data.get("rows") or [] if isinstance(r, Mapping)]
            if rows:
                def pct(v: Any) -> float | None:
                    n = _num(v)
                    return None if n is None else 100 * n

                sec.chart(charts.change_chart(
                    [str(r.get("label") or "all") for r in rows],
                    [pct(r.get("change")) for r in rows],
                    [pct(r.get("change_ci_low")) for r in rows],
                    [pct(r.get("change_ci_high")) for r in rows],
                    [str(r.get("marker", "~")) for r in rows],
                    threshold_pct=pct(data.get("threshold"))),
                    "Change of median throughput per configuration, B vs A")
                table = Table("Comparison (data behind the chart)",
                              ["", "configuration", "A median", "B median", "change",
                               "95% CI of change", "p", "n A/B", "meaning"], [],
                              frozenset({2, 3, 4}))
                for r in rows:
                    lo, hi = r.get("change_ci_low"), r.get("change_ci_high")
                    ci = (f"{format_change(lo)} … {format_change(hi)}"
                          if lo is not None and hi is not None else "—")
                    table.rows.append([str(r.get("marker", "")), str(r.get("label") or "all"),
                                       _fmt(r.get("median_a")), _fmt(r.get("median_b")),
                                       format_change(_num(r.get("change"))), ci,
                                       format_p(_num(r.get("p_value",
                                                           r.get("mannwhitney_p")))),
                                       f"{r.get('n_a')}/{r.get('n_b')}",
                                       str(r.get("meaning", ""))])
                sec.add_table(table)
            only = [f"only in A: {x}" for x in data.get("only_in_a") or []] + \
                [f"only in B: {x}" for x in data.get("only_in_b") or []]
            sec.bullets(only)

    def bottleneck_section(self) -> None:
        verdicts: list[tuple[str, Mapping[str, Any]]] = []
        best = self.best_row()
        candidates = self.runs_of(best["config"]) if best else []
        for p in candidates or self.points:
            found = bottleneck_of(p.run)
            if found is not None and found.get("evidence") is not None:
                verdicts.append((f"run {p.order + 1} ({format_config(p.config) or 'run'})",
                                 found))
                break
        for doc in self.docs:
            for v in doc.get("verdicts") or []:
                if isinstance(v, Mapping) and v.get("evidence") and "label" in v:
                    verdicts.append((str(v.get("scope") or doc.get("kind")), v))
        if not verdicts:
            return
        sec = Section("bottleneck", "Bottleneck attribution")
        self.sections.append(sec)
        for scope, v in verdicts[:3]:
            conf = _num(v.get("confidence"))
            sec.text(f"{scope}: {v.get('label')} — {v.get('description', '')}"
                     + (f" (confidence {v.get('level', '')}, {conf:.2f})" if conf is not None
                        else "") + (f"; runner-up {v['runner_up']}" if v.get("runner_up")
                                    else ""))
            table = Table(f"Evidence for {v.get('label')} ({scope})",
                          ["fact", "value", "unit", "rule", "weight", "reason"], [],
                          frozenset({1, 4}))
            for e in list(v.get("evidence") or []) + list(v.get("runner_up_evidence") or []):
                if isinstance(e, Mapping):
                    table.rows.append([str(e.get("fact")), _fmt(e.get("value"), 2),
                                       str(e.get("unit", "")),
                                       f"{e.get('op', '')} {_value_text(e.get('threshold'))}",
                                       _value_text(e.get("weight")), str(e.get("reason", ""))])
            if table.rows:
                sec.add_table(table)
            blockers = [b for b in v.get("blockers") or [] if isinstance(b, Mapping)]
            if blockers:
                sec.add_table(Table(
                    f"Sessions holding locks the run waited for ({scope})",
                    ["session", "application", "user", "object", "held", "samples",
                     "transaction start", "statement"],
                    [[f"{b.get('id_label', 'session')} {b.get('session', '')}",
                      str(b.get("application", "")), str(b.get("user", "")),
                      str(b.get("object", "")), str(b.get("held_mode", "")),
                      _value_text(b.get("samples")), str(b.get("transaction_start", "")),
                      str(b.get("query", ""))] for b in blockers[:5]],
                    frozenset({5})))
            scores = v.get("scores")
            if isinstance(scores, Mapping) and scores:
                sec.add_table(Table("Score of every label (net evidence)", ["label", "score"],
                                    [[str(k), _fmt(s, 1)] for k, s in sorted(
                                        scores.items(), key=lambda kv: -(_num(kv[1]) or 0))],
                                    frozenset({1})))

    def tree_section(self) -> None:
        for doc, view, raw in self.trees:
            sec = Section("decision-tree", "Pooling diagnosis and decision tree")
            self.sections.append(sec)
            rec = _recommendation(raw, view)
            if rec:
                verdict = f"{_capital(str(raw['verdict']))}. " if raw.get("verdict") else ""
                sec.text(f"{verdict}Recommendation: {rec}", css="recommendation")
            if raw.get("rationale"):
                sec.text(f"Why: {raw['rationale']}")
            if raw.get("missing"):
                sec.text("Missing facts: " + ", ".join(str(m) for m in raw["missing"]),
                         css="warn-head")
            for i, test in enumerate(_find_tests(doc), 1):
                number = test.get("number", i)
                name = str(test.get("title") or test.get("name") or f"test {number}")
                status = f" [{test['status']}]" if test.get("status") else ""
                verdict_text = test.get("verdict") or test.get("summary")
                if isinstance(verdict_text, Mapping):
                    verdict_text = verdict_text.get("sentence") or json.dumps(verdict_text)
                sec.text(f"Test {number}: {name}{status}"
                         + (f" — {verdict_text}" if verdict_text else ""), css="test")
                sec.bullets([str(m) for m in test.get("messages") or []])
                rows: list[tuple[str, str]] = []
                for key in ("numbers", "facts"):
                    part = test.get(key)
                    if isinstance(part, Mapping):
                        rows.extend(r for r in _flatten(part) if r not in rows)
                if rows:
                    sec.add_table(Table(f"Test {number} ({name}): measured numbers and the "
                                        "facts the tree reads", ["quantity", "value"],
                                        [[k, v] for k, v in rows[:60]], frozenset({1})))
            sec.svg(tree_svg(view), "The pooling decision tree, drawn whole; the path the "
                                    "evaluation took is thick, bold and marked ✓, with the "
                                    "facts it read at each node")
            table = Table("Path taken through the tree (data behind the drawing)",
                          ["step", "node", "question / leaf", "facts read", "answer"], [],
                          frozenset({0}))
            for i, ident in enumerate(view.path, 1):
                node = view.nodes.get(ident)
                text = (node.recommendation or node.question) if node else ident
                if node is not None and node is view.outcome and rec:
                    text = rec  # the rendered recommendation, placeholders filled in
                facts = ", ".join(f"{k} = {_fact_text(v)}"
                                  for k, v in view.facts.get(ident, {}).items())
                table.rows.append([str(i), ident, text, facts or "—",
                                   view.answers.get(ident, "leaf" if node and node.is_leaf
                                                    else "—")])
            sec.add_table(table)
            all_nodes = Table("Every node of the tree", ["node", "question", "thresholds",
                                                         "branches / recommendation"], [])
            for node in view.nodes.values():
                node_limits = ", ".join(f"{k}: {_value_text(v)}" for k, v in
                                        node.thresholds.items())
                branches = (node.recommendation or "") if node.is_leaf else "; ".join(
                    f"{e.when} → {e.to}" for e in node.children)
                all_nodes.rows.append([node.id, node.question if not node.is_leaf else "(leaf)",
                                       node_limits or "—", branches])
            if all(r[2] == "—" for r in all_nodes.rows):  # no per-node thresholds: drop it
                all_nodes.headers.pop(2)
                for r in all_nodes.rows:
                    r.pop(2)
            sec.add_table(all_nodes)
            thresholds = raw.get("thresholds")
            if isinstance(thresholds, Mapping) and thresholds:
                t_rows = []
                for name, t in thresholds.items():
                    if isinstance(t, Mapping):
                        t_rows.append([str(name), f"{_value_text(t.get('value'))} "
                                       f"{t.get('unit', '')}".strip(), str(t.get("why", ""))])
                    else:
                        t_rows.append([str(name), _value_text(t), ""])
                sec.add_table(Table("Thresholds in force", ["threshold", "value", "why"],
                                    t_rows))

    def timeline_section(self) -> None:
        sampled = [p for p in self.points if _series(p.run) is not None]
        if not sampled:
            return
        sec = Section("timelines", "Resource timelines")
        self.sections.append(sec)
        best = max(sampled, key=lambda p: p.throughput)
        worst = min(sampled, key=lambda p: p.throughput)
        picks = [("best", best)] + ([("worst", worst)] if worst is not best else [])
        sec.text("Host and server measurements sampled during the fastest and the slowest "
                 "run; values are per-interval averages. Grey vertical lines are batch "
                 "commits, the dashed line the end of the run.", css="muted")
        for which, p in picks:
            series = _series(p.run)
            assert series is not None
            label = _label(p.config, self.dims) or "run"
            self.drawn.add(id(series))
            panels, stats_rows = _timeline_panels(series)
            if not panels:
                if stats_rows:
                    sec.add_table(Table(
                        f"{which.capitalize()} run ({label}): too few samples for a timeline "
                        "(the run was shorter than two sampling intervals)",
                        ["series", "unit", "samples", "mean", "p95", "max"], stats_rows,
                        frozenset({2, 3, 4, 5})))
                continue
            ends = _batch_ends(p.run)
            elapsed = _num((p.run.get("metrics") or {}).get("elapsed_s"))
            sec.chart(charts.timeline_chart(
                f"{which.capitalize()} run: {label} — {_fmt(p.throughput)} rec/min",
                panels, ends, elapsed), f"Resource timeline of the {which} run ({label})")
            sec.add_table(Table(f"{which.capitalize()} run ({label}): each series summarised "
                                "(full series in the embedded raw data)",
                                ["series", "unit", "samples", "mean", "p95", "max"],
                                stats_rows, frozenset({2, 3, 4, 5})))
            overhead = series.get("overhead")
            if isinstance(overhead, Mapping) and _num(overhead.get("cpu_pct_of_core")) is not None:
                sec.text(f"Sampler cost during this run: {overhead['cpu_pct_of_core']:.2f}% of "
                         f"one core over {overhead.get('rounds')} rounds.", css="muted")

    def run_order_section(self) -> None:
        if len(self.points) < 3:
            return
        sec = Section("run-order", "Run order and drift")
        self.sections.append(sec)
        groups: dict[str, list[tuple[int, float]]] = OrderedDict(
            (str(r.get("label") or ""), []) for r in self.rows())  # legend in grid order
        for p in self.points:
            groups.setdefault(_label(p.config, self.dims),
                              []).append((p.order + 1, p.throughput))
        groups = OrderedDict((k, v) for k, v in groups.items() if v)
        shift = _level_shift(self.summary)
        marks: list[tuple[float, str]] = []
        if shift is not None:
            first = next((p.order + 1 for p in self.points
                          if p.run.get("round") == shift.get("round")), None)
            if first is not None:
                marks.append((first - 0.5, f"host level shift (round {shift['round'] + 1})"))
            sec.bullets([_capital(_shift_sentence(shift))])
        sec.chart(charts.run_order_chart(groups, marks=marks),
                  "Throughput of every measured run in the order it ran"
                  + ("; dashed line: the host's level shift" if marks else ""))
        table = Table("Drift per configuration (Kendall tau of throughput vs run order, "
                      "Theil-Sen slope)", ["configuration", "n", "tau", "p", "change over the "
                                           "series", "drift?"], [], frozenset({1, 2, 3, 4}))
        for row in self.rows():
            d = row.get("drift") or {}
            if shift is not None:  # the host's doing, not this configuration's
                verdict = f"the host's level shift at round {shift['round'] + 1}"
            else:
                verdict = "yes" if d.get("significant") else "no"
            table.rows.append([str(row.get("label") or "all"), str(d.get("n", "")),
                               _fmt(d.get("tau"), 2), format_p(_num(d.get("p_value"))),
                               "—" if d.get("total_pct") is None else f"{d['total_pct']:+.1f}%",
                               verdict])
        if table.rows:
            sec.add_table(table)
        runs = Table("Every measured run in run order", ["#", "configuration",
                                                         "throughput (rec/min)", "elapsed (s)",
                                                         "started"], [], frozenset({0, 2, 3}))
        for p in self.points:
            runs.rows.append([str(p.order + 1), _label(p.config, self.dims) or "run",
                              _fmt(p.throughput),
                              _fmt((p.run.get("metrics") or {}).get("elapsed_s"), 3),
                              str(p.run.get("started", ""))])
        sec.add_table(runs)

    def runs_table_section(self) -> None:
        """Per-stage time of a representative run: the best configuration's median run."""
        if not self.points:
            return
        best = self.best_row()
        pool = self.runs_of(best["config"]) if best else []
        pool = pool or self.points
        rep = sorted(pool, key=lambda p: p.throughput)[len(pool) // 2]
        m = rep.run.get("metrics") or {}
        stages = {k: _num(v) for k, v in (m.get("stages") or {}).items()}
        stages = {k: v for k, v in stages.items() if v}
        if not stages and not m.get("tables"):
            return
        sec = Section("stages", "Stages and tables of a representative run")
        self.sections.append(sec)
        label = format_config(rep.config) or "the run"
        busy = sum(v for v in stages.values() if v) or 1.0
        if stages:
            fig = charts.bar_chart(charts.Bars(
                title=f"Time per stage, median run of {label} (summed over workers)",
                categories=list(stages), series=["seconds"],
                values=[[stages[k] for k in stages]], ylabel="time (s)", xlabel="stage"))
            sec.chart(fig, f"Seconds per stage in the median run of {label}")
            sec.add_table(Table("Stage times (data behind the chart)",
                                ["stage", "seconds", "share of busy time"],
                                [[k, f"{v:.4f}", _pct((v or 0) / busy, 0)]
                                 for k, v in stages.items()], frozenset({1, 2})))
        extra = [("records read", _fmt(m.get("records_read"))),
                 ("inserted", _fmt(m.get("inserted"))),
                 ("quarantined", _fmt(m.get("quarantined"))),
                 ("elapsed (s)", _fmt(m.get("elapsed_s"), 3)),
                 ("throughput (rec/min)", _fmt(m.get("throughput_rec_per_min")))]
        if _num(m.get("overlap_efficiency")) is not None:
            extra.append(("pipeline", str(m.get("pipeline", ""))))
            extra.append(("overlap efficiency", _pct(m.get("overlap_efficiency"), 0)))
        records, converted = _num(m.get("records_read")), _num(m.get("converted_by_inserter"))
        if m.get("pipeline") == "process" and records and converted is not None:
            extra.append(("records converted by the inserter", _pct(converted / records, 0)))
        if _num(m.get("read_map_cpu_s")) is not None:
            extra.append(("read+map CPU (s), the host-speed probe",
                          _fmt(m.get("read_map_cpu_s"), 3)))
        for table_name, count in (m.get("tables") or {}).items():
            extra.append((f"rows in {table_name}", _fmt(count)))
        sec.add_table(Table(f"Counts of the median run of {label}", ["quantity", "value"],
                            [[k, v] for k, v in extra], frozenset({1})))

    def environment_section(self) -> None:
        envs = [(d.get("_source", f"file {i + 1}"), d.get("environment") or {}, d)
                for i, d in enumerate(self.docs) if d.get("environment")]
        if not envs:
            return
        sec = Section("environment", "Environment")
        self.sections.append(sec)
        # one column per distinct environment (files from the same machine share one)
        distinct: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
        seen: set[str] = set()
        for src, env, doc in envs:
            fingerprint = json.dumps({k: env.get(k) for k in ("host", "cpu", "os", "python",
                                                                "target")}, sort_keys=True,
                                     default=str)
            if fingerprint not in seen:
                seen.add(fingerprint)
                distinct.append((str(src), env, doc))
        rows: list[list[str]] = []

        def row(label: str, getter: Any) -> None:
            values = [getter(env, doc) for _, env, doc in distinct]
            if any(v not in (None, "", "—") for v in values):
                rows.append([label] + ["—" if v in (None, "") else str(v) for v in values])

        def target(env: Mapping[str, Any]) -> Mapping[str, Any]:
            t = env.get("target")
            return t if isinstance(t, Mapping) else {}

        def dataset(env: Mapping[str, Any]) -> Mapping[str, Any]:
            t = env.get("dataset")
            return t if isinstance(t, Mapping) else {}

        row("host", lambda e, d: e.get("host"))
        row("CPU", lambda e, d: e.get("cpu"))
        row("CPU count (logical / physical)",
            lambda e, d: f"{e.get('cpu_count', '?')} / {e.get('cpu_count_physical', '?')}")
        row("RAM", lambda e, d: f"{(_num(e.get('ram_bytes')) or 0) / 2**30:.1f} GiB"
            if _num(e.get("ram_bytes")) else None)
        row("OS", lambda e, d: e.get("os"))
        row("Python", lambda e, d: " ".join(str(x) for x in (e.get("python_implementation"),
                                                              e.get("python")) if x))
        row("DBMS", lambda e, d: " ".join(str(x) for x in (target(e).get("dbms_name"),
                                                            target(e).get("dbms_version")) if x))
        row("dialect", lambda e, d: target(e).get("dialect"))
        row("driver", lambda e, d: " ".join(str(x) for x in (target(e).get("driver_name"),
                                                              target(e).get("driver_version"))
                                            if x))
        row("target (redacted)", lambda e, d: target(e).get("display"))
        extra: dict[str, Any] = {}
        for _, env, _doc in distinct:
            ex = target(env).get("extra")
            if isinstance(ex, Mapping):
                extra.update(ex)
        for k in extra:
            row(f"target {k}", lambda e, d, k=k: _compact((target(e).get("extra") or {}).get(k)))
        row("dataset", lambda e, d: ", ".join(f"{k}={_value_text(v)}" for k, v in
                                              dataset(e).items() if v is not None) or None)
        row("tool", lambda e, d: " ".join(str(x) for x in (
            (d.get("tool") or {}).get("name"), (d.get("tool") or {}).get("version")) if x))
        row("result created", lambda e, d: d.get("created"))
        packages: list[str] = []
        for _, env, _doc in distinct:
            for name in env.get("packages") or {}:
                if name not in packages:
                    packages.append(name)
        for name in packages:
            row(f"package {name}", lambda e, d, n=name: (e.get("packages") or {}).get(n)
                or "not installed")
        headers = ["", *(f"{Path(src).name or src}" for src, _, _ in distinct)]
        if len(distinct) == 1:
            headers = ["", "value"]
        sec.add_table(Table("Environment metadata stored with the results", headers, rows))
        configs = []
        for doc in self.docs:
            cfg = doc.get("config")
            if isinstance(cfg, Mapping) and cfg:
                flat = _flatten({k: v for k, v in cfg.items() if k not in ("order",)})
                configs.append((doc.get("_source", ""), flat))
        for src, flat in configs[:4]:
            sec.add_table(Table(f"Invocation settings ({Path(str(src)).name or src})",
                                ["setting", "value"], [[k, v] for k, v in flat[:60]]))


# --------------------------------------------------------------------------- small helpers


def _level_shift(summary: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The summary's significant level shift of the host, if it found one."""
    noise = (summary or {}).get("noise")
    shift = noise.get("level_shift") if isinstance(noise, Mapping) else None
    if isinstance(shift, Mapping) and shift.get("significant") and \
            isinstance(shift.get("round"), int):
        return shift
    return None


def _shift_sentence(shift: Mapping[str, Any]) -> str:
    change = _num(shift.get("change"))
    text = (f"the host changed speed at round {shift['round'] + 1}: runs after it are "
            f"{format_change(change)} {'faster' if (change or 0) > 0 else 'slower'} "
            f"({format_p(_num(shift.get('p_value')))}, rounds permuted)")
    before, after = _num(shift.get("paired_before")), _num(shift.get("paired_after"))
    if before is not None and after is not None:
        text += (f"; the paired change of {shift.get('paired_label')} is "
                 f"{format_change(before)} before it and {format_change(after)} after")
        if shift.get("paired_consistent") is True:
            text += ", so comparisons within rounds are unaffected"
        elif shift.get("paired_consistent") is False:
            text += (": the difference itself changed with the host's state "
                     f"({format_p(_num(shift.get('paired_p')))})")
    return text + "."


def _fact_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "not measured" if value is None else _value_text(value)


def _label(config: Mapping[str, Any], dims: Iterable[str]) -> str:
    """``format_config`` of the given dimensions that have a value."""
    return format_config({d: config[d] for d in dims if config.get(d) is not None})


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _curve_label(label: str) -> str:
    return label or "all runs"


def _describe_single(points: Sequence[RunPoint]) -> str:
    if not points:
        return "the configuration"
    return format_config(points[0].config) or "the configuration"


def _ci_level(rows: Sequence[Mapping[str, Any]]) -> str:
    levels = {round(100 * c) for r in rows for c in [_num(r["stats"].get("ci_confidence"))]
              if c is not None}
    if not levels:
        return ""
    low, high = min(levels), max(levels)
    return f"{low}%" if low == high else f"{low}–{high}%"


def _median(values: Iterable[float | None], scale: float = 1.0) -> float | None:
    got = sorted(v for v in values if v is not None)
    if not got:
        return None
    mid = len(got) // 2
    value = got[mid] if len(got) % 2 else (got[mid - 1] + got[mid]) / 2
    return value * scale


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_compact(v) for v in value)
    return _value_text(value)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}}`` → ``[("a.b", "1")]``; lists of scalars joined, others counted."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in obj.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        if all(not isinstance(v, Mapping | list) for v in obj):
            shown = ", ".join(_value_text(v) for v in obj[:20])
            return [(prefix, shown + (" …" if len(obj) > 20 else ""))]
        return [(prefix, f"{len(obj)} item(s) (see the raw data)")]
    if isinstance(obj, bool):
        return [(prefix, "yes" if obj else "no")]
    if isinstance(obj, float):
        return [(prefix, f"{obj:.4g}")]
    return [(prefix, "—" if obj is None else _value_text(obj))]


def _find_tree(doc: Mapping[str, Any]) -> tuple[TreeView, Mapping[str, Any]] | None:
    """The first ``{"nodes": [...], "path": [...]}`` anywhere in the document but its runs
    (``bench diagnose pooling`` stores it at ``diagnose.decision``)."""
    stack: list[Any] = [{k: v for k, v in doc.items() if k not in ("runs", "_source")}]
    while stack:
        item = stack.pop(0)
        if isinstance(item, Mapping):
            if isinstance(item.get("nodes"), list) and "path" in item:
                view = normalise_tree(item)
                if view is not None:
                    return view, item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _find_tests(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for holder in (doc.get("diagnose"), doc, doc.get("diagnosis"), doc.get("pooling")):
        if isinstance(holder, Mapping) and isinstance(holder.get("tests"), list):
            return [t for t in holder["tests"] if isinstance(t, Mapping)]
    return []


def _recommendation(raw: Mapping[str, Any], view: TreeView) -> str | None:
    if isinstance(raw.get("recommendation"), str) and raw["recommendation"]:
        return str(raw["recommendation"])
    outcome = view.outcome
    if outcome is not None and outcome.recommendation:
        return outcome.recommendation
    return None


def _series(run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    samples = run.get("samples")
    if isinstance(samples, Mapping) and isinstance(samples.get("t"), list) and \
            isinstance(samples.get("metrics"), Mapping) and len(samples["t"]) >= 2:
        return samples
    return None


def _batch_ends(run: Mapping[str, Any], limit: int = 300) -> list[float]:
    batches = (run.get("metrics") or {}).get("batches")
    if not isinstance(batches, Mapping):
        return []
    columns = list(batches.get("columns") or [])
    if "ended" not in columns:
        return []
    k = columns.index("ended")
    ends = [float(r[k]) for r in batches.get("rows") or [] if len(r) > k and _num(r[k])]
    if len(ends) > limit:  # too many to draw one by one: an even subsample
        step = len(ends) / limit
        ends = [ends[int(i * step)] for i in range(limit)]
    return ends


def _timeline_panels(series: Mapping[str, Any]
                     ) -> tuple[list[charts.Panel], list[list[str]]]:
    t = [float(x) for x in series["t"]]
    metrics: Mapping[str, Sequence[float | None]] = series["metrics"]
    units: Mapping[str, str] = series.get("units") or {}
    info = series.get("info") or {}
    cores = _num((info.get("host") or {}).get("cores")) if isinstance(info, Mapping) else None
    if not cores:
        cores = float(len([n for n in metrics if n.startswith("host.cpu.core")]) or 1)
    used: list[tuple[str, str, Sequence[float | None]]] = []

    def get(name: str, scale: float = 1.0) -> list[float | None] | None:
        column = metrics.get(name)
        if not column or all(v is None for v in column):
            return None
        return [None if v is None else float(v) * scale for v in column]

    def trace(label: str, name: str, unit: str, scale: float = 1.0) -> charts.Trace | None:
        values = get(name, scale)
        if values is None:
            return None
        used.append((label, unit, values))
        if sum(v is not None for v in values) < 2:
            return None  # one sample is a dot, not a timeline: the table shows it
        return charts.Trace(label, t, values)

    panels: list[charts.Panel] = []
    disk = "host.db_disk" if get("host.db_disk.busy_pct") or get(
        "host.db_disk.write_bytes_per_s") else _busiest_disk(metrics)
    if disk:
        name = "database disk" if disk == "host.db_disk" else disk.removeprefix("host.disk.")
        left = [x for x in (trace(f"{name} write MB/s", f"{disk}.write_bytes_per_s", "MB/s",
                                  1e-6),
                            trace(f"{name} read MB/s", f"{disk}.read_bytes_per_s", "MB/s",
                                  1e-6)) if x]
        right = [x for x in (trace(f"{name} busy %", f"{disk}.busy_pct", "%"),) if x]
        if left or right:
            panels.append(charts.Panel("disk (MB/s)", left, "busy (%)", right))
    cpu = [x for x in (
        trace("host CPU %", "host.cpu.total_pct", "%"),
        trace("I/O wait %", "host.cpu.iowait_pct", "%"),
        trace("workers % of host", "host.workers.cpu_pct", "%", 1 / cores),
        trace("local DB server % of host", "host.dbserver.cpu_pct", "%", 1 / cores),
        trace("DB server CPU % (counters)", "server.cpu_pct", "%")) if x]
    if cpu:
        panels.append(charts.Panel("CPU (%)", cpu, ylim=(0, 105)))
    waits = []
    for name in sorted(n for n in metrics if n.startswith("server.wait.")
                       and n.endswith(".sessions")):
        category = name.removeprefix("server.wait.").removesuffix(".sessions")
        tr = trace(f"{category.replace('_', ' ')}", name, "sessions")
        if tr is not None:
            tr = charts.Trace(tr.label, tr.t, [0.0 if v is None else v for v in tr.values])
            waits.append(tr)
    if waits:
        panels.append(charts.Panel("server waits (sessions)", waits, stacked=True))
    latency = [x for x in (
        trace("data-file read ms", "server.data.read_latency_ms", "ms"),
        trace("log-file write ms", "server.log.write_latency_ms", "ms"),
        trace(f"{'disk' if disk else ''} read await ms", f"{disk}.read_await_ms", "ms")
        if disk else None,
        trace(f"{'disk' if disk else ''} write await ms", f"{disk}.write_await_ms", "ms")
        if disk else None) if x]
    if latency:
        guides = []
        if get("server.data.read_latency_ms"):
            guides.append((20.0, "data reads ≤ 20 ms (Microsoft)"))
        if get("server.log.write_latency_ms"):
            guides.append((3.0, "log writes ≤ 3 ms (Microsoft)"))
        panels.append(charts.Panel("latency (ms)", latency, guides=guides))
    rows = []
    for label, unit, values in used:
        got = sorted(v for v in values if v is not None)
        if not got:
            continue
        p95 = got[min(len(got) - 1, math.ceil(0.95 * len(got)) - 1)]
        rows.append([label, unit or units.get(label, ""), str(len(got)),
                     f"{sum(got) / len(got):,.2f}", f"{p95:,.2f}", f"{got[-1]:,.2f}"])
    return panels, rows


def _busiest_disk(metrics: Mapping[str, Sequence[float | None]]) -> str | None:
    best: tuple[float, str] | None = None
    for name, column in metrics.items():
        if name.startswith("host.disk.") and name.endswith(".busy_pct"):
            got = [v for v in column if v is not None]
            if got:
                mean = sum(got) / len(got)
                if best is None or mean > best[0]:
                    best = (mean, name.rsplit(".", 1)[0])
    return best[1] if best else None


# --------------------------------------------------------------------------- rendering


def _raw_json(docs: Sequence[Mapping[str, Any]]) -> str:
    """The documents as JSON that is valid and inert inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` only ever occur inside JSON strings, so writing them as ``\\u003c``,
    ``\\u003e`` and ``\\u0026`` keeps the JSON equal to the documents while no ``</script>``,
    ``<!--`` or ``]]>`` can appear in the element; U+2028/9 are escaped for old parsers.
    """
    text = json.dumps({"format": "migration-bench.report/1", "results": list(docs)},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    return text.translate(_SCRIPT_SAFE)


_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


#: Above this many characters of embedded JSON, the sampler series of runs the report does
#: not draw are left out of the embedded copy (they stay in the result files), so a long
#: sampled sweep still makes a report that mails and opens quickly.
RAW_BUDGET = 900_000


def _within_budget(docs: list[dict[str, Any]], keep: set[int]) -> tuple[str, int]:
    raw = _raw_json(docs)
    if len(raw) <= RAW_BUDGET:
        return raw, 0
    dropped = 0
    slim = []
    for doc in docs:
        runs = []
        for run in doc.get("runs") or []:
            samples = run.get("samples") if isinstance(run, Mapping) else None
            if isinstance(samples, Mapping) and id(samples) not in keep:
                run = {**run, "samples": {"omitted": "sampler series left out of the report "
                                          "to keep it small; it is in the result file"}}
                dropped += 1
            runs.append(run)
        slim.append({**doc, "runs": runs})
    return _raw_json(slim), dropped


def build_report(docs: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Report:
    """The report model for already loaded documents (redacted again, defensively)."""
    clean: list[dict[str, Any]] = [_redact_deep(dict(d)) for d in docs]
    builder = _Builder(clean)
    sections = builder.build()
    raw, dropped = _within_budget([{k: v for k, v in d.items() if k != "_source"}
                                   for d in clean], builder.drawn)
    kinds = sorted({str(d.get("kind")) for d in clean})
    if title is None:
        title = f"migration-bench report: {', '.join(kinds)}"
    return Report(
        title=redact(title),
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        sources=[str(d.get("_source", "")) for d in clean],
        kinds=kinds,
        sections=sections,
        raw_json=raw,
        raw_note=(f"The sampler series of {dropped} run(s) not drawn above were left out of "
                  "this embedded copy to keep the file small; the result files hold them."
                  if dropped else ""),
    )


def render_html(report: Report) -> str:
    css = Path(__file__).with_name("templates").joinpath("report.css").read_text(
        encoding="utf-8")
    return _environment().get_template(TEMPLATE).render(report=report, css=css)


def write_report(result_paths: Sequence[str | Path] | str | Path, out_path: str | Path,
                 *, title: str | None = None) -> Path:
    """Read result files (run folders or result.json files), write one HTML report.

    The function ``bench run/sweep/diagnose --report`` call; returns the written path.
    Raises :class:`bench.results.ResultFileError` for an unreadable result file.
    """
    paths = [result_paths] if isinstance(result_paths, str | Path) else list(result_paths)
    if not paths:
        raise ValueError("no result file given")
    html = render_html(build_report(load_documents(paths), title=title))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
