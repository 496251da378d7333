"""The base of the methods the ``peft`` library implements (LoRA, DoRA, VeRA): peft wraps the model, saves in its
own format (adapter_config.json + adapter_model.safetensors, loadable with ``PeftModel.from_pretrained`` anywhere
peft runs), loads its state dict back and merges."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from explorer.targets import head_module_names
from .base import Adapter, resolve_targets


class PeftAdapter(Adapter):
    """A subclass resolves nothing itself: it builds its peft config from ``self.targets`` and ``self.heads`` and
    hands it to :meth:`wrap`."""

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        self.heads = head_module_names(model)  # a new classification head trains fully (peft modules_to_save)

    def wrap(self, config) -> None:
        """Adapt the model with peft; ``self.model`` becomes the peft model."""
        from peft import get_peft_model

        self.peft_model = get_peft_model(self.model, config)
        self.model = self.peft_model

    def head_parameters(self) -> int:
        """The trained copy of the head (peft keeps a frozen original beside it)."""
        n = 0
        for name in head_module_names(self.peft_model.base_model.model):
            mod = getattr(self.peft_model.base_model.model, name)
            n += sum(p.numel() for p in mod.parameters() if p.requires_grad)
        return n

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.peft_model.save_pretrained(str(folder))
        (folder / "explorer_adapter.json").write_text(json.dumps(self.config(), indent=2, default=str))
        return folder

    def load(self, folder):
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
