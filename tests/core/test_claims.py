"""The claims lab core: the statistics against textbook values, every verdict branch on synthetic numbers
(expected intervals derived by hand below), the quick size of one claim end to end, the links, the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.claims import analysis as A
from explorer.claims import results as R
from explorer.claims import specs
from explorer.claims import stats as S

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- Student t


@pytest.mark.parametrize("df,expected", [(1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445),
                                         (7, 2.364624), (10, 2.228139), (30, 2.042272), (1000, 1.962339)])
def test_t_quantile_matches_the_table(df, expected):
    assert S.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-6)


def test_t_cdf_is_symmetric_and_fractional_df_lies_between():
    assert S.t_cdf(0.0, 3) == pytest.approx(0.5)
    assert S.t_cdf(-2.0, 5) == pytest.approx(1 - S.t_cdf(2.0, 5))
    assert S.t_quantile(0.975, 3) > S.t_quantile(0.975, 3.5) > S.t_quantile(0.975, 4)


def test_student_t_is_scipys_and_the_shipped_intervals_are_unchanged():
    """Issue 21: the hand-written incomplete beta gave way to scipy.stats; every shipped interval recomputed from
    its per-seed records equals the stored one to 1e-9."""
    from scipy.stats import t as student_t

    for df in (1, 3.5, 7.3, 30):
        assert S.t_quantile(0.975, df) == float(student_t.ppf(0.975, df))
        assert S.t_cdf(-1.3, df) == float(student_t.cdf(-1.3, df))
    assert not hasattr(S, "betainc") and not hasattr(S, "_betacf")
    for name in specs.NAMES:
        doc = R.load(name)
        fresh = A.analyse(specs.from_dict(doc["experiment"]), doc["records"])
        for old, new in zip(doc["tests"], fresh["tests"]):
            assert old["verdict"] == new["verdict"]
            for key in ("lo", "hi", "diff"):
                if old.get(key) is not None:
                    assert abs(old[key] - new[key]) < 1e-9, (name, old["key"], key)
        for old, new in zip(doc["arms"], fresh["arms"]):
            if old["lo"] is not None:
                assert abs(old["lo"] - new["lo"]) < 1e-9 and abs(old["hi"] - new["hi"]) < 1e-9


# ----------------------------------------------------------------------------- intervals (derived by hand)

A3 = [0.90, 0.91, 0.92]  # mean 0.91, sample variance 1e-4
SE_EQ = math.sqrt(2 * 1e-4 / 3)  # two such arms: se of the difference 0.0081650
HALF_EQ = 2.776445 * SE_EQ  # Welch df = 4 for equal variances and n: half-width 0.022669


def shifted(d):
    return [x + d for x in A3]


def test_welch_difference_by_hand():
    w = S.welch_diff(A3, shifted(0.01))
    assert w["diff"] == pytest.approx(0.01)
    assert w["df"] == pytest.approx(4.0)
    assert w["se"] == pytest.approx(SE_EQ)
    assert w["hi"] - w["diff"] == pytest.approx(HALF_EQ, abs=1e-6)


def test_welch_zero_variance_is_the_point():
    w = S.welch_diff([0.5, 0.5], [0.7, 0.7])
    assert (w["lo"], w["hi"]) == pytest.approx((0.2, 0.2))


@pytest.mark.parametrize("shift,verdict", [
    (0.01, S.HOLDS),     # lo = 0.01 - 0.0227 = -0.0127 >= -0.02
    (0.0, S.UNSURE),     # lo = -0.0227 < -0.02 and hi = +0.0227
    (-0.03, S.UNSURE),   # hi = -0.0073 >= -0.02
    (-0.06, S.FAILS),    # hi = -0.0373 < -0.02
])
def test_noninferior_branches(shift, verdict):
    r = S.verdict_noninferior(A3, shifted(shift), delta=0.02)
    assert r["verdict"] == verdict
    assert "-0.02" in r["rule"]


@pytest.mark.parametrize("a,b,verdict", [
    (A3, shifted(0.03), S.HOLDS),    # lo = 0.0073 > 0
    (A3, shifted(0.0), S.UNSURE),    # the interval straddles 0
    (A3, shifted(-0.03), S.FAILS),   # hi = -0.0073 <= 0
    ([0.9, 0.9, 0.9], [0.9, 0.9, 0.9], S.FAILS),  # identical: at best equal
])
def test_superior_branches(a, b, verdict):
    assert S.verdict_superior(a, b)["verdict"] == verdict


def points(slope):
    """Budgets 1, 2, 4 (log2: 0, 1, 2), 3 seeds each, noise -0.01 / 0 / +0.01 around 0.8 + slope * log2(x):
    the least-squares slope is exactly ``slope``; SSE = 3 x 2e-4, Sxx = 6, se = sqrt(6e-4 / 7 / 6)."""
    return [(x, 0.8 + slope * math.log2(x) + e) for x in (1, 2, 4) for e in (-0.01, 0.0, 0.01)]


SE_SLOPE = math.sqrt(6e-4 / 7 / 6)  # 0.0037796


def test_slope_by_hand():
    s = S.slope([math.log2(x) for x, _ in points(0.05)], [y for _, y in points(0.05)])
    assert s["slope"] == pytest.approx(0.05)
    assert s["se"] == pytest.approx(SE_SLOPE)
    assert s["hi"] - s["slope"] == pytest.approx(2.364624 * SE_SLOPE, abs=1e-6)


@pytest.mark.parametrize("slope_a,slope_b,verdict", [
    (0.0, 0.05, S.HOLDS),    # B: 0.05 +- 0.0089; difference 0.05 +- 2.1448 * 0.005345 = 0.0115
    (0.05, 0.0, S.FAILS),    # difference -0.05 +- 0.0115: hi < 0
    (0.0, 0.005, S.UNSURE),  # B's interval straddles 0, so does the difference
])
def test_rising_branches(slope_a, slope_b, verdict):
    r = S.verdict_rising(points(slope_a), points(slope_b))
    assert r["verdict"] == verdict
    assert r["slope_diff"]["diff"] == pytest.approx(slope_b - slope_a)
    assert r["slope_diff"]["se"] == pytest.approx(math.sqrt(2) * SE_SLOPE)


@pytest.mark.parametrize("xs,verdict", [
    ([0.8, 0.9, 1.0], S.HOLDS),     # mean 0.9, half 4.3027 * 0.1 / sqrt(3) = 0.2484: lo 0.652 > 1/3
    ([0.1, 0.2, 0.3], S.UNSURE),    # hi 0.448 > 1/3 > lo
    ([0.1, 0.15, 0.2], S.FAILS),    # hi 0.15 + 0.1242 = 0.274 <= 1/3
])
def test_above_branches(xs, verdict):
    assert S.verdict_above(xs, 1 / 3)["verdict"] == verdict


def test_combine():
    assert S.combine([S.HOLDS, S.HOLDS]) == S.HOLDS
    assert S.combine([S.HOLDS, S.UNSURE]) == S.UNSURE
    assert S.combine([S.UNSURE, S.FAILS, S.HOLDS]) == S.FAILS


# ----------------------------------------------------------------------------- analysis of records


def recs(arm, accs, params=1000):
    return [dict(arm=arm, seed=i, status="finished", accuracy=a, adapter_params=params) for i, a in enumerate(accs)]


def test_analysis_waits_for_seeds_then_decides():
    exp = specs.get("sparta")
    part = recs("lora-r8-qv", A3) + recs("sparta-vo", [0.95])
    out = A.analyse(exp, part)
    assert out["verdict"] is None
    first = next(t for t in out["tests"] if t["key"] == "competes")
    assert first["verdict"] is None and "sparta-vo (1 of 2 seeds)" in first["note"]
    full = recs("lora-r8-qv", A3) + recs("sparta-vo", shifted(0.01)) + recs("sparta-qk", shifted(-0.06))
    out = A.analyse(exp, full)
    by = {t["key"]: t["verdict"] for t in out["tests"]}
    assert by == {"competes": S.HOLDS, "placement": S.HOLDS}
    assert out["verdict"] == S.HOLDS
    # a failed run does not count as a seed
    bad = full + [dict(arm="sparta-vo", seed=9, status="failed", accuracy=None)]
    assert A.analyse(exp, bad)["arms"][1]["accuracy"] == shifted(0.01)


def test_every_experiment_has_three_seeds_and_known_arms():
    assert set(specs.NAMES) == {"lora-sp", "tied-lora", "smt", "sparta"}
    for name in specs.NAMES:
        exp = specs.get(name)
        assert len(specs.SIZES["full"].seeds) >= 3
        keys = {a.key for a in exp.arms}
        groups = {a.group for a in exp.arms}
        for t in exp.tests:
            if t.kind == "rising":
                assert {t.a, t.b} <= groups
            else:
                assert t.b in keys and (t.a in keys or t.kind == "above")


def test_budgets_match_the_shapes():
    exp = specs.get("smt")
    # LoRA rank r on q and v of minilm: r x (384 + 384) x 2 targets x 6 layers
    assert exp.arm("lora-r8-qv").budget == 8 * 768 * 2 * 6 == 73_728
    assert exp.arm("smt-72b").budget == 72 * 32 * 32 == 73_728
    sp = specs.get("sparta").arm("sparta-vo")
    assert sp.knobs["density"] * 2 * 384 * 384 * 6 == pytest.approx(73_728, rel=1e-5)


def test_unknown_names_are_one_line():
    from explorer.errors import DataError

    with pytest.raises(DataError, match="unknown claim 'nope'"):
        specs.get("nope")


# ----------------------------------------------------------------------------- end to end (quick size)


def test_quick_claim_end_to_end(tmp_path):
    import torch

    from explorer.claims import runner

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    doc = runner.run_claim("lora-sp", size="quick")
    wall = time.perf_counter() - t0
    assert wall < 60, wall
    sz = specs.SIZES["quick"]
    assert len(doc["records"]) == 2 * len(sz.seeds)
    assert all(r["status"] == "finished" and 0 <= r["accuracy"] <= 1 for r in doc["records"])
    arms = {a["arm"]: a for a in doc["arms"]}
    assert arms["lora-r8-qv"]["adapter_params"] == 73_728  # 8 x 768 x 2 x 6, head not counted
    assert 0.45 <= arms["lora-sp-r8-qv"]["adapter_params"] / 73_728 <= 0.55  # a random half frozen
    for a in arms.values():  # the summaries are the mean of the per-seed numbers
        assert a["mean"] == pytest.approx(sum(a["accuracy"]) / len(a["accuracy"]))
        assert a["lo"] <= a["mean"] <= a["hi"]
    assert doc["verdict"] in S.VERDICTS
    t = doc["tests"][0]
    a_acc, b_acc = arms["lora-r8-qv"]["accuracy"], arms["lora-sp-r8-qv"]["accuracy"]
    assert t["diff"] == pytest.approx(sum(b_acc) / 3 - sum(a_acc) / 3)
    path = runner.write(doc, tmp_path / "lora-sp.json")
    back = json.loads(path.read_text())
    for key in ("command", "versions", "commit", "records", "arms", "tests", "verdict", "experiment", "settings"):
        assert key in back, key
    assert back["versions"]["torch"] and back["experiment"]["paper_figure"] and back["experiment"]["caveats"]
    assert R.load("lora-sp", tmp_path)["verdict"] == doc["verdict"]
    md = R.markdown_table(tmp_path).splitlines()
    assert md[2].startswith(f"| **lora-sp** ({len(sz.seeds)} seeds): {doc['verdict']} | {t['label']} |")
    assert f"{100 * t['diff']:+.1f} points [{100 * t['lo']:+.1f}, {100 * t['hi']:+.1f}]" in md[2]
    assert sum("| not run |" in line for line in md) == len(specs.NAMES) - 1


def test_first_three_seeds_are_judged_beside_all_seeds():
    from explorer.claims import runner

    exp = specs.get("sparta")
    # seeds 0-2: Wv/Wo 6 points below LoRA (does not hold); seeds 3-4 far above: all 5 seeds straddle
    lora = recs("lora-r8-qv", A3 + [0.91, 0.91])
    vo = recs("sparta-vo", shifted(-0.06) + [0.99, 0.99])
    qk = recs("sparta-qk", A3 + [0.91, 0.91])
    doc = runner.finish({}, exp, lora + vo + qk)
    first = {t["key"]: t for t in doc["first_seeds"]["tests"]}
    assert doc["first_seeds"]["seeds"] == [0, 1, 2]
    assert first["competes"]["verdict"] == S.FAILS  # hi = -0.06 + 0.0227 < -0.02 (derived above)
    assert first["competes"]["lo"] == pytest.approx(-0.06 - HALF_EQ, abs=1e-6)
    assert doc["tests"][0]["verdict"] == S.verdict_noninferior(A3 + [0.91, 0.91], shifted(-0.06) + [0.99, 0.99])["verdict"]
    assert "first_seeds" not in runner.finish({}, exp, [r for r in lora + vo + qk if r["seed"] < 3])


def test_broken_results_file_is_one_line(tmp_path):
    from explorer.errors import DataError

    (tmp_path / "smt.json").write_text("{not json")
    with pytest.raises(DataError, match="smt.json: not a readable results file"):
        R.load("smt", tmp_path)
    (tmp_path / "smt.json").write_text(json.dumps({"claim": "sparta", "records": []}))
    with pytest.raises(DataError, match="not a claims-lab results file"):
        R.load("smt", tmp_path)
    assert R.brief("smt", tmp_path)["error"].startswith("smt.json")
    assert R.load("tied-lora", tmp_path) is None


# ----------------------------------------------------------------------------- links and command line


def test_finetune_link_reads_back_with_the_pages_schema():
    from urllib.parse import parse_qsl, urlsplit

    from explorer import data as D
    from explorer.claims import live
    from explorer.methods import METHODS
    from explorer.urlstate import Schema, knob_fields

    exp = specs.get("lora-sp")
    arm = exp.arm("lora-sp-r8-qv")
    url = live.finetune_link(exp, arm, 2)
    assert url.startswith("Fine_tune?")
    q = dict(parse_qsl(urlsplit(url).query))
    assert (q["model"], q["task"], q["method"], q["steps"], q["bs"], q["seed"]) == \
        ("minilm", "bbc-news", "lora-sp", str(specs.STEPS), "16", "2")
    assert float(q["lr"]) == 3e-3 and "bbc-news" in D.BUILTIN
    vals, warns = Schema(knob_fields(METHODS["lora-sp"].knobs, prefix="k_")).parse(q)
    assert not warns
    assert (vals["k_rank"], vals["k_freeze"], vals["k_targets"], vals["k_seed"]) == (8, 0.5, ["q", "v"], 2)


def cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def test_cli_json_lists_every_claim_with_its_file():
    r = cli("claims", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [b["claim"] for b in out] == specs.NAMES
    for b in out:
        assert b["results_file"] == f"assets/claims/{b['claim']}.json"
        if (ROOT / b["results_file"]).exists():  # the shipped results: the verdict and its numbers
            doc = json.loads((ROOT / b["results_file"]).read_text())
            assert b["verdict"] == doc["verdict"] in S.VERDICTS
            assert len(b["tests"]) == len(doc["tests"]) and all(a["n"] >= 3 for a in b["arms"])


def test_cli_bad_name_is_one_line():
    r = cli("claims", "--run", "nope")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown claim 'nope'" in r.stderr


def test_page_evaluations_and_memory_account_do_not_change_a_run():
    """The Fine-tune page evaluates along the way and measures memory; the lab evaluates once at the end without
    the byte account.  Neither may change the run, or a card's link would not reproduce its figure."""
    import dataclasses

    import torch

    from explorer.claims import runner

    torch.set_num_threads(1)
    exp = specs.get("sparta")
    cfg = runner.config_for(exp, exp.arm("sparta-vo"), 1, specs.SIZES["quick"])
    a = runner.train(cfg)
    b = runner.train(dataclasses.replace(cfg, eval_every=1, measure_memory=True))
    assert a.summary["status"] == b.summary["status"] == "finished"
    assert a.summary["final_accuracy"] == b.summary["final_accuracy"]
    la = [r["loss"] for r in a.records if "loss" in r]
    lb = [r["loss"] for r in b.records if "loss" in r]
    assert la == lb and len(la) == cfg.steps


