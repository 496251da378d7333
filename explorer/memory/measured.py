"""Measured memory: a byte account per training step, in any training loop, on any device.

    from explorer.memory.measured import MemoryAccountant

    acct = MemoryAccountant(model, optimizer)      # optimizer may be None / set later
    for batch in batches:
        with acct.forward_scope():                 # resets the CUDA peak, counts saved activations
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        rec = acct.snapshot()                      # BEFORE optimizer.zero_grad(): it counts the .grad tensors
        optimizer.zero_grad(set_to_none=True)

``rec`` is a plain dict (JSON-ready), all sizes in bytes::

    weights_bytes      every parameter and buffer of the model, shared/tied storage counted once
    weights_by_dtype   {"float32": bytes, "int32": bytes, ...}
    trainable_params   number of parameters with requires_grad (tied once)
    trainable_bytes    their bytes
    grads_bytes        the .grad tensors that exist (each storage once)
    optimizer_bytes    every tensor in optimizer.state (each storage once), Adam's scalar ``step`` included
    optimizer_scalar_bytes  the part of optimizer_bytes held in 0-d tensors (Adam's ``step`` counters)
    activations_bytes  tensors saved for backward during the forward scope that are still alive when the scope
                       ends, each storage once, parameters and buffers excluded (they are weights)
    activations_packed_bytes  the same, counting also saved tensors whose graph was already freed inside
                       the forward (e.g. peft DoRA's throw-away lora_weight graph); >= activations_bytes
    activations_kept_bytes  what the forward kept (``activations_bytes`` without the rebuilt part below)
    activations_recomputed_bytes  gradient checkpointing: the peak of the live tensors saved while the backward
                       pass rebuilds the checkpointed layers (one layer at a time: the largest rebuilt layer);
                       0 without checkpointing.  ``activations_bytes`` = kept + recomputed.  Under autocast the
                       saved tensors are the 16-bit copies autocast made, the 16-bit copies of the weights
                       included (a linear layer keeps its cast weight to pass the gradient to its input): they
                       are activations here, not weights (they live only as long as the step's graph)
    total_bytes        weights + grads + optimizer + activations (the memory model's sum: the terms do not all
                       peak at the same instant, so it is an upper bound of the tensors' own peak)
    cuda_peak_bytes    torch.cuda.max_memory_allocated() since the scope began (None off CUDA)
    rss_bytes          resident set size of this process (psutil), includes Python, libraries, allocator caches

Gradient checkpointing: wrap ``loss.backward()`` in ``acct.backward_scope()`` (``explorer.engine.step.run_step``
does) so that the layers rebuilt during the backward pass are counted too (reentrant checkpointing: each
checkpointed layer saves only its inputs in the forward, seen by ``forward_scope``).

``acct.set_optimizer(opt)`` swaps the optimizer (SMT: after the warm-up); the model is walked again on every
snapshot, so replaced modules are seen.  ``account(model, optimizer)`` gives the static part alone.  Loops that
zero the gradients before ``snapshot`` call ``acct.after_backward()`` after ``loss.backward()``.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
from torch import nn


def _storage_key(t: torch.Tensor):
    try:
        st = t.untyped_storage()
        return (t.device.type, t.device.index, st.data_ptr()), st.nbytes()
    except Exception:  # noqa: BLE001 - sparse / meta / wrapper tensors
        return None, t.numel() * t.element_size()


def _unique_tensor_bytes(tensors) -> tuple[int, dict]:
    """Bytes of the distinct storages behind ``tensors`` and the same split by dtype."""
    seen, total, by_dtype = set(), 0, {}
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        key, nb = _storage_key(t)
        if key is not None:
            if key in seen or key[2] == 0:
                continue
            seen.add(key)
        total += nb
        dt = str(t.dtype).replace("torch.", "")
        by_dtype[dt] = by_dtype.get(dt, 0) + nb
    return total, by_dtype


def _model_tensors(model: nn.Module):
    for _, p in model.named_parameters(remove_duplicate=False):
        yield p
    for _, b in model.named_buffers(remove_duplicate=False):
        yield b


def _state_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _state_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _state_tensors(v)


def rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001
        return None


def account(model: nn.Module, optimizer=None) -> dict:
    """The static part of the byte account: weights, trainable, grads, optimizer state."""
    weights, by_dtype = _unique_tensor_bytes(_model_tensors(model))
    seen, n_train, train_bytes, grads = set(), 0, 0, []
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            n_train += p.numel()
            train_bytes += p.numel() * p.element_size()
        if p.grad is not None:
            grads.append(p.grad)
    grads_bytes, _ = _unique_tensor_bytes(grads)
    opt_bytes = opt_scalar = 0
    if optimizer is not None:
        tensors = list(_state_tensors(list(optimizer.state.values())))
        opt_bytes, _ = _unique_tensor_bytes(tensors)
        opt_scalar, _ = _unique_tensor_bytes(t for t in tensors if t.dim() == 0)
    return dict(weights_bytes=int(weights), weights_by_dtype=by_dtype, trainable_params=int(n_train),
                trainable_bytes=int(train_bytes), grads_bytes=int(grads_bytes), optimizer_bytes=int(opt_bytes),
                optimizer_scalar_bytes=int(opt_scalar))


class MemoryAccountant:
    """Per-step byte account of one model + optimizer (see the module docstring for the protocol)."""

    def __init__(self, model: nn.Module, optimizer=None, device=None):
        self.model = model
        self.optimizer = optimizer
        if device is None:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
        self.device = torch.device(device)
        self._act_live = 0
        self._act_packed = 0
        self._act_recomputed = 0
        self._kept: dict = {}  # storage key -> weak reference to a tensor the forward kept
        self._step_open = False
        self._grads_after_backward: int | None = None
        self.history: list[dict] = []

    # --- protocol -------------------------------------------------------------
    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def begin_step(self) -> None:
        """Reset the CUDA peak (``forward_scope`` calls it when a step is not open yet)."""
        self._step_open = True
        self._grads_after_backward = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)

    @contextmanager
    def forward_scope(self):
        """Count the tensors autograd saves for backward while the forward runs."""
        if not self._step_open:
            self.begin_step()
        excluded = self._excluded()
        records = []

        def pack(t):
            # a detached alias (same storage, no grad_fn): returning ``t`` itself would make a saved *output*
            # hold its own grad_fn, a reference cycle through C++ that leaks when a graph is dropped unused
            d = t.detach()
            key, nb = _storage_key(t)
            if key is not None and key not in excluded:
                try:
                    ref = weakref.ref(d)
                except TypeError:  # pragma: no cover
                    ref = None
                records.append((ref, key, nb))
            return d

        def unpack(t):
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield self
        live, packed = {}, {}
        for ref, key, nb in records:
            packed[key] = max(packed.get(key, 0), nb)
            if ref is None or ref() is not None:
                live[key] = max(live.get(key, 0), nb)
        self._act_live = sum(live.values())
        self._act_packed = sum(packed.values())
        self._kept = {key: ref for ref, key, _ in records if ref is not None and ref() is not None}

    def _excluded(self) -> set:
        excluded = set()
        for t in _model_tensors(self.model):
            key, _ = _storage_key(t)
            if key is not None:
                excluded.add(key)
        return excluded

    @contextmanager
    def backward_scope(self):
        """Count the tensors saved while the backward pass runs (gradient checkpointing rebuilds its layers
        there): the peak of those alive at once, each storage once, parameters and buffers excluded, and so are
        the storages the forward kept (a rebuilt layer saves its input again: the same storage as its checkpoint,
        already counted)."""
        excluded = self._excluded()
        kept = self._kept
        live: dict = {}  # storage key -> [alive aliases, bytes]
        state = {"now": 0, "peak": 0}

        def release(key):
            ent = live.get(key)
            if ent is None:
                return
            ent[0] -= 1
            if ent[0] == 0:
                state["now"] -= ent[1]
                del live[key]

        def pack(t):
            d = t.detach()
            key, nb = _storage_key(t)
            ref = kept.get(key)
            if ref is not None and ref() is None:  # freed since (its address may be reused): not the same storage
                kept.pop(key, None)
                ref = None
            if key is not None and key not in excluded and ref is None:
                ent = live.get(key)
                if ent is None:
                    live[key] = ent = [0, nb]
                    state["now"] += nb
                    state["peak"] = max(state["peak"], state["now"])
                ent[0] += 1
                weakref.finalize(d, release, key)
            return d

        def unpack(t):
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield self
        self._act_recomputed = int(state["peak"])

    def after_backward(self) -> None:
        """Optional: remember the gradient bytes now (for loops that zero the grads before ``snapshot``)."""
        self._grads_after_backward = account(self.model)["grads_bytes"]

    def snapshot(self) -> dict:
        rec = account(self.model, self.optimizer)
        if self._grads_after_backward is not None:
            rec["grads_bytes"] = max(rec["grads_bytes"], self._grads_after_backward)
        rec["activations_kept_bytes"] = int(self._act_live)
        rec["activations_recomputed_bytes"] = int(self._act_recomputed)
        rec["activations_bytes"] = int(self._act_live + self._act_recomputed)
        rec["activations_packed_bytes"] = int(self._act_packed + self._act_recomputed)
        rec["total_bytes"] = int(rec["weights_bytes"] + rec["grads_bytes"] + rec["optimizer_bytes"]
                                 + rec["activations_bytes"])
        rec["cuda_peak_bytes"] = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            rec["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        rec["rss_bytes"] = rss_bytes()
        rec["device"] = str(self.device)
        self._step_open = False
        self._grads_after_backward = None
        self._act_recomputed = 0
        self.history.append(rec)
        return rec

    def peak(self, key: str = "total_bytes", skip: int = 0) -> int | None:
        """The largest value of ``key`` over the recorded steps (``skip`` the first few, e.g. SMT's warm-up)."""
        vals = [r[key] for r in self.history[skip:] if r.get(key) is not None]
        return max(vals) if vals else None
