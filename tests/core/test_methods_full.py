"""Small, fast tests of full fine-tuning (explorer/methods/full.py), written against the mutants that ``make mutation``
(tools/mutation.py) found alive or never reached.  The toy models are in ``tests/support/toy_methods.py``;
every expected value is a hand count or a paper's formula, never taken from the code under test."""

from __future__ import annotations

import json

import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from safetensors import safe_open

from explorer.methods import apply_method
from tests.support.toy_methods import DOWN, HEAD_PARAMS, LAYER_PARAMS, Q, TinyNet, UP, V


def test_full_layouts_one_dense_layout_per_linear_layer():
    ad = apply_method(TinyNet(2), "full")
    got = [(lay.target, lay.type, lay.layer, lay.shape, lay.kind, lay.trainable, lay.changeable)
           for lay in ad.layouts()]
    want = []
    for i in range(2):
        for name, typ, (o, n) in (("self_attn.q_proj", "q", Q), ("self_attn.v_proj", "v", V),
                                  ("mlp.up_proj", "up", UP), ("mlp.down_proj", "down", DOWN)):
            want.append((f"model.layers.{i}.{name}", typ, i, (o, n), "dense", o * n, o * n))
    assert got == want
    assert ad.num_trainable() == 2 * LAYER_PARAMS + HEAD_PARAMS  # every parameter, the head included


def test_full_load_refuses_unexpected_tensors_naming_the_first_five(tmp_path):
    ad = apply_method(TinyNet(1), "full")
    state = dict(ad.state_tensors())
    extra = [f"extra.t{i}" for i in range(7)]
    for k in extra:
        state[k] = torch.zeros(1)
    with pytest.raises(ValueError) as e:
        apply_method(TinyNet(1, seed=1), "full").load_state_tensors(state)
    msg = str(e.value)
    assert msg.startswith("full: unexpected tensors in the saved state: ")
    assert all(k in msg for k in extra[:5]) and extra[5] not in msg and extra[6] not in msg
    # a state with fewer tensors (strict=False) loads what it has
    other = apply_method(TinyNet(1, seed=1), "full")
    w = torch.full(Q, 0.5)
    other.load_state_tensors({"model.layers.0.self_attn.q_proj.weight": w})
    assert torch.equal(other.model.model.layers[0].self_attn.q_proj.weight, w)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_save_creates_nested_folders_twice_with_metadata_and_readable_json(tmp_path, method):
    from pathlib import PurePosixPath

    knobs = {} if method == "full" else dict(rank=2, targets=["q", "v"])
    ad = apply_method(TinyNet(1), method, **knobs)
    ad.knobs = dict(ad.knobs, note=PurePosixPath("a/b"))  # a value json cannot encode: written with str()
    folder = tmp_path / "not" / "yet" / "there"
    assert ad.save(folder) == folder
    ad.save(folder)  # saving again into the same folder is fine
    text = (folder / "explorer_adapter.json").read_text()
    assert text.startswith('{\n  "method": "%s",\n  "knobs": {\n    ' % method)  # indented by two spaces
    cfg = json.loads(text)
    assert cfg["method"] == method and cfg["knobs"]["note"] == "a/b" and cfg["n_base"] == LAYER_PARAMS + HEAD_PARAMS
    if method == "full":
        with safe_open(str(folder / "adapter.safetensors"), "pt") as f:
            assert f.metadata() == {"method": "full"}
            assert len(f.keys()) == 8 + 2  # 4 weights + 4 biases, the head's weight and bias
