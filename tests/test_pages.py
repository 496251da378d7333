"""Page tests with Streamlit's AppTest: Home and the Methods playground.

Tiny models (tiny-bert, tiny-llama) wherever the model does not matter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import fmt

ROOT = Path(__file__).resolve().parents[1]
PLAYGROUND = str(ROOT / "pages" / "1_Methods_playground.py")
TIMEOUT = 120

from apptest_helpers import no_problem, open_page, qp


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


def test_every_method_and_control_on_tiny_bert():
    at = run_pg(model="tiny-bert")
    base = count(at)
    at.select_slider(key="pg:a_rank").set_value(32).run()
    no_problem(at)
    assert count(at) > base  # a slider changes the shown count
    assert qp(at, "a_rank") == "32"  # and the URL follows
    at.multiselect(key="pg:a_targets").set_value(["q", "k", "v", "o"]).run()
    no_problem(at)
    at.number_input(key="pg:a_alpha").set_value(3.0).run()
    at.slider(key="pg:a_dropout").set_value(0.2).run()
    at.number_input(key="pg:a_seed").set_value(5).run()
    at.selectbox(key="pg:wt").set_value("o").run()
    at.slider(key="pg:layer").set_value(1).run()
    no_problem(at)
    for method in METHODS_ORDER:
        at.selectbox(key="pg:m1").set_value(method).run()
        if method == "sparta":  # its default budget (1 % of all parameters) is capped to fit tiny-bert's v, o
            assert not at.exception and not at.error
            at.slider(key="pg:a_sparsity").set_value(0.999).run()
        no_problem(at)
        assert count(at) > 0
        # move every knob widget of this method once (looked up afresh after each rerun)
        kinds = ("slider", "select_slider", "number_input", "radio", "toggle", "multiselect")
        keys = [(kind, w.key) for kind in kinds for w in getattr(at, kind) if (w.key or "").startswith("pg:a_")]
        for kind, key in keys:
            found = [w for w in getattr(at, kind) if w.key == key]
            if not found or getattr(found[0], "disabled", False):
                continue
            w = found[0]
            new = _other_value(w)
            if new is None or new == w.value:
                continue
            w.set_value(new).run()
            assert not at.exception, (method, key, [e.value for e in at.exception])


METHODS_ORDER = ["full", "dora", "lora-sp", "tied-lora", "smt", "sparta"]


def _other_value(w):
    t = type(w).__name__
    if t == "Toggle":
        return not w.value
    if t == "Radio":
        return next((o for o in w.options if o != w.value), None)
    if t == "SelectSlider":
        opts = list(w.options)
        return opts[min(len(opts) - 1, 1)]
    if t == "Multiselect":
        return list(w.options[:2])
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
    full = count(at, 0)
    at.toggle(key="pg:a_train_v").set_value(False).run()
    no_problem(at)
    assert count(at, 0) < full  # freezing v removes L x d_out(fused) parameters
    at.toggle(key="pg:a_tied").set_value(False).run()
    no_problem(at)
    assert count(at, 0) > full - 1  # untied: one A, B per layer
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
    from explorer.presets import PRESETS

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
