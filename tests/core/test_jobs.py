"""The run queue: concurrency limit, FIFO positions, cancel, slot release, memory refusal, sweeps."""

from __future__ import annotations

import threading
import time

import pytest

from explorer.workshop.jobs import MemoryRefused, RunQueue, check_memory, estimate_run_bytes, ordinal, sweep_plan
from explorer.workshop.sweeps import Sweep, SweepResult
from explorer.engine.config import TrainConfig
from explorer.engine.state import RunState

BIG = 10 ** 15  # "free memory" that fits anything


def free_big(_dev):
    return BIG


def wait_until(cond, timeout=10.0):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_limit_respected_with_threads():
    q = RunQueue(max_running=2, free_fn=free_big)
    lock = threading.Lock()
    now = [0]
    peak = [0]

    def work(job):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return job.id

    jobs = []
    submitters = [threading.Thread(target=lambda: jobs.append(q.submit(work))) for _ in range(8)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    for j in jobs:
        assert j.wait(10)
    assert peak[0] == 2  # never more than the limit, and the limit was used
    assert all(j.status == "done" and j.result == j.id for j in jobs)
    assert q.stats() == dict(running=0, queued=0, max_running=2, finished=8)


def test_fifo_positions_and_cancel_while_queued():
    q = RunQueue(max_running=1, free_fn=free_big)
    gate = threading.Event()
    order = []

    def work(job):
        order.append(job.label)
        gate.wait(10)

    a = q.submit(work, label="a")
    wait_until(lambda: a.status == "running")
    st_b = RunState(TrainConfig(model="tiny-bert"))
    b = q.submit(work, label="b", state=st_b)
    c = q.submit(work, label="c")
    d = q.submit(work, label="d")
    assert (a.position(), b.position(), c.position(), d.position()) == (0, 1, 2, 3)
    assert b.cancel() is True
    assert b.status == "cancelled" and b.done
    assert st_b.status == "stopped" and "queued" in st_b.message  # the page shows why
    assert (c.position(), d.position()) == (1, 2)
    gate.set()
    for j in (a, c, d):
        assert j.wait(10)
    assert order == ["a", "c", "d"]  # first come, first served; the cancelled job never ran


def test_cancel_running_sets_stop_event():
    q = RunQueue(max_running=1, free_fn=free_big)
    state = RunState(TrainConfig(model="tiny-bert"))

    def work(job):
        assert job.stop_event.wait(10)
        return "stopped"

    j = q.submit(work, state=state)
    wait_until(lambda: j.status == "running")
    assert j.cancel()
    assert j.wait(10) and j.result == "stopped"
    assert state.stop_event.is_set()


def test_slot_released_on_exception():
    q = RunQueue(max_running=1, free_fn=free_big)
    state = RunState(TrainConfig(model="tiny-bert"))

    def boom(job):
        raise RuntimeError("inside a method")

    j1 = q.submit(boom, state=state)
    assert j1.wait(10)
    assert j1.status == "failed" and "inside a method" in j1.message
    assert state.status == "failed" and "inside a method" in state.message
    j2 = q.submit(lambda job: 42)
    assert j2.wait(10) and j2.result == 42  # the slot came back
    assert q.stats()["running"] == 0


def test_slot_released_on_memory_error():
    q = RunQueue(max_running=1, free_fn=free_big)

    def oom(job):
        raise MemoryError()

    j = q.submit(oom)
    assert j.wait(10) and j.status == "failed" and "Out of memory" in j.message
    assert q.submit(lambda job: 1).wait(10)


def test_memory_refusal_shows_estimate():
    q = RunQueue(max_running=2, safety=1.5, free_fn=lambda dev: 100 * 2**20)
    with pytest.raises(MemoryRefused) as ei:
        q.submit(lambda job: None, need_bytes=80 * 2**20)
    msg = str(ei.value)
    assert "80 MiB" in msg and "120 MiB" in msg and "100 MiB" in msg
    assert q.stats()["queued"] == 0 and q.stats()["running"] == 0
    q.submit(lambda job: None, need_bytes=60 * 2**20).wait(10)  # 90 MiB fits


def test_memory_checked_again_when_leaving_the_queue():
    free = [BIG]
    q = RunQueue(max_running=1, free_fn=lambda dev: free[0])
    gate = threading.Event()
    a = q.submit(lambda job: gate.wait(10))
    wait_until(lambda: a.status == "running")
    state = RunState(TrainConfig(model="tiny-bert"))
    b = q.submit(lambda job: "ran", need_bytes=50 * 2**20, state=state)
    free[0] = 10 * 2**20  # memory ran low while b waited
    gate.set()
    assert b.wait(10)
    assert b.status == "refused" and b.result is None and "50 MiB" in b.message
    assert state.status == "failed" and "would not fit" in state.message


def test_check_memory_and_estimate():
    check_memory(None, 1)  # no estimate: no check
    check_memory(10, None)  # unknown free memory: no check
    with pytest.raises(MemoryRefused):
        check_memory(10, 14, safety=1.5)
    est = estimate_run_bytes(TrainConfig(model="tiny-bert", method="lora", batch_size=16, max_len=64))
    est_big = estimate_run_bytes(TrainConfig(model="tiny-bert", method="full", batch_size=16, max_len=64))
    assert est is not None and est_big is not None and 0 < est < est_big  # full FT needs more
    assert estimate_run_bytes(TrainConfig(model="no-such-model-xyz")) is None
    assert [ordinal(i) for i in (1, 2, 3, 4, 11, 12, 13, 21, 22, 103)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "103rd"]


def test_env_limit(monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_MAX_RUNS", "5")
    assert RunQueue().max_running == 5
    monkeypatch.setenv("PEFT_EXPLORER_MAX_RUNS", "lots")
    assert RunQueue().max_running == 2


def test_sweep_plan_matches_budgets(tiny_bert):
    from explorer.targets import find_targets

    plan = sweep_plan(tiny_bert, methods=("lora", "smt", "sparta"), ranks=(1, 4))
    tg = find_targets(tiny_bert.model, ["q", "v"])
    per_rank = sum(t.d_in + t.d_out for t in tg)
    cells = sum(t.d_in * t.d_out for t in tg)
    for p in plan:
        assert p["budget"] == p["rank"] * per_rank
        if p["method"] == "smt":
            b = p["knobs"]["block_size"]
            assert abs(p["knobs"]["blocks"] * b * b - p["budget"]) <= b * b / 2
        if p["method"] == "sparta":
            assert abs(p["knobs"]["density"] * cells - p["budget"]) < 1
    assert [p["method"] for p in plan].count("lora") == 2


def test_sweep_runs_through_the_queue(tiny_bert):
    q = RunQueue(max_running=1, free_fn=free_big)
    got = []
    items = [(f"lora r={r}", TrainConfig(model="tiny-bert", method="lora", knobs=dict(rank=r), steps=2,
                                         eval_every=0, eval_examples=16, batch_size=4, measure_memory=False))
             for r in (1, 2)]
    sw = Sweep(items, q, loaded=tiny_bert, on_result=lambda label, res: got.append((label, res.summary)))
    sw.start()
    sw.thread.join(60)
    snap = sw.snapshot()
    assert snap.status == "finished" and snap.index == 2 and snap.total == 2 and snap.current_label is None
    assert [r.label for r in snap.results] == ["lora r=1", "lora r=2"] and all(isinstance(r, SweepResult) for r in snap.results)
    assert [r.trainable for r in snap.results] == [g[1]["trainable_params"] for g in got]
    assert [r.final_accuracy for r in snap.results] == [g[1]["final_accuracy"] for g in got]
    assert [g[0] for g in got] == ["lora r=1", "lora r=2"]
    assert got[0][1]["trainable_params"] < got[1][1]["trainable_params"]  # the budget grew
    assert q.stats()["finished"] == 2



def test_queued_run_whose_page_closed_never_starts():
    """A run whose page stopped polling while it waited in line is not started; a polled one is."""
    q = RunQueue(max_running=1, free_fn=free_big)
    gate = threading.Event()
    blocker = q.submit(lambda job: gate.wait(10), label="blocker")
    closed, polled = RunState(), RunState()
    for st, orphan_s in ((closed, 0.2), (polled, 5.0)):  # polled: far from its timeout whatever the load
        st.heartbeat()
        st.orphan_s = orphan_s
    started = []
    j_closed = q.submit(lambda job: started.append("closed"), state=closed, label="closed tab")
    j_polled = q.submit(lambda job: started.append("polled"), state=polled, label="open tab")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:  # only the open tab keeps polling while both wait
        polled.heartbeat()
        time.sleep(0.02)
    gate.set()
    assert blocker.wait(10) and j_closed.wait(10) and j_polled.wait(10)
    assert started == ["polled"]
    assert j_closed.status == "cancelled" and closed.status == "stopped"
    assert closed.message.startswith("stopped: page closed while queued"), closed.message
    assert j_polled.status == "done"
    assert q.stats()["running"] == 0 and q.stats()["queued"] == 0


def test_server_config_turns_off_streamlits_gc_after_every_rerun():
    """Streamlit's default gc.collect(2) after every script run starves runs under load
    (benchmarks/server_gc.py: 0 of 6 runs finished in 240 s); the app's config turns it off,
    and the queue collects once per run instead."""
    import tomllib
    from pathlib import Path

    from streamlit import config as st_config

    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert cfg["runner"]["postScriptGC"] is False
    # the option still exists in this Streamlit (a renamed option would be silently ignored), and the app's
    # config file really sets it: loaded the way `streamlit run` loads it, the value is False
    assert "runner.postScriptGC" in st_config._config_options_template
    assert st_config._config_options_template["runner.postScriptGC"].default_val is True  # Streamlit's default
    import copy

    st_config.get_option("runner.postScriptGC")  # makes sure the options are loaded before the snapshot
    saved = copy.deepcopy(st_config._config_options)
    try:
        st_config._update_config_with_toml(
            (Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text(), "test")
        assert st_config.get_option("runner.postScriptGC") is False
    finally:
        st_config._config_options = saved
    # a run's reference cycles are collected when it ends
    import gc
    import weakref

    class Cycle:
        pass

    q = RunQueue(max_running=1, free_fn=free_big)
    refs = []

    def work(job):
        a = Cycle()
        a.self = a  # freed only by the cycle collector
        refs.append(weakref.ref(a))

    gc.disable()
    try:
        assert q.submit(work, label="cycle").wait(10)
        assert refs[0]() is None, "the run's reference cycle outlived the run"
    finally:
        gc.enable()


def test_a_queued_run_is_never_0th_in_line():
    """Issue 21: 'Queued: 0th in line' while the run had left the line for its worker."""
    from explorer.workshop.jobs import queue_place

    assert queue_place(0) == "starting now"
    assert [queue_place(n) for n in (1, 2, 3, 11, 22)] == ["1st in line", "2nd in line", "3rd in line",
                                                            "11th in line", "22nd in line"]


def test_lesson_texts_say_what_the_runs_do():
    """Issue 21: the Compare lesson said 'both runs start together' but queues them one after the other; the TL6
    lesson promised 'a few thousand trainable parameters' and the run showed 21,173."""
    from explorer.workshop.presets import for_page

    (lesson,) = for_page("compare").values()
    assert "together" not in lesson.lesson and "one after the other" in lesson.lesson and len(lesson.runs) == 2
    tl6 = for_page("finetune")["Tied-LoRA TL6 on minilm (bbc-news)"]
    assert "thousand" not in tl6.lesson and "compare its trainable count" in tl6.lesson
