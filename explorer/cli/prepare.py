"""``prepare`` command: the one-time work a fresh install needs, done before anyone waits for it.

    python -m explorer prepare            # converts SmolLM2-135M from its GGUF file into the cache (once)

``make install`` (and so ``make run`` and ``make test``) runs it, so the first view of smollm2-135m
in the dashboard loads in about a second instead of converting while a room waits.
"""

from __future__ import annotations

import json
import time


def add_parser(sub):
    p = sub.add_parser("prepare", help="one-time set-up after install: convert SmolLM2 into the local cache")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from explorer import model_files

    t0 = time.perf_counter()
    was = model_files.smollm2_converted()
    folder = model_files.smollm2_folder()
    out = dict(smollm2_folder=str(folder), converted_now=not was, seconds=round(time.perf_counter() - t0, 2))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"smollm2-135m: {'converted' if not was else 'already converted'} in {folder} "
              f"({out['seconds']:.1f} s)")
    return 0
