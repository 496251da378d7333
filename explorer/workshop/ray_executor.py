"""Fine-tunes on a Ray cluster, for a room that outgrows one machine (``PEFT_EXPLORER_EXECUTOR=ray``).

The same contract as :class:`explorer.workshop.workers.ProcessExecutor`: :meth:`RayExecutor.run_train`
blocks its caller (a run-queue thread) until the run ends, streams progress records and the status into the
caller's ``RunState``, passes a stop (or a closed tab) to the run within a poll, and returns the slim result
(records, summary, configuration, notes, the adapter as zip bytes).  A Ray worker that dies ends only its run.

Where: ``PEFT_EXPLORER_RAY_ADDRESS`` (``ray://host:10001`` or ``host:6379`` of an existing cluster; every
node needs this project installed, ``pip install -e .``), else a local Ray is started on demand with
``PEFT_EXPLORER_RAY_CPUS`` CPUs (default: all).  Each run is a Ray actor that asks for one CPU, and one GPU
when the cluster has GPUs and the run's device is ``auto`` or ``cuda``.  Actors are kept between runs
(one per concurrent run), so each loads a base model once.  A data file uploaded to this server travels
with the run (the cluster's nodes cannot read this server's disk).

Ray is an optional dependency (``requirements-ray.txt``, installed by ``make test``); without it, choosing
this executor is refused with one line.
"""

from __future__ import annotations

import dataclasses
import os
import queue as queue_mod
import tempfile
import threading
import time
from pathlib import Path

from explorer.errors import ServiceError, WorkerDied, died_message

__all__ = ["RayExecutor", "RAY_ADDRESS_ENV", "RAY_CPUS_ENV"]

RAY_ADDRESS_ENV = "PEFT_EXPLORER_RAY_ADDRESS"
RAY_CPUS_ENV = "PEFT_EXPLORER_RAY_CPUS"
POLL_S = 0.2
ROOT = Path(__file__).resolve().parents[2]


