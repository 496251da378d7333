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
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Iterable

import torch
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from explorer.sparse import SparseDeltaLinear
from explorer.targets import Target, set_submodule
from .base import Adapter, Knob, KnobError, Layout, head_state, load_head_state, resolve_targets, sparse_head_setup
from .facts import (KnobContext, Picture, Widget, fmt_count, fraction_knob, mask_delta, mask_picture, seed_knob,
                    targets_knob, with_head)
from .smt_blocks import SCORES, block_scores, select_blocks  # noqa: F401 - scoring and selection, re-exported

AUTO_SIZES = (256, 64, 32, 16)
MIN_AUTO_GRID = 8  # auto block size: the smallest target keeps at least this many blocks (a 64x64 matrix is 16 of 16)
AUTO_FRACTION = 0.01  # auto budget: about 1 % of all parameters (the paper's 0.86 % on LLaMA-2-7B)
AUTO_CAP = 0.25  # ... but never more than this share of the targets' blocks (tiny models: embeddings dominate)
SCORE_LABELS = {"abs-mean": "|mean| of the summed gradient (default)", "mean-abs": "mean of |gradient|",
                "l1": "L1 norm", "l2": "L2 norm"}

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


LABEL = "SMT (Sparse Matrix Tuning)"
SHORT = "SMT"
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
DESCRIPTION = "Scores gradient blocks during a warm-up, keeps the global top-n b x b blocks, trains only those."
WHAT_TRAINS = "the b×b blocks of W with the largest warm-up gradients"
PAPER = "arXiv 2405.15525"
FORMULA = "n_blocks x b^2"
DEFAULT_LR = 2e-3
HAS_WARMUP = True  # a warm-up phase (knob warmup_steps) picks what trains
TAKES_SELECTION = True  # trains a selection handed over (the block inspector's) instead of warming up
COLOR_SLOT = 1
DEVIATIONS = [
    "Warm-up mode gradient-only (weights unchanged) is a labelled deviation; the default, full, fine-tunes every "
    "weight during the warm-up as the public code does.",
    "Small models need small blocks: the automatic block size is the largest of 256/64/32/16 that divides every "
    "target (the paper uses 256), and the automatic budget (about 1 % of all parameters) is capped at "
    f"{AUTO_CAP:.0%} of the targets' blocks.",
    "The Methods playground selects from a few gradient-only warm-up batches (said on the page); Fine-tune runs "
    "the full warm-up.",
]


# ----------------------------------------------------------------------------- scoring and selection


