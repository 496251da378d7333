"""A server-wide queue for fine-tunes: a limit on concurrent runs, FIFO order, a memory check.

Pure Python (no streamlit).  One :class:`RunQueue` per server process
(:func:`default_queue`); every session's Start goes through it, so 30 people pressing
Start at once run at most ``max_running`` fine-tunes (default 2, environment variable
``PEFT_EXPLORER_MAX_RUNS``) and the others wait in line, first come first served::

    from explorer.workshop.jobs import default_queue, estimate_run_bytes
    from explorer.engine.config import TrainConfig
    from explorer.engine.state import RunState
    from explorer.engine.train import train

    cfg = TrainConfig(model="tiny-bert", method="lora", steps=20)
    state = RunState(cfg)
    job = default_queue().submit(lambda job: train(cfg, state=state), state=state,
                                 need_bytes=estimate_run_bytes(cfg), label="lora on tiny-bert")
    job.position()      # 0 while running, 1 for the next in line, ...
    job.cancel()        # queued: never starts; running: sets the run's stop event
    job.wait(timeout=60)

Memory check: ``need_bytes`` (an estimate from :func:`explorer.memory.analytic.estimate`, see
:func:`estimate_run_bytes`) times ``safety`` (default 1.5) must fit in the free memory
(``psutil.virtual_memory().available``, or the free CUDA memory for a CUDA run) both when
the run is submitted and again when it leaves the queue; otherwise :class:`MemoryRefused`
(a ``KnobError``: a one-line message that shows the estimate) is raised at submit, or the
job ends with status ``refused`` and the same message.  The estimate is an analytic
upper bound of weights + gradients + optimizer state + activations (labelled as such).

Each job runs in its own daemon thread; a job's slot is released in a ``finally`` block,
so a run that raises (or runs out of memory) never blocks the queue.

A session's fine-tune through this queue is ``explorer.workshop.runs``'s; several in a row (Compare's sweeps,
the Claims lab) are ``explorer.workshop.sweeps.Sweep``; :func:`sweep_plan` (below) sets a sweep's budgets.
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
from collections import deque
from typing import Any, Callable

from explorer.methods import METHODS, SWEEP_METHODS
from explorer.errors import KnobError
from explorer.engine.state import Heartbeat
from explorer.workshop.worker_side import run_threads

__all__ = ["RunQueue", "Job", "MemoryRefused", "default_queue", "estimate_run_bytes", "estimate_run_label",
           "MEMORY_PRECISION", "free_bytes",
           "check_memory", "ordinal", "DEFAULT_MAX_RUNS", "DEFAULT_SAFETY"]

DEFAULT_MAX_RUNS = 2
DEFAULT_SAFETY = 1.5
MIB = 2 ** 20


class MemoryRefused(KnobError):
    """A run that would not fit in the free memory (the message shows the estimate)."""


def ordinal(n: int) -> str:
    n = int(n)
    suf = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suf}"


def queue_place(pos: int) -> str:
    """A queued run's place in words: "1st in line", "3rd in line"; 0 (it has just left the line, its worker is
    taking it) is "starting now", never "0th in line"."""
    pos = int(pos)
    return f"{ordinal(pos)} in line" if pos >= 1 else "starting now"


def free_bytes(device: str = "cpu") -> int | None:
    """Free memory where a run would allocate: CUDA free memory for ``cuda*``, else available RAM."""
    dev = (device or "cpu").lower()
    if dev.startswith("cuda") or dev == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.mem_get_info()[0])
        except Exception:  # noqa: BLE001
            pass
        if dev.startswith("cuda"):
            return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil: no check
        return None


def check_memory(need_bytes: float | None, free: int | None, safety: float = DEFAULT_SAFETY,
                 what: str = "This run") -> None:
    """Raise :class:`MemoryRefused` when ``need_bytes * safety`` exceeds ``free`` (None: no check)."""
    if need_bytes is None or free is None:
        return
    want = float(need_bytes) * float(safety)
    if want > free:
        raise MemoryRefused(
            f"{what} would not fit: it needs about {need_bytes / MIB:,.0f} MiB (analytic estimate of weights, "
            f"gradients, optimizer state and activations) × {safety:g} safety = {want / MIB:,.0f} MiB, but only "
            f"{free / MIB:,.0f} MiB are free on this server; pick a smaller model, batch or sequence length, "
            "or wait for other runs to end")


# a run's training precision (``TrainConfig.precision``) -> the memory model's (``explorer.memory.options``):
# both 16-bit precisions train with autocast here (fp32 weights, gradients and AdamW states)
MEMORY_PRECISION = {"fp32": "fp32", "bf16": "bf16-autocast", "fp16": "bf16-autocast"}


def estimate_run_bytes(cfg, loaded=None, num_labels: int = 2) -> float | None:
    """Analytic estimate (``explorer.memory.analytic.estimate``) of one run's memory, or None if it cannot be made.

    Follows the run's precision (bf16 / fp16: autocast, :data:`MEMORY_PRECISION`) and gradient checkpointing.
    Uses the shape of ``loaded.model`` when given, else ``explorer.memory.specs.spec_for(cfg.model)``.
    """
    try:
        from explorer.memory.analytic import estimate
        from explorer.memory.specs import spec_for, spec_from_model

        spec = spec_from_model(loaded.model, cfg.model) if loaded is not None else spec_for(cfg.model, num_labels)
        dev = (cfg.device or "auto").lower()
        if dev == "auto":
            try:
                import torch

                dev = "cuda" if torch.cuda.is_available() else "cpu"
            except Exception:  # noqa: BLE001
                dev = "cpu"
        kw = dict(precision=MEMORY_PRECISION.get(getattr(cfg, "precision", "fp32"), "fp32"),
                  checkpointing=bool(getattr(cfg, "checkpointing", False)), batch=int(cfg.batch_size),
                  seq_len=int(cfg.max_len), device="cuda" if dev.startswith("cuda") else "cpu")
        est = estimate(spec, cfg.method, dict(cfg.knobs or {}), **kw)
        total = float(est["total_bytes"])
        knobs = dict(cfg.knobs or {})
        if METHODS[cfg.method].warmup_is_full_finetuning(knobs):
            # a warm-up of full fine-tuning (SMT, as in the public code; a handed-over selection keeps it too):
            # that phase sets the peak
            total = max(total, float(estimate(spec, "full", {}, **kw)["total_bytes"]))
        return total
    except Exception:  # noqa: BLE001 - no estimate: the run itself reports bad knobs
        return None


def estimate_run_label(cfg) -> str:
    """What :func:`estimate_run_bytes` assumed, for the figure's caption: "analytic, bf16 autocast, checkpointing"."""
    prec = getattr(cfg, "precision", "fp32")
    what = "fp32" if prec == "fp32" else f"{prec} autocast"
    return "analytic, " + what + (", checkpointing" if getattr(cfg, "checkpointing", False) else "")


