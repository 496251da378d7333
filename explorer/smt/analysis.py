"""Where does SMT put its budget, and why: a gradient-block analysis (no Streamlit).

1. :func:`collect_gradients` runs SMT's warm-up once on a private copy of a model
   and sums the gradient of *every* candidate weight (all attention and MLP
   linear layers) in fp32, in "full" mode (AdamW full fine-tuning steps, as in the
   public SMT code) or "gradient-only" mode (weights unchanged; a labelled
   deviation).  It never keeps the full-size sums of past steps: at each
   checkpoint it stores block reductions at the finest grain ``g`` (16 by
   default) of the running sum S:  sum(S), sum(|S|) and sum(S^2) per g x g block.
   Any block size b that is a multiple of g re-aggregates from these exactly:
   |mean| = |sum S| / b^2, mean|.| = sum|S| / b^2, L1 = sum|S|, L2 = sqrt(sum S^2).
   It also stores sum(|W|) per g x g block of the base weights and, in full mode,
   sum(|W_after - W_before|).
2. :func:`analyze` turns a :class:`GradientRecord` into block scores, the
   global / per-matrix top-n selection (``explorer.methods.smt.select_blocks``),
   shares per matrix type and layer, the stability curve (Jaccard overlap of the
   selection after step t with the final one) and overlaps with other choices of
   the same number of blocks.  Block size, budget, score, rule and types are
   arguments: moving a slider never recomputes gradients.
3. Records are cached per (model, task, settings): an in-memory LRU and one
   safetensors file per record under ``cache_dir()/smt-analysis`` (metadata as
   JSON in its header; written to a temporary file and renamed; no pickle).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from explorer.methods.base import KnobError
from explorer.methods.smt import SCORE_LABELS, SCORES, block_scores, select_blocks, valid_block_sizes
from explorer.targets import ALL_TYPES, Target, find_targets

FORMAT_VERSION = 1
DEFAULT_CHECKPOINTS = (1, 5, 10, 25, 50, 100)
MODES = ["full", "gradient-only"]
RULES = ["global", "per-matrix"]
MEMORY_LRU_SIZE = 4

Progress = Callable[[float, str], None]


# ----------------------------------------------------------------------------- the record


@dataclass
class GradientRecord:
    """Block reductions of the warm-up's summed gradients at the finest grain.

    ``sums[i]``, ``abs_sums[i]``, ``sq_sums[i]``: flat float32 arrays (every target's
    grain grid, row-major, concatenated in ``targets`` order) after ``steps[i]``
    warm-up steps; the last entry is the final sum.
    """

    key: str | None
    meta: dict
    targets: list[Target]
    grain: int
    steps: list[int]
    sums: list[np.ndarray]
    abs_sums: list[np.ndarray]
    sq_sums: list[np.ndarray]
    w_abs: np.ndarray
    dw_abs: np.ndarray | None = None
    offsets: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.offsets:
            off, out = 0, []
            for t in self.targets:
                out.append(off)
                off += (t.d_out // self.grain) * (t.d_in // self.grain)
            out.append(off)
            self.offsets = out

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def steps_done(self) -> int:
        return self.steps[-1]

    def grid(self, arr: np.ndarray, i: int) -> torch.Tensor:
        t = self.targets[i]
        a, b = self.offsets[i], self.offsets[i + 1]
        return torch.from_numpy(arr[a:b].reshape(t.d_out // self.grain, t.d_in // self.grain))

    def types(self) -> list[str]:
        seen = []
        for t in self.targets:
            if t.type not in seen:
                seen.append(t.type)
        return seen

    def block_sizes(self, types: Iterable[str] | None = None, limit: int = 4096) -> list[int]:
        """Block sizes the record can score: multiples of the grain that divide every chosen matrix."""
        ts = _pick_targets(self, types)
        return [b for b in valid_block_sizes([(t.d_out, t.d_in) for t in ts], limit=limit) if b % self.grain == 0]


def default_grain(shapes: list[tuple[int, int]], preferred: int = 16) -> int:
    """The finest block grain stored: the smallest valid size >= ``preferred``, else the largest valid one."""
    valid = valid_block_sizes(shapes, limit=4096)
    above = [b for b in valid if b >= preferred]
    return above[0] if above else valid[-1]


def _block_sum(x: torch.Tensor, g: int) -> torch.Tensor:
    """Signed sum of every g x g block (block_scores gives |mean|, which loses the sign we need to re-aggregate)."""
    d_out, d_in = x.shape
    return x.reshape(d_out // g, g, d_in // g, g).sum(dim=(1, 3))


# ----------------------------------------------------------------------------- caching

_MEMORY: "OrderedDict[str, GradientRecord]" = OrderedDict()
_ANALYSES: "OrderedDict[tuple, SMTAnalysis]" = OrderedDict()
_LOCK = threading.Lock()  # pages of several sessions share these caches
ANALYSIS_LRU_SIZE = 32


def _cache_folder():
    from explorer.models import cache_dir

    p = cache_dir() / "smt-analysis"
    p.mkdir(parents=True, exist_ok=True)
    return p


def record_key(settings: dict) -> str:
    blob = json.dumps(dict(settings, format=FORMAT_VERSION), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _remember(rec: GradientRecord) -> None:
    if rec.key is None:
        return
    with _LOCK:
        _MEMORY[rec.key] = rec
        _MEMORY.move_to_end(rec.key)
        while len(_MEMORY) > MEMORY_LRU_SIZE:
            _MEMORY.popitem(last=False)


def save_record(rec: GradientRecord, path=None):
    """One safetensors file (arrays) with the JSON metadata in its header; atomic (temp file + rename)."""
    from safetensors.numpy import save_file

    path = path or (_cache_folder() / f"{rec.key}.safetensors")
    tensors = {"w_abs": np.ascontiguousarray(rec.w_abs, dtype=np.float32)}
    if rec.dw_abs is not None:
        tensors["dw_abs"] = np.ascontiguousarray(rec.dw_abs, dtype=np.float32)
    for i in range(len(rec.steps)):
        tensors[f"ckpt{i}.sum"] = np.ascontiguousarray(rec.sums[i], dtype=np.float32)
        tensors[f"ckpt{i}.abs"] = np.ascontiguousarray(rec.abs_sums[i], dtype=np.float32)
        tensors[f"ckpt{i}.sq"] = np.ascontiguousarray(rec.sq_sums[i], dtype=np.float32)
    head = dict(version=FORMAT_VERSION, key=rec.key, meta=rec.meta, grain=rec.grain, steps=rec.steps,
                targets=[[t.name, t.layer, t.type, t.d_out, t.d_in] for t in rec.targets])
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=str(os.path.dirname(path)))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"record": json.dumps(head)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_record(path) -> GradientRecord:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="numpy") as f:
        head = json.loads(f.metadata()["record"])
    if head.get("version") != FORMAT_VERSION:
        raise ValueError("old cache format")
    arr = load_file(str(path))
    n = len(head["steps"])
    targets = [Target(name=a, layer=int(b), type=c, d_out=int(d), d_in=int(e)) for a, b, c, d, e in head["targets"]]
    return GradientRecord(key=head["key"], meta=head["meta"], targets=targets, grain=int(head["grain"]),
                          steps=[int(s) for s in head["steps"]],
                          sums=[arr[f"ckpt{i}.sum"] for i in range(n)],
                          abs_sums=[arr[f"ckpt{i}.abs"] for i in range(n)],
                          sq_sums=[arr[f"ckpt{i}.sq"] for i in range(n)],
                          w_abs=arr["w_abs"], dw_abs=arr.get("dw_abs"))


def cached_record(key: str) -> GradientRecord | None:
    """The record for ``key`` from memory, else from disk (a damaged file is ignored), else None."""
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    path = _cache_folder() / f"{key}.safetensors"
    if path.exists():
        try:
            rec = load_record(path)
        except Exception:  # noqa: BLE001 - a damaged or old cache file is recomputed
            return None
        rec.meta = dict(rec.meta, from_cache="disk")
        _remember(rec)
        return rec
    return None


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()
        _ANALYSES.clear()


# ----------------------------------------------------------------------------- gradient collection


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
    if mode not in MODES:
        raise KnobError(f"smt analysis: mode must be full or gradient-only (got '{str(mode)[:40]}')")
    for name, v, lo, hi in (("warm-up steps", warmup_steps, 1, 100_000), ("batch size", batch_size, 1, 4096),
                            ("max length", max_len, 2, 1_000_000)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= int(v) <= hi:
            raise KnobError(f"smt analysis: {name} must be an integer in [{lo}, {hi}] (got {v!r})")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise KnobError(f"smt analysis: learning rate must be a positive number (got {lr!r})")
    targets = find_targets(loaded.model)
    if not targets:
        raise KnobError("smt analysis: this model has no attention or MLP linear layers to score")
    shapes = [(t.d_out, t.d_in) for t in targets]
    if grain is None:
        grain = default_grain(shapes)
    elif grain < 1 or not all(a % grain == 0 and b % grain == 0 for a, b in shapes):
        raise KnobError(f"smt analysis: grain {grain} does not divide every candidate matrix; valid: "
                        f"{', '.join(map(str, valid_block_sizes(shapes)[-8:]))}")
    ckpts = sorted({int(c) for c in checkpoints if 1 <= int(c) < warmup_steps} | {int(warmup_steps)})
    info = loaded.info
    task_name = "custom batches"
    if batches is None:
        from explorer import data

        if task is None:
            task = data.default_task_for(info.kind)
        if isinstance(task, str):
            task = data.load_task(task, model_kind=info.kind)
        task_name = _task_name(task)
    settings = dict(model=info.name, source=info.source, n_params=info.n_params, kind=info.kind,
                    task=_task_identity(task) if batches is None else f"custom:{cache_key}",
                    warmup_steps=int(warmup_steps), batch_size=int(batch_size), max_len=int(max_len), mode=mode,
                    checkpoints=ckpts, lr=float(lr), weight_decay=float(weight_decay), seed=int(seed),
                    grain=int(grain))
    key = record_key(settings) if (cache and (batches is None or cache_key)) else None
    if key is not None:
        rec = cached_record(key)
        if rec is not None:
            say(1.0, "loaded from the cache")
            return rec

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    if batches is None:
        batches = data.iter_batches(task, loaded.tokenizer, "train", batch_size=int(batch_size), seed=int(seed),
                                    max_batches=int(warmup_steps), model_kind=info.kind, max_len=int(max_len))

    say(0.0, "copying the model")
    torch.manual_seed(int(seed))
    model = fresh_copy(loaded.model)
    model.train()
    weights = [model.get_submodule(t.name).weight for t in targets]
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        params = [p for p in model.parameters()]
        try:  # the fused kernel is about 10x faster than the default for-loop AdamW on CPU (measured on smollm2)
            opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay), fused=True)
        except (RuntimeError, TypeError, ValueError):
            opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
        run_sums = [torch.zeros(w.shape, dtype=torch.float32, device=w.device) for w in weights]
    else:
        # gradient-only: autograd accumulates into .grad across steps, so .grad *is* the running sum
        for w in weights:
            w.requires_grad_(True)
        opt = None
        run_sums = None

    total_blocks = sum((t.d_out // grain) * (t.d_in // grain) for t in targets)
    sums, abs_sums, sq_sums, steps, losses = [], [], [], [], []

    @torch.no_grad()
    def reduce_now():
        s_out = np.empty(total_blocks, np.float32)
        a_out = np.empty(total_blocks, np.float32)
        q_out = np.empty(total_blocks, np.float32)
        off = 0
        for i, w in enumerate(weights):
            S = run_sums[i] if run_sums is not None else w.grad
            if S is None:
                S = torch.zeros(w.shape, dtype=torch.float32)
            S = S.float()
            n = S.numel() // (grain * grain)
            s_out[off:off + n] = _block_sum(S, grain).reshape(-1).cpu().numpy()
            a_out[off:off + n] = _block_sum(S.abs(), grain).reshape(-1).cpu().numpy()
            q_out[off:off + n] = _block_sum(S * S, grain).reshape(-1).cpu().numpy()
            off += n
        sums.append(s_out)
        abs_sums.append(a_out)
        sq_sums.append(q_out)

    done = 0
    stopped = False
    it = iter(batches)
    say(0.0, f"warm-up 0/{warmup_steps} ({mode})")
    while done < warmup_steps:
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        try:
            batch = next(it)
        except StopIteration:
            break
        loss = warmup_loss(model, batch)
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"smt analysis: the warm-up loss is not finite at step {done + 1}")
        loss.backward()
        if opt is not None:
            with torch.no_grad():
                for s, w in zip(run_sums, weights):
                    if w.grad is not None:
                        s.add_(w.grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
        done += 1
        losses.append(lv)
        if done in ckpts:
            reduce_now()
            steps.append(done)
        el = time.perf_counter() - t_start
        say(done / warmup_steps, f"warm-up step {done}/{warmup_steps} ({mode}), loss {lv:.4f}, {el:.1f} s")
    if done == 0:
        raise KnobError("smt analysis: the warm-up saw no batch" + (" (stopped)" if stopped else
                                                                      "; the task gave no training batch"))
    if not steps or steps[-1] != done:
        reduce_now()
        steps.append(done)

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

    with torch.no_grad():
        base = [loaded.model.get_submodule(t.name).weight.detach().float() for t in targets]
        w_abs = np.concatenate([_block_sum(w.abs(), grain).reshape(-1).cpu().numpy() for w in base])
        dw_abs = None
        if mode == "full":
            dw_abs = np.concatenate([_block_sum((w.detach().float() - b).abs(), grain).reshape(-1).cpu().numpy()
                                     for w, b in zip(weights, base)])
    del model, opt, run_sums, weights
    seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - cpu_start  # all threads of this process: robust to a busy machine
    meta = dict(settings, task_name=task_name, steps_done=done, stopped=stopped, losses=losses,
                seconds=round(seconds, 3), cpu_seconds=round(cpu_seconds, 3), notes=notes, torch_threads=torch.get_num_threads(),
                model_label=getattr(info, "label", info.name), family=getattr(info, "family", ""),
                from_cache=None)
    rec = GradientRecord(key=None if stopped else key, meta=meta, targets=targets, grain=int(grain), steps=steps,
                         sums=sums, abs_sums=abs_sums, sq_sums=sq_sums, w_abs=w_abs, dw_abs=dw_abs)
    if rec.key is not None:
        _remember(rec)
        try:
            save_record(rec)
        except OSError as e:  # a full or read-only disk must not lose the result
            rec.meta["notes"].append(f"Could not write the disk cache: {str(e)[:120]}")
    say(1.0, f"warm-up done: {done} steps in {seconds:.1f} s")
    return rec


def record_from_sums(targets: list[Target], sums_per_step: list[dict[str, torch.Tensor]], steps: list[int],
                     grain: int, weights: dict[str, torch.Tensor] | None = None,
                     weights_after: dict[str, torch.Tensor] | None = None, meta: dict | None = None) -> GradientRecord:
    """A record from full-size summed gradients given directly (planted gradients, sums made elsewhere).

    ``sums_per_step[i][name]`` is the running sum after ``steps[i]`` steps; ``weights`` the base weights
    (zeros when omitted) and ``weights_after`` the weights after a full warm-up (optional).
    """
    def flat(fn):
        return np.concatenate([_block_sum(fn(t).float(), grain).reshape(-1).numpy() for t in targets]).astype(np.float32)

    zero = {t.name: torch.zeros(t.d_out, t.d_in) for t in targets}
    weights = weights or zero
    m = dict(model="custom", task_name="custom", mode="full" if weights_after is not None else "gradient-only",
             steps_done=steps[-1], notes=[], losses=[])
    m.update(meta or {})
    return GradientRecord(
        key=None, meta=m, targets=list(targets), grain=int(grain), steps=[int(s) for s in steps],
        sums=[flat(lambda t, S=S: S[t.name]) for S in sums_per_step],
        abs_sums=[flat(lambda t, S=S: S[t.name].abs()) for S in sums_per_step],
        sq_sums=[flat(lambda t, S=S: S[t.name] * S[t.name]) for S in sums_per_step],
        w_abs=flat(lambda t: weights[t.name].abs()),
        dw_abs=None if weights_after is None else flat(lambda t: (weights_after[t.name] - weights[t.name]).abs()))


# ----------------------------------------------------------------------------- scoring


def _pick_targets(rec: GradientRecord, types) -> list[Target]:
    if types is None or (not isinstance(types, str) and len(list(types)) == 0):
        return list(rec.targets)
    if isinstance(types, str):
        types = [s.strip() for s in types.split(",") if s.strip()]
    types = list(types)
    have = rec.types()
    bad = [t for t in types if t not in have]
    if bad:
        raise KnobError(f"smt analysis: unknown matrix type(s) {', '.join(map(str, bad))[:80]}; "
                        f"this model has {', '.join(have)}")
    return [t for t in rec.targets if t.type in types]


def _check_block_size(rec: GradientRecord, b, ts: list[Target]) -> int:
    try:
        b = int(b)
    except (TypeError, ValueError):
        raise KnobError(f"smt analysis: block size must be an integer (got {b!r})") from None
    ok = b > 0 and b % rec.grain == 0 and all(t.d_out % b == 0 and t.d_in % b == 0 for t in ts)
    if not ok:
        valid = [v for v in valid_block_sizes([(t.d_out, t.d_in) for t in ts], limit=4096) if v % rec.grain == 0]
        shapes = ", ".join(sorted({f"{t.d_out}x{t.d_in}" for t in ts}))
        raise KnobError(f"smt analysis: block size {b} must be a multiple of the stored grain {rec.grain} that "
                        f"divides every matrix ({shapes}); valid: {', '.join(map(str, valid)) or 'none'}")
    return b


def check_request(model, block_size: int | None = None, types=None, grain: int | None = None) -> list[Target]:
    """Validate types and block size against a model *before* a warm-up is spent; returns the chosen targets."""
    from types import SimpleNamespace

    targets = find_targets(model)
    if not targets:
        raise KnobError("smt analysis: this model has no attention or MLP linear layers to score")
    g = grain or default_grain([(t.d_out, t.d_in) for t in targets])
    probe = SimpleNamespace(targets=targets, grain=g,
                            types=lambda: list(dict.fromkeys(t.type for t in targets)))
    ts = _pick_targets(probe, types)
    if block_size:
        _check_block_size(probe, block_size, ts)
    return ts


def _index(rec: GradientRecord) -> dict[str, int]:
    return {t.name: i for i, t in enumerate(rec.targets)}


def score_maps(rec: GradientRecord, block_size: int, score: str = "abs-mean", types=None,
               checkpoint: int = -1) -> dict[str, torch.Tensor]:
    """Block scores ``{target: (d_out/b, d_in/b) fp32}`` re-aggregated from the grain sums at one checkpoint.

    Equal (up to fp32 rounding) to ``block_scores(summed_gradient, b, score)``.
    """
    if score not in SCORES:
        raise KnobError(f"smt analysis: unknown score '{str(score)[:40]}'; choose from {', '.join(SCORES)}")
    ts = _pick_targets(rec, types)
    b = _check_block_size(rec, block_size, ts)
    k = b // rec.grain
    idx = _index(rec)
    out = {}
    for t in ts:
        i = idx[t.name]
        if score == "abs-mean":  # |sum S| / b^2 ; block_scores(., k, abs-mean) = |sum of grain sums| / k^2
            out[t.name] = block_scores(rec.grid(rec.sums[checkpoint], i), k, "abs-mean") / float(rec.grain ** 2)
        elif score == "mean-abs":
            out[t.name] = block_scores(rec.grid(rec.abs_sums[checkpoint], i), k, "l1") / float(b * b)
        elif score == "l1":
            out[t.name] = block_scores(rec.grid(rec.abs_sums[checkpoint], i), k, "l1")
        else:  # l2 = sqrt(sum S^2); the grain sums of S^2 are >= 0 so their L1 is their sum
            out[t.name] = block_scores(rec.grid(rec.sq_sums[checkpoint], i), k, "l1").sqrt()
    return out


def _mean_maps(rec: GradientRecord, arr: np.ndarray, b: int, ts: list[Target]) -> dict[str, torch.Tensor]:
    k = b // rec.grain
    idx = _index(rec)
    return {t.name: block_scores(rec.grid(arr, idx[t.name]), k, "l1") / float(b * b) for t in ts}


def weight_magnitude_maps(rec: GradientRecord, block_size: int, types=None) -> dict[str, torch.Tensor]:
    """mean |W| per block of the base weights."""
    ts = _pick_targets(rec, types)
    return _mean_maps(rec, rec.w_abs, _check_block_size(rec, block_size, ts), ts)


def weight_change_maps(rec: GradientRecord, block_size: int, types=None) -> dict[str, torch.Tensor] | None:
    """mean |W_after - W_before| per block after the full fine-tuning warm-up (None in gradient-only mode)."""
    if rec.dw_abs is None:
        return None
    ts = _pick_targets(rec, types)
    return _mean_maps(rec, rec.dw_abs, _check_block_size(rec, block_size, ts), ts)


# ----------------------------------------------------------------------------- selection and analysis


def _budget(total: int, n_blocks, density) -> int:
    if density is not None and float(density) > 0:
        if not 0 < float(density) <= 1:
            raise KnobError(f"smt analysis: density must be in (0, 1] (got {density})")
        n = int(round(float(density) * total))
    elif n_blocks is not None:
        try:
            n = int(n_blocks)
        except (TypeError, ValueError):
            raise KnobError(f"smt analysis: number of blocks must be an integer (got {n_blocks!r})") from None
    else:
        raise KnobError("smt analysis: give a number of blocks or a density")
    if n < 1:
        raise KnobError("smt analysis: the budget selects no block; raise the number of blocks or the density")
    if n > total:
        raise KnobError(f"smt analysis: {n} blocks asked but the chosen matrices hold only {total} blocks")
    return n


def _masks(selection: dict, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    out = {}
    for name, (R, C) in shapes.items():
        m = np.zeros((R, C), dtype=bool)
        rows, cols = selection.get(name, ([], []))
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.size:
            m[rows, cols] = True
        out[name] = m
    return out


def _overlap(a: dict, b: dict) -> tuple[int, int]:
    inter = sum(int(np.count_nonzero(a[k] & b[k])) for k in a)
    union = sum(int(np.count_nonzero(a[k] | b[k])) for k in a)
    return inter, union


def jaccard(sel_a: dict, sel_b: dict, shapes: dict[str, tuple[int, int]]) -> float:
    inter, union = _overlap(_masks(sel_a, shapes), _masks(sel_b, shapes))
    return 1.0 if union == 0 else inter / union


@dataclass
class SMTAnalysis:
    block_size: int
    n_blocks: int
    total_blocks: int
    score: str
    rule: str
    types: list[str]
    targets: list[Target]
    scores: dict[str, np.ndarray]
    selection: dict[str, tuple[np.ndarray, np.ndarray]]
    ranks: dict[str, np.ndarray]
    shares_type: dict[str, float]
    shares_layer: dict[int, float]
    density_type: dict[str, float]
    blocks_type: dict[str, int]
    stability: list[dict]
    overlaps: dict
    meta: dict
    notes: list[str]

    def summary(self) -> dict:
        return analysis_to_dict(self, include_scores=False)


def _selection_np(sel: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (np.asarray(r, dtype=np.int32), np.asarray(c, dtype=np.int32)) for k, (r, c) in sel.items()}


def _ranks(scores: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Global rank (1 = best) of every block, ties broken by position as select_blocks does."""
    names = list(scores)
    flat = torch.cat([scores[k].reshape(-1).float() for k in names])
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, order.numel() + 1)
    out, start = {}, 0
    for k in names:
        n = scores[k].numel()
        out[k] = rank[start:start + n].reshape(scores[k].shape).numpy().astype(np.int64)
        start += n
    return out


