"""The room demonstration preset (issue 21): does it learn visibly, and how long does it take on 2 cores?

Runs the Fine-tune preset ``DEMO`` of ``explorer.workshop.presets`` exactly as the page starts it (its URL values
into a ``TrainConfig``; evaluation every ``max(2, steps // 6)`` steps on 200 held-out examples), with 1 torch
thread (what a run gets on the server: cores / PEFT_EXPLORER_MAX_RUNS = 2 / 2) for seeds 0, 1, 2 and with 2
threads for seed 0; reports held-out accuracy at every evaluation, the wall time of each run (model already
loaded, as on the server), the model load once, and the load average before and after (the machine is shared).
Targets: final held-out accuracy >= 0.75 (chance is 0.5) for every seed, and <= 30 s wall per run.

Run: ``python -m benchmarks.demo_preset`` (writes ``benchmarks/results/demo_preset.json`` and ``.md``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from explorer.engine.config import TrainConfig
from explorer.engine.prepare import load_for
from explorer.engine.train import train
from explorer.workshop.presets import DEMO, DEMO_TARGET_ACC, DEMO_TARGET_S, PRESETS

OUT = Path(__file__).resolve().parent / "results" / "demo_preset.json"
TARGET_ACC, TARGET_S = DEMO_TARGET_ACC, DEMO_TARGET_S


def config_of(values: dict, seed: int = 0) -> TrainConfig:
    """The run the Fine-tune page starts from a preset's URL values (its defaults for what the preset leaves)."""
    steps = int(values.get("steps", 150))
    knobs = {k[2:]: (v.split(",") if k == "k_targets" else v) for k, v in values.items() if k.startswith("k_")}
    return TrainConfig(model=values["model"], task=values["task"], method=values["method"], steps=steps,
                       lr=float(values["lr"]) if values.get("lr") else None, knobs=knobs,
                       batch_size=int(values.get("bs", 16)), seed=seed, eval_every=max(2, steps // 6),
                       eval_examples=200)


def one(values: dict, threads: int, seed: int, loaded) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = train(config_of(values, seed), loaded=loaded)
    wall = time.perf_counter() - t0
    evals = [(r["step"], r["eval_accuracy"]) for r in res.records if r.get("eval_accuracy") is not None]
    return dict(threads=threads, seed=seed, status=res.status, wall_s=round(wall, 2), evals=evals,
                final_accuracy=res.summary.get("final_accuracy"), load_average=list(os.getloadavg()))


def main(argv=None) -> int:
    values = dict(PRESETS[DEMO].values)
    load0 = list(os.getloadavg())
    t0 = time.perf_counter()
    loaded, _task = load_for(config_of(values))
    load_s = time.perf_counter() - t0
    rows = [one(values, 1, s, loaded) for s in (0, 1, 2)]
    ok = all(r["final_accuracy"] is not None and r["final_accuracy"] >= TARGET_ACC for r in rows)
    fast = all(r["wall_s"] <= TARGET_S for r in rows)
    out = dict(preset=DEMO, values=values, model_load_s=round(load_s, 2), runs=rows,
               targets=dict(accuracy=TARGET_ACC, wall_s=TARGET_S, accuracy_met=ok, time_met=fast),
               load_average_before=load0, load_average_after=list(os.getloadavg()), cpu_count=os.cpu_count(),
               command="python -m benchmarks.demo_preset", torch=torch.__version__, python=sys.version.split()[0])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    lines = [f"Preset **{DEMO}** ({values['method']} on {values['model']}, {values['task']}, {values['steps']} steps, "
             f"lr {values.get('lr') or 'default'}), run as the Fine-tune page starts it.", "",
             "| torch threads | seed | held-out accuracy at steps " + ", ".join(str(s) for s, _ in rows[0]["evals"])
             + " | wall s (model loaded) | load average (1 min) after |", "|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['seed']} | " + " → ".join(f"{a:.3f}" for _, a in r["evals"])
                     + f" | {r['wall_s']:.1f} | {r['load_average'][0]:.1f} |")
    lines.append("")
    lines.append(f"Model load {load_s:.1f} s (once per server). Targets: final accuracy >= {TARGET_ACC} for every "
                 f"seed {'met' if ok else 'NOT met'}; <= {TARGET_S:g} s per run {'met' if fast else 'NOT met'}. "
                 f"Load average before {load0[0]:.1f}, {os.cpu_count()} CPUs (a shared machine: other work ran).")
    md = "\n".join(lines) + "\n"
    OUT.with_suffix(".md").write_text(md)
    print(md)
    return 0 if ok and fast else 1


if __name__ == "__main__":
    sys.exit(main())
