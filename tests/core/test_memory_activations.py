"""The analytic activation model (explorer/memory/activations.py), storage by storage, on shapes small enough to
count by hand: batch 2, sequence 4, hidden 8, 2 heads.

Each expected byte count below is written from what autograd keeps for that op (its own comment says which
tensor and why), in elements x bytes per element, never read from the code's output.  The per-layer BERT total
is also checked against Korthikanti et al. 2022 (arXiv 2205.05198), whose GPT block is the same block: 34 s b h +
5 a s^2 b bytes at 16-bit with 1-byte dropout masks, plus the LayerNorm statistics the paper leaves out.
"""

from __future__ import annotations

import pytest

from explorer.memory.activations import (
    Acts, Walk, checkpointed, detailed_activations, korthikanti_activations,
)
from explorer.memory.plan import ORDER, MemoryPlan, trained_weight
from explorer.memory.specs import ModelSpec

B, S = 2, 4  # batch, sequence
SB = S * B  # tokens
H = 8  # hidden
A = 2  # heads
S2 = A * S * S * B  # attention score entries
BERT_F = 16  # BERT MLP width
L_F, L_KV, L_DH = 12, 1, 3  # LLaMA: MLP width, kv heads, head dim (q: 2 x 3 = 6 wide, k and v: 3)
L_DQ, L_DKV = A * L_DH, L_KV * L_DH
V = 10  # vocabulary
NL = 3  # labels

# the report's labels
IDS, NORM, LIN, DROP = "token ids, labels, loss", "norm inputs and statistics", "linear inputs", "dropout masks"
ATTN, COPIES, SCORES, MLP = ("attention q, k, v, output", "attention q, k, v copies", "attention scores (a s^2 b)",
                             "MLP hidden (s b f)")
W16, ROPE = "autocast's bf16 weight copies", "rotary cos/sin (shared)"
BHEAD, LHEAD, LOGSM = ("head: pooler, classifier, logits", "head: final norm, logits",
                       "head: log-softmax of the logits (fp32)")


def bert(n_layers=1, task="seq-cls", f=BERT_F, p_attn=0.1, p_hid=0.1):
    return ModelSpec("b", "bert", task, n_layers, H, A, A, f, V, num_labels=NL, attn_dropout=p_attn,
                     hidden_dropout=p_hid)


def llama(n_layers=1, task="causal-lm", p_attn=0.0):
    return ModelSpec("l", "llama", task, n_layers, H, A, L_KV, L_F, V, num_labels=NL, head_dim=L_DH,
                     attn_dropout=p_attn)


def full():
    return MemoryPlan(knobs={}, trains_base=True, save_rules={t: trained_weight for t in ORDER})


def frozen(**rules):
    return MemoryPlan(knobs={}, save_rules=rules)


def walk(spec, plan, e=4, mask_e=None, attention="materialized", recompute=False, autocast=False,
         input_grads=False, padded=False, b=B, s=S):
    total, by_label, store = detailed_activations(spec, plan, b, s, e, e if mask_e is None else mask_e, attention,
                                                  recompute, autocast, input_grads, padded)
    assert total == pytest.approx(sum(nb for nb, _ in store.values()))
    by = {}
    for nb, lab in store.values():
        by[lab] = by.get(lab, 0) + nb
    assert by_label == pytest.approx(by)
    return total, by_label, store


# ----------------------------------------------------------------------------------------------- Acts


def test_acts_counts_each_storage_once_and_sums_by_label():
    a = Acts()
    assert a.total() == 0 and a.by_label() == {} and a.store == {}
    a.save("x", 3, "A")
    a.save("x", 5, "B")  # the same storage again: the first record stands
    a.save("y", 2, "A")
    a.save("z", 7, "C")
    assert a.store == {"x": (3.0, "A"), "y": (2.0, "A"), "z": (7.0, "C")}
    assert all(type(nb) is float for nb, _ in a.store.values())
    assert a.by_label() == {"A": 5.0, "C": 7.0}
    assert a.total() == 12.0


# ----------------------------------------------------------------------------------------------- BERT


def _bert_full_fp32_store(e=4, m=4):
    """Full fine-tuning of the 1-layer BERT, materialised attention, every term by hand (e: bytes per activation,
    m: bytes per dropout-mask element)."""
    return {
        "ids": (8 * SB, IDS),  # int64 input ids, b x s
        "tt_ids": (8 * S, IDS),  # int64 token-type ids: the buffer's s entries, broadcast over the batch
        "emb.sum": (SB * H * e, NORM), "emb.sum.stats": (2 * SB * 4, NORM),  # LayerNorm input; fp32 mean, rstd
        "emb.drop": (SB * H * m, DROP),
        "0.X": (SB * H * e, LIN),  # q, k, v share one input
        "0.q_s": (SB * H * e, COPIES), "0.k_s": (SB * H * e, COPIES), "0.v_s": (SB * H * e, COPIES),
        "0.softmax": (S2 * e, SCORES), "0.attn_mask": (S2 * m, SCORES), "0.attn_drop": (S2 * e, SCORES),
        "0.ctx": (SB * H * e, LIN),  # the o projection's input
        "0.o_drop": (SB * H * m, DROP),
        "0.ln1_in": (SB * H * e, NORM), "0.ln1_in.stats": (2 * SB * 4, NORM),
        "0.Y": (SB * H * e, LIN),  # the MLP up projection's input (LayerNorm output)
        "0.gelu_in": (SB * BERT_F * e, MLP),
        "0.G": (SB * BERT_F * e, LIN),  # the down projection's input (GELU output)
        "0.d_drop": (SB * H * m, DROP),
        "0.ln2_in": (SB * H * e, NORM), "0.ln2_in.stats": (2 * SB * 4, NORM),
        "1.X": (SB * H * e, BHEAD),  # the pooler's first-token view keeps the whole last hidden state
        "pool_tanh": (B * H * e, BHEAD), "pool_drop": (B * H * m, DROP), "cls_in": (B * H * e, BHEAD),
        "loss": (B * NL * e + 8 * B + 4, IDS),  # logits, int64 labels, the scalar loss
    }