class Job:
    """One queued or running piece of work (usually a fine-tune)."""

    _ids = itertools.count(1)

    def __init__(self, queue: "RunQueue", fn: Callable[["Job"], Any], state=None, need_bytes: float | None = None,
                 label: str = "", device: str = "cpu", owner: str | None = None):
        self.id = next(Job._ids)
        self.queue = queue
        self.fn = fn
        self.state = state  # an explorer.engine.state.RunState (optional)
        self.need_bytes = need_bytes
        self.label = label
        self.device = device
        self.owner = owner
        self.status = "queued"  # queued, running, done, failed, cancelled, refused
        self.message = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.stop_event = state.stop_event if state is not None and hasattr(state, "stop_event") else \
            threading.Event()
        self._done = threading.Event()
        self.thread: threading.Thread | None = None

    def position(self) -> int:
        """1-based place in the line while queued; 0 once it has left the queue."""
        return self.queue.position(self)

    def cancel(self) -> bool:
        """Queued: removed, never starts.  Running: its stop event is set (the run ends within a step)."""
        return self.queue.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.label!r}, {self.status})"


class RunQueue:
    """At most ``max_running`` jobs at once; the rest wait in FIFO order.  Thread-safe."""

    def __init__(self, max_running: int | None = None, safety: float = DEFAULT_SAFETY,
                 free_fn: Callable[[str], int | None] | None = None):
        if max_running is None:
            max_running = _env_max_runs()
        self.max_running = max(1, int(max_running))
        self.safety = float(safety)
        self.free_fn = free_fn or free_bytes
        self._lock = threading.RLock()
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self.finished = 0

    # -- submit / cancel -------------------------------------------------------
    def submit(self, fn: Callable[[Job], Any], state=None, need_bytes: float | None = None, label: str = "",
               device: str = "cpu", owner: str | None = None) -> Job:
        """Queue ``fn(job)``; raises :class:`MemoryRefused` at once when the estimate does not fit now."""
        check_memory(need_bytes, self.free_fn(device), self.safety)
        job = Job(self, fn, state=state, need_bytes=need_bytes, label=label, device=device, owner=owner)
        with self._lock:
            self._queue.append(job)
            self._dispatch()
        return job

    def cancel(self, job: Job) -> bool:
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                job.status, job.message = "cancelled", "cancelled while queued (it never started)"
                job.ended = time.time()
                if job.state is not None and hasattr(job.state, "set"):
                    job.state.set(status="stopped", message=job.message, ended=job.ended)
                job._done.set()
                return True
            if job in self._running:
                job.stop_event.set()
                if job.state is not None and hasattr(job.state, "stop"):
                    job.state.stop()
                return True
        return False

    # -- views -------------------------------------------------------------------
    def position(self, job: Job) -> int:
        with self._lock:
            for i, j in enumerate(self._queue):
                if j is job:
                    return i + 1
        return 0

    def running(self) -> list[Job]:
        with self._lock:
            return list(self._running)

    def queued(self) -> list[Job]:
        with self._lock:
            return list(self._queue)

    def stats(self) -> dict:
        with self._lock:
            return dict(running=len(self._running), queued=len(self._queue), max_running=self.max_running,
                        finished=self.finished)

    def cancel_all(self) -> None:
        """Cancel queued jobs and stop running ones (tests, shutdown)."""
        for j in self.queued() + self.running():
            self.cancel(j)

    # -- internals -----------------------------------------------------------------
    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_running:
                job = self._queue.popleft()
                self._running.append(job)
                job.status = "running"
                job.started = time.time()
                th = threading.Thread(target=self._run, args=(job,), name=f"peft-run-{job.id}", daemon=True)
                job.thread = th
                th.start()

    def _run(self, job: Job) -> None:
        try:
            st = job.state
            if isinstance(st, Heartbeat) and st.orphaned():
                # its page stopped polling while the run waited in line (tab closed): do not start it
                job.status = "cancelled"
                job.message = f"stopped: page closed while queued (no page polled it for {st.orphan_s:g} s)"
                if hasattr(st, "set"):
                    st.set(status="stopped", message=job.message, ended=time.time())
                return
            check_memory(job.need_bytes, self.free_fn(job.device), self.safety)
            job.result = job.fn(job)
            job.status = "done"
        except MemoryRefused as e:
            job.status, job.message, job.error = "refused", str(e), e
            if job.state is not None and hasattr(job.state, "set"):
                job.state.set(status="failed", message=str(e), ended=time.time())
        except BaseException as e:  # noqa: BLE001 - the slot is released whatever happens
            from explorer.errors import user_message

            job.status, job.message, job.error = "failed", user_message(e), e
            if job.state is not None and hasattr(job.state, "set") and not getattr(job.state, "done", False):
                job.state.set(status="failed", message=job.message, ended=time.time())
        finally:
            job.ended = time.time()
            with self._lock:
                if job in self._running:
                    self._running.remove(job)
                self.finished += 1
                self._dispatch()
            # the run's model copy, optimizer and autograd graph hold reference cycles: collect them once
            # here (the dashboard turns off Streamlit's gc after every script run, see .streamlit/config.toml)
            gc.collect()
            job._done.set()


