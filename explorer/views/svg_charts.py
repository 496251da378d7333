"""Small static SVG charts for files that must stand alone and print (the take-home, the handout).

Pure Python (no streamlit, no plotly): an inline ``<svg>`` string with no script, no external reference, every
text escaped.  Three shapes: bars (a question's choices), a histogram (number answers, on a log axis when the
bins are log-spaced, with the revealed truth marked) and a scatter (the class board: accuracy against trainable
parameters on a log axis, coloured by method; the room's runs, a participant's curves).
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["bars_svg", "histogram_svg", "scatter_svg", "INK", "ACCENT"]

INK, GRID, ACCENT, MUTED = "#1b1b1b", "#d0d0d0", "#E4572E", "#2E86AB"
W, H = 640, 300
M = dict(l=70, r=20, t=34, b=56)  # margins


def _svg(body: list[str], title: str, w: int = W, h: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" '
            f'aria-label="{escape(title)}" font-family="sans-serif" font-size="13">'
            f'<title>{escape(title)}</title>'
            f'<text x="{M["l"]}" y="20" font-size="15" font-weight="bold" fill="{INK}">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def _num(x: float) -> str:
    """Short tick labels: 1.5k, 2M, 0.25."""
    a = abs(x)
    for div, suf in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def _text(x, y, s, anchor="middle", size=12, fill=INK, rotate=None) -> str:
    rot = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{rot}>'
            f'{escape(str(s))}</text>')


class _Axis:
    """A linear or log10 mapping from data to pixels."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        self.log = log
        f = (lambda v: math.log10(v)) if log else (lambda v: v)
        self.f = f
        self.lo, self.hi = f(lo), f(hi)
        if self.hi == self.lo:
            self.lo, self.hi = self.lo - 0.5, self.hi + 0.5
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        return self.p0 + (self.f(v) - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self, n: int = 5) -> list[float]:
        if self.log:
            return [10.0 ** k for k in range(math.floor(self.lo), math.ceil(self.hi) + 1)
                    if self.lo - 1e-9 <= k <= self.hi + 1e-9]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / n))
        for mult in (1, 2, 5, 10):
            if (self.hi - self.lo) / (step * mult) <= n:
                step *= mult
                break
        start = math.ceil(self.lo / step) * step
        return [start + i * step for i in range(int((self.hi - start) / step + 1e-9) + 1)]


