"""DoRA through the ``peft`` library: LoRA plus a trainable magnitude vector per target."""

from __future__ import annotations

from . import lora
from .lora import LoraAdapter

LABEL = "DoRA"
SHORT = "DoRA"
KNOBS = lora.KNOBS
DESCRIPTION = "LoRA on the direction of W plus a trainable magnitude per output row."
WHAT_TRAINS = "LoRA's B A on the direction of W, plus one magnitude per output row"
PAPER = "arXiv 2402.09353"
FORMULA = "r (d_in + d_out) + d_out per target"
DEFAULT_LR = 3e-3
COLOR_SLOT = 2
DEVIATIONS: list[str] = []  # peft's own implementation (LoraConfig(use_dora=True))
LOAD_FORMAT = lora.LOAD_FORMAT
# what the playground draws: LoRA's, with the magnitude vector (the adapter says use_dora)
formula_lines = lora.formula_lines
illustrative_delta = lora.illustrative_delta
matrix_pictures = lora.matrix_pictures


class DoraAdapter(LoraAdapter):
    method = "dora"
    use_dora = True


def apply(model, knobs, n_base, **_):
    return DoraAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- memory facts

MEMORY_PAGE_KNOBS = lora.MEMORY_PAGE_KNOBS
settings_text = lora.settings_text


def memory_plan(spec, knobs: dict):
    return lora.lora_memory_plan(spec, knobs, "dora", magnitude=True)
