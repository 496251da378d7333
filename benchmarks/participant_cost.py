"""What one workshop participant costs the server, state by state, from the server's own counters.

    python -m benchmarks.participant_cost [--participants 10] [--window 45] [--executor process]
        [--checkout LABEL=PATH ...] [--baseline-commit REV] [--no-profile]

For each checkout (this one by default; ``--checkout before=/tmp/base --checkout after=.`` runs the same
protocol against two checkouts one after the other in one run, ``--baseline-commit REV`` makes a temporary git
worktree of REV and puts it first) the benchmark starts the real server as the load test does (``streamlit run
app.py`` on 127.0.0.1, a free port, ``PEFT_EXPLORER_DEBUG=1``, ``OMP_NUM_THREADS=2``, runs in worker processes
unless ``--executor thread``) and drives headless participants (``tools/st_protocol.py``: Streamlit's WebSocket
protocol, fragments' ``run_every`` timers included, nothing drawn) through states, one measured window each:

=================  =====================================================================================
``empty``          nobody connected: the server's own background
``arrive``         N participants arrive, spread over the window: each opens the Methods playground (tiny-bert)
                   and Fine-tune (CPU-seconds per arrival: the two full page runs and the session set-up)
``idle``           N participants, each with the Methods playground (tiny-bert) and Fine-tune open; nobody
                   touches anything (a participant reading)
``sliders``        the same tabs; each participant moves the playground's rank slider every ``--move-every`` s
``board``          N participants on the Class board (``--board-entries`` shared runs on it); nobody shares
``board_shares``   the same, while a share arrives every ``--share-every`` s (written to the board's file)
``train``          ``--max-runs`` participants watch their own run train on Fine-tune (minilm, batch 16)
``hold``           the same participants watch slower runs (batch ``--run-batch``, 64: they hold the run slots
                   through the waiting states below, each of which adds to this one)
``queue``          the same runs, and N participants more whose runs wait in the server's queue
``sweep_queue``    the same runs, and N participants on Compare whose budget sweeps wait in the queue
``smt_queue``      the same runs, and N participants on the SMT inspector whose warm-ups wait in the queue
``claims_queue``   the same runs, and N participants on the Claims lab whose live re-runs wait in the queue
=================  =====================================================================================

Per window it reads the server process's CPU time (psutil: user + system) and, separately, its child
processes' (the worker processes that train), and reports CPU-seconds per minute and per participant per
minute: (state - the state it adds to) / participants, where ``idle``, ``board`` and ``train`` add to ``empty``,
``sliders`` to ``idle``, ``board_shares`` to ``board``, ``hold`` to ``empty`` and the waiting states (``queue``,
``sweep_queue``, ``smt_queue``, ``claims_queue``) to ``hold``.  Beside them: script runs
per participant per minute (full runs and fragment runs, counted by the clients), the bytes the server sent,
garbage collection in the server (``gc.callbacks`` counters from ``benchmarks/server_hooks/sitecustomize.py``,
put on the server's ``PYTHONPATH``; no change to the app) and, unless ``--no-profile``, where the server's
time went: py-spy samples the server (``record --gil --threads --format raw``: only the thread holding the
interpreter lock, which is the server's Python work) and :func:`attribute` sorts each sample into a page
script (by page file, and the library the project code called), Streamlit's own work (its server thread,
its script runner outside page code) and the run queue's relay threads.

Results: ``benchmarks/results/participant_cost.json`` and ``.md`` (``--out NAME`` for another name), with the
command, the 1-minute load average at each window, the number of cores and the py-spy process's own CPU.
CPU-seconds are counted by the kernel per process, so they move less with a busy machine than wall times do;
the load average is recorded beside each window all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tools.load_participant import pct, server_cpu
from tools.pyspy_shares import attribute, parse_raw  # py-spy samples -> shares

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
HOOKS = ROOT / "benchmarks" / "server_hooks"
STATES = ("empty", "arrive", "idle", "sliders", "board", "board_shares", "train", "hold", "queue", "sweep_queue",
          "smt_queue", "claims_queue")
# the state each one adds its participants to (per-participant cost = (state - base) / participants)
BASE_OF = {"arrive": "empty", "idle": "empty", "sliders": "idle", "board": "empty", "board_shares": "board", "train": "empty",
           "hold": "empty", "queue": "hold", "sweep_queue": "hold", "smt_queue": "hold", "claims_queue": "hold"}
# the waiting states: (page, its query for participant i, the button that puts the work in line (None: it starts by
# itself on arrival), what the page says while it waits, the button that takes it out of the line)
WAITING = {
    "queue": ("Fine_tune", lambda i, model: f"model={model}&method=lora&seed={i}", "ft_start", r"in line", "ft_stop"),
    "sweep_queue": ("Compare", lambda i, model: f"sw_model=tiny-bert&sw_steps=4&sw_methods=lora&sw_ranks=1&sw_seed={i}",
                    "cmp_sweep_go", r"in line", "cmp_sweep_stop"),
    "smt_queue": ("SMT_block_inspector", lambda i, model: f"model=tiny-bert&seed={1000 + i}", "smt_compute",
                  r"in line", "smt_stop"),
    "claims_queue": ("Claims_lab", lambda i, model: "claim=sparta", "claims_run_sparta", r"re-run: 0 of \d+ runs",
                     "claims_stop_sparta"),
}
METHODS = ["lora", "dora", "lora-sp", "tied-lora"]
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


# ----------------------------------------------------------------------------- counters of the server

def cpu_snapshot(pid: int) -> dict:
    """The server's CPU seconds (user + system) and each live child's (``tools.load_participant.server_cpu``), with
    the resident memory of the server and its children."""
    import psutil

    p = psutil.Process(pid)
    rss_kids = 0
    for c in p.children(recursive=True):
        try:
            rss_kids += c.memory_info().rss
        except psutil.Error:
            pass
    cpu = server_cpu(pid)
    return dict(server=cpu["server"], reaped_children=cpu["reaped"], children=cpu["children"],
                rss=p.memory_info().rss, rss_children=rss_kids, threads=p.num_threads(), t=time.perf_counter())


def cpu_delta(a: dict, b: dict) -> dict:
    kids = sum(v - a["children"].get(k, 0.0) for k, v in b["children"].items())
    kids += b["reaped_children"] - a["reaped_children"]
    return dict(server_cpu_s=b["server"] - a["server"], children_cpu_s=kids, wall_s=b["t"] - a["t"])


def read_gc(gc_dir: Path, pid: int) -> dict | None:
    try:
        return json.loads((gc_dir / f"gc-{pid}.json").read_text())
    except (OSError, ValueError):
        return None


def gc_delta(a: dict | None, b: dict | None) -> dict | None:
    if not a or not b:
        return None
    return dict(collections=[y - x for x, y in zip(a["collections"], b["collections"])],
                seconds=sum(b["seconds"]) - sum(a["seconds"]),
                cpu_seconds=sum(b["cpu_seconds"]) - sum(a["cpu_seconds"]),
                cpu_seconds_by_generation=[y - x for x, y in zip(a["cpu_seconds"], b["cpu_seconds"])],
                seconds_by_generation=[y - x for x, y in zip(a["seconds"], b["seconds"])])


# ----------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    checkout: Path
    proc: subprocess.Popen
    url: str
    tmp: Path
    gc_dir: Path
    board_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_server(checkout: Path, executor: str, max_runs: int, tmp: Path) -> Server:
    gc_dir = tmp / "gc"
    gc_dir.mkdir(parents=True, exist_ok=True)
    (tmp / "sessions").mkdir(exist_ok=True)
    board = tmp / "board.sqlite"
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=f"{HOOKS}{os.pathsep}{checkout}", OMP_NUM_THREADS="2", PEFT_EXPLORER_DEBUG="1",
               PEFT_EXPLORER_EXECUTOR=executor, PEFT_EXPLORER_MAX_RUNS=str(max_runs),
               PEFT_EXPLORER_SESSIONS=str(tmp / "sessions"), PEFT_EXPLORER_BOARD=str(board),
               PEFT_EXPLORER_ORPHAN_S="3600",  # the benchmark closes tabs on purpose; runs go on
               PEFT_EXPLORER_GC_FREEZE="1",  # as a real server (the tests' conftest turns it off)
               PEFT_BENCH_GC_DIR=str(gc_dir))
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_server(Server(checkout, proc, url, tmp, gc_dir, board))
            raise SystemExit(f"the server of {checkout} did not become healthy within 90 s (log: {tmp}/server.log)")
        time.sleep(0.3)
    return Server(checkout, proc, url, tmp, gc_dir, board)


def stop_server(srv: Server) -> list[int]:
    """Terminate the server and its process group; returns the pids that had to be killed."""
    import psutil

    try:
        kids = psutil.Process(srv.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait(timeout=5)
    killed = []
    for c in kids:
        try:
            c.wait(timeout=5)
        except psutil.TimeoutExpired:
            c.kill()
            killed.append(c.pid)
        except psutil.Error:
            pass
    return killed


# ----------------------------------------------------------------------------- participants

def _client():
    sys.path.insert(0, str(ROOT))
    from tools.st_protocol import FINISHED, ForwardMsg, Session  # noqa: F401

    class Counted(Session):
        """A headless participant that also counts what reaches it: full and fragment runs, bytes."""

        def __post_init__(self):
            super().__post_init__()
            self.full_runs = 0
            self.fragment_runs = 0
            self.bytes_in = 0

        async def _read(self):
            import websockets

            try:
                async for raw in self._ws:
                    self.bytes_in += len(raw)
                    fm = ForwardMsg()
                    fm.ParseFromString(raw)
                    if fm.WhichOneof("type") == "script_finished":
                        if fm.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                            self.full_runs += 1
                        elif fm.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                            self.fragment_runs += 1
                    self._handle(fm)
                    self._changed.set()
            except websockets.ConnectionClosed:
                pass
            except Exception as e:  # noqa: BLE001 - reported with the results
                self.errors.append(f"client: {type(e).__name__}: {e}")
                self._changed.set()

    return Counted


def pg_query(i: int) -> tuple[str, int]:
    method = METHODS[i % len(METHODS)]
    rank = RANKS[(i // len(METHODS) + i) % (len(RANKS) - 3)]
    return f"model=tiny-bert&m1={method}&m2=none&a_rank={rank}&wt=v&layer=0", rank


async def open_tab(Session, url: str, page: str, query: str, timeout: float = 180.0):
    s = Session(url)
    await s.open(page, query)
    await s.wait_idle(timeout)
    return s


async def close_all(tabs) -> None:
    await asyncio.gather(*(t.close() for t in tabs), return_exceptions=True)


def errors_of(tabs) -> list[str]:
    out = []
    for t in tabs:
        out += list(t.errors)
        out += [e.text for e in t.all("alert") if e.proto.format == e.proto.ERROR]
    return out


# ----------------------------------------------------------------------------- one window

class Pyspy:
    def __init__(self, pid: int, seconds: float, rate: int, out: Path):
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(round(seconds))), "--rate", str(rate),
                    "--gil", "--threads", "--nonblocking", "--full-filenames", "--nolineno", "--format", "raw",
                    "-o", str(out)]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict:
        """Wait for py-spy; its own CPU seconds (from the kernel's rusage) and its samples."""
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        raw = self.out.read_text() if self.out.exists() else ""
        return dict(cpu_s=ru.ru_utime + ru.ru_stime, rc=self.proc.returncode, raw=raw,
                    error=None if self.proc.returncode == 0 else err.strip()[-400:])


async def measure(name: str, srv: Server, tabs: list, participants: int, seconds: float, profile: bool, rate: int,
                  activity=None) -> dict:
    """One window of ``seconds``: the server's counters before and after, py-spy in between."""
    await asyncio.sleep(3.0)  # what opening the tabs started has settled
    load0 = os.getloadavg()
    spy = Pyspy(srv.pid, seconds, rate, srv.tmp / f"{name}.raw") if profile else None
    gc0 = read_gc(srv.gc_dir, srv.pid)
    c0 = cpu_snapshot(srv.pid)
    r0 = [(t.full_runs, t.fragment_runs, t.bytes_in) for t in tabs]
    stats: dict = {}
    if activity is not None:
        task = asyncio.create_task(activity(time.perf_counter() + seconds, stats))
    await asyncio.sleep(seconds)
    c1 = cpu_snapshot(srv.pid)
    r1 = [(t.full_runs, t.fragment_runs, t.bytes_in) for t in tabs]
    if activity is not None:
        await task
    await asyncio.sleep(1.2)  # the hook writes its counters once a second
    gc1 = read_gc(srv.gc_dir, srv.pid)
    d = cpu_delta(c0, c1)
    minutes = d["wall_s"] / 60
    out = dict(state=name, participants=participants, wall_s=d["wall_s"], server_cpu_s=d["server_cpu_s"],
               children_cpu_s=d["children_cpu_s"], server_cpu_per_min=d["server_cpu_s"] / minutes,
               children_cpu_per_min=d["children_cpu_s"] / minutes,
               full_runs=sum(b[0] - a[0] for a, b in zip(r0, r1)),
               fragment_runs=sum(b[1] - a[1] for a, b in zip(r0, r1)),
               bytes_sent=sum(b[2] - a[2] for a, b in zip(r0, r1)),
               server_rss_bytes=c1["rss"], children_rss_bytes=c1["rss_children"], server_threads=c1["threads"],
               load_avg_start=load0[0], load_avg_end=os.getloadavg()[0], gc=gc_delta(gc0, gc1), **stats)
    if spy is not None:
        res = spy.finish()
        out["pyspy_cpu_s"] = res["cpu_s"]
        out["pyspy_error"] = res["error"]
        samples = parse_raw(res["raw"])
        out["profile"] = attribute(samples, srv.checkout)
        out["profile"]["rate_hz"] = rate
        out["profile"]["gil_held_share"] = out["profile"]["samples"] / max(1.0, rate * seconds)
    print(f"  {name:13s} {participants:3d} participants: server {out['server_cpu_per_min']:6.2f} CPU-s/min, "
          f"workers {out['children_cpu_per_min']:6.2f} CPU-s/min, runs {out['full_runs']} full + "
          f"{out['fragment_runs']} fragment, load {load0[0]:.1f}", flush=True)
    return out


# ----------------------------------------------------------------------------- the protocol

def board_fields(i: int) -> dict:
    m = METHODS[i % len(METHODS)]
    r = RANKS[i % 6]
    return dict(method=m, model="tiny-bert", task="colour-shape", knobs=f"rank={r}", trainable=1000 * r + 258,
                accuracy=0.5 + 0.4 * ((i * 37) % 100) / 100, peak_bytes=(20 + i % 7) * 2 ** 20, steps=40)


async def wait_text(tab, pattern: str, timeout: float) -> bool:
    return await tab.wait_for(lambda s: s.has_text(pattern), timeout)


async def protocol(srv: Server, a) -> dict:
    Session = _client()
    n, win = a.participants, a.window
    res: dict = dict(states={}, errors=[])
    want = [s for s in STATES if s in a.states]

    # warm-up: Home (the default model), the pages, two short runs at once (both worker processes start)
    home = await open_tab(Session, srv.url, "", "")
    warm = [await open_tab(Session, srv.url, "Fine_tune", f"model=tiny-bert&method=lora&steps=4&bs=8&seed={i}")
            for i in range(a.max_runs)]
    for t in warm:
        await t.click("ft_start")
    for t in warm:
        if not await wait_text(t, r"Finished \d+ steps", 240):
            res["errors"].append(f"warm-up run did not finish: {t.texts()[-5:]}")
    extra = [await open_tab(Session, srv.url, "Methods_playground", pg_query(0)[0]),
             await open_tab(Session, srv.url, "Class_board", ""),
             await open_tab(Session, srv.url, "Fine_tune", "model=minilm&method=lora&k_rank=8&steps=150")]
    res["errors"] += errors_of([home] + warm + extra)
    await close_all([home] + warm + extra)
    await asyncio.sleep(5.0)

    if "empty" in want:
        res["states"]["empty"] = await measure("empty", srv, [], 0, win, a.profile, a.rate)

    # arriving (the playground and Fine-tune opened in two tabs each), reading, moving the rank slider
    if {"arrive", "idle", "sliders"} & set(want):
        pgs, fts = [], []

        async def arrive_one(i):
            q, _ = pg_query(i)
            pgs.append(await open_tab(Session, srv.url, "Methods_playground", q))
            fts.append(await open_tab(Session, srv.url, "Fine_tune", f"model=tiny-bert&method=lora&seed={i}"))

        if "arrive" in want:
            async def arrivals(deadline, stats):
                t0 = time.perf_counter()
                span = max(1.0, deadline - t0 - 15.0)  # the last one arrives 15 s before the window ends

                async def one(i):
                    await asyncio.sleep(span * i / max(1, n))
                    t = time.perf_counter()
                    await arrive_one(i)
                    return time.perf_counter() - t

                waits = await asyncio.gather(*(one(i) for i in range(n)))
                stats["arrival_p50_s"] = pct(waits, 0.5)
                stats["arrival_max_s"] = max(waits) if waits else None

            res["states"]["arrive"] = await measure("arrive", srv, [], n, win, a.profile, a.rate, arrivals)
        else:
            for i in range(n):
                await arrive_one(i)
        if "idle" in want:
            res["states"]["idle"] = await measure("idle", srv, pgs + fts, n, win, a.profile, a.rate)
        if "sliders" in want:
            async def move(deadline, stats):
                redraws = []

                async def one(i, tab):
                    _, r0 = pg_query(i)
                    ladder = RANKS[RANKS.index(r0):RANKS.index(r0) + 4]
                    k, step = 0, 1
                    await asyncio.sleep(random.Random(i).uniform(0, a.move_every))
                    while time.perf_counter() + 0.5 < deadline:
                        if not 0 <= k + step < len(ladder):
                            step = -step
                        k += step
                        t0 = time.perf_counter()
                        await tab.set_slider("pg:a_rank", ladder[k])
                        try:
                            await tab.wait_idle(60)
                            redraws.append(time.perf_counter() - t0)
                        except AssertionError:
                            res["errors"].append(f"participant {i}: a slider redraw took over 60 s")
                        await asyncio.sleep(max(0.0, a.move_every - (time.perf_counter() - t0)))

                await asyncio.gather(*(one(i, t) for i, t in enumerate(pgs)))
                stats["moves"] = len(redraws)
                stats["redraw_p50_s"] = pct(redraws, 0.5)
                stats["redraw_p95_s"] = pct(redraws, 0.95)

            res["states"]["sliders"] = await measure("sliders", srv, pgs + fts, n, win, a.profile, a.rate, move)
        res["errors"] += errors_of(pgs + fts)
        await close_all(pgs + fts)

    # the class board, with --board-entries shared runs on it; then with shares arriving
    if "board" in want or "board_shares" in want:
        sys.path.insert(0, str(ROOT))
        from explorer.workshop.board import Board

        board = Board(srv.board_path, global_limit=(10_000, 60.0))
        for i in range(a.board_entries):
            board.share(board_fields(i), who=f"bench-{i}", name=f"P{i}")
        boards = [await open_tab(Session, srv.url, "Class_board", "") for _ in range(n)]
        if "board" in want:
            res["states"]["board"] = await measure("board", srv, boards, n, win, a.profile, a.rate)
        if "board_shares" in want:
            async def shares(deadline, stats):
                k = a.board_entries
                while time.perf_counter() + a.share_every < deadline:
                    await asyncio.sleep(a.share_every)
                    board.share(board_fields(k), who=f"bench-{k}", name=f"P{k}")
                    k += 1
                stats["shares"] = k - a.board_entries

            res["states"]["board_shares"] = await measure("board_shares", srv, boards, n, win, a.profile, a.rate,
                                                          shares)
        res["errors"] += errors_of(boards)
        await close_all(boards)

    # runs: max_runs participants watch their own long run train; then N more wait in the queue behind them
    if "train" in want or "hold" in want or any(w in want for w in WAITING):
        owners = []
        for i in range(a.max_runs):
            owners.append(await open_tab(Session, srv.url, "Fine_tune", f"model={a.model}&method=lora&k_rank=8"
                                         f"&steps={a.run_steps}&bs=16&seed={100 + i}"))
        await keep_training(owners, res["errors"])
        if "train" in want:
            res["states"]["train"] = await measure("train", srv, owners, a.max_runs, win, a.profile, a.rate)
        await take_out(owners, "ft_stop")  # slower runs from now on: they hold the slots through the waiting states
        for t in owners:
            await t.wait_for(lambda s: _has(s, "ft_start") and not s.widget("ft_start").proto.disabled, 60)
            await t.set_slider("ft:bs", a.run_batch)
            await t.wait_idle(60)
        await keep_training(owners, res["errors"])
        if "hold" in want:
            res["states"]["hold"] = await measure("hold", srv, owners, a.max_runs, win, a.profile, a.rate)
        for name in [w for w in WAITING if w in want]:  # each waits behind the watched runs, one kind at a time
            await keep_training(owners, res["errors"])
            waiting = await line_up(Session, srv.url, name, n, a.model, res["errors"])
            res["states"][name] = await measure(name, srv, owners + waiting, n, win, a.profile, a.rate)
            still = [t for t in owners if t.has_text(r"step \d+ of \d+")]
            if len(still) < len(owners):
                res["errors"].append(f"{len(owners) - len(still)} watched run(s) ended during the {name} window: "
                                     "use a larger --run-batch")
            await take_out(waiting, WAITING[name][4])
            res["errors"] += errors_of(waiting)
            await close_all(waiting)
        await take_out(owners, "ft_stop")  # running ones end within a step
        for t in owners:
            await t.wait_for(lambda s: not s.has_text(r"step \d+ of \d+|in line"), 60)
        res["errors"] += errors_of(owners)
        await close_all(owners)
    return res


async def keep_training(owners, errors: list) -> None:
    """Each watched run trains (one that has ended since, after the page's 500-step maximum, starts again)."""
    for t in owners:
        await t.rerun()  # the whole page afresh (R): nothing drawn by an earlier poll is left on it
        await t.wait_idle(60)
        if not t.widget("ft_start").proto.disabled:  # Start is disabled while this session's run goes
            await t.click("ft_start")
    for t in owners:
        if not await wait_text(t, r"step [1-9]\d* of \d+", 240):
            errors.append(f"a watched run did not start training: {t.texts()[-6:]}")


async def line_up(Session, url: str, name: str, n: int, model: str, errors: list) -> list:
    """N tabs of the waiting state ``name``, each with its work waiting in the server's line."""
    page, query, start, says, _ = WAITING[name]
    tabs = []
    for i in range(n):
        t = await open_tab(Session, url, page, query(i, model))
        if not t.has_text(says):  # the SMT inspector starts a tiny model's warm-up by itself
            await t.click(start)
        tabs.append(t)
    wait = 60.0
    for t in tabs:
        if not await wait_text(t, says, wait):
            errors.append(f"{name}: nothing waited in the queue: {t.texts()[-6:]}")
            wait = 5.0  # the others are no likelier to
    return tabs


async def take_out(tabs, stop: str) -> None:
    """Press each tab's Stop (queued work never starts; a running run ends within a step)."""
    for t in tabs:
        if await t.wait_for(lambda s: _has(s, stop) and not s.script_running, 15):
            await t.click(stop)
    for t in tabs:
        await t.wait_for(lambda s: not s.script_running, 30)


def _has(s, key: str) -> bool:
    try:
        s.widget(key)
        return True
    except KeyError:
        return False


def per_participant(states: dict) -> dict:
    """CPU-seconds per participant per minute of each state over the state it adds to."""
    out = {}
    for name, s in states.items():
        base = states.get(BASE_OF.get(name, ""), None)
        if name == "empty" or base is None or not s["participants"]:
            continue
        # a waiting participant joins the watchers (whose own cost is in the base); others add to a base of theirs
        n = s["participants"]
        if name == "arrive":  # a one-off: CPU-seconds per participant who arrived, not per minute
            out[name] = dict(server_cpu_s_per_arrival=(s["server_cpu_s"] - base["server_cpu_per_min"] * s["wall_s"] / 60) / n,
                             over="empty")
            continue
        out[name] = dict(
            server_cpu_s_per_participant_min=(s["server_cpu_per_min"] - base["server_cpu_per_min"]) / n,
            children_cpu_s_per_participant_min=(s["children_cpu_per_min"] - base["children_cpu_per_min"]) / n,
            over=BASE_OF[name],
            runs_per_participant_min=(s["full_runs"] + s["fragment_runs"]) / n / (s["wall_s"] / 60),
            full_runs_per_participant_min=s["full_runs"] / n / (s["wall_s"] / 60),
            kib_sent_per_participant_min=s["bytes_sent"] / 1024 / n / (s["wall_s"] / 60))
    return out


# ----------------------------------------------------------------------------- report

def shares_md(s: dict, top: int = 6) -> list[str]:
    p = s.get("profile")
    if not p or not p["samples"]:
        return []
    tot = p["samples"]
    cpu = s["server_cpu_s"]
    lines = [f"  - py-spy: {tot} samples holding the interpreter lock at {p['rate_hz']} Hz "
             f"({p['gil_held_share']:.0%} of the window)"]
    for who, k in list(p["owner"].items())[:top]:
        extra = ""
        if who in p["called"]:
            parts = sorted(p["called"][who].items(), key=lambda kv: -kv[1])[:5]
            extra = " — of which " + ", ".join(f"{lib} {c / k:.0%}" for lib, c in parts)
        lines.append(f"  - {who}: {k / tot:.0%} (~{cpu * k / tot:.1f} CPU-s){extra}")
    if p.get("functions"):
        top_f = list(p["functions"].items())[:5]
        lines.append("  - the project's functions with the most samples (inclusive): "
                     + ", ".join(f"`{f}` {k / tot:.0%}" for f, k in top_f))
    g = s.get("gc")
    if g:
        lines.append(f"  - garbage collection in the server: {g['cpu_seconds']:.2f} CPU-s "
                     f"({g['cpu_seconds'] / cpu:.0%} of the server's CPU; collections by generation "
                     f"{g['collections']})" if cpu > 0 else "  - garbage collection: no CPU in the window")
    return lines


def write_report(result: dict, out: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{out}.json").write_text(json.dumps(result, indent=1, default=str))
    labels = list(result["checkouts"])
    md = [f"# Participant cost: `{result['command']}`", "",
          f"{result['date']} · {result['cpu_count']} cores · {result['participants']} participants per state · "
          f"windows of {result['window_s']:g} s · runs in {result['executor']} workers · "
          f"1-minute load average {result['load_avg_start']:.1f} at the start, {result['load_avg_end']:.1f} at the end",
          "", "Server CPU-seconds per participant per minute (the state minus the state it adds to, divided by its "
          "participants; workers = the worker processes' CPU, separately):", ""]
    head = "| state | adds to | " + " | ".join(f"{lab}: server | {lab}: workers" for lab in labels)
    if len(labels) == 2:
        head += f" | server {labels[1]} / {labels[0]}"
    md += [head + " |", "|" + "---|" * (2 + 2 * len(labels) + (1 if len(labels) == 2 else 0))]
    for st_name in STATES:
        if st_name == "empty":
            continue
        row = [st_name, BASE_OF[st_name]]
        vals = []
        for lab in labels:
            pp = result["checkouts"][lab]["per_participant"].get(st_name)
            if pp is None:
                row += ["—", "—"]
                vals.append(None)
            elif st_name == "arrive":
                row += [f"{pp['server_cpu_s_per_arrival']:.3f} CPU-s per arrival", "—"]
                vals.append(pp["server_cpu_s_per_arrival"])
            else:
                row += [f"{pp['server_cpu_s_per_participant_min']:.3f}", f"{pp['children_cpu_s_per_participant_min']:.3f}"]
                vals.append(pp["server_cpu_s_per_participant_min"])
        if len(labels) == 2:
            row.append(f"{vals[1] / vals[0]:.2f}" if vals[0] and vals[1] is not None and vals[0] > 0 else "—")
        md.append("| " + " | ".join(row) + " |")
    for lab in labels:
        c = result["checkouts"][lab]
        md += ["", f"## {lab}: `{c['path']}` ({c.get('commit') or 'working tree'})", "",
               "| state | participants | server CPU-s/min | workers CPU-s/min | script runs/min (full + fragment) | "
               "KiB sent/min | server RSS MiB | load avg | notes |", "|---|---|---|---|---|---|---|---|---|"]
        for name, s in c["states"].items():
            m = s["wall_s"] / 60
            notes = []
            if s.get("moves"):
                notes.append(f"{s['moves']} moves, redraw p50 {s['redraw_p50_s']:.2f} s, p95 {s['redraw_p95_s']:.2f} s")
            if s.get("arrival_p50_s") is not None:
                notes.append(f"two tabs opened in {s['arrival_p50_s']:.1f} s (p50), {s['arrival_max_s']:.1f} s (max)")
            if s.get("shares") is not None:
                notes.append(f"{s['shares']} shares")
            if s.get("pyspy_cpu_s") is not None:
                notes.append(f"py-spy {s['pyspy_cpu_s']:.1f} CPU-s")
            md.append(f"| {name} | {s['participants']} | {s['server_cpu_per_min']:.2f} | "
                      f"{s['children_cpu_per_min']:.2f} | {s['full_runs'] / m:.1f} + {s['fragment_runs'] / m:.1f} | "
                      f"{s['bytes_sent'] / 1024 / m:,.0f} | {s['server_rss_bytes'] / 2**20:,.0f} | "
                      f"{s['load_avg_start']:.1f} | {'; '.join(notes)} |")
        md += ["", "Where the server's time went (py-spy, samples holding the interpreter lock; CPU-s = share × "
               "the server's CPU in the window):", ""]
        for name, s in c["states"].items():
            lines = shares_md(s)
            if lines:
                md += [f"- **{name}**"] + lines
        if c["errors"]:
            md += ["", "Problems seen: " + "; ".join(c["errors"][:10])]
    (OUT / f"{out}.md").write_text("\n".join(md) + "\n")


# ----------------------------------------------------------------------------- main

def _git(path: Path, *args) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=10)
    ap.add_argument("--window", type=float, default=45.0, help="seconds measured per state")
    ap.add_argument("--executor", default="process", choices=("process", "thread"))
    ap.add_argument("--max-runs", type=int, default=2)
    ap.add_argument("--model", default="minilm", help="model of the watched and queued runs")
    ap.add_argument("--run-steps", type=int, default=500, help="steps of the watched runs (the page's maximum; a run "
                                                                 "that ends before the waiting states is started again)")
    ap.add_argument("--run-batch", type=int, default=64, help="batch size of the watched runs (slow steps: they "
                                                              "outlast the windows)")
    ap.add_argument("--move-every", type=float, default=4.0, help="seconds between a participant's slider moves")
    ap.add_argument("--share-every", type=float, default=10.0)
    ap.add_argument("--board-entries", type=int, default=20)
    ap.add_argument("--states", default=",".join(STATES))
    ap.add_argument("--checkout", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--baseline-commit", default=None, metavar="REV",
                    help="a temporary git worktree of REV, measured first under the label 'before'")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    ap.add_argument("--out", default="participant_cost")
    a = ap.parse_args(argv)
    a.states = [s.strip() for s in a.states.split(",") if s.strip()]
    if a.profile and not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
        ap.error("py-spy is not installed: pip install -r requirements-dev.txt, or run with --no-profile")
    bad = [s for s in a.states if s not in STATES]
    if bad:
        ap.error(f"unknown states {bad}; known: {', '.join(STATES)}")

    checkouts: list[tuple[str, Path]] = []
    made = None
    if a.baseline_commit:
        made = Path(tempfile.mkdtemp(prefix="participant-cost-base-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(made), a.baseline_commit],
                       check=True, capture_output=True)
        checkouts.append(("before", made))
    for c in a.checkout:
        lab, _, p = c.rpartition("=")
        checkouts.append((lab or Path(p).name, Path(p).resolve()))
    if not a.checkout:
        checkouts.append(("after" if made else "this", ROOT))

    result = dict(command="python -m benchmarks.participant_cost " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu_count=os.cpu_count(),
                  participants=a.participants, window_s=a.window, executor=a.executor, max_runs=a.max_runs,
                  model=a.model, run_steps=a.run_steps, run_batch=a.run_batch, move_every_s=a.move_every, share_every_s=a.share_every,
                  board_entries=a.board_entries, load_avg_start=os.getloadavg()[0], checkouts={},
                  notes=["server CPU = psutil cpu_times (user + system) of the streamlit process; workers = its child "
                         "processes' (the worker processes that train), measured apart",
                         "per participant = (state - the state it adds to) / participants of the state / minutes",
                         "profile = py-spy record --gil --threads --nonblocking: samples of the thread holding the "
                         "interpreter lock; shares of those samples; GC from gc.callbacks in the server"])
    try:
        for label, path in checkouts:
            print(f"{label}: {path}", flush=True)
            with tempfile.TemporaryDirectory(prefix="participant-cost-") as tmp:
                srv = start_server(path, a.executor, a.max_runs, Path(tmp))
                try:
                    res = asyncio.run(protocol(srv, a))
                finally:
                    killed = stop_server(srv)
                for s in res["states"].values():
                    s.pop("raw", None)
                result["checkouts"][label] = dict(
                    path=str(path), commit=_git(path, "rev-parse", "--short", "HEAD"),
                    dirty=bool(_git(path, "status", "--porcelain")), states=res["states"],
                    per_participant=per_participant(res["states"]), errors=res["errors"],
                    children_killed_at_stop=killed)
    finally:
        if made is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(made)], capture_output=True)
    result["load_avg_end"] = os.getloadavg()[0]
    write_report(result, a.out)
    print((OUT / f"{a.out}.md").read_text())
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally blocks stop the server
    raise SystemExit(main())
