"""Page tests with Streamlit's AppTest: Home and the Methods playground.

Tiny models (tiny-bert, tiny-llama) wherever the model does not matter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.views import fmt

ROOT = Path(__file__).resolve().parents[2]
PLAYGROUND = str(ROOT / "pages" / "1_Methods_playground.py")
TIMEOUT = 120

from tests.support.apptest import no_problem, open_page, qp


def run_pg(**params):
    return open_page(PLAYGROUND, TIMEOUT, **params)



def count(at: AppTest, i: int = 0) -> int:
    """The exact count: the metric shows a compact form (134.5 M), its help starts with the exact value."""
    ms = [m for m in at.metric if m.label == "trainable parameters"]
    n = int(ms[i].help.split()[0].replace(",", ""))
    assert ms[i].value == fmt.count(n)
    return n


def test_home_runs():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    no_problem(at)
    text = " ".join(m.value for m in at.markdown)
    for m in ("LoRA", "DoRA", "LoRA-SP", "Tied-LoRA", "SMT", "SpaRTA", "Full fine-tuning"):
        assert m in text
    assert "2405.15525" in text  # papers listed
    from explorer.models import load_model

    n = load_model("minilm").info.n_params
    assert any(m.value == fmt.count(n) and m.help.startswith(f"{n:,} ") for m in at.metric)  # the real count


def test_playground_default_and_url_written():
    at = run_pg(model="tiny-bert")
    no_problem(at)
    assert count(at) > 0
    assert qp(at, "m1") == "lora" and qp(at, "a_rank") == "8"


# tiny-bert's target shapes (d = 64, intermediate 128, L = 2 layers; BERT has no gate), written out by hand
TB_SHAPES = {"q": (64, 64), "k": (64, 64), "v": (64, 64), "o": (64, 64), "up": (128, 64), "down": (64, 128)}
TB_L, TB_HEAD = 2, 64 * 2 + 2  # the classifier: 64 x 2 weights + 2 biases
KNOB_DEFAULTS = {
    "lora": dict(rank=8, targets="q,v"), "dora": dict(rank=8, targets="q,v"),
    "lora-sp": dict(rank=8, targets="q,v", freeze=0.5),
    "tied-lora": dict(preset="TL6", rank=8, targets="q,k,v", tied=True, train_A=True, train_B=True,
                      train_u=True, train_v=True),
    "smt": dict(targets="q,k,v", block_size=0, blocks=0, density=0.0),
    "sparta": dict(targets="v,o", sparsity=0.99, density=0.0),
    "vera": dict(rank=512, targets="q,k,v,o,gate,up,down"),
}
TIED_PRESETS = {"vBuA": (False, True, True, False, False), "TL5": (True, True, True, False, False),
                "TL6": (True, True, True, True, True), "VeRA-like": (True, False, False, True, True)}


def _knob(at, method, name):
    try:
        v = qp(at, "a_" + name)
    except KeyError:
        return KNOB_DEFAULTS[method][name]
    d = KNOB_DEFAULTS[method][name]
    if isinstance(d, bool):
        return v in ("1", "true", "True")
    return type(d)(v)


def tiny_bert_count(at, method: str, n_params: int) -> int:
    """The trainable count each method's paper formula gives on tiny-bert for the knobs in the URL."""
    if method == "full":
        return n_params
    k = {n: _knob(at, method, n) for n in KNOB_DEFAULTS[method]}
    # (d_out, d_in) of every target matrix (tiny-bert has no gate projection: a type it lacks adapts nothing)
    ts = [TB_SHAPES[t] for t in k["targets"].split(",") if t in TB_SHAPES] * TB_L
    if method in ("lora", "dora"):
        return sum(k["rank"] * (o + i) + (o if method == "dora" else 0) for o, i in ts) + TB_HEAD
    if method == "lora-sp":  # the kept fraction of each factor, rounded per factor
        keep = 1 - k["freeze"]
        return sum(round(keep * k["rank"] * i) + round(keep * k["rank"] * o) for o, i in ts) + TB_HEAD
    if method == "tied-lora":
        tied, a, b, u, v = (TIED_PRESETS[k["preset"]] if k["preset"] != "custom" else
                            (k["tied"], k["train_A"], k["train_B"], k["train_u"], k["train_v"]))
        r, types = k["rank"], k["targets"].split(",")
        groups = [[t for t in types if t in ("q", "k", "v")]] + [[t] for t in types if t not in ("q", "k", "v")]
        n = 0
        for g in (g for g in groups if g):  # q, k, v read one input: one A, one fused B
            d_in, d_out = TB_SHAPES[g[0]][1], sum(TB_SHAPES[t][0] for t in g)
            n += (1 if tied else TB_L) * (a * r * d_in + b * d_out * r) + TB_L * (u * r + v * d_out)
        return n + TB_HEAD
    if method == "smt":
        # auto block: the largest of 256/64/32/16 dividing 64x64 that leaves >= 8 blocks in a matrix: 16 (16
        # blocks); auto budget: 1 % of all parameters, at most a quarter of the targets' blocks
        bs = k["block_size"] or 16
        total = sum((o // bs) * (i // bs) for o, i in ts)
        auto = min(max(1, round(0.01 * n_params / bs ** 2)), max(1, int(0.25 * total)))
        n = round(k["density"] * total) if k["density"] > 0 else (k["blocks"] or auto)
        return n * bs * bs + TB_HEAD
    if method == "sparta":  # the authors' budget: (1 - sparsity) x all parameters trains, the head inside it
        total = sum(o * i for o, i in ts)
        if k["density"] > 0:
            return sum(round(k["density"] * o * i) for o, i in ts) + TB_HEAD
        keep = round((1 - k["sparsity"]) * n_params)
        if k["sparsity"] == 0.99 and not 1 <= keep - TB_HEAD <= 0.5 * total:
            return round(0.5 * total) + TB_HEAD  # the default adapts: at most half of the targets' entries
        return keep
    if method == "vera":  # VeRA: d (r) and b (d_out) per target; the shared random A and B are frozen
        return sum(k["rank"] + o for o, i in ts) + TB_HEAD
    raise AssertionError(method)


def test_every_method_and_control_on_tiny_bert(tiny_bert):
    n_params = sum(p.numel() for p in tiny_bert.model.parameters())
    at = run_pg(model="tiny-bert")
    no_problem(at)
    base = count(at)
    assert base == tiny_bert_count(at, "lora", n_params) == 8 * 128 * 4 + TB_HEAD
    at.select_slider(key="pg:a_rank").set_value(32).run()
    no_problem(at)
    assert count(at) == 32 * 128 * 4 + TB_HEAD  # the slider changes the shown count as the formula says
    assert qp(at, "a_rank") == "32"  # and the URL follows
    at.multiselect(key="pg:a_targets").set_value(["q", "k", "v", "o"]).run()
    no_problem(at)
    assert qp(at, "a_targets") == "q,k,v,o" and count(at) == 32 * 128 * 8 + TB_HEAD
    shown = count(at)
    at.number_input(key="pg:a_alpha").set_value(3.0).run()  # scale, dropout, seed: no effect on the count
    at.slider(key="pg:a_dropout").set_value(0.2).run()
    at.number_input(key="pg:a_seed").set_value(5).run()
    no_problem(at)
    assert count(at) == shown and qp(at, "a_alpha") == "3.0" and qp(at, "a_seed") == "5"
    at.selectbox(key="pg:wt").set_value("o").run()
    at.slider(key="pg:layer").set_value(1).run()
    no_problem(at)
    assert count(at) == shown
    for method in METHODS_ORDER:
        at.selectbox(key="pg:m1").set_value(method).run()
        if method == "sparta":  # its default budget (1 % of all parameters) is capped to fit tiny-bert's v, o
            assert not at.exception and not at.error
            at.slider(key="pg:a_sparsity").set_value(0.999).run()
        no_problem(at)
        assert count(at) == tiny_bert_count(at, method, n_params), method
        # move every knob widget of this method once (looked up afresh after each rerun): no error box, and
        # the shown count is the formula's for the knobs the URL now holds (so a knob that should not change
        # the count does not, and one that should, does: by the formula's amount)
        kinds = ("slider", "select_slider", "number_input", "radio", "toggle", "multiselect")
        keys = [(kind, w.key) for kind in kinds for w in getattr(at, kind) if (w.key or "").startswith("pg:a_")]
        moved = 0
        for kind, key in keys:
            found = [w for w in getattr(at, kind) if w.key == key]
            if not found or getattr(found[0], "disabled", False):
                continue
            w = found[0]
            new = _other_value(w)
            if new is None or new == w.value:
                continue
            if method == "sparta" and key == "pg:a_sparsity":
                new = 0.9995  # a value tiny-bert's v, o can hold
            w.set_value(new).run()
            moved += 1
            no_problem(at)
            assert count(at) == tiny_bert_count(at, method, n_params), (method, key, new)
        assert moved >= (0 if method == "full" else 2), method


METHODS_ORDER = ["full", "dora", "lora-sp", "tied-lora", "smt", "sparta", "vera"]


def _other_value(w):
    t = type(w).__name__
    if t == "Toggle":
        return not w.value
    if t == "Radio":
        return next((o for o in w.options if o != w.value), None)
    if t == "SelectSlider":
        opts = list(w.options)
        return opts[min(len(opts) - 1, 1)]
    if t == "Multiselect":  # another set of targets: q and the first MLP matrix (another shape)
        return ["q", "up"] if "up" in str(w.options) else ["q", "k"]
    if t == "Slider":
        lo, hi = w.min, w.max
        return type(w.value)(lo + (hi - lo) / 2) if isinstance(w.value, float) else int((lo + hi) // 2)
    if t == "NumberInput":
        return w.value + (1 if isinstance(w.value, int) else 0.5)
    return None


def test_tied_lora_switches_and_compare_on_tiny_llama():
    at = run_pg(model="tiny-llama", m1="tied-lora", m2="lora", a_preset="custom", a_rank=4, b_rank=4,
                a_targets="q,k,v", b_targets="q,k,v", wt="q")
    no_problem(at)
    # tiny-llama by hand: d = 64, L = 2, 4 query heads of 16, 2 key/value heads: d_kv = 32, fused q,k,v rows
    # 64 + 32 + 32 = 128; rank 4.  Tied, all trained: A (r d) + B (128 r) + L (u: r + v: 128)
    r, d, L, fused = 4, 64, 2, 128
    full = count(at, 0)
    assert full == r * d + fused * r + L * (r + fused) == 1032
    at.toggle(key="pg:a_train_v").set_value(False).run()
    no_problem(at)
    assert count(at, 0) == full - L * fused  # freezing v removes L x d_out(fused) parameters
    tied_no_v = count(at, 0)
    at.toggle(key="pg:a_tied").set_value(False).run()
    no_problem(at)
    # untied: one A and one B per layer, so A and B count L times; u stays per layer
    assert count(at, 0) == L * (r * d + fused * r) + L * r == 1544
    assert count(at, 0) - L * r == L * (tied_no_v - L * r)
    assert len([m for m in at.metric if m.label == "trainable parameters"]) == 2  # two methods side by side
    # TL6 on the left is smaller than LoRA on the right at the same rank, here too
    at.radio(key="pg:a_preset").set_value("TL6").run()
    no_problem(at)
    assert count(at, 0) < count(at, 1)


def test_same_method_on_both_sides():
    at = run_pg(model="tiny-llama", m1="lora", m2="lora")  # one cached summary drawn twice
    no_problem(at)
    assert count(at, 0) == count(at, 1) > 0


def test_preset_url_restored():
    from explorer.workshop.presets import PRESETS

    p = PRESETS["LoRA rank 1 vs 64"]
    at = run_pg(**{**p.values, "model": "tiny-bert"})
    no_problem(at)
    assert at.select_slider(key="pg:a_rank").value == 1 and at.select_slider(key="pg:b_rank").value == 64
    lo, hi = count(at, 0), count(at, 1)
    assert hi > lo
    assert qp(at, "b_rank") == "64"


def test_preset_button_loads_values():
    at = run_pg(model="tiny-bert")
    at.sidebar.selectbox(key="pg_preset_pick").set_value("LoRA-SP vs LoRA").run()
    at.sidebar.button(key="pg_preset_go").click().run()
    no_problem(at)
    assert at.selectbox(key="pg:m1").value == "lora-sp" and at.selectbox(key="pg:m2").value == "lora"
    assert qp(at, "model") == "minilm"
    assert any("Lesson: LoRA-SP vs LoRA" in i.value for i in at.info)


def test_smt_preset_after_another_method():
    at = run_pg(model="tiny-bert")  # starts on LoRA
    at.sidebar.selectbox(key="pg_preset_pick").set_value("SMT top 1% blocks").run()
    at.sidebar.button(key="pg_preset_go").click().run()
    assert not at.exception
    assert at.selectbox(key="pg:m1").value == "smt"
    assert at.slider(key="pg:a_density").value == pytest.approx(0.01)  # the preset's knob, not the default
    assert qp(at, "a_density") == "0.01"


def test_bad_url_values_clamped():
    at = run_pg(model="tiny-bert", m1="lora", a_rank="99999", a_alpha="nan", a_targets="q,zz", layer="-4",
                wt="nonsense", m2="evil<script>", warm="1e9", a_dropout="abc")
    assert not at.exception
    assert any("adjusted" in i.value for i in at.info)
    assert at.select_slider(key="pg:a_rank").value == 512
    assert qp(at, "a_rank") == "512" and qp(at, "m2") == "none"
    assert qp(at, "layer") == "0"


def test_unknown_model_readable_error():
    at = run_pg(model="no-such-model-xyz")
    assert not at.exception
    assert at.error and "no-such-model-xyz" in at.error[0].value
    assert "Traceback" not in at.error[0].value


def test_impossible_knobs_readable_error():
    at = run_pg(model="tiny-bert", m1="sparta", a_sparsity="0.5", a_targets="v")
    assert not at.exception
    errs = [e.value for e in at.error]
    assert errs and errs[0].startswith("sparta: sparsity 0.5 keeps")
    # the blocks slider of SMT never offers more blocks than the targets hold
    at = run_pg(model="tiny-bert", m1="smt", a_blocks="100000", a_targets="v", a_block_size="16")
    no_problem(at)
    assert at.slider(key="pg:a_blocks").value == at.slider(key="pg:a_blocks").max == 2 * 4 * 4


def test_instructor_mode_hides_advanced():
    at = run_pg(model="tiny-bert", m1="lora-sp")
    keys = {w.key for w in list(at.radio) + list(at.number_input)}
    assert "pg:a_mask_mode" in keys and "pg:a_seed" in keys
    at.sidebar.toggle(key="instructor").set_value(True).run()
    no_problem(at)
    keys = {w.key for w in list(at.radio) + list(at.number_input)}
    assert "pg:a_mask_mode" not in keys and "pg:a_seed" not in keys
    assert qp(at, "instr") == "1"


def test_smt_blocks_slider_steps_near_auto_and_the_warmup_time_is_measured():
    """Issue 21: SMT's 'number of blocks (0 = auto)' went from auto (226.1 k parameters) to 1 block on the first
    arrow key, and the caption promised 'a few seconds' for a first view that took 80.5 s on smollm2."""
    at = run_pg(model="minilm", m1="smt")
    no_problem(at)
    sl = at.select_slider(key="pg:a_blocks")
    opts = list(sl.options)
    i = next(j for j, o in enumerate(opts) if o.startswith("auto ("))
    auto = int(opts[i][len("auto ("):-1].replace(",", ""))
    assert sl.value == 0 and auto > 1
    below, above = (int(opts[j].replace(",", "")) for j in (i - 1, i + 1))
    assert auto / 2.5 <= below < auto < above <= auto * 2.5  # one arrow key: the nearest stops to the auto budget
    assert opts[0] == "1" and len(opts) < 40  # log-scale stops, not one per block
    caps = " ".join(c.value for c in at.caption)
    assert "a few seconds" not in caps
    assert "Computing it took" in caps and " s on this server (measured: 2 forward and backward pass(es)" in caps
