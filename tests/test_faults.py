"""Faults during a fine-tune, in the core (no browser): each ends with a clear status, frees the
adapted model and its worker thread, and leaves the session's finished runs alone.

Stop pressed mid-run, the tab closed mid-run (heartbeat timeout), an exception inside a method,
out-of-memory (MemoryError and CUDA's "out of memory" RuntimeError injected at a step through
``explorer.train.FAULT_HOOK``).  Page-level faults (two Starts, switching pages) are at the end,
through AppTest, once the Fine-tune page exists.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest
import torch

from explorer import train as train_mod
from explorer.train import TrainConfig, start_in_thread, train

TASK = "size-compare"


def cfg(steps=400, method="lora", **kw):
    base = dict(model="tiny-bert", task=TASK, method=method, steps=steps, eval_every=0, eval_examples=16,
                batch_size=8, max_len=16, seed=0, measure_memory=False)
    base.update(kw)
    return TrainConfig(**base)


def worker_threads():
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith("train")]


def n_optimizers() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer))


@pytest.fixture
def hook():
    """Install a FAULT_HOOK; remembers (weakly) the adapted model it saw; always removed."""
    seen = {}

    def install(fn=None, delay=0.0):
        def h(step, phase, model):
            seen.setdefault("model", weakref.ref(model))
            if delay:
                time.sleep(delay)
            if fn is not None:
                fn(step, phase, model)
        train_mod.FAULT_HOOK = h
        return seen

    yield install
    train_mod.FAULT_HOOK = None


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    deadline = time.time() + 20
    while worker_threads() and time.time() < deadline:
        time.sleep(0.05)
    assert not worker_threads(), f"worker threads left running: {[t.name for t in worker_threads()]}"
    assert not train_mod.active_runs()


def wait_step(state, n, timeout=60.0):
    deadline = time.time() + timeout
    while state.step < n and not state.done and time.time() < deadline:
        time.sleep(0.02)
    assert state.step >= n, f"the run did not reach step {n} (status {state.status}: {state.message})"


def freed(ref, timeout=5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        gc.collect()
        if ref() is None:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def kept(tiny_bert):
    """A run of the session that finished before the faults (it must survive every one of them)."""
    res = train(cfg(steps=4), loaded=tiny_bert)
    assert res.status == "finished"
    return res, [dict(r) for r in res.records], dict(res.summary)


def assert_intact(kept):
    res, records, summary = kept
    assert res.status == "finished" and res.adapter is not None
    assert [dict(r) for r in res.records] == records and res.summary == summary


def test_stop_pressed_mid_run(tiny_bert, hook, kept):
    opt0 = n_optimizers()
    seen = hook(delay=0.01)
    state, th = start_in_thread(cfg(), loaded=tiny_bert)
    wait_step(state, 3)
    state.stop()
    th.join(timeout=30)
    assert not th.is_alive()
    assert state.status == "stopped" and state.message.startswith("stopped by the user after")
    assert 3 <= state.result.summary["steps_done"] < 400
    # a user-stopped run keeps its adapter for download; nothing else holds the model
    assert state.result.adapter is not None
    assert n_optimizers() == opt0, "the run's optimizer outlived the run"
    ref = seen["model"]
    del state, th
    assert freed(ref), "the adapted model is still referenced after the session dropped the run"
    assert_intact(kept)


def test_tab_closed_mid_run_is_stopped_by_heartbeat(tiny_bert, hook, monkeypatch, kept):
    monkeypatch.setenv(train_mod.ORPHAN_ENV, "0.4")
    seen = hook(delay=0.02)
    # a page that keeps polling: not stopped although it runs longer than the timeout
    alive, th1 = start_in_thread(cfg(steps=60), loaded=tiny_bert)
    # a page that polls once and then is closed
    state, th = start_in_thread(cfg(), loaded=tiny_bert)
    state.heartbeat()
    t_closed = time.monotonic()
    while th.is_alive() and time.monotonic() - t_closed < 30:
        alive.heartbeat()
        time.sleep(0.05)
    th.join(timeout=5)
    assert not th.is_alive()
    assert state.status == "stopped" and state.message.startswith("stopped: page closed"), state.message
    assert "0.4 s" in state.message
    assert time.monotonic() - t_closed >= 0.4
    assert state.result.adapter is None  # nobody will download it: dropped at once
    # the polled run was not stopped by the timeout
    while th1.is_alive():
        alive.heartbeat()
        time.sleep(0.05)
    assert alive.status == "finished", alive.message
    # a run that no page ever polled (the command line) is never orphaned
    assert train(cfg(steps=3), loaded=tiny_bert).status == "finished"
    del alive, th1
    gc.collect()
    assert_intact(kept)


def _lora_raises(step, phase, model):
    if step == 3:
        lora_layers = [m for n, m in model.named_modules() if n.endswith("lora_A.default")]
        assert lora_layers, "no LoRA layer found"

        def boom(mod, inp, out):
            raise RuntimeError("shape mismatch inside the adapter (injected)")
        lora_layers[0].register_forward_hook(boom)


def _memory_error(step, phase, model):
    if step == 2:
        raise MemoryError()


def _cuda_oom(step, phase, model):
    if step == 2:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.3 GiB total)")


def _cuda_oom_runtime(step, phase, model):
    if step == 2:
        raise RuntimeError("CUDA error: out of memory")


FAULTS = {
    "exception-in-method": (_lora_raises, "RuntimeError: shape mismatch inside the adapter (injected)"),
    "memory-error": (_memory_error, "Out of memory"),
    "cuda-oom": (_cuda_oom, "Out of memory"),
    "cuda-oom-runtime": (_cuda_oom_runtime, "Out of memory"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_in_worker_ends_failed_and_frees_everything(tiny_bert, hook, fault, kept):
    fn, expect = FAULTS[fault]
    opt0 = n_optimizers()
    seen = hook(fn)
    state, th = start_in_thread(cfg(), loaded=tiny_bert)
    th.join(timeout=60)
    assert not th.is_alive()
    assert state.status == "failed" and state.done
    assert state.message.startswith(expect), state.message
    assert "\n" not in state.message and "Traceback" not in state.message
    assert state.result.summary["status"] == "failed" and state.result.summary["message"] == state.message
    # records up to the fault are kept, the model and the optimizer are not
    assert state.records and state.records[0]["phase"] == "eval"
    assert state.result.adapter is None
    assert freed(seen["model"]), "the adapted model of a failed run is still referenced"
    assert n_optimizers() == opt0
    assert_intact(kept)


def test_fault_during_smt_warmup(tiny_bert, hook):
    seen = hook(_memory_error)
    res = train(cfg(method="smt", knobs={"block_size": 16, "blocks": 4, "warmup_steps": 4}), loaded=tiny_bert)
    assert res.status == "failed" and res.summary["message"].startswith("Out of memory")
    assert res.adapter is None and freed(seen["model"])


def test_retry_after_fault_works(tiny_bert, hook):
    hook(_memory_error)
    assert train(cfg(steps=6), loaded=tiny_bert).status == "failed"
    train_mod.FAULT_HOOK = None
    res = train(cfg(steps=6), loaded=tiny_bert)
    assert res.status == "finished" and res.summary["final_accuracy"] is not None
