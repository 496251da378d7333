"""The main flows by keyboard alone, in chromium: each page's skip link ("Skip to Start", "Skip to the method's
knobs", "Skip to Compute gradients") is among the first Tab stops, and the control it names is the next one.
Fine-tune trains a run, the playground's rank moves, the SMT inspector computes gradients: keys only."""

from __future__ import annotations

import pytest

from tests.support.browser import FOCUSED, page_errors, skip_to, wait_idle

def open_page(browser, url: str):  # noqa: F811 - the fixture's object
    ctx = browser.new_context(viewport={"width": 1440, "height": 1400})
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=30_000)
    page.wait_for_selector('[data-testid="stMarkdown"]', timeout=60_000)
    wait_idle(page, timeout=120)
    return ctx, page


def test_fine_tune_start_and_finish_by_keyboard(server, browser):  # noqa: F811
    ctx, page = open_page(browser, f"{server}/Fine_tune?model=tiny-bert&method=lora&steps=6&bs=8")
    try:
        presses = skip_to(page, "Start")
        tag, text = page.evaluate(FOCUSED)
        assert tag == "BUTTON" and "Start" in text and presses <= 6, (tag, text, presses)
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Stop").first.wait_for(timeout=60_000)  # the page's own Stop, while it runs
        # Streamlit's status widget (top right) shows a Stop of its own while a slow rerun goes on, which stops the
        # script, not the run: the page hides it.  Its markup, as Streamlit draws it, must stay invisible here.
        page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
            '<div data-testid="stStatusWidget"><button id="st-own-stop">Stop</button></div>')""")
        assert not page.locator("#st-own-stop").is_visible()
        assert page.get_by_role("button", name="Stop").count() == 1
        page.get_by_text("Finished 6 steps", exact=False).first.wait_for(timeout=120_000)
        wait_idle(page)
        assert not page_errors(page), page_errors(page)
    finally:
        ctx.close()


def test_playground_rank_by_keyboard(server, browser):  # noqa: F811
    ctx, page = open_page(browser, f"{server}/Methods_playground?model=tiny-bert&m1=lora&m2=none")
    try:
        before = page.locator('[data-testid="stMetricValue"]').first.inner_text()
        presses = skip_to(page, "the method's knobs")
        assert page.evaluate(FOCUSED)[1] == "rank r" and presses <= 6, (page.evaluate(FOCUSED), presses)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("(b) => document.querySelector('[data-testid=stMetricValue]').innerText !== b",
                               arg=before, timeout=60_000)
        wait_idle(page)
        assert not page_errors(page), page_errors(page)
    finally:
        ctx.close()


def test_smt_inspector_compute_by_keyboard(server, browser):  # noqa: F811
    # 150 warm-up steps: above what starts by itself, so the first view waits for the key
    ctx, page = open_page(browser, f"{server}/SMT_block_inspector?model=tiny-llama&ws=150")
    try:
        presses = skip_to(page, "Compute gradients")
        tag, text = page.evaluate(FOCUSED)
        assert tag == "BUTTON" and "Compute gradients" in text and presses <= 6, (tag, text, presses)
        page.keyboard.press("Enter")
        page.get_by_text("selected blocks", exact=False).first.wait_for(timeout=120_000)
        wait_idle(page)
        assert not page_errors(page), page_errors(page)
    finally:
        ctx.close()


pytestmark = [pytest.mark.browser]
