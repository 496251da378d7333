"""Byte units, said explicitly: GB = 10^9 bytes (what vendors print on a GPU), GiB = 2^30 bytes (what nvidia-smi
and PyTorch report).  The one ``fmt_bytes`` of the project: the caller names the unit, the text names it too.

>>> fmt_bytes(1_044_570_571_264, "GB"), fmt_bytes(2 ** 30, "GiB"), fmt_bytes(3 * 2 ** 20, "MiB", 1)
('1,044.6 GB', '1.00 GiB', '3.0 MiB')
"""

from __future__ import annotations

GB = 10 ** 9
GIB = 2 ** 30
UNITS = {"GB": GB, "GiB": GIB, "MB": 10 ** 6, "MiB": 2 ** 20, "KB": 10 ** 3, "KiB": 2 ** 10, "B": 1}


def _digits(v: float) -> int:
    """More digits for small numbers: 1 from 100 up, 2 from 1, 3 from 0.01, else 5."""
    v = abs(v)
    return 1 if v >= 100 else 2 if v >= 1 else 3 if v >= 0.01 else 5


def fmt_bytes(n: float | None, unit: str = "GB", digits: int | None = None) -> str:
    """``n`` bytes in ``unit`` with the unit named: GB = 10^9 bytes, GiB = 2^30, also MB/MiB/KB/KiB/B.

    ``digits``: decimals (None: more for small numbers, see :func:`_digits`).  None bytes: "n/a"."""
    if n is None:
        return "n/a"
    if unit not in UNITS:
        from explorer.errors import KnobError  # a ValueError with a one-line user message

        raise KnobError(f"unit must be one of {', '.join(UNITS)}")
    v = n / UNITS[unit]
    return f"{v:,.{_digits(v) if digits is None else digits}f} {unit}"


def in_unit(n: float, unit: str) -> float:
    """Bytes -> ``unit`` (GB, GiB, ...)."""
    return float(n) / UNITS[unit]


def to_gb(n: float) -> float:
    """Bytes -> GB (10^9 bytes)."""
    return n / GB


def to_gib(n: float) -> float:
    """Bytes -> GiB (2^30 bytes)."""
    return n / GIB


def exact_bytes(n: float) -> str:
    """Exact bytes; a fractional count (4-bit constants) is shown with one decimal."""
    return f"{int(n):,} B" if float(n).is_integer() else f"{n:,.1f} B"


def compact_bytes(n: float | None, unit: str) -> str:
    """Bytes in the prefix that fits, of the unit's family (GB: kB, MB, GB, TB; GiB: KiB, MiB, GiB, TiB),
    3 significant digits: 1.04 TB, 13.5 GB, 350 GB, 812 MiB."""
    if n is None:
        return "n/a"
    n = float(n)
    steps = ((10 ** 12, "TB"), (10 ** 9, "GB"), (10 ** 6, "MB"), (10 ** 3, "kB")) if unit == "GB" else \
        ((2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB"))
    for div, name in steps:
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g} {name}" if v < 1000 else f"{v:,.0f} {name}"
    return f"{n:,.0f} B"