def _env_max_runs() -> int:
    raw = os.environ.get("PEFT_EXPLORER_MAX_RUNS", "")
    try:
        n = int(raw)
        return n if 1 <= n <= 64 else DEFAULT_MAX_RUNS
    except ValueError:
        return DEFAULT_MAX_RUNS


_DEFAULT: RunQueue | None = None
_DEFAULT_LOCK = threading.Lock()


def default_queue() -> RunQueue:
    """The server-wide queue (created on first use with ``PEFT_EXPLORER_MAX_RUNS``).

    It also shares the CPU cores between the runs: torch's intra-op threads are set to
    ``cpu_count // max_running`` (at least 1; ``PEFT_EXPLORER_TORCH_THREADS`` overrides),
    because oversubscribed OpenMP threads make small models' steps up to 100x slower
    (measured: 1.4 s instead of 0.01 s per tiny-bert step on a loaded 2-core machine).
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = RunQueue()
            set_run_threads(_DEFAULT.max_running)
        return _DEFAULT


def set_run_threads(max_running: int) -> int:
    """Set torch's intra-op threads so that ``max_running`` runs share the cores; returns the number set."""
    n = run_threads(max_running)
    try:
        import torch

        torch.set_num_threads(n)
    except Exception:  # noqa: BLE001
        pass
    return n


