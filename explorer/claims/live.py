"""The claims lab on a server: links that open the Fine-tune page with an arm's exact settings, and a live
re-run of an experiment through the server's run queue (``explorer.workshop.jobs``).  No Streamlit here: the page
polls :meth:`LiveRun.document`, which is analysed once per :attr:`LiveRun.version` (a new record, the sweep's
status) and handed out again while nothing changed; ``(uid, version)`` names what a page builds from it.
"""

from __future__ import annotations

import itertools
import threading
from urllib.parse import urlencode

from . import analysis, runner, specs

FINE_TUNE_PATH = "Fine_tune"  # Streamlit's URL path of pages/2_Fine_tune.py


def finetune_params(exp: specs.Experiment, arm: specs.Arm, seed: int, size: "str | specs.Size" = "full") -> dict[str, str]:
    """The Fine-tune page's URL keys for one (arm, seed) run: model, task, method, steps, lr, bs, seed and
    every knob as ``k_<knob>`` (encoded by the page's own schema, so the page reads back the same values)."""
    from explorer.methods import METHODS
    from explorer.urlstate import Schema, knob_fields

    cfg = runner.config_for(exp, arm, seed, specs.size(size) if isinstance(size, str) else size)
    out = dict(model=cfg.model, src="built-in", task=cfg.task, method=cfg.method, steps=str(cfg.steps),
               lr=repr(float(cfg.resolved_lr())), bs=str(cfg.batch_size), seed=str(cfg.seed))
    schema = Schema(knob_fields(METHODS[cfg.method].knobs, prefix="k_"))
    out.update(schema.encode({f"k_{k}": v for k, v in cfg.knobs.items()}))
    return out


def finetune_link(exp: specs.Experiment, arm: specs.Arm, seed: int, size: "str | specs.Size" = "full") -> str:
    return f"{FINE_TUNE_PATH}?{urlencode(finetune_params(exp, arm, seed, size), safe=',')}"


class LiveRun:
    """One experiment re-run through a ``sweeps.Sweep`` (the run queue); records arrive as seeds finish."""

    _uids = itertools.count(1)
    POLL_S = 2.0  # how often a page polls a re-run: its card changes when a seed finishes (tens of seconds)

    def __init__(self, name: str, size: str = "full", queue=None, loaded=None, on_result=None, owner=None):
        from explorer.workshop.jobs import default_queue
        from explorer.workshop.sweeps import Sweep

        self.name, self.size = name, size
        self.exp, self.sz = specs.get(name), specs.size(size)
        self.plan = runner.plan(self.exp, self.sz)
        self._by_label = {label: (arm, seed) for label, arm, seed, _ in self.plan}
        self.uid = next(LiveRun._uids)  # names this re-run in caches (never reused, unlike id())
        self._lock = threading.Lock()
        self.records: list[dict] = []
        self._doc: tuple | None = None  # (version, document) of the last document()
        self._extra = on_result
        self.doc_header = runner.header(self.exp, self.sz, command=f"live re-run on the server (size {size})")
        self.sweep = Sweep([(label, cfg) for label, _, _, cfg in self.plan], queue or default_queue(), loaded=loaded,
                           on_result=self._on_result, owner=owner)

    def _on_result(self, label, res) -> None:  # worker thread
        arm, seed = self._by_label[label]
        rec = runner.record_from(arm, seed, res)
        with self._lock:
            self.records.append(rec)
        if self._extra is not None:
            try:
                self._extra(label, res)
            except Exception:  # noqa: BLE001 - e.g. a history that cannot write: the re-run goes on
                pass

    def start(self) -> "LiveRun":
        self.sweep.start()
        return self

    def stop(self) -> None:
        self.sweep.stop()

    @property
    def done(self) -> bool:
        return self.sweep.done

    @property
    def total(self) -> int:
        return len(self.plan)

    @property
    def version(self) -> tuple:
        """Changes when the document changes: a record arrived, or the sweep's status or message moved."""
        with self._lock:
            n = len(self.records)
        return (n, self.sweep.status, self.sweep.message)

    @property
    def poll_s(self) -> float | None:
        """Seconds between a page's polls: None once the re-run has ended."""
        return None if self.done else self.POLL_S

    def document(self) -> dict:
        """A results document of what has finished so far (same shape as the shipped files): the same object
        while :attr:`version` stays (nobody may change it)."""
        version = self.version
        kept = self._doc
        if kept is not None and kept[0] == version:
            return kept[1]
        with self._lock:
            recs = self.records[:version[0]]
        doc = dict(self.doc_header, records=recs, **analysis.analyse(self.exp, recs))
        doc["live"] = dict(status=version[1], done=len(recs), total=self.total, message=version[2],
                           version=version)
        self._doc = (version, doc)
        return doc
