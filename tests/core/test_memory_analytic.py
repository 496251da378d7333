"""Mutation-directed tests of the analytic memory model's bookkeeping: byte units, the memory plan's parts, the
training options and the estimate's terms (explorer/memory/units.py, plan.py, options.py, analytic.py).

Every expected figure is worked out by hand in the comments from one small LLaMA-like spec, never read back from
the code under test: 2 layers, hidden 8, 2 heads of 4, 1 kv head (GQA), MLP 16, vocabulary 10, a 2-label head.

    per layer  q 8x8 = 64, k 4x8 = 32, v 32, o 64, gate 16x8 = 128, up 128, down 128     -> 576
    blocks     2 x 576                                                                   = 1,152
    embeddings 10 x 8 = 80;  norms 2 layers x 2 x 8 + final 8 = 40;  head 8 x 2 = 16
    N = 1,152 + 80 + 40 + 16 = 1,288;  buffers: rotary inverse frequencies, 2 x 4 B x (4 / 2) = 16 B

Fast (no model is loaded): the memory scope of ``tools/mutation.py`` runs these against every mutant.
"""

from __future__ import annotations

import pytest

from explorer.memory import units
from explorer.memory.activations import checkpointed, detailed_activations, korthikanti_activations
from explorer.memory.analytic import _weights, estimate, estimate_table, memory_plan, resolve_spec
from explorer.memory.options import FULL_4BIT, Options, options, precision_notes, shard
from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes, targets_text, trained_weight
from explorer.memory.specs import PUBLISHED, ModelSpec
from explorer.methods import METHODS
from explorer.models import config_models
from explorer.methods.base import Knob, KnobError

N, BLOCKS, BUF, HEAD = 1288, 1152, 16, 16
LORA_Q_V_R4 = 2 * (4 * (8 + 8) + 4 * (8 + 4))  # per layer: q 8->8 and v 8->4: r (d_in + d_out) = 64 + 48


def spec(**kw) -> ModelSpec:
    base = dict(name="hand", family="llama", task="seq-cls", n_layers=2, hidden=8, heads=2, kv_heads=1,
                intermediate=16, vocab=10)
    return ModelSpec(**(base | kw))


LORA = dict(rank=4, alpha=8.0, targets=["q", "v"], dropout=0.0)


# ---------------------------------------------------------------- units
@pytest.mark.parametrize("n, unit, text", [
    (123_400_000_000, "GB", "123.4 GB"),        # >= 100: one decimal
    (99_990_000, "MB", "99.99 MB"),             # from 1 to 100: two
    (1_000, "KB", "1.00 KB"),                   # exactly 1: two
    (999, "KB", "0.999 KB"),                    # below 1: three
    (10, "KB", "0.010 KB"),                     # exactly 0.01: three
    (9, "KB", "0.00900 KB"),                    # below 0.01: five
    (-150 * 2 ** 20, "MiB", "-150.0 MiB"),      # the size of the number, not its sign, picks the decimals
    (-5 * 2 ** 30, "GiB", "-5.00 GiB"),
    (3 * 2 ** 10, "KiB", "3.00 KiB"),
    (7, "B", "7.00 B"),
    (1_234_567_000_000, "GB", "1,234.6 GB"),    # thousands separated
])
def test_fmt_bytes_decimals_follow_the_size(n, unit, text):
    assert units.fmt_bytes(n, unit) == text


def test_fmt_bytes_digits_none_unit_and_default():
    assert units.fmt_bytes(2 ** 30, "GiB", 0) == "1 GiB"
    assert units.fmt_bytes(3 * 10 ** 9, digits=3) == "3.000 GB"  # GB is the default unit
    assert units.fmt_bytes(None) == units.fmt_bytes(None, "GiB") == "n/a"
    with pytest.raises(KnobError) as e:
        units.fmt_bytes(1, "gb")
    assert str(e.value) == "unit must be one of GB, GiB, MB, MiB, KB, KiB, B"


