"""The fine-tune loop: one loop for every method, device-agnostic, no Streamlit.

>>> from explorer.engine.train import TrainConfig, train, start_in_thread
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
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from explorer import data as data_mod
from explorer.errors import DataError, user_message

from explorer.memory import measured as memory_mod  # the measured byte account (a stale import must fail loudly)

from explorer.methods import METHODS as _METHODS  # noqa: E402

# each method's default learning rate (its module's DEFAULT_LR), name -> rate
DEFAULT_LR = {k: m.default_lr for k, m in _METHODS.items()}
WARMUP_LR = _METHODS["full"].default_lr  # a full-mode warm-up is full fine-tuning: its rate
STATUSES = ("queued", "running", "finished", "stopped", "failed", "nan")

# A run whose page has not polled (``RunState.heartbeat``) for this many seconds is stopped
# by the worker with the message "stopped: page closed" (Streamlit has no tab-close event).
# 180 s, not less: browsers throttle the timers of hidden tabs (Chrome: one wake-up a minute
# after 5 minutes hidden), so a participant who switches to the slides must not lose a run.
ORPHAN_ENV = "PEFT_EXPLORER_ORPHAN_S"
DEFAULT_ORPHAN_S = 180.0

# Test hook (fault injection): ``FAULT_HOOK(step=, phase=, model=)`` is called before every
# training step's forward pass; raising from it simulates a failing method or out-of-memory.
FAULT_HOOK = None

_RUNNING_LOCK = threading.Lock()
_RUNNING: dict[int, "RunState"] = {}  # id -> RunState of runs inside train() right now


def active_runs() -> list["RunState"]:
    """RunStates of the runs executing in this process now (for the server status panel)."""
    with _RUNNING_LOCK:
        return list(_RUNNING.values())


def orphan_seconds() -> float:
    try:
        v = float(os.environ.get(ORPHAN_ENV, DEFAULT_ORPHAN_S))
        return v if v > 0 and math.isfinite(v) else DEFAULT_ORPHAN_S
    except ValueError:
        return DEFAULT_ORPHAN_S


@dataclass
class TrainConfig:
    model: str = "minilm"
    task: str = ""  # "" = the model's built-in default task
    method: str = "lora"
    knobs: dict = field(default_factory=dict)
    steps: int = 150
    lr: float | None = None  # None = DEFAULT_LR[method]
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
    warmup_lr: float | None = None  # SMT full-mode warm-up rate (None = DEFAULT_LR["full"])
    measure_memory: bool = True  # byte account per step (explorer.memory.measured)
    text_col: str | None = None
    label_col: str | None = None
    prompt_col: str | None = None
    answer_col: str | None = None
    encoding: str | None = None  # a data file's text encoding (None = detect it; see explorer.data.encodings.decode_text)
    # SMT only: blocks chosen elsewhere (the SMT block inspector), {target: ([rows], [cols])}; no warm-up then
    smt_selection: dict | None = None

    def resolved_lr(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR.get(self.method, 1e-3)

    def validate(self) -> None:
        from explorer.methods.base import KnobError

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr"] = self.resolved_lr()
        if self.smt_selection is not None:  # the block lists can be long: the history keeps their count
            d["smt_selection"] = f"{sum(len(r) for r, _ in self.smt_selection.values())} blocks given"
        return d


class Heartbeat:
    """A page's heartbeat (shared by :class:`RunState` and ``sweeps.Sweep``; needs ``self._lock``).

    ``last_seen`` is None until a page first polls; after that, work no page polled for
    ``orphan_s`` seconds (``PEFT_EXPLORER_ORPHAN_S``) is orphaned: its tab closed.
    """

    last_seen: float | None = None
    orphan_s: float | None = None

    def heartbeat(self) -> None:
        """Called by the page's polling fragment: the page is still open."""
        with self._lock:
            if self.orphan_s is None:
                self.orphan_s = orphan_seconds()
            self.last_seen = time.monotonic()

    def orphaned(self) -> bool:
        """True when a page polled once and then stopped polling for ``orphan_s`` seconds."""
        with self._lock:
            return (self.last_seen is not None and self.orphan_s is not None
                    and time.monotonic() - self.last_seen > self.orphan_s)


