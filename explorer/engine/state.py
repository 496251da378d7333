"""A run while it executes and after: :class:`RunState` (thread-safe, written by the worker, read by a
page), :class:`RunResult` and the registry of runs executing in this process (no Streamlit)."""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from dataclasses import dataclass, field

from explorer.engine.config import TrainConfig

STATUSES = ("queued", "running", "finished", "stopped", "failed", "nan")
DONE = ("finished", "stopped", "failed", "nan")

# A run whose page has not polled (``RunState.heartbeat``) for this many seconds is stopped
# by the worker with the message "stopped: page closed" (Streamlit has no tab-close event).
# 180 s, not less: browsers throttle the timers of hidden tabs (Chrome: one wake-up a minute
# after 5 minutes hidden), so a participant who switches to the slides must not lose a run.
ORPHAN_ENV = "PEFT_EXPLORER_ORPHAN_S"
DEFAULT_ORPHAN_S = 180.0

_RUNNING_LOCK = threading.Lock()
_RUNNING: dict[int, "RunState"] = {}  # id -> RunState of runs inside train() right now


def active_runs() -> list["RunState"]:
    """RunStates of the runs executing in this process now (for the server status panel)."""
    with _RUNNING_LOCK:
        return list(_RUNNING.values())


def register(state: "RunState") -> None:
    with _RUNNING_LOCK:
        _RUNNING[id(state)] = state


def unregister(state: "RunState") -> None:
    with _RUNNING_LOCK:
        _RUNNING.pop(id(state), None)


def orphan_seconds() -> float:
    try:
        v = float(os.environ.get(ORPHAN_ENV, DEFAULT_ORPHAN_S))
        return v if v > 0 and math.isfinite(v) else DEFAULT_ORPHAN_S
    except ValueError:
        return DEFAULT_ORPHAN_S


class Heartbeat:
    """A page's heartbeat (shared by :class:`RunState` and ``sweeps.Sweep``; needs ``self._lock``).

    ``last_seen`` is None until a page first polls; after that, work no page polled for
    ``orphan_s`` seconds (``PEFT_EXPLORER_ORPHAN_S``) is orphaned: its tab closed.
    """

    last_seen: float | None = None
    orphan_s: float | None = None

    def heartbeat(self) -> None:
        """Called by the page's polling fragment: the page is still open."""
        with self._lock:
            if self.orphan_s is None:
                self.orphan_s = orphan_seconds()
            self.last_seen = time.monotonic()

    def orphaned(self) -> bool:
        """True when a page polled once and then stopped polling for ``orphan_s`` seconds."""
        with self._lock:
            return (self.last_seen is not None and self.orphan_s is not None
                    and time.monotonic() - self.last_seen > self.orphan_s)


class RunState(Heartbeat):
    """What a worker thread writes and a page reads (thread-safe).

    ``records`` hold the per-step records as dicts (``explorer.engine.records.StepRecord.to_dict``), the
    form in which they travel to pages, worker processes and ``metrics.json``.

    ``version`` grows with every change a page can show (``set``, ``add_record``): a polling page compares it
    with the version it drew last and reuses what it built from that version (``uid`` names the run in such
    caches: unlike ``id()``, it is never reused by a later run).
    """

    _uids = itertools.count(1)

    def __init__(self, cfg: TrainConfig | None = None):
        self._lock = threading.Lock()
        self.uid = next(RunState._uids)
        self.version = 0
        self.cfg = cfg
        self.status = "queued"
        self.message = ""
        self.records: list[dict] = []
        self.step = 0
        self.total_steps = int(cfg.steps) if cfg else 0
        self.started: float | None = None
        self.ended: float | None = None
        self.stop_event = threading.Event()
        self.result: RunResult | None = None
        # heartbeat (Heartbeat): None until a page first polls; then a run unpolled for orphan_s is stopped
        self.last_seen: float | None = None
        self.orphan_s: float | None = None

    # writer side
    def set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)
            self.version += 1

    def add_record(self, rec: dict) -> None:
        with self._lock:
            self.records.append(rec)
            self.step = max(self.step, int(rec.get("step", 0)))
            self.version += 1

    # reader side
    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        return self.status in DONE

    def stop(self) -> None:
        self.stop_event.set()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(status=self.status, message=self.message, records=list(self.records), step=self.step,
                        total_steps=self.total_steps, progress=self.progress, started=self.started,
                        ended=self.ended, version=self.version)


@dataclass
class RunResult:
    records: list[dict]
    summary: dict  # explorer.engine.records.RunSummary.to_dict() (the form metrics.json and the history keep)
    adapter: object = None
    task: object = None
    loaded: object = None
    config: TrainConfig | None = None
    notes: list[str] = field(default_factory=list)
    warmup_base: dict | None = None  # SMT full-mode warm-up: base weights after the warm-up (for export)

    @property
    def status(self) -> str:
        return self.summary.get("status", "failed")


__all__ = ["RunState", "RunResult", "Heartbeat", "active_runs", "orphan_seconds", "ORPHAN_ENV", "DEFAULT_ORPHAN_S",
           "STATUSES", "register", "unregister"]
