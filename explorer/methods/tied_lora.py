"""Tied-LoRA (arXiv 2311.09578): z = W x + (alpha / r) diag(v) B diag(u) A x.

Targets that read the same input inside a layer are fused as in the paper (q, k, v
share one A of r x d_in and one B of (d_q + d_k + d_v) x r, sliced per target; with
grouped-query attention the slices have the real, smaller k/v sizes).  With ``tied``
on, A and B are single tensors shared by every layer (their gradients sum over
layers); u (r) and v (rows of B) are per-layer scaling vectors.  Each of A, B, u, v
is trained or frozen.  Frozen tensors are buffers, never parameters.

Presets: ``vBuA`` = untied, A and B trained, u = v = 1 frozen (plain LoRA on the
fused form); ``TL5`` = tied A, B trained, u, v frozen at 1; ``TL6`` = tied, all four
trained (the paper's best).  Labels TL1-TL4 are not attached: their exact mapping
is not certain from public sources.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from explorer.targets import INPUT_GROUPS, set_submodule
from .base import Adapter, AdaptedLinear, Knob, KnobError, Layout, resolve_targets, sparse_head_setup
from .contract import Method
from .facts import Picture, alpha_knob, fmt_count, rank_knob, seed_knob, targets_knob, with_head

PRESETS = {
    "vBuA": dict(tied=False, train_A=True, train_B=True, train_u=False, train_v=False),
    "TL5": dict(tied=True, train_A=True, train_B=True, train_u=False, train_v=False),
    "TL6": dict(tied=True, train_A=True, train_B=True, train_u=True, train_v=True),
    "VeRA-like": dict(tied=True, train_A=False, train_B=False, train_u=True, train_v=True),
}

SWITCHES = ("tied", "train_A", "train_B", "train_u", "train_v")


def _held_by_preset(name: str):
    """A switch is held at the named preset's value; only the custom preset frees it."""
    def locked(values: dict):
        preset = values.get("preset", "custom")
        return PRESETS[preset][name] if preset in PRESETS else None
    return locked


KNOBS = [
    Knob("preset", "choice", "TL6", "a named combination (custom: use the switches below)",
         choices=list(PRESETS) + ["custom"], label="Tied-LoRA preset"),
    rank_knob("rank r"),
    alpha_knob("scale alpha (update multiplied by alpha / r)"),
    targets_knob(["q", "k", "v"], "target matrices (q, k, v are fused as in the paper)"),
    Knob("tied", "bool", True, "one A and one B shared by all layers (custom preset only)",
         label="A, B tied across layers", locked=_held_by_preset("tied")),
    Knob("train_A", "bool", True, "A trained (custom preset only)", label="train A", locked=_held_by_preset("train_A")),
    Knob("train_B", "bool", True, "B trained (custom preset only)", label="train B", locked=_held_by_preset("train_B")),
    Knob("train_u", "bool", True, "u trained (custom preset only)", label="train u", locked=_held_by_preset("train_u")),
    Knob("train_v", "bool", True, "v trained (custom preset only)", label="train v", locked=_held_by_preset("train_v")),
    seed_knob("seed for the random init"),
]


def resolve_switches(knobs: dict) -> dict:
    if knobs.get("preset", "custom") != "custom":
        return dict(PRESETS[knobs["preset"]])
    return {k: bool(knobs[k]) for k in SWITCHES}


class TiedGroup(nn.Module):
    """The A, B, u, v of one fused input group (e.g. q, k, v) across all layers."""

    def __init__(self, d_in: int, d_out_total: int, n_layers: int, rank: int, sw: dict, gen: torch.Generator,
                 device):
        super().__init__()
        self.sw = sw
        n_ab = 1 if sw["tied"] else n_layers
        a = torch.empty(n_ab, rank, d_in)
        bound = 1.0 / math.sqrt(d_in)
        a.uniform_(-bound, bound, generator=gen)
        b = torch.zeros(n_ab, d_out_total, rank)
        u = torch.ones(n_layers, rank)
        v = torch.ones(n_layers, d_out_total)
        # the change must be zero at step 0: zero the first trained factor that may be zero
        if not sw["train_B"]:
            b.normal_(0.0, 1.0 / math.sqrt(rank), generator=gen)  # a frozen B cannot be zero
            if sw["train_v"]:
                v.zero_()
            elif sw["train_u"]:
                u.zero_()
            elif sw["train_A"]:
                a.zero_()
        for name, val, train in (("A", a, sw["train_A"]), ("B", b, sw["train_B"]), ("u", u, sw["train_u"]),
                                 ("v", v, sw["train_v"])):
            val = val.to(device)
            if train:
                setattr(self, name, nn.Parameter(val))
            else:
                self.register_buffer(name, val)

    def ab(self, layer: int):
        i = 0 if self.sw["tied"] else layer
        return self.A[i], self.B[i]


class TiedLoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, group: TiedGroup, layer: int, rows: slice, scaling: float):
        super().__init__(base)
        self.group = group  # shared module: its parameters are counted and optimised once
        self.layer, self.rows, self.scaling = layer, rows, scaling

    def forward(self, x):
        g = self.group
        a, b = g.ab(self.layer)
        h = F.linear(x, a.to(x.dtype)) * g.u[self.layer].to(x.dtype)
        upd = F.linear(h, b[self.rows].to(x.dtype)) * g.v[self.layer, self.rows].to(x.dtype)
        return self.base(x) + upd * self.scaling

    def delta_weight(self):
        g = self.group
        a, b = g.ab(self.layer)
        a, b = a.detach(), b.detach()
        return (g.v[self.layer, self.rows].detach()[:, None] * b[self.rows]) @ (g.u[self.layer].detach()[:, None] * a) \
            * self.scaling


def _group_key(ttype: str) -> str:
    for grp in INPUT_GROUPS:
        if ttype in grp:
            return "+".join(grp)
    return ttype


class TiedLoRAAdapter(Adapter):
    method = "tied-lora"
    state_names = ("A", "B", "u", "v")  # per input group (state_parts)

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        sw = resolve_switches(knobs)
        if not any(sw[k] for k in ("train_A", "train_B", "train_u", "train_v")):
            raise KnobError("tied-lora: at least one of A, B, u, v must be trained")
        self.switches = sw
        # the reported knobs say what trains: a named preset fixes the switches, whatever they were set to
        self.knobs = {**knobs, **sw}
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        rank = knobs["rank"]
        layers = sorted({t.layer for t in self.targets})
        self.n_layers = max(layers) + 1
        gen = torch.Generator().manual_seed(knobs["seed"])
        # group targets by (fused input group); the row slices follow the target order
        by_group: dict[str, list] = {}
        for t in self.targets:
            by_group.setdefault(_group_key(t.type), []).append(t)
        self.groups = nn.ModuleDict()
        self.slices: dict[str, tuple[str, slice]] = {}
        dev = next(model.parameters()).device
        for gk, ts in by_group.items():
            types = []
            for t in ts:
                if t.type not in types:
                    types.append(t.type)
            sizes = {}
            for t in ts:
                sizes.setdefault(t.type, t.d_out)
                if sizes[t.type] != t.d_out:
                    raise KnobError(f"tied-lora: {t.type} has different shapes across layers; it cannot be tied")
            d_ins = {t.d_in for t in ts}
            if len(d_ins) != 1:
                raise KnobError(f"tied-lora: targets {', '.join(types)} read inputs of different sizes")
            offsets, off = {}, 0
            for ty in types:
                offsets[ty] = slice(off, off + sizes[ty])
                off += sizes[ty]
            grp = TiedGroup(d_ins.pop(), off, self.n_layers, rank, sw, gen, dev)
            key = gk.replace("+", "_")
            self.groups[key] = grp
            for t in ts:
                self.slices[t.name] = (key, offsets[t.type])
                mod = TiedLoRALinear(model.get_submodule(t.name), grp, t.layer, offsets[t.type],
                                     knobs["alpha"] / rank)
                set_submodule(model, t.name, mod)
        sparse_head_setup(model)
        label = knobs["preset"] if knobs["preset"] != "custom" else "custom combination"
        self.notes.append(f"{label}: A, B {'tied across layers' if sw['tied'] else 'per layer (untied)'}; "
                          + ", ".join(f"{k[-1]} {'trained' if sw[k] else 'frozen'}"
                                      for k in ("train_A", "train_B", "train_u", "train_v")) + ".")
        if any(len({t.type for t in ts}) > 1 for ts in by_group.values()):  # two types read one input
            self.notes.append("Targets that read the same input (q, k, v) share one A and a fused B, as in the paper.")
        if not sw["train_B"]:
            self.notes.append("B is frozen, so it starts random (it cannot be zero); the first trained factor "
                              "among v, u, A starts at zero so the update is zero at step 0.")

    def layouts(self):
        out = []
        rank = self.knobs["rank"]
        sw = self.switches
        for t in self.targets:
            key, rows = self.slices[t.name]
            # per-target share of the parameters: tied tensors are attributed to the first layer only
            n_rows = rows.stop - rows.start
            n = 0
            first = not sw["tied"] or t.layer == min(x.layer for x in self.targets if self.slices[x.name][0] == key)
            if sw["train_A"] and first and rows.start == 0:
                n += rank * t.d_in
            if sw["train_B"] and first:
                n += n_rows * rank
            if sw["train_u"] and rows.start == 0:
                n += rank
            if sw["train_v"]:
                n += n_rows
            out.append(Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "tied", n, t.d_out * t.d_in,
                              detail=dict(group=key, rows=[rows.start, rows.stop], tied=sw["tied"], rank=rank,
                                          shared_by_layers=self.n_layers if sw["tied"] else 1,
                                          **{k: sw[k] for k in ("train_A", "train_B", "train_u", "train_v")})))
        return out

    def state_parts(self):
        return self.groups  # A, B, u and v are kept per input group, not per target


