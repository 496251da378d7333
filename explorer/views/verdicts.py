"""Words on screen computed from the data: "learned", "nothing learned", "plateau", "still rising".

Pure Python.  A held-out accuracy measured on ``n`` examples has a binomial standard error
``sqrt(p (1 - p) / n)``; two accuracies differ "beyond noise" when their difference exceeds
``Z`` (= 2) combined standard errors.  Every verdict comes with the rule that produced it, so a
page can print both.

- :func:`learning_verdict` (one run): did the held-out accuracy rise above its step-0 value?
- :func:`budget_verdict` (one method at several budgets, e.g. a Compare sweep): nothing learned at
  any budget, still rising, a plateau (the curve bends beyond noise: its last gain per doubling is
  smaller than its earlier gain), rose (over the whole sweep, the end unresolved), or no clear trend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z = 2.0  # about a 95 % two-sided band

__all__ = ["Z", "binomial_se", "differs", "learning_verdict", "budget_verdict", "Verdict", "BUDGET_RULE",
           "one_sided_p"]


@dataclass(frozen=True)
class Verdict:
    kind: str  # learned, nothing-learned, plateau, rising, rose, unclear, too-few
    text: str  # one sentence for the page, with the numbers
    rule: str  # the rule that produced it


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` examples (never 0: p is clipped to [1/n, 1-1/n])."""
    n = max(1, int(n))
    p = min(max(float(p), 1.0 / (n + 1)), 1.0 - 1.0 / (n + 1))
    return math.sqrt(p * (1.0 - p) / n)


def differs(a: float, b: float, n_a: int, n_b: int) -> bool:
    """True when accuracies ``a`` and ``b`` differ by more than ``Z`` combined standard errors."""
    return abs(a - b) > Z * math.hypot(binomial_se(a, n_a), binomial_se(b, n_b))


def learning_verdict(base: float | None, final: float | None, n: int | None) -> Verdict | None:
    """Whether one run learned: its final held-out accuracy against its step-0 accuracy (None: no data)."""
    if base is None or final is None or not n:
        return None
    rule = (f"learned when the final accuracy exceeds the step-0 accuracy by more than {Z:g} standard errors "
            f"of {n} held-out examples")
    if final > base and differs(final, base, n, n):
        return Verdict("learned", f"learned: {base:.1%} at step 0 → {final:.1%}", rule)
    return Verdict("nothing-learned", f"nothing learned yet: {final:.1%} is within noise of the step-0 accuracy "
                                      f"{base:.1%} ({n} held-out examples); try more steps or another learning rate",
                   rule)


def _pooled(points) -> list[tuple[float, float, float | None, int]]:
    """Runs at the same budget pooled into one point (their accuracies weighted by examples, ``n`` summed)."""
    by: dict = {}
    for b, acc, base, n in points:
        if acc is None:
            continue
        by.setdefault(b, []).append((float(acc), base, max(1, int(n or 0))))
    out = []
    for b in sorted(by):
        runs = by[b]
        n = sum(r[2] for r in runs)
        bases = [r[1] for r in runs if r[1] is not None]
        out.append((b, sum(r[0] * r[2] for r in runs) / n, (sum(bases) / len(bases)) if bases else None, n))
    return out


def _position(budgets: list[float]) -> list[float]:
    """Where each budget sits on the chart's log axis (log2: one unit = one doubling); budgets that are not
    all positive: their rank order."""
    if all(b > 0 for b in budgets):
        return [math.log2(b) for b in budgets]
    return [float(i) for i in range(len(budgets))]


def _bend(pts, xs) -> tuple[float, float, float, float]:
    """The early gain per doubling (first budget to the one before the last), the last gain per doubling, the
    difference early - last, and that difference's binomial standard error."""
    (x1, a1, _, n1), (xp, ap, _, n_p), (xl, al, _, nl) = (xs[0],) + pts[0][1:], (xs[-2],) + pts[-2][1:], \
        (xs[-1],) + pts[-1][1:]
    D, d = (xp - x1) or 1.0, (xl - xp) or 1.0
    early, last = (ap - a1) / D, (al - ap) / d
    # early - last = ap (1/D + 1/d) - a1 / D - al / d, three independent accuracies
    se = math.sqrt((binomial_se(ap, n_p) * (1 / D + 1 / d)) ** 2 + (binomial_se(a1, n1) / D) ** 2
                   + (binomial_se(al, nl) / d) ** 2)
    return early, last, early - last, se