# ----------------------------------------------------------------------------- budget sweeps



def sweep_plan(loaded, methods=SWEEP_METHODS, ranks=(1, 2, 4, 8, 16), targets=("q", "v")) -> list[dict]:
    """Knobs for each method at budgets matched to LoRA ranks on the same target matrices.

    LoRA rank r on the targets trains ``r * sum(d_in + d_out)`` parameters; SMT gets the
    number of ``b x b`` blocks (``b``: the largest valid block size whose square fits the
    smallest budget) and SpaRTA the density
    inside the targets that hold about the same count (rounded; the real count of each
    run is measured and shown).  Returns dicts with ``label``, ``method``, ``knobs``,
    ``budget`` (the LoRA-equivalent count) and ``rank``.
    """
    from explorer.errors import KnobError
    from explorer.methods.facts import SweepGeometry
    from explorer.methods.smt_blocks import auto_block_size, valid_block_sizes
    from explorer.targets import find_targets

    tg = find_targets(loaded.model, list(targets))
    if not tg:
        raise KnobError(f"the model has no {', '.join(targets)} matrices to adapt")
    per_rank = sum(t.d_in + t.d_out for t in tg)
    cells = sum(t.d_in * t.d_out for t in tg)
    shapes = sorted({(t.d_out, t.d_in) for t in tg})
    rmin = min([int(x) for x in ranks if int(x) >= 1] or [1])
    fits = [v for v in valid_block_sizes(shapes) if v >= 4 and v * v <= rmin * per_rank]
    b = max(fits) if fits else auto_block_size(shapes)  # blocks small enough for the smallest budget
    total_blocks = sum((t.d_out // b) * (t.d_in // b) for t in tg)
    geo = SweepGeometry(targets=list(targets), b=b, total_blocks=total_blocks, cells=cells)
    out = []
    for m in methods:
        info = METHODS.get(m)
        if info is None or not info.sweepable:
            raise KnobError(f"sweeps support {', '.join(SWEEP_METHODS)} (got '{m}')")
        for r in sorted({int(x) for x in ranks if int(x) >= 1}):
            budget = r * per_rank
            knobs, label = info.sweep_point(r, budget, geo)  # the method turns the budget into its knobs
            if any(o["method"] == m and o["knobs"] == knobs for o in out):
                continue  # two budgets rounded to the same run
            out.append(dict(label=label, method=m, knobs=knobs, budget=budget, rank=r))
    return out