def test_unit_conversions():
    assert units.to_gb(3_500_000_000) == 3.5
    assert units.to_gib(3 * 2 ** 29) == 1.5
    assert units.in_unit(5 * 2 ** 20, "MiB") == 5.0
    assert units.exact_bytes(1024) == "1,024 B" and units.exact_bytes(2.5) == "2.5 B"
    assert units.compact_bytes(350 * 10 ** 9, "GB") == "350 GB"
    assert units.compact_bytes(812 * 2 ** 20, "GiB") == "812 MiB"
    assert units.compact_bytes(1_040 * 10 ** 12, "GB") == "1,040 TB"
    assert units.compact_bytes(999, "GB") == "999 B" and units.compact_bytes(None, "GB") == "n/a"


# ---------------------------------------------------------------- plan
def test_linear_call_saves_its_input_once_under_its_key():
    saved = []
    call = LinearCall(save=lambda k, b, label: saved.append((k, b, label)), key_in="x0", out_key="L0.q", d_in=8,
                      d_out=4, needs_grad_in=False, tokens=6, e=2, mask_e=1)
    assert call.input_bytes == 6 * 8 * 2  # s b x d_in x bytes
    assert trained_weight(call) is True
    assert saved == [("x0", 96, "linear inputs")]
    assert call.autocast is False


def test_memory_plan_trainable_is_the_sum_of_its_parts():
    p = MemoryPlan({}, trainable_parts=dict(adapters=7, head=5))
    assert p.trainable == 12 and isinstance(p.trainable, int)
    assert MemoryPlan({}).trainable == 0
    q = MemoryPlan({})
    q.notes.append("x")
    assert MemoryPlan({}).notes == [] and MemoryPlan({}).save_rules == {}  # no shared defaults
    assert (q.trains_base, q.extra_float, q.extra_index_bytes, q.head_copy, q.uncast) == (False, 0, 0, 0,
                                                                                         frozenset())


def test_adapter_shapes_in_block_order_and_refusals():
    a = adapter_shapes(spec(), "lora", ["down", "v", "q"])
    assert a.types == ["q", "v", "down"]  # block order, not the order asked
    assert a.by_type == {"q": (8, 8), "v": (4, 8), "down": (8, 16)}  # (d_out, d_in); v is one kv head of 4
    assert a.shapes == [(0, "q", 8, 8), (0, "v", 4, 8), (0, "down", 8, 16),
                        (1, "q", 8, 8), (1, "v", 4, 8), (1, "down", 8, 16)]
    with pytest.raises(KnobError) as e:
        adapter_shapes(spec(family="bert", intermediate=32), "tied_lora", ["gate", "k_proj"])
    assert str(e.value) == "tied_lora: none of the targets gate, k_proj exist in a bert model"
    with pytest.raises(KnobError) as e:
        adapter_shapes(spec(family="bert", conv1d=True), "lora", ["q"])
    assert str(e.value) == ("lora: this model (GPT-2 style) builds its blocks from Conv1D layers (c_attn fuses q, k "
                            "and v), which the PEFT methods here do not target; only full fine-tuning applies")


def test_targets_text_reads_the_knob_or_its_default():
    knobs = [Knob("rank", "int", 8), Knob("targets", "multi", ["q", "v"])]
    assert targets_text({"targets": ["k", "o", "up"]}, knobs) == "k,o,up"
    assert targets_text({}, knobs) == "q,v"
    assert targets_text({"targets": []}, knobs) == ""
    assert targets_text({}, [Knob("rank", "int", 8)]) == ""


# ---------------------------------------------------------------- options
def test_options_defaults_and_derived_bytes():
    o = options()
    assert (o.precision, o.batch, o.seq_len, o.recompute, o.activation_model, o.attention, o.device,
            o.master_copy, o.optimizer, o.checkpointing, o.zero, o.gpus, o.padded) == (
        "bf16-mixed", 1, 512, False, "detailed", "auto", "cuda", True, "adamw", False, 0, 1, False)
    assert o == Options()
    #            e  act_e  autocast  master  moments
    expect = {"fp32": (4, 4, False, 0, 8), "bf16-mixed": (2, 2, False, 4, 8), "4bit": (2, 2, False, 4, 8),
              "bf16-autocast": (4, 2, True, 0, 8)}
    for prec, want in expect.items():
        o = options(prec)
        assert (o.e, o.act_e, o.autocast, o.master, o.moments) == want, prec
    assert options("bf16-mixed", master_copy=False).master == 0
    assert options(optimizer="adamw-8bit").moments == 2 and options(optimizer="sgd").moments == 0
    assert options(device="cuda").mask_e == 1
    assert options("fp32", device="cpu").mask_e == 4 and options("bf16-mixed", device="cpu").mask_e == 2


