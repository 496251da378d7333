"""The Memory calculator's figures: stacked bars per method, the activation terms of one method, and estimated
vs measured bars side by side (hover: exact bytes; axis titles name the unit)."""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.memory.units import exact_bytes, fmt_bytes, in_unit
from explorer.views.figures import COLORS, _base
from explorer.views.memory_views import SHORT, TERMS, UNIT_WORDS



def stack_figure(rows: list[dict], unit: str, title: str, template: str = "plotly_white",
                 height: int = 440) -> go.Figure:
    """One stacked bar per method: weights, gradients, optimizer state, activations (in ``unit``).

    Hover shows the exact bytes of each term; the total is written above each bar.
    """
    good = [r for r in rows if "error" not in r]
    names = [SHORT.get(r["method"], r["method"]) for r in good]
    fig = go.Figure()
    for key, label, color in TERMS:
        fig.add_trace(go.Bar(
            x=names, y=[in_unit(r[key], unit) for r in good], name=label, marker_color=color,
            customdata=[[exact_bytes(r[key]), fmt_bytes(r[key], unit)] for r in good],
            hovertemplate="<b>%{x}</b><br>" + label + ": %{customdata[1]}<br>= %{customdata[0]}<extra></extra>"))
    tops = [in_unit(r["total_bytes"], unit) for r in good]
    fig.add_trace(go.Scatter(
        x=names, y=tops, mode="text", text=[fmt_bytes(r["total_bytes"], unit) for r in good], textposition="top center",
        showlegend=False, customdata=[exact_bytes(r["total_bytes"]) for r in good],
        hovertemplate="<b>%{x}</b><br>total: %{text}<br>= %{customdata}<extra></extra>"))
    ymax = max(tops) if tops else 1.0
    fig.update_yaxes(title_text=f"memory ({UNIT_WORDS[unit]})", range=[0, ymax * 1.15 or 1], rangemode="tozero")
    fig.update_xaxes(title_text=None)
    return _legend_top(_base(fig, template, title, height))


def _legend_top(fig: go.Figure) -> go.Figure:
    """Stacked bars: legend in stacking order above the plot, below the title."""
    top = 84 if fig.layout.title.text else 40
    fig.update_layout(barmode="stack", bargap=0.3, margin=dict(t=top),
                      legend=dict(orientation="h", y=1.0, x=0, xanchor="left", yanchor="bottom",
                                  traceorder="normal"))
    if fig.layout.title.text:
        fig.update_layout(title=dict(y=0.97, yanchor="top"))
    return fig


def activation_figure(row: dict, unit: str, title: str, template: str = "plotly_white",
                      height: int = 340) -> go.Figure:
    """What the detailed activation model counts for one method, term by term (largest first)."""
    terms = sorted(row.get("activation_terms", {}).items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(
        y=[k for k, _ in terms], x=[in_unit(v, unit) for _, v in terms], orientation="h", marker_color=COLORS[2],
        customdata=[[exact_bytes(v), fmt_bytes(v, unit)] for _, v in terms],
        hovertemplate="%{y}: %{customdata[1]}<br>= %{customdata[0]}<extra></extra>"))
    fig.update_xaxes(title_text=f"saved for backward ({UNIT_WORDS[unit]})")
    return _base(fig, template, title, height)


def compare_figure(rows: list[dict], unit: str, title: str, template: str = "plotly_white",
                   height: int = 420) -> go.Figure:
    """Estimated and measured stacked bars side by side for each measured method."""
    good = [r for r in rows if "error" not in r]
    x = [[SHORT.get(r["method"], r["method"]) for r in good for _ in (0, 1)], ["est.", "meas."] * len(good)]
    fig = go.Figure()
    for key, label, color in TERMS:
        ys, cd = [], []
        for r in good:
            for src in ("est", "meas"):
                v = r[src][key]
                ys.append(in_unit(v, unit))
                cd.append([exact_bytes(v), fmt_bytes(v, unit, 3)])
        fig.add_trace(go.Bar(x=x, y=ys, name=label, marker_color=color, customdata=cd,
                             hovertemplate="%{x}<br>" + label + ": %{customdata[1]}<br>= %{customdata[0]}"
                                           "<extra></extra>"))
    fig.update_yaxes(title_text=f"memory ({UNIT_WORDS[unit]})", rangemode="tozero")
    fig.update_xaxes(tickangle=0)
    return _legend_top(_base(fig, template, title, height))
