"""Try your model: the fine-tuned and the base model side by side on a sentence the user types.

Pure Python.  A finished run keeps its adapter as zip bytes in the session history
(``explorer.workshop.history.RunEntry.adapter_zip``); :func:`load_tryout` rebuilds it on a fresh copy of the
cached base model (the cache is never written) and :func:`compare` answers with both models:

- sequence classification: the class probabilities of the fine-tuned model and of the base model with
  the same (untrained, seeded) new head, i.e. the model of step 0;
- causal LM: the greedy completion of both (the base is the cached model itself, read-only, no grad).
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from explorer.errors import DataError

MAX_TEXT = 500  # characters of user text looked at
MAX_NEW_TOKENS = 12


@dataclass
class Tryout:
    """A run's adapter rebuilt for inference, plus what is needed to read its answers."""

    run_id: str
    kind: str  # seq-cls or causal-lm
    tuned: torch.nn.Module
    base: torch.nn.Module
    tokenizer: object
    label_names: list
    max_len: int = 64


def load_tryout(loaded, run_id: str, adapter_zip: bytes, max_len: int = 64) -> Tryout:
    """The run's adapter on a fresh copy of ``loaded`` (DataError when the run kept no adapter)."""
    from explorer.engine.export import load_run_adapter
    from explorer.models import fresh_copy
    from explorer.engine.prepare import init_head

    if not adapter_zip:
        raise DataError("this run kept no adapter (stopped during SMT's warm-up, failed, or too large to keep)")
    with tempfile.TemporaryDirectory(prefix="peftx-try-") as tmp:
        with zipfile.ZipFile(io.BytesIO(adapter_zip)) as z:
            for name in z.namelist():  # server-made zip; still refuse any path that leaves the folder
                if name.startswith("/") or ".." in Path(name).parts:
                    raise DataError("the adapter archive holds an unsafe path")
            z.extractall(tmp)
        folder = Path(tmp) / "adapter"
        info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
        adapter = load_run_adapter(loaded, folder)
    tuned = adapter.model
    tuned.eval()
    kind = loaded.info.kind
    if kind == "seq-cls":
        base = fresh_copy(loaded.model)  # the same new head as the run's step 0 (seeded), untrained
        init_head(base, max(2, int(info.get("num_labels") or 2)), int(info.get("seed", 0)))
        base.eval()
    else:
        base = loaded.model  # read-only: generation under no_grad writes nothing
    names = [str(x) for x in (info.get("label_names") or [])]
    return Tryout(run_id=run_id, kind=kind, tuned=tuned, base=base, tokenizer=loaded.tokenizer, label_names=names,
                  max_len=max_len)


def _clean(text: str) -> str:
    text = " ".join(str(text or "").split())[:MAX_TEXT]
    if not text:
        raise DataError("type a sentence first")
    return text


@torch.no_grad()
def classify(t: Tryout, text: str) -> list[dict]:
    """One row per class: label, probability of the fine-tuned model, probability of the base model."""
    text = _clean(text)
    enc = t.tokenizer([text], truncation=True, max_length=t.max_len, return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    p_tuned = torch.softmax(t.tuned(**enc).logits.float()[0], -1)
    p_base = torch.softmax(t.base(**enc).logits.float()[0], -1)
    n = p_tuned.numel()
    names = t.label_names if len(t.label_names) == n else [f"class {i}" for i in range(n)]
    return [dict(label=names[i], tuned=float(p_tuned[i]), base=float(p_base[i])) for i in range(n)]


@torch.no_grad()
def complete(t: Tryout, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Greedy completions of both models (the answer only, without the prompt)."""
    prompt = _clean(prompt)
    tok = t.tokenizer
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -t.max_len:]
    bos = getattr(tok, "bos_token_id", None)
    if bos is not None and getattr(tok, "add_bos_token", False):
        ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
    out = {}
    for name, model in (("tuned", t.tuned), ("base", t.base)):
        cur = ids
        for _ in range(int(max_new_tokens)):
            nxt = model(input_ids=cur, attention_mask=torch.ones_like(cur)).logits[0, -1].argmax()
            cur = torch.cat([cur, nxt.view(1, 1)], dim=1)
            if tok.eos_token_id is not None and int(nxt) == tok.eos_token_id:
                break
        out[name] = tok.decode(cur[0, ids.shape[1]:], skip_special_tokens=True).strip()
    return out


def compare(t: Tryout, text: str) -> dict:
    """``{"kind": ..., "rows": [...]}`` for classification, ``{"kind": ..., "tuned": str, "base": str}`` else."""
    if t.kind == "seq-cls":
        return dict(kind=t.kind, rows=classify(t, text))
    return dict(kind=t.kind, **complete(t, text))


__all__ = ["Tryout", "load_tryout", "classify", "complete", "compare"]


def example_input(entry, kind: str) -> str | None:
    """A sentence (or prompt) of the run's own task to offer in "Try your model": the one the history kept when
    the run ended, else the first held-out example of a built-in task; None when neither is known (then the page
    asks for a sentence instead of offering another task's)."""
    text = (getattr(entry, "summary", None) or {}).get("example_input")
    if isinstance(text, str) and text.strip():
        return text.strip()[:MAX_TEXT]
    name = (getattr(entry, "config", None) or {}).get("task") or ""
    try:
        from explorer import data
        from explorer.workshop.history import first_example

        if name not in data.BUILTIN:
            return None
        return first_example(data.load_task(name, model_kind=kind))
    except Exception:  # noqa: BLE001 - no example: the page asks for a sentence
        return None

