"""Command line: ``python -m explorer <command> ...`` or, after ``pip install -e .``, ``peft-explorer <command> ...``
from any folder (``--help`` lists the commands).

Every command can print JSON; errors are one clear line on stderr and exit code 2.
Subcommands live in their own modules (``explorer/cli/*.py``), each with
``add_parser(subparsers)`` and a ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMAND_MODULES = ["explorer.cli.core", "explorer.cli.train", "explorer.cli.smt", "explorer.cli.memory",
                      "explorer.cli.prepare", "explorer.cli.lesson", "explorer.claims.cli"]


def build_parser(prog: str = "python -m explorer") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="PEFT Explorer: apply, inspect and train parameter-efficient "
                                            "fine-tuning methods on small real models.")
    p.add_argument("--offline", action="store_true", help="never contact a model or data hub")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for modname in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        mod.add_parser(sub)
    return p


def main(argv=None, prog: str = "python -m explorer") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.offline:
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ[k] = "1"
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from explorer.errors import UserError

    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


def console() -> None:
    """The ``peft-explorer`` command (``pyproject.toml``'s console script): the same commands from any folder."""
    sys.exit(main(prog="peft-explorer"))


if __name__ == "__main__":
    sys.exit(main())
