"""Browser test: the first upload of a fresh session, with a Windows-1252 file, on the real server in chromium.

The server starts as in ``tests/browser/test_browser.py`` (with its own sessions folder, and Streamlit's
``server.maxUploadSize`` from the project's one upload limit, as ``make run`` passes it).  A new page
goes to Fine-tune, picks "upload a file", sends a Windows-1252 CSV through the real file input; the page
must show the task summary with the detected encoding, Start must run it (tiny-bert, 4 steps), and the
run must be titled with the user's file name (never ``upload-<hex>`` or a server path).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, page_errors, streamlit_server, wait_idle

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
NAME = "avis café.csv"
# Windows-1252 bytes written by hand: 0xe9 é, 0xef ï, 0x93/0x94 “ ”
ROWS = [(b"Le caf\xe9 \xe9tait bon", b"pos"), (b"Une id\xe9e na\xefve", b"neg"), (b"Il a dit \x93super\x94", b"pos"),
        (b"Trop sal\xe9 et froid", b"neg")]
W1252 = b"text,label\r\n" + b"".join(b'"' + t + b" " + str(i).encode() + b'",' + lab + b"\r\n"
                                    for i, (t, lab) in enumerate(ROWS * 10))

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is absent (install it with `make browser`: Debian's chromium)")]


@pytest.fixture(scope="module")
def sessions_root(tmp_path_factory):
    return tmp_path_factory.mktemp("browser-sessions")


@pytest.fixture(scope="module")
def server(sessions_root):
    from explorer.workshop.security import streamlit_max_upload_mb

    with streamlit_server(dict(PEFT_EXPLORER_SESSIONS=str(sessions_root)),
                          ("--server.maxUploadSize", str(streamlit_max_upload_mb())),
                          log_name="browser_upload_server.log") as url:
        yield url


def test_first_upload_of_a_fresh_session_with_a_windows_1252_file(server, browser, sessions_root):
    ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
    page = ctx.new_page()
    try:
        page.goto(f"{server}/Fine_tune?model=tiny-bert&src=upload&steps=4&bs=4", wait_until="domcontentloaded")
        page.wait_for_selector('input[type="file"]', state="attached", timeout=90_000)
        wait_idle(page, 90)
        assert not any(d.is_dir() for d in sessions_root.iterdir())  # a fresh session: no folder made yet
        page.locator('input[type="file"]').first.set_input_files(
            files=[{"name": NAME, "mimeType": "text/csv", "buffer": W1252}])
        page.get_by_text("encoding: Windows-1252 (detected", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page, 60)
        assert page_errors(page) == []
        summary = page.get_by_text("training and", exact=False).first.inner_text()
        assert NAME in summary and "2 labels (neg, pos)" in summary and "Windows-1252" in summary
        start = page.get_by_role("button", name=re.compile("Start"))
        assert start.is_enabled()
        start.click()
        page.get_by_text("Finished 4 steps", exact=False).first.wait_for(timeout=180_000)
        wait_idle(page, 60)
        assert page_errors(page) == []
        title = page.locator("h4").filter(has_text=NAME).first.inner_text()
        assert title.endswith(f"· tiny-bert · {NAME}"), title
        body = page.locator("body").inner_text()
        assert "upload-" not in body and str(sessions_root) not in body
        stored = list(sessions_root.glob("*/uploads/upload-*.csv"))
        assert len(stored) == 1 and stored[0].read_bytes() == W1252  # the bytes the browser sent
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "fine_tune_upload.png"), full_page=True)
    finally:
        ctx.close()
