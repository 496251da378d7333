"""README screenshots of Fine-tune and Compare with real minilm runs (Tied-LoRA TL6, then LoRA).

    .venv/bin/python tools/readme_screenshots.py     (about a minute on 2 CPU cores)

The browser test refreshes the other pages' screenshots (UPDATE_SCREENSHOTS=1); this one trains
the real pretrained model, so its pictures show learning curves rather than a random tiny model.
"""
import re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from playwright.sync_api import sync_playwright  # noqa: E402

from tools.browser_page import page_errors, wait_idle  # noqa: E402
from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

SHOTS = ROOT / "assets" / "screenshots"  # the README's copies


def screenshot(page, name: str) -> None:
    page.evaluate("""() => { for (const el of document.querySelectorAll('*')) { if (el.scrollTop > 0) el.scrollTop = 0; } }""")
    time.sleep(0.3)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


with serve(timeout=60) as srv:
    base = srv.url
    with sync_playwright() as p:
        br = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = br.new_context(viewport={"width": 1440, "height": 2300})
        page = ctx.new_page()
        def run(url, steps):
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("button", name="Start").wait_for(timeout=120_000)
            wait_idle(page)
            page.get_by_role("button", name="Start").first.click()
            page.get_by_text(f"Finished {steps} steps", exact=False).first.wait_for(timeout=400_000)
            wait_idle(page)
        run(f"{base}/Fine_tune?model=minilm&task=colour-shape&method=tied-lora&steps=120&bs=16", 120)
        sid = re.search(r"sid=([0-9a-f]+)", page.url)
        print("url", page.url)
        q = f"&sid={sid.group(1)}" if sid else ""
        run(f"{base}/Fine_tune?model=minilm&task=colour-shape&method=lora&steps=120&bs=16{q}", 120)
        print("errors", page_errors(page))
        screenshot(page, "fine_tune")
        page.get_by_role("link", name="Compare").first.click()
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
        wait_idle(page)
        time.sleep(2)
        page.set_viewport_size({"width": 1440, "height": 2600})
        screenshot(page, "compare")
        print("errors", page_errors(page))
        br.close()
