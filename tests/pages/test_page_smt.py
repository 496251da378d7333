"""SMT block inspector: the page in AppTest (tiny models, short warm-ups), its figure helpers, and the
hand-over of a selection to Fine-tune / ``TrainConfig(smt_selection=...)``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import smt_inspector as A
from explorer.views import smt_views as V
from explorer.targets import Target
from tests.support.apptest import no_problem, page_app, qp, stop_all_runs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: 1 torch thread

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "5_SMT_block_inspector.py")
FT = str(ROOT / "pages" / "2_Fine_tune.py")
HANDOFF = "smt_inspector_selection"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("PEFT_EXPLORER_CACHE", str(tmp_path / "cache"))  # the gradients are really computed
    A.clear_memory_cache()
    yield
    stop_all_runs()




def wait_view(at: AppTest, steps: int | None = None, timeout: float = 40.0) -> dict:
    """Rerun until the page shows an analysis (of ``steps`` warm-up steps when given)."""
    deadline = time.time() + timeout
    while True:
        view = at.session_state["smt:view"] if "smt:view" in at.session_state else None
        job = at.session_state["smt:job"] if "smt:job" in at.session_state else None
        idle = job is None or (job.job.done and job.seen)
        if view is not None and idle and (steps is None or view["steps_done"] == steps):
            return view
        assert time.time() < deadline, "the page never showed an analysis"
        time.sleep(0.2)
        at.run()


def page(**params) -> AppTest:
    at = page_app(PAGE, 60)
    for kk, v in params.items():
        at.query_params[kk] = str(v)
    at.run()
    return at


def sel_key(view: dict) -> str:
    return json.dumps(view["selection"], sort_keys=True)


# ----------------------------------------------------------------------------- the page


def test_default_page_computes_tiny_llama_and_every_control_moves():
    at = page(ws=6, bs=2, len=32)
    no_problem(at)
    v0 = wait_view(at, 6)
    no_problem(at)
    assert qp(at, "model") == "tiny-llama" and qp(at, "ws") == "6"
    assert v0["n_blocks"] == sum(len(r) for r, _ in v0["selection"].values()) > 0
    labels = {m.label: m.value for m in at.metric}
    assert labels["selected blocks"] == f"{v0['n_blocks']:,}"
    assert len(at.get("plotly_chart")) >= 4
    texts = [e.label for e in at.expander if e.label.startswith("Chart as text:")]
    assert len(texts) >= 4 and "Chart as text: this chart" not in texts, texts  # each chart's alternative is named

    # "Compute gradients" for new warm-up settings (tiny-llama, gradient-only mode)
    at.radio(key="smt:mode").set_value("gradient-only")
    at.run()
    at.button(key="smt_compute").click()
    at.run()
    v1 = wait_view(at, 6)
    no_problem(at)
    recs = at.session_state["smt:records"]
    assert len(recs) == 2 and any(r.mode == "gradient-only" for r in recs.values())
    assert qp(at, "mode") == "gradient-only"

    # block size: 16 (auto: the largest that leaves >= 8 blocks in the smallest matrix) and 32 are both valid
    # for tiny-llama; the selection changes with it
    sizes = at.select_slider(key="smt:b").options
    assert "16" in sizes and "32" in sizes and v1["block_size"] == 16
    at.select_slider(key="smt:b").set_value(32)
    at.run()
    v32 = wait_view(at)
    assert v32["block_size"] == 32 and qp(at, "b") == "32"
    assert sel_key(v32) != sel_key(v1)
    at.select_slider(key="smt:b").set_value(16)
    at.run()
    v16 = wait_view(at)
    assert v16["block_size"] == 16 and qp(at, "b") == "16"

    # number of blocks
    at.slider(key="smt:n").set_value(7)
    at.run()
    v7 = wait_view(at)
    no_problem(at)
    assert v7["n_blocks"] == 7 and qp(at, "n") == "7"

    # score: at least one other score picks other blocks
    keys = {sel_key(v7)}
    for s in ("mean-abs", "l1", "l2"):
        at.radio(key="smt:score").set_value(s)
        at.run()
        vs = wait_view(at)
        no_problem(at)
        assert vs["score"] == s and vs["n_blocks"] == 7
        keys.add(sel_key(vs))
    assert len(keys) > 1

    # rule: per-matrix spreads the budget over matrices
    at.slider(key="smt:n").set_value(40)
    at.radio(key="smt:rule").set_value("per-matrix")
    at.run()
    vp = wait_view(at)
    no_problem(at)
    assert vp["rule"] == "per-matrix" and qp(at, "rule") == "per-matrix"
    per = [len(r) for r, _ in vp["selection"].values()]
    at.radio(key="smt:rule").set_value("global")
    at.run()
    vg = wait_view(at)
    assert sel_key(vg) != sel_key(vp)
    assert sum(1 for n in per if n > 0) >= sum(1 for r, _ in vg["selection"].values() if len(r))

    # density budget
    at.radio(key="smt:budget").set_value("density")
    at.run()
    at.slider(key="smt:dens").set_value(0.25)
    at.run()
    vd = wait_view(at)
    no_problem(at)
    dens = {m.label: m.value for m in at.metric}["density"]
    assert float(dens.rstrip("%")) == pytest.approx(25.0, abs=2.0) and qp(at, "dens") == "0.25"

    # matrix types: only v and o
    at.multiselect(key="smt:types").set_value(["v", "o"])
    at.run()
    vt = wait_view(at)
    no_problem(at)
    assert vt["types"] == ["v", "o"]
    assert all(("v_proj" in kk or "o_proj" in kk) for kk in vt["selection"])

    # views: layer, matrix, log scale, grid type: no exception, the selection stays, the heatmap changes
    before = at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="smt:layer").set_value(1)
    at.run()
    no_problem(at)
    assert at.get("plotly_chart")[0].proto.spec != before
    at.radio(key="smt:mat").set_value("o")
    at.run()
    at.toggle(key="smt:log").set_value(True)
    at.run()
    at.radio(key="smt:grid").set_value("o")
    at.run()
    no_problem(at)
    assert qp(at, "log") == "1" and qp(at, "layer") == "1" and qp(at, "mat") == "o" and qp(at, "grid") == "o"
    assert sel_key(wait_view(at)) == sel_key(vt)


def test_instructor_mode_hides_advanced_controls():
    at = page(model="tiny-bert", ws=2, bs=2, len=32, mode="gradient-only", instr=1)
    wait_view(at, 2)
    no_problem(at)
    keys = {w.key for w in list(at.radio) + list(at.multiselect) + list(at.select_slider) + list(at.number_input)}
    assert not {"smt:mode", "smt:types", "smt:bs", "smt:len", "smt:seed"} & keys
    assert {"smt:b", "smt:score", "smt:rule"} <= keys
    assert qp(at, "mode") == "gradient-only"  # kept, only hidden
    assert any("Hidden in the simple view" in c.value for c in at.caption)


def test_bad_url_values_are_clamped():
    at = page(model="nonsense", ws="-5", bs="999", len="abc", b="7", score="max", rule="x", layer="999",
              dens="7", mat="zz", types="q,foo")
    no_problem(at)
    assert any("adjusted" in i.value for i in at.info)
    assert qp(at, "model") == "tiny-llama" and qp(at, "ws") == "1" and qp(at, "bs") == "32"
    assert qp(at, "b") == "0" and qp(at, "score") == "abs-mean" and qp(at, "rule") == "global"
    assert qp(at, "dens") == "1.0" and qp(at, "types") == "q"
    v = wait_view(at, 1)
    no_problem(at)
    assert v["types"] == ["q"]
    # 999 -> 200 by the schema -> a layer the model has (the heatmap opens where SMT selects blocks)
    assert qp(at, "layer") in ("0", "1")


def test_train_with_this_selection_hands_over_and_fine_tune_uses_it():
    at = page(model="tiny-bert", ws=3, bs=2, len=32, n=5)
    v = wait_view(at, 3)
    no_problem(at)
    at.button(key="smt_train").click()
    at.run()
    no_problem(at)
    h = at.session_state[HANDOFF]
    assert h.model == "tiny-bert" and h.n_blocks == 5 == v["n_blocks"]
    assert h.block_size == v["block_size"]
    assert {kk: [list(r), list(c)] for kk, (r, c) in h.selection.items()} == \
        {kk: [list(r), list(c)] for kk, (r, c) in v["selection"].items() if r}

    # Fine-tune with the query the inspector sends: the selection is used
    ft = page_app(FT, 60)
    ft.session_state[HANDOFF] = h
    assert set(at.session_state) & {"smt:ft_query", "smt:go_ft"} == set()  # one session key for the hand-off
    for kk, val in h.query.items():
        ft.query_params[kk] = str(val)
    ft.run()
    assert not ft.exception, [e.value for e in ft.exception]
    assert any("Using the selection from the inspector (5 blocks" in i.value for i in ft.info)
    # the run keeps a full warm-up (the lessons' 40 steps, more than the inspector's 3: the weights move, as in
    # the public SMT code), then trains the handed blocks instead of the ones that warm-up would choose
    assert any("full warm-up (40 steps) still fine-tunes every weight first" in i.value for i in ft.info)
    warm_keys = ("ft:k_warmup_steps", "ft:k_warmup_mode")
    shown = {w.key: w.value for w in list(ft.number_input) + list(ft.radio) + list(ft.slider) + list(ft.selectbox)}
    assert shown["ft:k_warmup_steps"] == 40 and shown["ft:k_warmup_mode"] == "full"

    # another block size on Fine-tune: the selection is not used, and the page says why
    other = [o for o in ft.select_slider(key="ft:k_block_size").options if o not in ("0", str(h.block_size))
             and not o.startswith("auto")]
    ft.select_slider(key="ft:k_block_size").set_value(int(other[0]))
    ft.run()
    assert not ft.exception, [e.value for e in ft.exception]
    assert not any("Using the selection" in i.value for i in ft.info)
    assert any("selection is not used: its block size is" in c.value for c in ft.caption)
    shown = {w.key for w in list(ft.number_input) + list(ft.radio) + list(ft.slider) + list(ft.selectbox)}
    assert set(warm_keys) <= shown  # a run that warms up again shows its warm-up knobs


def test_the_first_heatmap_opens_on_a_matrix_where_smt_selects_blocks(tiny_bert):
    from explorer.targets import find_targets

    at = page(model="tiny-bert", ws=2, bs=2, len=32, n=1)  # one block in all of q, k, v
    v = wait_view(at, 2)
    no_problem(at)
    assert v["types"] == ["q", "k", "v"]  # SMT's own targets by default
    layer, mat = at.session_state["smt:layer"], at.session_state["smt:mat"]
    shown = next(t.name for t in find_targets(tiny_bert.model) if t.layer == layer and t.type == mat)
    assert len(v["selection"][shown][0]) == 1
    assert qp(at, "layer") == str(layer) and qp(at, "mat") == mat


def test_train_config_smt_selection_trains_exactly_those_blocks(tiny_bert):
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    from explorer.targets import find_targets

    t = find_targets(tiny_bert.model, ["v"])[0]
    sel = {t.name: ([0, 1], [1, 0])}
    cfg = TrainConfig(model="tiny-bert", method="smt", steps=2, batch_size=4, eval_every=0, eval_examples=8,
                      knobs=dict(targets=["v"], block_size=16, blocks=2), smt_selection=sel, measure_memory=False)
    res = train(cfg, loaded=tiny_bert)
    assert res.summary["status"] == "finished", res.summary
    assert res.summary["steps_done"] == 2
    ad = res.adapter
    assert not ad.needs_warmup
    got = {kk: (r.tolist(), c.tolist()) for kk, (r, c) in ad.selection().items()}
    assert got == sel
    assert "2 blocks given" in json.dumps(cfg.to_dict())


def test_stop_ends_a_long_warm_up():
    at = page(model="tiny-llama", ws=200, bs=32, len=128)
    assert "smt:job" not in at.session_state  # a long warm-up waits for the button, even on a tiny model
    assert any("Press **Compute gradients**" in i.value for i in at.info)
    at.button(key="smt_compute").click()
    at.run()
    deadline = time.time() + 20
    j = at.session_state["smt:job"]
    job = j.job
    while j.progress.frac == 0 and not job.done and time.time() < deadline + 20:
        time.sleep(0.05)  # stop after the first step: a partial result
    at.run()
    at.button(key="smt_stop").click()
    at.run()
    assert job.wait(20)
    at.run()
    no_problem(at)
    assert job.status == "done", job.message
    rec = job.result
    assert rec.meta["stopped"] and 1 <= rec.steps_done < 200 and rec.key is None  # partial: not cached
    assert any("Stopped after" in w.value for w in at.warning)


# ----------------------------------------------------------------------------- figure helpers


def planted():
    ts = [Target("l0.v", 0, "v", 64, 32), Target("l0.q", 0, "q", 64, 32), Target("l1.v", 1, "v", 64, 32),
          Target("l1.q", 1, "q", 64, 32)]
    g = torch.Generator().manual_seed(0)
    sums = {t.name: 0.01 * torch.randn(t.d_out, t.d_in, generator=g) for t in ts}
    sums["l0.v"][:16, :16] += 5.0  # the strongest block
    sums["l1.v"][16:32, 16:32] += 3.0
    half = {kk: v / 2 for kk, v in sums.items()}
    half["l0.q"] = half["l0.q"] + 10.0  # early on q looks best: stability < 1 at step 1
    rec = A.record_from_sums(ts, [half, sums], [1, 2], grain=16)
    return A.analyze(rec, 16, n_blocks=2)


def test_views_planted_selection_outlines_range_and_sentences():
    an = planted()
    assert an.blocks_type["v"] == 2
    lo, hi = V.score_range(an)
    assert lo == 0.0 and hi == pytest.approx(max(float(s.max()) for s in an.scores.values()))
    fig = V.block_heatmap(an, "l0.v")
    heat, outline = fig.data
    assert heat.zmax == pytest.approx(hi) and heat.z.dtype == np.float32
    assert sum(x is None for x in outline.x) == 1  # one selected block in l0.v: one square
    assert fig.layout.uirevision
    flog = V.block_heatmap(an, "l1.q", log=True)
    assert flog.data[0].zmax == pytest.approx(np.log10(hi))
    assert sum(x is None for x in flog.data[1].x) == 0
    grid = V.small_multiples(an, "v")
    assert len([d for d in grid.data if d.type == "heatmap"]) == 2
    assert "Confirmed here" in V.value_finding(an)
    st = V.stability_sentence(an)
    assert an.stability[-1]["jaccard"] == 1.0 and an.stability[0]["jaccard"] < 1.0 and "below 0.9" in st
    rows = V.overlap_rows(an)
    rnd = next(r for r in rows if r["comparison"].startswith("random"))
    assert "Chance level" in rnd["explain"]
    bars = V.budget_bars(an)
    assert list(bars.data[0].y) == [an.blocks_type[t] for t in an.blocks_type]
    assert sum(bars.data[1].y) == an.n_blocks
    sel = V.selection_for_training(an)
    assert json.loads(json.dumps(sel)) == {kk: [r, c] for kk, (r, c) in sel.items()}
    assert "<html" in V.figure_html(fig).lower()
