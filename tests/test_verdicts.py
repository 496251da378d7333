"""Words on screen computed from the data (explorer.views.verdicts): each branch with numbers checked by hand."""

import math

from explorer.views.verdicts import Z, binomial_se, budget_verdict, differs, learning_verdict


def test_binomial_se_by_hand():
    assert math.isclose(binomial_se(0.5, 200), math.sqrt(0.25 / 200))
    assert binomial_se(1.0, 100) > 0  # clipped: never zero


def test_differs_uses_two_standard_errors():
    n = 200
    se = math.hypot(math.sqrt(0.25 / n), math.sqrt(0.25 / n))  # both near 0.5
    assert not differs(0.5, 0.5 + 0.9 * Z * se, n, n)
    assert differs(0.5, 0.5 + 1.3 * Z * se, n, n)


def test_learning_verdict():
    assert learning_verdict(0.535, 0.535, 200).kind == "nothing-learned"  # the flat default run
    assert learning_verdict(0.51, 0.53, 200).kind == "nothing-learned"  # within noise
    v = learning_verdict(0.52, 0.97, 200)
    assert v.kind == "learned" and "52.0%" in v.text and "97.0%" in v.text
    assert learning_verdict(0.6, 0.3, 200).kind == "nothing-learned"  # worse is not learning
    assert learning_verdict(None, 0.9, 200) is None


def test_budget_verdict_branches():
    flat = [(b, 0.51, 0.51, 200) for b in (100, 200, 400, 800)]  # the tiny-bert sweep: all 51 %
    assert budget_verdict(flat).kind == "nothing-learned"
    plateau = [(100, 0.60, 0.5, 500), (200, 0.85, 0.5, 500), (400, 0.90, 0.5, 500), (800, 0.905, 0.5, 500)]
    v = budget_verdict(plateau)
    assert v.kind == "plateau" and "plateau" in v.text
    rising = [(100, 0.60, 0.5, 500), (200, 0.70, 0.5, 500), (400, 0.80, 0.5, 500)]
    assert budget_verdict(rising).kind == "rising"
    assert budget_verdict(rising[:2]).kind == "too-few"
    zigzag = [(100, 0.80, 0.5, 500), (200, 0.95, 0.5, 500), (400, 0.70, 0.5, 500)]
    assert budget_verdict(zigzag).kind == "unclear"
    assert budget_verdict([]).kind == "too-few"
