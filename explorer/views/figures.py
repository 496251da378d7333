"""Plotly figure builders (no streamlit).

Every builder takes numbers (numpy float32, already reduced to at most ~512 x 512
cells, see ``explorer.views.playground.reduce_mask``) and a ``template``
(``"plotly_white"`` or ``"plotly_dark"``, see :func:`template_for`).  Colour
scales are theme-neutral (Viridis / Cividis work on both backgrounds) and their
ranges are fixed, so two pictures side by side compare.  Axes say their units.
``uirevision`` keeps zoom across redraws.  Pages pass ``template=None`` and draw with
Streamlit's chart theme (``ui.modes.show_fig``), which follows the app's theme.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# theme-neutral categorical colours (readable on white and on dark grey)
TRAINED = "#E4572E"  # trained: warm orange-red
FROZEN = "#8A94A6"  # frozen: mid grey
SHARED = "#2E86AB"  # shared / tied: blue
COLORS = ["#2E86AB", "#E4572E", "#17BEBB", "#F3A712", "#8E6CCF", "#76B041", "#D1495B",
          "#8C564B", "#5C6B73"]  # one per method on run charts (a method's COLOR_SLOT), two to spare
MASK_SCALE = "Viridis"
FONT = dict(size=13)


def template_for(theme_type: str | None) -> str:
    return "plotly_dark" if (theme_type or "").lower() == "dark" else "plotly_white"


# ----------------------------------------------------------------------------- projector mode

PROJ_FONT = 22  # px: tick labels, legends, hover; axis titles and titles are larger (read from ~10 m)
PROJ_SCALE = 1.3  # figure heights grow with the type
PROJ_TEXT = "#F4F6FA"
PROJ_BG = "#14171F"
PROJ_TITLE_CHARS = 40  # a title line at PROJ_FONT + 6 px: ~560 px, the narrowest chart column; longer ones wrap
PROJ_AXIS_CHARS = 36  # axis titles wrap too (plotly cuts, never wraps)
PROJ_TITLE_PAD = 8  # px between the figure's top edge and its title


def _projector_template() -> go.layout.Template:
    import plotly.io as pio

    t = go.layout.Template(pio.templates["plotly_dark"])  # one copy, built once
    t.layout.update(font=dict(size=PROJ_FONT, color=PROJ_TEXT), paper_bgcolor="rgba(0,0,0,0)",
                    plot_bgcolor=PROJ_BG, title=dict(font=dict(size=PROJ_FONT + 6, color=PROJ_TEXT)),
                    legend=dict(font=dict(size=PROJ_FONT)), hoverlabel=dict(font=dict(size=PROJ_FONT)))
    for ax in ("xaxis", "yaxis"):
        t.layout[ax].update(title=dict(font=dict(size=PROJ_FONT + 2)), tickfont=dict(size=PROJ_FONT),
                            gridcolor="#3A4150", zerolinecolor="#5A6270", linecolor="#8A94A6")
    return t


PROJECTOR_TEMPLATE = _projector_template()


def for_projector(fig: go.Figure, scale: float = PROJ_SCALE, copy: bool = True) -> go.Figure:
    """A projector version of a finished figure (a copy, so cached figures stay as they are; ``copy=False``:
    in place): the dark template, large type on every text (layout, axes and their titles, colour bars,
    legends, bar labels, annotations and subplot titles), a taller figure and room for the larger title.
    Trace colours and colour scales are kept."""
    if copy:
        fig = go.Figure(fig)
    lay = fig.layout
    fig.update_layout(template=PROJECTOR_TEMPLATE, font=dict(size=PROJ_FONT, color=PROJ_TEXT),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor=PROJ_BG)
    fig.update_layout(legend=dict(font=dict(size=PROJ_FONT)), hoverlabel=dict(font=dict(size=PROJ_FONT)))
    h0 = lay.height
    if h0:
        fig.update_layout(height=int(h0 * scale))
    lg = lay.legend
    if lg is not None and lg.orientation == "h" and (lg.y or 0) >= 1.0 and lg.yref != "container":
        # a legend above the plot sits in the top margin, where the large, wrapped title goes: at this size it
        # wraps to more rows than the margin holds and the two print over each other (and over the y ticks):
        # it moves under the whole figure instead
        legend_below(fig)
    if lay.title is not None and lay.title.text:
        text = wrap_title(lay.title.text)
        lines = text.count("<br>") + 1
        # the title hangs from the top edge; below it room for subplot titles (annotations at the plots' top)
        subtitles = any(a.yref == "paper" and a.y == 1.0 and a.yanchor == "bottom" for a in lay.annotations)
        line_px = 1.3 * (PROJ_FONT + 6)  # plotly's line height of the title's font
        top = int(PROJ_TITLE_PAD + lines * line_px + (PROJ_FONT + 44 if subtitles else 20))
        # with yanchor "top" plotly hangs a one-line title's glyphs about 0.2 of the font size above y, but a
        # wrapped title's first line about 0.9 of it above (measured in chromium; tests/browser/test_browser_modes.py
        # checks the title's box against the plot and the legend): y sits that far below the pad
        h = int((h0 or 450) * scale)
        y = 1.0 - (PROJ_TITLE_PAD + (0.9 if lines > 1 else 0.2) * (PROJ_FONT + 6)) / h
        fig.update_layout(title=dict(text=text, font=dict(size=PROJ_FONT + 6), yref="container", y=y,
                                     yanchor="top"),
                          margin=dict(t=max(int(lay.margin.t or 0), top)))
    elif any(a.yref == "paper" and a.yanchor == "bottom" and (a.y or 0) >= 0.99 for a in lay.annotations):
        fig.update_layout(margin=dict(t=max(int(lay.margin.t or 0), PROJ_FONT + 24)))  # subplot titles fit
    below = [a for a in lay.annotations if a.yref == "paper" and (a.y or 0) <= 0 and a.yanchor == "top"]
    for a in below:  # a shared x title under subplots (make_subplots' x_title): under the larger tick labels,
        a.update(yshift=-(PROJ_FONT + 14))  # with room for it and the legend below it
    if below:
        fig.update_layout(margin=dict(b=max(int(lay.margin.b or 0), 4 * PROJ_FONT + 40)))
    fig.update_layout(uniformtext=dict(minsize=PROJ_FONT - 4, mode="show"))  # bar labels never shrink away
    fig.update_xaxes(tickfont=dict(size=PROJ_FONT), title_font=dict(size=PROJ_FONT + 2), gridcolor="#3A4150",
                     zerolinecolor="#5A6270")
    fig.update_yaxes(tickfont=dict(size=PROJ_FONT), title_font=dict(size=PROJ_FONT + 2), gridcolor="#3A4150",
                     zerolinecolor="#5A6270")
    for ax in list(fig.select_xaxes()) + list(fig.select_yaxes()):
        if ax.title is not None and ax.title.text and len(ax.title.text) > PROJ_AXIS_CHARS:
            ax.title.text = wrap_title(ax.title.text, PROJ_AXIS_CHARS)
        if ax.type == "log" and ax.tickmode != "array":  # one labelled tick per decade (the 2s and 5s crowd);
            ax.update(dtick=1)  # axes with their own ticks (log_axis) keep them: a narrow range has no decade
    for tr in fig.data:
        cb = getattr(tr, "colorbar", None)
        if cb is not None and getattr(tr, "showscale", None) is not False:
            tr.update(colorbar=dict(tickfont=dict(size=PROJ_FONT), title=dict(font=dict(size=PROJ_FONT)),
                                    thickness=max(int(cb.thickness or 12), 18)))
        if getattr(tr, "textfont", None) is not None:
            tr.update(textfont=dict(size=PROJ_FONT))
        if tr.type == "bar":  # labels keep a readable size beside thin bars
            tr.update(constraintext="none", cliponaxis=False, textfont=dict(size=PROJ_FONT - 4))
    for a in fig.layout.annotations:
        size = a.font.size if a.font and a.font.size else 16
        a.update(font=dict(size=max(PROJ_FONT - 6, int(size * 1.5))))  # labels inside boxes still fit them
    return fig


def wrap_title(text: str, width: int = PROJ_TITLE_CHARS) -> str:
    """Break a long title into as few lines as ``width`` characters allow, of even length (at spaces; plotly
    cuts titles, never wraps them).  A single word longer than ``width`` stays whole."""
    def greedy(words, limit):
        lines, line = [], ""
        for word in words:
            if line and len(line) + 1 + len(word) > limit:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        return lines + [line]

    out = []
    for para in str(text).split("<br>"):
        words = para.split(" ")
        n = len(greedy(words, width))  # the fewest lines
        limit = -(-len(para) // n)  # even lines: the shortest limit that still needs only n lines
        while len(greedy(words, limit)) > n:
            limit += 1
        out.extend(greedy(words, limit))
    return "<br>".join(out)


# ----------------------------------------------------------------------------- shared layout pieces

PCT_TICKS = dict(range=[0, 101], tickmode="array", tickvals=[0, 20, 40, 60, 80, 100])


def short_number(v: float) -> str:
    """A tick label: at most 3 significant figures, k / M / B for thousands and up ("500", "2.5 k", "20 k",
    "1.2 M"); distinct values of a tick set stay distinct because the ticks are 1-2-5 or finer steps."""
    v = float(v)
    for scale, unit in ((1e9, " B"), (1e6, " M"), (1e3, " k"), (1.0, "")):
        if abs(v) >= scale or scale == 1.0:
            x = v / scale
            text = f"{x:.3g}"
            if "e" in text:  # 1000 k -> next unit never happens (checked above); keep plain digits
                text = f"{x:.0f}"
            return text + unit
    return f"{v:g}"  # pragma: no cover


_LOG_MANTISSAS = ((1,), (1, 3), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))


def _nice_step(span: float, want: int) -> float:
    raw = span / max(1, want)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag  # pragma: no cover


def log_axis(values, min_ticks: int = 3, max_ticks: int = 7) -> dict:
    """Settings for a log axis through ``values`` (all > 0) that always carries ``min_ticks`` or more labelled
    ticks: 1-2-5 (or finer) mantissas per decade, or even steps when the data span less than about a factor
    of two (plotly's own log ticks label only the decades, so a narrow range showed one label or none).
    Returns ``type``, ``range`` (log10 units, padded), ``tickmode``, ``tickvals`` and ``ticktext``."""
    vals = [float(v) for v in values if v is not None and float(v) > 0]
    if not vals:
        return dict(type="log")
    lo, hi = min(vals), max(vals)
    llo, lhi = math.log10(lo), math.log10(hi)
    pad = max(0.06, 0.08 * (lhi - llo))
    r0, r1 = llo - pad, lhi + pad
    vmin, vmax = 10 ** r0, 10 ** r1
    ticks: list[float] = []
    for mants in _LOG_MANTISSAS:
        cand = [m * 10 ** e for e in range(math.floor(r0) - 1, math.ceil(r1) + 1) for m in mants]
        cand = [c for c in cand if vmin <= c <= vmax]
        if len(cand) >= min_ticks:
            ticks = cand
            break
    if len(ticks) > max_ticks:  # many decades: every decade, or every k-th decade
        dec = [10.0 ** e for e in range(math.ceil(r0), math.floor(r1) + 1)]
        k = max(1, -(-len(dec) // max_ticks))
        ticks = dec[::k] if len(dec) >= 2 else ticks[:: -(-len(ticks) // max_ticks)]
    want = 4
    while len(ticks) < min_ticks and want <= 12:  # less than about a factor of two: even steps inside the range
        step = _nice_step(vmax - vmin, want)
        first = math.ceil(vmin / step) * step
        ticks = [first + i * step for i in range(int((vmax - first) / step + 1e-9) + 1)]
        want += 2
    text = [short_number(t) for t in ticks]
    if len(set(text)) < len(text):  # labels that round alike: say them in full
        text = [f"{t:,.0f}" if t >= 10 else f"{t:g}" for t in ticks]
    return dict(type="log", range=[r0, r1], tickmode="array", tickvals=ticks, ticktext=text)


def pct_axis(lo: float, hi: float, pad: float = 0.01, max_ticks: int = 7) -> dict:
    """A linear axis for accuracies given as fractions (0-1) from ``lo`` to ``hi``: even steps of 0.5, 1, 2,
    2.5, 5, 10 or 20 points, each label printed with the decimals its step needs, so no two labels read alike
    ("92.5 %, 93.0 %, 93.5 %", never "93 %, 93 %").  Returns ``range``, ``tickmode``, ``tickvals``,
    ``ticktext``."""
    lo, hi = max(0.0, float(lo) - pad), min(1.0, float(hi) + pad)
    if hi - lo < 0.01:
        mid = (hi + lo) / 2
        lo, hi = max(0.0, mid - 0.005), min(1.0, mid + 0.005)
    step = None
    for s in (0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2):
        if (hi - lo) / s <= max_ticks - 1:
            step = s
            break
    step = step or 0.25
    first = math.ceil(lo / step - 1e-9) * step
    ticks = [round(first + i * step, 6) for i in range(int((hi - first) / step + 1e-9) + 1)]
    decimals = 0 if abs(step * 100 - round(step * 100)) < 1e-9 else 1  # steps of 0.5 or 2.5 points: one decimal
    text = [f"{100 * t:.{decimals}f} %" for t in ticks]
    return dict(range=[lo, hi], tickmode="array", tickvals=ticks, ticktext=text)


def figure_html(fig: go.Figure) -> str:
    """A chart as one self-contained HTML file: plotly.js is inlined (about 4.7 MB), so the file opens offline,
    in a room without internet, years later; no script is fetched from a CDN."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})


def legend_below(fig: go.Figure, rows: int = 1) -> go.Figure:
    """A horizontal legend under the whole figure (anchored to the container's bottom edge, below the x-axis
    title, which therefore never sits under it), with the bottom margin it needs."""
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0.0,
                                  xanchor="left"))
    fig.update_layout(meta=dict(legend_rows=rows))
    return fig


