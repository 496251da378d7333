"""Full fine-tuning (baseline): every parameter trains."""

from __future__ import annotations

from torch import nn

from explorer.memory.plan import ORDER, MemoryPlan, trained_weight
from explorer.targets import find_targets
from .base import Adapter, Layout
from .contract import Method
from .facts import mask_picture, tensor_bytes


class FullAdapter(Adapter):
    method = "full"
    saves_whole_model = True

    def analytic_bytes(self) -> int:
        return tensor_bytes(self.model.state_dict().values())

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


# ----------------------------------------------------------------------------- what the playground draws

def formula_lines(adapter, total: int, head: int):
    return [f"all parameters of the model = {total:,}"], total  # the head is among them


def illustrative_delta(adapter, target: str, gen):
    import torch

    t = next(t for t in adapter.targets if t.name == target)
    return (torch.randn(t.d_out, t.d_in, generator=gen), None,
            "Full fine-tuning: every entry can change (random values drawn for illustration).")


def matrix_pictures(adapter, layout, warmup):
    return [mask_picture(layout, "Full fine-tuning trains every entry.")]


# ----------------------------------------------------------------------------- memory facts

def settings_text(knobs: dict) -> str:
    return "every parameter"


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """Every parameter trains: every linear layer keeps its input, norms and embeddings train too."""
    return MemoryPlan(knobs, trainable_parts=dict(all=spec.n_params()), trains_base=True,
                      save_rules={t: trained_weight for t in ORDER})


METHOD = Method(
    label="Full fine-tuning", short="Full FT", paper="baseline",
    description="Every parameter trains. AdamW in fp32 keeps 16 bytes per parameter (weights, grads, two moments).",
    what_trains="every weight of the model",
    formula="all parameters",
    deviations=[],  # the baseline: nothing to depart from
    knobs=[], default_lr=1e-4, color_slot=6, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    memory_plan=memory_plan, settings_text=settings_text,
)
