"""Small, fast tests of LoRA-SP (explorer/methods/lora_sp.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import numpy as np
import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import torch

from tests.support.toy_methods import HEAD_PARAMS, TinyNet, _flat_mask, _gen, _sp


def test_lora_sp_counts_and_layouts_by_hand():
    ad = _sp()
    # round((1 - f) r d_in) + round((1 - f) d_out r): q 6 + 4, up 6 + 10; two layers; the head
    assert ad.num_trainable() == 2 * (10 + 16) + HEAD_PARAMS
    ad3 = _sp(freeze=0.3)  # q: round(8.4) + round(5.6) = 8 + 6; up: 8 + round(14.0) = 22
    assert ad3.num_trainable() == 2 * (14 + 22) + HEAD_PARAMS
    for lay in ad.layouts():
        m = ad.modules[lay.target]
        o, n = lay.shape
        assert lay.kind == "lowrank-masked" and lay.trainable == (10 if o == 4 else 16)
        d = lay.detail
        assert (d["rank"], d["a_trainable"], d["a_total"], d["b_total"]) == (2, 6, 2 * n, o * 2)
        assert d["b_trainable"] == (4 if o == 4 else 10)
        ma, mb = d["masks"]()
        assert np.array_equal(ma.reshape(-1), _flat_mask(m.a_idx, 2 * n).numpy())
        assert np.array_equal(mb.reshape(-1), _flat_mask(m.b_idx, o * 2).numpy())
        rows = mb.any(axis=1)  # W's row i can change iff row i of B has a trainable entry
        assert lay.changeable == int(rows.sum()) * n
        assert np.array_equal(lay.mask(), np.repeat(rows[:, None], n, axis=1))
    assert [lay.layer for lay in ad.layouts()] == [0, 0, 1, 1]
    assert [lay.type for lay in ad.layouts()] == ["q", "up", "q", "up"]


def test_lora_sp_layout_counts_a_frozen_nonzero_b_row_as_changeable():
    ad = _sp(TinyNet(1), targets=["up"], freeze=0.9)  # B: round(0.1 * 20) = 2 trainable entries of 20
    m = ad.modules["model.layers.0.mlp.up_proj"]
    rows = set((m.b_idx.long() // 2).tolist())
    frozen_row = next(i for i in range(10) if i not in rows)
    with torch.no_grad():
        m.b0[frozen_row, 0] = 1.0  # a loaded adapter may hold frozen non-zero entries
    assert ad.layouts()[0].changeable == (len(rows) + 1) * 6


def test_lora_sp_init_forward_and_merge_by_hand():
    ad = _sp(TinyNet(1), targets=["up"], freeze=0.5)
    m = ad.modules["model.layers.0.mlp.up_proj"]
    bound = 1 / 6 ** 0.5
    assert 0 < float(m.a0.abs().max()) <= bound and torch.count_nonzero(m.b0) == 0
    assert torch.equal(m.a_vals.detach(), m.a0.reshape(-1)[m.a_idx.long()])  # A starts whole, B at zero
    assert torch.count_nonzero(m.b_vals) == 0
    assert m.a_idx.dtype == torch.int32 and torch.equal(m.a_idx, m.a_idx.sort().values)
    assert {n for n, _ in m.named_parameters(recurse=False)} == {"a_vals", "b_vals"}
    with torch.no_grad():
        m.a_vals.copy_(torch.arange(6.0))
        m.b_vals.copy_(torch.arange(1.0, 11.0))
    A = m.a0.clone().reshape(-1)
    A[m.a_idx.long()] = torch.arange(6.0)
    A = A.reshape(2, 6)
    B = torch.zeros(20)
    B[m.b_idx.long()] = torch.arange(1.0, 11.0)
    B = B.reshape(10, 2)
    dW = 3.0 * B @ A  # alpha / r = 6 / 2
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x @ (m.base.weight + dW).t() + m.base.bias)
        torch.testing.assert_close(m.delta_weight(), dW)
        lin = m.to_linear()
        torch.testing.assert_close(lin.weight, m.base.weight + dW)
    assert m.weight is m.base.weight and m.bias is m.base.bias


def test_lora_sp_masks_follow_seed_and_target():
    a = _sp(TinyNet(1), targets=["q", "v"], seed=3).modules
    b = _sp(TinyNet(1), targets=["q", "v"], seed=3).modules
    c = _sp(TinyNet(1), targets=["q", "v"], seed=4).modules
    q, v = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
    assert torch.equal(a[q].a_idx, b[q].a_idx) and torch.equal(a[q].a0, b[q].a0)
    assert not torch.equal(a[q].a0, c[q].a0)
    assert not torch.equal(a[q].a0, a[v].a0)  # q and v: their own generators (same shape of A)


def test_lora_sp_meta_model_counts_and_masks_like_the_real_one():
    real = _sp(TinyNet(1), seed=5)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sp(net, seed=5)
    assert meta.num_trainable() == real.num_trainable() == 26 + HEAD_PARAMS
    for lr, lm in zip(real.layouts(), meta.layouts()):
        assert (lr.trainable, lr.changeable, lr.detail["a_trainable"], lr.detail["b_trainable"]) == \
               (lm.trainable, lm.changeable, lm.detail["a_trainable"], lm.detail["b_trainable"])
        for x, y in zip(lr.detail["masks"](), lm.detail["masks"]()):
            assert np.array_equal(x, y)
    m = meta.modules["model.layers.0.mlp.up_proj"]
    assert m.a_idx.shape == (6,) and m.b_idx.shape == (10,) and m.a_idx.dtype == torch.int32
    assert m.a0.shape == (2, 6) and m.b0.shape == (10, 2) and m.a_vals.shape == (6,) and m.b_vals.shape == (10,)


def test_lora_sp_per_step_redraw_keeps_the_update_and_resets_moments():
    ad = _sp(TinyNet(1), targets=["up"], mask_mode="per-step", seed=1)
    m = ad.modules["model.layers.0.mlp.up_proj"]
    with torch.no_grad():
        m.b_vals.copy_(torch.linspace(0.1, 1.0, 10))
    params = [p for _, p in ad.trainable_parameters()]
    opt = torch.optim.Adam(params, lr=0.0)
    x = torch.randn(4, 6)
    ad.model(x).sum().backward()
    opt.step()
    before, idx_a, idx_b = m.delta_weight().clone(), m.a_idx.clone(), m.b_idx.clone()
    ad.on_step_end(opt)
    assert not torch.equal(m.a_idx, idx_a) and not torch.equal(m.b_idx, idx_b)
    assert m.a_idx.numel() == 6 and m.b_idx.numel() == 10 and torch.equal(m.b_idx, m.b_idx.sort().values)
    torch.testing.assert_close(m.delta_weight(), before)  # values written back, then read at the new mask
    for p in (m.a_vals, m.b_vals):
        assert all(torch.count_nonzero(opt.state[p][k]) == 0 for k in ("exp_avg", "exp_avg_sq"))
    assert ad.notes[0] == ("Dropout-style variant (labelled): the mask is redrawn after every optimizer step; "
                           "Adam moments of the trainable entries restart with each new mask.")
    fixed = _sp(TinyNet(1), targets=["up"], seed=1)
    fm = fixed.modules["model.layers.0.mlp.up_proj"]
    opt = torch.optim.Adam([p for _, p in fixed.trainable_parameters()], lr=0.1)
    fixed.model(x).sum().backward()
    opt.step()
    idx = fm.b_idx.clone()
    fixed.on_step_end(opt)
    assert torch.equal(fm.b_idx, idx) and torch.count_nonzero(opt.state[fm.b_vals]["exp_avg"]) > 0
    assert fixed.notes == ["No public code exists: one fixed seeded mask per matrix is this project's default.",
                           "Frozen entries are buffers, not parameters: weight decay and Adam cannot move them. "
                           "Half of B starts at zero and, frozen, stays zero (as in the paper)."]


def test_lora_sp_state_round_trip_by_name():
    ad = _sp(TinyNet(1), targets=["q"])
    st = ad.state_tensors()
    name = "model.layers.0.self_attn.q_proj"
    assert sorted(st) == sorted([f"{name}.{k}" for k in ("a0", "b0", "a_idx", "b_idx", "a_vals", "b_vals")]
                                + ["head.score.weight", "head.score.bias"])
    other = _sp(TinyNet(1), targets=["q"], seed=8)
    other.load_state_tensors(st)
    for k, v in other.state_tensors().items():
        assert torch.equal(v, st[k]), k


def test_lora_sp_playground_facts_by_hand():
    import math

    from explorer.methods import lora_sp

    ad = _sp(freeze=0.3)
    lines, n = lora_sp.formula_lines(ad, 0, HEAD_PARAMS)
    assert lines == ["q: round((1 − 0.3) × 2×6) + round((1 − 0.3) × 4×2) = 14  × 2 matrices = 28",
                     "up: round((1 − 0.3) × 2×6) + round((1 − 0.3) × 10×2) = 22  × 2 matrices = 44",
                     "+ the new classification head, trained fully = 21"]
    assert n == 28 + 44 + 21 == ad.num_trainable()
    target = "model.layers.1.mlp.up_proj"
    m = ad.modules[target]
    d, (B, A), note = lora_sp.illustrative_delta(ad, target, _gen(2))
    mb = _flat_mask(m.b_idx, 20).reshape(10, 2)
    want_B = torch.zeros(10, 2)
    want_B[mb] = torch.randn(14, generator=_gen(2)) / math.sqrt(2)
    torch.testing.assert_close(B, want_B)
    torch.testing.assert_close(A, m.a0)
    torch.testing.assert_close(d, 3.0 * want_B @ m.a0)
    assert note == ("Only the trainable entries of B (drawn at random here; B starts at zero) can move: a row of ΔW "
                    "stays zero when its whole row of B is frozen. Rank ≤ r.")
    lay = ad.layouts()[3]
    (pic,) = lora_sp.matrix_pictures(ad, lay, None)
    assert (pic.kind, pic.title) == ("factor_masks", "Trained (orange) and frozen (grey) entries of B and A")
    assert pic.text == ("A random **30%** of the entries of A and B is frozen. Trainable: A 8 of 12, B 14 of 20. "
                        "Frozen entries are buffers, so weight decay and Adam cannot move them; frozen entries of B "
                        "stay zero.")
    assert np.array_equal(pic.data["b"], mb.numpy()) and pic.data["a"].sum() == 8
    assert lora_sp.settings_text(dict(rank=4, freeze=0.25, targets=["q"])) == "r=4, 25% frozen, on q"
    assert lora_sp.settings_text(dict(rank=8)) == "r=8, 50% frozen, on q,v"


def test_lora_sp_masks_are_boolean_matrices_and_a_meta_model_allocates_nothing():
    real = _sp(TinyNet(1), targets=["up"], seed=5)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sp(net, targets=["up"], seed=5)
    for ad in (real, meta):
        m = ad.modules["model.layers.0.mlp.up_proj"]
        ma, mb = m.masks()
        assert ma.dtype == np.bool_ and mb.dtype == np.bool_  # masks index A and B (a float array cannot)
        assert ma.shape == (2, 6) and mb.shape == (10, 2)  # A is r x d_in, B d_out x r
        assert int(ma.sum()) == 6 and int(mb.sum()) == 10  # round(0.5 x 12), round(0.5 x 20)
    m = real.modules["model.layers.0.mlp.up_proj"]
    ma, _ = m.masks()
    assert torch.equal(m.a0[torch.from_numpy(ma)], m.a_vals.detach())  # the trainable entries of A, in order
    # a config-only model: every buffer and parameter of the adapter stays on the meta device (no memory)
    mm = meta.modules["model.layers.0.mlp.up_proj"]
    assert all(t.is_meta for t in (mm.a0, mm.b0, mm.a_idx, mm.b_idx, mm.a_vals, mm.b_vals))
    assert mm.a_idx.dtype == mm.b_idx.dtype == torch.int32  # the int32 indices the saved file holds
    assert m.a_idx.dtype == m.b_idx.dtype == torch.int32


def test_lora_sp_per_step_redraws_are_seeded():
    def new_masks(seed, global_seed):
        ad = _sp(TinyNet(1), targets=["up"], mask_mode="per-step", seed=seed)
        torch.manual_seed(global_seed)  # the redraw must come from the adapter's seeded generator
        opt = torch.optim.Adam([p for _, p in ad.trainable_parameters()], lr=0.0)
        ad.on_step_end(opt)
        ad.on_step_end(opt)
        m = ad.modules["model.layers.0.mlp.up_proj"]
        return m.a_idx.clone(), m.b_idx.clone()

    a = new_masks(1, 10)
    b = new_masks(1, 20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = new_masks(2, 10)
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))
