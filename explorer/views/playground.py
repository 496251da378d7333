"""Core computations of the Methods playground (pure Python, no streamlit).

``summarize(loaded, method, knobs)`` applies a method to a *shared-weight copy*
of a cached base model and returns a :class:`Summary`: exact total and trainable
counts, the adapter's size on disk (measured by saving it), optimizer-state and
gradient memory, per-target layouts (what can change), notes, and the formula
with the real shapes filled in.  Summaries are cached per (model, method, knobs)
so a slider moved back and forth redraws at once.

Why a shared-weight copy: ``fresh_copy`` deep-copies every weight (540 MB and
about a second for SmolLM2-135M).  Counting, masks and saving an untrained
adapter never write to the base weights, so :func:`shared_weight_copy` builds new
module and ``Parameter`` objects that *share storage* with the cached base: the
counts are exactly those of a deep copy (same modules, same shapes) and the
cached object's ``requires_grad`` flags, gradients and modules are untouched.
Never train or merge on it (training goes through ``explorer.models.fresh_copy``).
A method with a warm-up (SMT) is told to run it gradient-only here (its ``playground_knobs``: no weight moves),
which is safe on it.  What the page draws from a summary (formula, pictures, ΔW) is in
``explorer.views.playground_pictures`` (re-exported here).
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from explorer.engine.step import StepPlan, run_step
from explorer.errors import KnobError
from explorer.methods import METHODS, apply_method
from explorer.methods.base import Adapter, Layout
from explorer.models import model_names
from explorer.targets import ALL_TYPES
from explorer.urlstate import Field, Schema, knob_fields
from explorer.views.playground_pictures import (MAX_CELLS, DeltaView, delta_rank, delta_view,  # noqa: F401
                                                find_layout,  # (re-exported)
                                                formula, illustrative_delta, matrix_pictures, numerical_rank,
                                                overview_pictures, picture_figure, reduce_abs_max, reduce_mask,
                                                tied_structure)

SIDES = ("a", "b")
INSTRUCTOR_HIDDEN = ("seed",)  # hidden in instructor mode besides Knob.advanced


# ----------------------------------------------------------------------------- URL schema

def page_schema() -> Schema:
    """The playground's page-level settings (the knobs of each side come from :func:`side_schema`)."""
    methods = tuple(METHODS)
    return Schema([
        Field("model", "str", "minilm", max_len=200,
              help=f"{', '.join(model_names())}, a local folder or a hub id"),
        Field("m1", "choice", "lora", choices=methods, help="method on the left"),
        Field("m2", "choice", "none", choices=("none",) + methods, help="method on the right (none: one column)"),
        Field("wt", "choice", "v", choices=tuple(ALL_TYPES), help="matrix type drawn"),
        Field("layer", "int", 0, min=0, max=255, help="layer of the matrix drawn"),
        Field("warm", "int", 2, min=1, max=8, help="SMT warm-up batches (gradient-only)"),
    ])


def side_schema(method: str, side: str) -> Schema:
    """URL fields of one side's knobs: ``a_rank``, ``b_targets``, ..."""
    info = METHODS[method]
    return Schema(knob_fields(info.knobs, prefix=f"{side}_", skip=page_fixed_knobs(method)))


def side_knobs(values: dict, method: str, side: str) -> dict:
    """The knob dict for ``apply_method`` from a side's parsed URL values (prefix stripped)."""
    p = f"{side}_"
    return {k[len(p):]: v for k, v in values.items() if k.startswith(p) and
            k[len(p):] in {kn.name for kn in METHODS[method].knobs}}


def page_fixed_knobs(method: str) -> tuple[str, ...]:
    """Knobs the playground sets itself and does not show (the method says which: SMT's warm-up)."""
    return tuple(METHODS[method].playground_knobs(1))


def visible_knobs(method: str, instructor: bool):
    skip = set(page_fixed_knobs(method))
    return [k for k in METHODS[method].knobs
            if k.name not in skip and not (instructor and (k.advanced or k.name in INSTRUCTOR_HIDDEN))]


# ----------------------------------------------------------------------------- shared-weight copy

