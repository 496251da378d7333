"""SMT's warm-up, once, for the block inspector (no Streamlit).

:func:`collect_gradients` runs SMT's warm-up on a private copy of a model and sums the gradient of
*every* candidate weight (all attention and MLP linear layers) in fp32, in "full" mode (AdamW full
fine-tuning steps, as in the public SMT code) or "gradient-only" mode (weights unchanged; a labelled
deviation), through the project's one training step (``explorer.engine.step.run_step``).  At each
checkpoint it stores the block reductions of :class:`explorer.smt_inspector.record.GradientRecord`.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterable

import numpy as np
import torch

from explorer.engine.step import StepPlan, run_step
from explorer.methods.base import KnobError
from explorer.methods.smt_blocks import valid_block_sizes
from explorer.smt_inspector.cache import cached_record, record_key, remember, save_record
from explorer.smt_inspector.record import GradientRecord, block_sum, default_grain
from explorer.targets import find_targets

DEFAULT_CHECKPOINTS = (1, 5, 10, 25, 50, 100)
MODES = ["full", "gradient-only"]

Progress = Callable[[float, str], None]


def _task_identity(task) -> str:
    """Name plus a hash of the training examples, so an edited data file is a new cache entry."""
    if task is None or isinstance(task, str):
        return str(task)
    train = getattr(task, "train", None)
    digest = hashlib.sha256(repr(train).encode()).hexdigest()[:16] if train is not None else repr(task)[:100]
    return f"{getattr(task, 'name', type(task).__name__)}:{digest}"


def _task_name(task) -> str:
    if task is None or isinstance(task, str):
        return str(task)
    return str(getattr(task, "name", None) or getattr(task, "label", None) or type(task).__name__)


def _fast_causal_loss_ok(model, batch) -> bool:
    cfg = getattr(model, "config", None)
    return ("labels" in batch and "input_ids" in batch and hasattr(model, "lm_head") and hasattr(model, "model")
            and getattr(cfg, "final_logit_softcapping", None) is None
            and type(model).__name__.endswith("ForCausalLM") and getattr(cfg, "model_type", "") in
            ("llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "phi3"))


def warmup_loss(model, batch) -> torch.Tensor:
    """The model's own loss.  For LLaMA-style causal LMs the vocabulary projection is applied only at the
    positions that carry a label (the answer tokens): the same mean token cross-entropy as
    ``model(**batch).loss`` and the same gradients, without the logits of every prompt position
    (about a fifth of the compute of SmolLM2 at 128 tokens)."""
    if not _fast_causal_loss_ok(model, batch):
        return model(**batch).loss
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.model(**inputs).last_hidden_state
    tgt = labels[:, 1:]
    keep = tgt != -100
    if not bool(keep.any()):
        return model(**batch).loss
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), tgt[keep])


@dataclass
class RecordSettings:
    """What a warm-up record depends on.  Hashed (:meth:`key`), these fields name the record's cache file and
    they open its metadata (``GradientRecord.meta``): keep their names and order."""

    model: str
    source: str
    n_params: int
    kind: str
    task: str  # the task's name and a hash of its training examples, or "custom:<cache_key>"
    warmup_steps: int
    batch_size: int
    max_len: int
    mode: str  # "full" or "gradient-only"
    checkpoints: list
    lr: float
    weight_decay: float
    seed: int
    grain: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RecordSettings":
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def key(self) -> str:
        return record_key(self.to_dict())


def _check_args(mode, warmup_steps, batch_size, max_len, lr) -> None:
    if mode not in MODES:
        raise KnobError(f"smt analysis: mode must be full or gradient-only (got '{str(mode)[:40]}')")
    for name, v, lo, hi in (("warm-up steps", warmup_steps, 1, 100_000), ("batch size", batch_size, 1, 4096),
                            ("max length", max_len, 2, 1_000_000)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= int(v) <= hi:
            raise KnobError(f"smt analysis: {name} must be an integer in [{lo}, {hi}] (got {v!r})")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise KnobError(f"smt analysis: learning rate must be a positive number (got {lr!r})")


class _Sums:
    """The running sums of the warm-up and their block reductions at the checkpoints.

    Full mode: every weight moves (AdamW), so the target gradients are added to fp32 sums by the step's
    sink.  Gradient-only: autograd accumulates into ``.grad`` across steps (no optimizer zeroes it), so
    ``.grad`` *is* the running sum.
    """

    def __init__(self, weights: list, grain: int, total_blocks: int, full: bool):
        self.weights, self.grain, self.total_blocks = weights, grain, total_blocks
        self.run = [torch.zeros(w.shape, dtype=torch.float32, device=w.device) for w in weights] if full else None
        self.sums, self.abs_sums, self.sq_sums, self.steps = [], [], [], []

    @torch.no_grad()
    def add(self) -> None:  # the step's gradient sink (full mode)
        for s, w in zip(self.run, self.weights):
            if w.grad is not None:
                s.add_(w.grad)

    @torch.no_grad()
    def reduce(self, step: int) -> None:
        g = self.grain
        s_out = np.empty(self.total_blocks, np.float32)
        a_out = np.empty(self.total_blocks, np.float32)
        q_out = np.empty(self.total_blocks, np.float32)
        off = 0
        for i, w in enumerate(self.weights):
            S = self.run[i] if self.run is not None else w.grad
            if S is None:
                S = torch.zeros(w.shape, dtype=torch.float32)
            S = S.float()
            n = S.numel() // (g * g)
            s_out[off:off + n] = block_sum(S, g).reshape(-1).cpu().numpy()
            a_out[off:off + n] = block_sum(S.abs(), g).reshape(-1).cpu().numpy()
            q_out[off:off + n] = block_sum(S * S, g).reshape(-1).cpu().numpy()
            off += n
        self.sums.append(s_out)
        self.abs_sums.append(a_out)
        self.sq_sums.append(q_out)
        self.steps.append(step)


def _warmup_notes(mode, lr, weight_decay, done, warmup_steps, stopped) -> list[str]:
    notes = []
    if mode == "gradient-only":
        notes.append("Warm-up mode gradient-only (a deviation from the public SMT code): gradients are summed "
                     "at the base weights, which never move.")
    else:
        notes.append("Warm-up mode full, as in the public SMT code: every warm-up step is an AdamW step of full "
                     f"fine-tuning (lr {lr:g}, weight decay {weight_decay:g}); gradients are summed along the way.")
    if done < warmup_steps and not stopped:
        notes.append(f"The task gave only {done} training batches: the warm-up ran {done} of {warmup_steps} steps.")
    if stopped:
        notes.append(f"Stopped after {done} of {warmup_steps} warm-up steps: a partial result (not cached).")
    return notes


def _warmup_plan(model, weights, sums: _Sums, s: RecordSettings) -> StepPlan:
    """Full mode: every weight trains (AdamW) and the step's sink adds the target gradients to the sums.
    Gradient-only: only the target weights take gradients, which autograd sums in ``.grad`` (no optimizer)."""
    if s.mode != "full":
        for w in weights:
            w.requires_grad_(True)
        return StepPlan(loss_fn=warmup_loss)
    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters()]
    try:  # the fused kernel is about 10x faster than the default for-loop AdamW on CPU (measured on smollm2)
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return StepPlan(optimizer=opt, sink=sums.add, loss_fn=warmup_loss)


def _warm_up(model, batches, plan: StepPlan, sums: _Sums, s: RecordSettings, say: Progress, stop_event,
             t_start: float) -> tuple[int, list[float], bool]:
    """The warm-up steps, block reductions at the checkpoints; returns (steps done, losses, stopped)."""
    losses = []
    done = 0
    stopped = False
    it = iter(batches)
    n, mode = s.warmup_steps, s.mode
    say(0.0, f"warm-up 0/{n} ({mode})")
    while done < n:
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        try:
            batch = next(it)
        except StopIteration:
            break
        out = run_step(model, batch, plan)
        if not out.ok:
            raise FloatingPointError(f"smt analysis: the warm-up loss is not finite at step {done + 1}")
        done += 1
        losses.append(out.loss)
        if done in s.checkpoints:
            sums.reduce(done)
        el = time.perf_counter() - t_start
        say(done / n, f"warm-up step {done}/{n} ({mode}), loss {out.loss:.4f}, {el:.1f} s")
    if done == 0:
        raise KnobError("smt analysis: the warm-up saw no batch" + (" (stopped)" if stopped else
                                                                      "; the task gave no training batch"))
    if not sums.steps or sums.steps[-1] != done:
        sums.reduce(done)
    return done, losses, stopped


def collect_gradients(loaded, task=None, warmup_steps: int = 16, batch_size: int = 4, max_len: int = 128,
                      mode: str = "full", checkpoints: Iterable[int] = DEFAULT_CHECKPOINTS, lr: float = 1e-4,
                      seed: int = 0, progress: Progress | None = None, stop_event=None, grain: int | None = None,
                      batches: Iterable[dict] | None = None, weight_decay: float = 0.0, cache: bool = True,
                      cache_key: str | None = None) -> GradientRecord:
    """Run SMT's warm-up on a private copy of ``loaded.model`` and record block sums of the summed gradients.

    ``task``: a task name or object from ``explorer.data`` (None: the model's default task).
    ``batches``: an iterable of ``model(**batch)`` dicts that replaces the task (tests,
    custom data); such a run is cached only when ``cache_key`` names it.
    ``progress(fraction, message)`` is called after every step; ``stop_event.is_set()``
    ends the warm-up early (the partial record is returned, labelled, and not cached).
    """
    from explorer.models import fresh_copy

    say = progress or (lambda f, m: None)
    _check_args(mode, warmup_steps, batch_size, max_len, lr)
    targets = find_targets(loaded.model)
    if not targets:
        raise KnobError("smt analysis: this model has no attention or MLP linear layers to score")
    shapes = [(t.d_out, t.d_in) for t in targets]
    if grain is None:
        grain = default_grain(shapes)
    elif grain < 1 or not all(a % grain == 0 and b % grain == 0 for a, b in shapes):
        raise KnobError(f"smt analysis: grain {grain} does not divide every candidate matrix; valid: "
                        f"{', '.join(map(str, valid_block_sizes(shapes)[-8:]))}")
    info = loaded.info
    task_name = "custom batches"
    if batches is None:
        from explorer import data

        if task is None:
            task = data.default_task_for(info.kind)
        if isinstance(task, str):
            task = data.load_task(task, model_kind=info.kind)
        task_name = _task_name(task)
    s = RecordSettings(model=info.name, source=info.source, n_params=info.n_params, kind=info.kind,
                       task=_task_identity(task) if batches is None else f"custom:{cache_key}",
                       warmup_steps=int(warmup_steps), batch_size=int(batch_size), max_len=int(max_len), mode=mode,
                       checkpoints=sorted({int(c) for c in checkpoints if 1 <= int(c) < warmup_steps}
                                          | {int(warmup_steps)}),
                       lr=float(lr), weight_decay=float(weight_decay), seed=int(seed), grain=int(grain))
    key = s.key() if (cache and (batches is None or cache_key)) else None
    if key is not None:
        rec = cached_record(key)
        if rec is not None:
            say(1.0, "loaded from the cache")
            return rec

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    if batches is None:
        batches = data.iter_batches(task, loaded.tokenizer, "train", batch_size=s.batch_size, seed=s.seed,
                                    max_batches=s.warmup_steps, model_kind=info.kind, max_len=s.max_len)

    say(0.0, "copying the model")
    torch.manual_seed(s.seed)
    model = fresh_copy(loaded.model)
    if info.kind == "seq-cls":  # a new head, drawn from the run's seed as a fine-tune's is (the same head)
        from explorer.engine.prepare import init_head

        init_head(model, int(getattr(getattr(model, "config", None), "num_labels", 2) or 2), s.seed)
    model.train()
    weights = [model.get_submodule(t.name).weight for t in targets]
    sums = _Sums(weights, s.grain, sum((t.d_out // s.grain) * (t.d_in // s.grain) for t in targets),
                 full=mode == "full")
    plan = _warmup_plan(model, weights, sums, s)
    done, losses, stopped = _warm_up(model, batches, plan, sums, s, say, stop_event, t_start)
    notes = _warmup_notes(mode, lr, weight_decay, done, warmup_steps, stopped)

    with torch.no_grad():
        base = [loaded.model.get_submodule(t.name).weight.detach().float() for t in targets]
        w_abs = np.concatenate([block_sum(w.abs(), s.grain).reshape(-1).cpu().numpy() for w in base])
        dw_abs = None
        if mode == "full":
            dw_abs = np.concatenate([block_sum((w.detach().float() - b).abs(), s.grain).reshape(-1).cpu().numpy()
                                     for w, b in zip(weights, base)])
    plan = sums.run = None  # release the copy and the optimizer state before the record is built
    del model, weights
    seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - cpu_start  # all threads of this process: robust to a busy machine
    meta = dict(s.to_dict(), task_name=task_name, steps_done=done, stopped=stopped, losses=losses,
                seconds=round(seconds, 3), cpu_seconds=round(cpu_seconds, 3), notes=notes,
                torch_threads=torch.get_num_threads(), model_label=getattr(info, "label", info.name),
                family=getattr(info, "family", ""), from_cache=None)
    rec = GradientRecord(key=None if stopped else key, meta=meta, targets=targets, grain=s.grain, steps=sums.steps,
                         sums=sums.sums, abs_sums=sums.abs_sums, sq_sums=sums.sq_sums, w_abs=w_abs, dw_abs=dw_abs)
    if rec.key is not None:
        remember(rec)
        try:
            save_record(rec)
        except OSError as e:  # a full or read-only disk must not lose the result
            rec.meta["notes"].append(f"Could not write the disk cache: {str(e)[:120]}")
    say(1.0, f"warm-up done: {done} steps in {seconds:.1f} s")
    return rec


__all__ = ["collect_gradients", "warmup_loss", "RecordSettings", "DEFAULT_CHECKPOINTS", "MODES"]