class RunState(Heartbeat):
    """What a worker thread writes and a page reads (thread-safe)."""

    def __init__(self, cfg: TrainConfig | None = None):
        self._lock = threading.Lock()
        self.cfg = cfg
        self.status = "queued"
        self.message = ""
        self.records: list[dict] = []
        self.step = 0
        self.total_steps = int(cfg.steps) if cfg else 0
        self.started: float | None = None
        self.ended: float | None = None
        self.stop_event = threading.Event()
        self.result: RunResult | None = None
        # heartbeat (Heartbeat): None until a page first polls; then a run unpolled for orphan_s is stopped
        self.last_seen: float | None = None
        self.orphan_s: float | None = None

    # writer side
    def set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def add_record(self, rec: dict) -> None:
        with self._lock:
            self.records.append(rec)
            self.step = max(self.step, int(rec.get("step", 0)))

    # reader side
    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed", "nan")

    def stop(self) -> None:
        self.stop_event.set()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(status=self.status, message=self.message, records=list(self.records), step=self.step,
                        total_steps=self.total_steps, progress=self.progress, started=self.started,
                        ended=self.ended)


@dataclass
class RunResult:
    records: list[dict]
    summary: dict
    adapter: object = None
    task: object = None
    loaded: object = None
    config: TrainConfig | None = None
    notes: list[str] = field(default_factory=list)
    warmup_base: dict | None = None  # SMT full-mode warm-up: base weights after the warm-up (for export)

    @property
    def status(self) -> str:
        return self.summary.get("status", "failed")


# ----------------------------------------------------------------------------- helpers

