"""What a claim card says in words, computed from the numbers beside it (pure Python, no Streamlit).

- :func:`explain_test`: one sentence per test saying where its 95 % interval lies relative to zero and to the
  margin (or the level), and so why the verdict is what it is ("[-3.6, -0.8] points: wholly below zero, so
  LoRA-SP is worse here; it straddles the -2-point margin, so whether it is within 2 points cannot be told").
- :func:`same_accuracy_notes`: arms whose per-seed accuracies are identical, with their held-out losses.
- :func:`resolution_note`: what accuracy on ``n`` held-out examples can resolve (its step, a run's binomial
  interval) against the spread over seeds.
"""

from __future__ import annotations

import math

from . import stats as S

__all__ = ["explain_test", "same_accuracy_notes", "resolution_note", "loss_text"]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _where(lo: float, hi: float, mark: float) -> str:
    """'above', 'below' or 'straddles' of an interval against one mark."""
    if lo > mark:
        return "above"
    if hi < mark:
        return "below"
    return "straddles"


def explain_test(t: dict, labels: dict | None = None) -> str:
    """One computed sentence for a test of ``analysis.run_test`` (``labels``: arm or group key -> its label)."""
    labels = labels or {}
    a, b = labels.get(t.get("a"), t.get("a")), labels.get(t.get("b"), t.get("b"))
    if t.get("verdict") is None:
        return t.get("note") or "waiting for seeds"
    kind = t.get("kind")
    if kind in ("noninferior", "superior"):
        lo, hi, d = t["lo"], t["hi"], t["diff"]
        head = f"{b} − {a} = {_pts(d)} points, 95 % interval [{_pts(lo)}, {_pts(hi)}]"
        zero = _where(lo, hi, 0.0)
        zero_text = {"above": f"wholly above zero, so {b} is better than {a} here",
                     "below": f"wholly below zero, so {b} is worse than {a} here",
                     "straddles": "it spans zero, so no difference is shown"}[zero]
        if kind == "superior":
            if zero == "straddles" and hi <= 0:  # the interval ends at exactly 0
                zero = "below"
            text = {"above": f"wholly above zero, so {b} beats {a}",
                    "below": f"at or below zero, so {b} does not beat {a} (at best equal)",
                    "straddles": f"it spans zero, so whether {b} beats {a} cannot be told"}[zero]
            return f"{head}: {text} ({t['verdict']})."
        delta = t.get("delta") or S.DELTA
        m = f"−{100 * delta:g}-point margin"
        margin = _where(lo, hi, -delta)
        if lo >= -delta:
            margin = "above"
        margin_text = {"above": f"it lies above the {m}, so {b} is at most {100 * delta:g} points worse",
                       "below": f"it lies wholly below the {m}, so {b} is more than {100 * delta:g} points worse",
                       "straddles": f"it straddles the {m} (from {_pts(lo)} to {_pts(hi)}), so whether {b} is "
                                    f"within {100 * delta:g} points of {a} cannot be told"}[margin]
        return f"{head}: {zero_text}; {margin_text} ({t['verdict']})."
    if kind == "rising":
        sb, sd = t["slope_b"], t["slope_diff"]
        sa = t["slope_a"]
        own = {"above": "wholly above zero (it rises)", "below": "wholly below zero (it falls)",
               "straddles": "spans zero (no rise shown)"}[_where(sb["lo"], sb["hi"], 0.0)]
        diff = {"above": f"wholly above zero ({b} rises faster than {a})",
                "below": f"wholly below zero ({b} rises more slowly than {a})",
                "straddles": "spans zero (no difference shown)"}[_where(sd["lo"], sd["hi"], 0.0)]
        return (f"accuracy per doubling of the budget: {b} {_pts(sb['slope'])} points [{_pts(sb['lo'])}, "
                f"{_pts(sb['hi'])}], {own}; {a} {_pts(sa['slope'])} points; the difference [{_pts(sd['lo'])}, "
                f"{_pts(sd['hi'])}] {diff} ({t['verdict']}).")
    if kind == "above":
        lo, hi, lv = t["lo"], t["hi"], t["level"]
        where = {"above": f"wholly above the level {lv:.2f}", "below": f"wholly below the level {lv:.2f}",
                 "straddles": f"straddles the level {lv:.2f}"}[_where(lo, hi, lv)]
        return f"mean share {t['mean']:.2f}, 95 % interval [{lo:.2f}, {hi:.2f}]: {where} ({t['verdict']})."
    return str(t.get("verdict"))


