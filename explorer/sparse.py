"""One sparse mechanism for LoRA-SP, SpaRTA and SMT.

A frozen dense tensor plus a trainable sparse part that exists *only* for the
selected entries (SpaRTA, LoRA-SP) or the selected b x b blocks (SMT).  The
custom autograd functions return the dense input gradient and gradients for
the selected entries or blocks only: no dense weight gradient is kept and the
optimizer only ever sees the small tensors.

Indices are stored as int32 (row, col) coordinates; they are widened to int64
only transiently when used for indexing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- helpers


def scatter_entries(base: torch.Tensor, flat_idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``base`` with the entries at ``flat_idx`` replaced by ``values`` (differentiable in ``values``).

    Used for the small LoRA-SP factors: the frozen entries keep their values from
    ``base`` (a buffer), the trainable ones come from ``values`` (a parameter).
    """
    flat = base.reshape(-1)
    out = flat.index_put((flat_idx.long(),), values.to(flat.dtype))
    return out.view_as(base)


def dense_from_entries(shape, rows, cols, delta, dtype=None) -> torch.Tensor:
    d = torch.zeros(shape, dtype=dtype or delta.dtype, device=delta.device)
    d.index_put_((rows.long(), cols.long()), delta.to(d.dtype), accumulate=True)
    return d


def dense_from_blocks(shape, brow, bcol, delta, b, dtype=None) -> torch.Tensor:
    d_out, d_in = shape
    R, C = d_out // b, d_in // b
    d4 = torch.zeros((R, C, b, b), dtype=dtype or delta.dtype, device=delta.device)
    d4[brow.long(), bcol.long()] = delta.to(d4.dtype)
    return d4.permute(0, 2, 1, 3).reshape(d_out, d_in)


def entry_mask(shape, rows, cols) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
    return m


