"""The training options the memory model compares: precision, optimizer, activation checkpointing, ZeRO.

- precision: fp32 (4 B weights and activations) | bf16-mixed (2 B, plus an fp32 master copy of the trainable
  parameters unless ``master_copy`` is off) | 4bit (QLoRA: the blocks' linear weights at 0.5 B + constants) |
  bf16-autocast (``torch.autocast`` training as ``train --precision bf16`` runs it: fp32 weights, gradients and
  AdamW states, no master copy; activations as autocast saves them: 16-bit linear inputs and outputs, fp32
  norms, and the 16-bit copies autocast makes of the weights of every linear layer whose input needs a
  gradient, see :mod:`explorer.memory.activations`).
- optimizer: adamw (two fp32 moments, 8 B per trainable parameter) | adamw-8bit (two 1-byte moments, 2 B) | sgd.
- checkpointing: full activation checkpointing per layer (:func:`explorer.memory.activations.checkpointed`).
- ZeRO (Rajbhandari et al., arXiv 1910.02054) over N GPUs: stage 1 shards the optimizer state, 2 also the
  gradients, 3 also the weights (:func:`shard`).
"""

from __future__ import annotations

from dataclasses import dataclass

from explorer.errors import KnobError

PRECISIONS = ("fp32", "bf16-mixed", "4bit", "bf16-autocast")
ACTIVATION_MODELS = ("detailed", "korthikanti")
ATTENTIONS = ("auto", "flash", "materialized")
OPTIMIZERS = ("adamw", "adamw-8bit", "sgd")
MOMENT_BYTES = {"adamw": 8, "adamw-8bit": 2, "sgd": 0}  # optimizer moments per trainable parameter
ZERO_STAGES = (0, 1, 2, 3)
FULL_4BIT = ("a 4-bit base cannot be fully fine-tuned (its weights are frozen 4-bit codes with no gradient); "
             "choose fp32 or bf16-mixed, or a PEFT method")

# QLoRA (arXiv 2305.14314): NF4 with double quantisation costs 0.127 bits per parameter in constants
Q4_CONST_BYTES = 0.127 / 8


@dataclass
class Options:
    """The validated settings of one estimate."""

    precision: str = "bf16-mixed"
    batch: int = 1
    seq_len: int = 512
    recompute: bool = False
    activation_model: str = "detailed"
    attention: str = "auto"
    device: str = "cuda"
    master_copy: bool = True
    optimizer: str = "adamw"
    checkpointing: bool = False
    zero: int = 0
    gpus: int = 1
    padded: bool = False  # the batch has padding (an attention mask with zeros)

    @property
    def e(self) -> int:
        """Bytes per weight and gradient element: 4 in fp32 and bf16-autocast, else 2 (16-bit)."""
        return 4 if self.precision in ("fp32", "bf16-autocast") else 2

    @property
    def act_e(self) -> int:
        """Bytes per activation element: 4 in fp32, else 2 (16-bit; autocast's exceptions are in the walk)."""
        return 4 if self.precision == "fp32" else 2

    @property
    def autocast(self) -> bool:
        return self.precision == "bf16-autocast"

    @property
    def moments(self) -> int:
        return MOMENT_BYTES[self.optimizer]

    @property
    def master(self) -> int:
        """Bytes of the fp32 master copy per trainable parameter (mixed precision only)."""
        return 4 if (self.precision not in ("fp32", "bf16-autocast") and self.master_copy) else 0

    @property
    def mask_e(self) -> int:
        """Dropout masks: 1 byte per element on CUDA, a full float on CPU (PyTorch's CPU dropout)."""
        return 1 if self.device == "cuda" else self.act_e

    def kernel(self, attn_dropout: float) -> str:
        """"auto": fused kernels (no s^2 scores kept) on CUDA and on CPU without attention dropout, else the
        materialised path."""
        if self.attention != "auto":
            return self.attention
        return "flash" if (self.device == "cuda" or attn_dropout == 0) else "materialized"


