"""No dead code in the core, the benchmarks or the tools (issue 24): ``vulture`` over the repository, reporting what
it finds in ``explorer/``, ``benchmarks/`` and ``tools/`` (a name used only by pages, helpers or tests counts as used).  Names it
cannot see used are listed, with their reason, in ``tests/architecture/vulture_allowlist.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORTED = ("explorer/", "benchmarks/", "tools/")


def vulture(root: Path, *paths: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "vulture", *paths, "--min-confidence", "60"], cwd=root,
                         capture_output=True, text=True)
    assert out.returncode in (0, 3), out.stderr  # 3: vulture found dead code
    return out.stdout.splitlines()


def test_no_dead_code():
    paths = ["explorer", "benchmarks", "pages", "app.py", "ui", "tools", "tests",
             "tests/architecture/vulture_allowlist.py"]
    found = [line for line in vulture(ROOT, *paths) if line.startswith(REPORTED)]
    assert not found, ("dead code (remove it; list it in tests/architecture/vulture_allowlist.py only when a library or a name "
                       "in a string uses it):\n" + "\n".join(found))


def test_the_check_finds_dead_code(tmp_path):
    """The check is not blind: an unused function and an unused constant are found, a used one is not."""
    (tmp_path / "explorer").mkdir()
    (tmp_path / "explorer" / "m.py").write_text("LIMIT = 3\nUNUSED = 4\n\n\ndef used():\n    return LIMIT\n\n\n"
                                                "def unused():\n    return used()\n")
    found = vulture(tmp_path, "explorer")
    assert [line.split(": ", 1)[1] for line in found] == ["unused variable 'UNUSED' (60% confidence)",
                                                          "unused function 'unused' (60% confidence)"]


def dotted_names(text: str) -> set[str]:
    """``explorer.a.b`` names written in a file (code, comments, docstrings), less mutmut's mutant names."""
    import re

    names = {m.rstrip(".") for m in re.findall(r"\bexplorer(?:\.[A-Za-z_][A-Za-z0-9_]*)+\.?", text)}
    return {n for n in names if "__mutmut_" not in n and not re.search(r"\.x(_|ǁ|$)", n)}


def resolves(name: str) -> bool:
    """The longest importable module of ``name``, then attributes for the rest."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_names_in_comments_and_docs_exist():
    """Every ``explorer.…`` name written in the core, the benchmarks, the pages, the helpers and the README points
    to a module or an attribute that exists (a name left behind by a move is a stale pointer)."""
    files = [*ROOT.glob("explorer/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("pages/*.py"),
             *ROOT.glob("ui/*.py"), ROOT / "app.py", ROOT / "README.md"]
    stale = sorted(f"{p.relative_to(ROOT)}: {n}" for p in files for n in dotted_names(p.read_text("utf-8"))
                   if not resolves(n))
    assert not stale, "names that do not exist:\n" + "\n".join(stale)


def test_the_name_check_finds_a_stale_pointer():
    assert dotted_names("see ``explorer.methods.base.KnobContext``; explorer.sparse.x_linear_from__mutmut_5.") == \
        {"explorer.methods.base.KnobContext"}
    assert not resolves("explorer.methods.base.KnobContext") and resolves("explorer.methods.facts.KnobContext")
    assert resolves("explorer.methods.lora.METHOD.label") and not resolves("explorer.nowhere")
