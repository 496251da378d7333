"""Marks a layer's slow tests from its conftest.py, by name (``make test-fast`` leaves out what is marked ``slow``;
``make test`` runs everything)."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_slow(items, folder: Path, slow: set[str]) -> None:
    """Add the ``slow`` mark to every collected test of ``folder`` named in ``slow`` as ``<file>::<test function>``
    (every parameter of it)."""
    for item in items:
        if item.path.is_relative_to(folder) and f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in slow:
            item.add_marker(pytest.mark.slow)


def unknown(folder: Path, slow: set[str]) -> list[str]:
    """The names in ``slow`` that are no test function of ``folder`` (a test renamed or moved)."""
    import ast

    known = set()
    for p in folder.glob("test_*.py"):
        tree = ast.parse(p.read_text("utf-8"))
        known |= {f"{p.name}::{n.name}" for n in tree.body if isinstance(n, ast.FunctionDef)}
    return sorted(slow - known)
