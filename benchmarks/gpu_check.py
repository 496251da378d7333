"""The prepared GPU check (``python -m benchmarks.gpu_check``, or ``python benchmarks/gpu_check.py``): the entry
point the README and the device instructions name.  The check itself is ``tools/gpu_check.py``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
