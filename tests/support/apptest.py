"""Shared helpers for the page tests (streamlit.testing.v1.AppTest); the ``one_thread`` fixture is in
``tests/conftest.py``."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def page_app(path: str, timeout: float = 120) -> AppTest:
    """An AppTest of one page as the server runs it: through the router (``app.py``, which draws the sidebar and
    the modes), not run yet.  ``path``: the page file (absolute, or relative to the repository)."""
    rel = Path(path).resolve().relative_to(ROOT).as_posix() if Path(path).is_absolute() else path
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    if rel != "app.py":
        at.switch_page(rel)
    return at


def open_page(path: str, timeout: float = 120, **params) -> AppTest:
    """Run a page once (through the router) with the given URL parameters."""
    at = page_app(path, timeout)
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


def stop_all_runs(timeout: float = 30.0) -> None:
    """Cancel every queued and running job of the server's queue and wait until none runs."""
    from explorer.workshop.jobs import default_queue

    q = default_queue()
    q.cancel_all()
    deadline = time.time() + timeout
    while q.stats()["running"] and time.time() < deadline:
        time.sleep(0.1)
