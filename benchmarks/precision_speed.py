"""bf16 against fp32 on this CPU: does the page's probe (``explorer.engine.speed.precision_speed``) tell what a
real fine-tune step costs?  (issue 21: a walkthrough saw bf16 about 10x slower than fp32 on its CPU.)

For each setting, in a fresh process with 1 torch thread (a run's share of 2 cores on the server): the probe's
ratio (bf16 time / fp32 time), and the median step time of 8 steps of the default LoRA run on minilm
(colour-shape, batch 16) in fp32 and in bf16 autocast, side by side.  Settings: this CPU as it is, and the same CPU
with oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``: no AVX512-BF16 or AMX, as on a CPU without bf16 units).

Run: ``python -m benchmarks.precision_speed`` (writes ``benchmarks/results/precision_speed.json`` and ``.md``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "precision_speed.json"
ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (("this CPU", {}), ("oneDNN limited to AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}))

CHILD = r"""
import json, os, time, torch
torch.set_num_threads(1)
from explorer.engine.speed import precision_speed
from explorer.engine.config import TrainConfig
from explorer.engine.prepare import load_for
from explorer.engine.train import train
t = time.perf_counter(); p = precision_speed(); probe_s = time.perf_counter() - t
loaded = None
steps = {}
for prec in ("fp32", "bf16"):
    cfg = TrainConfig(model="minilm", task="colour-shape", method="lora", steps=8, precision=prec, eval_every=0,
                      eval_examples=16, measure_memory=False)
    if loaded is None:
        loaded, _ = load_for(cfg)
    r = train(cfg, loaded=loaded)
    st = sorted(x["step_time_s"] for x in r.records if x.get("step_time_s"))
    steps[prec] = st[len(st) // 2]
print("RESULT " + json.dumps(dict(probe=p.to_dict(), probe_wall_s=probe_s, step_fp32_s=steps["fp32"],
                                  step_bf16_s=steps["bf16"], step_ratio=steps["bf16"] / steps["fp32"],
                                  load_average=list(os.getloadavg()))))
"""


def main(argv=None) -> int:
    rows = []
    for name, env in SETTINGS:
        e = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
        out = subprocess.run([sys.executable, "-c", CHILD], env=e, cwd=ROOT, capture_output=True, text=True,
                             timeout=900)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(dict(setting=name, env=env, **json.loads(line[7:])))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dict(rows=rows, command="python -m benchmarks.precision_speed",
                                   cpu_count=os.cpu_count()), indent=2))
    lines = ["| setting | probe: bf16 / fp32 | probe wall s | LoRA minilm step fp32 s | bf16 s | step bf16 / fp32 | "
             "load (1 min) after |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['probe']['ratio']:.2f} | {r['probe_wall_s']:.2f} | {r['step_fp32_s']:.3f} "
                     f"| {r['step_bf16_s']:.3f} | {r['step_ratio']:.2f} | {r['load_average'][0]:.1f} |")
    md = "\n".join(lines) + ("\n\nOne process per setting, 1 torch thread; medians of 8 steps (batch 16 of "
                             "colour-shape). The probe's line for the page: "
                             + "; ".join(f"{r['setting']}: \"{r['probe']['text']}\"" for r in rows) + ".\n")
    OUT.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
