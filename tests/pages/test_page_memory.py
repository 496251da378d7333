"""The Memory calculator page (AppTest) and its pure helpers (explorer.views.memory_views)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.memory import units as U
from explorer.views import memory_figures as F
from explorer.views import memory_tables as T
from explorer.views import memory_views as V
from explorer.memory.analytic import estimate
from explorer.memory.specs import PUBLISHED
from explorer.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "4_Memory_calculator.py")
TIMEOUT = 120

from tests.support.apptest import open_page, no_problem, qp, metric


def run(**params):
    return open_page(PAGE, TIMEOUT, **params)



def number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def table(at: AppTest, i: int = 0):
    """The exact-values table by default (-1: the last one)."""
    return at.dataframe[i].value


def shown(at: AppTest):
    """The on-screen compact table (a static st.table, indexed by method)."""
    return at.table[0].value


# ----------------------------------------------------------------------------- pure helpers


def test_every_rows_settings_name_real_values():
    """A row read "r=None" when its rank was not one of the page's knobs: a knob the page does not set is at
    the method's default, and the row says which."""
    vals, _ = V.page_schema().parse({})
    for m in METHODS:
        text = V.knob_summary(m, V.method_knobs(m, vals))
        assert "None" not in text, (m, text)
    assert V.knob_summary("vera", V.method_knobs("vera", vals)).startswith("r=512 ")


def test_schema_clamps_and_knobs_feed_the_model():
    vals, warns = V.page_schema().parse({"model": "gpt-9", "batch": "-3", "seq": "1e9", "rank": "abc",
                                         "methods": "lora,nope", "unit": "TB", "sparsity": "2"})
    assert vals["model"] == "llama-7b" and vals["batch"] == 1 and vals["seq"] == 131072 and vals["rank"] == 8
    assert vals["methods"] == ["lora"] and vals["unit"] == "GB" and vals["sparsity"] == 0.9999
    assert len(warns) == 7
    d = V.page_schema().defaults()
    d.update(rank=32, tg="all", smt_bs="128", smt_blocks=500)
    rows = V.estimate_rows(PUBLISHED["llama-7b"], d, methods=list(METHODS))
    assert [r["method"] for r in rows] == list(METHODS) and not any("error" in r for r in rows)
    by = {r["method"]: r for r in rows}
    sp = PUBLISHED["llama-7b"]
    lin = sum(o + i for _, _, o, i in sp.target_shapes())  # every linear layer, rank 32
    assert by["lora"]["trainable_params"] == 32 * lin
    assert by["smt"]["trainable_params"] == 500 * 128 ** 2
    # bert has no gate: "every linear layer" drops it
    assert "gate" not in V.method_knobs("lora", d, "bert")["targets"]


def test_figures_carry_exact_bytes_and_units():
    d = V.page_schema().defaults()
    rows = V.estimate_rows(PUBLISHED["mistral-7b"], d, methods=["full", "lora"])
    fig = F.stack_figure(rows, "GiB", "t")
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["weights", "gradients", "optimizer state", "activations"]
    w = bars[0]
    assert w.y[0] == pytest.approx(rows[0]["weights_bytes"] / 2 ** 30)
    assert w.customdata[0][0] == f"{int(rows[0]['weights_bytes']):,} B"
    assert "GiB = 2^30 bytes" in fig.layout.yaxis.title.text
    # 2048 tokens are cut to the model's 512 positions, and the batch to the token cap: 8192 / 512 = 16
    assert V.MEASURE_TOKEN_CAP == 8192
    b, s, note = V.measure_shape(64, 2048, 512)
    assert (b, s) == (16, 512)
    assert "batch 16 × 512 tokens instead of 64 × 2048" in note and "8,192 tokens" in note and "512 positions" in note
    assert V.measure_shape(4, 2048, 512)[:2] == (4, 512) and "instead of 4 × 2048" in V.measure_shape(4, 2048, 512)[2]
    assert V.measure_shape(2, 32, 512) == (2, 32, "")


