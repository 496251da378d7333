"""Small, fast tests of LoRA and DoRA through peft (explorer/methods/lora.py, dora.py, peft_adapter.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations


import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from explorer.methods import KnobError, apply_method, load_adapter
from tests.support.toy_methods import HEAD_PARAMS, Q, TinyNet, UP, _lora_layer


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_layouts_and_counts_by_hand(method):
    r = 3
    ad = apply_method(TinyNet(2), method, rank=r, targets=["q", "up"])
    dora = method == "dora"
    want = []
    for i in range(2):
        for name, typ, (o, n) in (("self_attn.q_proj", "q", Q), ("mlp.up_proj", "up", UP)):
            want.append((f"model.layers.{i}.{name}", typ, i, (o, n), "lowrank", r * (n + o) + (o if dora else 0),
                         o * n, {"rank": r, "dora": dora}))
    got = [(lay.target, lay.type, lay.layer, lay.shape, lay.kind, lay.trainable, lay.changeable, lay.detail)
           for lay in ad.layouts()]
    assert got == want
    # the paper's count: r (d_in + d_out) per target (+ d_out for DoRA's magnitude), 2 layers, and the head
    per_layer = r * (6 + 4) + r * (6 + 10) + ((4 + 10) if dora else 0)
    assert ad.num_trainable() == 2 * per_layer + HEAD_PARAMS
    assert ad.head_parameters() == HEAD_PARAMS
    assert ad.notes == ["Implemented with the peft library (LoraConfig%s)." % (", use_dora=True" if dora else ""),
                        "The new classification head trains fully (peft modules_to_save) and is counted."]


def test_lora_without_a_head_counts_none_and_says_nothing_of_it():
    ad = apply_method(TinyNet(1, head=False), "lora", rank=2, targets=["v"])
    assert ad.head_parameters() == 0
    assert ad.notes == ["Implemented with the peft library (LoraConfig)."]
    assert ad.num_trainable() == 2 * (6 + 2)


def test_lora_head_parameters_sum_over_every_head_module():
    net = TinyNet(1)
    net.classifier = nn.Linear(6, 2)  # a second task head (head_module_names: classifier and score)
    ad = apply_method(net, "lora", rank=2, targets=["q"])
    assert ad.head_parameters() == (6 * 2 + 2) + HEAD_PARAMS
    assert ad.num_trainable() == 2 * (6 + 4) + 14 + HEAD_PARAMS


def test_lora_head_parameters_count_only_the_trained_head():
    ad = apply_method(TinyNet(1), "lora", rank=2, targets=["q"])
    head = ad.peft_model.base_model.model.score
    trained = sum(p.numel() for p in head.parameters() if p.requires_grad)
    assert trained == HEAD_PARAMS  # peft's modules_to_save trains a copy of the head...
    assert sum(p.numel() for p in head.parameters()) == 2 * HEAD_PARAMS  # ...and keeps the original frozen
    assert ad.head_parameters() == HEAD_PARAMS


@pytest.mark.parametrize("alpha,rank", [(3.0, 2), (16.0, 4)])
def test_lora_update_is_alpha_over_r_times_b_a(alpha, rank):
    # the LoRA paper: h = W x + (alpha / r) B A x; B starts at zero, so set it by hand
    ad = apply_method(TinyNet(1, head=False), "lora", rank=rank, alpha=alpha, targets=["q"], seed=5)
    layer = _lora_layer(ad)
    A = layer.lora_A["default"].weight
    assert A.shape == (rank, Q[1]) and torch.count_nonzero(layer.lora_B["default"].weight) == 0
    B = torch.arange(1.0, Q[0] * rank + 1).reshape(Q[0], rank) / 10
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(B)
    base = layer.base_layer
    x = torch.randn(5, Q[1])
    with torch.no_grad():
        want = x @ base.weight.t() + base.bias + (alpha / rank) * (x @ A.t() @ B.t())
        torch.testing.assert_close(layer(x), want)


def test_lora_seed_sets_a():
    a1 = _lora_layer(apply_method(TinyNet(1), "lora", rank=2, targets=["q"], seed=1)).lora_A["default"].weight
    a1b = _lora_layer(apply_method(TinyNet(1), "lora", rank=2, targets=["q"], seed=1)).lora_A["default"].weight
    a2 = _lora_layer(apply_method(TinyNet(1), "lora", rank=2, targets=["q"], seed=2)).lora_A["default"].weight
    assert torch.equal(a1, a1b) and not torch.equal(a1, a2)


def test_lora_dropout_is_the_knob():
    ad = apply_method(TinyNet(1), "lora", rank=2, targets=["q"], dropout=0.25)
    drop = _lora_layer(ad).lora_dropout["default"]
    assert isinstance(drop, nn.Dropout) and drop.p == 0.25
    assert isinstance(_lora_layer(apply_method(TinyNet(1), "lora", rank=2, targets=["q"])).lora_dropout["default"],
                      nn.Identity)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_no_matching_target_names_the_method(method):
    with pytest.raises(KnobError, match=rf"^{method}: no linear layers of type\(s\) gate in this model; "
                                        r"it has q, v, up, down$"):
        apply_method(TinyNet(1), method, rank=2, targets=["gate"])


def test_lora_load_refuses_unexpected_tensors_naming_the_first_five(tmp_path):
    ad = apply_method(TinyNet(1), "lora", rank=2, targets=["q"])
    ad.save(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    sd = load_file(str(path))
    extra = [f"base_model.model.extra{i}.lora_A.weight" for i in range(7)]
    for k in extra:
        sd[k] = torch.zeros(1)
    save_file(sd, str(path))
    with pytest.raises(ValueError) as e:
        load_adapter(TinyNet(1), tmp_path)
    msg = str(e.value)
    assert msg.startswith("lora: unexpected tensors in the saved adapter: [")
    assert msg.count("extra") == 5 and "extra5" not in msg and "extra6" not in msg
