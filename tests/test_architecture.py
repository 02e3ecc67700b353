"""The three wings, checked on the import graph (every import, lazy ones inside functions included):
engine (`distill`, not `distill.lab`) <- plugins (`distill.teachers`, `.students`, `.augment`) <- lab (`distill.lab`).
No module imports one above its wing, nothing but the lab imports the lab, and there is no cycle between
modules or between packages."""

import ast
from pathlib import Path

import pytest

from .helpers import ROOT

FOLDERS = ("distill", "teachers", "students", "augment")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    # The plugin folders install under the one top-level name (pyproject's package-dir).
    parts = parts if parts[0] == "distill" else ("distill", *parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in FOLDERS for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from a.b import c` imports the module a.b.c when there is one, else a name of a.b.
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def wing(module: str) -> str:
    if module == "distill.lab" or module.startswith("distill.lab."):
        return "lab"
    return "engine" if package(module) == "distill" else "plugins"


def package(module: str) -> str:
    """The top package a module belongs to: `distill` (the engine), `distill.lab` or a plugin package."""
    parts = module.split(".")
    plugin_or_lab = len(parts) > 1 and parts[1] in ("lab", "teachers", "students", "augment")
    return ".".join(parts[:2]) if plugin_or_lab else "distill"


RANK = {"engine": 0, "plugins": 1, "lab": 2}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_the_code(graph):
    assert {"distill.trainer", "distill.lab.run", "distill.teachers.load", "distill.students.tinybert",
            "distill.augment.runner"} <= set(graph)
    assert "distill.trainer" in graph["distill.lab.run"] and "distill.teachers.load" in graph["distill.augment.mlm"]


def test_no_import_runs_up_a_wing(graph):
    upward = [(a, b) for a, targets in graph.items() for b in targets if RANK[wing(b)] > RANK[wing(a)]]
    assert not upward, upward


def test_nothing_outside_the_lab_imports_it(graph):
    assert not [(a, b) for a, targets in graph.items() for b in targets if wing(b) == "lab" and wing(a) != "lab"]


def test_no_module_cycles(graph):
    assert not cycles(graph)


def test_no_package_cycles(graph):
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(package(a), set()).update(package(b) for b in targets if package(b) != package(a))
    assert not cycles(packages), packages


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not cycles({"a": {"b"}, "b": set()})
