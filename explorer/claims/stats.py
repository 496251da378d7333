"""Statistics for the claims lab: means, 95 % t-intervals over seeds, slopes, and the verdict rules.

Student's t comes from ``scipy.stats`` (it replaced a hand-written incomplete beta function; the shipped
intervals agree to 1e-9).  Every verdict is computed from the per-seed numbers by one of the rules below; the
rule's text travels with the verdict.

Rules (``DELTA`` is the margin of "about as good", in accuracy points, stated with every verdict):

- ``noninferior`` (claim "B keeps / comes close to A's accuracy"): d = mean(B) - mean(A) with a Welch
  95 % t-interval [lo, hi].  Holds when lo >= -DELTA (B is at most DELTA worse, at 95 %); does not hold
  when hi < -DELTA (B is more than DELTA worse, at 95 %); inconclusive otherwise.
- ``superior`` (claim "B beats A"): holds when lo > 0; does not hold when hi <= 0 (B is at best
  equal); inconclusive otherwise.
- ``rising`` (claim "B keeps rising with the budget where A plateaus"): least-squares slopes of accuracy
  on log2(budget) over every (budget, seed) point, with 95 % t-intervals.  Holds when B's slope has
  lo > 0 and the slope difference (B - A) has lo > 0; does not hold when B's slope has hi <= 0 or the
  difference has hi <= 0; inconclusive otherwise.
- ``above`` (claim "a share exceeds a level"): the mean share with a one-sample 95 % t-interval.
  Holds when lo > level; does not hold when hi <= level; inconclusive otherwise.
- A claim with several parts: holds when every part holds; does not hold when any part does not
  hold; inconclusive otherwise.
"""

from __future__ import annotations

import math

HOLDS = "holds at this scale"
FAILS = "does not hold at this scale"
UNSURE = "inconclusive"
VERDICTS = (HOLDS, FAILS, UNSURE)
LEVEL = 0.95
DELTA = 0.02  # "about as good": within 2 accuracy points

RULES = {
    "noninferior": ("d = mean(B) - mean(A), Welch 95 % t-interval [lo, hi] over seeds. Holds if lo >= -{delta} "
                    "(B at most {delta} worse); does not hold if hi < -{delta} (B more than {delta} worse); "
                    "inconclusive otherwise."),
    "superior": ("d = mean(B) - mean(A), Welch 95 % t-interval [lo, hi] over seeds. Holds if lo > 0; "
                 "does not hold if hi <= 0 (B at best equal); inconclusive otherwise."),
    "rising": ("Least-squares slope of accuracy on log2(trainable parameters) over every (budget, seed) point, "
               "95 % t-intervals. Holds if B's slope has lo > 0 and the slope difference B - A has lo > 0; does "
               "not hold if B's slope has hi <= 0 or the difference has hi <= 0; inconclusive otherwise."),
    "above": ("Mean over seeds with a one-sample 95 % t-interval [lo, hi]. Holds if lo > {level}; does not hold "
              "if hi <= {level}; inconclusive otherwise."),
    "all": ("The claim holds when every part holds, does not hold when any part does not hold, and is "
            "inconclusive otherwise."),
}


def rule_text(kind: str, delta: float = DELTA, level: float | None = None) -> str:
    return RULES[kind].format(delta=f"{delta:g}", level=f"{level:g}" if level is not None else "")


