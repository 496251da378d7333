"""The test folders' boundaries (issue 24): no test module imports another test module (shared helpers live in
``tests/support/``, shared fixtures in ``conftest.py`` files), the tests never import ``benchmarks/``, and
``benchmarks/`` and ``tools/`` never import ``tests/`` (nor put it on ``sys.path``).

Read from the source (``ast``), never by importing: every ``import`` and ``from ... import``, at module level or
inside a function.  A *test module* is a ``test_*.py`` or ``conftest.py`` file under ``tests/``; it is named in an
import by its dotted path (``tests.browser.test_browser``) or, as pytest's rootdir imports allow, by its bare file
name (``test_browser``, ``conftest``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the tree; ``from a import b`` gives both ``a`` and ``a.b``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _mentions_tests(node: ast.AST) -> bool:
    return any(isinstance(c, ast.Constant) and isinstance(c.value, str)
               and (c.value == "tests" or c.value.startswith(("tests/", "/tests"))) for c in ast.walk(node))


def sys_path_lines_of_tests(tree: ast.AST) -> list[int]:
    """Lines that put the tests folder on ``sys.path`` (``sys.path.insert(0, ROOT / "tests")``,
    ``sys.path[:0] = [..., str(ROOT / "tests")]``, ...)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) == "sys.path" and _mentions_tests(node):
            out.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)) and "sys.path" in ast.unparse(node) \
                and _mentions_tests(node.value):
            out.append(node.lineno)
    return out


def find_test_modules(root: Path) -> tuple[set[str], set[str]]:
    """The test modules under ``root/tests``: their dotted names and their bare names."""
    dotted, bare = set(), set()
    for p in (root / "tests").rglob("*.py"):
        if p.name.startswith("test_") or p.name == "conftest.py":
            dotted.add(".".join(p.relative_to(root).with_suffix("").parts))
            bare.add(p.stem)
    return dotted, bare


def python_files(root: Path, folder: str) -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*.py") if "artifacts" not in p.parts)


def violations(root: Path) -> list[str]:
    dotted, bare = find_test_modules(root)
    found = []
    for p in python_files(root, "tests"):
        rel = p.relative_to(root).as_posix()
        for line, name in imported_names(ast.parse(p.read_text("utf-8"))):
            if name in dotted or name in bare:
                found.append(f"{rel}:{line} imports the test module {name} (move what it needs to tests/support/ "
                             "or a conftest.py)")
            if name == "benchmarks" or name.startswith("benchmarks."):
                found.append(f"{rel}:{line} imports {name}: tests do not import benchmarks/ (move it to tools/ or "
                             "explorer/)")
    for folder in ("benchmarks", "tools"):
        for p in python_files(root, folder):
            rel = p.relative_to(root).as_posix()
            tree = ast.parse(p.read_text("utf-8"))
            for line, name in imported_names(tree):
                if name == "tests" or name.startswith("tests.") or name in bare:
                    found.append(f"{rel}:{line} imports {name}: {folder}/ never imports tests/ (move it to tools/)")
            found += [f"{rel}:{line} puts tests/ on sys.path" for line in sys_path_lines_of_tests(tree)]
    return sorted(set(found))


def test_no_test_module_imports_another_and_benchmarks_never_import_tests():
    found = violations(ROOT)
    assert not found, "\n".join(found)


def test_the_scan_finds_each_kind_of_crossing(tmp_path):
    """The scan is not blind: each forbidden import (bare, dotted, lazy, from a helper) and each sys.path entry is
    found in a made-up tree, and the allowed ones are not."""
    files = {
        "tests/conftest.py": "import pytest\n",
        "tests/support/helpers.py": "import os\n",
        "tests/a/test_one.py": "from tests.support.helpers import os\nimport tools.x\n",
        "tests/a/test_two.py": "from test_one import thing\n",
        "tests/b/test_three.py": "def f():\n    from tests.a.test_one import thing\n",
        "tests/b/test_four.py": "from tests.a import test_one\nimport benchmarks.y\n",
        "tests/support/bad.py": "import conftest\n",
        "benchmarks/y.py": "import sys\nsys.path.insert(0, 'tests')\nimport tools.x\n",
        "benchmarks/z.py": "import sys\nfrom pathlib import Path\nsys.path[:0] = [str(Path('.') / 'tests')]\n"
                           "def g():\n    import test_one\n",
        "tools/x.py": "from tests.support import helpers\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = sorted({f.split(" ")[0] for f in violations(tmp_path)})
    assert found == ["benchmarks/y.py:2", "benchmarks/z.py:3", "benchmarks/z.py:5", "tests/a/test_two.py:1",
                     "tests/b/test_four.py:1", "tests/b/test_four.py:2", "tests/b/test_three.py:2",
                     "tests/support/bad.py:1", "tools/x.py:1"], found
