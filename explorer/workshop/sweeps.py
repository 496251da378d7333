"""Several fine-tunes one after another through the server's run queue (Compare's budget sweep and lesson, the
Claims lab's live re-runs).  Pure Python (no streamlit): a page polls :meth:`Sweep.snapshot`::

    sw = Sweep([(label, TrainConfig(...)), ...], default_queue(), loaded=loaded, on_result=add_to_history).start()
    snap = sw.snapshot()        # a SweepSnapshot: status, index of total, the current run, one SweepResult per run
    sw.poll_s                   # how often its page polls: 2 s while the current run waits in line, 1 s while it
                                # trains, None once the sweep is done
    sw.stop()

A page that polls gets the same snapshot object back until something it shows changed (``Sweep.version``: the
sweep's own changes and the current run's ``RunState.version``, with the run's place in the server's line).

The budgets of a sweep (LoRA ranks against SMT blocks and SpaRTA densities) are ``jobs.sweep_plan``'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from explorer.engine.state import Heartbeat
from explorer.workshop.jobs import Job, RunQueue, default_queue, estimate_run_bytes

__all__ = ["Sweep", "SweepResult", "SweepSnapshot"]


@dataclass(frozen=True)
class SweepResult:
    """One finished run of a sweep."""

    label: str
    status: str                      # the run's: finished, stopped, failed, nan
    message: str = ""
    final_accuracy: float | None = None
    trainable: int | None = None


@dataclass(frozen=True)
class SweepSnapshot:
    """What a page shows of a sweep at one moment."""

    status: str                      # queued, running, finished, stopped, failed
    message: str
    index: int                       # runs completed
    total: int
    results: list[SweepResult] = field(default_factory=list)
    current: dict | None = None      # the current run's RunState snapshot
    current_label: str | None = None
    position: int = 0                # the current run's place in the server's line (0: running or none)

    @property
    def within(self) -> float:
        """Progress of the current run (0..1)."""
        return float(self.current["progress"]) if self.current else 0.0


class Sweep(Heartbeat):
    """Runs a list of TrainConfigs one after another through a RunQueue, in a worker thread.

    ``on_result(label, RunResult)`` is called after each run (e.g. to add it to a RunHistory).
    No Streamlit calls: a page polls :meth:`snapshot`.
    """

    def __init__(self, items: list[tuple[str, Any]], queue: RunQueue | None = None, loaded=None, on_result=None,
                 owner: str | None = None):
        self.items = list(items)  # (label, TrainConfig)
        self.queue = queue or default_queue()
        self.loaded = loaded
        self.on_result = on_result
        self.owner = owner
        self._lock = threading.Lock()
        self.index = 0  # runs completed
        self.status = "queued"  # running, finished, stopped, failed
        self.message = ""
        self.current_state = None
        self.current_job: Job | None = None
        self.results: list[SweepResult] = []
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        # heartbeat, as for a single run (RunState.heartbeat): None until a page first polls; a sweep
        # no page polled for PEFT_EXPLORER_ORPHAN_S seconds stops (tab closed), its current run too
        self.last_seen: float | None = None
        self.orphan_s: float | None = None
        self._changes = 0  # grows with every change of the sweep itself (a run added, a result, the status)
        self._snap: tuple | None = None  # (version, place in line, SweepSnapshot) of the last snapshot()

    # how often a page polls the sweep: a run waiting in the server's line moves slowly, a training one quickly
    POLL_QUEUED_S = 2.0
    POLL_TRAINING_S = 1.0

    @property
    def total(self) -> int:
        return len(self.items)

    def heartbeat(self) -> None:
        """Called by the page's polling fragment: the page is still open (forwarded to the current run)."""
        super().heartbeat()
        cur = self.current_state
        if cur is not None:
            cur.heartbeat()

    def _adopt_heartbeat(self, state) -> None:
        """A new run of a polled sweep starts with the sweep's last heartbeat (not a fresh one)."""
        with self._lock:
            seen, orphan_s = self.last_seen, self.orphan_s
        if seen is not None:
            state.set(last_seen=seen, orphan_s=orphan_s)

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)
            self._changes += 1

    @property
    def version(self) -> tuple:
        """Changes when anything a page shows of the sweep changes: the sweep's own changes, and the current run
        (its ``uid`` and ``version``)."""
        with self._lock:
            return self._version()

    def _version(self) -> tuple:  # under self._lock
        cur = self.current_state
        return (self._changes, cur.uid if cur is not None else 0, cur.version if cur is not None else 0)

    @property
    def poll_s(self) -> float | None:
        """Seconds between a page's polls: None once the sweep is done (an idle page stays idle)."""
        if self.done:
            return None
        cur = self.current_state
        return self.POLL_TRAINING_S if cur is not None and cur.status != "queued" else self.POLL_QUEUED_S

    def start(self) -> "Sweep":
        self._set(status="running")
        self.thread = threading.Thread(target=self._work, name="peft-sweep", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        job = self.current_job
        if job is not None:
            job.cancel()

    def snapshot(self) -> SweepSnapshot:
        """What a page shows now; the same object as the last call's while nothing in it changed."""
        with self._lock:
            version = self._version()
            job = self.current_job
            position = job.position() if job is not None else 0
            if self._snap is not None and self._snap[:2] == (version, position):
                return self._snap[2]
            cur = self.current_state.snapshot() if self.current_state is not None else None
            snap = SweepSnapshot(status=self.status, message=self.message, index=self.index, total=self.total,
                                 results=list(self.results), current=cur,
                                 current_label=self.items[self.index][0] if self.index < self.total else None,
                                 position=position)
            if cur is None or cur.get("version") == version[2]:  # else the run moved on while this was read
                self._snap = (version, position, snap)
            return snap

    def _run_one(self, label: str, cfg) -> None:
        from explorer.engine.state import RunState
        from explorer.workshop.workers import default_executor

        state = RunState(cfg)
        self._adopt_heartbeat(state)
        done: list = []

        def fn(job, cfg=cfg, state=state):
            done.append(default_executor().run_train(cfg, state, loaded=self.loaded, keep_adapter=False))
            return done[0]

        job = self.queue.submit(fn, state=state, need_bytes=estimate_run_bytes(cfg, self.loaded), label=label,
                                device=cfg.device, owner=self.owner)
        self._set(current_state=state, current_job=job)
        job.wait()
        res = done[0] if done else None
        if res is not None and self.on_result is not None:
            self.on_result(label, res)
        with self._lock:
            self.results.append(SweepResult(label=label, status=state.status, message=state.message,
                                            final_accuracy=res.summary.get("final_accuracy") if res else None,
                                            trainable=res.summary.get("trainable_params") if res else None))
            self.index += 1
            self.current_job = None
            self._changes += 1
        if res is not None:
            state.result = None
            res.adapter = None  # free the model copy

    def _work(self) -> None:
        try:
            orphaned = False
            for label, cfg in self.items:
                if self.stop_event.is_set():
                    break
                if self.orphaned():
                    orphaned = True
                    break
                self._run_one(label, cfg)
            orphaned = orphaned or (self.orphaned() and self.index < self.total)
            status = "stopped" if self.stop_event.is_set() or orphaned else "finished"
            message = ""
            if orphaned:
                message = (f"stopped: page closed (no page polled this sweep for {self.orphan_s:g} s) "
                           f"after {self.index} of {self.total} runs")
            elif status == "stopped":
                message = f"stopped after {self.index} of {self.total} runs"
            self._set(status=status, message=message)
        except BaseException as e:  # noqa: BLE001 - a sweep ends with a status
            from explorer.errors import user_message

            self._set(status="failed", message=user_message(e))
