"""Fine-tunes in spawned worker processes: progress, stop, heartbeat, reuse of the base model, a worker that dies."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
import zipfile

import pytest

from explorer.engine.config import TrainConfig

from explorer.engine.state import RunState
from explorer.workshop.history import entry_from_result
from explorer.workshop.workers import (ProcessExecutor, ThreadExecutor, WorkerDied, died_message,
                                       executor_kind)


@pytest.fixture(scope="module")
def pool():
    ex = ProcessExecutor(workers=1, threads=1)
    yield ex
    ex.shutdown()


def cfg(steps=6, method="lora", **kw):
    return TrainConfig(model="tiny-bert", method=method, task="colour-shape", steps=steps, eval_every=steps,
                       seed=0, **kw)


def run_in_thread(ex, c, state):
    box = {}

    def go():
        try:
            box["res"] = ex.run_train(c, state)
        except BaseException as e:  # noqa: BLE001
            box["err"] = e

    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th, box


def wait_for(pred, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_run_in_a_worker_streams_records_and_returns_its_adapter(pool):
    state = RunState(cfg())
    res = pool.run_train(cfg(), state)
    assert state.status == "finished", state.message
    steps = [r["step"] for r in state.records if r.get("phase") == "train"]
    assert steps == list(range(1, 7))  # every step's record reached the server's state, in order
    assert res.summary["status"] == "finished" and res.records == state.records
    assert res.adapter is None  # the model copy stayed in the worker
    with zipfile.ZipFile(io.BytesIO(res.adapter_zip_bytes)) as z:
        assert any(n.endswith(".safetensors") for n in z.namelist())
    entry = entry_from_result(res, run_id="r1", label="lora")
    assert entry.adapter_zip == res.adapter_zip_bytes and entry.summary["final_accuracy"] is not None
    assert res.worker["pid"] != os.getpid()
    # the worker runs at a lower priority than the server
    assert os.getpriority(os.PRIO_PROCESS, res.worker["pid"]) > os.getpriority(os.PRIO_PROCESS, 0)


def test_the_worker_keeps_its_base_model_for_the_next_run(pool):
    first = pool.run_train(cfg(steps=2), RunState(cfg(steps=2)))
    second = pool.run_train(cfg(steps=2, method="smt"), RunState(cfg(steps=2)))
    assert first.worker["pid"] == second.worker["pid"]
    assert second.worker["base_reused"] is True


def test_stop_reaches_the_worker_within_a_step(pool):
    c = cfg(steps=5000)
    state = RunState(c)
    th, box = run_in_thread(pool, c, state)
    assert wait_for(lambda: state.step >= 2)
    state.stop()
    t0 = time.time()
    th.join(60)
    assert not th.is_alive() and time.time() - t0 < 10
    assert state.status == "stopped" and 2 <= state.step < 5000
    assert "err" not in box


def test_a_closed_tab_stops_its_run(pool):
    c = cfg(steps=5000)
    state = RunState(c)
    state.heartbeat()
    state.orphan_s = 1.0  # the page polls once, then never again
    th, box = run_in_thread(pool, c, state)
    th.join(120)
    assert state.status == "stopped"
    assert state.message.startswith("stopped: page closed (no page polled this run for 1 s)")


def test_a_worker_that_dies_ends_only_its_run(pool):
    c = cfg(steps=5000)
    state = RunState(c)
    th, box = run_in_thread(pool, c, state)
    assert wait_for(lambda: state.step >= 1)
    pid = pool.stats()[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    th.join(30)
    assert isinstance(box.get("err"), WorkerDied)
    assert state.status == "failed" and state.message.startswith("worker died:") and "SIGKILL" in state.message
    assert "Traceback" not in state.message and "\n" not in state.message
    # the next run gets a fresh worker and finishes
    state2 = RunState(cfg(steps=2))
    res = pool.run_train(cfg(steps=2), state2)
    assert state2.status == "finished" and res.worker["pid"] != pid
    assert pool.died == 1


def test_died_message_names_the_signal():
    assert "killed by SIGKILL (out of memory" in died_message(-9)
    assert "SIGSEGV" in died_message(-11)
    assert "exited with code 3" in died_message(3)


def test_executor_kind_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_EXECUTOR", "process")
    assert executor_kind() == "process"
    monkeypatch.setenv("PEFT_EXPLORER_EXECUTOR", "bogus")
    assert executor_kind("thread") == "thread"


def test_a_worker_gives_the_same_run_as_this_process(pool):
    """Same seed, CPU: the worker's run and an in-process run end with the same loss."""
    here = ThreadExecutor().run_train(cfg(steps=4), RunState(cfg(steps=4)))
    there = pool.run_train(cfg(steps=4), RunState(cfg(steps=4)))
    assert here.adapter is not None  # in this process the model copy is still there
    assert abs(here.summary["final_loss"] - there.summary["final_loss"]) <= 1e-6