class _RunActor:
    """Runs one fine-tune at a time; ``poll`` and ``stop`` are answered while ``run`` works (threaded actor)."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.cache: dict = {}
        self.lock = threading.Lock()
        self.records: list = []
        self.status: dict = {}
        self.stop_event = threading.Event()

    def run(self, cfg, keep_adapter: bool, data: bytes | None, data_name: str | None):
        from explorer.engine.state import RunState
        from explorer.engine.train import train
        from explorer.workshop.worker_side import _base_for, _slim

        actor = self
        with self.lock:
            self.records, self.status = [], {}
        self.stop_event.clear()
        tmp = None
        if data is not None:  # the user's file, sent along: the same name, in a private folder
            tmp = tempfile.mkdtemp(prefix="peft-explorer-ray-")
            path = Path(tmp) / Path(data_name or "data.csv").name
            path.write_bytes(data)
            cfg = dataclasses.replace(cfg, task=str(path))

        class Remote(RunState):
            def set(self, **kw):
                super().set(**kw)
                with actor.lock:
                    actor.status.update({k: v for k, v in kw.items()
                                         if k in ("status", "message", "started", "ended", "total_steps")})
                    if self.done:
                        actor.records = [dict(r) for r in self.records]

            def add_record(self, rec):
                super().add_record(rec)
                with actor.lock:
                    actor.records.append(dict(rec))

            def orphaned(self):
                return False

        state = Remote(cfg)
        state.stop_event = self.stop_event
        try:
            try:
                loaded = _base_for(cfg, self.cache)
            except Exception:  # noqa: BLE001 - train reports the reason
                loaded = None
            res = train(cfg, loaded=loaded, state=state)
            out = _slim(res, keep_adapter)
            out.worker = dict(pid=os.getpid(), node=_node_ip())
            return out
        finally:
            if tmp is not None:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)

    def poll(self, since: int):
        with self.lock:
            return [dict(r) for r in self.records[since:]], dict(self.status), len(self.records)

    def stop(self):
        self.stop_event.set()

    def pid(self):
        return os.getpid()


def _node_ip() -> str | None:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        return None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ServiceError("The Ray executor needs Ray: pip install -r requirements-ray.txt") from None
    return ray


class RayExecutor:
    kind = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, threads: int = 1):
        ray = _import_ray()
        self.ray = ray
        address = address if address is not None else os.environ.get(RAY_ADDRESS_ENV, "").strip() or None
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                      runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE":
                                                os.environ.get("HF_HUB_OFFLINE", "1"),
                                                "TRANSFORMERS_OFFLINE": os.environ.get("TRANSFORMERS_OFFLINE", "1")}})
            if address is None:
                cpus = num_cpus or _env_int(RAY_CPUS_ENV) or (os.cpu_count() or 1)
                kw["num_cpus"] = cpus
            try:
                ray.init(address=address, **kw)
            except Exception as e:  # noqa: BLE001 - one line, whatever Ray says
                where = address or "a local Ray"
                raise ServiceError(f"Could not start or reach {where}: {str(e).splitlines()[0][:200]}") from None
        self.address = address
        self.threads = max(1, int(threads))
        self._idle: queue_mod.Queue = queue_mod.Queue()
        self._lock = threading.Lock()
        self._actors: list = []
        self.died = 0
        self._cls = ray.remote(max_concurrency=4)(_RunActor)

    def _gpus(self, cfg) -> int:
        dev = str(getattr(cfg, "device", "auto") or "auto")
        has = self.ray.cluster_resources().get("GPU", 0) > 0
        return 1 if has and (dev == "auto" or dev.startswith("cuda")) else 0

    def _acquire(self, gpus: int):
        try:
            while True:
                a, g = self._idle.get_nowait()
                if g == gpus:
                    return a, g
                self.ray.kill(a)  # a CPU actor for a GPU run or the reverse: make the right one
        except queue_mod.Empty:
            pass
        a = self._cls.options(num_cpus=1, num_gpus=gpus).remote(self.threads)
        with self._lock:
            self._actors.append(a)
        return a, gpus

    def run_train(self, cfg, state, loaded=None, keep_adapter: bool = True):
        ray = self.ray
        data, name = _data_for(cfg)
        actor, gpus = self._acquire(self._gpus(cfg))
        ref = actor.run.remote(cfg, keep_adapter, data, name)
        seen, orphan_msg, alive = 0, None, True
        try:
            while True:
                if state.stop_event.is_set():
                    actor.stop.remote()
                if orphan_msg is None and state.orphaned():
                    orphan_msg = f"stopped: page closed (no page polled this run for {state.orphan_s:g} s)"
                    actor.stop.remote()
                ready, _ = ray.wait([ref], timeout=POLL_S)
                try:
                    recs, status, seen_now = ray.get(actor.poll.remote(seen))
                except ray.exceptions.RayActorError:
                    recs, status, seen_now = [], {}, seen
                for r in recs:
                    state.add_record(r)
                seen = seen_now
                if status.get("status") == "running" and state.status != "running":
                    state.set(status="running", started=status.get("started"))
                if ready:
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayActorError:
                        alive = False
                        self.died += 1
                        msg = died_message(None).replace("exited with code None", "was lost by Ray (its node or actor ended)")
                        state.set(status="failed", message=msg, ended=time.time())
                        raise WorkerDied(msg) from None
                    status = dict(status)
                    if orphan_msg and status.get("status") == "stopped":
                        status["message"] = f"{orphan_msg} after step {state.step}"
                    state.set(records=list(res.records), **status)
                    return res
        finally:
            if alive:
                self._idle.put((actor, gpus))

    def stats(self) -> list[dict]:
        return [dict(actors=len(self._actors), idle=self._idle.qsize(), address=self.address or "local",
                     resources=self.ray.cluster_resources())]

    def describe(self) -> dict:
        return dict(kind=self.kind, workers=self.stats(), died=self.died)

    def shutdown(self) -> None:
        for a in self._actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self._actors.clear()


def _data_for(cfg):
    """A data file on this server's disk travels with the run; built-in tasks and hub ids do not."""
    task = str(getattr(cfg, "task", "") or "")
    if task and os.path.isfile(task):
        p = Path(task)
        return p.read_bytes(), p.name
    return None, None


def _env_int(name: str) -> int | None:
    try:
        v = int(os.environ.get(name, ""))
        return v if v > 0 else None
    except ValueError:
        return None
