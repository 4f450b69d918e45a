"""SVG for the HTML report: matplotlib figures as inline SVG, and the decision tree.

Two jobs, both pure (strings in, strings out):

* :func:`figure_to_svg` serialises a matplotlib figure (Agg-free: the SVG backend) into a
  fragment that can be pasted into HTML: no XML prolog, no DOCTYPE (it names an external
  DTD, which is a URL we promise never to reference), text kept as text
  (``svg.fonttype = none``: small, searchable, copyable), element ids prefixed so several
  figures on one page cannot collide, and a responsive size.
* :func:`tree_svg` draws the pooling decision tree whole, left to right, with the path the
  evaluation took highlighted (thick dark outline, bold, and a ✓ mark, so it survives
  greyscale printing) and each visited node's measured facts printed in its box. Drawn by
  hand rather than with graphviz: no binary dependency, and the layout is a few lines.

The tree interface (what :func:`normalise_tree` accepts) is documented there.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

from matplotlib.figure import Figure

__all__ = ["TreeEdge", "TreeNode", "TreeView", "figure_to_svg", "normalise_tree", "tree_svg"]

_fig_counter = itertools.count(1)

_PROLOG = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<!--.*?-->\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def figure_to_svg(fig: Figure, *, title: str = "", prefix: str | None = None) -> str:
    """The figure as an inline ``<svg>`` fragment (see the module docstring)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                             "Format": None, "Type": None})
    text = _METADATA.sub("", _PROLOG.sub("", buf.getvalue()))
    tag = prefix or f"f{next(_fig_counter)}"
    ids = sorted(set(_ID.findall(text)), key=len, reverse=True)
    for ident in ids:
        new = f"{tag}-{ident}"
        text = text.replace(f'id="{ident}"', f'id="{new}"')
        text = text.replace(f"#{ident})", f"#{new})").replace(f'"#{ident}"', f'"#{new}"')
    # Responsive: keep the viewBox, let CSS size it.
    text = re.sub(r'<svg([^>]*?)\swidth="[^"]*"\s+height="[^"]*"',
                  r'<svg\1 class="chart"', text, count=1)
    if title:
        label = _xml_escape(title, {'"': "&quot;"})
        text = text.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)
    return text.strip()


# --------------------------------------------------------------------------- the tree


@dataclass
class TreeEdge:
    when: str
    to: str


