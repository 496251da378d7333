"""Memory per workshop participant, measured in one process (the server's view).

    python -m benchmarks.load_report [--model minilm] [--steps 10]

What one participant adds to the server's resident memory (RSS, sampled every 20 ms):

- a playground view: ``playground.summarize`` for a method (shares the cached base weights);
- a fine-tune run (the Fine-tune page's defaults: batch 16, 64 tokens, evaluation on 200
  held-out examples): peak RSS during the run minus the settled RSS before it, per method;
- what stays after the run: settled RSS after it (gc + malloc_trim) minus before; the first run
  in a process keeps a one-time amount (measured separately), later runs keep about nothing.

The base model is loaded once (as the server caches it) and not counted per participant.
Results: ``benchmarks/results/workshop_memory.json``.  The analytic estimate the run queue checks
(``explorer.workshop.jobs.estimate_run_bytes``) is printed beside each measured peak.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "workshop_memory.json"


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def settled() -> int:
    from explorer.workshop.status import settle_memory

    settle_memory()
    time.sleep(0.2)
    settle_memory()
    return rss()


class Peak(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss()
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, rss())
            self._halt.wait(0.02)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--methods", default="lora,smt,full")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from explorer.views import playground as pg
    from explorer.workshop.jobs import estimate_run_bytes
    from explorer.models import load_model
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    t0 = time.time()
    loaded = load_model(args.model)
    base_rss = settled()
    out = dict(model=args.model, n_params=loaded.info.n_params, torch_threads=args.threads,
               rss_with_base_model_bytes=base_rss, playground={}, runs={},
               notes=["RSS of this process (psutil), sampled every 20 ms; 'settled' = after gc.collect() and "
                      "malloc_trim(0)", "the cached base model is loaded once and not counted per participant"])
    # a playground view per method (the summaries share the base weights)
    for m in ("lora", "tied-lora", "sparta"):
        before = settled()
        pk = Peak()
        pk.start()
        pg.summarize(loaded, m, {})
        peak = pk.stop()
        out["playground"][m] = dict(peak_over_before_bytes=peak - before, kept_after_bytes=settled() - before)
    # one-time costs of the first run in a process (kernels, allocator pools, task tokenisation):
    # measured once, then each method's run is measured on a warm process (as on a running server)
    cfg0 = TrainConfig(model=args.model, method="lora", steps=2, batch_size=16, max_len=64, eval_every=1,
                       eval_examples=200)
    before = settled()
    train(cfg0, loaded=loaded)  # the server passes its cached base (num_labels 2; the head is resized per task)
    out["first_run_one_time_bytes"] = settled() - before
    # a fine-tune run per method, as the Fine-tune page starts it
    for m in args.methods.split(","):
        from explorer.methods import METHODS

        knobs = {"warmup_steps": max(1, args.steps // 2)} if METHODS[m].has_warmup else {}
        cfg = TrainConfig(model=args.model, method=m, knobs=knobs, steps=args.steps, batch_size=16, max_len=64,
                          eval_every=max(1, args.steps // 8), eval_examples=200)
        est = estimate_run_bytes(cfg, loaded)
        before = settled()
        pk = Peak()
        pk.start()
        res = train(cfg, loaded=loaded)
        peak = pk.stop()
        status = res.status
        del res
        after = settled()
        out["runs"][m] = dict(status=status, peak_over_before_bytes=peak - before, kept_after_bytes=after - before,
                              queue_estimate_bytes=est, steps=args.steps, batch_size=16, max_len=64)
    out["seconds"] = round(time.time() - t0, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    mib = 2 ** 20
    print(f"{args.model}: {loaded.info.n_params:,} parameters; process RSS with the cached base model "
          f"{base_rss / mib:,.0f} MiB")
    for m, d in out["playground"].items():
        print(f"playground view {m:9s}: +{d['peak_over_before_bytes'] / mib:7.1f} MiB peak, "
              f"+{d['kept_after_bytes'] / mib:6.1f} MiB kept")
    print(f"first run in the process: +{out['first_run_one_time_bytes'] / mib:.1f} MiB kept once (one-time)")
    for m, d in out["runs"].items():
        est = f"{d['queue_estimate_bytes'] / mib:,.0f} MiB" if d["queue_estimate_bytes"] else "n/a"
        print(f"fine-tune {m:9s} ({d['status']}): +{d['peak_over_before_bytes'] / mib:7.1f} MiB peak "
              f"(queue's analytic estimate {est}), +{d['kept_after_bytes'] / mib:6.1f} MiB kept after")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
