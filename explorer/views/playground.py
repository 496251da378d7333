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
SMT's warm-up here is gradient-only (no weight moves), which is safe on it.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from explorer.methods import METHODS, apply_method
from explorer.methods.base import Adapter, KnobError, Layout
from explorer.targets import ALL_TYPES, find_targets
from explorer.urlstate import Field, Schema, knob_fields

MAX_CELLS = 512  # figures are reduced to at most this many cells per side
SIDES = ("a", "b")
# SMT's warm-up is driven by the page: gradient-only, ``warm`` batches (labelled on screen)
PAGE_SKIP_KNOBS = {"smt": ("warmup_steps", "warmup_mode")}
INSTRUCTOR_HIDDEN = ("seed",)  # hidden in instructor mode besides Knob.advanced
BUILTIN_MODELS = ("minilm", "smollm2-135m", "tiny-bert", "tiny-llama")


# ----------------------------------------------------------------------------- URL schema

def page_schema() -> Schema:
    """The playground's page-level settings (the knobs of each side come from :func:`side_schema`)."""
    methods = tuple(METHODS)
    return Schema([
        Field("model", "str", "minilm", max_len=200,
              help="minilm, smollm2-135m, tiny-bert, tiny-llama, a local folder or a hub id"),
        Field("m1", "choice", "lora", choices=methods, help="method on the left"),
        Field("m2", "choice", "none", choices=("none",) + methods, help="method on the right (none: one column)"),
        Field("wt", "choice", "v", choices=tuple(ALL_TYPES), help="matrix type drawn"),
        Field("layer", "int", 0, min=0, max=255, help="layer of the matrix drawn"),
        Field("warm", "int", 2, min=1, max=8, help="SMT warm-up batches (gradient-only)"),
    ])


def side_schema(method: str, side: str) -> Schema:
    """URL fields of one side's knobs: ``a_rank``, ``b_targets``, ..."""
    info = METHODS[method]
    return Schema(knob_fields(info.knobs, prefix=f"{side}_", skip=PAGE_SKIP_KNOBS.get(method, ())))


def side_knobs(values: dict, method: str, side: str) -> dict:
    """The knob dict for ``apply_method`` from a side's parsed URL values (prefix stripped)."""
    p = f"{side}_"
    return {k[len(p):]: v for k, v in values.items() if k.startswith(p) and
            k[len(p):] in {kn.name for kn in METHODS[method].knobs}}


def visible_knobs(method: str, instructor: bool):
    skip = set(PAGE_SKIP_KNOBS.get(method, ()))
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

    def target_names(self) -> list[str]:
        return [t.name for t in self.adapter.targets]


def _tensor_bytes(tensors) -> int:
    seen, n = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel()) if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        n += t.numel() * t.element_size()
    return n


def analytic_adapter_bytes(adapter: Adapter) -> int:
    """Tensor bytes an adapter would save, from shapes alone (config-only models on the meta device).

    LoRA/DoRA (peft's file): the trainable tensors (A, B, DoRA magnitudes, the head); the others: the tensors
    ``state_tensors()`` names (indices, deltas, frozen buffers, head); SMT before its selection: its budget of
    blocks (fp32) and their int32 block coordinates."""
    if adapter.method == "full":
        return _tensor_bytes(adapter.model.state_dict().values())
    try:
        tensors = list(adapter.state_tensors().values())
    except NotImplementedError:
        return sum(p.numel() * p.element_size() for _, p in adapter.trainable_parameters())
    n = sum(t.numel() * t.element_size() for t in tensors)
    if adapter.method == "smt" and adapter.needs_warmup:
        n += adapter.n_blocks * (adapter.block ** 2 * 4 + 2 * 4)
    return n


def adapter_size(adapter: Adapter, save_limit: int = 64 << 20) -> tuple[int, str]:
    """Bytes on disk: the files ``adapter.save()`` writes (measured), or, for full
    fine-tuning of a large model, the exact tensor bytes (header not counted); for a config-only model
    (meta device) the tensor bytes from the shapes (analytic, said so)."""
    if any(p.device.type == "meta" for p in adapter.model.parameters()):
        return analytic_adapter_bytes(adapter), ("analytic (config-only model, no weights): the tensor bytes "
                                                 "adapter.save() would write, from the shapes; file headers and the "
                                                 "JSON config (a few kB) not counted")
    if adapter.method == "full":
        n = _tensor_bytes(adapter.model.state_dict().values())
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


