"""Training precision (fp32, bf16 autocast, fp16 with a gradient scaler) and gradient checkpointing in the real
training step, the byte account's view of both, and the analytic model of autocast training."""

import json

import pytest
import torch

from explorer.engine.config import TrainConfig
from explorer.engine.prepare import enable_checkpointing
from explorer.engine.step import StepPlan, amp_for, run_step
from explorer.engine.train import train
from explorer.memory.measured import MemoryAccountant
from explorer.methods import METHODS, KnobError, apply_method
from explorer.models import fresh_copy

ALL = list(METHODS)
# tiny models: explicit SpaRTA and SMT budgets (see tests/core/test_memory.py)
KNOBS = {"sparta": dict(density=0.1), "smt": dict(blocks=4, warmup_steps=2, warmup_mode="gradient-only")}


def _batch(loaded, b=4, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (b, s), generator=g)
    lab = torch.randint(0, 2, (b,), generator=g) if loaded.info.kind == "seq-cls" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": lab}


def _adapter(loaded, method, checkpointing=False):
    torch.manual_seed(0)
    knobs = dict(KNOBS.get(method, {}))
    if method == "smt":  # the block sizes of tests/core/test_memory.py (the analytic index bytes assume them)
        knobs["block_size"] = {"bert": 64, "llama": 32}[loaded.info.family]
    a = apply_method(fresh_copy(loaded.model), method, n_base=loaded.info.n_params, **knobs)
    if a.needs_warmup:
        from explorer.engine.warmup import run_warmup

        run_warmup(a, [_batch(loaded, seed=100 + i) for i in range(2)])
    if checkpointing:
        enable_checkpointing(a.model)
    a.model.train()
    return a


def _grads(loaded, method, checkpointing, autocast=None):
    a = _adapter(loaded, method, checkpointing)
    acct = MemoryAccountant(a.model)
    torch.manual_seed(7)  # dropout: the same masks with and without checkpointing (it replays the RNG state)
    out = run_step(a.model, _batch(loaded), StepPlan(accountant=acct, autocast=autocast))
    return {n: p.grad for n, p in a.trainable_parameters()}, out


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method", ALL)
def test_checkpointing_gives_every_trainable_tensor_the_same_gradient(model, method, tiny_bert, tiny_llama):
    loaded = tiny_bert if model == "tiny-bert" else tiny_llama
    plain, out0 = _grads(loaded, method, False)
    ckpt, out1 = _grads(loaded, method, True)
    assert out0.loss == pytest.approx(out1.loss, abs=1e-6)
    assert plain.keys() == ckpt.keys() and plain
    for n, g in plain.items():
        assert g is not None and ckpt[n] is not None, n  # the adapters inside checkpointed layers get gradients
        assert torch.allclose(g, ckpt[n], atol=1e-5, rtol=0), (n, float((g - ckpt[n]).abs().max()))
    m0, m1 = out0.memory, out1.memory
    # checkpointing really happened: the forward keeps less, the backward rebuilds layers, none without it
    assert m0["activations_recomputed_bytes"] == 0 and m0["activations_bytes"] == m0["activations_kept_bytes"]
    assert m1["activations_recomputed_bytes"] > 0
    assert m1["activations_kept_bytes"] < m0["activations_kept_bytes"]
    assert m1["activations_bytes"] == m1["activations_kept_bytes"] + m1["activations_recomputed_bytes"]


def test_rebuilt_bytes_are_one_layer_at_a_time(tiny_bert):
    """Full fine-tuning of tiny-bert, where every layer saves the same bytes, its input included: without
    checkpointing the forward keeps every layer's tensors; with it, the forward keeps the layers' inputs (the
    checkpoints) and the rest outside the layers, and the backward rebuilds one layer at a time, whose input is
    the checkpoint's storage (counted once).  So activations(off) = kept(on) + L x rebuilt(on)."""
    _, out0 = _grads(tiny_bert, "full", False)
    _, out1 = _grads(tiny_bert, "full", True)
    n_layers = tiny_bert.model.config.num_hidden_layers
    sbh4 = 4 * 16 * tiny_bert.model.config.hidden_size * 4
    m0, m1 = out0.memory, out1.memory
    assert m0["activations_bytes"] == m1["activations_kept_bytes"] + n_layers * m1["activations_recomputed_bytes"]
    assert m1["activations_kept_bytes"] > n_layers * sbh4  # the checkpoints, plus the embeddings and the head


