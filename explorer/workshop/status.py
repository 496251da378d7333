"""The server status (``PEFT_EXPLORER_DEBUG=1`` shows it on Home; pure Python, no streamlit).

The checksum of every cached base model registered with :func:`register_base`, live worker threads, active
runs, RSS, and what the session-folder janitor did (``explorer.workshop.sessions.janitor_stats``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref

WORKER_PREFIXES = ("train", "peft-run", "peft-sweep")
FREEZE_ENV = "PEFT_EXPLORER_GC_FREEZE"


_BASES: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
_BASES_LOCK = threading.Lock()


def register_base(name: str, loaded) -> None:
    """Remember a cached base model (weakly) so the status can show its checksum."""
    with _BASES_LOCK:
        try:
            _BASES[str(name)] = loaded
        except TypeError:  # not weak-referenceable
            pass


def freeze_long_lived() -> int:
    """Collect garbage once, then move every object alive now into the collector's permanent generation
    (``gc.freeze``); returns how many objects are frozen.

    The server calls it after loading a base model (``ui_common.get_base``): by then torch, transformers, plotly,
    streamlit and the model are in memory, about half a million objects that live as long as the server.  A full
    collection walks every object of the oldest generation, so it took 0.8-1.2 s of the interpreter lock on this
    2-core machine under load (every session's redraw waits that long; ``explorer.workshop.jobs`` collects once
    after every run); with them frozen it walks only what came later (milliseconds).  Frozen objects are still
    freed by reference counting; only a reference cycle among them would stay until ``gc.unfreeze()``.
    ``PEFT_EXPLORER_GC_FREEZE=0`` turns it off (the tests do: their process lives through many models and
    sessions, and some of them check that a dropped object is collected); it then returns 0.
    """
    import gc

    if os.environ.get(FREEZE_ENV, "1").strip() == "0":
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


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
    from explorer.workshop import sessions

    out["session_janitor"] = sessions.janitor_stats()
    from explorer.workshop.workers import current_executor

    ex = current_executor()
    out["executor"] = ex.describe() if ex is not None else dict(kind=None, workers=[], died=0)
    runs = run_state.active_runs()
    out["active_runs"] = [dict(method=getattr(r.cfg, "method", None), model=getattr(r.cfg, "model", None),
                               step=r.step, total=r.total_steps, status=r.status) for r in runs]
    return out


__all__ = ["register_base", "server_status", "worker_threads", "settle_memory", "WORKER_PREFIXES"]
