"""SMT, Sparse Matrix Tuning (arXiv 2405.15525; public code HectorHHZ/Sparse_Matrix_Tuning).

1. Warm-up: sum each target weight's gradient over the warm-up steps in fp32.  The
   public code runs full fine-tuning for these steps ("full" mode, the default:
   the weights move); "gradient-only" leaves every weight unchanged (a labelled
   deviation).
2. Cut each target W into b x b blocks; score each block (default |mean| of the
   summed gradient; mean|.|, L1, L2 are alternatives).
3. Keep the global top-n blocks across all targets (or the same budget split
   evenly per matrix).
4. Train only those blocks: each is a parameter of its own; a custom autograd
   function gives the dense input gradient and gradients for the selected blocks
   only (see ``explorer.sparse``).

This module holds the method's facts (``METHOD``); its block rules (steps 2-3, the automatic block size and budget)
are in ``explorer.methods.smt_blocks`` and its adapter (the warm-up protocol, step 4) in
``explorer.methods.smt_adapter``.
"""

from __future__ import annotations

import math
from functools import partial

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from .base import Knob, KnobError
from .contract import Method
from .facts import (KnobContext, Picture, Widget, fmt_count, fraction_knob, mask_delta, mask_picture, seed_knob,
                    targets_knob, with_head)
from .smt_adapter import SMTAdapter
from .smt_blocks import (AUTO_CAP, MIN_AUTO_GRID, SCORE_NOTE, SCORES, auto_block_size, block_budget,
                         resolve_block_size, valid_block_sizes)


def _block_size_widget(ctx: KnobContext) -> Widget:
    """The block size slider: auto, or a size (>= 4) that divides every target of the loaded model."""
    shapes = ctx.shapes(list(ctx.values.get("targets") or []))
    valid = [b for b in valid_block_sizes(shapes) if b >= 4] if shapes else []
    auto = auto_block_size(shapes) if shapes else 0
    return Widget(options=[0] + valid, labels={0: f"auto ({auto})"}, help=" · only sizes that divide every target",
                  fallback=0)


def _blocks_widget(ctx: KnobContext) -> Widget:
    """The number-of-blocks slider: 0 (auto) up to the blocks the targets hold at the current block size."""
    types = list(ctx.values.get("targets") or [])
    shapes = ctx.shapes(types)
    b = resolve_block_size(ctx.values.get("block_size") or 0, shapes) if shapes else 0
    total = ctx.n_blocks(types, b) if b else 0
    return Widget(lo=0, hi=max(1, total), help=f" · {total:,} blocks of {b}×{b} in the targets" if b else "")


KNOBS = [
    targets_knob(["q", "k", "v"], "target matrices (q, k, v in the paper)"),
    Knob("block_size", "int", 0, "block size b (0 = auto: the largest of 256/64/32/16 that divides every target "
         f"and leaves at least {MIN_AUTO_GRID} blocks in the smallest one)", min=0, max=4096, label="block size b",
         widget="select_slider", options=_block_size_widget),
    Knob("blocks", "int", 0, "number of blocks to train (0 = auto: about 1 % of all parameters, at most "
         f"{AUTO_CAP:.0%} of the targets' blocks)", min=0, max=10_000_000, label="number of blocks (0 = auto)",
         widget="slider", options=_blocks_widget),
    fraction_knob("density", 0.0, "fraction of the target matrices to train, overrides blocks when > 0",
                  "density (overrides the number of blocks)"),
    Knob("score", "choice", "abs-mean", "block score", choices=SCORES, label="block score"),
    Knob("selection", "choice", "global", "global top-n across all targets, or the same budget split evenly "
         "per matrix", choices=["global", "per-matrix"], label="top-n blocks taken"),
    Knob("warmup_steps", "int", 100, "warm-up steps that sum the gradients", min=1, max=100_000,
         label="warm-up steps"),
    Knob("warmup_mode", "choice", "full", "full: full fine-tuning during warm-up as in the public code; "
         "gradient-only: weights unchanged (deviation)", choices=["full", "gradient-only"], label="warm-up mode"),
    seed_knob("seed (ties between equal scores are broken by position)"),
]


def apply(model, knobs, n_base, selection=None, **_):
    return SMTAdapter(model, knobs, n_base, selection=selection)


# ----------------------------------------------------------------------------- what the playground draws

def warmup_is_full_finetuning(knobs: dict) -> bool:
    """SMT's default warm-up mode fine-tunes every weight (the public code): that phase costs full fine-tuning."""
    return knobs.get("warmup_mode", "full") == "full"


def playground_knobs(warm: int) -> dict:
    """The playground drives the warm-up itself: gradient-only, ``warm`` batches (these knobs are hidden there)."""
    return dict(warmup_mode="gradient-only", warmup_steps=int(warm))


def formula_lines(adapter, total: int, head: int):
    b, n = adapter.block, adapter.n_blocks
    lines = [f"n_blocks × b² = {fmt_count(n)} × {b}² = {fmt_count(n * b * b)}  "
             f"({n} of {fmt_count(adapter.total_blocks)} blocks of {b}×{b} in the targets)"]
    return with_head(lines, n * b * b, head)


def illustrative_delta(adapter, target: str, gen):
    return mask_delta(adapter, target, gen, "blocks")


