"""The caches of SMT's analysis (no Streamlit): warm-up records in an in-memory LRU and one safetensors
file per record under ``cache_dir()/smt-analysis`` (metadata as JSON in its header; written to a
temporary file and renamed; no pickle), and an LRU of finished analyses so redraws are instant."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict

import numpy as np

from explorer.smt_inspector.record import GradientRecord
from explorer.targets import Target

FORMAT_VERSION = 2  # 2: a classification head drawn from the record's seed (1: the loaded model's own)
MEMORY_LRU_SIZE = 4

_MEMORY: "OrderedDict[str, GradientRecord]" = OrderedDict()
_ANALYSES: "OrderedDict[tuple, object]" = OrderedDict()
_LOCK = threading.Lock()  # pages of several sessions share these caches
ANALYSIS_LRU_SIZE = 32


def _cache_folder():
    from explorer.model_files import cache_dir

    p = cache_dir() / "smt-analysis"
    p.mkdir(parents=True, exist_ok=True)
    return p


def record_key(settings: dict) -> str:
    blob = json.dumps(dict(settings, format=FORMAT_VERSION), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def remember(rec: GradientRecord) -> None:
    if rec.key is None:
        return
    with _LOCK:
        _MEMORY[rec.key] = rec
        _MEMORY.move_to_end(rec.key)
        while len(_MEMORY) > MEMORY_LRU_SIZE:
            _MEMORY.popitem(last=False)


def save_record(rec: GradientRecord, path=None):
    """One safetensors file (arrays) with the JSON metadata in its header; atomic (temp file + rename)."""
    from safetensors.numpy import save_file

    path = path or (_cache_folder() / f"{rec.key}.safetensors")
    tensors = {"w_abs": np.ascontiguousarray(rec.w_abs, dtype=np.float32)}
    if rec.dw_abs is not None:
        tensors["dw_abs"] = np.ascontiguousarray(rec.dw_abs, dtype=np.float32)
    for i in range(len(rec.steps)):
        tensors[f"ckpt{i}.sum"] = np.ascontiguousarray(rec.sums[i], dtype=np.float32)
        tensors[f"ckpt{i}.abs"] = np.ascontiguousarray(rec.abs_sums[i], dtype=np.float32)
        tensors[f"ckpt{i}.sq"] = np.ascontiguousarray(rec.sq_sums[i], dtype=np.float32)
    head = dict(version=FORMAT_VERSION, key=rec.key, meta=rec.meta, grain=rec.grain, steps=rec.steps,
                targets=[[t.name, t.layer, t.type, t.d_out, t.d_in] for t in rec.targets])
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=str(os.path.dirname(path)))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"record": json.dumps(head)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_record(path) -> GradientRecord:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="numpy") as f:
        head = json.loads(f.metadata()["record"])
    if head.get("version") != FORMAT_VERSION:
        raise ValueError("old cache format")
    arr = load_file(str(path))
    n = len(head["steps"])
    targets = [Target(name=a, layer=int(b), type=c, d_out=int(d), d_in=int(e)) for a, b, c, d, e in head["targets"]]
    return GradientRecord(key=head["key"], meta=head["meta"], targets=targets, grain=int(head["grain"]),
                          steps=[int(s) for s in head["steps"]],
                          sums=[arr[f"ckpt{i}.sum"] for i in range(n)],
                          abs_sums=[arr[f"ckpt{i}.abs"] for i in range(n)],
                          sq_sums=[arr[f"ckpt{i}.sq"] for i in range(n)],
                          w_abs=arr["w_abs"], dw_abs=arr.get("dw_abs"))


def cached_record(key: str) -> GradientRecord | None:
    """The record for ``key`` from memory, else from disk (a damaged file is ignored), else None."""
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    path = _cache_folder() / f"{key}.safetensors"
    if path.exists():
        try:
            rec = load_record(path)
        except Exception:  # noqa: BLE001 - a damaged or old cache file is recomputed
            return None
        rec.meta = dict(rec.meta, from_cache="disk")
        remember(rec)
        return rec
    return None


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()
        _ANALYSES.clear()


def cached_analysis(memo: tuple):
    """A finished analysis from the LRU (moved to its end), else None."""
    with _LOCK:
        if memo in _ANALYSES:
            _ANALYSES.move_to_end(memo)
            return _ANALYSES[memo]
    return None


def remember_analysis(memo: tuple, an) -> None:
    with _LOCK:
        _ANALYSES[memo] = an
        while len(_ANALYSES) > ANALYSIS_LRU_SIZE:
            _ANALYSES.popitem(last=False)


__all__ = ["FORMAT_VERSION", "record_key", "remember", "save_record", "load_record", "cached_record",
           "clear_memory_cache", "cached_analysis", "remember_analysis"]
