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
  unpickled (``tests/architecture/test_security.py`` scans the source for pickle use).

Limits (environment):

``PEFT_EXPLORER_MAX_UPLOAD_MB``  largest upload in MiB (2^20 bytes; default 20).  One limit for
    every upload and data file (``explorer.limits``): :func:`max_upload_bytes` is read by the Fine-tune data
    upload (:func:`store_upload`), the history import of Compare (``explorer.workshop.history``), the data
    loader's file size check (``explorer.data.files``) and, through :func:`streamlit_max_upload_mb`,
    Streamlit's own ``server.maxUploadSize`` (``make run``) and each file uploader.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path, PurePosixPath, PureWindowsPath

from explorer.data.files import DATA_SUFFIXES, META_SUFFIX
from explorer.errors import DataError
# one limit (explorer.limits), re-exported for the pages and the upload checks below
from explorer.limits import DEFAULT_MAX_UPLOAD_MB, format_mib, max_upload_bytes, streamlit_max_upload_mb  # noqa: F401

ADAPTER_SUFFIXES = (".safetensors", ".json")
MAX_NAME_LEN = 255


class UnsafePathError(DataError):
    """A path from a URL or an upload would leave the session's folder (one-line message)."""


class UploadError(DataError):
    """An upload is too large, empty or of a type that is not read."""


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
        raise UploadError(f"{shown} is larger than the upload limit of {format_mib(limit)}")
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


def shown_name(name) -> str:
    """The user's file name as shown (no folders, no control characters, at most 80 characters)."""
    n = os.path.basename(str(name).replace("\\", "/")) if isinstance(name, str) else ""
    return _short(n, 80) or "upload"


def store_upload(folder, name, data, allowed=DATA_SUFFIXES, limit: int | None = None,
                 refuse_binary: bool = False) -> Path:
    """Check an upload and store it under a server-generated name in ``folder/uploads``.

    ``folder`` is the session's own folder (:func:`explorer.workshop.sessions.session_dir`); it is made
    (0700) when it does not exist yet (a session's first upload comes before its first run).
    Returns the stored path; the user's ``name`` is used only for its suffix and messages, and
    kept (for display) in ``<stored name>.meta.json`` beside the file.  ``refuse_binary``: data
    files that are not text in any encoding the loader reads are refused here already.
    """
    suf, b = check_upload(name, data, allowed=allowed, limit=limit)
    if refuse_binary and suf in DATA_SUFFIXES:
        from explorer.data import binary_reason

        why = binary_reason(b[:65536])
        if why:
            raise UploadError(f"{shown_name(name)} {why}")
    root = Path(folder)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    up = safe_join(root, "uploads")
    up.mkdir(mode=0o700, exist_ok=True)
    path = safe_join(root, f"uploads/{new_file_name(suf)}")
    atomic_write(path.with_name(path.name + META_SUFFIX), json.dumps(dict(name=shown_name(name), bytes=len(b))))
    return atomic_write(path, b)


def load_uploaded_task(folder, name, data, model_kind: str, text_col=None, label_col=None, prompt_col=None,
                       answer_col=None, encoding=None):
    """An uploaded CSV/TSV/JSON/JSONL file as a task (``explorer.data.Task``): checked, stored, loaded.

    The page's upload path (Fine-tune).  The task's name is the user's file name (shown on screen,
    and read back from the stored copy's ``.meta.json`` when a run loads it again); ``task.path``
    is the stored copy.  ``encoding``: None or "auto" detects it (the task's notes say which).
    """
    from explorer import data as data_mod

    path = store_upload(folder, name, data, allowed=DATA_SUFFIXES, refuse_binary=True)
    return data_mod.load_file_task(path, model_kind, text_col=text_col, label_col=label_col,
                                   prompt_col=prompt_col, answer_col=answer_col, encoding=encoding)


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
           "read_safetensors_upload", "atomic_write", "new_file_name", "max_upload_bytes", "streamlit_max_upload_mb",
           "format_mib", "shown_name", "META_SUFFIX", "UnsafePathError",
           "UploadError", "DATA_SUFFIXES", "ADAPTER_SUFFIXES"]

