"""SMT's block scoring and top-n selection (pure tensor functions; ``explorer.methods.smt`` re-exports them and
owns every other fact of the method, its automatic block size and budget included)."""

from __future__ import annotations

import torch

from .base import KnobError

SCORES = ["abs-mean", "mean-abs", "l1", "l2"]


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
