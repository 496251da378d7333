"""The analytic memory model of ``METHODS.md``: weights + gradients + optimizer state + activations, in bytes.

    from explorer.memory.analytic import estimate
    from explorer.memory.specs import PUBLISHED
    from explorer.memory.units import fmt_bytes

    spec = PUBLISHED["llama-65b"]                  # or spec_for(name) / spec_from_model(model) / ModelSpec(...)
    est = estimate(spec, "full", precision="bf16-mixed", batch=1, seq_len=512)
    static = est["weights_bytes"] + est["grads_bytes"] + est["optimizer_bytes"]
    fmt_bytes(static, "GB")                        # '1,044.6 GB' (10^9 bytes; 16 B/param); "GiB" gives 2^30

Options (:mod:`explorer.memory.options`): ``optimizer`` adamw (8 B/param of fp32 moments) | adamw-8bit (2 B) |
sgd; ``checkpointing`` (full activation checkpointing per layer: each layer keeps its input, one layer is
rebuilt at a time in the backward pass); ``zero`` 0-3 and ``gpus`` (ZeRO: stage 1 shards the optimizer state
over the GPUs, 2 also the gradients, 3 also the weights; the terms are per GPU, ``all_gpus_total_bytes`` is
x gpus).  ``spec`` may also be the name of a bundled config-only model (``explorer/configs``: llama-2-7b ...
bert-large) or a key of ``PUBLISHED`` (gpt3-175b too).

Terms: weights (fp32 4 B/param; bf16-mixed 2 B; 4bit: 0.5 B for the linear weights inside the blocks plus
QLoRA's double-quantisation constants, 2 B for the rest) + gradients (trainable only) + optimizer state
(trainable only: AdamW 8 B of fp32 moments, plus a 4 B fp32 master copy in bf16-mixed / 4bit) + activations
(:mod:`explorer.memory.activations`: ``detailed`` by default, ``korthikanti`` on request; both are reported).
The detailed model is checked against the measured byte account (within 15 %; on tiny-bert, tiny-llama and
minilm it agrees to the byte for every method but SMT).

The method is never asked by name: its module's ``memory_plan(spec, knobs)`` (see ``explorer.methods``) says
what trains, which adapter tensors exist and what each adapted layer keeps for backward.

Where the model approximates (and says so in ``est["notes"]``):
- SMT: which matrices the selected blocks fall in depends on the warm-up; the input columns kept for backward
  assume the blocks spread evenly over the targets, each in its own column block (an upper bound; +3 % on the
  tiny models).  The warm-up itself (full mode) costs full fine-tuning memory; figures are the steady state.
- Attention: "auto" picks PyTorch's fused kernels (no s^2 scores kept) on CUDA and on CPU without attention
  dropout, the materialised path (scores, dropout mask, dropped scores) on CPU with dropout, as measured with
  ``sdpa`` in transformers 5; ``recompute=True`` drops the s^2 terms (selective recomputation).
- Dropout masks are 1 byte on CUDA and a full float on CPU (PyTorch's CPU dropout keeps a float mask).
- bf16-mixed / 4bit are modelled as 16-bit weights and activations with fp32 optimizer state (not autocast,
  which would also keep 16-bit copies of fp32 weights); adapter buffers are taken as 16-bit there too.
- bf16-autocast models ``torch.autocast`` training (``train --precision bf16``): fp32 weights, gradients and
  AdamW moments, no master copy; activations as autocast saves them, its bf16 weight copies included (see
  :mod:`explorer.memory.activations`); the small bf16 copies of adapter factors are left out.
- Checkpointing is modelled as the project trains it (reentrant, Hugging Face's ``enable_input_require_grads``):
  the embeddings' output requires a gradient, so BERT's embedding norm and dropout keep their inputs.
- Masked-LM BERT heads and architectures other than BERT-like and LLaMA-like are not modelled in detail; GPT-2 /
  GPT-3 (BERT-like counts, causal LM) say so in the notes: their head, logits and loss are not counted.
"""

from __future__ import annotations

from explorer.memory.activations import checkpointed, detailed_activations, korthikanti_activations
from explorer.memory.options import FULL_4BIT, Q4_CONST_BYTES, options, precision_notes, shard
from explorer.memory.plan import MemoryPlan
from explorer.memory.specs import PUBLISHED, ModelSpec, spec_for
from explorer.memory.units import compact_bytes
from explorer.errors import KnobError


