"""A bigger room on one machine: the load test's participants through nginx to one server, then to several.

    python -m benchmarks.room_servers [--participants 30] [--servers 1,2] [--executor process] [--runs 2]

For each entry of ``--servers`` (one pass each, in that order, in one run; ``1,2,1`` measures one server again
after two, to see how much the shared machine drifted) the benchmark starts that many dashboard servers behind
nginx (``tools.serve_room.room``: the servers share one class board, each has its own session folder, and the
room trains at most ``--runs`` fine-tunes at once in all: ``runs // servers`` per server) and sends the load
test's participants through the proxy (``tools/load_participant.py``'s ``p_one_session``: the playground on tiny-bert
with their own method and rank, Fine-tune in a second tab, Start a 40-step run, then three moves of the rank
slider while the room's runs queue and train).  Each participant first asks the proxy for the page, as a browser
does, and both tabs carry the cookie it set (so the room spreads over the servers as it arrives: the proxy sends a
newcomer to the server with the fewest open connections).  Before the participants, each server is warmed up as
in the load test (Home, then one participant).

Per pass: slider redraw p50 / p95 / max (the slider's new value sent until the count for the new rank came back),
runs finished, run wall time p50 (queue wait included), the servers' CPU seconds (psutil, user + system, all
server processes together) and their worker processes', per participant, how many participants each server got,
every count checked against the core (no cross-talk), and the 1-minute load average at the start and the end
(the machine may be shared: read the times with it).  Results: ``benchmarks/results/room_servers.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def _load_test(participants: int):
    """The load test's participants (``tools/load_participant.py``: the participant, expectations and percentiles),
    sized for this room."""
    os.environ["PEFT_LOAD_SESSIONS"] = str(participants)  # the module reads it for its waits
    from tools import load_participant

    load_participant.SESSIONS = participants
    return load_participant


def cookie_for(url: str) -> str:
    """What a browser's first request gets from the proxy: its cookie (``peftx_server=s<i>``)."""
    from tools.serve_room import COOKIE

    with urllib.request.urlopen(url + "/", timeout=60) as r:
        r.read()
        for h in r.headers.get_all("Set-Cookie") or []:
            if h.startswith(COOKIE + "="):
                return h.split(";", 1)[0]
    raise RuntimeError("the proxy set no cookie")


def cpu(servers) -> dict:
    """CPU seconds of all server processes together, and of their children (worker processes)."""
    import psutil

    out = dict(server=0.0, workers=0.0)
    for s in servers:
        p = psutil.Process(s.proc.pid)
        t = p.cpu_times()
        out["server"] += t.user + t.system
        out["workers"] += t.children_user + t.children_system
        for c in p.children(recursive=True):
            try:
                ct = c.cpu_times()
                out["workers"] += ct.user + ct.system
            except psutil.Error:
                pass
    return out


async def warm_up(tl, url: str, names: list[str], exp_pg, exp_run) -> list[str]:
    """Each server: Home (its default model loads), then one participant (tiny-bert, one run: workers start)."""
    from tools.st_protocol import Session
    from tools.serve_room import COOKIE

    problems = []
    for n in names:
        print(f"  warming up {n} ...", flush=True)
        h = {"Cookie": f"{COOKIE}={n}", "Origin": url}
        home = Session(url, headers=dict(h))
        await home.open("", "")
        await home.wait_idle(180)
        await home.close()
        out: dict = {}
        await tl.p_one_session(url, 0, exp_pg, exp_run, out, headers=h)
        if out[0]["errors"] or not out[0].get("finished"):
            problems.append(f"warm-up on {n}: {out[0]['errors'][:3]} finished={out[0].get('finished')}")
    return problems


