"""What the Lesson page draws of the room (pure: plotly figures and rows, no streamlit).

- ``answers_figure(tally, question, template)``: the room's answers to a question for the projector, from
  ``explorer.workshop.answers.tally``: a histogram for numbers (on a log axis when the answers' bins are
  log-spaced: every answer positive and spanning at least two powers of ten), bars for choices, with the revealed
  truth marked (a line at its value, its bar in the accent colour).  None for free text or no answers.
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


def _number_figure(t: dict, q, template) -> go.Figure:
    edges, counts, log = t["edges"], t["counts"], t["log"]
    unit = getattr(q, "unit", "") or ""
    if log:  # positions on a log axis; widths in its log10 units (plotly draws log-axis bars in log space)
        centres = [math.sqrt(a * b) for a, b in zip(edges[:-1], edges[1:])]
        widths = [math.log10(b) - math.log10(a) for a, b in zip(edges[:-1], edges[1:])]
    else:
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    labels = [bin_label(a, b, unit) for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=centres, y=counts, width=[0.94 * w for w in widths], marker_color=MUTED,
                           name="answers", text=labels, textposition="none",
                           hovertemplate="%{text}: %{y} answer(s)<extra></extra>"))
    truth = t.get("truth")
    if isinstance(truth, (int, float)) and (not log or truth > 0):
        x = math.log10(truth) if log else truth  # shapes on a log axis take log10 positions
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line=dict(color=ACCENT, width=4))
        fig.add_annotation(x=x, y=1, yref="paper", yanchor="bottom", showarrow=False,
                           text=f"truth: {_num(truth)}", font=dict(color=ACCENT))
        lo, hi = min(edges[0], truth), max(edges[-1], truth)
        pad = 0.05 * ((math.log10(hi) - math.log10(lo)) if log else (hi - lo) or 1.0)
        rng = [math.log10(lo) - pad, math.log10(hi) + pad] if log else [lo - pad, hi + pad]
        fig.update_xaxes(range=rng)
    fig.update_xaxes(type="log" if log else "linear",
                     title_text=(unit or "answer") + (" (log scale: each grid line is 10×)" if log else ""))
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
