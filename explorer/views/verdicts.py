"""Words on screen computed from the data: "learned", "nothing learned", "plateau", "still rising".

Pure Python.  A held-out accuracy measured on ``n`` examples has a binomial standard error
``sqrt(p (1 - p) / n)``; two accuracies differ "beyond noise" when their difference exceeds
``Z`` (= 2) combined standard errors.  Every verdict comes with the rule that produced it, so a
page can print both.

- :func:`learning_verdict` (one run): did the held-out accuracy rise above its step-0 value?
- :func:`budget_verdict` (one method at several budgets, e.g. a Compare sweep): nothing learned at
  any budget, still rising, a plateau (the last points within noise of each other while the first
  ones rose), or no clear trend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z = 2.0  # about a 95 % two-sided band

__all__ = ["Z", "binomial_se", "differs", "learning_verdict", "budget_verdict", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    kind: str  # learned, nothing-learned, plateau, rising, unclear, too-few
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


def budget_verdict(points: list[tuple[float, float, float | None, int]]) -> Verdict:
    """One method at several budgets: ``points`` = [(trainable count, final accuracy, step-0 accuracy, n), ...].

    - nothing learned: no budget's accuracy rose beyond noise above its step-0 accuracy;
    - still rising: the largest budget beats the one before it beyond noise;
    - plateau: the last two (or more) budgets are within noise of each other, and the largest budget
      beats the smallest beyond noise (the curve rose first);
    - no clear trend otherwise; fewer than 3 budgets: too few to tell.
    """
    rule = (f"two accuracies differ when they are more than {Z:g} combined binomial standard errors apart; "
            "plateau = the last budgets within noise of each other after the curve rose; nothing learned = no "
            "budget above its step-0 accuracy beyond noise")
    pts = sorted((p for p in points if p[1] is not None), key=lambda p: p[0])
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
    (b1, a1, _, n1), (b2, a2, _, n2) = pts[-2], pts[-1]
    first = pts[0]
    if a2 > a1 and differs(a2, a1, n2, n1):
        return Verdict("rising", f"still rising: {a1:.1%} at {b1:,.0f} → {a2:.1%} at {b2:,.0f} trainable parameters",
                       rule)
    if not differs(a2, a1, n2, n1) and a2 > first[1] and differs(a2, first[1], n2, first[3]):
        return Verdict("plateau", f"plateau: {a1:.1%} at {b1:,.0f} and {a2:.1%} at {b2:,.0f} trainable parameters are "
                                  f"within noise, after rising from {first[1]:.1%} at {first[0]:,.0f}", rule)
    return Verdict("unclear", "no clear trend: the accuracies move within or against the noise", rule)
