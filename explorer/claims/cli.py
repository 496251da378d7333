"""``claims``: the claims lab on the command line.

    python -m explorer claims                       # one line per claim: verdict and results file
    python -m explorer claims --json                # every claim with its verdict, numbers and results file
    python -m explorer claims --markdown            # the same as a markdown table
    python -m explorer claims --run lora-sp         # run one claim (3 seeds per arm) and write its results
    python -m explorer claims --run all --quick     # the whole suite at the quick size (machinery check)
"""

from __future__ import annotations

import json
import sys


def add_parser(sub):
    p = sub.add_parser("claims", help="the claims lab: each paper's headline claim reproduced at small scale "
                                      "(seeds, error bars, computed verdicts)")
    p.add_argument("--json", action="store_true", help="print every claim with its verdict, the numbers behind it "
                                                       "and the path of its results file, as JSON")
    p.add_argument("--markdown", action="store_true", help="print the verdicts and their numbers as a markdown "
                                                           "table (the README's)")
    p.add_argument("--run", metavar="NAME", default=None,
                   help="run a claim's experiment and write its results (NAME: lora-sp, tied-lora, smt, sparta, all)")
    p.add_argument("--quick", action="store_true", help="the quick size (a few steps: checks the machinery; the "
                                                        "verdicts then mean nothing)")
    p.add_argument("--out", default=None, help="folder for the results files (default: assets/claims; the "
                                               "quick size writes <name>.quick.json there)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep each finished run's record here and reuse it when the same run is asked again "
                        "(resumes an interrupted suite; the key is the run's whole configuration)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from explorer.errors import DataError
    from . import results, specs

    if args.run:
        names = specs.NAMES if args.run == "all" else [args.run]
        for n in names:
            specs.get(n)  # unknown name: one line
        if args.threads < 1:
            raise DataError("--threads must be at least 1")
        import torch

        from . import runner

        torch.set_num_threads(args.threads)
        size = "quick" if args.quick else "full"
        cache: dict = {}
        folder = args.out or str(runner.ASSETS)
        for n in names:
            def progress(i, total, label, rec, n=n):
                if not args.quiet:
                    acc = rec.get("accuracy")
                    print(f"[{n} {i}/{total}] {label}: {rec['status']}"
                          + (f", accuracy {acc:.3f}" if acc is not None else f" ({rec.get('message')})")
                          + (" (reused)" if rec.get("reused") else ""), file=sys.stderr, flush=True)
            doc = runner.run_claim(n, size=size, cache=cache, progress=progress, cache_dir=args.cache,
                                   command=f"python -m explorer claims --run {args.run}" + (" --quick" if args.quick else ""))
            suffix = ".quick.json" if args.quick else ".json"
            path = runner.write(doc, f"{folder}/{n}{suffix}")
            print(f"{n}: {doc['verdict']} -> {path}", flush=True)
        return 0
    if args.markdown:
        print(results.markdown_table())
        return 0
    briefs = results.all_briefs()
    if args.json:
        print(json.dumps(briefs, indent=1))
        return 0
    for b in briefs:
        print(f"{b['claim']:10s} {b['verdict'] or '(' + (b.get('error') or 'no verdict') + ')'}  {b['results_file']}")
    return 0