def expected_count(targets, rank: int, sw: dict) -> int:
    """The formula from the paper's notation, computed from real shapes (for tests and the playground)."""
    by_group: dict[str, dict] = {}
    layers = set()
    for t in targets:
        g = by_group.setdefault(_group_key(t.type), {})
        g.setdefault(t.type, (t.d_out, t.d_in))
        layers.add(t.layer)
    n_layers = max(layers) + 1
    total = 0
    for g in by_group.values():
        d_out = sum(s[0] for s in g.values())
        d_in = next(iter(g.values()))[1]
        n_ab = 1 if sw["tied"] else n_layers
        total += n_ab * ((rank * d_in if sw["train_A"] else 0) + (d_out * rank if sw["train_B"] else 0))
        total += n_layers * ((rank if sw["train_u"] else 0) + (d_out if sw["train_v"] else 0))
    return total


def apply(model, knobs, n_base, **_):
    return TiedLoRAAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- what the playground draws

def formula_lines(adapter, total: int, head: int):
    sw, r, L = adapter.switches, adapter.knobs["rank"], adapter.n_layers
    by: dict[str, dict] = {}
    for t in adapter.targets:
        by.setdefault(_group_key(t.type), {}).setdefault(t.type, (t.d_out, t.d_in))
    lines = []
    for shapes in by.values():
        d_out = sum(v[0] for v in shapes.values())
        d_in = next(iter(shapes.values()))[1]
        n_ab = 1 if sw["tied"] else L
        parts = []
        if sw["train_A"]:
            parts.append(f"A {n_ab}×{r}×{d_in} = {fmt_count(n_ab * r * d_in)}")
        if sw["train_B"]:
            parts.append(f"B {n_ab}×{d_out}×{r} = {fmt_count(n_ab * d_out * r)}")
        if sw["train_u"]:
            parts.append(f"u {L}×{r} = {fmt_count(L * r)}")
        if sw["train_v"]:
            parts.append(f"v {L}×{d_out} = {fmt_count(L * d_out)}")
        lines.append(f"{'+'.join(shapes)} (fused, d_out = {d_out}): " + (" + ".join(parts) or "nothing trained"))
    return with_head(lines, expected_count(adapter.targets, r, sw), head)


def illustrative_delta(adapter, target: str, gen):
    t = next(t for t in adapter.targets if t.name == target)
    mod = adapter.model.get_submodule(target)
    grp = mod.group
    A, B = (x.detach().float().clone() for x in grp.ab(t.layer))
    u = grp.u[t.layer].detach().float().clone()
    v = grp.v[t.layer, mod.rows].detach().float().clone()
    B = B[mod.rows]
    if float(B.abs().max()) == 0:
        B = torch.randn(B.shape, generator=gen) / math.sqrt(B.shape[1])
    if float(v.abs().max()) == 0:
        v = torch.randn(v.shape, generator=gen)
    if float(u.abs().max()) == 0:
        u = torch.randn(u.shape, generator=gen)
    if float(A.abs().max()) == 0:
        A = torch.randn(A.shape, generator=gen) / math.sqrt(A.shape[1])
    d = mod.scaling * ((v[:, None] * B) @ (u[:, None] * A))
    return (d, (v[:, None] * B, u[:, None] * A),
            "ΔW_l = diag(v_l) B diag(u_l) A with the shared A and B; factors that start at zero are drawn "
            "at random here. Every layer's update lies in the same rank-r column space of B.")