def test_bert_full_fp32_materialized_every_storage():
    total, by_label, store = walk(bert(), full())
    assert store == _bert_full_fp32_store()
    # the same by label, in numbers: 8 tokens x 8 hidden x 4 bytes = 256 bytes per hidden-state copy
    assert by_label == {IDS: 64 + 32 + 44, NORM: 3 * 256 + 3 * 64, DROP: 3 * 256 + 64, LIN: 3 * 256 + 512,
                        COPIES: 3 * 256, SCORES: 3 * 256, MLP: 512, BHEAD: 256 + 64 + 64}
    assert total == 140 + 960 + 832 + 1280 + 768 + 768 + 512 + 384


def test_bert_full_16bit_cuda_masks():
    """bf16-mixed on CUDA: 2-byte activations, 1-byte dropout masks; the norm statistics stay fp32."""
    _, _, store = walk(bert(), full(), e=2, mask_e=1)
    assert store == _bert_full_fp32_store(e=2, m=1)


def test_bert_full_16bit_cpu_masks():
    """bf16-mixed on the CPU: the dropout masks are as wide as the 16-bit activations, the embedding one too."""
    _, _, store = walk(bert(), full(), e=2, mask_e=2)
    assert store == _bert_full_fp32_store(e=2, m=2)


def test_bert_layer_matches_korthikanti_per_layer():
    """Korthikanti et al. count a GPT layer (f = 4h, dropout, 16-bit, 1-byte masks) as s b h (34 + 5 a s / h);
    the detailed walk adds two LayerNorms' fp32 statistics (2 x 2 s b x 4 bytes), nothing else."""
    per = []
    for n in (1, 2, 3):
        per.append(walk(bert(n, f=4 * H), full(), e=2, mask_e=1)[0])
    korthikanti = S * B * H * (34 + 5 * A * S / H)
    assert per[1] - per[0] == per[2] - per[1] == korthikanti + 2 * 2 * SB * 4
    rec = [walk(bert(n, f=4 * H), full(), e=2, mask_e=1, recompute=True)[0] for n in (1, 2)]
    assert rec[1] - rec[0] == 34 * S * B * H + 2 * 2 * SB * 4


def test_bert_two_layers_chain_their_keys():
    _, _, store = walk(bert(2), full())
    assert store["1.X"] == (SB * H * 4, LIN)  # layer 1's q, k, v input is layer 0's output
    assert store["2.X"] == (SB * H * 4, BHEAD)  # the head reads layer 1's output
    assert {k.split(".")[0] for k in store if k[0].isdigit()} == {"0", "1", "2"}
    assert "1.ln2_in" in store and "2.ln2_in" not in store


def test_bert_flash_keeps_q_k_v_out_and_lse_once():
    _, by_label, store = walk(bert(), full(), attention="flash")
    exp = _bert_full_fp32_store()
    for k in ("0.q_s", "0.k_s", "0.v_s", "0.softmax", "0.attn_mask", "0.attn_drop", "0.ctx"):
        del exp[k]
    exp.update({"0.q": (SB * H * 4, ATTN), "0.k": (SB * H * 4, ATTN), "0.v": (SB * H * 4, ATTN),
                "0.attn_out": (SB * H * 4, ATTN),  # the output, also o's input: one storage
                "0.lse": (A * SB * 4, ATTN)})  # fp32 log-sum-exp per head and token
    assert store == exp
    assert SCORES not in by_label and COPIES not in by_label
    # a padding mask changes nothing for BERT (its mask is not expanded per layer in this model)
    assert walk(bert(), full(), attention="flash", padded=True)[2] == exp


def test_bert_flash_q_adapter_on_a_frozen_base():
    """The fused kernel keeps q, k, v, the output and the log-sum-exp as soon as anything needs a gradient, and
    its output needs one: everything after attention is walked as needing gradients."""
    _, _, store = walk(bert(), frozen(q=trained_weight), attention="flash")
    assert store == {
        "0.X": (SB * H * 4, LIN),
        "0.q": (SB * H * 4, ATTN), "0.k": (SB * H * 4, ATTN), "0.v": (SB * H * 4, ATTN),
        "0.attn_out": (SB * H * 4, ATTN), "0.lse": (A * SB * 4, ATTN),
        "0.o_drop": (SB * H * 4, DROP), "0.ln1_in": (SB * H * 4, NORM), "0.ln1_in.stats": (2 * SB * 4, NORM),
        "0.gelu_in": (SB * BERT_F * 4, MLP), "0.d_drop": (SB * H * 4, DROP),
        "0.ln2_in": (SB * H * 4, NORM), "0.ln2_in.stats": (2 * SB * 4, NORM),
        "pool_tanh": (B * H * 4, BHEAD), "pool_drop": (B * H * 4, DROP), "cls_in": (B * H * 4, BHEAD),
        "loss": (B * NL * 4 + 8 * B + 4, IDS),
    }
    _, _, store = walk(bert(), frozen(), attention="flash")  # nothing needs a gradient: nothing kept
    assert "0.q" not in store and "0.lse" not in store


