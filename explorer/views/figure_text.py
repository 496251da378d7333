"""A chart's text alternative, read from the plotly figure itself: one sentence saying what it shows, and the
numbers behind it as a table (small charts) or a CSV (every chart, heatmaps as their grid of cells).

Screen readers cannot read a plotly chart's drawing; ``ui.modes.show_fig`` puts these beside every chart.  Nothing
here is typed per chart: titles, axis names, series and values all come from the figure.

:func:`alternative` makes a figure's title, sentence and table once per figure object: a polling page redraws the
same shared figure (``explorer.views.figcache``) at every poll, and its text with it.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import threading
import weakref

TABLE_MAX_ROWS = 60  # above this a table is no help on screen: the CSV has every number

_TAGS = re.compile(r"<[^>]+>")


def plain(text) -> str:
    """Plotly's rich text (``<b>``, ``<br>``, ``<sub>``) as plain text."""
    if not text:
        return ""
    t = re.sub(r"<br\s*/?>", " ", str(text), flags=re.I)
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub("", t))).strip()


def _axis(fig, trace, letter: str):
    ref = getattr(trace, f"{letter}axis", None) or letter
    name = ref.replace(letter, f"{letter}axis", 1) if ref != letter else f"{letter}axis"
    try:
        return fig.layout[name]
    except (KeyError, ValueError):
        return None


def _axis_title(fig, trace, letter: str) -> str:
    ax = _axis(fig, trace, letter)
    return plain(ax.title.text) if ax is not None and ax.title is not None else ""


def _values(v) -> list:
    if v is None:
        return []
    try:
        return list(v.tolist() if hasattr(v, "tolist") else v)
    except TypeError:
        return []


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "no value"
        return f"{v:.4g}"
    return str(v)


def _series(fig) -> list:
    """The traces that carry data (a heatmap, or x/y points), visible ones only."""
    return [t for t in fig.data if t.visible in (None, True) and (_values(getattr(t, "z", None)) or
                                                                  _values(getattr(t, "y", None)) or
                                                                  _values(getattr(t, "x", None)))]


def describe(fig) -> str:
    """One or two sentences: the chart's title, its kind, its axes (log scale said) and its series."""
    title = plain(fig.layout.title.text if fig.layout.title is not None else "") or "Chart"
    traces = _series(fig)
    if not traces:
        return f"{title}: no data to show."
    parts = []
    heat = [t for t in traces if t.type == "heatmap"]
    for t in heat:
        z = _values(t.z)
        rows, cols = len(z), max((len(r) for r in z), default=0)
        flat = [v for r in z for v in r if isinstance(v, (int, float)) and not math.isnan(v)]
        rng = f", values from {_fmt(min(flat))} to {_fmt(max(flat))}" if flat else ", no values"
        parts.append(f"a heatmap of {rows} × {cols} cells{rng}")
    rest = [t for t in traces if t.type != "heatmap"]
    if rest:
        kinds = sorted({"bars" if t.type == "bar" else "points and lines" if t.type == "scatter" else t.type
                        for t in rest})
        names = [plain(t.name) for t in rest if plain(t.name)]
        n = sum(max(len(_values(t.x)), len(_values(t.y))) for t in rest)
        first = rest[0]
        axes = []
        for letter in ("x", "y"):
            ax = _axis(fig, first, letter)
            title_ax = _axis_title(fig, first, letter)
            if title_ax:
                log = " (log scale)" if ax is not None and ax.type == "log" and "log" not in title_ax else ""
                axes.append(f"{letter}: {title_ax}{log}")
        parts.append(f"{' and '.join(kinds)}, {n} value{'s' if n != 1 else ''}"
                     + (f" in {len(names)} series ({', '.join(names[:8])}{', …' if len(names) > 8 else ''})"
                        if names else "")
                     + (f"; {', '.join(axes)}" if axes else ""))
    return f"{title}: {'; '.join(parts)}."


