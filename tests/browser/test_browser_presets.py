"""Every lesson preset as a teacher loads it, in the real server and Debian's chromium (playwright): picked and loaded
in the sidebar of a fresh session, no error, the page shows the preset's method and knobs, and (Fine-tune, Compare)
Start runs exactly what is shown.  The server is the browser layer's ``process_server`` (runs in worker processes, as
`make run` starts it).
"""

from __future__ import annotations

import re

import pytest

from explorer.methods import METHODS
from explorer.workshop.presets import for_page
from tests.support.browser import CHROMIUM, fresh_page, page_errors, screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                                      reason="Debian's chromium is absent (make browser)")]


def load_preset(page, name: str) -> None:
    """Pick ``name`` in the sidebar's preset box and press "Load this preset", as a teacher does."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
        has=page.locator("input[aria-label='Preset'], label:has-text('Preset')"))
    target = box.first if box.count() else page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').last
    target.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name="Load this preset").click()
    wait_idle(page, timeout=120)


def open_with_preset(page, url: str, path: str, name: str, ready) -> None:
    """A fresh page at ``path``; pick and load the preset ``name`` in its sidebar; wait for ``ready(page)``."""
    page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=30_000)
    ready(page).wait_for(timeout=90_000)
    wait_idle(page)
    load_preset(page, name)
    ready(page).wait_for(timeout=90_000)
    wait_idle(page, timeout=120)


def first_metric(page):
    return page.locator('[data-testid="stMetricValue"]').first


@pytest.mark.parametrize("name", list(for_page("playground")))
def test_playground_preset_from_a_fresh_session(process_server, browser, name):  # noqa: F811
    p = for_page("playground")[name]
    ctx, page = fresh_page(browser, 2600)
    try:
        open_with_preset(page, process_server, "Methods_playground", name, first_metric)
        assert not page_errors(page), (name, page_errors(page))
        # each side's heading names its method
        assert page.get_by_role("heading", name=METHODS[p.values["m1"]].label, exact=True).count() >= 1
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert f"Lesson: {name}" in body
        assert "rank ≤ 0" not in body and "nothing in" not in body  # the lesson opens where something trains
        assert f"m1={p.values['m1']}" in page.url
        screenshot(page, "lesson_pg_" + re.sub(r"\W+", "_", name).strip("_").lower())
    finally:
        ctx.close()


@pytest.mark.parametrize("name", list(for_page("finetune")))
def test_finetune_preset_starts_what_it_shows(process_server, browser, name):  # noqa: F811
    p = for_page("finetune")[name]
    ctx, page = fresh_page(browser, 2000)
    try:
        open_with_preset(page, process_server, "Fine_tune", name, lambda pg: pg.get_by_role("button", name="Start"))
        assert not page_errors(page), (name, page_errors(page))
        label = METHODS[p.values["method"]].label
        for key, val in p.values.items():  # every setting of the preset is in the URL the page wrote
            shown = {True: "1", False: "0"}.get(val, str(val))
            assert re.search(rf"[?&]{key}={re.escape(shown).replace(',', '(,|%2C)')}(&|$)", page.url), (key, page.url)
        page.get_by_role("button", name="Start").click()
        # the run that starts is the one shown: its title names the preset's method, model and task
        title = f"{label} · {p.values['model']} · {p.values['task']}"
        page.get_by_text(title, exact=False).first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("Stopped", exact=False).first.wait_for(timeout=120_000)
        wait_idle(page)
        assert not page_errors(page), (name, page_errors(page))
        hist = page.locator('[data-testid="stMain"]').inner_text()
        assert title in hist
    finally:
        ctx.close()


@pytest.mark.parametrize("name", list(for_page("compare")))
def test_compare_lesson_runs_both(process_server, browser, name):  # noqa: F811
    p = for_page("compare")[name]
    ctx, page = fresh_page(browser, 2000)
    try:
        open_with_preset(page, process_server, "Compare", name, lambda pg: pg.get_by_text("Compare runs").first)
        page.get_by_role("button", name=f"Run all {len(p.runs)}").click()
        first = f"{METHODS[p.runs[0]['method']].label} · {p.runs[0]['model']} · {p.runs[0]['task']}"
        page.get_by_text(re.compile(rf"run 1 of {len(p.runs)}: {re.escape(first)}")).first.wait_for(timeout=60_000)
        body = page.locator('[data-testid="stMain"]').inner_text()
        for r in p.runs:  # the lesson card names every run it starts
            assert f"{METHODS[r['method']].label} on {r['model']}" in body
        page.get_by_role("button", name="Stop the sweep").click()
        page.get_by_text("Sweep stopped", exact=False).first.wait_for(timeout=120_000)
        assert not page_errors(page), (name, page_errors(page))
    finally:
        ctx.close()


def _memory_presets():
    from explorer.views.memory_views import PRESETS

    return PRESETS


@pytest.mark.parametrize("name", list(_memory_presets()))
def test_memory_calculator_preset_from_a_fresh_session(process_server, browser, name):  # noqa: F811
    p = _memory_presets()[name]
    ctx, page = fresh_page(browser, 2600)
    try:
        open_with_preset(page, process_server, "Memory_calculator", name, first_metric)
        assert not page_errors(page), (name, page_errors(page))
        for key in ("model", "prec", "batch", "seq"):  # the preset's settings are what the page now holds
            if key in p.values:
                assert re.search(rf"[?&]{key}={re.escape(str(p.values[key]))}(&|$)", page.url), (key, page.url)
    finally:
        ctx.close()
