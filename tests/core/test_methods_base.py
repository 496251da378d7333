"""Small, fast tests of the methods' base: knobs, layouts, the adapter (explorer/methods/base.py) and what every method shares, written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations

import json

import numpy as np
import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from safetensors import safe_open
from torch import nn

from explorer.methods import KnobError, apply_method
from tests.support.toy_methods import HEAD_PARAMS, LAYER_PARAMS, TinyNet, _kn, _one_param_net, _sparta, n_params


def test_hand_counts_of_the_tiny_net():
    assert n_params(TinyNet(2)) == 2 * LAYER_PARAMS + HEAD_PARAMS
    assert n_params(TinyNet(1, head=False)) == LAYER_PARAMS


def test_validate_knobs_by_hand():
    from explorer.methods.base import validate_knobs

    knobs = [_kn(name="r", kind="int", default=8, min=1, max=64), _kn(name="f", kind="float", default=0.5, min=0.0,
                                                                     max=1.0),
             _kn(name="on", kind="bool", default=False), _kn(name="mode", kind="choice", default="a",
                                                               choices=["a", "b"]),
             _kn(name="t", kind="multi", default=["q"], choices=["q", "v"]), _kn(name="free", kind="multi",
                                                                                default=["x"])]
    v = lambda **kw: validate_knobs(knobs, kw, "m")  # noqa: E731
    assert v() == dict(r=8, f=0.5, on=False, mode="a", t=["q"], free=["x"])
    got = v(r=4.0, f="0.25", on="Yes", mode="b", t="q, v,", free=("a", 2))
    assert got == dict(r=4, f=0.25, on=True, mode="b", t=["q", "v"], free=["a", "2"])
    assert type(got["r"]) is int and type(got["f"]) is float
    assert v(r=None)["r"] == 8  # None means the default
    assert v(on="off")["on"] is False and v(on="1")["on"] is True and v(on="ON")["on"] is True
    assert v(on=0)["on"] is False and v(on=2)["on"] is True
    assert v(r=1)["r"] == 1 and v(r=64)["r"] == 64 and v(f=0.0)["f"] == 0.0 and v(f=1.0)["f"] == 1.0
    bad = [(dict(r=2.5), "m: r must be a int (got '2.5')"), (dict(r="many"), "m: r must be a int (got 'many')"),
           (dict(f=float("nan")), "m: f must be a float (got 'nan')"),
           (dict(f=float("inf")), "m: f must be a float (got 'inf')"),
           (dict(f=float("-inf")), "m: f must be a float (got '-inf')"),
           (dict(on="maybe"), "m: on must be a bool (got 'maybe')"),
           (dict(mode="c"), "m: mode must be one of a, b (got 'c')"),
           (dict(t=["q", "x", "y"]), "m: t has unknown value(s) x, y; choose from q, v"),
           (dict(t=""), "m: t needs at least one value"), (dict(free=[]), "m: free needs at least one value"),
           (dict(r=0), "m: r must be >= 1 (got 0)"), (dict(r=65), "m: r must be <= 64 (got 65)"),
           (dict(f=-0.1), "m: f must be >= 0.0 (got -0.1)"), (dict(f=1.5), "m: f must be <= 1.0 (got 1.5)"),
           (dict(x=1, y=2), "m: unknown knob(s) x, y; known: r, f, on, mode, t, free"),
           (dict(r=10 ** 400), None)]
    for kw, msg in bad:
        with pytest.raises(KnobError) as e:
            v(**kw)
        if msg is not None:
            assert str(e.value) == msg, kw
    assert validate_knobs([_kn(name="s", kind="str", default=None)], {}, "m") == {"s": None}
    long = "z" * 100
    with pytest.raises(KnobError) as e:
        v(mode=long)
    assert str(e.value) == f"m: mode must be one of a, b (got '{'z' * 40}')"
    with pytest.raises(KnobError) as e:
        v(r=long)
    assert str(e.value) == f"m: r must be a int (got '{'z' * 40}')"


def test_knob_widget_kind_label_url_field_and_dict():
    assert _kn(widget="slider").widget_kind == "slider"
    assert _kn(kind="bool", default=True).widget_kind == "toggle"
    assert _kn(kind="choice", default="a", choices=list("abcde")).widget_kind == "radio"
    assert _kn(kind="choice", default="a", choices=list("abcdef")).widget_kind == "select"
    assert _kn(kind="choice", default="a").widget_kind == "radio"
    assert _kn(kind="multi", default=[]).widget_kind == "multiselect"
    assert _kn(kind="float", default=1.0).widget_kind == "number" and _kn().widget_kind == "number"
    assert _kn(name="train_A").shown == "train A" and _kn(name="x", label="Lab").shown == "Lab"
    f = _kn(kind="int", default=3.0, min=1, max=9, help="h").url_field("p_")
    assert (f.name, f.kind, f.default, f.min, f.max, f.help) == ("p_n", "int", 3, 1, 9, "h") and type(f.default) is int
    f = _kn(kind="float", default=1, min=0.5, max=2.0).url_field()
    assert (f.name, f.kind, f.default, f.min, f.max) == ("n", "float", 1.0, 0.5, 2.0) and type(f.default) is float
    f = _kn(kind="bool", default=1).url_field()
    assert (f.kind, f.default) == ("bool", True)
    f = _kn(kind="choice", default="b", choices=["a", "b"]).url_field()
    assert (f.kind, f.default, f.choices) == ("choice", "b", ("a", "b"))
    f = _kn(kind="multi", default=("q",), choices=["q", "v"]).url_field()
    assert (f.kind, f.default, f.choices) == ("multi", ["q"], ("q", "v"))
    d = _kn(options=lambda ctx: None, locked=lambda v: None, help="h").to_dict()
    assert d["name"] == "n" and d["help"] == "h" and "options" not in d and "locked" not in d


def test_layout_mask_and_dict():
    from explorer.methods.base import Layout

    lay = Layout("t", "q", 1, (2, 3), "dense", 6, 6, detail=dict(a=1, b=[1, 2], c=np.zeros(2), s="x", f=0.5, ok=True))
    assert lay.mask().shape == (2, 3) and lay.mask().dtype == bool and lay.mask().all()
    lay2 = Layout("t", "q", 1, (2, 3), "entries", 1, 1, _mask=lambda: np.eye(2, 3, dtype=bool))
    assert lay2.mask().sum() == 2
    assert lay.to_dict() == dict(target="t", type="q", layer=1, shape=[2, 3], kind="dense", trainable=6,
                                 changeable=6, detail=dict(a=1, b=[1, 2], s="x", f=0.5, ok=True))
    assert type(Layout("t", "q", 0, (1, 1), "d", np.int64(5), np.int64(4)).to_dict()["trainable"]) is int


def test_adapter_base_behaviour_on_the_hand_built_net(tmp_path):
    from explorer.methods.base import (Adapter, head_state, load_head_state, resolve_targets, sparse_head_setup,
                                       unique_params)

    net = TinyNet(1)
    for p in net.parameters():
        p.requires_grad_(False)
    ad = Adapter(net, dict(k=1), 1000.7)
    assert ad.n_base == 1000 and ad.num_total() == 1000 and ad.notes == [] and ad.targets == []
    assert ad.head_parameters() == HEAD_PARAMS and ad.trainable_parameters() == [] and ad.num_trainable() == 0
    assert ad.meta_note() == "" and ad.warmup_signature() == () and ad.shortcut_note(3, "t") == ""
    assert not ad.needs_warmup and not ad.warmup_moves_weights and not ad.saves_whole_model and ad.delta_granule == 1
    assert ad.config() == dict(method="", knobs=dict(k=1), n_base=1000, format_version=1)
    with pytest.raises(NotImplementedError):
        ad.layouts()
    with pytest.raises(NotImplementedError):
        ad.state_tensors()
    with pytest.raises(NotImplementedError):
        ad.load_state_tensors({})
    sparse_head_setup(net)
    assert ad.num_trainable() == HEAD_PARAMS and [n for n, _ in ad.trainable_parameters()] == ["score.weight",
                                                                                                 "score.bias"]
    assert ad.analytic_bytes() == 4 * HEAD_PARAMS  # no state tensors of its own: the trainable ones
    assert ad.takes_weight_decay("w", net.score.weight) and not ad.takes_weight_decay("b", net.score.bias)
    st = head_state(net)
    assert sorted(st) == ["head.score.bias", "head.score.weight"]
    other = TinyNet(1, seed=5)
    load_head_state(other, dict(st, **{"model.layers.0.x": torch.zeros(1)}))  # non-head keys are skipped
    assert torch.equal(other.score.weight, net.score.weight) and torch.equal(other.score.bias, net.score.bias)
    assert not torch.equal(other.model.layers[0].self_attn.q_proj.weight, net.model.layers[0].self_attn.q_proj.weight)
    a = nn.Parameter(torch.zeros(1))
    assert [n for n, _ in unique_params([("x", a), ("y", a), ("z", nn.Parameter(torch.zeros(1)))])] == ["x", "z"]
    # tied parameters count once
    tied = TinyNet(1, head=False)
    tied.model.layers[0].self_attn.v_proj.weight = tied.model.layers[0].self_attn.q_proj.weight
    ad = Adapter(tied, {}, 0)
    assert ad.num_trainable() == n_params(tied)
    s = apply_method(TinyNet(1), "lora", rank=2, targets=["q"]).summary()
    assert (s["method"], s["total_params"], s["trainable_params"]) == ("lora", LAYER_PARAMS + HEAD_PARAMS,
                                                                       2 * (6 + 4) + HEAD_PARAMS)
    assert s["trainable_fraction"] == (20 + HEAD_PARAMS) / (LAYER_PARAMS + HEAD_PARAMS)
    assert s["notes"][0].startswith("Implemented with the peft library") and s["targets"][0]["trainable"] == 20
    assert s["knobs"]["rank"] == 2
    assert Adapter(TinyNet(1), {}, 0).summary  # a summary of a zero-parameter base does not divide by zero
    with pytest.raises(KnobError, match=r"^m: no linear layers of type\(s\) gate, o in this model; it has q, v, up, "
                                        r"down$"):
        resolve_targets(TinyNet(1), ["gate", "o"], "m")
    with pytest.raises(KnobError, match=r"^m: no linear layers of type\(s\) q in this model; it has none$"):
        resolve_targets(nn.Sequential(nn.Linear(2, 2)), ["q"], "m")
    assert [t.name for t in resolve_targets(TinyNet(1), ["v"], "m")] == ["model.layers.0.self_attn.v_proj"]


def test_base_save_and_merge_on_a_sparse_method(tmp_path):
    ad = _sparta(TinyNet(1), density=0.5, seed=1)
    with torch.no_grad():
        for m in ad.modules.values():
            m.delta.copy_(torch.linspace(-1, 1, m.delta.numel()))
    folder = tmp_path / "a" / "b"
    assert ad.save(folder) == folder
    ad.save(folder)  # again into the same folder
    with safe_open(str(folder / "adapter.safetensors"), "pt") as f:
        assert f.metadata() == {"method": "sparta"} and sorted(f.keys()) == sorted(ad.state_tensors())
    text = (folder / "explorer_adapter.json").read_text()
    assert text.startswith('{\n  "method": "sparta",\n  "knobs": {\n    "targets": [\n      "q",')
    x = torch.randn(3, 6)
    with torch.no_grad():
        want = ad.model(x)
    merged = ad.merged_model()  # a copy: the adapter stays usable
    assert ad.modules and isinstance(ad.model.model.layers[0].self_attn.q_proj, type(ad.modules[
        "model.layers.0.self_attn.q_proj"]))
    assert isinstance(merged.model.layers[0].self_attn.q_proj, nn.Linear)
    assert not any(p.requires_grad for p in merged.parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(x), want)
    out = ad.merge_into_model()
    assert out is ad.model and ad.modules == {} and isinstance(out.model.layers[0].self_attn.v_proj, nn.Linear)


@pytest.mark.parametrize("method", ["lora-sp", "sparta", "tied-lora", "vera", "smt"])
def test_no_matching_target_names_the_method(method):
    with pytest.raises(KnobError, match=rf"^{method}: no linear layers of type\(s\) gate in this model; "
                                        r"it has q, v, up, down$"):
        apply_method(TinyNet(1), method, targets=["gate"])


@pytest.mark.parametrize("kind, default, choices", [("int", 2, None), ("float", 0.5, None), ("bool", True, None),
                                                     ("choice", "b", ["a", "b"]), ("multi", ["q"], ["q", "v"]),
                                                     ("str", "free text", None)])
def test_knob_url_field_keeps_the_prefixed_name_and_the_help_of_every_kind(kind, default, choices):
    f = _kn(kind=kind, default=default, choices=choices, help="what it does").url_field("tl_")
    assert (f.name, f.kind, f.default, f.help) == ("tl_n", kind, default, "what it does")  # str: the fallback


def test_save_writes_a_value_json_cannot_encode_as_its_text(tmp_path):
    from pathlib import PurePosixPath

    ad = _sparta(TinyNet(1), density=0.5)
    ad.knobs = dict(ad.knobs, data=PurePosixPath("data/x.csv"))  # not a JSON type: written as its text
    ad.save(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "explorer_adapter.json").read_text())
    assert cfg["knobs"]["data"] == "data/x.csv" and cfg["method"] == "sparta"


def test_summary_fraction_of_a_one_parameter_model_is_one():
    s = apply_method(_one_param_net(), "full").summary()
    assert (s["total_params"], s["trainable_params"], s["trainable_fraction"]) == (1, 1, 1.0)


def test_base_head_parameters_sum_over_every_head_module():
    net = TinyNet(1)
    net.classifier = nn.Linear(6, 2)  # a second task head (head_module_names: classifier and score)
    ad = _sparta(net, density=0.5)
    assert ad.head_parameters() == (6 * 2 + 2) + HEAD_PARAMS


def test_load_head_state_skips_other_keys_and_reaches_nested_head_modules():
    from explorer.methods.base import head_state, load_head_state

    def net_with_nested_head(seed):
        net = TinyNet(1, head=False, seed=seed)
        net.classifier = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))  # as RoBERTa's dense + out_proj
        return net

    src, dst = net_with_nested_head(1), net_with_nested_head(2)
    st = head_state(src)
    assert sorted(st) == ["head.classifier.0.bias", "head.classifier.0.weight", "head.classifier.1.bias",
                          "head.classifier.1.weight"]
    # a non-head tensor listed first is skipped, and loading goes on to the head's tensors
    load_head_state(dst, {"model.layers.0.self_attn.q_proj.delta": torch.zeros(3), **st})
    for k, v in head_state(dst).items():
        assert torch.equal(v, st[k]), k


def test_resolve_targets_names_conv1d_models():
    from explorer.methods.base import resolve_targets

    class Conv1D(nn.Module):  # GPT-2's fused layer, by its class name
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2, 2))

    net = nn.Module()
    net.h = nn.ModuleList([Conv1D()])
    with pytest.raises(KnobError) as e:
        resolve_targets(net, ["q"], "m")
    assert str(e.value) == ("m: this model (GPT-2 style) builds its blocks from Conv1D layers (c_attn fuses q, k and "
                            "v), which the PEFT methods here do not target; only full fine-tuning applies")


def test_validate_knobs_every_bool_word_and_a_none_default_in_the_middle():
    from explorer.methods.base import validate_knobs

    knobs = [_kn(name="on", kind="bool", default=False)]
    words = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False, "on": True,
             "off": False}
    for word, want in words.items():
        for w in (word, word.upper(), word.capitalize()):
            assert validate_knobs(knobs, {"on": w}, "m") == {"on": want}, w
    # a knob whose default is None comes out as None, and the knobs after it are still validated
    knobs = [_kn(name="s", kind="str", default=None), _kn(name="r", kind="int", default=3)]
    assert validate_knobs(knobs, {"r": "5"}, "m") == {"s": None, "r": 5}


def test_validate_knobs_cuts_a_long_list_of_unknown_values_at_80_characters():
    from explorer.methods.base import validate_knobs

    knobs = [_kn(name="t", kind="multi", default=["q"], choices=["q", "v"])]
    bad = [f"x{i:02d}" for i in range(30)]  # "x00, x01, ..., x29": 30 x 3 + 29 x 2 = 148 characters
    with pytest.raises(KnobError) as e:
        validate_knobs(knobs, {"t": bad}, "m")
    shown = "x00, x01, x02, x03, x04, x05, x06, x07, x08, x09, x10, x11, x12, x13, x14, x15, "  # 16 x 5 = 80
    assert len(shown) == 80 and str(e.value) == f"m: t has unknown value(s) {shown}; choose from q, v"
