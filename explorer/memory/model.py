"""Memory: measured (a byte account per training step) and analytic (the memory model).

Measured -- use it in any training loop, on any device::

    from explorer.memory.model import MemoryAccountant

    acct = MemoryAccountant(model, optimizer)      # optimizer may be None / set later
    for batch in batches:
        with acct.forward_scope():                 # resets the CUDA peak, counts saved activations
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        rec = acct.snapshot()                      # BEFORE optimizer.zero_grad(): it counts the .grad tensors
        optimizer.zero_grad(set_to_none=True)

``rec`` is a plain dict (JSON-ready), all sizes in bytes::

    weights_bytes      every parameter and buffer of the model, shared/tied storage counted once
    weights_by_dtype   {"float32": bytes, "int32": bytes, ...}
    trainable_params   number of parameters with requires_grad (tied once)
    trainable_bytes    their bytes
    grads_bytes        the .grad tensors that exist (each storage once)
    optimizer_bytes    every tensor in optimizer.state (each storage once), Adam's scalar ``step`` included
    optimizer_scalar_bytes  the part of optimizer_bytes held in 0-d tensors (Adam's ``step`` counters)
    activations_bytes  tensors saved for backward during the forward scope that are still alive when the scope
                       ends, each storage once, parameters and buffers excluded (they are weights)
    activations_packed_bytes  the same, counting also saved tensors whose graph was already freed inside
                       the forward (e.g. peft DoRA's throw-away lora_weight graph); >= activations_bytes
    total_bytes        weights + grads + optimizer + activations (the memory model's sum: the terms do not all
                       peak at the same instant, so it is an upper bound of the tensors' own peak)
    cuda_peak_bytes    torch.cuda.max_memory_allocated() since the scope began (None off CUDA)
    rss_bytes          resident set size of this process (psutil), includes Python, libraries, allocator caches

``acct.set_optimizer(opt)`` swaps the optimizer (SMT: after the warm-up); the model is walked again on every
snapshot, so replaced modules are seen.  ``account(model, optimizer)`` gives the static part alone.

Analytic -- :func:`estimate` implements the memory model of ``METHODS.md``::

    spec = PUBLISHED["llama-65b"]                  # or spec_from_model(model) / ModelSpec(...)
    est = estimate(spec, "full", precision="bf16-mixed", batch=1, seq_len=512)
    static = est["weights_bytes"] + est["grads_bytes"] + est["optimizer_bytes"]
    fmt_bytes(static, "GB")                        # '1,044.6 GB' (10^9 bytes; 16 B/param); "GiB" gives 2^30

Options: ``optimizer`` adamw (8 B/param of fp32 moments) | adamw-8bit (2 B) | sgd; ``checkpointing`` (full
activation checkpointing per layer: each layer keeps its input, one layer is rebuilt at a time in the backward
pass); ``zero`` 0-3 and ``gpus`` (ZeRO: stage 1 shards the optimizer state over the GPUs, 2 also the gradients,
3 also the weights; the terms are per GPU, ``all_gpus_total_bytes`` is x gpus).  ``spec`` may also be the name of
a bundled config-only model (``explorer/configs``: llama-2-7b ... bert-large); PUBLISHED has gpt3-175b too.

Terms: weights (fp32 4 B/param; bf16-mixed 2 B; 4bit: 0.5 B for the linear weights inside the blocks plus
QLoRA's double-quantisation constants, 2 B for the rest) + gradients (trainable only) + optimizer state
(trainable only: AdamW 8 B of fp32 moments, plus a 4 B fp32 master copy in bf16-mixed / 4bit) + activations.
Activations come from one of two models (both are always reported):

* ``korthikanti``: s b h (34 + 5 a s / h) bytes per layer for 16-bit activations (34 s b h with selective
  recomputation), Korthikanti et al. arXiv 2205.05198; doubled for fp32.  It assumes a GPT block (4h MLP,
  dropout, materialised attention) and leaves out embeddings, the head and the logits.
* ``detailed`` (the default): the same bookkeeping done tensor by tensor for the real block (BERT: GELU MLP of
  width f, dropout masks; LLaMA: RMSNorm, rotary, SwiGLU of width f, grouped-query attention), plus the
  embeddings, the head, the logits and the loss, plus what each method adds (LoRA's r-wide activations, DoRA's
  extra base output, ...).  Every term is listed in ``est["activation_terms"]``.  This is the model the test
  checks against the measured byte account (within 15 %; on tiny-bert, tiny-llama and minilm it agrees to the
  byte for every method but SMT).

Where the detailed model approximates (and says so in ``est["notes"]``):
- SMT: which matrices the selected blocks fall in depends on the warm-up; the input columns kept for backward
  assume the blocks spread evenly over the targets, each in its own column block (an upper bound; +3 % on the
  tiny models).  The warm-up itself (full mode) costs full fine-tuning memory; figures are the steady state.
- Attention: "auto" picks PyTorch's fused kernels (no s^2 scores kept) on CUDA and on CPU without attention
  dropout, the materialised path (scores, dropout mask, dropped scores) on CPU with dropout, as measured with
  ``sdpa`` in transformers 5; ``recompute=True`` drops the s^2 terms (selective recomputation).
- Dropout masks are 1 byte on CUDA and a full float on CPU (PyTorch's CPU dropout keeps a float mask).
- bf16-mixed / 4bit are modelled as 16-bit weights and activations with fp32 optimizer state (not autocast,
  which would also keep 16-bit copies of fp32 weights); adapter buffers are taken as 16-bit there too.
- Masked-LM BERT heads and architectures other than BERT-like and LLaMA-like are not modelled in detail.

Loops that zero the gradients before ``snapshot`` call ``acct.after_backward()`` after ``loss.backward()``.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

# ============================================================================ measured


def _storage_key(t: torch.Tensor):
    try:
        st = t.untyped_storage()
        return (t.device.type, t.device.index, st.data_ptr()), st.nbytes()
    except Exception:  # noqa: BLE001 - sparse / meta / wrapper tensors
        return None, t.numel() * t.element_size()


def _unique_tensor_bytes(tensors) -> tuple[int, dict]:
    """Bytes of the distinct storages behind ``tensors`` and the same split by dtype."""
    seen, total, by_dtype = set(), 0, {}
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        key, nb = _storage_key(t)
        if key is not None:
            if key in seen or key[2] == 0:
                continue
            seen.add(key)
        total += nb
        dt = str(t.dtype).replace("torch.", "")
        by_dtype[dt] = by_dtype.get(dt, 0) + nb
    return total, by_dtype


def _model_tensors(model: nn.Module):
    for _, p in model.named_parameters(remove_duplicate=False):
        yield p
    for _, b in model.named_buffers(remove_duplicate=False):
        yield b


def _state_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _state_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _state_tensors(v)


def rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001
        return None


def account(model: nn.Module, optimizer=None) -> dict:
    """The static part of the byte account: weights, trainable, grads, optimizer state."""
    weights, by_dtype = _unique_tensor_bytes(_model_tensors(model))
    seen, n_train, train_bytes, grads = set(), 0, 0, []
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            n_train += p.numel()
            train_bytes += p.numel() * p.element_size()
        if p.grad is not None:
            grads.append(p.grad)
    grads_bytes, _ = _unique_tensor_bytes(grads)
    opt_bytes = opt_scalar = 0
    if optimizer is not None:
        tensors = list(_state_tensors(list(optimizer.state.values())))
        opt_bytes, _ = _unique_tensor_bytes(tensors)
        opt_scalar, _ = _unique_tensor_bytes(t for t in tensors if t.dim() == 0)
    return dict(weights_bytes=int(weights), weights_by_dtype=by_dtype, trainable_params=int(n_train),
                trainable_bytes=int(train_bytes), grads_bytes=int(grads_bytes), optimizer_bytes=int(opt_bytes),
                optimizer_scalar_bytes=int(opt_scalar))


class MemoryAccountant:
    """Per-step byte account of one model + optimizer (see the module docstring for the protocol)."""

    def __init__(self, model: nn.Module, optimizer=None, device=None):
        self.model = model
        self.optimizer = optimizer
        if device is None:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
        self.device = torch.device(device)
        self._records: list = []  # (weakref to the packed tensor, key, nbytes)
        self._act_live = 0
        self._act_packed = 0
        self._step_open = False
        self._grads_after_backward: int | None = None
        self.history: list[dict] = []

    # --- protocol -------------------------------------------------------------
    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def begin_step(self) -> None:
        """Reset the CUDA peak (``forward_scope`` calls it when a step is not open yet)."""
        self._step_open = True
        self._grads_after_backward = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)

    @contextmanager
    def forward_scope(self):
        """Count the tensors autograd saves for backward while the forward runs."""
        if not self._step_open:
            self.begin_step()
        excluded = set()
        for t in _model_tensors(self.model):
            key, _ = _storage_key(t)
            if key is not None:
                excluded.add(key)
        records = []

        def pack(t):
            # a detached alias (same storage, no grad_fn): returning ``t`` itself would make a saved *output*
            # hold its own grad_fn, a reference cycle through C++ that leaks when a graph is dropped unused
            d = t.detach()
            key, nb = _storage_key(t)
            if key is not None and key not in excluded:
                try:
                    ref = weakref.ref(d)
                except TypeError:  # pragma: no cover
                    ref = None
                records.append((ref, key, nb))
            return d

        def unpack(t):
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield self
        live, packed = {}, {}
        for ref, key, nb in records:
            packed[key] = max(packed.get(key, 0), nb)
            if ref is None or ref() is not None:
                live[key] = max(live.get(key, 0), nb)
        self._act_live = sum(live.values())
        self._act_packed = sum(packed.values())
        self._records = []

    def after_backward(self) -> None:
        """Optional: remember the gradient bytes now (for loops that zero the grads before ``snapshot``)."""
        self._grads_after_backward = account(self.model)["grads_bytes"]

    def snapshot(self) -> dict:
        rec = account(self.model, self.optimizer)
        if self._grads_after_backward is not None:
            rec["grads_bytes"] = max(rec["grads_bytes"], self._grads_after_backward)
        rec["activations_bytes"] = int(self._act_live)
        rec["activations_packed_bytes"] = int(self._act_packed)
        rec["total_bytes"] = int(rec["weights_bytes"] + rec["grads_bytes"] + rec["optimizer_bytes"]
                                 + rec["activations_bytes"])
        rec["cuda_peak_bytes"] = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            rec["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        rec["rss_bytes"] = rss_bytes()
        rec["device"] = str(self.device)
        self._step_open = False
        self._grads_after_backward = None
        self.history.append(rec)
        return rec

    def peak(self, key: str = "total_bytes", skip: int = 0) -> int | None:
        """The largest value of ``key`` over the recorded steps (``skip`` the first few, e.g. SMT's warm-up)."""
        vals = [r[key] for r in self.history[skip:] if r.get(key) is not None]
        return max(vals) if vals else None


# ============================================================================ analytic

from explorer.methods.base import KnobError  # noqa: E402  (a ValueError with a one-line user message)

GB = 10 ** 9
GIB = 2 ** 30


def fmt_bytes(n: float | None, unit: str = "GB", digits: int = 1) -> str:
    """``n`` bytes as a string with its unit named: GB = 10^9 bytes, GiB = 2^30, also MB/MiB/KB/KiB."""
    if n is None:
        return "n/a"
    scale = {"GB": GB, "GiB": GIB, "MB": 10 ** 6, "MiB": 2 ** 20, "KB": 10 ** 3, "KiB": 2 ** 10, "B": 1}
    if unit not in scale:
        raise KnobError(f"unit must be one of {', '.join(scale)}")
    return f"{n / scale[unit]:,.{digits}f} {unit}"


def to_gb(n: float) -> float:
    """Bytes -> GB (10^9 bytes)."""
    return n / GB


def to_gib(n: float) -> float:
    """Bytes -> GiB (2^30 bytes)."""
    return n / GIB


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
    qkv_bias: bool = False  # llama family: biases on q, k, v (Qwen2)
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
        """Non-parameter buffers of the Hugging Face implementation (position/token-type ids, rotary freqs)."""
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
            source="read from the model's config")
    except (AttributeError, TypeError, ValueError) as e:
        raise KnobError(f"cannot read a transformer shape from this config ({mt or 'unknown type'}): {e}") from None
    if mt not in ("bert", "roberta", "xlm-roberta", "electra", "llama", "mistral", "qwen2", "qwen3", "gemma"):
        spec.source += f" (model type '{mt}' approximated as {family}-like)"
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
    from explorer import models

    if name in models.config_models():  # bundled config-only models: the config is all it takes
        cfg = models.read_config(name)
        kind = models.config_kind(cfg)
        if kind == "seq-cls":
            cfg.num_labels = num_labels
        spec = spec_from_config(cfg, kind, name)
        spec.source = models.config_model_source(name) or spec.source
        return spec

    if name == "tiny-bert":
        return spec_from_model(models.build_tiny_bert(num_labels=num_labels), name)
    if name == "tiny-llama":
        return spec_from_model(models.build_tiny_llama(), name)
    if name == "minilm":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(models.minilm_folder())
        cfg.num_labels = num_labels
        return spec_from_config(cfg, "seq-cls", name)
    loaded = models.load_model(name, num_labels=num_labels)
    return spec_from_model(loaded.model, name)