def shared_weight_copy(model: nn.Module) -> nn.Module:
    """New modules and new Parameter objects that share storage with ``model``.

    Safe for counting, drawing masks, saving an untrained adapter and a
    gradient-only warm-up; NOT for training or merging (those write weights).
    """
    memo: dict[int, Any] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in memo:
            memo[id(p)] = nn.Parameter(p.detach(), requires_grad=False)
    for _, b in model.named_buffers(remove_duplicate=False):
        if id(b) not in memo:
            memo[id(b)] = b.detach()
    m = copy.deepcopy(model, memo)
    m.eval()
    return m


# ----------------------------------------------------------------------------- summary

@dataclass
class Summary:
    model: str
    method: str
    knobs: dict
    adapter: Adapter
    total: int
    trainable: int
    head: int
    adapter_bytes: int
    adapter_bytes_how: str
    seconds: float
    warmup: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.trainable / max(1, self.total)

    @property
    def optimizer_bytes(self) -> int:
        """AdamW state: two fp32 moments per trainable parameter."""
        return 8 * self.trainable

    @property
    def gradient_bytes(self) -> int:
        """One fp32 gradient per trainable parameter."""
        return 4 * self.trainable

    @property
    def weight_bytes(self) -> int:
        """fp32 weights of the whole model (base + adapter tensors)."""
        return 4 * self.total

    def layouts(self) -> list[Layout]:
        return self.adapter.layouts()


def analytic_adapter_bytes(adapter: Adapter) -> int:
    """Tensor bytes an adapter would save, from shapes alone (config-only models on the meta device): the
    adapter says (``Adapter.analytic_bytes``: its state tensors; peft's trainable tensors; the whole state for
    full fine-tuning; SMT before its selection: its budget of blocks and their coordinates)."""
    return adapter.analytic_bytes()


def adapter_size(adapter: Adapter, save_limit: int = 64 << 20) -> tuple[int, str]:
    """Bytes on disk: the files ``adapter.save()`` writes (measured), or, for full
    fine-tuning of a large model, the exact tensor bytes (header not counted); for a config-only model
    (meta device) the tensor bytes from the shapes (analytic, said so)."""
    if any(p.device.type == "meta" for p in adapter.model.parameters()):
        return analytic_adapter_bytes(adapter), ("analytic (config-only model, no weights): the tensor bytes "
                                                 "adapter.save() would write, from the shapes; file headers and the "
                                                 "JSON config (a few kB) not counted")
    if adapter.saves_whole_model:
        n = adapter.analytic_bytes()
        if n > save_limit:
            return n, "exact tensor bytes of the full state (fp32); the safetensors header (a few kB) is not counted"
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="peftx-size-", dir=shm) as d:  # memory-backed where possible
        adapter.save(d)
        total = 0
        for root, _, files in os.walk(d):
            for f in files:
                total += os.path.getsize(os.path.join(root, f))
    return total, "measured: the files adapter.save() writes (safetensors + JSON config)"


_LOCK = threading.Lock()
_SUMMARIES: "OrderedDict[tuple, Summary]" = OrderedDict()
_GRADS: "OrderedDict[tuple, dict]" = OrderedDict()
MAX_SUMMARIES = 24
MAX_GRADS = 3


def _freeze_key(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze_key(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze_key(x)) for k, x in v.items()))
    return v


def _model_key(loaded) -> tuple:
    return (loaded.info.name, loaded.info.n_params, id(loaded.model))


def clear_cache() -> None:
    with _LOCK:
        _SUMMARIES.clear()
        _GRADS.clear()


WARMUP_BATCH = 8  # sentences per warm-up batch on the playground


def warmup_batches(loaded, n: int, seed: int = 0):
    """Batches of the model's built-in task for SMT's warm-up, and where they came from."""
    from explorer.engine.warmup import task_batches

    batches = task_batches(loaded, n=n, batch_size=WARMUP_BATCH, seed=seed)
    try:
        from explorer import data

        src = data.default_task_for(loaded.info.kind)
    except Exception:  # noqa: BLE001
        src = "the built-in task"
    return batches, src


