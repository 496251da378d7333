"""The SMT block inspector's services (pure Python, no streamlit): the warm-up job, the block budget, and the
hand-off of a selection to the Fine-tune page.

The page keeps typed objects in its session state and calls one function per action::

    ws = WarmupSettings.from_values(values, loaded.info.kind)   # what "Compute gradients" runs (its sig caches it)
    wj = start_warmup(loaded, ws, owner=session_id)             # the server's run queue; MemoryRefused: one line
    wj.progress.frac, wj.progress.msg                           # written by the worker
    wj.poll_s                                                   # how often the page polls it (None: done)
    record, notice = wj.outcome()                               # once it is done
    grid = block_grid(loaded, types, block_size)                # sizes offered, total blocks, SMT's auto budget
    an = analysis.analyze(record, grid.block_size, **grid.budget_args("blocks", n, dens), ...)
    handoff = SmtHandoff.from_analysis(an, model, task)          # "Train with this selection"
    handoff.mismatch(model, knobs)                              # on Fine-tune: [] when it fits the run

SMT's automatic budget ("about 1 % of all parameters", capped) is ``explorer.methods.smt_blocks.auto_blocks``'s: the
one place; this module only calls it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field

from explorer.smt_inspector.analysis import default_types  # noqa: F401 - the inspector's default types, re-exported

__all__ = ["WarmupSettings", "WarmupProgress", "WarmupJob", "start_warmup", "warmup_need_bytes", "BlockGrid",
           "block_grid", "default_types", "SmtHandoff", "opening_matrix"]


# ----------------------------------------------------------------------------- the warm-up job


@dataclass(frozen=True)
class WarmupSettings:
    """What a warm-up computes (the record is cached per these settings)."""

    model: str
    task: str
    warmup_steps: int
    batch_size: int
    max_len: int
    mode: str
    seed: int

    @classmethod
    def from_values(cls, v: dict, kind: str) -> "WarmupSettings":
        """From the page's values (``model``, ``task`` ('' = the model's default), ``ws``, ``bs``, ``len``,
        ``mode``, ``seed``)."""
        from explorer.data import default_task_for

        return cls(model=v["model"], task=v["task"] or default_task_for(kind), warmup_steps=int(v["ws"]),
                   batch_size=int(v["bs"]), max_len=int(v["len"]), mode=v["mode"], seed=int(v["seed"]))

    @property
    def sig(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def tokens(self) -> int:
        """Warm-up tokens: steps x batch x length (how long it takes, roughly)."""
        return self.warmup_steps * self.batch_size * self.max_len


def warmup_need_bytes(n_params: int, mode: str) -> int:
    """Rough fp32 estimate for the queue's memory check: a model copy, gradients (+ AdamW moments and the
    running sums in full mode)."""
    return int(n_params) * 4 * (5 if mode == "full" else 2)


@dataclass
class WarmupProgress:
    """Written by the worker thread, read by the page."""

    frac: float = 0.0
    msg: str = "queued"
    t0: float = field(default_factory=time.time)
    version: int = 0  # grows with every report

    def __call__(self, frac: float, msg: str) -> None:
        self.frac, self.msg = float(frac), str(msg)
        self.version += 1


@dataclass
class WarmupJob:
    job: object  # explorer.workshop.jobs.Job
    settings: WarmupSettings
    progress: WarmupProgress
    seen: bool = False  # its outcome has been taken by the page

    # how often the page polls the warm-up: its place in the server's line changes slowly, its steps quickly
    POLL_QUEUED_S = 2.0
    POLL_RUNNING_S = 0.5

    @property
    def running(self) -> bool:
        return not self.job.done

    @property
    def poll_s(self) -> float | None:
        """Seconds between the page's polls: None once the warm-up has ended (an idle page stays idle)."""
        if not self.running:
            return None
        return self.POLL_QUEUED_S if self.job.status == "queued" else self.POLL_RUNNING_S

    def stop(self) -> None:
        self.job.cancel()

    def outcome(self) -> tuple[object | None, str | None]:
        """(the gradient record, None) when the warm-up produced one, else (None, a one-line notice)."""
        job = self.job
        if job.status == "done" and job.result is not None:
            return job.result, None
        if job.status == "cancelled":
            return None, "Stopped before the warm-up started."
        if job.stop_event.is_set():
            return None, "Stopped before the first warm-up step ended: nothing to show."
        return None, f"The warm-up failed: {job.message or job.status}"