# ----------------------------------------------------------------------------- issue 21: words, ticks, held-out loss


def test_the_lora_sp_card_says_where_its_interval_lies():
    """[-3.6, -0.8] points is wholly below zero, and straddles the -2-point margin: the sentence says both,
    computed from the numbers (not only 'inconclusive' with the margin hidden in a box)."""
    from explorer.claims import words as W

    doc = R.load("lora-sp")
    labels = {a["arm"]: a["label"] for a in doc["arms"]}
    text = W.explain_test(doc["tests"][0], labels)
    assert "[-3.6, -0.8]" in text and "wholly below zero" in text and "worse than LoRA r=8 (q,v)" in text
    assert "straddles the −2-point margin" in text and text.endswith("(inconclusive).")
    # the other branches, on synthetic intervals
    t = dict(kind="noninferior", a="A", b="B", diff=-0.005, lo=-0.015, hi=0.005, verdict=S.HOLDS, delta=0.02)
    assert "spans zero" in W.explain_test(t) and "above the −2-point margin" in W.explain_test(t)
    t = dict(t, diff=-0.05, lo=-0.07, hi=-0.03, verdict=S.FAILS)
    assert "wholly below the −2-point margin" in W.explain_test(t)
    t = dict(kind="superior", a="A", b="B", diff=0.05, lo=0.01, hi=0.09, verdict=S.HOLDS)
    assert "wholly above zero, so B beats A (holds at this scale)." in W.explain_test(t)
    smt = R.load("smt")
    rising = next(x for x in smt["tests"] if x["kind"] == "rising")
    assert "spans zero" in W.explain_test(rising)
    share = next(x for x in smt["tests"] if x["kind"] == "above")
    assert "wholly above the level 0.33" in W.explain_test(share)


