"""The Memory calculator page's pure helpers: settings schema, knobs per method, estimate rows, live measurement.

No streamlit here (``pages/4_Memory_calculator.py`` draws; this module computes).  Every number comes from
``explorer.memory.analytic.estimate`` (the analytic model) or from ``explorer.memory.measured.MemoryAccountant``
(bytes that really exist after two AdamW steps); nothing is typed in.  No method is named here: a method's knobs
on this page, its settings line and its measurement overrides are facts of its module (``explorer.methods``).

- :func:`page_schema`: every setting of the page as a whitelisted, clamped URL field.
- :func:`spec_for_choice`: a ModelSpec for a published config, a real small model (read from its config) or the
  custom shape typed on the page.
- :func:`method_knobs`: the page's knobs of one method (its ``MEMORY_PAGE_KNOBS``; shared targets) as its knob dict.
- :func:`estimate_rows`: the estimates (tables: ``memory_tables``; figures: ``memory_figures``).
- :func:`worked_example`: the ">1 TB for LLaMA-65B full fine-tuning" numbers, computed by ``estimate``.
- :func:`measure_method` / :func:`compare_rows`: a live measurement on a small model and its comparison with the
  estimate at the same settings.
- :data:`PRESETS`: lesson presets for the page.
"""

from __future__ import annotations

import time

from explorer.errors import KnobError
from explorer.memory.analytic import estimate
from explorer.memory.specs import PUBLISHED, ModelSpec, spec_for, spec_from_config, spec_from_model
from explorer.methods import METHODS
from explorer.model_configs import config_model_names
from explorer.models import REGISTRY, model_names
from explorer.views.figures import COLORS
from explorer.workshop.presets import Preset
from explorer.urlstate import Field, Schema

SMALL = tuple(model_names())  # the models this machine can train (explorer.models.REGISTRY)
BIG = tuple(PUBLISHED)  # llama-7b, llama-13b, llama-65b, mistral-7b, gpt3-175b
# bundled config-only models (explorer/configs; a name also published, mistral-7b, is in BIG)
CONFIGS = tuple(n for n in config_model_names() if n not in PUBLISHED)
CUSTOM = "custom"
MODELS = BIG + CONFIGS + SMALL + (CUSTOM,)
MODEL_LABELS = {
    **{k: f"{v.name} (published config)" for k, v in PUBLISHED.items()},
    **{k: f"{k} (bundled config.json)" for k in CONFIGS},
    **{k: f"{k} ({REGISTRY[k]['blurb']}{', real config' if REGISTRY[k]['pretrained'] else ''})" for k in SMALL},
    CUSTOM: "custom shape…",
}
PRECISIONS = ("fp32", "bf16-mixed", "4bit")
OPTIMIZER_CHOICES = ("adamw", "adamw-8bit")
OPTIMIZER_LABELS = {"adamw": "AdamW (fp32 moments, 8 B)", "adamw-8bit": "8-bit AdamW (2 B)"}
SCOPES = ("per-gpu", "total")
SCOPE_LABELS = {"per-gpu": "per GPU", "total": "all GPUs together"}
PRECISION_LABELS = {"fp32": "fp32 (4 B weights)", "bf16-mixed": "bf16 mixed (2 B + fp32 master)",
                     "4bit": "4-bit weights (QLoRA-style)"}
UNITS = ("GB", "GiB")
UNIT_WORDS = {"GB": "GB = 10^9 bytes", "GiB": "GiB = 2^30 bytes"}


def page_knob(key: str):
    """The method knob behind a page field (``MEMORY_PAGE_KNOBS``: knob name -> field key), the first that reads it."""
    return next(kn for info in METHODS.values() for name, k in info.memory_page_knobs.items() if k == key
                for kn in info.knobs if kn.name == name)


_TL = page_knob("tl")
TL_PRESETS = tuple(sorted((c for c in _TL.choices if c != "custom"), key=lambda c: c != _TL.default))  # default 1st
SMT_BLOCK_SIZES = ("auto", "16", "32", "64", "128", "256")
TARGET_SETS = ("default", "qv", "attn", "all")
TARGET_LABELS = {"default": "each method's default", "qv": "q, v", "attn": "attention: q, k, v, o",
                 "all": "every linear layer"}
TERMS = (("weights_bytes", "weights", COLORS[0]), ("grads_bytes", "gradients", COLORS[1]),
         ("optimizer_bytes", "optimizer state", COLORS[3]), ("activations_bytes", "activations", COLORS[2]))
