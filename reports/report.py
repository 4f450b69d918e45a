"""The single-file HTML report: result documents in, one self-contained HTML file out.

``write_report(result_paths, out_path)`` is the whole public API (plus :func:`build_report`
and :func:`render_html` for callers that already hold documents). It reads result files of
every kind (``run``, ``sweep``, ``baseline``, ``compare``, ``diagnose``; also the
``bench compare --json`` output) as :mod:`reports.results` documents, builds a list of
:class:`Section` objects — each one present only when its data exists — and renders them
with a jinja2 template (autoescape on). Charts are inline SVG (:mod:`reports.charts`,
:mod:`reports.svg`), CSS is inline, the raw documents are embedded as JSON for re-analysis,
and nothing is fetched from anywhere: the file opens from disk, offline, and prints with one
section per page.

Everything shown comes from the documents, and everything from the documents is escaped
by the template (or by matplotlib / :func:`xml.sax.saxutils.escape` inside SVG).
Connection-string secrets are masked once, on load (:func:`reports.results.redact_deep`),
before anything is rendered or embedded, whatever the writer already did.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from diagnostics import diagnosis as dx
from migrator.connection import STRATEGIES
from migrator.connstr import redact_text
from migrator.settings import SWEPT, label as setting_label
from reports import charts
from reports.results import (
    SCHEMA,
    BaselineDocument,
    Bottleneck,
    CompareDocument,
    CompareSummary,
    ConfigValue,
    DiagnoseDocument,
    Environment,
    LevelShiftRecord,
    ResultDocument,
    Run,
    Samples,
    StatsRecord,
    SummaryRow,
    SweepDocument,
    SweepSummary,
    TargetFacts,
    counted_runs,
    parse,
    read_json,
    redact_deep,
    result_path,
)
from reports.stats import Comparison, PairedComparison, compare as compare_samples, paired_compare
from reports.summary import format_change, format_config, format_p, summarize_sweep
from reports.svg import TreeView, figure_to_svg, normalise_tree, tree_svg
from reports.timeline import batch_ends, timeline_panels

__all__ = [
    "Block",
    "Report",
    "Section",
    "Table",
    "build_report",
    "load_documents",
    "render_html",
    "write_report",
]

#: Dimensions a configuration is keyed on, in the order the sweep prints them.
DIMENSIONS = tuple(s.name for s in SWEPT)
#: Values shown in this order where a dimension has them (the rest alphabetically after).
_VALUE_ORDER = ("off", "on", *STRATEGIES)
TEMPLATE = "report.html.j2"

Config = dict[str, ConfigValue]

# --------------------------------------------------------------------------- loading


def _document(raw: Any, source: str) -> ResultDocument:
    """The typed, redacted document of a file's JSON; `bench compare --json` prints a
    report, not a result file, and is accepted as a comparison."""
    clean = redact_deep(raw)
    if isinstance(clean, dict) and clean.get("schema") != SCHEMA and \
            clean.keys() >= CompareSummary.SIGNATURE:
        doc: ResultDocument = CompareDocument(schema="migration-bench/compare",
                                              compare=CompareSummary.from_dict(clean))
    else:
        doc = parse(clean, source=source)
    doc.source = source
    return doc


def load_documents(paths: Iterable[str | Path]) -> list[ResultDocument]:
    """Load and redact result documents (a run folder or its ``result.json`` each); an
    unreadable one raises :class:`reports.results.ResultFileError` naming the file."""
    docs = []
    for path in paths:
        file = result_path(path)
        doc = _document(read_json(file), str(file))
        doc.source = str(path)  # as the user named it
        docs.append(doc)
    return docs


def _redacted(doc: ResultDocument | Mapping[str, Any]) -> ResultDocument:
    if isinstance(doc, ResultDocument):
        again = type(doc).from_dict(redact_deep(doc.to_dict()))
        again.source = doc.source
        return again
    return _document(dict(doc), "")


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


def _ci_text(stats: StatsRecord | None) -> str:
    if stats is None or stats.ci_low is None or stats.ci_high is None:
        return "—"
    confidence = _num(stats.ci_confidence)
    level = f" ({100 * confidence:.0f}%)" if confidence is not None else ""
    return f"{_fmt(stats.ci_low)}–{_fmt(stats.ci_high)}{level}"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sort_key(value: Any) -> tuple[int, float, str]:
    number = _num(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


def _of(config: Mapping[str, ConfigValue], dim: str) -> ConfigValue | None:
    """A configuration's value of one dimension (None: the configuration has none)."""
    return config.get(dim)


def _same(value: Any) -> str:
    """A value as a key that tells 1000 from "1000" and from a missing value."""
    return json.dumps(value)


# --------------------------------------------------------------------------- the runs


@dataclass
class RunPoint:
    order: int
    config: Config
    throughput: float
    run: Run
    source: int


def _run_config(run: Run, doc: ResultDocument) -> Config:
    """The run's value of every dimension it has, filled from its document where the run
    itself does not say (the invocation's batch size, a worker count in the metrics)."""
    config = {d: v for d in DIMENSIONS if (v := run.setting(d)) is not None}
    batch_size = doc.default_batch_size()
    if "batch_size" not in config and batch_size is not None:
        config["batch_size"] = batch_size
    if "workers" not in config and isinstance(run.metrics.workers, int):
        config["workers"] = run.metrics.workers
    return config


def unfinished_runs(docs: Sequence[ResultDocument]) -> list[str]:
    """One line per failed or interrupted run: what the report leaves out, and why."""
    lines = []
    for doc in docs:
        for i, run in doc.unfinished():
            error = f": {run.error}" if run.error else ""
            where = f"run {i + 1} of {doc.source or doc.kind}"
            lines.append(f"{where} {run.status}{error} — not a measurement, left "
                         "out of every chart and statistic")
    return lines


def diagnosis_of(doc: ResultDocument) -> dx.Diagnosis | None:
    """The diagnosis a ``bench diagnose pooling`` result stores (None: not one, or a file
    written before diagnoses were stored whole)."""
    if not isinstance(doc, DiagnoseDocument) or not doc.diagnose:
        return None
    try:
        return dx.Diagnosis.from_dict(doc.diagnose)
    except (ValueError, KeyError, TypeError):
        return None


def collect_runs(docs: Sequence[ResultDocument]) -> list[RunPoint]:
    """Every measured (complete, non-warm-up) run with a throughput, in execution order;
    of a disturbed run and its re-run in the same round, only the re-run.

    A diagnosis's runs are left out: they belong to four different tests, whose statistics
    the diagnosis holds (each from its own runs); pooled together they would be none."""
    points: list[RunPoint] = []
    for d, doc in enumerate(docs):
        if diagnosis_of(doc) is not None:
            continue
        for run in counted_runs(doc.runs):
            if _num(run.throughput) is None:
                continue
            points.append(RunPoint(len(points), _run_config(run, doc), float(run.throughput or 0),
                                   run, d))
    return points


def _varying(points: Sequence[RunPoint]) -> list[str]:
    return [dim for dim in DIMENSIONS
            if len({_same(_of(p.config, dim)) for p in points}) > 1]


ConfigKey = tuple[tuple[str, Any], ...]


def _key(config: Mapping[str, Any], dims: Sequence[str]) -> ConfigKey:
    return tuple((d, _of(config, d)) for d in dims)


