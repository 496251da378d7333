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
from explorer.targets import ALL_TYPES, Target, set_submodule
from .base import Adapter, Knob, KnobError, Layout, head_state, load_head_state, resolve_targets, sparse_head_setup

SCORES = ["abs-mean", "mean-abs", "l1", "l2"]
AUTO_SIZES = (256, 64, 32, 16)
MIN_AUTO_GRID = 8  # auto block size: the smallest target keeps at least this many blocks (a 64x64 matrix is 16 of 16)
AUTO_FRACTION = 0.01  # auto budget: about 1 % of all parameters (the paper's 0.86 % on LLaMA-2-7B)
AUTO_CAP = 0.25  # ... but never more than this share of the targets' blocks (tiny models: embeddings dominate)
SCORE_LABELS = {"abs-mean": "|mean| of the summed gradient (default)", "mean-abs": "mean of |gradient|",
                "l1": "L1 norm", "l2": "L2 norm"}

KNOBS = [
    Knob("targets", "multi", ["q", "k", "v"], "target matrices (q, k, v in the paper)", choices=ALL_TYPES,
         label="target matrices"),
    Knob("block_size", "int", 0, "block size b (0 = auto: the largest of 256/64/32/16 that divides every target "
         f"and leaves at least {MIN_AUTO_GRID} blocks in the smallest one)", min=0, max=4096, label="block size b"),
    Knob("blocks", "int", 0, "number of blocks to train (0 = auto: about 1 % of all parameters, at most "
         f"{AUTO_CAP:.0%} of the targets' blocks)", min=0, max=10_000_000, label="number of blocks (0 = auto)"),
    Knob("density", "float", 0.0, "fraction of the target matrices to train, overrides blocks when > 0",
         min=0.0, max=1.0, label="density (overrides the number of blocks)"),
    Knob("score", "choice", "abs-mean", "block score", choices=SCORES, label="block score"),
    Knob("selection", "choice", "global", "global top-n across all targets, or the same budget split evenly "
         "per matrix", choices=["global", "per-matrix"], label="top-n blocks taken"),
    Knob("warmup_steps", "int", 100, "warm-up steps that sum the gradients", min=1, max=100_000,
         label="warm-up steps"),
    Knob("warmup_mode", "choice", "full", "full: full fine-tuning during warm-up as in the public code; "
         "gradient-only: weights unchanged (deviation)", choices=["full", "gradient-only"], label="warm-up mode"),
    Knob("seed", "int", 0, "seed (ties between equal scores are broken by position)", min=0, max=2**31 - 1,
         label="random seed"),
]
DESCRIPTION = "Scores gradient blocks during a warm-up, keeps the global top-n b x b blocks, trains only those."
PAPER = "arXiv 2405.15525"
FORMULA = "n_blocks x b^2"


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


def valid_block_sizes(shapes: Iterable[tuple[int, int]], limit: int = 512) -> list[int]:
    shapes = list(shapes)
    return [b for b in range(1, limit + 1)
            if all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes)]


def block_scores(grad_sum: torch.Tensor, b: int, score: str = "abs-mean") -> torch.Tensor:
    """Scores of every b x b block of a summed gradient, shape (d_out / b, d_in / b), fp32."""
    d_out, d_in = grad_sum.shape
    g = grad_sum.float().reshape(d_out // b, b, d_in // b, b)
    if score == "abs-mean":
        return g.mean(dim=(1, 3)).abs()
    if score == "mean-abs":
        return g.abs().mean(dim=(1, 3))
    if score == "l1":
        return g.abs().sum(dim=(1, 3))
    if score == "l2":
        return g.pow(2).sum(dim=(1, 3)).sqrt()
    raise KnobError(f"smt: unknown score '{score}'; choose from {', '.join(SCORES)}")


def select_blocks(scores: dict[str, torch.Tensor], n: int, rule: str = "global") -> dict[str, tuple]:
    """Top-n blocks: ``{name: (rows int32, cols int32)}``.  Ties are broken by position (stable)."""
    names = list(scores)
    total = sum(s.numel() for s in scores.values())
    n = max(0, min(int(n), total))
    out = {}
    if rule == "global":
        flat = torch.cat([scores[k].reshape(-1).float() for k in names])
        # stable: descending score, then ascending position
        order = torch.sort(flat, descending=True, stable=True).indices[:n]
        offs, start = {}, 0
        for k in names:
            offs[k] = (start, start + scores[k].numel())
            start += scores[k].numel()
        for k in names:
            a, b = offs[k]
            sel = order[(order >= a) & (order < b)] - a
            C = scores[k].shape[1]
            out[k] = ((sel // C).to(torch.int32), (sel % C).to(torch.int32))
    elif rule == "per-matrix":
        m = len(names)
        quota = [n // m + (1 if i < n % m else 0) for i in range(m)]
        # a matrix with fewer blocks than its quota passes the rest on
        spare = 0
        for i, k in enumerate(names):
            q = quota[i] + spare
            cap = scores[k].numel()
            take = min(q, cap)
            spare = q - take
            order = torch.sort(scores[k].reshape(-1).float(), descending=True, stable=True).indices[:take]
            C = scores[k].shape[1]
            out[k] = ((order // C).to(torch.int32), (order % C).to(torch.int32))
    else:
        raise KnobError(f"smt: unknown selection rule '{rule}'; choose global or per-matrix")
    return out


# ----------------------------------------------------------------------------- adapter


class SMTAdapter(Adapter):
    method = "smt"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int, selection: dict | None = None):
        super().__init__(model, knobs, n_base)
        self.targets: list[Target] = resolve_targets(model, knobs["targets"], self.method)
        shapes = [(t.d_out, t.d_in) for t in self.targets]
        b = knobs["block_size"] or auto_block_size(shapes)
        if b <= 0 or not all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes):
            valid = [v for v in valid_block_sizes(shapes) if v >= 4]
            raise KnobError(f"smt: block size {knobs['block_size'] or 'auto'} does not divide every target "
                            f"matrix ({', '.join(sorted({f'{a}x{c}' for a, c in shapes}))}); "
                            f"valid sizes: {', '.join(map(str, valid[-8:])) or 'none'}")
        self.block = b
        total_blocks = sum((t.d_out // b) * (t.d_in // b) for t in self.targets)
        if knobs["density"] and knobs["density"] > 0:
            n = int(round(knobs["density"] * total_blocks))
        elif knobs["blocks"]:
            n = int(knobs["blocks"])
        else:
            n, capped = auto_blocks(n_base, b, total_blocks)
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

    def finish_warmup(self) -> dict:
        assert self.grad_sums is not None, "call begin_warmup() first"
        self.scores = {k: block_scores(g, self.block, self.knobs["score"]).cpu() for k, g in self.grad_sums.items()}
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
    b = knobs["block_size"] or auto_block_size([(o, i) for _, _, o, i in shapes])
    if b <= 0 or any(o % b or i % b for _, _, o, i in shapes):
        raise KnobError(f"smt: no block size divides every target of {spec.name}; set block_size")
    total_blocks = sum((o // b) * (i // b) for _, _, o, i in shapes)
    if knobs["density"] and knobs["density"] > 0:
        nb = int(round(knobs["density"] * total_blocks))
    elif knobs["blocks"]:
        nb = int(knobs["blocks"])
    else:
        nb = auto_blocks(spec.n_params(), b, total_blocks)[0]
    nb = max(1, min(nb, total_blocks))
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