def resolve_spec(spec: ModelSpec | str) -> ModelSpec:
    """A ModelSpec, or the name of a published spec or of a bundled config-only model; validated."""
    if isinstance(spec, str):
        from explorer.model_configs import config_models

        if spec in config_models():
            spec = spec_for(spec)
        elif spec not in PUBLISHED:
            names = list(dict.fromkeys([*PUBLISHED, *config_models()]))  # mistral-7b is in both, named once
            raise KnobError(f"unknown model config '{spec}': use one of {', '.join(names)} or a ModelSpec")
        else:
            spec = PUBLISHED[spec]
    return spec.validate()


def memory_plan(spec: ModelSpec, method: str, knobs: dict | None = None) -> MemoryPlan:
    """The method's own plan for ``spec`` (its knobs validated first)."""
    from explorer.methods import get_method, validate_knobs

    info = get_method(method)
    return info.memory_plan(spec, validate_knobs(info.knobs, dict(knobs or {}), method))


def _weights(spec: ModelSpec, plan: MemoryPlan, precision: str, e: int) -> tuple[float, list[str]]:
    """Base weights in the chosen precision, plus the adapter's tensors (trained and frozen), indices, a kept
    copy of the head and the model's buffers."""
    N = spec.n_params()
    notes = []
    if precision == "4bit":
        frozen_lin = spec.param_groups()["block_linear"]
        base_w = frozen_lin * (0.5 + Q4_CONST_BYTES) + (N - frozen_lin) * 2
        notes.append("4-bit: the blocks' linear weights at 0.5 B/param plus QLoRA's double-quantisation constants "
                     "(0.127 bit/param); embeddings, norms and head stay 16-bit; adapters train in 16-bit.")
    else:
        base_w = N * e
    adapter_params = 0 if plan.trains_base else plan.trainable - spec.head_params()
    weights = (base_w + adapter_params * e + plan.extra_float * e + plan.extra_index_bytes
               + plan.head_copy * e + spec.buffer_bytes())
    return weights, notes


