"""LoRA through the ``peft`` library: W' = W + (alpha / r) B A, B starts at zero.

Adapters save in peft's own format (adapter_config.json + adapter_model.safetensors),
so they load with ``PeftModel.from_pretrained`` anywhere peft runs.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from .base import Knob, Layout
from .contract import Method
from .facts import Picture, alpha_knob, per_shape_lines, rank_knob, seed_knob, targets_knob, with_head
from .peft_adapter import PeftAdapter

KNOBS = [
    rank_knob("rank r of B A"),
    alpha_knob("scale alpha (the update is multiplied by alpha / r)"),
    targets_knob(["q", "v"], "target matrices"),
    Knob("dropout", "float", 0.0, "dropout on the adapter input", min=0.0, max=0.9, advanced=True,
         label="adapter dropout", widget="slider", step=0.01),
    seed_knob("seed for the random init of A"),
]


class LoraAdapter(PeftAdapter):
    method = "lora"
    use_dora = False

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        from peft import LoraConfig

        super().__init__(model, knobs, n_base)
        cfg = LoraConfig(r=knobs["rank"], lora_alpha=knobs["alpha"], lora_dropout=knobs["dropout"],
                         target_modules=[t.name for t in self.targets], modules_to_save=self.heads or None,
                         use_dora=self.use_dora, bias="none")
        torch.manual_seed(knobs["seed"])
        self.wrap(cfg)
        self.notes.append("Implemented with the peft library (LoraConfig%s)." % (", use_dora=True" if self.use_dora else ""))
        if self.heads:
            self.notes.append("The new classification head trains fully (peft modules_to_save) and is counted.")

    def _per_target(self, t):
        r = self.knobs["rank"]
        return r * (t.d_in + t.d_out) + (t.d_out if self.use_dora else 0)

    def layouts(self):
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "lowrank", self._per_target(t),
                       t.d_out * t.d_in, detail=dict(rank=self.knobs["rank"], dora=self.use_dora))
                for t in self.targets]


def apply(model, knobs, n_base, **_):
    return LoraAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- what the playground draws
# (DoRA reuses these: ``adapter.use_dora`` adds its magnitude vector)

def formula_lines(adapter, total: int, head: int):
    r, dora = adapter.knobs["rank"], adapter.use_dora
    lines, n = per_shape_lines(
        adapter.targets, lambda do, di: r * (di + do) + (do if dora else 0),
        lambda do, di: f"r (d_in + d_out){' + d_out' if dora else ''} = {r} × ({di} + {do})"
                       + (f" + d_out {do}" if dora else ""))
    return with_head(lines, n, head)


def illustrative_delta(adapter, target: str, gen):
    t = next(t for t in adapter.targets if t.name == target)
    mod = adapter.peft_model.base_model.model.get_submodule(target)
    A = mod.lora_A["default"].weight.detach().float()
    r = A.shape[0]
    B = torch.randn(t.d_out, r, generator=gen) / math.sqrt(r)
    k = adapter.knobs["alpha"] / adapter.knobs["rank"]
    note = (f"B starts at zero, so the real ΔW is 0 until training. Here B is random and A is its real "
            f"initial value: ΔW = {k:g} · B A has rank ≤ {r}, yet every entry of W can change.")
    if adapter.use_dora:
        note += " DoRA also rescales each output row by a trained magnitude (not drawn)."
    return k * (B @ A), (B, A), note


def matrix_pictures(adapter, layout, warmup):
    (d_out, d_in), r = layout.shape, adapter.knobs["rank"]
    text = (f"W ({d_out}×{d_in}) stays frozen. LoRA trains **B** ({d_out}×{r}) and **A** ({r}×{d_in}): "
            f"{layout.trainable:,} numbers instead of {d_out * d_in:,}. Every entry of W can change, but only inside "
            f"a rank-{r} update." + (" DoRA adds one magnitude per output row." if adapter.use_dora else ""))
    return [Picture("lowrank_shapes", "W + (α/r)·B A, to scale", text, dict(d_out=d_out, d_in=d_in, rank=r))]


def sweep_point(rank: int, budget: int, geo):
    """LoRA at rank r is the budget (alpha = 2 r, the project's sweep convention)."""
    return dict(rank=rank, alpha=2.0 * rank, targets=list(geo.targets)), f"LoRA r={rank}"


# ----------------------------------------------------------------------------- memory facts

def settings_text(knobs: dict) -> str:
    return f"r={knobs.get('rank')} on {targets_text(knobs, KNOBS)}"


def lora_saves(call: LinearCall, rank: int, dropout: float, magnitude: bool = False) -> bool:
    """peft's LoRA layer: the adapter's own input (or its dropout output and mask), the r-wide A x; DoRA adds
    its base and LoRA outputs (both (s b d_out) operands of products) and the d_out-sized norm vectors."""
    te = call.tokens * call.e
    if dropout > 0:  # peft: each target's own dropout (mask only if x needs a gradient)
        if call.needs_grad_in:
            call.save(f"{call.out_key}.lora_drop_mask", call.tokens * call.d_in * call.mask_e, "LoRA: adapter dropout")
        call.save(f"{call.out_key}.lora_drop_out", te * call.d_in, "LoRA: adapter dropout")
    else:
        call.save_input()
    call.save(f"{call.out_key}.lora_h", te * rank, "LoRA: A x (r wide)")
    if magnitude:
        # peft DoRA: (m/||W+dW|| - 1) * base_out + m/||W+dW|| * lora_out; both products save their
        # (s b d_out) operand, plus the d_out-sized norm vectors
        label = "DoRA: base output and LoRA output"
        call.save(f"{call.out_key}.dora_base", te * call.d_out, label)
        call.save(f"{call.out_key}.dora_lora", te * call.d_out, label)
        call.save(f"{call.out_key}.dora_vec", 3 * call.d_out * call.e, label)
    return True


def lora_memory_plan(spec, knobs: dict, method: str = "lora", magnitude: bool = False) -> MemoryPlan:
    """LoRA (DoRA with ``magnitude``: one more d_out vector per target) on ``spec``'s target shapes."""
    a = adapter_shapes(spec, method, knobs["targets"])
    r, head = knobs["rank"], spec.head_params()
    n = sum(r * (i + o) + (o if magnitude else 0) for _, _, o, i in a.shapes)
    rule = partial(lora_saves, rank=r, dropout=knobs["dropout"], magnitude=magnitude)
    plan = MemoryPlan(knobs, trainable_parts=dict(adapters=n, head=head), head_copy=head,
                      save_rules={t: rule for t in a.types})
    if head:
        plan.notes.append("peft modules_to_save keeps a frozen copy of the original head besides the trained "
                          "one (counted in weights).")
    return plan


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    return lora_memory_plan(spec, knobs)


METHOD = Method(
    label="LoRA", short="LoRA", paper="arXiv 2106.09685",
    description="Adds a trainable low-rank product B A (B starts at zero) to each target weight.",
    what_trains="a low-rank pair B A beside each target W (B starts at 0)",
    formula="r (d_in + d_out) per target",
    deviations=[],  # peft's own implementation
    knobs=KNOBS, default_lr=3e-3, color_slot=0, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    sweep_point=sweep_point,
    memory_plan=memory_plan, settings_text=settings_text, memory_page_knobs={"rank": "rank"},
)
