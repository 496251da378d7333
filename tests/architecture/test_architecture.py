"""The core's layers point down and its modules import each other without a cycle (issue 24).

Read from the source (``ast``), never by importing: every ``import`` and ``from ... import`` of a module of
``explorer/``, at module level or inside a function (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:`` (never run).  ``from explorer.x import y`` depends on ``explorer.x.y`` when that is a
module, else on ``explorer.x``; importing a submodule is not counted as importing its package's ``__init__``.

``LAYERS`` is the one place the order is written: bottom first.  A module may import its own layer and the
layers below.  A module belongs to the layer of the longest name in ``LAYERS`` that it equals or starts with
(``explorer.memory.plan`` before ``explorer.memory``); every module must have one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # imports nothing of the project: error types, the upload limit, the URL state, lesson data
    ("foundation", ("explorer.errors", "explorer.limits", "explorer.urlstate", "explorer.workshop.presets")),
    # models, their files and their target matrices; the one sparse mechanism
    ("model", ("explorer.model_files", "explorer.model_configs", "explorer.models", "explorer.targets",
               "explorer.sparse")),
    ("data", ("explorer.data",)),
    # what a method's memory facts are written in (a plan, units, options, model shapes, activations)
    ("memory model", ("explorer.memory.plan", "explorer.memory.units", "explorer.memory.options",
                      "explorer.memory.specs", "explorer.memory.activations")),
    ("methods", ("explorer.methods",)),
    # the claims' experiments as data (the claims lab and the lesson checks read them)
    ("claim specs", ("explorer.claims.specs",)),
    # the memory calculator and the measured byte account ask the methods
    ("memory", ("explorer.memory",)),
    ("engine", ("explorer.engine",)),
    ("smt inspector", ("explorer.smt_inspector",)),
    ("views", ("explorer.views",)),
    ("workshop", ("explorer.workshop",)),
    ("entry points", ("explorer", "explorer.cli", "explorer.claims", "explorer.__main__")),
]


# ----------------------------------------------------------------------------- the graph, from the source

def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``root/explorer``."""
    out = {}
    for p in sorted((root / "explorer").rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _runtime_imports(tree: ast.AST):
    """Every import node, less those inside ``if TYPE_CHECKING:``."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    mods = modules(root)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in _runtime_imports(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            deps.update(t for t in map(known, targets) if t and t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or around a loop (strongly connected, > 1)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> int | None:
    best, rank = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, rank = len(n), i
    return rank


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) where the imported module sits in a higher layer."""
    return {(a, b) for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a)}


# ----------------------------------------------------------------------------- the checks

def test_every_module_has_a_layer():
    missing = [m for m in modules(ROOT) if layer_of(m) is None]
    assert not missing, f"add these to LAYERS (tests/architecture/test_architecture.py): {missing}"


def test_imports_point_down_the_layers():
    found = sorted(upward(import_graph(ROOT)))
    names = [n for n, _ in LAYERS]
    assert not found, "imports that point up the layers:\n" + "\n".join(
        f"{a} ({names[layer_of(a)]}) -> {b} ({names[layer_of(b)]})" for a, b in found)


def test_no_import_cycle():
    found = [sorted(c) for c in cycles(import_graph(ROOT))]
    assert not found, f"modules that import each other: {found}"


def test_the_checks_see_cycles_upward_imports_and_lazy_ones(tmp_path):
    """The reader is not blind: on a planted tree it finds a cycle through a relative and a lazy import, an
    upward import, and skips what only a type checker reads."""
    pkg = tmp_path / "explorer"
    for folder, text in {
        "": "",
        "errors.py": "from explorer.methods import base\n",  # the bottom reaching up
        "methods/__init__.py": "",
        "methods/base.py": "from typing import TYPE_CHECKING\nfrom . import full\n"
                           "if TYPE_CHECKING:\n    from explorer.engine import step\n",
        "methods/full.py": "def f():\n    from .base import x\n",  # lazy, and back to base: a cycle
        "engine/__init__.py": "",
        "engine/step.py": "from explorer.errors import KnobError\nfrom explorer.methods.base import y\n",
    }.items():
        path = pkg / folder / "__init__.py" if folder == "" else pkg / folder
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path)
    assert graph["explorer.methods.base"] == {"explorer.methods.full"}  # TYPE_CHECKING skipped
    assert graph["explorer.engine.step"] == {"explorer.errors", "explorer.methods.base"}
    assert cycles(graph) == [{"explorer.methods.base", "explorer.methods.full"}]
    assert upward(graph) == {("explorer.errors", "explorer.methods.base")}
    assert layer_of("explorer.memory.plan") < layer_of("explorer.methods.smt") < layer_of("explorer.memory.analytic")
    assert layer_of("elsewhere") is None