def warmup_batches(loaded, n: int, seed: int = 0):
    """Batches of the model's built-in task for SMT's warm-up, and where they came from."""
    from explorer.cli.core import smt_warmup_batches

    batches = smt_warmup_batches(loaded, n=n, batch_size=8, seed=seed)
    try:
        from explorer import data

        src = data.default_task_for(loaded.info.kind)
    except Exception:  # noqa: BLE001
        src = "the built-in task"
    return batches, src


def smt_grad_sums(loaded, targets: tuple[str, ...], n_batches: int, seed: int = 0) -> dict:
    """Summed gradients of the target weights over ``n_batches`` warm-up batches
    (gradient-only: no weight moves), cached per (model, targets, batches, seed)."""
    key = (_model_key(loaded), tuple(targets), int(n_batches), int(seed))
    with _LOCK:
        if key in _GRADS:
            _GRADS.move_to_end(key)
            return _GRADS[key]
    t0 = time.perf_counter()
    batches, src = warmup_batches(loaded, n_batches, seed)
    model = shared_weight_copy(loaded.model)
    adapter = apply_method(model, "smt", n_base=loaded.info.n_params, targets=list(targets), block_size=1,
                           blocks=1, warmup_mode="gradient-only", warmup_steps=max(1, len(batches)), seed=seed)
    adapter.begin_warmup()
    model.train()
    torch.manual_seed(seed)
    for b in batches:
        loss = model(**b).loss
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("smt: the warm-up loss is not finite")
        loss.backward()
        adapter.accumulate()
    model.eval()
    sums = {k: v.detach().clone() for k, v in adapter.grad_sums.items()}
    out = dict(sums=sums, batches=len(batches), task=src, seconds=time.perf_counter() - t0)
    with _LOCK:
        _GRADS[key] = out
        while len(_GRADS) > MAX_GRADS:
            _GRADS.popitem(last=False)
    return out


def summarize(loaded, method: str, knobs: dict, warm: int = 2, use_cache: bool = True) -> Summary:
    """Apply ``method`` with ``knobs`` to a shared-weight copy of ``loaded.model`` and measure it.

    Raises ``KnobError`` (clear message) for impossible knobs.
    """
    if method not in METHODS:
        raise KnobError(f"Unknown method '{str(method)[:40]}': choose from {', '.join(METHODS)}")
    knobs = dict(knobs)
    if method == "smt":
        knobs["warmup_mode"] = "gradient-only"
        knobs["warmup_steps"] = int(warm)
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
    if method == "smt" and getattr(loaded.info, "meta", False):
        from explorer.cli.core import smt_meta_note

        adapter.notes.append(smt_meta_note(adapter))
    elif method == "smt":
        from explorer.methods.smt import block_scores, select_blocks

        g = smt_grad_sums(loaded, tuple(adapter.knobs["targets"]), warm, adapter.knobs["seed"])
        scores = {k: block_scores(v, adapter.block, adapter.knobs["score"]) for k, v in g["sums"].items()}
        sel = select_blocks(scores, adapter.n_blocks, adapter.knobs["selection"])
        adapter.scores = scores
        adapter.install(sel)
        adapter.warmup_done = g["batches"]
        warm_info = dict(batches=g["batches"], task=g["task"], seconds=g["seconds"])
        adapter.notes.append(f"Playground warm-up: {g['batches']} batch(es) of '{g['task']}', gradient-only "
                             "(a labelled deviation: the public code fine-tunes fully for ~100 steps). "
                             "Training on the Fine-tune page runs the full warm-up.")
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


# ----------------------------------------------------------------------------- formula with numbers

def _n(x) -> str:
    return f"{int(x):,}"


