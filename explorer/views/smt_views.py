"""Figures and tables of the SMT block inspector (no streamlit).

Every builder takes an :class:`explorer.smt_inspector.analysis.SMTAnalysis` (scores are float32
grids of at most (d_out / b) x (d_in / b) cells: 96 x 36 for SmolLM2 at b = 16, far
below the ~512 x 512 limit of :mod:`explorer.views.figures`) and a plotly ``template``.
The colour range is fixed across every matrix of the analysis (``score_range``) so
two heatmaps compare; ``log=True`` draws log10 of the score on the same fixed range.
Selected blocks are outlined by one line trace (not one shape per block: fast with
thousands of blocks).  Hover shows the block's rows and columns, score, global rank
and whether it is selected.  ``uirevision`` keeps zoom across redraws.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.views.figures import COLORS, FONT, FROZEN, TRAINED
from explorer.methods.smt_blocks import SCORE_LABELS

SCALE = "Viridis"
OUTLINE = "#FF3B30"  # selected blocks: a red outline reads on every Viridis colour
TYPE_NAMES = {"q": "query", "k": "key", "v": "value", "o": "attention output", "gate": "MLP gate",
              "up": "MLP up", "down": "MLP down"}
SCORE_SHORT = {"abs-mean": "|mean|", "mean-abs": "mean|.|", "l1": "L1", "l2": "L2"}
INSET = 0.07  # outlines drawn slightly inside their cell, so two selected neighbours stay two squares
BERT_NAMES = {"q": "query", "k": "key", "v": "value", "o": "attention.output", "up": "intermediate",
              "down": "output"}


def type_name(t: str, family: str = "") -> str:
    names = BERT_NAMES if family == "bert" else TYPE_NAMES
    return f"{t} ({names.get(t, t)})"


def _layout(fig: go.Figure, template: str, height: int, title: str | None = None, rev: str = "smt") -> go.Figure:
    fig.update_layout(template=template, height=height, font=FONT, uirevision=rev,
                      title=dict(text=title, x=0.0, xanchor="left") if title else None,
                      margin=dict(l=10, r=10, t=48 if title else 20, b=10), paper_bgcolor="rgba(0,0,0,0)")
    return fig


# ----------------------------------------------------------------------------- colour range


def score_range(an, log: bool = False) -> tuple[float, float]:
    """(zmin, zmax) over every matrix of the analysis; in log mode log10 of the smallest positive and the largest."""
    vals = [np.asarray(s, np.float32) for s in an.scores.values()]
    hi = max(float(v.max()) for v in vals) if vals else 1.0
    if not log:
        return 0.0, hi if hi > 0 else 1.0
    pos = [float(v[v > 0].min()) for v in vals if (v > 0).any()]
    if not pos:
        return -1.0, 0.0
    lo = min(pos)
    return math.log10(lo), math.log10(hi) if hi > lo else math.log10(lo) + 1.0


def _z(scores: np.ndarray, log: bool, zmin: float) -> np.ndarray:
    s = np.asarray(scores, np.float32)
    if not log:
        return s
    with np.errstate(divide="ignore"):
        z = np.log10(np.where(s > 0, s, np.float32(10.0 ** zmin))).astype(np.float32)
    return np.maximum(z, np.float32(zmin))


def selected_mask(an, name: str) -> np.ndarray:
    s = an.scores[name]
    m = np.zeros(s.shape, dtype=bool)
    r, c = an.selection[name]
    if len(r):
        m[np.asarray(r, np.int64), np.asarray(c, np.int64)] = True
    return m


def _outline_xy(rows, cols, x0: float = 0.0, y0: float = 0.0):
    """One polyline (None-separated) that draws a square around every (row, col) cell."""
    xs, ys = [], []
    for r, c in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist()):
        h = 0.5 - INSET
        xa, xb, ya, yb = c - h + x0, c + h + x0, r - h + y0, r + h + y0
        xs += [xa, xb, xb, xa, xa, None]
        ys += [ya, ya, yb, yb, ya, None]
    return xs, ys


def _cb_title(an, log: bool) -> str:
    lab = SCORE_SHORT.get(an.score, an.score)
    return f"log10 {lab}" if log else lab


def _hover(an, name: str) -> tuple[np.ndarray, str]:
    s = np.asarray(an.scores[name], np.float32)
    rk = np.asarray(an.ranks[name])
    sel = selected_mask(an, name)
    b = an.block_size
    cd = np.stack([s, rk.astype(np.float32), sel.astype(np.float32)], axis=-1)
    tmpl = (f"block (row %{{y}}, col %{{x}}) of {b}×{b} entries<br>"
            + SCORE_LABELS[an.score] + ": %{customdata[0]:.4g}<br>global rank %{customdata[1]:,.0f} of "
            + f"{an.total_blocks:,}<br>selected (1 = yes): %{{customdata[2]:.0f}}<extra></extra>")
    return cd, tmpl


def block_heatmap(an, name: str, log: bool = False, template: str = "plotly_white", height: int = 440,
                  title: str | None = None) -> go.Figure:
    """Block scores of one matrix, selected blocks outlined, colour range shared by every matrix."""
    zmin, zmax = score_range(an, log)
    s = an.scores[name]
    cd, tmpl = _hover(an, name)
    cb = _cb_title(an, log)
    fig = go.Figure(go.Heatmap(z=_z(s, log, zmin), zmin=zmin, zmax=zmax, colorscale=SCALE, customdata=cd,
                               hovertemplate=tmpl, colorbar=dict(title=dict(text=cb), thickness=12),
                               xgap=0, ygap=0))
    r, c = an.selection[name]
    xs, ys = _outline_xy(r, c)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=OUTLINE, width=2.5), hoverinfo="skip",
                             name=f"selected ({len(r)})", showlegend=True))
    R, C = s.shape
    fig.update_xaxes(range=[-0.5, C - 0.5], title_text=f"input block column (× {an.block_size} entries)",
                     constrain="domain", showgrid=False, zeroline=False, dtick=1 if C <= 20 else None)
    fig.update_yaxes(range=[R - 0.5, -0.5], title_text=f"output block row (× {an.block_size})", scaleanchor="x",
                     constrain="domain", showgrid=False, zeroline=False, dtick=1 if R <= 20 else None)
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return _layout(fig, template, height, title, rev=f"heat-{name}")


def small_multiples(an, mtype: str, log: bool = False, template: str = "plotly_white", cols: int = 6,
                    cell_px: int = 150) -> go.Figure:
    """Every layer's matrix of one type, same colour range, selected blocks outlined."""
    ts = [t for t in an.targets if t.type == mtype]
    if not ts:
        raise ValueError(f"no matrix of type {mtype} in this analysis")
    n = len(ts)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    zmin, zmax = score_range(an, log)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.02, vertical_spacing=0.06 if rows > 1 else 0.0,
                        subplot_titles=[f"layer {t.layer} · {int(len(an.selection[t.name][0]))} sel." for t in ts])
    for i, t in enumerate(ts):
        rr, cc = i // cols + 1, i % cols + 1
        cd, tmpl = _hover(an, t.name)
        fig.add_trace(go.Heatmap(z=_z(an.scores[t.name], log, zmin), customdata=cd, hovertemplate=tmpl,
                                 coloraxis="coloraxis"), rr, cc)
        r, c = an.selection[t.name]
        xs, ys = _outline_xy(r, c)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=OUTLINE, width=1.2),
                                 hoverinfo="skip", showlegend=False), rr, cc)
        R, C = an.scores[t.name].shape
        fig.update_xaxes(range=[-0.5, C - 0.5], showticklabels=False, showgrid=False, zeroline=False,
                         row=rr, col=cc)
        fig.update_yaxes(range=[R - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False,
                         row=rr, col=cc)
    fig.update_layout(coloraxis=dict(colorscale=SCALE, cmin=zmin, cmax=zmax,
                                     colorbar=dict(title=dict(text=_cb_title(an, log)),
                                                   thickness=12)))
    fig.update_annotations(font_size=11)
    R, C = an.scores[ts[0].name].shape
    h = int(rows * cell_px * max(0.5, min(2.0, R / C))) + 60
    return _layout(fig, template, max(220, h), rev=f"grid-{mtype}")


# ----------------------------------------------------------------------------- where the budget goes


def budget_bars(an, template: str = "plotly_white", family: str = "", height: int = 340) -> go.Figure:
    """Selected blocks per matrix type (left) and per layer (right)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.1,
                        subplot_titles=("by matrix type", "by layer"))
    types = list(an.blocks_type)
    counts = [an.blocks_type[t] for t in types]
    dens = [an.density_type[t] for t in types]
    fig.add_trace(go.Bar(x=types, y=counts, marker_color=TRAINED, hovertext=[type_name(t, family) for t in types],
                         customdata=np.stack([np.array([an.shares_type[t] for t in types]), np.array(dens)], -1),
                         hovertemplate="%{hovertext}: %{y} blocks<br>%{customdata[0]:.1%} of the selection<br>"
                                       "%{customdata[1]:.2%} of this type's blocks<extra></extra>",
                         text=[f"{an.shares_type[t]:.0%}" for t in types], textposition="outside",
                         showlegend=False), 1, 1)
    layers = list(an.shares_layer)
    lc = [int(round(an.shares_layer[ly] * an.n_blocks)) for ly in layers]
    fig.add_trace(go.Bar(x=layers, y=lc, marker_color=COLORS[0], showlegend=False,
                         customdata=np.array([an.shares_layer[ly] for ly in layers]),
                         hovertemplate="layer %{x}: %{y} blocks (%{customdata:.1%})<extra></extra>"), 1, 2)
    fig.update_yaxes(title_text="selected blocks", row=1, col=1)
    fig.update_xaxes(title_text="matrix type", row=1, col=1)
    fig.update_xaxes(title_text="layer", dtick=1 if len(layers) <= 12 else None, row=1, col=2)
    top = max(counts) if counts else 1
    fig.update_yaxes(range=[0, top * 1.2 + 1], row=1, col=1)
    return _layout(fig, template, height, rev="bars")


def value_finding(an) -> str:
    """One sentence that checks the SMT paper's finding (value projections get the most blocks) on this run."""
    if not an.blocks_type:
        return ""
    top = max(an.blocks_type, key=lambda t: an.blocks_type[t])
    if "v" not in an.blocks_type:
        return "This analysis leaves the value matrices out, so the paper's finding cannot be checked here."
    v = an.blocks_type["v"]
    share = an.shares_type["v"]
    attn = {t: an.blocks_type[t] for t in ("q", "k", "v") if t in an.blocks_type}
    top_attn = max(attn, key=lambda t: attn[t]) if attn else None
    if top == "v":
        head = f"**Confirmed here:** the value matrices get the most blocks ({v}, {share:.0%} of the selection)."
    else:
        head = (f"**Not confirmed here:** {type_name(top)} gets the most blocks ({an.blocks_type[top]}, "
                f"{an.shares_type[top]:.0%}); the value matrices get {v} ({share:.0%}).")
    tail = ""
    if top_attn is not None and top != "v":
        tail = (" Among q, k and v alone, " + ("v leads, as the paper reports for q, k, v targets." if top_attn == "v"
                                                else f"{top_attn} leads."))
    dens = an.density_type.get("v")
    return (head + tail + f" Per block available, {dens:.1%} of the value blocks are chosen. The SMT paper "
            "(He et al., 2024) found V far ahead of Q and K on LLaMA after a real warm-up; random-weight tiny "
            "models need not show it.")


# ----------------------------------------------------------------------------- stability


def stability_figure(an, template: str = "plotly_white", height: int = 300) -> go.Figure:
    xs = [s["step"] for s in an.stability]
    ys = [s["jaccard"] for s in an.stability]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color=COLORS[0], width=3),
                               marker=dict(size=9),
                               hovertemplate="after %{x} warm-up steps: Jaccard %{y:.3f} with the final selection"
                                             "<extra></extra>"))
    fig.add_hline(y=0.9, line=dict(color=FROZEN, dash="dot"), annotation_text="0.9", annotation_position="top left")
    log_x = bool(xs) and max(xs) >= 20
    fig.update_xaxes(title_text="warm-up step t (log scale)" if log_x else "warm-up step t",
                     type="log" if log_x else "linear", tickmode="array", tickvals=xs, ticktext=[str(x) for x in xs])
    fig.update_yaxes(title_text="Jaccard(selection at t, final)", range=[0, 1.05])
    return _layout(fig, template, height, rev="stab")


