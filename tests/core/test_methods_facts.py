"""Small, fast tests of the methods' shared facts: knob helpers, counts, text (explorer/methods/facts.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import torch


def test_facts_knob_helpers_by_hand():
    from explorer.methods import facts
    from explorer.targets import ALL_TYPES

    ctx = lambda v: facts.KnobContext(values=v, shapes=lambda types: [])  # noqa: E731
    assert facts.rank_options(ctx({"rank": 3})).options == [1, 2, 3, 4, 8, 16, 32, 64, 128, 256]
    assert facts.rank_options(ctx({})).options == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert facts.rank_options(ctx({"rank": 300})).options[-1] == 300
    k = facts.rank_knob("h")
    assert (k.name, k.kind, k.default, k.help, k.min, k.max, k.label, k.widget, k.options) == \
        ("rank", "int", 8, "h", 1, 512, "rank r", "select_slider", facts.rank_options)
    assert facts.rank_knob().help == "rank r of B A"
    k = facts.alpha_knob("h")
    assert (k.name, k.kind, k.default, k.help, k.min, k.max, k.label, k.widget, k.step) == \
        ("alpha", "float", 16.0, "h", 0.0, 4096.0, "scale α", "number", 1.0)
    assert facts.alpha_knob().help == "scale alpha (update multiplied by alpha / r)"
    default = ["q", "v"]
    k = facts.targets_knob(default, "h")
    assert (k.name, k.kind, k.default, k.help, k.choices, k.label, k.model_types) == \
        ("targets", "multi", ["q", "v"], "h", ALL_TYPES, "target matrices", True)
    assert k.default is not default
    k = facts.seed_knob("h")
    assert (k.name, k.kind, k.default, k.help, k.min, k.max, k.label) == ("seed", "int", 0, "h", 0, 2 ** 31 - 1,
                                                                         "random seed")
    k = facts.fraction_knob("density", 0.25, "h", "lab")
    assert (k.name, k.kind, k.default, k.help, k.min, k.max, k.label, k.widget, k.step, k.format) == \
        ("density", "float", 0.25, "h", 0.0, 1.0, "lab", "slider", 0.001, "%.3f")


def test_facts_counts_and_text_by_hand():
    from explorer.methods import facts
    from explorer.targets import Target

    w = torch.zeros(4, 6)
    assert facts.tensor_bytes([w, w, w.view(24), torch.zeros(3, dtype=torch.float16)]) == 4 * 24 + 2 * 3
    assert facts.tensor_bytes([w[0], w[1]]) == 2 * 4 * 6  # two rows of one storage: different offsets
    assert facts.tensor_bytes([w[:, 0], w[0]]) == 4 * 4 + 4 * 6  # same offset, different sizes
    m1, m2 = torch.empty(5, device="meta"), torch.empty(5, device="meta")
    assert facts.tensor_bytes([m1, m2, m1]) == 2 * 5 * 4  # meta tensors have no storage: each tensor once
    assert facts.with_head(["a"], 10, 0) == (["a"], 10)
    assert facts.with_head(["a"], 10, 1234) == (["a", "+ the new classification head, trained fully = 1,234"], 1244)
    assert facts.fmt_count(1234567.9) == "1,234,567" and facts.fmt_count(12) == "12"
    ts = [Target("a", 0, "q", 4, 6), Target("b", 0, "v", 2, 6), Target("c", 1, "q", 4, 6), Target("d", 1, "q", 8, 6)]
    assert list(facts.shape_groups(ts).items()) == [(("q", 4, 6), 2), (("v", 2, 6), 1), (("q", 8, 6), 1)]
    lines, n = facts.per_shape_lines(ts, lambda do, di: do + di, lambda do, di: f"{do} + {di}")
    assert lines == ["q: 4 + 6 = 10  × 2 matrices = 20", "v: 2 + 6 = 8  × 1 matrices = 8",
                     "q: 8 + 6 = 14  × 1 matrices = 14"] and n == 42
    assert facts.per_shape_lines([Target("a", 0, "up", 1000, 2000)], lambda do, di: do * di, lambda do, di: "x") == \
        (["up: x = 2,000,000  × 1 matrices = 2,000,000"], 2_000_000)
