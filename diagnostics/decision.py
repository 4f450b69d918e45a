"""The pooling decision tree: data, and a pure function that walks it.

The tree (:data:`TREE`) is a tuple of :class:`Node` literals: each inner node asks one
question, names the measured facts it reads, and lists branches ``when → to``; a leaf
carries the recommendation and its rationale. :func:`evaluate` walks it over a flat mapping
of facts (built from the four pooling tests by :func:`diagnostics.pooling.decision_facts`)
and returns the path taken with the numbers read at every node. No I/O, no clock: the same
facts always give the same path, which is what the tests and the HTML report rely on.

Thresholds are named (:data:`THRESHOLDS`), each with the sentence that justifies it, and can
be overridden (``bench diagnose pooling --threshold NAME=VALUE`` or ``bench.toml``
``[diagnose.thresholds]``).

A leaf recommends only what was measured: after the configuration questions, every leaf
starts from the configuration the contention test picked among those it ran
(``contention.rec_text``: its flags, median and paired change against the default), and
names what to measure next with the tool's own commands.

A fact that was not measured (a test that could not run) never decides a branch silently:
when a node cannot be answered, the walk ends at the ``incomplete`` leaf, which names the
missing facts.

JSON for the report (:func:`decision_to_dict`)::

    {"nodes": [{"id", "question", "facts": [...], "children": [{"when", "to"}],
                "leaf": {"verdict", "recommendation", "rationale"} | null}],
     "path": [{"node", "question", "facts": {name: value}, "answer", "to"}],
     "leaf": id, "verdict", "recommendation", "rationale",
     "thresholds": {name: {"value", "unit", "why"}}, "missing": [...]}

``path[-1]`` is the leaf (``answer`` is its verdict, ``to`` is null);
:func:`decision_from_dict` reads it back.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FactValue = float | int | bool | str | None
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in"]


@dataclass(frozen=True)
class Threshold:
    value: float
    unit: str
    why: str


THRESHOLDS: dict[str, Threshold] = {
    "POOLING_GAIN_PCT": Threshold(
        5.0, "%",
        "A significant gain below 5% from a connection strategy other than per-batch is "
        "within what another day's noise on a shared server moves; it does not pay for the "
        "moving parts pooling or long-lived sessions add (session reset, stale connections "
        "after a failover)."),
    "CONNECT_SHARE_NOTICEABLE_PCT": Threshold(
        5.0, "%",
        "If connecting costs under 5% of one batch, even free connections would speed the "
        "run up by under 5% — less than the run-to-run noise of most servers — so pooling "
        "cannot show a measurable gain."),
    "SCALING_EFFICIENCY_MIN_PCT": Threshold(
        60.0, "%",
        "Below 60% of ideal scaling each added worker buys well under a worker's worth of "
        "throughput: a shared resource is saturating (Amdahl), and more workers mostly "
        "queue on it."),
}

SEED_LEAF = "io_bound"
"""The leaf an SQL Server Express whose disk saturates while pooling costs 29% must reach."""


def resolve_thresholds(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The threshold values in force: defaults with ``overrides`` applied (names checked)."""
    values = {name: t.value for name, t in THRESHOLDS.items()}
    for name, value in (overrides or {}).items():
        key = name.strip().upper()
        if key not in values:
            raise ValueError(f"unknown threshold {name!r}; known: {', '.join(THRESHOLDS)}")
        values[key] = float(value)
    return values


# ---- the data model -------------------------------------------------------------------------

@dataclass(frozen=True)
class Cond:
    """``fact op value`` where ``value`` is a literal or the name of a threshold."""

    fact: str
    op: Op
    value: FactValue | tuple[str, ...] = None
    threshold: str | None = None

    def bound(self, thresholds: Mapping[str, float]) -> Any:
        return thresholds[self.threshold] if self.threshold else self.value

    def describe(self, thresholds: Mapping[str, float] | None = None) -> str:
        if self.threshold:
            shown = (f"{self.threshold} ({_fmt(thresholds[self.threshold])})"
                     if thresholds else self.threshold)
        elif isinstance(self.value, tuple):
            shown = "{" + ", ".join(self.value) + "}"
        else:
            shown = _fmt(self.value)
        return f"{self.fact} {self.op} {shown}"


