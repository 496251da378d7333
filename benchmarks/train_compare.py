"""Side by side: every method on one model and task, N steps each, as ratios to full fine-tuning and to LoRA.

For each method at its default knobs (the same seed, data order, batch size and length for all):
``explorer.engine.train.train`` runs N steps (default 200) of the model's built-in task, then

- final accuracy on the held-out split,
- trainable parameters,
- peak memory from the byte account (``explorer.memory.measured``: weights + gradients + optimizer state + activations
  saved for backward) in the steady state (training phase; SMT's warm-up steps are full fine-tuning and are
  reported apart), with the analytic model's figure beside it,
- step time: the median of an interleaved timing pass after training: every method times one
  forward + backward + clip + AdamW step in turn, round after round, on the same batch, with one
  thread.  The figure is the step's CPU time (``time.process_time``): on a machine shared with other work the
  wall clock mostly measures waiting for a core, while CPU time stays the compute the step costs.  Wall-clock
  medians (interleaved, and over the training run) are in the JSON,

each as a ratio to full fine-tuning and to ``peft`` LoRA.  It prints a markdown table, checks the issue's targets
and writes JSON.

Run: ``python -m benchmarks.train_compare [--steps 200] [--model minilm] [--methods full,lora,...]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from explorer.memory.analytic import estimate
from explorer.memory.specs import spec_from_model
from explorer.memory.units import fmt_bytes
from explorer.methods import METHODS
from explorer.engine.config import TrainConfig
from explorer.engine.prepare import load_for
from explorer.engine.step import StepPlan, run_step
from explorer.engine.train import train

OUT = Path(__file__).resolve().parent / "results" / "train_compare.json"
PEFT = [m for m, info in METHODS.items() if info.paper != "baseline"]  # every method but the baseline


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ratio(a, b):
    return (a / b) if (a is not None and b) else None


def interleaved_timing(results: dict, loaded, task, cfg_base: TrainConfig, rounds: int) -> dict:
    """Median seconds of one training step per method, methods taking turns within each round."""
    from explorer import data as data_mod

    # a representative batch: the first training batch of median padded width
    batches = list(data_mod.iter_batches(task, loaded.tokenizer, "train", batch_size=cfg_base.batch_size,
                                         seed=cfg_base.seed, max_batches=cfg_base.steps, model_kind=loaded.info.kind,
                                         max_len=cfg_base.max_len))
    med = sorted(int(b["input_ids"].shape[1]) for b in batches)[len(batches) // 2]
    batch = next(b for b in batches if int(b["input_ids"].shape[1]) == med)
    setups = {}
    for m, res in results.items():
        ad = res.adapter
        if ad is None or getattr(ad, "needs_warmup", False):
            continue
        params = [p for _, p in ad.trainable_parameters()]
        opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=cfg_base.weight_decay)
        ad.model.train()
        setups[m] = (ad, params, opt)
    times = {m: [] for m in setups}
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(m):  # the fine-tune's step: forward, backward, clip, AdamW, the adapter's hook
        ad, params, opt = setups[m]
        plan = StepPlan(optimizer=opt, params=params, clip=cfg_base.grad_clip or float("inf"),
                        after_update=ad.on_step_end)
        c0, t0 = time.process_time(), time.perf_counter()
        run_step(ad.model, batch, plan)
        return time.process_time() - c0, time.perf_counter() - t0

    for m in setups:  # first step allocates Adam's state: untimed
        one(m)
    for r in range(rounds):
        order = list(setups) if r % 2 == 0 else list(reversed(setups))
        for m in order:
            times[m].append(one(m))
    torch.set_num_threads(n_threads)
    return times, int(batch["input_ids"].shape[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="", help="default: the model's built-in task")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-examples", type=int, default=400)
    ap.add_argument("--timing-rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for training (1: robust on a shared machine, where 2 threads spin-wait)")
    ap.add_argument("--json", default=str(OUT))
    ap.add_argument("--render", metavar="JSON", help="only print the table of an earlier result")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"unknown method(s): {', '.join(bad)}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    cfg0 = TrainConfig(model=args.model, task=args.task, method="full", steps=args.steps,
                       batch_size=args.batch_size, max_len=args.max_len, seed=args.seed, eval_every=0,
                       eval_examples=args.eval_examples, device="cpu")
    loaded, task = load_for(cfg0)
    spec = spec_from_model(loaded.model, args.model)
    from explorer import data as data_mod

    # the padded width of every training batch (the same seed and order as the runs)
    widths = [int(b["input_ids"].shape[1]) for b in data_mod.iter_batches(
        task, loaded.tokenizer, "train", batch_size=args.batch_size, seed=args.seed, max_batches=args.steps,
        model_kind=loaded.info.kind, max_len=args.max_len)]
    results, rows = {}, {}
    t_all = time.perf_counter()
    for m in methods:
        cfg = TrainConfig(**{**cfg0.__dict__, "method": m})
        t0 = time.perf_counter()
        def progress(rec, m=m):
            if rec.get("phase") in ("train", "warmup") and rec.get("step", 0) % 50 == 0:
                print(f"  {m}: step {rec['step']}/{args.steps} loss {rec.get('loss', float('nan')):.4f}", flush=True)

        res = train(cfg, loaded=loaded, on_step=progress)
        s = res.summary
        recs = [r for r in res.records if r.get("phase") in ("train", "warmup") and r.get("step_time_s")]
        tr = [r for r in recs if r["phase"] == "train"]
        wu = [r for r in recs if r["phase"] == "warmup"]
        steady = tr[5:] if len(tr) > 10 else tr
        # the analytic model at the padded width of the batch of the peak step
        peak_rec = max(tr, key=lambda r: r.get("total_bytes") or 0) if tr else None
        width = widths[peak_rec["step"] - 1] if peak_rec and peak_rec["step"] - 1 < len(widths) else args.max_len
        try:
            est = estimate(spec, m, {}, precision="fp32", batch=args.batch_size, seq_len=width,
                                  device="cpu")
            est_total = est["total_bytes"]
        except Exception as e:  # noqa: BLE001
            est_total, est = None, dict(error=str(e))
        last = tr[-1] if tr else {}
        rows[m] = dict(
            method=m, status=s.get("status"), message=s.get("message"), final_accuracy=s.get("final_accuracy"),
            base_accuracy=s.get("base_accuracy"), trainable_params=s.get("trainable_params"),
            peak_memory_bytes=max((r["total_bytes"] for r in tr if r.get("total_bytes") is not None), default=None),
            peak_memory_warmup_bytes=max((r["total_bytes"] for r in wu if r.get("total_bytes") is not None),
                                         default=None),
            weights_bytes=last.get("weights_bytes"), grads_bytes=last.get("grads_bytes"),
            optimizer_bytes=last.get("optimizer_bytes"),
            activations_bytes=max((r.get("activations_bytes") or 0 for r in tr), default=None),
            peak_rss_bytes=s.get("peak_rss_bytes"),
            analytic_total_bytes=est_total, analytic_seq_len=width,
            analytic_vs_measured=_ratio(est_total, max((r["total_bytes"] for r in tr if r.get("total_bytes")),
                                                       default=None)),
            step_time_run_median_s=_median([r["step_time_s"] for r in steady]),
            warmup_steps=len(wu), wall_time_s=time.perf_counter() - t0, notes=s.get("notes"))
        results[m] = res
        r = rows[m]
        print(f"[{m}] {r['status']} acc={r['final_accuracy']} trainable={r['trainable_params']} "
              f"peak={fmt_bytes(r['peak_memory_bytes'], 'MiB', 1)} "
              f"step(run)={r['step_time_run_median_s']:.3f}s wall={r['wall_time_s']:.0f}s", flush=True)
    times, timing_width = interleaved_timing(results, loaded, task, cfg0, args.timing_rounds)
    for m, ts in times.items():
        rows[m]["step_time_s"] = _median([c for c, _ in ts])  # CPU seconds, 1 thread
        rows[m]["step_wall_time_s"] = _median([w for _, w in ts])
        rows[m]["step_time_samples"] = len(ts)
    ref = {k: rows.get(k, {}) for k in ("full", "lora")}
    for m, r in rows.items():
        for key in ("final_accuracy", "trainable_params", "peak_memory_bytes", "step_time_s"):
            r[f"{key}_vs_full"] = _ratio(r.get(key), ref["full"].get(key))
            r[f"{key}_vs_lora"] = _ratio(r.get(key), ref["lora"].get(key))

    checks = []

    def check(name, value, limit):
        ok = value is not None and value <= limit
        checks.append(dict(check=name, value=value, limit=limit, ok=ok))

    for m in ("smt", "sparta"):
        if m in rows and "full" in rows:
            check(f"{m} steady-state memory / full <= 0.45", rows[m]["peak_memory_bytes_vs_full"], 0.45)
    for m in PEFT:
        if m in rows and "full" in rows:
            check(f"{m} step time / full <= 0.85", rows[m]["step_time_s_vs_full"], 0.85)
    for m in ("lora-sp", "tied-lora"):
        if m in rows and "lora" in rows:
            check(f"{m} step time / LoRA (rank 8 both) <= 1.25", rows[m]["step_time_s_vs_lora"], 1.25)

    out = dict(model=args.model, task=task.name, steps=args.steps, batch_size=args.batch_size, max_len=args.max_len,
               seed=args.seed, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               load_average=os.getloadavg(), torch=torch.__version__, python=platform.python_version(),
               wall_time_s=time.perf_counter() - t_all, rows=rows, checks=checks,
               interleaved_step_times_s=times, timing_rounds=args.timing_rounds, timing_width=timing_width,
               command="python -m benchmarks.train_compare " + " ".join(argv if argv is not None else sys.argv[1:]))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    md = render(out)
    print()
    print(md)
    Path(args.json).with_suffix(".md").write_text(md + "\n")
    print(f"wrote {args.json} and {Path(args.json).with_suffix('.md')}")
    return 0


def _f(x, fmt="{:.3f}"):
    return "n/a" if x is None else fmt.format(x)


def render(out: dict) -> str:
    """The markdown table and the target checks of one benchmark result (the JSON this script writes)."""
    rows, f = out["rows"], _f
    lines = [f"### {out['model']}, task {out['task']}: {out['steps']} steps per method, batch {out['batch_size']}, "
             f"max length {out['max_len']}, seed {out['seed']}, CPU, {out['threads']} torch thread(s) for training",
             "", f"Command: `{out['command'].strip()}`", "",
             "| method | final acc | vs full | vs LoRA | trainable | vs full | vs LoRA | peak memory (byte account, MiB) "
             "| vs full | vs LoRA | analytic (MiB) | step CPU time (s) | vs full | vs LoRA |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, r in rows.items():
        lines.append(
            f"| {m} | {f(r['final_accuracy'])} | {f(r['final_accuracy_vs_full'], '{:.2f}')} | "
            f"{f(r['final_accuracy_vs_lora'], '{:.2f}')} | {r['trainable_params'] or 0:,} | "
            f"{f(r['trainable_params_vs_full'], '{:.4f}')} | {f(r['trainable_params_vs_lora'], '{:.2f}')} | "
            f"{f(r['peak_memory_bytes'] and r['peak_memory_bytes'] / 2**20, '{:,.1f}')} | "
            f"{f(r['peak_memory_bytes_vs_full'], '{:.2f}')} | {f(r['peak_memory_bytes_vs_lora'], '{:.2f}')} | "
            f"{f(r['analytic_total_bytes'] and r['analytic_total_bytes'] / 2**20, '{:,.1f}')} | "
            f"{f(r.get('step_time_s'))} | {f(r.get('step_time_s_vs_full'), '{:.2f}')} | "
            f"{f(r.get('step_time_s_vs_lora'), '{:.2f}')} |")
    lines.append("")
    smt = rows.get("smt", {})
    if smt.get("peak_memory_warmup_bytes"):
        lines.append(f"- SMT's {smt['warmup_steps']} warm-up steps (full fine-tuning, inside the step budget) peak at "
                     f"{fmt_bytes(smt['peak_memory_warmup_bytes'], 'MiB', 1)}; the table shows the steady "
                     "state after block selection.")
    lines.append("- Peak memory: max over the training steps of weights + gradients + optimizer state + saved "
                 "activations (MiB = 2^20 bytes). The analytic column is the memory model (explorer.memory.analytic.estimate, "
                 "fp32, detailed activations) at the padded length of the peak step's batch.")
    lines.append(f"- Step time: median CPU time (time.process_time, 1 thread) of {out.get('timing_rounds', '?')} "
                 f"interleaved steps per method after training, on one batch of {out['batch_size']} x "
                 f"{out.get('timing_width', '?')} tokens; wall-clock medians (interleaved: step_wall_time_s; over "
                 "the training run: step_time_run_median_s) are in the JSON. Load average during the run: "
                 f"{', '.join(f'{x:.1f}' for x in out.get('load_average', []))} on {out.get('cpu_count')} cores.")
    for c in out["checks"]:
        lines.append(f"- {'PASS' if c['ok'] else 'MISS'} {c['check']}: {f(c['value'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