def matrix_pictures(adapter, layout, warmup):
    out = [mask_picture(layout, f"SMT trains whole **{adapter.block}×{adapter.block} blocks**: "
                                f"{layout.detail['blocks']} selected in this matrix, {adapter.n_blocks} in all "
                                "targets. Yellow = trained block, dark = frozen.")]
    if layout.target in adapter.scores:
        import numpy as np

        sc = adapter.scores[layout.target].numpy()
        top = max(float(v.max()) for v in adapter.scores.values()) or 1.0
        sel = np.zeros(sc.shape, bool)
        mod = adapter.modules.get(layout.target)
        if mod is not None:
            sel[mod.brow.numpy(), mod.bcol.numpy()] = True
        k = adapter.knobs
        out.append(Picture("block_scores", "Warm-up score per block",
                           f"The score of a block is the **{k['score']}** of the gradient summed over the "
                           f"warm-up ({warmup.get('batches', '?')} batches of `{warmup.get('task', '?')}`), "
                           "divided by the largest score of all targets. Outlined blocks are the "
                           f"{'global' if k['selection'] == 'global' else 'per-matrix'} top-n.",
                           dict(scores=sc / top, selected=sel, block=adapter.block)))
    return out


def sweep_point(rank: int, budget: int, geo):
    """The number of b x b blocks nearest the budget (full warm-up, as in the public code)."""
    b = geo.b
    n = max(1, min(geo.total_blocks, round(budget / (b * b))))
    return (dict(targets=list(geo.targets), block_size=b, blocks=n, warmup_mode="full"),
            f"SMT {n} blocks of {b}×{b}")


# ----------------------------------------------------------------------------- memory facts

def settings_text(knobs: dict) -> str:
    bs = knobs.get("block_size") or "auto"
    if knobs.get("density"):
        budget = f"density {knobs['density']:.3g}"
    elif knobs.get("blocks"):
        budget = f"{knobs['blocks']:,} blocks"
    else:
        budget = "auto ≈1 % of all params"
    return f"{budget}, block {bs}, on {targets_text(knobs, KNOBS)}"


def smt_saves(call: LinearCall, block: int, ucols: int) -> bool:
    """A compact copy of the input columns the selected blocks read (``ucols`` column blocks of width b)."""
    call.save(f"{call.out_key}.xc", call.tokens * ucols * block * call.e, "SMT: input column blocks")
    return True


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """n b x b blocks (the same budget rule as the adapter, clamped to the blocks that exist), int32 block
    coordinates and column indices; the blocks are assumed spread evenly over the targets."""
    a = adapter_shapes(spec, "smt", knobs["targets"])
    shapes = a.shapes
    b = resolve_block_size(knobs["block_size"], [(o, i) for _, _, o, i in shapes])
    if b <= 0 or any(o % b or i % b for _, _, o, i in shapes):
        raise KnobError(f"smt: no block size divides every target of {spec.name}; set block_size")
    total_blocks = sum((o // b) * (i // b) for _, _, o, i in shapes)
    nb = max(1, min(block_budget(knobs, spec.n_params(), b, total_blocks)[0], total_blocks))  # the one rule
    per_matrix = nb / len(shapes)  # the selection is data-dependent: assume an even spread over the targets
    plan = MemoryPlan(knobs, trainable_parts=dict(blocks=nb * b * b, head=spec.head_params()),
                      extra_index_bytes=4 * 3 * nb + 4 * min(nb, sum(i // b for _, _, _, i in shapes)),
                      save_rules={t: partial(smt_saves, block=b, ucols=min(math.ceil(per_matrix), i // b))
                                  for t, (o, i) in a.by_type.items()},
                      uncast=frozenset(a.by_type))
    plan.notes.append(f"SMT: {nb} blocks of {b}x{b}; which matrices they fall in depends on the warm-up, so the "
                      "input columns saved for backward assume the blocks spread evenly over the targets "
                      "(each matrix's blocks in distinct column blocks: an upper bound).")
    plan.notes.append("SMT warm-up (full mode) costs full fine-tuning memory plus an fp32 gradient sum per "
                      "target for its warm-up steps; figures here are the steady state after selection.")
    return plan


METHOD = Method(
    label="SMT (Sparse Matrix Tuning)", short="SMT", paper="arXiv 2405.15525",
    description="Scores gradient blocks during a warm-up, keeps the global top-n b x b blocks, trains only those.",
    what_trains="the b×b blocks of W with the largest warm-up gradients",
    formula="n_blocks x b^2",
    deviations=[
        "Warm-up mode gradient-only (weights unchanged) is a labelled deviation; the default, full, fine-tunes every "
        "weight during the warm-up as the public code does.",
        "Small models need small blocks: the automatic block size is the largest of 256/64/32/16 that divides every "
        "target (the paper uses 256), and the automatic budget (about 1 % of all parameters) is capped at "
        f"{AUTO_CAP:.0%} of the targets' blocks.",
        "The Methods playground selects from a few gradient-only warm-up batches (said on the page); Fine-tune runs "
        "the full warm-up.",
        SCORE_NOTE,
    ],
    knobs=KNOBS, default_lr=2e-3, color_slot=1, apply=apply,
    has_warmup=True,  # a warm-up phase (knob warmup_steps) picks what trains
    takes_selection=True,  # trains a selection handed over (the block inspector's) instead of warming up
    warmup_is_full_finetuning=warmup_is_full_finetuning,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    playground_knobs=playground_knobs, sweep_point=sweep_point,
    playground_caption=("SMT picks its blocks from a gradient warm-up: here **{warm} batch(es), gradient-only** "
                        "(weights unchanged; a labelled shortcut: the paper's code fine-tunes ~100 steps). "
                        "The first view computes it (a few seconds on smollm2-135m); later moves reuse it."),
    memory_plan=memory_plan, settings_text=settings_text,
    memory_page_knobs={"blocks": "smt_blocks", "density": "smt_density", "block_size": "smt_bs"},  # knob -> key
    # a memory measurement picks its blocks after a short gradient-only warm-up (memory depends on how many, not
    # which)
    measure_knobs=dict(warmup_steps=2, warmup_mode="gradient-only"),
)