def warmup_grad_sums(loaded, adapter: Adapter, n_batches: int, seed: int = 0) -> dict:
    """Summed gradients of a warm-up method's target weights over ``n_batches`` batches (gradient-only: no weight
    moves; the adapter's own warm-up protocol), cached per (model, ``adapter.warmup_signature()``, batches, seed)."""
    key = (_model_key(loaded), adapter.warmup_signature(), int(n_batches), int(seed))
    with _LOCK:
        if key in _GRADS:
            _GRADS.move_to_end(key)
            return _GRADS[key]
    t0 = time.perf_counter()
    batches, src = warmup_batches(loaded, n_batches, seed)
    model = adapter.model
    adapter.begin_warmup()
    model.train()
    torch.manual_seed(seed)
    plan = StepPlan(sink=adapter.accumulate)  # gradient-only: no optimizer, the sums are the result
    for b in batches:
        if not run_step(model, b, plan).ok:
            raise FloatingPointError(f"{adapter.method}: the warm-up loss is not finite")
    model.eval()
    sums = {k: v.detach().clone() for k, v in adapter.grad_sums.items()}
    out = dict(sums=sums, batches=len(batches), task=src, seconds=time.perf_counter() - t0)
    with _LOCK:
        _GRADS[key] = out
        while len(_GRADS) > MAX_GRADS:
            _GRADS.popitem(last=False)
    return out


def smt_grad_sums(loaded, targets: tuple[str, ...], n_batches: int, seed: int = 0) -> dict:
    """SMT's summed gradients of ``targets`` (cached; see :func:`warmup_grad_sums`)."""
    adapter = apply_method(shared_weight_copy(loaded.model), "smt", n_base=loaded.info.n_params,
                           targets=list(targets), block_size=1, blocks=1, warmup_mode="gradient-only",
                           warmup_steps=max(1, int(n_batches)), seed=seed)
    return warmup_grad_sums(loaded, adapter, n_batches, seed)


def summarize(loaded, method: str, knobs: dict, warm: int = 2, use_cache: bool = True) -> Summary:
    """Apply ``method`` with ``knobs`` to a shared-weight copy of ``loaded.model`` and measure it.

    Raises ``KnobError`` (clear message) for impossible knobs.
    """
    if method not in METHODS:
        raise KnobError(f"Unknown method '{str(method)[:40]}': choose from {', '.join(METHODS)}")
    knobs = {**knobs, **METHODS[method].playground_knobs(warm)}  # e.g. SMT's short gradient-only warm-up
    key = (_model_key(loaded), method, _freeze_key(knobs))
    if use_cache:
        with _LOCK:
            if key in _SUMMARIES:
                _SUMMARIES.move_to_end(key)
                return _SUMMARIES[key]
    t0 = time.perf_counter()
    model = shared_weight_copy(loaded.model)
    adapter = apply_method(model, method, n_base=loaded.info.n_params, **knobs)
    warm_info = {}
    if adapter.needs_warmup and getattr(loaded.info, "meta", False):
        adapter.notes.append(adapter.meta_note())
    elif adapter.needs_warmup:
        g = warmup_grad_sums(loaded, adapter, warm, adapter.knobs["seed"])
        adapter.finish_warmup(sums=g["sums"])
        adapter.warmup_done = g["batches"]
        warm_info = dict(batches=g["batches"], task=g["task"], seconds=g["seconds"])
        adapter.notes.append(adapter.shortcut_note(g["batches"], g["task"]))
    nbytes, how = adapter_size(adapter)
    s = Summary(model=loaded.info.name, method=method, knobs=dict(adapter.knobs), adapter=adapter,
                total=adapter.num_total(), trainable=adapter.num_trainable(), head=adapter.head_parameters(),
                adapter_bytes=nbytes, adapter_bytes_how=how, seconds=time.perf_counter() - t0,
                warmup=warm_info, notes=list(adapter.notes))
    if use_cache:
        with _LOCK:
            _SUMMARIES[key] = s
            while len(_SUMMARIES) > MAX_SUMMARIES:
                _SUMMARIES.popitem(last=False)
    return s


def default_counts(loaded) -> list[tuple[str, int | None, str]]:
    """(method, trainable count at default knobs or None, error message) for every method.

    Counts only (no adapter saved, no SMT warm-up: SMT's count before selection
    is exactly what trains after it, ``n_blocks x b^2`` + head).  Cached per model.
    """
    key = ("counts", _model_key(loaded))
    with _LOCK:
        if key in _SUMMARIES:
            return _SUMMARIES[key]
    out = []
    for name in METHODS:
        try:
            a = apply_method(shared_weight_copy(loaded.model), name, n_base=loaded.info.n_params)
            out.append((name, a.num_trainable(), ""))
        except Exception as exc:  # noqa: BLE001 - a default that does not fit this model is reported
            from explorer.errors import user_message

            out.append((name, None, user_message(exc)))
    with _LOCK:
        _SUMMARIES[key] = out
    return out


