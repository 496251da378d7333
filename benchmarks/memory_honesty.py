"""Memory honesty: bytes of trainable parameters, gradients and optimizer state per method.

For each method at its default knobs, on the real models ``smollm2-135m`` and
``minilm``: apply the method to a fresh copy, run two AdamW optimizer steps on
batches of the model's built-in task (Adam allocates its state on the first
step), then count the bytes that really exist (``explorer.memory.measured.account``).

Checks printed beside the table:
- SMT and SpaRTA: optimizer state = 8 bytes x trainable entries (fp32 Adam moments),
  i.e. only the selected entries (+ the classification head on minilm);
- LoRA-SP: optimizer state <= 0.55 x LoRA's at the same rank;
- full fine-tuning: optimizer state = 8 bytes x all parameters.

A second table (``--tables precision``; issue 13): measured vs analytic memory (total and activations) for
fp32 / bf16 (autocast) x gradient checkpointing off / on, every method, the analytic model at the matching
precision (``fp32`` / ``bf16-autocast``) and ``checkpointing``; the goal is 5 %.

Run: ``python -m benchmarks.memory_honesty [--models smollm2-135m,minilm] [--tables states,precision] [--json OUT]``
(SMT's warm-up is shortened to 4 gradient-only batches here: the benchmark measures
the memory of the training phase, not the quality of the selection.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from explorer import data
from explorer.engine.step import StepPlan, run_step
from explorer.engine.prepare import enable_checkpointing
from explorer.memory.analytic import estimate
from explorer.memory.measured import MemoryAccountant, account
from explorer.memory.specs import spec_from_model
from explorer.methods import METHODS as REGISTRY
from explorer.methods import apply_method
from explorer.engine.warmup import run_warmup
from explorer.models import fresh_copy, load_model

METHODS = list(REGISTRY)  # every registered method
SMT_BENCH_KNOBS = dict(warmup_steps=4, warmup_mode="gradient-only")


def measure(loaded, method: str, batches) -> dict:
    torch.manual_seed(0)
    model = fresh_copy(loaded.model)
    knobs = dict(SMT_BENCH_KNOBS) if REGISTRY[method].has_warmup else {}  # a short gradient-only warm-up
    adapter = apply_method(model, method, n_base=loaded.info.n_params, **knobs)
    if adapter.needs_warmup:
        run_warmup(adapter, batches[:4], max_steps=4)
    params = [p for _, p in adapter.trainable_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    adapter.model.train()
    plan = StepPlan(optimizer=opt, measure=lambda: account(adapter.model, opt))  # before zero_grad: grads exist
    t0 = time.perf_counter()
    for batch in batches[:2]:
        acc = run_step(adapter.model, batch, plan).memory
    dt = (time.perf_counter() - t0) / 2
    n_train = adapter.num_trainable()
    moments = acc["optimizer_bytes"] - acc.get("optimizer_scalar_bytes", 0)
    return dict(method=method, trainable_params=n_train, head_params=adapter.head_parameters(),
                trainable_bytes=acc["trainable_bytes"], grads_bytes=acc["grads_bytes"],
                optimizer_bytes=acc["optimizer_bytes"], optimizer_moment_bytes=moments,
                weights_bytes=acc["weights_bytes"], step_s=dt, n_base=loaded.info.n_params,
                knobs=adapter.knobs)


PRECISION_CELLS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
ANALYTIC_PRECISION = {"fp32": "fp32", "bf16": "bf16-autocast"}


def measure_precision(loaded, method: str, batches, precision: str, ckpt: bool) -> dict:
    """Two training steps through ``run_step`` (autocast, checkpointing) with the byte account, and the analytic
    model of the same configuration (batch and length of the measured step)."""
    torch.manual_seed(0)
    knobs = dict(SMT_BENCH_KNOBS) if REGISTRY[method].has_warmup else {}  # a short gradient-only warm-up
    adapter = apply_method(fresh_copy(loaded.model), method, n_base=loaded.info.n_params, **knobs)
    if adapter.needs_warmup:
        run_warmup(adapter, batches[:4], max_steps=4)
    if ckpt:
        enable_checkpointing(adapter.model)
    adapter.model.train()
    opt = torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=1e-4, weight_decay=0.1)
    acct = MemoryAccountant(adapter.model, opt)
    plan = StepPlan(optimizer=opt, accountant=acct, autocast=torch.bfloat16 if precision == "bf16" else None)
    for batch in batches[:2]:
        rec = run_step(adapter.model, batch, plan).memory
    b, s = batches[1]["input_ids"].shape
    padded = bool((batches[1]["attention_mask"] == 0).any())
    est = estimate(spec_from_model(loaded.model), method, adapter.knobs, precision=ANALYTIC_PRECISION[precision],
                   batch=int(b), seq_len=int(s), device="cpu", checkpointing=ckpt, padded=padded)
    return dict(method=method, precision=precision, checkpointing=ckpt, batch=int(b), seq_len=int(s), padded=padded,
                measured_total=rec["total_bytes"], analytic_total=est["total_bytes"],
                measured_activations=rec["activations_bytes"], analytic_activations=est["activations_bytes"],
                measured_kept=rec["activations_kept_bytes"], measured_rebuilt=rec["activations_recomputed_bytes"],
                analytic_terms=est["activation_terms"])


def pct(est, meas) -> str:
    return f"{100 * (est - meas) / meas:+.1f} %"


def precision_table(name: str, loaded, batches) -> list[dict]:
    rows = []
    for m in METHODS:
        for prec, ckpt in PRECISION_CELLS:
            rows.append(measure_precision(loaded, m, batches, prec, ckpt))
            print(f"  {name} {m} {prec} ckpt={ckpt}: done", file=sys.stderr)
    r0 = rows[0]
    print(f"\n### {name}: measured vs analytic (batch {r0['batch']} x {r0['seq_len']} tokens"
          f"{', padded' if r0['padded'] else ''}, CPU, AdamW, after 2 "
          "steps; MiB = 2^20 B; analytic precision fp32 / bf16-autocast)\n")
    print("| method | precision | checkpointing | total measured MiB | total analytic MiB | diff | activations "
          "measured MiB | activations analytic MiB | diff | within 5 % |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ok = abs(r["analytic_total"] - r["measured_total"]) <= 0.05 * r["measured_total"] and \
            abs(r["analytic_activations"] - r["measured_activations"]) <= 0.05 * r["measured_activations"]
        r["within_5pct"] = ok
        print(f"| {r['method']} | {r['precision']} | {'on' if r['checkpointing'] else 'off'} | "
              f"{mib(r['measured_total'])} | {mib(r['analytic_total'])} | {pct(r['analytic_total'], r['measured_total'])} | "
              f"{mib(r['measured_activations'])} | {mib(r['analytic_activations'])} | "
              f"{pct(r['analytic_activations'], r['measured_activations'])} | {'yes' if ok else 'NO'} |")
    return rows


def checks(rows: dict) -> list[tuple[str, bool, str]]:
    out = []
    for m in ("smt", "sparta"):
        r = rows[m]
        ok = r["optimizer_moment_bytes"] == 8 * r["trainable_params"]
        out.append((f"{m}: optimizer state = 8 B x trainable entries", ok,
                    f"{r['optimizer_moment_bytes']:,} B vs 8 x {r['trainable_params']:,} "
                    f"({r['trainable_params'] - r['head_params']:,} selected + {r['head_params']:,} head)"))
    ratio = rows["lora-sp"]["optimizer_moment_bytes"] / rows["lora"]["optimizer_moment_bytes"]
    out.append(("lora-sp: optimizer state <= 0.55 x LoRA's", ratio <= 0.55, f"ratio {ratio:.3f}"))
    r = rows["full"]
    out.append(("full: optimizer state = 8 B x all parameters", r["optimizer_moment_bytes"] == 8 * r["n_base"],
                f"{r['optimizer_moment_bytes']:,} B vs 8 x {r['n_base']:,}"))
    return out


def mib(b):
    return f"{b / 2**20:,.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,minilm")
    ap.add_argument("--tables", default="states,precision", help="states, precision or both (comma-separated)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: a shared machine)")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    tables = {t.strip() for t in args.tables.split(",")}
    results, all_ok = {}, True
    for name in args.models.split(","):
        loaded = load_model(name)
        task = data.load_task(data.default_task_for(loaded.info.kind), model_kind=loaded.info.kind)
        batches = list(data.iter_batches(task, loaded.tokenizer, "train", batch_size=4, seed=0, max_batches=4,
                                         model_kind=loaded.info.kind, max_len=64))
        results[name] = {}
        if "states" in tables:
            rows = {}
            for m in METHODS:
                rows[m] = measure(loaded, m, batches)
                print(f"  {name} {m}: done", file=sys.stderr)
            results[name] = rows
            print(f"\n### {name} ({loaded.info.n_params:,} parameters; AdamW fp32; after 2 optimizer steps; "
                  "MiB = 2^20 B)\n")
            print("| method | trainable params | trainable MiB | grads MiB | optimizer state MiB | state / full |")
            print("|---|---:|---:|---:|---:|---:|")
            full_opt = rows["full"]["optimizer_moment_bytes"]
            for m, r in rows.items():
                print(f"| {m} | {r['trainable_params']:,} | {mib(r['trainable_bytes'])} | {mib(r['grads_bytes'])} | "
                      f"{mib(r['optimizer_bytes'])} | {r['optimizer_moment_bytes'] / full_opt:.5f} |")
            print()
            for label, ok, detail in checks(rows):
                all_ok &= ok
                print(f"- {'PASS' if ok else 'FAIL'} {label}: {detail}")
        if "precision" in tables:
            results[name]["precision_table"] = precision_table(name, loaded, batches)
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
