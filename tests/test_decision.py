"""The pooling decision tree: data that is well formed, and a pure walk over synthetic facts.

Every leaf is reached by a named fact set below, and every node is visited by some case
(checked at the end). The SQL Server Express story (pooling −29%, no scaling past 2
workers, disk-bound) is walked from measurements in tests/test_pooling.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from diagnostics.decision import (
    INCOMPLETE,
    NODES,
    ROOT,
    SEED_LEAF,
    THRESHOLDS,
    TREE,
    FactValue,
    decision_from_dict,
    decision_to_dict,
    evaluate,
    render,
    resolve_thresholds,
    tree_to_dict,
)

# A healthy baseline: configuration as believed, no strategy better than per-batch, cheap
# connections, workers scaling well. The contention texts are the contention test's (see
# tests/test_pooling.py for how they are made from measurements).
BASE: dict[str, FactValue] = {
    "config.intended": "unstated", "config.effective": False, "config.pool_possible": True,
    "config.sessions_as_configured": 20, "config.connections": 20,
    "config.ignored_keywords": "none", "config.ini": "/etc/odbcinst.ini",
    "cost.connect_ms": 5.7, "cost.checkout_ms": 0.03, "cost.batch_ms": 900.0,
    "cost.connect_share_pct": 0.63,
    "contention.max_workers": 4, "contention.efficiency_pct": 85.0,
    "contention.scales_to": 4, "contention.scaling_significant": True,
    "contention.workers": 4, "contention.strategy": "per-batch",
    "contention.strategy_alt": "pooled", "contention.strategy_change_pct": 1.2,
    "contention.strategy_significant": False,
    "contention.rec_text": "4 workers, per-batch connections (--workers 4 --pooling off)",
    "contention.strategy_text": "pooled connections measured +1.2% (not significant)",
    "contention.more_text": "4 workers is the most measured",
    "contention.scaling_text": "4 workers reach 85% of ideal scaling",
    "contention.sweep": "--workers 4 --pooling off", "contention.batch_sizes": "200..5000",
    "bottleneck.label": "client-cpu", "bottleneck.disk_busy_pct": 20.0,
    "bottleneck.db_cpu_pct": 15.0, "bottleneck.client_cpu_pct": 95.0,
    "bottleneck.others_cpu_pct": 3.0, "bottleneck.workers": 4,
    "bottleneck.evidence": "client.cpu_of_capacity_pct = 95% of 4 usable cores",
    "bottleneck.server_text": "", "bottleneck.blocker": "",
    "bottleneck.description": "client CPU (XML parsing and mapping)",
}

NOT_SCALING = {"contention.efficiency_pct": 45.0, "contention.scales_to": 2,
               "contention.scaling_significant": True}

CASES: dict[str, tuple[dict[str, FactValue], str]] = {
    "intended-but-ineffective": ({**BASE, "config.intended": "on", "config.effective": False,
                                  "config.ignored_keywords": "Pooling, Max Pool Size"},
                                 "fix_config"),
    "unixodbc-trap": ({**BASE, "config.intended": "off", "config.effective": True,
                       "config.sessions_as_configured": 1}, "trap_config"),
    "persistent-helps": ({**BASE, "contention.strategy": "persistent",
                          "contention.strategy_alt": "persistent",
                          "contention.strategy_change_pct": 22.0,
                          "contention.strategy_significant": True}, "change_strategy"),
    "costly-connections": ({**BASE, "cost.connect_ms": 120.0, "cost.batch_ms": 400.0,
                            "cost.connect_share_pct": 23.0}, "amortize_connections"),
    "negligible-cost-scaling": (dict(BASE), "workers_scale"),
    "log-io": ({**BASE, **NOT_SCALING, "bottleneck.label": "log-io"}, "io_bound"),
    "server-cpu": ({**BASE, **NOT_SCALING, "bottleneck.label": "db-cpu",
                    "bottleneck.db_cpu_pct": 96.0}, "server_cpu_bound"),
    "client-cpu": ({**BASE, **NOT_SCALING, "bottleneck.label": "client-cpu"},
                   "client_cpu_bound"),
    "locks": ({**BASE, **NOT_SCALING, "bottleneck.label": "lock-contention"}, "lock_bound"),
    "host-busy": ({**BASE, **NOT_SCALING, "bottleneck.label": "host-busy",
                   "bottleneck.others_cpu_pct": 48.0}, "host_busy"),
    "connections-dominate": ({**BASE, **NOT_SCALING,
                              "bottleneck.label": "connection-overhead"}, "connection_bound"),
    "unknown-bottleneck": ({**BASE, **NOT_SCALING, "bottleneck.label": "unknown"},
                           "no_clear_bottleneck"),
    "no-significant-scaling": ({**BASE, "contention.scaling_significant": False,
                                "contention.scales_to": 1, "bottleneck.label": "data-io"},
                               SEED_LEAF),
    "contention-not-measured": ({k: v for k, v in BASE.items()
                                 if not k.startswith("contention.")}, INCOMPLETE),
}

_visited: set[str] = set()
_leaves_reached: set[str] = set()


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_reaches_its_leaf(name: str) -> None:
    facts, leaf = CASES[name]
    decision = evaluate(facts)
    assert decision.leaf == leaf, decision.lines()
    assert decision.path[0].node == ROOT
    assert decision.path[-1].node == leaf and decision.path[-1].to is None
    for step, nxt in zip(decision.path, decision.path[1:], strict=False):
        assert step.to == nxt.node
    assert "{" not in decision.recommendation and "{" not in decision.rationale
    _visited.update(s.node for s in decision.path)
    _leaves_reached.add(decision.leaf)


def test_a_strategy_gain_below_the_threshold_does_not_change_the_advice() -> None:
    small = {**CASES["persistent-helps"][0], "contention.strategy_change_pct": 3.0}
    decision = evaluate(small)
    assert decision.leaf == "workers_scale"
    assert "POOLING_GAIN_PCT (5)" not in decision.path[1].answer  # (the otherwise branch)
    assert evaluate(small, {"POOLING_GAIN_PCT": 2.0}).leaf == "change_strategy"


def test_every_leaf_after_the_measurements_recommends_the_measured_configuration() -> None:
    for name, (facts, leaf) in CASES.items():
        decision = evaluate(facts)
        if leaf == INCOMPLETE:
            continue
        assert decision.recommendation.startswith("Use 4 workers, per-batch connections "
                                                  "(--workers 4 --pooling off)"), name
        assert "?" not in decision.recommendation + decision.rationale, (name, decision)
        assert "up to the core count" not in decision.recommendation


def test_verdicts_are_rendered_from_the_facts() -> None:
    decision = evaluate(CASES["persistent-helps"][0])
    assert decision.verdict == "persistent connections help significantly"
    assert decision.path[-1].answer == decision.verdict


def test_missing_facts_stop_at_incomplete_and_name_them() -> None:
    facts = {k: v for k, v in BASE.items() if not k.startswith("cost.")}
    decision = evaluate(facts)
    assert decision.leaf == INCOMPLETE
    assert decision.missing == ("cost.connect_share_pct",)
    assert "cost.connect_share_pct" in decision.recommendation
    assert decision.path[-2].node == "connect_cost"
    assert decision.path[-2].answer.startswith("cannot answer")


def test_a_false_condition_decides_even_when_a_sibling_fact_is_missing() -> None:
    facts = dict(BASE)
    facts.pop("config.effective")  # intended "unstated": neither ineffective branch applies
    assert evaluate(facts).leaf == "workers_scale"


def test_thresholds_are_overridable() -> None:
    facts = {**BASE, "cost.connect_share_pct": 3.0}
    assert evaluate(facts).leaf == "workers_scale"
    tightened = evaluate(facts, {"CONNECT_SHARE_NOTICEABLE_PCT": 2.0})
    assert tightened.leaf == "amortize_connections"
    assert tightened.thresholds["CONNECT_SHARE_NOTICEABLE_PCT"] == 2.0
    assert "CONNECT_SHARE_NOTICEABLE_PCT (2)" in tightened.path[2].answer
    assert evaluate(facts, {"scaling_efficiency_min_pct": 90}).leaf == "client_cpu_bound"


def test_unknown_threshold_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="POOLING_GAIN_PCT"):
        resolve_thresholds({"NO_SUCH": 1.0})


def test_tree_is_well_formed() -> None:
    ids = [n.id for n in TREE]
    assert len(ids) == len(set(ids))
    referenced: set[str] = set()
    for node in TREE:
        if node.leaf is None:
            assert node.children, node.id
            assert not node.children[-1].all_of, f"{node.id}: last branch must be otherwise"
            assert all(b.all_of for b in node.children[:-1])
            for b in node.children:
                assert b.to in NODES
                referenced.add(b.to)
                for c in b.all_of:
                    assert c.fact in node.facts, f"{node.id} reads {c.fact} without listing it"
                    if c.threshold:
                        assert c.threshold in THRESHOLDS
        else:
            assert not node.children and node.leaf.recommendation and node.leaf.rationale
    # every node but the root and the fallback leaf is some branch's target
    assert set(ids) - referenced == {ROOT, INCOMPLETE}
    for name, t in THRESHOLDS.items():
        assert t.why.endswith(".") and len(t.why) > 40, name


def test_tree_json_shape() -> None:
    doc = tree_to_dict()
    assert doc["root"] == ROOT
    for node in doc["nodes"]:
        assert set(node) == {"id", "question", "facts", "children", "leaf"}
        for child in node["children"]:
            assert set(child) == {"when", "to"}
    decision = decision_to_dict(evaluate(CASES["log-io"][0]))
    json.dumps(decision)
    assert {"nodes", "path", "leaf", "verdict", "recommendation", "rationale", "thresholds",
            "missing"} <= set(decision)
    step: dict[str, Any] = decision["path"][0]
    assert set(step) == {"node", "question", "facts", "answer", "to"}
    assert decision["thresholds"]["POOLING_GAIN_PCT"]["why"]
    assert decision["path"][-1]["node"] == decision["leaf"] == SEED_LEAF
    again = decision_from_dict(json.loads(json.dumps(decision)))
    assert again == evaluate(CASES["log-io"][0])


def test_render_formats_facts_and_marks_missing_ones() -> None:
    assert render("{a:.1f} ms, {b}, {c:+.0f}%", {"a": 1.26, "c": -29.4}) == "1.3 ms, ?, -29%"


def test_every_node_visited_and_every_leaf_reached() -> None:
    """Runs after the parametrized cases (pytest keeps file order)."""
    if len(_leaves_reached) < len(CASES) - 2:  # the cases did not run (e.g. -k selection)
        for facts, _ in CASES.values():
            d = evaluate(facts)
            _visited.update(s.node for s in d.path)
            _leaves_reached.add(d.leaf)
    assert _visited == set(NODES), set(NODES) - _visited
    assert _leaves_reached == {n.id for n in TREE if n.leaf is not None}
