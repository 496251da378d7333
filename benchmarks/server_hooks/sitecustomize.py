"""Garbage-collection counters for a server under a benchmark (``benchmarks/participant_cost.py``).

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; the benchmark puts this folder first on the
server's ``PYTHONPATH`` and sets ``PEFT_BENCH_GC_DIR``.  Nothing happens without that variable, so the folder is
inert anywhere else.  With it, every Python process started under it (the server, and the worker processes
it spawns, which inherit the environment) counts its garbage collections per generation through
``gc.callbacks`` (the number, wall seconds and the collecting thread's CPU seconds) and writes the running
totals to ``$PEFT_BENCH_GC_DIR/gc-<pid>.json`` once a second.  It changes nothing else in the process.
"""

import os

_DIR = os.environ.get("PEFT_BENCH_GC_DIR")

if _DIR:
    import gc
    import json
    import threading
    import time

    _totals = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "cpu_seconds": [0.0, 0.0, 0.0],
               "collected": 0}
    _start = [0.0, 0.0]

    def _on_gc(phase, info):
        # collections never overlap (they hold the interpreter lock), so one start slot is enough
        if phase == "start":
            _start[0], _start[1] = time.perf_counter(), time.thread_time()
            return
        g = int(info.get("generation", 0))
        if 0 <= g <= 2:
            _totals["collections"][g] += 1
            _totals["seconds"][g] += time.perf_counter() - _start[0]
            _totals["cpu_seconds"][g] += time.thread_time() - _start[1]
        _totals["collected"] += int(info.get("collected", 0))

    def _dump():
        path = os.path.join(_DIR, f"gc-{os.getpid()}.json")
        while True:
            time.sleep(1.0)
            try:
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(dict(_totals, t=time.time(), pid=os.getpid()), f)
                os.replace(tmp, path)
            except OSError:
                return

    gc.callbacks.append(_on_gc)
    threading.Thread(target=_dump, name="bench-gc-counters", daemon=True).start()
