"""One training step, the only one in the project (no Streamlit).

Every place that runs forward and backward passes calls :func:`run_step`: the fine-tune loop
(``explorer.engine.train``, its SMT warm-up and its sparse phase), SMT's self-contained warm-up
(``explorer.engine.warmup.run_warmup``, used by the command line), the playground's gradient sums
(``explorer.views.playground.smt_grad_sums``), the SMT block inspector's gradient collection
(``explorer.smt_inspector.collect.collect_gradients``) and the memory measurements
(``explorer.views.memory_views.measure_method``).

A step, in this order:

1. forward (under ``torch.autocast`` when the plan has an ``autocast`` dtype, and under the byte account's
   ``forward_scope`` when there is one) and the loss; a non-finite loss ends the step here
   (``status="bad-loss"``, no backward);
2. backward (under the byte account's ``backward_scope``: it counts the layers that gradient checkpointing
   rebuilds); with a ``scaler`` (fp16) the scaled loss is backpropagated and the gradients are unscaled right
   after; with ``world > 1`` the gradients of ``params`` are averaged over the process group;
3. the gradient sink (``sink()``): e.g. SMT adds each target's gradient to its fp32 running sum;
4. gradient clipping (global norm of ``clip_params``); with ``guard_grad`` a non-finite norm ends the
   step here (``status="bad-grad"``, no update);
5. the optimizer step (with a scaler: ``scaler.step``, which skips the update when a gradient is not finite,
   then ``scaler.update``; ``guard_grad`` does not end the step then), the scheduler step and
   ``after_update(optimizer)`` (LoRA-SP redraws its masks);
6. the memory snapshot (the byte account, or ``measure()``, and the CUDA peak) while the gradients
   still exist;
7. ``optimizer.zero_grad(set_to_none=True)``.  Without an optimizer nothing is zeroed: autograd keeps
   summing into ``.grad`` across steps (SMT's gradient-only warm-up relies on it).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from explorer.engine.config import PRECISIONS  # torch-free, shared with the pages


def default_loss(model, batch) -> torch.Tensor:
    """The model's own loss (``labels`` in the batch)."""
    return model(**batch).loss


@dataclass
class StepPlan:
    """How the steps of one phase run (built once per phase, passed to every :func:`run_step`)."""

    optimizer: torch.optim.Optimizer | None = None
    scheduler: object | None = None
    params: list | None = None  # tensors whose gradients are all-reduced (world > 1); clipped unless clip_params
    clip_params: list | None = None  # tensors whose global norm is clipped (None: ``params``)
    clip: float | None = None  # max global norm; float("inf") measures the norm without clipping; None: neither
    guard_grad: bool = False  # a non-finite gradient norm skips the update (status "bad-grad")
    sink: Callable[[], None] | None = None  # after backward, before the update (SMT's gradient sums)
    after_update: Callable[[object], None] | None = None  # after the optimizer step, e.g. adapter.on_step_end
    accountant: object | None = None  # explorer.memory.measured.MemoryAccountant: forward scope + snapshot
    measure: Callable[[], dict] | None = None  # a snapshot without the accountant (fields for the record)
    loss_fn: Callable = default_loss  # (model, batch) -> scalar loss
    world: int = 1  # data-parallel world size (torch.distributed)
    device: torch.device | None = None  # CUDA: synchronised around the step so its time is honest
    autocast: torch.dtype | None = None  # torch.autocast dtype of the forward (bf16, fp16); None: fp32
    scaler: object | None = None  # torch.amp.GradScaler (fp16): scale, unscale_ before clipping, step, update


@dataclass
class StepOutcome:
    status: str  # "ok", "bad-loss" (non-finite loss, no backward), "bad-grad" (non-finite norm, no update)
    loss: float
    grad_norm: float | None = None  # the global norm before clipping, when clipped or measured
    lr: float | None = None  # the optimizer's rate for this step (before the scheduler moved it)
    seconds: float = 0.0  # forward to update (CUDA synchronised), without the snapshot
    memory: dict = field(default_factory=dict)  # the snapshot: byte account (or measure()) + cuda_peak_bytes
    skipped: bool = False  # the gradient scaler skipped the update (a non-finite fp16 gradient)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def allreduce_grads(params, world: int) -> None:
    """Average the gradients of ``params`` over an initialised process group (no-op for one process)."""
    if world <= 1 or not params:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[off: off + n].view_as(g))
        off += n