def formula(s: Summary) -> tuple[list[str], int]:
    """Lines of the parameter formula with the real shapes filled in, and their total.

    The total is computed independently of the adapter (from shapes and knobs),
    so the page can show that it matches ``adapter.num_trainable()``.
    """
    a, k, m = s.adapter, s.knobs, s.method
    lines: list[str] = []
    total = 0
    groups: "OrderedDict[tuple, int]" = OrderedDict()
    for t in a.targets:
        groups[(t.type, t.d_out, t.d_in)] = groups.get((t.type, t.d_out, t.d_in), 0) + 1
    if m == "full":
        lines.append(f"all parameters of the model = {_n(s.total)}")
        return lines, s.total
    if m in ("lora", "dora"):
        r = k["rank"]
        for (ty, do, di), c in groups.items():
            per = r * (di + do) + (do if m == "dora" else 0)
            extra = f" + d_out {do}" if m == "dora" else ""
            lines.append(f"{ty}: r (d_in + d_out){' + d_out' if m == 'dora' else ''} = {r} × ({di} + {do}){extra} "
                         f"= {_n(per)}  × {c} matrices = {_n(per * c)}")
            total += per * c
    elif m == "lora-sp":
        r, f = k["rank"], k["freeze"]
        for (ty, do, di), c in groups.items():
            per = int(round((1 - f) * r * di)) + int(round((1 - f) * do * r))
            lines.append(f"{ty}: round((1 − {f:g}) × {r}×{di}) + round((1 − {f:g}) × {do}×{r}) = {_n(per)}  "
                         f"× {c} matrices = {_n(per * c)}")
            total += per * c
    elif m == "tied-lora":
        from explorer.methods.tied_lora import _group_key, expected_count

        sw, r = a.switches, k["rank"]
        L = a.n_layers
        by: "OrderedDict[str, dict]" = OrderedDict()
        for t in a.targets:
            by.setdefault(_group_key(t.type), {}).setdefault(t.type, (t.d_out, t.d_in))
        for gk, shapes in by.items():
            d_out = sum(v[0] for v in shapes.values())
            d_in = next(iter(shapes.values()))[1]
            n_ab = 1 if sw["tied"] else L
            parts = []
            if sw["train_A"]:
                parts.append(f"A {n_ab}×{r}×{d_in} = {_n(n_ab * r * d_in)}")
            if sw["train_B"]:
                parts.append(f"B {n_ab}×{d_out}×{r} = {_n(n_ab * d_out * r)}")
            if sw["train_u"]:
                parts.append(f"u {L}×{r} = {_n(L * r)}")
            if sw["train_v"]:
                parts.append(f"v {L}×{d_out} = {_n(L * d_out)}")
            fused = "+".join(shapes)
            lines.append(f"{fused} (fused, d_out = {d_out}): " + (" + ".join(parts) or "nothing trained"))
        total = expected_count(a.targets, r, sw)
    elif m == "smt":
        b, n = a.block, a.n_blocks
        lines.append(f"n_blocks × b² = {_n(n)} × {b}² = {_n(n * b * b)}  "
                     f"({n} of {_n(a.total_blocks)} blocks of {b}×{b} in the targets)")
        total = n * b * b
    elif m == "sparta":
        from explorer.methods.sparta import budget

        sizes = [t.d_out * t.d_in for t in a.targets]
        counts, _ = budget(k, s.total, s.head, sizes)
        if k.get("density", 0) > 0:
            lines.append(f"density {k['density']:g} of every target matrix, rounded per matrix")
        else:
            tot = int(round((1 - k["sparsity"]) * s.total))
            lines.append(f"budget: round((1 − sparsity {k['sparsity']:g}) × {_n(s.total)} all parameters) = "
                         f"{_n(tot)}, head included → {_n(tot - s.head)} deltas"
                         + ("" if sum(counts) == tot - s.head else
                            f"; this model's default is capped at 50 % of the {_n(sum(sizes))} target entries"))
            lines.append("split over the target matrices in proportion to their size (largest remainder):")
        per: "OrderedDict[tuple, int]" = OrderedDict()
        for t, c in zip(a.targets, counts):
            per[(t.type, t.d_out, t.d_in)] = per.get((t.type, t.d_out, t.d_in), 0) + c
        for (ty, do, di), c in groups.items():
            n = per[(ty, do, di)]
            lines.append(f"{ty}: {c} matrices of {do}×{di} → {_n(n)} entries ({n / (c * do * di):.4%})")
            total += n
    if s.head:
        lines.append(f"+ the new classification head, trained fully = {_n(s.head)}")
        total += s.head
    return lines, total


# ----------------------------------------------------------------------------- pictures (numbers only)