def test_options_keeps_every_setting_it_is_given():
    o = options("fp32", batch=3, seq_len=7, recompute=True, activation_model="korthikanti", attention="flash",
                device="cpu", master_copy=False, optimizer="sgd", checkpointing=True, zero="2", gpus="4",
                padded=1)
    assert (o.precision, o.batch, o.seq_len, o.recompute, o.activation_model, o.attention, o.device,
            o.master_copy, o.optimizer, o.checkpointing, o.zero, o.gpus, o.padded) == (
        "fp32", 3, 7, True, "korthikanti", "flash", "cpu", False, "sgd", True, 2, 4, True)


@pytest.mark.parametrize("device, dropout, attention, kernel", [
    ("cuda", 0.1, "auto", "flash"), ("cpu", 0.0, "auto", "flash"), ("cpu", 0.1, "auto", "materialized"),
    ("cuda", 0.0, "materialized", "materialized"), ("cpu", 0.1, "flash", "flash"),
])
def test_attention_kernel_choice(device, dropout, attention, kernel):
    assert options(device=device, attention=attention).kernel(dropout) == kernel


@pytest.mark.parametrize("kw, line", [
    (dict(precision="fp16"), "precision must be one of fp32, bf16-mixed, 4bit, bf16-autocast (got 'fp16')"),
    (dict(activation_model="x"), "activation_model must be one of detailed, korthikanti"),
    (dict(attention="sdpa"), "attention must be auto, flash or materialized"),
    (dict(optimizer="adam" * 20), "optimizer must be one of adamw, adamw-8bit, sgd (got '" + ("adam" * 10) + "')"),
    (dict(zero="one"), "zero must be 0, 1, 2 or 3 and gpus a whole number >= 1"),
    (dict(gpus=None), "zero must be 0, 1, 2 or 3 and gpus a whole number >= 1"),
    (dict(zero=4), "zero must be 0, 1, 2 or 3 (got 4)"),
    (dict(zero=-1), "zero must be 0, 1, 2 or 3 (got -1)"),
    (dict(gpus=0), "gpus must be from 1 to 100,000 (got 0)"),
    (dict(gpus=100_001), "gpus must be from 1 to 100,000 (got 100001)"),
    (dict(batch=0), "batch and seq_len must be >= 1"),
    (dict(seq_len=0), "batch and seq_len must be >= 1"),
])
def test_options_refusals_name_the_setting(kw, line):
    with pytest.raises(KnobError) as e:
        options(**kw)
    assert str(e.value) == line


def test_options_edges_accepted():
    assert options(gpus=1).gpus == 1 and options(gpus=100_000).gpus == 100_000
    assert options(zero=3).zero == 3 and options(zero=0).zero == 0
    assert options(batch=1, seq_len=1).seq_len == 1


def test_precision_notes():
    assert precision_notes(options("fp32")) == []
    assert precision_notes(options("bf16-mixed")) == [
        "bf16 weights and gradients, fp32 Adam moments (8 B/param), fp32 master copy (4 B/param) for trainable "
        "parameters."]
    assert precision_notes(options("bf16-mixed", master_copy=False))[0].endswith(
        "fp32 Adam moments (8 B/param), no master copy for trainable parameters.")
    n8 = precision_notes(options("4bit", optimizer="adamw-8bit"))
    assert len(n8) == 2 and n8[0].startswith("bf16 weights and gradients, 8-bit Adam moments (2 B/param)")
    assert n8[1] == ("8-bit AdamW (bitsandbytes): two 1-byte moments = 2 B per trainable parameter; its block-wise "
                     "quantisation constants (about 4 B per 2,048 values) are left out.")
    assert precision_notes(options("fp32", optimizer="adamw-8bit"))[0].startswith("8-bit AdamW")
    auto = precision_notes(options("bf16-autocast"))
    assert auto == ["bf16 autocast: fp32 weights, gradients and AdamW states (no master copy: the weights are "
                    "fp32); the forward runs linear layers in bf16, so what it saves is 16-bit, norms and the loss "
                    "fp32, plus the bf16 copy of each linear weight whose input needs a gradient (autocast casts the "
                    "weight and the layer keeps the copy to pass the gradient on): activations, not weights."]