def test_a_project_function_runs_in_a_worker_with_progress_and_stop(pool):
    seen = []
    out = pool.run_call("explorer.workshop.worker_side:selftest", dict(n=3), progress=lambda f, m: seen.append((f, m)))
    assert out["pid"] != os.getpid() and out["done"] == 3
    assert [f for f, _ in seen] == [1 / 3, 2 / 3, 1.0]
    stop = threading.Event()
    box = {}
    th = threading.Thread(target=lambda: box.update(out=pool.run_call("explorer.workshop.worker_side:selftest",
                                                                         dict(n=10_000, pause=0.01),
                                                                         progress=lambda f, m: None,
                                                                         stop_event=stop)), daemon=True)
    th.start()
    time.sleep(1.0)
    stop.set()
    th.join(10)
    assert 0 < box["out"]["done"] < 10_000
    with pytest.raises(Exception, match="not a project function"):
        pool.run_call("os:system", dict(command="true"))


def test_a_worker_runs_below_the_servers_priority_on_its_own_threads(pool):
    """The server's redraws win the cores: the worker is `nice`r than this process by the executor's niceness (10
    by default) and trains on the threads it was given (torch intra-op, one inter-op thread, no tokenizer pool)."""
    from explorer.workshop.workers import DEFAULT_NICE

    out = pool.run_call("explorer.workshop.worker_side:selftest", dict(n=1))
    assert pool.niceness == DEFAULT_NICE == 10
    assert out["nice"] == min(19, os.nice(0) + pool.niceness)
    assert out["torch_threads"] == pool.threads == 1 and out["interop_threads"] == 1
    assert out["tokenizers_parallelism"] == "false"


EXITING = r"""
import atexit, threading, time
atexit.register(time.sleep, 2.0)  # registered first, so it runs last: after multiprocessing's exit function
from explorer.workshop.workers import ProcessExecutor
ex = ProcessExecutor(workers=1, threads=1)
def late():
    time.sleep(0.5)  # the main thread is exiting by now, and a queued run asks for a worker
    try:
        ex.warm()
        print("spawned late", flush=True)
    except Exception as e:
        print("refused:", e, flush=True)
threading.Thread(target=late, daemon=True).start()
"""


def test_a_process_that_exits_leaves_no_worker_and_prints_no_traceback():
    """Issue 21: an AppTest page run left spawned workers that printed a SemLock traceback when the parent exited
    (a worker started while the process was exiting, after multiprocessing had unlinked its semaphores).  Every
    pool now shuts down first at exit and starts no worker afterwards."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", EXITING], cwd=root, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(root)))
    assert p.returncode == 0
    assert p.stdout.strip() == "refused: the server is shutting down: no new run starts"
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr[-1500:]


def test_a_shut_down_pool_refuses_work_in_one_line():
    from explorer.errors import ServiceError

    ex = ProcessExecutor(workers=1, threads=1)
    ex.shutdown()
    with pytest.raises(ServiceError, match="shutting down"):
        ex.run_call("explorer.workshop.worker_side:selftest", dict(n=1))


KILLED = r"""
import time
from explorer.workshop.workers import ProcessExecutor
ex = ProcessExecutor(workers=1, threads=1)
ex.run_call("explorer.workshop.worker_side:selftest", dict(n=1))  # the worker is up and waits for work
print(*[w.proc.pid for w in ex._workers], flush=True)
time.sleep(600)
"""


def test_a_worker_whose_server_is_killed_outright_ends():
    """A server killed with SIGKILL cannot end its daemon workers; an idle worker found waiting on its inbox half
    an hour after its server was gone now sees that its parent changed and ends within a few seconds."""
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    from explorer.workshop.worker_side import PARENT_CHECK_S

    root = Path(__file__).resolve().parents[1]
    while not (root / "explorer").is_dir():
        root = root.parent
    p = subprocess.Popen([sys.executable, "-c", KILLED], cwd=root, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        pid = int(p.stdout.readline().split()[0])
        worker = psutil.Process(pid)
        assert worker.is_running()
        p.kill()
        p.wait(timeout=30)
        worker.wait(timeout=PARENT_CHECK_S * 5)  # psutil.TimeoutExpired if it is still there
    finally:
        p.kill()
        with contextlib.suppress(psutil.Error, NameError):
            worker.kill()


def test_several_servers_on_one_machine_split_the_cores_between_their_workers(monkeypatch):
    """tools/serve_room.py gives each of N servers one run slot and PEFT_EXPLORER_TORCH_THREADS (the cores over the
    room's runs): a one-worker pool must take that, not every core.  Before, each server's worker took all the
    cores, and two servers on 2 cores trained 30 runs in 6x the wall time at 10x the CPU (benchmarks/room_servers.py;
    oversubscribed OpenMP threads spin)."""
    from explorer.workshop.workers import ProcessExecutor

    monkeypatch.setenv("PEFT_EXPLORER_TORCH_THREADS", "1")
    pool = ProcessExecutor(workers=1)
    try:
        assert pool.threads == 1
        out = pool.run_call("explorer.workshop.worker_side:selftest", dict(n=1))
        assert out["torch_threads"] == 1
    finally:
        pool.shutdown()
    monkeypatch.delenv("PEFT_EXPLORER_TORCH_THREADS")
    unset = ProcessExecutor(workers=1)
    try:
        assert unset.threads == max(1, os.cpu_count() or 1)  # no override: the machine's cores
    finally:
        unset.shutdown()
