"""``memory`` command: the analytic memory model's breakdown for one model and method.

    python -m explorer memory --model llama-2-70b --method lora --precision 4bit --checkpointing \\
        --optimizer adamw-8bit --zero 3 --gpus 8 --json
"""

from __future__ import annotations

import json

SCOPES = ("per-gpu", "total")


def add_parser(sub):
    from explorer.memory.options import ACTIVATION_MODELS, ATTENTIONS, OPTIMIZERS, PRECISIONS
    from explorer.memory.specs import PUBLISHED
    from explorer.methods import METHODS
    from explorer.model_configs import config_model_names
    from explorer.models import model_names

    configs = config_model_names()  # a config also published (mistral-7b) is read from the config: named there

    p = sub.add_parser("memory", help="the analytic memory breakdown (weights, gradients, optimizer state, "
                                      "activations) of one model and method")
    p.add_argument("--model", default="llama-2-7b",
                   help=f"a bundled config ({', '.join(configs)}), a published spec "
                        f"({', '.join(n for n in PUBLISHED if n not in configs)}), a small registry model "
                        f"({', '.join(model_names())}) or a folder with a config.json")
    p.add_argument("--method", default="lora", help=", ".join(METHODS))
    p.add_argument("--knob", "-k", action="append", default=[], metavar="NAME=VALUE",
                   help="a method knob, repeatable (e.g. -k rank=64 -k targets=q,k,v,o,gate,up,down)")
    p.add_argument("--precision", default="bf16-mixed", choices=PRECISIONS)
    p.add_argument("--no-master-copy", action="store_true", help="mixed precision without the fp32 master copy")
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS,
                   help="adamw: 8 B/param of fp32 moments; adamw-8bit: 2 B/param; sgd: none")
    p.add_argument("--checkpointing", action="store_true", help="full activation checkpointing (per layer)")
    p.add_argument("--recompute", action="store_true", help="selective recomputation of the attention scores")
    p.add_argument("--zero", type=int, default=0, choices=(0, 1, 2, 3), help="ZeRO stage (0 = plain data parallel)")
    p.add_argument("--gpus", type=int, default=1, help="number of GPUs (ZeRO shards over them)")
    p.add_argument("--scope", default="per-gpu", choices=SCOPES, help="per-GPU figures or the total of all GPUs")
    p.add_argument("--batch", type=int, default=1, help="sequences per GPU per step")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sequence")
    p.add_argument("--activation-model", default="detailed", choices=ACTIVATION_MODELS)
    p.add_argument("--attention", default="auto", choices=ATTENTIONS)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="the device assumed (dropout masks)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


TERMS = (("weights_bytes", "weights"), ("grads_bytes", "gradients"), ("optimizer_bytes", "optimizer state"),
         ("activations_bytes", "activations"), ("total_bytes", "total"))


def breakdown(model: str, method: str, knobs: dict | None = None, scope: str = "per-gpu", **kw) -> dict:
    """``estimate`` for a model name with the terms in the chosen scope (per GPU, or x gpus for the total)."""
    from explorer.memory.analytic import estimate
    from explorer.memory.specs import spec_for
    from explorer.errors import KnobError

    if scope not in SCOPES:
        raise KnobError(f"scope must be per-gpu or total (got '{str(scope)[:20]}')")
    spec = spec_for(model)
    est = estimate(spec, method, knobs or {}, **kw)
    mult = est["gpus"] if scope == "total" else 1
    est["scope"] = "per GPU" if scope == "per-gpu" else f"total of {est['gpus']} GPU(s)"
    est["terms"] = {label: est[key] * mult for key, label in TERMS}
    est["terms"]["optimizer: moments"] = est["optimizer_moments_bytes"] * mult
    est["terms"]["optimizer: fp32 master copy"] = est["optimizer_master_bytes"] * mult
    est["activation_terms"] = {k: v * mult for k, v in est["activation_terms"].items()}
    est["source"] = spec.source
    return est


def run(args) -> int:
    from explorer.cli.core import parse_knobs
    from explorer.memory.units import fmt_bytes

    est = breakdown(args.model, args.method, parse_knobs(args.knob), scope=args.scope, precision=args.precision,
                    master_copy=not args.no_master_copy, optimizer=args.optimizer,
                    checkpointing=args.checkpointing, recompute=args.recompute, zero=args.zero, gpus=args.gpus,
                    batch=args.batch, seq_len=args.seq_len, activation_model=args.activation_model,
                    attention=args.attention, device=args.device)
    if args.json:
        print(json.dumps(est, indent=2, default=str))
        return 0
    print(f"model      {est['model']} ({est['n_params']:,} parameters; {est['source']})")
    print(f"method     {est['method']}  knobs {est['knobs']}")
    print(f"trainable  {est['trainable_params']:,}")
    print(f"settings   {est['precision']}, {est['optimizer']}, batch {est['batch']} x {est['seq_len']}, "
          f"checkpointing {'on' if est['checkpointing'] else 'off'}, ZeRO {est['zero']} on {est['gpus']} GPU(s)")
    print(f"figures    {est['scope']}")
    for label, v in est["terms"].items():
        print(f"  {label:30s} {fmt_bytes(v, 'GB', 3):>16s}  {fmt_bytes(v, 'GiB', 3):>16s}  {v:,.0f} B")
    print("activations, term by term:")
    for label, v in sorted(est["activation_terms"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:60s} {fmt_bytes(v, 'GB', 3):>14s}")
    for n in est["notes"]:
        print(f"note       {n}")
    return 0
