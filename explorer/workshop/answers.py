"""The room's answers to a lesson's question: what an answer may be, and what the projector shows of them.

Pure Python (no streamlit)::

    value = check_answer(question, "150k")     # 150000.0; AnswerError: one line ("an answer between 0 and 1e9")
    t = tally(question, values, truth=None)    # counts for choices, a histogram for numbers, a word list for text;
                                               # with the revealed truth: how many got it (numbers: within 10 %)

Numbers may be typed as people write them ("147,456", "1.5e5", "150k", "2 M"); they must be finite and inside
the question's range (default 0 .. 10^12, so negative or huge numbers are refused).  A choice must be one of the
question's choices exactly.  Free text is filtered like a class-board name (letters, digits, spaces and
``- . ' ! ? ,``; no markup, no control or invisible characters) and limited to the question's ``max_chars``.
A histogram uses log-spaced bins when the answers are positive and span at least two decades
(:func:`histogram`), so one wild guess does not squash the rest into one bar.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

import numpy as np

from explorer.errors import DataError

__all__ = ["AnswerError", "check_answer", "clean_text", "tally", "histogram", "shown", "TEXT_PUNCT",
           "LOG_DECADES", "MAX_BINS", "NEAR"]

TEXT_PUNCT = " -.'!?,"
LOG_DECADES = 2.0  # answers spanning at least this many powers of ten get log-spaced bins
MAX_BINS = 12
NEAR = 0.10  # a number answer within 10 % of the truth counts as right
MAX_RAW = 200  # longer raw input is refused before any parsing
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([kmgbt]?)$", re.IGNORECASE)


class AnswerError(DataError):
    """An answer that is refused (one line, safe to show)."""


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) < 1e6 and float(x).is_integer() else f"{x:g}"


def _number(question, raw) -> float:
    if isinstance(raw, bool):
        raise AnswerError("type a number")
    if isinstance(raw, (int, float)):
        x = float(raw)
    elif isinstance(raw, str):
        s = raw.strip().replace(",", "").replace("_", "").replace(" ", "").replace("\u202f", "")
        m = _NUMBER.match(s)
        if not m:
            raise AnswerError("type a number, such as 147456, 1.5e5 or 150k")
        x = float(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1.0)
    else:
        raise AnswerError("type a number")
    if not math.isfinite(x):
        raise AnswerError("type a finite number")
    if not question.min <= x <= question.max:
        raise AnswerError(f"an answer between {_fmt(question.min)} and {_fmt(question.max)}, please")
    return x


def clean_text(raw, max_chars: int) -> str:
    """A free-text answer cleaned like a board name (NFKC, invisible characters removed, spaces collapsed);
    AnswerError for control characters, markup or other symbols, or more than ``max_chars`` characters."""
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        raise AnswerError("no tabs, line breaks or other control characters, please")
    s = unicodedata.normalize("NFKC", raw)
    s = " ".join("".join(ch for ch in s if unicodedata.category(ch) not in ("Cf", "Co", "Cs", "Cn")).split())
    if not s:
        raise AnswerError("type a few words")
    bad = [ch for ch in s if not (ch.isalnum() or unicodedata.category(ch).startswith("M") or ch in TEXT_PUNCT)]
    if bad:
        raise AnswerError(f"letters, digits, spaces and - . ' ! ? , only (not {unicodedata.name(bad[0], 'that').lower()})")
    if len(s) > max_chars:
        raise AnswerError(f"at most {max_chars} characters, please ({len(s)} typed)")
    return s


def shown(value, question) -> str:
    """An answer (or a truth's value) as a page shows it: a number with separators and the question's unit, a
    tie's choices joined with "and", text as it is."""
    if isinstance(value, list):
        return " and ".join(map(str, value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        unit = f" {question.unit}" if getattr(question, "unit", "") else ""
        return (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}") + unit
    return str(value)


def check_answer(question, raw):
    """The value stored for ``raw`` (a float, a choice, or cleaned text); AnswerError: one line."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise AnswerError("no answer given")
    if isinstance(raw, str) and len(raw) > MAX_RAW:
        raise AnswerError(f"that answer is {len(raw):,} characters long; keep it short")
    if question.kind == "number":
        return _number(question, raw)
    if not isinstance(raw, str):
        raise AnswerError("pick one of the choices" if question.kind == "choice" else "type a few words")
    if question.kind == "choice":
        if raw not in question.choices:
            raise AnswerError("pick one of the choices")
        return raw
    return clean_text(raw, question.max_chars)


# ----------------------------------------------------------------------------- what the projector shows


def histogram(values, max_bins: int = MAX_BINS) -> dict:
    """Bins for number answers: ``edges`` (n + 1), ``counts`` (n) and ``log`` (log-spaced: every answer > 0 and
    the largest at least 10^LOG_DECADES times the smallest).  Bin edges from numpy's "auto" rule (on log10 of
    the values when log), at most ``max_bins`` bins."""
    x = np.asarray([float(v) for v in values], dtype=float)
    if x.size == 0:
        return dict(edges=[], counts=[], log=False)
    lo, hi = float(x.min()), float(x.max())
    log = lo > 0 and hi / lo >= 10 ** LOG_DECADES
    t = np.log10(x) if log else x
    if lo == hi:  # one value: one bin around it
        width = abs(lo) * 0.05 or 0.5
        edges = np.array([lo - width, hi + width])
    else:
        edges = np.histogram_bin_edges(t, bins="auto")
        if len(edges) - 1 > max_bins:
            edges = np.linspace(t.min(), t.max(), max_bins + 1)
    counts, edges = np.histogram(t, bins=edges)
    if log:
        edges = 10 ** edges
    return dict(edges=[float(e) for e in edges], counts=[int(c) for c in counts], log=bool(log))


def tally(question, values, truth=None) -> dict:
    """What the room answered: ``n`` and, for numbers, the histogram and the quartiles; for choices, the count of
    each choice in the question's order; for text, the distinct answers (case folded) with their counts, the most
    frequent first (at most 60).  With the revealed ``truth`` (``explorer.workshop.truths.Truth``): its value and
    how many answers were ``right`` (a number within ``NEAR`` of it, relative; the truth's choice)."""
    values = list(values)
    out = dict(kind=question.kind, n=len(values))
    if question.kind == "number":
        out.update(histogram(values))
        if values:
            q1, med, q3 = (float(v) for v in np.percentile(np.asarray(values, dtype=float), [25, 50, 75]))
            out.update(min=float(min(values)), max=float(max(values)), q1=q1, median=med, q3=q3)
    elif question.kind == "choice":
        c = Counter(values)
        out["counts"] = [dict(choice=ch, count=int(c.get(ch, 0))) for ch in question.choices]
    else:
        c = Counter(v.casefold() for v in values)
        first = {}
        for v in values:
            first.setdefault(v.casefold(), v)
        out["answers"] = [dict(text=first[k], count=int(n)) for k, n in c.most_common(60)]
    if truth is not None and truth.value is not None and question.kind != "text":
        out["truth"] = truth.value
        if question.kind == "number":
            tv = float(truth.value)
            out["right"] = sum(1 for v in values if abs(float(v) - tv) <= NEAR * abs(tv))
        else:
            out["right"] = sum(1 for v in values if truth.matches(v))
    return out
