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

from torch import nn

from explorer.targets import ALL_TYPES, head_module_names
from .base import Adapter, Knob, Layout, resolve_targets
from .lora import LoraAdapter

KNOBS = [
    Knob("rank", "int", 512, "rank r of the shared frozen A and B (the paper uses 256 to 1024; only d, of "
         "length r, trains per target)", min=1, max=4096, label="rank r"),
    Knob("targets", "multi", ["q", "k", "v", "o", "gate", "up", "down"],
         "target matrices (all share one A and one B; the paper's instruction tuning adapts every linear layer)",
         choices=ALL_TYPES, label="target matrices"),
    Knob("d_init", "float", 0.1, "initial value of every entry of d (b starts at 0; d = 0 would never learn)",
         min=1e-4, max=10.0, label="d initial value"),
    Knob("dropout", "float", 0.0, "dropout on the adapter input", min=0.0, max=0.9, advanced=True,
         label="adapter dropout"),
    Knob("seed", "int", 0, "seed of the shared random A and B (peft's projection_prng_key)", min=0,
         max=2**31 - 1, label="random seed"),
]
DESCRIPTION = ("One frozen random pair A, B shared by every layer; each layer trains only two scaling vectors, "
               "d (r) and b (d_out, starts at zero).")
PAPER = "arXiv 2310.11454"
FORMULA = "r + d_out per target (A and B frozen, shared)"
# measured on minilm / colour-shape, 150 steps, batch 16 (held-out accuracy at step 150, untrained 0.535):
# every linear layer, r = 512: 0.81 at 3e-2, 0.49 at 5e-2; r = 1024: 0.74 at 3e-2; q and v only, r = 256:
# 0.47 to 0.54 at 1e-2, 3e-2 and 1e-1 (it does not learn there in 150 steps)
DEFAULT_LR = 3e-2


def analytic_count(targets, rank: int) -> int:
    """Trainable entries of the adapted layers: d (r) and b (d_out) per target (the head comes on top)."""
    return sum(rank + t.d_out for t in targets)


class VeraAdapter(Adapter):
    method = "vera"

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        from peft import VeraConfig, get_peft_model

        super().__init__(model, knobs, n_base)
        self.targets = resolve_targets(model, knobs["targets"], self.method)
        heads = head_module_names(model)
        cfg = VeraConfig(r=knobs["rank"], target_modules=[t.name for t in self.targets],
                         projection_prng_key=knobs["seed"], save_projection=True, vera_dropout=knobs["dropout"],
                         d_initial=knobs["d_init"], modules_to_save=heads or None, bias="none")
        self.peft_model = get_peft_model(model, cfg)
        self.model = self.peft_model
        d_in = max(t.d_in for t in self.targets)
        d_out = max(t.d_out for t in self.targets)
        self.notes.append(f"Implemented with the peft library (VeraConfig): one frozen A ({knobs['rank']} x {d_in}) "
                          f"and B ({d_out} x {knobs['rank']}) shared by all {len(self.targets)} targets, sliced "
                          "to each target's shape; they are buffers, not trained.")
        if heads:
            self.notes.append("The new classification head trains fully (peft modules_to_save) and is counted.")

    head_parameters = LoraAdapter.head_parameters
    save = LoraAdapter.save
    load_from = LoraAdapter.load_from
    merge_into_model = LoraAdapter.merge_into_model

    def shared_projections(self):
        """The one frozen (A, B) pair every target slices (peft's vera_A / vera_B buffers)."""
        vm = self.peft_model.base_model
        return vm.vera_A["default"], vm.vera_B["default"]

    def analytic_bytes(self) -> int:
        """Bytes of the tensors ``save()`` writes, from shapes alone: the trained d, b and head, and the shared
        A and B (``save_projection=True``), in the trained tensors' dtype."""
        r = self.knobs["rank"]
        d_in, d_out = max(t.d_in for t in self.targets), max(t.d_out for t in self.targets)
        size = next(p for _, p in self.trainable_parameters()).element_size()
        return (self.num_trainable() + r * d_in + d_out * r) * size

    def layouts(self):
        r = self.knobs["rank"]
        return [Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "lowrank", r + t.d_out, t.d_out * t.d_in,
                       detail=dict(rank=r, shared_frozen=True))
                for t in self.targets]


def apply(model, knobs, n_base, **_):
    return VeraAdapter(model, knobs, n_base)
