"""smollm2-135m (the bundled pretrained causal LM): every method at its defaults, counts by hand.

The shapes are SmolLM2-135M's published config (shared/MODELS.md): 30 layers, hidden 576, 9 query heads and
3 key/value heads of 64 (so k and v are 192 x 576), MLP 1536, vocabulary 49,152 with tied embeddings.
Every expected number below is worked out from those shapes, never read from the code under test.
The model converts once into the cache (about 10 s the first time), then loads in a couple of seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.slow

L, D, D_KV, FF, VOCAB = 30, 576, 192, 1536, 49152
SHAPES = {"q": (D, D), "k": (D_KV, D), "v": (D_KV, D), "o": (D, D), "gate": (FF, D), "up": (FF, D),
          "down": (D, FF)}  # (d_out, d_in)
# embeddings (tied with the LM head, counted once) + per layer 7 matrices and 2 RMSNorm weights + final norm
N_PARAMS = VOCAB * D + L * (sum(o * i for o, i in SHAPES.values()) + 2 * D) + D


def test_the_shapes_by_hand_give_the_published_size():
    assert N_PARAMS == 134_515_008  # "134.5 M parameters"
    # LoRA r = 8 on q and v: r (d_in + d_out) per matrix, 2 matrices per layer, 30 layers
    assert L * 8 * ((576 + 576) + (576 + 192)) == 460_800


@pytest.fixture(scope="module")
def smol():
    from explorer.models import load_model

    return load_model("smollm2-135m")


def _adapt(smol, method, **knobs):
    from explorer.methods import apply_method
    from explorer.views.playground import shared_weight_copy

    return apply_method(shared_weight_copy(smol.model), method, n_base=smol.info.n_params, **knobs)


def _expected_at_defaults(method: str) -> int:
    r = 8
    if method == "full":
        return N_PARAMS
    if method == "lora":  # q, v
        return L * r * sum(sum(SHAPES[t]) for t in ("q", "v"))
    if method == "dora":  # LoRA + one magnitude per output row
        return L * sum(r * sum(SHAPES[t]) + SHAPES[t][0] for t in ("q", "v"))
    if method == "lora-sp":  # half of each factor's entries frozen
        return L * sum(round(0.5 * r * SHAPES[t][1]) + round(0.5 * r * SHAPES[t][0]) for t in ("q", "v"))
    if method == "tied-lora":  # TL6 on q, k, v: one A (r x d), one fused B ((576 + 192 + 192) x r), per layer u, v
        fused = D + 2 * D_KV
        return r * D + fused * r + L * (r + fused)
    if method == "smt":  # 256 does not divide 192: blocks of 64; budget 1 % of all parameters, in blocks
        return round(0.01 * N_PARAMS / 64 ** 2) * 64 ** 2
    if method == "sparta":  # the authors' budget: (1 - 0.99) x ALL parameters train in total (no head here);
        # an exact count, spread over v and o of every layer (fits: 1 % of all is far below the v, o entries)
        assert 0.01 * N_PARAMS < L * sum(SHAPES[t][0] * SHAPES[t][1] for t in ("v", "o"))
        return round(0.01 * N_PARAMS)
    raise AssertionError(method)


def test_smollm2_loads_with_the_published_shapes(smol):
    m = smol.model
    assert smol.info.kind == "causal-lm" and smol.info.n_params == N_PARAMS
    assert sum(p.numel() for p in m.parameters()) == N_PARAMS
    layer = m.model.layers[0]
    got = {"q": layer.self_attn.q_proj, "k": layer.self_attn.k_proj, "v": layer.self_attn.v_proj,
           "o": layer.self_attn.o_proj, "gate": layer.mlp.gate_proj, "up": layer.mlp.up_proj,
           "down": layer.mlp.down_proj}
    assert {t: tuple(mod.weight.shape) for t, mod in got.items()} == SHAPES
    assert len(m.model.layers) == L and m.lm_head.weight is m.model.embed_tokens.weight


@pytest.mark.parametrize("method", ["lora", "dora", "lora-sp", "tied-lora", "smt", "sparta", "full"])
def test_every_method_applies_at_its_defaults(smol, method):
    ad = _adapt(smol, method)
    assert ad.num_trainable() == _expected_at_defaults(method)
    if method == "lora":
        assert ad.num_trainable() == 460_800
    if method == "smt":
        assert ad.block == 64 and ad.n_blocks == 328  # round(1,345,150 / 4,096)


def test_one_lora_step_on_smollm2_is_finite_and_moves_only_the_adapter(smol):
    from explorer.methods import apply_method
    from explorer.models import fresh_copy

    ad = apply_method(fresh_copy(smol.model), "lora", n_base=smol.info.n_params)
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314, 253, 2]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    params = [p for _, p in ad.trainable_parameters()]
    assert sum(p.numel() for p in params) == 460_800
    opt = torch.optim.AdamW(params, lr=1e-3)
    ad.model.train()
    losses = []
    for _ in range(2):
        loss = ad.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses)
    # a pretrained LM: a short common sentence is far from chance (ln 49,152 = 10.8)
    assert losses[0] < math.log(VOCAB)
    assert losses[1] < losses[0]  # one AdamW step on the same batch lowers the loss
