"""Batches of a task for ``model(**batch)`` and held-out evaluation (accuracy and loss)."""

from __future__ import annotations

import random

import torch

from explorer.data.task import SEQ_CLS, Task
from explorer.errors import DataError

# ----------------------------------------------------------------------------- batching

def _encode_causal(tokenizer, prompt: str, answer: str, max_len: int):
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and getattr(tokenizer, "add_bos_token", False):
        p_ids = [bos] + p_ids
    a_ids = a_ids[: max(1, max_len // 2)]
    p_ids = p_ids[-(max_len - len(a_ids)):]  # keep the end of a long prompt
    return p_ids, a_ids


def collate(task: Task, tokenizer, examples: list[tuple], model_kind: str | None = None, max_len: int = 64) -> dict:
    kind = model_kind or task.kind
    if kind != task.kind:
        raise DataError(f"Task '{task.name}' is {task.kind} but the model is {kind}")
    if kind == SEQ_CLS:
        enc = tokenizer([t for t, _ in examples], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["labels"] = torch.tensor([int(y) for _, y in examples], dtype=torch.long)
        return batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [_encode_causal(tokenizer, p, a, max_len) for p, a in examples]
    width = max(len(p) + len(a) for p, a in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (p, a) in enumerate(seqs):
        n = len(p) + len(a)
        ids[i, :n] = torch.tensor(p + a)
        att[i, :n] = 1
        lab[i, len(p):n] = torch.tensor(a)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def iter_batches(task: Task, tokenizer, split: str, batch_size: int = 16, seed: int = 0, max_batches=None,
                 model_kind: str | None = None, max_len: int = 64, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
    """Batches ready for ``model(**batch)`` (with ``labels``), deterministic given ``seed``.

    The split repeats (reshuffled per epoch with ``seed + epoch``) until ``max_batches``
    is reached; with ``max_batches=None`` one pass.  ``rank``/``world_size`` give each
    data-parallel process its own slice of every global batch of ``batch_size * world_size``.
    """
    data = task.split(split)
    if not data:
        raise DataError(f"Task '{task.name}' has no {split} examples")
    if batch_size < 1:
        raise DataError("batch size must be at least 1")
    gb = batch_size * world_size
    made, epoch = 0, 0
    while True:
        order = list(range(len(data)))
        if shuffle:
            random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for s in range(0, len(order), gb):
            chunk = order[s: s + gb]
            if max_batches is not None and len(chunk) < gb and len(order) >= gb:
                continue  # repeat mode: full batches only
            mine = chunk[rank * batch_size: (rank + 1) * batch_size] if world_size > 1 else chunk
            if not mine:
                continue
            yield collate(task, tokenizer, [data[i] for i in mine], model_kind, max_len)
            made += 1
            if max_batches is not None and made >= max_batches:
                return
        epoch += 1
        if max_batches is None:
            return


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, task: Task, tokenizer, model_kind: str | None = None, batch_size: int = 32,
             max_examples: int | None = None, max_len: int = 64, device=None) -> dict:
    """Accuracy and mean loss on the held-out split (eval mode, no grad; restores train mode).

    seq-cls: argmax accuracy.  causal-lm: greedy exact match under teacher forcing (every
    answer token must be the argmax given the prompt and the previous answer tokens).
    """
    kind = model_kind or task.kind
    data = task.eval[:max_examples] if max_examples else task.eval
    if not data:
        raise DataError(f"Task '{task.name}' has no held-out examples")
    was_training = model.training
    model.eval()
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    correct, loss_sum, loss_n = 0, 0.0, 0
    try:
        for s in range(0, len(data), batch_size):
            batch = collate(task, tokenizer, data[s: s + batch_size], kind, max_len)
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch["labels"]
            out = model(**batch)
            logits = out.logits.float()
            if kind == SEQ_CLS:
                loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
                loss_n += labels.numel()
                correct += int((logits.argmax(-1) == labels).sum())
            else:
                sl, tl = logits[:, :-1], labels[:, 1:]
                mask = tl != -100
                loss_sum += float(torch.nn.functional.cross_entropy(sl[mask], tl[mask], reduction="sum"))
                loss_n += int(mask.sum())
                ok = (sl.argmax(-1) == tl) | ~mask
                correct += int(ok.all(dim=1).sum())
    finally:
        model.train(was_training)
    return dict(accuracy=correct / len(data), loss=loss_sum / max(1, loss_n), n=len(data))

