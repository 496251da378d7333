"""Fine-tunes in worker processes, so that training never competes with the server's page redraws.

One executor per server process (:func:`default_executor`), chosen by ``PEFT_EXPLORER_EXECUTOR``:

* ``process`` (the default): a small pool of **spawned** worker processes (one per concurrent
  run), each with its own torch thread count (its libraries' thread pools sized to match: ``worker_side.worker_environment``)
  and a lower CPU priority than the server (``nice`` 10, ``PEFT_EXPLORER_WORKER_NICE``).  A worker
  keeps the base models it loaded and reuses them for its next runs (no reload per run).
* ``ray``: runs go to a Ray cluster (:mod:`explorer.workshop.ray_executor`), for rooms that outgrow one machine.
* ``thread``: the run executes in the calling thread, in the server's process (what the first version did;
  tests and the CLI use it).

Either way the caller (a :class:`explorer.workshop.jobs.RunQueue` thread) calls
:meth:`run_train` and gets a :class:`explorer.engine.state.RunResult` back; progress records and the status
arrive in the caller's :class:`~explorer.engine.state.RunState` as the run goes, a stop (``state.stop()``,
or a page that stopped polling: the heartbeat) reaches the worker within a poll (0.2 s) and the run ends
within one step.  A worker that dies (killed, out of memory, a crash in native code) ends only its own run,
with the status ``failed`` and a message saying so; the next run gets a fresh worker.

The result that comes back from a worker holds the run's records, summary, configuration and notes, and the
saved adapter as zip bytes (``adapter_zip_bytes``); the model copy stays in the worker and is freed there.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from explorer.errors import ServiceError, WorkerDied, died_message
from explorer.workshop.worker_side import _worker_main, resolve, run_threads

__all__ = ["ThreadExecutor", "ProcessExecutor", "default_executor", "executor_kind", "EXECUTOR_ENV",
           "WorkerDied", "died_message"]

EXECUTOR_ENV = "PEFT_EXPLORER_EXECUTOR"
NICE_ENV = "PEFT_EXPLORER_WORKER_NICE"
# a worker's CPU priority below the server's: when the cores are busy the kernel gives the server's redraws
# about 9 parts in 10 against a worker at nice 10 (CFS weights 1024 and 110), and the runs use what is left
DEFAULT_NICE = 10
POLL_S = 0.2
KINDS = ("thread", "process", "ray")


def executor_kind(default: str = "process") -> str:
    """``PEFT_EXPLORER_EXECUTOR`` (thread, process or ray); an unknown value falls back to ``default``."""
    raw = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    return raw if raw in KINDS else default


# ----------------------------------------------------------------------------- the thread executor

class ThreadExecutor:
    """Runs in the calling thread (the server's process)."""

    kind = "thread"

    def run_train(self, cfg, state, loaded=None, keep_adapter: bool = True):
        from explorer.engine.train import train

        return train(cfg, loaded=loaded, state=state)

    def run_call(self, target: str, kwargs: dict, progress=None, stop_event=None, state=None):
        return resolve(target)(progress=progress or (lambda f, m="": None),
                               stop_event=stop_event or threading.Event(), **kwargs)

    def stats(self) -> list[dict]:
        return []

    def describe(self) -> dict:
        return dict(kind=self.kind, workers=[], died=0)

    def shutdown(self) -> None:
        pass


# ----------------------------------------------------------------------------- the process executor

_MAIN_LOCK = threading.Lock()


def _start_without_main(proc) -> None:
    """Start a spawned process without re-running this process's ``__main__`` in it.

    Under Streamlit, ``__main__`` is the page script being run: spawn would execute the whole page again in
    the worker (outside any session).  The worker only needs :func:`_worker_main`, so ``__main__`` is replaced
    by an empty module while the process starts."""
    import sys
    import types

    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            proc.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main


@dataclass
class _Worker:
    proc: Any
    inbox: Any
    outbox: Any
    stop: Any
    runs: int = 0
    busy: bool = False
    current: str = ""  # what it runs now (for the debug panel)
    started: float = field(default_factory=time.time)


_POOLS: "weakref.WeakSet[ProcessExecutor]" = weakref.WeakSet()
_EXIT_HOOKED = False


def _shutdown_pools() -> None:
    """At interpreter exit, before multiprocessing's own exit function (atexit runs the later registration
    first): every pool stops its workers and starts no new one.  Without it, multiprocessing unlinks the pool's
    semaphores first and terminates workers after, and a worker that a run thread starts while the process exits
    is left behind to print a SemLock traceback when the parent is gone (an AppTest page run showed it)."""
    for ex in list(_POOLS):
        ex.shutdown()


def _hook_exit() -> None:
    global _EXIT_HOOKED
    with _MAIN_LOCK:
        if not _EXIT_HOOKED:
            atexit.register(_shutdown_pools)
            _EXIT_HOOKED = True


class ProcessExecutor:
    """A pool of spawned worker processes; :meth:`run_train` blocks its caller until the run ends.  After
    :meth:`shutdown` (called for every pool at interpreter exit) it starts no worker: a run then fails with one
    line."""

    kind = "process"

    def __init__(self, workers: int = 2, threads: int | None = None, niceness: int | None = None):
        self.closed = False
        _POOLS.add(self)
        _hook_exit()
        self.size = max(1, int(workers))
        # each worker's share of the cores (PEFT_EXPLORER_TORCH_THREADS overrides: several servers on one machine)
        self.threads = max(1, int(threads)) if threads else run_threads(self.size)
        if niceness is None:
            try:
                niceness = int(os.environ.get(NICE_ENV, str(DEFAULT_NICE)))
            except ValueError:
                niceness = DEFAULT_NICE
        self.niceness = max(0, min(19, niceness))
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._idle: queue_mod.Queue[_Worker] = queue_mod.Queue()
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self.died = 0

    # -- pool ------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        from multiprocessing import util as mp_util

        if self.closed or getattr(mp_util, "_exiting", False):
            raise ServiceError("the server is shutting down: no new run starts")
        inbox, outbox, stop = self._ctx.Queue(), self._ctx.Queue(), self._ctx.Event()
        proc = self._ctx.Process(target=_worker_main, args=(inbox, outbox, stop, self.threads, self.niceness, os.getpid()),
                                 name="peft-explorer-worker", daemon=True)
        _start_without_main(proc)
        w = _Worker(proc, inbox, outbox, stop)
        self._workers.append(w)
        return w

    def warm(self) -> None:
        """Start the whole pool now (each worker imports torch once, a few seconds)."""
        with self._lock:
            while len(self._workers) < self.size:
                self._idle.put(self._spawn())

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._idle.empty() and len(self._workers) < self.size:
                self._idle.put(self._spawn())
        w = self._idle.get()
        w.busy = True
        return w

    def _release(self, w: _Worker) -> None:
        w.busy, w.current = False, ""
        with self._lock:
            if w.proc.is_alive():
                self._idle.put(w)
            elif w in self._workers:
                self._workers.remove(w)

    # -- running -----------------------------------------------------------------------------
    def run_train(self, cfg, state, loaded=None, keep_adapter: bool = True):
        """Run ``cfg`` in a worker; progress goes to ``state``; returns the slim result.

        ``loaded`` is ignored: the worker uses its own cached copy of the base model.
        """
        what = f"{cfg.method} on {cfg.model}, {cfg.steps} steps"
        return self._run("train", (cfg, keep_adapter), state=state, stop_event=state.stop_event, what=what)

    def run_call(self, target: str, kwargs: dict, progress=None, stop_event=None, state=None):
        """Run the project function ``target`` ("module:function") in a worker, as
        ``function(progress=..., stop_event=..., **kwargs)``; its progress calls reach ``progress(frac, msg)``
        here, ``stop_event`` (set here) reaches it.  Returns what it returns (picklable)."""
        return self._run("call", (target, dict(kwargs)), state=state, stop_event=stop_event or threading.Event(),
                         progress=progress, what=target.rpartition(":")[2])

    def _run(self, kind, payload, state=None, stop_event=None, progress=None, what=""):
        w = self._acquire()
        w.current = what
        job_id = next(self._ids)
        orphan_msg = None
        try:
            w.stop.clear()
            w.inbox.put((job_id, kind, payload))
            while True:
                if stop_event is not None and stop_event.is_set() and not w.stop.is_set():
                    w.stop.set()
                if state is not None and orphan_msg is None and state.orphaned():
                    orphan_msg = f"stopped: page closed (no page polled this run for {state.orphan_s:g} s)"
                    w.stop.set()
                try:
                    what, jid, data = w.outbox.get(timeout=POLL_S)
                except queue_mod.Empty:
                    if not w.proc.is_alive():
                        self.died += 1
                        msg = died_message(w.proc.exitcode)
                        if state is not None:
                            state.set(status="failed", message=msg, ended=time.time())
                        raise WorkerDied(msg) from None
                    continue
                if jid != job_id:
                    continue  # "ready", or a late message of an earlier run
                if what == "rec" and state is not None:
                    state.add_record(data)
                elif what == "set" and state is not None:
                    if orphan_msg and data.get("status") == "stopped":
                        data = dict(data, message=f"{orphan_msg} after step {state.step}")
                    state.set(**data)
                elif what == "progress" and progress is not None:
                    progress(*data)
                elif what == "done":
                    w.runs += 1
                    return data
                elif what == "error":
                    w.runs += 1
                    if state is not None:
                        state.set(status="failed", message=data, ended=time.time())
                    raise ServiceError(data)  # already one line, made in the worker
        finally:
            self._release(w)

    # -- views and shutdown --------------------------------------------------------------------
    def stats(self) -> list[dict]:
        """One row per worker: pid, resident memory (MiB), runs done, busy (for the debug panel)."""
        rows = []
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil ships with the requirements
            psutil = None
        for w in list(self._workers):
            rss = None
            if psutil is not None and w.proc.is_alive():
                try:
                    rss = psutil.Process(w.proc.pid).memory_info().rss / 2 ** 20
                except Exception:  # noqa: BLE001 - it just ended
                    rss = None
            rows.append(dict(pid=w.proc.pid, alive=w.proc.is_alive(), rss_mib=rss, runs=w.runs, busy=w.busy,
                             current=w.current, threads=self.threads, nice=self.niceness))
        return rows

    def describe(self) -> dict:
        """For the debug panel: the kind, one row per worker, how many died."""
        return dict(kind=self.kind, workers=self.stats(), died=self.died, threads_per_worker=self.threads,
                    nice=self.niceness)

    def shutdown(self) -> None:
        with self._lock:
            self.closed = True
            for w in self._workers:
                if w.proc.is_alive():
                    w.stop.set()
                    w.inbox.put(None)
            for w in self._workers:
                w.proc.join(timeout=5)
                if w.proc.is_alive():
                    w.proc.kill()
            self._workers.clear()
            while not self._idle.empty():
                self._idle.get_nowait()


_DEFAULT = None
_DEFAULT_LOCK = threading.Lock()


def current_executor():
    """The server's executor if one was made (the debug panel must not start workers)."""
    return _DEFAULT


def default_executor(default_kind: str = "process", workers: int | None = None):
    """The server's executor (created on first use; kind from ``PEFT_EXPLORER_EXECUTOR``)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            kind = executor_kind(default_kind)
            if kind == "process":
                from explorer.workshop.jobs import _env_max_runs

                _DEFAULT = ProcessExecutor(workers or _env_max_runs())
            elif kind == "ray":
                from explorer.workshop.ray_executor import RayExecutor

                _DEFAULT = RayExecutor()
            else:
                _DEFAULT = ThreadExecutor()
        return _DEFAULT