@pytest.mark.parametrize("zero, w, g, m, ma", [
    (0, 400, 200, 800, 400), (1, 400, 200, 200, 100), (2, 400, 50, 200, 100), (3, 100, 50, 200, 100)])
def test_zero_stages_shard_what_the_paper_says(zero, w, g, m, ma):
    s = shard(options(zero=zero, gpus=4), weights=400, grads=200, moments=800, master=400)
    assert (s.weights, s.grads, s.moments, s.master, s.optimizer) == (w, g, m, ma, m + ma)


def test_shard_notes():
    assert shard(options(), 1, 1, 1, 1).notes == []
    assert shard(options(gpus=2), 1, 1, 1, 1).notes == [
        "ZeRO stage 0 over 2 GPU(s); plain data parallelism: every GPU holds a full copy. Activations are per GPU "
        "(its own batch). Communication buffers are left out."]
    assert shard(options(zero=2, gpus=8), 1, 1, 1, 1).notes[0].startswith(
        "ZeRO stage 2 over 8 GPU(s); sharded across the GPUs: optimizer state, gradients. Activations")
    assert "optimizer state, gradients, weights." in shard(options(zero=3, gpus=1), 1, 1, 1, 1).notes[0]
    assert shard(options(zero=1, gpus=1), 8, 8, 8, 8).optimizer == 16  # one GPU: nothing to shard


# ---------------------------------------------------------------- analytic: spec, plan and the static terms
def test_resolve_spec_names_and_refusals():
    assert resolve_spec("llama-7b") is PUBLISHED["llama-7b"]
    name = sorted(config_models())[0]
    assert resolve_spec(name).name == name
    with pytest.raises(KnobError) as e:
        resolve_spec("no-such-model")
    names = [*PUBLISHED, *sorted(set(config_models()) - set(PUBLISHED))]  # each name once (mistral-7b is both)
    assert str(e.value) == f"unknown model config 'no-such-model': use one of {', '.join(names)} or a ModelSpec"
    assert str(e.value).count("mistral-7b") == 1
    with pytest.raises(KnobError, match="heads 3 is not a multiple of kv_heads 2"):
        resolve_spec(spec(hidden=12, heads=3, kv_heads=2))  # a ModelSpec is validated too


def test_memory_plan_validates_the_knobs_first():
    assert memory_plan(spec(), "lora", LORA).trainable == LORA_Q_V_R4 + HEAD
    assert memory_plan(spec(), "lora").knobs["rank"] == 8  # missing knobs take their defaults
    with pytest.raises(KnobError) as e:
        memory_plan(spec(), "lora", dict(rank=0))
    assert str(e.value) == "lora: rank must be >= 1 (got 0)"  # the refusal names the method and the knob


def test_weights_term_adds_every_adapter_tensor():
    # a hand-made plan: 100 adapter parameters + the 16 of the head, 7 frozen adapter floats, 12 B of int32
    # indices and a kept copy of the old head (16)
    plan = MemoryPlan({}, trainable_parts=dict(adapters=100, head=HEAD), extra_float=7, extra_index_bytes=12,
                      head_copy=HEAD)
    w, notes = _weights(spec(), plan, "fp32", 4)
    assert (w, notes) == (4 * N + 4 * 100 + 4 * 7 + 12 + 4 * HEAD + BUF, [])
    w2, _ = _weights(spec(), plan, "bf16-mixed", 2)
    assert w2 == 2 * N + 2 * 100 + 2 * 7 + 12 + 2 * HEAD + BUF  # the indices stay int32 in every precision
    full = MemoryPlan({}, trainable_parts=dict(all=N), trains_base=True)
    assert _weights(spec(), full, "fp32", 4)[0] == 4 * N + BUF  # full FT: the base weights are the trained ones


def test_nothing_trained_means_no_bytes_per_trainable_parameter(monkeypatch):
    import explorer.memory.analytic as an
    monkeypatch.setattr(an, "memory_plan", lambda s, m, k=None: MemoryPlan({}, trainable_parts=dict(adapters=0)))
    e = an.estimate(spec(), "lora", precision="fp32")
    assert (e["trainable_params"], e["grads_bytes"], e["optimizer_bytes"]) == (0, 0, 0)
    assert e["bytes_per_trainable_param"] == 0
    assert e["weights_bytes"] == 4 * N - 4 * HEAD + BUF  # the adapters' count is the plan's minus the head


