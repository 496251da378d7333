"""Small, fast tests of SMT's adapter: warm-up, selection (explorer/methods/smt_adapter.py, smt.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import numpy as np
import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from torch import nn

from explorer.methods import KnobError, apply_method
from tests.support.toy_methods import HEAD_PARAMS, Q_NAME, SW_ALL, TinyNet, V_NAME, _gen, _layouts, _plan, _planted, _planted_loss, _record, _smt, _smt_b4, _tied, _vera, partial_rule


def test_smt_before_selection_by_hand():
    ad = _smt()
    assert ad.needs_warmup and ad.block == 2 and ad.n_blocks == 3 and ad.total_blocks == 6 + 3
    assert ad.delta_granule == 2 and ad.warmup_signature() == ("q", "v") and not ad.warmup_moves_weights
    assert ad.num_trainable() == 3 * 4 + HEAD_PARAMS
    assert ad.analytic_bytes() == 4 * HEAD_PARAMS + 3 * (2 * 2 * 4 + 2 * 4)  # the head, then blocks + coordinates
    from explorer.methods.smt_blocks import SCORE_NOTE

    assert ad.notes == ["Block size 2 x 2; 3 of 9 blocks (33.33% of the targets); score: |mean| of the summed "
                        "gradient (default); selection: global.", SCORE_NOTE,
                        "Warm-up mode gradient-only (a deviation from the public code): the warm-up sums gradients "
                        "but leaves every weight unchanged."]
    assert ad.config()["block_size"] == 2 and ad.config()["n_blocks"] == 3 and ad.config()["method"] == "smt"
    lays = ad.layouts()
    assert [(lay.kind, lay.trainable, lay.changeable, lay.detail) for lay in lays] == [
        ("blocks", 0, 0, dict(block=2, blocks=0, grid=[2, 3], selected=False)),
        ("blocks", 0, 0, dict(block=2, blocks=0, grid=[1, 3], selected=False))]
    assert lays[0].mask().shape == (4, 6) and not lays[0].mask().any()
    assert ad.meta_note() == ("Config only: SMT's selection needs a warm-up on real weights (gradients), so no block "
                              "is chosen here. Budget: 3 of 9 blocks of 2x2 (12 parameters); block grid per target: "
                              "1x3, 2x3.")
    assert ad.shortcut_note(2, "colour-shape") == (
        "Playground warm-up: 2 batch(es) of 'colour-shape', gradient-only (a labelled deviation: the public code "
        "fine-tunes fully for ~100 steps). Training on the Fine-tune page runs the full warm-up.")
    full = _smt(warmup_mode="full", score="l2", selection="per-matrix")
    assert full.warmup_moves_weights and full.notes[-1] == (
        "Warm-up mode full, as in the public code: the warm-up steps are full fine-tuning (all weights move; memory "
        "as full fine-tuning during the warm-up).")
    assert full.notes[0].endswith("score: L2 norm; selection: per-matrix.")


def test_smt_budget_notes_and_refusals():
    ad = _smt(n_base=1_000_000, blocks=0)  # 1 % of 10^6 = 2,500 blocks of 2x2 > a quarter of the 9
    assert ad.n_blocks == 2 and ad.notes[0] == (
        "auto budget capped: 1 % of all 1,000,000 parameters would be 2,500 blocks of 2x2, but the targets hold only "
        "9; using 25% of them (2 blocks). Small models: the embeddings hold most parameters.")
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(32, 64)
    ad = _smt(net, targets=["q"], block_size=0, blocks=2)  # auto: 16 leaves 4 x 2 = 8 blocks
    assert ad.block == 16 and ad.notes[0].startswith(
        "Block size 16 x 16 (auto: 256 does not divide these matrices or leaves too few blocks); 2 of 8 blocks")
    assert _smt(net, targets=["q"], block_size=16, blocks=2).notes[0].startswith("Block size 16 x 16; 2 of 8")
    for bs, said in ((0, "auto"), (3, "3")):
        with pytest.raises(KnobError, match=rf"^smt: block size {said} does not divide every target matrix \(2x6, "
                                            r"4x6\); valid sizes: none$"):
            _smt(block_size=bs)
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(64, 64)
    with pytest.raises(KnobError, match=r"^smt: block size 5 does not divide every target matrix \(64x64\); valid "
                                        r"sizes: 4, 8, 16, 32, 64$"):
        _smt(net, targets=["q"], block_size=5)
    with pytest.raises(KnobError, match=r"^smt: 10 blocks asked but the targets hold only 9 blocks of 2x2$"):
        _smt(blocks=10)
    with pytest.raises(KnobError, match=r"^smt: the budget selects no block; raise the number of blocks or the "
                                        r"density$"):
        _smt(density=0.01)


def test_smt_warmup_sums_selects_and_installs_by_hand():
    from explorer.engine.warmup import run_warmup

    gq, gv = _planted()
    ad = _smt()
    w0 = ad.model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    sel = run_warmup(ad, [dict(x=torch.zeros(1))] * 5, loss_fn=_planted_loss(gq, gv))
    assert ad.warmup_done == 2  # warmup_steps batches of the five
    # |mean| scores: q (1, 2) 5, v (0, 1) 4, q (0, 0) 3; the cancelling block scores 0
    assert {k: (r.tolist(), c.tolist()) for k, (r, c) in sel.items()} == {Q_NAME: ([1, 0], [2, 0]),
                                                                          V_NAME: ([0], [1])}
    torch.testing.assert_close(ad.scores[Q_NAME], torch.tensor([[6.0, 0, 0], [0, 0, 10.0]]))  # summed over 2 steps
    assert ad.grad_sums is None and not ad.needs_warmup
    assert torch.equal(ad.model.model.layers[0].self_attn.q_proj.base.weight, w0)  # gradient-only: no move
    assert ad.num_trainable() == 3 * 4 + HEAD_PARAMS
    assert ad.analytic_bytes() == 4 * HEAD_PARAMS + 3 * 4 * 4 + 4 * (2 + 2 + 1 + 1)  # deltas, int32 coordinates
    lays = ad.layouts()
    assert [(lay.trainable, lay.detail["blocks"], lay.detail["selected"]) for lay in lays] == [(8, 2, True),
                                                                                              (4, 1, True)]
    want = np.zeros((4, 6), dtype=bool)
    want[2:4, 4:6] = want[0:2, 0:2] = True
    assert np.array_equal(lays[0].mask(), want)
    trained = {n for n, p in ad.model.named_parameters() if p.requires_grad}
    assert trained == {f"{Q_NAME}.delta", f"{V_NAME}.delta", "score.weight", "score.bias"}
    assert all(p.grad is None for p in ad.model.parameters())
    assert {k: (r.tolist(), c.tolist()) for k, (r, c) in ad.selection().items()} == {Q_NAME: ([0, 1], [0, 2]),
                                                                                     V_NAME: ([0], [1])}


def test_smt_warmup_protocol_modes():
    gq, gv = _planted()
    ad = _smt()
    assert ad.begin_warmup() == []  # gradient-only: only the targets' weights need gradients
    assert {n for n, p in ad.model.named_parameters() if p.requires_grad} == {f"{Q_NAME}.weight", f"{V_NAME}.weight"}
    q = ad.model.model.layers[0].self_attn.q_proj
    for _ in range(3):
        _planted_loss(gq, gv)(ad.model, dict(x=torch.zeros(1))).backward()
        ad.accumulate()
        assert q.weight.grad is None  # gradient-only drops each gradient once summed
    assert ad.warmup_done == 3 and torch.equal(ad.grad_sums[Q_NAME], 3 * gq) and ad.grad_sums[Q_NAME].dtype == \
        torch.float32
    full = _smt(warmup_mode="full")
    params = full.begin_warmup()
    assert len(params) == len(list(full.model.parameters())) and all(p.requires_grad for p in params)
    _planted_loss(gq, gv)(full.model, dict(x=torch.zeros(1))).backward()
    full.accumulate()
    assert torch.equal(full.model.model.layers[0].self_attn.q_proj.weight.grad, gq)  # kept for the optimizer
    sel = full.finish_warmup(sums={Q_NAME: gq, V_NAME: -gv})  # sums handed over: their scores decide
    assert sel[V_NAME][0].tolist() == [0] and not full.needs_warmup
    with pytest.raises(KnobError, match=r"^smt: the warm-up saw no batch$"):
        from explorer.engine.warmup import run_warmup

        run_warmup(_smt(), [], loss_fn=_planted_loss(gq, gv))


def test_smt_install_refuses_outside_blocks_and_round_trips():
    ad = _smt()
    with pytest.raises(KnobError, match=r"^smt: a selected block lies outside model.layers.0.self_attn.q_proj "
                                        r"\(4x6, b=2\)$"):
        ad.install({Q_NAME: ([2], [0])})
    with pytest.raises(KnobError, match="lies outside model.layers.0.self_attn.v_proj"):
        _smt().install({V_NAME: ([0], [3])})
    ad = _smt()
    ad.install({Q_NAME: ([1], [2]), V_NAME: ([], [])})
    assert list(ad.modules) == [Q_NAME] and ad.num_trainable() == 4 + HEAD_PARAMS
    ad.install({Q_NAME: ([0], [1])})  # a new selection replaces the old on the same base weight
    assert ad.modules[Q_NAME].base is ad.model.model.layers[0].self_attn.q_proj.base
    assert isinstance(ad.modules[Q_NAME].base, nn.Linear)
    with torch.no_grad():
        ad.modules[Q_NAME].delta.fill_(0.5)
    st = ad.state_tensors()
    assert sorted(st) == sorted([f"{Q_NAME}.brow", f"{Q_NAME}.bcol", f"{Q_NAME}.delta", "head.score.weight",
                                 "head.score.bias"])
    other = apply_method(TinyNet(1, seed=3), "smt", smt_selection={}, targets=["q", "v"], block_size=2, blocks=3)
    assert other.needs_warmup  # an empty selection: nothing installed yet
    other.load_state_tensors(st)
    assert list(other.modules) == [Q_NAME] and other.modules[Q_NAME].brow.tolist() == [0]
    assert torch.equal(other.modules[Q_NAME].delta, ad.modules[Q_NAME].delta)
    assert torch.equal(other.model.score.weight, ad.model.score.weight)


def test_smt_pictures_and_illustrative_delta_by_hand():
    from explorer.methods import smt
    from explorer.engine.warmup import run_warmup

    gq, gv = _planted()
    ad = _smt()
    lay_q, lay_v = ad.layouts()
    (pic,) = smt.matrix_pictures(ad, lay_q, {})  # before the warm-up: the mask only (nothing selected yet)
    assert pic.kind == "mask" and not pic.data["mask"].any()
    run_warmup(ad, [dict(x=torch.zeros(1))] * 2, loss_fn=_planted_loss(gq, gv))
    lay_q, lay_v = ad.layouts()
    mask_pic, score_pic = smt.matrix_pictures(ad, lay_q, dict(batches=2, task="planted"))
    assert (mask_pic.kind, mask_pic.title) == ("mask", "Entries of W that train (8 of 24)")
    assert mask_pic.text == ("SMT trains whole **2×2 blocks**: 2 selected in this matrix, 3 in all targets. Yellow = "
                             "trained block, dark = frozen.")
    assert (score_pic.kind, score_pic.title) == ("block_scores", "Warm-up score per block")
    assert score_pic.text == ("The score of a block is the **abs-mean** of the gradient summed over the warm-up (2 "
                              "batches of `planted`), divided by the largest score of all targets. Outlined blocks "
                              "are the global top-n.")
    # scores over the largest of all targets (q's 10): q 6 and 10, v 8
    np.testing.assert_allclose(score_pic.data["scores"], np.array([[0.6, 0, 0], [0, 0, 1.0]], dtype=np.float32))
    assert np.array_equal(score_pic.data["selected"], np.array([[True, False, False], [False, False, True]]))
    assert score_pic.data["block"] == 2 and score_pic.data["selected"].dtype == bool
    _, score_v = smt.matrix_pictures(ad, lay_v, {})
    np.testing.assert_allclose(score_v.data["scores"], np.array([[0, 0.8, 0]], dtype=np.float32))
    assert "(? batches of `?`)" in score_v.text
    # one block in all: v keeps its scores but nothing selected; all-zero scores are drawn as zero, not NaN
    one = _smt(blocks=1, selection="per-matrix", score="l1")
    one.finish_warmup(sums={Q_NAME: torch.zeros(4, 6), V_NAME: torch.zeros(2, 6)})
    _, sq = smt.matrix_pictures(one, one.layouts()[0], {})
    assert np.array_equal(sq.data["scores"], np.zeros((2, 3))) and sq.data["selected"].sum() == 1
    assert sq.text.endswith("Outlined blocks are the per-matrix top-n.") and "**l1**" in sq.text
    _, sv = smt.matrix_pictures(one, one.layouts()[1], {})
    assert not sv.data["selected"].any()
    d, factors, note = smt.illustrative_delta(ad, Q_NAME, _gen(3))
    mask = torch.from_numpy(lay_q.mask())
    assert factors is None and torch.count_nonzero(d[~mask]) == 0 and torch.equal(d[mask], torch.randn(8, generator=_gen(3)))
    assert note == "The deltas start at zero; here the selected blocks hold random values: only they can change."


def test_vera_analytic_count_by_hand():
    from explorer.methods import vera

    ad = _vera()
    assert vera.analytic_count(ad.targets, 4) == 2 * ((4 + 4) + (4 + 2) + (4 + 10) + (4 + 6))
    assert vera.analytic_count(ad.targets, 1) == 2 * (4 + 1 + 2 + 1 + 10 + 1 + 6 + 1)
    assert vera.analytic_count(ad.targets, 4) == ad.num_trainable() - HEAD_PARAMS
    assert vera.shared_shape(ad.targets) == (10, 10)


def test_tied_lora_illustrative_delta_uses_the_targets_own_layer():
    from explorer.methods import tied_lora as tl

    ad = _tied(preset="vBuA", targets=["q", "v"], alpha=4.0)  # untied: each layer its own A (B = 0, drawn here)
    grp = ad.groups["q_k_v"]
    assert not torch.equal(grp.A[0], grp.A[1])
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.1.self_attn.v_proj", _gen(1))
    torch.testing.assert_close(uA, grp.A[1].detach())
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.v_proj", _gen(1))
    torch.testing.assert_close(uA, grp.A[0].detach())


def test_sparta_sweep_point_keeps_six_decimals():
    from explorer.methods import sparta
    from explorer.methods.facts import SweepGeometry

    geo = SweepGeometry(targets=("v",), b=8, total_blocks=10, cells=3)
    assert sparta.sweep_point(1, 1, geo) == (dict(targets=["v"], density=0.333333), "SpaRTA density 33.333%")


def test_tied_lora_held_by_preset_built_here():
    # the knobs' locks are built at import; build fresh ones here (a mutant of the builder shows only in these)
    from explorer.methods import tied_lora as tl

    for name in tl.SWITCHES:
        lock = tl._held_by_preset(name)
        for preset, sw in tl.PRESETS.items():
            assert lock({"preset": preset}) is sw[name]
        assert lock({"preset": "custom"}) is None and lock({}) is None and lock({"preset": "TL9"}) is None
    assert tl._held_by_preset("train_u")({"preset": "TL5"}) is False
    assert tl._held_by_preset("train_u")({"preset": "TL6"}) is True


def test_vera_illustrative_rank_bound_is_the_smallest_of_r_d_out_d_in():
    from explorer.methods import vera

    up = "model.layers.0.mlp.up_proj"  # 10 x 6
    for r, bound in ((8, 6), (2, 2)):  # d_in smallest; r smallest
        ad = _vera(1, rank=r, targets=["up"])
        assert f"has rank ≤ {bound} and" in vera.illustrative_delta(ad, up, _gen(0))[2]


def test_tied_lora_in_bf16_casts_its_fp32_factors_to_the_input():
    net = TinyNet(1).to(torch.bfloat16)
    ad = _tied(net, targets=["q", "v"])
    grp = ad.groups["q_k_v"]
    assert grp.A.dtype == torch.float32  # the factors stay fp32
    with torch.no_grad():
        grp.B.copy_(torch.randn(grp.B.shape))
        grp.u.copy_(torch.full(grp.u.shape, 0.5))
        grp.v.copy_(torch.full(grp.v.shape, 2.0))
    q = ad.model.model.layers[0].self_attn.q_proj
    x = torch.randn(3, 6, dtype=torch.bfloat16)
    with torch.no_grad():
        y = q(x)
        assert y.dtype == torch.bfloat16
        want = x.float() @ (q.base.weight.float() + q.delta_weight()).t() + q.base.bias.float()
        torch.testing.assert_close(y.float(), want, atol=0.1, rtol=0.05)


def test_tied_lora_layouts_attribute_tied_tensors_to_each_groups_own_first_layer():
    net = TinyNet(2)
    net.model.layers[0].mlp.up_proj = nn.Identity()  # the gate+up group starts at layer 1
    ad = _tied(net)
    got = dict(_layouts(ad))
    assert got["1.mlp.up_proj"] == 12 + 20 + 2 + 10  # A, B (tied: attributed here), u, v
    assert got["0.self_attn.q_proj"] == 12 + 8 + 2 + 4 and got["1.self_attn.q_proj"] == 2 + 4
    # the group's u and v have a row per layer (L (r + d_out), the paper's count): layer 0's (2 + 10) exist and
    # are counted, though no target of layer 0 reads them (no layout holds them)
    assert sum(got.values()) + (2 + 10) == ad.num_trainable() - HEAD_PARAMS


def test_tied_saves_when_only_a_trains_and_x_needs_no_gradient():
    from explorer.methods import tied_lora as tl

    sw = {k: False for k in ("tied",) + SW_ALL}
    sw["train_A"] = True
    assert _record(partial_rule(tl.tied_saves, rank=3, sw=sw), needs_grad_in=False)[:2] == (True, {"x": 120})


def test_smt_selection_defaults_ties_by_position_and_three_matrices():
    from explorer.methods.smt_blocks import block_scores, select_blocks

    g = torch.randn(4, 6)
    assert torch.equal(block_scores(g, 2), block_scores(g, 2, "abs-mean"))  # the default score
    s = {"a": torch.tensor([[5.0, 1.0, 7.0]]), "b": torch.tensor([[6.0]]), "c": torch.tensor([[9.0, 0.0], [8.0, 1.0]])}
    got = select_blocks(s, 4)  # the default rule is global: 9 (c), 8 (c), 7 (a), 6 (b)
    assert {k: [r.tolist() for r in v] for k, v in got.items()} == {"a": [[0], [2]], "b": [[0], [0]],
                                                                     "c": [[0, 1], [0, 0]]}
    # 40 equal scores (1, 2, 1, 2, ...): ties are broken by position, in both rules
    ties = {"a": torch.tensor([[1.0, 2.0] * 20])}
    for rule in ("global", "per-matrix"):
        rows, cols = select_blocks(ties, 25, rule)["a"]
        assert cols.tolist() == list(range(1, 40, 2)) + [0, 2, 4, 6, 8], rule
        assert rows.dtype == torch.int32 and cols.dtype == torch.int32


def test_smt_memory_plan_counts_are_whole_numbers_and_a_block_must_divide_both_sides():
    # q 8x8, k 4x8, v 4x8 in 4x4 blocks: 16 blocks in all, 12 column blocks; 100 asked -> clamped to 16
    plan = _plan("smt", targets=["q", "k", "v"], block_size=4, blocks=100)
    assert plan.notes[0].startswith("SMT: 16 blocks of 4x4;")
    assert type(plan.trainable_parts["blocks"]) is int and plan.trainable_parts["blocks"] == 16 * 16
    assert type(plan.extra_index_bytes) is int and plan.extra_index_bytes == 4 * 3 * 16 + 4 * 12
    (saved,) = _record(plan.save_rules["q"])[1].values()  # min(ceil(16 / 6), 8 / 4) = 2 column blocks of 4
    assert type(saved) is int and saved == 10 * 2 * 4 * 2
    # 8 divides every d_in (8) but not k's d_out (4): no block size
    with pytest.raises(KnobError, match=r"^smt: no block size divides every target of hand; set block_size$"):
        _plan("smt", targets=["q", "k"], block_size=8)


def test_smt_selection_given_to_apply_is_installed():
    ad = apply_method(TinyNet(1), "smt", smt_selection={Q_NAME: ([1], [2])}, targets=["q", "v"], block_size=2,
                      blocks=1)
    assert not ad.needs_warmup and list(ad.modules) == [Q_NAME]
    assert ad.modules[Q_NAME].brow.tolist() == [1] and ad.modules[Q_NAME].bcol.tolist() == [2]
    assert ad.num_trainable() == 2 * 2 + HEAD_PARAMS  # one 2 x 2 block and the head


def test_smt_counts_grids_and_layouts_with_four_by_four_blocks():
    ad = _smt_b4(blocks=2)
    assert ad.total_blocks == 6 and ad.num_trainable() == 2 * 16 + HEAD_PARAMS
    assert ad.analytic_bytes() == 4 * HEAD_PARAMS + 2 * (16 * 4 + 2 * 4)  # fp32 blocks and int32 coordinates
    lays = ad.layouts()
    assert [(lay.type, lay.layer, lay.detail["grid"]) for lay in lays] == [("q", 0, [2, 2]), ("v", 0, [1, 2])]
    assert all(type(x) is int for lay in lays for x in lay.detail["grid"])
    assert all(lay.mask().dtype == np.bool_ and not lay.mask().any() for lay in lays)  # nothing selected yet
    ad.install({Q_NAME: ([1], [0])})
    lay = ad.layouts()[0]
    assert (lay.trainable, lay.detail["blocks"]) == (16, 1)


def test_smt_finish_warmup_uses_the_score_and_the_rule_knobs():
    gq, gv = _planted()
    # |mean|: q (1, 2) 5, (0, 0) 3, the cancelling (1, 0) 0; L2 norm: (1, 0) is 18, the largest
    sel = _smt(blocks=1, score="l2").finish_warmup(sums={Q_NAME: gq, V_NAME: gv})
    assert (sel[Q_NAME][0].tolist(), sel[Q_NAME][1].tolist()) == ([1], [0])
    gv2 = gv.clone()
    gv2[0:2, 0:2] = 4.5  # v: 4.5 and 4, both above q's second (3)
    glob = _smt(blocks=3).finish_warmup(sums={Q_NAME: gq, V_NAME: gv2})  # global: 5 (q), 4.5 and 4 (v)
    per = _smt(blocks=3, selection="per-matrix").finish_warmup(sums={Q_NAME: gq, V_NAME: gv2})  # q 2, v 1
    assert [len(glob[Q_NAME][0]), len(glob[V_NAME][0])] == [1, 2]
    assert [len(per[Q_NAME][0]), len(per[V_NAME][0])] == [2, 1]
    with pytest.raises(AssertionError, match=r"^call begin_warmup\(\) first$"):
        _smt().finish_warmup()


def test_smt_full_warmup_takes_one_adamw_step_per_batch_at_its_rate():
    from explorer.engine.warmup import run_warmup

    gq, gv = _planted()
    ad = _smt(warmup_mode="full", warmup_steps=1)
    q = ad.model.model.layers[0].self_attn.q_proj
    w0 = q.weight.detach().clone()
    run_warmup(ad, [dict(x=torch.zeros(1))], loss_fn=_planted_loss(gq, gv))
    moved = ad.model.model.layers[0].self_attn.q_proj.base.weight.detach() - w0
    # AdamW's first step at the default lr 1e-4, no weight decay: -lr g / (|g| + eps), i.e. -1e-4 sign(g); entries
    # with no gradient stay where they were
    torch.testing.assert_close(moved, -1e-4 * torch.sign(gq), atol=1e-7, rtol=0)  # fp32 rounding of w: ~3e-8
    ad = _smt(warmup_mode="full", warmup_steps=1)
    w0 = ad.model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    run_warmup(ad, [dict(x=torch.zeros(1))], loss_fn=_planted_loss(gq, gv), lr=1e-2, weight_decay=0.5)
    moved = ad.model.model.layers[0].self_attn.q_proj.base.weight.detach() - w0
    # AdamW decays first (w -= lr wd w), then the Adam step
    torch.testing.assert_close(moved, -1e-2 * 0.5 * w0 - 1e-2 * torch.sign(gq), atol=1e-6, rtol=0)


def test_smt_warmup_refuses_a_loss_that_is_not_finite():
    from explorer.engine.warmup import run_warmup

    def nan_loss(model, batch):
        return model.model.layers[0].self_attn.q_proj.weight.sum() * float("nan")

    with pytest.raises(FloatingPointError) as e:
        run_warmup(_smt(), [dict(x=torch.zeros(1))], loss_fn=nan_loss)
    assert str(e.value) == "smt: the warm-up loss is not finite"


def test_smt_block_edges_one_by_one_all_blocks_and_the_auto_256_note():
    ad = _smt(block_size=1, blocks=3)  # 1 x 1 blocks are single entries: q 24 + v 12
    assert ad.block == 1 and ad.total_blocks == 36 and ad.num_trainable() == 3 + HEAD_PARAMS
    assert _smt(blocks=9).n_blocks == 9  # every block of the targets (q 2 x 3 + v 1 x 3) may be asked for
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(1024, 512)  # auto: 256 divides it, a 2 x 4 grid (>= 8)
    ad = _smt(net, targets=["q"], block_size=0, blocks=1)
    assert ad.block == 256 and ad.notes[0].startswith("Block size 256 x 256; 1 of 8 blocks")
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(120, 120)
    # sizes >= 4 dividing 120: 4 5 6 8 10 12 15 20 24 30 40 60 120; the message lists the largest eight
    with pytest.raises(KnobError) as e:
        _smt(net, targets=["q"], block_size=7)
    assert str(e.value) == ("smt: block size 7 does not divide every target matrix (120x120); valid sizes: 12, 15, "
                            "20, 24, 30, 40, 60, 120")