def _group(points: Sequence[RunPoint], dims: Sequence[str]) -> dict[ConfigKey, list[RunPoint]]:
    """The runs of each configuration (grid order), each list in run order."""
    groups: dict[ConfigKey, list[RunPoint]] = OrderedDict()
    for p in sorted(points, key=lambda p: [_sort_key(_of(p.config, d)) for d in dims]):
        groups.setdefault(_key(p.config, dims), []).append(p)
    for members in groups.values():
        members.sort(key=lambda p: p.order)
    return groups


def _stored_summary(docs: Sequence[ResultDocument], points: Sequence[RunPoint]
                    ) -> SweepSummary | None:
    """The summary `bench sweep` stored, when the report shows that one sweep alone."""
    sweeps = [(i, d) for i, d in enumerate(docs)
              if isinstance(d, SweepDocument) and d.summary is not None]
    if len(sweeps) != 1:
        return None
    index, sweep = sweeps[0]
    assert isinstance(sweep, SweepDocument)
    return sweep.summary if all(p.source == index for p in points) else None


def _computed_summary(docs: Sequence[ResultDocument],
                      groups: Mapping[ConfigKey, Sequence[RunPoint]]) -> SweepSummary | None:
    """The sweep summary of runs from several files, by the function `bench sweep` uses."""
    if not groups:
        return None
    baseline = None
    for doc in docs:
        if isinstance(doc, SweepDocument):
            baseline = doc.config.baseline
    samples = [(dict(k), [p.throughput for p in v]) for k, v in groups.items()]
    try:
        summary = summarize_sweep(samples, baseline=baseline)
    except ValueError:
        summary = summarize_sweep(samples)
    return SweepSummary.from_dict(summary.to_dict())


def _find_tree(doc: ResultDocument) -> tuple[TreeView, Mapping[str, Any]] | None:
    """The first ``{"nodes": [...], "path": [...]}`` anywhere in the document but its runs
    (``bench diagnose pooling`` stores it at ``diagnose.decision``): the decision tree is
    ``diagnostics``' own structure, read as it gives it."""
    stack: list[Any] = [{k: v for k, v in doc.to_dict().items() if k != "runs"}]
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


def _find_tests(doc: ResultDocument) -> list[Mapping[str, Any]]:
    """The pooling tests' results (``diagnostics``' own dicts), wherever the document
    keeps them."""
    raw = doc.to_dict()
    for holder in (raw.get("diagnose"), raw, raw.get("diagnosis"), raw.get("pooling")):
        if isinstance(holder, Mapping) and isinstance(holder.get("tests"), list):
            return [t for t in holder["tests"] if isinstance(t, Mapping)]
    return []


@dataclass
class Tree:
    """A decision tree found in a document, with the diagnosis around it."""

    doc: ResultDocument
    view: TreeView
    raw: Mapping[str, Any]

    @property
    def recommendation(self) -> str | None:
        stated = self.raw.get("recommendation")
        if isinstance(stated, str) and stated:
            return stated
        outcome = self.view.outcome
        return outcome.recommendation if outcome is not None and outcome.recommendation \
            else None

    @property
    def verdict(self) -> str:
        return str(self.raw.get("verdict") or "")


class _Data:
    """What the sections are drawn from: the documents, their measured runs grouped by
    configuration, and the sweep summary (stored, or computed from the runs)."""

    def __init__(self, docs: list[ResultDocument]) -> None:
        self.docs = docs
        self.points = collect_runs(docs)
        stored = _stored_summary(docs, self.points)
        self.dims: list[str] = (list(stored.dimensions) if stored is not None
                                else _varying(self.points))
        self.groups = _group(self.points, self.dims)
        self.summary = stored if stored is not None else _computed_summary(docs, self.groups)
        if self.summary is not None and stored is None:
            self.dims = list(self.summary.dimensions)
        self.diagnoses = [(d, x) for d in docs if (x := diagnosis_of(d)) is not None]
        self.trees = [Tree(d, *t) for d in docs if diagnosis_of(d) is None
                      for t in [_find_tree(d)] if t is not None]
        self.drawn: set[int] = set()  # id() of the sample series drawn in timelines

    # -- lookups

    def samples_of(self, config: Mapping[str, Any]) -> list[float]:
        return [p.throughput for p in self.runs_of(config)]

    def runs_of(self, config: Mapping[str, Any]) -> list[RunPoint]:
        return self.groups.get(_key(config, self.dims), [])

    @property
    def rows(self) -> list[SummaryRow]:
        return list(self.summary.rows) if self.summary is not None else []

    @property
    def unit(self) -> str:
        return self.summary.unit if self.summary is not None else "rec/min"

    def best_row(self) -> SummaryRow | None:
        return self.summary.best_row() if self.summary is not None else None

    def paired(self) -> bool:
        """Do the runs come from the rounds of one sweep (so comparisons pair them)?"""
        return (len({p.source for p in self.points}) == 1 and bool(self.points)
                and all(p.run.round is not None for p in self.points))

    def versus(self, ref: Mapping[str, Any], config: Mapping[str, Any]
               ) -> Comparison | PairedComparison | None:
        """``config`` against ``ref``: paired within rounds when the runs have rounds of one
        sweep, else as independent samples; None without runs on a side."""
        a, b = self.runs_of(ref), self.runs_of(config)
        if not a or not b:
            return None
        if self.paired():
            by_a = {p.run.round: p.throughput for p in a}
            by_b = {p.run.round: p.throughput for p in b}
            common = sorted(r for r in set(by_a) & set(by_b) if r is not None)
            if common:
                return paired_compare([by_a[r] for r in common], [by_b[r] for r in common])
        return compare_samples([p.throughput for p in a], [p.throughput for p in b],
                               change_ci=False)

    def representative_runs(self) -> list[RunPoint]:
        """The best configuration's runs, or every run when there is no best."""
        best = self.best_row()
        return (self.runs_of(best.config) if best is not None else []) or list(self.points)

    def bottleneck(self) -> Bottleneck | None:
        """The bottleneck the results agree on: the sweep's (its best configuration's), a
        baseline's, the first attributed run of the best configuration, a document's."""
        if self.summary is not None and self.summary.best_bottleneck is not None:
            return self.summary.best_bottleneck
        for doc in self.docs:
            if isinstance(doc, BaselineDocument) and doc.summary is not None and \
                    doc.summary.bottleneck is not None:
                return doc.summary.bottleneck
        best = self.best_row()
        runs = self.runs_of(best.config) if best is not None else list(self.points)
        for p in runs:
            verdict = p.run.attributed()
            if verdict is not None:
                return verdict
        for doc in self.docs:
            for v in doc.bottleneck_verdicts():
                if v.kind == "bottleneck":
                    return v
        return None


# --------------------------------------------------------------------------- sections


def _sections(data: _Data) -> list[Section]:
    """Every section, in reading order; empty ones left out."""
    sections: list[Section] = [*_summary_sections(data)]
    for build in (_throughput_section, _scaling_section):
        sections.extend(build(data))
    for s in SWEPT:  # (batch size and workers have the sections above)
        if s.title and s.anchor:
            sections.extend(_dimension_section(data, s.name, s.title, s.anchor))
    for build in (_compare_sections, _bottleneck_section, _diagnosis_sections, _tree_sections,
                  _timeline_section, _cluster_sections, _run_order_section, _stages_section,
                  _environment_section):
        sections.extend(build(data))
    return [s for s in sections if s.blocks]