def _base(fig: go.Figure, template: str | None, title: str | None, height: int, rev: str = "keep") -> go.Figure:
    """Common layout.  ``template=None`` leaves styling to the renderer (Streamlit's chart theme follows
    the app's light/dark theme; setting a plotly template by name costs a deep copy per figure)."""
    if template:
        fig.update_layout(template=template)
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left") if title else None,
                      height=height, margin=dict(l=10, r=10, t=48 if title else 16, b=10), font=FONT,
                      uirevision=rev, paper_bgcolor="rgba(0,0,0,0)")
    return fig


def mask_heatmap(frac: np.ndarray, shape: tuple[int, int], factor: int, title: str, template: str = "plotly_white",
                 colorbar_title: str = "trainable<br>fraction", zmax: float = 1.0, height: int = 380) -> go.Figure:
    """Fraction of entries of W that can change, per drawn cell (cell = factor x factor entries)."""
    frac = np.asarray(frac, dtype=np.float32)
    d_out, d_in = shape
    xs = (np.arange(frac.shape[1]) * factor).astype(np.int32)
    ys = (np.arange(frac.shape[0]) * factor).astype(np.int32)
    hover = ("input column %{x}, output row %{y}<br>" + colorbar_title.replace("<br>", " ") + ": %{z:.3f}"
             + (f"<br>(one cell = {factor}×{factor} entries)" if factor > 1 else "") + "<extra></extra>")
    fig = go.Figure(go.Heatmap(z=frac, x=xs, y=ys, zmin=0.0, zmax=zmax, colorscale=MASK_SCALE,
                               colorbar=dict(title=dict(text=colorbar_title), thickness=12), hovertemplate=hover))
    fig.update_yaxes(autorange="reversed", title_text=f"output row (0…{d_out - 1})", scaleanchor="x",
                     constrain="domain")
    fig.update_xaxes(title_text=f"input column (0…{d_in - 1})", constrain="domain")
    return _base(fig, template, title, height)