def test_bf16_autocast_keeps_fp32_weights_and_gradients(tiny_llama):
    g32, out32 = _grads(tiny_llama, "lora", False)
    g16, out16 = _grads(tiny_llama, "lora", False, autocast=torch.bfloat16)
    for n, g in g16.items():
        assert g.dtype == torch.float32  # the gradients of fp32 parameters stay fp32
        assert torch.allclose(g, g32[n], rtol=0.1, atol=0.05 * float(g32[n].abs().max()))  # same step, bf16 noise
    assert out16.loss != out32.loss and out16.loss == pytest.approx(out32.loss, rel=0.02)
    assert out16.memory["weights_bytes"] == out32.memory["weights_bytes"]  # autocast leaves the weights fp32


def test_precision_choices_and_refusals():
    cpu = torch.device("cpu")
    assert amp_for("fp32", cpu) == (None, None)
    assert amp_for("bf16", cpu) == (torch.bfloat16, None)
    with pytest.raises(KnobError) as e:
        amp_for("fp16", cpu)
    assert "CUDA" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(KnobError):
        amp_for("int8", cpu)
    with pytest.raises(KnobError):
        TrainConfig(precision="fp8").validate()


def test_fp16_on_cpu_is_one_clear_line():
    res = train(TrainConfig(model="tiny-bert", method="lora", steps=2, precision="fp16", device="cpu",
                            eval_examples=8))
    assert res.summary["status"] == "failed"
    msg = res.summary["message"]
    assert "fp16" in msg and "CUDA" in msg and "\n" not in msg and "Traceback" not in msg