PRECISIONS = ("fp32", "bf16-mixed", "4bit")
ACTIVATION_MODELS = ("detailed", "korthikanti")

# QLoRA (arXiv 2305.14314): NF4 with double quantisation costs 0.127 bits per parameter in constants
_Q4_CONST_BYTES = 0.127 / 8


@dataclass
class _Plan:
    """What a method does to a ModelSpec, from the same formulas as the method modules."""

    method: str
    knobs: dict
    kinds: dict = field(default_factory=dict)  # target type -> kind of the linear layer
    trainable: int = 0
    trainable_parts: dict = field(default_factory=dict)
    extra_float: int = 0  # frozen adapter tensors (float), elements
    extra_index_bytes: int = 0  # int32 index buffers, bytes
    head_copy: int = 0  # peft modules_to_save keeps the original head too
    per_target: dict = field(default_factory=dict)  # type -> dict(...) for activations
    notes: list = field(default_factory=list)


def _plan(spec: ModelSpec, method: str, knobs: dict) -> _Plan:
    from explorer.methods import get_method, validate_knobs

    info = get_method(method)
    k = validate_knobs(info.knobs, dict(knobs or {}), method)
    plan = _Plan(method, k)
    N = spec.n_params()
    head = spec.head_params()
    if method == "full":
        plan.trainable = N
        plan.trainable_parts = dict(all=N)
        plan.kinds = {t: "trainable" for t in ("q", "k", "v", "o", "gate", "up", "down")}
        return plan
    if spec.conv1d:
        raise KnobError(f"{method}: this model (GPT-2 style) builds its blocks from Conv1D layers (c_attn fuses "
                        "q, k and v), which the PEFT methods here do not target; only full fine-tuning applies")
    shapes = spec.target_shapes(k["targets"])
    if not shapes:
        raise KnobError(f"{method}: none of the targets {', '.join(k['targets'])} exist in a {spec.family} model")
    types = sorted({t for _, t, _, _ in shapes}, key=["q", "k", "v", "o", "gate", "up", "down"].index)
    one = {t: (o, i) for _, t, o, i in shapes}
    L = spec.n_layers
    if method in ("lora", "dora"):
        r = k["rank"]
        n = sum(r * (i + o) + (o if method == "dora" else 0) for _, _, o, i in shapes)
        plan.trainable_parts = dict(adapters=n, head=head)
        plan.kinds = {t: method for t in types}
        plan.per_target = {t: dict(rank=r, dropout=k["dropout"]) for t in types}
        plan.head_copy = head
        if head:
            plan.notes.append("peft modules_to_save keeps a frozen copy of the original head besides the trained "
                              "one (counted in weights).")
    elif method == "lora-sp":
        r, fr = k["rank"], k["freeze"]
        n = 0
        for _, _, o, i in shapes:
            na, nb = int(round((1 - fr) * r * i)), int(round((1 - fr) * o * r))
            n += na + nb
            plan.extra_float += r * i + o * r  # a0, b0 buffers hold every entry (frozen values)
            plan.extra_index_bytes += 4 * (na + nb)
        plan.trainable_parts = dict(adapters=n, head=head)
        plan.kinds = {t: "lora-sp" for t in types}
        plan.per_target = {t: dict(rank=r, na=int(round((1 - fr) * r * one[t][1])),
                                   nb=int(round((1 - fr) * one[t][0] * r))) for t in types}
    elif method == "tied-lora":
        from explorer.methods.tied_lora import _group_key, expected_count, resolve_switches
        from explorer.targets import Target

        sw = resolve_switches(k)
        r = k["rank"]
        tg = [Target(f"{layer}.{t}", layer, t, o, i) for layer, t, o, i in shapes]
        n = expected_count(tg, r, sw)
        # every tensor of A, B, u, v exists; the frozen ones are buffers
        groups: dict[str, dict] = {}
        for _, t, o, i in shapes:
            groups.setdefault(_group_key(t), {})[t] = (o, i)
        total = 0
        for g in groups.values():
            d_out = sum(s[0] for s in g.values())
            d_in = next(iter(g.values()))[1]
            n_ab = 1 if sw["tied"] else L
            total += n_ab * (r * d_in + d_out * r) + L * (r + d_out)
        plan.extra_float = total - n
        plan.trainable_parts = dict(adapters=n, head=head)
        plan.kinds = {t: "tied" for t in types}
        plan.per_target = {t: dict(rank=r, first_in_group=(t == next(iter(groups[_group_key(t)]))), **sw)
                           for t in types}
    elif method == "smt":
        from explorer.methods.smt import block_budget, resolve_block_size

        b = resolve_block_size(k["block_size"], [(o, i) for _, _, o, i in shapes])
        if b <= 0 or any(o % b or i % b for _, _, o, i in shapes):
            raise KnobError(f"smt: no block size divides every target of {spec.name}; set block_size")
        total_blocks = sum((o // b) * (i // b) for _, _, o, i in shapes)
        nb = max(1, min(block_budget(k, N, b, total_blocks)[0], total_blocks))
        n = nb * b * b
        plan.trainable_parts = dict(blocks=n, head=head)
        plan.extra_index_bytes = 4 * 3 * nb + 4 * min(nb, sum(i // b for _, _, _, i in shapes))
        plan.kinds = {t: "blocks" for t in types}
        # the selection is data-dependent: assume the blocks spread evenly over the target matrices
        per_matrix = nb / len(shapes)
        plan.per_target = {t: dict(block=b, ucols=min(math.ceil(per_matrix), one[t][1] // b)) for t in types}
        plan.notes.append(f"SMT: {nb} blocks of {b}x{b}; which matrices they fall in depends on the warm-up, so the "
                          "input columns saved for backward assume the blocks spread evenly over the targets "
                          "(each matrix's blocks in distinct column blocks: an upper bound).")
        plan.notes.append("SMT warm-up (full mode) costs full fine-tuning memory plus an fp32 gradient sum per "
                          "target for its warm-up steps; figures here are the steady state after selection.")
    elif method == "sparta":
        from explorer.methods.sparta import budget

        counts, notes = budget(k, N, head, [o * i for _, _, o, i in shapes])
        n = sum(counts)
        if n <= 0:
            raise KnobError("sparta: the budget selects no entries (sparsity 1.0 or density 0)")
        plan.notes.extend(notes)
        plan.trainable_parts = dict(entries=n, head=head)
        plan.extra_index_bytes = 8 * n  # int32 row and column per entry
        plan.kinds = {t: "entries" for t in types}
    else:  # pragma: no cover - get_method already checked
        raise KnobError(method)
    plan.trainable = int(sum(plan.trainable_parts.values()))
    return plan


class _Acts:
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


def _detailed_activations(spec: ModelSpec, plan: _Plan, b: int, s: int, e: int, mask_e: int, attention: str,
                          recompute: bool) -> tuple[float, dict]:
    """Walk one forward pass op by op and record what autograd saves (each storage once).

    Rules (PyTorch's): a linear layer saves its input only when its weight trains; an op saves anything only
    when one of its inputs requires grad; parameters and buffers are weights, not activations.
    """
    A = _Acts()
    h, f, V = spec.hidden, spec.intermediate, spec.vocab
    dq, dkv = spec.heads * spec.d_head, spec.kv_heads * spec.d_head
    a = spec.heads
    sb = s * b
    full = plan.method == "full"
    p_attn = spec.attn_dropout
    p_hid = spec.hidden_dropout
    flash = attention == "flash"

    def linear(layer, t, key_in, d_in, d_out, rg_in, out_key):
        kind = plan.kinds.get(t, "frozen")
        pt = plan.per_target.get(t, {})
        x_bytes = sb * d_in * e
        if kind == "frozen":
            return rg_in
        if kind == "trainable":
            A.save(key_in, x_bytes, "linear inputs")
            return True
        if kind in ("lora", "dora"):
            r = pt["rank"]
            if pt.get("dropout", 0) > 0:  # peft: each target's own dropout (mask only if x needs a gradient)
                if rg_in:
                    A.save(f"{out_key}.lora_drop_mask", sb * d_in * mask_e, "LoRA: adapter dropout")
                A.save(f"{out_key}.lora_drop_out", sb * d_in * e, "LoRA: adapter dropout")
            else:
                A.save(key_in, x_bytes, "linear inputs")
            A.save(f"{out_key}.lora_h", sb * r * e, "LoRA: A x (r wide)")
            if kind == "dora":
                # peft DoRA: (m/||W+dW|| - 1) * base_out + m/||W+dW|| * lora_out; both products save their
                # (s b d_out) operand, plus the d_out-sized norm vectors
                A.save(f"{out_key}.dora_base", sb * d_out * e, "DoRA: base output and LoRA output")
                A.save(f"{out_key}.dora_lora", sb * d_out * e, "DoRA: base output and LoRA output")
                A.save(f"{out_key}.dora_vec", 3 * d_out * e, "DoRA: base output and LoRA output")
            return True
        if kind == "lora-sp":
            r = pt["rank"]
            A.save(key_in, x_bytes, "linear inputs")
            if rg_in:  # F.linear(x, A_eff) keeps the assembled A when x needs a gradient
                A.save(f"{out_key}.a_eff", r * d_in * 4, "LoRA-SP: A x, assembled A and B, indices")
            A.save(f"{out_key}.lora_h", sb * r * e, "LoRA-SP: A x, assembled A and B, indices")
            A.save(f"{out_key}.b_eff", d_out * r * 4, "LoRA-SP: A x, assembled A and B, indices")
            A.save(f"{out_key}.idx", 8 * (pt["na"] + pt["nb"]), "LoRA-SP: A x, assembled A and B, indices")
            return True
        if kind == "tied":
            r = pt["rank"]
            if pt["train_A"]:
                A.save(key_in, x_bytes, "linear inputs")
            rg_h = rg_in or pt["train_A"]
            if pt["train_u"]:
                A.save(f"{out_key}.h", sb * r * e, "Tied-LoRA: A x, u A x, v-scaled update")
            rg_h = rg_h or pt["train_u"]
            if pt["train_B"]:
                A.save(f"{out_key}.hu", sb * r * e, "Tied-LoRA: A x, u A x, v-scaled update")
            rg_upd = rg_h or pt["train_B"]
            if pt["train_v"]:
                A.save(f"{out_key}.upd", sb * d_out * e, "Tied-LoRA: A x, u A x, v-scaled update")
            return rg_upd or pt["train_v"] or rg_in
        if kind == "entries":  # the custom function always keeps its input
            A.save(key_in, x_bytes, "linear inputs")
            return True
        if kind == "blocks":  # a compact copy of the input columns the selected blocks read
            A.save(f"{out_key}.xc", sb * pt["ucols"] * pt["block"] * e, "SMT: input column blocks")
            return True
        raise AssertionError(kind)

    def attention_core(layer, rg_q, rg_k, rg_v, q_key, k_key, v_key, out_key):
        rg_qk = rg_q or rg_k
        if not (rg_qk or rg_v):
            return False
        if flash:
            A.save(q_key, sb * dq * e, "attention q, k, v, output")
            A.save(k_key, sb * dkv * e, "attention q, k, v, output")
            A.save(v_key, sb * dkv * e, "attention q, k, v, output")
            A.save(out_key, sb * dq * e, "attention q, k, v, output")
            A.save(f"{layer}.lse", a * sb * 4, "attention q, k, v, output")
            return True
        s2 = a * s * s * b
        if rg_qk:  # q k^T keeps k when q needs a gradient and q when k does; p v keeps v
            if rg_k:
                A.save(f"{layer}.q_s", sb * dq * e, "attention q, k, v copies")
            if rg_q:
                A.save(f"{layer}.k_s", sb * dkv * e, "attention q, k, v copies")
            A.save(f"{layer}.v_s", sb * dkv * e, "attention q, k, v copies")
            if not recompute:
                A.save(f"{layer}.softmax", s2 * e, "attention scores (a s^2 b)")
                if p_attn > 0:
                    A.save(f"{layer}.attn_mask", s2 * mask_e, "attention scores (a s^2 b)")
        if rg_v and not recompute:
            A.save(f"{layer}.attn_drop" if p_attn > 0 else f"{layer}.softmax", s2 * e, "attention scores (a s^2 b)")
        return True

    def layer_norm(key_in, rg_in, trainable, label="norm inputs and statistics"):
        if rg_in or trainable:
            A.save(key_in, sb * h * e, label)
            A.save(key_in + ".stats", 2 * sb * 4, label)
            return True
        return False

    def rms_norm(key_in, rg_in, trainable, out_key):
        # HF LlamaRMSNorm upcasts to fp32: pow() keeps the fp32 input, the product keeps rsqrt; the weight
        # product keeps the normalised input only when the weight trains
        if rg_in:
            A.save(key_in + (".f32" if e != 4 else ""), sb * h * 4, "norm inputs and statistics")
            A.save(key_in + ".rsqrt", sb * 4, "norm inputs and statistics")
        if trainable:
            A.save(out_key + ".normed", sb * h * e, "norm inputs and statistics")
        return rg_in or trainable

    def dropout(key, n_elems, rg, p):
        if rg and p > 0:
            A.save(key, n_elems * mask_e, "dropout masks")

    # ---- embeddings
    rg = full
    if spec.family == "bert":
        if full:
            A.save("ids", 8 * sb, "token ids, labels, loss")
            A.save("tt_ids", 8 * s, "token ids, labels, loss")
        layer_norm("emb.sum", rg, full)
        dropout("emb.drop", sb * h, rg, p_hid)
    else:
        if full:
            A.save("ids", 8 * sb, "token ids, labels, loss")
    x_key = "0.X"
    for layer in range(spec.n_layers):
        if spec.family == "bert":
            rq = linear(layer, "q", x_key, h, dq, rg, f"{layer}.q")
            rk = linear(layer, "k", x_key, h, dkv, rg, f"{layer}.k")
            rv = linear(layer, "v", x_key, h, dkv, rg, f"{layer}.v")
            ctx_key = f"{layer}.attn_out" if flash else f"{layer}.ctx"
            r_att = attention_core(layer, rq, rk, rv, f"{layer}.q", f"{layer}.k", f"{layer}.v", f"{layer}.attn_out")
            ro = linear(layer, "o", ctx_key, dq, h, r_att, f"{layer}.o")
            dropout(f"{layer}.o_drop", sb * h, ro, p_hid)
            rg1 = ro or rg
            rg1 = layer_norm(f"{layer}.ln1_in", rg1, full)
            y_key = f"{layer}.Y"
            ru = linear(layer, "up", y_key, h, f, rg1, f"{layer}.up")
            if ru:
                A.save(f"{layer}.gelu_in", sb * f * e, "MLP hidden (s b f)")
            rd = linear(layer, "down", f"{layer}.G", f, h, ru, f"{layer}.down")
            dropout(f"{layer}.d_drop", sb * h, rd, p_hid)
            rg = layer_norm(f"{layer}.ln2_in", rd or rg1, full)
            x_key = f"{layer + 1}.X"
        else:
            n_key = f"{layer}.N"
            rn = rms_norm(x_key, rg, full, n_key)
            rq = linear(layer, "q", n_key, h, dq, rn, f"{layer}.q")
            rk = linear(layer, "k", n_key, h, dkv, rn, f"{layer}.k")
            rv = linear(layer, "v", n_key, h, dkv, rn, f"{layer}.v")
            if rq or rk:
                A.save("rope", 2 * s * spec.d_head * e, "rotary cos/sin (shared)")
            r_att = attention_core(layer, rq, rk, rv, f"{layer}.q_rot", f"{layer}.k_rot", f"{layer}.v",
                                   f"{layer}.attn_out")
            ro = linear(layer, "o", f"{layer}.attn_out", dq, h, r_att, f"{layer}.o")
            rg1 = ro or rg
            m_key = f"{layer}.M"
            r2 = rms_norm(f"{layer}.X2", rg1, full, m_key)
            in_key = m_key
            rg_g = linear(layer, "gate", in_key, h, f, r2, f"{layer}.gate")
            rg_u = linear(layer, "up", in_key, h, f, r2, f"{layer}.up")
            if rg_g:
                A.save(f"{layer}.gate_out", sb * f * e, "MLP hidden (s b f)")  # silu input
            if rg_u:
                A.save(f"{layer}.silu_out", sb * f * e, "MLP hidden (s b f)")
            if rg_g:
                A.save(f"{layer}.up_out", sb * f * e, "MLP hidden (s b f)")
            rd = linear(layer, "down", f"{layer}.P", f, h, rg_g or rg_u, f"{layer}.down")
            rg = rd or rg1
            x_key = f"{layer + 1}.X"
    # ---- head and loss
    if spec.family == "bert":
        if spec.task == "seq-cls":
            if full:  # the pooler reads the first token: a view that keeps the whole last hidden state
                A.save(x_key, sb * h * e, "head: pooler, classifier, logits")
            if rg or full:
                A.save("pool_tanh", b * h * e, "head: pooler, classifier, logits")
                dropout("pool_drop", b * h, True, p_hid)
            A.save("cls_in", b * h * e, "head: pooler, classifier, logits")
            A.save("loss", b * spec.num_labels * e + 8 * b + 4, "token ids, labels, loss")
    else:
        rn = rms_norm(x_key, rg, full, "final")
        if spec.task == "causal-lm":
            if full:  # lm_head's input (the norm output; a separate storage from the pre-weight "normed")
                A.save("final.out", sb * h * e, "head: final norm, logits")
            A.save("logsoftmax", sb * V * 4, "head: log-softmax of the logits (fp32)")
            A.save("labels", 8 * sb + 4, "token ids, labels, loss")
        else:
            A.save("final.out", sb * h * e, "head: final norm, logits")
            A.save("loss", b * spec.num_labels * e + 8 * b + 4, "token ids, labels, loss")
    return A.total(), A.by_label(), A.store


def _checkpointed(store: dict, n_layers: int, sbh_e: float) -> tuple[float, dict]:
    """Full activation checkpointing per layer, from the detailed model's per-storage terms.

    Each layer keeps only its input (s b h x e bytes); in the backward pass one layer at a time is rebuilt
    (its own saved tensors, counted once: the largest layer); the terms outside the layers (embeddings, head,
    logits, loss, rotary tables) stay as they are."""
    per_layer: dict[int, float] = {}
    outside: dict[str, float] = {}
    for key, (nb, label) in store.items():
        head = key.split(".", 1)[0]
        if head.isdigit() and int(head) < n_layers:
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


OPTIMIZERS = ("adamw", "adamw-8bit", "sgd")
FULL_4BIT = ("a 4-bit base cannot be fully fine-tuned (its weights are frozen 4-bit codes with no gradient); "
             "choose fp32 or bf16-mixed, or a PEFT method")
ZERO_STAGES = (0, 1, 2, 3)


def estimate(spec: ModelSpec | str, method: str = "full", knobs: dict | None = None, precision: str = "bf16-mixed",
             batch: int = 1, seq_len: int = 512, recompute: bool = False, activation_model: str = "detailed",
             attention: str = "auto", device: str = "cuda", master_copy: bool = True,
             optimizer: str = "adamw", checkpointing: bool = False, zero: int = 0, gpus: int = 1) -> dict:
    """The memory model of METHODS.md for one configuration; every term in bytes (see the module docstring).

    ``spec``: a ModelSpec or a key of PUBLISHED.  ``precision``: fp32 | bf16-mixed | 4bit.
    ``attention``: "auto" (cuda: fused kernels that keep no s^2 scores; cpu: the scores are kept when attention
    dropout is on), "flash" or "materialized".  ``device`` matters for dropout masks (1 byte on CUDA, a full float
    on CPU).  ``master_copy``: the fp32 master weights of mixed precision (16 B/param for full FT; False: 12 B).
    ``optimizer``: adamw (two fp32 moments, 8 B per trainable parameter), adamw-8bit (two 8-bit moments, 2 B;
    bitsandbytes' block-wise constants left out) or sgd (none).  ``checkpointing``: full activation checkpointing
    per layer (each layer keeps its input; one layer is rebuilt at a time in the backward pass).
    ``zero``/``gpus``: ZeRO data parallelism (Rajbhandari et al., arXiv 1910.02054) over ``gpus`` GPUs; the
    returned terms are **per GPU**: stage 1 shards the optimizer state (moments and master copy), stage 2 also the
    gradients, stage 3 also the weights; activations are per GPU (each GPU runs its own batch of ``batch``).
    ``*_total_bytes`` = per GPU x gpus (everything, across all GPUs).
    """
    if isinstance(spec, str):
        from explorer.models import config_models

        if spec in config_models():
            spec = spec_for(spec)
        elif spec not in PUBLISHED:
            raise KnobError(f"unknown model config '{spec}': use one of {', '.join(PUBLISHED)}, "
                            f"{', '.join(config_models())} or a ModelSpec")
        else:
            spec = PUBLISHED[spec]
    spec.validate()
    if precision not in PRECISIONS:
        raise KnobError(f"precision must be one of {', '.join(PRECISIONS)} (got '{precision}')")
    if activation_model not in ACTIVATION_MODELS:
        raise KnobError(f"activation_model must be one of {', '.join(ACTIVATION_MODELS)}")
    if attention not in ("auto", "flash", "materialized"):
        raise KnobError("attention must be auto, flash or materialized")
    if optimizer not in OPTIMIZERS:
        raise KnobError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got '{str(optimizer)[:40]}')")
    try:
        zero, gpus = int(zero), int(gpus)
    except (TypeError, ValueError):
        raise KnobError("zero must be 0, 1, 2 or 3 and gpus a whole number >= 1") from None
    if zero not in ZERO_STAGES:
        raise KnobError(f"zero must be 0, 1, 2 or 3 (got {zero})")
    if not 1 <= gpus <= 100_000:
        raise KnobError(f"gpus must be from 1 to 100,000 (got {gpus})")
    batch, seq_len = int(batch), int(seq_len)
    if batch < 1 or seq_len < 1:
        raise KnobError("batch and seq_len must be >= 1")
    if precision == "4bit" and method == "full":
        raise KnobError(FULL_4BIT)
    plan = _plan(spec, method, knobs or {})
    notes = list(plan.notes)
    groups = spec.param_groups()
    N = spec.n_params()
    T = plan.trainable
    # ---- weights
    e = 4 if precision == "fp32" else 2
    if precision == "4bit":
        frozen_lin = groups["block_linear"]
        base_w = frozen_lin * (0.5 + _Q4_CONST_BYTES) + (N - frozen_lin) * 2
        notes.append("4-bit: the blocks' linear weights at 0.5 B/param plus QLoRA's double-quantisation constants "
                     "(0.127 bit/param); embeddings, norms and head stay 16-bit; adapters train in 16-bit.")
    else:
        base_w = N * e
    adapter_params = T - (N if method == "full" else spec.head_params())
    if method == "full":
        adapter_params = 0
    weights = (base_w + adapter_params * e + plan.extra_float * e + plan.extra_index_bytes
               + plan.head_copy * e + spec.buffer_bytes())
    # ---- grads, optimizer
    grads = T * e
    moments = {"adamw": 8, "adamw-8bit": 2, "sgd": 0}[optimizer]
    master = 4 if (precision != "fp32" and master_copy) else 0
    opt = T * (moments + master)
    if precision != "fp32":
        notes.append(f"bf16 weights and gradients, {'8-bit' if moments == 2 else 'fp32'} Adam moments "
                     f"({moments} B/param)" + (", fp32 master copy (4 B/param)" if master else ", no master copy")
                     + " for trainable parameters.")
    if optimizer == "adamw-8bit":
        notes.append("8-bit AdamW (bitsandbytes): two 1-byte moments = 2 B per trainable parameter; its block-wise "
                     "quantisation constants (about 4 B per 2,048 values) are left out.")
    # ---- activations
    if attention == "auto":
        attention = "flash" if (device == "cuda" or spec.attn_dropout == 0) else "materialized"
    mask_e = 1 if device == "cuda" else e
    act_detailed, act_terms, store = _detailed_activations(spec, plan, batch, seq_len, e, mask_e, attention,
                                                           recompute)
    if checkpointing:
        act_detailed, act_terms = _checkpointed(store, spec.n_layers, seq_len * batch * spec.hidden * e)
        notes.append("Full activation checkpointing: each layer keeps only its input (s b h); one layer's "
                     "activations are rebuilt at a time in the backward pass (the forward runs twice).")
    act_k = korthikanti_activations(spec, batch, seq_len, e, recompute, checkpointing)
    act = act_detailed if activation_model == "detailed" else act_k
    # ---- ZeRO: what each of the N GPUs holds (stage 1: optimizer state, 2: + gradients, 3: + weights)
    unsharded = dict(weights_bytes=float(weights), grads_bytes=float(grads), optimizer_bytes=float(opt))
    n = gpus
    opt_moments, opt_master = T * moments, T * master
    if zero >= 1:
        opt, opt_moments, opt_master = opt / n, opt_moments / n, opt_master / n
    if zero >= 2:
        grads = grads / n
    if zero >= 3:
        weights = weights / n
    if zero or gpus > 1:
        notes.append(f"ZeRO stage {zero} over {gpus} GPU(s)" +
                     ("; plain data parallelism: every GPU holds a full copy" if zero == 0 else
                      "; sharded across the GPUs: " + ", ".join(["optimizer state", "gradients", "weights"][:zero]))
                     + ". Activations are per GPU (its own batch). Communication buffers are left out.")
    total = weights + grads + opt + act
    return dict(
        model=spec.name, family=spec.family, method=method, knobs=plan.knobs, precision=precision, batch=batch,
        seq_len=seq_len, recompute=bool(recompute), activation_model=activation_model, attention=attention,
        device=device, n_params=int(N), trainable_params=int(T), trainable_parts=plan.trainable_parts,
        weights_bytes=float(weights), grads_bytes=float(grads), optimizer_bytes=float(opt),
        activations_bytes=float(act), activations_detailed_bytes=float(act_detailed),
        activations_korthikanti_bytes=float(act_k), activation_terms=act_terms, total_bytes=float(total),
        optimizer_moments_bytes=float(opt_moments), optimizer_master_bytes=float(opt_master),
        optimizer=optimizer, checkpointing=bool(checkpointing), zero=zero, gpus=gpus, scope="per GPU",
        unsharded=unsharded, all_gpus_total_bytes=float(total) * gpus,
        bytes_per_trainable_param=(e + e + moments + master) if T else 0,
        notes=notes + ["Adam's scalar step counters (4 B per parameter tensor) and allocator overheads are left out; "
                       "the total sums terms that do not all peak at the same instant (an upper bound).",
                       "Units: GB = 10^9 bytes, GiB = 2^30 bytes."])


def estimate_table(spec, methods=None, **kw) -> list[dict]:
    """``estimate`` for several methods (default: all seven) with the same settings."""
    from explorer.methods import METHODS

    out = []
    for m in methods or list(METHODS):
        try:
            out.append(estimate(spec, m, **kw))
        except ValueError as e:
            out.append(dict(method=m, error=str(e)))
    return out