def reduce_mask(mask: np.ndarray, max_cells: int = MAX_CELLS, axis: int | None = None) -> tuple[np.ndarray, int]:
    """Fraction of True entries per cell, at most ``max_cells`` per side; returns (float32 grid, factor).

    ``axis=None``: square cells of factor x factor entries (a weight matrix).  ``axis=0`` / ``axis=1``: only the
    rows / only the columns are pooled (a LoRA factor, whose short rank side must keep one cell per index).
    """
    m = np.asarray(mask, dtype=np.float32)
    return _reduce(m, max_cells, "mean", axis)


def reduce_abs_max(mat: np.ndarray, max_cells: int = MAX_CELLS) -> tuple[np.ndarray, int]:
    """max |x| per cell (so a single changed entry stays visible)."""
    return _reduce(np.abs(np.asarray(mat, dtype=np.float32)), max_cells, "max")


def _reduce(m: np.ndarray, max_cells: int, how: str, axis: int | None = None) -> tuple[np.ndarray, int]:
    if m.ndim != 2:
        raise ValueError("a 2-D matrix is needed")
    if axis not in (None, 0, 1):
        raise ValueError("axis must be None, 0 or 1")
    f = max(1, math.ceil((max(m.shape) if axis is None else m.shape[axis]) / max_cells))
    if f == 1:
        return m.astype(np.float32, copy=False), 1
    fr, fc = (f if axis in (None, 0) else 1), (f if axis in (None, 1) else 1)
    R, C = math.ceil(m.shape[0] / fr), math.ceil(m.shape[1] / fc)
    pad = np.full((R * fr, C * fc), np.nan, dtype=np.float32)
    pad[: m.shape[0], : m.shape[1]] = m
    blocks = pad.reshape(R, fr, C, fc)
    out = np.nanmean(blocks, axis=(1, 3)) if how == "mean" else np.nanmax(blocks, axis=(1, 3))
    return out.astype(np.float32), f


def find_layout(s: Summary, wtype: str, layer: int) -> Layout | None:
    lays = s.layouts()
    for lay in lays:
        if lay.type == wtype and lay.layer == layer:
            return lay
    return None


@dataclass
class Delta:
    """An illustrative ΔW and its rank (exact from the factors, or a structural upper bound)."""

    matrix: np.ndarray
    note: str
    rank: int
    rank_exact: bool
    rank_text: str


