"""Hand-made batches for a loaded tiny model (the memory and method tests)."""

from __future__ import annotations

import torch


def make_batch(loaded, b=4, s=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (b, s), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = torch.randint(0, 2, (b,), generator=g) if loaded.info.kind == "seq-cls" else ids.clone()
    return batch
