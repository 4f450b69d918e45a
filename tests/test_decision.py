"""The pooling decision tree: data that is well formed, and a pure walk over synthetic facts.

Every leaf is reached by a named fact set below, one of them the SQL Server Express
case (pooling −29%, 4 workers, disk-bound, server CPU < 10%), and every node is visited by
some case (checked at the end).
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
    decision_to_dict,
    evaluate,
    render,
    resolve_thresholds,
    tree_to_dict,
)

# A healthy baseline: configuration as believed, pooling no help, cheap connections,
# workers scaling well.
BASE: dict[str, FactValue] = {
    "config.intended": "unstated", "config.effective": False, "config.pool_possible": True,
    "config.sessions_as_configured": 20, "config.connections": 20,
    "config.ignored_keywords": "none", "config.ini": "/etc/odbcinst.ini",
    "cost.connect_ms": 5.7, "cost.checkout_ms": 0.03, "cost.batch_ms": 900.0,
    "cost.connect_share_pct": 0.63,
    "contention.max_workers": 4, "contention.efficiency_pct": 85.0,
    "contention.scales_to": 4, "contention.pooling_change_pct": 1.2,
    "contention.pooling_significant": False,
    "bottleneck.label": "client-cpu", "bottleneck.disk_busy_pct": 20.0,
    "bottleneck.db_cpu_pct": 15.0, "bottleneck.client_cpu_pct": 95.0,
}

# The SQL Server Express case (``SEED_LEAF``): 959.5 rec/min with 4 workers, 677.5 with
# pooling (−29%, significant), ~10–20 ms per connection against batches of 1000 records at
# ~16 rec/s, +63% from 2 to 4 workers but far from ideal, SQL Server CPU < 10%, the disk
# saturated.
SEED: dict[str, FactValue] = {
    **BASE,
    "config.intended": "on", "config.effective": True,
    "config.sessions_as_configured": 1,
    "cost.connect_ms": 15.0, "cost.checkout_ms": 12.0, "cost.batch_ms": 62_500.0,
    "cost.connect_share_pct": 0.024,
    "contention.max_workers": 4, "contention.efficiency_pct": 41.0,
    "contention.scales_to": 2, "contention.pooling_change_pct": 100 * (677.5 / 959.5 - 1),
    "contention.pooling_significant": True,
    "bottleneck.label": "data-io", "bottleneck.disk_busy_pct": 97.0,
    "bottleneck.db_cpu_pct": 8.0, "bottleneck.client_cpu_pct": 12.0,
}

NOT_SCALING = {"contention.efficiency_pct": 45.0, "contention.scales_to": 2}

CASES: dict[str, tuple[dict[str, FactValue], str]] = {
    "intended-but-ineffective": ({**BASE, "config.intended": "on", "config.effective": False,
                                  "config.ignored_keywords": "Pooling, Max Pool Size"},
                                 "fix_config"),
    "unixodbc-trap": ({**BASE, "config.intended": "off", "config.effective": True,
                       "config.sessions_as_configured": 1}, "trap_config"),
    "pooling-helps": ({**BASE, "contention.pooling_change_pct": 22.0,
                       "contention.pooling_significant": True}, "enable_pooling"),
    "costly-connections": ({**BASE, "cost.connect_ms": 120.0, "cost.batch_ms": 400.0,
                            "cost.connect_share_pct": 23.0}, "amortize_connections"),
    "negligible-cost-scaling": (dict(BASE), "keep_off_default"),
    "seed-sql-server-express": (SEED, SEED_LEAF),
    "log-io": ({**BASE, **NOT_SCALING, "bottleneck.label": "log-io"}, "io_bound"),
    "server-cpu": ({**BASE, **NOT_SCALING, "bottleneck.label": "db-cpu",
                    "bottleneck.db_cpu_pct": 96.0}, "server_cpu_bound"),
    "client-cpu": ({**BASE, **NOT_SCALING, "bottleneck.label": "client-cpu"},
                   "client_cpu_bound"),
    "locks": ({**BASE, **NOT_SCALING, "bottleneck.label": "lock-contention"}, "lock_bound"),
    "unknown-bottleneck": ({**BASE, **NOT_SCALING, "bottleneck.label": "unknown"},
                           "no_clear_bottleneck"),
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


def test_the_seed_reaches_the_seed_decision() -> None:
    decision = evaluate(SEED)
    assert decision.leaf == SEED_LEAF
    assert [s.node for s in decision.path] == ["config", "pooling_gain", "connect_cost",
                                               "scaling", "saturation", SEED_LEAF]
    rec = decision.recommendation.lower()
    for words in ("disable pooling", "pipeline", "batch size", "don't add workers"):
        assert words in rec, rec
    assert "past 2" in rec  # the worker count where scaling stopped, from the facts
    assert "-29%" in decision.rationale and "data-io" in decision.rationale
    # the numbers read at each node are in the path
    gain = decision.path[1]
    assert gain.facts["contention.pooling_significant"] is True
    assert gain.facts["contention.pooling_change_pct"] == pytest.approx(-29.39, abs=0.01)
    assert "otherwise" in gain.answer
    assert decision.path[3].facts["contention.efficiency_pct"] == 41.0


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
    assert evaluate(facts).leaf == "keep_off_default"


def test_thresholds_are_overridable() -> None:
    facts = {**BASE, "cost.connect_share_pct": 3.0}
    assert evaluate(facts).leaf == "keep_off_default"
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
    decision = decision_to_dict(evaluate(SEED))
    json.dumps(decision)
    assert {"nodes", "path", "leaf", "verdict", "recommendation", "rationale", "thresholds",
            "missing"} <= set(decision)
    step: dict[str, Any] = decision["path"][0]
    assert set(step) == {"node", "question", "facts", "answer", "to"}
    assert decision["thresholds"]["POOLING_GAIN_PCT"]["why"]
    assert decision["path"][-1]["node"] == decision["leaf"] == SEED_LEAF


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
