"""LoRA through the ``peft`` library: W' = W + (alpha / r) B A, B starts at zero.

Adapters save in peft's own format (adapter_config.json + adapter_model.safetensors),
so they load with ``PeftModel.from_pretrained`` anywhere peft runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

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