def factor_masks(ma: np.ndarray, mb: np.ndarray, title: str, template: str = "plotly_white",
                 factor_a: int = 1, factor_b: int = 1, height: int = 380) -> go.Figure:
    """LoRA-SP: which entries of A (r x d_in) and B (d_out x r) train (orange, 1) or are frozen (grey, 0).

    ``ma``/``mb`` may be reduced along their long side only (``reduce_mask(.., axis=)``: ``factor_a`` columns of
    A, ``factor_b`` rows of B per cell); a cell's colour is then its trained fraction, from grey (0) to orange (1),
    with a colour bar.  The rank side is never reduced, so its axis reads 0 … r-1.
    """
    ma, mb = np.asarray(ma, np.float32), np.asarray(mb, np.float32)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.17,
                        subplot_titles=("B (d_out × r)" + (f", {factor_b} rows a cell" if factor_b > 1 else ""),
                                        "A (r × d_in)" + (f", {factor_a} columns a cell" if factor_a > 1 else "")))
    binary = _is_binary(ma, mb)
    scale = [[0.0, FROZEN], [1.0, TRAINED]]  # frozen grey -> trained orange, mixed cells in between
    what = "trained" if binary else "trained fraction"
    fig.add_trace(go.Heatmap(z=mb, zmin=0, zmax=1, colorscale=scale, showscale=False,
                             hovertemplate="B row %{y}, rank index %{x}: " + what + " %{z:.2f}"
                             + (f" (one cell = {factor_b} rows)" if factor_b > 1 else "") + "<extra></extra>",
                             y=np.arange(mb.shape[0]) * factor_b),
                  1, 1)
    fig.add_trace(go.Heatmap(z=ma, zmin=0, zmax=1, colorscale=scale, showscale=not binary,
                             colorbar=dict(title=dict(text="trained<br>fraction"), thickness=12),
                             hovertemplate="A rank index %{y}, column %{x}: " + what + " %{z:.2f}"
                             + (f" (one cell = {factor_a} columns)" if factor_a > 1 else "") + "<extra></extra>",
                             x=np.arange(ma.shape[1]) * factor_a),
                  1, 2)
    fig.update_yaxes(autorange="reversed")
    r = ma.shape[0]
    rank_ticks = dict(tickmode="linear", tick0=0, dtick=1 if r <= 16 else max(1, r // 8))
    fig.update_xaxes(title_text="rank index", row=1, col=1, **rank_ticks)
    fig.update_yaxes(title_text="output row", row=1, col=1)
    fig.update_xaxes(title_text="input column", row=1, col=2)
    fig.update_yaxes(title_text="rank index", row=1, col=2, **rank_ticks)
    return _base(fig, template, title, height)


def _is_binary(*arrs) -> bool:
    return all(np.isin(np.asarray(a), (0, 1)).all() for a in arrs)


def delta_heatmap(absval: np.ndarray, shape: tuple[int, int], factor: int, title: str,
                  template: str = "plotly_white", height: int = 380) -> go.Figure:
    """|ΔW| relative to its largest entry (0…1, illustrative values), max-pooled per cell."""
    a = np.asarray(absval, dtype=np.float32)
    top = float(np.nanmax(a)) if a.size else 0.0
    rel = a / top if top > 0 else a
    return mask_heatmap(rel, shape, factor, title, template, colorbar_title="|ΔW| / max<br>(illustrative)",
                        height=height)


def block_scores(scores: np.ndarray, selected: np.ndarray, block: int, title: str,
                 template: str = "plotly_white", height: int = 380) -> go.Figure:
    """SMT: warm-up score per b x b block (relative to the largest score of all targets), selected ones marked."""
    s = np.asarray(scores, dtype=np.float32)
    fig = go.Figure(go.Heatmap(z=s, zmin=0.0, zmax=1.0, colorscale="Cividis",
                               colorbar=dict(title=dict(text="score /<br>max score"), thickness=12),
                               hovertemplate="block row %{y}, block col %{x}<br>score / max: %{z:.3f}<extra></extra>"))
    rr, cc = np.nonzero(np.asarray(selected, bool))
    if rr.size:
        fig.add_trace(go.Scatter(x=cc, y=rr, mode="markers", name="selected",
                                 marker=dict(symbol="square-open", size=max(6, min(22, 360 // max(s.shape))),
                                             color=TRAINED, line=dict(width=2.5)),
                                 hovertemplate="selected block (%{y}, %{x})<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text=f"block row (each {block} output rows)", scaleanchor="x",
                     constrain="domain")
    fig.update_xaxes(title_text=f"block column (each {block} input columns)", constrain="domain")
    if max(s.shape) <= 12:  # whole blocks only on small grids
        fig.update_xaxes(dtick=1)
        fig.update_yaxes(dtick=1)
    fig.update_layout(showlegend=False)
    return _base(fig, template, title, height)


def lowrank_shapes(d_out: int, d_in: int, r: int, title: str, template: str = "plotly_white",
                   b_label: str = "B", a_label: str = "A", height: int = 300) -> go.Figure:
    """W (d_out x d_in) next to B (d_out x r) and A (r x d_in), drawn to scale (r at least a thin sliver)."""
    fig = go.Figure()
    s = 1.0 / max(d_out, d_in)
    w, h = d_in * s, d_out * s
    rr = max(r * s, 0.012)
    x0 = 0.0
    shapes = [
        (x0, 0, w, h, FROZEN, f"W  {d_out}×{d_in}<br>frozen"),
        (w + 0.25, 0, w + 0.25 + rr, h, TRAINED, f"{b_label}<br>{d_out}×{r}"),
        (w + 0.35 + rr, h - rr, w + 0.35 + rr + w, h, TRAINED, f"{a_label}  {r}×{d_in}"),
    ]
    for (xa, ya, xb, yb, col, lab) in shapes:
        fig.add_shape(type="rect", x0=xa, y0=ya, x1=xb, y1=yb, fillcolor=col, opacity=0.75, line=dict(width=1))
    fig.add_annotation(x=w / 2, y=h / 2, text=shapes[0][5], showarrow=False, font=dict(size=13, color="white"))
    fig.add_annotation(x=w + 0.25 + rr / 2, y=-0.06, text=shapes[1][5], showarrow=False)
    fig.add_annotation(x=w + 0.35 + rr + w / 2, y=h - rr - 0.06, text=shapes[2][5], showarrow=False)
    fig.add_annotation(x=w + 0.125, y=h / 2, text="+", showarrow=False, font=dict(size=22))
    fig.update_xaxes(visible=False, range=[-0.05, 2 * w + 0.45 + rr])
    fig.update_yaxes(visible=False, range=[-0.15, h + 0.05], scaleanchor="x")
    return _base(fig, template, title, height)


def tied_diagram(structure: dict, title: str, template: str = "plotly_white", max_layers: int = 8,
                 height: int = 380) -> go.Figure:
    """Tied-LoRA: shared A and B (one box each, or one per layer when untied), per-layer u and v.

    Orange = trained, grey = frozen; arrows show which layers use the shared tensors.
    """
    sw = structure["switches"]
    layers = structure["layers"]
    shown = layers if len(layers) <= max_layers else layers[: max_layers - 2] + layers[-1:]
    gap = len(layers) > max_layers
    fig = go.Figure()
    n = len(shown) + (1 if gap else 0)
    ys = {l: n - 1 - i for i, l in enumerate(shown[:-1] if gap else shown)}
    if gap:
        ys[shown[-1]] = 0
    col = lambda k: TRAINED if sw[k] else FROZEN  # noqa: E731
    shapes, notes = [], []  # collected as dicts and set once (plotly's add_* one by one is quadratic)

    def box(x0, x1, y0, y1, color, text, dash=None):
        shapes.append(dict(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=color, opacity=0.85,
                           line=dict(width=1, dash=dash or "solid")))
        notes.append(dict(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False,
                          font=dict(color="white", size=12)))

    r = structure["rank"]
    g0 = structure["groups"][0] if structure["groups"] else dict(A=[1, r, 0], B=[1, 0, r])
    if sw["tied"]:
        mid = (n - 1) / 2
        box(0.0, 1.2, mid + 0.15, mid + 0.85, col("train_A"), f"A (shared)<br>{r}×{g0['A'][2]}")
        box(0.0, 1.2, mid - 0.85, mid - 0.15, col("train_B"), f"B (shared)<br>{g0['B'][1]}×{r}")
        for l, y in ys.items():
            notes.append(dict(x=3.0, y=y + 0.4, ax=1.25, ay=mid, xref="x", yref="y", axref="x", ayref="y",
                              showarrow=True, arrowhead=2, arrowwidth=1.2, arrowcolor=SHARED, text=""))
    for l, y in ys.items():
        if not sw["tied"]:
            box(1.5, 2.8, y + 0.05, y + 0.75, col("train_A"), f"A_{l}, B_{l}")
        box(3.0, 4.1, y + 0.05, y + 0.75, col("train_u"), f"u_{l}<br>{r}")
        box(4.3, 5.6, y + 0.05, y + 0.75, col("train_v"), f"v_{l}<br>{g0['v'][1] if g0.get('v') else '?'}")
        notes.append(dict(x=5.8, y=y + 0.4, text=f"layer {l}: ΔW = diag(v_{l}) B diag(u_{l}) A", showarrow=False,
                          xanchor="left", font=dict(size=12)))
    if gap:
        notes.append(dict(x=4.1, y=0.9, text=f"⋮  ({len(layers) - len(shown)} more layers, same pattern)",
                          showarrow=False))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(size=12, color=TRAINED, symbol="square"),
                             name="trained"))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(size=12, color=FROZEN, symbol="square"),
                             name="frozen"))
    fig.update_xaxes(visible=False, range=[-0.1, 10.6])
    fig.update_yaxes(visible=False, range=[min(-0.45, (n - 1) / 2 - 0.95), n + 0.1])
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      shapes=shapes, annotations=notes)
    return _base(fig, template, title, height)


