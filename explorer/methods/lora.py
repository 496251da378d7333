"""LoRA through the ``peft`` library: W' = W + (alpha / r) B A, B starts at zero.

Adapters save in peft's own format (adapter_config.json + adapter_model.safetensors),
so they load with ``PeftModel.from_pretrained`` anywhere peft runs.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from explorer.targets import ALL_TYPES, head_module_names
from .base import Adapter, Knob, Layout, resolve_targets

KNOBS = [
    Knob("rank", "int", 8, "rank r of B A", min=1, max=512, label="rank r"),
    Knob("alpha", "float", 16.0, "scale alpha (the update is multiplied by alpha / r)", min=0.0, max=4096.0,
         label="scale α"),
    Knob("targets", "multi", ["q", "v"], "target matrices", choices=ALL_TYPES, label="target matrices"),
    Knob("dropout", "float", 0.0, "dropout on the adapter input", min=0.0, max=0.9, advanced=True,
         label="adapter dropout"),
    Knob("seed", "int", 0, "seed for the random init of A", min=0, max=2**31 - 1, label="random seed"),
]
DESCRIPTION = "Adds a trainable low-rank product B A (B starts at zero) to each target weight."
PAPER = "arXiv 2106.09685"
FORMULA = "r (d_in + d_out) per target"


class LoraAdapter(Adapter):
    method = "lora"
    use_dora = False

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        from peft import LoraConfig, get_peft_model

        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        heads = head_module_names(model)
        cfg = LoraConfig(r=knobs["rank"], lora_alpha=knobs["alpha"], lora_dropout=knobs["dropout"],
                         target_modules=[t.name for t in self.targets], modules_to_save=heads or None,
                         use_dora=self.use_dora, bias="none")
        torch.manual_seed(knobs["seed"])
        self.peft_model = get_peft_model(model, cfg)
        self.model = self.peft_model
        self.notes.append("Implemented with the peft library (LoraConfig%s)." % (", use_dora=True" if self.use_dora else ""))
        if heads:
            self.notes.append("The new classification head trains fully (peft modules_to_save) and is counted.")

    def head_parameters(self) -> int:
        n = 0
        for name in head_module_names(self.peft_model.base_model.model):
            mod = getattr(self.peft_model.base_model.model, name)
            n += sum(p.numel() for p in mod.parameters() if p.requires_grad)
        return n

    def _per_target(self, t):
        r = self.knobs["rank"]
        return r * (t.d_in + t.d_out) + (t.d_out if self.use_dora else 0)

    def layouts(self):
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "lowrank", self._per_target(t),
                       t.d_out * t.d_in, detail=dict(rank=self.knobs["rank"], dora=self.use_dora))
                for t in self.targets]

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.peft_model.save_pretrained(str(folder))
        (folder / "explorer_adapter.json").write_text(json.dumps(self.config(), indent=2, default=str))
        return folder

    def load_from(self, folder):
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        sd = load_file(str(Path(folder) / "adapter_model.safetensors"))
        res = set_peft_model_state_dict(self.peft_model, sd)
        if getattr(res, "unexpected_keys", None):
            raise ValueError(f"{self.method}: unexpected tensors in the saved adapter: {res.unexpected_keys[:5]}")

    def merge_into_model(self):
        merged = self.peft_model.merge_and_unload()
        for p in merged.parameters():
            p.requires_grad_(False)
        return merged


def apply(model, knobs, n_base, **_):
    return LoraAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- memory facts

MEMORY_PAGE_KNOBS = {"rank": "rank"}  # knob -> the Memory calculator's address key (see explorer.methods)


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