def structure(adapter) -> dict:
    """What the sharing diagram draws: layers, groups, which of A, B, u, v train."""
    groups = [dict(key=key, A=list(grp.A.shape), B=list(grp.B.shape), u=list(grp.u.shape), v=list(grp.v.shape))
              for key, grp in adapter.groups.items()]
    return dict(n_layers=adapter.n_layers, switches=dict(adapter.switches), rank=adapter.knobs["rank"],
                groups=groups, layers=sorted({t.layer for t in adapter.targets}))


def overview_pictures(adapter):
    sw = adapter.switches
    text = (f"One **A** and one **B** {'are shared by every layer' if sw['tied'] else 'per layer (untied)'}; "
            "each layer keeps its own scaling vectors **u** (length r) and **v** (one per output row). "
            "Orange boxes train, grey boxes are frozen buffers. Tied tensors are counted once and "
            "their gradients sum over the layers.")
    return [Picture("tied_diagram", "Sharing across layers", text, dict(structure=structure(adapter)))]


def matrix_pictures(adapter, layout, warmup):
    return []  # the sharing diagram (overview_pictures) says it for every matrix


# ----------------------------------------------------------------------------- memory facts

_LABEL = "Tied-LoRA: A x, u A x, v-scaled update"


def settings_text(knobs: dict) -> str:
    return f"{knobs.get('preset')}, r={knobs.get('rank')} on {targets_text(knobs, KNOBS)}"


def tied_saves(call: LinearCall, rank: int, sw: dict) -> bool:
    """x when A trains, A x when u trains, u A x when B trains, the (s b d_out) update when v trains."""
    te = call.tokens * call.e
    if sw["train_A"]:
        call.save_input()
    rg_h = call.needs_grad_in or sw["train_A"]
    if sw["train_u"]:
        call.save(f"{call.out_key}.h", te * rank, _LABEL)
    rg_h = rg_h or sw["train_u"]
    if sw["train_B"]:
        call.save(f"{call.out_key}.hu", te * rank, _LABEL)
    rg_upd = rg_h or sw["train_B"]
    if sw["train_v"]:
        call.save(f"{call.out_key}.upd", te * call.d_out, _LABEL)
    return rg_upd or sw["train_v"] or call.needs_grad_in


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """The paper's count from real shapes; every tensor of A, B, u, v exists, the frozen ones as buffers."""
    from explorer.targets import Target

    a = adapter_shapes(spec, "tied-lora", knobs["targets"])
    sw, r, L = resolve_switches(knobs), knobs["rank"], spec.n_layers
    n = expected_count([Target(f"{layer}.{t}", layer, t, o, i) for layer, t, o, i in a.shapes], r, sw)
    groups: dict[str, dict] = {}
    for _, t, o, i in a.shapes:
        groups.setdefault(_group_key(t), {})[t] = (o, i)
    total = 0
    for g in groups.values():
        d_out = sum(s[0] for s in g.values())
        d_in = next(iter(g.values()))[1]
        n_ab = 1 if sw["tied"] else L
        total += n_ab * (r * d_in + d_out * r) + L * (r + d_out)
    rule = partial(tied_saves, rank=r, sw=sw)
    return MemoryPlan(knobs, trainable_parts=dict(adapters=n, head=spec.head_params()), extra_float=total - n,
                      save_rules={t: rule for t in a.types})


METHOD = Method(
    label="Tied-LoRA", short="Tied-LoRA", paper="arXiv 2311.09578",
    description="One low-rank A and B shared by all layers, with per-layer scaling vectors u and v.",
    what_trains="one A and one B shared by all layers, plus small per-layer vectors u, v",
    formula="tied: r d_in + r d_out(fused) [A, B, if trained] + L (r + d_out(fused)) [u, v, if trained]",
    deviations=[
        "Only the TL5 and TL6 labels are attached (plus vBuA and VeRA-like): which trained/frozen combinations "
        "TL1-TL4 are is not certain from public sources, so every combination is a switch (custom preset).",
        "With grouped-query attention the fused q, k, v slices of B have the real, smaller k and v sizes.",
    ],
    knobs=KNOBS, default_lr=3e-3, color_slot=4, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    overview_pictures=overview_pictures,
    memory_plan=memory_plan, settings_text=settings_text, memory_page_knobs={"rank": "rank", "preset": "tl"},
)