def memory_bars(rows: list[dict], title: str, template: str = "plotly_white", height: int = 300) -> go.Figure:
    """Stacked horizontal bars per method: gradients and AdamW state of the trainable parameters (MiB)."""
    fig = go.Figure()
    names = [r["name"] for r in rows]
    for key, label, color in (("grad", "gradients (4 B each)", COLORS[0]),
                              ("optim", "AdamW state (8 B each)", COLORS[1]),
                              ("adapter", "adapter on disk", COLORS[2])):
        fig.add_trace(go.Bar(y=names, x=[r[key] / 2**20 for r in rows], name=label, orientation="h",
                             marker_color=color, hovertemplate="%{y}: %{x:,.2f} MiB<extra>" + label + "</extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="MiB (2^20 bytes)")
    return legend_below(_base(fig, template, title, height))


def count_bars(names: list[str], counts: list[int], title: str, template: str = "plotly_white",
               height: int = 320) -> go.Figure:
    """Trainable parameters per method, horizontal bars on a log axis (count labelled on each bar)."""
    counts = [int(c) for c in counts]
    fig = go.Figure(go.Bar(y=names, x=counts, orientation="h", marker_color=[COLORS[i % len(COLORS)]
                                                                             for i in range(len(names))],
                           text=[f"{c:,}" for c in counts], textposition="auto", textangle=0,
                           hovertemplate="%{y}: %{x:,} trainable parameters<extra></extra>"))
    fig.update_xaxes(type="log", title_text="trainable parameters (count, log scale)")
    fig.update_yaxes(autorange="reversed")
    return _base(fig, template, title, height)
