"""``smt-blocks``: which blocks SMT selects, why, and how stable the choice is (JSON output)."""

from __future__ import annotations

import json
import os
import sys
import time


def add_parser(sub):
    from explorer.methods.smt_blocks import SCORES
    from explorer.models import model_names

    p = sub.add_parser("smt-blocks", help="SMT's gradient-block analysis: scores, selection, shares per type and "
                                          "layer, stability over the warm-up, overlaps with other choices")
    p.add_argument("--model", default="tiny-llama", help=f"registry name ({', '.join(model_names())}), local folder "
                   "or hub id")
    p.add_argument("--task", default=None, help="task name or data file (default: the model's built-in task)")
    p.add_argument("--warmup-steps", type=int, default=16, help="warm-up batches whose gradients are summed")
    p.add_argument("--block-size", type=int, default=0, help="block size b (0 = auto: 256 where it divides, "
                   "else the largest of 64/32/16)")
    p.add_argument("--blocks", type=int, default=0, help="number of blocks to select (0 = about 1%% of all "
                   "parameters, as SMT's default)")
    p.add_argument("--density", type=float, default=0.0, help="fraction of the chosen matrices' blocks "
                   "(overrides --blocks when > 0)")
    p.add_argument("--score", default="abs-mean", choices=SCORES)
    p.add_argument("--selection", default="global", choices=["global", "per-matrix"])
    p.add_argument("--mode", default="full", choices=["full", "gradient-only"],
                   help="warm-up mode: full fine-tuning steps (public code) or gradients only (deviation)")
    p.add_argument("--types", default="", help="matrix types to select from, comma-separated "
                   "(default: every attention and MLP matrix; the SMT method's default is q,k,v)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate of the full warm-up")
    p.add_argument("--checkpoints", default="1,5,10,25,50,100", help="steps at which the running sum is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-cache", action="store_true", help="recompute the gradients even if cached")
    p.add_argument("--no-scores", action="store_true", help="leave the per-block score grids out of the JSON")
    p.add_argument("--json", metavar="OUT", default=None, help="write the result as JSON to OUT ('-' = stdout)")
    p.add_argument("--scores-csv", metavar="OUT", default=None, help="also write every block's score as CSV")
    p.add_argument("--selection-csv", metavar="OUT", default=None, help="also write the selected blocks as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args) -> int:
    import torch

    from explorer.methods.base import KnobError
    from explorer.methods.smt_blocks import auto_block_size
    from explorer.models import load_model
    from explorer.smt_inspector import (analysis_to_json, analyze, check_request, collect_gradients, scores_csv,
                              selection_csv)

    if args.threads:
        torch.set_num_threads(max(1, int(args.threads)))
    try:
        ckpts = [int(s) for s in str(args.checkpoints).split(",") if s.strip()]
    except ValueError:
        raise KnobError(f"--checkpoints must be comma-separated integers (got '{args.checkpoints[:40]}')") from None
    types = [s.strip() for s in args.types.split(",") if s.strip()] or None
    t0 = time.perf_counter()
    c0 = time.process_time()
    last = [0.0]

    def progress(frac, msg):
        if args.quiet:
            return
        now = time.perf_counter()
        print(f"[{now - t0:6.1f} s] {frac:4.0%} {msg}", file=sys.stderr, flush=True)
        last[0] = now

    progress(0.0, f"loading {args.model}")
    loaded = load_model(args.model)
    task = args.task
    if loaded.info.kind == "seq-cls":
        # a classification task may have more than two labels: load the model with the right head
        from explorer import data

        task = data.load_task(args.task or data.default_task_for(loaded.info.kind), model_kind=loaded.info.kind)
        if task.num_labels and task.num_labels != 2:
            loaded = load_model(args.model, num_labels=task.num_labels)
    check_request(loaded.model, args.block_size or None, types)  # fail fast, before the warm-up
    rec = collect_gradients(loaded, task, warmup_steps=args.warmup_steps, batch_size=args.batch_size,
                            max_len=args.max_len, mode=args.mode, checkpoints=ckpts, lr=args.lr, seed=args.seed,
                            progress=progress, cache=not args.no_cache)
    ts = [t for t in rec.targets if types is None or t.type in types]
    b = args.block_size or auto_block_size([(t.d_out, t.d_in) for t in ts])
    if not b:
        raise KnobError("smt-blocks: no automatic block size divides these matrices; give --block-size "
                        f"(valid: {', '.join(map(str, rec.block_sizes(types)))})")
    blocks = args.blocks or None
    density = args.density if args.density > 0 else None
    auto_note = None
    if blocks is None and density is None:
        from explorer.methods.smt_blocks import auto_blocks

        total = sum((t.d_out // b) * (t.d_in // b) for t in ts)
        blocks, capped = auto_blocks(loaded.info.n_params, b, total)
        auto_note = capped or (f"Budget auto: about 1% of all {loaded.info.n_params:,} parameters = {blocks} "
                               f"blocks of {b} x {b}.")
    progress(1.0, f"scoring blocks of {b} x {b}")
    an = analyze(rec, b, n_blocks=blocks, density=density, score=args.score, rule=args.selection, types=types,
                 seed=args.seed)
    out = json.loads(analysis_to_json(an, include_scores=not args.no_scores))
    if auto_note:
        out["notes"].append(auto_note)
    out["analysis_seconds"] = round(time.perf_counter() - t0, 2)
    out["analysis_cpu_seconds"] = round(time.process_time() - c0, 2)
    out["torch_threads"] = torch.get_num_threads()
    text = json.dumps(out, separators=(",", ":"))
    if args.scores_csv:
        _write(args.scores_csv, scores_csv(an))
    if args.selection_csv:
        _write(args.selection_csv, selection_csv(an))
    if args.json:
        _write(args.json, text)
    if args.json != "-":
        shares = ", ".join(f"{k} {v:.1%}" for k, v in an.shares_type.items())
        stab = ", ".join(f"{s['step']}: {s['jaccard']:.2f}" for s in an.stability)
        print(f"model {loaded.info.name}, {rec.steps_done} warm-up steps ({rec.mode}), "
              f"{an.n_blocks} of {an.total_blocks} blocks of {b} x {b}, score {an.score}, {an.rule}")
        print(f"shares by type: {shares}")
        print(f"stability (Jaccard with the final selection): {stab}")
        for k, o in an.overlaps.items():
            if o.get("jaccard") is not None:
                print(f"overlap with {o['label']}: Jaccard {o['jaccard']:.3f}")
        print(f"total time {out['analysis_seconds']:.1f} s wall, {out['analysis_cpu_seconds']:.1f} s CPU "
              f"({out['torch_threads']} torch threads)")
    return 0