def test_estimate_defaults():
    # full fine-tuning, bf16-mixed, batch 1, 512 tokens, on CUDA, no ZeRO, one GPU
    e = estimate(spec())
    assert (e["method"], e["precision"], e["batch"], e["seq_len"], e["device"], e["zero"], e["gpus"],
            e["optimizer"], e["checkpointing"], e["recompute"], e["activation_model"]) == (
        "full", "bf16-mixed", 1, 512, "cuda", 0, 1, "adamw", False, False, "detailed")
    assert e["optimizer_master_bytes"] == 4 * N and e["all_gpus_total_bytes"] == e["total_bytes"]
    cuda = estimate(spec(family="bert", kv_heads=2, hidden_dropout=0.1), batch=1, seq_len=512)
    cpu = estimate(spec(family="bert", kv_heads=2, hidden_dropout=0.1), batch=1, seq_len=512, device="cpu")
    assert cuda["activations_bytes"] < cpu["activations_bytes"]  # 1-byte dropout masks on CUDA (the default)


def test_spec_is_the_hand_count():  # the figures the tests below build on
    assert (spec().n_params(), spec().buffer_bytes(), spec().head_params()) == (N, BUF, HEAD)


@pytest.mark.parametrize("precision, optimizer, master, w, g, opt", [
    ("fp32", "adamw", True, 4 * N + BUF, 4 * N, 8 * N),
    ("bf16-mixed", "adamw", True, 2 * N + BUF, 2 * N, 12 * N),  # 8 B moments + 4 B master copy
    ("bf16-mixed", "adamw", False, 2 * N + BUF, 2 * N, 8 * N),
    ("bf16-mixed", "adamw-8bit", True, 2 * N + BUF, 2 * N, 6 * N),
    ("bf16-mixed", "sgd", True, 2 * N + BUF, 2 * N, 4 * N),
    ("fp32", "sgd", True, 4 * N + BUF, 4 * N, 0),
    ("bf16-autocast", "adamw", True, 4 * N + BUF, 4 * N, 8 * N),  # fp32 weights, no master copy
])
def test_full_fine_tuning_static_terms(precision, optimizer, master, w, g, opt):
    e = estimate(spec(), "full", precision=precision, optimizer=optimizer, master_copy=master, device="cpu")
    assert (e["n_params"], e["trainable_params"], e["trains_all"]) == (N, N, True)
    assert (e["weights_bytes"], e["grads_bytes"], e["optimizer_bytes"]) == (w, g, opt)
    assert e["optimizer_moments_bytes"] == {"adamw": 8, "adamw-8bit": 2, "sgd": 0}[optimizer] * N
    assert e["optimizer_master_bytes"] == opt - e["optimizer_moments_bytes"]
    assert e["total_bytes"] == w + g + opt + e["activations_bytes"]
    assert e["bytes_per_trainable_param"] == (w - BUF) / N + g / N + opt / N
    assert e["unsharded"] == dict(weights_bytes=w, grads_bytes=g, optimizer_bytes=opt)


def test_lora_static_terms_fp32():
    # LoRA r=4 on q and v: 224 adapter parameters, the 16 of the new head; peft keeps a copy of the old head
    e = estimate(spec(), "lora", LORA, precision="fp32")
    T = LORA_Q_V_R4 + HEAD
    assert (e["trainable_params"], e["trains_all"]) == (T, False)
    assert e["trainable_parts"] == dict(adapters=LORA_Q_V_R4, head=HEAD)
    assert e["weights_bytes"] == 4 * N + 4 * LORA_Q_V_R4 + 4 * HEAD + BUF  # base + adapters + head copy + buffers
    assert (e["grads_bytes"], e["optimizer_bytes"]) == (4 * T, 8 * T)