@dataclass(frozen=True)
class Branch:
    """Taken when every condition holds; no conditions: the ``otherwise`` branch."""

    to: str
    all_of: tuple[Cond, ...] = ()

    def describe(self, thresholds: Mapping[str, float] | None = None) -> str:
        if not self.all_of:
            return "otherwise"
        return " and ".join(c.describe(thresholds) for c in self.all_of)


@dataclass(frozen=True)
class Leaf:
    verdict: str  # a short label for the console and the report
    recommendation: str  # may hold {fact:format} placeholders
    rationale: str


@dataclass(frozen=True)
class Node:
    id: str
    question: str
    facts: tuple[str, ...] = ()
    children: tuple[Branch, ...] = ()
    leaf: Leaf | None = None


_IO = ("data-io", "log-io")

# Every leaf that follows a measurement recommends ``contention.rec_text``: the configuration
# the contention test picked among those it ran (diagnostics.pooling.ContentionGrid), with
# its numbers; the leaf adds why, and what to measure next with the tool's own commands.
_USE = "Use {contention.rec_text}."

TREE: tuple[Node, ...] = (
    Node("config", "Does pooling behave the way it is configured and believed to?",
         ("config.intended", "config.effective", "config.sessions_as_configured",
          "config.connections"),
         (Branch("fix_config", (Cond("config.intended", "==", "on"),
                                Cond("config.effective", "==", False))),
          Branch("trap_config", (Cond("config.intended", "==", "off"),
                                 Cond("config.effective", "==", True))),
          Branch("strategy_gain"))),
    Node("strategy_gain", "Is a connection strategy other than per-batch significantly "
         "faster?",
         ("contention.strategy", "contention.strategy_alt", "contention.strategy_change_pct",
          "contention.strategy_significant"),
         (Branch("change_strategy", (Cond("contention.strategy", "!=", "per-batch"),
                                     Cond("contention.strategy_significant", "==", True),
                                     Cond("contention.strategy_change_pct", ">=",
                                          threshold="POOLING_GAIN_PCT"))),
          Branch("connect_cost"))),
    Node("connect_cost", "Is opening a connection a noticeable share of one batch?",
         ("cost.connect_share_pct", "cost.connect_ms", "cost.checkout_ms", "cost.batch_ms"),
         (Branch("amortize_connections", (Cond("cost.connect_share_pct", ">=",
                                               threshold="CONNECT_SHARE_NOTICEABLE_PCT"),)),
          Branch("scaling"))),
    Node("scaling", "Do more workers add throughput, significantly and near ideal?",
         ("contention.scaling_significant", "contention.efficiency_pct",
          "contention.max_workers", "contention.scales_to"),
         (Branch("workers_scale", (Cond("contention.scaling_significant", "==", True),
                                   Cond("contention.efficiency_pct", ">=",
                                        threshold="SCALING_EFFICIENCY_MIN_PCT"))),
          Branch("saturation"))),
    Node("saturation", "Workers stop scaling: which resource limits the run?",
         ("bottleneck.label", "bottleneck.disk_busy_pct", "bottleneck.db_cpu_pct",
          "bottleneck.client_cpu_pct", "bottleneck.others_cpu_pct"),
         (Branch("io_bound", (Cond("bottleneck.label", "in", _IO),)),
          Branch("server_cpu_bound", (Cond("bottleneck.label", "==", "db-cpu"),)),
          Branch("client_cpu_bound", (Cond("bottleneck.label", "==", "client-cpu"),)),
          Branch("lock_bound", (Cond("bottleneck.label", "==", "lock-contention"),)),
          Branch("host_busy", (Cond("bottleneck.label", "==", "host-busy"),)),
          Branch("connection_bound", (Cond("bottleneck.label", "==",
                                           "connection-overhead"),)),
          Branch("no_clear_bottleneck"))),
    # ---- leaves --------------------------------------------------------------------------
    Node("fix_config", "Pooling is intended but not effective", leaf=Leaf(
        "pooling not effective though intended",
        _USE + " The pool settings you have do not take effect: ODBC ignores the connection "
        "string's pool keywords ({config.ignored_keywords}) and pyodbc.pooling alone does "
        "nothing under unixODBC; the apply lines say where each setting goes.",
        "The server saw {config.sessions_as_configured} distinct sessions for "
        "{config.connections} connections opened and closed as configured: every one was "
        "a new login. Measured: {contention.strategy_text}.")),
    Node("trap_config", "Pooling is effective although believed off", leaf=Leaf(
        "pooling effective although believed off",
        _USE + " Pooling is decided by odbcinst.ini {config.ini} ([ODBC] Pooling=Yes with a "
        "driver CPTimeout), not by pyodbc.pooling=False: the apply lines set it "
        "explicitly.",
        "The server saw {config.sessions_as_configured} distinct session(s) for "
        "{config.connections} connections with pooling believed off: sessions are reused. "
        "Measured: {contention.strategy_text}.")),
    Node("change_strategy", "A connection strategy helps", leaf=Leaf(
        "{contention.strategy} connections help significantly",
        _USE,
        "Measured: {contention.strategy_text}. A new connection costs "
        "{cost.connect_ms:.2f} ms, {cost.connect_share_pct:.1f}% of a {cost.batch_ms:.0f} ms "
        "batch; a pooled checkout {cost.checkout_ms:.3f} ms.")),
    Node("amortize_connections", "Connections are costly but no strategy measured helps",
         leaf=Leaf(
             "connection cost noticeable, no measured strategy helps",
             _USE + " Next to measure: larger batches carry each connection over more "
             "records (bench sweep --batch-sizes {contention.batch_sizes} "
             "{contention.sweep}).",
             "Connecting costs {cost.connect_ms:.1f} ms, {cost.connect_share_pct:.1f}% of a "
             "{cost.batch_ms:.0f} ms batch, yet {contention.strategy_text}.")),
    Node("workers_scale", "Connection cost is negligible and workers scale", leaf=Leaf(
        "workers scale; connection cost negligible",
        _USE + " {contention.more_text}.",
        "{contention.scaling_text}, significantly faster than the default up to "
        "{contention.scales_to} workers; a new "
        "connection costs {cost.connect_share_pct:.1f}% of a batch, so no strategy can "
        "help much ({contention.strategy_text}).")),
    Node(SEED_LEAF, "Workers do not scale; storage I/O saturates", leaf=Leaf(
        "I/O-bound: more workers and pooling cannot help",
        _USE + " {contention.more_text}; {contention.strategy_text}. Next to measure: "
        "overlap I/O with mapping (pipeline) and tune the batch size: bench sweep "
        "--pipeline off,thread --batch-sizes {contention.batch_sizes} {contention.sweep}.",
        "Connecting is {cost.connect_share_pct:.1f}% of a batch and "
        "{contention.scaling_text}; the sampled run at {bottleneck.workers} workers is "
        "{bottleneck.label}: {bottleneck.evidence}.")),
    Node("server_cpu_bound", "Workers do not scale; server CPU saturates", leaf=Leaf(
        "server CPU-bound",
        _USE + " {contention.more_text}. Next to measure: a cheaper insert path for the "
        "server (bench sweep --insert-method executemany,fast,values,copy "
        "{contention.sweep}), or fewer indexes and constraints during the load.",
        "The sampled run at {bottleneck.workers} workers is db-cpu: "
        "{bottleneck.evidence}{bottleneck.server_text}; {contention.scaling_text}.")),
    Node("client_cpu_bound", "Workers do not scale; client CPU saturates", leaf=Leaf(
        "client CPU-bound (parsing and mapping)",
        _USE + " {contention.more_text}. Next to measure: mapping on its own core while "
        "inserts proceed (bench sweep --pipeline off,process {contention.sweep}).",
        "The sampled run at {bottleneck.workers} workers is client-cpu: "
        "{bottleneck.evidence}{bottleneck.server_text}; {contention.scaling_text}.")),
    Node("lock_bound", "Workers do not scale; sessions wait on locks", leaf=Leaf(
        "lock contention",
        _USE + " Sessions wait on locks{bottleneck.blocker}: end or reschedule what holds "
        "them. {contention.more_text}.",
        "The sampled run at {bottleneck.workers} workers is lock-contention: "
        "{bottleneck.evidence}; {contention.scaling_text}.")),
    Node("host_busy", "Other processes take the CPU the run needs", leaf=Leaf(
        "host busy: the measurements understate the migration",
        _USE + " Measure again when the host is quiet (or from a client of its own): other "
        "processes used {bottleneck.others_cpu_pct:.0f}% of the host's CPU while the run's "
        "threads waited for one.",
        "{bottleneck.description} during the sampled run at {bottleneck.workers} workers: "
        "{bottleneck.evidence}; {contention.scaling_text}.")),
    Node("connection_bound", "Workers do not scale; opening connections dominates", leaf=Leaf(
        "connection overhead",
        _USE + " {contention.strategy_text}. Next to measure: larger batches (bench sweep "
        "--batch-sizes {contention.batch_sizes} {contention.sweep}).",
        "The sampled run at {bottleneck.workers} workers is connection-overhead: "
        "{bottleneck.evidence}; {contention.scaling_text}.")),
    Node("no_clear_bottleneck", "Workers do not scale; no resource clearly saturates",
         leaf=Leaf(
             "no clear bottleneck",
             _USE + " {contention.more_text}. Next to measure: a longer run (--records) so "
             "the samplers see more (SQL Server needs VIEW SERVER STATE).",
             "{contention.scaling_text}, but the samplers saw no resource saturate in the "
             "sampled run at {bottleneck.workers} workers ({bottleneck.evidence}).")),
    Node("incomplete", "A question could not be answered: facts are missing", leaf=Leaf(
        "incomplete diagnosis",
        "Make the missing measurements possible ({missing}) and diagnose again.",
        "The tree stopped at a question whose facts were not measured; it does not guess.")),
)