def stability_sentence(an, threshold: float = 0.9) -> str:
    st = an.stability
    if not st:
        return ""
    final = st[-1]["step"]
    first = next((s for s in st if s["jaccard"] >= threshold), None)
    parts = []
    if len(st) > 1:
        parts.append(f"After {st[0]['step']} step{'s' if st[0]['step'] > 1 else ''} the selection shares a Jaccard "
                     f"of {st[0]['jaccard']:.2f} with the final one (after {final} steps).")
    if first is not None and first["step"] < final:
        parts.append(f"It reaches {threshold} at step {first['step']}: on this run about {first['step']} warm-up "
                     f"steps pick nearly the same blocks as {final}, so a shorter warm-up would do.")
    elif len(st) > 1:
        parts.append(f"It stays below {threshold} until the end: the choice is still moving, so more warm-up steps "
                     "may change which blocks train (the curve is 1.0 at the last step by definition).")
    else:
        parts.append("Only one checkpoint: raise the warm-up steps to see a curve.")
    return " ".join(parts)


# ----------------------------------------------------------------------------- overlaps and tables


def overlap_rows(an) -> list[dict]:
    """One row per comparison: Jaccard, shared blocks, share of SMT's blocks and an explanation."""
    rows = []
    for key, o in an.overlaps.items():
        row = dict(comparison=o["label"], jaccard=o.get("jaccard"), shared_blocks=o.get("shared_blocks"),
                   share_of_smt=o.get("share_of_smt"), explain=o.get("explain", ""))
        if key == "random" and o.get("expected_jaccard") is not None:
            row["expected_jaccard"] = o["expected_jaccard"]
            row["explain"] = (f"{o['explain']} Chance level: Jaccard ≈ {o['expected_jaccard']:.3f} "
                              f"({o['expected_shared_blocks']:.1f} shared blocks expected).")
        rows.append(row)
    return rows


def loss_figure(losses: list[float], template: str = "plotly_white", height: int = 220) -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(losses) + 1)), y=losses, mode="lines+markers",
                               line=dict(color=COLORS[1]), hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title_text="warm-up step")
    fig.update_yaxes(title_text="loss")
    return _layout(fig, template, height, rev="loss")


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML file of a figure (``explorer.views.figures.figure_html``: plotly.js inside, offline)."""
    from explorer.views.figures import figure_html as standalone

    return standalone(fig)


def selection_for_training(an) -> dict:
    """``{target: ([rows], [cols])}`` as plain int lists (JSON-able) for ``apply_method(..., smt_selection=)``."""
    return {k: ([int(x) for x in r], [int(x) for x in c]) for k, (r, c) in an.selection.items() if len(r)}