def analyze(rec: GradientRecord, block_size: int, n_blocks: int | None = None, density: float | None = None,
            score: str = "abs-mean", rule: str = "global", types=None, seed: int = 0,
            details: bool = True) -> SMTAnalysis:
    """Scores, selection, shares, stability and overlaps for one setting; no gradient is recomputed.

    Results for cached records are memoised (an LRU of the last few settings), so redraws are instant.
    ``details=False`` leaves out the stability curve and the overlaps (a faster first draw of a heatmap).
    """
    memo = None
    if rec.key is not None:
        tkey = None if types is None else (types if isinstance(types, str) else tuple(types))
        memo = (rec.key, block_size, n_blocks, density, score, rule, tkey, seed, bool(details))
        with _LOCK:
            if memo in _ANALYSES:
                _ANALYSES.move_to_end(memo)
                return _ANALYSES[memo]
    an = _analyze(rec, block_size, n_blocks, density, score, rule, types, seed, details)
    if memo is not None:
        with _LOCK:
            _ANALYSES[memo] = an
            while len(_ANALYSES) > ANALYSIS_LRU_SIZE:
                _ANALYSES.popitem(last=False)
    return an


def _analyze(rec, block_size, n_blocks, density, score, rule, types, seed, details=True) -> SMTAnalysis:
    if rule not in RULES:
        raise KnobError(f"smt analysis: unknown selection rule '{str(rule)[:40]}'; choose global or per-matrix")
    ts = _pick_targets(rec, types)
    b = _check_block_size(rec, block_size, ts)
    shapes = {t.name: (t.d_out // b, t.d_in // b) for t in ts}
    total = sum(R * C for R, C in shapes.values())
    n = _budget(total, n_blocks, density)
    scores = score_maps(rec, b, score, [t.type for t in ts])
    sel = select_blocks(scores, n, rule)
    masks = _masks(sel, shapes)

    # shares per type and per layer (counts of b x b blocks, so they are shares of parameters too)
    type_order = [t for t in ALL_TYPES if any(x.type == t for x in ts)] + \
        [t for t in dict.fromkeys(x.type for x in ts) if t not in ALL_TYPES]
    blocks_type = {ty: 0 for ty in type_order}
    avail_type = {ty: 0 for ty in type_order}
    layer_counts: dict[int, int] = {}
    for t in ts:
        c = int(len(sel[t.name][0]))
        blocks_type[t.type] += c
        avail_type[t.type] += shapes[t.name][0] * shapes[t.name][1]
        layer_counts[t.layer] = layer_counts.get(t.layer, 0) + c
    got = sum(blocks_type.values())
    shares_type = {ty: blocks_type[ty] / got for ty in type_order}
    shares_layer = {ly: layer_counts[ly] / got for ly in sorted(layer_counts)}
    density_type = {ty: blocks_type[ty] / avail_type[ty] for ty in type_order}

    # stability: the selection after each checkpoint against the final one
    stability = []
    for i, step in enumerate(rec.steps if details else []):
        s_i = select_blocks(score_maps(rec, b, score, [t.type for t in ts], checkpoint=i), n, rule)
        inter, union = _overlap(_masks(s_i, shapes), masks)
        j = inter / union if union else 1.0
        stability.append(dict(step=int(step), jaccard=float(j)))

    # comparisons on the same budget and rule
    def compare(other_sel, label, explain):
        inter, union = _overlap(masks, _masks(other_sel, shapes))
        return dict(label=label, jaccard=inter / union if union else 1.0, shared_blocks=inter,
                    share_of_smt=inter / n, explain=explain)

    overlaps = {}
    if not details:
        return _finish_analysis(rec, b, n, total, score, rule, type_order, ts, scores, sel, shares_type,
                                shares_layer, density_type, blocks_type, stability, overlaps)
    mag = select_blocks(weight_magnitude_maps(rec, b, [t.type for t in ts]), n, rule)
    overlaps["magnitude"] = compare(mag, "largest-magnitude weights",
                                    "the n blocks with the largest mean |W| of the base weights")
    gen = torch.Generator().manual_seed(int(seed))
    rnd_scores = {k: torch.rand(shapes[k], generator=gen) for k in shapes}
    rnd = select_blocks(rnd_scores, n, rule)
    r = compare(rnd, "random blocks (SpaRTA-style)",
                f"n blocks drawn uniformly at random (seed {seed}; per matrix with the same quotas under the "
                "per-matrix rule). SpaRTA draws single entries; drawn as blocks here so the budgets match.")
    # expected overlap of a uniform random choice with the same quotas: E[I] = sum_m n_m^2 / N_m
    if rule == "global":
        e_inter = n * n / total
    else:
        e_inter = sum(len(sel[k][0]) ** 2 / (shapes[k][0] * shapes[k][1]) for k in shapes)
    r["expected_shared_blocks"] = e_inter
    r["expected_share_of_smt"] = e_inter / n
    r["expected_jaccard"] = e_inter / (2 * n - e_inter) if 2 * n - e_inter > 0 else 1.0
    r["expected_note"] = "expected Jaccard as E[shared] / (2n - E[shared]) (a ratio of expectations, approximate)"
    overlaps["random"] = r
    dmaps = weight_change_maps(rec, b, [t.type for t in ts])
    if dmaps is not None:
        overlaps["weight_change"] = compare(select_blocks(dmaps, n, rule), "largest change under full fine-tuning",
                                            f"the n blocks whose mean |W_after - W_before| is largest after the "
                                            f"{rec.steps_done} full fine-tuning warm-up steps of this run (AdamW moves "
                                            "every weight by about lr per step early on, so after a short warm-up "
                                            "this ranking says little)")
    else:
        overlaps["weight_change"] = dict(label="largest change under full fine-tuning", jaccard=None,
                                         explain="only available in full warm-up mode (gradient-only leaves the "
                                                 "weights unchanged)")

    return _finish_analysis(rec, b, n, total, score, rule, type_order, ts, scores, sel, shares_type,
                            shares_layer, density_type, blocks_type, stability, overlaps)


def _finish_analysis(rec, b, n, total, score, rule, type_order, ts, scores, sel, shares_type, shares_layer,
                     density_type, blocks_type, stability, overlaps) -> SMTAnalysis:
    notes = list(rec.meta.get("notes", []))
    notes.append(f"Block size {b} x {b}; {n} of {total} blocks ({n / total:.2%} of the chosen matrices); "
                 f"score: {SCORE_LABELS[score]}; selection: {rule}.")
    return SMTAnalysis(block_size=b, n_blocks=n, total_blocks=total, score=score, rule=rule,
                       types=[t for t in type_order], targets=ts,
                       scores={k: v.numpy() for k, v in scores.items()}, selection=_selection_np(sel),
                       ranks=_ranks(scores), shares_type=shares_type, shares_layer=shares_layer,
                       density_type=density_type, blocks_type=blocks_type, stability=stability,
                       overlaps=overlaps, meta=dict(rec.meta), notes=notes)


def to_selection(rec: GradientRecord, block_size: int, n_blocks: int | None = None, score: str = "abs-mean",
                 rule: str = "global", types=None, density: float | None = None) -> dict:
    """``{target: (rows int32, cols int32)}`` for ``apply_method(m, "smt", smt_selection=..., block_size=b,
    targets=types)`` ("train with this selection")."""
    ts = _pick_targets(rec, types)
    b = _check_block_size(rec, block_size, ts)
    total = sum((t.d_out // b) * (t.d_in // b) for t in ts)
    n = _budget(total, n_blocks, density)
    sel = select_blocks(score_maps(rec, b, score, [t.type for t in ts]), n, rule)
    return {k: (r.to(torch.int32), c.to(torch.int32)) for k, (r, c) in sel.items() if r.numel()}


# ----------------------------------------------------------------------------- export


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{float(x):.{digits}g}")


def analysis_to_dict(an: SMTAnalysis, include_scores: bool = True, digits: int = 5) -> dict:
    meta = {k: v for k, v in an.meta.items() if k not in ("losses",)}
    out = dict(
        model=meta.get("model"), task=meta.get("task_name"), mode=meta.get("mode"),
        warmup_steps=meta.get("warmup_steps"), steps_done=meta.get("steps_done"),
        batch_size=meta.get("batch_size"), max_len=meta.get("max_len"), seed=meta.get("seed"),
        block_size=an.block_size, n_blocks=an.n_blocks, total_blocks=an.total_blocks,
        density=an.n_blocks / an.total_blocks, trainable_params=an.n_blocks * an.block_size ** 2,
        score=an.score, score_label=SCORE_LABELS[an.score], rule=an.rule, types=an.types,
        shares_type=an.shares_type, blocks_type=an.blocks_type, density_type=an.density_type,
        shares_layer={str(k): v for k, v in an.shares_layer.items()},
        stability=an.stability, overlaps=an.overlaps,
        warmup_losses=[_sig(v) for v in an.meta.get("losses", [])],
        warmup_seconds=meta.get("seconds"), warmup_cpu_seconds=meta.get("cpu_seconds"), from_cache=meta.get("from_cache"), notes=an.notes,
    )
    mats = []
    for t in an.targets:
        s = an.scores[t.name]
        r, c = an.selection[t.name]
        m = dict(name=t.name, layer=t.layer, type=t.type, shape=[t.d_out, t.d_in], grid=list(s.shape),
                 selected=[[int(a), int(b)] for a, b in zip(r.tolist(), c.tolist())],
                 max=_sig(s.max()), mean=_sig(s.mean()))
        if include_scores:
            m["scores"] = [[_sig(v, digits) for v in row] for row in s.tolist()]
        mats.append(m)
    out["matrices"] = mats
    return out


def analysis_to_json(an: SMTAnalysis, include_scores: bool = True) -> str:
    return json.dumps(analysis_to_dict(an, include_scores=include_scores), separators=(",", ":"))


def scores_csv(an: SMTAnalysis) -> str:
    """One row per block: target, layer, type, row, col, score, global rank, selected."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "layer", "type", "block_row", "block_col", "row_start", "col_start", "score", "rank",
                "selected"])
    b = an.block_size
    for t in an.targets:
        s, rk = an.scores[t.name], an.ranks[t.name]
        mask = _masks({t.name: an.selection[t.name]}, {t.name: s.shape})[t.name]
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                w.writerow([t.name, t.layer, t.type, i, j, i * b, j * b, f"{s[i, j]:.6g}", int(rk[i, j]),
                            int(mask[i, j])])
    return buf.getvalue()


def selection_csv(an: SMTAnalysis) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "layer", "type", "block_row", "block_col", "row_start", "col_start", "block_size",
                "score", "rank"])
    b = an.block_size
    for t in an.targets:
        r, c = an.selection[t.name]
        for i, j in zip(r.tolist(), c.tolist()):
            w.writerow([t.name, t.layer, t.type, i, j, i * b, j * b, b, f"{an.scores[t.name][i, j]:.6g}",
                        int(an.ranks[t.name][i, j])])
    return buf.getvalue()
