"""LoRA-SP (arXiv 2403.08822): LoRA with a random half of the entries of A and B frozen.

Only the trainable entries exist as parameters (``a_vals``, ``b_vals``); the frozen
entries live in buffers, so neither AdamW's weight decay nor its moments can move
them, and they get no optimizer state.  No public code exists: the default is one
fixed, seeded Bernoulli-style mask per matrix drawn at initialisation (exactly
``round((1 - freeze) * n)`` trainable entries); a mask redrawn after every step is a
labelled "dropout-style" variant.
"""

from __future__ import annotations

import math
import zlib
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from explorer.sparse import scatter_entries
from explorer.targets import set_submodule
from .base import Adapter, AdaptedLinear, Knob, Layout, resolve_targets, sparse_head_setup
from .contract import Method
from .facts import Picture, alpha_knob, per_shape_lines, rank_knob, seed_knob, targets_knob, with_head

KNOBS = [
    rank_knob("rank r of B A"),
    alpha_knob("scale alpha (update multiplied by alpha / r)"),
    targets_knob(["q", "v"], "target matrices"),
    Knob("freeze", "float", 0.5, "fraction of the entries of A and B frozen (0.5 in the paper)", min=0.0, max=0.99,
         label="frozen share of A and B", widget="slider", step=0.01),
    seed_knob("seed for the init and the masks"),
    Knob("mask_mode", "choice", "fixed", "fixed: one mask drawn at init (default); per-step: redrawn after every "
         "optimizer step (dropout-style variant)", choices=["fixed", "per-step"], advanced=True,
         label="frozen mask: fixed or redrawn"),
]


def _n_train(n: int, freeze: float) -> int:
    return int(round((1.0 - freeze) * n))


def _draw(rank: int, d_in: int, d_out: int, freeze: float, gen: torch.Generator):
    """The initial A (kaiming-uniform(a=sqrt(5)), as LoRA) and the sorted trainable flat indices of A and B."""
    a0 = torch.empty(rank, d_in)
    bound = 1.0 / math.sqrt(d_in)
    a0.uniform_(-bound, bound, generator=gen)
    ia = torch.randperm(rank * d_in, generator=gen)[:_n_train(rank * d_in, freeze)].sort().values
    ib = torch.randperm(d_out * rank, generator=gen)[:_n_train(d_out * rank, freeze)].sort().values
    return a0, ia, ib


class LoRASPLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, freeze: float, gen: torch.Generator):
        super().__init__(base)
        d_out, d_in = base.out_features, base.in_features
        self.rank, self.scaling, self.freeze = rank, alpha / rank, freeze
        dev = base.weight.device
        self._seed = gen.initial_seed()
        self.meta = dev.type == "meta"
        if self.meta:
            # a config-only model: exact counts, no values; the masks are drawn (same seed) only when asked for
            na, nb = _n_train(rank * d_in, freeze), _n_train(d_out * rank, freeze)
            self.register_buffer("a0", torch.empty(rank, d_in, device=dev))
            self.register_buffer("b0", torch.empty(d_out, rank, device=dev))
            self.register_buffer("a_idx", torch.empty(na, dtype=torch.int32, device=dev))
            self.register_buffer("b_idx", torch.empty(nb, dtype=torch.int32, device=dev))
            self.a_vals = nn.Parameter(torch.empty(na, device=dev))
            self.b_vals = nn.Parameter(torch.empty(nb, device=dev))
            return
        a0, ia, ib = _draw(rank, d_in, d_out, freeze, gen)
        self.register_buffer("a0", a0.to(dev))
        self.register_buffer("b0", torch.zeros(d_out, rank, device=dev))
        self.register_buffer("a_idx", ia.to(torch.int32).to(dev))
        self.register_buffer("b_idx", ib.to(torch.int32).to(dev))
        self.a_vals = nn.Parameter(self.a0.reshape(-1)[ia.to(dev)].clone())
        self.b_vals = nn.Parameter(self.b0.reshape(-1)[ib.to(dev)].clone())

    def factors(self):
        a = scatter_entries(self.a0, self.a_idx, self.a_vals)
        b = scatter_entries(self.b0, self.b_idx, self.b_vals)
        return a, b

    def forward(self, x):
        a, b = self.factors()
        return self.base(x) + F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b.detach() @ a.detach()) * self.scaling

    @torch.no_grad()
    def redraw(self, gen: torch.Generator):
        """Per-step variant: write the trained values back, draw a new mask."""
        for buf, idx_name, vals in (("a0", "a_idx", self.a_vals), ("b0", "b_idx", self.b_vals)):
            base = getattr(self, buf)
            idx = getattr(self, idx_name)
            base.view(-1)[idx.long()] = vals.detach().to(base.dtype)
            new = torch.randperm(base.numel(), generator=gen)[:idx.numel()].sort().values.to(base.device)
            idx.copy_(new.to(torch.int32))
            vals.data.copy_(base.view(-1)[new])

    def masks(self):
        if self.meta:
            _, ia, ib = _draw(self.rank, self.a0.shape[1], self.b0.shape[0], self.freeze,
                              torch.Generator().manual_seed(self._seed))
        else:
            ia, ib = self.a_idx.cpu(), self.b_idx.cpu()
        ma = np.zeros(self.a0.numel(), dtype=bool)
        ma[ia.numpy()] = True
        mb = np.zeros(self.b0.numel(), dtype=bool)
        mb[ib.numpy()] = True
        return ma.reshape(self.a0.shape), mb.reshape(self.b0.shape)


