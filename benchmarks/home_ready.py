"""How long from starting the server to a fully drawn Home page (issue 10: within 8 s on an installed clone).

Starts ``make run`` (an installed clone; ``--no-make``: ``streamlit run app.py`` directly), polls its health endpoint, opens Home in Debian's
chromium as soon as the server answers, and waits until the page shows its count chart and its script has
finished.  Prints and writes the times (server answered, Home fully drawn), each measured from the moment the
server process was started; ``--repeat N`` starts the server N times (the first start after boot pays the
file cache; later ones show the steady state).

Run: ``python -m benchmarks.home_ready [--repeat 3]`` (writes ``benchmarks/results/home_ready.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "home_ready.json"
def once(browser, via_make: bool = True) -> dict:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = (["make", "run", f"PORT={port}", "ADDRESS=127.0.0.1"] if via_make else
           [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
            "127.0.0.1"])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, None, timeout=600, every=0.05)  # `make run` may install first: no deadline of its own
        answered = time.perf_counter() - t0
        page = browser.new_page(viewport={"width": 1440, "height": 1700})
        page.goto(url, wait_until="domcontentloaded")
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
        page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)
        while page.locator('[data-testid="stStatusWidget"]').count() and \
                page.locator('[data-testid="stStatusWidget"]').first.is_visible():
            time.sleep(0.05)
        drawn = time.perf_counter() - t0
        page.close()
        return dict(server_answered_s=round(answered, 2), home_drawn_s=round(drawn, 2))
    finally:
        os.killpg(proc.pid, 15)  # make and the server it started
        proc.wait(timeout=20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-make", action="store_true", help="start streamlit directly instead of `make run`")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        runs = [once(b, via_make=not args.no_make) for _ in range(max(1, args.repeat))]
        b.close()
    out = dict(started_with="python -m streamlit run app.py" if args.no_make else "make run (an installed clone)",
               runs=runs, median_home_drawn_s=sorted(r["home_drawn_s"] for r in runs)[len(runs) // 2],
               target_s=8.0, load_average=os.getloadavg(), command="python -m benchmarks.home_ready")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