def loss_text(arm: dict) -> str:
    """An arm's mean held-out loss (cross-entropy, nats) over its seeds, or '—' when the file lacks it."""
    losses = arm.get("eval_loss") or []
    return f"{sum(losses) / len(losses):.4f}" if losses else "—"


def same_accuracy_notes(doc: dict) -> list[str]:
    """Arms whose accuracies are identical on every seed (the same seeds), said with the held-out losses that
    tell them apart, or with what is missing to tell them apart."""
    arms = [a for a in doc.get("arms") or [] if a.get("accuracy")]
    n = (doc.get("settings") or {}).get("eval_examples")
    out = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            if a.get("seeds") != b.get("seeds") or a["accuracy"] != b["accuracy"] or len(a["accuracy"]) < 2:
                continue
            accs = ", ".join(f"{x:.3f}" for x in a["accuracy"])
            text = (f"**{b['label']}** and **{a['label']}** have exactly the same accuracy on every seed ({accs}): "
                    + (f"on {n} held-out sentences accuracy moves in steps of {100 / n:.1f} points, so two runs "
                       f"whose predictions coincide on every sentence score alike. " if n else ""))
            la, lb = a.get("eval_loss") or [], b.get("eval_loss") or []
            if la and lb and len(la) == len(lb):
                same = all(abs(x - y) < 5e-5 for x, y in zip(la, lb))
                text += (f"Their held-out losses, a continuous measure, are {loss_text(b)} and {loss_text(a)} "
                         f"(mean over seeds; seed by seed "
                         + "; ".join(f"{x:.4f} vs {y:.4f}" for x, y in zip(lb, la)) + ")"
                         + (": the runs are alike on these sentences too." if same else
                            ": the runs differ, but not by enough to change one prediction's class."))
            else:
                text += ("This results file was made before the held-out loss was recorded, so it cannot show "
                         "whether the runs differ; a re-run records the loss beside the accuracy.")
            out.append(text)
    return out


def resolution_note(doc: dict) -> str | None:
    """What accuracy on the held-out sentences can resolve, from the file's own numbers."""
    n = (doc.get("settings") or {}).get("eval_examples")
    arms = [a for a in doc.get("arms") or [] if a.get("mean") is not None]
    if not n or not arms:
        return None
    p = sum(a["mean"] for a in arms) / len(arms)
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    se = math.sqrt(p * (1 - p) / n)
    sds = [a["sd"] for a in arms if a.get("sd") is not None]
    spread = ""
    if sds:
        rng = f"{100 * min(sds):.1f}-{100 * max(sds):.1f} points per arm"
        spread = (f" The standard deviation over seeds ({rng}) is "
                  + (f"below one run's binomial standard error ({100 * se:.1f} points)" if max(sds) < se else
                     f"against one run's binomial standard error of {100 * se:.1f} points")
                  + ": every seed is scored on the same sentences, so the intervals over seeds say how a result "
                    "varies with the seed, not how it would fare on other sentences.")
    return (f"Resolution: accuracy on {n} held-out sentences moves in steps of {100 / n:.1f} points; at the "
            f"arms' mean accuracy ({100 * p:.1f} %) one run's binomial 95 % interval is ±{100 * half:.1f} points."
            + spread)
