"""Path safety and upload checks (pure Python, no streamlit).

Rules for a server shared by a room of people:

- No path that comes from a URL or an upload is used as given: :func:`safe_join`
  resolves ``name`` under ``base`` and refuses absolute paths, ``..``, drive letters,
  NUL bytes and symlinks that lead out of ``base``.
- An upload is checked for size *here* (not only by Streamlit's
  ``server.maxUploadSize``), for its type (a whitelist of suffixes), and stored
  under a server-generated name inside the session's own folder
  (:func:`store_upload`); the user's file name is only ever shown, never used as a path.
- Only safetensors and JSON (plus CSV/JSON text data) are read: nothing is
  unpickled (``tests/test_security.py`` scans the source for pickle use).

Limits (environment):

``PEFT_EXPLORER_MAX_UPLOAD_MB``  largest upload in MB (default 20, the data loader's limit)
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import DataError

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
ADAPTER_SUFFIXES = (".safetensors", ".json")
DEFAULT_MAX_UPLOAD_MB = 20
MAX_NAME_LEN = 255


class UnsafePathError(DataError):
    """A path from a URL or an upload would leave the session's folder (one-line message)."""


class UploadError(DataError):
    """An upload is too large, empty or of a type that is not read."""


def max_upload_bytes() -> int:
    try:
        mb = float(os.environ.get("PEFT_EXPLORER_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
        if not (mb > 0) or mb != mb or mb == float("inf"):
            raise ValueError
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return int(mb * 1024 * 1024)


def _short(s, n: int = 60) -> str:
    s = re.sub(r"[\x00-\x1f\x7f]", "?", str(s))
    return s if len(s) <= n else s[: n - 1] + "…"


def safe_join(base, name) -> Path:
    """``base / name`` resolved, guaranteed to lie inside ``base`` (which must exist).

    Raises :class:`UnsafePathError` for an empty name, NUL or control characters,
    an absolute path (POSIX or Windows, drive letters and UNC included), any ``..``
    component, a backslash, an over-long name, or a result that resolves (through
    symlinks) outside ``base``.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise UnsafePathError(f"not a file name: {type(name).__name__}")
    s = os.fspath(name)
    if isinstance(s, bytes):
        raise UnsafePathError("not a file name: bytes")
    if not s or not s.strip():
        raise UnsafePathError("empty file name")
    if len(s) > 4 * MAX_NAME_LEN:
        raise UnsafePathError(f"file name too long ({len(s)} characters)")
    if re.search(r"[\x00-\x1f\x7f]", s):
        raise UnsafePathError(f"file name with control characters: '{_short(s)}'")
    if "\\" in s:
        raise UnsafePathError(f"backslashes are not allowed in file names: '{_short(s)}'")
    if PurePosixPath(s).is_absolute() or PureWindowsPath(s).is_absolute() or PureWindowsPath(s).drive \
            or s.startswith("~"):
        raise UnsafePathError(f"absolute paths are not allowed: '{_short(s)}'")
    parts = PurePosixPath(s).parts
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"'..' is not allowed in file names: '{_short(s)}'")
    if any(len(p) > MAX_NAME_LEN for p in parts):
        raise UnsafePathError("a path component is longer than 255 characters")
    root = Path(base).resolve(strict=True)
    target = (root / s).resolve(strict=False)
    if target != root and root not in target.parents:
        raise UnsafePathError(f"'{_short(s)}' leads outside the session's folder")
    return target


def is_inside(base, path) -> bool:
    """True when ``path`` resolves (through symlinks) inside ``base``."""
    try:
        root = Path(base).resolve(strict=True)
        p = Path(path).resolve(strict=False)
    except (OSError, RuntimeError):
        return False
    return p == root or root in p.parents


def _suffix(name: str) -> str:
    n = str(name).strip().lower()
    for suf in sorted(set(DATA_SUFFIXES) | set(ADAPTER_SUFFIXES), key=len, reverse=True):
        if n.endswith(suf):
            return suf
    return os.path.splitext(n)[1][:16]


def _read_limited(data, limit: int) -> bytes:
    """Bytes of ``data`` (bytes, str, a file-like object such as Streamlit's UploadedFile),
    reading at most ``limit + 1`` bytes so a huge upload is refused without being copied."""
    if data is None:
        raise UploadError("no file was uploaded")
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = bytes(data[: limit + 1])
        return b
    size = getattr(data, "size", None)  # Streamlit's UploadedFile knows its size
    if isinstance(size, int) and size > limit:
        return b"\0" * (limit + 1)  # only its length matters to the caller
    read = getattr(data, "read", None)
    if read is None:
        raise UploadError(f"not a file: {type(data).__name__}")
    try:
        if hasattr(data, "seek"):
            data.seek(0)
        b = read(limit + 1)
    except (OSError, ValueError) as e:
        raise UploadError(f"the upload could not be read: {_short(e, 120)}") from None
    if isinstance(b, str):
        b = b.encode("utf-8")
    if not isinstance(b, (bytes, bytearray)):
        raise UploadError("the upload could not be read")
    return bytes(b)


def check_upload(name, data, allowed=DATA_SUFFIXES, limit: int | None = None) -> tuple[str, bytes]:
    """(suffix, bytes) of an upload after the size, emptiness and type checks."""
    limit = max_upload_bytes() if limit is None else int(limit)
    shown = _short(name if isinstance(name, str) else "upload")
    suf = _suffix(name if isinstance(name, str) else "")
    if suf not in allowed:
        raise UploadError(f"{shown}: file type '{_short(suf, 16) or 'none'}' is not read here; use "
                          f"{', '.join(allowed)}")
    b = _read_limited(data, limit)
    if len(b) > limit:
        raise UploadError(f"{shown} is larger than the upload limit of {limit / 2**20:g} MB")
    if not b:
        raise UploadError(f"{shown} is empty")
    return suf, b


def new_file_name(suffix: str) -> str:
    """A server-generated file name (random, never derived from user input)."""
    if suffix not in set(DATA_SUFFIXES) | set(ADAPTER_SUFFIXES):
        raise UploadError(f"file type '{_short(suffix, 16)}' is not allowed")
    return f"upload-{secrets.token_hex(8)}{suffix}"


def atomic_write(path, data) -> Path:
    """Write ``data`` (bytes or str) to ``path`` through a temporary file in the same folder and
    ``os.replace``: readers never see half a file, and a failed write leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def store_upload(folder, name, data, allowed=DATA_SUFFIXES, limit: int | None = None) -> Path:
    """Check an upload and store it under a server-generated name in ``folder/uploads``.

    ``folder`` is the session's own folder (:func:`explorer.sessions.session_dir`).
    Returns the stored path; the user's ``name`` is used only for its suffix and messages.
    """
    suf, b = check_upload(name, data, allowed=allowed, limit=limit)
    root = Path(folder)
    up = safe_join(root, "uploads")
    up.mkdir(mode=0o700, exist_ok=True)
    return atomic_write(safe_join(root, f"uploads/{new_file_name(suf)}"), b)


def load_uploaded_task(folder, name, data, model_kind: str, text_col=None, label_col=None, prompt_col=None,
                       answer_col=None):
    """An uploaded CSV/JSON/JSONL file as a task (``explorer.data.Task``): checked, stored, loaded.

    The task's name is the user's file name (shown on screen); the file read is the stored copy.
    """
    from . import data as data_mod

    path = store_upload(folder, name, data, allowed=DATA_SUFFIXES)
    task = data_mod.load_file_task(path, model_kind, text_col=text_col, label_col=label_col,
                                   prompt_col=prompt_col, answer_col=answer_col)
    shown = _short(Path(str(name)).name if isinstance(name, str) else "upload", 80)
    task.name = shown or task.name
    return task


def read_json_upload(name, data, limit: int | None = None):
    """A JSON upload (e.g. a run history to import), parsed after the size check; DataError if malformed."""
    _, b = check_upload(name, data, allowed=(".json",), limit=limit)
    try:
        return json.loads(b.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UploadError(f"{_short(name)} is not valid JSON: {_short(e, 120)}") from None


def read_safetensors_upload(name, data, limit: int | None = None) -> dict:
    """Tensors of a safetensors upload (never a pickle); DataError if it is not one."""
    _, b = check_upload(name, data, allowed=(".safetensors",), limit=limit)
    try:
        from safetensors.torch import load as st_load

        return st_load(b)
    except Exception as e:  # noqa: BLE001 - any parser error is a malformed file
        raise UploadError(f"{_short(name)} is not a valid safetensors file: {_short(e, 120)}") from None


__all__ = ["safe_join", "is_inside", "check_upload", "store_upload", "load_uploaded_task", "read_json_upload",
           "read_safetensors_upload", "atomic_write", "new_file_name", "max_upload_bytes", "UnsafePathError",
           "UploadError", "DATA_SUFFIXES", "ADAPTER_SUFFIXES"]

