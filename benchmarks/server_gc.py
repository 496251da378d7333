"""Streamlit's gc after every script run vs none, on the real server, side by side in one run.

Streamlit calls ``gc.collect(2)`` after every script run unless ``runner.postScriptGC`` is false
(this project's ``.streamlit/config.toml`` turns it off).  With torch, transformers and plotly
loaded one full collection holds the interpreter lock for a noticeable time, and every open
Fine-tune page reruns its live panel every 0.7 s while a run is queued or going.

For each setting (``--runner.postScriptGC true`` / ``false``, the command-line flag overrides the
config file) the benchmark starts ``streamlit run app.py`` on 127.0.0.1, opens ``--pages`` Fine-tune
pages in headless chromium (tiny-bert, LoRA, ``--steps`` steps each), presses Start on every page
(the server queue runs 2 at once, the others wait in line) and measures until every page shows
"Finished" (or ``--limit`` seconds pass):

* how many runs finished, and the wall time until the last one did;
* the server process's CPU seconds over that time (psutil);
* the time one full ``gc.collect(2)`` takes in a process with the same imports and models.

Settings alternate (on, off, on, off, ...) for ``--repeat`` rounds.  Results:
``benchmarks/results/server_gc.json`` and ``.md``.

Run: ``python -m benchmarks.server_gc [--pages 6] [--steps 30] [--repeat 1] [--limit 240]``
(needs Debian's chromium: ``make browser``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
CHROMIUM = "/usr/bin/chromium"


def gc_cost(repeat: int = 5) -> float:
    """Median seconds of one gc.collect(2) with the server's imports and the cached tiny-bert + minilm."""
    import plotly.graph_objects  # noqa: F401
    import streamlit  # noqa: F401

    from explorer.views import figures, figures_runs
    from explorer.models import load_model

    load_model("tiny-bert")
    load_model("minilm")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect(2)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def start_server(post_gc: bool, sessions_dir: str):
    """The real server (``tools.streamlit_server.serve``) with Streamlit's post-script collection on or off: the
    context manager (to stop it), its process and its URL."""
    from tools.streamlit_server import serve

    cm = serve(env=dict(PEFT_EXPLORER_SESSIONS=sessions_dir, PEFT_EXPLORER_MAX_RUNS="2"),
               args=("--runner.postScriptGC", "true" if post_gc else "false"))
    srv = cm.__enter__()
    return cm, srv.proc, srv.url


def one_round(browser, post_gc: bool, pages: int, steps: int, limit: float) -> dict:
    import psutil

    with tempfile.TemporaryDirectory() as sessions_dir:
        cm, proc, url = start_server(post_gc, sessions_dir)
        ps = psutil.Process(proc.pid)
        ctxs = []
        try:
            opened = []  # one browser context (one participant) per page; the first load also loads tiny-bert
            for i in range(pages):
                ctxs.append(browser.new_context(viewport={"width": 1200, "height": 1400}))
                page = ctxs[-1].new_page()
                page.goto(f"{url}/Fine_tune?model=tiny-bert&method=lora&k_rank=8&steps={steps}&bs=8&seed={i}",
                          wait_until="domcontentloaded", timeout=90_000)
                page.get_by_role("button", name=re.compile("Start")).first.wait_for(timeout=120_000)
                opened.append(page)
            time.sleep(2.0)
            cpu0 = sum(ps.cpu_times()[:2])
            t0 = time.perf_counter()
            for page in opened:
                page.get_by_role("button", name=re.compile("Start")).first.click()
            finished_at: dict[int, float] = {}
            while len(finished_at) < pages and time.perf_counter() - t0 < limit:
                for i, page in enumerate(opened):
                    if i not in finished_at and page.get_by_text(re.compile(r"Finished \d+ steps")).count():
                        finished_at[i] = time.perf_counter() - t0
                time.sleep(0.25)
            wall = time.perf_counter() - t0
            cpu = sum(ps.cpu_times()[:2]) - cpu0
            return dict(post_script_gc=post_gc, pages=pages, steps=steps, runs_finished=len(finished_at),
                        last_finished_s=max(finished_at.values()) if len(finished_at) == pages else None,
                        measured_s=wall, server_cpu_s=cpu, server_cpu_per_wall=cpu / wall if wall else None,
                        finish_times_s=sorted(finished_at.values()))
        finally:
            for c in ctxs:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
            cm.__exit__(None, None, None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=float, default=240.0, help="seconds to wait for every run to finish")
    a = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is absent: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    one_gc = gc_cost()
    rounds = []
    load0 = os.getloadavg()[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            for r in range(a.repeat):
                for post_gc in (True, False):
                    res = one_round(browser, post_gc, a.pages, a.steps, a.limit)
                    res["round"] = r
                    rounds.append(res)
                    print(json.dumps({k: v for k, v in res.items() if k != "finish_times_s"}), flush=True)
        finally:
            browser.close()

    def summary(post_gc: bool) -> dict:
        rs = [x for x in rounds if x["post_script_gc"] == post_gc]
        done = [x["last_finished_s"] for x in rs if x["last_finished_s"] is not None]
        return dict(runs_finished=sum(x["runs_finished"] for x in rs), runs_started=sum(x["pages"] for x in rs),
                    median_last_finished_s=statistics.median(done) if len(done) == len(rs) else None,
                    median_cpu_per_wall=statistics.median(x["server_cpu_per_wall"] for x in rs),
                    median_measured_s=statistics.median(x["measured_s"] for x in rs))

    on, off = summary(True), summary(False)
    ratio = (on["median_last_finished_s"] / off["median_last_finished_s"]
             if on["median_last_finished_s"] and off["median_last_finished_s"] else None)
    result = dict(gc_collect_2_s=one_gc, pages=a.pages, steps=a.steps, repeat=a.repeat, limit_s=a.limit,
                  cpu_count=os.cpu_count(), load_avg_start=load0, load_avg_end=os.getloadavg()[0],
                  gc_on=on, gc_off=off, time_ratio_on_over_off=ratio, rounds=rounds,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "server_gc.json").write_text(json.dumps(result, indent=1))
    fmt = lambda v, f="{:.1f}": "—" if v is None else f.format(v)  # noqa: E731
    md = [f"# python -m benchmarks.server_gc --pages {a.pages} --steps {a.steps} --repeat {a.repeat} "
          f"--limit {a.limit:g}  ({result['date']}, {os.cpu_count()} cores, load average {load0:.1f} at start)",
          "",
          f"One gc.collect(2) with the server's imports and models: {one_gc:.3f} s.",
          "",
          "| runner.postScriptGC | runs finished | all finished after (s) | server CPU s per wall s |",
          "|---|---|---|---|",
          f"| true (Streamlit's default) | {on['runs_finished']} of {on['runs_started']} | "
          f"{fmt(on['median_last_finished_s'])} | {fmt(on['median_cpu_per_wall'], '{:.2f}')} |",
          f"| false (this project) | {off['runs_finished']} of {off['runs_started']} | "
          f"{fmt(off['median_last_finished_s'])} | {fmt(off['median_cpu_per_wall'], '{:.2f}')} |",
          "",
          f"Time until every run finished, gc on / gc off: {fmt(ratio, '{:.2f}x')}"
          + ("" if ratio else f" (a setting did not finish every run within {a.limit:g} s)")]
    (OUT / "server_gc.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