def _cluster_sections(data: _Data) -> list[Section]:
    """Measured at the server, and the machines of a cluster (reports.cluster)."""
    from reports.cluster import Kit, cluster_sections

    return cluster_sections(data.docs, Kit(Section, Table))


# ---- summary

def _summary_sections(data: _Data) -> list[Section]:
    sec = Section("summary", "Summary")
    sentences = [*_ranking_sentences(data), *_counts_sentence(data),
                 *_baseline_sentences(data), *_bottleneck_sentence(data),
                 *_diagnosis_sentences(data), *_tree_sentences(data),
                 *_compare_sentences(data)]
    if not sentences:
        sentences.append("These result files hold no measured run.")
    sec.bullets(sentences, css="verdicts")
    warnings = _warnings(data)
    if warnings:
        sec.text("Instability and measurement warnings:", css="warn-head")
        sec.bullets(warnings, css="warnings")
    kinds = sorted({d.kind for d in data.docs})
    tested = sum(len(doc.runs) for doc, _ in data.diagnoses)
    sec.text(f"Built from {len(data.docs)} result file(s) of kind {', '.join(kinds)}, "
             f"{len(data.points)} measured run(s)"
             + (f" and {tested} run(s) of pooling diagnoses (each in its test's statistics "
                "only)" if tested else "") + ".", css="muted")
    return [sec, *_configurations_section(data)]


def _ranking_sentences(data: _Data) -> list[str]:
    """What to use: the summary's lines, the best, the knee, the change vs the baseline;
    for a single configuration its median."""
    rows = data.rows
    if len(rows) > 1 and data.summary is not None:
        return [*_best_sentences(data, data.summary), *_knee_sentences(data, data.summary),
                *_vs_baseline_sentence(data.summary)]
    if rows:
        return [_single_sentence(data, rows[0])]
    return []


def _best_sentences(data: _Data, summary: SweepSummary) -> list[str]:
    # The ten-second summary first: what to use, the best and its ties, the noise.
    lines = [_capital(line) + "." for line in summary.lines]
    sentence = summary.best.sentence if summary.best is not None else ""
    if lines:
        return [*lines, _capital(sentence) + "."]
    best = data.best_row()
    stats = best.stats if best is not None else None
    if sentence:
        runs = stats.n if stats is not None else "?"
        return [_capital(sentence) + f" ({runs} runs per configuration)."]
    label = (summary.best.label if summary.best is not None else "") or "the only one"
    return [f"Best configuration: {label} at {_fmt(stats.median if stats else None)} "
            f"{data.unit} median (CI {_ci_text(stats)})."]


def _knee_sentences(data: _Data, summary: SweepSummary) -> list[str]:
    knees = summary.knees
    best = data.best_row()
    best_group = _label(best.config if best is not None else {},
                        [d for d in data.dims if d != "batch_size"])
    mine = [k for k in knees if k.group_label == best_group]
    sentences = [_capital(k.sentence) + "." for k in mine or knees[:1]]
    if len(knees) > 1:
        sentences.append(f"Knees of the other {len(knees) - 1} group(s): see "
                         "“Throughput vs batch size”.")
    return sentences


def _vs_baseline_sentence(summary: SweepSummary) -> list[str]:
    best = summary.best_row()
    if best is None or best.is_baseline:
        return []
    index = summary.baseline_index
    label = summary.rows[index].label if index is not None else ""
    return [f"Best vs baseline ({label}): {best.vs_baseline_text}."]


def _single_sentence(data: _Data, row: SummaryRow) -> str:
    stats = row.stats
    label = row.label or _describe_single(data.points)
    runs = "run" if stats.n == 1 else "runs"
    ci = "" if stats.ci_low is None else f" (CI {_ci_text(stats)})"
    cv = "" if stats.cv is None else f", CV {_pct(stats.cv)}"
    return f"{label}: {_fmt(stats.median)} {data.unit} median over {stats.n} {runs}{ci}{cv}."


def _counts_sentence(data: _Data) -> list[str]:
    """A single run: what it read, inserted and quarantined, and whether that reconciled."""
    if len(data.points) != 1:
        return []
    run = data.points[0].run
    m, rec = run.metrics, run.reconciliation
    state = ("reconciled (read = inserted + quarantined)" if rec is not None and rec.ok
             else "NOT reconciled" if rec is not None else "")
    return [f"{_fmt(m.records_read)} records read, {_fmt(m.inserted)} inserted, "
            f"{_fmt(m.quarantined)} quarantined in {_fmt(m.elapsed_s, 2)} s"
            f"{'; ' + state if state else ''}."]


def _baseline_sentences(data: _Data) -> list[str]:
    sentences = []
    for doc in data.docs:
        if not isinstance(doc, BaselineDocument) or doc.summary is None:
            continue
        drift, needed = doc.summary.drift, doc.summary.repeats_needed
        if drift is not None and drift.tau is not None:
            sig = "significant" if drift.significant else "not significant"
            sentences.append(f"Drift across the baseline's runs: Kendall tau "
                             f"{drift.tau:+.2f}, {format_p(drift.p_value)} ({sig}).")
        if needed:
            sentences.append(f"{needed} runs would bring the median's 95% CI within ±5%.")
    return sentences


def _bottleneck_sentence(data: _Data) -> list[str]:
    found = data.bottleneck()
    if found is None:
        return []
    agreed = (f" ({found.runs} of {found.of} runs)"
              if found.runs is not None and found.of is not None else "")
    conf = f", confidence {found.level}" if found.level else ""
    return [f"Bottleneck: {found.label} — {found.description}{agreed}{conf}."]


def _diagnosis_sentences(data: _Data) -> list[str]:
    """Each diagnosis's recommendation and its tests' verdicts, as the terminal said them."""
    sentences = []
    for _doc, found in data.diagnoses:
        rec = found.recommendation
        sentences.append(f"Pooling diagnosis ({rec.verdict}): {rec.text}")
        sentences.extend(dx.test_heading(t) for t in found.tests)
    return sentences


def _tree_sentences(data: _Data) -> list[str]:
    sentences = []
    for tree in data.trees:
        verdict = f" ({tree.verdict})" if tree.verdict else ""
        if tree.recommendation:
            sentences.append(f"Pooling recommendation{verdict}: {tree.recommendation}")
        elif tree.view.outcome is None:
            sentences.append("Pooling decision tree: evaluation did not reach a leaf.")
    return sentences


def _compare_sentences(data: _Data) -> list[str]:
    return [f"Comparison: {doc.compare.sentence}." for doc in data.docs
            if isinstance(doc, CompareDocument)]


def _warnings(data: _Data) -> list[str]:
    """The summary's, the baselines' and the samplers' warnings, and the runs left out."""
    warnings: list[str] = list(data.summary.warnings) if data.summary is not None else []
    for doc in data.docs:
        if isinstance(doc, BaselineDocument) and doc.summary is not None:
            warnings.extend(doc.summary.warnings)
        for run in doc.runs:
            if run.samples is not None:
                warnings.extend(f"sampler: {w}" for w in run.samples.warnings)
    warnings.extend(unfinished_runs(data.docs))
    return list(OrderedDict.fromkeys(warnings))