def test_bert_down_adapter_only():
    """Only the MLP's down weight trains: nothing before it keeps anything; its input, the dropout mask and the
    last LayerNorm after it do, and the head's pooler (its input needs a gradient)."""
    _, _, store = walk(bert(), frozen(down=trained_weight))
    assert store == {
        "0.G": (SB * BERT_F * 4, LIN), "0.d_drop": (SB * H * 4, DROP),
        "0.ln2_in": (SB * H * 4, NORM), "0.ln2_in.stats": (2 * SB * 4, NORM),
        "pool_tanh": (B * H * 4, BHEAD), "pool_drop": (B * H * 4, DROP), "cls_in": (B * H * 4, BHEAD),
        "loss": (B * NL * 4 + 8 * B + 4, IDS),
    }


def test_bert_recompute_drops_the_scores_only():
    _, by_label, store = walk(bert(), full(), recompute=True)
    exp = _bert_full_fp32_store()
    for k in ("0.softmax", "0.attn_mask", "0.attn_drop"):
        del exp[k]
    assert store == exp and SCORES not in by_label


def test_bert_without_dropout_keeps_no_masks():
    _, by_label, store = walk(bert(p_attn=0.0, p_hid=0.0), full())
    exp = _bert_full_fp32_store()
    for k in ("emb.drop", "0.attn_mask", "0.o_drop", "0.d_drop", "pool_drop"):
        del exp[k]
    del exp["0.attn_drop"]  # no dropout: p v keeps the softmax itself, one storage
    assert store == exp and DROP not in by_label


def test_bert_frozen_keeps_only_the_classifier_input_and_loss():
    total, _, store = walk(bert(), frozen())
    assert store == {"cls_in": (B * H * 4, BHEAD), "loss": (B * NL * 4 + 8 * B + 4, IDS)}
    assert total == 64 + 44


def test_bert_q_v_adapters_on_a_frozen_base():
    """q and v's weights train (LoRA-like): the input x once; k's frozen weight saves nothing and its output needs
    no gradient, so q k^T keeps k (for q's gradient) but not q; everything after attention needs gradients."""
    total, _, store = walk(bert(), frozen(q=trained_weight, v=trained_weight))
    assert store == {
        "0.X": (SB * H * 4, LIN),
        "0.k_s": (SB * H * 4, COPIES), "0.v_s": (SB * H * 4, COPIES),
        "0.softmax": (S2 * 4, SCORES), "0.attn_mask": (S2 * 4, SCORES), "0.attn_drop": (S2 * 4, SCORES),
        "0.o_drop": (SB * H * 4, DROP),
        "0.ln1_in": (SB * H * 4, NORM), "0.ln1_in.stats": (2 * SB * 4, NORM),
        "0.gelu_in": (SB * BERT_F * 4, MLP),
        "0.d_drop": (SB * H * 4, DROP),
        "0.ln2_in": (SB * H * 4, NORM), "0.ln2_in.stats": (2 * SB * 4, NORM),
        "pool_tanh": (B * H * 4, BHEAD), "pool_drop": (B * H * 4, DROP), "cls_in": (B * H * 4, BHEAD),
        "loss": (B * NL * 4 + 8 * B + 4, IDS),
    }
    assert total == 256 * 10 + 512 + 5 * 64 + 44


def test_bert_only_k_trains_keeps_q_for_its_gradient():
    _, _, store = walk(bert(), frozen(k=trained_weight))
    assert "0.q_s" in store and "0.k_s" not in store and "0.v_s" in store
    assert store["0.q_s"] == (SB * H * 4, COPIES)
    # the gradient reaches the probabilities (through p v, which keeps v) but v needs none: p is not kept
    assert "0.attn_drop" not in store
    assert store["0.softmax"] == (S2 * 4, SCORES) and store["0.attn_mask"] == (S2 * 4, SCORES)


def test_bert_only_v_trains_keeps_the_probabilities_only():
    _, by_label, store = walk(bert(), frozen(v=trained_weight))
    assert COPIES not in by_label  # nothing flows back into q or k
    assert {k: v for k, v in store.items() if v[1] == SCORES} == {"0.attn_drop": (S2 * 4, SCORES)}
    _, by_label, store = walk(bert(p_attn=0.0), frozen(v=trained_weight))
    assert {k: v for k, v in store.items() if v[1] == SCORES} == {"0.softmax": (S2 * 4, SCORES)}


def test_bert_input_grads_walks_the_embeddings_as_needing_one():
    """Gradient checkpointing's requires-grad input: the embedding LayerNorm and dropout keep their tensors even
    with a frozen base (but the ids are no activations: nothing trains the embeddings)."""
    _, _, store = walk(bert(), frozen(), input_grads=True)
    assert store["emb.sum"] == (SB * H * 4, NORM) and store["emb.sum.stats"] == (2 * SB * 4, NORM)
    assert store["emb.drop"] == (SB * H * 4, DROP)
    assert "ids" not in store and "tt_ids" not in store
    assert store["0.k_s"] == (SB * H * 4, COPIES)  # rg flows through every layer
    assert store["pool_tanh"] == (B * H * 4, BHEAD)


