"""Browser test: session folders are cleaned up in the running app (``explorer.workshop.sessions``'s janitor).

The real server starts with its own sessions folder and short periods (a sweep every second, a 3 s grace).
Measured here: a folder left from before the start is removed when the first page loads; a folder nobody
holds that is younger than the age limit stays; the open page's own folder is kept (and touched) while the page
is open, however old it looks; once the page is closed its folder is removed within the grace and a sweep.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, page_errors, streamlit_server, wait_idle

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is absent (install it with `make browser`: Debian's chromium)")]

GRACE_S = 3.0


def _old_folder(root: Path, sid: str, age_s: float) -> Path:
    d = root / sid
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    (d / "history.json").write_text('{"format": "peft-explorer-history", "version": 1, "runs": []}')
    t = time.time() - age_s
    os.utime(d, (t, t))
    return d


def _wait(cond, timeout: float) -> float | None:
    """Seconds until ``cond()`` held, or None after ``timeout``."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.1)
    return None


def test_the_janitor_removes_ended_sessions_folders_in_the_app(browser, tmp_path):
    root = tmp_path / "sessions"
    stale = _old_folder(root, "a" * 32, 2 * 86400)  # from before the start, two days untouched
    recent = _old_folder(root, "b" * 32, 3600)  # nobody holds it, an hour old: within the day
    env = dict(PEFT_EXPLORER_SESSIONS=str(root), PEFT_EXPLORER_SESSION_SWEEP_S="1",
               PEFT_EXPLORER_SESSION_GRACE_S=str(GRACE_S))
    with streamlit_server(env, log_name="browser_sessions_server.log") as url:
        time.sleep(2.5)
        assert stale.exists()  # the janitor starts with the server's first page
        ctx = browser.new_context(viewport={"width": 1200, "height": 1400})
        page = ctx.new_page()
        try:
            page.goto(f"{url}/Compare", wait_until="domcontentloaded")
            page.wait_for_url(re.compile(r"sid=[0-9a-f]{32}"), timeout=90_000)
            wait_idle(page, 90)
            assert page_errors(page) == []
            took = _wait(lambda: not stale.exists(), 10)
            assert took is not None, "the stale folder was not removed after the first page loaded"
            sid = re.search(r"sid=([0-9a-f]{32})", page.url).group(1)
            # the open page's folder, as its first run or upload makes it, made to look an hour old
            own = _old_folder(root, sid, 3600)
            time.sleep(GRACE_S + 2.5)  # more than the grace, several sweeps
            assert own.exists() and time.time() - own.stat().st_mtime < 3, "an open page's folder must be kept"
            assert recent.exists()
        finally:
            ctx.close()  # the tab closes: the page session ends
        t_closed = time.time()
        gone = _wait(lambda: not own.exists(), 30)
        assert gone is not None, "the closed page's folder was not removed"
        assert gone >= GRACE_S - 1.5  # not before the grace (1 s sweeps; mtime from the last sweep that saw it)
        assert recent.exists()
        print(f"\nstale folder removed {took:.1f} s after the first page loaded; the closed page's folder "
              f"{time.time() - t_closed:.1f} s after its tab closed (grace {GRACE_S:g} s, sweep 1 s)")
