"""Columns of a user file or hub data set -> a Task: which columns hold text and label (or prompt and
answer), empty rows, label classes, and a held-out split by distinct text.  One DataError line per refusal."""

from __future__ import annotations

import math
import random

from explorer.data.task import CAUSAL, MIN_ROWS, SEQ_CLS, Task
from explorer.errors import DataError


def _pick(cols: list[str], given: str | None, candidates: list[str], what: str, fname: str) -> str:
    if given:
        if given not in cols:
            raise DataError(f"{fname}: no column '{given}' for the {what}; columns are {', '.join(cols)[:200]}")
        return given
    for c in candidates:
        if c in cols:
            return c
    raise DataError(f"{fname}: missing a {what} column (looked for {', '.join(candidates)}); columns are "
                    f"{', '.join(cols)[:200]}; name it with the column mapping (--{what}-col on the command line)")


def _clean(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    s = str(v).strip()
    return s or None


def rows_to_task(rows_cols: dict, cols: list[str], name: str, model_kind: str, source: str,
                  text_col=None, label_col=None, prompt_col=None, answer_col=None,
                  eval_rows: dict | None = None) -> Task:
    n_rows = len(next(iter(rows_cols.values()))) if rows_cols else 0
    if n_rows == 0:
        raise DataError(f"{name}: the data has no rows")
    if model_kind == CAUSAL:
        pc = _pick(cols, prompt_col, ["prompt", "question", "input", "text"], "prompt", name)
        ac = _pick(cols, answer_col, ["answer", "completion", "output", "target", "label"], "answer", name)
        pairs = [(_clean(p), _clean(a)) for p, a in zip(rows_cols[pc], rows_cols[ac])]
    else:
        tc = _pick(cols, text_col, ["text", "sentence", "content", "review", "prompt", "input"], "text", name)
        lc = _pick(cols, label_col, ["label", "labels", "class", "category", "target"], "label", name)
        pairs = [(_clean(t), _clean(lab)) for t, lab in zip(rows_cols[tc], rows_cols[lc])]
    empty = sum(1 for a, b in pairs if a is None or b is None)
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        raise DataError(f"{name}: every row is empty (no rows with both columns filled)")
    notes = []
    if empty:
        notes.append(f"{empty} empty row(s) skipped")
    if len(pairs) < MIN_ROWS:
        raise DataError(f"{name}: only {len(pairs)} usable rows"
                        + (f" ({empty} empty)" if empty else "") + f"; at least {MIN_ROWS} are needed")
    if model_kind == CAUSAL:
        labels = sorted({b for _, b in pairs})
        task_pairs = pairs
        label_names = labels[:50]
    else:
        labels = sorted({b for _, b in pairs}, key=lambda s: (not s.lstrip("-").isdigit(),
                                                                int(s) if s.lstrip("-").isdigit() else 0, s))
        if len(labels) < 2:
            raise DataError(f"{name}: the label column has a single class ('{labels[0][:40]}'); "
                            "classification needs at least two")
        if len(labels) > 100:
            raise DataError(f"{name}: the label column has {len(labels)} classes; at most 100 are supported "
                            "(is it the right column?)")
        idx = {lab: i for i, lab in enumerate(labels)}
        task_pairs = [(a, idx[b]) for a, b in pairs]
        label_names = labels
    if eval_rows is None:
        # held out by distinct text: every row of a held-out text is held out, so no held-out text is
        # also a training text (repeated rows of a file would otherwise land on both sides)
        counts: dict[str, int] = {}
        for a, _ in task_pairs:
            counts[a] = counts.get(a, 0) + 1
        if len(counts) < 2:
            raise DataError(f"{name}: all {len(task_pairs)} rows have the same text; a held-out split needs at "
                            "least two different texts")
        texts = list(counts)
        rng = random.Random(0)
        rng.shuffle(texts)
        target = max(2, min(500, len(task_pairs) // 5))
        held, n = set(), 0
        for t in texts[:-1]:  # at least one text stays for training
            if n >= target:
                break
            held.add(t)
            n += counts[t]
        ev = [p for p in task_pairs if p[0] in held]
        tr = [p for p in task_pairs if p[0] not in held]
        rng.shuffle(ev)
        rng.shuffle(tr)
        repeats = len(task_pairs) - len(counts)
        notes.append(f"held-out split: {len(ev)} of {len(task_pairs)} rows, drawn with seed 0 by distinct text "
                     f"(no held-out text is in training" + (f"; {repeats} row(s) repeat an earlier text)"
                                                            if repeats else ")"))
    else:
        tr = task_pairs
        sub = rows_to_task(eval_rows, cols, name + " (eval)", model_kind, source, text_col, label_col,
                            prompt_col, answer_col, eval_rows=False)
        ev = sub.train
        if model_kind == SEQ_CLS:  # re-index by this task's labels
            ev = [(a, label_names.index(sub.label_names[b])) for a, b in ev if sub.label_names[b] in label_names]
    if eval_rows is False:
        return Task(name=name, kind=model_kind, label_names=label_names, train=task_pairs, eval=[], source=source)
    return Task(name=name, kind=model_kind, label_names=label_names, train=tr, eval=ev,
                description=f"user data from {source}", source=source, notes=notes)