# ----------------------------------------------------------------------------- Student t (scipy.stats)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df may be fractional: Welch)."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    from scipy.stats import t as student_t

    return float(student_t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The t value with P(T <= t) = p."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    from scipy.stats import t as student_t

    return float(student_t.ppf(p, df))


# ----------------------------------------------------------------------------- summaries


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def sample_var(xs) -> float:
    xs = list(xs)
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def summary(xs, level: float = LEVEL) -> dict:
    """Mean, sample standard deviation and the one-sample t-interval of the mean."""
    xs = [float(x) for x in xs]
    n = len(xs)
    if n == 0:
        return dict(n=0, mean=None, sd=None, lo=None, hi=None, half=None)
    m = mean(xs)
    if n < 2:
        return dict(n=1, mean=m, sd=None, lo=None, hi=None, half=None)
    sd = math.sqrt(sample_var(xs))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return dict(n=n, mean=m, sd=sd, lo=m - half, hi=m + half, half=half)


def welch_diff(a, b, level: float = LEVEL) -> dict:
    """mean(b) - mean(a) with a Welch t-interval (unequal variances).

    When both samples have zero variance the interval is the point itself (df reported as inf)."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a difference of means needs at least 2 seeds per arm")
    d = mean(b) - mean(a)
    va, vb = sample_var(a) / len(a), sample_var(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return dict(diff=d, lo=d, hi=d, se=0.0, df=math.inf, t=None)
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    half = t_quantile(0.5 + level / 2, df) * se
    return dict(diff=d, lo=d - half, hi=d + half, se=se, df=df, t=d / se)


def slope(xs, ys, level: float = LEVEL) -> dict:
    """Least-squares slope of ys on xs with its t-interval (n - 2 degrees of freedom)."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    n = len(xs)
    if n < 3 or len(set(xs)) < 2:
        raise ValueError("a slope needs at least 3 points at 2 or more x values")
    mx, my = mean(xs), mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    sse = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(sse / (n - 2) / sxx)
    half = t_quantile(0.5 + level / 2, n - 2) * se if se > 0 else 0.0
    return dict(slope=b, intercept=a, lo=b - half, hi=b + half, se=se, df=n - 2, n=n)


def slope_diff(s_b: dict, s_a: dict, level: float = LEVEL) -> dict:
    """Difference of two independent slopes (B - A), Welch-Satterthwaite degrees of freedom."""
    d = s_b["slope"] - s_a["slope"]
    vb, va = s_b["se"] ** 2, s_a["se"] ** 2
    se = math.sqrt(va + vb)
    if se == 0:
        return dict(diff=d, lo=d, hi=d, se=0.0, df=math.inf)
    df = (va + vb) ** 2 / ((va ** 2 / s_a["df"] if va else 0.0) + (vb ** 2 / s_b["df"] if vb else 0.0))
    half = t_quantile(0.5 + level / 2, df) * se
    return dict(diff=d, lo=d - half, hi=d + half, se=se, df=df)


# ----------------------------------------------------------------------------- verdicts


def verdict_noninferior(a, b, delta: float = DELTA) -> dict:
    w = welch_diff(a, b)
    v = HOLDS if w["lo"] >= -delta else FAILS if w["hi"] < -delta else UNSURE
    return dict(verdict=v, rule=rule_text("noninferior", delta), **w)


def verdict_superior(a, b) -> dict:
    w = welch_diff(a, b)
    v = HOLDS if w["lo"] > 0 else FAILS if w["hi"] <= 0 else UNSURE
    return dict(verdict=v, rule=rule_text("superior"), **w)


def verdict_rising(points_a, points_b) -> dict:
    """points_*: [(budget, accuracy), ...] over every budget and seed; B is the method said to keep rising."""
    sa = slope([math.log2(x) for x, _ in points_a], [y for _, y in points_a])
    sb = slope([math.log2(x) for x, _ in points_b], [y for _, y in points_b])
    sd = slope_diff(sb, sa)
    if sb["lo"] > 0 and sd["lo"] > 0:
        v = HOLDS
    elif sb["hi"] <= 0 or sd["hi"] <= 0:
        v = FAILS
    else:
        v = UNSURE
    return dict(verdict=v, rule=rule_text("rising"), slope_a=sa, slope_b=sb, slope_diff=sd)


def verdict_above(xs, level: float) -> dict:
    s = summary(xs)
    if s["lo"] is None:
        raise ValueError("a share test needs at least 2 seeds")
    v = HOLDS if s["lo"] > level else FAILS if s["hi"] <= level else UNSURE
    return dict(verdict=v, rule=rule_text("above", level=level), level=level, **s)


def combine(verdicts) -> str:
    vs = list(verdicts)
    if vs and all(v == HOLDS for v in vs):
        return HOLDS
    if any(v == FAILS for v in vs):
        return FAILS
    return UNSURE
