"""Playground redraw time for a slider move, cold and warm, on minilm and smollm2-135m (CPU).

Two measurements per model:

1. Core path, per method: the work a slider move triggers on the page -- apply the
   method to a shared-weight copy, count, save the adapter to measure its size
   (``explorer.views.playground.summarize``), the formula, the mask / ΔW reductions and
   rank, and building + serialising the plotly figures to JSON.
   *cold* = a knob value never seen before (nothing cached);
   *warm* = the same value again (the summary cache hits).
   SMT's gradient warm-up runs once per (model, targets, batches) and is reported
   on its own line; block-count moves after it are "cold" but reuse the gradients.
2. Full page rerun with Streamlit's AppTest (script + widgets + figures, no
   browser): the rank slider of LoRA moved to a new value (cold) and back (warm).

The model load (once per server, ``st.cache_resource``) is not part of a redraw.
Run: ``python -m benchmarks.playground_redraw [--models minilm,smollm2-135m] [--repeat 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from explorer.methods import METHODS
from explorer.views import figures as F
from explorer.views import playground as pg
from explorer.models import load_model

ROOT = Path(__file__).resolve().parents[1]

# (method, knob that moves, sequence of values: first is the start, then the moves, knobs held fixed)
MOVES = [
    ("lora", "rank", [8, 16, 32, 64], {}),
    ("dora", "rank", [8, 16, 32, 64], {}),
    ("lora-sp", "freeze", [0.5, 0.6, 0.7, 0.8], {}),
    ("tied-lora", "rank", [8, 16, 32, 64], {}),
    ("sparta", "density", [0.01, 0.02, 0.03, 0.04], {}),
    ("smt", "blocks", [20, 40, 60, 80], dict(block_size=64)),
    ("full", None, [None], {}),
]


def draw(s: pg.Summary, wt: str = "v", layer: int = 0) -> int:
    """What the page draws for one side; returns the JSON size (bytes) of its figures."""
    tpl = "plotly_white"
    pg.formula(s)
    lay = pg.find_layout(s, wt, layer) or s.layouts()[0]
    shape = tuple(lay.shape)
    # as on the page: the method's own pictures (Tied-LoRA's diagram, LoRA's shapes, masks, block scores)
    figs = [pg.picture_figure(pic, tpl)[0] for pic in pg.overview_pictures(s) + pg.matrix_pictures(s, lay)]
    d, _ = pg.illustrative_delta(s, lay.target)
    red, f = pg.reduce_abs_max(d)
    pg.delta_rank(s, lay.target, d)
    figs.append(F.delta_heatmap(red, shape, f, "d", tpl))
    return sum(len(fig.to_json()) for fig in figs)


def knobs_for(knob, value, fixed: dict) -> dict:
    return {**fixed, **({} if knob is None else {knob: value})}


def time_core(loaded, repeat: int):
    rows = []
    name = loaded.info.name
    for method, knob, values, fixed in MOVES:
        warms_up = METHODS[method].has_warmup  # SMT: its warm-up gradients are computed once, then reused
        cold, warm = [], []
        wt = "v"
        # start position (and SMT's warm-up) outside the timing, as on the page before the move
        t0 = time.perf_counter()
        pg.summarize(loaded, method, knobs_for(knob, values[0], fixed), warm=2)
        first = time.perf_counter() - t0
        if warms_up:
            rows.append(dict(model=name, method=f"{method} warm-up (once)", knob="2 gradient-only batches",
                             cold=first, warm=float("nan"), json_kb=float("nan")))
        for _ in range(repeat):
            pg.clear_cache() if not warms_up else None
            if warms_up:  # keep the warm-up gradients, drop the summaries
                with pg._LOCK:
                    pg._SUMMARIES.clear()
            for v in values[1:] or values:
                t0 = time.perf_counter()
                s = pg.summarize(loaded, method, knobs_for(knob, v, fixed), warm=2)
                size = draw(s, wt)
                cold.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s = pg.summarize(loaded, method, knobs_for(knob, v, fixed), warm=2)
                draw(s, wt)
                warm.append(time.perf_counter() - t0)
        rows.append(dict(model=name, method=method, knob=f"{knob} {values[0]}→{'/'.join(map(str, values[1:]))}"
                         if knob else "(no knob)", cold=statistics.median(cold), cold_max=max(cold),
                         warm=statistics.median(warm), json_kb=size / 1024))
    return rows


def time_page(model_name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "1_Methods_playground.py"), default_timeout=300)
    at.query_params["model"] = model_name
    at.query_params["m1"] = "lora"
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    if at.exception or at.error or not any(w.key == "pg:a_rank" for w in at.select_slider):
        raise RuntimeError(f"the page did not render the rank slider for {model_name}: "
                           f"{[e.value for e in at.exception]} {[e.value for e in at.error]}")
    out = dict(first=first)
    for label, value in (("cold", 16), ("cold2", 32), ("warm", 16), ("warm2", 32)):
        t0 = time.perf_counter()
        at.select_slider(key="pg:a_rank").set_value(value).run()
        out[label] = time.perf_counter() - t0
        assert not at.exception, [e.value for e in at.exception]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,smollm2-135m")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-page", action="store_true", help="skip the AppTest page reruns")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import os
    import platform

    load0 = os.getloadavg()[0]
    print(f"# CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch threads "
          f"{args.threads}, load average at start {load0:.1f}", flush=True)
    rows, pages = [], {}
    for name in args.models.split(","):
        t0 = time.perf_counter()
        loaded = load_model(name)
        print(f"# {name}: {loaded.info.n_params:,} parameters, loaded in {time.perf_counter() - t0:.1f} s "
              "(once per server, not part of a redraw)", flush=True)
        rows += time_core(loaded, args.repeat)
        if not args.no_page:
            pages[name] = time_page(name)
    print(f"\nCore redraw for one slider move (median of {args.repeat} x 3 moves; CPU, {args.threads} threads)")
    print(f"{'model':14s} {'method':20s} {'move':30s} {'cold s':>8s} {'(max)':>7s} {'warm s':>8s} {'fig JSON':>9s}")
    for r in rows:
        print(f"{r['model']:14s} {r['method']:20s} {r['knob'][:30]:30s} {r['cold']:8.3f} "
              f"{r.get('cold_max', float('nan')):7.3f} {r['warm']:8.3f} {r['json_kb']:8.0f}K")
    if pages:
        print("\nFull page rerun (AppTest, LoRA rank slider): first run, then moves to new values (cold) "
              "and back (warm)")
        print(f"{'model':14s} {'first run s':>12s} {'cold s':>8s} {'cold s':>8s} {'warm s':>8s} {'warm s':>8s}")
        for name, p in pages.items():
            print(f"{name:14s} {p['first']:12.2f} {p['cold']:8.3f} {p['cold2']:8.3f} {p['warm']:8.3f} "
                  f"{p['warm2']:8.3f}")
    print(f"\nload average: {load0:.1f} at start, {os.getloadavg()[0]:.1f} at the end "
          "(other processes share these cores; a busy machine inflates every number)")
    worst = max((r["cold"] for r in rows if not r["method"].endswith(" warm-up (once)")), default=0)
    print(f"\nslowest median cold move: {worst:.3f} s ({'under' if worst < 1 else 'OVER'} the 1 s target)")


if __name__ == "__main__":
    main()