def auto_block_size(shapes: Iterable[tuple[int, int]]) -> int:
    """The largest of 256/64/32/16 that divides every target and leaves at least ``MIN_AUTO_GRID`` blocks in
    the smallest target (so a 64x64 matrix is not one single block); failing that, the largest that divides
    every target; 0 when none does."""
    shapes = list(shapes)
    divides = [b for b in AUTO_SIZES if all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes)]
    for b in divides:
        if shapes and min((d_out // b) * (d_in // b) for d_out, d_in in shapes) >= MIN_AUTO_GRID:
            return b
    return divides[-1] if divides else 0


def auto_blocks(n_base: int, b: int, total_blocks: int) -> tuple[int, str]:
    """SMT's automatic budget: about 1 % of all parameters in b x b blocks, capped at ``AUTO_CAP`` of the
    targets' blocks.  Returns (blocks, a note when the cap applied, else "")."""
    want = max(1, int(round(AUTO_FRACTION * n_base / (b * b))))
    cap = max(1, int(AUTO_CAP * total_blocks))
    if want <= cap:
        return want, ""
    return cap, (f"auto budget capped: 1 % of all {n_base:,} parameters would be {want:,} blocks of {b}x{b}, but "
                 f"the targets hold only {total_blocks:,}; using {AUTO_CAP:.0%} of them ({cap:,} blocks). "
                 "Small models: the embeddings hold most parameters.")


def resolve_block_size(block_size: int, shapes: Iterable[tuple[int, int]]) -> int:
    """The block size in use: the knob's value, or the automatic one when it is 0."""
    return int(block_size) or auto_block_size(shapes)


def block_budget(knobs: dict, n_base: int, b: int, total_blocks: int) -> tuple[int, str]:
    """How many b x b blocks train: ``density`` of the targets' blocks when > 0, else ``blocks`` when > 0, else
    the automatic budget (:func:`auto_blocks`: about 1 % of all parameters).  The one budget rule of SMT, used
    by the adapter, the memory model and the block inspector.  Returns (blocks, a note when the cap applied)."""
    if knobs.get("density") and knobs["density"] > 0:
        return int(round(knobs["density"] * total_blocks)), ""
    if knobs.get("blocks"):
        return int(knobs["blocks"]), ""
    return auto_blocks(n_base, b, total_blocks)


def valid_block_sizes(shapes: Iterable[tuple[int, int]], limit: int = 512) -> list[int]:
    shapes = list(shapes)
    return [b for b in range(1, limit + 1)
            if all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes)]


# ----------------------------------------------------------------------------- adapter


class SMTAdapter(Adapter):
    method = "smt"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int, selection: dict | None = None):
        super().__init__(model, knobs, n_base)
        self.targets: list[Target] = resolve_targets(model, knobs["targets"], self.method)
        shapes = [(t.d_out, t.d_in) for t in self.targets]
        b = resolve_block_size(knobs["block_size"], shapes)
        if b <= 0 or not all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes):
            valid = [v for v in valid_block_sizes(shapes) if v >= 4]
            raise KnobError(f"smt: block size {knobs['block_size'] or 'auto'} does not divide every target "
                            f"matrix ({', '.join(sorted({f'{a}x{c}' for a, c in shapes}))}); "
                            f"valid sizes: {', '.join(map(str, valid[-8:])) or 'none'}")
        self.block = b
        total_blocks = sum((t.d_out // b) * (t.d_in // b) for t in self.targets)
        n, capped = block_budget(knobs, n_base, b, total_blocks)
        if capped:
            self.notes.append(capped)
        if n < 1:
            raise KnobError("smt: the budget selects no block; raise the number of blocks or the density")
        if n > total_blocks:
            raise KnobError(f"smt: {n} blocks asked but the targets hold only {total_blocks} blocks of {b}x{b}")
        self.n_blocks = n
        self.total_blocks = total_blocks
        self.grad_sums: dict[str, torch.Tensor] | None = None
        self.warmup_done = 0
        self.scores: dict[str, torch.Tensor] = {}
        self.modules: dict[str, SparseDeltaLinear] = {}
        self.notes.append(f"Block size {b} x {b}" + (" (auto: 256 does not divide these matrices or leaves too "
                                                       "few blocks)" if not knobs["block_size"] and b != 256 else "") +
                          f"; {n} of {total_blocks} blocks ({n / total_blocks:.2%} of the targets); "
                          f"score: {SCORE_LABELS[knobs['score']]}; selection: {knobs['selection']}.")
        if knobs["warmup_mode"] == "gradient-only":
            self.notes.append("Warm-up mode gradient-only (a deviation from the public code): the warm-up sums "
                              "gradients but leaves every weight unchanged.")
        else:
            self.notes.append("Warm-up mode full, as in the public code: the warm-up steps are full fine-tuning "
                              "(all weights move; memory as full fine-tuning during the warm-up).")
        if selection is not None:
            self.install(selection)

    # --- warm-up protocol (used by the training loop and by run_warmup) ------
    @property
    def needs_warmup(self) -> bool:  # type: ignore[override]
        return not self.modules

    @property
    def warmup_moves_weights(self) -> bool:  # type: ignore[override]
        return self.knobs.get("warmup_mode") == "full"

    @property
    def delta_granule(self) -> int:  # type: ignore[override]
        return self.block

    def warmup_signature(self) -> tuple:
        """What the warm-up's summed gradients depend on besides the model, data and seed (its targets)."""
        return tuple(self.knobs["targets"])

    def analytic_bytes(self) -> int:
        n = super().analytic_bytes()
        if self.needs_warmup:  # before the selection: its budget of fp32 blocks and their int32 coordinates
            n += self.n_blocks * (self.block ** 2 * 4 + 2 * 4)
        return n

    def meta_note(self) -> str:
        b = self.block
        grids = sorted({f"{t.d_out // b}x{t.d_in // b}" for t in self.targets})
        return (f"Config only: SMT's selection needs a warm-up on real weights (gradients), so no block is chosen "
                f"here. Budget: {self.n_blocks:,} of {self.total_blocks:,} blocks of {b}x{b} "
                f"({self.n_blocks * b * b:,} parameters); block grid per target: {', '.join(grids)}.")

    def shortcut_note(self, batches: int, task: str) -> str:
        """Said when the playground selected from a short gradient-only warm-up."""
        return (f"Playground warm-up: {batches} batch(es) of '{task}', gradient-only "
                "(a labelled deviation: the public code fine-tunes fully for ~100 steps). "
                "Training on the Fine-tune page runs the full warm-up.")

    def begin_warmup(self) -> list[nn.Parameter]:
        """Set which tensors need gradients; return the ones the warm-up optimizer updates."""
        self.grad_sums = {t.name: torch.zeros(t.d_out, t.d_in, dtype=torch.float32,
                                              device=self.model.get_submodule(t.name).weight.device)
                          for t in self.targets}
        if self.knobs["warmup_mode"] == "full":
            for p in self.model.parameters():
                p.requires_grad_(True)
            return [p for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        for t in self.targets:
            self.model.get_submodule(t.name).weight.requires_grad_(True)
        return []

    @torch.no_grad()
    def accumulate(self) -> None:
        """After a backward pass: add each target's gradient to its fp32 running sum."""
        assert self.grad_sums is not None, "call begin_warmup() first"
        for t in self.targets:
            w = self.model.get_submodule(t.name).weight
            if w.grad is not None:
                self.grad_sums[t.name] += w.grad.float()
                if self.knobs["warmup_mode"] != "full":
                    w.grad = None
        self.warmup_done += 1

    def finish_warmup(self, sums: dict | None = None) -> dict:
        """Score, select and install the blocks from the summed gradients (``sums``: ones computed earlier)."""
        if sums is None:
            assert self.grad_sums is not None, "call begin_warmup() first"
            sums = self.grad_sums
        self.scores = {k: block_scores(g, self.block, self.knobs["score"]).cpu() for k, g in sums.items()}
        sel = select_blocks(self.scores, self.n_blocks, self.knobs["selection"])
        self.grad_sums = None
        for p in self.model.parameters():
            p.grad = None
            p.requires_grad_(False)
        self.install(sel)
        return sel

    def install(self, selection: dict) -> None:
        for t in self.targets:
            rows, cols = selection.get(t.name, ([], []))
            rows = torch.as_tensor(rows, dtype=torch.int32)
            cols = torch.as_tensor(cols, dtype=torch.int32)
            if rows.numel() and (int(rows.max()) >= t.d_out // self.block or int(cols.max()) >= t.d_in // self.block):
                raise KnobError(f"smt: a selected block lies outside {t.name} ({t.d_out}x{t.d_in}, b={self.block})")
            if rows.numel() == 0:
                continue
            base = self.model.get_submodule(t.name)
            base = base.base if isinstance(base, SparseDeltaLinear) else base
            mod = SparseDeltaLinear(base, brow=rows, bcol=cols, block=self.block)
            set_submodule(self.model, t.name, mod)
            self.modules[t.name] = mod
        for p in self.model.parameters():
            if not any(p is m.delta for m in self.modules.values()):
                p.requires_grad_(False)
        sparse_head_setup(self.model)

    def selection(self) -> dict:
        return {n: (m.brow.clone(), m.bcol.clone()) for n, m in self.modules.items()}

    # --- interface ------------------------------------------------------------
    def num_trainable(self) -> int:
        if self.needs_warmup:  # before selection: what will train afterwards
            return self.n_blocks * self.block ** 2 + self.head_parameters()
        return super().num_trainable()

    def layouts(self):
        out = []
        for t in self.targets:
            m = self.modules.get(t.name)
            n = m.delta.numel() if m is not None else 0
            out.append(Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "blocks", n, n,
                              detail=dict(block=self.block, blocks=n // (self.block ** 2),
                                          grid=[t.d_out // self.block, t.d_in // self.block],
                                          selected=self.needs_warmup is False),
                              _mask=(m.mask if m is not None else
                                     (lambda s=(t.d_out, t.d_in): __import__("numpy").zeros(s, dtype=bool)))))
        return out

    def config(self):
        c = super().config()
        c["block_size"] = self.block
        c["n_blocks"] = self.n_blocks
        return c

    def state_tensors(self):
        out = head_state(self.model)
        for n, m in self.modules.items():
            out[f"{n}.brow"] = m.brow
            out[f"{n}.bcol"] = m.bcol
            out[f"{n}.delta"] = m.delta.detach()
        return out

    def load_state_tensors(self, tensors):
        sel = {}
        for t in self.targets:
            if f"{t.name}.brow" in tensors:
                sel[t.name] = (tensors[f"{t.name}.brow"], tensors[f"{t.name}.bcol"])
        self.install(sel)
        load_head_state(self.model, tensors)
        with torch.no_grad():
            for n, m in self.modules.items():
                m.delta.copy_(tensors[f"{n}.delta"])


def run_warmup(adapter: SMTAdapter, batches: Iterable[dict], loss_fn: Callable | None = None, lr: float = 1e-4,
               weight_decay: float = 0.0, max_steps: int | None = None) -> dict:
    """A self-contained warm-up (for the command line and the playground):
    ``warmup_steps`` batches, then selection.  Returns the selection.  Each batch is one
    ``explorer.engine.step.run_step`` with the adapter's gradient sums as its sink."""
    from explorer.engine.step import StepPlan, default_loss, run_step

    params = adapter.begin_warmup()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if params else None
    plan = StepPlan(optimizer=opt, sink=adapter.accumulate, loss_fn=loss_fn or default_loss)
    was_training = adapter.model.training
    adapter.model.train()
    steps = max_steps or adapter.knobs["warmup_steps"]
    done = 0
    for batch in batches:
        if done >= steps:
            break
        if not run_step(adapter.model, batch, plan).ok:
            raise FloatingPointError("smt: the warm-up loss is not finite")
        done += 1
    adapter.model.train(was_training)
    if done == 0:
        raise KnobError("smt: the warm-up saw no batch")
    return adapter.finish_warmup()


def apply(model, knobs, n_base, selection=None, **_):
    return SMTAdapter(model, knobs, n_base, selection=selection)


# ----------------------------------------------------------------------------- what the playground draws

PLAYGROUND_CAPTION = ("SMT picks its blocks from a gradient warm-up: here **{warm} batch(es), gradient-only** "
                      "(weights unchanged; a labelled shortcut: the paper's code fine-tunes ~100 steps). "
                      "The first view computes it (a few seconds on smollm2-135m); later moves reuse it.")


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

MEMORY_PAGE_KNOBS = {"blocks": "smt_blocks", "density": "smt_density", "block_size": "smt_bs"}  # knob -> page key
# a memory measurement picks its blocks after a short gradient-only warm-up (memory depends on how many, not which)
MEASURE_KNOBS = dict(warmup_steps=2, warmup_mode="gradient-only")


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
                                  for t, (o, i) in a.by_type.items()})
    plan.notes.append(f"SMT: {nb} blocks of {b}x{b}; which matrices they fall in depends on the warm-up, so the "
                      "input columns saved for backward assume the blocks spread evenly over the targets "
                      "(each matrix's blocks in distinct column blocks: an upper bound).")
    plan.notes.append("SMT warm-up (full mode) costs full fine-tuning memory plus an fp32 gradient sum per "
                      "target for its warm-up steps; figures here are the steady state after selection.")
    return plan