def test_claim_charts_have_distinct_tick_labels_and_labelled_log_axes():
    """Issue 21: '95 %, 95 %, 94 %, 94 %' on the y axis and log axes with one or no label."""
    from explorer.claims import figures as F

    for name in specs.NAMES:
        fig = F.claim_figure(R.load(name))
        y, x = fig.layout.yaxis, fig.layout.xaxis
        assert y.tickmode == "array" and len(set(y.ticktext)) == len(y.ticktext) >= 3, (name, y.ticktext)
        assert x.type == "log" and x.tickmode == "array" and len(x.ticktext) >= 3, (name, x.ticktext)
        lo, hi = 10 ** x.range[0], 10 ** x.range[1]
        assert all(lo <= v <= hi for v in x.tickvals)  # every tick inside the drawn range


def test_the_held_out_loss_is_recorded_and_shown_beside_identical_accuracies():
    """DoRA's five accuracies are exactly LoRA's in smt.json: the card says so and, where the file has the
    held-out loss (recorded since issue 21), shows it; the shipped file predates it and the card says that."""
    from types import SimpleNamespace

    from explorer.claims import runner
    from explorer.claims import words as W

    arm = specs.get("smt").arms[0]
    res = SimpleNamespace(summary=dict(status="finished", final_accuracy=0.92, final_eval_loss=0.3012,
                                       trainable_params=75653), adapter=None)
    assert runner.record_from(arm, 0, res)["eval_loss"] == 0.3012
    doc = R.load("smt")
    notes = W.same_accuracy_notes(doc)
    assert len(notes) == 1 and "DoRA r=8 (q,v)" in notes[0] and "LoRA r=8 (q,v)" in notes[0]
    assert "steps of 0.5 points" in notes[0] and "before the held-out loss was recorded" in notes[0]
    recs = [dict(r, eval_loss=(0.30 + r["seed"] / 100 + (0.002 if r["arm"].startswith("dora") else 0.0)))
            for r in doc["records"]]
    fresh = dict(doc, **A.analyse(specs.from_dict(doc["experiment"]), recs))
    note = W.same_accuracy_notes(fresh)[0]
    assert "0.3220 and 0.3200" in note and "0.3020 vs 0.3000" in note and "the runs differ" in note
    p = sum(a["mean"] for a in doc["arms"]) / len(doc["arms"])
    half = 100 * 1.96 * math.sqrt(p * (1 - p) / 200)  # one run's binomial interval at the arms' mean accuracy
    assert f"±{half:.1f} points" in W.resolution_note(doc) and "steps of 0.5 points" in W.resolution_note(doc)
