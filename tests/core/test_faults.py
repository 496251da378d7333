"""Faults during a fine-tune, in the core (no browser): each ends with a clear status, frees the
adapted model and its worker thread, and leaves the session's finished runs alone.

Stop pressed mid-run, the tab closed mid-run (heartbeat timeout), an exception inside a method,
out-of-memory (MemoryError and CUDA's "out of memory" RuntimeError injected at a step through
``explorer.engine.train.FAULT_HOOK``).  Page-level faults (two Starts, switching pages) are at the end,
through AppTest, once the Fine-tune page exists.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest
import torch

from explorer.engine import state as state_mod
from explorer.engine import train as train_mod
from explorer.engine.config import TrainConfig
from explorer.engine.train import start_in_thread, train

TASK = "size-compare"


def cfg(steps=400, method="lora", **kw):
    base = dict(model="tiny-bert", task=TASK, method=method, steps=steps, eval_every=0, eval_examples=16,
                batch_size=8, max_len=16, seed=0, measure_memory=False)
    base.update(kw)
    return TrainConfig(**base)


def worker_threads():
    from explorer.workshop.status import WORKER_PREFIXES  # train-* (start_in_thread), peft-run-* (the server queue)

    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(WORKER_PREFIXES)]


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
    while (worker_threads() or state_mod.active_runs()) and time.time() < deadline:
        time.sleep(0.05)
    assert not worker_threads(), f"worker threads left running: {[t.name for t in worker_threads()]}"
    assert not state_mod.active_runs()


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
    # 1.5 s: this thread's heartbeats (every 0.05 s) must arrive in time while two runs train on two busy cores
    monkeypatch.setenv(state_mod.ORPHAN_ENV, "1.5")
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
    assert "1.5 s" in state.message
    assert time.monotonic() - t_closed >= 1.5
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


def test_sweep_whose_tab_closed_stops_with_its_current_run(tiny_bert, hook, monkeypatch, kept):
    from explorer.workshop.jobs import RunQueue
    from explorer.workshop.sweeps import Sweep

    monkeypatch.setenv(state_mod.ORPHAN_ENV, "0.4")
    hook(delay=0.02)
    q = RunQueue(max_running=1, free_fn=lambda _dev: 10 ** 15)
    got = []
    items = [(f"lora r={r}", cfg(knobs=dict(rank=r))) for r in (1, 2, 4)]
    sw = Sweep(items, q, loaded=tiny_bert, on_result=lambda label, res: got.append(res.status)).start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.2:  # a polling page: alive past the timeout
        sw.heartbeat()
        time.sleep(0.05)
    assert not sw.done and sw.snapshot().current["status"] == "running"
    t_closed = time.monotonic()  # the tab closes: nobody polls any more
    sw.thread.join(timeout=30)
    assert not sw.thread.is_alive()
    snap = sw.snapshot()
    assert snap.status == "stopped", snap
    assert snap.message.startswith("stopped: page closed") and "after 1 of 3 runs" in snap.message, snap
    assert time.monotonic() - t_closed >= 0.4
    # the run that was going is stopped by the same timeout and kept (partial); the others never start
    assert got == ["stopped"] and snap.results[0].message.startswith("stopped: page closed")
    assert q.stats() == dict(running=0, queued=0, max_running=1, finished=1)
    # a sweep no page ever polled (a script) is never orphaned
    sw2 = Sweep([("lora r=1", cfg(steps=3))], q, loaded=tiny_bert).start()
    sw2.thread.join(timeout=30)
    assert sw2.snapshot().status == "finished"
    del sw, sw2
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


# ----------------------------------------------------------------------------- the same faults through the page

FT_PAGE = "pages/2_Fine_tune.py"


@pytest.fixture
def page_env(tmp_path, monkeypatch):
    from pathlib import Path

    if not (Path(__file__).resolve().parents[2] / FT_PAGE).exists():
        pytest.skip("the Fine-tune page is not there")
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    from explorer.workshop.jobs import default_queue

    default_queue().cancel_all()
    torch.set_num_threads(torch_threads)


def app(page: str = FT_PAGE, **params):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=90)
    at.switch_page(page) if page != "app.py" else None
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_of(at):
    return at.session_state["ft_run"] if "ft_run" in at.session_state else None


def ended(run) -> bool:
    """The run ended and its job too (the job adds the run to the history after train() returns)."""
    return run.state.done and run.job.done


def until(cond, timeout=60.0, every=0.05, on_wait=None):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("condition not reached in time")
        if on_wait:
            on_wait()
        time.sleep(every)


def finish_short_run(at):
    at.slider(key="ft:steps").set_value(2).run()
    at.button(key="ft_start").click().run()
    until(lambda: ended(run_of(at)), on_wait=at.run, every=0.3)
    at.run()
    hist = at.session_state["run_history"]
    assert [e.status for e in hist] == ["finished"]
    return [e.id for e in hist]


def test_page_switched_mid_run_keeps_going_and_shows_again(page_env, hook):
    hook(delay=0.02)
    at = app(model="tiny-bert", steps="300", bs="4")
    at.button(key="ft_start").click().run()
    run = run_of(at)
    until(lambda: run.state.step >= 2, on_wait=at.run, every=0.3)
    at.switch_page("pages/3_Compare.py").run()  # another page: the run goes on in its thread
    assert not at.exception
    s1 = run.state.step
    until(lambda: run.state.step > s1 + 2)  # no page polls the run, it still advances
    assert not run.state.done and worker_threads()
    at.switch_page(FT_PAGE).run()  # back: the same run is shown, with its Stop button
    assert not at.exception and run_of(at) is run
    assert at.button(key="ft_stop") is not None and at.button(key="ft_start").disabled
    assert any(run.label in m.value for m in at.markdown)  # its live panel is drawn again
    at.button(key="ft_stop").click().run()
    until(lambda: run.state.done, on_wait=at.run, every=0.3)
    assert run.state.status == "stopped"


def test_tab_closed_mid_run_through_the_page(page_env, hook, monkeypatch):
    monkeypatch.setenv(state_mod.ORPHAN_ENV, "1.0")
    hook(delay=0.02)
    at = app(model="tiny-bert", steps="400", bs="4")
    at.button(key="ft_start").click().run()
    run = run_of(at)
    until(lambda: run.state.step >= 1, on_wait=at.run, every=0.3)
    # the tab is closed: nothing polls any more (no at.run())
    until(lambda: run.state.done, timeout=30)
    assert run.state.status == "stopped" and run.state.message.startswith("stopped: page closed")
    assert run.state.step < 400
    at.run()  # a session coming back (same session state) sees what happened, no traceback
    assert not at.exception and any("page closed" in w.value for w in at.warning)


def test_exception_and_oom_in_page_runs_keep_the_finished_run(page_env, hook):
    at = app(model="tiny-bert", steps="2", bs="4")
    kept = finish_short_run(at)
    for fn, expect in ((_lora_raises, "shape mismatch inside the adapter"), (_cuda_oom, "Out of memory")):
        seen = hook(fn)
        at.slider(key="ft:steps").set_value(50).run()
        at.button(key="ft_start").click().run()
        run = run_of(at)
        until(lambda: ended(run), on_wait=at.run, every=0.3)
        at.run()
        assert not at.exception
        assert run.state.status == "failed" and expect in run.state.message
        assert any(expect in e.value for e in at.error), [e.value for e in at.error]
        assert not at.button(key="ft_start").disabled  # Start is back
        ids = [e.id for e in at.session_state["run_history"]]
        assert ids[: len(kept)] == kept and at.session_state["run_history"].get(kept[0]).status == "finished"
        assert freed(seen["model"])
        train_mod.FAULT_HOOK = None