def test_bert_autocast_full():
    """bf16 autocast on the CPU (mask_e 2): bf16 linear inputs and weight copies, fp32 norms and CPU attention
    math; each of q, k, v keeps its own bf16 copy of the fp32 residual stream."""
    _, _, store = walk(bert(), full(), e=2, mask_e=2, autocast=True)
    exp = {
        "ids": (8 * SB, IDS), "tt_ids": (8 * S, IDS),
        "emb.sum": (SB * H * 4, NORM), "emb.sum.stats": (2 * SB * 4, NORM),
        "emb.drop": (SB * H * 4, DROP),  # the dropout runs on the fp32 embedding sum: a float mask
        "0.q.w16": (H * H * 2, W16), "0.X.q16": (SB * H * 2, LIN),
        "0.k.w16": (H * H * 2, W16), "0.X.k16": (SB * H * 2, LIN),
        "0.v.w16": (H * H * 2, W16), "0.X.v16": (SB * H * 2, LIN),
        "0.q_s": (SB * H * 4, COPIES), "0.k_s": (SB * H * 4, COPIES), "0.v_s": (SB * H * 4, COPIES),
        "0.softmax": (S2 * 4, SCORES), "0.attn_mask": (S2 * 4, SCORES), "0.attn_drop": (S2 * 4, SCORES),
        "0.o.w16": (H * H * 2, W16), "0.ctx": (SB * H * 2, LIN),  # bf16 context: no copy
        "0.o_drop": (SB * H * 2, DROP),  # on o's bf16 output
        "0.ln1_in": (SB * H * 4, NORM), "0.ln1_in.stats": (2 * SB * 4, NORM),
        "0.up.w16": (H * BERT_F * 2, W16), "0.Y.up16": (SB * H * 2, LIN),
        "0.gelu_in": (SB * BERT_F * 2, MLP),
        "0.down.w16": (BERT_F * H * 2, W16), "0.G": (SB * BERT_F * 2, LIN),
        "0.d_drop": (SB * H * 2, DROP),
        "0.ln2_in": (SB * H * 4, NORM), "0.ln2_in.stats": (2 * SB * 4, NORM),
        "pool_in16": (B * H * 2, BHEAD),  # the pooler's own bf16 copy of the first token
        "pool_tanh": (B * H * 2, BHEAD), "pool_drop": (B * H * 2, DROP),
        "pool.w16": (H * H * 2, W16), "cls.w16": (H * NL * 2, W16),
        "cls_in": (B * H * 2, BHEAD),
        "loss": (B * NL * 4 + 8 * B + 4, IDS),  # fp32 logits
    }
    assert store == exp
    # on CUDA the masks are 1 byte, the embedding dropout's too
    _, _, cuda = walk(bert(), full(), e=2, mask_e=1, autocast=True)
    masks = {k: v for k, v in cuda.items() if v[1] == DROP}
    assert masks == {"emb.drop": (SB * H, DROP), "0.o_drop": (SB * H, DROP), "0.d_drop": (SB * H, DROP),
                     "pool_drop": (B * H, DROP)}
    assert cuda["0.attn_mask"] == (S2, SCORES)


def test_bert_autocast_frozen_base_with_v_adapter():
    """A frozen k whose input needs a gradient (input_grads) still keeps its bf16 weight copy; a frozen base's
    pooler keeps no copy of the first token."""
    _, _, store = walk(bert(), frozen(v=trained_weight), e=2, mask_e=2, autocast=True, input_grads=True)
    for t, d_out in (("q", H), ("k", H), ("v", H), ("o", H), ("up", BERT_F), ("down", H)):
        assert store[f"0.{t}.w16"] == ((BERT_F if t == "down" else H) * d_out * 2, W16)
    assert "0.X.q16" not in store and store["0.X.v16"] == (SB * H * 2, LIN)
    assert "pool_in16" not in store and "1.X" not in store
    assert store["pool.w16"] == (H * H * 2, W16)


# ----------------------------------------------------------------------------------------------- LLaMA


def _llama_full_fp32_store():
    e = 4
    return {
        "ids": (8 * SB, IDS),
        "0.X": (SB * H * 4, NORM), "0.X.rsqrt": (SB * 4, NORM),  # RMSNorm: fp32 input, rsqrt per token
        "0.N.normed": (SB * H * e, NORM),  # the trained weight's product keeps the normalised input
        "0.N": (SB * H * e, LIN),  # q, k, v's shared input
        "rope": (2 * S * L_DH * 4, ROPE),  # cos and sin, s x head dim each, shared by every layer
        "0.q_s": (SB * L_DQ * e, COPIES), "0.k_s": (SB * L_DKV * e, COPIES), "0.v_s": (SB * L_DKV * e, COPIES),
        "0.softmax": (S2 * e, SCORES),  # no attention dropout: p v keeps the softmax itself
        "0.attn_out": (SB * L_DQ * e, LIN),
        "0.X2": (SB * H * 4, NORM), "0.X2.rsqrt": (SB * 4, NORM), "0.M.normed": (SB * H * e, NORM),
        "0.M": (SB * H * e, LIN),  # gate and up's shared input
        "0.gate_out": (SB * L_F * e, MLP), "0.silu_out": (SB * L_F * e, MLP), "0.up_out": (SB * L_F * e, MLP),
        "0.P": (SB * L_F * e, LIN),  # down's input, silu(gate) * up
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM), "final.normed": (SB * H * e, NORM),
        "final.out": (SB * H * e, LHEAD),
        "logsoftmax": (SB * V * 4, LOGSM),
        "labels": (8 * SB + 4, IDS),  # int64 labels and the loss
    }


