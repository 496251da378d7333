"""The methods behind one interface (one module each, one line each in ``_MODULES``).

>>> from explorer.methods import apply_method, METHODS
>>> adapter = apply_method(model_copy, "lora-sp", rank=8, freeze=0.5)
>>> adapter.num_trainable(), adapter.layouts(), adapter.save("out/")
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from . import dora, full, lora, lora_sp, smt, sparta, tied_lora, vera
from .base import Adapter, Knob, KnobError, Layout, validate_knobs

_MODULES = {
    "full": full,
    "lora": lora,
    "dora": dora,
    "lora-sp": lora_sp,
    "tied-lora": tied_lora,
    "smt": smt,
    "sparta": sparta,
    "vera": vera,
}

LABELS = {
    "full": "Full fine-tuning",
    "lora": "LoRA",
    "dora": "DoRA",
    "lora-sp": "LoRA-SP",
    "tied-lora": "Tied-LoRA",
    "smt": "SMT (Sparse Matrix Tuning)",
    "sparta": "SpaRTA",
    "vera": "VeRA",
}


class MethodInfo:
    def __init__(self, name, module):
        self.name = name
        self.module = module
        self.label = LABELS[name]
        self.knobs: list[Knob] = module.KNOBS
        self.description = module.DESCRIPTION
        self.paper = module.PAPER
        self.formula = module.FORMULA

    def to_dict(self):
        return dict(name=self.name, label=self.label, description=self.description, paper=self.paper,
                    formula=self.formula, knobs=[k.to_dict() for k in self.knobs])


METHODS: dict[str, MethodInfo] = {k: MethodInfo(k, m) for k, m in _MODULES.items()}


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise KnobError(f"Unknown method '{str(name)[:40]}': choose from {', '.join(METHODS)}")
    return METHODS[name]


def apply_method(model: nn.Module, method: str, n_base: int | None = None, smt_selection=None, **knobs) -> Adapter:
    """Adapt ``model`` in place (give it a private copy) and return the adapter."""
    info = get_method(method)
    values = validate_knobs(info.knobs, knobs, method)
    if n_base is None:
        n_base = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    return info.module.apply(model, values, n_base, selection=smt_selection)


def load_adapter(model: nn.Module, folder) -> Adapter:
    """Rebuild a saved adapter on a fresh copy of its base model and load its tensors."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / "explorer_adapter.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{folder} holds no saved adapter (explorer_adapter.json missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
        method, knobs = cfg["method"], dict(cfg["knobs"])
    except (ValueError, KeyError) as e:
        raise ValueError(f"{cfg_path} is not a valid adapter config: {e}") from None
    if method == "smt":
        adapter = apply_method(model, method, n_base=cfg.get("n_base"), smt_selection={}, **knobs)
        adapter.modules = {}
        adapter.load_state_tensors(load_file(str(folder / "adapter.safetensors")))
        return adapter
    adapter = apply_method(model, method, n_base=cfg.get("n_base"), **knobs)
    if hasattr(adapter, "load_from"):  # saved in peft's own format (LoRA, DoRA, VeRA)
        adapter.load_from(folder)
    else:
        adapter.load_state_tensors(load_file(str(folder / "adapter.safetensors")))
    return adapter


__all__ = ["METHODS", "LABELS", "Adapter", "Knob", "KnobError", "Layout", "apply_method", "get_method",
           "load_adapter", "validate_knobs"]
