"""VeRA, Vector-based Random Matrix Adaptation (arXiv 2310.11454), through the ``peft`` library.

    W' = W + diag(b) B diag(d) A

One pair of random matrices, A (r x d_in) and B (d_out x r), is drawn once from a seed and
shared by every adapted layer; it stays frozen (peft keeps it in buffers, never parameters,
so it never reaches the optimizer).  Each adapted layer trains only two scaling vectors:
d (length r, every entry starts at ``d_init``; the paper's 0.1) and b (length d_out, starts at
zero, so the update is zero at step 0).  When the targets have different shapes, peft draws A
and B at the largest input and output sizes and slices them per layer (A[:, :d_in], B[:d_out]).
There is no alpha scale: b and d are the scale.

Adapters save in peft's own format (adapter_config.json + adapter_model.safetensors, the shared
A and B included: ``save_projection=True``), so they load with ``PeftModel.from_pretrained``
anywhere peft runs.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text
from .base import Knob, Layout
from .contract import Method
from .facts import (KnobContext, Picture, Widget, fmt_count, per_shape_lines, seed_knob, targets_knob,
                    with_head)
from .peft_adapter import PeftAdapter

RANK_STEPS = [16, 64, 128, 256, 512, 1024, 2048]  # the rank slider's stops (the current value is always one)


def rank_options(ctx: KnobContext) -> Widget:
    return Widget(options=sorted(set(RANK_STEPS) | {int(ctx.values.get("rank") or 512)}))


KNOBS = [
    Knob("rank", "int", 512, "rank r of the shared frozen A and B (only d, r numbers, trains per target, so a "
         "high rank stays cheap)", min=1, max=4096, label="rank r", widget="select_slider",
         options=rank_options),
    targets_knob(["q", "k", "v", "o", "gate", "up", "down"],
                 "target matrices (all share one A and one B)"),
    Knob("d_init", "float", 0.1, "initial value of every entry of d (b starts at 0; d = 0 would never learn)",
         min=1e-4, max=10.0, label="d initial value", widget="number", step=0.05, format="%.4g"),
    Knob("dropout", "float", 0.0, "dropout on the adapter input", min=0.0, max=0.9, advanced=True,
         label="adapter dropout", widget="slider", step=0.01),
    seed_knob("seed of the shared random A and B (peft's projection_prng_key)"),
]
HEAD_LR_SCALE = 0.1  # the new classification head's rate, as a multiple of the run's (see METHOD.deviations)


def shared_shape(targets) -> tuple[int, int]:
    """(d_in, d_out) of the shared A and B: the largest input and output size among the targets."""
    return max(t.d_in for t in targets), max(t.d_out for t in targets)


def analytic_count(targets, rank: int) -> int:
    """Trainable entries of the adapted layers: d (r) and b (d_out) per target (the head comes on top)."""
    return sum(rank + t.d_out for t in targets)


class VeraAdapter(PeftAdapter):
    method = "vera"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        from peft import VeraConfig

        super().__init__(model, knobs, n_base)
        self.wrap(VeraConfig(r=knobs["rank"], target_modules=[t.name for t in self.targets],
                             projection_prng_key=knobs["seed"], save_projection=True, vera_dropout=knobs["dropout"],
                             d_initial=knobs["d_init"], modules_to_save=self.heads or None, bias="none"))
        d_in, d_out = shared_shape(self.targets)
        self.notes.append(f"Implemented with the peft library (VeraConfig): one frozen A ({knobs['rank']} x {d_in}) "
                          f"and B ({d_out} x {knobs['rank']}) shared by all {len(self.targets)} targets, sliced "
                          "to each target's shape; they are buffers, not trained.")
        if self.heads:
            self.notes.append("The new classification head trains fully (peft modules_to_save) and is counted; it "
                              f"trains at {HEAD_LR_SCALE:g} x the run's learning rate (d and b at the run's rate).")

    def lr_scale(self, name: str, param: nn.Parameter) -> float:
        """The new classification head (peft's modules_to_save copy) trains at HEAD_LR_SCALE x the run's rate."""
        return HEAD_LR_SCALE if ".modules_to_save." in name else 1.0

    def shared_projections(self):
        """The one frozen (A, B) pair every target slices (peft's vera_A / vera_B buffers)."""
        vm = self.peft_model.base_model
        return vm.vera_A["default"], vm.vera_B["default"]

    def analytic_bytes(self) -> int:
        """Bytes of the tensors ``save()`` writes, from shapes alone: the trained d, b and head, and the shared
        A and B (``save_projection=True``), in the trained tensors' dtype."""
        r = self.knobs["rank"]
        d_in, d_out = shared_shape(self.targets)
        size = next(p for _, p in self.trainable_parameters()).element_size()
        return (self.num_trainable() + r * d_in + d_out * r) * size

    def layouts(self):
        r = self.knobs["rank"]
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "lowrank", r + t.d_out, t.d_out * t.d_in,
                       detail=dict(rank=r, shared_frozen=True))
                for t in self.targets]


