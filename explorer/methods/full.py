"""Full fine-tuning (baseline): every parameter trains."""

from __future__ import annotations

from torch import nn

from explorer.memory.plan import ORDER, MemoryPlan, trained_weight
from explorer.targets import find_targets
from .base import Adapter, Knob, Layout

KNOBS: list[Knob] = []
DESCRIPTION = "Every parameter trains. AdamW in fp32 keeps 16 bytes per parameter (weights, grads, two moments)."
PAPER = "baseline"
FORMULA = "all parameters"


class FullAdapter(Adapter):
    method = "full"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        super().__init__(model, knobs, n_base)
        for p in model.parameters():
            p.requires_grad_(True)
        self.targets = find_targets(model)

    def layouts(self):
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "dense", t.d_out * t.d_in, t.d_out * t.d_in)
                for t in self.targets]

    def state_tensors(self):
        return {k: v for k, v in self.model.state_dict().items()}

    def load_state_tensors(self, tensors):
        missing, unexpected = self.model.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"full: unexpected tensors in the saved state: {unexpected[:5]}")

    def save(self, folder):
        from safetensors.torch import save_model

        from pathlib import Path
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(folder / "adapter.safetensors"), metadata={"method": self.method})
        (folder / "explorer_adapter.json").write_text(json.dumps(self.config(), indent=2, default=str))
        return folder

    def merge_into_model(self):
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self.model


def apply(model, knobs, n_base, **_):
    return FullAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- memory facts

def settings_text(knobs: dict) -> str:
    return "every parameter"


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """Every parameter trains: every linear layer keeps its input, norms and embeddings train too."""
    return MemoryPlan(knobs, trainable_parts=dict(all=spec.n_params()), trains_base=True,
                      save_rules={t: trained_weight for t in ORDER})
