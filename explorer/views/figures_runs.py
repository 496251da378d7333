"""Plotly figure builders for fine-tune runs (live curves, memory breakdown, run comparison).

No streamlit.  Inputs are the per-step records of ``explorer.engine.train`` (dicts with
``step``, ``phase``, ``loss``, ``eval_accuracy``, ``weights_bytes``, ``grads_bytes``,
``optimizer_bytes``, ``activations_bytes``, ...) and the summaries of the run history.
Memory is drawn in MiB (2^20 bytes); accuracy in percent of held-out examples.
"""

from __future__ import annotations

import copy
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.methods import METHODS
from explorer.views.figures import COLORS, PCT_TICKS, _base, legend_below, log_axis

MIB = 2 ** 20
MEM_PARTS = (("weights_bytes", "weights", "#8A94A6"),
             ("grads_bytes", "gradients", COLORS[0]),
             ("optimizer_bytes", "optimizer state (AdamW)", COLORS[1]),
             ("activations_bytes", "activations saved for backward", COLORS[2]))

# one colour per method on every run chart (Compare's scatter, the class board): the two methods of the default
# sweep (LoRA, SMT) keep the first two colours; keys = explorer.methods.METHODS (checked by a test)
# (each method's COLOR_SLOT; the board's legend lists the methods in slot order)
METHOD_COLORS = {k: COLORS[m.color_slot % len(COLORS)]
                 for k, m in sorted(METHODS.items(), key=lambda km: km[1].color_slot)}

__all__ = ["live_curves", "memory_stack", "live_curves_built", "memory_stack_built", "memory_bar", "overlay_curves",
           "accuracy_scatter", "board_scatter", "method_color", "narrow_range_note", "METHOD_COLORS", "MEM_PARTS"]


def method_color(method: str, i: int = 0) -> str:
    """The colour of a method on the run charts (an unknown name: the ``i``-th colour)."""
    return METHOD_COLORS.get(method, COLORS[i % len(COLORS)])


def _train_recs(records):
    return [r for r in records if r.get("phase") in ("train", "warmup") and r.get("loss") is not None]


def _eval_recs(records):
    return [r for r in records if r.get("eval_accuracy") is not None]


# ----------------------------------------------------------------------------- the live charts, built fast
#
# A watched run's two charts are redrawn at every poll of its page (0.7 s) with one more step each time.  Building
# them through plotly's validating API costs ~50-120 ms each on a busy 2-core server; their layout does not depend
# on the data, so it is built that way once per shape (template, height, title, which traces) and kept
# (``_SKELETONS``); later figures put the records' numbers into a copy of it and skip plotly's validation
# (``_validate=False``), ~5 ms.  ``tests/core/test_figures.py`` checks that both ways give the same figure JSON.

_SKELETONS: dict[tuple, dict] = {}


def _refill(key: tuple, build, arrays: list[dict]) -> go.Figure:
    """A figure whose layout and trace styles are those ``build()`` makes for this ``key`` (built once) and whose
    traces hold ``arrays`` (one dict of x, y, ... per trace, in the order ``build`` adds them)."""
    skel = _SKELETONS.get(key)
    if skel is None:
        skel = build().to_dict()
        _SKELETONS[key] = skel
    if len(skel["data"]) != len(arrays):  # a shape this key does not describe: build it the slow way
        return build()
    data = [{k: arr.get(k, v) for k, v in tr.items()} for tr, arr in zip(skel["data"], arrays)]
    return go.Figure(dict(data=data, layout=copy.deepcopy(skel["layout"])), skip_invalid=False, _validate=False)


