"""Small, fast tests of SMT's block scores, selection and rules: block size, budget (explorer/methods/smt_blocks.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch

from explorer.methods import KnobError
from tests.support.toy_methods import HEAD_SPEC, _plan, _record, partial_rule


def test_smt_block_scores_by_hand():
    from explorer.methods.smt_blocks import block_scores

    # a 4 x 6 gradient in 2 x 2 blocks (a 2 x 3 grid); block (0, 0) = [[1, -3], [2, 4]], the rest 0 but (1, 2)
    g = torch.zeros(4, 6, dtype=torch.float64)
    g[0:2, 0:2] = torch.tensor([[1.0, -3.0], [2.0, 4.0]])
    g[2:4, 4:6] = -1.0
    want = {"abs-mean": [[1.0, 0, 0], [0, 0, 1.0]],  # |(1 - 3 + 2 + 4) / 4| = 1; |-4 / 4| = 1
            "mean-abs": [[2.5, 0, 0], [0, 0, 1.0]],  # (1 + 3 + 2 + 4) / 4
            "l1": [[10.0, 0, 0], [0, 0, 4.0]],
            "l2": [[30 ** 0.5, 0, 0], [0, 0, 2.0]]}
    for score, w in want.items():
        s = block_scores(g, 2, score)
        assert s.dtype == torch.float32 and s.shape == (2, 3)
        torch.testing.assert_close(s, torch.tensor(w, dtype=torch.float32))
    with pytest.raises(KnobError, match=r"^smt: unknown score 'max'; choose from abs-mean, mean-abs, l1, l2$"):
        block_scores(g, 2, "max")


def test_smt_select_blocks_global_and_per_matrix_by_hand():
    from explorer.methods.smt_blocks import select_blocks

    a = torch.tensor([[5.0, 1.0, 7.0], [2.0, 7.0, 0.0]])  # a 2 x 3 grid; 7 twice: position breaks the tie
    b = torch.tensor([[6.0], [3.0]])  # a 2 x 1 grid
    got = select_blocks({"a": a, "b": b}, 3, "global")  # 7 (a 0,2), 7 (a 1,1), 6 (b 0,0)
    assert [r.tolist() for r in got["a"]] == [[0, 1], [2, 1]] and [r.tolist() for r in got["b"]] == [[0], [0]]
    assert got["a"][0].dtype == torch.int32 and got["a"][1].dtype == torch.int32
    got = select_blocks({"a": a, "b": b}, 4, "global")  # then 5 (a 0,0)
    assert [r.tolist() for r in got["a"]] == [[0, 1, 0], [2, 1, 0]]
    got = select_blocks({"a": a, "b": b}, 100, "global")  # all 8 at most
    assert len(got["a"][0]) == 6 and len(got["b"][0]) == 2
    assert [len(r[0]) for r in select_blocks({"a": a, "b": b}, -2, "global").values()] == [0, 0]
    # per matrix: 5 over 2 matrices -> quotas 3 and 2, ties by position
    got = select_blocks({"a": a, "b": b}, 5, "per-matrix")
    assert [r.tolist() for r in got["a"]] == [[0, 1, 0], [2, 1, 0]] and [r.tolist() for r in got["b"]] == [[0, 1], [0, 0]]
    # b holds 2 blocks: of a quota of 4 (7 = 4 + 3, b first) it passes 2 on to a
    got = select_blocks({"b": b, "a": a}, 7, "per-matrix")
    assert len(got["b"][0]) == 2 and [r.tolist() for r in got["a"]] == [[0, 1, 0, 1, 0], [2, 1, 0, 0, 1]]
    assert got["a"][0].dtype == torch.int32
    with pytest.raises(KnobError, match=r"^smt: unknown selection rule 'best'; choose global or per-matrix$"):
        select_blocks({"a": a}, 1, "best")


def test_smt_auto_block_size_by_hand():
    from explorer.methods.smt_blocks import auto_block_size, resolve_block_size, valid_block_sizes

    assert auto_block_size([(64, 64)]) == 16  # 64: 1 block, 32: 4 blocks, 16: 16 >= 8
    assert auto_block_size([(64, 128)]) == 32  # 32: 2 x 4 = 8 blocks, exactly enough
    assert auto_block_size([(512, 512), (1024, 512)]) == 64  # 256 leaves 4 blocks in the smaller one
    assert auto_block_size([(1024, 1024)]) == 256
    assert auto_block_size([(48, 48)]) == 16
    assert auto_block_size([(16, 16)]) == 16  # one block only: the largest that divides
    assert auto_block_size([(32, 32), (16, 32)]) == 16
    assert auto_block_size([(10, 10)]) == 0 and auto_block_size([(64, 8)]) == 0
    assert resolve_block_size(0, [(64, 128)]) == 32 and resolve_block_size(8, [(64, 128)]) == 8
    assert valid_block_sizes([(12, 18)]) == [1, 2, 3, 6] and valid_block_sizes([(12, 18)], limit=3) == [1, 2, 3]
    assert valid_block_sizes([(1024, 1024)])[-1] == 512
    assert valid_block_sizes([(1026, 1026)])[-1] == 342  # 513 divides 1026 but lies above the limit, 512
    assert valid_block_sizes([(12, 18)], limit=5) == [1, 2, 3]


def test_smt_budget_by_hand():
    from explorer.methods.smt_blocks import auto_blocks, block_budget

    assert auto_blocks(1_000_000, 16, 1000) == (39, "")  # round(10,000 / 256) = 39 <= 250
    assert auto_blocks(1_000_000, 16, 156) == (39, "")  # the cap int(0.25 x 156) = 39 is not exceeded
    assert auto_blocks(1_000_000, 16, 100) == (25, (
        "auto budget capped: 1 % of all 1,000,000 parameters would be 39 blocks of 16x16, but the targets hold only "
        "100; using 25% of them (25 blocks). Small models: the embeddings hold most parameters."))
    assert auto_blocks(100, 16, 3) == (1, "")  # at least one block
    assert auto_blocks(10_000_000, 64, 12)[0] == 3
    assert auto_blocks(51_200, 16, 4)[0] == 1  # want round(512 / 256) = 2, cap max(1, int(0.25 x 4)) = 1
    assert block_budget(dict(density=0.1, blocks=5), 10 ** 6, 16, 1000) == (100, "")
    assert block_budget(dict(density=0.0, blocks=7), 10 ** 6, 16, 1000) == (7, "")
    assert block_budget(dict(blocks=0), 1_000_000, 16, 100) == auto_blocks(1_000_000, 16, 100)
    assert block_budget({}, 1_000_000, 16, 1000) == (39, "")


def test_smt_widgets_by_hand():
    from explorer.methods import smt
    from explorer.methods.facts import KnobContext

    seen = []

    def shapes(types):
        seen.append(list(types))
        return [(64, 128)] if types else []

    knobs = {k.name: k for k in smt.KNOBS}
    w = knobs["block_size"].options(KnobContext(values=dict(targets=["q", "v"]), shapes=shapes))
    assert w.options == [0, 4, 8, 16, 32, 64] and w.labels == {0: "auto (32)"} and w.fallback == 0
    assert w.help == " · only sizes that divide every target" and seen[-1] == ["q", "v"]
    w = knobs["block_size"].options(KnobContext(values=dict(targets=[]), shapes=shapes))
    assert w.options == [0] and w.labels == {0: "auto (0)"}
    ctx = KnobContext(values=dict(targets=["q"], block_size=0), shapes=shapes,
                      n_blocks=lambda types, b: 1000 * len(types) + b)
    w = knobs["blocks"].options(ctx)
    assert (w.lo, w.hi, w.help) == (0, 1032, " · 1,032 blocks of 32×32 in the targets")
    ctx = KnobContext(values=dict(targets=["q"], block_size=16), shapes=shapes, n_blocks=lambda types, b: 1000 + b)
    assert knobs["blocks"].options(ctx).help == " · 1,016 blocks of 16×16 in the targets"
    w = knobs["blocks"].options(KnobContext(values=dict(targets=[]), shapes=shapes, n_blocks=lambda t, b: 5))
    assert (w.lo, w.hi, w.help) == (0, 1, "")


def test_smt_playground_and_memory_facts_by_hand():
    from types import SimpleNamespace

    from explorer.methods import smt
    from explorer.methods.facts import SweepGeometry

    assert smt.warmup_is_full_finetuning({}) and smt.warmup_is_full_finetuning(dict(warmup_mode="full"))
    assert not smt.warmup_is_full_finetuning(dict(warmup_mode="gradient-only"))
    assert smt.playground_knobs(3) == dict(warmup_mode="gradient-only", warmup_steps=3)
    ad = SimpleNamespace(block=16, n_blocks=3, total_blocks=1234)
    assert smt.formula_lines(ad, 10 ** 6, 21) == (
        ["n_blocks × b² = 3 × 16² = 768  (3 of 1,234 blocks of 16×16 in the targets)",
         "+ the new classification head, trained fully = 21"], 768 + 21)
    geo = SweepGeometry(targets=("v", "o"), b=8, total_blocks=10, cells=640)
    assert smt.sweep_point(4, 200, geo) == (dict(targets=["v", "o"], block_size=8, blocks=3, warmup_mode="full"),
                                            "SMT 3 blocks of 8×8")  # round(200 / 64) = 3
    assert smt.sweep_point(4, 10_000, geo)[0]["blocks"] == 10 and smt.sweep_point(4, 1, geo)[0]["blocks"] == 1
    assert smt.settings_text({}) == "auto ≈1 % of all params, block auto, on q,k,v"
    assert smt.settings_text(dict(density=0.0123, blocks=5)) == "density 0.0123, block auto, on q,k,v"
    assert smt.settings_text(dict(blocks=1234, block_size=16, targets=["q"])) == "1,234 blocks, block 16, on q"
    out, saved, labels = _record(partial_rule(smt.smt_saves, block=4, ucols=2))
    assert out is True and saved == {"L0.q.xc": 10 * 2 * 4 * 2} and labels == {"L0.q.xc": "SMT: input column blocks"}


def test_smt_memory_plan_by_hand():
    # q 8x8, k 4x8, v 4x8 in 4x4 blocks: 4 + 2 + 2 per layer, 16 in all; 2 column blocks per matrix, 12 in all
    plan = _plan("smt", targets=["q", "k", "v"], block_size=4, blocks=5)
    assert plan.trainable_parts == dict(blocks=5 * 16, head=HEAD_SPEC)
    assert plan.extra_index_bytes == 4 * 3 * 5 + 4 * 5 and plan.uncast == frozenset({"q", "k", "v"})
    assert _record(plan.save_rules["k"])[1] == {"L0.q.xc": 10 * 1 * 4 * 2}  # ceil(5 / 6 matrices) = 1 column block
    assert plan.notes == [
        "SMT: 5 blocks of 4x4; which matrices they fall in depends on the warm-up, so the input columns saved for "
        "backward assume the blocks spread evenly over the targets (each matrix's blocks in distinct column blocks: "
        "an upper bound).",
        "SMT warm-up (full mode) costs full fine-tuning memory plus an fp32 gradient sum per target for its warm-up "
        "steps; figures here are the steady state after selection."]
    plan = _plan("smt", targets=["q", "k", "v"], block_size=4, blocks=100)  # clamped to the 16 that exist
    assert plan.trainable_parts["blocks"] == 16 * 16 and plan.extra_index_bytes == 4 * 3 * 16 + 4 * 12
    assert _record(plan.save_rules["q"])[1] == {"L0.q.xc": 10 * 2 * 4 * 2}  # ceil(16 / 6) = 3, at most 2
    assert _plan("smt", targets=["q", "k", "v"], block_size=4, density=0.5).trainable_parts["blocks"] == 8 * 16
    # auto: round(0.01 x 1184 / 16) = 1 block
    assert _plan("smt", targets=["q", "k", "v"], block_size=4).trainable_parts["blocks"] == 16
    for bs in (0, 3):  # auto finds none of 256/64/32/16; 3 divides nothing here
        with pytest.raises(KnobError, match=r"^smt: no block size divides every target of hand; set block_size$"):
            _plan("smt", targets=["q", "k", "v"], block_size=bs)