def test_llama_full_fp32_every_storage():
    total, by_label, store = walk(llama(), full())
    assert store == _llama_full_fp32_store()
    assert by_label == {IDS: 64 + 68, NORM: 3 * (256 + 32 + 256), LIN: 256 + 192 + 256 + 384, ROPE: 96,
                        COPIES: 192 + 96 + 96, SCORES: 256, MLP: 3 * 384, LHEAD: 256, LOGSM: 320}
    assert total == 132 + 1632 + 1088 + 96 + 384 + 256 + 1152 + 256 + 320


def test_llama_attention_dropout_and_recompute():
    _, _, store = walk(llama(p_attn=0.1), full())
    assert store["0.attn_mask"] == (S2 * 4, SCORES) and store["0.attn_drop"] == (S2 * 4, SCORES)
    _, by_label, store = walk(llama(p_attn=0.1), full(), recompute=True)
    assert SCORES not in by_label and store["0.k_s"] == (SB * L_DKV * 4, COPIES)


def test_llama_two_layers_share_the_rotary_tables():
    total1 = walk(llama(1), full())[0]
    total2, _, store = walk(llama(2), full())
    per_layer = (256 + 32 + 256) * 2 + 256 + 192 + 96 + 96 + 256 + 192 + 256 + 3 * 384 + 384  # by hand
    assert total2 - total1 == per_layer
    assert store["rope"] == (2 * S * L_DH * 4, ROPE)
    assert store["1.X"] == (SB * H * 4, NORM) and store["2.X"] == (SB * H * 4, NORM)


def test_llama_bf16_mixed_upcasts_the_norm_inputs():
    """16-bit activations (no autocast): RMSNorm keeps its own fp32 upcast of the input (a separate storage from
    the 16-bit residual stream), the rotary tables are 16-bit."""
    _, _, store = walk(llama(), full(), e=2)
    assert store["0.X.f32"] == (SB * H * 4, NORM) and "0.X" not in store
    assert store["0.N.normed"] == (SB * H * 2, NORM) and store["0.N"] == (SB * H * 2, LIN)
    assert store["rope"] == (2 * S * L_DH * 2, ROPE)
    assert store["0.q_s"] == (SB * L_DQ * 2, COPIES) and store["0.softmax"] == (S2 * 2, SCORES)
    assert store["final.out"] == (SB * H * 2, LHEAD) and store["logsoftmax"] == (SB * V * 4, LOGSM)


def test_llama_flash_and_padding():
    _, _, store = walk(llama(), full(), attention="flash")
    att = {k: v for k, v in store.items() if v[1] == ATTN}
    assert att == {"0.q_rot": (SB * L_DQ * 4, ATTN), "0.k_rot": (SB * L_DKV * 4, ATTN),
                   "0.v": (SB * L_DKV * 4, ATTN), "0.attn_out": (SB * L_DQ * 4, ATTN),
                   "0.lse": (A * SB * 4, ATTN)}
    assert "0.softmax" not in store and "0.q_s" not in store
    # padding: the float mask b x s x s, and grouped-query k and v expanded to every head
    _, _, store = walk(llama(), full(), attention="flash", padded=True)
    att = {k: v for k, v in store.items() if v[1] == ATTN}
    assert att == {"0.pad_mask": (B * S * S * 4, ATTN), "0.q_rot": (SB * L_DQ * 4, ATTN),
                   "0.k_rot": (SB * L_DQ * 4, ATTN), "0.v": (SB * L_DQ * 4, ATTN),
                   "0.attn_out": (SB * L_DQ * 4, ATTN), "0.lse": (A * SB * 4, ATTN)}
    # materialised attention takes the mask as it is: no expansion
    assert walk(llama(), full(), padded=True)[2] == _llama_full_fp32_store()


def test_llama_frozen_keeps_only_the_logits():
    total, _, store = walk(llama(), frozen())
    assert store == {"logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS)}
    assert total == 320 + 68
    _, _, store = walk(llama(task="seq-cls"), frozen())
    assert store == {"final.out": (SB * H * 4, LHEAD), "loss": (B * NL * 4 + 8 * B + 4, IDS)}


def test_llama_v_adapter_on_a_frozen_base():
    """Only v trains: its input (the norm output) once, no rotary tables (q, k need no gradient), the softmax for
    p v, and the frozen blocks after attention pass the gradient down (norms keep input and rsqrt, no normed)."""
    _, _, store = walk(llama(), frozen(v=trained_weight))
    assert store == {
        "0.N": (SB * H * 4, LIN),
        "0.softmax": (S2 * 4, SCORES),
        "0.X2": (SB * H * 4, NORM), "0.X2.rsqrt": (SB * 4, NORM),
        "0.gate_out": (SB * L_F * 4, MLP), "0.silu_out": (SB * L_F * 4, MLP), "0.up_out": (SB * L_F * 4, MLP),
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM),
        "logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS),
    }