# ----------------------------------------------------------------------------- long integer sliders, captions

LADDER_STEPS = 200  # an integer slider with more stops than this becomes a log-scale select slider


def ladder(lo: int, hi: int) -> list[int]:
    """1-2-5 stops per decade from ``max(lo, 1)`` to ``hi`` (``hi`` included): each arrow key about doubles."""
    out, e = [], 0
    start = max(1, int(lo))
    while 10 ** e <= hi:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if start <= v <= hi:
                out.append(v)
        e += 1
    if hi >= start and (not out or out[-1] != hi):
        out.append(int(hi))
    return out


def smt_auto_blocks(loaded, values: dict) -> int | None:
    """How many blocks SMT's automatic budget (blocks = 0) trains at the page's current targets and block size."""
    from explorer.methods.smt_blocks import auto_blocks, resolve_block_size
    from explorer.targets import find_targets

    tg = find_targets(loaded.model, list(values.get("targets") or []))
    shapes = sorted({(t.d_out, t.d_in) for t in tg})
    if not shapes:
        return None
    b = resolve_block_size(int(values.get("block_size") or 0), shapes)
    if not b:
        return None
    total = sum((t.d_out // b) * (t.d_in // b) for t in tg)
    return auto_blocks(int(loaded.info.n_params), b, total)[0]


# knobs whose 0 means "automatic", and how to compute what the automatic value is for the page's settings
AUTO_VALUES = {("smt", "blocks"): smt_auto_blocks}


def int_slider_stops(method: str, knob_name: str, lo: int, hi: int, cur: int, loaded=None,
                     values: dict | None = None) -> tuple[list[int], dict] | None:
    """Stops for an integer knob's slider when its range is too long for steps of one (SMT's number of blocks:
    0 = auto, then 1, 2, ... 226,000): 1-2-5 stops from 1 to ``hi``, the current value, and, for a knob whose 0 is
    automatic, 0 placed where the automatic count lies, labelled "auto (N)", so the first arrow key from auto goes
    to the nearest stop *near the automatic budget*, not to 1.  Returns (options in slider order, labels), or None
    for a short range (a plain slider)."""
    lo, hi, cur = int(lo), int(hi), int(cur)
    if hi - lo <= LADDER_STEPS:
        return None
    stops = set(ladder(lo, hi))
    if lo <= cur <= hi and cur:
        stops.add(cur)
    labels: dict = {}
    auto = None
    fn = AUTO_VALUES.get((method, knob_name))
    if lo == 0 and fn is not None and loaded is not None:
        try:
            auto = fn(loaded, values or {})
        except Exception:  # noqa: BLE001 - the label only: the slider still works
            auto = None
    if lo == 0:
        labels[0] = f"auto ({auto:,})" if auto else "auto"
        if auto and auto != cur:
            stops.discard(auto)  # the auto stop stands for that count
    opts = sorted(stops)
    if lo == 0:
        where = auto if auto else 0
        opts.insert(sum(1 for v in opts if v < where), 0)
    return opts, labels


def warmup_caption(template: str, warm: int, seconds: float | None, model: str) -> str:
    """A warm-up method's playground caption with the time the warm-up really took on this server (``seconds``,
    None before it ran) instead of a promise: the template's sentence that starts with "The first view
    computes it" is replaced by a measured one."""
    text = template.format(warm=warm)
    cut = text.find("The first view computes it")
    if cut < 0:
        return text
    if seconds is None:
        said = (f"The first view computes it: {warm} forward and backward pass(es) of {WARMUP_BATCH} sentences "
                f"through all of {model} (the time it took is shown here when it is done); later moves reuse it.")
    else:
        said = (f"Computing it took {seconds:.1f} s on this server (measured: {warm} forward and backward pass(es) "
                f"of {WARMUP_BATCH} sentences through all of {model}); later moves reuse it.")
    return text[:cut] + said