MEASURE_DEVICES = ("cpu", "cuda")
SHORT = {k: m.short for k, m in METHODS.items()}  # each method's SHORT label
MEASURE_TOKEN_CAP = 8192  # batch x seq_len measured at most (CPU time), said on the page
MEASURE_STEPS = 2  # AdamW allocates its state on the first step
ADVANCED = ("act", "attn", "dev", "master", "smt_density", "smt_bs", "tg")


def page_schema() -> Schema:
    """Every setting of the page (URL keys); numbers clamped, choices whitelisted."""
    methods = tuple(METHODS)
    return Schema([
        Field("model", "choice", "llama-7b", choices=MODELS),
        Field("c_layers", "int", 32, min=1, max=200),
        Field("c_hidden", "int", 4096, min=8, max=65536),
        Field("c_heads", "int", 32, min=1, max=512),
        Field("c_kv", "int", 8, min=1, max=512),
        Field("c_inter", "int", 14336, min=8, max=262144),
        Field("c_vocab", "int", 32000, min=2, max=1_000_000),
        Field("methods", "multi", list(methods), choices=methods),
        Field("prec", "choice", "bf16-mixed", choices=PRECISIONS),
        Field("batch", "int", 1, min=1, max=1024),
        Field("seq", "int", 512, min=1, max=131072),
        Field("recompute", "bool", False),
        Field("ckpt", "bool", False),
        Field("opt", "choice", "adamw", choices=OPTIMIZER_CHOICES),
        Field("zero", "int", 0, min=0, max=3),
        Field("gpus", "int", 1, min=1, max=4096),
        Field("scope", "choice", "per-gpu", choices=SCOPES),
        Field("unit", "choice", "GB", choices=UNITS),
        Field("rank", "int", 8, min=1, max=512),
        Field("freeze", "float", 0.5, min=0.0, max=0.99),
        Field("tl", "choice", _TL.default, choices=TL_PRESETS),
        Field("smt_blocks", "int", 0, min=0, max=10_000_000),
        Field("smt_density", "float", 0.0, min=0.0, max=1.0),
        Field("smt_bs", "choice", "auto", choices=SMT_BLOCK_SIZES),
        Field("sparsity", "float", 0.99, min=0.0, max=0.9999),
        Field("tg", "choice", "default", choices=TARGET_SETS),
        Field("act", "choice", "detailed", choices=("detailed", "korthikanti")),
        Field("attn", "choice", "auto", choices=("auto", "flash", "materialized")),
        Field("dev", "choice", "cuda", choices=("cuda", "cpu")),
        Field("master", "bool", True),
        Field("breakdown", "choice", "lora", choices=methods),
        Field("mmethods", "multi", ["full", "lora", "lora-sp", "smt"], choices=methods),
        Field("mdev", "choice", "cpu", choices=MEASURE_DEVICES),
    ])


# ----------------------------------------------------------------------------- model and knobs


def custom_spec(values: dict) -> ModelSpec:
    """The custom shape typed on the page: a LLaMA-like causal LM (RMSNorm, SwiGLU, rotary, GQA)."""
    spec = ModelSpec("custom", "llama", "causal-lm", int(values["c_layers"]), int(values["c_hidden"]),
                     int(values["c_heads"]), int(values["c_kv"]), int(values["c_inter"]), int(values["c_vocab"]),
                     source="typed on the page (LLaMA-like block assumed)")
    return spec.validate()


def spec_for_choice(choice: str, values: dict | None = None) -> ModelSpec:
    """A published config, a real small model's config (no weights needed) or the custom shape."""
    if choice in PUBLISHED:
        return PUBLISHED[choice]
    if choice == CUSTOM:
        return custom_spec(values or page_schema().defaults())
    if choice == "smollm2-135m":
        from transformers import AutoConfig

        from explorer.model_files import smollm2_folder

        return spec_from_config(AutoConfig.from_pretrained(smollm2_folder()), "causal-lm", choice)
    if choice in SMALL or choice in CONFIGS:
        return spec_for(choice)
    raise KnobError(f"unknown model '{choice}': choose one of {', '.join(MODELS)}")


def shared_knob_label(key: str, text: str) -> str:
    """A page field's label naming every method that reads it: "LoRA / DoRA / ... rank r"."""
    return " / ".join(SHORT.get(m, m) for m, info in METHODS.items() if key in info.memory_page_knobs.values()) \
        + " " + text


