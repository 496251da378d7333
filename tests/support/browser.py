"""Helpers of the browser tests (the real server in Debian's chromium, driven by playwright).

The ``server`` and ``browser`` fixtures (one of each for the whole session) are in ``tests/browser/conftest.py``;
a test that needs a server of its own (other settings) starts it with :func:`streamlit_server`.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from tools.browser_page import page_errors, wait_idle  # noqa: F401 - re-exported for the browser tests
from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, ServerDidNotStart, serve

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_ARGS = CHROMIUM_ARGS
# screenshots go to tests/artifacts/ (ignored by git); UPDATE_SCREENSHOTS=1 refreshes the README's copies
SHOTS = ROOT / "assets" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ROOT / "tests" / "artifacts" / "screenshots"
# every browser module: marked, and skipped where Debian's chromium is absent
BROWSER_MARKS = [pytest.mark.browser,
                 pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} is absent (install it with `make browser`: Debian's chromium)")]


@contextlib.contextmanager
def streamlit_server(env_extra: dict | None = None, args_extra: tuple = (), log_name: str = "browser_server.log"
                     ) -> Iterator[str]:
    """The real server on a free port of 127.0.0.1 (``tools.streamlit_server.serve``, as ``make run`` starts it);
    yields its URL.  Its output goes to ``.pytest_cache/<log_name>`` where that folder exists."""
    log = ROOT / ".pytest_cache" / log_name if (ROOT / ".pytest_cache").exists() else None
    started = False
    try:
        with serve(env=env_extra, args=tuple(args_extra), log=log, timeout=60) as srv:
            started = True
            yield srv.url
    except ServerDidNotStart as e:
        if started:
            raise
        pytest.fail(str(e))


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]  # WCAG 2.0 and 2.1, levels A and AA


def axe_serious(page) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now (one line each)."""
    from axe_playwright_python.sync_playwright import Axe

    res = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS},
                                   "resultTypes": ["violations"]}).response
    return [f"{v['id']} ({v['impact']}, {len(v['nodes'])}×): {v['nodes'][0]['failureSummary'][:200]} "
            f"at {v['nodes'][0]['html'][:120]}" for v in res["violations"] if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str) -> None:
    page.evaluate("""() => { for (const el of document.querySelectorAll('*')) { if (el.scrollTop > 0) el.scrollTop = 0; } }""")
    time.sleep(0.3)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


# the keyboard: which element has the focus, and a page's skip link
FOCUSED = """() => { const e = document.activeElement;
  return [e.tagName, e.getAttribute('aria-label') || e.innerText || e.getAttribute('aria-valuetext') || ''] }"""


def tab_to(page, pattern: str, limit: int) -> int:
    """Press Tab until the focused element's text contains ``pattern``; the number of presses."""
    for n in range(1, limit + 1):
        page.keyboard.press("Tab")
        if pattern in page.evaluate(FOCUSED)[1]:
            return n
    raise AssertionError(f"{pattern!r} is not among the first {limit} Tab stops")


def skip_to(page, target: str) -> int:
    """From the top of the page: Tab to the skip link, Enter, Tab once: the key presses used (a rerun that redraws
    the page under the focus, which a loaded machine makes likelier, starts it again)."""
    for _ in range(3):
        wait_idle(page)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")  # the focus starts at the top
        n = tab_to(page, f"Skip to {target}", limit=4)
        page.keyboard.press("Enter")
        if page.evaluate("() => document.activeElement.id") != "main-control":
            continue
        page.keyboard.press("Tab")
        n += 2
        if page.evaluate(FOCUSED)[1].startswith("Help for"):  # a control's "?" comes just before the control
            page.keyboard.press("Tab")
            n += 1
        return n
    raise AssertionError(f"the skip link to {target} did not move the focus to the page's main control")


def fresh_page(browser, height: int = 1800):
    """A new browser context (a fresh session: no cookies, no history) and its page, 1440 px wide."""
    ctx = browser.new_context(viewport={"width": 1440, "height": height})
    return ctx, ctx.new_page()
