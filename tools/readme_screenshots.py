"""README screenshots of Fine-tune and Compare with real minilm runs (Tied-LoRA TL6, then LoRA).

    .venv/bin/python tests/readme_screenshots.py     (about a minute on 2 CPU cores)

The browser test refreshes the other pages' screenshots (UPDATE_SCREENSHOTS=1); this one trains
the real pretrained model, so its pictures show learning curves rather than a random tiny model.
"""
import os, re, subprocess, sys, time, urllib.request
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT + "/tests"); sys.path.insert(0, ROOT)
os.environ["UPDATE_SCREENSHOTS"] = "1"
import test_browser as tb  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
port = tb._free_port()
env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)
proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                         "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
base = f"http://127.0.0.1:{port}"
try:
    for _ in range(120):
        try:
            urllib.request.urlopen(base + "/_stcore/health", timeout=1); break
        except Exception: time.sleep(0.5)
    with sync_playwright() as p:
        br = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=tb.LAUNCH_ARGS)
        ctx = br.new_context(viewport={"width": 1440, "height": 2300})
        page = ctx.new_page()
        def run(url, steps):
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("button", name="Start").wait_for(timeout=120_000)
            tb.wait_idle(page)
            tb._click(page, "Start")
            page.get_by_text(f"Finished {steps} steps", exact=False).first.wait_for(timeout=400_000)
            tb.wait_idle(page)
        run(f"{base}/Fine_tune?model=minilm&task=colour-shape&method=tied-lora&steps=120&bs=16", 120)
        sid = re.search(r"sid=([0-9a-f]+)", page.url)
        print("url", page.url)
        q = f"&sid={sid.group(1)}" if sid else ""
        run(f"{base}/Fine_tune?model=minilm&task=colour-shape&method=lora&steps=120&bs=16{q}", 120)
        print("errors", tb.page_errors(page))
        tb.screenshot(page, "fine_tune")
        page.get_by_role("link", name="Compare").first.click()
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
        tb.wait_idle(page)
        time.sleep(2)
        page.set_viewport_size({"width": 1440, "height": 2600})
        tb.screenshot(page, "compare")
        print("errors", tb.page_errors(page))
        br.close()
finally:
    proc.kill()
