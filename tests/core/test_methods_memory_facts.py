"""Small, fast tests of each method's memory facts: plans and save rules (memory_plan and *_saves in explorer/methods/), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest

from explorer.methods import KnobError
from tests.support.toy_methods import HEAD_SPEC, SW_ALL, _plan, _record, _spec, partial_rule


def test_hand_spec_counts():
    assert _spec().n_params() == 20 * 8 + 2 * (64 + 32 + 32 + 64 + 96 + 96 + 96) + (2 * 2 * 8 + 8) + HEAD_SPEC
    assert _spec().head_params() == HEAD_SPEC


def test_full_memory_plan_by_hand():
    from explorer.memory.plan import ORDER, trained_weight

    knobs = {}
    plan = _plan("full")
    assert plan.trainable_parts == {"all": 1184} and plan.trains_base and plan.knobs == knobs
    assert plan.save_rules == {t: trained_weight for t in ORDER}
    from explorer.methods import full

    marker = {"x": 1}
    assert full.memory_plan(_spec(), marker).knobs is marker


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_memory_plan_by_hand(method):
    plan = _plan(method, rank=2, targets=["q", "v"])
    assert plan.knobs == dict(rank=2, alpha=16.0, targets=["q", "v"], dropout=0.0, seed=0)
    mag = 2 * (8 + 4) if method == "dora" else 0  # DoRA: one magnitude per output row
    assert plan.trainable_parts == dict(adapters=2 * (2 * (8 + 8) + 2 * (8 + 4)) + mag, head=HEAD_SPEC)
    assert plan.head_copy == HEAD_SPEC and sorted(plan.save_rules) == ["q", "v"]
    assert plan.notes == ["peft modules_to_save keeps a frozen copy of the original head besides the trained one "
                          "(counted in weights)."]
    out, saved, _ = _record(plan.save_rules["q"])
    want = {"x": 10 * 6 * 2, "L0.q.lora_h": 10 * 2 * 2}
    if method == "dora":
        want.update({"L0.q.dora_base": 10 * 2 * 4, "L0.q.dora_lora": 10 * 2 * 4, "L0.q.dora_vec": 3 * 4 * 2})
    assert out is True and saved == want
    plan = _plan(method, spec=_spec(task="causal-lm"), rank=2, targets=["q"], dropout=0.1)
    assert plan.trainable_parts["head"] == 0 and plan.head_copy == 0 and plan.notes == []
    out, saved, labels = _record(plan.save_rules["q"])  # dropout: its mask and output, not x
    assert saved == dict({"L0.q.lora_drop_mask": 10 * 6 * 1, "L0.q.lora_drop_out": 10 * 2 * 6,
                          "L0.q.lora_h": 10 * 2 * 2}, **({"L0.q.dora_base": 80, "L0.q.dora_lora": 80,
                                                           "L0.q.dora_vec": 24} if method == "dora" else {}))
    assert labels["L0.q.lora_drop_mask"] == labels["L0.q.lora_drop_out"] == "LoRA: adapter dropout"
    assert labels["L0.q.lora_h"] == "LoRA: A x (r wide)"
    if method == "dora":
        assert labels["L0.q.dora_base"] == labels["L0.q.dora_lora"] == labels["L0.q.dora_vec"] == \
            "DoRA: base output and LoRA output"
    _, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)  # no mask when x needs no gradient
    assert "L0.q.lora_drop_mask" not in saved and "L0.q.lora_drop_out" in saved
    from explorer.methods.lora import lora_saves

    assert _record(partial_rule(lora_saves, rank=2, dropout=0.0))[1] == {"x": 120, "L0.q.lora_h": 40}  # plain LoRA


@pytest.mark.parametrize("method", ["lora", "dora", "vera", "lora-sp", "tied-lora", "sparta"])
def test_memory_plans_refuse_in_one_line_naming_the_method(method):
    with pytest.raises(KnobError, match=rf"^{method}: this model \(GPT-2 style\) builds its blocks from Conv1D"):
        _plan(method, spec=_spec(family="bert", conv1d=True), targets=["q"])
    with pytest.raises(KnobError, match=rf"^{method}: none of the targets gate exist in a bert model$"):
        _plan(method, spec=_spec(family="bert", heads=2, kv_heads=2), targets=["gate"])


def test_vera_memory_plan_and_save_rule_by_hand():
    from explorer.methods import vera

    plan = _plan("vera", rank=4, targets=["q", "v"])
    assert plan.trainable_parts == dict(adapters=2 * ((4 + 8) + (4 + 4)), head=HEAD_SPEC)
    assert plan.extra_float == 4 * 8 + 8 * 4 and plan.head_copy == HEAD_SPEC and sorted(plan.save_rules) == ["q", "v"]
    assert plan.notes == ["peft modules_to_save keeps a frozen copy of the original head besides the trained one "
                          "(counted in weights)."]
    plan = _plan("vera", rank=2, targets=["q", "down"])  # A: r x largest d_in (12), B: largest d_out (8) x r
    assert plan.extra_float == 2 * 12 + 8 * 2
    assert _plan("vera", spec=_spec(task="causal-lm"), rank=2, targets=["q"]).notes == []
    out, saved, labels = _record(plan.save_rules["q"])
    assert out is True and saved == {"L0.q.vera_h": 10 * 2 * 2, "L0.q.vera_z": 10 * 2 * 4}  # no x: A, B frozen
    assert labels == {"L0.q.vera_h": "VeRA: A x (r wide), for d", "L0.q.vera_z": "VeRA: B diag(d) A x (d_out wide), for b"}
    _, saved, labels = _record(partial_rule(vera.vera_saves, rank=3, dropout=0.2), autocast=True)
    assert saved == {"L0.q.vera_drop_mask": 60, "L0.q.vera_h": 60, "L0.q.vera_z": 80, "L0.q.vera_a16": 3 * 6 * 2,
                     "L0.q.vera_b16": 4 * 3 * 2}
    assert labels["L0.q.vera_drop_mask"] == "VeRA: adapter dropout"
    assert labels["L0.q.vera_a16"] == labels["L0.q.vera_b16"] == "VeRA: bf16 copies of A and B"
    _, saved, _ = _record(partial_rule(vera.vera_saves, rank=3, dropout=0.2), autocast=True, needs_grad_in=False)
    assert saved == {"L0.q.vera_h": 60, "L0.q.vera_z": 80, "L0.q.vera_b16": 24}


def test_lora_sp_memory_plan_and_save_rule_by_hand():
    plan = _plan("lora-sp", rank=2, targets=["q", "v"], freeze=0.5)
    # q: round(0.5 x 16) + round(0.5 x 16) = 16, v: 8 + round(0.5 x 8) = 12; two layers
    assert plan.trainable_parts == dict(adapters=2 * (16 + 12), head=HEAD_SPEC)
    assert plan.extra_float == 2 * ((16 + 16) + (16 + 8)) and plan.extra_index_bytes == 4 * 2 * (16 + 12)
    out, saved, labels = _record(plan.save_rules["v"])
    assert out is True and saved == {"x": 120, "L0.q.a_eff": 2 * 6 * 4, "L0.q.lora_h": 10 * 2 * 2,
                                     "L0.q.b_eff": 4 * 2 * 4, "L0.q.idx": 8 * (8 + 4)}
    assert labels["L0.q.idx"] == "LoRA-SP: A x, assembled A and B, indices"
    assert {k: v for k, v in labels.items() if k != "x"} == {
        k: "LoRA-SP: A x, assembled A and B, indices" for k in ("L0.q.a_eff", "L0.q.lora_h", "L0.q.b_eff", "L0.q.idx")}
    _, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)
    assert "L0.q.a_eff" not in saved and saved["L0.q.idx"] == 8 * (8 + 8)
    plan = _plan("lora-sp", rank=2, targets=["q"], freeze=0.25)  # round(0.75 x 16) = 12, twice
    assert plan.trainable_parts["adapters"] == 2 * 24


def test_tied_lora_memory_plan_and_save_rule_by_hand():
    from explorer.methods import tied_lora as tl

    # q, k, v fused: d_out 8 + 4 + 4 = 16, d_in 8; r = 2, L = 2
    plan = _plan("tied-lora", rank=2, targets=["q", "k", "v"], preset="TL6")
    assert plan.trainable_parts == dict(adapters=2 * 8 + 16 * 2 + 2 * (2 + 16), head=HEAD_SPEC)
    assert plan.extra_float == 0 and sorted(plan.save_rules) == ["k", "q", "v"]
    plan = _plan("tied-lora", rank=2, targets=["q", "k", "v"], preset="vBuA")  # u, v exist, frozen
    assert plan.trainable_parts["adapters"] == 2 * (2 * 8 + 16 * 2) and plan.extra_float == 2 * (2 + 16)
    plan = _plan("tied-lora", rank=2, targets=["q", "k", "v"], preset="VeRA-like")  # A, B frozen
    assert plan.trainable_parts["adapters"] == 2 * (2 + 16) and plan.extra_float == 2 * 8 + 16 * 2
    sw = lambda **on: {k: on.get(k, False) for k in ("tied",) + SW_ALL}  # noqa: E731
    out, saved, labels = _record(partial_rule(tl.tied_saves, rank=3, sw=sw(train_A=True, train_B=True,
                                                                         train_u=True, train_v=True)))
    assert out is True and saved == {"x": 120, "L0.q.h": 60, "L0.q.hu": 60, "L0.q.upd": 80}
    assert set(labels.values()) == {"linear inputs", "Tied-LoRA: A x, u A x, v-scaled update"}
    out, saved, _ = _record(partial_rule(tl.tied_saves, rank=3, sw=sw(train_v=True)), needs_grad_in=False)
    assert out is True and saved == {"L0.q.upd": 80}
    out, saved, _ = _record(partial_rule(tl.tied_saves, rank=3, sw=sw(train_u=True)), needs_grad_in=False)
    assert out is True and saved == {"L0.q.h": 60}
    out, saved, _ = _record(partial_rule(tl.tied_saves, rank=3, sw=sw(train_B=True)), needs_grad_in=False)
    assert out is True and saved == {"L0.q.hu": 60}
    assert _record(partial_rule(tl.tied_saves, rank=3, sw=sw()), needs_grad_in=False)[:2] == (False, {})
    assert _record(partial_rule(tl.tied_saves, rank=3, sw=sw()), needs_grad_in=True)[:2] == (True, {})


def test_sparta_memory_plan_by_hand():
    from explorer.memory.plan import trained_weight

    plan = _plan("sparta", targets=["q", "v"], density=0.25)  # round(16) + round(8) per layer
    assert plan.trainable_parts == dict(entries=48, head=HEAD_SPEC) and plan.extra_index_bytes == 8 * 48
    assert plan.save_rules == {"q": trained_weight, "v": trained_weight} and plan.uncast == frozenset({"q", "v"})
    assert plan.notes == ["Budget: density 0.25 of the target matrices; the classification head (24) trains on top "
                          "of it."]
    with pytest.raises(KnobError, match=r"^sparta: the budget selects no entries \(sparsity 1.0 or density 0\)$"):
        _plan("sparta", targets=["q", "v"], density=0.001)
    plan = _plan("sparta", targets=["q", "v"], sparsity=0.9)  # round(118.4) = 118 = 24 head + 94 entries
    assert plan.trainable_parts == dict(entries=94, head=HEAD_SPEC)
