"""SpaRTA (arXiv 2502.15975): train a random sparse subset of individual entries.

Each chosen entry has a zero-initialised fp32 delta; indices are int32 (row, col)
coordinates; W_eff = W_orig + scatter(delta).  Default targets: attention value
and output (Wv, Wo).  The classification head trains fully and is counted.

The budget is either the paper's ``sparsity`` (measured against *all* model
parameters with the trained head inside the budget: 0.99 trains 1 % in total, head
and deltas together) or a ``density`` inside the target matrices (head on top).
At the default sparsity a small model whose budget exceeds half of the target
entries gets the density capped at 50 % (said in ``adapter.notes``); an explicit
sparsity that cannot be met is refused.  Weight decay: deltas yes, head no
(``takes_weight_decay``).
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from explorer.memory.plan import MemoryPlan, adapter_shapes, targets_text, trained_weight
from explorer.sparse import SparseDeltaLinear, random_entries
from explorer.targets import set_submodule
from .base import Adapter, KnobError, Layout, resolve_targets, sparse_head_setup
from .contract import Method
from .facts import fmt_count, fraction_knob, mask_delta, mask_picture, seed_knob, shape_groups, targets_knob, with_head

DEFAULT_SPARSITY = 0.99
DEFAULT_DENSITY_CAP = 0.5  # the most of the target matrices the *default* budget may take on a small model

KNOBS = [
    targets_knob(["v", "o"], "target matrices (attention value and output in the paper)"),
    fraction_knob("sparsity", DEFAULT_SPARSITY, "paper's sparsity: the fraction of ALL model parameters that stay "
                  "frozen, the trained classification head counted in the budget (0.99: 1 % train in total); "
                  "ignored when density > 0", "sparsity (of all parameters)"),
    fraction_knob("density", 0.0, "fraction of the entries of the target matrices to train, the head on top "
                  "(0 = use sparsity)", "density (of the targets, 0 = use sparsity)"),
    seed_knob("seed for the random entries"),
]

SAMPLING_RULE = ("Sampling: an exact count, not the authors' Bernoulli draw. The deltas number "
                 "round((1 - sparsity) x all parameters) - head; they are split over the target matrices in "
                 "proportion to their size (largest remainder), then each matrix gets exactly that many distinct "
                 "entries uniformly at random. The authors' Bernoulli mask (keep probability "
                 "(1 - sparsity) x all / eligible, head taken out of the budget) has the same expectation.")


def apportion(total: int, sizes: list[int]) -> list[int]:
    """``total`` split over ``sizes`` in proportion (largest remainder, ties to the earlier); exact integers."""
    S = sum(sizes)
    if S <= 0:
        return [0 for _ in sizes]
    total = max(0, min(int(total), S))
    base = [total * n // S for n in sizes]
    rem = [total * n % S for n in sizes]
    left = total - sum(base)
    for i in sorted(range(len(sizes)), key=lambda i: (-rem[i], i))[:left]:
        base[i] += 1
    return base


def budget(knobs: dict, n_base: int, head: int, sizes: list[int]) -> tuple[list[int], list[str]]:
    """Entries per target matrix (``sizes`` = d_out x d_in of each) and the notes that explain the budget.

    The one budget rule of SpaRTA, shared by the adapter and the memory model (:func:`memory_plan`)."""
    S = sum(sizes)
    notes: list[str] = []
    if knobs.get("density") and knobs["density"] > 0:
        d = float(knobs["density"])
        counts = [int(round(d * n)) for n in sizes]
        notes.append(f"Budget: density {d:g} of the target matrices; the classification head "
                     f"({head:,}) trains on top of it.")
        return counts, notes
    s = float(knobs["sparsity"])
    total = int(round((1.0 - s) * n_base))
    deltas = total - head
    default = abs(s - DEFAULT_SPARSITY) < 1e-12
    if default and (deltas > DEFAULT_DENSITY_CAP * S or deltas < 1):
        capped = int(round(DEFAULT_DENSITY_CAP * S))
        why = (f"more than the {DEFAULT_DENSITY_CAP:.0%} of the target matrices' {S:,} entries the default may take"
               if deltas >= 1 else f"no more than the classification head's {head:,}")
        notes.append(f"Default budget adapted to this model: sparsity {s:g} would train {total:,} parameters "
                     f"({head:,} head + {deltas:,} deltas), {why}; so the density inside the targets is capped at "
                     f"{DEFAULT_DENSITY_CAP:.0%} ({capped:,} deltas). Set density, or a sparsity this model can meet, "
                     "to choose yourself.")
        return apportion(capped, sizes), notes
    if deltas > S:
        raise KnobError(f"sparta: sparsity {s:g} keeps {total:,} trainable parameters ({head:,} head + {deltas:,} "
                        f"deltas) but the target matrices hold only {S:,}; raise the sparsity or add targets")
    if deltas < 1:
        raise KnobError(f"sparta: sparsity {s:g} keeps {total:,} trainable parameters, no more than the "
                        f"classification head's {head:,}: lower the sparsity")
    notes.append(f"Budget as the authors count it: sparsity {s:g} of all {n_base:,} parameters keeps {total:,} "
                 f"trainable in total = {head:,} head + {deltas:,} deltas.")
    return apportion(deltas, sizes), notes


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


class SpartaAdapter(Adapter):
    method = "sparta"
    state_names = ("rows", "cols", "delta")  # per target module

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        sizes = [t.d_out * t.d_in for t in self.targets]
        head = self.head_parameters()
        counts, notes = budget(knobs, n_base, head, sizes)
        if sum(counts) <= 0:
            raise KnobError("sparta: the budget selects no entries (sparsity 1.0 or density 0)")
        self.density = sum(counts) / max(1, sum(sizes))
        self.modules: dict[str, SparseDeltaLinear] = {}
        self.meta = False
        for t, k in zip(self.targets, counts):
            base = model.get_submodule(t.name)
            if base.weight.device.type == "meta":
                # a config-only model: the counts are exact, the indices are drawn only for a matrix that is shown
                self.meta = True
                rows = cols = torch.empty(k, dtype=torch.int32, device="meta")
            else:
                rows, cols = random_entries((t.d_out, t.d_in), k, _generator(knobs["seed"], t.name))
            mod = SparseDeltaLinear(base, rows=rows, cols=cols)
            set_submodule(model, t.name, mod)
            self.modules[t.name] = mod
        sparse_head_setup(model)
        n_sel = sum(counts)
        n_all = n_sel + head
        self.notes.extend(notes)
        self.notes.append(f"{n_sel:,} entries selected = {self.density:.2%} of the target matrices; with the "
                          f"head {n_all:,} trainable = {n_all / max(1, n_base):.3%} of all parameters "
                          f"(sparsity {1 - n_all / max(1, n_base):.4f}).")
        self.notes.append(SAMPLING_RULE)
        if head:
            self.notes.append("The classification head trains fully, as in the paper, and is counted in the budget.")
        self.notes.append("Weight decay applies to the sparse deltas and not to the head (the authors' optimizer).")
        if self.meta:
            self.notes.append("Config-only model (meta device): counts are exact; a matrix's entries are drawn "
                              "(same seed and rule) only when it is shown.")

    def takes_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        return any(param is m.delta for m in self.modules.values())

    def _mask_fn(self, t):
        m = self.modules[t.name]
        if not self.meta:
            return m.mask

        def draw(t=t, k=m.delta.numel()):
            import numpy as np

            rows, cols = random_entries((t.d_out, t.d_in), k, _generator(self.knobs["seed"], t.name))
            mask = np.zeros((t.d_out, t.d_in), dtype=bool)
            mask[rows.numpy(), cols.numpy()] = True
            return mask
        return draw

    def layouts(self):
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "entries", self.modules[t.name].delta.numel(),
                       self.modules[t.name].delta.numel(),
                       detail=dict(density=self.modules[t.name].delta.numel() / (t.d_out * t.d_in)),
                       _mask=self._mask_fn(t))
                for t in self.targets]

    def prepare_load(self, tensors):
        """The saved entries are the ones that train: each target gets a module with the saved rows and columns."""
        for n, m in list(self.modules.items()):
            new = SparseDeltaLinear(m.base, rows=tensors[f"{n}.rows"], cols=tensors[f"{n}.cols"])
            set_submodule(self.model, n, new)
            self.modules[n] = new


def apply(model, knobs, n_base, **_):
    return SpartaAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- what the playground draws

def formula_lines(adapter, total: int, head: int):
    k = adapter.knobs
    sizes = [t.d_out * t.d_in for t in adapter.targets]
    counts, _ = budget(k, total, head, sizes)
    lines = []
    if k.get("density", 0) > 0:
        lines.append(f"density {k['density']:g} of every target matrix, rounded per matrix")
    else:
        tot = int(round((1 - k["sparsity"]) * total))
        lines.append(f"budget: round((1 − sparsity {k['sparsity']:g}) × {fmt_count(total)} all parameters) = "
                     f"{fmt_count(tot)}, head included → {fmt_count(tot - head)} deltas"
                     + ("" if sum(counts) == tot - head else
                        f"; this model's default is capped at 50 % of the {fmt_count(sum(sizes))} target entries"))
        lines.append("split over the target matrices in proportion to their size (largest remainder):")
    per: dict[tuple, int] = {}
    for t, c in zip(adapter.targets, counts):
        per[(t.type, t.d_out, t.d_in)] = per.get((t.type, t.d_out, t.d_in), 0) + c
    n_all = 0
    for (ty, do, di), c in shape_groups(adapter.targets).items():
        n = per[(ty, do, di)]
        lines.append(f"{ty}: {c} matrices of {do}×{di} → {fmt_count(n)} entries ({n / (c * do * di):.4%})")
        n_all += n
    return with_head(lines, n_all, head)


def illustrative_delta(adapter, target: str, gen):
    return mask_delta(adapter, target, gen, "entries")


def matrix_pictures(adapter, layout, warmup):
    n = layout.shape[0] * layout.shape[1]
    return [mask_picture(layout, f"SpaRTA trains **{layout.changeable:,}** randomly chosen single entries of this "
                                 f"matrix ({layout.changeable / n:.2%}); the colour is the fraction of trained "
                                 "entries per cell (0 to 1).")]


def sweep_point(rank: int, budget: int, geo):
    """The density of the targets that holds about the budget."""
    dens = min(1.0, budget / geo.cells)
    return dict(targets=list(geo.targets), density=round(dens, 6)), f"SpaRTA density {dens:.3%}"


# ----------------------------------------------------------------------------- memory facts



def settings_text(knobs: dict) -> str:
    return f"sparsity {knobs.get('sparsity')} on {targets_text(knobs, KNOBS)}"


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """The budget rule of :func:`budget`; each entry is an fp32 delta with an int32 row and column; the custom
    function keeps its input (``trained_weight``'s rule)."""
    a = adapter_shapes(spec, "sparta", knobs["targets"])
    head = spec.head_params()
    counts, notes = budget(knobs, spec.n_params(), head, [o * i for _, _, o, i in a.shapes])
    n = sum(counts)
    if n <= 0:
        raise KnobError("sparta: the budget selects no entries (sparsity 1.0 or density 0)")
    return MemoryPlan(knobs, trainable_parts=dict(entries=n, head=head), extra_index_bytes=8 * n,
                      save_rules={t: trained_weight for t in a.types}, uncast=frozenset(a.types),
                      notes=list(notes))


METHOD = Method(
    label="SpaRTA", short="SpaRTA", paper="arXiv 2502.15975",
    description="Trains a random subset of single entries of the target weights as zero-initialised deltas.",
    what_trains="a random set of single entries of W (Wv, Wo by default)",
    formula="(1 - sparsity) x all parameters in total, head included (or density x d_out x d_in per target)",
    deviations=[
        "An exact count of entries, split over the targets by size, instead of the authors' Bernoulli draw (same "
        "expectation).",
        f"At the default sparsity, a small model whose budget exceeds half of the target entries gets the density "
        f"inside the targets capped at {DEFAULT_DENSITY_CAP:.0%} (said in the notes).",
    ],
    knobs=KNOBS, default_lr=5e-3, color_slot=3, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    sweep_point=sweep_point,
    memory_plan=memory_plan, settings_text=settings_text, memory_page_knobs={"sparsity": "sparsity"},
)