@dataclass
class TreeNode:
    id: str
    question: str
    children: list[TreeEdge] = field(default_factory=list)
    recommendation: str | None = None
    verdict: str | None = None
    facts: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class TreeView:
    nodes: dict[str, TreeNode]
    root: str
    path: list[str]
    facts: dict[str, dict[str, Any]]      # node id → measured facts read there
    answers: dict[str, str]               # node id → the answer taken there

    @property
    def outcome(self) -> TreeNode | None:
        if not self.path:
            return None
        last = self.nodes.get(self.path[-1])
        return last if last is not None and last.is_leaf else None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def normalise_tree(doc: Mapping[str, Any]) -> TreeView | None:
    """Read a decision tree and its evaluated path, tolerating a few spellings.

    Expected shape::

        {"root": "configured",                      # optional: default the first node
         "nodes": [{"id": "configured", "question": "Is pooling active?",
                    "facts": ["pool.reuse_pct"], "thresholds": {"pool.reuse_pct": 50},
                    "children": [{"when": "yes", "to": "cost"}, {"when": "no", "to": "L1"}]},
                   {"id": "L1", "question": "Pooling is not active",
                    "leaf": {"recommendation": "enable driver-manager pooling"}}],
         "path": [{"node": "configured", "facts": {"pool.reuse_pct": 100}, "answer": "yes"},
                  …, {"node": "L3"}]}

    ``children`` may also be a mapping ``{when: to}``; a leaf may carry ``recommendation``
    directly; ``path`` may be a list of node ids. Returns None when there is no usable tree.
    """
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, Sequence) or isinstance(raw_nodes, str) or not raw_nodes:
        return None
    nodes: dict[str, TreeNode] = {}
    for raw in raw_nodes:
        if not isinstance(raw, Mapping) or raw.get("id") is None:
            continue
        children_raw = raw.get("children") or []
        children: list[TreeEdge] = []
        if isinstance(children_raw, Mapping):
            children = [TreeEdge(_str(k), _str(v)) for k, v in children_raw.items()]
        else:
            for c in children_raw:
                if isinstance(c, Mapping):
                    children.append(TreeEdge(_str(c.get("when", c.get("answer", ""))),
                                             _str(c.get("to", c.get("node", "")))))
                else:
                    children.append(TreeEdge("", _str(c)))
        leaf = raw.get("leaf")
        recommendation = None
        verdict = None
        if isinstance(leaf, Mapping):
            verdict = _str(leaf.get("verdict")) or None
            recommendation = _str(leaf.get("recommendation") or leaf.get("text") or "")
        elif isinstance(leaf, str):
            recommendation = leaf
        if recommendation is None and raw.get("recommendation"):
            recommendation = _str(raw.get("recommendation"))
        facts_raw = raw.get("facts") or []
        facts = [_str(f) for f in facts_raw] if isinstance(facts_raw, Sequence) and \
            not isinstance(facts_raw, str) else [_str(facts_raw)]
        thresholds = raw.get("thresholds")
        question = raw.get("question") or raw.get("title") or verdict or recommendation \
            or raw["id"]
        nodes[_str(raw["id"])] = TreeNode(
            id=_str(raw["id"]), question=_str(question), children=children,
            recommendation=recommendation, verdict=verdict, facts=facts,
            thresholds=dict(thresholds) if isinstance(thresholds, Mapping) else {})
    if not nodes:
        return None
    path: list[str] = []
    facts_at: dict[str, dict[str, Any]] = {}
    answers: dict[str, str] = {}
    for step in doc.get("path") or []:
        if isinstance(step, Mapping):
            ident = _str(step.get("node", step.get("id")))
            path.append(ident)
            if isinstance(step.get("facts"), Mapping):
                facts_at[ident] = dict(step["facts"])
            if step.get("answer") is not None:
                answers[ident] = _str(step["answer"])
        else:
            path.append(_str(step))
    root = _str(doc.get("root")) if doc.get("root") in nodes else next(iter(nodes))
    # Where the path names an answer but not the next node, infer the edge taken.
    for a, b in itertools.pairwise(path):
        if a not in answers and a in nodes:
            for edge in nodes[a].children:
                if edge.to == b:
                    answers[a] = edge.when
    return TreeView(nodes, root, path, facts_at, answers)


# layout constants (SVG user units ≈ CSS px at 100%)
_BOX_W = 200
_H_GAP = 16
_V_GAP = 44
_LINE_H = 13
_PAD = 7
_CHARS = 30  # characters per wrapped line at 11 px in a 200-unit box


def _wrap(text: str, width: int = _CHARS) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        while len(word) > width:  # an unbreakable token (a long fact name)
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:width])
            word = word[width:]
        candidate = f"{current} {word}".strip()
        if len(candidate) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines or [""]


def _fmt_fact(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt_fact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt_fact(v) for v in value)
    return _str(value) if value is not None else "not measured"


@dataclass
class _Box:
    when: list[str]
    head: list[str]
    facts: list[str]

    @property
    def height(self) -> float:
        lines = len(self.when) + len(self.head) + len(self.facts)
        return 2 * _PAD + _LINE_H * lines + (4 if self.facts else 0) + (2 if self.when else 0)


def _box(node: TreeNode, when: str, view: TreeView) -> _Box:
    head = _wrap(node.question, _CHARS - 3)  # bold on the path: wider glyphs
    hot = node.id in view.path
    if node.is_leaf and hot and node.verdict and node.verdict != node.question:
        head += _wrap(f"→ {node.verdict}", _CHARS - 3)
    facts: list[str] = []
    for name, value in view.facts.get(node.id, {}).items():
        facts.extend(_wrap(f"{name} = {_fmt_fact(value)}", _CHARS + 4))
    return _Box(_wrap(f"if {when}") if when else [], head, facts)


