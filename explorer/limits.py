"""The upload limit, importable without torch (``make run`` reads it before starting the server).

``PEFT_EXPLORER_MAX_UPLOAD_MB`` (MiB, default 20) is the one limit of every upload path
(``explorer.workshop.security``), of the data loader's file size check (``explorer.data.files``) and of
Streamlit's ``server.maxUploadSize`` (``make run`` passes :func:`streamlit_max_upload_mb`).  At the bottom
layer, beside ``explorer.errors``: it imports nothing of the project.
"""

from __future__ import annotations

import os

DEFAULT_MAX_UPLOAD_MB = 20


def max_upload_bytes() -> int:
    """The upload limit in bytes: ``PEFT_EXPLORER_MAX_UPLOAD_MB`` MiB (default 20; a value that is
    not a positive finite number falls back to the default)."""
    try:
        mb = float(os.environ.get("PEFT_EXPLORER_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
        if not (mb > 0) or mb != mb or mb == float("inf"):
            raise ValueError
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return max(1, int(mb * 1024 * 1024))


def streamlit_max_upload_mb() -> int:
    """The same limit in Streamlit's unit: ``server.maxUploadSize`` and ``file_uploader(max_upload_size=)``
    are whole "megabytes" that Streamlit multiplies by 1024 * 1024 (MiB); rounded up, at least 1, so
    Streamlit never refuses a file the core accepts (the core's byte check is the exact one)."""
    return max(1, -(-max_upload_bytes() // 2**20))


def format_mib(n_bytes: int) -> str:
    """A size as people read it: ``20 MiB``, ``0.5 MiB``, ``25.3 MiB`` (MiB = 2^20 bytes, at most 3
    significant digits below 1,000 MiB) or ``1,048 bytes`` under a tenth of a MiB."""
    n = int(n_bytes)
    if n < 2**20 // 10:
        return f"{n:,} bytes"
    mib = n / 2**20
    return f"{mib:.3g} MiB" if mib < 1000 else f"{mib:,.0f} MiB"


if __name__ == "__main__":  # ``python -m explorer.limits``: Streamlit's value, for the Makefile
    print(streamlit_max_upload_mb())