def options(precision: str = "bf16-mixed", batch: int = 1, seq_len: int = 512, recompute: bool = False,
            activation_model: str = "detailed", attention: str = "auto", device: str = "cuda",
            master_copy: bool = True, optimizer: str = "adamw", checkpointing: bool = False, zero: int = 0,
            gpus: int = 1, padded: bool = False) -> Options:
    """The settings checked, each refusal one line naming the setting."""
    if precision not in PRECISIONS:
        raise KnobError(f"precision must be one of {', '.join(PRECISIONS)} (got '{precision}')")
    if activation_model not in ACTIVATION_MODELS:
        raise KnobError(f"activation_model must be one of {', '.join(ACTIVATION_MODELS)}")
    if attention not in ATTENTIONS:
        raise KnobError("attention must be auto, flash or materialized")
    if optimizer not in OPTIMIZERS:
        raise KnobError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got '{str(optimizer)[:40]}')")
    try:
        zero, gpus = int(zero), int(gpus)
    except (TypeError, ValueError):
        raise KnobError("zero must be 0, 1, 2 or 3 and gpus a whole number >= 1") from None
    if zero not in ZERO_STAGES:
        raise KnobError(f"zero must be 0, 1, 2 or 3 (got {zero})")
    if not 1 <= gpus <= 100_000:
        raise KnobError(f"gpus must be from 1 to 100,000 (got {gpus})")
    batch, seq_len = int(batch), int(seq_len)
    if batch < 1 or seq_len < 1:
        raise KnobError("batch and seq_len must be >= 1")
    return Options(precision, batch, seq_len, recompute, activation_model, attention, device, master_copy,
                   optimizer, checkpointing, zero, gpus, bool(padded))


def precision_notes(o: Options) -> list[str]:
    notes = []
    if o.autocast:
        notes.append("bf16 autocast: fp32 weights, gradients and AdamW states (no master copy: the weights are "
                     "fp32); the forward runs linear layers in bf16, so what it saves is 16-bit, norms and the loss "
                     "fp32, plus the bf16 copy of each linear weight whose input needs a gradient (autocast casts "
                     "the weight and the layer keeps the copy to pass the gradient on): activations, not weights.")
    elif o.precision != "fp32":
        notes.append(f"bf16 weights and gradients, {'8-bit' if o.moments == 2 else 'fp32'} Adam moments "
                     f"({o.moments} B/param)" + (", fp32 master copy (4 B/param)" if o.master else ", no master copy")
                     + " for trainable parameters.")
    if o.optimizer == "adamw-8bit":
        notes.append("8-bit AdamW (bitsandbytes): two 1-byte moments = 2 B per trainable parameter; its block-wise "
                     "quantisation constants (about 4 B per 2,048 values) are left out.")
    return notes


@dataclass
class Sharded:
    """What one GPU holds of the model states under ZeRO (bytes)."""

    weights: float
    grads: float
    optimizer: float
    moments: float
    master: float
    notes: list


def shard(o: Options, weights: float, grads: float, moments: float, master: float) -> Sharded:
    """ZeRO: what each of the N GPUs holds (stage 1: optimizer state, 2: + gradients, 3: + weights)."""
    n = o.gpus
    opt = moments + master
    if o.zero >= 1:
        opt, moments, master = opt / n, moments / n, master / n
    if o.zero >= 2:
        grads = grads / n
    if o.zero >= 3:
        weights = weights / n
    notes = []
    if o.zero or o.gpus > 1:
        notes.append(f"ZeRO stage {o.zero} over {o.gpus} GPU(s)" +
                     ("; plain data parallelism: every GPU holds a full copy" if o.zero == 0 else
                      "; sharded across the GPUs: " + ", ".join(["optimizer state", "gradients", "weights"][:o.zero]))
                     + ". Activations are per GPU (its own batch). Communication buffers are left out.")
    return Sharded(weights, grads, opt, moments, master, notes)