class LoRASPAdapter(Adapter):
    method = "lora-sp"
    state_names = ("a0", "b0", "a_idx", "b_idx", "a_vals", "b_vals")  # per target module

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        self.modules: dict[str, LoRASPLinear] = {}
        for t in self.targets:
            gen = torch.Generator().manual_seed(knobs["seed"] * 1_000_003 + zlib.crc32(t.name.encode()))
            mod = LoRASPLinear(model.get_submodule(t.name), knobs["rank"], knobs["alpha"], knobs["freeze"], gen)
            set_submodule(model, t.name, mod)
            self.modules[t.name] = mod
        sparse_head_setup(model)
        self._step_gen = torch.Generator().manual_seed(knobs["seed"] + 7919)
        self.notes.append("No public code exists: one fixed seeded mask per matrix is this project's default."
                          if knobs["mask_mode"] == "fixed" else
                          "Dropout-style variant (labelled): the mask is redrawn after every optimizer step; "
                          "Adam moments of the trainable entries restart with each new mask.")
        self.notes.append("Frozen entries are buffers, not parameters: weight decay and Adam cannot move them. "
                          "Half of B starts at zero and, frozen, stays zero (as in the paper).")

    def layouts(self):
        out = []
        for t in self.targets:
            m = self.modules[t.name]
            ma, mb = m.masks()
            # W[i, j] can change iff row i of B has a trainable entry (A is dense and non-zero)
            rows_ok = mb.any(axis=1)
            if not m.meta:  # B starts at zero; a loaded adapter may hold frozen non-zero entries
                rows_ok = rows_ok | (m.b0.detach().cpu().numpy() != 0).any(axis=1)
            changeable = int(rows_ok.sum()) * t.d_in

            def _mask(rows_ok=rows_ok, shape=(t.d_out, t.d_in)):
                return np.repeat(rows_ok[:, None], shape[1], axis=1)

            out.append(Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "lowrank-masked",
                              m.a_vals.numel() + m.b_vals.numel(), changeable,
                              detail=dict(rank=m.rank, a_trainable=int(ma.sum()), a_total=int(ma.size),
                                          b_trainable=int(mb.sum()), b_total=int(mb.size),
                                          masks=lambda m=m: m.masks()),
                              _mask=_mask))
        return out

    def on_step_end(self, optimizer):
        if self.knobs["mask_mode"] != "per-step":
            return
        for m in self.modules.values():
            m.redraw(self._step_gen)
            for p in (m.a_vals, m.b_vals):
                st = optimizer.state.get(p)
                if st:
                    for k in ("exp_avg", "exp_avg_sq"):
                        if k in st:
                            st[k].zero_()



def apply(model, knobs, n_base, **_):
    return LoRASPAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- what the playground draws

def formula_lines(adapter, total: int, head: int):
    r, f = adapter.knobs["rank"], adapter.knobs["freeze"]
    lines, n = per_shape_lines(  # written out, not with _n_train: the page checks one against the other
        adapter.targets, lambda do, di: int(round((1 - f) * r * di)) + int(round((1 - f) * do * r)),
        lambda do, di: f"round((1 − {f:g}) × {r}×{di}) + round((1 − {f:g}) × {do}×{r})")
    return with_head(lines, n, head)