def live_curves(records: list[dict], template: str | None = "plotly_white", height: int = 340,
                title: str | None = "Training loss and held-out accuracy") -> go.Figure:
    """Loss per step (left axis) and held-out accuracy at each evaluation (right axis, %)."""
    tr = _train_recs(records)
    warm = [r for r in tr if r["phase"] == "warmup"]
    main = [r for r in tr if r["phase"] == "train"]
    ev = _eval_recs(records)
    arrays = ([dict(x=[r["step"] for r in warm], y=[r["loss"] for r in warm])] if warm else []) + [
        dict(x=[r["step"] for r in main], y=[r["loss"] for r in main]),
        dict(x=[r["step"] for r in ev], y=[100 * r["eval_accuracy"] for r in ev])]
    return _refill(("live_curves", template, height, title, bool(warm)),
                   lambda: live_curves_built(records, template, height, title), arrays)


def live_curves_built(records: list[dict], template: str | None = "plotly_white", height: int = 340,
                      title: str | None = "Training loss and held-out accuracy") -> go.Figure:
    """:func:`live_curves` through plotly's validating API (the reference the fast one is checked against)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    tr = _train_recs(records)
    warm = [r for r in tr if r["phase"] == "warmup"]
    main = [r for r in tr if r["phase"] == "train"]
    if warm:
        fig.add_trace(go.Scatter(x=[r["step"] for r in warm], y=[r["loss"] for r in warm], mode="lines",
                                 name="loss (SMT warm-up)", line=dict(color=COLORS[3], width=2),
                                 hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=[r["step"] for r in main], y=[r["loss"] for r in main], mode="lines",
                             name="training loss", line=dict(color=COLORS[0], width=2),
                             hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>"), secondary_y=False)
    ev = _eval_recs(records)
    fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[100 * r["eval_accuracy"] for r in ev],
                             mode="lines+markers", name="held-out accuracy", line=dict(color=COLORS[1], width=2),
                             marker=dict(size=8),
                             hovertemplate="step %{x}: accuracy %{y:.1f} %<extra></extra>"), secondary_y=True)
    fig.update_xaxes(title_text="optimizer step", rangemode="tozero")
    fig.update_yaxes(title_text="loss (cross-entropy, nats)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="held-out accuracy (%)", secondary_y=True, showgrid=False, **PCT_TICKS)
    fig.update_layout(hovermode="x unified")
    return legend_below(_base(fig, template, title, height))


def _memory_parts(records: list[dict]) -> tuple[list[dict], list[tuple]]:
    recs = [r for r in _train_recs(records) if r.get("weights_bytes") is not None]
    parts = list(MEM_PARTS)
    if any(r.get("activations_recomputed_bytes") for r in recs):
        parts[-1:] = [("activations_kept", "activations kept by the forward (checkpoints)", COLORS[2]),
                      ("activations_recomputed_bytes", "activations of the layer rebuilt in the backward",
                       COLORS[4])]
        recs = [dict(r, activations_kept=(r.get("activations_bytes") or 0) -
                     (r.get("activations_recomputed_bytes") or 0)) for r in recs]
    return recs, parts


def memory_stack(records: list[dict], template: str | None = "plotly_white", height: int = 320,
                 title: str | None = "Memory per step (byte account)") -> go.Figure:
    """Stacked areas: weights, gradients, optimizer state, activations (MiB) at each step.  With gradient
    checkpointing the activations are drawn as two areas: what the forward kept (the checkpoints and what lies
    outside the layers) and the layer rebuilt in the backward pass (``activations_recomputed_bytes``)."""
    recs, parts = _memory_parts(records)
    xs = [r["step"] for r in recs]
    arrays = [dict(x=xs, y=[(r.get(key) or 0) / MIB for r in recs]) for key, _, _ in parts]
    return _refill(("memory_stack", template, height, title, len(parts)),
                   lambda: memory_stack_built(records, template, height, title), arrays)


def memory_stack_built(records: list[dict], template: str | None = "plotly_white", height: int = 320,
                       title: str | None = "Memory per step (byte account)") -> go.Figure:
    """:func:`memory_stack` through plotly's validating API (the reference the fast one is checked against)."""
    recs, parts = _memory_parts(records)
    fig = go.Figure()
    for key, label, color in parts:
        fig.add_trace(go.Scatter(x=[r["step"] for r in recs], y=[(r.get(key) or 0) / MIB for r in recs],
                                 name=label, stackgroup="mem", mode="lines", line=dict(width=0.5, color=color),
                                 hovertemplate="step %{x}: %{y:,.2f} MiB<extra>" + label + "</extra>"))
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="MiB (2^20 bytes)", rangemode="tozero")
    fig.update_layout(hovermode="x unified")
    return legend_below(_base(fig, template, title, height))


