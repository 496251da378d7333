"""One training step, the only one in the project (no Streamlit).

Every place that runs forward and backward passes calls :func:`run_step`: the fine-tune loop
(``explorer.engine.train``, its SMT warm-up and its sparse phase), SMT's self-contained warm-up
(``explorer.methods.smt.run_warmup``, used by the command line), the playground's gradient sums
(``explorer.views.playground.smt_grad_sums``), the SMT block inspector's gradient collection
(``explorer.smt.collect.collect_gradients``) and the memory measurements
(``explorer.views.memory_views.measure_method``).

A step, in this order:

1. forward (under the byte account's ``forward_scope`` when there is one) and the loss;
   a non-finite loss ends the step here (``status="bad-loss"``, no backward);
2. backward; with ``world > 1`` the gradients of ``params`` are averaged over the process group;
3. the gradient sink (``sink()``): e.g. SMT adds each target's gradient to its fp32 running sum;
4. gradient clipping (global norm of ``clip_params``); with ``guard_grad`` a non-finite norm ends the
   step here (``status="bad-grad"``, no update);
5. the optimizer step, the scheduler step and ``after_update(optimizer)`` (LoRA-SP redraws its masks);
6. the memory snapshot (the byte account, or ``measure()``, and the CUDA peak) while the gradients
   still exist;
7. ``optimizer.zero_grad(set_to_none=True)``.  Without an optimizer nothing is zeroed: autograd keeps
   summing into ``.grad`` across steps (SMT's gradient-only warm-up relies on it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


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


@dataclass
class StepOutcome:
    status: str  # "ok", "bad-loss" (non-finite loss, no backward), "bad-grad" (non-finite norm, no update)
    loss: float
    grad_norm: float | None = None  # the global norm before clipping, when clipped or measured
    lr: float | None = None  # the optimizer's rate for this step (before the scheduler moved it)
    seconds: float = 0.0  # forward to update (CUDA synchronised), without the snapshot
    memory: dict = field(default_factory=dict)  # the snapshot: byte account (or measure()) + cuda_peak_bytes

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


def run_step(model, batch: dict, plan: StepPlan) -> StepOutcome:
    """One forward/backward/update on ``batch`` (already on the model's device); see the module docstring."""
    cuda = plan.device is not None and plan.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(plan.device)
        if plan.accountant is None:
            torch.cuda.reset_peak_memory_stats(plan.device)
    t0 = time.perf_counter()
    if plan.accountant is not None:
        with plan.accountant.forward_scope():
            loss = plan.loss_fn(model, batch)
    else:
        loss = plan.loss_fn(model, batch)
    loss_val = float(loss.detach())
    if not math.isfinite(loss_val):
        return StepOutcome("bad-loss", loss_val, seconds=time.perf_counter() - t0)
    loss.backward()
    allreduce_grads(plan.params, plan.world)
    if plan.sink is not None:
        plan.sink()
    grad_norm = None
    if plan.clip is not None:
        cp = plan.clip_params if plan.clip_params is not None else plan.params
        grad_norm = float(torch.nn.utils.clip_grad_norm_(cp, plan.clip))
        if plan.guard_grad and not math.isfinite(grad_norm):
            return StepOutcome("bad-grad", loss_val, grad_norm=grad_norm, seconds=time.perf_counter() - t0)
    opt = plan.optimizer
    lr = None
    if opt is not None:
        lr = opt.param_groups[0]["lr"]
        opt.step()
        if plan.scheduler is not None:
            plan.scheduler.step()
        if plan.after_update is not None:
            plan.after_update(opt)
    if cuda:
        torch.cuda.synchronize(plan.device)
    seconds = time.perf_counter() - t0
    memory = {}
    if plan.accountant is not None:
        memory.update(plan.accountant.snapshot())
    elif plan.measure is not None:
        memory.update(plan.measure() or {})
    if cuda and "cuda_peak_bytes" not in memory:
        memory["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(plan.device))
    if opt is not None:  # after the snapshot: it counts the gradients
        opt.zero_grad(set_to_none=True)
    return StepOutcome("ok", loss_val, grad_norm=grad_norm, lr=lr, seconds=seconds, memory=memory)


__all__ = ["StepPlan", "StepOutcome", "run_step", "allreduce_grads", "default_loss"]