def _scaled_vs_plain(tiny_bert, poison=False):
    a, b = _adapter(tiny_bert, "lora"), _adapter(tiny_bert, "lora")
    pa = [p for _, p in a.trainable_parameters()]
    pb = [p for _, p in b.trainable_parameters()]
    oa = torch.optim.AdamW(pa, lr=1e-2)
    ob = torch.optim.AdamW(pb, lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    if poison:  # an fp16 overflow: an infinite gradient reaches the scaler's unscale_
        pa[0].register_hook(lambda g: g * float("inf"))
    torch.manual_seed(3)
    out_a = run_step(a.model, _batch(tiny_bert), StepPlan(optimizer=oa, params=pa, clip=0.5, scaler=scaler,
                                                          guard_grad=True))
    torch.manual_seed(3)
    out_b = run_step(b.model, _batch(tiny_bert), StepPlan(optimizer=ob, params=pb, clip=0.5))
    return out_a, out_b, pa, pb, scaler


def test_gradient_scaler_unscales_before_clipping(tiny_bert):
    """scale, backward, unscale_, clip, step, update: the same norm and weights as the unscaled step."""
    out_a, out_b, pa, pb, scaler = _scaled_vs_plain(tiny_bert)
    assert out_a.ok and not out_a.skipped
    assert out_a.grad_norm == pytest.approx(out_b.grad_norm, rel=1e-5)  # the norm of the true gradients
    for x, y in zip(pa, pb):
        assert torch.allclose(x, y, atol=1e-6)
    assert scaler.get_scale() == 2.0 ** 12  # no overflow: the scale holds (grows only after 2,000 good steps)


def test_gradient_scaler_skips_a_non_finite_step_without_ending_the_run(tiny_bert):
    before = [p.detach().clone() for _, p in _adapter(tiny_bert, "lora").trainable_parameters()]
    out_a, _, pa, _, scaler = _scaled_vs_plain(tiny_bert, poison=True)
    assert out_a.ok and out_a.skipped  # guard_grad does not end an fp16 step: the scaler skips it
    assert all(torch.equal(x, y) for x, y in zip(pa, before))
    assert scaler.get_scale() == 2.0 ** 11  # backed off by half


def test_train_records_both_settings(tmp_path):
    from explorer.__main__ import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "tiny-llama", "--method", "lora", "--steps", "2", "--batch-size", "2",
               "--max-len", "16", "--eval-examples", "4", "--device", "cpu", "--precision", "bf16",
               "--checkpointing", "--out", str(out), "--quiet"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["precision"] == "bf16" and m["config"]["checkpointing"] is True
    steps = [r for r in m["records"] if r.get("phase") == "train"]
    assert steps and all(r["activations_recomputed_bytes"] > 0 for r in steps)
    assert any("bf16" in n and "checkpointing on" in n for n in m["notes"])


def test_cli_refuses_fp16_on_cpu_in_one_line(tmp_path, capsys):
    from explorer.__main__ import main

    rc = main(["train", "--model", "tiny-bert", "--method", "lora", "--steps", "2", "--device", "cpu",
               "--precision", "fp16", "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "fp16" in err and "CUDA" in err and "Traceback" not in err


def _two_steps(loaded, method, precision, ckpt):
    a = _adapter(loaded, method, ckpt)
    opt = torch.optim.AdamW([p for _, p in a.trainable_parameters()], lr=1e-3)
    plan = StepPlan(optimizer=opt, accountant=MemoryAccountant(a.model, opt),
                    autocast=torch.bfloat16 if precision == "bf16" else None)
    for seed in range(2):
        rec = run_step(a.model, _batch(loaded, seed=seed), plan).memory
    return a, rec


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("ckpt", [False, True])
@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method", ALL)
def test_analytic_model_matches_the_measured_run(model, method, precision, ckpt, tiny_bert, tiny_llama):
    """The analytic model at the matching precision (fp32 / bf16-autocast) and checkpointing against the byte
    account of real steps: weights, gradients and optimizer state byte for byte (autocast keeps them fp32);
    activations exact where the model is exact, and within the stated bounds where it approximates."""
    from explorer.memory.analytic import estimate
    from explorer.memory.specs import spec_from_model

    loaded = tiny_bert if model == "tiny-bert" else tiny_llama
    a, rec = _two_steps(loaded, method, precision, ckpt)
    est = estimate(spec_from_model(loaded.model), method, a.knobs, precision="fp32" if precision == "fp32" else
                   "bf16-autocast", batch=4, seq_len=16, device="cpu", checkpointing=ckpt)
    assert est["weights_bytes"] == rec["weights_bytes"] and est["grads_bytes"] == rec["grads_bytes"]
    assert est["optimizer_bytes"] == rec["optimizer_bytes"] - rec["optimizer_scalar_bytes"]
    act, meas = est["activations_bytes"], rec["activations_bytes"]
    if method == "smt":
        # an upper bound (its blocks assumed spread over the column blocks), but for tiny-llama bf16 with
        # checkpointing, 4 KiB (0.03 %) under (measured; the cause is not traced)
        assert 0.999 * meas <= act <= 1.10 * meas, (act, meas)
    elif precision == "bf16" and method in ("lora", "dora", "lora-sp", "tied-lora", "vera"):
        # the small bf16 copies autocast makes of the adapter factors (and DoRA's norm terms) are left out;
        # VeRA: its per-target bf16 copies of A and B are modelled, 24-96 KiB (0.4-1.6 %) stay unexplained
        assert abs(act - meas) <= 0.07 * meas, (act, meas)
    else:
        assert abs(act - meas) <= 0.001 * meas, (act, meas)
    if ckpt:
        assert rec["activations_recomputed_bytes"] > 0
        assert est["activation_terms"]["one layer rebuilt in the backward pass"] > 0


@pytest.mark.parametrize("ckpt", [False, True])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_padded_batch_on_grouped_query_attention(tiny_llama, method, ckpt):
    """A batch with padding: transformers' sdpa path keeps a float mask per layer and expands k and v to every
    head (tiny-llama: 4 query heads, 2 kv heads); the analytic model's ``padded`` says so, byte for byte."""
    from explorer.memory.analytic import estimate
    from explorer.memory.specs import spec_from_model

    a = _adapter(tiny_llama, method, ckpt)
    b = _batch(tiny_llama, b=4, s=10)
    b["attention_mask"][0, 7:] = 0
    rec = run_step(a.model, b, StepPlan(accountant=MemoryAccountant(a.model))).memory
    spec = spec_from_model(tiny_llama.model)
    est = estimate(spec, method, a.knobs, precision="fp32", batch=4, seq_len=10, device="cpu", checkpointing=ckpt,
                   padded=True)
    plain = estimate(spec, method, a.knobs, precision="fp32", batch=4, seq_len=10, device="cpu", checkpointing=ckpt)
    assert est["activations_bytes"] == rec["activations_bytes"]
    layers = 1 if ckpt else spec.n_layers  # checkpointing: one rebuilt layer holds them at a time
    extra = layers * (4 * 10 * 10 * 4 + 2 * 4 * 10 * (spec.heads - spec.kv_heads) * spec.d_head * 4)
    assert est["activations_bytes"] - plain["activations_bytes"] == extra


def test_memory_chart_splits_kept_and_rebuilt_activations():
    from explorer.views.figures_runs import memory_stack

    base = dict(phase="train", loss=1.0, weights_bytes=10 * 2**20, grads_bytes=2**20, optimizer_bytes=2 * 2**20)
    plain = [dict(base, step=1, activations_bytes=3 * 2**20, activations_recomputed_bytes=0)]
    ckpt = [dict(base, step=1, activations_bytes=3 * 2**20, activations_recomputed_bytes=2**20)]
    names = [t.name for t in memory_stack(plain).data]
    assert names[-1] == "activations saved for backward" and len(names) == 4
    fig = memory_stack(ckpt)
    ys = {t.name: t.y[0] for t in fig.data}
    assert len(fig.data) == 5
    assert ys["activations kept by the forward (checkpoints)"] == 2.0
    assert ys["activations of the layer rebuilt in the backward"] == 1.0
