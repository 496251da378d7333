"""Small, fast tests of VeRA through peft (explorer/methods/vera.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import torch
from safetensors.torch import load_file
from torch import nn

from explorer.methods import apply_method
from tests.support.toy_methods import DOWN, HEAD_PARAMS, Q, TinyNet, UP, V, _gen, _vera


def test_vera_counts_layouts_notes_and_shared_shape_by_hand():
    ad = _vera()
    # the paper: d (r) and b (d_out) per target; A (r x largest d_in = 10) and B (largest d_out = 10 x r) frozen
    per_layer = (4 + 4) + (4 + 2) + (4 + 10) + (4 + 6)
    assert ad.num_trainable() == 2 * per_layer + HEAD_PARAMS
    A, B = ad.shared_projections()
    assert A.shape == (4, 10) and B.shape == (10, 4) and not A.requires_grad and not B.requires_grad
    got = [(lay.target, lay.type, lay.layer, lay.shape, lay.kind, lay.trainable, lay.changeable, lay.detail)
           for lay in ad.layouts()]
    want = []
    for i in range(2):
        for name, typ, (o, n) in (("self_attn.q_proj", "q", Q), ("self_attn.v_proj", "v", V),
                                  ("mlp.up_proj", "up", UP), ("mlp.down_proj", "down", DOWN)):
            want.append((f"model.layers.{i}.{name}", typ, i, (o, n), "lowrank", 4 + o, o * n,
                         {"rank": 4, "shared_frozen": True}))
    assert got == want
    assert ad.notes == ["Implemented with the peft library (VeraConfig): one frozen A (4 x 10) and B (10 x 4) shared "
                        "by all 8 targets, sliced to each target's shape; they are buffers, not trained.",
                        "The new classification head trains fully (peft modules_to_save) and is counted; it trains "
                        "at 0.1 x the run's learning rate (d and b at the run's rate)."]
    assert _vera(1, head=False, targets=["v"]).notes == [
        "Implemented with the peft library (VeraConfig): one frozen A (4 x 6) and B (2 x 4) shared by all 1 "
        "targets, sliced to each target's shape; they are buffers, not trained."]


def test_vera_knobs_reach_the_layer_and_the_update_formula():
    ad = _vera(1, head=False, rank=3, targets=["q", "up"], d_init=0.25, dropout=0.2, seed=7)
    layer = ad.peft_model.base_model.model.model.layers[0].mlp.up_proj
    assert torch.equal(layer.vera_lambda_d["default"], torch.full((3,), 0.25))
    assert torch.equal(layer.vera_lambda_b["default"], torch.zeros(UP[0]))
    drop = layer.vera_dropout["default"]
    assert isinstance(drop, nn.Dropout) and drop.p == 0.2
    A, B = ad.shared_projections()
    assert A.shape == (3, 6) and B.shape == (10, 3)
    A7 = _vera(1, head=False, rank=3, targets=["q", "up"], seed=7).shared_projections()[0]
    A8 = _vera(1, head=False, rank=3, targets=["q", "up"], seed=8).shared_projections()[0]
    assert torch.equal(A, A7) and not torch.equal(A, A8)  # the seed draws A and B
    b = torch.linspace(-1, 1, UP[0])
    with torch.no_grad():
        layer.vera_lambda_b["default"].copy_(b)
    layer.eval()  # no dropout
    x = torch.randn(5, UP[1])
    d = torch.full((3,), 0.25)
    with torch.no_grad():  # h = W x + b ⊙ (B[:d_out] (d ⊙ (A[:, :d_in] x)))
        want = x @ layer.base_layer.weight.t() + layer.base_layer.bias + b * (((x @ A[:, :6].t()) * d) @ B[:10].t())
        torch.testing.assert_close(layer(x), want)


def test_vera_analytic_bytes_are_the_saved_tensors(tmp_path):
    ad = _vera()
    ad.save(tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    # d, b per target, the trained head and the shared A and B (save_projection), fp32
    assert sum(t.numel() for t in saved.values()) == 2 * 38 + HEAD_PARAMS + 4 * 10 + 10 * 4
    assert ad.analytic_bytes() == 4 * (2 * 38 + HEAD_PARAMS + 80)


def test_vera_playground_facts_by_hand():
    import math

    from explorer.methods import vera

    ad = _vera()
    lines, n = vera.formula_lines(ad, 0, HEAD_PARAMS)
    assert lines == ["q: d (r) + b (d_out) = 4 + 4 = 8  × 2 matrices = 16",
                     "v: d (r) + b (d_out) = 4 + 2 = 6  × 2 matrices = 12",
                     "up: d (r) + b (d_out) = 4 + 10 = 14  × 2 matrices = 28",
                     "down: d (r) + b (d_out) = 4 + 6 = 10  × 2 matrices = 20",
                     "frozen and shared by all 8 matrices, not trained: A 4×10 and B 10×4 (80 numbers, each matrix "
                     "slices its shape)",
                     "+ the new classification head, trained fully = 21"]
    assert n == 76 + 21 == ad.num_trainable()
    assert vera.formula_lines(ad, 0, 0)[1] == 76
    A, B = ad.shared_projections()
    target = "model.layers.1.self_attn.q_proj"
    delta, (bB, dA), note = vera.illustrative_delta(ad, target, _gen(2))
    b = torch.randn(Q[0], generator=_gen(2))  # b starts at zero: drawn N(0, 1) for the picture
    d = torch.full((4,), 0.1)  # d_init's default
    want = torch.diag(b) @ B[:4] @ torch.diag(d) @ A[:, :6]
    torch.testing.assert_close(delta, want)
    torch.testing.assert_close(bB @ dA, want)
    assert bB.shape == (4, 4) and dA.shape == (4, 6)
    assert note == ("b starts at zero, so the real ΔW is 0 until training. Here b is random; A and B (frozen, the "
                    "same for every target) and d are their real values: ΔW = diag(b) B diag(d) A has rank ≤ 4 and "
                    "every entry of W can change, but only through the r + d_out numbers that scale fixed random "
                    "directions.")
    # a trained b is drawn as it is
    layer = ad.peft_model.base_model.model.get_submodule(target)
    b2 = torch.tensor([0.5, -1.0, 0.0, 2.0])
    with torch.no_grad():
        layer.vera_lambda_b["default"].copy_(b2)
    delta2, _, _ = vera.illustrative_delta(ad, target, _gen(2))
    torch.testing.assert_close(delta2, torch.diag(b2) @ B[:4] @ torch.diag(d) @ A[:, :6])
    small = _vera(1, rank=8, targets=["v"])  # rank ≤ min(r, d_out, d_in) = 2
    assert "has rank ≤ 2 and" in vera.illustrative_delta(small, "model.layers.0.self_attn.v_proj", _gen(0))[2]
    lay = ad.layouts()[2]  # up, 10 x 6
    (pic,) = vera.matrix_pictures(ad, lay, None)
    assert (pic.kind, pic.title, pic.data) == ("lowrank_shapes", "W + diag(b)·B·diag(d)·A, to scale",
                                               dict(d_out=10, d_in=6, rank=4))
    assert pic.text == ("W (10×6) stays frozen, and so do **B** (10×4) and **A** (4×6): random, drawn once and "
                        "shared by every target. VeRA trains only **d** (4 numbers, scaling the rows of A) and **b** "
                        "(10, scaling the rows of B): 14 numbers instead of 60.")
    assert vera.settings_text(dict(rank=16, targets=["q", "v"])) == "r=16 on q,v"
    assert vera.settings_text(dict(rank=512)) == "r=512 on q,k,v,o,gate,up,down"
    assert math.isclose(vera.KNOBS[2].default, 0.1)  # the paper's d_init


def test_vera_rank_options_keep_the_current_value():
    from explorer.methods import vera
    from explorer.methods.facts import KnobContext

    ctx = lambda v: KnobContext(values=v, shapes=lambda types: [])  # noqa: E731
    assert vera.rank_options(ctx({"rank": 100})).options == [16, 64, 100, 128, 256, 512, 1024, 2048]
    assert vera.rank_options(ctx({})).options == [16, 64, 128, 256, 512, 1024, 2048]  # 512 is a stop already
    assert vera.rank_options(ctx({"rank": 3000})).options[-1] == 3000


def test_vera_head_trains_at_a_tenth_of_the_rate_and_every_other_method_at_one():
    ad = _vera(rank=2, targets=["q", "v"])
    scales = {n: ad.lr_scale(n, p) for n, p in ad.trainable_parameters()}
    head = {n for n in scales if ".modules_to_save." in n}
    assert head and len(head) == 2  # the head's weight and bias (peft's trained copy)
    assert all(scales[n] == 0.1 for n in head)  # a tenth of the run's rate (DEVIATIONS)
    assert all(v == 1.0 for n, v in scales.items() if n not in head) and len(scales) == len(head) + 2 * 2 * 2
    lora = apply_method(TinyNet(1), "lora", rank=2, targets=["q"])
    assert {lora.lr_scale(n, p) for n, p in lora.trainable_parameters()} == {1.0}