def _configurations_section(data: _Data) -> list[Section]:
    rows = data.rows
    if len(rows) < 2:
        return []
    sec = Section("configurations", "All configurations")
    table = Table("All configurations (median throughput and its CI; ★ best)",
                  ["configuration", "n", f"median ({data.unit})", "CI of median", "CV",
                   "CV adj. for host speed", "vs baseline"], [], frozenset({1, 2, 4, 5}))
    best = data.best_row()
    for row in rows:
        s = row.stats
        mark = "★ " if row is best else ""
        machine = row.machine_noise
        table.rows.append([mark + row.label, str(s.n), _fmt(s.median), _ci_text(s),
                           _pct(s.cv), _pct(machine.adjusted_cv if machine else None),
                           row.vs_baseline_text])
    sec.add_table(table)
    if any(row.machine_noise is not None for row in rows):
        sec.text("CV adj. for host speed: the CV with the machine's own speed taken "
                 "out, measured inside each run as the CPU time of the same read+map "
                 "work. A diagnostic of whether the spread is the configuration's or "
                 "the host's; medians, intervals and significance use raw times.",
                 css="muted")
    return [sec]


# ---- throughput vs batch size

def _throughput_section(data: _Data) -> list[Section]:
    rows = data.rows
    if "batch_size" not in data.dims or data.summary is None or \
            len({_same(_of(r.config, "batch_size")) for r in rows}) < 2:
        return []
    sec = Section("throughput", "Throughput vs batch size")
    knees = {k.group_label: k for k in data.summary.knees}
    best = data.best_row()
    curves: list[charts.Curve] = []
    table = Table("Throughput per batch size (data behind the chart)",
                  ["group", "batch size", "n", "median (rec/min)", "CI of median", "CV",
                   "vs baseline"], [], frozenset({1, 2, 3, 5}))
    for label, members in _batch_curves(data).items():
        knee = knees.get(label)
        curves.append(charts.Curve(
            label=_curve_label(label), x=[float(_num(_of(m.config, "batch_size")) or 0)
                                          for m in members],
            median=[float(m.stats.median) for m in members],
            ci_low=[_num(m.stats.ci_low) for m in members],
            ci_high=[_num(m.stats.ci_high) for m in members],
            points=[data.samples_of(m.config) for m in members],
            knee=_num(knee.knee_batch_size) if knee is not None and knee.kind == "knee"
            else None,
            best=_num(_of(best.config, "batch_size")) if best is not None and
            any(m is best for m in members) else None))
        for m in members:
            s = m.stats
            table.rows.append([label or "all", _value_text(_of(m.config, "batch_size")),
                               str(s.n), _fmt(s.median), _ci_text(s), _pct(s.cv),
                               m.vs_baseline_text])
    sec.bullets([_capital(k.sentence) + "." for k in knees.values() if k.sentence])
    level = _ci_level(rows)
    sec.chart(charts.throughput_chart(curves, ci_label=f"{level} CI of the median"),
              "Throughput vs batch size, one line per worker count / group; bands: "
              f"{level} confidence interval of the median; faint points: every run; "
              "circle: best; dotted line: knee")
    sec.add_table(table)
    return [sec]


def _batch_curves(data: _Data) -> dict[str, list[SummaryRow]]:
    """The rows with a numeric batch size, one curve per group of the other dimensions."""
    others = [d for d in data.dims if d != "batch_size"]
    grouped: dict[str, list[SummaryRow]] = OrderedDict()
    for row in sorted(data.rows, key=lambda r: [_sort_key(_of(r.config, d)) for d in others]
                      + [_sort_key(_of(r.config, "batch_size"))]):
        grouped.setdefault(format_config({d: _of(row.config, d) for d in others}),  # type: ignore[misc]
                           []).append(row)
    curves = {label: [m for m in members if _num(_of(m.config, "batch_size")) is not None]
              for label, members in grouped.items()}
    return {label: members for label, members in curves.items() if members}


# ---- worker scaling

def _scaling_section(data: _Data) -> list[Section]:
    if "workers" not in data.dims or data.summary is None:
        return []
    best_by_w: dict[float, SummaryRow] = {}
    for row in data.rows:
        w = _num(_of(row.config, "workers"))
        if w is not None and (w not in best_by_w or
                              row.stats.median > best_by_w[w].stats.median):
            best_by_w[w] = row
    if len(best_by_w) < 2:
        return []
    sec = Section("scaling", "Worker scaling")
    ws = sorted(best_by_w)
    medians = [float(best_by_w[w].stats.median) for w in ws]
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
        [int(w) for w in ws], medians, [_num(best_by_w[w].stats.ci_low) for w in ws],
        [_num(best_by_w[w].stats.ci_high) for w in ws], ideal),
        "Throughput by worker count against ideal linear scaling")
    table = Table("Worker scaling (data behind the chart)",
                  ["workers", "configuration", "median (rec/min)", "CI of median",
                   "ideal (rec/min)", "efficiency"], [], frozenset({0, 2, 4, 5}))
    for w, i, e in zip(ws, ideal, eff, strict=True):
        row = best_by_w[w]
        table.rows.append([str(int(w)), row.label, _fmt(row.stats.median),
                           _ci_text(row.stats), _fmt(i), _pct(e, 0)])
    sec.add_table(table)
    return [sec]


# ---- one dimension's values side by side (pooling, pipeline, insert method)

@dataclass
class _Grid:
    """The rows of one dimension's values (series) in each group of the others
    (categories)."""

    dim: str
    series: list[str]
    categories: list[str]
    cells: dict[tuple[str, str], SummaryRow]

    def values(self, read: Callable[[SummaryRow], float | None]
               ) -> list[list[float | None]]:
        return [[read(self.cells[(c, s)]) if (c, s) in self.cells else None
                 for c in self.categories] for s in self.series]


def _grid(data: _Data, dim: str) -> _Grid:
    others = [d for d in data.dims if d != dim]
    series = sorted({_value_text(_of(r.config, dim)) for r in data.rows},
                    key=lambda v: (_VALUE_ORDER.index(v) if v in _VALUE_ORDER
                                   else len(_VALUE_ORDER), v))
    categories: list[str] = []
    cells: dict[tuple[str, str], SummaryRow] = {}
    for row in sorted(data.rows, key=lambda r: [_sort_key(_of(r.config, d)) for d in others]):
        cat = format_config({d: _of(row.config, d) for d in others}) or "all"  # type: ignore[misc]
        if cat not in categories:
            categories.append(cat)
        cells[(cat, _value_text(_of(row.config, dim)))] = row
    return _Grid(dim, series, categories, cells)