async def one_pass(tl, r, n_servers: int, participants: int, exp_pg, exp_run) -> dict:
    names = [f"s{i}" for i in range(1, n_servers + 1)]
    problems = await warm_up(tl, r.url, names, exp_pg, exp_run)
    await asyncio.sleep(2.0)
    cookies = [cookie_for(r.url) for _ in range(participants)]  # the room arrives
    print(f"  {participants} participants ...", flush=True)
    load0 = os.getloadavg()[0]
    c0, t0 = cpu(r.servers), time.perf_counter()
    out: dict = {}
    await asyncio.gather(*(tl.p_one_session(r.url, i, exp_pg, exp_run, out, headers={"Cookie": cookies[i],
                                                                                        "Origin": r.url})
                           for i in range(participants)))
    wall = time.perf_counter() - t0
    c1 = cpu(r.servers)
    sessions = [out[i] for i in sorted(out)]
    redraws = [d["seconds"] for s in sessions for d in s["redraws"] if d["shown"] == d["expected"]]
    for s in sessions:
        problems += [f"participant {s['session']}: {e}" for e in s["errors"]]
        if s.get("playground_count") != s.get("playground_expected") or s.get("run_count") != s.get("run_expected") \
                or any(d["shown"] != d["expected"] for d in s["redraws"]):
            problems.append(f"participant {s['session']}: a count that is not theirs ({s.get('playground_count')} / "
                            f"{s.get('playground_expected')}, run {s.get('run_count')} / {s.get('run_expected')})")
    spread = {n: sum(1 for c in cookies if c.endswith("=" + n)) for n in names}
    return dict(servers=n_servers, participants=participants, spread=spread,
                runs_completed=sum(1 for s in sessions if s.get("finished")),
                rerun_key_sessions=sum(1 for s in sessions if s.get("rerun_key_needed")),
                redraw_samples=len(redraws), redraw_p50_s=tl.pct(redraws, 0.5), redraw_p95_s=tl.pct(redraws, 0.95),
                redraw_max_s=max(redraws) if redraws else None,
                run_wall_p50_s=tl.pct([s["run_seconds"] for s in sessions if s.get("finished")], 0.5),
                sessions_wall_s=wall, server_cpu_s=c1["server"] - c0["server"],
                workers_cpu_s=c1["workers"] - c0["workers"],
                server_cpu_s_per_participant=(c1["server"] - c0["server"]) / participants,
                load_avg_start=load0, load_avg_end=os.getloadavg()[0], problems=problems[:20],
                per_session=sessions)


def fmt(v, spec="{:.2f}"):
    return "—" if v is None else spec.format(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=30)
    ap.add_argument("--servers", default="1,2", help="server counts, one pass each, in this order")
    ap.add_argument("--executor", default="process", choices=("process", "thread"))
    ap.add_argument("--runs", type=int, default=2, help="fine-tunes training at once in the whole room")
    ap.add_argument("--out", default="room_servers")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.servers.split(",") if x.strip()]
    tl = _load_test(a.participants)
    from tools.serve_room import nginx_binary, room

    if nginx_binary() is None:
        ap.error("nginx is not installed: make nginx")
    exp_pg, exp_run = tl.expectations()
    result = dict(command="python -m benchmarks.room_servers " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu_count=os.cpu_count(),
                  participants=a.participants, executor=a.executor, runs=a.runs, steps_per_run=tl.P_STEPS,
                  load_avg_start=os.getloadavg()[0], passes=[])
    for n in counts:
        print(f"{n} server(s), {a.participants} participants ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="room-servers-") as tmp:
            env = {"PEFT_EXPLORER_BOARD": Path(tmp) / "board.sqlite", "PEFT_EXPLORER_EXECUTOR": a.executor,
                   "PEFT_EXPLORER_GC_FREEZE": "1", "PEFT_EXPLORER_DEBUG": "1", "OMP_NUM_THREADS": "2"}
            with room(n, env=env, sessions=Path(tmp) / "sessions", runs=a.runs, log_dir=tmp) as r:
                p = asyncio.run(one_pass(tl, r, n, a.participants, exp_pg, exp_run))
        result["passes"].append(p)
        print(f"  redraw p50 {fmt(p['redraw_p50_s'])} s, p95 {fmt(p['redraw_p95_s'])} s, runs "
              f"{p['runs_completed']}/{a.participants}, spread {p['spread']}, server CPU "
              f"{p['server_cpu_s']:.0f} s, load {p['load_avg_start']:.1f} -> {p['load_avg_end']:.1f}"
              + (f", problems: {p['problems'][:3]}" if p["problems"] else ""), flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{a.out}.json").write_text(json.dumps(result, indent=1, default=str))
    md = [f"# A bigger room: `{result['command']}`", "",
          f"{result['date']} · {result['cpu_count']} cores · {a.participants} participants (the load test's, "
          f"tiny-bert, {tl.P_STEPS}-step runs) · runs in {a.executor} workers, {a.runs} at once in the whole room · "
          f"1-minute load average {result['load_avg_start']:.1f} at the start, {result['load_avg_end']:.1f} at the end",
          "", "| servers | participants per server | redraw p50 / p95 / max (s) | runs finished | rerun key | "
          "run wall p50 (s) | servers' CPU-s per participant | workers' CPU-s | load avg start / end | problems |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for p in result["passes"]:
        md.append(f"| {p['servers']} | {' / '.join(str(v) for v in p['spread'].values())} | "
                  f"{fmt(p['redraw_p50_s'])} / {fmt(p['redraw_p95_s'])} / {fmt(p['redraw_max_s'])} | "
                  f"{p['runs_completed']} | {p['rerun_key_sessions']} | {fmt(p['run_wall_p50_s'], '{:.1f}')} | "
                  f"{fmt(p['server_cpu_s_per_participant'])} | {fmt(p['workers_cpu_s'], '{:.0f}')} | "
                  f"{p['load_avg_start']:.1f} / {p['load_avg_end']:.1f} | {len(p['problems'])} |")
    (OUT / f"{a.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the context managers stop the servers and nginx
    raise SystemExit(main())
