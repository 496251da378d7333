"""Fixtures of the browser layer: one real server (``make run``'s settings) and one headless chromium for the
whole session, shared by every browser module that asks for them (a module that needs other settings starts its
own server with ``tests.support.browser.streamlit_server``)."""

from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM, LAUNCH_ARGS, streamlit_server


@pytest.fixture(scope="session")
def server():
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()