def _dimension_section(data: _Data, dim: str, title: str, ident: str) -> list[Section]:
    if dim not in data.dims or data.summary is None or \
            len({_same(_of(r.config, dim)) for r in data.rows}) < 2:
        return []
    sec = Section(ident, title)
    grid = _grid(data, dim)
    all_categories = list(grid.categories)
    if len(grid.categories) > 12:  # keep the chart readable: the 12 best groups
        score = {c: max(float(grid.cells[(c, s)].stats.median) for s in grid.series
                        if (c, s) in grid.cells) for c in grid.categories}
        grid.categories = sorted(grid.categories, key=lambda c: -score[c])[:12]
        sec.text("Showing the 12 groups with the highest throughput; the table lists all.",
                 css="muted")
    overlap = _overlap_grid(data, grid) if dim == "pipeline" else None
    sec.chart(charts.bar_chart(charts.Bars(
        title=f"Throughput by {dim.replace('_', ' ')} (median, whiskers: CI)",
        categories=[_curve_label(c) for c in grid.categories],
        series=[f"{setting_label(dim)}={s}" for s in grid.series],
        values=grid.values(lambda r: _num(r.stats.median)),
        ci_low=grid.values(lambda r: _num(r.stats.ci_low)),
        ci_high=grid.values(lambda r: _num(r.stats.ci_high)),
        xlabel=", ".join(d for d in data.dims if d != dim) or "", secondary=overlap,
        secondary_label="overlap efficiency (%)")), f"{title}: median throughput")
    grid.categories = all_categories
    table, sentences = _dimension_table(data, grid, title)
    if len(sentences) <= 6:
        sec.bullets(sentences)
    sec.add_table(table)
    return [sec]


def _overlap(data: _Data, row: SummaryRow) -> float | None:
    """The median overlap efficiency of a configuration's runs, in percent."""
    return _median([_num(p.run.metrics.overlap_efficiency) for p in data.runs_of(row.config)],
                   scale=100)


def _overlap_grid(data: _Data, grid: _Grid) -> list[list[float | None]] | None:
    overlap = grid.values(lambda row: _overlap(data, row))
    return overlap if any(v is not None for row in overlap for v in row) else None


def _dimension_table(data: _Data, grid: _Grid, title: str) -> tuple[Table, list[str]]:
    """Each category, each value, and the change of each value vs the first."""
    dim, first = grid.dim, grid.series[0]
    shown = setting_label(dim)  # how configurations name it
    headers = ["group", shown, "n", "median (rec/min)", "CI of median",
               f"change vs {shown}={first}",
               "p (paired in rounds)" if data.paired() else "p (Mann-Whitney)"]
    if dim == "pipeline":
        headers.append("overlap efficiency")
    table = Table(f"{title} (data behind the chart)", headers, [], frozenset({2, 3}))
    sentences: list[str] = []
    for cat in OrderedDict.fromkeys(k[0] for k in grid.cells):
        ref = grid.cells.get((cat, first))
        for s in grid.series:
            row = grid.cells.get((cat, s))
            if row is None:
                continue
            change, p_text = "—", "—"
            if ref is not None and row is not ref:
                change, p_text, sentence = _versus_cells(data, ref, row, f"{cat}: {shown}={s}",
                                                         f"{shown}={first}")
                sentences.extend(sentence)
            line = [cat, s, str(row.stats.n), _fmt(row.stats.median), _ci_text(row.stats),
                    change, p_text]
            if dim == "pipeline":
                eff = _overlap(data, row)
                line.append("—" if eff is None else f"{eff:.0f}%")
            table.rows.append(line)
    return table, sentences


def _versus_cells(data: _Data, ref: SummaryRow, row: SummaryRow, what: str, against: str
                  ) -> tuple[str, str, list[str]]:
    """The change and p cells of ``row`` against ``ref``, and the sentence saying it."""
    cmp = data.versus(ref.config, row.config)
    if cmp is None:
        return "—", "—", []
    change = format_change(cmp.change)
    p = cmp.p_value if isinstance(cmp, PairedComparison) else cmp.mannwhitney_p
    p_text = f"{format_p(p)}{' (significant)' if cmp.significant else ''}"
    sig = ("significant" if cmp.significant else "equivalent" if
           isinstance(cmp, PairedComparison) and cmp.equivalent else "not significant")
    return change, p_text, [f"{what} {change} vs {against} ({format_p(p)}, {sig})."]


# ---- comparison

def _compare_sections(data: _Data) -> list[Section]:
    return [_compare_section(doc.compare) for doc in data.docs
            if isinstance(doc, CompareDocument)]


def _compare_section(data: CompareSummary) -> Section:
    sec = Section("compare", "Comparison of two result files")
    sec.bullets([f"A (reference): {data.a}", f"B (candidate): {data.b}", data.sentence])
    rows = data.rows
    if rows:
        def pct(v: Any) -> float | None:
            n = _num(v)
            return None if n is None else 100 * n

        sec.chart(charts.change_chart(
            [r.label or "all" for r in rows], [pct(r.change) for r in rows],
            [pct(r.change_ci_low) for r in rows], [pct(r.change_ci_high) for r in rows],
            [r.marker for r in rows], threshold_pct=pct(data.threshold)),
            "Change of median throughput per configuration, B vs A")
        table = Table("Comparison (data behind the chart)",
                      ["", "configuration", "A median", "B median", "change",
                       "95% CI of change", "p", "n A/B", "meaning"], [],
                      frozenset({2, 3, 4}))
        for r in rows:
            lo, hi = r.change_ci_low, r.change_ci_high
            ci = (f"{format_change(lo)} … {format_change(hi)}"
                  if lo is not None and hi is not None else "—")
            table.rows.append([r.marker, r.label or "all", _fmt(r.median_a),
                               _fmt(r.median_b), format_change(_num(r.change)), ci,
                               format_p(_num(r.deciding_p)), f"{r.n_a}/{r.n_b}", r.meaning])
        sec.add_table(table)
    sec.bullets([f"only in A: {x}" for x in data.only_in_a] +
                [f"only in B: {x}" for x in data.only_in_b])
    return sec


# ---- bottleneck attribution

def _bottleneck_section(data: _Data) -> list[Section]:
    verdicts: list[tuple[str, Bottleneck]] = []
    for p in data.representative_runs():
        found = p.run.attributed()
        if found is not None and found.holds("evidence"):
            verdicts.append((f"run {p.order + 1} ({format_config(p.config) or 'run'})",
                             found))
            break
    for doc in data.docs:
        verdicts.extend((v.scope or doc.kind, v) for v in doc.bottleneck_verdicts()
                        if v.evidence)
    if not verdicts:
        return []
    sec = Section("bottleneck", "Bottleneck attribution")
    for scope, v in verdicts[:3]:
        _add_verdict(sec, scope, v)
    return [sec]


def _add_verdict(sec: Section, scope: str, v: Bottleneck) -> None:
    conf = _num(v.confidence)
    sec.text(f"{scope}: {v.label} — {v.description}"
             + (f" (confidence {v.level or ''}, {conf:.2f})" if conf is not None else "")
             + (f"; runner-up {v.runner_up}" if v.runner_up else ""))
    table = Table(f"Evidence for {v.label} ({scope})",
                  ["fact", "value", "unit", "rule", "weight", "reason"], [],
                  frozenset({1, 4}))
    for e in [*v.evidence, *v.runner_up_evidence]:
        table.rows.append([e.fact, _fmt(e.value, 2), e.unit,
                           f"{e.op} {_value_text(e.threshold)}", _value_text(e.weight),
                           e.reason])
    if table.rows:
        sec.add_table(table)
    if v.blockers:
        sec.add_table(Table(
            f"Sessions holding locks the run waited for ({scope})",
            ["session", "application", "user", "object", "held", "samples",
             "transaction start", "statement"],
            [[f"{b.id_label} {b.session if b.session is not None else ''}", b.application,
              b.user, b.object, b.held_mode, _value_text(b.samples), b.transaction_start,
              b.query] for b in v.blockers[:5]],
            frozenset({5})))
    if v.scores:
        sec.add_table(Table("Score of every label (net evidence)", ["label", "score"],
                            [[k, _fmt(s, 1)] for k, s in sorted(
                                v.scores.items(), key=lambda kv: -(_num(kv[1]) or 0))],
                            frozenset({1})))


