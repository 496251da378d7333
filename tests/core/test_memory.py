"""Memory: the measured byte account (weights, grads, optimizer state, saved activations) and the analytic model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explorer.memory.activations import korthikanti_activations
from explorer.memory.analytic import estimate
from explorer.memory.measured import MemoryAccountant, account
from explorer.memory.specs import PUBLISHED, ModelSpec, spec_for, spec_from_model
from explorer.memory.units import fmt_bytes
from explorer.methods import METHODS, KnobError, apply_method
from explorer.models import fresh_copy
from tests.support.batches import make_batch

ALL = list(METHODS)
# tiny models are embedding-heavy: SpaRTA's paper sparsity (of all parameters) asks for more entries than the
# targets hold, and SMT's auto budget more blocks than exist, so those two get explicit budgets here
TINY_KNOBS = {"sparta": dict(density=0.1),
              "smt": dict(blocks=4, warmup_steps=2, warmup_mode="gradient-only")}
# the analytic SMT term assumes the blocks spread over the matrices (an upper bound of the saved input columns);
# these block sizes (the largest that divide the targets) keep that bound within this file's tolerance
SMT_BLOCK = {"bert": 64, "llama": 32}


def run_two_steps(loaded, method, b=4, s=24, **knobs):
    """A hand-written AdamW loop (2 steps: Adam allocates its state on the first) with the accountant."""
    knobs = {**TINY_KNOBS.get(method, {}), **knobs}
    if method == "smt":
        knobs.setdefault("block_size", SMT_BLOCK[loaded.info.family])
    adapter = apply_method(fresh_copy(loaded.model), method, n_base=loaded.info.n_params, **knobs)
    if adapter.needs_warmup:
        from explorer.engine.warmup import run_warmup

        run_warmup(adapter, [make_batch(loaded, b, s, seed=100 + i) for i in range(2)])
    model = adapter.model
    model.train()
    opt = torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=1e-3, weight_decay=0.1)
    acct = MemoryAccountant(model, opt)
    for step in range(2):
        with acct.forward_scope():
            loss = model(**make_batch(loaded, b, s, seed=step)).loss
        loss.backward()
        opt.step()
        rec = acct.snapshot()
        opt.zero_grad(set_to_none=True)
        adapter.on_step_end(opt)
    return adapter, opt, rec, knobs


@pytest.fixture(scope="module")
def runs(tiny_bert, tiny_llama):
    out = {}
    for name, loaded in (("tiny-bert", tiny_bert), ("tiny-llama", tiny_llama)):
        for m in ALL:
            out[(name, m)] = run_two_steps(loaded, m)
    return out


# ----------------------------------------------------------------------------- measured


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method", ["smt", "sparta"])
def test_sparse_optimizer_state_is_8_bytes_per_selected_entry(runs, model, method):
    adapter, opt, rec, _ = runs[(model, method)]
    selected = sum(m.delta.numel() for m in adapter.modules.values())
    assert selected > 0
    head = adapter.head_parameters()
    assert rec["trainable_params"] == selected + head
    if method == "smt":
        assert selected == adapter.n_blocks * adapter.block ** 2
    # AdamW: two fp32 moments per trainable entry; the 0-d 'step' counters are reported apart
    assert rec["optimizer_bytes"] - rec["optimizer_scalar_bytes"] == 8 * (selected + head)
    assert rec["optimizer_scalar_bytes"] == 4 * len(opt.state)


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_full_ft_optimizer_state_covers_every_parameter(runs, model, tiny_bert, tiny_llama):
    loaded = tiny_bert if model == "tiny-bert" else tiny_llama
    adapter, opt, rec, _ = runs[(model, "full")]
    n = loaded.info.n_params  # tied embeddings (tiny-llama) counted once
    assert rec["trainable_params"] == n
    assert rec["optimizer_bytes"] - rec["optimizer_scalar_bytes"] == 8 * n
    assert rec["grads_bytes"] == 4 * n


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_lora_sp_optimizer_state_about_half_of_lora(runs, model):
    lora, sp = runs[(model, "lora")], runs[(model, "lora-sp")]
    assert lora[3].get("rank", 8) == sp[3].get("rank", 8)
    assert sp[2]["optimizer_bytes"] <= 0.55 * lora[2]["optimizer_bytes"]
    assert sp[2]["optimizer_bytes"] > 0.3 * lora[2]["optimizer_bytes"]


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method", ALL)
def test_grads_only_for_trainable_params(runs, model, method):
    adapter, opt, rec, _ = runs[(model, method)]
    assert rec["grads_bytes"] == 4 * rec["trainable_params"]
    assert rec["trainable_params"] == adapter.num_trainable()
    # weights: every parameter and buffer, each storage once
    seen, nbytes = set(), 0
    for t in list(adapter.model.parameters()) + list(adapter.model.buffers()):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            nbytes += t.untyped_storage().nbytes()
    assert rec["weights_bytes"] == nbytes
    assert rec["total_bytes"] == (rec["weights_bytes"] + rec["grads_bytes"] + rec["optimizer_bytes"]
                                  + rec["activations_bytes"])
    assert rec["activations_bytes"] > 0 and rec["rss_bytes"] > 0
    assert rec["cuda_peak_bytes"] is None


def test_saved_tensors_deduped_and_weights_excluded():
    lin = nn.Linear(8, 8)
    shared = nn.Linear(8, 8, bias=False)
    model = nn.ModuleDict(dict(a=lin, b=shared, c=shared))  # a shared (tied) module
    acct = MemoryAccountant(model)
    x = torch.randn(16, 8, requires_grad=True)
    with acct.forward_scope():
        y = x * x  # saves x twice: one storage
        z = y[:, :4] * y[:, :4]  # saves a view of y twice: y's storage once
        w = lin(z.repeat(1, 2))  # saves its input (weight and bias are weights, excluded)
        v = shared(w) + shared(w)  # w saved twice by two uses of a shared weight: once
        tmp = (x.exp() * 3).sum()  # a graph dropped inside the scope: packed but not alive
        del tmp
        loss = v.sum()
    rec = acct.snapshot()
    x_b, y_b, rep_b, w_b = 16 * 8 * 4, 16 * 8 * 4, 16 * 8 * 4, 16 * 8 * 4
    assert rec["activations_bytes"] == x_b + y_b + rep_b + w_b
    assert rec["activations_packed_bytes"] == rec["activations_bytes"] + 16 * 8 * 4  # exp's output
    # tied weights once: a (8x8 + 8) and the shared 8x8
    assert rec["weights_bytes"] == (64 + 8 + 64) * 4
    assert rec["weights_by_dtype"] == {"float32": (64 + 8 + 64) * 4}
    loss.backward()


def test_custom_function_saved_parameters_are_weights():
    """SparseDeltaLinear's autograd functions save the frozen weight, the indices and the delta (weights and
    buffers, not activations) besides the input (entries) or a compact copy of its column blocks (blocks)."""
    from explorer.sparse import SparseDeltaLinear

    torch.manual_seed(0)
    x = torch.randn(3, 5, 32)
    ent = SparseDeltaLinear(nn.Linear(32, 16), rows=[0, 1, 2], cols=[3, 4, 5])
    blk = SparseDeltaLinear(nn.Linear(32, 16), brow=[0, 1], bcol=[1, 1], block=8)
    for mod, expect in ((ent, x.numel() * 4), (blk, 3 * 5 * 8 * 4)):  # blocks read one 8-wide column block
        acct = MemoryAccountant(mod)
        with acct.forward_scope():
            y = mod(x).sum()
        rec = acct.snapshot()
        assert rec["activations_bytes"] == expect
        y.backward()
        assert mod.delta.grad is not None and mod.base.weight.grad is None


def test_grads_recorded_after_backward_when_zeroed_before_snapshot(tiny_bert):
    adapter = apply_method(fresh_copy(tiny_bert.model), "lora", n_base=tiny_bert.info.n_params)
    opt = torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=1e-3)
    acct = MemoryAccountant(adapter.model, opt)
    with acct.forward_scope():
        loss = adapter.model(**make_batch(tiny_bert)).loss
    loss.backward()
    acct.after_backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    rec = acct.snapshot()
    assert rec["grads_bytes"] == 4 * adapter.num_trainable()
    assert account(adapter.model)["grads_bytes"] == 0


# ----------------------------------------------------------------------------- analytic vs measured


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method", ALL)
def test_analytic_agrees_with_measured(runs, model, method, tiny_bert, tiny_llama):
    loaded = tiny_bert if model == "tiny-bert" else tiny_llama
    adapter, opt, rec, knobs = runs[(model, method)]
    spec = spec_from_model(loaded.model)
    est = estimate(spec, method, knobs, precision="fp32", batch=4, seq_len=24, device="cpu")
    assert est["trainable_params"] == rec["trainable_params"]
    # byte for byte: weights, gradients, and the optimizer state less Adam's 0-d step counters, which the model
    # leaves out (and says so): one 4-byte counter per trained tensor
    assert est["weights_bytes"] == rec["weights_bytes"]
    assert est["grads_bytes"] == rec["grads_bytes"]
    assert rec["optimizer_scalar_bytes"] == 4 * len(list(adapter.trainable_parameters()))
    assert est["optimizer_bytes"] == rec["optimizer_bytes"] - rec["optimizer_scalar_bytes"]
    # activations and the total: within the README's 0.1 %; SMT's estimate is an upper bound (README: 1.7 % over
    # on minilm), so there it may only be over, never under
    act, tot = (est["activations_bytes"], rec["activations_bytes"]), (est["total_bytes"], rec["total_bytes"])
    if method == "smt":
        assert act[1] <= act[0] <= 1.07 * act[1], act  # tiny-bert: 6.4 % over (its 64-wide blocks, 24 tokens)
        assert tot[1] <= tot[0] <= 1.017 * tot[1], tot
    else:
        assert abs(act[0] - act[1]) <= 0.001 * act[1], act
        assert abs(tot[0] - tot[1]) <= 0.001 * tot[1], tot


def test_analytic_activations_track_batch_and_length(tiny_llama):
    spec = spec_from_model(tiny_llama.model)
    for b, s in ((2, 8), (8, 48)):
        _, _, rec, knobs = run_two_steps(tiny_llama, "lora", b=b, s=s)
        est = estimate(spec, "lora", knobs, precision="fp32", batch=b, seq_len=s, device="cpu")
        assert est["activations_bytes"] == pytest.approx(rec["activations_bytes"], rel=0.001)  # README: 0.1 %


def test_spec_param_counts_match_real_models(tiny_bert, tiny_llama):
    for loaded in (tiny_bert, tiny_llama):
        assert spec_from_model(loaded.model).n_params() == loaded.info.n_params
    assert spec_for("tiny-llama").task == "causal-lm"


# ----------------------------------------------------------------------------- big configs


def test_llama65b_full_fine_tuning_over_a_terabyte():
    est = estimate("llama-65b", "full", precision="bf16-mixed", batch=1, seq_len=512)
    n = PUBLISHED["llama-65b"].n_params()
    assert 65.0e9 < n < 65.5e9
    static = est["weights_bytes"] + est["grads_bytes"] + est["optimizer_bytes"]
    assert est["bytes_per_trainable_param"] == 16
    assert static / 1e9 == pytest.approx(1043, rel=0.005)  # METHODS.md: about 1,043 GB
    assert est["total_bytes"] > 1e12
    assert fmt_bytes(static, "GB").endswith(" GB") and fmt_bytes(static, "GiB").endswith(" GiB")
    assert float(fmt_bytes(static, "GiB", 0).split()[0].replace(",", "")) == round(static / 2 ** 30)
    no_master = estimate("llama-65b", "full", precision="bf16-mixed", master_copy=False)
    static12 = no_master["weights_bytes"] + no_master["grads_bytes"] + no_master["optimizer_bytes"]
    assert no_master["bytes_per_trainable_param"] == 12
    assert static12 / 1e9 == pytest.approx(782, rel=0.005)  # QLoRA's figure


@pytest.mark.parametrize("key,billions", [("llama-7b", 6.74), ("llama-13b", 13.02), ("mistral-7b", 7.24)])
def test_published_param_counts(key, billions):
    assert PUBLISHED[key].n_params() / 1e9 == pytest.approx(billions, rel=0.005)


def test_trainable_counts_use_the_method_formulas():
    sp = PUBLISHED["llama-7b"]
    L, d, r = sp.n_layers, sp.hidden, 8
    lora = estimate(sp, "lora", dict(rank=r, targets=["q", "v"]))["trainable_params"]
    assert lora == L * 2 * r * (d + d)
    dora = estimate(sp, "dora", dict(rank=r, targets=["q", "v"]))["trainable_params"]
    assert dora == lora + L * 2 * d
    lsp = estimate(sp, "lora-sp", dict(rank=r, targets=["q", "v"], freeze=0.5))["trainable_params"]
    assert lsp == pytest.approx(0.5 * lora, abs=L * 4)
    tl6 = estimate(sp, "tied-lora", dict(preset="TL6", rank=r))["trainable_params"]
    assert tl6 == 4 * d * r + L * (r + 3 * d)  # the paper's fused-QKV count (multi-head attention)
    tl5 = estimate(sp, "tied-lora", dict(preset="TL5", rank=r))["trainable_params"]
    assert tl5 == 4 * d * r
    smt = estimate(sp, "smt", dict(blocks=890, block_size=256))["trainable_params"]
    assert smt == 890 * 256 ** 2
    assert smt / sp.n_params() == pytest.approx(0.0086, rel=0.01)  # the paper's 0.86 %
    sparta = estimate(sp, "sparta", dict(sparsity=0.99))["trainable_params"]
    assert sparta == pytest.approx(0.01 * sp.n_params(), rel=1e-4)
    full = estimate(sp, "full")["trainable_params"]
    assert full == sp.n_params()
    # grouped-query attention: Tied-LoRA's fused B follows the real k/v sizes
    mi = PUBLISHED["mistral-7b"]
    kv = mi.kv_heads * mi.d_head
    assert estimate(mi, "tied-lora", dict(preset="TL5", rank=r))["trainable_params"] == r * mi.hidden + (
        mi.hidden + 2 * kv) * r


def test_korthikanti_formula_and_precisions():
    sp = PUBLISHED["llama-7b"]
    s, b, h, a, L = 2048, 2, sp.hidden, sp.heads, sp.n_layers
    assert korthikanti_activations(sp, b, s, 2, False) == pytest.approx(L * s * b * h * (34 + 5 * a * s / h))
    assert korthikanti_activations(sp, b, s, 2, True) == pytest.approx(L * 34 * s * b * h)
    est = estimate(sp, "full", precision="fp32", batch=b, seq_len=s, activation_model="korthikanti")
    assert est["activations_bytes"] == pytest.approx(2 * korthikanti_activations(sp, b, s, 2, False))
    assert est["bytes_per_trainable_param"] == 16
    rec = estimate(sp, "lora", precision="bf16-mixed", batch=b, seq_len=s, attention="materialized",
                   recompute=True)
    norec = estimate(sp, "lora", precision="bf16-mixed", batch=b, seq_len=s, attention="materialized")
    assert rec["activations_bytes"] < norec["activations_bytes"]
    q4 = estimate(sp, "lora", precision="4bit")
    bf = estimate(sp, "lora", precision="bf16-mixed")
    assert q4["weights_bytes"] < 0.35 * bf["weights_bytes"]


def test_bad_inputs_give_clear_errors():
    with pytest.raises(KnobError, match="4-bit"):
        estimate("llama-7b", "full", precision="4bit")
    with pytest.raises(KnobError, match="precision"):
        estimate("llama-7b", "lora", precision="fp8")
    with pytest.raises(KnobError, match="unknown model config"):
        estimate("gpt-9", "lora")
    with pytest.raises(KnobError, match="heads"):
        estimate(ModelSpec("x", "llama", "causal-lm", 2, 100, 3, 3, 64, 100), "lora")
    with pytest.raises(KnobError, match="rank"):
        estimate("llama-7b", "lora", dict(rank=0))
    with pytest.raises(KnobError, match="unit"):
        fmt_bytes(1, "TB")
    assert math.isclose(float(fmt_bytes(2 ** 30, "GiB").split()[0]), 1.0)


def test_lora_dropout_activations(tiny_bert):
    _, _, rec, knobs = run_two_steps(tiny_bert, "lora", dropout=0.1)
    est = estimate(spec_from_model(tiny_bert.model), "lora", knobs, precision="fp32", batch=4, seq_len=24,
                   device="cpu")
    _, _, rec0, _ = run_two_steps(tiny_bert, "lora")
    assert rec["activations_bytes"] > rec0["activations_bytes"]
    assert est["activations_bytes"] == pytest.approx(rec["activations_bytes"], rel=0.001)  # README: 0.1 %


@pytest.mark.slow
def test_analytic_agrees_with_measured_on_minilm():
    """The README's claim on a real model (LoRA): within 0.1 % of the byte account, three terms byte for byte."""
    from explorer.models import load_model

    minilm = load_model("minilm")
    adapter, _, rec, knobs = run_two_steps(minilm, "lora", b=4, s=32)
    est = estimate(spec_from_model(minilm.model), "lora", knobs, precision="fp32", batch=4, seq_len=32,
                   device="cpu")
    assert est["weights_bytes"] == rec["weights_bytes"] and est["grads_bytes"] == rec["grads_bytes"]
    assert est["optimizer_bytes"] == rec["optimizer_bytes"] - rec["optimizer_scalar_bytes"]
    assert abs(est["total_bytes"] - rec["total_bytes"]) <= 0.001 * rec["total_bytes"]