def default_targets_text() -> str:
    """Each method's default target matrices, from its knobs: "LoRA q,v; ...; SpaRTA v,o"."""
    out = []
    for m, info in METHODS.items():
        tg = next((kn.default for kn in info.knobs if kn.name == "targets"), None)
        if tg:
            out.append(f"{SHORT.get(m, m)} {','.join(tg)}")
    return "; ".join(out)


def targets_for(choice: str, method: str, family: str) -> list[str] | None:
    """The target types of a shared target set for ``family`` (None: the method's own default)."""
    if choice == "default":
        return None
    sets = {"qv": ["q", "v"], "attn": ["q", "k", "v", "o"], "all": ["q", "k", "v", "o", "gate", "up", "down"]}
    types = sets[choice]
    if family == "bert":
        types = [t for t in types if t != "gate"]
    return types


def method_knobs(method: str, values: dict, family: str = "llama") -> dict:
    """The page's knobs of ``method`` (its module's ``MEMORY_PAGE_KNOBS``: knob name -> address key) as its knob
    dict; alpha follows the rank (2r, as in the presets: it does not change memory); the shared target set goes
    to every method with targets.  The rest stay at the method's defaults."""
    info = METHODS[method]
    kinds = {kn.name: kn for kn in info.knobs}
    k: dict = {}
    for name, key in info.memory_page_knobs.items():
        v = values[key]
        if kinds[name].kind == "int":
            v = kinds[name].default if v == "auto" else int(v)
        elif kinds[name].kind == "float":
            v = float(v)
        k[name] = v
        if name == "rank" and "alpha" in kinds:
            k["alpha"] = 2.0 * int(v)
    if "targets" in kinds:
        tg = targets_for(values.get("tg", "default"), method, family)
        if tg:
            k["targets"] = tg
    return k


def knob_summary(method: str, knobs: dict) -> str:
    """A short human description of the knobs used for one row (the method's ``settings_text``); knobs the page
    does not set are at the method's defaults, and say so (a rank the page does not set read "r=None")."""
    return METHODS[method].settings_text({kn.name: kn.default for kn in METHODS[method].knobs} | dict(knobs))


def estimate_kwargs(values: dict) -> dict:
    return dict(precision=values["prec"], batch=int(values["batch"]), seq_len=int(values["seq"]),
                recompute=bool(values["recompute"]), activation_model=values["act"], attention=values["attn"],
                device=values["dev"], master_copy=bool(values["master"]), checkpointing=bool(values["ckpt"]),
                optimizer=values["opt"], zero=int(values["zero"]), gpus=int(values["gpus"]))


SCALED = ("weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "total_bytes",
          "activations_detailed_bytes", "activations_korthikanti_bytes", "optimizer_moments_bytes",
          "optimizer_master_bytes")


def to_scope(est: dict, scope: str) -> dict:
    """Per-GPU figures (what ``estimate`` returns) or the total of all GPUs (every term x gpus)."""
    est["scope_label"] = "per GPU" if scope == "per-gpu" else f"all {est['gpus']} GPU(s) together"
    if scope == "total" and est["gpus"] > 1:
        n = est["gpus"]
        for key in SCALED:
            est[key] = est[key] * n
        est["activation_terms"] = {k: v * n for k, v in est["activation_terms"].items()}
    return est


def estimate_rows(spec: ModelSpec, values: dict, methods=None) -> list[dict]:
    """``estimate`` for each chosen method; a method that cannot run here gives a row with ``error``."""
    out = []
    kw = estimate_kwargs(values)
    for m in methods if methods is not None else values["methods"]:
        knobs = method_knobs(m, values, spec.family)
        try:
            est = to_scope(estimate(spec, m, knobs, **kw), values.get("scope", "per-gpu"))
            est["label"] = METHODS[m].label
            est["settings"] = knob_summary(m, knobs)
            est["input_knobs"] = knobs
            out.append(est)
        except ValueError as e:  # KnobError is a ValueError
            out.append(dict(method=m, label=METHODS[m].label, settings=knob_summary(m, knobs), error=str(e)))
    return out


# ----------------------------------------------------------------------------- worked example


