"""Activations: what autograd keeps for the backward pass, counted on paper.

Two models, both always reported by :func:`explorer.memory.analytic.estimate`:

* :func:`korthikanti_activations`: s b h (34 + 5 a s / h) bytes per layer for 16-bit activations (34 s b h with
  selective recomputation), Korthikanti et al. arXiv 2205.05198; doubled for fp32.  It assumes a GPT block (4h
  MLP, dropout, materialised attention) and leaves out embeddings, the head and the logits.
* :func:`detailed_activations` (the default): one forward pass walked op by op for the real block (BERT: GELU
  MLP of width f, dropout masks; LLaMA: RMSNorm, rotary, SwiGLU of width f, grouped-query attention), plus the
  embeddings, the head, the logits and the loss.  What an adapted linear layer keeps is the method's own rule
  (its plan's ``save_rules``, see :mod:`explorer.memory.plan`); every storage is counted once.

:func:`checkpointed` turns the detailed terms into those of full activation checkpointing per layer.

Autocast (``autocast=True``, the ``bf16-autocast`` precision: what ``train --precision bf16`` runs): linear
layers compute in bf16, so (as measured with ``saved_tensors_hooks`` in PyTorch 2.13 on CPU) a linear layer
whose input is an fp32 tensor (the norms' outputs: the residual stream stays fp32) keeps its **own** bf16
copy of that input (q, k and v each one), a linear layer whose input needs a gradient keeps the bf16 copy of
its weight (for the gradient of its input; a frozen weight is cast anew at every call, a trained one once),
(a custom autograd Function, ``MemoryPlan.uncast``: SMT's and SpaRTA's sparse layers, keeps its input as it
comes and no copy), the norms keep fp32, the rotary tables are fp32, CPU attention's materialised path runs in fp32, and the
outputs of linear layers (MLP hidden, attention) are bf16.  Embedding-layer dropout masks follow their fp32
input.  ``input_grads=True`` (gradient checkpointing here: the input embeddings' output is made to require a
gradient so that reentrant checkpointing passes gradients to the layers) walks the embeddings as needing one.
"""

from __future__ import annotations

from explorer.memory.plan import LinearCall, MemoryPlan
from explorer.memory.specs import ModelSpec

NORM = "norm inputs and statistics"
ATTN = "attention q, k, v, output"
ATTN_COPIES = "attention q, k, v copies"
SCORES = "attention scores (a s^2 b)"
MLP = "MLP hidden (s b f)"
W16 = "autocast's bf16 weight copies"
IDS = "token ids, labels, loss"