def test_four_bit_weights():
    # the blocks' 1,152 linear weights at 0.5 B + 0.127 bit; the other 136 parameters 16-bit; adapters 16-bit
    e = estimate(spec(), "lora", LORA, precision="4bit")
    want = BLOCKS * (0.5 + 0.127 / 8) + (N - BLOCKS) * 2 + 2 * LORA_Q_V_R4 + 2 * HEAD + BUF
    assert e["weights_bytes"] == pytest.approx(want, rel=1e-12)
    assert "4-bit: the blocks' linear weights at 0.5 B/param plus QLoRA's double-quantisation constants (0.127 " \
           "bit/param); embeddings, norms and head stay 16-bit; adapters train in 16-bit." in e["notes"]
    assert not any(n.startswith("4-bit") for n in estimate(spec(), "lora", LORA)["notes"])
    with pytest.raises(KnobError) as x:
        estimate(spec(), "full", precision="4bit")
    assert str(x.value) == FULL_4BIT


@pytest.mark.parametrize("zero, gpus", [(0, 1), (1, 4), (2, 4), (3, 4), (0, 3)])
def test_zero_terms_per_gpu_and_in_all(zero, gpus):
    e = estimate(spec(), "full", precision="fp32", zero=zero, gpus=gpus)
    w, g, opt = 4 * N + BUF, 4 * N, 8 * N
    want = (w / gpus if zero >= 3 else w, g / gpus if zero >= 2 else g, opt / gpus if zero >= 1 else opt)
    assert (e["weights_bytes"], e["grads_bytes"], e["optimizer_bytes"]) == want
    assert e["unsharded"] == dict(weights_bytes=w, grads_bytes=g, optimizer_bytes=opt)
    assert (e["zero"], e["gpus"], e["scope"]) == (zero, gpus, "per GPU")
    total = sum(want) + e["activations_bytes"]
    assert e["total_bytes"] == total and e["all_gpus_total_bytes"] == total * gpus
    assert any(n.startswith(f"ZeRO stage {zero}") for n in e["notes"]) == (zero > 0 or gpus > 1)


# ---------------------------------------------------------------- analytic: the activation term it picks
def test_activation_models_and_what_is_reported():
    s = spec()
    kw = dict(precision="bf16-mixed", batch=2, seq_len=6, device="cpu")
    d = estimate(s, "lora", LORA, **kw)
    k = estimate(s, "lora", LORA, activation_model="korthikanti", **kw)
    kor = korthikanti_activations(s, 2, 6, 2, False, False)
    assert d["activations_korthikanti_bytes"] == k["activations_korthikanti_bytes"] == kor
    assert d["activations_bytes"] == d["activations_detailed_bytes"] == k["activations_detailed_bytes"]
    assert k["activations_bytes"] == kor != d["activations_bytes"]
    r = estimate(s, "lora", LORA, recompute=True, **kw)  # selective recomputation drops Korthikanti's 5as/h term
    assert r["activations_korthikanti_bytes"] == korthikanti_activations(s, 2, 6, 2, True, False) < kor
    plan = memory_plan(s, "lora", LORA)
    det, terms, _ = detailed_activations(s, plan, 2, 6, 2, 2, "flash", False, False, False, False)
    assert d["activations_detailed_bytes"] == det and d["activation_terms"] == terms
    assert (d["attention"], d["device"], d["batch"], d["seq_len"]) == ("flash", "cpu", 2, 6)
    assert (d["activation_model"], k["activation_model"]) == ("detailed", "korthikanti")


@pytest.mark.parametrize("family", ["llama", "bert"])
@pytest.mark.parametrize("precision, ckpt_e", [("fp32", 4), ("bf16-mixed", 2), ("bf16-autocast", 4)])
def test_checkpointing_keeps_the_residual_stream(precision, ckpt_e, family):
    s = spec(attn_dropout=0.1, hidden_dropout=0.1, family=family, kv_heads=2)
    e = estimate(s, "lora", LORA, precision=precision, batch=2, seq_len=6, device="cuda", checkpointing=True)
    o = options(precision, device="cuda")
    _, _, store = detailed_activations(s, memory_plan(s, "lora", LORA), 2, 6, o.act_e, 1, "flash", False,
                                       o.autocast, True, False)
    want, terms = checkpointed(store, 2, 6 * 2 * 8 * ckpt_e)  # s b h bytes per layer checkpoint
    assert e["activations_detailed_bytes"] == e["activations_bytes"] == want and e["activation_terms"] == terms
    assert e["checkpointing"] is True
    assert "Full activation checkpointing: each layer keeps only its input (s b h); one layer's activations are " \
           "rebuilt at a time in the backward pass (the forward runs twice)." in e["notes"]
    assert e["activations_korthikanti_bytes"] == korthikanti_activations(s, 2, 6, o.act_e, False, True)