def test_llama_q_adapter_needs_the_rotary_tables_and_k():
    _, _, store = walk(llama(), frozen(q=trained_weight))
    assert store["rope"] == (2 * S * L_DH * 4, ROPE)
    assert store["0.k_s"] == (SB * L_DKV * 4, COPIES) and "0.q_s" not in store
    _, _, store = walk(llama(), frozen(k=trained_weight))
    assert store["rope"] == (2 * S * L_DH * 4, ROPE)
    assert store["0.q_s"] == (SB * L_DQ * 4, COPIES) and "0.k_s" not in store


def test_llama_swiglu_keeps_what_each_branch_needs():
    """silu(gate) * up: up's gradient needs silu(gate); gate's needs the silu input and up's output."""
    _, _, store = walk(llama(), frozen(up=trained_weight))
    assert {k for k, v in store.items() if v[1] == MLP} == {"0.silu_out"}
    _, _, store = walk(llama(), frozen(gate=trained_weight))
    assert {k for k, v in store.items() if v[1] == MLP} == {"0.gate_out", "0.up_out"}
    # a rule whose output needs no gradient (and nothing before it did): down sees no gradient, nothing is kept
    _, _, store = walk(llama(), frozen(gate=lambda c: False, up=lambda c: False))
    assert {k for k, v in store.items() if v[1] == MLP} == set()


def test_llama_up_or_down_adapter_only():
    _, _, store = walk(llama(), frozen(up=trained_weight))
    assert store == {
        "0.M": (SB * H * 4, LIN), "0.silu_out": (SB * L_F * 4, MLP),
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM),  # down's output needs a gradient
        "logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS),
    }
    _, _, store = walk(llama(), frozen(down=trained_weight))
    assert store == {
        "0.P": (SB * L_F * 4, LIN),
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM),
        "logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS),
    }


def test_llama_autocast_v_adapter_on_a_frozen_base():
    """Autocast with only v trained: a weight copy only where the layer's input needs a gradient (o, the MLP and
    the LM head, not q, k, v); v keeps its own bf16 copy of the fp32 norm output."""
    _, _, store = walk(llama(), frozen(v=trained_weight), e=2, mask_e=2, autocast=True)
    assert store == {
        "0.N.v16": (SB * H * 2, LIN),
        "0.softmax": (S2 * 4, SCORES),
        "0.o.w16": (L_DQ * H * 2, W16),
        "0.X2": (SB * H * 4, NORM), "0.X2.rsqrt": (SB * 4, NORM),
        "0.gate.w16": (H * L_F * 2, W16), "0.up.w16": (H * L_F * 2, W16),
        "0.gate_out": (SB * L_F * 2, MLP), "0.silu_out": (SB * L_F * 2, MLP), "0.up_out": (SB * L_F * 2, MLP),
        "0.down.w16": (L_F * H * 2, W16),
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM),
        "head.w16": (V * H * 2, W16),
        "logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS),
    }


