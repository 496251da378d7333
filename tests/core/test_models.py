"""Model registry: bundled models, tiny models, clear failures."""

from __future__ import annotations

import time

import pytest
import torch

from explorer import models
from explorer.models import ModelLoadError, load_model


def test_tiny_models_are_deterministic_and_gqa(tiny_llama):
    again = load_model("tiny-llama")
    assert models.checksum(again.model) == models.checksum(tiny_llama.model)
    cfg = tiny_llama.model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert tiny_llama.info.kind == "causal-lm" and not tiny_llama.info.pretrained
    assert not any(p.requires_grad for p in tiny_llama.model.parameters())


def test_minilm_loads_pretrained():
    lm = load_model("minilm")
    assert lm.info.kind == "seq-cls" and lm.info.pretrained
    assert 22_000_000 < lm.info.n_params < 23_500_000
    assert lm.model.config.hidden_size == 384 and lm.model.config.num_hidden_layers == 6
    # pretrained weights, not random: two similar sentences embed closer than unrelated ones
    tok = lm.tokenizer
    enc = tok(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."],
              return_tensors="pt", padding=True)
    with torch.no_grad():
        h = lm.model.bert(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1)
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_unknown_name_is_one_clear_line():
    with pytest.raises(ModelLoadError) as e:
        load_model("not a model!!")
    assert "Unknown model" in str(e.value) and "\n" not in str(e.value)


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not reachable"):
        load_model("prajjwal1/bert-tiny")
    assert time.perf_counter() - t < 5


def test_local_folder_roundtrip_and_bad_folder(tmp_path, tiny_bert):
    tiny_bert.model.save_pretrained(tmp_path / "m")
    tiny_bert.tokenizer.save_pretrained(tmp_path / "m")
    lm = load_model(str(tmp_path / "m"))
    assert lm.info.kind == "seq-cls" and lm.info.n_params == tiny_bert.info.n_params
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(str(tmp_path))


def test_too_large_for_memory_is_refused(tmp_path, tiny_bert, monkeypatch):
    tiny_bert.model.save_pretrained(tmp_path / "m")
    tiny_bert.tokenizer.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(models, "available_memory_bytes", lambda: 1_000_000)
    with pytest.raises(ModelLoadError, match="only 0.0 GiB is free"):
        load_model(str(tmp_path / "m"))


def test_fresh_copy_is_private(tiny_bert):
    c = models.fresh_copy(tiny_bert.model)
    with torch.no_grad():
        next(c.parameters()).add_(1.0)
    assert not torch.equal(next(c.parameters()), next(tiny_bert.model.parameters()))


# ----------------------------------------------------------------------------- one list of models

def test_a_new_config_file_reaches_every_picker(tmp_path, monkeypatch):
    """The bundled configs are the list: a new ``explorer/configs/<name>.json`` is offered by the model picker
    and the Memory calculator, by name with numbers compared as numbers."""
    import shutil

    from explorer import model_configs
    from explorer.views import memory_views

    for p in model_configs.CONFIG_DIR.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(model_configs.CONFIG_DIR / "llama-2-7b.json", tmp_path / "llama-2-100b.json")
    monkeypatch.setattr(model_configs, "CONFIG_DIR", tmp_path)
    names = model_configs.config_model_names()
    assert names.index("llama-2-7b") < names.index("llama-2-13b") < names.index("llama-2-70b") < \
        names.index("llama-2-100b") < names.index("llama-3-8b")
    assert names.index("qwen2.5-0.5b") < names.index("qwen2.5-7b") and names[0] == "bert-base"
    monkeypatch.undo()
    # the Memory calculator's list is this one (less the published specs it also has), read when it loads
    assert memory_views.CONFIGS == tuple(n for n in model_configs.config_model_names() if n not in memory_views.BIG)
    assert memory_views.SMALL == tuple(models.model_names()) and models.model_names() == list(models.REGISTRY)



def test_the_command_line_names_the_models_from_the_lists(tmp_path, monkeypatch):
    """Each command's ``--model`` help names the registry's models and the bundled configs as the lists hold them:
    a new config file and a new registry entry appear there too (no list of names typed into a help text)."""
    import argparse
    import shutil

    from explorer import model_configs, models
    from explorer.__main__ import build_parser

    for p in model_configs.CONFIG_DIR.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(model_configs.CONFIG_DIR / "llama-2-7b.json", tmp_path / "llama-2-100b.json")
    monkeypatch.setattr(model_configs, "CONFIG_DIR", tmp_path)
    monkeypatch.setitem(models.REGISTRY, "tiny-new", models.REGISTRY["tiny-llama"])
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps = {c: next(a.help for a in subs[c]._actions if "--model" in a.option_strings)
             for c in ("inspect", "train", "smt-blocks", "memory")}
    registry = ", ".join(models.model_names())
    assert registry.endswith("tiny-llama, tiny-new") and all(registry in h for h in helps.values())
    configs = ", ".join(model_configs.config_model_names())
    assert "llama-2-70b, llama-2-100b" in configs and configs in helps["inspect"] and configs in helps["memory"]
    assert "(llama-7b, llama-13b, llama-65b, gpt3-175b)" in helps["memory"]  # published, less the configs' mistral-7b

def test_no_list_of_model_names_outside_the_registry():
    """``explorer/`` and the Streamlit helpers name no two registered models in one list, tuple, set or dict
    (they ask ``model_names()`` / ``config_model_names()``); the registry and the configs are the one source."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = set(models.REGISTRY) | set(models.config_models())
    found = []
    for p in sorted([*root.glob("explorer/**/*.py"), *root.glob("ui_*.py")]):
        rel = p.relative_to(root).as_posix()
        if rel in ("explorer/models.py", "explorer/model_configs.py"):
            continue
        for node in ast.walk(ast.parse(p.read_text("utf-8"))):
            elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else \
                node.keys if isinstance(node, ast.Dict) else []
            hits = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in names]
            if len(hits) >= 2:
                found.append(f"{rel}:{node.lineno}: {', '.join(hits)}")
    assert not found, "a list of model names (ask explorer.models):\n" + "\n".join(found)