def tree_svg(view: TreeView) -> str:
    """The whole tree, top-down in layers, path highlighted; an ``<svg>`` fragment.

    Layer = depth from the root; within a layer nodes follow their parents' order, so the
    drawing stays narrow (the widest layer decides the width) however deep the tree is.
    Each box starts with the condition of the branch that leads to it (``if …``), then the
    question (or the leaf's title), then — on the path — the facts read there.
    """
    depth: dict[str, int] = {view.root: 0}
    parent_edge: dict[str, tuple[str, str]] = {}
    layers: list[list[str]] = [[view.root]] if view.root in view.nodes else [[]]
    frontier = list(layers[0])
    while frontier:
        nxt: list[str] = []
        for ident in frontier:
            for edge in view.nodes[ident].children:
                if edge.to in view.nodes and edge.to not in depth:
                    depth[edge.to] = depth[ident] + 1
                    parent_edge[edge.to] = (ident, edge.when)
                    nxt.append(edge.to)
        if nxt:
            layers.append(nxt)
        frontier = nxt
    for ident in view.nodes:  # unreachable nodes (e.g. "incomplete"): beside the root
        if ident not in depth:
            depth[ident] = 0
            layers[0].append(ident)

    boxes = {ident: _box(view.nodes[ident], parent_edge.get(ident, ("", ""))[1], view)
             for layer in layers for ident in layer}
    width = max(len(layer) for layer in layers) * (_BOX_W + _H_GAP) - _H_GAP + 20
    pos: dict[str, tuple[float, float]] = {}
    y = 10.0
    for layer in layers:
        row_w = len(layer) * (_BOX_W + _H_GAP) - _H_GAP
        x = (width - row_w) / 2
        for ident in layer:
            pos[ident] = (x, y)
            x += _BOX_W + _H_GAP
        y += max(boxes[i].height for i in layer) + _V_GAP
    height = y - _V_GAP + 10

    on_path = set(view.path)
    taken = set(itertools.pairwise(view.path))
    esc = _xml_escape
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tree" viewBox="0 0 {width:.0f} '
        f'{height:.0f}" role="img" aria-label="Pooling decision tree, path taken highlighted"'
        f' font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
        "<title>Pooling decision tree; the evaluated path is drawn thick and marked ✓</title>",
    ]
    for ident, (px, py) in pos.items():  # edges first, so boxes cover their ends
        for edge in view.nodes[ident].children:
            if edge.to not in pos or parent_edge.get(edge.to, ("",))[0] != ident:
                continue
            cx, cy = pos[edge.to]
            x1, y1 = px + _BOX_W / 2, py + boxes[ident].height
            x2, y2 = cx + _BOX_W / 2, cy
            hot = (ident, edge.to) in taken
            mid = (y1 + y2) / 2
            style = ('stroke="#0072B2" stroke-width="4"' if hot
                     else 'stroke="#a0a0a0" stroke-width="1.2" stroke-dasharray="4 3"')
            out.append(f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} '
                       f'{x2:.1f},{y2:.1f}" fill="none" {style}/>')
    for ident, (x, y) in pos.items():
        node, box = view.nodes[ident], boxes[ident]
        hot = ident in on_path
        if node.is_leaf:
            fill = "#fff3d6" if hot else "#f4f4f4"
        else:
            fill = "#e3f1fb" if hot else "#fbfbfb"
        stroke = 'stroke="#000" stroke-width="3"' if hot else 'stroke="#a0a0a0" stroke-width="1"'
        rx = 12 if node.is_leaf else 3
        out.append(f'<g class="node{" on-path" if hot else ""}" data-node="{esc(ident)}">')
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{_BOX_W}" height="{box.height:.1f}" '
                   f'rx="{rx}" fill="{fill}" {stroke}/>')
        ty = y + _PAD + 10
        for line in box.when:
            out.append(f'<text x="{x + _PAD:.1f}" y="{ty:.1f}" fill="#555" font-size="10" '
                       f'font-style="italic">{esc(line)}</text>')
            ty += _LINE_H
        if box.when:
            ty += 2
        weight = ' font-weight="bold"' if hot else ""
        colour = "#000" if hot else "#444"
        for i, line in enumerate(box.head):
            mark = "✓ " if hot and i == 0 else ""
            out.append(f'<text x="{x + _PAD:.1f}" y="{ty:.1f}" fill="{colour}"{weight}>'
                       f"{esc(mark + line)}</text>")
            ty += _LINE_H
        if box.facts:
            ty += 4
            for line in box.facts:
                out.append(f'<text x="{x + _PAD:.1f}" y="{ty:.1f}" fill="#222" '
                           f'font-family="DejaVu Sans Mono, monospace" font-size="9.5">'
                           f"{esc(line)}</text>")
                ty += _LINE_H
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
