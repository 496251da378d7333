"""Lessons as a teacher walks them, in the real server and Debian's chromium (playwright):

- every bundled model and every method at its default knobs on the Methods playground, each once (two methods per
  page): no error box (every model x every method: ``tests/core/test_defaults.py``, in AppTest);
- the default Fine-tune run (no settings at all) learns: held-out accuracy >= 85 % at its default steps;
- "Try your model" after a run.

Every preset of every page: ``test_browser_presets.py``.  The server is the browser layer's ``process_server`` (runs
in worker processes, as `make run` starts it).
"""

from __future__ import annotations

import re
import time

import pytest

from explorer.methods import METHODS
from tests.support.browser import CHROMIUM, fresh_page, page_errors, screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                                      reason="Debian's chromium is absent (make browser)")]

MODELS = ("minilm", "smollm2-135m", "tiny-bert", "tiny-llama")


def test_every_model_and_method_at_defaults_on_the_playground(process_server, browser):  # noqa: F811
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
            page.goto(f"{process_server}/Methods_playground?model={model}&m1={m1}&m2={m2}",
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


def test_default_fine_tune_run_learns(process_server, browser):  # noqa: F811
    """No settings at all (minilm, LoRA, colour-shape, the default steps): accuracy >= 85 % at the end."""
    from explorer.engine.config import TrainConfig

    ctx, page = fresh_page(browser, 2200)
    try:
        page.goto(f"{process_server}/Fine_tune", wait_until="domcontentloaded", timeout=30_000)
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


def test_try_your_model_after_a_run(process_server, browser):  # noqa: F811
    """After a run: type a sentence, both models answer side by side (class probabilities in a table)."""
    ctx, page = fresh_page(browser, 2600)
    try:
        page.goto(f"{process_server}/Fine_tune?model=tiny-bert&task=colour-shape-easy&method=lora&steps=6&bs=8",
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