def _warmup(loaded, ws: WarmupSettings, progress: WarmupProgress, job):
    """Queue thread (no Streamlit calls): SMT's warm-up on the settings' task, in a worker process by default."""
    from explorer.workshop.workers import default_executor

    ex = default_executor()
    if ex.kind == "thread":
        return _collect(loaded, ws, progress, job.stop_event)
    return ex.run_call("explorer.workshop.inspector:warmup_in_worker", dict(ws=ws), progress=progress,
                       stop_event=job.stop_event)


def warmup_in_worker(progress, stop_event, ws: WarmupSettings):
    """In a worker process: the same warm-up on the worker's cached copy of the base model."""
    from explorer.workshop.worker_side import cached_model

    return _collect(cached_model(ws.model), ws, progress, stop_event)


def _collect(loaded, ws: WarmupSettings, progress, stop_event):
    from explorer.data import load_task
    from explorer import smt_inspector as A

    task = load_task(ws.task, model_kind=loaded.info.kind)
    base = loaded
    if loaded.info.kind == "seq-cls" and task.num_labels and task.num_labels != 2:
        from explorer.models import load_model

        base = load_model(ws.model, num_labels=task.num_labels)
    return A.collect_gradients(base, task, warmup_steps=ws.warmup_steps, batch_size=ws.batch_size,
                               max_len=ws.max_len, mode=ws.mode, seed=ws.seed, progress=progress,
                               stop_event=stop_event)


def start_warmup(loaded, ws: WarmupSettings, owner: str | None = None, queue=None) -> WarmupJob:
    """Queue the warm-up in the server's run queue.  Raises ``MemoryRefused`` (one readable line) when it would
    not fit in the free memory now."""
    from functools import partial

    from explorer.workshop.jobs import default_queue

    progress = WarmupProgress()
    job = (queue or default_queue()).submit(partial(_warmup, loaded, ws, progress),
                                            need_bytes=warmup_need_bytes(loaded.info.n_params, ws.mode),
                                            label=f"SMT warm-up · {ws.model}", owner=owner)
    return WarmupJob(job=job, settings=ws, progress=progress)


# ----------------------------------------------------------------------------- the block budget


@dataclass(frozen=True)
class BlockGrid:
    """The blocks of the chosen matrices: the sizes offered, the one in use, how many blocks, SMT's auto budget."""

    grain: int                 # the finest block size the record stores
    valid: list[int]           # sizes that divide every chosen matrix and are multiples of the grain
    auto: int                  # the size "auto" means
    block_size: int            # the size in use
    total: int                 # blocks of that size in the chosen matrices
    auto_blocks: int           # SMT's automatic budget (explorer.methods.smt_blocks.auto_blocks)
    capped: str                # its note when the cap applied, else ""
    n_params: int              # all parameters of the model (what "1 %" is of)

    def budget_args(self, kind: str, n: int, density: float) -> dict:
        """``analyze``'s budget arguments: ``density`` (at least one block) or ``n_blocks`` (0 = auto; at most
        every block)."""
        if kind == "density":
            return dict(density=max(float(density), 1.0 / self.total))
        n = int(n)
        if n <= 0:
            n = min(self.auto_blocks, self.total)
        return dict(n_blocks=min(n, self.total))

    def min_density(self) -> float:
        return 1.0 / self.total