def estimate(spec: ModelSpec | str, method: str = "full", knobs: dict | None = None, precision: str = "bf16-mixed",
             batch: int = 1, seq_len: int = 512, recompute: bool = False, activation_model: str = "detailed",
             attention: str = "auto", device: str = "cuda", master_copy: bool = True,
             optimizer: str = "adamw", checkpointing: bool = False, zero: int = 0, gpus: int = 1,
             padded: bool = False) -> dict:
    """The memory model of METHODS.md for one configuration; every term in bytes (see the module docstring).

    ``spec``: a ModelSpec or a key of PUBLISHED.  ``precision``: fp32 | bf16-mixed | 4bit | bf16-autocast.
    ``attention``: "auto" (cuda: fused kernels that keep no s^2 scores; cpu: the scores are kept when attention
    dropout is on), "flash" or "materialized".  ``device`` matters for dropout masks (1 byte on CUDA, a full float
    on CPU).  ``master_copy``: the fp32 master weights of mixed precision (16 B/param for full FT; False: 12 B).
    ``optimizer``: adamw (two fp32 moments, 8 B per trainable parameter), adamw-8bit (two 8-bit moments, 2 B;
    bitsandbytes' block-wise constants left out) or sgd (none).  ``checkpointing``: full activation checkpointing
    per layer (each layer keeps its input; one layer is rebuilt at a time in the backward pass).
    ``padded``: the batch has padding; LLaMA-like attention then gets a float mask per layer and, with grouped-query
    attention, k and v expanded to every head (transformers' sdpa path without ``enable_gqa``), as measured.
    ``zero``/``gpus``: ZeRO data parallelism (Rajbhandari et al., arXiv 1910.02054) over ``gpus`` GPUs; the
    returned terms are **per GPU**: stage 1 shards the optimizer state (moments and master copy), stage 2 also the
    gradients, stage 3 also the weights; activations are per GPU (each GPU runs its own batch of ``batch``).
    ``*_total_bytes`` = per GPU x gpus (everything, across all GPUs).
    """
    spec = resolve_spec(spec)
    o = options(precision, batch, seq_len, recompute, activation_model, attention, device, master_copy, optimizer,
                checkpointing, zero, gpus, padded)
    plan = memory_plan(spec, method, knobs)
    if o.precision == "4bit" and plan.trains_base:
        raise KnobError(FULL_4BIT)
    N, T, e = spec.n_params(), plan.trainable, o.e
    weights, notes = _weights(spec, plan, o.precision, e)
    notes = list(plan.notes) + notes + precision_notes(o)
    grads = T * e
    # ---- activations
    kernel = o.kernel(spec.attn_dropout)
    # checkpointing: the input embeddings' output requires a gradient (reentrant checkpointing, as trained here)
    act_detailed, act_terms, store = detailed_activations(spec, plan, o.batch, o.seq_len, o.act_e, o.mask_e, kernel,
                                                          o.recompute, o.autocast, o.checkpointing, o.padded)
    if spec.family == "bert" and spec.task == "causal-lm":  # GPT-2 / GPT-3: no walk of their own yet
        notes.append("Approximated: this GPT-style model's activations are walked as BERT-like layers, and its final "
                     "norm, LM head, logits and loss are not counted (an under-estimate: the fp32 log-softmax of the "
                     f"logits alone would add {compact_bytes(o.seq_len * o.batch * spec.vocab * 4, 'GB')}).")
    if o.checkpointing:  # the checkpoints are the residual stream: fp32 under autocast
        ckpt_e = 4 if o.autocast else o.act_e
        act_detailed, act_terms = checkpointed(store, spec.n_layers, o.seq_len * o.batch * spec.hidden * ckpt_e)
        notes.append("Full activation checkpointing: each layer keeps only its input (s b h); one layer's "
                     "activations are rebuilt at a time in the backward pass (the forward runs twice).")
    act_k = korthikanti_activations(spec, o.batch, o.seq_len, o.act_e, o.recompute, o.checkpointing)
    act = act_detailed if o.activation_model == "detailed" else act_k
    # ---- ZeRO: what each GPU holds
    unsharded = dict(weights_bytes=float(weights), grads_bytes=float(grads),
                     optimizer_bytes=float(T * (o.moments + o.master)))
    per_gpu = shard(o, weights, grads, T * o.moments, T * o.master)
    notes += per_gpu.notes
    total = per_gpu.weights + per_gpu.grads + per_gpu.optimizer + act
    return dict(
        model=spec.name, family=spec.family, method=method, knobs=plan.knobs, precision=o.precision,
        batch=o.batch, seq_len=o.seq_len, recompute=bool(o.recompute), activation_model=o.activation_model,
        attention=kernel, device=o.device, n_params=int(N), trainable_params=int(T),
        trainable_parts=plan.trainable_parts, trains_all=plan.trains_base,
        weights_bytes=float(per_gpu.weights), grads_bytes=float(per_gpu.grads),
        optimizer_bytes=float(per_gpu.optimizer), activations_bytes=float(act),
        activations_detailed_bytes=float(act_detailed), activations_korthikanti_bytes=float(act_k),
        activation_terms=act_terms, total_bytes=float(total),
        optimizer_moments_bytes=float(per_gpu.moments), optimizer_master_bytes=float(per_gpu.master),
        optimizer=o.optimizer, checkpointing=bool(o.checkpointing), zero=o.zero, gpus=o.gpus, scope="per GPU",
        unsharded=unsharded, all_gpus_total_bytes=float(total) * o.gpus,
        bytes_per_trainable_param=(e + e + o.moments + o.master) if T else 0,
        notes=notes + ["Adam's scalar step counters (4 B per parameter tensor) and allocator overheads are left out; "
                       "the total sums terms that do not all peak at the same instant (an upper bound).",
                       "Units: GB = 10^9 bytes, GiB = 2^30 bytes."])


def estimate_table(spec, methods=None, **kw) -> list[dict]:
    """``estimate`` for several methods (default: every registered method) with the same settings."""
    from explorer.methods import METHODS

    out = []
    for m in methods or list(METHODS):
        try:
            out.append(estimate(spec, m, **kw))
        except ValueError as e:
            out.append(dict(method=m, error=str(e)))
    return out
