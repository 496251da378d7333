"""What the Lesson page draws of the room (pure: plotly figures and rows, no streamlit).

- ``answers_figure(tally, question, template)``: the room's answers to a question for the projector, from
  ``explorer.workshop.answers.tally``: a histogram for numbers (on a log scale when the answers' bins are
  log-spaced: every answer positive and spanning at least two powers of ten; each bar labelled with its range),
  bars for choices, with the revealed truth marked (a line at its value, its bar in the accent colour).  None
  for free text or no answers.
- ``agenda_rows(agenda)``: the agenda (``Room.agenda``) as table rows: planned and spent minutes per step.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from explorer.views.figures import COLORS, _base
from explorer.views.pages import BY_KEY
from explorer.views.svg_charts import _num

__all__ = ["answers_figure", "agenda_rows", "bin_label"]

MUTED = "#5C6B73"
ACCENT = COLORS[1]  # the truth: the take-home's accent colour


def bin_label(a: float, b: float, unit: str = "") -> str:
    """A bin's range in short numbers ("100k to 200k parameters")."""
    return f"{_num(a)} to {_num(b)}" + (f" {unit}" if unit else "")


def _answers_word(n: int) -> str:
    return f"{n} answer{'s' if n != 1 else ''}"


def _position(v: float, edges: list, log: bool) -> float:
    """Where ``v`` sits on the histogram's axis, in bars (bar i is centred on i; its bin spans i - 0.5 .. i + 0.5)."""
    f = math.log10 if log else float
    width = (f(edges[-1]) - f(edges[0])) / (len(edges) - 1)
    return (f(v) - f(edges[0])) / width - 0.5


def _number_figure(t: dict, q, template) -> go.Figure:
    """Equal-width bins side by side: the bins are equal in log10 when ``t["log"]`` (``answers.histogram``), so each
    bar's place and width along the axis are proportional to the logarithm of its values: a log axis, labelled with
    each bin's range (plotly cannot draw bar widths on its own log axis)."""
    edges, counts, log = t["edges"], t["counts"], t["log"]
    unit = getattr(q, "unit", "") or ""
    labels = [bin_label(a, b) for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=labels, y=counts, marker_color=MUTED, name="answers", text=[str(c) for c in counts],
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}" + (f" {unit}" if unit else "") + ": %{y} answer(s)<extra></extra>"))
    lo, hi = -0.5, len(counts) - 0.5
    truth = t.get("truth")
    if isinstance(truth, (int, float)) and (not log or truth > 0):
        x = _position(truth, edges, log)
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line=dict(color=ACCENT, width=4))
        fig.add_annotation(x=x, y=1, yref="paper", yanchor="bottom", showarrow=False,
                           text=f"truth: {_num(truth)}", font=dict(color=ACCENT))
        lo, hi = min(lo, x - 0.3), max(hi, x + 0.3)
    if log:
        ratio = edges[1] / edges[0]
        axis = f"{unit or 'answer'} (log scale: each bar spans ×{ratio:.3g})"
    else:
        axis = f"{unit or 'answer'} (each bar spans {_num(edges[1] - edges[0])})"
    fig.update_xaxes(type="category", title_text=axis, range=[lo, hi])
    fig.update_yaxes(title_text="answers", rangemode="tozero", dtick=max(1, math.ceil(max(counts or [1]) / 6)))
    return fig


def _choice_figure(t: dict, template) -> go.Figure:
    names = [c["choice"] for c in t["counts"]]
    counts = [c["count"] for c in t["counts"]]
    truth = t.get("truth")
    right = set(truth if isinstance(truth, list) else [truth]) if truth is not None else set()
    colors = [ACCENT if n in right else MUTED for n in names]
    labels = [f"{c} ✓ the truth" if n in right else str(c) for n, c in zip(names, counts)]
    fig = go.Figure(go.Bar(x=names, y=counts, marker_color=colors, name="answers", text=labels,
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}: %{y} answer(s)<extra></extra>"))
    fig.update_xaxes(title_text="choice", type="category")
    fig.update_yaxes(title_text="answers", rangemode="tozero", dtick=max(1, math.ceil(max(counts or [1]) / 6)))
    return fig


def answers_figure(t: dict, question, template: str | None = None, height: int = 360) -> go.Figure | None:
    """The room's answers (a ``tally``) to ``question`` (``explorer.workshop.lessons.Question``), or None when
    there is nothing to draw (no answers yet, or a free-text question: shown as a list)."""
    if not t or not t.get("n") or t["kind"] not in ("number", "choice"):
        return None
    fig = _number_figure(t, question, template) if t["kind"] == "number" else _choice_figure(t, template)
    fig.update_layout(showlegend=False, bargap=0.05)
    return _base(fig, template, f"The room's answers ({_answers_word(t['n'])})", height)


def agenda_rows(agenda: list[dict]) -> list[dict]:
    """``Room.agenda`` as rows for a table: step, title, page, planned and spent minutes, where the room is."""
    return [{"step": a["index"] + 1, "title": a["title"],
             "page": BY_KEY[a["page"]].title if a["page"] in BY_KEY else a["page"], "planned (min)": a["minutes"],
             "spent (min)": round(a["spent_s"] / 60, 1),
             "": "◀ now" if a["current"] else ("done" if a["visited"] else "")} for a in agenda]
