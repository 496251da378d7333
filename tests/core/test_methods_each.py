"""Small, fast tests written against the mutants of ``explorer/methods/`` that ``make mutation``
(tools/mutation.py) found alive or never reached.

Every model here is built by hand (a few nn.Linear layers named like a LLaMA block, so that ``find_targets``
finds them), and every expected value is a hand count or a paper's formula, never taken from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import peft  # noqa: F401 - imported at collection, not inside the first test using LoRA (mutmut's forks share it)
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from explorer.methods import KnobError, apply_method, load_adapter

# hand-built shapes (d_out, d_in) per layer: every one different, so a swapped d_out / d_in shows
Q, V, UP, DOWN = (4, 6), (2, 6), (10, 6), (6, 10)
N_LABELS = 3


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(Q[1], Q[0])
        self.v_proj = nn.Linear(V[1], V[0])


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up_proj = nn.Linear(UP[1], UP[0])
        self.down_proj = nn.Linear(DOWN[1], DOWN[0])


class _Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = _Attn()
        self.mlp = _Mlp()


class _Body(nn.Module):
    def __init__(self, n_layers):
        super().__init__()
        self.layers = nn.ModuleList([_Layer() for _ in range(n_layers)])


class TinyNet(nn.Module):
    """model.layers.<i>.self_attn.{q,v}_proj and model.layers.<i>.mlp.{up,down}_proj, plus (head=True) a
    classification head ``score`` (6 -> 3) that every method trains fully."""

    def __init__(self, n_layers=2, head=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.model = _Body(n_layers)
        if head:
            self.score = nn.Linear(6, N_LABELS)

    def forward(self, x):
        out = []
        for layer in self.model.layers:
            a = layer.self_attn
            out += [a.q_proj(x), a.v_proj(x), layer.mlp.down_proj(layer.mlp.up_proj(x))]
        if hasattr(self, "score"):
            out.append(self.score(x))
        return torch.cat(out, dim=-1)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# by hand: weights + biases of one layer (q 4x6+4, v 2x6+2, up 10x6+10, down 6x10+6) and of the head (6x3+3)
LAYER_PARAMS = 28 + 14 + 70 + 66
HEAD_PARAMS = 21


def test_hand_counts_of_the_tiny_net():
    assert n_params(TinyNet(2)) == 2 * LAYER_PARAMS + HEAD_PARAMS
    assert n_params(TinyNet(1, head=False)) == LAYER_PARAMS


# ----------------------------------------------------------------------------- full fine-tuning


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


# ----------------------------------------------------------------------------- LoRA / DoRA through peft


def _lora_layer(ad, i=0):
    return ad.peft_model.base_model.model.model.layers[i].self_attn.q_proj


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


# ----------------------------------------------------------------------------- what the playground draws


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


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


# ----------------------------------------------------------------------------- VeRA through peft

VERA_ALL = ["q", "v", "up", "down"]


def _vera(n_layers=2, head=True, **knobs):
    knobs = dict(dict(rank=4, targets=VERA_ALL), **knobs)
    return apply_method(TinyNet(n_layers, head=head), "vera", **knobs)


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


# ----------------------------------------------------------------------------- Tied-LoRA

TL_ALL = ["q", "v", "up", "down"]
SW_ALL = ("train_A", "train_B", "train_u", "train_v")


def _tied(net=None, **knobs):
    knobs = dict(dict(rank=2, alpha=4.0, targets=TL_ALL, preset="TL6"), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "tied-lora", **knobs)


def _layouts(ad):
    return [(lay.target.split("layers.")[1], lay.trainable) for lay in ad.layouts()]


def test_tied_lora_tl6_counts_layouts_and_notes_by_hand():
    ad = _tied()
    # groups: q+v (fused d_out 4 + 2 = 6, d_in 6), up (10 x 6), down (6 x 10); r = 2, L = 2; A, B once (tied)
    # A r d_in + B d_out r + L r (u) + L d_out (v): 12 + 12 + 4 + 12, 12 + 20 + 4 + 20, 20 + 12 + 4 + 12
    assert ad.num_trainable() == 40 + 56 + 48 + HEAD_PARAMS
    # tied A, B attributed to layer 0; u to the first slice of each group; v to every target's rows
    assert _layouts(ad) == [("0.self_attn.q_proj", 12 + 8 + 2 + 4), ("0.self_attn.v_proj", 4 + 2),
                            ("0.mlp.up_proj", 12 + 20 + 2 + 10), ("0.mlp.down_proj", 20 + 12 + 2 + 6),
                            ("1.self_attn.q_proj", 2 + 4), ("1.self_attn.v_proj", 2),
                            ("1.mlp.up_proj", 2 + 10), ("1.mlp.down_proj", 2 + 6)]
    lay = ad.layouts()[5]  # layer 1, v
    assert (lay.type, lay.layer, lay.shape, lay.kind, lay.changeable) == ("v", 1, V, "tied", 12)
    assert lay.detail == dict(group="q_k_v", rows=[4, 6], tied=True, rank=2, shared_by_layers=2, train_A=True,
                              train_B=True, train_u=True, train_v=True)
    assert ad.notes == ["TL6: A, B tied across layers; A trained, B trained, u trained, v trained.",
                        "Targets that read the same input (q, k, v) share one A and a fused B, as in the paper."]
    assert ad.knobs["tied"] is True and all(ad.knobs[k] is True for k in SW_ALL)


def test_tied_lora_untied_and_frozen_b_counts_layouts_and_notes():
    ad = _tied(preset="vBuA")  # untied, A and B trained, u = v = 1 frozen
    assert ad.num_trainable() == 2 * (12 + 12) + 2 * (12 + 20) + 2 * (20 + 12) + HEAD_PARAMS
    assert [n for _, n in _layouts(ad)] == [12 + 8, 4, 12 + 20, 20 + 12] * 2
    assert ad.layouts()[4].detail["shared_by_layers"] == 1 and ad.layouts()[4].detail["tied"] is False
    assert ad.notes[0] == "vBuA: A, B per layer (untied); A trained, B trained, u frozen, v frozen."
    ad = _tied(preset="custom", tied=False, train_A=True, train_B=False, train_u=False, train_v=False,
               targets=["up"])
    assert ad.num_trainable() == 2 * 12 + HEAD_PARAMS
    assert ad.knobs["tied"] is False and ad.knobs["train_B"] is False
    assert ad.notes == ["custom combination: A, B per layer (untied); A trained, B frozen, u frozen, v frozen.",
                        "B is frozen, so it starts random (it cannot be zero); the first trained factor among v, u, "
                        "A starts at zero so the update is zero at step 0."]


def test_tied_lora_fusion_note_only_when_targets_share_an_input():
    # one target type per group: nothing is fused, even with two layers (each layer's up reads its own input)
    assert not any("share one A" in n for n in _tied(targets=["up", "down"]).notes)
    assert any("share one A" in n for n in _tied(TinyNet(1), targets=["q", "v"]).notes)


def test_tied_lora_init_rules_and_buffers():
    grp = _tied(targets=["q", "v"]).groups["q_k_v"]  # TL6: A random in ±1/sqrt(d_in), B = 0, u = v = 1
    assert grp.A.shape == (1, 2, 6) and grp.B.shape == (1, 6, 2) and grp.u.shape == (2, 2) and grp.v.shape == (2, 6)
    bound = 1 / 6 ** 0.5
    assert bound / 2 < float(grp.A.detach().abs().max()) <= bound
    assert torch.count_nonzero(grp.B) == 0 and torch.equal(grp.u, torch.ones(2, 2)) and torch.equal(grp.v,
                                                                                                   torch.ones(2, 6))
    assert {n for n, _ in grp.named_parameters()} == {"A", "B", "u", "v"}
    # VeRA-like: A, B frozen buffers, B random N(0, 1/r), v (the first trained factor) starts at zero
    grp = _tied(targets=["q", "v"], preset="VeRA-like").groups["q_k_v"]
    assert {n for n, _ in grp.named_parameters()} == {"u", "v"} and {n for n, _ in grp.named_buffers()} == {"A", "B"}
    assert torch.count_nonzero(grp.B) == 12 and torch.count_nonzero(grp.v) == 0 and torch.equal(grp.u, torch.ones(2, 2))
    assert float(grp.A.abs().max()) > 0
    # only u trains (with B frozen): u starts at zero; only A: A does
    grp = _tied(targets=["q"], preset="custom", train_A=False, train_B=False, train_u=True, train_v=False).groups["q_k_v"]
    assert torch.count_nonzero(grp.u) == 0 and torch.equal(grp.v, torch.ones(2, 4)) and float(grp.A.abs().max()) > 0
    grp = _tied(targets=["q"], preset="custom", train_A=True, train_B=False, train_u=False, train_v=False).groups["q_k_v"]
    assert torch.count_nonzero(grp.A) == 0 and torch.count_nonzero(grp.B) == 8
    # the seed draws them
    a1 = _tied(targets=["q"], seed=1).groups["q_k_v"].A
    assert torch.equal(a1, _tied(targets=["q"], seed=1).groups["q_k_v"].A)
    assert not torch.equal(a1, _tied(targets=["q"], seed=2).groups["q_k_v"].A)


@pytest.mark.parametrize("preset", ["TL6", "vBuA"])
def test_tied_lora_forward_and_merge_by_hand(preset):
    # the paper: z = W x + (alpha / r) diag(v_l) B_l diag(u_l) A_l x, B sliced to the target's rows
    ad = _tied(preset=preset, targets=["q", "v"], alpha=6.0)
    grp = ad.groups["q_k_v"]
    torch.manual_seed(3)
    with torch.no_grad():
        grp.B.copy_(torch.randn(grp.B.shape))
        grp.u.copy_(torch.tensor([[1.5, -0.5], [0.25, 2.0]]))
        grp.v.copy_(torch.linspace(-1, 1, 12).reshape(2, 6))
    x = torch.randn(3, 6)
    for layer in (0, 1):
        i = 0 if preset == "TL6" else layer
        for name, rows in (("q_proj", slice(0, 4)), ("v_proj", slice(4, 6))):
            mod = getattr(ad.model.model.layers[layer].self_attn, name)
            A, B = grp.A[i].detach(), grp.B[i, rows].detach()
            u, v = grp.u[layer].detach(), grp.v[layer, rows].detach()
            dW = 3.0 * torch.diag(v) @ B @ torch.diag(u) @ A
            with torch.no_grad():
                torch.testing.assert_close(mod(x), x @ (mod.base.weight + dW).t() + mod.base.bias)
                torch.testing.assert_close(mod.delta_weight(), dW)
                lin = mod.to_linear()
                torch.testing.assert_close(lin.weight, mod.base.weight + dW)
                assert torch.equal(lin.bias, mod.base.bias) and not lin.weight.requires_grad
            assert mod.weight is mod.base.weight and mod.bias is mod.base.bias


def test_tied_lora_refuses_untieable_shapes():
    net = TinyNet(2)
    net.model.layers[1].self_attn.q_proj = nn.Linear(6, 8)
    with pytest.raises(KnobError, match=r"^tied-lora: q has different shapes across layers; it cannot be tied$"):
        _tied(net, targets=["q"])
    net = TinyNet(1)
    net.model.layers[0].self_attn.v_proj = nn.Linear(5, 2)
    with pytest.raises(KnobError, match=r"^tied-lora: targets q, v read inputs of different sizes$"):
        _tied(net, targets=["q", "v"])
    with pytest.raises(KnobError, match=r"^tied-lora: no linear layers of type\(s\) gate in this model"):
        _tied(targets=["gate"])
    with pytest.raises(KnobError, match=r"^tied-lora: at least one of A, B, u, v must be trained$"):
        _tied(preset="custom", train_A=False, train_B=False, train_u=False, train_v=False)


def test_tied_lora_presets_lock_the_switches():
    from explorer.methods import tied_lora as tl

    knobs = {k.name: k for k in tl.KNOBS}
    assert knobs["tied"].locked({"preset": "vBuA"}) is False and knobs["tied"].locked({"preset": "TL5"}) is True
    assert knobs["train_u"].locked({"preset": "TL5"}) is False and knobs["train_u"].locked({"preset": "TL6"}) is True
    assert knobs["train_A"].locked({"preset": "VeRA-like"}) is False
    assert knobs["train_v"].locked({"preset": "custom"}) is None and knobs["train_v"].locked({}) is None
    assert tl.resolve_switches(dict(preset="custom", tied=0, train_A=1, train_B="", train_u=True, train_v=False)) == \
        dict(tied=False, train_A=True, train_B=False, train_u=True, train_v=False)
    assert tl.resolve_switches(dict(tied=1, train_A=0, train_B=0, train_u=0, train_v=1))["train_v"] is True
    # a named preset wins over the switches
    ad = _tied(preset="TL5", targets=["q"], train_u=True, train_v=True)
    assert ad.knobs["train_u"] is False and ad.num_trainable() == 2 * 6 + 4 * 2 + HEAD_PARAMS


def test_tied_lora_playground_facts_by_hand():
    from explorer.methods import tied_lora as tl

    ad = _tied()
    lines, n = tl.formula_lines(ad, 0, HEAD_PARAMS)
    assert lines == ["q+v (fused, d_out = 6): A 1×2×6 = 12 + B 1×6×2 = 12 + u 2×2 = 4 + v 2×6 = 12",
                     "up (fused, d_out = 10): A 1×2×6 = 12 + B 1×10×2 = 20 + u 2×2 = 4 + v 2×10 = 20",
                     "down (fused, d_out = 6): A 1×2×10 = 20 + B 1×6×2 = 12 + u 2×2 = 4 + v 2×6 = 12",
                     "+ the new classification head, trained fully = 21"]
    assert n == 144 + 21 == ad.num_trainable()
    lines, n = tl.formula_lines(_tied(preset="vBuA", targets=["q", "v"]), 0, 0)
    assert lines == ["q+v (fused, d_out = 6): A 2×2×6 = 24 + B 2×6×2 = 24"] and n == 48
    assert tl.structure(ad) == dict(
        n_layers=2, switches=dict(tied=True, train_A=True, train_B=True, train_u=True, train_v=True), rank=2,
        groups=[dict(key="q_k_v", A=[1, 2, 6], B=[1, 6, 2], u=[2, 2], v=[2, 6]),
                dict(key="gate_up", A=[1, 2, 6], B=[1, 10, 2], u=[2, 2], v=[2, 10]),
                dict(key="down", A=[1, 2, 10], B=[1, 6, 2], u=[2, 2], v=[2, 6])],
        layers=[0, 1])
    (pic,) = tl.overview_pictures(ad)
    assert (pic.kind, pic.title, pic.data) == ("tied_diagram", "Sharing across layers", dict(structure=tl.structure(ad)))
    assert pic.text == ("One **A** and one **B** are shared by every layer; each layer keeps its own scaling vectors "
                        "**u** (length r) and **v** (one per output row). Orange boxes train, grey boxes are frozen "
                        "buffers. Tied tensors are counted once and their gradients sum over the layers.")
    assert tl.overview_pictures(_tied(preset="vBuA"))[0].text.startswith("One **A** and one **B** per layer (untied); ")
    assert tl.matrix_pictures(ad, ad.layouts()[0], None) == []
    assert tl.settings_text(dict(preset="TL5", rank=4)) == "TL5, r=4 on q,k,v"
    assert tl.settings_text(dict(preset="vBuA", rank=8, targets=["up"])) == "vBuA, r=8 on up"


def test_tied_lora_illustrative_delta_draws_only_the_zero_factors():
    import math

    from explorer.methods import tied_lora as tl

    ad = _tied(targets=["q", "v"], alpha=6.0)  # TL6: B = 0 is drawn, A, u, v are real
    grp = ad.groups["q_k_v"]
    d, (vB, uA), note = tl.illustrative_delta(ad, "model.layers.1.self_attn.v_proj", _gen(4))
    B = torch.randn(2, 2, generator=_gen(4)) / math.sqrt(2)  # the v rows (2) x r, N(0, 1/r)
    torch.testing.assert_close(vB, B)  # v = 1
    torch.testing.assert_close(uA, grp.A[0].detach())  # u = 1
    torch.testing.assert_close(d, 3.0 * B @ grp.A[0].detach())
    assert note == ("ΔW_l = diag(v_l) B diag(u_l) A with the shared A and B; factors that start at zero are drawn at "
                    "random here. Every layer's update lies in the same rank-r column space of B.")
    ad = _tied(targets=["q"], preset="VeRA-like")  # v = 0 is drawn, B is real
    grp = ad.groups["q_k_v"]
    d, (vB, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(5))
    v = torch.randn(4, generator=_gen(5))
    torch.testing.assert_close(vB, v[:, None] * grp.B[0].detach())
    torch.testing.assert_close(d, 2.0 * (v[:, None] * grp.B[0]) @ grp.A[0])  # alpha / r = 4 / 2
    ad = _tied(targets=["q"], preset="custom", train_A=False, train_B=False, train_u=True, train_v=False)
    grp = ad.groups["q_k_v"]
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(6))
    torch.testing.assert_close(uA, torch.randn(2, generator=_gen(6))[:, None] * grp.A[0])
    ad = _tied(targets=["q"], preset="custom", train_A=True, train_B=False, train_u=False, train_v=False)
    _, (_, uA), _ = tl.illustrative_delta(ad, "model.layers.0.self_attn.q_proj", _gen(7))
    torch.testing.assert_close(uA, torch.randn(2, 6, generator=_gen(7)) / math.sqrt(6))


def test_tied_lora_state_round_trip_by_name():
    ad = _tied(targets=["q", "up"])
    st = ad.state_tensors()
    assert sorted(st) == sorted([f"{g}.{t}" for g in ("q_k_v", "gate_up") for t in "ABuv"]
                                + ["head.score.weight", "head.score.bias"])
    new = {k: torch.full_like(v, 0.5) for k, v in st.items()}
    other = _tied(targets=["q", "up"], seed=9)
    other.load_state_tensors(new)
    for k, v in other.state_tensors().items():
        assert torch.equal(v, torch.full_like(v, 0.5)), k


# ----------------------------------------------------------------------------- LoRA-SP


def _sp(net=None, **knobs):
    knobs = dict(dict(rank=2, alpha=6.0, targets=["q", "up"], freeze=0.5), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "lora-sp", **knobs)


def _flat_mask(idx, n):
    m = torch.zeros(n, dtype=torch.bool)
    m[idx.long()] = True
    return m


def test_lora_sp_counts_and_layouts_by_hand():
    ad = _sp()
    # round((1 - f) r d_in) + round((1 - f) d_out r): q 6 + 4, up 6 + 10; two layers; the head
    assert ad.num_trainable() == 2 * (10 + 16) + HEAD_PARAMS
    ad3 = _sp(freeze=0.3)  # q: round(8.4) + round(5.6) = 8 + 6; up: 8 + round(14.0) = 22
    assert ad3.num_trainable() == 2 * (14 + 22) + HEAD_PARAMS
    for lay in ad.layouts():
        m = ad.modules[lay.target]
        o, n = lay.shape
        assert lay.kind == "lowrank-masked" and lay.trainable == (10 if o == 4 else 16)
        d = lay.detail
        assert (d["rank"], d["a_trainable"], d["a_total"], d["b_total"]) == (2, 6, 2 * n, o * 2)
        assert d["b_trainable"] == (4 if o == 4 else 10)
        ma, mb = d["masks"]()
        assert np.array_equal(ma.reshape(-1), _flat_mask(m.a_idx, 2 * n).numpy())
        assert np.array_equal(mb.reshape(-1), _flat_mask(m.b_idx, o * 2).numpy())
        rows = mb.any(axis=1)  # W's row i can change iff row i of B has a trainable entry
        assert lay.changeable == int(rows.sum()) * n
        assert np.array_equal(lay.mask(), np.repeat(rows[:, None], n, axis=1))
    assert [lay.layer for lay in ad.layouts()] == [0, 0, 1, 1]
    assert [lay.type for lay in ad.layouts()] == ["q", "up", "q", "up"]


def test_lora_sp_layout_counts_a_frozen_nonzero_b_row_as_changeable():
    ad = _sp(TinyNet(1), targets=["up"], freeze=0.9)  # B: round(0.1 * 20) = 2 trainable entries of 20
    m = ad.modules["model.layers.0.mlp.up_proj"]
    rows = set((m.b_idx.long() // 2).tolist())
    frozen_row = next(i for i in range(10) if i not in rows)
    with torch.no_grad():
        m.b0[frozen_row, 0] = 1.0  # a loaded adapter may hold frozen non-zero entries
    assert ad.layouts()[0].changeable == (len(rows) + 1) * 6




def test_lora_sp_init_forward_and_merge_by_hand():
    ad = _sp(TinyNet(1), targets=["up"], freeze=0.5)
    m = ad.modules["model.layers.0.mlp.up_proj"]
    bound = 1 / 6 ** 0.5
    assert 0 < float(m.a0.abs().max()) <= bound and torch.count_nonzero(m.b0) == 0
    assert torch.equal(m.a_vals.detach(), m.a0.reshape(-1)[m.a_idx.long()])  # A starts whole, B at zero
    assert torch.count_nonzero(m.b_vals) == 0
    assert m.a_idx.dtype == torch.int32 and torch.equal(m.a_idx, m.a_idx.sort().values)
    assert {n for n, _ in m.named_parameters(recurse=False)} == {"a_vals", "b_vals"}
    with torch.no_grad():
        m.a_vals.copy_(torch.arange(6.0))
        m.b_vals.copy_(torch.arange(1.0, 11.0))
    A = m.a0.clone().reshape(-1)
    A[m.a_idx.long()] = torch.arange(6.0)
    A = A.reshape(2, 6)
    B = torch.zeros(20)
    B[m.b_idx.long()] = torch.arange(1.0, 11.0)
    B = B.reshape(10, 2)
    dW = 3.0 * B @ A  # alpha / r = 6 / 2
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x @ (m.base.weight + dW).t() + m.base.bias)
        torch.testing.assert_close(m.delta_weight(), dW)
        lin = m.to_linear()
        torch.testing.assert_close(lin.weight, m.base.weight + dW)
    assert m.weight is m.base.weight and m.bias is m.base.bias


def test_lora_sp_masks_follow_seed_and_target():
    a = _sp(TinyNet(1), targets=["q", "v"], seed=3).modules
    b = _sp(TinyNet(1), targets=["q", "v"], seed=3).modules
    c = _sp(TinyNet(1), targets=["q", "v"], seed=4).modules
    q, v = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
    assert torch.equal(a[q].a_idx, b[q].a_idx) and torch.equal(a[q].a0, b[q].a0)
    assert not torch.equal(a[q].a0, c[q].a0)
    assert not torch.equal(a[q].a0, a[v].a0)  # q and v: their own generators (same shape of A)


def test_lora_sp_meta_model_counts_and_masks_like_the_real_one():
    real = _sp(TinyNet(1), seed=5)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sp(net, seed=5)
    assert meta.num_trainable() == real.num_trainable() == 26 + HEAD_PARAMS
    for lr, lm in zip(real.layouts(), meta.layouts()):
        assert (lr.trainable, lr.changeable, lr.detail["a_trainable"], lr.detail["b_trainable"]) == \
               (lm.trainable, lm.changeable, lm.detail["a_trainable"], lm.detail["b_trainable"])
        for x, y in zip(lr.detail["masks"](), lm.detail["masks"]()):
            assert np.array_equal(x, y)
    m = meta.modules["model.layers.0.mlp.up_proj"]
    assert m.a_idx.shape == (6,) and m.b_idx.shape == (10,) and m.a_idx.dtype == torch.int32
    assert m.a0.shape == (2, 6) and m.b0.shape == (10, 2) and m.a_vals.shape == (6,) and m.b_vals.shape == (10,)


def test_lora_sp_per_step_redraw_keeps_the_update_and_resets_moments():
    ad = _sp(TinyNet(1), targets=["up"], mask_mode="per-step", seed=1)
    m = ad.modules["model.layers.0.mlp.up_proj"]
    with torch.no_grad():
        m.b_vals.copy_(torch.linspace(0.1, 1.0, 10))
    params = [p for _, p in ad.trainable_parameters()]
    opt = torch.optim.Adam(params, lr=0.0)
    x = torch.randn(4, 6)
    ad.model(x).sum().backward()
    opt.step()
    before, idx_a, idx_b = m.delta_weight().clone(), m.a_idx.clone(), m.b_idx.clone()
    ad.on_step_end(opt)
    assert not torch.equal(m.a_idx, idx_a) and not torch.equal(m.b_idx, idx_b)
    assert m.a_idx.numel() == 6 and m.b_idx.numel() == 10 and torch.equal(m.b_idx, m.b_idx.sort().values)
    torch.testing.assert_close(m.delta_weight(), before)  # values written back, then read at the new mask
    for p in (m.a_vals, m.b_vals):
        assert all(torch.count_nonzero(opt.state[p][k]) == 0 for k in ("exp_avg", "exp_avg_sq"))
    assert ad.notes[0] == ("Dropout-style variant (labelled): the mask is redrawn after every optimizer step; "
                           "Adam moments of the trainable entries restart with each new mask.")
    fixed = _sp(TinyNet(1), targets=["up"], seed=1)
    fm = fixed.modules["model.layers.0.mlp.up_proj"]
    opt = torch.optim.Adam([p for _, p in fixed.trainable_parameters()], lr=0.1)
    fixed.model(x).sum().backward()
    opt.step()
    idx = fm.b_idx.clone()
    fixed.on_step_end(opt)
    assert torch.equal(fm.b_idx, idx) and torch.count_nonzero(opt.state[fm.b_vals]["exp_avg"]) > 0
    assert fixed.notes == ["No public code exists: one fixed seeded mask per matrix is this project's default.",
                           "Frozen entries are buffers, not parameters: weight decay and Adam cannot move them. "
                           "Half of B starts at zero and, frozen, stays zero (as in the paper)."]


def test_lora_sp_state_round_trip_by_name():
    ad = _sp(TinyNet(1), targets=["q"])
    st = ad.state_tensors()
    name = "model.layers.0.self_attn.q_proj"
    assert sorted(st) == sorted([f"{name}.{k}" for k in ("a0", "b0", "a_idx", "b_idx", "a_vals", "b_vals")]
                                + ["head.score.weight", "head.score.bias"])
    other = _sp(TinyNet(1), targets=["q"], seed=8)
    other.load_state_tensors(st)
    for k, v in other.state_tensors().items():
        assert torch.equal(v, st[k]), k


def test_lora_sp_playground_facts_by_hand():
    import math

    from explorer.methods import lora_sp

    ad = _sp(freeze=0.3)
    lines, n = lora_sp.formula_lines(ad, 0, HEAD_PARAMS)
    assert lines == ["q: round((1 − 0.3) × 2×6) + round((1 − 0.3) × 4×2) = 14  × 2 matrices = 28",
                     "up: round((1 − 0.3) × 2×6) + round((1 − 0.3) × 10×2) = 22  × 2 matrices = 44",
                     "+ the new classification head, trained fully = 21"]
    assert n == 28 + 44 + 21 == ad.num_trainable()
    target = "model.layers.1.mlp.up_proj"
    m = ad.modules[target]
    d, (B, A), note = lora_sp.illustrative_delta(ad, target, _gen(2))
    mb = _flat_mask(m.b_idx, 20).reshape(10, 2)
    want_B = torch.zeros(10, 2)
    want_B[mb] = torch.randn(14, generator=_gen(2)) / math.sqrt(2)
    torch.testing.assert_close(B, want_B)
    torch.testing.assert_close(A, m.a0)
    torch.testing.assert_close(d, 3.0 * want_B @ m.a0)
    assert note == ("Only the trainable entries of B (drawn at random here; B starts at zero) can move: a row of ΔW "
                    "stays zero when its whole row of B is frozen. Rank ≤ r.")
    lay = ad.layouts()[3]
    (pic,) = lora_sp.matrix_pictures(ad, lay, None)
    assert (pic.kind, pic.title) == ("factor_masks", "Trained (orange) and frozen (grey) entries of B and A")
    assert pic.text == ("A random **30%** of the entries of A and B is frozen. Trainable: A 8 of 12, B 14 of 20. "
                        "Frozen entries are buffers, so weight decay and Adam cannot move them; frozen entries of B "
                        "stay zero.")
    assert np.array_equal(pic.data["b"], mb.numpy()) and pic.data["a"].sum() == 8
    assert lora_sp.settings_text(dict(rank=4, freeze=0.25, targets=["q"])) == "r=4, 25% frozen, on q"
    assert lora_sp.settings_text(dict(rank=8)) == "r=8, 50% frozen, on q,v"


# ----------------------------------------------------------------------------- SpaRTA

N_BASE2 = 2 * LAYER_PARAMS + HEAD_PARAMS  # 377, TinyNet(2)


def _sparta(net=None, **knobs):
    knobs = dict(dict(targets=["q", "v"]), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "sparta", **knobs)


def _entries(mod):
    return sorted(zip(mod.rows.tolist(), mod.cols.tolist()))


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


# ----------------------------------------------------------------------------- memory facts: plans and save rules


def _spec(**kw):
    from explorer.memory.specs import ModelSpec

    # q 8x8, k 4x8, v 4x8 (grouped-query: 1 kv head of 4), o 8x8, gate/up 12x8, down 8x12; head 8 x 3 (no bias)
    return ModelSpec(**dict(dict(name="hand", family="llama", task="seq-cls", n_layers=2, hidden=8, heads=2,
                                 kv_heads=1, intermediate=12, vocab=20, num_labels=3), **kw))


def _plan(method, spec=None, **knobs):
    from explorer.methods import get_method, validate_knobs

    info = get_method(method)
    values = validate_knobs(info.knobs, knobs, method)
    plan = info.memory_plan(spec or _spec(), values)
    assert plan.knobs == values  # the plan says which knobs it was made for (the Memory page's rows)
    return plan


def _record(rule, d_in=6, d_out=4, needs_grad_in=True, autocast=False):
    from explorer.memory.plan import LinearCall

    saved = {}
    call = LinearCall(save=lambda k, b, label: saved.__setitem__(k, (b, label)), key_in="x", out_key="L0.q",
                      d_in=d_in, d_out=d_out, needs_grad_in=needs_grad_in, tokens=10, e=2, mask_e=1,
                      autocast=autocast)
    out = rule(call)
    return out, {k: b for k, (b, _) in saved.items()}, {k: label for k, (_, label) in saved.items()}


HEAD_SPEC = 8 * 3


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


def partial_rule(fn, **kw):
    from functools import partial

    return partial(fn, **kw)


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


# ----------------------------------------------------------------------------- SMT's block scores and selection


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


# ----------------------------------------------------------------------------- SMT's rules (block size, budget)


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


# ----------------------------------------------------------------------------- facts: knob helpers, counts, text


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


# ----------------------------------------------------------------------------- base: knobs, layouts, the adapter


def _kn(**kw):
    from explorer.methods.base import Knob

    return Knob(**dict(dict(name="n", kind="int", default=3), **kw))


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


# ----------------------------------------------------------------------------- SMT's adapter: warm-up, selection

Q_NAME, V_NAME = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"


def _smt(net=None, n_base=None, **knobs):
    knobs = dict(dict(targets=["q", "v"], block_size=2, blocks=3, warmup_mode="gradient-only", warmup_steps=2),
                 **knobs)
    return apply_method(net if net is not None else TinyNet(1), "smt", n_base=n_base, **knobs)


def _planted():
    # q (4 x 6) in 2 x 2 blocks: (1, 2) = 5, (0, 0) = 3 (a cancelling block (1, 0) scores 0 under |mean|);
    # v (2 x 6): (0, 1) = 4
    gq, gv = torch.zeros(4, 6), torch.zeros(2, 6)
    gq[2:4, 4:6], gq[0:2, 0:2] = 5.0, 3.0
    gq[2:4, 0:2] = torch.tensor([[9.0, -9.0], [9.0, -9.0]])
    gv[0:2, 2:4] = 4.0
    return gq, gv


def _planted_loss(gq, gv):
    def loss(model, batch):
        body = model.model.layers[0].self_attn
        return (body.q_proj.weight * gq).sum() + (body.v_proj.weight * gv).sum() + 0 * batch["x"].sum()
    return loss


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


# ----------------------------------------------------------------------------- second pass (mutants a stopped run left)
def test_tied_lora_memory_plan_groups_apart_and_calls_its_save_rule():
    # q (8x8) and down (8x12) read different inputs: two groups. vBuA: per layer A r x d_in, B d_out x r trained;
    # u (r), v (d_out) per layer frozen. r = 2, L = 2.
    plan = _plan("tied-lora", rank=2, targets=["q", "down"], preset="vBuA")
    assert plan.trainable_parts["adapters"] == 2 * (2 * 8 + 8 * 2) + 2 * (2 * 12 + 8 * 2)
    assert plan.extra_float == 2 * (2 + 8) + 2 * (2 + 8)
    # TL6 trains all four: its rule saves x (A), A x (u), u A x (B) and the d_out-wide update (v); r = 2
    plan = _plan("tied-lora", rank=2, targets=["q", "v"], preset="TL6")
    out, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)
    assert out is True and saved == {"x": 10 * 6 * 2, "L0.q.h": 10 * 2 * 2, "L0.q.hu": 10 * 2 * 2,
                                     "L0.q.upd": 10 * 2 * 4}
    plan = _plan("tied-lora", rank=2, targets=["q"], preset="VeRA-like")  # only u, v train
    out, saved, _ = _record(plan.save_rules["q"], needs_grad_in=False)
    assert out is True and saved == {"L0.q.h": 10 * 2 * 2, "L0.q.upd": 10 * 2 * 4}


def test_tied_lora_frozen_b_is_seeded_normal_with_std_one_over_sqrt_r():
    from explorer.methods.tied_lora import TiedGroup

    sw = dict(tied=True, train_A=False, train_B=False, train_u=True, train_v=True)  # B frozen: drawn, not zero

    def b_of(seed, global_seed):
        torch.manual_seed(global_seed)  # the draw must come from the seeded generator, never torch's global one
        return TiedGroup(4, 400, 2, 16, sw, torch.Generator().manual_seed(seed), "cpu").B

    b = b_of(0, 1)
    assert b.shape == (1, 400, 16) and not b.requires_grad
    # N(0, 1/r): 6,400 draws, standard error of the mean 0.25 / 80 and of the std about 0.25 / 113
    assert abs(float(b.mean())) < 0.02 and abs(float(b.std()) - 1 / 16 ** 0.5) < 0.02
    assert torch.equal(b, b_of(0, 2)) and not torch.equal(b, b_of(1, 1))


def test_lora_sp_masks_are_boolean_matrices_and_a_meta_model_allocates_nothing():
    real = _sp(TinyNet(1), targets=["up"], seed=5)
    with torch.device("meta"):
        net = TinyNet(1)
    meta = _sp(net, targets=["up"], seed=5)
    for ad in (real, meta):
        m = ad.modules["model.layers.0.mlp.up_proj"]
        ma, mb = m.masks()
        assert ma.dtype == np.bool_ and mb.dtype == np.bool_  # masks index A and B (a float array cannot)
        assert ma.shape == (2, 6) and mb.shape == (10, 2)  # A is r x d_in, B d_out x r
        assert int(ma.sum()) == 6 and int(mb.sum()) == 10  # round(0.5 x 12), round(0.5 x 20)
    m = real.modules["model.layers.0.mlp.up_proj"]
    ma, _ = m.masks()
    assert torch.equal(m.a0[torch.from_numpy(ma)], m.a_vals.detach())  # the trainable entries of A, in order
    # a config-only model: every buffer and parameter of the adapter stays on the meta device (no memory)
    mm = meta.modules["model.layers.0.mlp.up_proj"]
    assert all(t.is_meta for t in (mm.a0, mm.b0, mm.a_idx, mm.b_idx, mm.a_vals, mm.b_vals))
    assert mm.a_idx.dtype == mm.b_idx.dtype == torch.int32  # the int32 indices the saved file holds
    assert m.a_idx.dtype == m.b_idx.dtype == torch.int32


@pytest.mark.parametrize("method", ["lora-sp", "sparta", "tied-lora", "vera", "smt"])
def test_no_matching_target_names_the_method(method):
    with pytest.raises(KnobError, match=rf"^{method}: no linear layers of type\(s\) gate in this model; "
                                        r"it has q, v, up, down$"):
        apply_method(TinyNet(1), method, targets=["gate"])


def test_lora_sp_per_step_redraws_are_seeded():
    def new_masks(seed, global_seed):
        ad = _sp(TinyNet(1), targets=["up"], mask_mode="per-step", seed=seed)
        torch.manual_seed(global_seed)  # the redraw must come from the adapter's seeded generator
        opt = torch.optim.Adam([p for _, p in ad.trainable_parameters()], lr=0.0)
        ad.on_step_end(opt)
        ad.on_step_end(opt)
        m = ad.modules["model.layers.0.mlp.up_proj"]
        return m.a_idx.clone(), m.b_idx.clone()

    a = new_masks(1, 10)
    b = new_masks(1, 20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = new_masks(2, 10)
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


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


def test_vera_head_trains_at_a_tenth_of_the_rate_and_every_other_method_at_one():
    ad = _vera(rank=2, targets=["q", "v"])
    scales = {n: ad.lr_scale(n, p) for n, p in ad.trainable_parameters()}
    head = {n for n in scales if ".modules_to_save." in n}
    assert head and len(head) == 2  # the head's weight and bias (peft's trained copy)
    assert all(scales[n] == 0.1 for n in head)  # a tenth of the run's rate (DEVIATIONS)
    assert all(v == 1.0 for n, v in scales.items() if n not in head) and len(scales) == len(head) + 2 * 2 * 2
    lora = apply_method(TinyNet(1), "lora", rank=2, targets=["q"])
    assert {lora.lr_scale(n, p) for n, p in lora.trainable_parameters()} == {1.0}


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


def _one_param_net():
    net = nn.Module()
    net.model = _Body(1)
    layer = net.model.layers[0]
    layer.self_attn.q_proj = nn.Linear(1, 1, bias=False)  # the model's only parameter
    del layer.self_attn.v_proj, layer.mlp
    assert n_params(net) == 1
    return net


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


def _smt_b4(**knobs):
    # q 8 x 8 and v 4 x 8 in 4 x 4 blocks: q a 2 x 2 grid, v 1 x 2; 6 blocks (b = 4: b² = 16, not 2 b = 8)
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(8, 8)
    net.model.layers[0].self_attn.v_proj = nn.Linear(8, 4)
    return _smt(net, block_size=4, **knobs)


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