def apply(model, knobs, n_base, **_):
    return VeraAdapter(model, knobs, n_base)


# ----------------------------------------------------------------------------- what the playground draws

def formula_lines(adapter, total: int, head: int):
    r = adapter.knobs["rank"]
    lines, n = per_shape_lines(adapter.targets, lambda do, di: r + do,
                               lambda do, di: f"d (r) + b (d_out) = {r} + {do}")
    d_in, d_out = shared_shape(adapter.targets)
    lines.append(f"frozen and shared by all {len(adapter.targets)} matrices, not trained: A {r}×{d_in} and "
                 f"B {d_out}×{r} ({fmt_count(r * d_in + d_out * r)} numbers, each matrix slices its shape)")
    return with_head(lines, n, head)


def illustrative_delta(adapter, target: str, gen):
    t = next(t for t in adapter.targets if t.name == target)
    mod = adapter.peft_model.base_model.model.get_submodule(target)
    A = mod.vera_A["default"][:, : t.d_in].detach().float()
    B = mod.vera_B["default"][: t.d_out].detach().float()
    d = mod.vera_lambda_d["default"].detach().float()
    b = mod.vera_lambda_b["default"].detach().float()
    if float(b.abs().max()) == 0:
        b = torch.randn(t.d_out, generator=gen)
    bB, dA = b[:, None] * B, d[:, None] * A
    note = (f"b starts at zero, so the real ΔW is 0 until training. Here b is random; A and B (frozen, the same "
            f"for every target) and d are their real values: ΔW = diag(b) B diag(d) A has rank ≤ "
            f"{min(A.shape[0], t.d_out, t.d_in)} and "
            "every entry of W can change, but only through the r + d_out numbers that scale fixed random "
            "directions.")
    return bB @ dA, (bB, dA), note


def matrix_pictures(adapter, layout, warmup):
    (d_out, d_in), r = layout.shape, adapter.knobs["rank"]
    text = (f"W ({d_out}×{d_in}) stays frozen, and so do **B** ({d_out}×{r}) and **A** ({r}×{d_in}): random, drawn "
            f"once and shared by every target. VeRA trains only **d** ({r} numbers, scaling the rows of A) and "
            f"**b** ({d_out}, scaling the rows of B): {layout.trainable:,} numbers instead of {d_out * d_in:,}.")
    return [Picture("lowrank_shapes", "W + diag(b)·B·diag(d)·A, to scale", text,
                    dict(d_out=d_out, d_in=d_in, rank=r))]


# ----------------------------------------------------------------------------- memory facts

def settings_text(knobs: dict) -> str:
    return f"r={knobs.get('rank')} on {targets_text(knobs, KNOBS)}"


