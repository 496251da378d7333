"""What a fine-tune is asked to do: :class:`TrainConfig` (no Streamlit, no torch)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields


def default_lr(method: str) -> float:
    """A method's default learning rate: its ``METHOD.default_lr`` (``explorer.methods``, imported when first
    asked, so this module stays free of torch); 1e-3 for a name that is not registered."""
    from explorer.methods import METHODS

    info = METHODS.get(method)
    return info.default_lr if info is not None else 1e-3


PRECISIONS = ("fp32", "bf16", "fp16")  # training precisions (explorer.engine.step.amp_for)


@dataclass
class TrainConfig:
    model: str = "minilm"
    task: str = ""  # "" = the model's built-in default task
    method: str = "lora"
    knobs: dict = field(default_factory=dict)
    steps: int = 150
    lr: float | None = None  # None = default_lr(method)
    weight_decay: float = 0.01
    batch_size: int = 16
    max_len: int = 64
    warmup_ratio: float = 0.06
    grad_clip: float = 1.0
    eval_every: int = 25  # 0 = evaluate at the end only
    eval_examples: int | None = 200  # None = the whole held-out split
    eval_batch_size: int = 32
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:0, mps
    warmup_lr: float | None = None  # SMT full-mode warm-up rate (None = default_lr("full"))
    measure_memory: bool = True  # byte account per step (explorer.memory.measured)
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU and CUDA) | fp16 (autocast + gradient scaler, CUDA only)
    checkpointing: bool = False  # gradient checkpointing of every transformer layer (explorer.engine.prepare)
    text_col: str | None = None
    label_col: str | None = None
    prompt_col: str | None = None
    answer_col: str | None = None
    encoding: str | None = None  # a data file's text encoding (None = detect it; see explorer.data.encodings.decode_text)
    # SMT only: blocks chosen elsewhere (the SMT block inspector), {target: ([rows], [cols])}; no warm-up then
    smt_selection: dict | None = None

    def resolved_lr(self) -> float:
        return float(self.lr) if self.lr is not None else default_lr(self.method)

    def resolved_warmup_lr(self) -> float:
        """SMT's full-mode warm-up rate: ``warmup_lr``, else full fine-tuning's default."""
        return self.warmup_lr if self.warmup_lr is not None else default_lr("full")

    def safe_lr(self) -> float | None:
        """The resolved rate, or None when ``lr`` is not a number (the summary of a failed run)."""
        try:
            return self.resolved_lr()
        except (TypeError, ValueError):
            return None

    def validate(self) -> None:
        from explorer.errors import KnobError

        if int(self.steps) < 1:
            raise KnobError("steps must be at least 1")
        if int(self.batch_size) < 1:
            raise KnobError("batch size must be at least 1")
        if int(self.max_len) < 4:
            raise KnobError("max length must be at least 4 tokens")
        lr = self.resolved_lr()
        if not (lr > 0 and math.isfinite(lr)):
            raise KnobError(f"learning rate must be a positive number (got {lr})")
        if not (0 <= self.warmup_ratio < 1):
            raise KnobError("warmup_ratio must be in [0, 1)")
        if self.weight_decay < 0:
            raise KnobError("weight decay must be >= 0")
        if self.precision not in PRECISIONS:
            raise KnobError(f"precision must be one of {', '.join(PRECISIONS)} (got '{str(self.precision)[:20]}')")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr"] = self.resolved_lr()
        if self.smt_selection is not None:  # the block lists can be long: the history keeps their count
            d["smt_selection"] = f"{sum(len(r) for r, _ in self.smt_selection.values())} blocks given"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config back from :meth:`to_dict` (or any dict of its fields; unknown keys are ignored).

        ``smt_selection`` survives only as a count in ``to_dict``: it comes back as None.
        """
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if not isinstance(kw.get("smt_selection"), dict):
            kw.pop("smt_selection", None)
        if "knobs" in kw:
            kw["knobs"] = dict(kw["knobs"] or {})
        return cls(**kw)


__all__ = ["TrainConfig", "default_lr", "PRECISIONS"]