# ---- a stored diagnosis (`bench diagnose pooling`)

def _diagnosis_sections(data: _Data) -> list[Section]:
    """Every line from the stored diagnosis: the strings the terminal printed
    (diagnostics.diagnosis renders both)."""
    return [_diagnosis_section(data, doc, found) for doc, found in data.diagnoses]


def _diagnosis_section(data: _Data, doc: ResultDocument, found: dx.Diagnosis) -> Section:
    sec = Section("diagnosis", "Pooling diagnosis and decision tree")
    rec = found.recommendation
    sec.text(f"{_capital(rec.verdict)}. Recommendation: {rec.text}", css="recommendation")
    sec.bullets([f"apply: {line}" for line in rec.apply], css="apply")
    sec.text(f"Why: {rec.rationale}")
    if found.decision.missing:
        sec.text("Missing facts: " + ", ".join(found.decision.missing), css="warn-head")
    sec.bullets([f"evidence: {line}" for line in rec.evidence], css="evidence")
    for test in found.tests:
        sec.text(dx.test_heading(test), css="test")
        sec.bullets(list(test.messages))
        items = dx.number_items(test)
        if items:
            sec.add_table(Table(f"Test {test.number} ({test.title or test.name}): measured "
                                "numbers", ["quantity", "value"], [[k, v] for k, v in items],
                                frozenset({1})))
        if test.name == "contention":
            _contention_blocks(sec, test.details)
        if test.name == "bottleneck":
            _sampled_run_blocks(data, sec, doc, test)
    found_tree = _find_tree(doc)
    if found_tree is not None:
        tree = Tree(doc, *found_tree)
        sec.svg(tree_svg(tree.view), "The pooling decision tree, drawn whole; the path the "
                                     "evaluation took is thick, bold and marked ✓, with the "
                                     "facts it read at each node")
        sec.add_table(_path_table(tree))
        sec.add_table(_nodes_table(tree.view))
        thresholds = tree.raw.get("thresholds")
        if isinstance(thresholds, Mapping) and thresholds:
            sec.add_table(Table("Thresholds in force", ["threshold", "value", "why"],
                                [_threshold_row(str(k), t) for k, t in thresholds.items()]))
    return sec


def _contention_blocks(sec: Section, details: Mapping[str, Any]) -> None:
    """The contention test's configurations: a chart and the table behind it, each from
    the test's own runs, with the paired change against the default."""
    rows = [r for r in details.get("table") or [] if isinstance(r, Mapping)]
    if not rows:
        return
    workers = sorted({int(r["workers"]) for r in rows})
    strategies = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    by = {(int(r["workers"]), str(r["strategy"])): r for r in rows}

    def cells(key: str) -> list[list[float | None]]:
        return [[_num(by[(w, s)].get(key)) if (w, s) in by else None for w in workers]
                for s in strategies]

    sec.chart(charts.bar_chart(charts.Bars(
        title="Contention test: median throughput per worker count and connection strategy",
        categories=[str(w) for w in workers], series=strategies, values=cells("median"),
        ci_low=cells("ci_low"), ci_high=cells("ci_high"), xlabel="workers")),
        "Median rec/min of the contention test's runs, with the median's confidence interval")
    table = Table("Contention test, each configuration (its own runs only; data behind the "
                  "chart)", ["configuration", "runs", "median rec/min", "median CI",
                             "scaling efficiency", "vs the default (paired)"], [],
                  frozenset({1, 2, 4}))
    for r in rows:
        vs = r.get("vs_default")
        low, high = _num(r.get("ci_low")), _num(r.get("ci_high"))
        table.rows.append([str(r.get("label")), str(r.get("n")),
                           dx.format_value(r.get("median")),
                           "—" if low is None or high is None else f"{_fmt(low)}–{_fmt(high)}",
                           "—" if _num(r.get("efficiency_pct")) is None
                           else f"{float(r['efficiency_pct']):.0f}%",
                           str(vs["text"]) if isinstance(vs, Mapping) else "(default)"])
    sec.add_table(table)


def _sampled_run_blocks(data: _Data, sec: Section, doc: ResultDocument,
                        test: Any) -> None:
    """The bottleneck test's sampled run: who held the locks it waited for, and its
    resource timeline."""
    verdict = test.details.get("verdict")
    if isinstance(verdict, Mapping):
        blockers = [b for b in verdict.get("blockers") or [] if isinstance(b, Mapping)]
        if blockers:
            sec.add_table(Table(
                "Sessions holding locks the sampled run waited for",
                ["session", "application", "user", "object", "held", "samples", "statement"],
                [[f"{b.get('id_label', 'session')} {b.get('session', '')}",
                  str(b.get("application", "")), str(b.get("user", "")),
                  str(b.get("object", "")), str(b.get("held_mode", "")),
                  _value_text(b.get("samples")), str(b.get("query", ""))]
                 for b in blockers[:5]], frozenset({5})))
    run = next((r for r in doc.runs if r.diagnose_test == "bottleneck"), None)
    if run is None or run.samples is None:
        return
    series = run.samples
    data.drawn.add(id(series))
    label = f"{test.numbers.get('workers')} workers, {test.numbers.get('connections')}"
    point = RunPoint(0, {}, float(run.throughput or 0.0), run, data.docs.index(doc))
    _add_timeline(sec, "sampled", point, series, label)


# ---- the pooling decision tree

def _tree_sections(data: _Data) -> list[Section]:
    return [_tree_section(tree) for tree in data.trees]


def _tree_section(tree: Tree) -> Section:
    sec = Section("decision-tree", "Pooling diagnosis and decision tree")
    rec, raw = tree.recommendation, tree.raw
    if rec:
        verdict = f"{_capital(tree.verdict)}. " if tree.verdict else ""
        sec.text(f"{verdict}Recommendation: {rec}", css="recommendation")
    if raw.get("rationale"):
        sec.text(f"Why: {raw['rationale']}")
    if raw.get("missing"):
        sec.text("Missing facts: " + ", ".join(str(m) for m in raw["missing"]),
                 css="warn-head")
    for i, test in enumerate(_find_tests(tree.doc), 1):
        _add_test(sec, i, test)
    sec.svg(tree_svg(tree.view), "The pooling decision tree, drawn whole; the path the "
                                 "evaluation took is thick, bold and marked ✓, with the "
                                 "facts it read at each node")
    sec.add_table(_path_table(tree))
    sec.add_table(_nodes_table(tree.view))
    thresholds = raw.get("thresholds")
    if isinstance(thresholds, Mapping) and thresholds:
        sec.add_table(Table("Thresholds in force", ["threshold", "value", "why"],
                            [_threshold_row(str(k), t) for k, t in thresholds.items()]))
    return sec


def _add_test(sec: Section, i: int, test: Mapping[str, Any]) -> None:
    """One pooling test: its verdict, messages, and the numbers and facts it measured."""
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


def _path_table(tree: Tree) -> Table:
    view, rec = tree.view, tree.recommendation
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
    return table


