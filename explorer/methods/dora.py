"""DoRA through the ``peft`` library: LoRA plus a trainable magnitude vector per target."""

from __future__ import annotations

from . import lora
from .lora import LoraAdapter

KNOBS = lora.KNOBS
DESCRIPTION = "LoRA on the direction of W plus a trainable magnitude per output row."
PAPER = "arXiv 2402.09353"
FORMULA = "r (d_in + d_out) + d_out per target"


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
