"""What the Methods playground draws for a :class:`~explorer.views.playground.Summary`, as numbers (pure Python, no
streamlit): the formula with the real shapes, the method's pictures (``explorer.methods.facts.Picture``) turned
into figures with masks reduced to at most ``MAX_CELLS`` cells per side, the illustrative ΔW and its rank.
Each method says what it draws (its module's ``formula_lines``, ``illustrative_delta``, ``overview_pictures``,
``matrix_pictures``); nothing here depends on which method it is.  ``explorer.views.playground`` re-exports all.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer.methods import METHODS
from explorer.methods.base import Layout
from explorer.methods.facts import Picture

if TYPE_CHECKING:  # pragma: no cover
    from explorer.views.playground import Summary

MAX_CELLS = 512  # figures are reduced to at most this many cells per side


# ----------------------------------------------------------------------------- formula with numbers

def formula(s: Summary) -> tuple[list[str], int]:
    """Lines of the parameter formula with the real shapes filled in, and their total.

    The total is computed independently of the adapter (from shapes and knobs, by the method's module:
    ``formula_lines``), so the page can show that it matches ``adapter.num_trainable()``.
    """
    return METHODS[s.method].formula_lines(s.adapter, s.total, s.head)


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


def illustrative_delta(s: Summary, target: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """An illustration of the update ΔW this method can add to one target weight.

    At initialisation every method's ΔW is exactly zero (B = 0, deltas = 0), so
    the factors that start at zero are replaced by random values *only where
    training can change them*; the structure (rank, which entries) is the real
    one (the method's module draws it: ``illustrative_delta``).  Returns (ΔW float32, a sentence saying what
    is illustrative).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        d, factors, note = METHODS[s.method].illustrative_delta(s.adapter, target, g)
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
    b = s.adapter.delta_granule  # SMT: whole b x b blocks (a block row counts b rows); others: single entries
    rows = int(nz.reshape(d.shape[0] // b, b, -1).any(axis=(1, 2)).sum()) * b
    cols = int(nz.reshape(d.shape[0], d.shape[1] // b, b).any(axis=(0, 2)).sum()) * b
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
    from explorer.methods.tied_lora import structure

    return structure(s.adapter)


# ----------------------------------------------------------------------------- drawn once per summary
#
# Summaries are cached and shared by every session (``explorer.views.playground.summarize``), and what is drawn
# from one is fixed by the summary and the view's inputs (matrix, seed, template).  So the pictures, their figures
# and the ΔW view are kept with the summary (the ``DRAWN_PER_SUMMARY`` most recently used views) and a slider
# moved back to a value anyone looked at redraws them without building them again.  The figures are shared: no
# one changes them in place (``figures.for_projector`` copies).

DRAWN_PER_SUMMARY = 8
_DRAWN_LOCK = threading.Lock()


def _drawn(s: Summary, key: tuple, build):
    """``build()`` once per summary and ``key`` (a small LRU kept on the summary)."""
    with _DRAWN_LOCK:
        cache = s.__dict__.setdefault("_drawn", OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = build()
    with _DRAWN_LOCK:
        value = cache.setdefault(key, value)  # two sessions built it at once: both show the first one
        cache.move_to_end(key)
        while len(cache) > DRAWN_PER_SUMMARY:
            cache.popitem(last=False)
    return value


def overview_pictures(s: Summary) -> list[Picture]:
    """The method's pictures that are not about one matrix (Tied-LoRA's sharing diagram)."""
    return _drawn(s, ("overview",), lambda: METHODS[s.method].overview_pictures(s.adapter))


def matrix_pictures(s: Summary, lay: Layout) -> list[Picture]:
    """What the method draws for one matrix, with the sentence beside each picture."""
    return _drawn(s, ("matrix", lay.target), lambda: METHODS[s.method].matrix_pictures(s.adapter, lay, s.warmup))


@dataclass
class DeltaView:
    """The playground's ΔW view of one matrix: the heatmap, the sentence that says what is illustrative, the rank."""

    figure: object
    note: str
    rank: int
    rank_exact: bool
    rank_text: str
    factor: int  # each drawn cell shows the largest |ΔW| of factor x factor entries


def delta_view(s: Summary, lay: Layout, seed: int = 0, tpl: str | None = "plotly_white") -> DeltaView:
    """:func:`illustrative_delta`, :func:`delta_rank` and its heatmap for matrix ``lay``, made once per summary,
    matrix, seed and template."""
    def build():
        from explorer.views import figures as F

        d, note = illustrative_delta(s, lay.target, seed=seed)
        red, f = reduce_abs_max(d)
        rank, exact, rank_text = delta_rank(s, lay.target, d, seed=seed)
        fig = F.delta_heatmap(red, tuple(lay.shape), f, f"ΔW added to W (illustrative values), {rank_text}", tpl)
        return DeltaView(fig, note, rank, exact, rank_text, f)

    return _drawn(s, ("delta", lay.target, int(seed), tpl), build)


def picture_figure(pic: Picture, tpl: str = "plotly_white"):
    """(figure, extra sentence) for a picture: masks are reduced to at most ``MAX_CELLS`` cells per side.  Built
    once per picture and template (kept on the picture, which :func:`matrix_pictures` keeps with its summary)."""
    with _DRAWN_LOCK:
        figs = pic.__dict__.setdefault("_figures", {})
        hit = figs.get(tpl)
    if hit is None:
        hit = _picture_figure(pic, tpl)
        with _DRAWN_LOCK:
            hit = figs.setdefault(tpl, hit)
    return hit


def _picture_figure(pic: Picture, tpl: str = "plotly_white"):
    from explorer.views import figures as F

    if pic.kind == "tied_diagram":
        return F.tied_diagram(pic.data["structure"], pic.title, tpl), ""
    if pic.kind == "lowrank_shapes":
        return F.lowrank_shapes(pic.data["d_out"], pic.data["d_in"], pic.data["rank"], pic.title, tpl), ""
    if pic.kind == "factor_masks":
        ra, fa = reduce_mask(pic.data["a"], axis=1)  # A: r x d_in, the rank rows stay
        rb, fb = reduce_mask(pic.data["b"], axis=0)  # B: d_out x r
        return F.factor_masks(ra, rb, pic.title, tpl, fa, fb), ""
    if pic.kind == "mask":
        mask = pic.data["mask"]
        frac, f = reduce_mask(mask)
        extra = f" Each drawn cell averages {f}×{f} entries." if f > 1 else ""
        return F.mask_heatmap(frac, mask.shape, f, pic.title, tpl), extra
    if pic.kind == "block_scores":
        return F.block_scores(pic.data["scores"], pic.data["selected"], pic.data["block"], pic.title, tpl), ""
    raise ValueError(f"unknown picture kind {pic.kind!r}")
