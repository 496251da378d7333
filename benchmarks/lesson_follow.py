"""Following the teacher under load: the time from the teacher's move to each participant's page showing the step,
side by side with a slider redraw, for rooms of 10 and 30 headless participants while two runs train.

For each room size a fresh server (``tools.streamlit_server.serve``, the instructor token set, the room's and the
board's files in a temporary folder) and the room of ``tools/lesson_room.py``: the participants open the join
address, two more sessions start a long minilm fine-tune each, a probe session moves the playground's rank
slider on tiny-bert over and over; the teacher starts "What LoRA trains" and moves through its five steps (Home,
three playground views on minilm, the Memory calculator).  Per room: p50/p95 of ``banner_s`` (the move's commit
until the banner and the address show the step), ``shown_s`` (until the step's page has finished drawing) and the
probe's slider redraws during the same minutes; the 1-minute load average before each move (the machine is shared:
other work runs on it too); every participant must reach every step.

Run: ``python -m benchmarks.lesson_follow [--rooms 10 30] [--steps 5]`` (writes
``benchmarks/results/lesson_follow.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
OUT = ROOT / "benchmarks" / "results" / "lesson_follow"
TOKEN = "benchmark-instructor-token"
LESSON = "What LoRA trains"


IDLE_S = 20.0  # after the last step: participants only polling, the server's CPU measured


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def summary(xs) -> dict:
    return dict(n=len(xs), p50=pct(xs, 0.5), p95=pct(xs, 0.95), max=max(xs) if xs else None)


def one_room(n: int, steps: int, runs: int) -> dict:
    from tools.lesson_room import follow_room

    from explorer.workshop.lessons import bundled_lessons
    from explorer.workshop.room import Room
    from tools.streamlit_server import serve

    d = Path(tempfile.mkdtemp(prefix="lesson-follow-"))
    env = {"PEFT_EXPLORER_INSTRUCTOR_TOKEN": TOKEN, "PEFT_EXPLORER_ROOM": d / "room.sqlite",
           "PEFT_EXPLORER_BOARD": d / "board.sqlite", "PEFT_EXPLORER_SESSIONS": d / "sessions",
           "PEFT_EXPLORER_MAX_RUNS": str(max(2, runs))}
    os.environ["PEFT_EXPLORER_INSTRUCTOR_TOKEN"] = TOKEN  # this process writes the teacher's moves
    with serve(env=env, log=d / "server.log") as srv:
        room = Room(d / "room.sqlite")
        t0 = time.perf_counter()
        out = asyncio.run(follow_room(srv.url, room, bundled_lessons()[LESSON], TOKEN, participants=n,
                                      steps=steps, runs=runs, server_cpu=lambda: cpu_seconds(srv.proc.pid),
                                      idle_s=IDLE_S))
        out["seconds"] = time.perf_counter() - t0
    moves = out["moves"]
    during = [p["seconds"] for p in out["probe"] if p["ok"] and any(
        m["t_commit"] <= p["t_sent"] <= m["end"] for m in moves)]
    between = [p["seconds"] for p in out["probe"] if p["ok"] and not any(
        m["t_commit"] <= p["t_sent"] <= m["end"] for m in moves)]
    out["summary"] = dict(banner_s=summary([f["banner_s"] for f in out["follows"]]),
                          shown_s=summary([f["shown_s"] for f in out["follows"]]),
                          slider_during_follows_s=summary(during), slider_between_moves_s=summary(between),
                          reached=len(out["follows"]), expected=n * steps, missed=len(out["missed"]),
                          loadavg_before_moves=out["loadavg"])
    out["per_step"] = {str(k): dict(page=next(m["page"] for m in moves if m["step"] == k),
                                    banner_s=summary([f["banner_s"] for f in out["follows"] if f["step"] == k]),
                                    shown_s=summary([f["shown_s"] for f in out["follows"] if f["step"] == k]))
                       for k in range(1, steps + 1)}
    return out


EMPTY_APP = """import streamlit as st
st.title("An empty fragment")
st.fragment(run_every=1.0)(lambda: None)()
"""


def empty_fragment(n: int) -> dict:
    """The floor: the same number of sessions on a one-page app whose only work is an empty 1-second fragment."""
    from tools.st_protocol import Session

    from tools.streamlit_server import serve

    d = Path(tempfile.mkdtemp(prefix="empty-fragment-"))
    (d / "app.py").write_text(EMPTY_APP)
    (d / ".streamlit").mkdir()  # the project's server settings (no file watcher, no gc after each run)
    (d / ".streamlit" / "config.toml").write_text((ROOT / ".streamlit" / "config.toml").read_text())

    async def drive(url, pid):
        people = [Session(url) for _ in range(n)]
        await asyncio.gather(*(p.open("", "") for p in people))
        await asyncio.sleep(5.0)
        ticks0, cpu0, t0 = sum(p.runs_finished for p in people), cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        out = dict(seconds=time.perf_counter() - t0, server_cpu_s=cpu_seconds(pid) - cpu0,
                   fragment_runs=sum(p.runs_finished for p in people) - ticks0, participants=n,
                   loadavg=os.getloadavg()[0])
        for p in people:
            await p.close()
        return out

    with serve(root=d, env={"PYTHONPATH": str(ROOT)}) as srv:
        out = asyncio.run(drive(srv.url, srv.proc.pid))
    out["cpu_ms_per_fragment_run"] = 1000 * out["server_cpu_s"] / out["fragment_runs"] if out["fragment_runs"] else None
    out["server_cpu_share"] = out["server_cpu_s"] / out["seconds"]
    return out


def fmt(s: dict) -> str:
    return "—" if not s or s["p50"] is None else f"{s['p50']:.2f} / {s['p95']:.2f} (n={s['n']})"


def report(rooms: dict) -> str:
    lines = ["# Following the teacher under load", "",
             f"`python -m benchmarks.lesson_follow` ({time.strftime('%Y-%m-%d %H:%M')}), lesson \"{LESSON}\", "
             "headless participants (`tools/st_protocol.py`), two minilm fine-tunes training (their progress at each "
             "move is in the JSON), a probe "
             "moving the playground's rank slider. Seconds, p50 / p95. The machine is shared: the 1-minute load "
             "average before each move is listed; compare rows of one run, not runs of different days.", "",
             "| participants | reached | banner shows the step | step's page drawn | slider redraw during follows "
             "| slider redraw between moves | load average before the moves |", "|---|---|---|---|---|---|---|"]
    for n, r in rooms.items():
        s = r["summary"]
        lines.append(f"| {n} | {s['reached']} of {s['expected']} | {fmt(s['banner_s'])} | {fmt(s['shown_s'])} | "
                     f"{fmt(s['slider_during_follows_s'])} | {fmt(s['slider_between_moves_s'])} | "
                     f"{', '.join(f'{x:.1f}' for x in s['loadavg_before_moves'])} |")
    lines += ["", f"Polling while nothing moves ({IDLE_S:.0f} s after the last step, runs still training in their "
              "worker processes, no page open but the participants'): the server process's CPU.", "",
              "| participants | fragment runs | server CPU | CPU per fragment run | server CPU share | load average |",
              "|---|---|---|---|---|---|"]
    for n, r in rooms.items():
        for what, i in (("the lesson's follow fragment", r.get("idle")),
                        ("an empty 1 s fragment (a one-line app, the project's server settings: Streamlit's own "
                         "cost)", r.get("empty_fragment"))):
            if i:
                per = i["cpu_ms_per_fragment_run"]
                per = "—" if per is None else f"{per:.1f} ms"
                lines.append(f"| {n}: {what} | {i['fragment_runs']} in {i['seconds']:.1f} s | "
                             f"{i['server_cpu_s']:.2f} s | {per} | {100 * i['server_cpu_share']:.1f} % of a core | "
                             f"{i['loadavg']:.1f} |")
    lines += ["", "Per step (step's page drawn, p50 / p95):", "", "| participants | " +
              " | ".join(f"step {k}" for k in next(iter(rooms.values()))["per_step"]) + " |",
              "|---|" + "---|" * len(next(iter(rooms.values()))["per_step"])]
    for n, r in rooms.items():
        lines.append(f"| {n} | " + " | ".join(f"{v['page']}: {fmt(v['shown_s'])}" for v in r["per_step"].values())
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    rooms = {}
    for n in a.rooms:
        rooms[n] = one_room(n, a.steps, a.runs)
        rooms[n]["empty_fragment"] = empty_fragment(n)
        print(f"{n} participants: {rooms[n]['summary']}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({str(k): v for k, v in rooms.items()}, indent=1, default=str))
    Path(a.out + ".md").write_text(report(rooms))
    print(report(rooms))
    return 0 if all(not r["missed"] and not r["errors"] for r in rooms.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