INCOMPLETE = "incomplete"
ROOT = TREE[0].id
NODES: dict[str, Node] = {n.id: n for n in TREE}


# ---- evaluation -----------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne, "in": lambda a, b: a in b,
}


def _holds(cond: Cond, facts: Mapping[str, FactValue],
           thresholds: Mapping[str, float]) -> bool | None:
    """True/False, or None when the fact is missing (not measured)."""
    value = facts.get(cond.fact)
    if value is None:
        return None
    try:
        return bool(_OPS[cond.op](value, cond.bound(thresholds)))
    except TypeError:
        return None


@dataclass(frozen=True)
class Step:
    node: str
    question: str
    facts: dict[str, FactValue]
    answer: str
    to: str | None


@dataclass(frozen=True)
class Decision:
    path: tuple[Step, ...]
    leaf: str
    verdict: str
    recommendation: str
    rationale: str
    thresholds: dict[str, float]
    missing: tuple[str, ...] = ()
    facts: dict[str, FactValue] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The path node by node with the numbers read, then the recommendation."""
        out = []
        for i, step in enumerate(self.path, 1):
            if step.to is None:
                break
            read = ", ".join(f"{k}={_fmt(v)}" for k, v in step.facts.items())
            out.append(f"{i}. {step.question} [{read}] → {step.answer} → {step.to}")
        out.append(f"verdict: {self.verdict}")
        out.append(f"recommendation: {self.recommendation}")
        out.append(f"why: {self.rationale}")
        return out


def evaluate(facts: Mapping[str, FactValue], thresholds: Mapping[str, float] | None = None,
             tree: Sequence[Node] = TREE) -> Decision:
    """Walk ``tree`` from its first node over ``facts``; pure."""
    values = resolve_thresholds(thresholds) if tree is TREE else dict(thresholds or {})
    nodes = {n.id: n for n in tree}
    path: list[Step] = []
    node = tree[0]
    missing: list[str] = []
    for _ in range(len(nodes) + 1):  # a tree: never more steps than nodes
        if node.leaf is not None:
            break
        read = {k: facts.get(k) for k in node.facts}
        chosen: Branch | None = None
        unknown: list[str] = []
        for branch in node.children:
            results = [_holds(c, facts, values) for c in branch.all_of]
            if any(r is False for r in results):
                continue
            if any(r is None for r in results):
                unknown.extend(c.fact for c, r in zip(branch.all_of, results, strict=True)
                               if r is None)
                break
            chosen = branch
            break
        if chosen is None:
            missing = sorted(set(unknown)) or ["(no branch matched)"]
            path.append(Step(node.id, node.question, read,
                             "cannot answer: missing " + ", ".join(missing), INCOMPLETE))
            node = nodes[INCOMPLETE]
            break
        for c in chosen.all_of:
            read.setdefault(c.fact, facts.get(c.fact))
        path.append(Step(node.id, node.question, read, chosen.describe(values), chosen.to))
        node = nodes[chosen.to]
    else:  # pragma: no cover - guarded by test_tree_is_well_formed
        raise ValueError("the decision tree has a cycle")
    assert node.leaf is not None
    context: dict[str, FactValue] = {**facts, "missing": ", ".join(missing)}
    leaf = node.leaf
    verdict = render(leaf.verdict, context)
    path.append(Step(node.id, node.question, {}, verdict, None))
    return Decision(tuple(path), node.id, verdict, render(leaf.recommendation, context),
                    render(leaf.rationale, context), values, tuple(missing), dict(facts))


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)(?::([^{}]*))?\}")


def render(template: str, facts: Mapping[str, FactValue]) -> str:
    """``{cost.connect_ms:.1f}`` → the fact formatted; a missing fact shows as ``?``."""
    def sub(m: re.Match[str]) -> str:
        value = facts.get(m.group(1))
        if value is None:
            return "?"
        spec = m.group(2) or ""
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    return _PLACEHOLDER.sub(sub, template)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---- JSON for the report --------------------------------------------------------------------

def tree_to_dict(tree: Sequence[Node] = TREE,
                 thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
    values = resolve_thresholds(thresholds) if tree is TREE else dict(thresholds or {})
    return {"root": tree[0].id, "nodes": [{
        "id": n.id,
        "question": n.question,
        "facts": list(n.facts),
        "children": [{"when": b.describe(values), "to": b.to} for b in n.children],
        "leaf": None if n.leaf is None else {"verdict": n.leaf.verdict,
                                             "recommendation": n.leaf.recommendation,
                                             "rationale": n.leaf.rationale},
    } for n in tree]}


def decision_to_dict(decision: Decision, tree: Sequence[Node] = TREE) -> dict[str, Any]:
    doc = tree_to_dict(tree, decision.thresholds)
    doc.update({
        "path": [{"node": s.node, "question": s.question, "facts": dict(s.facts),
                  "answer": s.answer, "to": s.to} for s in decision.path],
        "leaf": decision.leaf,
        "verdict": decision.verdict,
        "recommendation": decision.recommendation,
        "rationale": decision.rationale,
        "missing": list(decision.missing),
        "facts": dict(decision.facts),
        "thresholds": {name: {"value": decision.thresholds[name], "unit": t.unit,
                              "why": t.why} for name, t in THRESHOLDS.items()
                       if name in decision.thresholds},
    })
    return doc


def decision_from_dict(data: Mapping[str, Any]) -> Decision:
    """The :class:`Decision` a :func:`decision_to_dict` document holds."""
    thresholds = {name: float(t["value"] if isinstance(t, Mapping) else t)
                  for name, t in (data.get("thresholds") or {}).items()}
    return Decision(
        tuple(Step(str(s["node"]), str(s["question"]), dict(s.get("facts") or {}),
                   str(s["answer"]), s.get("to")) for s in data.get("path") or []),
        str(data["leaf"]), str(data["verdict"]), str(data["recommendation"]),
        str(data["rationale"]), thresholds, tuple(data.get("missing") or ()),
        dict(data.get("facts") or {}))
