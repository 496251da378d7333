"""A warm-up on its own, driven by the engine (the command line's ``inspect`` and the memory measurements; a
fine-tune runs its warm-up inside its step budget, in ``explorer.engine.train``).

A method with a warm-up (SMT) owns the protocol: ``begin_warmup()`` says which tensors need gradients and which
the warm-up optimizer updates, ``accumulate()`` takes one step's gradients, ``finish_warmup()`` scores, selects and
installs.  The engine drives the loop: every step is one :func:`explorer.engine.step.run_step` whose gradient sink
hands the adapter its gradients.  A method never drives the loop that drives it.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from explorer.engine.step import StepPlan, default_loss, run_step
from explorer.errors import KnobError


def task_batches(loaded, task_name=None, n=4, batch_size=8, seed=0) -> list[dict]:
    """The first ``n`` training batches of a task (default: the model's built-in task) for a warm-up's selection."""
    from explorer import data

    task = data.load_task(task_name or data.default_task_for(loaded.info.kind), model_kind=loaded.info.kind)
    return list(data.iter_batches(task, loaded.tokenizer, "train", batch_size=batch_size, seed=seed,
                                  max_batches=n, model_kind=loaded.info.kind))


def run_warmup(adapter, batches: Iterable[dict], loss_fn: Callable | None = None, lr: float = 1e-4,
               weight_decay: float = 0.0, max_steps: int | None = None) -> dict:
    """``adapter.knobs["warmup_steps"]`` batches (or ``max_steps``) of the adapter's warm-up, then its selection,
    which is returned.  Each batch is one ``run_step`` with ``adapter.accumulate`` as the gradient sink; the
    optimizer (AdamW at ``lr``) updates what ``begin_warmup`` returns (nothing in a gradient-only warm-up)."""
    params = adapter.begin_warmup()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if params else None
    plan = StepPlan(optimizer=opt, sink=adapter.accumulate, loss_fn=loss_fn or default_loss)
    was_training = adapter.model.training
    adapter.model.train()
    steps = max_steps or adapter.knobs["warmup_steps"]
    done = 0
    for batch in batches:
        if done >= steps:
            break
        if not run_step(adapter.model, batch, plan).ok:
            raise FloatingPointError(f"{adapter.method}: the warm-up loss is not finite")
        done += 1
    adapter.model.train(was_training)
    if done == 0:
        raise KnobError(f"{adapter.method}: the warm-up saw no batch")
    return adapter.finish_warmup()


__all__ = ["run_warmup", "task_batches"]