def test_detailed_activations_defaults():
    """Without the keyword arguments: no autocast, no input gradients, no padding."""
    spec = llama()
    got = detailed_activations(spec, frozen(), B, S, 2, 2, "flash", False)
    assert got == detailed_activations(spec, frozen(), B, S, 2, 2, "flash", False, False, False, False)
    assert got[2] == {"logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS)}
    got = detailed_activations(spec, full(), B, S, 2, 2, "flash", False)
    assert got == detailed_activations(spec, full(), B, S, 2, 2, "flash", False, False, False, False)
    assert got[2]["0.k_rot"] == (SB * L_DKV * 2, ATTN) and "0.q.w16" not in got[2]


def test_llama_input_grads_on_a_frozen_base():
    _, _, store = walk(llama(), frozen(), input_grads=True)
    assert store["0.X"] == (SB * H * 4, NORM) and store["0.X.rsqrt"] == (SB * 4, NORM)
    assert "0.N.normed" not in store and "ids" not in store
    assert store["0.q_s"] == (SB * L_DQ * 4, COPIES) and store["rope"] == (2 * S * L_DH * 4, ROPE)
    assert "final.out" not in store  # a frozen LM head keeps nothing of its own


def _llama_autocast_store():
    return {
        "ids": (8 * SB, IDS),
        "0.X": (SB * H * 4, NORM), "0.X.rsqrt": (SB * 4, NORM), "0.N.normed": (SB * H * 4, NORM),
        "0.q.w16": (H * L_DQ * 2, W16), "0.N.q16": (SB * H * 2, LIN),
        "0.k.w16": (H * L_DKV * 2, W16), "0.N.k16": (SB * H * 2, LIN),
        "0.v.w16": (H * L_DKV * 2, W16), "0.N.v16": (SB * H * 2, LIN),
        "rope": (2 * S * L_DH * 4, ROPE),
        "0.q_s": (SB * L_DQ * 4, COPIES), "0.k_s": (SB * L_DKV * 4, COPIES), "0.v_s": (SB * L_DKV * 4, COPIES),
        "0.softmax": (S2 * 4, SCORES),
        "0.o.w16": (L_DQ * H * 2, W16), "0.attn_out": (SB * L_DQ * 2, LIN),
        "0.X2": (SB * H * 4, NORM), "0.X2.rsqrt": (SB * 4, NORM), "0.M.normed": (SB * H * 4, NORM),
        "0.gate.w16": (H * L_F * 2, W16), "0.M.gate16": (SB * H * 2, LIN),
        "0.up.w16": (H * L_F * 2, W16), "0.M.up16": (SB * H * 2, LIN),
        "0.gate_out": (SB * L_F * 2, MLP), "0.silu_out": (SB * L_F * 2, MLP), "0.up_out": (SB * L_F * 2, MLP),
        "0.down.w16": (L_F * H * 2, W16), "0.P": (SB * L_F * 2, LIN),
        "1.X": (SB * H * 4, NORM), "1.X.rsqrt": (SB * 4, NORM), "final.normed": (SB * H * 4, NORM),
        "head.w16": (V * H * 2, W16),
        "final.out": (SB * H * 2, LHEAD), "logsoftmax": (SB * V * 4, LOGSM), "labels": (8 * SB + 4, IDS),
    }


def test_llama_autocast_full():
    _, _, store = walk(llama(), full(), e=2, mask_e=2, autocast=True)
    assert store == _llama_autocast_store()


def test_llama_autocast_seq_cls_head():
    _, _, store = walk(llama(task="seq-cls"), full(), e=2, mask_e=2, autocast=True)
    assert store["head.w16"] == (NL * H * 2, W16)
    assert store["final.out"] == (SB * H * 2, LHEAD) and store["loss"] == (B * NL * 4 + 8 * B + 4, IDS)
    _, _, store = walk(llama(task="seq-cls"), frozen(), e=2, mask_e=2, autocast=True)
    assert "head.w16" not in store  # nothing before the head needs a gradient: no copy for its input


def test_linear_calls_receive_the_layer_shapes():
    """What each save rule is told: the input's storage, a prefix, d_in, d_out, whether the input needs a
    gradient, tokens, bytes per element, mask bytes, autocast."""
    calls = []

    def rec(c):
        calls.append((c.key_in, c.out_key, c.d_in, c.d_out, c.needs_grad_in, c.tokens, c.e, c.mask_e, c.autocast))
        return True

    walk(llama(), frozen(**{t: rec for t in ORDER}), e=2, mask_e=1)
    assert calls == [("0.N", "0.q", H, L_DQ, False, SB, 2, 1, False), ("0.N", "0.k", H, L_DKV, False, SB, 2, 1, False),
                     ("0.N", "0.v", H, L_DKV, False, SB, 2, 1, False),
                     ("0.attn_out", "0.o", L_DQ, H, True, SB, 2, 1, False),
                     ("0.M", "0.gate", H, L_F, True, SB, 2, 1, False), ("0.M", "0.up", H, L_F, True, SB, 2, 1, False),
                     ("0.P", "0.down", L_F, H, True, SB, 2, 1, False)]
    calls.clear()
    walk(bert(), frozen(**{t: rec for t in ORDER}), e=2, mask_e=2, autocast=True)
    assert calls == [("0.X.q16", "0.q", H, H, False, SB, 2, 2, True), ("0.X.k16", "0.k", H, H, False, SB, 2, 2, True),
                     ("0.X.v16", "0.v", H, H, False, SB, 2, 2, True), ("0.ctx", "0.o", H, H, True, SB, 2, 2, True),
                     ("0.Y.up16", "0.up", H, BERT_F, True, SB, 2, 2, True),
                     ("0.G", "0.down", BERT_F, H, True, SB, 2, 2, True)]


def test_autocast_uncast_layers_keep_their_input_as_it_comes():
    """A custom autograd Function (SMT's, SpaRTA's sparse layers): no bf16 copy of the input, no weight copy; an
    fp32 input (a norm's output) stays 4 bytes, a bf16 one (o's input) 2."""
    calls = []

    def rec(c):
        calls.append((c.key_in, c.e))
        return trained_weight(c)

    plan = MemoryPlan(knobs={}, save_rules={"q": rec, "o": rec}, uncast=frozenset({"q", "o"}))
    _, _, store = walk(llama(), plan, e=2, mask_e=2, autocast=True)
    assert calls == [("0.N", 4), ("0.attn_out", 2)]
    assert store["0.N"] == (SB * H * 4, LIN) and store["0.attn_out"] == (SB * L_DQ * 2, LIN)
    assert not any(k.startswith(("0.q.", "0.o.")) for k in store)  # no weight copies
    # without autocast uncast changes nothing
    assert walk(llama(), plan, e=2)[2] == walk(llama(), frozen(q=trained_weight, o=trained_weight), e=2)[2]


def test_walk_fields():
    w = Walk(llama(), full(), B, S, 2, 1, "flash", True, autocast=True, input_grads=True, padded=True)
    assert (w.b, w.s, w.sb, w.e, w.mask_e, w.fe) == (B, S, SB, 2, 1, 4)
    assert (w.h, w.f, w.V, w.dq, w.dkv) == (H, L_F, V, L_DQ, L_DKV)
    assert w.full is True and w.flash is True and w.recompute is True and w.padded is True
    assert w.autocast is True and w.input_grads is True
    w = Walk(bert(), frozen(), B, S, 4, 4, "materialized", False)
    assert w.fe == 4 and w.full is False and w.flash is False and w.autocast is False
    assert w.input_grads is False and w.padded is False and w.recompute is False
    assert Walk(bert(), frozen(), B, S, 2, 2, "materialized", False).fe == 2


# ----------------------------------------------------------------------------------------------- checkpointing


def test_checkpointed_by_hand():
    store = {
        "ids": (64.0, IDS),
        "0.X": (100.0, NORM),  # layer 0's input: the checkpoint itself
        "0.a": (10.0, LIN), "0.b": (5.0, MLP),  # layer 0: 15
        "0.X.q16": (7.0, LIN), "0.X.k16": (7.0, LIN), "0.X.v16": (7.0, LIN),  # one cached bf16 copy: 7
        "0.X.f32": (3.0, NORM),  # not a bf16 copy: counted
        "1.X": (100.0, NORM), "1.a": (20.0, LIN),  # layer 1: 20
        "1.X.q16": (2.0, LIN), "1.X.k16": (2.0, LIN),  # layer 1's own copy: 2 (not layer 0's)
        "2.X": (100.0, NORM),  # the head's input: outside the layers
        "rope": (16.0, ROPE), "logsoftmax": (40.0, LOGSM),
    }
    total, terms = checkpointed(store, 2, 1000.0)
    assert terms == {IDS: 64.0, NORM: 100.0, ROPE: 16.0, LOGSM: 40.0,
                     "checkpoints: every layer's input (L x s b h)": 2 * 1000.0,
                     "one layer rebuilt in the backward pass": 25.0}  # max(15 + 7 + 3 = 25, 20 + 2 = 22)
    assert total == 64 + 100 + 16 + 40 + 2000 + 25
    # the largest layer is the one rebuilt, whichever it is
    store["1.c"] = (20.0, MLP)  # layer 1: 42
    assert checkpointed(store, 2, 1000.0)[1]["one layer rebuilt in the backward pass"] == 42.0
    # no layers: nothing rebuilt
    assert checkpointed({"ids": (8.0, IDS)}, 0, 50.0) == (8.0, {IDS: 8.0, "checkpoints: every layer's input (L x "
                                                                         "s b h)": 0.0,
                                                                "one layer rebuilt in the backward pass": 0.0})


def test_checkpointed_llama_walk():
    """Two identical layers: the checkpoints (2 x s b h x 4) replace every layer's terms but one rebuilt layer,
    whose own input is its checkpoint; the head, ids, logits and the shared rotary tables stay."""
    _, _, store = walk(llama(2), full())
    per_layer = (32 + 256) + (256 + 32 + 256) + 256 + 192 + 96 + 96 + 256 + 192 + 256 + 3 * 384 + 384
    total, terms = checkpointed(store, 2, SB * H * 4)
    assert terms == {IDS: 64 + 68, ROPE: 96, NORM: 256 + 32 + 256, LHEAD: 256, LOGSM: 320,
                     "checkpoints: every layer's input (L x s b h)": 2 * SB * H * 4,
                     "one layer rebuilt in the backward pass": per_layer}
    assert total == sum(terms.values())


def test_checkpointed_bert_autocast_shares_the_input_copy():
    _, _, store = walk(bert(), full(), e=2, mask_e=2, autocast=True)
    total, terms = checkpointed(store, 1, SB * H * 4)
    layer = {k: v for k, v in store.items() if k.startswith("0.")}
    assert sum(nb for k, (nb, _) in layer.items() if k.endswith("16") and k.startswith("0.X.")) == 3 * SB * H * 2
    expect = sum(nb for nb, _ in layer.values()) - 2 * SB * H * 2  # q, k, v: one bf16 copy instead of three
    assert terms["one layer rebuilt in the backward pass"] == expect


# ----------------------------------------------------------------------------------------------- Korthikanti


def test_korthikanti_by_hand():
    sp = bert(3)  # h 8, a 2; s 4, b 2: s b h = 64, 5 a s / h = 5
    assert korthikanti_activations(sp, B, S, 2, False) == 3 * 64 * (34 + 5)  # 7,488
    assert korthikanti_activations(sp, B, S, 4, False) == 2 * 3 * 64 * 39  # fp32: doubled
    assert korthikanti_activations(sp, B, S, 2, True) == 3 * 64 * 34  # selective recomputation
    # full checkpointing: every layer's 16-bit input (2 s b h) plus one layer rebuilt
    assert korthikanti_activations(sp, B, S, 2, False, checkpointing=True) == 3 * 2 * 64 + 64 * 39
    assert korthikanti_activations(sp, B, S, 2, True, checkpointing=True) == 3 * 2 * 64 + 64 * 34
    assert korthikanti_activations(sp, B, S, 4, True, checkpointing=True) == 2 * (3 * 2 * 64 + 64 * 34)
    # the s^2 term grows with s and a, shrinks with h: s = 8, b = 1, a = 4, h = 16 -> 5 a s / h = 10
    sp2 = ModelSpec("g", "bert", "causal-lm", 1, 16, 4, 4, 64, V)
    assert korthikanti_activations(sp2, 1, 8, 2, False) == 8 * 16 * (34 + 10)
    assert korthikanti_activations(sp2, 3, 8, 2, False) == 3 * 8 * 16 * (34 + 10)