def _nodes_table(view: TreeView) -> Table:
    table = Table("Every node of the tree", ["node", "question", "thresholds",
                                             "branches / recommendation"], [])
    for node in view.nodes.values():
        limits = ", ".join(f"{k}: {_value_text(v)}" for k, v in node.thresholds.items())
        branches = (node.recommendation or "") if node.is_leaf else "; ".join(
            f"{e.when} → {e.to}" for e in node.children)
        table.rows.append([node.id, node.question if not node.is_leaf else "(leaf)",
                           limits or "—", branches])
    if all(r[2] == "—" for r in table.rows):  # no per-node thresholds: drop the column
        table.headers.pop(2)
        for r in table.rows:
            r.pop(2)
    return table


def _threshold_row(name: str, t: Any) -> list[str]:
    if isinstance(t, Mapping):
        return [name, f"{_value_text(t.get('value'))} {t.get('unit', '')}".strip(),
                str(t.get("why", ""))]
    return [name, _value_text(t), ""]


# ---- resource timelines

def _timeline_section(data: _Data) -> list[Section]:
    sampled = [p for p in data.points if p.run.samples is not None and p.run.samples.drawable]
    if not sampled:
        return []
    sec = Section("timelines", "Resource timelines")
    best = max(sampled, key=lambda p: p.throughput)
    worst = min(sampled, key=lambda p: p.throughput)
    picks = [("best", best)] + ([("worst", worst)] if worst is not best else [])
    sec.text("Host and server measurements sampled during the fastest and the slowest "
             "run; values are per-interval averages. Grey vertical lines are batch "
             "commits, the dashed line the end of the run.", css="muted")
    for which, p in picks:
        series = p.run.samples
        assert series is not None
        data.drawn.add(id(series))
        _add_timeline(sec, which, p, series, _label(p.config, data.dims) or "run")
    return [sec]


def _add_timeline(sec: Section, which: str, p: RunPoint, series: Samples, label: str) -> None:
    panels, stats_rows = timeline_panels(series)
    headers = ["series", "unit", "samples", "mean", "p95", "max"]
    if not panels:
        if stats_rows:
            sec.add_table(Table(
                f"{which.capitalize()} run ({label}): too few samples for a timeline "
                "(the run was shorter than two sampling intervals)", headers, stats_rows,
                frozenset({2, 3, 4, 5})))
        return
    ends = batch_ends(p.run)
    sec.chart(charts.timeline_chart(
        f"{which.capitalize()} run: {label} — {_fmt(p.throughput)} rec/min",
        panels, ends, _num(p.run.metrics.elapsed_s)),
        f"Resource timeline of the {which} run ({label})")
    sec.add_table(Table(f"{which.capitalize()} run ({label}): each series summarised "
                        "(full series in the embedded raw data)", headers, stats_rows,
                        frozenset({2, 3, 4, 5})))
    overhead = series.overhead
    if overhead is not None and _num(overhead.cpu_pct_of_core) is not None:
        sec.text(f"Sampler cost during this run: {overhead.cpu_pct_of_core:.2f}% of "
                 f"one core over {overhead.rounds} rounds.", css="muted")


# ---- run order and drift

def _run_order_section(data: _Data) -> list[Section]:
    if len(data.points) < 3:
        return []
    sec = Section("run-order", "Run order and drift")
    groups: dict[str, list[tuple[int, float]]] = OrderedDict(
        (r.label, []) for r in data.rows)  # legend in grid order
    for p in data.points:
        groups.setdefault(_label(p.config, data.dims), []).append((p.order + 1, p.throughput))
    groups = OrderedDict((k, v) for k, v in groups.items() if v)
    shift = data.summary.level_shift() if data.summary is not None else None
    marks: list[tuple[float, str]] = []
    if shift is not None and shift.round is not None:
        first = next((p.order + 1 for p in data.points if p.run.round == shift.round), None)
        if first is not None:
            marks.append((first - 0.5, f"host level shift (round {shift.round + 1})"))
        sec.bullets([_capital(_shift_sentence(shift))])
    sec.chart(charts.run_order_chart(groups, marks=marks),
              "Throughput of every measured run in the order it ran"
              + ("; dashed line: the host's level shift" if marks else ""))
    table = _drift_table(data, None if shift is None else shift.round)
    if table.rows:
        sec.add_table(table)
    runs = Table("Every measured run in run order", ["#", "configuration",
                                                     "throughput (rec/min)", "elapsed (s)",
                                                     "started"], [], frozenset({0, 2, 3}))
    for p in data.points:
        runs.rows.append([str(p.order + 1), _label(p.config, data.dims) or "run",
                          _fmt(p.throughput), _fmt(p.run.metrics.elapsed_s, 3),
                          p.run.started or ""])
    sec.add_table(runs)
    return [sec]


def _drift_table(data: _Data, shift_round: int | None) -> Table:
    table = Table("Drift per configuration (Kendall tau of throughput vs run order, "
                  "Theil-Sen slope)", ["configuration", "n", "tau", "p", "change over the "
                                       "series", "drift?"], [], frozenset({1, 2, 3, 4}))
    for row in data.rows:
        d = row.drift
        if shift_round is not None:  # the host's doing, not this configuration's
            verdict = f"the host's level shift at round {shift_round + 1}"
        else:
            verdict = "yes" if d is not None and d.significant else "no"
        table.rows.append([row.label or "all", "" if d is None or d.n is None else str(d.n),
                           _fmt(d.tau if d else None, 2),
                           format_p(_num(d.p_value if d else None)),
                           "—" if d is None or d.total_pct is None else f"{d.total_pct:+.1f}%",
                           verdict])
    return table


# ---- stages and counts of a representative run