def test_worked_example_is_computed_by_estimate():
    w = V.worked_example()
    e = estimate("llama-65b", "full", precision="bf16-mixed", batch=1, seq_len=512)
    assert w["static16"] == e["weights_bytes"] + e["grads_bytes"] + e["optimizer_bytes"]
    assert w["static16"] > 1e12 and w["bpp16"] == 16 and w["bpp12"] == 12
    assert w["static12"] / w["static16"] == pytest.approx(12 / 16, rel=1e-6)
    assert w["static_qlora"] < 0.1 * w["static16"]


def test_compare_table_relative_difference_and_cuda_peak():
    est = dict(weights_bytes=100.0, grads_bytes=10.0, optimizer_bytes=20.0, activations_bytes=50.0,
               total_bytes=180.0, trainable_params=5)
    rec = dict(weights_bytes=100, grads_bytes=10, optimizer_bytes=24, activations_bytes=40, total_bytes=174,
               trainable_params=5, optimizer_scalar_bytes=4, cuda_peak_bytes=999)
    rows = V.compare_rows([dict(method="lora", label="LoRA", settings="", rec=rec, est=est, seconds=0.1)])
    t = {r["term"]: r for r in T.compare_table(rows, "GB")}
    assert t["activations"]["difference %"] == pytest.approx(25.0)
    assert t["optimizer state"]["difference %"] == pytest.approx(-100 * 4 / 24)
    assert t["CUDA peak (max_memory_allocated)"]["measured (bytes)"] == 999
    assert rows[0]["meas_opt_scalar"] == 4
    rec["cuda_peak_bytes"] = None  # off CUDA: no peak row
    rows = V.compare_rows([dict(method="lora", label="LoRA", settings="", rec=rec, est=est, seconds=0.1)])
    assert not any("CUDA" in r["term"] for r in T.compare_table(rows, "GB"))


# ----------------------------------------------------------------------------- the page


def test_default_run_and_65b_example():
    at = run()
    no_problem(at)
    n = PUBLISHED['llama-7b'].n_params()
    assert metric(at, "parameters") == f"{n / 1e9:.3g} B"  # compact; the exact count in the help
    assert next(m.help for m in at.metric if m.label == "parameters").startswith(f"{n:,}")
    assert len(at.get("plotly_chart")) >= 2  # the stacked bars and the activation terms
    df = table(at)
    assert len(df) == len(METHODS) and "total (GB)" in df.columns
    full = df[df["method"] == "Full FT"].iloc[0]
    e = estimate("llama-7b", "full", precision="bf16-mixed", batch=1, seq_len=512)
    assert full["total (GB)"] == pytest.approx(e["total_bytes"] / 1e9)
    # the worked example: > 1,000 GB computed by estimate (not typed in)
    big = number(metric(at, "16 B/param (bf16 mixed + AdamW)"))
    e65 = estimate("llama-65b", "full", precision="bf16-mixed", batch=1, seq_len=512)
    assert big > 1000 and big == pytest.approx((e65["weights_bytes"] + e65["grads_bytes"] + e65["optimizer_bytes"])
                                               / 1e9, abs=0.05)
    assert 770 < number(metric(at, "12 B/param (no master copy)")) < 800
    assert qp(at, "model") == "llama-7b" and qp(at, "unit") == "GB"  # the URL is written
    text = " ".join(m.value for m in at.markdown)
    assert "s b h (34 + 5 a s / h)" in text


