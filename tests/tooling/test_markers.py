"""The slow lists of the core and page layers (their conftest.py files; ``make test-fast`` leaves those tests out)
name tests that exist, and the mark reaches every parameter of a named test and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.markers import mark_slow, unknown

ROOT = Path(__file__).resolve().parents[2]


def slow_list(layer: str) -> set[str]:
    """The SLOW set of a layer's conftest.py, read from its source (a conftest is never imported by a test)."""
    tree = ast.parse((ROOT / "tests" / layer / "conftest.py").read_text("utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "SLOW")
    return set(ast.literal_eval(node.value))


@pytest.mark.parametrize("layer", ["core", "pages"])
def test_every_slow_name_is_a_test_of_its_layer(layer):
    slow = slow_list(layer)
    assert slow and unknown(ROOT / "tests" / layer, slow) == []


def test_the_mark_reaches_every_parameter_of_a_named_test_and_nothing_else(tmp_path):
    class Item:
        def __init__(self, path, name, originalname):
            self.path, self.name, self.originalname, self.marks = path, name, originalname, []

        def add_marker(self, m):
            self.marks.append(m.name)

    f, other = tmp_path / "test_a.py", tmp_path.parent / "elsewhere" / "test_a.py"
    items = [Item(f, "test_x[1]", "test_x"), Item(f, "test_x[2]", "test_x"), Item(f, "test_y", "test_y"),
             Item(other, "test_x", "test_x")]
    mark_slow(items, tmp_path, {"test_a.py::test_x"})
    assert [i.marks for i in items] == [["slow"], ["slow"], [], []]
    assert unknown(tmp_path, {"test_a.py::test_x"}) == ["test_a.py::test_x"]  # no such file there
    f.write_text("def test_x():\n    pass\n")
    assert unknown(tmp_path, {"test_a.py::test_x", "test_a.py::test_gone"}) == ["test_a.py::test_gone"]


def test_the_timing_bound_group_names_test_files_that_exist():
    """tests/conftest.py keeps the room walk and the load layer in one pytest-xdist group (never side by side): a
    renamed file would silently leave it."""
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text("utf-8"))
    names = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) == "_TIMING_BOUND" for t in n.targets))
    assert names and all((ROOT / n).is_file() for n in names), sorted(n for n in names if not (ROOT / n).is_file())
