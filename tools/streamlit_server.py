"""Start the real dashboard server for a test, a benchmark or a screenshot run, and stop it after.

    with serve(env={"PEFT_EXPLORER_EXECUTOR": "process"}) as srv:
        urllib.request.urlopen(srv.url + "/Fine_tune?model=tiny-bert")

``serve`` starts ``python -m streamlit run app.py`` (as ``make run`` does) on a free port of 127.0.0.1 with the
offline flags set, waits until ``/_stcore/health`` answers, and terminates it (then kills it) when the block
ends.  Tests, benchmarks and the README screenshot script all start their servers here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
CHROMIUM = "/usr/bin/chromium"
# Debian's chromium, headless, as root, on a machine without a network: without the background-networking flags
# it tries Google's hosts at every start
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


class ServerDidNotStart(RuntimeError):
    pass


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=timeout) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float = 90.0, every: float = 0.1) -> float:
    """Seconds until the server answers its health check; ServerDidNotStart when it exits or the time is up."""
    t0 = time.perf_counter()
    while not healthy(url):
        if proc is not None and proc.poll() is not None:
            raise ServerDidNotStart(f"the streamlit server exited with status {proc.returncode} before it answered")
        if time.perf_counter() - t0 > timeout:
            raise ServerDidNotStart(f"the streamlit server did not answer its health check within {timeout:.0f} s")
        time.sleep(every)
    return time.perf_counter() - t0


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def serve(env: dict | None = None, args: tuple = (), log: str | Path | None = None, root: Path = ROOT,
          timeout: float = 90.0) -> Iterator[Server]:
    """The real server of the checkout at ``root`` on a free port; ``env`` adds to (or, with a value of None,
    removes from) this process's environment; ``log`` is a file for its output (else it is dropped)."""
    port = free_port()
    full = dict(os.environ, **OFFLINE, PYTHONPATH=str(root), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = str(v)
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", *args],
                            cwd=root, env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
        yield Server(url, port, proc)
    finally:
        stop(proc)
        if log:
            out.close()
