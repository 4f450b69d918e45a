"""The import graph of the five packages: no cycle, and no import against their direction.

Every module of ``bench``, ``reports``, ``diagnostics``, ``migrator`` and ``datasets`` is
parsed (never imported), and every import it makes counts: at the top of the module, inside
functions (lazy imports), and ``importlib.import_module("literal")`` calls. Imports under
``if TYPE_CHECKING:`` are left out: they never run.

An import names the module it loads: ``from pkg import name`` is an edge to ``pkg.name``
when that is a module, else to ``pkg`` (its ``__init__``); ``import a.b`` an edge to
``a.b``. The parent packages Python initialises on the way are not edges: otherwise every
module would be in a cycle with a package ``__init__`` that re-exports it.

Direction (a package may import itself and the ones listed)::

    bench        → reports, diagnostics, migrator, datasets
    reports      → diagnostics, migrator
    diagnostics  → migrator
    migrator, datasets → none of the others
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "reports", "diagnostics", "migrator", "datasets")
ALLOWED: dict[str, frozenset[str]] = {
    "bench": frozenset({"reports", "diagnostics", "migrator", "datasets"}),
    "reports": frozenset({"diagnostics", "migrator"}),
    "diagnostics": frozenset({"migrator"}),
    "migrator": frozenset(),
    "datasets": frozenset(),
}

# Imports against the direction tolerated until the code making them moves: none (a test
# below fails on an entry that is no longer imported, so none can be forgotten here).
KNOWN_UPWARD_IMPORTS_TO_REMOVE: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} → {self.target} (line {self.line})"


Graph = dict[str, dict[str, int]]  # module → {imported module: line of the first import}


def discover(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name → file."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree``, function bodies included, except ``if TYPE_CHECKING:``
    bodies (their ``else`` runs, and is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """``name`` if it is a module of ours, else its nearest ancestor that is."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _base(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    return ".".join(parts[:len(parts) - (level - 1)] if level > 1 else parts)


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Edge]:
    """The modules of ours that ``module`` imports, each with the line importing it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Edge] = []

    def add(name: str, line: int) -> None:
        target = _resolve(name, modules)
        edge = Edge(module, target or "", line)
        if target is not None and target != module and edge not in found:
            found.append(edge)

    for node in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(p for p in (_base(module, is_package, node.level), base) if p)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
        elif isinstance(node, ast.Call) and _literal_import_module(node):
            arg = node.args[0]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            add(arg.value, node.lineno)
    return found


def _literal_import_module(call: ast.Call) -> bool:
    func = call.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id == "import_module")
    return named and len(call.args) == 1 and isinstance(call.args[0], ast.Constant) and \
        isinstance(call.args[0].value, str)


def import_graph(root: Path, packages: tuple[str, ...]) -> tuple[Graph, list[Edge]]:
    modules = discover(root, packages)
    graph: Graph = {name: {} for name in modules}
    edges: list[Edge] = []
    for name, path in modules.items():
        for edge in imports_of(name, path, modules):
            edges.append(edge)
            graph[name].setdefault(edge.target, edge.line)
    return graph, edges


def _components(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(sorted(members))
    return sorted(found)


def _shortest_cycle(graph: Graph, members: list[str]) -> list[str]:
    """A shortest cycle through the first member, inside its component."""
    inside = set(members)
    start = members[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{members} is not a cycle")


def cycles(graph: Graph) -> list[str]:
    """One line per import cycle: the modules in it, and a shortest loop with its lines."""
    lines = []
    for members in _components(graph):
        loop = _shortest_cycle(graph, members)
        steps = " → ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(loop))
        lines.append(f"cycle among {', '.join(members)}: {steps} → {loop[-1]}")
    return lines


def against_direction(edges: list[Edge], allowed: Mapping[str, frozenset[str]]) -> list[str]:
    """One line per import of a package the importer's package may not use."""
    bad = []
    for edge in edges:
        source, target = edge.source.partition(".")[0], edge.target.partition(".")[0]
        if source != target and target not in allowed[source]:
            bad.append(f"{edge}: {source} may not import {target}")
    return bad


# ---- the project ---------------------------------------------------------------------------

def test_the_packages_import_no_module_that_imports_them_back() -> None:
    graph, _ = import_graph(ROOT, PACKAGES)
    assert len(graph) > 50, "the packages were not found"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_temporary_allow_list_holds_only_imports_still_made() -> None:
    """Once the code it excuses is gone, this fails until the entry is removed."""
    graph, _ = import_graph(ROOT, PACKAGES)
    gone = sorted(e for e in KNOWN_UPWARD_IMPORTS_TO_REMOVE if e[1] not in graph.get(e[0], {}))
    assert not gone, f"no longer imported, remove from KNOWN_UPWARD_IMPORTS_TO_REMOVE: {gone}"


def test_no_package_imports_against_the_direction() -> None:
    _, edges = import_graph(ROOT, PACKAGES)
    edges = [e for e in edges if (e.source, e.target) not in KNOWN_UPWARD_IMPORTS_TO_REMOVE]
    bad = against_direction(edges, ALLOWED)
    assert not bad, "imports against the package direction:\n" + "\n".join(bad)


# ---- the checker itself, on a planted package tree ------------------------------------------

def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


PLANTED_ALLOWED = {"low": frozenset[str](), "high": frozenset({"low"})}


def test_the_checker_finds_a_lazy_cycle_and_names_its_modules_and_lines(
        tmp_path: Path) -> None:
    _plant(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "from low.b import helper\n",
        "low/b.py": """\
            def helper():
                from low import a  # lazy, inside a function: still an edge
                return a
        """,
        "low/c.py": "from . import a\n",  # relative; into the cycle, not part of it
    })
    graph, _ = import_graph(tmp_path, ("low",))
    assert graph["low.c"] == {"low.a": 1}
    assert cycles(graph) == [
        "cycle among low.a, low.b: low.a (line 1) → low.b (line 2) → low.a"]


def test_the_checker_ignores_type_checking_imports_but_not_their_else(tmp_path: Path) -> None:
    _plant(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "import low.b\n",
        "low/b.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from low.a import X
            else:
                import importlib
                importlib.import_module("low.c")
        """,
        "low/c.py": "from low import b\n",
    })
    graph, _ = import_graph(tmp_path, ("low",))
    assert graph["low.b"] == {"low.c": 6}
    assert cycles(graph) == [
        "cycle among low.b, low.c: low.b (line 6) → low.c (line 1) → low.b"]


def test_the_checker_finds_an_upward_import(tmp_path: Path) -> None:
    _plant(tmp_path, {
        "low/__init__.py": "",
        "low/base.py": """\
            def run():
                import high.top  # a lower package reaching up, lazily
        """,
        "high/__init__.py": "",
        "high/top.py": "from low.base import run\n",
    })
    graph, edges = import_graph(tmp_path, ("low", "high"))
    assert against_direction(edges, PLANTED_ALLOWED) == [
        "low.base → high.top (line 2): low may not import high"]
    assert cycles(graph) == [
        "cycle among high.top, low.base: high.top (line 1) → low.base (line 2) → high.top"]