def _frame(xa: _Axis | None, ya: _Axis, x_label: str, y_label: str) -> list[str]:
    out = []
    for t in ya.ticks():
        y = ya(t)
        out.append(f'<line x1="{M["l"]}" x2="{W - M["r"]}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(M["l"] - 6, y + 4, _num(t), anchor="end", size=11))
    if xa is not None:
        for t in xa.ticks():
            x = xa(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{M["t"]}" y2="{H - M["b"]}" stroke="{GRID}"/>')
            out.append(_text(x, H - M["b"] + 16, _num(t), size=11))
    out.append(f'<line x1="{M["l"]}" x2="{W - M["r"]}" y1="{H - M["b"]}" y2="{H - M["b"]}" stroke="{INK}"/>')
    out.append(_text((M["l"] + W - M["r"]) / 2, H - 12, x_label))
    out.append(_text(16, (M["t"] + H - M["b"]) / 2, y_label, rotate=-90))
    return out


def bars_svg(labels, counts, title: str, highlight=(), y_label: str = "answers") -> str:
    """Vertical bars, one per label; labels in ``highlight`` (the revealed truth) drawn in the accent colour
    and marked "✓"."""
    n = max(1, len(labels))
    ya = _Axis(0, max([1] + [int(c) for c in counts]), H - M["b"], M["t"] + 6)
    body = _frame(None, ya, "", y_label)
    slot = (W - M["l"] - M["r"]) / n
    for i, (lab, c) in enumerate(zip(labels, counts)):
        x0, y = M["l"] + i * slot + slot * 0.15, ya(c)
        hit = lab in highlight
        body.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{H - M["b"] - y:.1f}" '
                    f'fill="{ACCENT if hit else MUTED}"/>')
        body.append(_text(x0 + slot * 0.35, y - 4, c, size=12))
        short = lab if len(lab) <= 28 else lab[:27] + "…"
        body.append(_text(x0 + slot * 0.35, H - M["b"] + 16, ("✓ " if hit else "") + short, size=11))
    return _svg(body, title)


def histogram_svg(edges, counts, log: bool, title: str, x_label: str = "", truth: float | None = None) -> str:
    """A histogram from bin ``edges`` (n + 1) and ``counts`` (n); ``truth`` drawn as a labelled vertical line."""
    if not counts:
        return _svg([_text(W / 2, H / 2, "no answers")], title)
    lo, hi = edges[0], edges[-1]
    if truth is not None and (not log or truth > 0):
        lo, hi = min(lo, truth), max(hi, truth)
    xa = _Axis(lo, hi, M["l"] + 4, W - M["r"] - 4, log=log)
    ya = _Axis(0, max([1] + list(counts)), H - M["b"], M["t"] + 6)
    body = _frame(xa, ya, x_label + (" (log scale)" if log else ""), "answers")
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        x0, x1, y = xa(a), xa(b), ya(c)
        body.append(f'<rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{max(1.0, x1 - x0 - 2):.1f}" '
                    f'height="{H - M["b"] - y:.1f}" fill="{MUTED}"/>')
    if truth is not None and (not log or truth > 0):
        x = xa(truth)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{M["t"]}" y2="{H - M["b"]}" stroke="{ACCENT}" '
                    'stroke-width="3"/>')
        body.append(_text(x, M["t"] - 3, f"truth {_num(truth)}", anchor="end" if x > W / 2 else "start",
                          fill=ACCENT, size=12))
    return _svg(body, title)


def scatter_svg(points, title: str, x_label: str, y_label: str, log_x: bool = False, colors: dict | None = None,
                lines: bool = False, y_range: tuple | None = None) -> str:
    """``points``: (x, y, group) triples; one colour per group (``colors``: group -> "#rrggbb") with a legend.
    ``lines``: join each group's points in x order (curves)."""
    pts = [(float(x), float(y), str(g)) for x, y, g in points if x is not None and y is not None
           and math.isfinite(float(x)) and math.isfinite(float(y)) and (not log_x or float(x) > 0)]
    if not pts:
        return _svg([_text(W / 2, H / 2, "nothing to draw yet")], title)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xa = _Axis(min(xs), max(xs), M["l"] + 8, W - M["r"] - 130, log=log_x)
    ya = _Axis(*(y_range or (min(ys), max(ys))), H - M["b"], M["t"] + 6)
    body = _frame(xa, ya, x_label + (" (log scale)" if log_x else ""), y_label)
    groups = list(dict.fromkeys(p[2] for p in pts))
    palette = ["#2E86AB", "#E4572E", "#17BEBB", "#F3A712", "#8E6CCF", "#76B041", "#D1495B", "#5C6B73"]
    col = {g: (colors or {}).get(g, palette[i % len(palette)]) for i, g in enumerate(groups)}
    for g in groups:
        gp = sorted((p for p in pts if p[2] == g), key=lambda p: p[0])
        if lines and len(gp) > 1:
            d = " ".join(f"{xa(x):.1f},{ya(y):.1f}" for x, y, _ in gp)
            body.append(f'<polyline points="{d}" fill="none" stroke="{col[g]}" stroke-width="2"/>')
        if not lines:
            body += [f'<circle cx="{xa(x):.1f}" cy="{ya(y):.1f}" r="5" fill="{col[g]}" fill-opacity="0.8"/>'
                     for x, y, _ in gp]
    for i, g in enumerate(groups[:12]):
        y = M["t"] + 10 + i * 18
        body.append(f'<rect x="{W - M["r"] - 118}" y="{y - 9}" width="10" height="10" fill="{col[g]}"/>')
        body.append(_text(W - M["r"] - 104, y, g if len(g) <= 16 else g[:15] + "…", anchor="start", size=11))
    return _svg(body, title)
