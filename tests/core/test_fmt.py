"""explorer.views.fmt: compact numbers that fit a metric box, exact ones for the tooltip."""

from __future__ import annotations

import math
import random

import pytest

from explorer.views import fmt


@pytest.mark.parametrize("n, text", [
    (0, "0"), (7, "7"), (8_192, "8,192"), (9_999, "9,999"),  # exact below 10,000
    (10_000, "10.00 k"), (123_456, "123.5 k"), (99_999, "100.0 k"),
    (22_713_216, "22.71 M"), (134_515_008, "134.5 M"),  # minilm, smollm2-135m
    (999_960, "1.000 M"), (999_999_999, "1.000 B"),  # rounding up moves to the next unit
    (6_738_415_616, "6.738 B"), (-123_456, "-123.5 k"), (None, "—"), (float("nan"), "—"),
])
def test_count(n, text):
    assert fmt.count(n) == text


def test_count_is_short_and_close_to_the_value():
    rng = random.Random(0)
    units = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    for _ in range(2000):
        n = int(10 ** rng.uniform(0, 14))
        text = fmt.count(n)
        assert len(text) <= 8, text  # fits a metric box next to two others
        if " " in text:
            num, unit = text.split()
            value = float(num.replace(",", "")) * units[unit]
            assert abs(value - n) <= 0.0005 * n + 0.5 * units[unit] * 1e-3, (n, text)
        else:
            assert int(text.replace(",", "")) == n


def test_exact_and_help():
    assert fmt.exact(134_515_008) == "134,515,008"
    assert fmt.exact(2.5) == "2.50"
    assert fmt.count_help(134_515_008, "parameters") == "134,515,008 parameters (exact)"
    assert fmt.exact(None) == "—"


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1,023 B"), (1536, "1.50 KiB"), (1023 * 1024, "1,023 KiB"),
    (1024 * 1024 - 10, "1.00 MiB"),  # 1023.99 KiB rounds to 1,024 KiB: said as MiB
    (12 * 2**20, "12.0 MiB"), (3 * 2**30, "3.00 GiB"), (int(5.5 * 2**40), "5.50 TiB"), (None, "—"),
])
def test_nbytes_binary_units(n, text):
    assert fmt.nbytes(n) == text


def test_nbytes_round_trip_within_rounding():
    rng = random.Random(1)
    mult = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
    for _ in range(2000):
        n = int(2 ** rng.uniform(0, 52))
        num, unit = fmt.nbytes(n).split()
        value = float(num.replace(",", "")) * mult[unit]
        assert math.isclose(value, n, rel_tol=0.005, abs_tol=0.5), (n, fmt.nbytes(n))
        assert float(num.replace(",", "")) < 1024
    assert fmt.exact_bytes(12 * 2**20) == "12,582,912 bytes"


@pytest.mark.parametrize("f, text", [
    (0.5, "50.0 %"), (1.0, "100 %"), (0.000123, "0.0123 %"), (0.0123456, "1.23 %"), (0, "0 %"),
    (0.0059188, "0.592 %"), (None, "—"),
])
def test_pct(f, text):
    assert fmt.pct(f) == text
