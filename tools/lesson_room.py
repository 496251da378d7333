"""A room of headless participants following a lesson on the real server (``tools/st_protocol.py`` clients).

Used by the load test (``tests/load/test_load_lesson.py``) and the benchmark (``benchmarks/lesson_follow.py``)::

    out = asyncio.run(follow_room(url, room_file, participants=30, steps=5, runs=2))

The room: ``participants`` sessions open the join address (Home); ``runs`` more sessions start a long fine-tune
each on Fine-tune first (``RUN_QUERY``: LoRA on minilm, 500 steps of 32 examples; the runs keep training while
the room moves; these sessions switch following off and go back to their Fine-tune tab, whose line says how far
the run is at each move); one probe session switches following off, opens the Methods playground on tiny-bert
and moves its rank slider again and again (the slider redraw, timed side by side with the follows).
Then the teacher starts the lesson and moves step by step: the move is written to the room's file from this
process, exactly as the teacher's click writes it (``Room.start`` / ``Room.move`` with the instructor token).

For every participant and step: ``banner_s`` (the move's commit until the page's banner says "Step k of n" and
its address is the step's view: what the participant sees first) and ``shown_s`` (until that page's run has
finished: the step's page fully drawn).  A participant that does not show a step within ``timeout`` seconds is
recorded as missing it.  Timings are ``time.perf_counter`` seconds on this machine, client and server together.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qsl

from tools.st_protocol import Session

from explorer.views.pages import page_for_path
from explorer.workshop.follow import back_to_lesson, shows_step

PROBE_QUERY = "model=tiny-bert&m1=lora&m2=none&wt=v&layer=0&a_rank=1"
RUN_QUERY = "model=minilm&method=lora&steps=500&bs=32"  # a run that trains for minutes on this machine
RANKS = ["1", "2", "4", "8", "16", "32", "64", "128", "256"]


def banner_step(s: Session) -> str:
    return next((e.text for e in s.all("markdown") if "**Step " in e.text and " of " in e.text), "")


def showing(s: Session, go, k: int, n: int) -> bool:
    """The page's banner says step k + 1 of n and its address is the step's view."""
    if f"Step {k + 1} of {n} ·" not in banner_step(s):
        return False
    return shows_step(go, page_for_path(s.page_path) or "", dict(parse_qsl(s.query)))


async def set_toggle(s: Session, key: str, value: bool) -> None:
    el = s.widget(key)
    await s._rerun(lambda ws: setattr(ws, "bool_value", value), el.widget_id)


async def settle(s: Session, timeout: float = 180.0) -> None:
    if not await s.wait_for(lambda x: x.runs_finished >= 1 and not x.script_running, timeout):
        raise AssertionError(f"{s.page_name or 'Home'}: the page kept running for more than {timeout:.0f} s")


async def stop_following(s: Session, timeout: float = 180.0) -> None:
    await s.wait_for(lambda x: any(e.widget_id.endswith("-lesson_follow") for e in x.all()), timeout)
    await set_toggle(s, "lesson_follow", False)
    await s.wait_idle(timeout)


async def start_run(url: str, query: str = RUN_QUERY) -> Session:
    s = Session(url)
    await s.open("Fine_tune", query)
    await settle(s)
    await s.click("ft_start")
    await s.wait_for(lambda x: x.has_text(r"step \d+ of \d+"), 180)
    return s


async def probe_loop(s: Session, out: list, stop: asyncio.Event) -> None:
    """Move the probe's rank slider up and down until ``stop``; each redraw: slider sent until the page's run ends."""
    i = 0
    while not stop.is_set():
        i += 1
        rank = RANKS[i % len(RANKS)]
        t = time.perf_counter()
        await s.set_slider("pg:a_rank", rank)
        ok = await s.wait_for(lambda x: not x.script_running, 120)
        out.append(dict(t_sent=t, seconds=time.perf_counter() - t, ok=ok, rank=rank))
        await asyncio.sleep(0.5)


async def follow_room(url: str, room, lesson, token: str, participants: int = 10, steps: int = 5, runs: int = 2,
                      run_query: str = RUN_QUERY, timeout: float = 120.0, pause: float = 3.0,
                      server_cpu=None, idle_s: float = 0.0) -> dict:
    """Drive the room (see the module's docstring); returns the timings and what every page showed.

    ``server_cpu`` (a function giving the server process's CPU seconds) and ``idle_s``: after the last step the
    runners and the probe leave, and for ``idle_s`` seconds the participants only poll (their follow fragment,
    every second): the server's CPU seconds in that window and the fragment runs the participants saw."""
    n = len(lesson.steps)
    steps = min(steps, n)
    out = dict(participants=participants, steps=steps, runs=runs, follows=[], missed=[], probe=[], errors=[],
               runs_training=[], loadavg=[])
    runners = [await start_run(url, run_query) for _ in range(runs)]
    people = [Session(url) for _ in range(participants)]
    await asyncio.gather(*(p.open("", "") for p in people))  # the join address
    await asyncio.gather(*(settle(p) for p in people))
    probe = Session(url)
    await probe.open("", "")
    await settle(probe)
    stop = asyncio.Event()
    probe_task = None
    try:
        for k in range(steps):
            if k == 1:  # the room is in the lesson: the runners and the probe leave it (following off)
                for r in runners:
                    await stop_following(r)
                    await r.goto("Fine_tune", run_query)
                await stop_following(probe)
                await probe.goto("Methods_playground", PROBE_QUERY)
                await settle(probe)
                probe_task = asyncio.create_task(probe_loop(probe, out["probe"], stop))
                await asyncio.sleep(pause)
            out["loadavg"].append(os.getloadavg()[0])
            t0 = time.perf_counter()
            s = room.start(lesson, token, "teacher") if k == 0 else room.move("next", token, "teacher")
            t_commit = time.perf_counter()
            go = back_to_lesson(s, lesson)
            await asyncio.gather(*(_watch(p, i, go, k, n, t_commit, timeout, out) for i, p in enumerate(people)))
            out.setdefault("moves", []).append(dict(step=k + 1, t_move=t0, t_commit=t_commit,
                                                    page=go.page, end=time.perf_counter()))
            out["runs_training"].append([_run_line(r) for r in runners] if k >= 1 else None)
            await asyncio.sleep(pause)  # the room looks at the step before the teacher moves on
        stop.set()
        if probe_task is not None:
            await probe_task
            probe_task = None
        if server_cpu is not None and idle_s > 0:
            out["idle"] = await _idle(people, runners + [probe], server_cpu, idle_s)
    finally:
        stop.set()
        if probe_task is not None:
            await probe_task
        for p in people:
            out["errors"] += [f"participant: {e}" for e in p.errors]
        out["errors"] += [f"probe: {e}" for e in probe.errors] + [f"runner: {e}" for r in runners for e in r.errors]
        for p in people + runners + [probe]:
            await p.close()
    return out


async def _idle(people, others, server_cpu, idle_s: float) -> dict:
    for s in others:  # their pages (a run's live panel, the probe) would cost the server too
        await s.close()
    await asyncio.sleep(3.0)
    ticks0, cpu0, t0 = sum(p.runs_finished for p in people), server_cpu(), time.perf_counter()
    await asyncio.sleep(idle_s)
    ticks, cpu, wall = sum(p.runs_finished for p in people) - ticks0, server_cpu() - cpu0, time.perf_counter() - t0
    return dict(seconds=wall, server_cpu_s=cpu, fragment_runs=ticks, participants=len(people),
                cpu_ms_per_fragment_run=1000 * cpu / ticks if ticks else None,
                server_cpu_share=cpu / wall, loadavg=os.getloadavg()[0])


def _run_line(s: Session) -> str:
    """What a runner's Fine-tune tab says of its run now ("step 812 of 4000 ...", "Finished ...")."""
    import re

    return next((t[:80] for t in s.texts() if re.search(r"step \d+ of \d+|Finished \d+ steps", t)), "")


async def _watch(p: Session, i: int, go, k: int, n: int, t_commit: float, timeout: float, out: dict) -> None:
    seen = {}

    def pred(s: Session) -> bool:
        if showing(s, go, k, n):
            seen.setdefault("banner", time.perf_counter())
            return not s.script_running
        return False

    ok = await p.wait_for(pred, timeout)
    if not ok:
        out["missed"].append(dict(participant=i, step=k + 1, banner=banner_step(p)[:80], path=p.page_path,
                                  query=p.query[:200]))
        return
    out["follows"].append(dict(participant=i, step=k + 1, page=go.page, banner_s=seen["banner"] - t_commit,
                               shown_s=time.perf_counter() - t_commit))
