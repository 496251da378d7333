"""A dashboard page in chromium (playwright's sync API), for the browser tests and the benchmarks that drive one:
wait until the script has finished, and the errors the page shows."""

from __future__ import annotations

import time


def wait_idle(page, timeout: float = 60.0) -> None:
    """Until the script has finished (no 'running' indicator for 0.6 s)."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0 and \
            page.locator('[data-testid="stStatusWidget"]').first.is_visible()
        stale = page.locator('[data-stale="true"]').count() > 0
        if running or stale:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 0.6:
            return
        time.sleep(0.15)
    raise AssertionError("the page kept running for more than %.0f s" % timeout)


def page_errors(page) -> list[str]:
    out = [e.inner_text()[:300] for e in page.locator('[data-testid="stException"]').all()]
    for alert in page.locator('[data-testid="stAlert"]').all():
        if alert.locator('[data-testid="stAlertContentError"]').count():
            out.append(alert.inner_text()[:300])
    return out
