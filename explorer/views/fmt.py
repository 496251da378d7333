"""Numbers for people: compact forms that never get cut off, with the exact value for a tooltip.

Pure Python (no streamlit).  A metric shows ``count(n)`` ("134.5 M") and puts ``exact(n)``
("134,515,008") in its help text; bytes are said in binary units with the unit named (KiB, MiB,
GiB: 2^10, 2^20, 2^30 bytes), the exact byte count next to them.

>>> count(134_515_008), exact(134_515_008), count(8_192)
('134.5 M', '134,515,008', '8,192')
>>> nbytes(3 * 2**30), pct(0.000123)
('3.00 GiB', '0.0123 %')
"""

from __future__ import annotations

import math

__all__ = ["count", "exact", "nbytes", "exact_bytes", "pct", "count_help", "bytes_help", "text_width_px"]

_COUNT_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))  # decimal: thousand, million, billion, trillion
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _bad(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def _sig(v: float, digits: int) -> str:
    """``v`` (>= 1) with ``digits`` significant figures but never in exponent form, trailing zeros kept."""
    v = float(f"{abs(v):.{digits}g}")  # rounded first: 0.99996 -> 1.0 (then "1.000", not "1.0000")
    decimals = max(0, digits - 1 - int(math.floor(math.log10(v))))
    return f"{v:,.{decimals}f}"


def count(n, digits: int = 4) -> str:
    """A count in at most ~6 characters: exact below 10,000 ("8,192"), else k / M / B / T with ``digits``
    significant figures ("22.71 M", "134.5 M", "7.000 B").  None / NaN: "—"."""
    if _bad(n):
        return "—"
    n = float(n)
    a = abs(n)
    if a < 10_000:
        return f"{n:,.0f}" if n == int(n) else f"{n:,.2f}"
    units = _COUNT_UNITS[::-1]  # k, M, B, T
    i = max(j for j, (scale, _) in enumerate(units) if a >= scale or j == 0)
    text = _sig(a / units[i][0], digits)
    if float(text.replace(",", "")) >= 1000 and i + 1 < len(units):  # 999,960 -> "1,000 k": say "1.000 M"
        i += 1
        text = _sig(a / units[i][0], digits)
    return ("-" if n < 0 else "") + text + " " + units[i][1]


def exact(n) -> str:
    """The exact integer with thousands separators ("134,515,008"); floats keep 2 decimals."""
    if _bad(n):
        return "—"
    return f"{int(n):,}" if float(n) == int(n) else f"{float(n):,.2f}"


def nbytes(n, digits: int = 3) -> str:
    """Bytes in binary units, unit named: "512 B", "1.50 KiB", "12.0 MiB", "3.00 GiB" (``digits`` significant)."""
    if _bad(n):
        return "—"
    v = float(n)
    for unit in _BYTE_UNITS:
        if abs(v) < 1024 or unit == _BYTE_UNITS[-1]:
            if unit == "B":
                return f"{v:,.0f} B"
            text = f"{abs(v):,.0f}" if abs(v) >= 1000 else _sig(abs(v), digits)  # "1,023 KiB", "12.0 MiB"
            if float(text.replace(",", "")) >= 1024 and unit != _BYTE_UNITS[-1]:  # 1023.96 KiB -> next unit
                v /= 1024
                continue
            return ("-" if v < 0 else "") + text + " " + unit
        v /= 1024
    return f"{v:,.1f} {_BYTE_UNITS[-1]}"  # pragma: no cover


def exact_bytes(n) -> str:
    """"12,582,912 bytes"."""
    return "—" if _bad(n) else f"{int(n):,} bytes"


def pct(frac, digits: int = 3) -> str:
    """A fraction as a percentage with ``digits`` significant figures: 0.5 -> "50.0 %", 0.000123 -> "0.0123 %"."""
    if _bad(frac):
        return "—"
    p = 100.0 * float(frac)
    if p == 0:
        return "0 %"
    if abs(p) >= 1:
        return ("-" if p < 0 else "") + _sig(abs(p), digits) + " %"
    decimals = digits - 1 - int(math.floor(math.log10(abs(p))))
    return f"{p:.{decimals}f} %"


def count_help(n, what: str = "") -> str:
    """Help text with the exact count: "134,515,008 parameters (exact)" (``what`` names the unit)."""
    return f"{exact(n)}{' ' + what if what else ''} (exact)"


def bytes_help(n) -> str:
    """Help text with the exact byte count and the unit's meaning."""
    return f"{exact_bytes(n)} (KiB, MiB, GiB = 2^10, 2^20, 2^30 bytes)"


def text_width_px(values, px_per_char: float = 7.6, pad: int = 28, lo: int = 80, hi: int = 1200) -> int:
    """A table column's width in pixels that shows the longest of ``values`` whole (a data grid cuts a cell's
    text at its column's edge and never wraps it): about 7.6 px a character at the grid's 14 px font, plus the
    cell's padding, between ``lo`` and ``hi`` (the grid scrolls sideways beyond the page's width)."""
    longest = max((len(str(v)) for v in values if v is not None), default=0)
    return int(min(hi, max(lo, round(longest * px_per_char) + pad)))
