"""What runs inside a worker process (spawned by :class:`explorer.workshop.workers.ProcessExecutor`, or a Ray
actor): the worker's loop, the run state that reports every change back to the server, the worker's cache of
base models, and the slim result that travels back (records, summary, the adapter as zip bytes)."""

from __future__ import annotations

import os
import time


class _RemoteState:
    """What ``train`` writes to, inside a worker: every change is sent to the server as a message."""

    def __new__(cls, outbox, job_id, stop_event, cfg):
        from explorer.engine.state import RunState

        class Remote(RunState):
            def set(self, **kw):
                super().set(**kw)
                msg = {k: v for k, v in kw.items() if k in ("status", "message", "started", "ended", "total_steps")}
                if self.done:  # the final evaluation may have completed the last record in place
                    msg["records"] = [dict(r) for r in self.records]
                outbox.put(("set", job_id, msg))

            def add_record(self, rec):
                super().add_record(rec)
                outbox.put(("rec", job_id, dict(rec)))

            def orphaned(self):
                return False  # the server watches the page's heartbeat and sets the stop event

        st = Remote(cfg)
        st.stop_event = stop_event
        return st


def _base_for(cfg, cache: dict):
    """The worker's cached base model for ``cfg`` (loaded once per worker and number of labels)."""
    from explorer import data as data_mod
    from explorer.models import REGISTRY

    kind = REGISTRY[cfg.model]["kind"] if cfg.model in REGISTRY else None
    if kind is None:
        return None  # a folder or hub id: train loads it (and says why when it cannot)
    task = data_mod.load_task(cfg.task or data_mod.default_task_for(kind), kind, cfg.text_col, cfg.label_col,
                              cfg.prompt_col, cfg.answer_col, encoding=cfg.encoding)
    return cached_model(cfg.model, task.num_labels)


def _slim(res, keep_adapter: bool):
    """The part of a RunResult that travels back: no model copy, the adapter as zip bytes."""
    from explorer.engine.state import RunResult

    zipped = None
    if keep_adapter and res.adapter is not None:
        try:
            from explorer.workshop.history import adapter_zip

            zipped = adapter_zip(res)
        except Exception:  # noqa: BLE001 - no adapter to keep (e.g. SMT stopped in its warm-up)
            zipped = None
    from types import SimpleNamespace

    task = None
    if res.task is not None:
        task = SimpleNamespace(name=res.task.name, num_labels=res.task.num_labels,
                               label_names=list(getattr(res.task, "label_names", []) or []))
    out = RunResult(records=list(res.records), summary=dict(res.summary), config=res.config, notes=list(res.notes),
                    task=task)
    out.adapter_zip_bytes = zipped
    return out


_MODELS: dict = {}  # a worker's base models, kept between its runs


def cached_model(name: str, num_labels: int = 2):
    """A base model loaded once per process and kept (two at most): for work that runs in a worker."""
    from explorer.models import load_model

    key = (name, max(2, int(num_labels)))
    if key not in _MODELS:
        while len(_MODELS) >= 2:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = load_model(name, num_labels=key[1])
    return _MODELS[key]


def resolve(target: str):
    """``"package.module:function"`` -> the function (only functions of this project may run in a worker)."""
    import importlib

    mod, _, fn = target.partition(":")
    if not mod.startswith("explorer.") or not fn.isidentifier():
        raise ValueError(f"not a project function: {target[:80]}")
    return getattr(importlib.import_module(mod), fn)


# thread pools a worker's libraries would otherwise size to every core of the machine (read when they start)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


THREADS_OVERRIDE_ENV = "PEFT_EXPLORER_TORCH_THREADS"


def run_threads(max_running: int) -> int:
    """Torch threads per run, so that ``max_running`` runs at once share this machine's cores
    (``PEFT_EXPLORER_TORCH_THREADS`` overrides: several servers on one machine, ``tools/serve_room.py``, each run one
    or two runs and must split the cores between all of them, not each take them all)."""
    try:
        n = int(os.environ.get(THREADS_OVERRIDE_ENV, "0"))
    except ValueError:
        n = 0
    return n if n >= 1 else max(1, (os.cpu_count() or 1) // max(1, int(max_running)))


def worker_environment(threads: int) -> dict[str, str]:
    """The environment a worker sets before importing torch: every compute thread pool sized to ``threads`` and
    the tokenizers' own thread pool off, so that a run's worker uses the cores it was given and no more (the
    server's redraws need the rest; on 2 cores, two runs of 1 thread each)."""
    n = str(max(1, int(threads)))
    return {**{k: n for k in THREAD_ENV}, "TOKENIZERS_PARALLELISM": "false"}


PARENT_CHECK_S = 2.0  # an idle worker looks this often whether its server is still there


def _next_job(inbox, parent: int):
    """The next job from the server, or None to end: the server said so, or it is gone (killed outright, it
    cannot end its daemon workers; they would wait on the inbox for ever)."""
    import queue

    while True:
        try:
            return inbox.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if os.getppid() != parent:
                return None
        except (EOFError, OSError):  # the server's end of the pipe is gone
            return None


def _worker_main(inbox, outbox, stop_event, threads: int, niceness: int, parent: int | None = None) -> None:
    """``parent``: the server's pid (given by the server: a server killed while this process starts would leave
    ``os.getppid()`` reading the pid that adopted us)."""
    import signal

    parent = parent or os.getppid()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server stops the server, which ends us
    try:
        os.nice(niceness)
    except OSError:
        pass
    os.environ.update(worker_environment(threads))
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)  # a run's ops go one after another: no second pool
    except RuntimeError:  # already set in this process
        pass
    from explorer.engine.train import train
    from explorer.errors import user_message

    outbox.put(("ready", None, os.getpid()))
    while True:
        item = _next_job(inbox, parent)
        if item is None:
            return
        job_id, kind, payload = item
        stop_event.clear()
        try:
            if kind == "train":
                cfg, keep_adapter = payload
                state = _RemoteState(outbox, job_id, stop_event, cfg)
                before = set(_MODELS)
                try:
                    loaded = _base_for(cfg, _MODELS)
                except Exception:  # noqa: BLE001 - train loads it again and reports the reason as its status
                    loaded = None
                reused = loaded is not None and set(_MODELS) == before
                res = train(cfg, loaded=loaded, state=state)
                out = _slim(res, keep_adapter)
                out.worker = dict(pid=os.getpid(), base_reused=reused)
            else:  # "call": a project function with progress(fraction, message) and stop_event
                target, kwargs = payload

                def progress(frac, msg="", _id=job_id):
                    outbox.put(("progress", _id, (float(frac), str(msg))))

                out = resolve(target)(progress=progress, stop_event=stop_event, **kwargs)
            outbox.put(("done", job_id, out))
        except BaseException as e:  # noqa: BLE001 - one line back to the server, the worker lives on
            outbox.put(("error", job_id, user_message(e)))


def selftest(progress, stop_event, n: int = 3, pause: float = 0.0) -> dict:
    """A tiny function for checking the worker channel (tests, the debug panel): counts to ``n``; says which
    process ran it, at which CPU priority (``nice``) and with how many torch threads."""
    done = 0
    for i in range(int(n)):
        if stop_event.is_set():
            break
        if pause:
            time.sleep(pause)
        done = i + 1
        progress(done / n, f"{done} of {n}")
    import torch

    return dict(pid=os.getpid(), done=done, nice=os.nice(0), torch_threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads(),
                tokenizers_parallelism=os.environ.get("TOKENIZERS_PARALLELISM"))