def worked_example(batch: int = 1, seq_len: int = 512) -> dict:
    """LLaMA-65B full fine-tuning, bf16 mixed + AdamW: 16 B/param (with master copy) and 12 B/param (without,
    QLoRA's accounting), plus QLoRA itself (4-bit base + LoRA r=64 on every linear layer) on the same model."""
    with_master = estimate("llama-65b", "full", precision="bf16-mixed", batch=batch, seq_len=seq_len)
    no_master = estimate("llama-65b", "full", precision="bf16-mixed", batch=batch, seq_len=seq_len,
                         master_copy=False)
    qlora = estimate("llama-65b", "lora", dict(rank=64, alpha=16.0,
                                               targets=["q", "k", "v", "o", "gate", "up", "down"]),
                     precision="4bit", batch=batch, seq_len=seq_len, recompute=True)

    def static(e):
        return e["weights_bytes"] + e["grads_bytes"] + e["optimizer_bytes"]

    return dict(n_params=with_master["n_params"], with_master=with_master, no_master=no_master, qlora=qlora,
                static16=static(with_master), static12=static(no_master), static_qlora=static(qlora),
                bpp16=with_master["bytes_per_trainable_param"], bpp12=no_master["bytes_per_trainable_param"])


# ----------------------------------------------------------------------------- measured


