"""Save a run (adapter, merged model, metrics as JSON and CSV) and load a saved adapter back.

Layout of an output folder::

    DIR/metrics.json        {"config": ..., "summary": ..., "records": [...], "notes": [...]}
    DIR/metrics.csv         one row per record (step, phase, loss, lr, step time, memory, eval ...)
    DIR/adapter/            the method's own format (safetensors + JSON) + run.json
                            (+ warmup_base.safetensors for SMT with a full-mode warm-up: the warm-up
                            moved every weight, so the blocks' base is the warmed-up model)
    DIR/merged/             with merged=True: a folder loadable with from_pretrained (+ tokenizer)

``load_run_adapter(loaded, DIR/adapter)`` rebuilds the adapter on a fresh copy of the base
model and reproduces the run's final evaluation exactly.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if v != v else (str(v))
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def metrics_dict(result) -> dict:
    cfg = result.config.to_dict() if result.config is not None else {}
    return _jsonable(dict(config=cfg, summary=result.summary, records=list(result.records), notes=list(result.notes)))


def write_metrics(result, out) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = metrics_dict(result)
    jp = out / "metrics.json"
    jp.write_text(json.dumps(d, indent=2))
    cp = out / "metrics.csv"
    keys: list[str] = []
    for r in d["records"]:
        for k, v in r.items():
            if k not in keys and not isinstance(v, (dict, list)):
                keys.append(k)
    with cp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in d["records"]:
            w.writerow({k: r.get(k) for k in keys})
    return jp, cp


def save_adapter(result, folder) -> Path:
    from safetensors.torch import save_file

    if result.adapter is None:
        raise ValueError("the run has no adapter to save")
    if getattr(result.adapter, "needs_warmup", False):
        raise ValueError("SMT stopped before its warm-up ended: no blocks were selected, nothing to save")
    folder = Path(folder)
    result.adapter.save(folder)
    cfg = result.config
    name_base_model(folder, cfg.model)
    info = dict(model=cfg.model, task=result.task.name if result.task else cfg.task, method=cfg.method,
                seed=cfg.seed, num_labels=(result.task.num_labels if result.task else 0),
                label_names=(result.task.label_names if result.task else []),
                kind=(result.loaded.info.kind if result.loaded else None),
                final_accuracy=result.summary.get("final_accuracy"), warmup_base=bool(result.warmup_base))
    if result.warmup_base:
        save_file({k: v.contiguous() for k, v in result.warmup_base.items()}, str(folder / "warmup_base.safetensors"))
    (folder / "run.json").write_text(json.dumps(_jsonable(info), indent=2))
    return folder


def base_model_id(model: str) -> str:
    """What a saved adapter names as its base: a registry model's public hub id (minilm:
    ``sentence-transformers/all-MiniLM-L6-v2``, smollm2-135m: ``HuggingFaceTB/SmolLM2-135M-Instruct``; so plain peft
    resolves it), the name of one that has none (the tiny models, built by the project), a local folder as an
    absolute path (so the file still points at it from elsewhere), else the id as given (a hub id)."""
    from explorer.models import REGISTRY

    model = str(model)
    if model in REGISTRY:
        return REGISTRY[model].get("hub_id") or model
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else model


def name_base_model(folder, model: str) -> None:
    """Write the run's base model into peft's ``adapter_config.json`` (``base_model_name_or_path``; peft leaves
    it null for models built in memory).  Adapters in the project's own format have no such file: nothing to do."""
    p = Path(folder) / "adapter_config.json"
    if not p.exists():
        return
    conf = json.loads(p.read_text())
    conf["base_model_name_or_path"] = base_model_id(model)
    p.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def save_merged(result, folder) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = result.adapter.merged_model()
    merged.save_pretrained(str(folder))
    tok = getattr(result.loaded, "tokenizer", None)
    if tok is not None:
        tok.save_pretrained(str(folder))
    return folder


def save_run(result, out, merged: bool = False, adapter: bool = True) -> dict:
    """Write metrics.json, metrics.csv, adapter/ and (merged=True) merged/.  Returns the paths."""
    out = Path(out)
    jp, cp = write_metrics(result, out)
    paths = dict(metrics_json=str(jp), metrics_csv=str(cp))
    if adapter and result.adapter is not None and not getattr(result.adapter, "needs_warmup", False):
        paths["adapter"] = str(save_adapter(result, out / "adapter"))
        if merged:
            paths["merged"] = str(save_merged(result, out / "merged"))
    return paths


def load_run_adapter(loaded, folder, device="cpu"):
    """The saved adapter of a run, rebuilt on a fresh copy of ``loaded`` (the cached base stays untouched)."""
    import torch
    from safetensors.torch import load_file

    from explorer.methods import load_adapter
    from explorer.models import fresh_copy
    from explorer.engine.prepare import init_head

    folder = Path(folder)
    info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
    m = fresh_copy(loaded.model)
    if loaded.info.kind == "seq-cls":
        init_head(m, max(2, int(info.get("num_labels") or 2)), int(info.get("seed", 0)))
    wb = folder / "warmup_base.safetensors"
    if wb.exists():
        tensors = load_file(str(wb))
        missing = m.load_state_dict(tensors, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{wb.name}: unexpected tensors {missing.unexpected_keys[:3]}")
    adapter = load_adapter(m, folder)
    adapter.model.to(torch.device(device))
    adapter.model.eval()
    return adapter


__all__ = ["save_run", "save_adapter", "save_merged", "write_metrics", "metrics_dict", "load_run_adapter",
           "base_model_id", "name_base_model"]
