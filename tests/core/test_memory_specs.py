"""explorer/memory/specs.py: the model shapes the analytic memory model is built on (issue 15, mutation testing).

Every count is checked two ways: by hand from the architecture (embeddings, per-layer q/k/v/o, MLP, norms,
biases, tied or untied head, grouped-query kv heads) and against ``sum(p.numel())`` of the transformers model
built from the same config on the meta device (shapes only, no memory, no download).  The whole file runs in a
few seconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, ElectraConfig, GemmaConfig, GemmaForCausalLM,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

from explorer.memory.specs import PUBLISHED, ModelSpec, spec_for, spec_from_config, spec_from_model
from explorer.methods.base import KnobError

# tiny shapes: V vocab, H hidden, L layers, A heads, KV kv heads, F MLP width, P positions
V, H, L, A, KV, F, P = 100, 16, 2, 4, 2, 24, 40
LLAMA = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=A, num_key_value_heads=KV,
             intermediate_size=F, max_position_embeddings=P, pad_token_id=0, bos_token_id=0, eos_token_id=0)
BERT = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2, intermediate_size=F,
            max_position_embeddings=P)


def meta(cls, cfg):
    with torch.device("meta"):
        return cls(cfg)


def n_real(model) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied weight once


def buffers_real(model) -> int:
    return sum(b.numel() * b.element_size() for b in model.buffers())


# ----------------------------------------------------------------------------- counts against transformers

def _llama_linear(dh=H // A):
    dq, dkv = A * dh, KV * dh
    return L * (dq * H + 2 * dkv * H + H * dq + 3 * F * H)  # q, k, v, o, gate, up, down


def _bert_linear(f=F):
    return L * (4 * H * H + 2 * f * H)  # q, k, v, o, up, down


CASES = {
    # name: (model class, config, expected param groups by hand, buffer bytes by hand)
    "bert-seq-cls": (BertForSequenceClassification, lambda: BertConfig(**BERT, num_labels=3), dict(
        block_linear=_bert_linear(), embeddings=V * H + P * H + 2 * H,  # words, positions, 2 token types
        # embedding LayerNorm; per layer: q/k/v/o biases, up and down biases, two LayerNorms
        norms_biases=2 * H + L * (4 * H + F + H + 2 * 2 * H),
        pooler=H * H + H, head=3 * H + 3), 2 * 8 * P),  # int64 position ids and token type ids
    "llama-gqa-untied": (LlamaForCausalLM, lambda: LlamaConfig(**LLAMA, tie_word_embeddings=False), dict(
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H, head=V * H),
        2 * 4 * (H // A // 2)),  # rotary inv_freq and original_inv_freq, fp32, d_head / 2 each
    "llama-tied": (LlamaForCausalLM, lambda: LlamaConfig(**LLAMA, tie_word_embeddings=True), dict(
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H, head=0), 2 * 4 * 2),
    "llama-seq-cls": (LlamaForSequenceClassification, lambda: LlamaConfig(**LLAMA, num_labels=3), dict(
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H, head=H * 3), 2 * 4 * 2),
    "llama-head-dim-6": (LlamaForCausalLM, lambda: LlamaConfig(**LLAMA, head_dim=6), dict(
        block_linear=_llama_linear(6), embeddings=V * H, norms_biases=L * 2 * H + H, head=V * H), 2 * 4 * 3),
    # attention_bias: q, k, v and o biases; head_dim 6 (not H / A = 4) so the bias sizes follow the head dim
    "llama-attention-bias": (LlamaForCausalLM, lambda: LlamaConfig(**LLAMA, head_dim=6, attention_bias=True), dict(
        block_linear=_llama_linear(6), embeddings=V * H,
        norms_biases=L * 2 * H + H + L * (A * 6 + 2 * KV * 6) + L * H, head=V * H), 2 * 4 * 3),
    "llama-mlp-bias": (LlamaForCausalLM, lambda: LlamaConfig(**LLAMA, mlp_bias=True), dict(
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H + L * (F + F + H),
        head=V * H), 2 * 4 * 2),
    "mistral": (MistralForCausalLM, lambda: MistralConfig(**LLAMA), dict(
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H, head=V * H), 2 * 4 * 2),
    "qwen2": (Qwen2ForCausalLM, lambda: Qwen2Config(**LLAMA, tie_word_embeddings=False), dict(  # q, k, v biases
        block_linear=_llama_linear(), embeddings=V * H, norms_biases=L * 2 * H + H + L * (A * 4 + 2 * KV * 4),
        head=V * H), 2 * 4 * 2),
    # Qwen3: an RMSNorm over the head dim on q and on k in every layer
    "qwen3": (Qwen3ForCausalLM, lambda: Qwen3Config(**LLAMA, head_dim=6, tie_word_embeddings=False), dict(
        block_linear=_llama_linear(6), embeddings=V * H, norms_biases=L * 2 * H + H + L * 2 * 6, head=V * H),
        2 * 4 * 3),
    "gemma": (GemmaForCausalLM, lambda: GemmaConfig(**LLAMA, head_dim=6), dict(  # tied by default
        block_linear=_llama_linear(6), embeddings=V * H, norms_biases=L * 2 * H + H, head=0), None),
    # GPT-2: c_attn (q, k, v fused), c_proj, c_fc, mlp c_proj, all with biases; two LayerNorms a block, a final
    # one; learned positions, no token types; the LM head is the token embedding; no buffers in transformers 5
    "gpt2": (GPT2LMHeadModel, lambda: GPT2Config(vocab_size=V, n_embd=H, n_layer=L, n_head=2, n_positions=P,
                                                 bos_token_id=0, eos_token_id=0), dict(
        block_linear=_bert_linear(4 * H), embeddings=V * H + P * H,
        norms_biases=L * (2 * 2 * H + 3 * H + H + 4 * H + H) + 2 * H, head=0), 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_param_groups_by_hand_and_against_transformers(case):
    cls, cfg, groups, buf = CASES[case]
    model = meta(cls, cfg())
    spec = spec_from_model(model)
    assert spec.param_groups() == groups
    assert spec.n_params() == sum(groups.values()) == n_real(model)
    assert isinstance(spec.n_params(), int)
    if buf is not None:  # Gemma also keeps a 4-byte embedding scale (not modelled: config-only, never measured)
        assert spec.buffer_bytes() == buf == buffers_real(model)
    assert isinstance(spec.buffer_bytes(), int)  # a byte count
    # the task head that trains fully in every method: only a classifier, never an LM head
    assert spec.head_params() == (groups["head"] if case.endswith("seq-cls") else 0)


def test_bert_family_lm_head_counts():
    """A BERT-family causal LM: an untied decoder (weight and bias) unless tied (GPT-style)."""
    base = dict(name="b", family="bert", task="causal-lm", n_layers=L, hidden=H, heads=2, kv_heads=2,
                intermediate=F, vocab=V, max_positions=P)
    untied, tied = ModelSpec(**base).param_groups(), ModelSpec(**base, tie_embeddings=True).param_groups()
    assert "pooler" not in untied and untied["head"] == V * H + V
    assert tied["head"] == 0
    assert ModelSpec(**base).head_params() == 0
    # type_vocab 0 (GPT-3): no token-type embedding
    assert ModelSpec(**base, type_vocab=0).param_groups()["embeddings"] == V * H + P * H


def test_gpt3_175b_by_hand():
    """Brown et al. 2020: 175 B parameters; 12 L d^2 plus the embeddings, by hand."""
    sp = PUBLISHED["gpt3-175b"]
    d, n, v, p = 12288, 96, 50257, 2048
    hand = n * (12 * d * d + 13 * d) + v * d + p * d + 2 * d
    assert sp.n_params() == hand
    assert 174.5e9 < hand < 175.5e9


# ----------------------------------------------------------------------------- shapes

def _real_shapes(model, family):
    out = []
    if family == "bert":
        for i, lay in enumerate(model.bert.encoder.layer):
            mods = dict(q=lay.attention.self.query, k=lay.attention.self.key, v=lay.attention.self.value,
                        o=lay.attention.output.dense, up=lay.intermediate.dense, down=lay.output.dense)
            out += [(i, t, *m.weight.shape) for t, m in mods.items()]
    else:
        for i, lay in enumerate(model.model.layers):
            at, ml = lay.self_attn, lay.mlp
            mods = dict(q=at.q_proj, k=at.k_proj, v=at.v_proj, o=at.o_proj, gate=ml.gate_proj, up=ml.up_proj,
                        down=ml.down_proj)
            out += [(i, t, *m.weight.shape) for t, m in mods.items()]
    return out


@pytest.mark.parametrize("case,family", [("bert-seq-cls", "bert"), ("llama-gqa-untied", "llama"),
                                         ("llama-head-dim-6", "llama")])
def test_target_shapes_are_the_real_linear_layers(case, family):
    cls, cfg, _, _ = CASES[case]
    model = meta(cls, cfg())
    spec = spec_from_model(model)
    real = _real_shapes(model, family)
    assert spec.target_shapes() == real
    assert all(isinstance(x, int) for row in spec.target_shapes() for x in row[2:])


def test_target_shapes_filter_keeps_block_order():
    sp = spec_from_model(meta(LlamaForCausalLM, LlamaConfig(**LLAMA)))
    dh = H // A
    assert sp.target_shapes(["v", "q"]) == [(0, "q", A * dh, H), (0, "v", KV * dh, H),
                                            (1, "q", A * dh, H), (1, "v", KV * dh, H)]
    assert sp.target_shapes(["down"]) == [(0, "down", H, F), (1, "down", H, F)]
    assert sp.target_shapes([]) == [] and sp.target_shapes(["nope"]) == []
    bert = spec_from_model(meta(BertForSequenceClassification, BertConfig(**BERT)))
    assert bert.target_shapes(["gate"]) == []  # BERT has no gate
    assert bert.target_shapes(["up", "o"]) == [(0, "o", H, H), (0, "up", F, H), (1, "o", H, H), (1, "up", F, H)]


def test_d_head():
    base = dict(name="x", family="llama", task="causal-lm", n_layers=1, hidden=16, heads=4, kv_heads=2,
                intermediate=8, vocab=10)
    assert ModelSpec(**base).d_head == 4 and isinstance(ModelSpec(**base).d_head, int)
    assert ModelSpec(**base, head_dim=6).d_head == 6


def test_to_dict_round_trip():
    sp = spec_from_model(meta(Qwen3ForCausalLM, Qwen3Config(**LLAMA, head_dim=6)))
    d = sp.to_dict()
    assert d["qk_norm"] is True and d["head_dim"] == 6 and d["kv_heads"] == KV
    assert ModelSpec(**d) == sp


# ----------------------------------------------------------------------------- validation

def _spec(**kw):
    base = dict(name="x", family="llama", task="causal-lm", n_layers=1, hidden=1, heads=1, kv_heads=1,
                intermediate=1, vocab=1, num_labels=1)
    return ModelSpec(**{**base, **kw})


def test_validate_accepts_the_edges_and_returns_the_spec():
    sp = _spec()
    assert sp.validate() is sp  # every size 1: the smallest allowed
    top = _spec(vocab=10 ** 7, intermediate=10 ** 7)
    assert top.validate() is top  # 10,000,000: the largest allowed
    assert _spec(hidden=10, heads=4, kv_heads=2, head_dim=3).validate().d_head == 3  # head_dim set: no multiple


@pytest.mark.parametrize("field", ["n_layers", "hidden", "heads", "kv_heads", "intermediate", "vocab",
                                   "num_labels"])
@pytest.mark.parametrize("bad", [0, -3, 10 ** 7 + 1, 2.0, "4"])
def test_validate_refuses_each_size(field, bad):
    with pytest.raises(KnobError) as e:
        _spec(**{field: bad}).validate()
    assert str(e.value) == f"model config: {field} must be a whole number from 1 to 10,000,000 (got {bad})"


def test_validate_refuses_family_task_and_head_splits():
    cases = [
        (_spec(family="gpt"), "model config: family must be llama or bert (got 'gpt')"),
        (_spec(task="mlm"), "model config: task must be causal-lm or seq-cls (got 'mlm')"),
        (_spec(hidden=10, heads=4, kv_heads=4), "model config: hidden 10 is not a multiple of heads 4"),
        (_spec(hidden=12, heads=4, kv_heads=3), "model config: heads 4 is not a multiple of kv_heads 3"),
    ]
    for sp, msg in cases:
        with pytest.raises(KnobError) as e:
            sp.validate()
        assert str(e.value) == msg


# ----------------------------------------------------------------------------- spec_from_config

def _ns(model_type, **kw):
    """A config-like object with only the attributes given (the getattr defaults of spec_from_config)."""
    base = dict(model_type=model_type, num_attention_heads=4, num_hidden_layers=2, hidden_size=16,
                intermediate_size=24, vocab_size=100)
    return SimpleNamespace(**{**base, **kw})


def test_from_config_llama_every_field():
    cfg = LlamaConfig(**LLAMA, tie_word_embeddings=True, head_dim=6, attention_dropout=0.25, num_labels=5)
    sp = spec_from_config(cfg, "seq-cls", "mine")
    assert sp.to_dict() == dict(
        name="mine", family="llama", task="seq-cls", n_layers=L, hidden=H, heads=A, kv_heads=KV, intermediate=F,
        vocab=V, tie_embeddings=True, num_labels=5, max_positions=P, type_vocab=2, head_dim=6, attn_dropout=0.25,
        hidden_dropout=0.0, source="read from the model's config", qkv_bias=False, o_bias=False, mlp_bias=False,
        qk_norm=False, conv1d=False)


def test_from_config_bert_every_field():
    cfg = BertConfig(**BERT, type_vocab_size=1, attention_probs_dropout_prob=0.15, hidden_dropout_prob=0.05,
                     num_labels=4, tie_word_embeddings=True)
    cfg.head_dim = 5  # a BERT shape never takes a head_dim
    sp = spec_from_config(cfg, "seq-cls")
    assert sp.to_dict() == dict(
        name="bert", family="bert", task="seq-cls", n_layers=L, hidden=H, heads=2, kv_heads=2, intermediate=F,
        vocab=V, tie_embeddings=False, num_labels=4, max_positions=P, type_vocab=1, head_dim=0,
        attn_dropout=0.15, hidden_dropout=0.05, source="read from the model's config", qkv_bias=False,
        o_bias=False, mlp_bias=False, qk_norm=False, conv1d=False)
    assert isinstance(sp.attn_dropout, float) and isinstance(sp.hidden_dropout, float)


def test_from_config_gpt2_every_field():
    cfg = GPT2Config(vocab_size=V, n_embd=H, n_layer=L, n_head=2, n_positions=P, attn_pdrop=0.05,
                     resid_pdrop=0.07, bos_token_id=0, eos_token_id=0)
    sp = spec_from_config(cfg, "causal-lm")
    assert sp.to_dict() == dict(
        name="gpt2", family="bert", task="causal-lm", n_layers=L, hidden=H, heads=2, kv_heads=2,
        intermediate=4 * H, vocab=V, tie_embeddings=True, num_labels=2, max_positions=P, type_vocab=0, head_dim=0,
        attn_dropout=0.05, hidden_dropout=0.07,
        source="read from the model's config (GPT-2: Conv1D blocks counted like BERT's; activations approximated "
               "as BERT-like)", qkv_bias=False, o_bias=False, mlp_bias=False, qk_norm=False, conv1d=True)
    cfg.n_inner = 40
    named = spec_from_config(cfg, "seq-cls", "g")
    assert (named.intermediate, named.name, named.task) == (40, "g", "seq-cls")
    with pytest.raises(KnobError) as e:  # validated: 10 is not a multiple of 3 heads
        spec_from_config(GPT2Config(n_embd=10, n_head=3, n_layer=1, vocab_size=V), "causal-lm")
    assert str(e.value) == "model config: hidden 10 is not a multiple of heads 3"


@pytest.mark.parametrize("mt,family", [("bert", "bert"), ("roberta", "bert"), ("xlm-roberta", "bert"),
                                       ("electra", "bert"), ("llama", "llama"), ("mistral", "llama"),
                                       ("qwen2", "llama"), ("qwen3", "llama"), ("gemma", "llama")])
def test_from_config_known_families(mt, family):
    sp = spec_from_config(_ns(mt), "causal-lm")
    assert sp.family == family and sp.source == "read from the model's config"
    assert sp.name == mt  # no name, no name_or_path: the model type
    assert sp.qkv_bias == (mt == "qwen2") and sp.qk_norm == (mt == "qwen3")
    # nothing else read where the config says nothing: no head_dim, no tied head, no other bias
    assert (sp.head_dim, sp.d_head, sp.tie_embeddings, sp.o_bias, sp.mlp_bias) == (0, 4, False, False, False)


def test_from_config_unknown_type_is_approximated_as_llama():
    sp = spec_from_config(_ns("phi3"), "causal-lm")
    assert sp.family == "llama"
    assert sp.source == "read from the model's config (model type 'phi3' approximated as llama-like)"


def test_from_config_defaults_of_missing_or_empty_attributes():
    bare = spec_from_config(_ns("bert"), "seq-cls")
    assert (bare.kv_heads, bare.num_labels, bare.max_positions, bare.type_vocab) == (4, 2, 512, 2)
    assert (bare.attn_dropout, bare.hidden_dropout, bare.tie_embeddings, bare.head_dim) == (0.0, 0.0, False, 0)
    empty = spec_from_config(_ns("llama", num_key_value_heads=None, num_labels=None, max_position_embeddings=None,
                                 type_vocab_size=None, head_dim=None, attention_probs_dropout_prob=None,
                                 attention_dropout=None, hidden_dropout_prob=None, attention_bias=None,
                                 mlp_bias=None, tie_word_embeddings=None), "causal-lm")
    assert (empty.kv_heads, empty.num_labels, empty.max_positions, empty.type_vocab) == (4, 2, 512, 2)
    assert (empty.attn_dropout, empty.hidden_dropout, empty.head_dim) == (0.0, 0.0, 0)
    assert (empty.tie_embeddings, empty.qkv_bias, empty.o_bias, empty.mlp_bias) == (False, False, False, False)
    # attention_probs_dropout_prob empty: LLaMA's attention_dropout is read
    assert spec_from_config(_ns("llama", attention_probs_dropout_prob=None, attention_dropout=0.3),
                            "causal-lm").attn_dropout == 0.3
    assert spec_from_config(_ns("llama", attention_dropout=0.3), "causal-lm").attn_dropout == 0.3


def test_from_config_without_a_model_type():
    sp = spec_from_config(SimpleNamespace(**{k: v for k, v in vars(_ns("x")).items() if k != "model_type"}),
                          "causal-lm")
    assert sp.name == "" and sp.family == "llama"  # a name is always a string
    assert sp.source == "read from the model's config (model type '' approximated as llama-like)"


def test_from_config_name_order():
    assert spec_from_config(_ns("llama", name_or_path="some/folder"), "causal-lm").name == "some/folder"
    assert spec_from_config(_ns("llama", name_or_path="some/folder"), "causal-lm", "given").name == "given"
    assert spec_from_config(_ns("llama", name_or_path=""), "causal-lm").name == "llama"


def test_from_config_biases_follow_attention_and_mlp_bias_in_llama_only():
    sp = spec_from_config(_ns("llama", attention_bias=True, mlp_bias=True), "causal-lm")
    assert (sp.qkv_bias, sp.o_bias, sp.mlp_bias) == (True, True, True)
    bert = spec_from_config(_ns("bert", attention_bias=True, mlp_bias=True), "causal-lm")
    assert (bert.qkv_bias, bert.o_bias, bert.mlp_bias) == (False, False, False)
    q2 = spec_from_config(_ns("qwen2"), "causal-lm")
    assert (q2.qkv_bias, q2.o_bias, q2.mlp_bias) == (True, False, False)  # Qwen2: q, k, v only


def test_from_config_electra_embedding_size_noted():
    small = spec_from_config(ElectraConfig(**BERT, embedding_size=8), "seq-cls")
    assert small.source == "read from the model's config (embedding size 8 counted as the hidden size 16)"
    same = spec_from_config(ElectraConfig(**BERT, embedding_size=H), "seq-cls")
    assert same.source == "read from the model's config"


@pytest.mark.parametrize("cfg,why", [
    (SimpleNamespace(hidden_size=16), "'types.SimpleNamespace' object has no attribute 'num_attention_heads'"),
    (_ns("llama", hidden_size=None), "int() argument must be a string, a bytes-like object or a real number, "
                                     "not 'NoneType'"),
    (_ns("llama", vocab_size="many"), "invalid literal for int() with base 10: 'many'"),
])
def test_from_config_unreadable_is_one_line(cfg, why):
    with pytest.raises(KnobError) as e:
        spec_from_config(cfg, "causal-lm")
    mt = getattr(cfg, "model_type", None) or "unknown type"
    assert str(e.value) == f"cannot read a transformer shape from this config ({mt}): {why}"


# ----------------------------------------------------------------------------- spec_from_model, spec_for

def test_from_model_task_name_and_unwrapping():
    llama = meta(LlamaForCausalLM, LlamaConfig(**LLAMA))
    assert spec_from_model(llama).task == "causal-lm"
    assert spec_from_model(meta(GPT2LMHeadModel, CASES["gpt2"][1]())).task == "causal-lm"  # "LMHead"
    assert spec_from_model(meta(BertForSequenceClassification, BertConfig(**BERT))).task == "seq-cls"
    assert spec_from_model(llama, "named").name == "named"
    assert spec_from_model(llama).name == "llama"  # no name given, none in the config: the model type

    class Wrapper(torch.nn.Module):  # like a PeftModel: no config of its own, the base model inside
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_base_model(self):
            return self.inner

    wrapped = spec_from_model(Wrapper(llama))
    assert wrapped == spec_from_model(llama) and wrapped.task == "causal-lm"
    with pytest.raises(KnobError) as e:
        spec_from_model(torch.nn.Linear(2, 2))
    assert str(e.value) == "this model has no Hugging Face config to read a shape from"


def test_from_model_unwraps_a_peft_model():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(**LLAMA))
    n = n_real(base)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))  # a plain PeftModel
    assert type(peft_model).__name__ == "PeftModel"
    sp = spec_from_model(peft_model)
    assert sp.task == "causal-lm" and sp.n_params() == n  # the base model's count, not the adapter's


def test_spec_for_published_and_bundled_configs():
    from explorer.models import build_meta, read_config

    assert spec_for("llama-7b") is PUBLISHED["llama-7b"]
    bert = spec_for("bert-base", num_labels=5)
    assert (bert.name, bert.task, bert.num_labels, bert.family) == ("bert-base", "seq-cls", 5, "bert")
    assert bert.source == "google-bert/bert-base-uncased config.json"
    assert bert.head_params() == 768 * 5 + 5
    assert bert.n_params() == n_real(build_meta(read_config("bert-base"), "seq-cls", 5))
    assert spec_for("bert-base").num_labels == 2  # the default
    qwen = spec_for("qwen2.5-0.5b")
    assert (qwen.task, qwen.qkv_bias, qwen.tie_embeddings) == ("causal-lm", True, True)
    assert qwen.n_params() == n_real(build_meta(read_config("qwen2.5-0.5b"), "causal-lm"))
    gpt2 = spec_for("gpt2")
    assert gpt2.conv1d and gpt2.n_params() == n_real(build_meta(read_config("gpt2"), "causal-lm"))


def test_spec_for_registry_models():
    from explorer.model_files import minilm_folder
    from explorer.models import build_tiny_bert, build_tiny_llama

    tb = spec_for("tiny-bert", num_labels=3)
    assert (tb.name, tb.task, tb.num_labels) == ("tiny-bert", "seq-cls", 3)
    assert tb.n_params() == n_real(build_tiny_bert(num_labels=3))
    tl = spec_for("tiny-llama")
    assert (tl.name, tl.task, tl.tie_embeddings) == ("tiny-llama", "causal-lm", True)
    assert tl.n_params() == n_real(build_tiny_llama())
    from transformers import AutoConfig

    mini = spec_for("minilm", num_labels=4)
    assert (mini.name, mini.task, mini.num_labels, mini.hidden, mini.n_layers) == ("minilm", "seq-cls", 4, 384, 6)
    cfg = AutoConfig.from_pretrained(minilm_folder())
    cfg.num_labels = 4
    assert mini.n_params() == n_real(meta(BertForSequenceClassification, cfg))


def test_spec_for_tiny_models_and_minilm_load_nothing(monkeypatch):
    """The docstring's promise: the tiny models and minilm are read from their config (built in code or the
    installed config.json): no tokenizer, no weights, never load_model."""
    from explorer import models

    def refuse(*a, **k):
        raise AssertionError("load_model called")

    monkeypatch.setattr(models, "load_model", refuse)
    assert spec_for("tiny-bert", num_labels=3).num_labels == 3
    assert spec_for("tiny-llama").task == "causal-lm"
    assert spec_for("minilm", num_labels=4).num_labels == 4


def test_spec_for_a_model_folder(tmp_path):
    from explorer.models import _tiny_tokenizer

    torch.manual_seed(0)
    tok = _tiny_tokenizer()
    model = BertForSequenceClassification(BertConfig(**{**BERT, "vocab_size": len(tok)}, num_labels=4))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    name = str(tmp_path) + "/"  # the name as given, not the folder transformers records
    sp = spec_for(name, num_labels=4)
    assert (sp.name, sp.task, sp.num_labels) == (name, "seq-cls", 4)
    assert sp.n_params() == n_real(model)
