"""SpaRTA (arXiv 2502.15975): train a random sparse subset of individual entries.

Each chosen entry has a zero-initialised fp32 delta; indices are int32 (row, col)
coordinates; W_eff = W_orig + scatter(delta).  Default targets: attention value
and output (Wv, Wo).  The classification head trains fully and is counted.

The budget is either the paper's ``sparsity`` (measured against *all* model
parameters: 0.99 keeps 1 %) or a ``density`` inside the target matrices.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from ..sparse import SparseDeltaLinear, random_entries
from ..targets import ALL_TYPES, set_submodule
from .base import Adapter, Knob, KnobError, Layout, head_state, load_head_state, resolve_targets, sparse_head_setup

KNOBS = [
    Knob("targets", "multi", ["v", "o"], "target matrices (attention value and output in the paper)",
         choices=ALL_TYPES, label="target matrices"),
    Knob("sparsity", "float", 0.99, "paper's sparsity, of ALL model parameters (0.99 keeps 1 %); "
         "ignored when density > 0", min=0.0, max=1.0, label="sparsity (of all parameters)"),
    Knob("density", "float", 0.0, "fraction of the entries of the target matrices to train (0 = use sparsity)",
         min=0.0, max=1.0, label="density (of the targets, 0 = use sparsity)"),
    Knob("seed", "int", 0, "seed for the random entries", min=0, max=2**31 - 1, label="random seed"),
]
DESCRIPTION = "Trains a random subset of single entries of the target weights as zero-initialised deltas."
PAPER = "arXiv 2502.15975"
FORMULA = "density x d_out x d_in per target (sparsity is of all parameters)"


def target_density(knobs: dict, n_base: int, target_entries: int) -> float:
    if knobs["density"] and knobs["density"] > 0:
        return float(knobs["density"])
    keep = (1.0 - knobs["sparsity"]) * n_base
    if keep > target_entries:
        raise KnobError(f"sparta: sparsity {knobs['sparsity']} keeps {keep:,.0f} entries but the target matrices "
                        f"hold only {target_entries:,}; raise the sparsity or add targets")
    return keep / target_entries


class SpartaAdapter(Adapter):
    method = "sparta"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        total = sum(t.d_out * t.d_in for t in self.targets)
        self.density = target_density(knobs, n_base, total)
        if self.density <= 0:
            raise KnobError("sparta: the budget selects no entries (sparsity 1.0 or density 0)")
        self.modules: dict[str, SparseDeltaLinear] = {}
        for t in self.targets:
            gen = torch.Generator().manual_seed(knobs["seed"] * 1_000_003 + zlib.crc32(t.name.encode()))
            k = int(round(self.density * t.d_out * t.d_in))
            rows, cols = random_entries((t.d_out, t.d_in), k, gen)
            mod = SparseDeltaLinear(model.get_submodule(t.name), rows=rows, cols=cols)
            set_submodule(model, t.name, mod)
            self.modules[t.name] = mod
        sparse_head_setup(model)
        n_sel = sum(m.delta.numel() for m in self.modules.values())
        self.notes.append(f"{n_sel:,} entries selected = {self.density:.2%} of the target matrices = "
                          f"{n_sel / max(1, n_base):.3%} of all parameters (sparsity {1 - n_sel / max(1, n_base):.4f}).")
        if self.head_parameters():
            self.notes.append("The classification head trains fully, as in the paper, and is counted.")

    def layouts(self):
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "entries", self.modules[t.name].delta.numel(),
                       self.modules[t.name].delta.numel(),
                       detail=dict(density=self.modules[t.name].delta.numel() / (t.d_out * t.d_in)),
                       _mask=self.modules[t.name].mask)
                for t in self.targets]

    def state_tensors(self):
        out = head_state(self.model)
        for n, m in self.modules.items():
            out[f"{n}.rows"] = m.rows
            out[f"{n}.cols"] = m.cols
            out[f"{n}.delta"] = m.delta.detach()
        return out

    def load_state_tensors(self, tensors):
        load_head_state(self.model, tensors)
        for n, m in list(self.modules.items()):
            new = SparseDeltaLinear(m.base, rows=tensors[f"{n}.rows"], cols=tensors[f"{n}.cols"])
            with torch.no_grad():
                new.delta.copy_(tensors[f"{n}.delta"])
            set_submodule(self.model, n, new)
            self.modules[n] = new


def apply(model, knobs, n_base, **_):
    return SpartaAdapter(model, knobs, n_base)