def _stages_section(data: _Data) -> list[Section]:
    """Per-stage time of a representative run: the best configuration's median run."""
    if not data.points:
        return []
    pool = data.representative_runs()
    rep = sorted(pool, key=lambda p: p.throughput)[len(pool) // 2]
    m = rep.run.metrics
    stages = {k: v for k, v in ((k, _num(v)) for k, v in m.stages.items()) if v}
    if not stages and not m.tables:
        return []
    sec = Section("stages", "Stages and tables of a representative run")
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
    sec.add_table(Table(f"Counts of the median run of {label}", ["quantity", "value"],
                        [[k, v] for k, v in _counts(rep.run)], frozenset({1})))
    return [sec]


def _counts(run: Run) -> list[tuple[str, str]]:
    m = run.metrics
    counts = [("records read", _fmt(m.records_read)),
              ("inserted", _fmt(m.inserted)),
              ("quarantined", _fmt(m.quarantined)),
              ("elapsed (s)", _fmt(m.elapsed_s, 3)),
              ("throughput (rec/min)", _fmt(m.throughput_rec_per_min))]
    if _num(m.overlap_efficiency) is not None:
        counts.append(("pipeline", m.pipeline or ""))
        counts.append(("overlap efficiency", _pct(m.overlap_efficiency, 0)))
    records, converted = _num(m.records_read), _num(m.converted_by_inserter)
    if m.pipeline == "process" and records and converted is not None:
        counts.append(("records converted by the inserter", _pct(converted / records, 0)))
    if _num(m.read_map_cpu_s) is not None:
        counts.append(("read+map CPU (s), the host-speed probe", _fmt(m.read_map_cpu_s, 3)))
    counts.extend((f"rows in {name}", _fmt(count)) for name, count in m.tables.items())
    return counts


# ---- environment

#: The environment facts that tell two machines apart (one column per distinct set).
_MACHINE_KEYS = ("host", "cpu", "os", "python", "target")


def _environment_section(data: _Data) -> list[Section]:
    envs = [(d.source or f"file {i + 1}", d) for i, d in enumerate(data.docs)
            if d.environment.to_dict()]
    if not envs:
        return []
    sec = Section("environment", "Environment")
    # one column per distinct environment (files from the same machine share one)
    distinct: list[tuple[str, ResultDocument]] = []
    seen: set[str] = set()
    for src, doc in envs:
        raw = doc.environment.to_dict()
        fingerprint = json.dumps({k: raw.get(k) for k in _MACHINE_KEYS},
                                 sort_keys=True, default=str)
        if fingerprint not in seen:
            seen.add(fingerprint)
            distinct.append((str(src), doc))
    headers = ["", *(f"{Path(src).name or src}" for src, _ in distinct)]
    if len(distinct) == 1:
        headers = ["", "value"]
    docs = [doc for _, doc in distinct]
    sec.add_table(Table("Environment metadata stored with the results", headers,
                        _environment_rows(docs)))
    configs = [(d.source or "", _flatten({k: v for k, v in d.invocation().items()
                                          if k != "order"}))
               for d in data.docs if d.invocation()]
    for src, flat in configs[:4]:
        sec.add_table(Table(f"Invocation settings ({Path(str(src)).name or src})",
                            ["setting", "value"], [[k, v] for k, v in flat[:60]]))
    return [sec]


def _joined(*parts: Any) -> str:
    return " ".join(str(x) for x in parts if x)


def _environment_rows(docs: Sequence[ResultDocument]) -> list[list[str]]:
    """One row per fact any of the environments records, one column per environment."""
    rows: list[list[str]] = []

    def row(label: str, getter: Callable[[Environment, ResultDocument], Any]) -> None:
        values = [getter(d.environment, d) for d in docs]
        if any(v not in (None, "", "—") for v in values):
            rows.append([label] + ["—" if v in (None, "") else str(v) for v in values])

    def target(env: Environment) -> TargetFacts:
        return env.target if env.target is not None else TargetFacts()

    row("host", lambda e, d: e.host)
    row("CPU", lambda e, d: e.cpu)
    row("CPU count (logical / physical)",
        lambda e, d: f"{_present(e, 'cpu_count')} / {_present(e, 'cpu_count_physical')}")
    row("RAM", lambda e, d: f"{(_num(e.ram_bytes) or 0) / 2**30:.1f} GiB"
        if _num(e.ram_bytes) else None)
    row("OS", lambda e, d: e.os)
    row("Python", lambda e, d: _joined(e.python_implementation, e.python))
    row("DBMS", lambda e, d: _joined(target(e).dbms_name, target(e).dbms_version))
    row("dialect", lambda e, d: target(e).dialect)
    row("driver", lambda e, d: _joined(target(e).driver_name, target(e).driver_version))
    row("target (redacted)", lambda e, d: target(e).display)
    extra = [k for d in docs for k in target(d.environment).extra]
    for k in OrderedDict.fromkeys(extra):
        row(f"target {k}", _target_extra(k))
    row("dataset", lambda e, d: ", ".join(
        f"{k}={_value_text(v)}" for k, v in e.dataset.to_dict().items() if v is not None)
        if e.dataset is not None else None)
    row("tool", lambda e, d: _joined(d.tool.name, d.tool.version))
    row("result created", lambda e, d: d.created)
    packages = OrderedDict.fromkeys(name for d in docs for name in d.environment.packages)
    for name in packages:
        row(f"package {name}", _package(name))
    return rows


def _target_extra(key: str) -> Callable[[Environment, ResultDocument], str]:
    def value(env: Environment, doc: ResultDocument) -> str:
        extra = env.target.extra if env.target is not None else {}
        return _compact(extra.get(key))

    return value


def _package(name: str) -> Callable[[Environment, ResultDocument], str]:
    def version(env: Environment, doc: ResultDocument) -> str:
        return env.packages.get(name) or "not installed"

    return version


def _present(env: Environment, key: str) -> Any:
    """A count the environment recorded, or ``?`` when it lacks the key."""
    value = getattr(env, key)
    return "?" if value is None and key not in (env.read_keys or ()) else value


# --------------------------------------------------------------------------- small helpers


def _shift_sentence(shift: LevelShiftRecord) -> str:
    change = _num(shift.change)
    text = (f"the host changed speed at round {(shift.round or 0) + 1}: runs after it are "
            f"{format_change(change)} {'faster' if (change or 0) > 0 else 'slower'} "
            f"({format_p(_num(shift.p_value))}, rounds permuted)")
    before, after = _num(shift.paired_before), _num(shift.paired_after)
    if before is not None and after is not None:
        text += (f"; the paired change of {shift.paired_label} is "
                 f"{format_change(before)} before it and {format_change(after)} after")
        if shift.paired_consistent is True:
            text += ", so comparisons within rounds are unaffected"
        elif shift.paired_consistent is False:
            text += (": the difference itself changed with the host's state "
                     f"({format_p(_num(shift.paired_p))})")
    return text + "."


def _fact_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "not measured" if value is None else _value_text(value)


def _label(config: Mapping[str, Any], dims: Iterable[str]) -> str:
    """``format_config`` of the given dimensions that have a value."""
    return format_config({d: config[d] for d in dims if _of(config, d) is not None})


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _curve_label(label: str) -> str:
    return label or "all runs"


def _describe_single(points: Sequence[RunPoint]) -> str:
    if not points:
        return "the configuration"
    return format_config(points[0].config) or "the configuration"


def _ci_level(rows: Sequence[SummaryRow]) -> str:
    levels = {round(100 * c) for r in rows for c in [_num(r.stats.ci_confidence)]
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

_OMITTED = {"omitted": "sampler series left out of the report to keep it small; it is in "
                       "the result file"}


def _within_budget(docs: Sequence[ResultDocument], keep: set[int]) -> tuple[str, int]:
    full = [d.to_dict() for d in docs]
    raw = _raw_json(full)
    if len(raw) <= RAW_BUDGET:
        return raw, 0
    dropped = 0
    for doc, out in zip(docs, full, strict=True):
        for run, stored in zip(doc.runs, out["runs"], strict=True):
            if run.samples is not None and id(run.samples) not in keep:
                stored["samples"] = dict(_OMITTED)
                dropped += 1
    return _raw_json(full), dropped


def build_report(docs: Sequence[ResultDocument | Mapping[str, Any]], *,
                 title: str | None = None) -> Report:
    """The report model for already loaded documents (redacted again, defensively)."""
    clean = [_redacted(d) for d in docs]
    data = _Data(clean)
    sections = _sections(data)
    raw, dropped = _within_budget(clean, data.drawn)
    kinds = sorted({d.kind for d in clean})
    if title is None:
        title = f"migration-bench report: {', '.join(kinds)}"
    return Report(
        title=redact_text(title),
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        sources=[d.source or "" for d in clean],
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
    Raises :class:`reports.results.ResultFileError` for an unreadable result file.
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
