"""Small, fast tests of Tied-LoRA (explorer/methods/tied_lora.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from torch import nn

from explorer.methods import KnobError
from tests.support.toy_methods import HEAD_PARAMS, SW_ALL, TinyNet, V, _gen, _layouts, _plan, _record, _tied


def test_tied_lora_tl6_counts_layouts_and_notes_by_hand():
    ad = _tied()
    # groups: q+v (fused d_out 4 + 2 = 6, d_in 6), up (10 x 6), down (6 x 10); r = 2, L = 2; A, B once (tied)
    # A r d_in + B d_out r + L r (u) + L d_out (v): 12 + 12 + 4 + 12, 12 + 20 + 4 + 20, 20 + 12 + 4 + 12
    assert ad.num_trainable() == 40 + 56 + 48 + HEAD_PARAMS
    # tied A, B attributed to layer 0; u to the first slice of each group; v to every target's rows
    assert _layouts(ad) == [("0.self_attn.q_proj", 12 + 8 + 2 + 4), ("0.self_attn.v_proj", 4 + 2),
                            ("0.mlp.up_proj", 12 + 20 + 2 + 10), ("0.mlp.down_proj", 20 + 12 + 2 + 6),
                            ("1.self_attn.q_proj", 2 + 4), ("1.self_attn.v_proj", 2),
                            ("1.mlp.up_proj", 2 + 10), ("1.mlp.down_proj", 2 + 6)]
    lay = ad.layouts()[5]  # layer 1, v
    assert (lay.type, lay.layer, lay.shape, lay.kind, lay.changeable) == ("v", 1, V, "tied", 12)
    assert lay.detail == dict(group="q_k_v", rows=[4, 6], tied=True, rank=2, shared_by_layers=2, train_A=True,
                              train_B=True, train_u=True, train_v=True)
    assert ad.notes == ["TL6: A, B tied across layers; A trained, B trained, u trained, v trained.",
                        "Targets that read the same input (q, k, v) share one A and a fused B, as in the paper."]
    assert ad.knobs["tied"] is True and all(ad.knobs[k] is True for k in SW_ALL)


def test_tied_lora_untied_and_frozen_b_counts_layouts_and_notes():
    ad = _tied(preset="vBuA")  # untied, A and B trained, u = v = 1 frozen
    assert ad.num_trainable() == 2 * (12 + 12) + 2 * (12 + 20) + 2 * (20 + 12) + HEAD_PARAMS
    assert [n for _, n in _layouts(ad)] == [12 + 8, 4, 12 + 20, 20 + 12] * 2
    assert ad.layouts()[4].detail["shared_by_layers"] == 1 and ad.layouts()[4].detail["tied"] is False
    assert ad.notes[0] == "vBuA: A, B per layer (untied); A trained, B trained, u frozen, v frozen."
    ad = _tied(preset="custom", tied=False, train_A=True, train_B=False, train_u=False, train_v=False,
               targets=["up"])
    assert ad.num_trainable() == 2 * 12 + HEAD_PARAMS
    assert ad.knobs["tied"] is False and ad.knobs["train_B"] is False
    assert ad.notes == ["custom combination: A, B per layer (untied); A trained, B frozen, u frozen, v frozen.",
                        "B is frozen, so it starts random (it cannot be zero); the first trained factor among v, u, "
                        "A starts at zero so the update is zero at step 0."]


def test_tied_lora_fusion_note_only_when_targets_share_an_input():
    # one target type per group: nothing is fused, even with two layers (each layer's up reads its own input)
    assert not any("share one A" in n for n in _tied(targets=["up", "down"]).notes)
    assert any("share one A" in n for n in _tied(TinyNet(1), targets=["q", "v"]).notes)


def test_tied_lora_init_rules_and_buffers():
    grp = _tied(targets=["q", "v"]).groups["q_k_v"]  # TL6: A random in ±1/sqrt(d_in), B = 0, u = v = 1
    assert grp.A.shape == (1, 2, 6) and grp.B.shape == (1, 6, 2) and grp.u.shape == (2, 2) and grp.v.shape == (2, 6)
    bound = 1 / 6 ** 0.5
    assert bound / 2 < float(grp.A.detach().abs().max()) <= bound
    assert torch.count_nonzero(grp.B) == 0 and torch.equal(grp.u, torch.ones(2, 2)) and torch.equal(grp.v,
                                                                                                   torch.ones(2, 6))
    assert {n for n, _ in grp.named_parameters()} == {"A", "B", "u", "v"}
    # VeRA-like: A, B frozen buffers, B random N(0, 1/r), v (the first trained factor) starts at zero
    grp = _tied(targets=["q", "v"], preset="VeRA-like").groups["q_k_v"]
    assert {n for n, _ in grp.named_parameters()} == {"u", "v"} and {n for n, _ in grp.named_buffers()} == {"A", "B"}
    assert torch.count_nonzero(grp.B) == 12 and torch.count_nonzero(grp.v) == 0 and torch.equal(grp.u, torch.ones(2, 2))
    assert float(grp.A.abs().max()) > 0
    # only u trains (with B frozen): u starts at zero; only A: A does
    grp = _tied(targets=["q"], preset="custom", train_A=False, train_B=False, train_u=True, train_v=False).groups["q_k_v"]
    assert torch.count_nonzero(grp.u) == 0 and torch.equal(grp.v, torch.ones(2, 4)) and float(grp.A.abs().max()) > 0
    grp = _tied(targets=["q"], preset="custom", train_A=True, train_B=False, train_u=False, train_v=False).groups["q_k_v"]
    assert torch.count_nonzero(grp.A) == 0 and torch.count_nonzero(grp.B) == 8
    # the seed draws them
    a1 = _tied(targets=["q"], seed=1).groups["q_k_v"].A
    assert torch.equal(a1, _tied(targets=["q"], seed=1).groups["q_k_v"].A)
    assert not torch.equal(a1, _tied(targets=["q"], seed=2).groups["q_k_v"].A)


@pytest.mark.parametrize("preset", ["TL6", "vBuA"])
def test_tied_lora_forward_and_merge_by_hand(preset):
    # the paper: z = W x + (alpha / r) diag(v_l) B_l diag(u_l) A_l x, B sliced to the target's rows
    ad = _tied(preset=preset, targets=["q", "v"], alpha=6.0)
    grp = ad.groups["q_k_v"]
    torch.manual_seed(3)
    with torch.no_grad():
        grp.B.copy_(torch.randn(grp.B.shape))
        grp.u.copy_(torch.tensor([[1.5, -0.5], [0.25, 2.0]]))
        grp.v.copy_(torch.linspace(-1, 1, 12).reshape(2, 6))
    x = torch.randn(3, 6)
    for layer in (0, 1):
        i = 0 if preset == "TL6" else layer
        for name, rows in (("q_proj", slice(0, 4)), ("v_proj", slice(4, 6))):
            mod = getattr(ad.model.model.layers[layer].self_attn, name)
            A, B = grp.A[i].detach(), grp.B[i, rows].detach()
            u, v = grp.u[layer].detach(), grp.v[layer, rows].detach()
            dW = 3.0 * torch.diag(v) @ B @ torch.diag(u) @ A
            with torch.no_grad():
                torch.testing.assert_close(mod(x), x @ (mod.base.weight + dW).t() + mod.base.bias)
                torch.testing.assert_close(mod.delta_weight(), dW)
                lin = mod.to_linear()
                torch.testing.assert_close(lin.weight, mod.base.weight + dW)
                assert torch.equal(lin.bias, mod.base.bias) and not lin.weight.requires_grad
            assert mod.weight is mod.base.weight and mod.bias is mod.base.bias


def test_tied_lora_refuses_untieable_shapes():
    net = TinyNet(2)
    net.model.layers[1].self_attn.q_proj = nn.Linear(6, 8)
    with pytest.raises(KnobError, match=r"^tied-lora: q has different shapes across layers; it cannot be tied$"):
        _tied(net, targets=["q"])
    net = TinyNet(1)
    net.model.layers[0].self_attn.v_proj = nn.Linear(5, 2)
    with pytest.raises(KnobError, match=r"^tied-lora: targets q, v read inputs of different sizes$"):
        _tied(net, targets=["q", "v"])
    with pytest.raises(KnobError, match=r"^tied-lora: no linear layers of type\(s\) gate in this model"):
        _tied(targets=["gate"])
    with pytest.raises(KnobError, match=r"^tied-lora: at least one of A, B, u, v must be trained$"):
        _tied(preset="custom", train_A=False, train_B=False, train_u=False, train_v=False)


def test_tied_lora_presets_lock_the_switches():
    from explorer.methods import tied_lora as tl

    knobs = {k.name: k for k in tl.KNOBS}
    assert knobs["tied"].locked({"preset": "vBuA"}) is False and knobs["tied"].locked({"preset": "TL5"}) is True
    assert knobs["train_u"].locked({"preset": "TL5"}) is False and knobs["train_u"].locked({"preset": "TL6"}) is True
    assert knobs["train_A"].locked({"preset": "VeRA-like"}) is False
    assert knobs["train_v"].locked({"preset": "custom"}) is None and knobs["train_v"].locked({}) is None
    assert tl.resolve_switches(dict(preset="custom", tied=0, train_A=1, train_B="", train_u=True, train_v=False)) == \
        dict(tied=False, train_A=True, train_B=False, train_u=True, train_v=False)
    assert tl.resolve_switches(dict(tied=1, train_A=0, train_B=0, train_u=0, train_v=1))["train_v"] is True
    # a named preset wins over the switches
    ad = _tied(preset="TL5", targets=["q"], train_u=True, train_v=True)
    assert ad.knobs["train_u"] is False and ad.num_trainable() == 2 * 6 + 4 * 2 + HEAD_PARAMS


def test_tied_lora_playground_facts_by_hand():
    from explorer.methods import tied_lora as tl

    ad = _tied()
    lines, n = tl.formula_lines(ad, 0, HEAD_PARAMS)
    assert lines == ["q+v (fused, d_out = 6): A 1×2×6 = 12 + B 1×6×2 = 12 + u 2×2 = 4 + v 2×6 = 12",
                     "up (fused, d_out = 10): A 1×2×6 = 12 + B 1×10×2 = 20 + u 2×2 = 4 + v 2×10 = 20",
                     "down (fused, d_out = 6): A 1×2×10 = 20 + B 1×6×2 = 12 + u 2×2 = 4 + v 2×6 = 12",
                     "+ the new classification head, trained fully = 21"]
    assert n == 144 + 21 == ad.num_trainable()
    lines, n = tl.formula_lines(_tied(preset="vBuA", targets=["q", "v"]), 0, 0)
    assert lines == ["q+v (fused, d_out = 6): A 2×2×6 = 24 + B 2×6×2 = 24"] and n == 48
    assert tl.structure(ad) == dict(
        n_layers=2, switches=dict(tied=True, train_A=True, train_B=True, train_u=True, train_v=True), rank=2,
        groups=[dict(key="q_k_v", A=[1, 2, 6], B=[1, 6, 2], u=[2, 2], v=[2, 6]),
                dict(key="gate_up", A=[1, 2, 6], B=[1, 10, 2], u=[2, 2], v=[2, 10]),
                dict(key="down", A=[1, 2, 10], B=[1, 6, 2], u=[2, 2], v=[2, 6])],
        layers=[0, 1])
    (pic,) = tl.overview_pictures(ad)
    assert (pic.kind, pic.title, pic.data) == ("tied_diagram", "Sharing across layers", dict(structure=tl.structure(ad)))
    assert pic.text == ("One **A** and one **B** are shared by every layer; each layer keeps its own scaling vectors "
                        "**u** (length r) and **v** (one per output row). Orange boxes train, grey boxes are frozen "
                        "buffers. Tied tensors are counted once and their gradients sum over the layers.")
    assert tl.overview_pictures(_tied(preset="vBuA"))[0].text.startswith("One **A** and one **B** per layer (untied); ")
    assert tl.matrix_pictures(ad, ad.layouts()[0], None) == []
    assert tl.settings_text(dict(preset="TL5", rank=4)) == "TL5, r=4 on q,k,v"
    assert tl.settings_text(dict(preset="vBuA", rank=8, targets=["up"])) == "vBuA, r=8 on up"


def test_tied_lora_illustrative_delta_draws_only_the_zero_factors():
    import math

    from explorer.methods import tied_lora as tl

    ad = _tied(targets=["q", "v"], alpha=6.0)  # TL6: B = 0 is drawn, A, u, v are real
    grp = ad.groups["q_k_v"]
    d, (vB, uA), note = tl.illustrative_delta(ad, "model.layers.1.self_attn.v_proj", _gen(4))
    B = torch.randn(2, 2, generator=_gen(4)) / math.sqrt(2)  # the v rows (2) x r, N(0, 1/r)
    torch.testing.assert_close(vB, B)  # v = 1
    torch.testing.assert_close(uA, grp.A[0].detach())  # u = 1
    torch.testing.assert_close(d, 3.0 * B @ grp.A[0].detach())
    assert note == ("ΔW_l = diag(v_l) B diag(u_l) A with the shared A and B; factors that start at zero are drawn at "
                    "random here. Every layer's update lies in the same rank-r column space of B.")
    ad = _tied(targets=["q"], preset="VeRA-like")  # v = 0 is drawn, B is real
    grp = ad.groups["q_k_v"]
    d, (vB, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(5))
    v = torch.randn(4, generator=_gen(5))
    torch.testing.assert_close(vB, v[:, None] * grp.B[0].detach())
    torch.testing.assert_close(d, 2.0 * (v[:, None] * grp.B[0]) @ grp.A[0])  # alpha / r = 4 / 2
    ad = _tied(targets=["q"], preset="custom", train_A=False, train_B=False, train_u=True, train_v=False)
    grp = ad.groups["q_k_v"]
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(6))
    torch.testing.assert_close(uA, torch.randn(2, generator=_gen(6))[:, None] * grp.A[0])
    ad = _tied(targets=["q"], preset="custom", train_A=True, train_B=False, train_u=False, train_v=False)
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(7))
    torch.testing.assert_close(uA, torch.randn(2, 6, generator=_gen(7)) / math.sqrt(6))


def test_tied_lora_state_round_trip_by_name():
    ad = _tied(targets=["q", "up"])
    st = ad.state_tensors()
    assert sorted(st) == sorted([f"{g}.{t}" for g in ("q_k_v", "gate_up") for t in "ABuv"]
                                + ["head.score.weight", "head.score.bias"])
    new = {k: torch.full_like(v, 0.5) for k, v in st.items()}
    other = _tied(targets=["q", "up"], seed=9)
    other.load_state_tensors(new)
    for k, v in other.state_tensors().items():
        assert torch.equal(v, torch.full_like(v, 0.5)), k


def test_tied_lora_memory_plan_groups_apart_and_calls_its_save_rule():
    # q (8x8) and down (8x12) read different inputs: two groups. vBuA: per layer A r x d_in, B d_out x r trained;
    # u (r), v (d_out) per layer frozen. r = 2, L = 2.
    plan = _plan("tied-lora", rank=2, targets=["q", "down"], preset="vBuA")
    assert plan.trainable_parts["adapters"] == 2 * (2 * 8 + 8 * 2) + 2 * (2 * 12 + 8 * 2)
    assert plan.extra_float == 2 * (2 + 8) + 2 * (2 + 8)
    # TL6 trains all four: its rule saves x (A), A x (u), u A x (B) and the d_out-wide update (v); r = 2
    plan = _plan("tied-lora", rank=2, targets=["q", "v"], preset="TL6")
    out, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)
    assert out is True and saved == {"x": 10 * 6 * 2, "L0.q.h": 10 * 2 * 2, "L0.q.hu": 10 * 2 * 2,
                                     "L0.q.upd": 10 * 2 * 4}
    plan = _plan("tied-lora", rank=2, targets=["q"], preset="VeRA-like")  # only u, v train
    out, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)
    assert out is True and saved == {"L0.q.h": 10 * 2 * 2, "L0.q.upd": 10 * 2 * 4}


def test_tied_lora_frozen_b_is_seeded_normal_with_std_one_over_sqrt_r():
    from explorer.methods.tied_lora import TiedGroup

    sw = dict(tied=True, train_A=False, train_B=False, train_u=True, train_v=True)  # B frozen: drawn, not zero

    def b_of(seed, global_seed):
        torch.manual_seed(global_seed)  # the draw must come from the seeded generator, never torch's global one
        return TiedGroup(4, 400, 2, 16, sw, torch.Generator().manual_seed(seed), "cpu").B

    b = b_of(0, 1)
    assert b.shape == (1, 400, 16) and not b.requires_grad
    # N(0, 1/r): 6,400 draws, standard error of the mean 0.25 / 80 and of the std about 0.25 / 113
    assert abs(float(b.mean())) < 0.02 and abs(float(b.std()) - 1 / 16 ** 0.5) < 0.02
    assert torch.equal(b, b_of(0, 2)) and not torch.equal(b, b_of(1, 1))
