"""The fine-tune loop: one loop for every method, device-agnostic, no Streamlit.

>>> from explorer.engine.config import TrainConfig
>>> from explorer.engine.train import train, start_in_thread
>>> res = train(TrainConfig(model="tiny-bert", method="lora", steps=50))
>>> res.summary["final_accuracy"], res.records[-1]

Choices (labelled, shown in ``RunResult.notes``):

- AdamW on the adapter's trainable tensors only; weight decay on tensors with 2+
  dimensions (matrices, LoRA factors, sparse deltas), none on 1-D tensors (biases,
  norms, DoRA magnitudes, Tied-LoRA scaling vectors, SpaRTA/SMT delta vectors are
  1-D only when the underlying weight is).
- Schedule: linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0.
- Gradient clipping at ``grad_clip`` (global norm of the trainable tensors).
- SMT: its warm-up steps are *inside* the step budget (every method makes the same
  number of forward/backward passes).  They are recorded with ``phase="warmup"``;
  the sparse training steps with ``phase="train"``.  The warm-up uses its own AdamW
  at ``warmup_lr`` (full mode) with a constant rate; the main schedule spans the
  remaining steps.  When ``warmup_steps`` would leave fewer than half of the steps
  for sparse training, the warm-up is shortened to half the budget (noted).
- Seeds: ``torch.manual_seed(seed)`` before the method is applied and before each
  run; batches come from ``data.iter_batches(seed=seed)``.  On CPU a run repeats
  exactly.
- A classification head that the base model does not have with the task's number of
  labels (all registry models: their heads are new) is (re)initialised from
  ``seed`` (normal, std 0.02; bias 0), so runs and reloads agree.

The engine, one concern per module: ``config`` (:class:`TrainConfig`), ``prepare`` (device, model and
task, head, optimizer groups, schedule), ``step`` (the one training step), ``records`` (typed step
records and the run summary), ``state`` (:class:`RunState`, :class:`RunResult`, the running-runs
registry) and this module, the loop.
"""

from __future__ import annotations

import os
import threading
import time

import torch

from explorer import data as data_mod
from explorer.engine.config import TrainConfig
from explorer.engine.prepare import (dist_info, enable_checkpointing, load_for, param_groups, pick_device,
                                     prepare_base, schedule)
from explorer.engine.records import Evaluation, RunSummary, StepRecord
from explorer.engine.state import RunResult, RunState, register, unregister
from explorer.engine.step import StepPlan, amp_for, run_step
from explorer.errors import DataError, user_message

from explorer.memory import measured as memory_mod  # the measured byte account (a stale import must fail loudly)

# Test hook (fault injection): ``FAULT_HOOK(step=, phase=, model=)`` is called before every
# training step's forward pass; raising from it simulates a failing method or out-of-memory.
FAULT_HOOK = None