def one_sided_p(z: float) -> float:
    """P(Z > z) for a standard normal (scipy.stats.norm)."""
    from scipy.stats import norm

    return float(norm.sf(z))


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


BUDGET_RULE = (f"two accuracies differ when they are more than {Z:g} combined binomial standard errors apart "
               "(about 95 %); still rising = the largest budget beats the one before it; plateau = the curve bends: "
               "its gain per doubling of the budget over the last step is smaller than over the steps before, by "
               f"more than {Z:g} standard errors, and the last step is within noise; rose = the largest budget beats "
               "the smallest but neither test above is met (the held-out examples are too few to tell a plateau "
               "from a slower rise); nothing learned = no budget above its step-0 accuracy; runs at one budget "
               "are pooled")


def budget_verdict(points: list[tuple[float, float, float | None, int]]) -> Verdict:
    """One method at several budgets: ``points`` = [(trainable count, final accuracy, step-0 accuracy, n), ...].

    Budgets sit on a log axis (the chart's), so gains are compared per doubling of the budget.

    - nothing learned: no budget's accuracy rose beyond noise above its step-0 accuracy;
    - still rising: the largest budget beats the one before it beyond noise;
    - plateau: the curve bends: the gain per doubling over the last step is below the gain per doubling from
      the smallest budget to the one before the last by more than ``Z`` standard errors (a z-test of the
      difference of the two slopes, from the binomial noise of the three accuracies involved), and the last
      step is within noise;
    - rose: the largest budget beats the smallest beyond noise, but the last step is within noise without a
      bend beyond noise (a rise over the whole sweep is never called a plateau);
    - no clear trend otherwise (flat after learning, or falling); fewer than 3 budgets: too few to tell.
    """
    rule = BUDGET_RULE
    pts = _pooled(points)
    if not pts:
        return Verdict("too-few", "no finished run yet", rule)
    if not any(base is not None and acc > base and differs(acc, base, n, n) for _, acc, base, n in pts):
        lo = min(acc for _, acc, _, _ in pts)
        hi = max(acc for _, acc, _, _ in pts)
        return Verdict("nothing-learned", f"nothing learned at any budget ({lo:.1%}–{hi:.1%}, within noise of the "
                                          "step-0 accuracy): more steps are needed before budgets can be compared",
                       rule)
    if len(pts) < 3:
        return Verdict("too-few", f"{len(pts)} budget(s): at least 3 are needed to tell a plateau from a rise", rule)
    xs = _position([p[0] for p in pts])
    (b0, a0, _, n0), (b1, a1, _, n1), (b2, a2, _, n2) = pts[0], pts[-2], pts[-1]
    span = f"{a0:.1%} at {b0:,.0f} → {a1:.1%} at {b1:,.0f} → {a2:.1%} at {b2:,.0f} trainable parameters"
    if a2 > a1 and differs(a2, a1, n2, n1):
        return Verdict("rising", f"still rising: {a1:.1%} at {b1:,.0f} → {a2:.1%} at {b2:,.0f} trainable parameters",
                       rule)
    early, last, bend, se = _bend(pts, xs)
    last_pts = 100 * (a2 - a1)
    if not differs(a2, a1, n2, n1) and bend > Z * se and early > 0:
        return Verdict("plateau", f"plateau: {span}; the last step ({last_pts:+.1f} points) is within noise and "
                                  f"the gain per doubling fell from {100 * early:+.1f} to {100 * last:+.1f} points "
                                  f"(beyond noise, one-sided {_p_text(one_sided_p(bend / se))})", rule)
    if a2 > a0 and differs(a2, a0, n2, n0):
        return Verdict("rose", f"rose: {span} (first to last beyond noise); the last step ({last_pts:+.1f} points) "
                               f"is within the noise of {min(n1, n2):,} held-out examples and the gain per doubling "
                               f"({100 * early:+.1f}, then {100 * last:+.1f} points) did not fall beyond noise, so "
                               "a plateau cannot be told from a slower rise", rule)
    if a2 < a0 and differs(a2, a0, n2, n0):
        return Verdict("unclear", f"no clear trend: {span}; the largest budget is below the smallest beyond noise",
                       rule)
    if not differs(a2, a0, n2, n0):
        return Verdict("unclear", f"no clear trend: {span}; no budget differs from the smallest beyond the noise of "
                                  f"{min(n0, n2):,} held-out examples", rule)
    return Verdict("unclear", f"no clear trend: {span}; the accuracies move within or against the noise", rule)
