"""Lessons as a teacher walks them, in the real server and Debian's chromium (playwright).

- every lesson preset of every page, picked and loaded in the sidebar of a fresh session: no error, the page
  shows the preset's method and knobs, and (Fine-tune, Compare) Start runs exactly what is shown;
- every bundled model and every method at its default knobs on the Methods playground, each once (two methods per
  page): no error box (every model x every method: ``tests/test_defaults.py``, in AppTest);
- the default Fine-tune run (no settings at all) learns: held-out accuracy >= 85 % at its default steps.
"""

from __future__ import annotations

import re
import time

import pytest

from explorer.methods import METHODS
from explorer.workshop.presets import for_page
from tests.support.browser import CHROMIUM, page_errors, screenshot, streamlit_server, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                                      reason="Debian's chromium is absent (make browser)")]

PAGE_PATHS = {"playground": "Methods_playground", "finetune": "Fine_tune", "compare": "Compare"}
MODELS = ("minilm", "smollm2-135m", "tiny-bert", "tiny-llama")


@pytest.fixture(scope="module")
def server():
    """The dashboard as `make run` starts it: runs execute in worker processes (the default executor)."""
    with streamlit_server(env_extra=dict(PEFT_EXPLORER_EXECUTOR="process"), log_name="lessons_server.log") as url:
        yield url


def fresh_page(browser, height=1800):  # noqa: F811 - the fixture imported above
    ctx = browser.new_context(viewport={"width": 1440, "height": height})
    return ctx, ctx.new_page()


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


def open_with_preset(page, server: str, path: str, name: str, ready) -> None:
    """A fresh page at ``path``; pick and load the preset ``name`` in its sidebar; wait for ``ready(page)``."""
    page.goto(f"{server}/{path}", wait_until="domcontentloaded", timeout=30_000)
    ready(page).wait_for(timeout=90_000)
    wait_idle(page)
    load_preset(page, name)
    ready(page).wait_for(timeout=90_000)
    wait_idle(page, timeout=120)


def first_metric(page):
    return page.locator('[data-testid="stMetricValue"]').first


@pytest.mark.parametrize("name", list(for_page("playground")))
def test_playground_preset_from_a_fresh_session(server, browser, name):  # noqa: F811
    p = for_page("playground")[name]
    ctx, page = fresh_page(browser, 2600)
    try:
        open_with_preset(page, server, "Methods_playground", name, first_metric)
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
def test_finetune_preset_starts_what_it_shows(server, browser, name):  # noqa: F811
    p = for_page("finetune")[name]
    ctx, page = fresh_page(browser, 2000)
    try:
        open_with_preset(page, server, "Fine_tune", name, lambda pg: pg.get_by_role("button", name="Start"))
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
def test_compare_lesson_runs_both(server, browser, name):  # noqa: F811
    p = for_page("compare")[name]
    ctx, page = fresh_page(browser, 2000)
    try:
        open_with_preset(page, server, "Compare", name, lambda pg: pg.get_by_text("Compare runs").first)
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


def test_every_model_and_method_at_defaults_on_the_playground(server, browser):  # noqa: F811
    """Each bundled model and every method at its defaults, two methods per page (side A and the comparison's
    side B, each at its own defaults), each model and each pair once: both sides draw their metrics and pictures,
    no error box.  Every model x every pair: tests/test_defaults.py (AppTest, the same checks without drawing)."""
    ctx, page = fresh_page(browser, 2000)
    bad = []
    names = list(METHODS)
    pairs = [(names[i], names[i + 1] if i + 1 < len(names) else "none") for i in range(0, len(names), 2)]
    n = max(len(MODELS), len(pairs))
    try:
        for model, (m1, m2) in ((MODELS[i % len(MODELS)], pairs[i % len(pairs)]) for i in range(n)):
            t0 = time.time()
            page.goto(f"{server}/Methods_playground?model={model}&m1={m1}&m2={m2}",
                      wait_until="domcontentloaded", timeout=30_000)
            page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=180_000)
            wait_idle(page, timeout=180)
            errs = page_errors(page)
            counts = page.locator('[data-testid="stMetric"]').filter(has_text="trainable parameters").count()
            if errs or counts != (2 if m2 != "none" else 1):
                bad.append((model, m1, m2, errs, f"{counts} trainable counts shown"))
            print(f"{model} {m1} + {m2}: {time.time() - t0:.1f} s")
        assert not bad, bad
    finally:
        ctx.close()


def test_default_fine_tune_run_learns(server, browser):  # noqa: F811
    """No settings at all (minilm, LoRA, colour-shape, the default steps): accuracy >= 85 % at the end."""
    from explorer.engine.config import TrainConfig

    ctx, page = fresh_page(browser, 2200)
    try:
        page.goto(f"{server}/Fine_tune", wait_until="domcontentloaded", timeout=30_000)
        page.get_by_role("button", name="Start").wait_for(timeout=90_000)
        wait_idle(page)
        page.get_by_role("button", name="Start").click()
        done = page.get_by_text(f"Finished {TrainConfig.steps} steps", exact=False).first
        done.wait_for(timeout=600_000)
        text = done.inner_text()
        acc = float(re.search(r"final held-out accuracy ([0-9.]+)%", text).group(1))
        assert acc >= 85.0, text
        assert "learned:" in text
        wait_idle(page)
        screenshot(page, "fine_tune_default_run")
    finally:
        ctx.close()


def _memory_presets():
    from explorer.views.memory_views import PRESETS

    return PRESETS


@pytest.mark.parametrize("name", list(_memory_presets()))
def test_memory_calculator_preset_from_a_fresh_session(server, browser, name):  # noqa: F811
    p = _memory_presets()[name]
    ctx, page = fresh_page(browser, 2600)
    try:
        open_with_preset(page, server, "Memory_calculator", name, first_metric)
        assert not page_errors(page), (name, page_errors(page))
        for key in ("model", "prec", "batch", "seq"):  # the preset's settings are what the page now holds
            if key in p.values:
                assert re.search(rf"[?&]{key}={re.escape(str(p.values[key]))}(&|$)", page.url), (key, page.url)
    finally:
        ctx.close()


def test_try_your_model_after_a_run(server, browser):  # noqa: F811
    """After a run: type a sentence, both models answer side by side (class probabilities in a table)."""
    ctx, page = fresh_page(browser, 2600)
    try:
        page.goto(f"{server}/Fine_tune?model=tiny-bert&task=colour-shape-easy&method=lora&steps=6&bs=8",
                  wait_until="domcontentloaded", timeout=30_000)
        page.get_by_role("button", name="Start").wait_for(timeout=90_000)
        wait_idle(page)
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Finished 6 steps", exact=False).first.wait_for(timeout=120_000)
        wait_idle(page)
        page.get_by_text("Try your model", exact=False).first.wait_for(timeout=30_000)
        box = page.get_by_label("Your sentence")
        box.fill("we found the big blue ring near the door.")
        page.get_by_role("button", name="Ask both").click()
        page.get_by_text("Fine-tuned:", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        assert not page_errors(page), page_errors(page)
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert re.search(r"Fine-tuned: (no|yes) \([0-9.]+%\) · base: (no|yes) \([0-9.]+%\)", body), body[-600:]
        screenshot(page, "fine_tune_try_your_model")
    finally:
        ctx.close()