class _Run:
    """The objects of one fine-tune while it runs: model, adapter, optimizers, byte account, step plans."""

    def __init__(self, cfg: TrainConfig, loaded, device: torch.device, res: RunResult, summary: RunSummary,
                 memory_fn=None):
        self.cfg, self.device, self.res, self.summary, self.memory_fn = cfg, device, res, summary, memory_fn
        loaded, task = load_for(cfg, loaded)
        res.loaded, res.task = loaded, task
        self.loaded, self.task, self.kind = loaded, task, loaded.info.kind
        if task.kind != self.kind:
            raise DataError(f"Task '{task.name}' is {task.kind} but model '{cfg.model}' is {self.kind}")
        self.rank, self.world = dist_info()
        from explorer.methods import METHODS, apply_method

        torch.manual_seed(cfg.seed)
        base = prepare_base(loaded, task, cfg.seed)
        takes = getattr(METHODS.get(cfg.method), "takes_selection", False)
        handed = cfg.smt_selection if cfg.smt_selection is not None and takes else None
        adapter = apply_method(base, cfg.method, n_base=loaded.info.n_params,
                               smt_selection=None if handed is not None else cfg.smt_selection, **dict(cfg.knobs))
        if handed is not None:  # SMT: installed now, or after a full warm-up that moves the weights first
            adapter.hand_over(handed)
        res.adapter = self.adapter = adapter
        res.notes.extend(adapter.notes)
        self.model = adapter.model
        self.model.to(device)
        self.model.train()
        self.autocast, self.scaler = amp_for(cfg.precision, device)
        if cfg.checkpointing:
            enable_checkpointing(self.model)
        if cfg.precision != "fp32" or cfg.checkpointing:
            res.notes.append(f"Precision {cfg.precision}" + (" (autocast; weights, gradients and AdamW states stay "
                             "fp32)" if cfg.precision != "fp32" else "") + "; gradient checkpointing "
                             + ("on (reentrant, every layer)" if cfg.checkpointing else "off") + ".")
        self.lr = cfg.resolved_lr()
        self.steps = int(cfg.steps)
        self.warm_steps = 0
        self.warm_opt = self.opt = self.sched = None
        self.train_params = []
        if getattr(adapter, "needs_warmup", False):  # SMT: its warm-up runs inside the step budget
            self._begin_warmup()
        if self.warm_steps == 0:
            self._build_main(self.steps)
        self.acct = None
        if cfg.measure_memory and memory_fn is None and memory_mod is not None and \
                hasattr(memory_mod, "MemoryAccountant"):
            self.acct = memory_mod.MemoryAccountant(self.model, self.warm_opt or self.opt, device=device)
        elif device.type == "cuda":
            res.notes.append("Memory: CUDA peak allocated per step only (byte account off).")
        summary.trainable_params = int(adapter.num_trainable())
        summary.total_params = int(adapter.num_total())

    # --- phases -----------------------------------------------------------------
    def _begin_warmup(self) -> None:
        cfg, adapter, steps, res = self.cfg, self.adapter, self.steps, self.res
        asked = int(adapter.knobs.get("warmup_steps", 100))
        self.warm_steps = min(asked, max(1, steps // 2))
        if self.warm_steps < asked:
            res.notes.append(f"SMT warm-up shortened from {asked} to {self.warm_steps} steps so that half of the "
                             f"{steps}-step budget is left for sparse training.")
        res.notes.append(f"SMT: the first {self.warm_steps} of {steps} steps are the warm-up (phase 'warmup', "
                         "inside the step budget); the sparse blocks train in the remaining steps.")
        wparams = adapter.begin_warmup()
        self.model.to(self.device)  # begin_warmup allocates the sums on the weights' device
        if wparams:
            self.warm_opt = torch.optim.AdamW(param_groups([(str(i), p) for i, p in enumerate(wparams)],
                                                           cfg.weight_decay), lr=cfg.resolved_warmup_lr())

    def _build_main(self, n_main: int) -> None:
        self.train_params = self.adapter.trainable_parameters()
        if not self.train_params:
            raise DataError(f"{self.cfg.method}: the adapter has no trainable parameters")
        self.opt = torch.optim.AdamW(param_groups(self.train_params, self.cfg.weight_decay, self.adapter, self.lr),
                                     lr=self.lr)
        warm = int(round(self.cfg.warmup_ratio * n_main))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule(n_main, warm))

    def _finish_warmup(self) -> None:
        self.adapter.finish_warmup()
        self.model.to(self.device)
        if self.adapter.warmup_moves_weights:
            self.res.warmup_base = _base_snapshot(self.adapter)
        self.warm_opt = None
        self._build_main(self.steps - self.warm_steps)
        if self.acct is not None:
            self.acct.set_optimizer(self.opt)
        self.summary.trainable_params = int(self.adapter.num_trainable())

    def plan(self, phase: str) -> StepPlan:
        """The step plan of a phase: the warm-up (SMT's sums, its own AdamW) or the training phase."""
        measure = self._measure if self.acct is None else None
        if phase == "warmup":
            clip = self.cfg.grad_clip if (self.warm_opt is not None and self.cfg.grad_clip) else None
            return StepPlan(optimizer=self.warm_opt, params=[p for p in self.model.parameters() if p.requires_grad],
                            clip_params=([p for g in self.warm_opt.param_groups for p in g["params"]]
                                         if clip is not None else None),
                            clip=clip, sink=self.adapter.accumulate, accountant=self.acct, measure=measure,
                            world=self.world, device=self.device, autocast=self.autocast,
                            scaler=self.scaler if self.warm_opt is not None else None)
        return StepPlan(optimizer=self.opt, scheduler=self.sched, params=[p for _, p in self.train_params],
                        clip=self.cfg.grad_clip if self.cfg.grad_clip else float("inf"), guard_grad=True,
                        after_update=self.adapter.on_step_end, accountant=self.acct, measure=measure,
                        world=self.world, device=self.device, autocast=self.autocast, scaler=self.scaler)

    def _measure(self) -> dict:
        """Record fields without the byte account: ``memory_fn``'s, the CUDA peak, the process RSS."""
        d = dict(self.memory_fn(self.model, self.opt or self.warm_opt, self.device) or {}) if self.memory_fn else {}
        if self.device.type == "cuda" and "cuda_peak_bytes" not in d:
            d["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        if "rss_bytes" not in d:
            d["rss_bytes"] = _rss()
        return d

    def evaluate(self) -> Evaluation:
        cfg = self.cfg
        ev = data_mod.evaluate(self.model, self.task, self.loaded.tokenizer, self.kind, batch_size=cfg.eval_batch_size,
                               max_examples=cfg.eval_examples, max_len=cfg.max_len, device=self.device)
        return Evaluation(accuracy=ev["accuracy"], loss=ev["loss"], n=ev["n"])

    def batches(self):
        cfg = self.cfg
        return data_mod.iter_batches(self.task, self.loaded.tokenizer, "train", batch_size=cfg.batch_size,
                                     seed=cfg.seed, max_batches=self.steps, model_kind=self.kind, max_len=cfg.max_len,
                                     rank=self.rank, world_size=self.world)

    # --- the loop ---------------------------------------------------------------
    def loop(self, state: RunState, stop_event, on_step) -> tuple[str, str]:
        """Step 0's evaluation, then the steps; returns (status, message)."""
        cfg, steps = self.cfg, self.steps

        def publish(rec: dict):
            state.add_record(rec)
            if on_step:
                on_step(rec)

        rec0 = StepRecord(step=0, phase="eval", eval=self.evaluate())  # the untrained adapted model: the base line
        publish(rec0.to_dict())
        self.summary.base_accuracy = rec0.eval.accuracy
        batches = self.batches()
        plans = {}
        for step in range(1, steps + 1):
            if stop_event.is_set():
                return "stopped", f"stopped by the user after {step - 1} of {steps} steps"
            if state.orphaned():
                return "stopped", (f"stopped: page closed (no page polled this run for {state.orphan_s:g} s) after "
                                   f"{step - 1} of {steps} steps")
            phase = "warmup" if step <= self.warm_steps else "train"
            try:
                batch = next(batches)
            except StopIteration:  # pragma: no cover - iter_batches repeats the split
                return "finished", ""
            batch = {k: v.to(self.device) for k, v in batch.items()}
            n_tokens = int(batch["attention_mask"].sum()) * self.world if "attention_mask" in batch else 0
            if FAULT_HOOK is not None:
                FAULT_HOOK(step=step, phase=phase, model=self.model)
            if phase not in plans:
                plans[phase] = self.plan(phase)
            out = run_step(self.model, batch, plans[phase])
            if not out.ok:  # a non-finite loss (no backward) or gradient norm (no update): the run ends
                state.add_record(StepRecord(step=step, phase=phase, loss=out.loss).to_dict())
                what, v = ("loss", out.loss) if out.status == "bad-loss" else ("gradient", out.grad_norm)
                return "nan", (f"The {what} became {'NaN' if v != v else 'infinite'} at step {step}: lower the "
                               f"learning rate (now {self.lr:g}) and try again")
            dt = out.seconds
            memory = out.memory if self.acct is None else \
                {k: v for k, v in out.memory.items() if k.endswith("_bytes") or k == "trainable_params"}
            rec = StepRecord(step=step, phase=phase, loss=out.loss, lr=out.lr if out.lr is not None else 0.0,
                             step_time_s=dt, tokens_per_s=(n_tokens / dt if dt > 0 else None),
                             grad_norm=out.grad_norm if phase == "train" else None, memory=memory)
            if phase == "warmup" and step == self.warm_steps:
                self._finish_warmup()
            if cfg.eval_every and step % cfg.eval_every == 0 and step != steps:
                rec.eval = self.evaluate()
            publish(rec.to_dict())
        return "finished", ""

    def final_eval(self, state: RunState, on_step) -> None:
        final = self.evaluate()
        last = state.records[-1] if state.records else None
        if last is not None and last.get("phase") != "eval" and "eval_accuracy" not in last:
            last.update(final.to_dict())
            state.set()  # the last record changed in place: a new version for the pages that draw it
        else:
            state.add_record(StepRecord(step=state.step, phase="eval", eval=final).to_dict())
        self.summary.final_accuracy = final.accuracy
        self.summary.final_eval_loss = final.loss
        if on_step:
            on_step(state.records[-1])


def train(cfg: TrainConfig, loaded=None, stop_event: threading.Event | None = None, on_step=None,
          state: RunState | None = None, memory_fn=None) -> RunResult:
    """Run one fine-tune.  Never raises for a failed run: the result's status says what happened.

    ``on_step(record)`` is called after every step (and after every evaluation) with the
    record dict; ``memory_fn(model, optimizer, device) -> dict`` (optional) adds fields to
    every record when the byte account of ``explorer.memory.measured`` is not wanted.
    """
    state = state or RunState(cfg)
    state.cfg = cfg
    state.total_steps = int(cfg.steps)
    stop_event = stop_event or state.stop_event
    state.set(status="running", started=time.time(), message="")
    register(state)
    t_start = time.perf_counter()
    res = RunResult(records=state.records, summary={}, config=cfg)
    summary = RunSummary()
    status, message = "running", ""
    run = None
    device = None
    try:
        cfg.validate()
        device = pick_device(cfg.device)
        run = _Run(cfg, loaded, device, res, summary, memory_fn)
        status, message = run.loop(state, stop_event, on_step)
        closed = status == "stopped" and message.startswith("stopped: page closed")  # nobody to show it to
        if status in ("finished", "stopped") and not closed and not getattr(run.adapter, "needs_warmup", False):
            run.final_eval(state, on_step)
        elif status == "stopped" and not closed:
            message += " (stopped during SMT's warm-up: no blocks were selected, nothing to evaluate)"
    except Exception as e:  # noqa: BLE001 - a run ends with a status, never a hung worker
        status = "failed"
        message = user_message(e)
        if os.environ.get("EXPLORER_DEBUG"):
            import traceback

            traceback.print_exc()
    # release the model and optimizer of a run that did not finish: the result drops the adapted model too
    # (a user-stopped run keeps it for download)
    if status in ("failed", "nan") or (status == "stopped" and message.startswith("stopped: page closed")):
        res.adapter = None
        res.warmup_base = None
        run = None  # noqa: F841
        import gc

        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()
    summary.status, summary.message = status, message
    summary.steps, summary.method, summary.model = int(cfg.steps), cfg.method, cfg.model
    summary.task = res.task.name if res.task else cfg.task
    summary.wall_time_s = time.perf_counter() - t_start
    summary.device = str(device) if device is not None else None
    summary.lr = cfg.safe_lr()
    summary.add_records(state.records)
    summary.notes = list(res.notes)
    res.summary = summary.to_dict()
    state.result = res
    state.set(status=status, message=message, ended=time.time())
    unregister(state)
    return res


def _rss():
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover
        return None


def _base_snapshot(adapter) -> dict:
    """The non-adapter weights after SMT's full-mode warm-up (they moved: export saves them)."""
    from explorer.sparse import SparseDeltaLinear

    out = {}
    inner = {}
    for name, mod in adapter.model.named_modules():
        if isinstance(mod, SparseDeltaLinear):
            inner[name] = mod
    for n, p in adapter.model.named_parameters(remove_duplicate=False):
        if n.endswith(".delta"):
            continue
        key = n.replace(".base.", ".") if any(n.startswith(k + ".base.") for k in inner) else n
        out[key] = p.detach().cpu().clone()
    return out


def start_in_thread(cfg: TrainConfig, loaded=None, on_step=None, memory_fn=None):
    """Start ``train`` in a daemon worker thread; returns ``(RunState, Thread)``.  Stop with ``state.stop()``."""
    state = RunState(cfg)

    def work():
        train(cfg, loaded=loaded, stop_event=state.stop_event, on_step=on_step, state=state, memory_fn=memory_fn)

    th = threading.Thread(target=work, name=f"train-{cfg.method}", daemon=True)
    th.start()
    return state, th


__all__ = ["train", "start_in_thread", "FAULT_HOOK"]
