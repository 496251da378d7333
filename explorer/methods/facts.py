"""Helpers for the facts a method module declares (see ``explorer.methods``' docstring): the knob widget
context and options, the common knobs, the playground's pictures and formula lines, budget-sweep geometry.

Numbers and text only: ``explorer.views`` turns them into figures and ``ui.widgets`` into widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from .base import Knob

if TYPE_CHECKING:  # pragma: no cover
    from .base import Adapter, Layout

# ----------------------------------------------------------------------------- knob widgets

@dataclass
class KnobContext:
    """What a knob's widget may depend on: the model's target shapes and the page's current knob values."""

    values: dict  # the method's knob values as the page holds them now (name -> value)
    shapes: Callable[[list], list]  # target types -> sorted unique (d_out, d_in) of the model's matching targets
    n_blocks: Callable[[list, int], int] = lambda types, b: 0  # target types, block size -> b x b blocks in them


@dataclass
class Widget:
    """A widget's options computed for one model and the page's current values (``Knob.options``)."""

    options: list | None = None  # the allowed values (a select slider); None: a plain slider from lo to hi
    lo: float | None = None
    hi: float | None = None
    labels: dict = field(default_factory=dict)  # value -> shown text (e.g. 0 -> "auto (16)")
    help: str = ""  # appended to the knob's help
    fallback: Any = None  # the value to use when the current one is not allowed (None: the knob's default)


RANK_STEPS = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # the rank slider's stops (the current value is always one)


def rank_options(ctx: KnobContext) -> Widget:
    """A rank knob's stops: powers of two up to 256 and the current value."""
    return Widget(options=sorted(set(RANK_STEPS) | {int(ctx.values.get("rank") or 8)}))


def rank_knob(help_: str = "rank r of B A") -> Knob:
    return Knob("rank", "int", 8, help_, min=1, max=512, label="rank r", widget="select_slider", options=rank_options)


def alpha_knob(help_: str = "scale alpha (update multiplied by alpha / r)") -> Knob:
    return Knob("alpha", "float", 16.0, help_, min=0.0, max=4096.0, label="scale α", widget="number", step=1.0)


def targets_knob(default: list, help_: str) -> Knob:
    from explorer.targets import ALL_TYPES

    return Knob("targets", "multi", list(default), help_, choices=ALL_TYPES, label="target matrices",
                model_types=True)


def seed_knob(help_: str) -> Knob:
    return Knob("seed", "int", 0, help_, min=0, max=2**31 - 1, label="random seed")


def fraction_knob(name: str, default: float, help_: str, label: str) -> Knob:
    """A share in [0, 1] on a fine slider (density, sparsity)."""
    return Knob(name, "float", default, help_, min=0.0, max=1.0, label=label, widget="slider", step=0.001,
                format="%.3f")


# ----------------------------------------------------------------------------- playground pictures, formula, sweeps

@dataclass
class Picture:
    """One picture of the playground and the sentence beside it: numbers only (``explorer.views.playground``
    turns ``kind`` + ``data`` into a figure).  Kinds: ``tied_diagram`` (data: the sharing structure),
    ``lowrank_shapes`` (d_out, d_in, rank), ``factor_masks`` (masks of A and B), ``mask`` (mask: bool
    d_out x d_in; the view adds how many entries a drawn cell averages), ``block_scores`` (scores, selected,
    block)."""

    kind: str
    title: str
    text: str
    data: dict = field(default_factory=dict)


@dataclass
class SweepGeometry:
    """What a budget sweep knows of the targets, for ``sweep_point``: the target types, the block size every
    target divides by (``b``), the b x b blocks they hold and their entries."""

    targets: list
    b: int
    total_blocks: int
    cells: int


def tensor_bytes(tensors) -> int:
    """Bytes of the tensors, each storage once (tied weights counted once)."""
    seen, n = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel()) if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        n += t.numel() * t.element_size()
    return n


def with_head(lines: list[str], total: int, head: int) -> tuple[list[str], int]:
    """The formula's last line: the new classification head, trained fully (when the model has one)."""
    if head:
        lines.append(f"+ the new classification head, trained fully = {fmt_count(head)}")
        total += head
    return lines, total


def fmt_count(x) -> str:
    return f"{int(x):,}"


def shape_groups(targets) -> "dict[tuple, int]":
    """(type, d_out, d_in) -> how many target matrices have it, in target order."""
    groups: dict[tuple, int] = {}
    for t in targets:
        groups[(t.type, t.d_out, t.d_in)] = groups.get((t.type, t.d_out, t.d_in), 0) + 1
    return groups


def per_shape_lines(targets, count: Callable[[int, int], int], how: Callable[[int, int], str]):
    """One formula line per (type, shape) of the targets: ``how(d_out, d_in)`` written out, its ``count`` per
    matrix and times the matrices; returns (lines, the sum)."""
    lines, n = [], 0
    for (ty, do, di), c in shape_groups(targets).items():
        per = count(do, di)
        lines.append(f"{ty}: {how(do, di)} = {fmt_count(per)}  × {c} matrices = {fmt_count(per * c)}")
        n += per * c
    return lines, n


def mask_delta(adapter: "Adapter", target: str, gen: torch.Generator, what: str) -> tuple[torch.Tensor, None, str]:
    """An illustrative ΔW for a method that trains selected entries of W: random values where the layout's
    mask is True (the deltas start at zero), exactly zero elsewhere."""
    t = next(t for t in adapter.targets if t.name == target)
    mask = torch.from_numpy(next(lay for lay in adapter.layouts() if lay.target == target).mask())
    d = torch.zeros(t.d_out, t.d_in)
    d[mask] = torch.randn(int(mask.sum()), generator=gen)
    return d, None, (f"The deltas start at zero; here the selected {what} hold random values: only they can change.")


def mask_picture(layout: "Layout", text: str) -> Picture:
    shape = tuple(layout.shape)
    return Picture("mask", f"Entries of W that train ({layout.changeable:,} of {shape[0] * shape[1]:,})", text,
                   dict(mask=layout.mask()))
