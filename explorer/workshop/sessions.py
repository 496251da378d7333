"""Per-session folders and the server status (pure Python, no streamlit).

The one implementation of session folders: a dashboard session's run history
(``explorer.workshop.history``), its uploads and its exports live in one folder.  Its id is made
on the server (:func:`new_session_id`, 32 hex characters from ``secrets``), checked with a
strict pattern before it names a folder, and every path inside it goes through
:func:`explorer.workshop.security.safe_join`::

    sid = sessions.new_session_id()            # kept in st.session_state
    folder = sessions.session_dir(sid)         # <root>/<sid>, created 0700
    task = security.load_uploaded_task(folder, up.name, up, "seq-cls")

``explorer.workshop.history.session_folder`` is this function (without creating the folder).
Root: ``PEFT_EXPLORER_SESSIONS`` or ``<cache>/sessions`` (``explorer.models.cache_dir``).
Folders older than ``max_age_s`` are removed by :func:`cleanup` (call it now and then).

Server status (``PEFT_EXPLORER_DEBUG=1`` shows it on Home): the checksum of every cached
base model registered with :func:`register_base`, live worker threads, active runs, RSS.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
import weakref
from pathlib import Path

from explorer.workshop.security import UnsafePathError, safe_join

_SID = re.compile(r"[0-9a-f]{32}")
WORKER_PREFIXES = ("train", "peft-run", "peft-sweep")


def root(base: Path | str | None = None) -> Path:
    """The folder holding every session folder (created 0700): ``base/sessions`` when ``base``
    is given, else ``PEFT_EXPLORER_SESSIONS`` or ``<cache>/sessions``; resolved."""
    if base is not None:
        p = Path(base) / "sessions"
    else:
        env = os.environ.get("PEFT_EXPLORER_SESSIONS")
        if env:
            p = Path(env)
        else:
            from explorer.models import cache_dir

            p = cache_dir() / "sessions"
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    return p.resolve()


def new_session_id() -> str:
    """A random id made on the server (128 bits, 32 hex characters)."""
    return secrets.token_hex(16)


def valid_session_id(sid) -> bool:
    return isinstance(sid, str) and bool(_SID.fullmatch(sid))


def session_dir(sid: str, create: bool = True, base: Path | str | None = None) -> Path:
    """The session's own folder (``root(base)/<sid>``); refuses ids not made by :func:`new_session_id`.

    ``create=True`` makes it (0700) and marks it as in use (cleanup is by age); ``create=False``
    only names it (e.g. to check whether an old session left runs behind)."""
    if not valid_session_id(sid):
        raise UnsafePathError("invalid session id")
    d = safe_join(root(base), sid)
    if create:
        d.mkdir(mode=0o700, exist_ok=True)
        os.utime(d)
    return d


def cleanup(max_age_s: float = 24 * 3600) -> int:
    """Remove session folders untouched for ``max_age_s`` seconds; returns how many."""
    n = 0
    base = root()
    now = time.time()
    for d in base.iterdir():
        if not valid_session_id(d.name) or d.is_symlink() or not d.is_dir():
            continue
        try:
            if now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except OSError:
            pass
    return n


# ----------------------------------------------------------------------------- server status

_BASES: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
_BASES_LOCK = threading.Lock()


def register_base(name: str, loaded) -> None:
    """Remember a cached base model (weakly) so the status can show its checksum."""
    with _BASES_LOCK:
        try:
            _BASES[str(name)] = loaded
        except TypeError:  # not weak-referenceable
            pass


def worker_threads() -> list[str]:
    """Names of live threads that train: ``train-*`` (``start_in_thread``), ``peft-run-*`` and
    ``peft-sweep`` (``explorer.workshop.jobs``)."""
    return sorted(t.name for t in threading.enumerate()
                  if t.is_alive() and t.name.startswith(WORKER_PREFIXES))


def settle_memory() -> bool:
    """``gc.collect()`` and glibc's ``malloc_trim(0)`` (freed heap pages go back to the OS, so RSS
    shows what is really held).  Returns True when malloc_trim was available."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def server_status(checksums: bool = True, settle: bool = False) -> dict:
    """What the debug panel shows: pid, RSS, cached base models with checksums, threads, runs.

    ``settle=True`` first runs :func:`settle_memory` (gc + malloc_trim), labelled in the output.
    """
    from explorer.engine import state as run_state

    out = dict(pid=os.getpid(), time=time.time())
    if settle:
        out["settled"] = "gc.collect() + malloc_trim(0) before reading RSS" if settle_memory() else "gc.collect()"
    try:
        import psutil

        out["rss_bytes"] = int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001
        out["rss_bytes"] = None
    with _BASES_LOCK:
        bases = dict(_BASES.items())
    models = {}
    for name, loaded in sorted(bases.items()):
        entry = dict(params=int(getattr(getattr(loaded, "info", None), "n_params", 0) or 0))
        if checksums:
            from explorer.models import checksum

            entry["checksum"] = checksum(loaded.model)
        models[name] = entry
    out["base_models"] = models
    out["worker_threads"] = worker_threads()
    out["threads"] = len(threading.enumerate())
    runs = run_state.active_runs()
    out["active_runs"] = [dict(method=getattr(r.cfg, "method", None), model=getattr(r.cfg, "model", None),
                               step=r.step, total=r.total_steps, status=r.status) for r in runs]
    return out


__all__ = ["root", "new_session_id", "valid_session_id", "session_dir", "cleanup", "register_base",
           "server_status", "worker_threads", "settle_memory"]