def block_grid(loaded, types: list[str], block_size: int = 0) -> BlockGrid:
    """The grid of ``types``'s matrices of ``loaded`` for ``block_size`` (0 = auto, or a size that is not valid
    for these matrices)."""
    from explorer.methods.smt_blocks import auto_block_size, auto_blocks, valid_block_sizes
    from explorer.smt_inspector import default_grain
    from explorer.targets import find_targets

    all_t = find_targets(loaded.model)
    ts = [t for t in all_t if t.type in types]
    grain = default_grain([(t.d_out, t.d_in) for t in all_t])
    shapes = sorted({(t.d_out, t.d_in) for t in ts})
    valid = [b for b in valid_block_sizes(shapes, limit=4096) if b % grain == 0]
    auto = auto_block_size(shapes)
    auto = auto if auto in valid else (valid[-1] if valid else grain)
    b = int(block_size) if int(block_size) in valid else auto
    total = sum((t.d_out // b) * (t.d_in // b) for t in ts)
    n_auto, capped = auto_blocks(loaded.info.n_params, b, total)
    return BlockGrid(grain=grain, valid=valid, auto=auto, block_size=b, total=total, auto_blocks=n_auto,
                     capped=capped, n_params=int(loaded.info.n_params))


# ----------------------------------------------------------------------------- the hand-off to Fine-tune


@dataclass
class SmtHandoff:
    """A selection the inspector hands to Fine-tune: the blocks train from step 1, without a warm-up, when the
    run's model, block size and targets fit (:meth:`mismatch`)."""

    model: str
    task: str
    block_size: int
    types: list[str]           # the matrix types the selection was made from
    used_types: list[str]      # the types that hold selected blocks (the run's targets must include them)
    n_blocks: int
    score: str
    rule: str
    selection: dict            # {target: ([rows], [cols])}
    query: dict                # the Fine-tune page's address: method SMT with matching knobs
    created: float = field(default_factory=time.time)
    switch_pending: bool = True  # the inspector opens Fine-tune once

    @classmethod
    def from_analysis(cls, an, model: str, task: str) -> "SmtHandoff":
        from explorer.views.smt_views import selection_for_training

        sel = selection_for_training(an)
        used = [t for t in an.types if any(x.type == t and x.name in sel for x in an.targets)]
        from explorer.workshop.presets import SMT_LESSON_WARMUP

        meta = getattr(an, "meta", None) or {}
        # the run keeps SMT's warm-up in the inspector's mode: in full mode it moves every weight before the handed
        # blocks train (the public code's sparse phase starts from the warmed-up model), for the inspector's steps
        # but at least the lessons' 40: the inspector's default 16 moved the weights too little (measured:
        # benchmarks/results/smt_handoff.md)
        warm = max(int(meta.get("steps_done") or meta.get("warmup_steps") or 0), SMT_LESSON_WARMUP)
        query = dict(model=model, method="smt", src="built-in", task=task, k_targets=",".join(an.types),
                     k_block_size=str(an.block_size), k_blocks=str(an.n_blocks), k_density="0.0",
                     k_score=an.score, k_selection=an.rule, k_warmup_steps=str(warm))
        if meta.get("mode"):  # explorer.smt_inspector.MODES, the same names as the SMT knob's
            query["k_warmup_mode"] = str(meta["mode"])
        return cls(model=model, task=task, block_size=int(an.block_size), types=list(an.types), used_types=used,
                   n_blocks=int(sum(len(r) for r, _ in sel.values())), score=an.score, rule=an.rule,
                   selection=sel, query=query)

    def mismatch(self, model: str, knobs: dict) -> list[str]:
        """Why the selection does not fit a run of ``model`` with these SMT ``knobs`` ([] = it fits)."""
        why = []
        if self.model != model:
            why.append(f"it was made on {self.model}")
        if int(knobs.get("block_size") or 0) != int(self.block_size):
            why.append(f"its block size is {self.block_size}")
        missing = [t for t in self.used_types if t not in (knobs.get("targets") or [])]
        if missing:
            why.append(f"the targets lack {', '.join(missing)}")
        return why

    def using_text(self, knobs: dict) -> str:
        """What a Fine-tune run with these SMT ``knobs`` does with the selection (the page shows it)."""
        what = (f"Using the selection from the inspector ({self.n_blocks} blocks of {self.block_size}×"
                f"{self.block_size}, score {self.score}, {self.rule})")
        from explorer.methods import METHODS

        if METHODS["smt"].warmup_is_full_finetuning(knobs):
            return (f"{what}: the run's full warm-up ({int(knobs.get('warmup_steps') or 0)} steps) still fine-tunes "
                    "every weight first, as in the public SMT code, then these blocks train instead of the ones it "
                    "would choose.")
        return f"{what}: gradient-only warm-up moves no weight, so there is none; these blocks train from step 1."

    def take_switch(self) -> bool:
        """True once, right after the hand-off (the page then opens Fine-tune)."""
        with _SWITCH_LOCK:
            pending, self.switch_pending = self.switch_pending, False
        return pending


_SWITCH_LOCK = threading.Lock()


def opening_matrix(an, layer: int, mat: str) -> tuple[int, str]:
    """The (layer, matrix type) a heatmap opens on: the one asked for when SMT selects blocks in it, else the
    matrix that holds the most selected blocks (ties: the earliest layer, then the order of ``an.types``)."""
    counts = {(t.layer, t.type): len(an.selection[t.name][0]) for t in an.targets}
    if counts.get((int(layer), mat), 0) > 0 or not any(counts.values()):
        return int(layer), mat
    order = {ty: i for i, ty in enumerate(an.types)}
    best = max(counts, key=lambda lt: (counts[lt], -lt[0], -order.get(lt[1], 0)))
    return best