class Acts:
    """Saved-for-backward bookkeeping: one entry per storage (a dict key), bytes, and a label for the report."""

    def __init__(self):
        self.store: dict[str, tuple[float, str]] = {}

    def save(self, key: str, nbytes: float, label: str) -> None:
        if key not in self.store:
            self.store[key] = (float(nbytes), label)

    def by_label(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for nb, label in self.store.values():
            out[label] = out.get(label, 0.0) + nb
        return out

    def total(self) -> float:
        return sum(nb for nb, _ in self.store.values())


class Walk:
    """One forward pass of ``spec`` under ``plan``, op by op.

    Rules (PyTorch's): a linear layer saves its input only when its weight trains; an op saves anything only
    when one of its inputs requires grad; parameters and buffers are weights, not activations.  Each op returns
    whether its output requires grad ("rg")."""

    def __init__(self, spec: ModelSpec, plan: MemoryPlan, b: int, s: int, e: int, mask_e: int, attention: str,
                 recompute: bool, autocast: bool = False, input_grads: bool = False, padded: bool = False):
        self.spec, self.plan, self.acts = spec, plan, Acts()
        self.padded = padded
        self.autocast, self.input_grads = autocast, input_grads
        self.fe = 4 if autocast else e  # bytes of what autocast keeps in fp32 (norms, rotary, CPU attention)
        self.b, self.s, self.sb, self.e, self.mask_e = b, s, s * b, e, mask_e
        self.h, self.f, self.V = spec.hidden, spec.intermediate, spec.vocab
        self.dq, self.dkv = spec.heads * spec.d_head, spec.kv_heads * spec.d_head
        self.full = plan.trains_base
        self.flash = attention == "flash"
        self.recompute = recompute

    def save(self, key: str, nbytes: float, label: str) -> None:
        self.acts.save(key, nbytes, label)

    def linear(self, t: str, key_in: str, d_in: int, d_out: int, rg_in: bool, out_key: str) -> bool:
        rule = self.plan.save_rules.get(t)
        e = self.e
        if self.autocast:
            fp32_in = key_in.endswith((".X", ".Y", ".N", ".M"))  # a norm's output: the residual stream is fp32
            if t in self.plan.uncast:  # a custom Function: keeps its input as it comes, no weight copy
                e = 4 if fp32_in else e
            else:
                if rg_in:  # the bf16 copy of the weight, kept to pass the gradient to the input
                    self.save(out_key + ".w16", d_in * d_out * 2, W16)
                if fp32_in:  # its own bf16 copy of the fp32 input
                    key_in = f"{key_in}.{t}16"
        if rule is None:  # a frozen linear layer keeps nothing of its own
            return rg_in
        return rule(LinearCall(self.save, key_in, out_key, d_in, d_out, rg_in, self.sb, e, self.mask_e,
                               autocast=self.autocast))

    def attention_core(self, layer, rg_q, rg_k, rg_v, q_key, k_key, v_key, out_key) -> bool:
        sb, e, dq, dkv = self.sb, self.e, self.dq, self.dkv
        rg_qk = rg_q or rg_k
        if not (rg_qk or rg_v):
            return False
        if self.flash:
            if self.padded and self.spec.family == "llama":  # a padding mask: the float mask, k and v per head
                self.save(f"{layer}.pad_mask", self.b * self.s * self.s * 4, ATTN)
                dkv = dq
            self.save(q_key, sb * dq * e, ATTN)
            self.save(k_key, sb * dkv * e, ATTN)
            self.save(v_key, sb * dkv * e, ATTN)
            self.save(out_key, sb * dq * e, ATTN)
            self.save(f"{layer}.lse", self.spec.heads * sb * 4, ATTN)
            return True
        s2 = self.spec.heads * self.s * self.s * self.b
        p_attn = self.spec.attn_dropout
        e = self.fe  # autocast: PyTorch's CPU attention math runs in fp32
        if rg_qk:  # q k^T keeps k when q needs a gradient and q when k does; p v keeps v
            if rg_k:
                self.save(f"{layer}.q_s", sb * dq * e, ATTN_COPIES)
            if rg_q:
                self.save(f"{layer}.k_s", sb * dkv * e, ATTN_COPIES)
            self.save(f"{layer}.v_s", sb * dkv * e, ATTN_COPIES)
            if not self.recompute:
                self.save(f"{layer}.softmax", s2 * e, SCORES)
                if p_attn > 0:  # autocast on CPU: the dropout runs on the fp32 probabilities, a float mask
                    self.save(f"{layer}.attn_mask", s2 * (e if self.mask_e > 1 else 1), SCORES)
        if rg_v and not self.recompute:
            self.save(f"{layer}.attn_drop" if p_attn > 0 else f"{layer}.softmax", s2 * e, SCORES)
        return True

    def layer_norm(self, key_in: str, rg_in: bool, trainable: bool) -> bool:
        if rg_in or trainable:
            self.save(key_in, self.sb * self.h * self.fe, NORM)
            self.save(key_in + ".stats", 2 * self.sb * 4, NORM)
            return True
        return False

    def rms_norm(self, key_in: str, rg_in: bool, trainable: bool, out_key: str) -> bool:
        # HF LlamaRMSNorm upcasts to fp32: pow() keeps the fp32 input, the product keeps rsqrt; the weight
        # product keeps the normalised input only when the weight trains
        if rg_in:
            self.save(key_in + (".f32" if self.fe != 4 else ""), self.sb * self.h * 4, NORM)
            self.save(key_in + ".rsqrt", self.sb * 4, NORM)
        if trainable:
            self.save(out_key + ".normed", self.sb * self.h * self.fe, NORM)
        return rg_in or trainable

    def dropout(self, key: str, n_elems: int, rg: bool, p: float, fp32_in: bool = False) -> None:
        if rg and p > 0:
            mask_e = 4 if (fp32_in and self.autocast and self.mask_e > 1) else self.mask_e
            self.save(key, n_elems * mask_e, "dropout masks")


def _embeddings(w: Walk) -> bool:
    """Token ids (and BERT's embedding LayerNorm and dropout); returns whether the hidden state needs a grad."""
    rg = w.full or w.input_grads
    if w.full:
        w.save("ids", 8 * w.sb, IDS)
    if w.spec.family == "bert":
        if w.full:
            w.save("tt_ids", 8 * w.s, IDS)
        w.layer_norm("emb.sum", rg, w.full)
        w.dropout("emb.drop", w.sb * w.h, rg, w.spec.hidden_dropout, fp32_in=True)
    return rg


def _bert_layer(w: Walk, layer: int, x_key: str, rg: bool) -> bool:
    """Post-norm BERT block: q, k, v, attention, o, dropout, LayerNorm, GELU MLP, dropout, LayerNorm."""
    h, f, dq, dkv, p_hid = w.h, w.f, w.dq, w.dkv, w.spec.hidden_dropout
    rq = w.linear("q", x_key, h, dq, rg, f"{layer}.q")
    rk = w.linear("k", x_key, h, dkv, rg, f"{layer}.k")
    rv = w.linear("v", x_key, h, dkv, rg, f"{layer}.v")
    ctx_key = f"{layer}.attn_out" if w.flash else f"{layer}.ctx"
    r_att = w.attention_core(layer, rq, rk, rv, f"{layer}.q", f"{layer}.k", f"{layer}.v", f"{layer}.attn_out")
    ro = w.linear("o", ctx_key, dq, h, r_att, f"{layer}.o")
    w.dropout(f"{layer}.o_drop", w.sb * h, ro, p_hid)
    rg1 = w.layer_norm(f"{layer}.ln1_in", ro or rg, w.full)
    ru = w.linear("up", f"{layer}.Y", h, f, rg1, f"{layer}.up")
    if ru:
        w.save(f"{layer}.gelu_in", w.sb * f * w.e, MLP)
    rd = w.linear("down", f"{layer}.G", f, h, ru, f"{layer}.down")
    w.dropout(f"{layer}.d_drop", w.sb * h, rd, p_hid)
    return w.layer_norm(f"{layer}.ln2_in", rd or rg1, w.full)


def _llama_layer(w: Walk, layer: int, x_key: str, rg: bool) -> bool:
    """Pre-norm LLaMA block: RMSNorm, q, k, v, rotary, attention, o, residual, RMSNorm, SwiGLU MLP, residual."""
    h, f, dq, dkv, sbfe = w.h, w.f, w.dq, w.dkv, w.sb * w.f * w.e
    n_key = f"{layer}.N"
    rn = w.rms_norm(x_key, rg, w.full, n_key)
    rq = w.linear("q", n_key, h, dq, rn, f"{layer}.q")
    rk = w.linear("k", n_key, h, dkv, rn, f"{layer}.k")
    rv = w.linear("v", n_key, h, dkv, rn, f"{layer}.v")
    if rq or rk:
        w.save("rope", 2 * w.s * w.spec.d_head * w.fe, "rotary cos/sin (shared)")
    r_att = w.attention_core(layer, rq, rk, rv, f"{layer}.q_rot", f"{layer}.k_rot", f"{layer}.v",
                             f"{layer}.attn_out")
    ro = w.linear("o", f"{layer}.attn_out", dq, h, r_att, f"{layer}.o")
    rg1 = ro or rg
    m_key = f"{layer}.M"
    r2 = w.rms_norm(f"{layer}.X2", rg1, w.full, m_key)
    rg_g = w.linear("gate", m_key, h, f, r2, f"{layer}.gate")
    rg_u = w.linear("up", m_key, h, f, r2, f"{layer}.up")
    if rg_g:
        w.save(f"{layer}.gate_out", sbfe, MLP)  # silu input
    if rg_u:
        w.save(f"{layer}.silu_out", sbfe, MLP)
    if rg_g:
        w.save(f"{layer}.up_out", sbfe, MLP)
    rd = w.linear("down", f"{layer}.P", f, h, rg_g or rg_u, f"{layer}.down")
    return rd or rg1


def _head(w: Walk, x_key: str, rg: bool) -> None:
    """BERT: pooler, classifier, loss; LLaMA: final RMSNorm, then the LM head's fp32 log-softmax or a classifier."""
    spec, sb, b, h, e = w.spec, w.sb, w.b, w.h, w.e
    loss = b * spec.num_labels * w.fe + 8 * b + 4
    if spec.family == "bert":
        if spec.task == "seq-cls":
            label = "head: pooler, classifier, logits"
            if w.full:  # the pooler reads the first token: a view that keeps the whole last hidden state
                # (autocast: the pooler keeps its own bf16 copy of the first token instead)
                w.save(x_key, sb * h * e, label) if not w.autocast else w.save("pool_in16", b * h * e, label)
            if rg or w.full:
                w.save("pool_tanh", b * h * e, label)
                w.dropout("pool_drop", b * h, True, spec.hidden_dropout)
                if w.autocast:
                    w.save("pool.w16", h * h * 2, W16)
                    w.save("cls.w16", h * spec.num_labels * 2, W16)
            w.save("cls_in", b * h * e, label)
            w.save("loss", loss, IDS)
        return
    w.rms_norm(x_key, rg, w.full, "final")
    if w.autocast and (rg or w.full):
        w.save("head.w16", (w.V if spec.task == "causal-lm" else spec.num_labels) * h * 2, W16)
    if spec.task == "causal-lm":
        if w.full:  # lm_head's input (the norm output; a separate storage from the pre-weight "normed")
            w.save("final.out", sb * h * e, "head: final norm, logits")
        w.save("logsoftmax", sb * w.V * 4, "head: log-softmax of the logits (fp32)")
        w.save("labels", 8 * sb + 4, IDS)
    else:
        w.save("final.out", sb * h * e, "head: final norm, logits")
        w.save("loss", loss, IDS)


def detailed_activations(spec: ModelSpec, plan: MemoryPlan, b: int, s: int, e: int, mask_e: int, attention: str,
                         recompute: bool, autocast: bool = False, input_grads: bool = False,
                         padded: bool = False) -> tuple[float, dict, dict]:
    """Walk one forward pass op by op and record what autograd saves (each storage once); ``autocast`` and
    ``input_grads``: see the module docstring.

    Returns (total bytes, bytes by label, the store {key: (bytes, label)})."""
    w = Walk(spec, plan, b, s, e, mask_e, attention, recompute, autocast, input_grads, padded)
    rg = _embeddings(w)
    layer_fn = _bert_layer if spec.family == "bert" else _llama_layer
    x_key = "0.X"
    for layer in range(spec.n_layers):
        rg = layer_fn(w, layer, x_key, rg)
        x_key = f"{layer + 1}.X"
    _head(w, x_key, rg)
    return w.acts.total(), w.acts.by_label(), w.acts.store


def checkpointed(store: dict, n_layers: int, sbh_e: float) -> tuple[float, dict]:
    """Full activation checkpointing per layer, from the detailed model's per-storage terms.

    Each layer keeps only its input (s b h x e bytes); in the backward pass one layer at a time is rebuilt
    (its own saved tensors, counted once: the largest layer; a layer that saves its own input, key ``"{l}.X"``,
    saves the checkpoint's storage, counted once as the checkpoint); the terms outside the layers (embeddings,
    head, logits, loss, rotary tables) stay as they are."""
    per_layer: dict[int, float] = {}
    outside: dict[str, float] = {}
    seen: set = set()
    for key, (nb, label) in store.items():
        head = key.split(".", 1)[0]
        if head.isdigit() and int(head) < n_layers:
            if key == f"{head}.X":
                continue  # the layer's input: its checkpoint
            if key.startswith(f"{head}.X.") and key.endswith("16"):
                # autocast's bf16 copies of the layer's input: in the rebuild the input is a leaf that requires
                # a gradient, which autocast casts once and caches, so q, k and v share one copy
                key = f"{head}.X.16"
                if key in seen:
                    continue
                seen.add(key)
            per_layer[int(head)] = per_layer.get(int(head), 0.0) + nb
        else:
            outside[label] = outside.get(label, 0.0) + nb
    rebuilt = max(per_layer.values(), default=0.0)
    terms = dict(outside)
    terms["checkpoints: every layer's input (L x s b h)"] = n_layers * sbh_e
    terms["one layer rebuilt in the backward pass"] = rebuilt
    return sum(terms.values()), terms


def korthikanti_activations(spec: ModelSpec, b: int, s: int, e: int, recompute: bool,
                            checkpointing: bool = False) -> float:
    """s b h (34 + 5 a s / h) bytes per layer at 16-bit (34 s b h with selective recomputation), x e/2.

    With full checkpointing: 2 s b h per layer (the layer input, 16-bit) plus one layer rebuilt at a time."""
    h, a = spec.hidden, spec.heads
    per = s * b * h * (34 + (0 if recompute else 5 * a * s / h))
    if checkpointing:
        return (spec.n_layers * 2 * s * b * h + per) * e / 2
    return spec.n_layers * per * e / 2
