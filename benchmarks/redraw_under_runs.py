"""Slider redraws while fine-tunes run: runs in the server's threads vs in worker processes, side by side.

For each executor (``thread``, ``process``) a fresh server (``PEFT_EXPLORER_EXECUTOR``) on 127.0.0.1; two
browser sessions start a fine-tune each on minilm (LoRA, ``--steps`` steps: both of the server's run slots
busy), and once both are training a third session moves the playground's rank slider ``--moves`` times on
tiny-bert, timing each redraw (key press until the page shows the count for the new rank).  Redraws that
happen after a run ended are left out (counted as ``late``).  The same sessions, model, steps and moves for
both executors; the report gives p50/p95 per executor and the ratios process / thread.

Run: ``python -m benchmarks.redraw_under_runs [--steps 300] [--moves 12]``
(writes ``benchmarks/results/redraw_under_runs.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "redraw_under_runs.json"
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def pct(xs, q):
    """The q-quantile with linear interpolation between the sorted values (as numpy's default)."""
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def one(executor: str, steps: int, moves: int) -> dict:
    from playwright.sync_api import sync_playwright

    from explorer.models import load_model
    from explorer.views import fmt
    from explorer.views import playground as pg
    from tools.browser_page import wait_idle
    from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, serve

    loaded = load_model("tiny-bert")

    def expected(rank):
        vals = pg.side_schema("lora", "a").defaults()
        vals["a_rank"] = rank
        return fmt.count(pg.summarize(loaded, "lora", pg.side_knobs(vals, "lora", "a")).trainable)

    gen = serve(env=dict(PEFT_EXPLORER_EXECUTOR=executor, PEFT_EXPLORER_MAX_RUNS="2"))
    url = gen.__enter__().url
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            runners = []
            for i in range(2):
                page = b.new_context(viewport={"width": 1300, "height": 1800}).new_page()
                page.goto(f"{url}/Fine_tune?model=minilm&method=lora&steps={steps}&bs=16&seed={i}",
                          wait_until="domcontentloaded", timeout=60_000)
                page.get_by_role("button", name="Start").wait_for(timeout=120_000)
                wait_idle(page, 120)
                page.get_by_role("button", name="Start").first.click()
                runners.append(page)
            for page in runners:  # both training
                page.get_by_text(re.compile(rf"step [1-9][0-9]* of {steps}")).first.wait_for(timeout=180_000)
            pl = b.new_context(viewport={"width": 1300, "height": 1800}).new_page()
            pl.goto(f"{url}/Methods_playground?model=tiny-bert&m1=lora&m2=none&a_rank=1&wt=v&layer=0",
                    wait_until="domcontentloaded", timeout=60_000)
            pl.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)
            wait_idle(pl, 120)
            done_re = re.compile(rf"Finished {steps} steps")
            times, late = [], 0
            rank = 1
            for _ in range(moves):
                nxt = RANKS[(RANKS.index(rank) + 1) % len(RANKS)]
                want = expected(nxt)
                thumb = pl.locator('[data-testid="stSlider"]').filter(has_text="rank r").locator(
                    'input[type="range"], [role="slider"]').first
                thumb.focus()
                t0 = time.perf_counter()
                thumb.press("ArrowRight" if nxt > rank else "Home")
                while True:
                    m = pl.locator('[data-testid="stMetric"]').filter(has_text="trainable parameters")
                    if m.first.locator('[data-testid="stMetricValue"]').inner_text().strip() == want:
                        break
                    if time.perf_counter() - t0 > 120:
                        raise AssertionError(f"redraw to rank {nxt} took over 120 s")
                    time.sleep(0.03)
                dt = time.perf_counter() - t0
                still = all(page.get_by_text(done_re).count() == 0 for page in runners)
                (times.append(dt) if still else None)
                late += 0 if still else 1
                wait_idle(pl, 120)
                rank = nxt
            b.close()
    finally:
        gen.__exit__(None, None, None)
    return dict(executor=executor, redraws=times, late=late, p50_s=pct(times, 0.5), p95_s=pct(times, 0.95),
                max_s=max(times) if times else None, n=len(times), load_avg_1m=os.getloadavg()[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--moves", type=int, default=12)
    args = ap.parse_args(argv)
    res = {k: one(k, args.steps, args.moves) for k in ("thread", "process")}
    t, p = res["thread"], res["process"]
    res["process_over_thread"] = {k: (p[k] / t[k] if p[k] and t[k] else None) for k in ("p50_s", "p95_s", "max_s")}
    res["setting"] = dict(steps=args.steps, moves=args.moves, model_runs="minilm LoRA batch 16",
                          model_playground="tiny-bert", cpu_count=os.cpu_count(),
                          command=f"python -m benchmarks.redraw_under_runs --steps {args.steps} --moves {args.moves}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))
    for k in ("thread", "process"):
        r = res[k]
        print(f"{k:8s} redraw p50 {r['p50_s']:.2f} s  p95 {r['p95_s']:.2f} s  max {r['max_s']:.2f} s  "
              f"(n={r['n']}, late {r['late']}, load {r['load_avg_1m']:.1f})")
    print("process / thread:", {k: round(v, 3) if v else None for k, v in res["process_over_thread"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
