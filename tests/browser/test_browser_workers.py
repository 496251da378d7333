"""Runs in worker processes, in the real server: a worker killed mid-run ends only its run ("worker died"),
the other session's run finishes, and the server keeps serving (the next run gets a fresh worker)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, page_errors, streamlit_server, wait_idle

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (make browser)")]


@pytest.fixture(scope="module")
def server():
    with streamlit_server(env_extra=dict(PEFT_EXPLORER_EXECUTOR="process", PEFT_EXPLORER_DEBUG="1",
                                         PEFT_EXPLORER_MAX_RUNS="2"), log_name="workers_server.log") as url:
        yield url


def status(browser, url) -> dict:
    ctx = browser.new_context(viewport={"width": 1200, "height": 2400})
    try:
        page = ctx.new_page()
        page.goto(url + "/", wait_until="domcontentloaded", timeout=60_000)
        code = page.locator('[data-testid="stCode"]').filter(has_text='"base_models"')
        code.first.wait_for(timeout=90_000)
        return json.loads(code.first.locator("code").inner_text())
    finally:
        ctx.close()


def start(page, url, steps, model="tiny-bert"):
    page.goto(f"{url}/Fine_tune?model={model}&method=lora&steps={steps}&bs=16", wait_until="domcontentloaded",
              timeout=60_000)
    page.get_by_role("button", name="Start").wait_for(timeout=90_000)
    wait_idle(page)
    page.get_by_role("button", name="Start").first.click()


def test_a_killed_worker_ends_only_its_run(server, browser):
    a_ctx = browser.new_context(viewport={"width": 1300, "height": 2000})
    b_ctx = browser.new_context(viewport={"width": 1300, "height": 2000})
    try:
        a, b = a_ctx.new_page(), b_ctx.new_page()
        start(a, server, 500, model="minilm")  # about a minute of training: time to kill its worker
        a.get_by_text(re.compile(r"step [1-9][0-9]* of 500")).first.wait_for(timeout=120_000)
        start(b, server, 60)
        # which worker runs session A's 5000-step run: the debug panel says
        deadline, victim = time.time() + 60, None
        while victim is None and time.time() < deadline:
            st = status(browser, server)
            assert st["executor"]["kind"] == "process"
            victim = next((w["pid"] for w in st["executor"]["workers"] if "minilm, 500 steps" in w.get("current", "")),
                          None)
        assert victim is not None, st
        os.kill(victim, signal.SIGKILL)
        a.get_by_text("worker died", exact=False).first.wait_for(timeout=60_000)
        b.get_by_text("Finished 60 steps", exact=False).first.wait_for(timeout=240_000)
        wait_idle(b)
        assert not page_errors(b), page_errors(b)
        # the server keeps serving: session A runs again, on a fresh worker
        start(a, server, 20)
        a.get_by_text("Finished 20 steps", exact=False).first.wait_for(timeout=180_000)
        st = status(browser, server)
        assert victim not in [w["pid"] for w in st["executor"]["workers"]]
        assert st["executor"]["died"] == 1
    finally:
        a_ctx.close()
        b_ctx.close()
