"""A session's fine-tune: start it through the server's run queue, watch it, stop it (pure Python, no streamlit).

The Fine-tune page keeps one :class:`FineTuneRun` in its session state and calls one function per action::

    run = start_fine_tune(cfg, loaded, hist, label, owner=session_id)  # MemoryRefused / KnobError: one line
    run.running            # until the worker has added the run to the history
    run.snapshot()         # the RunState's snapshot (records, step, status, ...)
    run.eta_s(snap)        # seconds left from the measured pace, or None
    run.stop()

The queue's thread (:func:`train_into_history`) has the run trained by the server's executor (a worker
process by default, see :mod:`explorer.workshop.workers`), adds a :class:`explorer.workshop.history.RunEntry` to the
session's history and drops the run's model copy, so memory goes back when the run ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from explorer.engine.config import TrainConfig
from explorer.engine.state import RunState
from explorer.workshop.jobs import Job, RunQueue, default_queue, estimate_run_bytes

__all__ = ["FineTuneRun", "start_fine_tune", "train_into_history"]


def train_into_history(cfg: TrainConfig, state: RunState, loaded, hist, label: str, job: Job | None = None) -> str:
    """Worker thread (no Streamlit calls): train, add the run to ``hist``, free the model copy; the entry's id."""
    from explorer.workshop.workers import default_executor

    res = default_executor().run_train(cfg, state, loaded=loaded)  # a worker process by default (the server draws)
    try:
        entry = hist.add_result(res, label)
        state.set(entry_id=entry.id)
    finally:
        state.result = None  # drop the model copy: memory goes back
        res.adapter = None
    return entry.id


@dataclass
class FineTuneRun:
    """One fine-tune of a session: its live state (written by the worker), its queue job, what was asked."""

    state: RunState
    job: Job
    cfg: TrainConfig
    label: str
    seen_done: bool = False  # the page has redrawn once after the run ended

    @property
    def running(self) -> bool:
        """Queued or training; the job ends only after the worker has added the run to the history."""
        return not (self.state.done and self.job.done)

    # how often the page polls the run: the line position changes slowly, training steps quickly
    POLL_QUEUED_S = 2.0
    POLL_TRAINING_S = 0.7

    @property
    def poll_s(self) -> float | None:
        """Seconds between the page's polls: None once the run has ended (an idle page stays idle)."""
        if not self.running:
            return None
        return self.POLL_QUEUED_S if self.state.status == "queued" else self.POLL_TRAINING_S

    def snapshot(self) -> dict:
        return self.state.snapshot()

    def figure(self, which: str, snap: dict, template: str | None = None):
        """The live chart ``which`` ("curves": loss and accuracy, "memory": the byte account per step) of ``snap``,
        built once per run, version and template (``explorer.views.figcache``): the page's polls between two
        records redraw the same figure instead of building it again."""
        from explorer.views import figures_runs as FR
        from explorer.views.figcache import cached

        build = {"curves": FR.live_curves, "memory": FR.memory_stack}[which]
        return cached(("run", self.state.uid, snap.get("version"), which, template),
                      lambda: build(snap["records"], template))

    def position(self) -> int:
        """1-based place in the server's line while queued, else 0."""
        return self.job.position()

    def stop(self) -> None:
        """Queued: never starts.  Running: ends within one step (the steps done so far are kept)."""
        self.job.cancel()
        self.state.stop()

    def heartbeat(self) -> None:
        """The page is open (a run no page polls for ``PEFT_EXPLORER_ORPHAN_S`` seconds is stopped)."""
        self.state.heartbeat()

    @staticmethod
    def eta_s(snap: dict, now: float | None = None) -> float | None:
        """Seconds left from the measured pace (wall seconds per step since the start, evaluations included),
        or None before the first training step."""
        recs = [r for r in snap["records"] if r.get("phase") in ("train", "warmup") and r.get("step_time_s")]
        if not recs or snap.get("started") is None:
            return None
        done = snap["step"]
        pace = ((now if now is not None else time.time()) - snap["started"]) / max(1, done)
        return max(0.0, pace * (snap["total_steps"] - done))


def start_fine_tune(cfg: TrainConfig, loaded, hist, label: str, owner: str | None = None,
                    queue: RunQueue | None = None) -> FineTuneRun:
    """Queue a fine-tune whose worker adds the run to ``hist``.  Raises ``MemoryRefused`` (a ``KnobError``: one
    readable line with the estimate) when it would not fit in the free memory now."""
    state = RunState(cfg)
    state.heartbeat()  # from now on the page must keep polling (or the run stops: tab closed)
    work = partial(_work, cfg, state, loaded, hist, label)
    job = (queue or default_queue()).submit(work, state=state, need_bytes=estimate_run_bytes(cfg, loaded),
                                            label=label, device=cfg.device, owner=owner)
    return FineTuneRun(state=state, job=job, cfg=cfg, label=label)


def _work(cfg, state, loaded, hist, label, job):
    return train_into_history(cfg, state, loaded, hist, label, job)