def amp_for(precision: str, device: torch.device) -> tuple[torch.dtype | None, object | None]:
    """(autocast dtype, gradient scaler) of a training precision on ``device``; one clear line when refused.

    fp32: neither; bf16: ``torch.autocast`` in bfloat16 (CPU and CUDA), no scaler (bf16 has fp32's range);
    fp16: autocast in float16 with a ``torch.amp.GradScaler`` (CUDA only)."""
    from explorer.errors import KnobError

    if precision not in PRECISIONS:
        raise KnobError(f"precision must be one of {', '.join(PRECISIONS)} (got '{str(precision)[:20]}')")
    if precision == "fp32":
        return None, None
    if precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise KnobError(f"bf16 autocast runs on CPU and CUDA only (the device here is {device.type})")
        return torch.bfloat16, None
    if device.type != "cuda":
        raise KnobError(f"fp16 training needs a CUDA GPU (its gradient scaler is CUDA-only); the device here is "
                        f"{device.type}: choose bf16 or fp32")
    return torch.float16, torch.amp.GradScaler("cuda")


def run_step(model, batch: dict, plan: StepPlan) -> StepOutcome:
    """One forward/backward/update on ``batch`` (already on the model's device); see the module docstring."""
    cuda = plan.device is not None and plan.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(plan.device)
        if plan.accountant is None:
            torch.cuda.reset_peak_memory_stats(plan.device)
    t0 = time.perf_counter()
    amp = nullcontext() if plan.autocast is None else \
        torch.autocast(plan.device.type if plan.device is not None else "cpu", dtype=plan.autocast)
    acct = plan.accountant
    with amp, (acct.forward_scope() if acct is not None else nullcontext()):
        loss = plan.loss_fn(model, batch)
    loss_val = float(loss.detach())
    if not math.isfinite(loss_val):
        return StepOutcome("bad-loss", loss_val, seconds=time.perf_counter() - t0)
    scaler, opt = plan.scaler, plan.optimizer
    with acct.backward_scope() if acct is not None and hasattr(acct, "backward_scope") else nullcontext():
        (scaler.scale(loss) if scaler is not None else loss).backward()
    allreduce_grads(plan.params, plan.world)
    if scaler is not None and opt is not None:
        scaler.unscale_(opt)  # before the sink and the clipping: they see the true gradients
    if plan.sink is not None:
        plan.sink()
    grad_norm = None
    if plan.clip is not None:
        cp = plan.clip_params if plan.clip_params is not None else plan.params
        grad_norm = float(torch.nn.utils.clip_grad_norm_(cp, plan.clip))
        if plan.guard_grad and scaler is None and not math.isfinite(grad_norm):
            return StepOutcome("bad-grad", loss_val, grad_norm=grad_norm, seconds=time.perf_counter() - t0)
    lr = None
    skipped = False
    if opt is not None:
        lr = opt.param_groups[0]["lr"]
        if scaler is not None:
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped = scaler.get_scale() < before  # the scale backs off exactly when the step was skipped
        else:
            opt.step()
        if plan.scheduler is not None:
            plan.scheduler.step()
        if plan.after_update is not None:
            plan.after_update(opt)
    if cuda:
        torch.cuda.synchronize(plan.device)
    seconds = time.perf_counter() - t0
    memory = {}
    if acct is not None:
        memory.update(acct.snapshot())
    elif plan.measure is not None:
        memory.update(plan.measure() or {})
    if cuda and "cuda_peak_bytes" not in memory:
        memory["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(plan.device))
    if opt is not None:  # after the snapshot: it counts the gradients
        opt.zero_grad(set_to_none=True)
    return StepOutcome("ok", loss_val, grad_norm=grad_norm, lr=lr, seconds=seconds, memory=memory, skipped=skipped)


__all__ = ["StepPlan", "StepOutcome", "run_step", "allreduce_grads", "default_loss", "amp_for", "PRECISIONS"]