def rows(fig) -> tuple[list[str], list[list]]:
    """The points of every non-heatmap series as a table: (column names, rows)."""
    traces = [t for t in _series(fig) if t.type != "heatmap"]
    if not traces:
        return [], []
    horizontal = traces[0].type == "bar" and getattr(traces[0], "orientation", None) == "h"
    first, second = ("y", "x") if horizontal else ("x", "y")  # the categories (or x values), then the values
    aname = _axis_title(fig, traces[0], first) or ("item" if horizontal else first)
    bname = _axis_title(fig, traces[0], second) or second
    if aname == bname:
        bname = f"{bname} ({second})"
    has_text = any(_values(getattr(t, "text", None)) for t in traces)
    cols = ["series", aname, bname] + (["label"] if has_text else [])
    out = []
    for t in traces:
        a, b = _values(getattr(t, first)), _values(getattr(t, second))
        n = max(len(a), len(b))
        texts = _values(getattr(t, "text", None))
        for i in range(n):
            row = [plain(t.name), a[i] if i < len(a) else None, b[i] if i < len(b) else None]
            if has_text:
                row.append(plain(texts[i]) if i < len(texts) else "")
            out.append(row)
    if not any(r[0] for r in out):  # one unnamed series: no series column
        cols, out = cols[1:], [r[1:] for r in out]
    return cols, out


def markdown_table(fig) -> str:
    """The table of :func:`rows` as Markdown (an HTML table on the page: screen readers read it cell by cell);
    "" when it has no rows or more than ``TABLE_MAX_ROWS`` (then the CSV has them)."""
    cols, body = rows(fig)
    if not cols or not body or len(body) > TABLE_MAX_ROWS:
        return ""

    def cell(v) -> str:
        return ("" if v is None else _fmt(v) if isinstance(v, float) else f"{v:,}" if isinstance(v, int)
                else str(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in body]
    return "\n".join(lines)


def to_csv(fig) -> str:
    """Every number of the chart: the table of :func:`rows`, then each heatmap as its grid (rows top to bottom)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols, body = rows(fig)
    if cols:
        w.writerow(cols)
        w.writerows(body)
    for t in _series(fig):
        if t.type != "heatmap":
            continue
        if buf.tell():
            w.writerow([])
        w.writerow([f"heatmap: {plain(t.name) or plain(fig.layout.title.text) or 'cells'}"])
        xs = _values(t.x)
        if xs:
            w.writerow([""] + xs)
        ys = _values(t.y)
        for i, r in enumerate(_values(t.z)):
            w.writerow(([ys[i]] if i < len(ys) else [i]) + list(r))
    return buf.getvalue()


def axes_name(fig) -> str:
    """A name for a chart drawn without a title, from its first series' axes: "y against x" ("" when either
    axis has no title)."""
    for t in fig.data:
        if getattr(t, "x", None) is None and getattr(t, "y", None) is None:
            continue
        x, y = _axis_title(fig, t, "x"), _axis_title(fig, t, "y")
        if getattr(t, "orientation", None) == "h":
            x, y = y, x
        return f"{y} against {x}" if x and y else ""
    return ""


_KEPT: dict[int, tuple[str, str, str]] = {}  # id(figure) -> (title, sentence, table) while that figure lives
_KEPT_LOCK = threading.Lock()


def alternative(fig) -> tuple[str, str, str]:
    """(the title as plain text, :func:`describe`, :func:`markdown_table`) of ``fig``, made on the first ask for
    this figure object and kept while it lives.  Figures are not changed once drawn (the cached ones are shared:
    ``explorer.views.figcache``); a changed chart is a new figure."""
    key = id(fig)
    with _KEPT_LOCK:
        got = _KEPT.get(key)
    if got is not None:
        return got
    title = plain(fig.layout.title.text if fig.layout.title is not None else "")
    got = (title, describe(fig), markdown_table(fig))
    with _KEPT_LOCK:
        if key not in _KEPT:
            _KEPT[key] = got
            weakref.finalize(fig, _forget, key)  # before the id can name another figure
    return got


def _forget(key: int) -> None:
    with _KEPT_LOCK:
        _KEPT.pop(key, None)
