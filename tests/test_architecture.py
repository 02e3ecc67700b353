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


# ---------------------------------------------------------------- students answer for their kind
# Nothing outside students/ asks which student a model is: it asks the registered `Student`
# (`distill.student_registry`). Checked on the syntax of every module of the engine and the lab.

# What a student model holds that others would sniff to tell kinds apart.
STUDENT_PARTS = {"lstm", "vocab", "coverage", "forward_padded"}
# What a student answers through its `Student`, never as the model's own method.
STUDENT_METHODS = {"record", "clip_parameters"}
# Kind names of every vocabulary the code has used (configs, describe(), bench, export, predict's model_type).
OLD_KINDS = {"tinybert", "distilbert", "bilstm", "bert", "distillery-bilstm"}
KIND_WORDS = {"kind", "model_type"}


def student_classes(root: Path) -> set[str]:
    return {n.name for p in (root / "students").rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.ClassDef)}


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _base(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _strings(node: ast.AST) -> set[str]:
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {x.value for x in items if isinstance(x, ast.Constant) and isinstance(x.value, str)}


def kind_branches(root: Path, kinds: set[str], classes: set[str]) -> list[str]:
    """`path:line what` for every place in `root/distill` that tells student kinds apart."""
    found: list[tuple[str, int, str]] = []
    for path in sorted((root / "distill").rglob("*.py")):
        where = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            what = None
            if isinstance(node, ast.Compare) and _mentions_kind(node):
                named = set().union(*(_strings(x) for x in (node.left, *node.comparators))) & kinds
                what = f"compares with {sorted(named)}" if named else None
            elif isinstance(node, ast.Call) and _name(node.func) in ("hasattr", "getattr") and len(node.args) >= 2:
                asked = _strings(node.args[1]) & (STUDENT_PARTS | STUDENT_METHODS)
                what = f"{_name(node.func)} {sorted(asked)}" if asked else None
            elif isinstance(node, ast.Call) and _name(node.func) == "isinstance" and len(node.args) == 2:
                types = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                named = {_name(t) for t in types} & classes
                what = f"isinstance {sorted(named)}" if named else None
            elif isinstance(node, ast.Attribute) and node.attr in STUDENT_PARTS and _base(node) != "torch":
                what = f".{node.attr}"
            elif isinstance(node, ast.Attribute) and node.attr in STUDENT_METHODS and \
                    _name(node.value) in ("student", "model"):
                what = f"{_name(node.value)}.{node.attr}"
            elif isinstance(node, (ast.Name, ast.alias)) and (node.id if isinstance(node, ast.Name) else
                                                             (node.asname or node.name)) in classes:
                what = f"names the student class {node.id if isinstance(node, ast.Name) else node.name}"
            if what:
                found.append((str(where), node.lineno, f"{where}:{node.lineno} {what}"))
    return [f for *_, f in sorted(found)]


def _mentions_kind(node: ast.AST) -> bool:
    """A comparison about a kind (`cfg.student.kind`, `m["kind"]`, `config.model_type`), not e.g. an augmentation
    method that shares a student's name."""
    return any(_name(x) in KIND_WORDS or (isinstance(x, ast.Constant) and x.value in KIND_WORDS)
               for x in ast.walk(node))


def test_no_student_kind_branches_outside_students():
    from distill.student_registry import students

    kinds = OLD_KINDS | set(students()) | {t for s in students().values() for t in s.folder_types}
    assert kind_branches(ROOT, kinds, student_classes(ROOT)) == []


def test_the_kind_check_finds_branches(tmp_path):
    (tmp_path / "students").mkdir()
    (tmp_path / "students" / "mine.py").write_text("class MineClassifier:\n    pass\n")
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "x.py").write_text(
        "def f(cfg, model, student, m):\n"
        "    a = cfg.kind == 'mine'\n"
        "    b = m['kind'] in ('other', 'mine')\n"
        "    c = hasattr(model, 'lstm')\n"
        "    d = isinstance(model, (int, MineClassifier))\n"
        "    e = model.vocab\n"
        "    g = student.record(1)\n"
        "    h = torch.ops.aten.lstm\n"
        "    return cfg.kind == 'constant'\n")
    found = kind_branches(tmp_path, {"mine"}, student_classes(tmp_path))
    assert [f.split()[0].rsplit(":", 1)[1] for f in found] == ["2", "3", "4", "5", "5", "6", "7"]


def test_the_wheel_lists_every_package_folder():
    # The packages are listed by hand (package-dir maps the plugin folders under `distill.`), so a new subpackage
    # left off the list works in an editable checkout and is missing from every installed copy.
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / tool.get("package-dir", {}).get(name, name.replace(".", "/"))
               for name in tool["packages"]}
    listed = {path.resolve() for path in folders.values()}
    roots = [ROOT / "distill", *(ROOT / d for d in tool.get("package-dir", {}).values())]
    code = {f.parent.resolve() for root in roots for f in root.rglob("*.py") if "__pycache__" not in f.parts}
    assert code - listed == set(), "folders of code the installed wheel would leave out"
    assert all((folder / "__init__.py").exists() for folder in folders.values())


def test_every_student_implements_the_interface_as_declared():
    # A plugin is written against `Student`'s declared methods: a built-in that takes other parameters than the
    # interface says (and a caller that follows the built-ins) breaks every plugin written to the interface.
    import inspect

    from distill.student_registry import Student, students

    from . import toy_student

    for student in [*students().values(), toy_student.Toy()]:
        for name, declared in vars(Student).items():
            if not callable(declared) or name.startswith("_"):
                continue
            implemented = getattr(type(student), name)
            assert list(inspect.signature(implemented).parameters) == list(inspect.signature(declared).parameters), \
                (type(student).__name__, name)
