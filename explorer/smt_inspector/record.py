"""The record of one SMT warm-up: block reductions of the summed gradients at the finest grain (no Streamlit).

It never keeps full-size sums: at each checkpoint it holds, per g x g block (the grain ``g``, 16 by
default) of the running sum S, sum(S), sum(|S|) and sum(S^2).  Any block size b that is a multiple
of g re-aggregates from these exactly: |mean| = |sum S| / b^2, mean|.| = sum|S| / b^2, L1 = sum|S|,
L2 = sqrt(sum S^2).  It also holds sum(|W|) per g x g block of the base weights and, in full mode,
sum(|W_after - W_before|).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from explorer.methods.base import KnobError
from explorer.methods.smt_blocks import valid_block_sizes
from explorer.targets import Target


@dataclass
class GradientRecord:
    """Block reductions of the warm-up's summed gradients at the finest grain.

    ``sums[i]``, ``abs_sums[i]``, ``sq_sums[i]``: flat float32 arrays (every target's
    grain grid, row-major, concatenated in ``targets`` order) after ``steps[i]``
    warm-up steps; the last entry is the final sum.
    """

    key: str | None
    meta: dict
    targets: list[Target]
    grain: int
    steps: list[int]
    sums: list[np.ndarray]
    abs_sums: list[np.ndarray]
    sq_sums: list[np.ndarray]
    w_abs: np.ndarray
    dw_abs: np.ndarray | None = None
    offsets: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.offsets:
            off, out = 0, []
            for t in self.targets:
                out.append(off)
                off += (t.d_out // self.grain) * (t.d_in // self.grain)
            out.append(off)
            self.offsets = out

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def steps_done(self) -> int:
        return self.steps[-1]

    def grid(self, arr: np.ndarray, i: int) -> torch.Tensor:
        t = self.targets[i]
        a, b = self.offsets[i], self.offsets[i + 1]
        return torch.from_numpy(arr[a:b].reshape(t.d_out // self.grain, t.d_in // self.grain))

    def types(self) -> list[str]:
        seen = []
        for t in self.targets:
            if t.type not in seen:
                seen.append(t.type)
        return seen

    def block_sizes(self, types: Iterable[str] | None = None, limit: int = 4096) -> list[int]:
        """Block sizes the record can score: multiples of the grain that divide every chosen matrix."""
        ts = pick_targets(self, types)
        return [b for b in valid_block_sizes([(t.d_out, t.d_in) for t in ts], limit=limit) if b % self.grain == 0]


def default_grain(shapes: list[tuple[int, int]], preferred: int = 16) -> int:
    """The finest block grain stored: the smallest valid size >= ``preferred``, else the largest valid one."""
    valid = valid_block_sizes(shapes, limit=4096)
    above = [b for b in valid if b >= preferred]
    return above[0] if above else valid[-1]


def block_sum(x: torch.Tensor, g: int) -> torch.Tensor:
    """Signed sum of every g x g block (block_scores gives |mean|, which loses the sign we need to re-aggregate)."""
    d_out, d_in = x.shape
    return x.reshape(d_out // g, g, d_in // g, g).sum(dim=(1, 3))


def record_from_sums(targets: list[Target], sums_per_step: list[dict[str, torch.Tensor]], steps: list[int],
                     grain: int, weights: dict[str, torch.Tensor] | None = None,
                     weights_after: dict[str, torch.Tensor] | None = None, meta: dict | None = None) -> GradientRecord:
    """A record from full-size summed gradients given directly (planted gradients, sums made elsewhere).

    ``sums_per_step[i][name]`` is the running sum after ``steps[i]`` steps; ``weights`` the base weights
    (zeros when omitted) and ``weights_after`` the weights after a full warm-up (optional).
    """
    def flat(fn):
        return np.concatenate([block_sum(fn(t).float(), grain).reshape(-1).numpy() for t in targets]).astype(np.float32)

    zero = {t.name: torch.zeros(t.d_out, t.d_in) for t in targets}
    weights = weights or zero
    m = dict(model="custom", task_name="custom", mode="full" if weights_after is not None else "gradient-only",
             steps_done=steps[-1], notes=[], losses=[])
    m.update(meta or {})
    return GradientRecord(
        key=None, meta=m, targets=list(targets), grain=int(grain), steps=[int(s) for s in steps],
        sums=[flat(lambda t, S=S: S[t.name]) for S in sums_per_step],
        abs_sums=[flat(lambda t, S=S: S[t.name].abs()) for S in sums_per_step],
        sq_sums=[flat(lambda t, S=S: S[t.name] * S[t.name]) for S in sums_per_step],
        w_abs=flat(lambda t: weights[t.name].abs()),
        dw_abs=None if weights_after is None else flat(lambda t: (weights_after[t.name] - weights[t.name]).abs()))


def pick_targets(rec: GradientRecord, types) -> list[Target]:
    if types is None or (not isinstance(types, str) and len(list(types)) == 0):
        return list(rec.targets)
    if isinstance(types, str):
        types = [s.strip() for s in types.split(",") if s.strip()]
    types = list(types)
    have = rec.types()
    bad = [t for t in types if t not in have]
    if bad:
        raise KnobError(f"smt analysis: unknown matrix type(s) {', '.join(map(str, bad))[:80]}; "
                        f"this model has {', '.join(have)}")
    return [t for t in rec.targets if t.type in types]


__all__ = ["GradientRecord", "default_grain", "block_sum", "record_from_sums", "pick_targets"]
