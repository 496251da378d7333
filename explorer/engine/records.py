"""Typed records of a run: one :class:`StepRecord` per step or evaluation and the :class:`RunSummary`.

They travel (to pages, worker processes, the history, ``metrics.json``) as the dicts of their
``to_dict``, byte for byte the format the project has always written; ``from_dict`` reads them back.

A step record's dict, in key order::

    eval only (step 0 and the final evaluation):  step, phase="eval", eval_accuracy, eval_loss, eval_n
    a step that ended on a non-finite value:      step, phase, loss
    a step:    step, phase ("warmup" | "train"), loss, lr, step_time_s, tokens_per_s, grad_norm,
               the memory fields (byte account: ..._bytes, trainable_params; or cuda_peak_bytes, rss_bytes),
               then eval_accuracy, eval_loss, eval_n when an evaluation followed the step
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

_STEP_KEYS = ("lr", "step_time_s", "tokens_per_s", "grad_norm")
_EVAL_KEYS = ("eval_accuracy", "eval_loss", "eval_n")


@dataclass
class Evaluation:
    accuracy: float
    loss: float | None
    n: int

    def to_dict(self) -> dict:
        return dict(eval_accuracy=self.accuracy, eval_loss=self.loss, eval_n=self.n)

    @classmethod
    def from_dict(cls, d: dict) -> "Evaluation | None":
        if d.get("eval_accuracy") is None and "eval_n" not in d:
            return None
        return cls(accuracy=d.get("eval_accuracy"), loss=d.get("eval_loss"), n=d.get("eval_n"))


@dataclass
class StepRecord:
    step: int
    phase: str  # "warmup", "train" or "eval"
    loss: float | None = None
    lr: float | None = None
    step_time_s: float | None = None  # None: the step ended before its update (non-finite loss or gradient)
    tokens_per_s: float | None = None
    grad_norm: float | None = None
    memory: dict = field(default_factory=dict)  # measured fields, keys as on disk
    eval: Evaluation | None = None

    @property
    def trained(self) -> bool:
        return self.phase in ("train", "warmup") and self.step_time_s is not None

    def to_dict(self) -> dict:
        d = dict(step=self.step, phase=self.phase)
        if self.phase != "eval":
            d["loss"] = self.loss
            if self.step_time_s is not None:
                d.update(lr=self.lr, step_time_s=self.step_time_s, tokens_per_s=self.tokens_per_s,
                         grad_norm=self.grad_norm)
                d.update(self.memory)
        if self.eval is not None:
            d.update(self.eval.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StepRecord":
        known = {"step", "phase", "loss", *_STEP_KEYS, *_EVAL_KEYS}
        return cls(step=int(d.get("step", 0)), phase=str(d.get("phase", "")), loss=d.get("loss"),
                   **{k: d.get(k) for k in _STEP_KEYS},
                   memory={k: v for k, v in d.items() if k not in known}, eval=Evaluation.from_dict(d))


@dataclass
class RunSummary:
    """What a run came to.  ``to_dict`` keeps the key order of the summaries written so far: the counts and the
    evaluations known early first, then the rest; a run without a final evaluation ends with
    ``final_accuracy: null``."""

    trainable_params: int | None = None
    total_params: int | None = None
    base_accuracy: float | None = None
    final_accuracy: float | None = None
    final_eval_loss: float | None = None
    status: str = "failed"
    message: str = ""
    steps_done: int = 0
    steps: int = 0
    method: str | None = None
    model: str | None = None
    task: str | None = None
    best_accuracy: float | None = None
    wall_time_s: float | None = None
    device: str | None = None
    lr: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_train_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    peak_rss_bytes: int | None = None
    mean_step_time_s: float | None = None
    final_loss: float | None = None
    notes: list = field(default_factory=list)

    _EARLY = ("trainable_params", "total_params", "base_accuracy", "final_accuracy", "final_eval_loss")

    def to_dict(self) -> dict:
        d = {}
        if self.trainable_params is not None:
            d.update(trainable_params=self.trainable_params, total_params=self.total_params)
        if self.base_accuracy is not None:
            d["base_accuracy"] = self.base_accuracy
        if self.final_accuracy is not None:
            d.update(final_accuracy=self.final_accuracy, final_eval_loss=self.final_eval_loss)
        for f in fields(self):
            if f.name not in self._EARLY:
                d[f.name] = getattr(self, f.name)
        if self.final_accuracy is None:
            d["final_accuracy"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSummary":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def add_records(self, records: list[dict]) -> None:
        """Fill steps_done, best_accuracy, the peaks, the mean step time and the final loss from the records."""
        evals = [r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None]
        trained = [r for r in records if r.get("phase") in ("train", "warmup") and r.get("step_time_s") is not None]

        def peak(key, phase=None):
            vals = [r[key] for r in trained if r.get(key) is not None and (phase is None or r["phase"] == phase)]
            return max(vals) if vals else None

        self.steps_done = max([r["step"] for r in trained], default=0)
        self.best_accuracy = max(evals) if evals else None
        self.peak_memory_bytes = peak("total_bytes")
        self.peak_memory_train_bytes = peak("total_bytes", "train")
        self.peak_cuda_bytes = peak("cuda_peak_bytes")
        self.peak_rss_bytes = peak("rss_bytes")
        self.mean_step_time_s = (sum(r["step_time_s"] for r in trained[1:]) / max(1, len(trained) - 1)
                                 if len(trained) > 1 else (trained[0]["step_time_s"] if trained else None))
        self.final_loss = trained[-1]["loss"] if trained else None


__all__ = ["StepRecord", "Evaluation", "RunSummary"]
