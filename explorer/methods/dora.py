"""DoRA through the ``peft`` library: LoRA plus a trainable magnitude vector per target."""

from __future__ import annotations

from . import lora
from .contract import Method
from .lora import LoraAdapter


class DoraAdapter(LoraAdapter):
    method = "dora"
    use_dora = True


def apply(model, knobs, n_base, **_):
    return DoraAdapter(model, knobs, n_base)


def memory_plan(spec, knobs: dict):
    return lora.lora_memory_plan(spec, knobs, "dora", magnitude=True)


METHOD = Method(
    label="DoRA", short="DoRA", paper="arXiv 2402.09353",
    description="LoRA on the direction of W plus a trainable magnitude per output row.",
    what_trains="LoRA's B A on the direction of W, plus one magnitude per output row",
    formula="r (d_in + d_out) + d_out per target",
    deviations=[],  # peft's own implementation (LoraConfig(use_dora=True))
    knobs=lora.KNOBS, default_lr=3e-3, color_slot=2, apply=apply,
    # what the playground draws: LoRA's, with the magnitude vector (the adapter says use_dora)
    formula_lines=lora.formula_lines, illustrative_delta=lora.illustrative_delta,
    matrix_pictures=lora.matrix_pictures,
    memory_plan=memory_plan, settings_text=lora.settings_text, memory_page_knobs=lora.METHOD.memory_page_knobs,
)