def illustrative_delta(adapter, target: str, gen):
    t = next(t for t in adapter.targets if t.name == target)
    mod = adapter.model.get_submodule(target)
    _, mb = mod.masks()
    A = mod.a0.detach().float().clone()
    B = torch.zeros(t.d_out, mod.rank)
    B[torch.from_numpy(mb)] = torch.randn(int(mb.sum()), generator=gen) / math.sqrt(mod.rank)
    return (mod.scaling * (B @ A), (B, A),
            "Only the trainable entries of B (drawn at random here; B starts at zero) can move: a row of "
            "ΔW stays zero when its whole row of B is frozen. Rank ≤ r.")


def matrix_pictures(adapter, layout, warmup):
    ma, mb = layout.detail["masks"]()
    d = layout.detail
    text = (f"A random **{adapter.knobs['freeze']:.0%}** of the entries of A and B is frozen. "
            f"Trainable: A {d['a_trainable']:,} of {d['a_total']:,}, B {d['b_trainable']:,} of "
            f"{d['b_total']:,}. Frozen entries are buffers, so weight decay and Adam cannot move them; "
            "frozen entries of B stay zero.")
    return [Picture("factor_masks", "Trained (orange) and frozen (grey) entries of B and A", text, dict(a=ma, b=mb))]


# ----------------------------------------------------------------------------- memory facts

_LABEL = "LoRA-SP: A x, assembled A and B, indices"


def settings_text(knobs: dict) -> str:
    return f"r={knobs.get('rank')}, {knobs.get('freeze', 0.5):.0%} frozen, on {targets_text(knobs, KNOBS)}"


def lora_sp_saves(call: LinearCall, rank: int, n_a: int, n_b: int) -> bool:
    """The input, the assembled A (when x needs a gradient: F.linear(x, A_eff) keeps it), the r-wide A x, the
    assembled B and the int32 indices of the trainable entries."""
    call.save_input()
    if call.needs_grad_in:
        call.save(f"{call.out_key}.a_eff", rank * call.d_in * 4, _LABEL)
    call.save(f"{call.out_key}.lora_h", call.tokens * rank * call.e, _LABEL)
    call.save(f"{call.out_key}.b_eff", call.d_out * rank * 4, _LABEL)
    call.save(f"{call.out_key}.idx", 8 * (n_a + n_b), _LABEL)
    return True


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """Trainable entries of A and B as parameters; A and B whole as frozen buffers; int32 indices."""
    a = adapter_shapes(spec, "lora-sp", knobs["targets"])
    r, fr = knobs["rank"], knobs["freeze"]
    plan = MemoryPlan(knobs)
    n = 0
    for _, _, o, i in a.shapes:
        na, nb = _n_train(r * i, fr), _n_train(o * r, fr)
        n += na + nb
        plan.extra_float += r * i + o * r  # a0, b0 buffers hold every entry (frozen values)
        plan.extra_index_bytes += 4 * (na + nb)
    plan.trainable_parts = dict(adapters=n, head=spec.head_params())
    plan.save_rules = {t: partial(lora_sp_saves, rank=r, n_a=_n_train(r * i, fr), n_b=_n_train(o * r, fr))
                       for t, (o, i) in a.by_type.items()}
    return plan


METHOD = Method(
    label="LoRA-SP", short="LoRA-SP", paper="arXiv 2403.08822",
    description="LoRA in which a random half of the entries of A and B are frozen (only the rest are parameters).",
    what_trains="LoRA's A and B with a random half of their entries frozen",
    formula="about (1 - freeze) r (d_in + d_out) per target",
    deviations=[
        "No public code exists: one fixed, seeded mask per matrix drawn at initialisation is this project's "
        "default; a mask redrawn after every optimizer step is a labelled dropout-style variant (mask_mode "
        "per-step).",
        "Frozen entries are buffers, not parameters, so neither weight decay nor Adam's moments can move them.",
    ],
    knobs=KNOBS, default_lr=3e-3, color_slot=5, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    memory_plan=memory_plan, settings_text=settings_text, memory_page_knobs={"rank": "rank", "freeze": "freeze"},
)
