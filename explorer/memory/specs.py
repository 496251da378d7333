"""Model specs: the shape of a transformer, enough to count its parameters and activations without weights.

- :class:`ModelSpec`: layers, hidden size, heads (grouped-query: kv heads), MLP width, vocabulary, task head;
  ``target_shapes`` lists every linear layer inside the blocks like ``explorer.targets.find_targets``.
- :data:`PUBLISHED`: LLaMA-7B/13B/65B, Mistral-7B and GPT-3 175B from their published configs.
- :func:`spec_for`: a PUBLISHED key, a bundled config-only model (``explorer/configs``: llama-2-7b ... bert-large)
  or a registry model by name; :func:`spec_from_config` / :func:`spec_from_model` read any Hugging Face config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from explorer.errors import KnobError


@dataclass
class ModelSpec:
    """The shape of a transformer, enough to count its parameters and activations."""

    name: str
    family: str  # "llama" (RMSNorm, rotary, SwiGLU, GQA; also Mistral) or "bert" (LayerNorm, GELU, biases)
    task: str  # "causal-lm" or "seq-cls"
    n_layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie_embeddings: bool = False
    num_labels: int = 2
    max_positions: int = 512  # bert: learned position embeddings
    type_vocab: int = 2  # bert: token type embeddings
    head_dim: int = 0  # 0 = hidden / heads
    attn_dropout: float = 0.0
    hidden_dropout: float = 0.0
    source: str = ""
    qkv_bias: bool = False  # llama family: biases on q, k, v (Qwen2; attention_bias)
    o_bias: bool = False  # llama family: a bias on o too (attention_bias: LLaMA, Gemma and Qwen3 put it on all four)
    mlp_bias: bool = False  # llama family: biases on gate, up and down (LLaMA's mlp_bias)
    qk_norm: bool = False  # llama family: an RMSNorm over the head dim on q and on k in every layer (Qwen3)
    conv1d: bool = False  # GPT-2: Conv1D blocks (fused c_attn); counted like BERT, only full fine-tuning applies

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def target_shapes(self, types=None) -> list[tuple[int, str, int, int]]:
        """(layer, type, d_out, d_in) of every linear layer inside the blocks, like ``find_targets``."""
        h, f, dq, dkv = self.hidden, self.intermediate, self.heads * self.d_head, self.kv_heads * self.d_head
        if self.family == "bert":
            shapes = dict(q=(h, h), k=(h, h), v=(h, h), o=(h, h), up=(f, h), down=(h, f))
        else:
            shapes = dict(q=(dq, h), k=(dkv, h), v=(dkv, h), o=(h, dq), gate=(f, h), up=(f, h), down=(h, f))
        order = ["q", "k", "v", "o", "gate", "up", "down"]
        types = [t for t in order if t in shapes and (types is None or t in types)]
        return [(layer, t, *shapes[t]) for layer in range(self.n_layers) for t in types]

    def param_groups(self) -> dict[str, int]:
        """Parameter counts by part: blocks' linear weights, embeddings, norms/biases, head."""
        h, L, V = self.hidden, self.n_layers, self.vocab
        lin = sum(o * i for _, _, o, i in self.target_shapes())
        out = dict(block_linear=lin)
        if self.family == "bert":
            f = self.intermediate
            out["embeddings"] = V * h + self.max_positions * h + self.type_vocab * h
            out["norms_biases"] = 2 * h + L * (4 * h + f + h + 2 * 2 * h)
            if self.task == "seq-cls":
                out["pooler"] = h * h + h
                out["head"] = h * self.num_labels + self.num_labels
            elif self.tie_embeddings:  # GPT-2: the LM head is the token embedding
                out["head"] = 0
            else:  # BertForMaskedLM-like head is not modelled; count an untied decoder
                out["head"] = V * h + V
        else:
            out["embeddings"] = V * h
            out["norms_biases"] = L * 2 * h + h
            if self.qkv_bias:
                dq, dkv = self.heads * self.d_head, self.kv_heads * self.d_head
                out["norms_biases"] += L * (dq + 2 * dkv)
            if self.o_bias:
                out["norms_biases"] += L * h
            if self.mlp_bias:
                out["norms_biases"] += L * (2 * self.intermediate + h)
            if self.qk_norm:
                out["norms_biases"] += L * 2 * self.d_head
            if self.task == "seq-cls":
                out["head"] = h * self.num_labels
            else:
                out["head"] = 0 if self.tie_embeddings else V * h
        return out

    def n_params(self) -> int:
        return int(sum(self.param_groups().values()))

    def head_params(self) -> int:
        """The new task head that trains fully in every method (seq-cls only)."""
        return self.param_groups().get("head", 0) if self.task == "seq-cls" else 0

    def buffer_bytes(self) -> int:
        """Non-parameter buffers of the Hugging Face implementation (position/token-type ids, rotary freqs; GPT-2
        has none in transformers 5)."""
        if self.conv1d:
            return 0
        if self.family == "bert":
            return 2 * 8 * self.max_positions
        return 2 * 4 * (self.d_head // 2)

    def to_dict(self):
        return asdict(self)

    def validate(self) -> "ModelSpec":
        """A custom shape must make sense; raises KnobError naming the field."""
        for k in ("n_layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "num_labels"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1 or v > 10 ** 7:
                raise KnobError(f"model config: {k} must be a whole number from 1 to 10,000,000 (got {v})")
        if self.family not in ("llama", "bert"):
            raise KnobError(f"model config: family must be llama or bert (got '{self.family}')")
        if self.task not in ("causal-lm", "seq-cls"):
            raise KnobError(f"model config: task must be causal-lm or seq-cls (got '{self.task}')")
        if not self.head_dim and self.hidden % self.heads:
            raise KnobError(f"model config: hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.heads % self.kv_heads:
            raise KnobError(f"model config: heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        return self


# Published configurations (the models' config.json on the hub; LLaMA: Touvron et al. 2023, Table 2)
PUBLISHED: dict[str, ModelSpec] = {
    "llama-7b": ModelSpec("LLaMA-7B", "llama", "causal-lm", 32, 4096, 32, 32, 11008, 32000,
                          source="huggyllama/llama-7b config.json"),
    "llama-13b": ModelSpec("LLaMA-13B", "llama", "causal-lm", 40, 5120, 40, 40, 13824, 32000,
                           source="huggyllama/llama-13b config.json"),
    "llama-65b": ModelSpec("LLaMA-65B", "llama", "causal-lm", 80, 8192, 64, 64, 22016, 32000,
                           source="huggyllama/llama-65b config.json"),
    "mistral-7b": ModelSpec("Mistral-7B", "llama", "causal-lm", 32, 4096, 32, 8, 14336, 32000,
                            source="mistralai/Mistral-7B-v0.1 config.json"),
    # GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, d_model 12,288, 96 heads, d_ff = 4 d_model, context
    # 2,048, GPT-2's 50,257-token BPE, tied embeddings; a GPT block counted like BERT's (LayerNorm, GELU, biases)
    "gpt3-175b": ModelSpec("GPT-3 175B", "bert", "causal-lm", 96, 12288, 96, 96, 4 * 12288, 50257,
                           tie_embeddings=True, max_positions=2048, type_vocab=0,
                           source="Brown et al. 2020 (arXiv 2005.14165), Table 2.1"),
}


def spec_from_config(cfg, task: str, name: str = "") -> ModelSpec:
    """A ModelSpec from a Hugging Face config (BERT-like, LLaMA-like or GPT-2) and the task head."""
    mt = getattr(cfg, "model_type", "")
    if mt == "gpt2":
        # GPT-2 has the parameter count of a BERT block with no token types and a tied head (Conv1D layers:
        # c_attn = q, k, v fused, c_proj, c_fc, mlp c_proj, all with biases; LayerNorms; learned positions)
        h = int(cfg.n_embd)
        return ModelSpec(name=name or "gpt2", family="bert", task=task, n_layers=int(cfg.n_layer), hidden=h,
                         heads=int(cfg.n_head), kv_heads=int(cfg.n_head), intermediate=int(cfg.n_inner or 4 * h),
                         vocab=int(cfg.vocab_size), tie_embeddings=True, max_positions=int(cfg.n_positions),
                         type_vocab=0, attn_dropout=float(cfg.attn_pdrop), hidden_dropout=float(cfg.resid_pdrop),
                         conv1d=True, source="read from the model's config (GPT-2: Conv1D blocks counted like "
                         "BERT's; activations approximated as BERT-like)").validate()
    family = "bert" if mt in ("bert", "roberta", "xlm-roberta", "electra") else "llama"
    try:
        heads = int(cfg.num_attention_heads)
        spec = ModelSpec(
            name=name or getattr(cfg, "name_or_path", "") or mt, family=family, task=task,
            n_layers=int(cfg.num_hidden_layers), hidden=int(cfg.hidden_size), heads=heads,
            kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
            intermediate=int(cfg.intermediate_size), vocab=int(cfg.vocab_size),
            tie_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)) and family == "llama",
            num_labels=int(getattr(cfg, "num_labels", 2) or 2),
            max_positions=int(getattr(cfg, "max_position_embeddings", 512) or 512),
            type_vocab=int(getattr(cfg, "type_vocab_size", 2) or 2),
            head_dim=int(getattr(cfg, "head_dim", 0) or 0) if family == "llama" else 0,
            attn_dropout=float(getattr(cfg, "attention_probs_dropout_prob", None)
                               or getattr(cfg, "attention_dropout", 0.0) or 0.0),
            hidden_dropout=float(getattr(cfg, "hidden_dropout_prob", 0.0) or 0.0),
            qkv_bias=(mt == "qwen2") or (family == "llama" and bool(getattr(cfg, "attention_bias", False))),
            o_bias=family == "llama" and bool(getattr(cfg, "attention_bias", False)),
            mlp_bias=family == "llama" and bool(getattr(cfg, "mlp_bias", False)),
            qk_norm=mt == "qwen3",
            source="read from the model's config")
    except (AttributeError, TypeError, ValueError) as e:
        raise KnobError(f"cannot read a transformer shape from this config ({mt or 'unknown type'}): {e}") from None
    if mt not in ("bert", "roberta", "xlm-roberta", "electra", "llama", "mistral", "qwen2", "qwen3", "gemma"):
        spec.source += f" (model type '{mt}' approximated as {family}-like)"
    emb = getattr(cfg, "embedding_size", None)  # ELECTRA-small: 128-wide embeddings projected to the hidden size
    if emb is not None and emb != spec.hidden:
        spec.source += f" (embedding size {emb} counted as the hidden size {spec.hidden})"
    return spec.validate()


def spec_from_model(model: nn.Module, name: str = "") -> ModelSpec:
    """Read a ModelSpec from a loaded Hugging Face model (a PeftModel is unwrapped)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(inner, "config", None)
    if cfg is None:
        raise KnobError("this model has no Hugging Face config to read a shape from")
    cls_name = type(inner).__name__
    task = "causal-lm" if ("CausalLM" in cls_name or "LMHead" in cls_name) else "seq-cls"
    return spec_from_config(cfg, task, name)


def spec_for(name: str, num_labels: int = 2) -> ModelSpec:
    """A published config (PUBLISHED key) or a registry model by name (read from its config, weights not needed
    for the tiny models and minilm)."""
    if name in PUBLISHED:
        return PUBLISHED[name]
    from explorer import model_configs, model_files, models

    from pathlib import Path

    bundled = name in model_configs.config_models()
    folder = not bundled and name not in models.REGISTRY and (Path(name).expanduser() / "config.json").is_file()
    if bundled or folder:  # a bundled config or a folder with a config.json: the config is all it takes
        cfg = model_configs.read_config(name)
        kind = model_configs.config_kind(cfg)
        if kind == "seq-cls":
            cfg.num_labels = num_labels
        spec = spec_from_config(cfg, kind, name)
        spec.source = (model_configs.config_model_source(name) if bundled else
                       f"config.json of {Path(name).expanduser().resolve()} (read on the meta device)") or spec.source
        return spec

    if name == "tiny-bert":
        return spec_from_model(models.build_tiny_bert(num_labels=num_labels), name)
    if name == "tiny-llama":
        return spec_from_model(models.build_tiny_llama(), name)
    if name == "minilm":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model_files.minilm_folder())
        cfg.num_labels = num_labels
        return spec_from_config(cfg, "seq-cls", name)
    loaded = models.load_model(name, num_labels=num_labels)
    return spec_from_model(loaded.model, name)