def pick_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        from explorer.methods.base import KnobError

        raise KnobError(f"Unknown device '{name[:30]}': use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from explorer.methods.base import KnobError

        raise KnobError("CUDA was asked for but no CUDA device is available here; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        from explorer.methods.base import KnobError

        raise KnobError("MPS was asked for but is not available here; use --device cpu or auto")
    return dev


def _dist():
    """(rank, world_size) of an initialised torch.distributed group, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # pragma: no cover
        pass
    return 0, 1


def _allreduce_grads(params, world: int) -> None:
    if world <= 1:
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


def init_head(model: nn.Module, num_labels: int, seed: int) -> bool:
    """(Re)initialise a sequence-classification head from ``seed``; resize it to ``num_labels``.

    Returns True when the head was replaced.  Works for BERT-style ``classifier`` and
    LLaMA-style ``score`` heads (a Linear, or a module whose last Linear is ``out_proj``).
    """
    from explorer.targets import head_module_names

    names = head_module_names(model)
    if not names:
        return False
    g = torch.Generator().manual_seed(int(seed) + 424242)
    for name in names:
        head = getattr(model, name)
        lin = head if isinstance(head, nn.Linear) else getattr(head, "out_proj", None)
        if not isinstance(lin, nn.Linear):
            continue
        new = nn.Linear(lin.in_features, num_labels, bias=lin.bias is not None)
        with torch.no_grad():
            new.weight.copy_(torch.randn(new.weight.shape, generator=g) * 0.02)
            if new.bias is not None:
                new.bias.zero_()
        new.to(lin.weight.device, lin.weight.dtype)
        new.weight.requires_grad_(False)
        if new.bias is not None:
            new.bias.requires_grad_(False)
        if lin is head:
            setattr(model, name, new)
        else:
            head.out_proj = new
    model.num_labels = num_labels
    if getattr(model, "config", None) is not None:
        model.config.num_labels = num_labels
        model.config.id2label = {i: str(i) for i in range(num_labels)}
        model.config.label2id = {str(i): i for i in range(num_labels)}
    return True


def prepare_base(loaded, task, seed: int) -> nn.Module:
    """A private copy of the cached base model, ready for ``apply_method`` (the cache is never touched)."""
    from explorer.models import fresh_copy

    m = fresh_copy(loaded.model)
    if loaded.info.kind == "seq-cls":
        init_head(m, max(2, task.num_labels), seed)
    return m


def _param_groups(params, wd: float, adapter=None):
    """AdamW groups: the adapter says which tensors take weight decay (default: matrices yes, vectors no)."""
    rule = adapter.takes_weight_decay if adapter is not None else (lambda n, p: p.dim() >= 2)
    decay = [p for n, p in params if rule(n, p)]
    no_decay = [p for n, p in params if not rule(n, p)]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": wd})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _schedule(total: int, warm: int):
    def f(i):  # i = number of scheduler steps taken so far (0-based)
        if warm > 0 and i < warm:
            return (i + 1) / warm
        return max(0.0, (total - i) / max(1, total - warm))
    return f


def load_for(cfg: TrainConfig, loaded=None):
    """(loaded model, task) for a config; the model loads with the task's number of labels."""
    from explorer.models import REGISTRY, load_model

    if loaded is None:
        kind = REGISTRY[cfg.model]["kind"] if cfg.model in REGISTRY else None
        if kind is not None:
            task = data_mod.load_task(cfg.task or data_mod.default_task_for(kind), kind, cfg.text_col,
                                      cfg.label_col, cfg.prompt_col, cfg.answer_col, encoding=cfg.encoding)
            loaded = load_model(cfg.model, num_labels=max(2, task.num_labels))
            return loaded, task
        loaded = load_model(cfg.model)
    kind = loaded.info.kind
    task = data_mod.load_task(cfg.task or data_mod.default_task_for(kind), kind, cfg.text_col, cfg.label_col,
                              cfg.prompt_col, cfg.answer_col, encoding=cfg.encoding)
    return loaded, task


# ----------------------------------------------------------------------------- the loop

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
    with _RUNNING_LOCK:
        _RUNNING[id(state)] = state
    t_start = time.perf_counter()
    res = RunResult(records=state.records, summary={}, config=cfg)
    status, message = "running", ""
    adapter = None
    device = None
    try:
        cfg.validate()
        device = pick_device(cfg.device)
        loaded, task = load_for(cfg, loaded)
        res.loaded, res.task = loaded, task
        kind = loaded.info.kind
        if task.kind != kind:
            raise DataError(f"Task '{task.name}' is {task.kind} but model '{cfg.model}' is {kind}")
        rank, world = _dist()
        from explorer.methods import apply_method

        torch.manual_seed(cfg.seed)
        base = prepare_base(loaded, task, cfg.seed)
        adapter = apply_method(base, cfg.method, n_base=loaded.info.n_params,
                               smt_selection=cfg.smt_selection, **dict(cfg.knobs))
        res.adapter = adapter
        res.notes.extend(adapter.notes)
        model = adapter.model
        model.to(device)
        model.train()
        lr = cfg.resolved_lr()
        steps = int(cfg.steps)

        # SMT warm-up inside the budget
        warm_steps = 0
        warm_opt = None
        if getattr(adapter, "needs_warmup", False):
            asked = int(adapter.knobs.get("warmup_steps", 100))
            warm_steps = min(asked, max(1, steps // 2))
            if warm_steps < asked:
                res.notes.append(f"SMT warm-up shortened from {asked} to {warm_steps} steps so that half of the "
                                 f"{steps}-step budget is left for sparse training.")
            res.notes.append(f"SMT: the first {warm_steps} of {steps} steps are the warm-up (phase 'warmup', "
                             "inside the step budget); the sparse blocks train in the remaining steps.")
            wparams = adapter.begin_warmup()
            model.to(device)  # begin_warmup allocates the sums on the weights' device
            if wparams:
                wlr = cfg.warmup_lr if cfg.warmup_lr is not None else WARMUP_LR
                warm_opt = torch.optim.AdamW(_param_groups([(str(i), p) for i, p in enumerate(wparams)],
                                                           cfg.weight_decay), lr=wlr)

        opt = sched = None
        train_params = []

        def build_main(n_main: int):
            nonlocal opt, sched, train_params
            train_params = adapter.trainable_parameters()
            if not train_params:
                raise DataError(f"{cfg.method}: the adapter has no trainable parameters")
            opt = torch.optim.AdamW(_param_groups(train_params, cfg.weight_decay, adapter), lr=lr)
            warm = int(round(cfg.warmup_ratio * n_main))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(n_main, warm))

        if warm_steps == 0:
            build_main(steps)
        acct = None
        if cfg.measure_memory and memory_fn is None and memory_mod is not None and hasattr(memory_mod, "MemoryAccountant"):
            acct = memory_mod.MemoryAccountant(model, warm_opt or opt, device=device)
        elif device.type == "cuda":
            res.notes.append("Memory: CUDA peak allocated per step only (byte account off).")

        res.summary.update(trainable_params=int(adapter.num_trainable()), total_params=int(adapter.num_total()))
        batches = data_mod.iter_batches(task, loaded.tokenizer, "train", batch_size=cfg.batch_size, seed=cfg.seed,
                                        max_batches=steps, model_kind=kind, max_len=cfg.max_len, rank=rank,
                                        world_size=world)

        def do_eval(step):
            ev = data_mod.evaluate(model, task, loaded.tokenizer, kind, batch_size=cfg.eval_batch_size,
                                   max_examples=cfg.eval_examples, max_len=cfg.max_len, device=device)
            return dict(eval_accuracy=ev["accuracy"], eval_loss=ev["loss"], eval_n=ev["n"])

        # evaluation of the untrained adapted model (step 0): the base line
        rec0 = dict(step=0, phase="eval", **do_eval(0))
        state.add_record(rec0)
        if on_step:
            on_step(rec0)
        res.summary["base_accuracy"] = rec0["eval_accuracy"]

        for step in range(1, steps + 1):
            if stop_event.is_set():
                status, message = "stopped", f"stopped by the user after {step - 1} of {steps} steps"
                break
            if state.orphaned():
                status = "stopped"
                message = (f"stopped: page closed (no page polled this run for {state.orphan_s:g} s) after "
                           f"{step - 1} of {steps} steps")
                break
            phase = "warmup" if step <= warm_steps else "train"
            try:
                batch = next(batches)
            except StopIteration:  # pragma: no cover - iter_batches repeats the split
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            n_tokens = int(batch["attention_mask"].sum()) * world if "attention_mask" in batch else 0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                if acct is None:
                    torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            if FAULT_HOOK is not None:
                FAULT_HOOK(step=step, phase=phase, model=model)
            if acct is not None:
                with acct.forward_scope():
                    loss = model(**batch).loss
            else:
                loss = model(**batch).loss
            loss_val = float(loss.detach())
            if not math.isfinite(loss_val):
                status = "nan"
                message = (f"The loss became {'NaN' if loss_val != loss_val else 'infinite'} at step {step}: "
                           f"lower the learning rate (now {lr:g}) and try again")
                state.add_record(dict(step=step, phase=phase, loss=loss_val))
                break
            loss.backward()
            if phase == "warmup":
                _allreduce_grads([p for p in model.parameters() if p.requires_grad], world)
                adapter.accumulate()
                cur_lr = warm_opt.param_groups[0]["lr"] if warm_opt else 0.0
                if warm_opt is not None:
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_([p for g in warm_opt.param_groups for p in g["params"]],
                                                       cfg.grad_clip)
                    warm_opt.step()
                grad_norm = None
            else:
                params = [p for _, p in train_params]
                _allreduce_grads(params, world)
                gn = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else float("inf"))
                grad_norm = float(gn)
                if not math.isfinite(grad_norm):
                    status = "nan"
                    message = (f"The gradient became {'NaN' if grad_norm != grad_norm else 'infinite'} at step "
                               f"{step}: lower the learning rate (now {lr:g}) and try again")
                    state.add_record(dict(step=step, phase=phase, loss=loss_val))
                    break
                cur_lr = opt.param_groups[0]["lr"]
                opt.step()
                sched.step()
                adapter.on_step_end(opt)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            rec = dict(step=step, phase=phase, loss=loss_val, lr=cur_lr, step_time_s=dt,
                       tokens_per_s=(n_tokens / dt if dt > 0 else None), grad_norm=grad_norm)
            if acct is not None:
                snap = acct.snapshot()
                rec.update({k: v for k, v in snap.items() if k.endswith("_bytes") or k == "trainable_params"})
            elif memory_fn is not None:
                rec.update(memory_fn(model, opt or warm_opt, device) or {})
            if device.type == "cuda" and "cuda_peak_bytes" not in rec:
                rec["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
            if acct is None and "rss_bytes" not in rec:
                rec["rss_bytes"] = _rss()
            # zero the grads after the snapshot (it counts them)
            if phase == "warmup":
                if warm_opt is not None:
                    warm_opt.zero_grad(set_to_none=True)
                if step == warm_steps:
                    adapter.finish_warmup()
                    model.to(device)
                    if adapter.warmup_moves_weights:
                        res.warmup_base = _base_snapshot(adapter)
                    warm_opt = None
                    build_main(steps - warm_steps)
                    if acct is not None:
                        acct.set_optimizer(opt)
                    res.summary["trainable_params"] = int(adapter.num_trainable())
            else:
                opt.zero_grad(set_to_none=True)
            if cfg.eval_every and step % cfg.eval_every == 0 and step != steps:
                rec.update(do_eval(step))
            state.add_record(rec)
            if on_step:
                on_step(rec)
        else:
            status = "finished"
        closed = status == "stopped" and message.startswith("stopped: page closed")  # nobody to show it to
        if status in ("finished", "stopped") and not closed and \
                not (adapter is not None and getattr(adapter, "needs_warmup", False)):
            final = do_eval(steps)
            last = state.records[-1] if state.records else None
            if last is not None and last.get("phase") != "eval" and "eval_accuracy" not in last:
                last.update(final)
            else:
                state.add_record(dict(step=state.step, phase="eval", **final))
            res.summary["final_accuracy"] = final["eval_accuracy"]
            res.summary["final_eval_loss"] = final["eval_loss"]
            if on_step:
                on_step(state.records[-1])
        elif status == "stopped" and not closed:
            message += " (stopped during SMT's warm-up: no blocks were selected, nothing to evaluate)"
    except Exception as e:  # noqa: BLE001 - a run ends with a status, never a hung worker
        status = "failed"
        message = user_message(e)
        if os.environ.get("EXPLORER_DEBUG"):
            import traceback

            traceback.print_exc()
    # release the model and optimizer of a run that did not finish: locals die when train() returns;
    # the result drops the adapted model too (a user-stopped run keeps it for download)
    if status in ("failed", "nan") or (status == "stopped" and message.startswith("stopped: page closed")):
        res.adapter = None
        res.warmup_base = None
        adapter = model = opt = sched = warm_opt = acct = train_params = None  # noqa: F841
        import gc

        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()
    wall = time.perf_counter() - t_start
    recs = state.records
    evals = [r["eval_accuracy"] for r in recs if r.get("eval_accuracy") is not None]
    trained = [r for r in recs if r.get("phase") in ("train", "warmup") and r.get("step_time_s") is not None]

    def _peak(key, phase=None):
        vals = [r[key] for r in trained if r.get(key) is not None and (phase is None or r["phase"] == phase)]
        return max(vals) if vals else None

    res.summary.update(
        status=status, message=message, steps_done=max([r["step"] for r in trained], default=0),
        steps=int(cfg.steps), method=cfg.method, model=cfg.model, task=(res.task.name if res.task else cfg.task),
        best_accuracy=max(evals) if evals else None, wall_time_s=wall,
        device=str(device) if device is not None else None, lr=_safe_lr(cfg),
        peak_memory_bytes=_peak("total_bytes"), peak_memory_train_bytes=_peak("total_bytes", "train"),
        peak_cuda_bytes=_peak("cuda_peak_bytes"), peak_rss_bytes=_peak("rss_bytes"),
        mean_step_time_s=(sum(r["step_time_s"] for r in trained[1:]) / max(1, len(trained) - 1)
                          if len(trained) > 1 else (trained[0]["step_time_s"] if trained else None)),
        final_loss=(trained[-1]["loss"] if trained else None),
        notes=list(res.notes),
    )
    res.summary.setdefault("final_accuracy", None)
    state.result = res
    state.set(status=status, message=message, ended=time.time())
    with _RUNNING_LOCK:
        _RUNNING.pop(id(state), None)
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


__all__ = ["TrainConfig", "RunState", "RunResult", "train", "start_in_thread", "pick_device", "DEFAULT_LR",
           "init_head", "prepare_base", "load_for", "active_runs", "orphan_seconds", "ORPHAN_ENV"]


def _safe_lr(cfg):
    try:
        return cfg.resolved_lr()
    except (TypeError, ValueError):
        return None