def block_mask(shape, brow, bcol, b) -> np.ndarray:
    d_out, d_in = shape
    grid = np.zeros((d_out // b, d_in // b), dtype=bool)
    grid[np.asarray(brow, dtype=np.int64), np.asarray(bcol, dtype=np.int64)] = True
    return np.kron(grid, np.ones((b, b), dtype=bool))


def random_entries(shape, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``k`` distinct (row, col) coordinates, uniformly at random, sorted, int32."""
    d_out, d_in = shape
    n = d_out * d_in
    k = max(0, min(int(k), n))
    flat = torch.randperm(n, generator=generator)[:k].sort().values
    return (flat // d_in).to(torch.int32), (flat % d_in).to(torch.int32)


def linear_from(base: nn.Linear, weight: torch.Tensor) -> nn.Linear:
    """A plain frozen ``nn.Linear`` with ``weight`` (cast to the base dtype) and the base's bias."""
    lin = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                    device=base.weight.device, dtype=base.weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight.to(lin.weight.dtype))
        if base.bias is not None:
            lin.bias.copy_(base.bias)
    for p in lin.parameters():
        p.requires_grad_(False)
    return lin


# ----------------------------------------------------------------------------- autograd


class _EntryDeltaLinear(torch.autograd.Function):
    """y = x (W + scatter(delta))^T + bias, gradients for x and delta only."""

    @staticmethod
    def forward(ctx, x, weight, bias, rows, cols, delta):
        d = dense_from_entries(weight.shape, rows, cols, delta, dtype=weight.dtype)
        y = F.linear(x, weight + d, bias)
        ctx.save_for_backward(x, weight, rows, cols, delta)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, rows, cols, delta = ctx.saved_tensors
        d_out, d_in = weight.shape
        gx = gdelta = None
        if ctx.needs_input_grad[0]:
            w_eff = weight + dense_from_entries(weight.shape, rows, cols, delta, dtype=weight.dtype)
            gx = gy @ w_eff.to(gy.dtype)
        if ctx.needs_input_grad[5]:
            gy2 = gy.reshape(-1, d_out).float()
            x2 = x.reshape(-1, d_in).float()
            n_tok, k = gy2.shape[0], rows.numel()
            if n_tok * k <= d_out * d_in:
                # gather the few needed columns: O(tokens x k)
                gdelta = (gy2[:, rows.long()] * x2[:, cols.long()]).sum(0)
            else:
                # many entries: a transient product per chunk of rows, gathered and freed at once (no
                # host-device sync: the entries of each chunk are picked with torch.where, not sliced by position)
                gdelta = torch.zeros(k, dtype=torch.float32, device=gy.device)
                r64, c64 = rows.long(), cols.long()
                chunk = max(1, (1 << 22) // max(d_in, 1))
                for i in range(0, d_out, chunk):
                    part = gy2[:, i:i + chunk].t() @ x2  # (chunk, d_in), transient
                    r = r64 - i
                    inside = (r >= 0) & (r < part.shape[0])
                    gdelta = torch.where(inside, part[r.clamp(0, part.shape[0] - 1), c64], gdelta)
                    del part
            gdelta = gdelta.to(delta.dtype)
        return gx, None, None, None, None, gdelta


class _BlockDeltaLinear(torch.autograd.Function):
    """y = x (W + blocks(delta))^T + bias; saves only the needed column blocks of x."""

    @staticmethod
    def forward(ctx, x, weight, bias, brow, bcol, delta, b, ucols, colpos):
        d = dense_from_blocks(weight.shape, brow, bcol, delta, b, dtype=weight.dtype)
        y = F.linear(x, weight + d, bias)
        d_in = weight.shape[1]
        # a compact copy (not a view) of the input column blocks the selected blocks read
        xc = x.reshape(-1, d_in // b, b)[:, ucols.long(), :].contiguous()
        ctx.b = b
        ctx.save_for_backward(xc, weight, brow, bcol, delta, colpos)
        return y

    @staticmethod
    def backward(ctx, gy):
        xc, weight, brow, bcol, delta, colpos = ctx.saved_tensors
        b = ctx.b
        d_out, d_in = weight.shape
        gx = gdelta = None
        if ctx.needs_input_grad[0]:
            w_eff = weight + dense_from_blocks(weight.shape, brow, bcol, delta, b, dtype=weight.dtype)
            gx = gy @ w_eff.to(gy.dtype)
        if ctx.needs_input_grad[5]:
            gy3 = gy.reshape(-1, d_out // b, b).float()
            xcf = xc.float()
            n = brow.numel()
            gdelta = torch.empty((n, b, b), dtype=torch.float32, device=gy.device)
            step = 64
            for s in range(0, n, step):
                g = gy3[:, brow[s:s + step].long(), :].permute(1, 2, 0)  # (m, b, N)
                xx = xcf[:, colpos[s:s + step].long(), :].permute(1, 0, 2)  # (m, N, b)
                gdelta[s:s + step] = torch.bmm(g, xx)
            gdelta = gdelta.to(delta.dtype)
        return gx, None, None, None, None, gdelta, None, None, None


# ----------------------------------------------------------------------------- modules


def _index_device(base: nn.Linear) -> torch.device:
    """Where a module's index buffers live: with its weight (indices made on the CPU for a model already on a GPU
    would be copied to the GPU in every forward and backward); a config-only (meta) weight keeps them on the CPU."""
    dev = base.weight.device
    return torch.device("cpu") if dev.type == "meta" else dev


class SparseDeltaLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable sparse delta (entries or blocks).

    Only ``delta`` is a parameter.  The original weight is never written to, so
    merging is always ``original + delta`` (no drift from repeated merges).
    """

    def __init__(self, base: nn.Linear, *, rows=None, cols=None, brow=None, bcol=None, block: int = 0):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.shape = (base.out_features, base.in_features)
        self.block = int(block)
        if self.block:
            brow = torch.as_tensor(brow, dtype=torch.int32)
            bcol = torch.as_tensor(bcol, dtype=torch.int32)
            order = torch.argsort(brow.long() * (self.shape[1] // self.block) + bcol.long())
            brow, bcol = brow[order], bcol[order]
            ucols = torch.unique(bcol).to(torch.int32)
            colpos = torch.searchsorted(ucols.long(), bcol.long()).to(torch.int32)
            dev = _index_device(base)
            self.register_buffer("brow", brow.to(dev))
            self.register_buffer("bcol", bcol.to(dev))
            self.register_buffer("ucols", ucols.to(dev), persistent=False)
            self.register_buffer("colpos", colpos.to(dev), persistent=False)
            self.delta = nn.Parameter(torch.zeros((brow.numel(), self.block, self.block), dtype=torch.float32,
                                                  device=base.weight.device))
        else:
            rows = torch.as_tensor(rows, dtype=torch.int32)
            cols = torch.as_tensor(cols, dtype=torch.int32)
            order = torch.argsort(rows.long() * self.shape[1] + cols.long())
            dev = _index_device(base) if rows.device.type != "meta" else rows.device
            self.register_buffer("rows", rows[order].to(dev))
            self.register_buffer("cols", cols[order].to(dev))
            self.delta = nn.Parameter(torch.zeros(rows.numel(), dtype=torch.float32, device=base.weight.device))

    @property
    def weight(self):  # for code that inspects .weight (read-only view of the frozen base)
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    def forward(self, x):
        w, bias = self.base.weight, self.base.bias
        if self.block:
            return _BlockDeltaLinear.apply(x, w, bias, self.brow, self.bcol, self.delta, self.block,
                                           self.ucols, self.colpos)
        return _EntryDeltaLinear.apply(x, w, bias, self.rows, self.cols, self.delta)

    def delta_dense(self) -> torch.Tensor:
        if self.block:
            return dense_from_blocks(self.shape, self.brow, self.bcol, self.delta.detach(), self.block)
        return dense_from_entries(self.shape, self.rows, self.cols, self.delta.detach())

    def merged_weight(self) -> torch.Tensor:
        w = self.base.weight.detach()
        return (w.float() + self.delta_dense().float()).to(w.dtype)

    def mask(self) -> np.ndarray:
        if self.block:
            return block_mask(self.shape, self.brow.cpu().numpy(), self.bcol.cpu().numpy(), self.block)
        return entry_mask(self.shape, self.rows.cpu().numpy(), self.cols.cpu().numpy())

    def to_linear(self) -> nn.Linear:
        return linear_from(self.base, self.merged_weight())

    def extra_repr(self) -> str:
        n = self.delta.numel()
        kind = f"{self.brow.numel()} blocks of {self.block}x{self.block}" if self.block else f"{n} entries"
        return f"shape={self.shape}, trainable={kind}"