def test_kernel_follows_the_specs_attention_dropout():
    assert estimate(spec(attn_dropout=0.1), "full", device="cpu")["attention"] == "materialized"
    assert estimate(spec(attn_dropout=0.0), "full", device="cpu")["attention"] == "flash"
    assert estimate(spec(attn_dropout=0.1), "full", device="cuda")["attention"] == "flash"


def test_recompute_and_padding_reach_the_activations():
    s = spec(attn_dropout=0.1)
    base = estimate(s, "full", device="cpu", batch=2, seq_len=6)
    assert estimate(s, "full", device="cpu", batch=2, seq_len=6, recompute=True)["activations_bytes"] < \
        base["activations_bytes"]  # drops the s^2 scores
    flash = estimate(spec(), "full", device="cpu", batch=2, seq_len=6)
    assert estimate(spec(), "full", device="cpu", batch=2, seq_len=6, padded=True)["activations_bytes"] > \
        flash["activations_bytes"]  # the fused path with padding: a float mask per layer, k and v per head


def test_estimate_echoes_its_settings():
    e = estimate(spec(name="mine"), "lora", LORA, precision="fp32", batch=3, seq_len=5, recompute=1,
                 device="cpu", optimizer="sgd", checkpointing=1)
    assert (e["model"], e["family"], e["method"], e["knobs"]["rank"], e["precision"], e["batch"], e["seq_len"],
            e["recompute"], e["device"], e["optimizer"], e["checkpointing"]) == (
        "mine", "llama", "lora", 4, "fp32", 3, 5, True, "cpu", "sgd", True)
    assert e["notes"][-1] == "Units: GB = 10^9 bytes, GiB = 2^30 bytes."
    assert e["notes"][-2] == ("Adam's scalar step counters (4 B per parameter tensor) and allocator overheads are "
                              "left out; the total sums terms that do not all peak at the same instant (an upper "
                              "bound).")
    assert e["notes"][0].startswith("peft modules_to_save keeps a frozen copy")  # the plan's notes come first


def test_gpt_style_models_say_their_activations_are_approximated():
    gpt = spec(family="bert", task="causal-lm", kv_heads=2, tie_embeddings=True, conv1d=True)
    e = estimate(gpt, "full", batch=2, seq_len=6)
    # the log-softmax the walk leaves out: s b V x 4 B = 6 x 2 x 10 x 4 = 480 B
    assert ("Approximated: this GPT-style model's activations are walked as BERT-like layers, and its final norm, LM "
            "head, logits and loss are not counted (an under-estimate: the fp32 log-softmax of the logits alone "
            "would add 480 B).") in e["notes"]
    assert not any(n.startswith("Approximated") for n in estimate(spec(task="causal-lm"), "full")["notes"])
    assert not any(n.startswith("Approximated") for n in estimate(spec(family="bert", kv_heads=2), "full")["notes"])
    g2 = estimate("gpt2", "full", precision="fp32", batch=8, seq_len=1024)  # 8 x 1024 x 50,257 x 4 B
    assert any(n.endswith("would add 1.65 GB).") for n in g2["notes"])


def test_estimate_table_every_method_and_refusals_kept():
    rows = estimate_table(spec(), precision="4bit")
    assert [r["method"] for r in rows] == list(METHODS)
    full = next(r for r in rows if r["method"] == "full")
    assert full == dict(method="full", error=FULL_4BIT)
    ok = [r for r in rows if "error" not in r]
    assert len(ok) >= len(METHODS) - 2 and all(r["precision"] == "4bit" and r["trainable_params"] > 0 for r in ok)
    assert all(set(r) == {"method", "error"} for r in rows if "error" in r)
    two = estimate_table(spec(), ["lora", "full"], precision="fp32")
    assert [r["method"] for r in two] == ["lora", "full"] and two[1]["trainable_params"] == N
    assert two[0]["knobs"]["rank"] == 8  # default knobs
