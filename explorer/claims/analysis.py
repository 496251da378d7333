"""From per-seed run records to per-arm summaries and computed verdicts (pure Python, no torch).

A record is one finished (arm, seed) run::

    dict(arm="lora-r8-qv", seed=0, status="finished", accuracy=0.91, eval_loss=0.3012, trainable_params=75653,
         head_params=1925, adapter_params=73728, v_share=None, wall_s=41.2)

(``eval_loss``: the final held-out cross-entropy; files made before it was recorded lack it.)

:func:`analyse` works on partial results too (the page's live re-run): a test whose arms have fewer than
2 finished seeds gets ``verdict=None`` and says what it waits for.
"""

from __future__ import annotations

from . import stats as S

MIN_SEEDS = 2  # a t-interval needs 2; every shipped experiment has 3 or more


def _get(exp, key):
    return exp[key] if isinstance(exp, dict) else getattr(exp, key)


def _arms(exp) -> list[dict]:
    arms = _get(exp, "arms")
    return [a if isinstance(a, dict) else a.__dict__ for a in arms]


def _tests(exp) -> list[dict]:
    return [t if isinstance(t, dict) else t.__dict__ for t in _get(exp, "tests")]


def finished(records, arm: str, metric: str = "accuracy") -> list[float]:
    return [float(r[metric]) for r in records
            if r.get("arm") == arm and r.get("status") == "finished" and r.get(metric) is not None]


def arm_summaries(exp, records) -> list[dict]:
    out = []
    for a in _arms(exp):
        accs = finished(records, a["key"])
        s = S.summary(accs)
        xs = [r["adapter_params"] for r in records if r.get("arm") == a["key"] and r.get("adapter_params") is not None]
        tr = [r["trainable_params"] for r in records if r.get("arm") == a["key"] and r.get("trainable_params") is not None]
        vs = finished(records, a["key"], "v_share")
        out.append(dict(arm=a["key"], label=a["label"], group=a.get("group") or a["label"], method=a["method"],
                        seeds=[r["seed"] for r in records if r.get("arm") == a["key"] and r.get("status") == "finished"],
                        accuracy=accs, mean=s["mean"], sd=s["sd"], lo=s["lo"], hi=s["hi"], half=s["half"],
                        eval_loss=finished(records, a["key"], "eval_loss"),  # held-out loss (files since issue 21)
                        adapter_params=(max(xs) if xs else a.get("budget")),
                        trainable_params=(max(tr) if tr else None),
                        v_share=(S.summary(vs) if vs else None)))
    return out


def _waiting(need: dict) -> str | None:
    short = [f"{k} ({n} of {MIN_SEEDS} seeds)" for k, n in need.items() if n < MIN_SEEDS]
    return ("waiting for " + ", ".join(short)) if short else None


def run_test(exp, test: dict, records) -> dict:
    base = dict(key=test["key"], label=test["label"], kind=test["kind"], a=test["a"], b=test["b"],
                metric=test.get("metric", "accuracy"))
    kind = test["kind"]
    try:
        if kind in ("noninferior", "superior"):
            a, b = finished(records, test["a"]), finished(records, test["b"])
            wait = _waiting({test["a"]: len(a), test["b"]: len(b)})
            if wait:
                return dict(base, verdict=None, rule=S.rule_text(kind, test.get("delta") or S.DELTA), note=wait)
            if kind == "noninferior":
                r = S.verdict_noninferior(a, b, test.get("delta") or S.DELTA)
            else:
                r = S.verdict_superior(a, b)
            return dict(base, **r, mean_a=S.mean(a), mean_b=S.mean(b), n_a=len(a), n_b=len(b),
                        delta=test.get("delta"))
        if kind == "rising":
            arms = {a["key"]: a for a in _arms(exp)}
            groups = {}
            for r in records:
                arm = arms.get(r.get("arm"))
                if arm is None or r.get("status") != "finished" or r.get("accuracy") is None:
                    continue
                x = r.get("adapter_params") or arm.get("budget")
                groups.setdefault(arm.get("group"), []).append((x, float(r["accuracy"])))
            pa, pb = groups.get(test["a"], []), groups.get(test["b"], [])
            if min(len(pa), len(pb)) < 3 or len({x for x, _ in pa}) < 2 or len({x for x, _ in pb}) < 2:
                return dict(base, verdict=None, rule=S.rule_text("rising"),
                            note="waiting for runs at 2 or more budgets of both methods")
            return dict(base, **S.verdict_rising(pa, pb))
        if kind == "above":
            xs = finished(records, test["b"], test.get("metric", "accuracy"))
            if len(xs) < MIN_SEEDS:
                return dict(base, verdict=None, rule=S.rule_text("above", level=test["level"]),
                            note=_waiting({test["b"]: len(xs)}))
            return dict(base, **S.verdict_above(xs, test["level"]))
    except ValueError as e:  # e.g. a degenerate design: the test says so instead of failing the page
        return dict(base, verdict=None, rule="", note=str(e))
    raise ValueError(f"unknown test kind '{kind}'")


def analyse(exp, records) -> dict:
    """Per-arm summaries, each test's verdict and the claim's overall verdict (None while waiting)."""
    tests = [run_test(exp, t, records) for t in _tests(exp)]
    vs = [t["verdict"] for t in tests]
    overall = None if any(v is None for v in vs) else S.combine(vs)
    return dict(arms=arm_summaries(exp, records), tests=tests, verdict=overall, rule=S.rule_text("all"),
                level=S.LEVEL)
