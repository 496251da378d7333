"""Small, fast tests of SpaRTA (explorer/methods/sparta.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import numpy as np
import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from torch import nn

from explorer.methods import KnobError
from tests.support.toy_methods import HEAD_PARAMS, N_BASE2, TinyNet, _entries, _gen, _one_param_net, _plan, _sparta, _spec


def test_sparta_density_budget_layouts_and_notes_by_hand():
    from explorer.methods.sparta import SAMPLING_RULE

    ad = _sparta(density=0.25)  # round(0.25 x 24) = 6 per q, round(0.25 x 12) = 3 per v
    assert ad.num_trainable() == 2 * (6 + 3) + HEAD_PARAMS
    assert ad.density == 18 / 72
    assert ad.notes == [
        "Budget: density 0.25 of the target matrices; the classification head (21) trains on top of it.",
        "18 entries selected = 25.00% of the target matrices; with the head 39 trainable = 10.345% of all "
        "parameters (sparsity 0.8966).",
        SAMPLING_RULE,
        "The classification head trains fully, as in the paper, and is counted in the budget.",
        "Weight decay applies to the sparse deltas and not to the head (the authors' optimizer)."]
    for lay in ad.layouts():
        o, n = lay.shape
        k = o * n // 4
        assert (lay.kind, lay.trainable, lay.changeable, lay.detail) == ("entries", k, k, dict(density=0.25))
        mask = lay.mask()
        assert mask.sum() == k and sorted(zip(*np.nonzero(mask))) == _entries(ad.modules[lay.target])
    assert [(lay.type, lay.layer) for lay in ad.layouts()] == [("q", 0), ("v", 0), ("q", 1), ("v", 1)]
    for name, p in ad.trainable_parameters():  # weight decay: the deltas, not the head
        assert ad.takes_weight_decay(name, p) == name.endswith("delta")
    assert sum(name.endswith("delta") for name, _ in ad.trainable_parameters()) == 4


def test_sparta_sparsity_budget_by_hand():
    ad = _sparta(sparsity=0.9)  # round(0.1 x 377) = 38 = 21 head + 17 deltas over sizes 24, 12, 24, 12
    # largest remainder: 17 x size / 72 = 5.67, 2.83, 5.67, 2.83 -> 5, 2, 5, 2 and three more: the v's, then q0
    assert [m.delta.numel() for m in ad.modules.values()] == [6, 3, 5, 3]
    assert ad.notes[0] == ("Budget as the authors count it: sparsity 0.9 of all 377 parameters keeps 38 trainable "
                           "in total = 21 head + 17 deltas.")
    assert ad.num_trainable() == 38
    ad = _sparta()  # the default 0.99 keeps round(3.77) = 4 < the head: capped at half the 72 target entries
    assert [m.delta.numel() for m in ad.modules.values()] == [12, 6, 12, 6]
    assert ad.notes[0] == (
        "Default budget adapted to this model: sparsity 0.99 would train 4 parameters (21 head + -17 deltas), no "
        "more than the classification head's 21; so the density inside the targets is capped at 50% (36 deltas). "
        "Set density, or a sparsity this model can meet, to choose yourself.")
    with pytest.raises(KnobError, match=r"^sparta: sparsity 0.6 keeps 151 trainable parameters \(21 head \+ 130 "
                                        r"deltas\) but the target matrices hold only 72; raise the sparsity or add "
                                        r"targets$"):
        _sparta(sparsity=0.6)
    with pytest.raises(KnobError, match=r"^sparta: sparsity 0.95 keeps 19 trainable parameters, no more than the "
                                        r"classification head's 21: lower the sparsity$"):
        _sparta(sparsity=0.95)
    with pytest.raises(KnobError, match=r"^sparta: the budget selects no entries \(sparsity 1.0 or density 0\)$"):
        _sparta(density=0.01)  # round(0.24) = round(0.12) = 0


def test_sparta_budget_rule_at_its_edges():
    from explorer.methods.sparta import apportion, budget

    assert apportion(17, [24, 12, 24, 12]) == [6, 3, 5, 3]
    assert apportion(3, [1, 1, 1, 1]) == [1, 1, 1, 0]  # ties to the earlier
    assert apportion(500, [10, 20]) == [10, 20] and apportion(-3, [10, 20]) == [0, 0]
    assert apportion(5, [0, 0]) == [0, 0] and apportion(4, []) == []
    # default sparsity: more than half the target entries -> capped, with the reason
    counts, notes = budget(dict(sparsity=0.99, density=0.0), 10_000, 0, [100, 20])
    assert counts == [50, 10]
    assert notes == ["Default budget adapted to this model: sparsity 0.99 would train 100 parameters (0 head + 100 "
                     "deltas), more than the 50% of the target matrices' 120 entries the default may take; so the "
                     "density inside the targets is capped at 50% (60 deltas). Set density, or a sparsity this model "
                     "can meet, to choose yourself."]
    counts, notes = budget(dict(sparsity=0.99, density=0.0), 6_000, 0, [100, 20])  # exactly half: not capped
    assert counts == [50, 10] and notes[0].startswith("Budget as the authors count it: sparsity 0.99 of all 6,000")
    counts, notes = budget(dict(sparsity=0.99), 100, 0, [100, 20])  # one delta is enough
    assert counts == [1, 0] and notes[0].endswith("keeps 1 trainable in total = 0 head + 1 deltas.")
    counts, notes = budget(dict(sparsity=0.98, density=0.1), 100, 5, [100, 20])  # density wins
    assert counts == [10, 2] and notes == ["Budget: density 0.1 of the target matrices; the classification head "
                                           "(5) trains on top of it."]


def test_sparta_meta_model_counts_and_masks_like_the_real_one():
    real = _sparta(TinyNet(1), density=0.5, seed=3)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sparta(net, density=0.5, seed=3)
    assert meta.meta and not real.meta
    assert meta.num_trainable() == real.num_trainable() == 12 + 6 + HEAD_PARAMS
    for lr, lm in zip(real.layouts(), meta.layouts()):
        assert lr.trainable == lm.trainable and np.array_equal(lr.mask(), lm.mask())
    assert meta.notes[-1] == ("Config-only model (meta device): counts are exact; a matrix's entries are drawn (same "
                              "seed and rule) only when it is shown.")
    assert not any("meta device" in n for n in real.notes)
    other = _sparta(TinyNet(1), density=0.5, seed=4)
    assert _entries(other.modules["model.layers.0.self_attn.q_proj"]) != \
        _entries(real.modules["model.layers.0.self_attn.q_proj"])


def test_sparta_state_round_trip_by_name():
    ad = _sparta(TinyNet(1), density=0.5, seed=1)
    with torch.no_grad():
        for m in ad.modules.values():
            m.delta.copy_(torch.arange(1.0, m.delta.numel() + 1))
    st = ad.state_tensors()
    q = "model.layers.0.self_attn.q_proj"
    assert sorted(k for k in st if k.startswith(q)) == [f"{q}.cols", f"{q}.delta", f"{q}.rows"]
    assert torch.equal(st["head.score.weight"], ad.model.score.weight) and "head.score.bias" in st
    other = _sparta(TinyNet(1), density=0.5, seed=2)
    other.load_state_tensors(st)
    for n, m in other.modules.items():
        assert _entries(m) == _entries(ad.modules[n]) and torch.equal(m.delta, ad.modules[n].delta)
        assert other.model.get_submodule(n) is m
    x = torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(other.model(x), ad.model(x))


def test_sparta_playground_facts_by_hand():
    from explorer.methods import sparta
    from explorer.methods.facts import SweepGeometry

    ad = _sparta(density=0.25)
    assert sparta.formula_lines(ad, N_BASE2, HEAD_PARAMS) == (
        ["density 0.25 of every target matrix, rounded per matrix",
         "q: 2 matrices of 4×6 → 12 entries (25.0000%)", "v: 2 matrices of 2×6 → 6 entries (25.0000%)",
         "+ the new classification head, trained fully = 21"], 18 + 21)
    ad = _sparta(sparsity=0.9)
    assert sparta.formula_lines(ad, N_BASE2, HEAD_PARAMS) == (
        ["budget: round((1 − sparsity 0.9) × 377 all parameters) = 38, head included → 17 deltas",
         "split over the target matrices in proportion to their size (largest remainder):",
         "q: 2 matrices of 4×6 → 11 entries (22.9167%)", "v: 2 matrices of 2×6 → 6 entries (25.0000%)",
         "+ the new classification head, trained fully = 21"], 17 + 21)
    lines, n = sparta.formula_lines(_sparta(), N_BASE2, HEAD_PARAMS)
    assert lines[0] == ("budget: round((1 − sparsity 0.99) × 377 all parameters) = 4, head included → -17 deltas; "
                        "this model's default is capped at 50 % of the 72 target entries") and n == 36 + 21
    ad = _sparta(density=0.25)
    lay = ad.layouts()[0]
    d, factors, note = sparta.illustrative_delta(ad, lay.target, _gen(1))
    mask = torch.from_numpy(lay.mask())
    assert factors is None and torch.count_nonzero(d[~mask]) == 0
    assert torch.equal(d[mask], torch.randn(6, generator=_gen(1)))
    assert note == "The deltas start at zero; here the selected entries hold random values: only they can change."
    (pic,) = sparta.matrix_pictures(ad, lay, None)
    assert (pic.kind, pic.title) == ("mask", "Entries of W that train (6 of 24)")
    assert pic.text == ("SpaRTA trains **6** randomly chosen single entries of this matrix (25.00%); the colour is the "
                        "fraction of trained entries per cell (0 to 1).")
    assert np.array_equal(pic.data["mask"], lay.mask())
    geo = SweepGeometry(targets=("v", "o"), b=8, total_blocks=10, cells=640)
    assert sparta.sweep_point(4, 100, geo) == (dict(targets=["v", "o"], density=0.15625), "SpaRTA density 15.625%")
    assert sparta.sweep_point(4, 1000, geo) == (dict(targets=["v", "o"], density=1.0), "SpaRTA density 100.000%")
    assert sparta.settings_text(dict(sparsity=0.995, targets=["q"])) == "sparsity 0.995 on q"
    assert sparta.settings_text(dict(sparsity=0.99)) == "sparsity 0.99 on v,o"


def test_sparta_one_entry_is_a_budget_and_a_single_entry_matrix_is_whole():
    from explorer.methods.sparta import apportion

    assert apportion(1, [1]) == [1] and apportion(3, [1]) == [1] and apportion(0, [1]) == [0]
    ad = _sparta(TinyNet(1), targets=["v"], density=0.1)  # round(0.1 x 12) = 1 entry: enough to train
    assert [m.delta.numel() for m in ad.modules.values()] == [1] and ad.density == 1 / 12
    plan = _plan("sparta", spec=_spec(n_layers=1), targets=["v"], density=0.03)  # round(0.03 x 32) = 1
    assert plan.trainable_parts["entries"] == 1 and plan.extra_index_bytes == 8
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(1, 1)  # a 1 x 1 target: its one entry is all of it
    ad = _sparta(net, targets=["q"], density=0.6)
    assert ad.density == 1.0 and "1 entries selected = 100.00% of the target matrices" in ad.notes[1]


def test_sparta_meta_model_keeps_its_indices_on_meta_and_draws_boolean_masks():
    real = _sparta(TinyNet(1), density=0.5, seed=3)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sparta(net, density=0.5, seed=3)
    for m in meta.modules.values():  # config-only: no index memory until a matrix is shown
        assert m.rows.is_meta and m.cols.is_meta and m.delta.is_meta
    for lr, lm in zip(real.layouts(), meta.layouts()):
        mr, mm = lr.mask(), lm.mask()
        assert mr.dtype == mm.dtype == np.bool_ and mm.shape == lm.shape and np.array_equal(mr, mm)


def test_sparta_on_a_one_parameter_model_trains_all_of_it():
    ad = _sparta(_one_param_net(), targets=["q"], density=1.0)
    assert ad.notes[1] == ("1 entries selected = 100.00% of the target matrices; with the head 1 trainable = "
                           "100.000% of all parameters (sparsity 0.0000).")


def test_sparta_budget_at_exactly_all_target_entries_and_one_capped_delta():
    from explorer.methods.sparta import budget

    # sparsity 0.5 of 200 keeps 100 = every entry of the one 100-entry target: allowed, not refused
    counts, notes = budget(dict(sparsity=0.5, density=0.0), 200, 0, [100])
    assert counts == [100] and notes[0].endswith("keeps 100 trainable in total = 0 head + 100 deltas.")
    # the default sparsity keeps round(0.01 x 100) = 1 delta, more than half of a 1-entry target: capped, and
    # the reason is the 50 % cap (one delta is more than the head's 0), not the head
    counts, notes = budget(dict(sparsity=0.99, density=0.0), 100, 0, [1])
    assert counts == [0]  # the cap: round(0.5 x 1) = 0 (half to even)
    assert "more than the 50% of the target matrices' 1 entries the default may take" in notes[0]
