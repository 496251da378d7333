"""Shared helpers for the page tests (streamlit.testing.v1.AppTest)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def open_page(path: str, timeout: float = 120, **params) -> AppTest:
    """Run a page once with the given URL parameters."""
    at = AppTest.from_file(path, default_timeout=timeout)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    return at


def no_problem(at: AppTest):
    """No exception and no error box on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def qp(at: AppTest, key: str) -> str:
    """The current value of a URL parameter."""
    v = at.query_params[key]
    return v[-1] if isinstance(v, list) else v


def metric(at: AppTest, label: str) -> str:
    """The value of the metric with this label."""
    return next(m.value for m in at.metric if m.label == label)
