"""Small, fast tests of what the playground draws for each method (the methods' picture and formula facts), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch

from explorer.methods import apply_method
from tests.support.toy_methods import HEAD_PARAMS, LAYER_PARAMS, TinyNet, UP, V, _gen


def test_full_playground_facts():
    from explorer.methods import full

    ad = apply_method(TinyNet(1), "full")
    total = LAYER_PARAMS + HEAD_PARAMS
    assert full.formula_lines(ad, total, HEAD_PARAMS) == (["all parameters of the model = 199"], 199)
    assert full.formula_lines(ad, 12345, 0) == (["all parameters of the model = 12,345"], 12345)
    d, factors, note = full.illustrative_delta(ad, "model.layers.0.mlp.up_proj", _gen(3))
    assert factors is None and note == "Full fine-tuning: every entry can change (random values drawn for illustration)."
    assert torch.equal(d, torch.randn(UP[0], UP[1], generator=_gen(3)))  # standard normal, the given generator
    lay = ad.layouts()[1]  # v: 2 x 6
    (pic,) = full.matrix_pictures(ad, lay, None)
    assert (pic.kind, pic.title, pic.text) == ("mask", "Entries of W that train (12 of 12)",
                                               "Full fine-tuning trains every entry.")
    assert pic.data["mask"].shape == V and pic.data["mask"].all()
    assert full.settings_text({}) == "every parameter"
    assert ad.analytic_bytes() == 4 * total  # fp32: 4 bytes per parameter, the head included


def test_full_analytic_bytes_counts_a_tied_weight_once():
    shared = TinyNet(1, head=False)
    shared.model.layers[0].self_attn.v_proj = shared.model.layers[0].self_attn.q_proj  # one module twice
    ad = apply_method(shared, "full")
    # q's 4x6 weight and 4 biases once; v's own 2x6 + 2 are gone; up and down as before
    assert ad.analytic_bytes() == 4 * (28 + 70 + 66)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_formula_lines_by_hand(method):
    from explorer.methods import METHODS

    ad = apply_method(TinyNet(2), method, rank=3, targets=["q", "up"])
    lines, n = METHODS[method].formula_lines(ad, 0, HEAD_PARAMS)
    if method == "lora":
        assert lines == ["q: r (d_in + d_out) = 3 × (6 + 4) = 30  × 2 matrices = 60",
                         "up: r (d_in + d_out) = 3 × (6 + 10) = 48  × 2 matrices = 96",
                         "+ the new classification head, trained fully = 21"]
        assert n == 60 + 96 + 21
    else:
        assert lines == ["q: r (d_in + d_out) + d_out = 3 × (6 + 4) + d_out 4 = 34  × 2 matrices = 68",
                         "up: r (d_in + d_out) + d_out = 3 × (6 + 10) + d_out 10 = 58  × 2 matrices = 116",
                         "+ the new classification head, trained fully = 21"]
        assert n == 68 + 116 + 21
    assert n == ad.num_trainable()  # the formula agrees with the real parameters


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_illustrative_delta_is_k_b_a_with_the_real_a(method):
    import math

    from explorer.methods import METHODS

    r, alpha = 3, 12.0
    ad = apply_method(TinyNet(1), method, rank=r, alpha=alpha, targets=["q", "up"])
    d, (B, A), note = METHODS[method].illustrative_delta(ad, "model.layers.0.mlp.up_proj", _gen(1))
    real_A = ad.peft_model.base_model.model.model.layers[0].mlp.up_proj.lora_A["default"].weight
    assert torch.equal(A, real_A.detach()) and A.shape == (r, UP[1])
    assert torch.equal(B, torch.randn(UP[0], r, generator=_gen(1)) / math.sqrt(r))  # N(0, 1 / r)
    torch.testing.assert_close(d, (alpha / r) * B @ A)
    assert torch.linalg.matrix_rank(d) == r
    want = ("B starts at zero, so the real ΔW is 0 until training. Here B is random and A is its real initial "
            "value: ΔW = 4 · B A has rank ≤ 3, yet every entry of W can change.")
    if method == "dora":
        want += " DoRA also rescales each output row by a trained magnitude (not drawn)."
    assert note == want


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_matrix_pictures_by_hand(method):
    from explorer.methods import METHODS

    ad = apply_method(TinyNet(1), method, rank=3, targets=["q", "up"])
    lay = ad.layouts()[1]  # up: 10 x 6
    (pic,) = METHODS[method].matrix_pictures(ad, lay, None)
    trained = "48" if method == "lora" else "58"
    want = (f"W (10×6) stays frozen. LoRA trains **B** (10×3) and **A** (3×6): {trained} numbers instead of 60. "
            "Every entry of W can change, but only inside a rank-3 update.")
    if method == "dora":
        want += " DoRA adds one magnitude per output row."
    assert (pic.kind, pic.title, pic.text, pic.data) == ("lowrank_shapes", "W + (α/r)·B A, to scale", want,
                                                         dict(d_out=10, d_in=6, rank=3))


def test_lora_sweep_point_and_settings_text():
    from explorer.methods import dora, lora
    from explorer.methods.facts import SweepGeometry

    geo = SweepGeometry(targets=("q", "v"), b=8, total_blocks=10, cells=640)
    knobs, label = lora.sweep_point(4, 999, geo)
    assert knobs == dict(rank=4, alpha=8.0, targets=["q", "v"]) and label == "LoRA r=4"
    assert isinstance(knobs["targets"], list)
    assert lora.settings_text(dict(rank=4, targets=["q", "k"])) == "r=4 on q,k"
    assert lora.settings_text(dict(rank=2)) == "r=2 on q,v"  # the targets knob's default
    assert dora.METHOD.settings_text(dict(rank=8, targets=["up"])) == "r=8 on up"
