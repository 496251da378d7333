"""What a method does to a model's memory: the plan each method module returns from its ``memory_plan``.

The analytic model (:mod:`explorer.memory.analytic`) never asks a method's name.  It asks the method's module
(``explorer.methods.<name>.memory_plan(spec, knobs)``) for a :class:`MemoryPlan`: the trainable count by part,
the adapter tensors that exist besides the trained ones (frozen floats, int32 indices), and, per target type,
a *save rule*: a function that, given one :class:`LinearCall` met in the forward walk, records what autograd
keeps for backward at that layer (LoRA's r-wide ``A x``, SMT's compact input columns, ...) and says whether
the layer's output needs a gradient.  Target types without a rule are frozen linear layers.

No import of ``explorer.methods`` at module level here: the method modules import this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

ORDER = ("q", "k", "v", "o", "gate", "up", "down")  # target types in block order


@dataclass
class LinearCall:
    """One adapted linear layer met in the forward walk (``tokens`` = s b; ``e``: bytes per activation element,
    ``mask_e``: bytes per dropout-mask element); ``save`` records one storage (each key once)."""

    save: Callable[[str, float, str], None]
    key_in: str  # the storage of the layer's input
    out_key: str  # a prefix for the storages this layer creates
    d_in: int
    d_out: int
    needs_grad_in: bool  # the input already requires a gradient
    tokens: int
    e: int
    mask_e: int
    autocast: bool = False  # bf16 autocast: a product with a non-leaf or frozen-buffer operand keeps a bf16 copy

    @property
    def input_bytes(self) -> int:
        return self.tokens * self.d_in * self.e

    def save_input(self) -> None:
        self.save(self.key_in, self.input_bytes, "linear inputs")


SaveRule = Callable[[LinearCall], bool]


def trained_weight(call: LinearCall) -> bool:
    """A linear layer whose own weight trains keeps its input for the weight gradient."""
    call.save_input()
    return True


@dataclass
class MemoryPlan:
    """A method applied to a ModelSpec, from the same formulas as the method's adapter."""

    knobs: dict
    trainable_parts: dict = field(default_factory=dict)  # {"adapters": n, "head": n} etc.; they sum to trainable
    trains_base: bool = False  # every parameter of the base model trains (full fine-tuning)
    extra_float: int = 0  # frozen adapter tensors (float), elements
    extra_index_bytes: int = 0  # int32 index buffers, bytes
    head_copy: int = 0  # peft modules_to_save keeps the original head too
    save_rules: dict[str, SaveRule] = field(default_factory=dict)  # target type -> rule; absent: frozen
    # target types whose adapted layer is a custom autograd Function (explorer.sparse): autocast casts neither its
    # input nor its weight, so it keeps its input in the dtype it comes in and no 16-bit weight copy
    uncast: frozenset = frozenset()
    notes: list = field(default_factory=list)

    @property
    def trainable(self) -> int:
        return int(sum(self.trainable_parts.values()))


@dataclass
class AdapterShapes:
    """The target matrices a PEFT method adapts in a spec: (layer, type, d_out, d_in) of each, their types in
    block order, and one (d_out, d_in) per type."""

    shapes: list
    types: list
    by_type: dict


def adapter_shapes(spec, method: str, targets) -> AdapterShapes:
    """The targets of a PEFT method in ``spec``; a one-line KnobError when the model has none of them."""
    from explorer.errors import KnobError

    if spec.conv1d:
        raise KnobError(f"{method}: this model (GPT-2 style) builds its blocks from Conv1D layers (c_attn fuses "
                        "q, k and v), which the PEFT methods here do not target; only full fine-tuning applies")
    shapes = spec.target_shapes(targets)
    if not shapes:
        raise KnobError(f"{method}: none of the targets {', '.join(targets)} exist in a {spec.family} model")
    types = sorted({t for _, t, _, _ in shapes}, key=list(ORDER).index)
    return AdapterShapes(shapes, types, {t: (o, i) for _, t, o, i in shapes})


def targets_text(knobs: dict, knob_list) -> str:
    """The target types of ``knobs`` (the knob's default when absent) joined by commas: "q,v"."""
    tg = knobs.get("targets", {k.name: k.default for k in knob_list}.get("targets"))
    return ",".join(tg) if tg else ""
