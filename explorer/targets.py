"""Find the linear layers a method can target, by short matrix type.

Matrix types are the same words for every architecture:
``q``, ``k``, ``v``, ``o`` (attention query, key, value, output) and ``gate``,
``up``, ``down`` (MLP).  BERT's ``attention.self.query`` is ``q``, its
``attention.output.dense`` is ``o``, ``intermediate.dense`` is ``up`` and the
layer's ``output.dense`` is ``down``.  Unknown architectures fall back to the
module-name suffix after the layer index (e.g. ``attn.c_attn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

ALL_TYPES = ["q", "k", "v", "o", "gate", "up", "down"]

# suffix after "<layers>.<i>." -> type
_SUFFIX_TYPES = {
    # llama / mistral / qwen
    "self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v", "self_attn.o_proj": "o",
    "mlp.gate_proj": "gate", "mlp.up_proj": "up", "mlp.down_proj": "down",
    # bert / roberta
    "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
    "attention.output.dense": "o", "intermediate.dense": "up", "output.dense": "down",
    # distilbert
    "attention.q_lin": "q", "attention.k_lin": "k", "attention.v_lin": "v", "attention.out_lin": "o",
    "ffn.lin1": "up", "ffn.lin2": "down",
}

# the human names shown next to the short types
TYPE_NAMES = {
    "llama": {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
              "up": "up_proj", "down": "down_proj"},
    "bert": {"q": "query", "k": "key", "v": "value", "o": "attention output", "up": "intermediate",
             "down": "output"},
}

# targets that read the same input inside one layer (Tied-LoRA fuses them)
INPUT_GROUPS = [("q", "k", "v"), ("o",), ("gate", "up"), ("down",)]

_LAYER_RE = re.compile(r"^(?P<prefix>.*?\.(?:layer|layers|h|blocks|block))\.(?P<idx>\d+)\.(?P<suffix>.+)$")


@dataclass(frozen=True)
class Target:
    name: str  # full module name in the model
    layer: int
    type: str  # short type ("q", ..., or the raw suffix for unknown architectures)
    d_out: int
    d_in: int


def _linear_shape(mod: nn.Module) -> tuple[int, int] | None:
    if isinstance(mod, nn.Linear):
        return mod.out_features, mod.in_features
    return None


def find_targets(model: nn.Module, types: list[str] | tuple[str, ...] | None = None) -> list[Target]:
    """Every linear layer inside the repeated blocks, optionally only ``types``."""
    out: list[Target] = []
    for name, mod in model.named_modules():
        shape = _linear_shape(mod)
        if shape is None:
            continue
        m = _LAYER_RE.match(name)
        if not m:
            continue
        suffix = m.group("suffix")
        ttype = _SUFFIX_TYPES.get(suffix, suffix)
        if types is not None and ttype not in types:
            continue
        out.append(Target(name=name, layer=int(m.group("idx")), type=ttype, d_out=shape[0], d_in=shape[1]))
    out.sort(key=lambda t: (t.layer, ALL_TYPES.index(t.type) if t.type in ALL_TYPES else 99, t.name))
    return out


def available_types(model: nn.Module) -> list[str]:
    seen = []
    for t in find_targets(model):
        if t.type not in seen:
            seen.append(t.type)
    return seen


def head_module_names(model: nn.Module) -> list[str]:
    """The task head that is new for sequence classification (trains fully in every method)."""
    names = []
    for n in ("classifier", "score"):
        mod = getattr(model, n, None)
        if isinstance(mod, nn.Module):
            names.append(n)
    return names


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def type_label(family: str, ttype: str) -> str:
    return TYPE_NAMES.get(family, {}).get(ttype, ttype)


def init_head(model: nn.Module, num_labels: int, seed: int) -> bool:
    """(Re)initialise a sequence-classification head from ``seed``; resize it to ``num_labels``.

    Returns True when the head was replaced.  Works for BERT-style ``classifier`` and
    LLaMA-style ``score`` heads (a Linear, or a module whose last Linear is ``out_proj``).
    """
    names = head_module_names(model)
    if not names:
        return False
    g = torch.Generator().manual_seed(int(seed) + 424242)
    for name in names:
        head = getattr(model, name)
        lin = head if isinstance(head, nn.Linear) else getattr(head, "out_proj", None)
        if not isinstance(lin, nn.Linear):
            continue
        new = nn.Linear(lin.in_features, num_labels, bias=lin.bias is not None)
        with torch.no_grad():
            new.weight.copy_(torch.randn(new.weight.shape, generator=g) * 0.02)
            if new.bias is not None:
                new.bias.zero_()
        new.to(lin.weight.device, lin.weight.dtype)
        new.weight.requires_grad_(False)
        if new.bias is not None:
            new.bias.requires_grad_(False)
        if lin is head:
            setattr(model, name, new)
        else:
            head.out_proj = new
    model.num_labels = num_labels
    if getattr(model, "config", None) is not None:
        model.config.num_labels = num_labels
        model.config.id2label = {i: str(i) for i in range(num_labels)}
        model.config.label2id = {str(i): i for i in range(num_labels)}
    return True