def measure_shape(batch: int, seq_len: int, max_positions: int, cap: int = MEASURE_TOKEN_CAP) -> tuple[int, int, str]:
    """The batch and length actually measured (CPU-friendly) and a note when they differ from the asked ones."""
    s = max(1, min(int(seq_len), int(max_positions)))
    b = max(1, min(int(batch), max(1, cap // s)))
    note = ""
    if (b, s) != (int(batch), int(seq_len)):
        note = (f"measured at batch {b} × {s} tokens instead of {batch} × {seq_len}: at most "
                f"{cap:,} tokens per step and at most the model's {max_positions} positions")
    return b, s, note


def _batch(kind: str, vocab: int, num_labels: int, b: int, s: int, seed: int, device):
    import torch

    g = torch.Generator().manual_seed(seed)
    lo, hi = min(1000, max(0, vocab - 2)), min(vocab, 5000)
    ids = torch.randint(lo, max(lo + 1, hi), (b, s), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = ids.clone() if kind == "causal-lm" else torch.randint(0, num_labels, (b,), generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def measure_method(loaded, method: str, knobs: dict, batch: int, seq_len: int, device: str = "cpu",
                   seed: int = 0) -> dict:
    """Two AdamW steps of ``method`` on a fresh copy of ``loaded`` (fp32) with the MemoryAccountant.

    Returns ``dict(method, knobs, rec, est, seconds)``: ``rec`` the byte account of the last step, ``est`` the
    analytic model at the same settings (fp32, same batch, length, device).  Batches are random token ids (memory
    does not depend on their values).  SMT picks its blocks after a 2-batch gradient-only warm-up (a shortcut:
    the steady-state memory does not depend on which blocks win, only on how many).
    """
    import torch

    from explorer.engine.step import StepPlan, run_step
    from explorer.memory.measured import MemoryAccountant
    from explorer.methods import apply_method
    from explorer.models import fresh_copy

    if device == "cuda" and not torch.cuda.is_available():
        raise KnobError("CUDA is not available on this machine: measure on cpu")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    kind = loaded.info.kind
    cfg = loaded.model.config
    vocab = int(getattr(cfg, "vocab_size", 30522))
    n_lab = int(getattr(cfg, "num_labels", 2) or 2)
    knobs = dict(knobs)
    knobs.update(METHODS[method].measure_knobs)  # e.g. SMT: a 2-batch gradient-only warm-up
    model = fresh_copy(loaded.model).to(device)
    adapter = apply_method(model, method, n_base=loaded.info.n_params, **knobs)
    if adapter.needs_warmup:
        from explorer.engine.warmup import run_warmup

        run_warmup(adapter, [_batch(kind, vocab, n_lab, batch, seq_len, 100 + i, device) for i in range(2)])
    m = adapter.model
    m.train()
    opt = torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=1e-4, weight_decay=0.1)
    acct = MemoryAccountant(m, opt)
    plan = StepPlan(optimizer=opt, after_update=adapter.on_step_end, accountant=acct)
    rec = None
    for step in range(MEASURE_STEPS):  # the snapshot is taken before zero_grad: the gradients still exist
        out = run_step(m, _batch(kind, vocab, n_lab, batch, seq_len, step, device), plan)
        if not out.ok:
            raise KnobError(f"{method}: the loss is not finite at measurement step {step + 1}; nothing to measure")
        rec = out.memory
    seconds = time.perf_counter() - t0
    spec = spec_from_model(loaded.model)
    est = estimate(spec, method, knobs, precision="fp32", batch=batch, seq_len=seq_len, device=device)
    del opt, acct, adapter, m, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return dict(method=method, label=METHODS[method].label, knobs=knobs, settings=knob_summary(method, knobs),
                rec=rec, est=est, seconds=seconds, batch=batch, seq_len=seq_len, device=device)


def rel_diff(est: float, meas: float) -> float | None:
    """(estimated - measured) / measured; None when nothing was measured."""
    if not meas:
        return None if est else 0.0
    return (float(est) - float(meas)) / float(meas)


def compare_rows(results: list[dict]) -> list[dict]:
    """Rows for the measured-vs-estimated figure (``est``/``meas`` term dicts) from :func:`measure_method`."""
    out = []
    for r in results:
        if "error" in r:
            out.append(r)
            continue
        keys = [k for k, _, _ in TERMS] + ["total_bytes"]
        out.append(dict(method=r["method"], label=r["label"], settings=r["settings"],
                        est={k: float(r["est"][k]) for k in keys}, meas={k: float(r["rec"][k]) for k in keys},
                        trainable_est=r["est"]["trainable_params"], trainable_meas=r["rec"]["trainable_params"],
                        cuda_peak=r["rec"].get("cuda_peak_bytes"), seconds=r["seconds"],
                        meas_opt_scalar=int(r["rec"].get("optimizer_scalar_bytes", 0) or 0)))
    return out


# ----------------------------------------------------------------------------- presets

_P = "memory"
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("LLaMA-65B full fine-tuning > 1 TB", _P,
           "Full fine-tuning keeps 16 bytes per parameter (bf16 weight and gradient, fp32 Adam moments and master "
           "copy): over a terabyte for 65 B parameters, before any activation.",
           dict(model="llama-65b", methods="full,lora", prec="bf16-mixed", batch=1, seq=512, recompute=0, unit="GB",
                rank=8, tg="default")),
    Preset("QLoRA: 65B on one 80 GB GPU", _P,
           "4-bit base weights (0.5 B/param + constants), LoRA r=64 on every linear layer, recomputation on: "
           "the static part drops from ~1 TB to a few tens of GB.",
           dict(model="llama-65b", methods="lora", prec="4bit", batch=1, seq=512, recompute=1, unit="GB",
                rank=64, tg="all")),
    Preset("LLaMA-7B: every method, bf16", _P,
           "The seven methods on LLaMA-7B at the same batch and length: the frozen weights dominate every PEFT "
           "method; only full fine-tuning pays gradients and optimizer state for all 6.7 B parameters.",
           dict(model="llama-7b", methods=",".join(METHODS), prec="bf16-mixed", batch=4, seq=1024, recompute=0,
                unit="GiB", rank=16)),
    Preset("Long sequences: activations grow with s²", _P,
           "At 8,192 tokens with attention scores kept (materialized), activations dwarf the weights; turn on "
           "recomputation to drop the a s² b term.",
           dict(model="mistral-7b", methods="lora,full", prec="bf16-mixed", batch=1, seq=8192, recompute=0,
                unit="GB", attn="materialized", rank=16)),
    Preset("LLaMA-2-70B across 8 GPUs: ZeRO-3 + checkpointing", _P,
           "Full fine-tuning of a 70 B model does not fit one GPU: ZeRO-3 shards weights, gradients and optimizer "
           "state over 8 GPUs and checkpointing keeps only each layer's input. Move the ZeRO stage from 0 to 3 and "
           "watch which term shrinks; switch 'Figures' to all GPUs together to see the sum.",
           dict(model="llama-2-70b", methods="full,lora", prec="bf16-mixed", batch=1, seq=2048, recompute=0,
                unit="GB", ckpt=1, opt="adamw", zero=3, gpus=8, scope="per-gpu", rank=16)),
    Preset("minilm: measure vs estimate", _P,
           "A real 22.7 M model at fp32: press 'measure on this machine' to count the bytes that really exist "
           "after two AdamW steps and compare them with the model term by term.",
           dict(model="minilm", methods=",".join(METHODS), prec="fp32", batch=8, seq=128, recompute=0, unit="GiB",
                dev="cpu", mmethods="full,lora,lora-sp,smt")),
]}