def vera_saves(call: LinearCall, rank: int, dropout: float) -> bool:
    """peft's VeRA layer, b ⊙ (B_slice (d ⊙ (A_slice x))): A and B are frozen, so x is not kept for them
    (a product with a frozen weight keeps the weight, a view of the shared buffer); d ⊙ h keeps h = A x
    (r wide) for d's gradient, b ⊙ z keeps z = B (d ⊙ h) (d_out wide) for b's; dropout keeps its mask when x
    needs a gradient."""
    te = call.tokens * call.e
    if dropout > 0 and call.needs_grad_in:
        call.save(f"{call.out_key}.vera_drop_mask", call.tokens * call.d_in * call.mask_e, "VeRA: adapter dropout")
    call.save(f"{call.out_key}.vera_h", te * rank, "VeRA: A x (r wide), for d")
    call.save(f"{call.out_key}.vera_z", te * call.d_out, "VeRA: B diag(d) A x (d_out wide), for b")
    if call.autocast:  # autocast casts the frozen slices of A and B for every target (buffers: no cast cache)
        if call.needs_grad_in:
            call.save(f"{call.out_key}.vera_a16", rank * call.d_in * 2, "VeRA: bf16 copies of A and B")
        call.save(f"{call.out_key}.vera_b16", call.d_out * rank * 2, "VeRA: bf16 copies of A and B")
    return True


def memory_plan(spec, knobs: dict) -> MemoryPlan:
    """Σ (r + d_out) trained per target; the shared A (r x largest d_in) and B (largest d_out x r) are frozen
    floats; peft's modules_to_save keeps a frozen copy of the head."""
    a = adapter_shapes(spec, "vera", knobs["targets"])
    r, head = knobs["rank"], spec.head_params()
    n = sum(r + o for _, _, o, _ in a.shapes)
    d_in, d_out = max(i for _, _, _, i in a.shapes), max(o for _, _, o, _ in a.shapes)  # as shared_shape
    rule = partial(vera_saves, rank=r, dropout=knobs["dropout"])
    plan = MemoryPlan(knobs, trainable_parts=dict(adapters=n, head=head), head_copy=head,
                      extra_float=r * d_in + d_out * r, save_rules={t: rule for t in a.types})
    if head:
        plan.notes.append("peft modules_to_save keeps a frozen copy of the original head besides the trained "
                          "one (counted in weights).")
    return plan


METHOD = Method(
    label="VeRA", short="VeRA", paper="arXiv 2310.11454",
    description="One frozen random pair A, B shared by every layer; each layer trains only two scaling vectors, "
                "d (r) and b (d_out, starts at zero).",
    what_trains="two scaling vectors per target, d (r) and b (d_out, starts at 0), around one frozen random B A "
                "shared by all layers",
    formula="r + d_out per target (A and B frozen, shared)",
    deviations=[
        "d and b train at the run's rate (default 3e-2, ten times LoRA's, since only scaling vectors train) and "
        "the new classification head at a tenth of it, a choice made here by measurement: with one rate for both, "
        "minilm learned colour-shape in 150 steps with one seed in three (held-out 0.81, 0.54, 0.605); with the "
        "head at a tenth, 0.955, 0.775 and 0.965.",
        "Defaults chosen here by measurement on minilm: r = 512 on every linear layer (q and v alone did not learn "
        "colour-shape in 150 steps at any rate tried); the paper sets rank and targets per experiment.",
        "peft draws A and B once, Kaiming-uniform, at the largest target's sizes, and each target slices its own "
        "shape from them.",
    ],
    # measured on minilm / colour-shape, 150 steps, batch 16 (held-out accuracy at step 150, untrained
    # 0.505-0.535): every linear layer, r = 512, the head at the run's rate: 0.81 at 3e-2 (seed 0; seeds 1 and 2:
    # 0.54, 0.605), 0.57 at 2e-2, 0.49 at 5e-2; r = 1024: 0.74 at 3e-2; q and v only, r = 256: 0.47 to 0.54 at
    # 1e-2, 3e-2 and 1e-1.  The head at a tenth of 3e-2 (HEAD_LR_SCALE): 0.955 / 0.775 / 0.965 / 0.845 with seeds
    # 0 / 1 / 2 / 3.  bbc-news, 60 steps, the head at the run's rate: 0.935
    knobs=KNOBS, default_lr=3e-2, color_slot=7, apply=apply,
    formula_lines=formula_lines, illustrative_delta=illustrative_delta, matrix_pictures=matrix_pictures,
    memory_plan=memory_plan, settings_text=settings_text,
)
