"""The claims lab's suite: every claim's experiment (3 seeds per arm), results to ``assets/claims/``.

    nice -n 10 .venv/bin/python -m benchmarks.claims            # all four claims, full size (~30-60 min, 2 CPU cores)
    .venv/bin/python -m benchmarks.claims --quick               # the quick size (machinery check, ~2 min)
    .venv/bin/python -m benchmarks.claims smt sparta            # some claims only

The same as ``python -m explorer claims --run NAME [--quick]`` for each name; a run that is identical in
two claims (LoRA rank 8 on q, v) is trained once and reused.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    p = argparse.ArgumentParser(prog="python -m benchmarks.claims", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="claims to run (default: all)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--cache", default=None, help="folder of finished runs to reuse (resume an interrupted suite)")
    a = p.parse_args(argv)
    from explorer.__main__ import main as explorer_main

    names = a.names or ["all"]
    rc = 0
    for n in names:
        args = ["claims", "--run", n] + (["--quick"] if a.quick else []) + (["--out", a.out] if a.out else []) + (["--cache", a.cache] if a.cache else [])
        rc = explorer_main(args) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
