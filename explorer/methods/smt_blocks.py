"""SMT's block rules, pure functions of shapes, knobs and tensors: the automatic block size and budget, the one
budget rule, the block sizes that divide the targets, the block scores and the top-n selection.  The method's facts
(``explorer.methods.smt``) and its adapter (``explorer.methods.smt_adapter``) both read them from here."""

from __future__ import annotations

from typing import Iterable

import torch

from .base import KnobError

AUTO_SIZES = (256, 64, 32, 16)
MIN_AUTO_GRID = 8  # auto block size: the smallest target keeps at least this many blocks (a 64x64 matrix is 16 of 16)
AUTO_FRACTION = 0.01  # auto budget: about 1 % of all parameters (the paper's 0.86 % on LLaMA-2-7B)
AUTO_CAP = 0.25  # ... but never more than this share of the targets' blocks (tiny models: embeddings dominate)
SCORES = ["abs-mean", "mean-abs", "l1", "l2"]
SCORE_LABELS = {"abs-mean": "|mean| of the summed gradient (default)", "mean-abs": "mean of |gradient|",
                "l1": "L1 norm", "l2": "L2 norm"}

# the default score against the paper's words (checked in HectorHHZ/Sparse_Matrix_Tuning, peft/tuner/smt.py)
SCORE_NOTE = ("Block score: the default, |mean| of the gradient summed in the block (signed gradients cancel), is what "
              "the public SMT code computes by default: its option named `mean_abs` computes "
              "`grad.mean(dim=(1, 3)).abs()`. The paper's text says \"average absolute gradient\", which is the score "
              "`mean-abs` here (the public code's `abs_mean`).")


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
