"""What a training precision costs in time on this device, measured once per process (no Streamlit).

bf16 autocast on a CPU is fast where the CPU has bf16 matrix units (AMX, AVX512-BF16) and oneDNN uses them, and
several times slower than fp32 where it has none (a teacher's walkthrough saw 5-25 s per step against 0.5-2 s).
Which one a machine is cannot be read from a table: :func:`precision_speed` measures it.

The probe is one BERT layer of minilm's shape (hidden 384, 12 heads, MLP 1536; a batch of 64 tokens) run
forward and backward in fp32 and under ``torch.autocast(dtype=torch.bfloat16)``: the same kinds of operations a
fine-tune runs (matmuls, softmax, layer norm, GELU, dropout, the casts autocast adds), the fastest of a few
alternating steps after an untimed first one of each (oneDNN prepares its kernels on the first call), with the torch threads a run gets.
It takes well under a second on 2 cores and is kept for the process (``lru_cache``).

    >>> from explorer.engine.speed import precision_speed
    >>> s = precision_speed()            # measured once, then cached
    >>> s.ratio, s.text()                # e.g. (2.4, 'bf16 on this CPU: 2.4× slower than fp32 (measured)')
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

__all__ = ["PrecisionSpeed", "precision_speed", "SLOW_RATIO"]

SLOW_RATIO = 1.5  # bf16 this many times slower than fp32 (or more) is "slow" here: say so beside the choice
_EVEN = 0.15  # within 15 % either way: "about as fast as fp32"


@dataclass(frozen=True)
class PrecisionSpeed:
    """Seconds per training step of the probe layer in fp32 and in bf16 autocast (the fastest of a few), measured
    here."""

    device: str
    threads: int
    fp32_s: float
    bf16_s: float
    reps: int
    bf16_units: bool | None  # the CPU reports bf16 matrix units (AVX512-BF16 or AMX); None where unknown

    @property
    def ratio(self) -> float:
        """bf16 time / fp32 time: above 1 bf16 is slower."""
        return self.bf16_s / self.fp32_s if self.fp32_s > 0 else float("nan")

    @property
    def slow(self) -> bool:
        return self.ratio >= SLOW_RATIO

    def text(self) -> str:
        """One line for the page, e.g. "bf16 on this CPU: 2.4× slower than fp32 (measured)"."""
        where = "this CPU" if self.device == "cpu" else f"this {self.device.upper()} device"
        r = self.ratio
        if abs(r - 1) <= _EVEN:
            how = "about as fast as fp32"
        elif r > 1:
            how = f"{r:.1f}× slower than fp32"
        else:
            how = f"{1 / r:.1f}× faster than fp32"
        return f"bf16 on {where}: {how} (measured)"

    def to_dict(self) -> dict:
        return dict(device=self.device, threads=self.threads, fp32_s=self.fp32_s, bf16_s=self.bf16_s,
                    reps=self.reps, ratio=self.ratio, slow=self.slow, bf16_units=self.bf16_units, text=self.text())


def _bf16_units() -> bool | None:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - an older torch: unknown
        return None


def _probe_layer(device):
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536)
    cfg._attn_implementation = "sdpa"  # as the models load (a standalone layer has none set)
    layer = BertLayer(cfg).to(device).train()
    x = torch.randn(1, 64, 384, device=device, requires_grad=True)
    return layer, x


def _time_pair(step_a, step_b, reps: int) -> tuple[float, float]:
    """The fastest of ``reps`` timed calls of each step (each returns its own seconds), the two alternating (a
    busy machine slows both alike; the fastest call is the least disturbed), after an untimed first call of each
    (oneDNN and autocast prepare their kernels then)."""
    step_a()
    step_b()
    best = [float("inf"), float("inf")]
    for _ in range(reps):
        for i, step in enumerate((step_a, step_b)):
            best[i] = min(best[i], step())
    return best[0], best[1]


@functools.lru_cache(maxsize=8)
def precision_speed(device: str = "cpu", threads: int | None = None, reps: int = 4) -> PrecisionSpeed:
    """bf16 autocast against fp32 on ``device`` (``"cpu"`` or ``"cuda"``) with ``threads`` torch threads (None:
    the current setting, which the server sets to a run's share of the cores); measured on the first call,
    cached for the process.  Each step is the project's one training step (``explorer.engine.step.run_step``,
    no optimizer), so autocast is applied exactly as in a run."""
    import torch

    from explorer.engine.step import StepPlan, run_step

    dev = torch.device(device)
    old = torch.get_num_threads()
    n = int(threads) if threads else old
    try:
        if n != old:
            torch.set_num_threads(max(1, n))
        layer, x = _probe_layer(dev)
        batch = {"x": x}

        def loss(model, b):
            return model(b["x"])[0].float().pow(2).mean()

        def step(dtype=None):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            return run_step(layer, batch, StepPlan(loss_fn=loss, autocast=dtype, device=dev)).seconds

        fp32, bf16 = _time_pair(step, lambda: step(torch.bfloat16), reps)
    finally:
        if n != old:
            torch.set_num_threads(old)
    return PrecisionSpeed(device=dev.type, threads=n, fp32_s=fp32, bf16_s=bf16, reps=reps,
                          bf16_units=_bf16_units() if dev.type == "cpu" else None)
