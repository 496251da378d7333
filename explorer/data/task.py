"""The task object every loader returns and every batcher reads (a built-in task, a user file, a hub data set)."""

from __future__ import annotations

from dataclasses import dataclass, field

from explorer.errors import DataError

MIN_ROWS = 8
SEQ_CLS = "seq-cls"
CAUSAL = "causal-lm"


@dataclass
class Task:
    name: str
    kind: str  # "seq-cls" or "causal-lm"
    label_names: list[str]
    train: list[tuple]  # (text, label int) or (prompt, answer str)
    eval: list[tuple]
    description: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    path: str = ""  # the file read (for an upload: the stored copy), "" for built-in and hub tasks

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.kind == SEQ_CLS else 0

    def split(self, name: str) -> list[tuple]:
        if name in ("train", "training"):
            return self.train
        if name in ("eval", "validation", "test", "held-out"):
            return self.eval
        raise DataError(f"Unknown split '{name}': use train or eval")