def test_every_control_moves_and_the_url_follows():
    at = run(model="mistral-7b")
    no_problem(at)
    lora0 = table(at).set_index("method").loc["LoRA", "trainable params"]
    at.select_slider(key="mem:rank").set_value(64)
    at.slider(key="mem:freeze").set_value(0.75)
    at.selectbox(key="mem:tl").set_value("TL5")
    at.number_input(key="mem:sparsity").set_value(0.999)
    at.number_input(key="mem:smt_blocks").set_value(300)
    at.select_slider(key="mem:smt_bs").set_value("64")
    at.selectbox(key="mem:tg").set_value("attn")
    at.run()
    no_problem(at)
    t = table(at).set_index("method")
    assert t.loc["LoRA", "trainable params"] > 8 * lora0  # rank 8 -> 64 on q,k,v,o
    assert t.loc["SMT", "trainable params"] == 300 * 64 ** 2
    assert (qp(at, "rank"), qp(at, "tl"), qp(at, "smt_bs"), qp(at, "tg")) == ("64", "TL5", "64", "attn")
    assert qp(at, "freeze") == "0.75" and qp(at, "smt_blocks") == "300"
    act0 = t.loc["Full FT", "activations (GB)"]
    at.number_input(key="mem:batch").set_value(4)
    at.number_input(key="mem:seq").set_value(1024)
    at.radio(key="mem:unit").set_value("GiB")
    at.radio(key="mem:attn").set_value("materialized")
    at.radio(key="mem:act").set_value("korthikanti")
    at.radio(key="mem:dev").set_value("cpu")
    at.toggle(key="mem:master").set_value(False)
    at.run()
    no_problem(at)
    t = table(at).set_index("method")
    assert "total (GiB)" in t.columns
    assert t.loc["Full FT", "B per trainable param"] == 12  # no master copy
    assert t.loc["Full FT", "activations (GiB)"] > 8 * act0 * 1e9 / 2 ** 30  # 4x batch, 2x+ length
    with_scores = t.loc["Full FT", "activations (GiB)"]
    at.toggle(key="mem:recompute").set_value(True).run()
    no_problem(at)
    assert table(at).set_index("method").loc["Full FT", "activations (GiB)"] < with_scores
    at.radio(key="mem:prec").set_value("4bit").run()
    no_problem(at)
    assert any("4-bit" in w.value for w in at.warning)  # full FT cannot train 4-bit weights: said, not drawn
    at.multiselect(key="mem:methods").set_value(["lora", "smt"])
    at.selectbox(key="mem:breakdown").set_value("smt")
    at.run()
    no_problem(at)
    assert list(table(at)["method"]) == ["LoRA", "SMT"]
    assert qp(at, "methods") == "lora,smt" and qp(at, "breakdown") == "smt" and qp(at, "prec") == "4bit"
    at.selectbox(key="mem:model").set_value("custom").run()
    for key_, v in (("c_layers", 4), ("c_hidden", 512), ("c_heads", 8), ("c_kv", 2), ("c_inter", 1024),
                    ("c_vocab", 1000)):
        at.number_input(key=f"mem:{key_}").set_value(v)
    at.run()
    no_problem(at)
    n = int(next(m.help for m in at.metric if m.label == "parameters").split()[0].rstrip(",").replace(",", ""))
    assert n == V.custom_spec(dict(c_layers=4, c_hidden=512, c_heads=8, c_kv=2, c_inter=1024, c_vocab=1000)).n_params()
    at.number_input(key="mem:c_heads").set_value(7).run()  # 512 is not a multiple of 7: one readable line
    assert not at.exception
    assert any("heads" in e.value for e in at.error)


def test_bad_url_values_are_clamped_and_presets_restore():
    at = run(model="gpt-9", batch="-5", seq="99999999", rank="abc", methods="foo,lora", unit="TB",
             freeze="7", mdev="tpu", prec="fp8")
    no_problem(at)
    assert any("adjusted" in i.value for i in at.info)
    assert (qp(at, "model"), qp(at, "batch"), qp(at, "seq"), qp(at, "rank")) == ("llama-7b", "1", "131072", "8")
    assert (qp(at, "methods"), qp(at, "unit"), qp(at, "freeze"), qp(at, "mdev"), qp(at, "prec")) == \
        ("lora", "GB", "0.99", "cpu", "bf16-mixed")
    # a lesson preset from the sidebar
    at.selectbox(key="mem_preset_pick").set_value("QLoRA: 65B on one 80 GB GPU").run()
    at.button(key="mem_preset_go").click().run()
    no_problem(at)
    assert (qp(at, "model"), qp(at, "prec"), qp(at, "rank"), qp(at, "tg")) == ("llama-65b", "4bit", "64", "all")
    assert list(table(at)["method"]) == ["LoRA"]