def illustrative_delta(s: Summary, target: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """An illustration of the update ΔW this method can add to one target weight.

    At initialisation every method's ΔW is exactly zero (B = 0, deltas = 0), so
    the factors that start at zero are replaced by random values *only where
    training can change them*; the structure (rank, which entries) is the real
    one.  Returns (ΔW float32, a sentence saying what is illustrative).
    """
    a = s.adapter
    g = torch.Generator().manual_seed(seed)
    t = next(t for t in a.targets if t.name == target)
    do, di = t.d_out, t.d_in
    m = s.method
    factors = None
    with torch.no_grad():
        if m in ("lora", "dora"):
            mod = a.peft_model.base_model.model.get_submodule(target)
            A = mod.lora_A["default"].weight.detach().float()
            r = A.shape[0]
            B = torch.randn(do, r, generator=g) / math.sqrt(r)
            d = (k := a.knobs["alpha"] / a.knobs["rank"]) * (B @ A)
            factors = (B, A)
            note = (f"B starts at zero, so the real ΔW is 0 until training. Here B is random and A is its real "
                    f"initial value: ΔW = {k:g} · B A has rank ≤ {r}, yet every entry of W can change.")
            if m == "dora":
                note += " DoRA also rescales each output row by a trained magnitude (not drawn)."
        elif m == "lora-sp":
            mod = a.model.get_submodule(target)
            ma, mb = mod.masks()
            A = mod.a0.detach().float().clone()
            B = torch.zeros(do, mod.rank)
            B[torch.from_numpy(mb)] = torch.randn(int(mb.sum()), generator=g) / math.sqrt(mod.rank)
            d = mod.scaling * (B @ A)
            factors = (B, A)
            note = ("Only the trainable entries of B (drawn at random here; B starts at zero) can move: a row of "
                    "ΔW stays zero when its whole row of B is frozen. Rank ≤ r.")
        elif m == "tied-lora":
            mod = a.model.get_submodule(target)
            grp = mod.group
            A, B = (x.detach().float().clone() for x in grp.ab(t.layer))
            u = grp.u[t.layer].detach().float().clone()
            v = grp.v[t.layer, mod.rows].detach().float().clone()
            B = B[mod.rows]
            if float(B.abs().max()) == 0:
                B = torch.randn(B.shape, generator=g) / math.sqrt(B.shape[1])
            if float(v.abs().max()) == 0:
                v = torch.randn(v.shape, generator=g)
            if float(u.abs().max()) == 0:
                u = torch.randn(u.shape, generator=g)
            if float(A.abs().max()) == 0:
                A = torch.randn(A.shape, generator=g) / math.sqrt(A.shape[1])
            d = mod.scaling * ((v[:, None] * B) @ (u[:, None] * A))
            factors = (v[:, None] * B, u[:, None] * A)
            note = ("ΔW_l = diag(v_l) B diag(u_l) A with the shared A and B; factors that start at zero are drawn "
                    "at random here. Every layer's update lies in the same rank-r column space of B.")
        elif m in ("sparta", "smt"):
            mask = torch.from_numpy(next(l for l in s.layouts() if l.target == target).mask())
            d = torch.zeros(do, di)
            d[mask] = torch.randn(int(mask.sum()), generator=g)
            note = ("The deltas start at zero; here the selected " + ("entries" if m == "sparta" else "blocks") +
                    " hold random values: only they can change.")
        else:
            d = torch.randn(do, di, generator=g)
            note = "Full fine-tuning: every entry can change (random values drawn for illustration)."
    # kept per (target, seed) for delta_rank; summaries are shared by sessions, and this value is
    # deterministic for a given summary, target and seed, so concurrent writers store the same thing
    s.__dict__.setdefault("_factors", {})[(target, seed)] = factors
    return d.numpy().astype(np.float32), note


def delta_rank(s: Summary, target: str, d: np.ndarray, seed: int = 0) -> tuple[int, bool, str]:
    """Rank of the illustrative ΔW of ``target`` (call after :func:`illustrative_delta`).

    Low-rank methods: exact, from the r x r core of the factors (B = Q_B R_B,
    Aᵀ = Q_A R_A, so σ(B A) = σ(R_B R_Aᵀ)); no SVD of the full matrix, which is slow
    on a busy CPU.  Sparse and full updates: an upper bound from the structure
    (rows and columns that hold a changeable entry), said so in the text.
    """
    factors = s.__dict__.get("_factors", {}).get((target, seed))
    if factors is not None:
        B, A = factors
        rb = torch.linalg.qr(B.double(), mode="r").R
        ra = torch.linalg.qr(A.double().T, mode="r").R
        sv = torch.linalg.svdvals(rb @ ra.T)
        if sv.numel() == 0 or float(sv[0]) == 0:
            return 0, True, "rank 0"
        tol = float(sv[0]) * max(d.shape) * 1e-12
        r = int((sv > tol).sum())
        return r, True, f"rank {r}"
    nz = d != 0
    if s.method == "smt":
        b = s.adapter.block
        rows = int(nz.reshape(d.shape[0] // b, b, -1).any(axis=(1, 2)).sum()) * b
        cols = int(nz.reshape(d.shape[0], d.shape[1] // b, b).any(axis=(0, 2)).sum()) * b
    else:
        rows, cols = int(nz.any(axis=1).sum()), int(nz.any(axis=0).sum())
    r = min(rows, cols)
    return r, False, f"rank ≤ {r}"


def numerical_rank(mat: np.ndarray) -> int:
    sv = torch.linalg.svdvals(torch.from_numpy(np.asarray(mat, dtype=np.float32)))
    if sv.numel() == 0 or float(sv[0]) == 0:
        return 0
    tol = float(sv[0]) * max(mat.shape) * 1.2e-7
    return int((sv > tol).sum())


def tied_structure(s: Summary) -> dict:
    """What the Tied-LoRA diagram draws: layers, groups, which of A, B, u, v train."""
    a = s.adapter
    groups = []
    for key, grp in a.groups.items():
        groups.append(dict(key=key, A=list(grp.A.shape), B=list(grp.B.shape), u=list(grp.u.shape),
                           v=list(grp.v.shape)))
    return dict(n_layers=a.n_layers, switches=dict(a.switches), rank=a.knobs["rank"], groups=groups,
                layers=sorted({t.layer for t in a.targets}))


def fmt_bytes(n: float) -> str:
    """Binary units, said explicitly (KiB, MiB, GiB)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
