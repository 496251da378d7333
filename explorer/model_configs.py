"""Config-only models: the published config.json values of well-known models (``explorer/configs/<name>.json``,
no weights), read into a transformers config and built on the meta device, so every method's counts and layouts
can be shown on them; they are never trained.  The files are the list: a new one appears in every picker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from explorer.errors import ModelLoadError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_models() -> dict[str, Path]:
    """Bundled config-only models: name -> JSON file (``explorer/configs/<name>.json``)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def config_model_names() -> list[str]:
    """The bundled config-only models as the pickers offer them: by name, numbers compared as numbers
    (llama-2-7b before llama-2-13b).  A new ``explorer/configs/<name>.json`` appears here, so in every picker."""
    def key(name: str):
        parts = re.split(r"(\d+(?:\.\d+)?)", name)  # text, number, text, ...: like types compared at each place
        return [float(p) if i % 2 else p for i, p in enumerate(parts)]

    return sorted(config_models(), key=key)


def config_model_source(name: str) -> str:
    return json.loads(config_models()[name].read_text()).get("_source", "")


def read_config(name_or_folder: str):
    """A transformers config from a bundled config name or a folder holding config.json (never the hub)."""
    from transformers import AutoConfig

    files = config_models()
    try:
        if name_or_folder in files:
            d = json.loads(files[name_or_folder].read_text())
            d = {k: v for k, v in d.items() if not k.startswith("_")}
            return AutoConfig.for_model(d.pop("model_type"), **d)
        return AutoConfig.from_pretrained(str(Path(name_or_folder).expanduser()), local_files_only=True,
                                          trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"Could not read the config of '{str(name_or_folder)[:80]}': "
                             f"{str(e).splitlines()[0][:200]}") from None


def config_kind(config) -> str:
    archs = getattr(config, "architectures", None) or []
    return "causal-lm" if any("CausalLM" in a or "LMHead" in a for a in archs) else "seq-cls"


def build_meta(config, kind: str, num_labels: int = 2) -> nn.Module:
    """The model of ``config`` on the meta device (shapes only, no memory, about a second even for 70B)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        with torch.device("meta"):
            if kind == "causal-lm":
                return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            config.num_labels = num_labels
            return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"Could not build the model from its config: {str(e).splitlines()[0][:200]}") from None