def test_instructor_mode_hides_advanced_inputs():
    at = run(instr="1")
    no_problem(at)
    keys = {w.key for w in at.radio} | {w.key for w in at.toggle} | {w.key for w in at.selectbox}
    assert "mem:act" not in keys and "mem:master" not in keys and "mem:tg" not in keys
    assert "mem:prec" in keys
    at2 = run()
    assert "mem:act" in {w.key for w in at2.radio}


def test_measure_tiny_bert_shows_measured_vs_estimated():
    at = run(model="tiny-bert", prec="fp32", batch=2, seq=32, sparsity="0.9")
    no_problem(at)
    assert any("Press" in i.value for i in at.info)  # nothing measured until asked
    at.multiselect(key="mem:mmethods").set_value(["full", "lora"])
    at.radio(key="mem:mdev").set_value("cpu")
    at.run()
    assert qp(at, "mmethods") == "full,lora"
    at.button(key="mem_measure").click().run()
    no_problem(at)
    df = table(at, -1)
    assert {"estimated (bytes)", "measured (bytes)", "difference %"} <= set(df.columns)
    full = df[df["method"] == "Full FT"].set_index("term")
    n = V.spec_for_choice("tiny-bert").n_params()  # from the config (equals the loaded count, test_memory)
    assert full.loc["gradients", "measured (bytes)"] == 4 * n  # real .grad tensors of every parameter
    for m in ("Full FT", "LoRA"):
        tot = df[(df["method"] == m) & (df["term"] == "total")].iloc[0]
        assert abs(tot["difference %"]) < 15
        assert tot["difference %"] == pytest.approx(
            100 * (tot["estimated (bytes)"] - tot["measured (bytes)"]) / tot["measured (bytes)"], abs=0.01)
    assert len(at.get("plotly_chart")) >= 3  # + measured vs estimated


# ----------------------------------------------------------------------------- issue 13 / issue 10


def test_compact_forms_never_cut_and_exact_kept():
    assert T.compact_count(65_285_660_672) == "65.3 B" and T.compact_count(4226) == "4,226"
    assert T.compact_count(16_384_000) == "16.4 M"
    assert U.compact_bytes(1_044_570_571_264, "GB") == "1.04 TB" and U.compact_bytes(349.5e9, "GB") == "350 GB"
    assert U.compact_bytes(2 ** 30 * 13.5, "GiB") == "13.5 GiB" and U.compact_bytes(812 * 2 ** 20, "GiB") == "812 MiB"
    d = V.page_schema().defaults()
    d.update(prec="4bit")
    rows = V.estimate_rows(PUBLISHED["llama-65b"], d, methods=["full", "lora"])
    shown = {r["method"]: r for r in T.display_rows(rows, "GB")}
    full = shown["Full FT"]
    assert full["total"] == "n/a" and full["exact values / note"].startswith("n/a: a 4-bit base cannot be fully")
    assert all(v is not None for v in full.values())
    lora = shown["LoRA"]
    assert all(len(str(lora[c])) <= 9 for c in ("trainable", "weights", "gradients", "optimizer state",
                                                 "activations", "total"))
    est = next(r for r in rows if r["method"] == "lora")
    assert f"{est['trainable_params']:,}" in lora["exact values / note"]


