"""Config-only big models: time of ``inspect`` (and the playground's summary) per method, in process.

For each bundled config (default: llama-2-70b) and each method at its defaults: the meta-device build
(once per model), then ``explorer.cli.core.inspect`` (apply the method to a copy, count, layouts, JSON-ready
summary) and ``explorer.views.playground.summarize`` + the drawn layout's mask (the playground's work for one view).
Wall and CPU seconds; the CPU time is what the machine's other users cannot inflate. The command-line wall
time adds Python's start and the imports of torch, transformers and peft (measured once: ``--cli``).

Run: ``python -m benchmarks.bigmodel_inspect [--models llama-2-70b,llama-2-7b] [--cli]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llama-2-70b")
    ap.add_argument("--cli", action="store_true", help="also time the command line (imports included)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from explorer.views import playground as pg
    from explorer.cli.core import inspect
    from explorer.methods import METHODS
    from explorer.models import load_model

    inspect("tiny-bert", "lora", {})  # imports and first-use caches out of the measurement
    rows = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        loaded = load_model(name, meta_ok=True)
        build = time.perf_counter() - t0
        for m in METHODS:
            w0, c0 = time.perf_counter(), time.process_time()
            res = inspect(name, m, {})
            w1, c1 = time.perf_counter(), time.process_time()
            s = pg.summarize(loaded, m, {}, use_cache=False)
            lay = pg.find_layout(s, "v", 0) or s.layouts()[0]
            pg.matrix_pictures(s, lay)  # the masks the page draws (each method says which)
            w2, c2 = time.perf_counter(), time.process_time()
            rows.append(dict(model=name, method=m, params=res["total_params"], trainable=res["trainable_params"],
                             build_s=round(build, 3), inspect_wall_s=round(w1 - w0, 3),
                             inspect_cpu_s=round(c1 - c0, 3), playground_wall_s=round(w2 - w1, 3),
                             playground_cpu_s=round(c2 - c1, 3), adapter_bytes=s.adapter_bytes))
            print(json.dumps(rows[-1]))
    if args.cli:
        for m in ("lora", "sparta"):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "explorer", "inspect", "--model", args.models.split(",")[0],
                                "--method", m, "--json"], cwd=ROOT, capture_output=True, text=True)
            t1 = time.perf_counter()
            t2 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch, transformers, peft, explorer.cli.core"], cwd=ROOT)
            t3 = time.perf_counter()
            print(json.dumps(dict(cli=m, rc=r.returncode, cli_wall_s=round(t1 - t0, 2),
                                  imports_only_wall_s=round(t3 - t2, 2))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
