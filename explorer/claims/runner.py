"""Runs a claim's experiment and writes its results file.  The ONE module of the claims lab that
imports the training API (``explorer.engine.train``), so the lab can be retargeted by editing this file.

>>> from explorer.claims import runner
>>> result = runner.run_claim("lora-sp", size="quick")      # trains 3 seeds per arm
>>> runner.write(result, "assets/claims/lora-sp.json")
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# the only imports of the training API in explorer.claims
from explorer.engine.config import TrainConfig
from explorer.engine.prepare import load_for
from explorer.engine.train import train

from . import analysis, specs

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "claims"
SCHEMA = 1


def config_for(exp: specs.Experiment, arm: specs.Arm, seed: int, sz: specs.Size) -> TrainConfig:
    return TrainConfig(**specs.arm_config_kwargs(exp, arm, seed, sz))


def plan(exp: specs.Experiment, sz: specs.Size) -> list[tuple[str, specs.Arm, int, TrainConfig]]:
    """Every (label, arm, seed, config) of an experiment, seeds outermost (so every arm has a first seed
    early: a live re-run can draw all arms after one pass)."""
    return [(f"{arm.label} · seed {seed}", arm, seed, config_for(exp, arm, seed, sz))
            for seed in sz.seeds for arm in exp.arms]


def cfg_key(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def record_from(arm: specs.Arm, seed: int, res) -> dict:
    """One run's record (see :mod:`explorer.claims.analysis`) from a ``RunResult``."""
    s = res.summary
    head = None
    v_share = None
    shares = None
    adapter = res.adapter
    if adapter is not None:
        try:
            head = int(adapter.head_parameters())
        except Exception:  # noqa: BLE001 - an adapter without a head count: the x axis falls back to the budget
            head = None
        if any("blocks" in lay.detail for lay in adapter.layouts()):  # a block method (SMT): where they lie
            per: dict[str, int] = {}
            for lay in adapter.layouts():
                per[lay.type] = per.get(lay.type, 0) + int(lay.detail.get("blocks", 0))
            tot = sum(per.values())
            if tot:
                shares = {k: v / tot for k, v in sorted(per.items())}
                v_share = shares.get("v", 0.0)
    tr = s.get("trainable_params")
    return dict(arm=arm.key, seed=int(seed), status=s.get("status"), message=s.get("message") or "",
                accuracy=s.get("final_accuracy"), eval_loss=s.get("final_eval_loss"),
                base_accuracy=s.get("base_accuracy"),
                trainable_params=tr, head_params=head,
                adapter_params=(tr - head if tr is not None and head is not None else None),
                v_share=v_share, block_shares=shares, wall_s=s.get("wall_time_s"))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in ("torch", "transformers", "peft"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def header(exp: specs.Experiment, sz: specs.Size, command: str | None = None) -> dict:
    return dict(schema=SCHEMA, claim=exp.name, size=sz.name, experiment=exp.to_dict(),
                settings=dict(model=exp.model, task=exp.task, steps=sz.steps, batch_size=exp.batch_size,
                              max_len=sz.max_len, seeds=list(sz.seeds), eval_examples=sz.eval_examples,
                              device="cpu", lr="project default per method (explorer.engine.config.default_lr)"),
                command=command or " ".join([os.path.basename(sys.executable), *sys.argv]),
                versions=_versions(), commit=_git_commit(), machine=platform.platform(),
                started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


FIRST_SEEDS = 3  # the suite first ran 3 seeds per arm; their verdicts are kept beside the full ones


def finish(doc: dict, exp: specs.Experiment, records: list[dict]) -> dict:
    doc = dict(doc, records=records, **analysis.analyse(exp, records))
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) > FIRST_SEEDS:  # the same rules on the first 3 seeds only (what a 3-seed run would have said)
        first = set(seeds[:FIRST_SEEDS])
        sub = analysis.analyse(exp, [r for r in records if r["seed"] in first])
        doc["first_seeds"] = dict(seeds=sorted(first), verdict=sub["verdict"],
                                  tests=[{k: t.get(k) for k in ("key", "verdict", "diff", "lo", "hi")}
                                         for t in sub["tests"]])
    doc["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return doc


def _disk_get(folder, key: str):
    import hashlib

    if not folder:
        return None
    p = Path(folder) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    try:
        d = json.loads(p.read_text())
        return d["record"] if d.get("key") == key else None
    except (OSError, ValueError, KeyError):
        return None


def _disk_put(folder, key: str, rec: dict) -> None:
    import hashlib

    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    p = Path(folder) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    p.write_text(json.dumps(dict(key=key, record=rec), default=str))


def run_claim(name: str, size: str = "full", cache: dict | None = None, progress=None, command: str | None = None,
              loaded=None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Train every (arm, seed) of a claim and return its results document.

    ``cache`` (a dict shared across claims) reuses a run whose TrainConfig is identical (LoRA rank 8 on q, v
    is an arm of three claims); ``cache_dir`` keeps every finished run's record on disk under a hash of its
    full TrainConfig, so an interrupted suite resumes where it stopped; ``progress(i, n, label, record)`` is
    called after each run.
    """
    import torch

    exp, sz = specs.get(name), specs.size(size)
    doc = header(exp, sz, command)
    items = plan(exp, sz)
    records = []
    cache = {} if cache is None else cache
    t0 = time.perf_counter()
    if loaded is None and any(cfg_key(c) not in cache and _disk_get(cache_dir, cfg_key(c)) is None
                              for *_, c in items):
        loaded, _task = load_for(items[0][3])  # once per claim (train() takes a private copy per run)
    for i, (label, arm, seed, cfg) in enumerate(items, 1):
        key = cfg_key(cfg)
        on_disk = None if key in cache else _disk_get(cache_dir, key)
        if key in cache:
            rec = dict(cache[key], arm=arm.key, reused=True)
        elif on_disk is not None:
            rec = dict(on_disk, arm=arm.key, reused=True)
            cache[key] = on_disk
        else:
            torch.manual_seed(seed)
            res = train(cfg, loaded=loaded)
            rec = record_from(arm, seed, res)
            res.adapter = None
            if rec["status"] == "finished":
                cache[key] = rec
                _disk_put(cache_dir, key, rec)
        records.append(rec)
        if progress:
            progress(i, len(items), label, rec)
    doc = finish(doc, exp, records)
    doc["wall_s"] = time.perf_counter() - t0  # this call; each record keeps its own run's wall time
    doc["runs_reused"] = sum(1 for r in records if r.get("reused"))  # from another claim or the --cache folder
    doc["runs_wall_s"] = sum(r.get("wall_s") or 0.0 for r in records)  # wall time of the runs themselves
    return doc


def write(doc: dict, path: str | os.PathLike | None = None) -> Path:
    path = Path(path) if path else ASSETS / f"{doc['claim']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path