def test_zero_checkpointing_optimizer_and_scope_on_the_page():
    at = run(model="llama-2-70b", methods="full,lora", prec="bf16-mixed", batch=1, seq=512)
    no_problem(at)
    base = table(at).set_index("method")
    at.toggle(key="mem:ckpt").set_value(True)
    at.radio(key="mem:opt").set_value("adamw-8bit")
    at.select_slider(key="mem:zero").set_value(3)
    at.number_input(key="mem:gpus").set_value(8)
    at.run()
    no_problem(at)
    assert (qp(at, "ckpt"), qp(at, "opt"), qp(at, "zero"), qp(at, "gpus")) == ("1", "adamw-8bit", "3", "8")
    per = table(at).set_index("method")
    e = estimate("llama-2-70b", "full", precision="bf16-mixed", batch=1, seq_len=512, checkpointing=True,
                 optimizer="adamw-8bit", zero=3, gpus=8)
    assert per.loc["Full FT", "total (GB)"] == pytest.approx(e["total_bytes"] / 1e9)
    assert per.loc["Full FT", "B per trainable param"] == 10  # 2 + 2 + 2 (8-bit moments) + 4 (master)
    assert per.loc["Full FT", "activations (GB)"] < base.loc["Full FT", "activations (GB)"]
    at.radio(key="mem:scope").set_value("total").run()
    no_problem(at)
    tot = table(at).set_index("method")
    assert tot.loc["Full FT", "total (GB)"] == pytest.approx(8 * per.loc["Full FT", "total (GB)"])
    assert qp(at, "scope") == "total"
    assert "all 8 GPU(s) together" in shown(at).loc["Full FT", "exact values / note"]
    text = " ".join(m.value for m in at.markdown)
    assert "÷ 8 GPUs (ZeRO-3)" in text


def test_full_ft_with_4bit_base_says_na():
    at = run(model="llama-7b", methods="full,lora", prec="4bit")
    no_problem(at)
    t = shown(at)
    assert t.loc["Full FT", "total"] == "n/a"
    assert "cannot be fully fine-tuned" in t.loc["Full FT", "exact values / note"]
    assert "None" not in t.to_string()


def test_zero_preset_sets_every_new_option():
    at = run()
    at.selectbox(key="mem_preset_pick").set_value("LLaMA-2-70B across 8 GPUs: ZeRO-3 + checkpointing").run()
    at.button(key="mem_preset_go").click().run()
    no_problem(at)
    assert (qp(at, "model"), qp(at, "zero"), qp(at, "gpus"), qp(at, "ckpt")) == ("llama-2-70b", "3", "8", "1")
    e = estimate("llama-2-70b", "full", precision="bf16-mixed", batch=1, seq_len=2048, checkpointing=True,
                 zero=3, gpus=8)
    assert table(at).set_index("method").loc["Full FT", "total (GB)"] == pytest.approx(e["total_bytes"] / 1e9)


def test_colour_legend_bytes_per_parameter_and_sharding():
    d = V.page_schema().defaults()  # bf16 mixed, AdamW, master copy: 2 + 2 + 8 + 4
    terms, per = T.colour_legend(d, "per GPU")
    assert "**16 B per parameter**" in per and "N × 2 B" in terms and "T × 8 B" in terms and "T × 4 B" in terms
    assert "÷" not in terms and "Figures: **per GPU**" in per
    _, per = T.colour_legend({**d, "opt": "adamw-8bit", "master": False}, "per GPU")  # 2 + 2 + 2
    assert "**6 B per parameter**" in per
    terms, per = T.colour_legend({**d, "prec": "fp32", "zero": 2, "gpus": 4}, "per GPU")  # 4 + 4 + 8, no master
    assert "**16 B per parameter** before activations and before sharding" in per
    lines = terms.split("\n")
    assert "÷ 4 GPUs (ZeRO-2)" in lines[1] and "÷ 4 GPUs (ZeRO-2)" in lines[2] and "÷" not in lines[0]
    assert "master copy" not in terms and "per GPU, never sharded" in lines[3]


def test_tied_lora_presets_on_the_page_are_the_methods_own():
    from explorer.methods import tied_lora

    assert set(V.TL_PRESETS) == set(tied_lora.PRESETS) and V.TL_PRESETS[0] == "TL6"  # the knob's default first
    assert V.page_schema().parse({"tl": "custom"})[0]["tl"] == "TL6"  # custom needs the switches: not offered here
    for name in tied_lora.PRESETS:
        assert V.method_knobs("tied-lora", {**V.page_schema().defaults(), "tl": name})["preset"] == name
