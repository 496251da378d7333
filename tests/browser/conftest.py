"""Fixtures of the browser layer: one real server (``make run``'s settings) for the whole session, shared by every
browser module that asks for it (a module that needs other settings starts its own server with
``tests.support.browser.streamlit_server``), and a headless chromium per module: playwright's sync API keeps its
event loop running while it is open, so a chromium kept for the session would make every later ``asyncio.run``
(the load and service layers' headless participants) fail."""

from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM, LAUNCH_ARGS, streamlit_server


@pytest.fixture(scope="session")
def server():
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="module")
def process_server():
    """The dashboard as `make run` starts it, runs in worker processes (the default executor): one per module that
    asks for it (the lessons and the presets)."""
    with streamlit_server(env_extra=dict(PEFT_EXPLORER_EXECUTOR="process"), log_name="process_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()