def memory_bar(rows: list[dict], template: str = "plotly_white", height: int = 300,
               title: str | None = "Peak memory by part") -> go.Figure:
    """One stacked horizontal bar per run: rows are dicts with ``name`` and the four ``*_bytes`` keys."""
    fig = go.Figure()
    names = [r["name"] for r in rows]
    for key, label, color in MEM_PARTS:
        fig.add_trace(go.Bar(y=names, x=[(r.get(key) or 0) / MIB for r in rows], name=label, orientation="h",
                             marker_color=color, hovertemplate="%{y}: %{x:,.2f} MiB<extra>" + label + "</extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="MiB (2^20 bytes)")
    fig.update_yaxes(autorange="reversed")
    return legend_below(_base(fig, template, title, height))


def overlay_curves(runs: list[tuple[str, list[dict]]], what: str = "loss", template: str = "plotly_white",
                   height: int = 340, title: str | None = None) -> go.Figure:
    """Several runs' curves on one chart: ``what`` = "loss" (training loss) or "accuracy" (held-out, %)."""
    fig = go.Figure()
    for i, (name, recs) in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        if what == "loss":
            rr = _train_recs(recs)
            x, y, mode = [r["step"] for r in rr], [r["loss"] for r in rr], "lines"
            hov = "step %{x}: loss %{y:.4f}"
        else:
            rr = _eval_recs(recs)
            x, y, mode = [r["step"] for r in rr], [100 * r["eval_accuracy"] for r in rr], "lines+markers"
            hov = "step %{x}: %{y:.1f} %"
        fig.add_trace(go.Scatter(x=x, y=y, mode=mode, name=name, line=dict(color=color, width=2),
                                 hovertemplate=hov + "<extra>" + name + "</extra>"))
    fig.update_xaxes(title_text="optimizer step", rangemode="tozero")
    if what == "loss":
        fig.update_yaxes(title_text="training loss (nats)", rangemode="tozero")
    else:
        fig.update_yaxes(title_text="held-out accuracy (%)", **PCT_TICKS)
    if len(runs) > 3:  # many runs: the legend goes to the right, one line each, so the plot keeps its height
        fig.update_layout(legend=dict(orientation="v", x=1.02, y=1, xanchor="left", yanchor="top",
                                      font=dict(size=11)))
        return _base(fig, template, title or ("Training loss" if what == "loss" else "Held-out accuracy"), height)
    return legend_below(_base(fig, template, title or ("Training loss" if what == "loss" else "Held-out accuracy"),
                              height))


def accuracy_scatter(rows: list[dict], x: str = "trainable", template: str = "plotly_white", height: int = 360,
                     title: str | None = None) -> go.Figure:
    """Final accuracy (%) against trainable parameters (log x) or peak memory (MiB), one colour per method.

    Runs that differ only in their budget (a sweep: ``explorer.views.run_series.split_series``) are joined by one
    line per series; every other run is a single point (an open diamond) joined to nothing.  Runs of different
    models or tasks go to separate panels, one per (model, task), never onto one line.

    ``rows``: dicts with ``name``, ``method``, ``accuracy`` (0-1), ``trainable``, ``peak_bytes`` and, for series,
    ``id``, ``model``, ``task``, ``config``.
    """
    from explorer.views.run_series import panels, split_series

    def xval(r):
        return r.get("trainable") if x == "trainable" else (r["peak_bytes"] / MIB if r.get("peak_bytes") else None)

    rows = [dict(r, model=r.get("model") or "", task=r.get("task") or "") for r in rows
            if r.get("accuracy") is not None and xval(r)]
    series, singles = split_series(rows)
    cells = panels(rows) or [("", "")]
    n = len(cells)
    cols = 1 if n == 1 else 2
    nrows = -(-n // cols)
    multi = n > 1  # one panel per (model, task), each titled
    xtitle = "trainable parameters (log scale)" if x == "trainable" else "peak memory (MiB, from 0)"
    fig = make_subplots(rows=nrows, cols=cols, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.16 if nrows > 1 else 0.0,
                        subplot_titles=[f"{m} · {t}" for m, t in cells] if multi else None,
                        x_title=xtitle if multi else None)  # one x title under the panels (two would collide)
    where = {c: (i // cols + 1, i % cols + 1) for i, c in enumerate(cells)}
    shown: set = set()
    unit = "params" if x == "trainable" else "MiB"
    method_order = [m for m in METHOD_COLORS if any(r["method"] == m for r in rows)]
    method_order += [m for m in dict.fromkeys(r["method"] for r in rows) if m not in method_order]

    def add(pts, m, joined: bool, note: str):
        color = method_color(m, method_order.index(m))
        cell = (pts[0]["model"], pts[0]["task"])
        row, col = where.get(cell, (1, 1))
        pts = sorted(pts, key=xval)
        fig.add_trace(go.Scatter(
            x=[xval(r) for r in pts], y=[100 * r["accuracy"] for r in pts],
            mode="lines+markers" if joined else "markers", name=METHODS[m].short if m in METHODS else m,
            legendgroup=m, showlegend=m not in shown,
            text=[r.get("name", "") for r in pts],
            marker=dict(size=11, color=color, symbol="circle" if joined else "diamond-open",
                        line=dict(width=2, color=color)),
            line=dict(width=2, color=color),
            hovertemplate="%{text}<br>%{x:,.0f} " + unit + ": %{y:.1f} %<br>" + note + "<extra></extra>"),
            row=row, col=col)
        shown.add(m)

    for s in series:
        add(s.rows, s.method, True, f"one line: {s.method}, {s.describe}, runs that differ only in budget")
    for r in singles:
        add([r], r["method"], False, "a single run (no other run shares its settings)")
    for m, t in cells:
        row, col = where[(m, t)]
        xs = [xval(r) for r in rows if (r["model"], r["task"]) == (m, t)]
        own = None if multi else xtitle
        if x == "trainable":
            fig.update_xaxes(title_text=own, row=row, col=col, **log_axis(xs))
        else:
            fig.update_xaxes(title_text=own, row=row, col=col, rangemode="tozero")
        fig.update_yaxes(row=row, col=col, **PCT_TICKS)
    note = narrow_range_note([xval(r) for r in rows], "MiB") if x != "trainable" and n == 1 else None
    if note:  # the axis starts at zero: say the spread the dots hide in one column
        fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.0, y=0.02, xanchor="left",
                           yanchor="bottom", font=dict(size=12), align="left")
    fig.update_yaxes(title_text="final held-out accuracy (%)", row=1, col=1)
    for r in range(2, nrows + 1):
        fig.update_yaxes(title_text="final held-out accuracy (%)", row=r, col=1)
    legend_below(fig)
    default = "Accuracy against trainable parameters" if x == "trainable" else "Accuracy against peak memory"
    fig = _base(fig, template, title or default, height if nrows == 1 else height + 260 * (nrows - 1))
    if multi:  # the panels' titles sit under the figure's title
        fig.update_layout(margin=dict(t=76, b=40))
    return fig


def narrow_range_note(xs, unit: str, share: float = 0.1) -> str | None:
    """When every value lies within ``share`` of the largest (an axis from zero shows them as one column), one
    line that says the range in numbers: "all 4 runs between 111.8 and 112.2 MiB (0.4 MiB apart, 0.36 %)"."""
    xs = [float(v) for v in xs if v is not None]
    if len(xs) < 2 or max(xs) <= 0:
        return None
    lo, hi = min(xs), max(xs)
    if hi - lo > share * hi:
        return None
    if hi == lo:
        return f"all {len(xs)} runs at {hi:,.1f} {unit}"
    return (f"all {len(xs)} runs between {lo:,.1f} and {hi:,.1f} {unit}<br>({hi - lo:,.1f} {unit} apart, "
            f"{100 * (hi - lo) / hi:.2g} % of the largest)")


def board_scatter(entries: list[dict], x: str = "trainable", template: str = "plotly_white", height: int = 380,
                  title: str | None = None) -> go.Figure:
    """The class board: every shared run as a dot, final accuracy (%) against trainable parameters (log x) or
    peak memory (MiB), one colour per method (``METHOD_COLORS``); a dotted line per method joins the room's mean
    accuracy at each distinct budget, in budget order.

    ``entries``: dicts of ``explorer.workshop.board.Board.entries`` (``name``, ``method``, ``model``, ``task``, ``knobs``,
    ``trainable``, ``accuracy`` 0-1, ``peak_bytes``).
    """
    fig = go.Figure()
    key = "trainable" if x == "trainable" else "peak_bytes"
    scale = 1 if x == "trainable" else MIB
    unit = "params" if x == "trainable" else "MiB"
    methods = [m for m in METHOD_COLORS if any(e["method"] == m for e in entries)]
    methods += sorted({e["method"] for e in entries} - set(methods))
    for i, m in enumerate(methods):
        pts = [e for e in entries if e["method"] == m and e.get("accuracy") is not None and e.get(key)]
        if not pts:
            continue
        color = method_color(m, i)
        fig.add_trace(go.Scatter(
            x=[e[key] / scale for e in pts], y=[100 * e["accuracy"] for e in pts], mode="markers", name=m,
            legendgroup=m, marker=dict(size=11, color=color, line=dict(width=1, color="white"), opacity=0.85),
            customdata=[[e.get("name") or "anonymous", e.get("knobs") or "", f"{e.get('model')} · {e.get('task')}"]
                        for e in pts],
            hovertemplate="%{customdata[0]}: " + m + " %{customdata[1]}<br>%{customdata[2]}<br>%{x:,.0f} " + unit
                          + ": %{y:.1f} %<extra></extra>"))
        by_x: dict = {}
        for e in pts:
            by_x.setdefault(e[key], []).append(100 * e["accuracy"])
        if len(by_x) > 1:
            xs = sorted(by_x)
            fig.add_trace(go.Scatter(x=[v / scale for v in xs], y=[sum(by_x[v]) / len(by_x[v]) for v in xs],
                                     mode="lines", name=f"{m} (room mean)", legendgroup=m, showlegend=False,
                                     line=dict(width=1.5, dash="dot", color=color),
                                     customdata=[len(by_x[v]) for v in xs],
                                     hovertemplate=m + ": room mean %{y:.1f} % over %{customdata} run(s)"
                                                   "<extra></extra>"))
    xs = [e[key] / scale for e in entries if e.get(key) and e.get("accuracy") is not None]
    if x == "trainable":
        fig.update_xaxes(title_text="trainable parameters (log scale)", **log_axis(xs))
    else:  # from zero: 0.4 MiB between 111.8 and 112.2 MiB looks as small as it is; the spread is said in words
        fig.update_xaxes(title_text="peak memory of the run (MiB, byte account, from 0)", rangemode="tozero")
        note = narrow_range_note(xs, "MiB")
        if note:
            fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.0, y=0.02,
                               xanchor="left", yanchor="bottom", font=dict(size=12), align="left")
    fig.update_yaxes(title_text="final held-out accuracy (%)", **PCT_TICKS)
    if not fig.data:
        fig.add_annotation(text="No shared runs yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    legend_below(fig)
    default = "Room: accuracy against trainable parameters" if x == "trainable" else \
        "Room: accuracy against peak memory"
    return _base(fig, template, title or default, height)


def fmt_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "…"
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
