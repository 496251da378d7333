"""How one server scales with the room: the load test at several room sizes, threads and worker processes each.

    python -m benchmarks.load_curve [--sizes 10,20,30,60] [--checkout LABEL=PATH ...] [--out load_curve]

For each checkout (this one by default; ``--checkout before=/tmp/base`` runs the same headless participants,
this checkout's ``tests/load/test_load.py``, against another checkout's app through ``PEFT_LOAD_CHECKOUT``) and each
room size it runs the load test (``PEFT_LOAD_SESSIONS=N``: the real server, N participants at once, runs in
the server's threads and then in worker processes, a fresh server each) and collects its figures: slider redraw
p50 / p95 (sent while the room's runs queue and train), run wall time p50 (queue wait included), the server's CPU
seconds per participant (psutil, while the participants were connected) and the worker processes', the server's
peak resident memory over idle per participant, runs finished, sessions that needed a rerun key, and the
1-minute load average at the end of each pass (the machine may be shared: read the redraw times with it).

Each size's raw figures: ``tests/artifacts/load_curve/<label>_<N>.json`` (their copies are in the JSON); the table:
``benchmarks/results/<out>.md`` and ``.json``.  The planning figure, participants per core, is the largest
room whose redraw p95 stayed within ``--bar`` seconds (1.5) for both executors with every run finished and no
rerun key, divided by the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
EXECUTORS = ("thread", "process")


def run_size(label: str, checkout: Path, n: int, timeout: float) -> dict:
    raw = ROOT / "tests" / "artifacts" / "load_curve" / f"{label}_{n}.json"  # ignored by git; the table keeps the figures
    raw.parent.mkdir(parents=True, exist_ok=True)
    if raw.exists():
        raw.unlink()
    env = dict(os.environ, PEFT_LOAD_SESSIONS=str(n), PEFT_LOAD_RESULTS=str(raw), PEFT_LOAD_CHECKOUT=str(checkout),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/load/test_load.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    tail = (p.stdout + p.stderr)[-1500:]
    try:
        figures = json.loads(raw.read_text())
    except (OSError, ValueError):
        figures = {}
    return dict(label=label, checkout=str(checkout), sessions=n, passed=p.returncode == 0, wall_s=time.perf_counter() - t0,
                figures={k: figures[k] for k in EXECUTORS if k in figures}, pytest_tail=None if p.returncode == 0 else tail)


def row(r: dict, ex: str) -> dict | None:
    f = r["figures"].get(ex)
    if not f:
        return None
    n = f["sessions"]
    return dict(sessions=n, executor=ex, redraw_p50_s=f.get("redraw_p50_s"), redraw_p95_s=f.get("redraw_p95_s"),
                run_wall_p50_s=f.get("run_wall_p50_s"), runs_completed=f.get("runs_completed"),
                rerun_key_sessions=f.get("sessions_that_needed_the_rerun_key"),
                server_cpu_s_per_participant=f.get("server_cpu_s_per_participant"),
                workers_cpu_s=f.get("workers_cpu_s"), sessions_wall_s=f.get("sessions_wall_s"),
                peak_rss_over_idle_per_participant_mib=(f["per_session_peak_over_idle_bytes"] / 2**20
                                                        if f.get("per_session_peak_over_idle_bytes") is not None else None),
                after_over_idle=f.get("after_over_idle"), load_avg_1m=f.get("load_avg_1m"))


def fmt(v, spec="{:.2f}"):
    return "—" if v is None else spec.format(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,20,30,60")
    ap.add_argument("--checkout", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--bar", type=float, default=1.5, help="redraw p95 a room must stay within (s)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds for one room size (both executors)")
    ap.add_argument("--out", default="load_curve")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    checkouts = [(c.rpartition("=")[0] or Path(c).name, Path(c.rpartition("=")[2]).resolve()) for c in a.checkout] \
        or [("this", ROOT)]
    result = dict(command="python -m benchmarks.load_curve " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu_count=os.cpu_count(), bar_s=a.bar,
                  load_avg_start=os.getloadavg()[0], runs=[])
    for n in sizes:  # sizes outside, checkouts inside: a before/after pair runs back to back at each size
        for label, path in checkouts:
            print(f"{label}: {n} participants ...", flush=True)
            r = run_size(label, path, n, a.timeout)
            result["runs"].append(r)
            for ex in EXECUTORS:
                x = row(r, ex)
                if x:
                    print(f"  {ex:7s} redraw p50 {fmt(x['redraw_p50_s'])} s, p95 {fmt(x['redraw_p95_s'])} s, "
                          f"runs {x['runs_completed']}/{n}, load {fmt(x['load_avg_1m'], '{:.1f}')}", flush=True)
            if not r["passed"]:
                print("  the load test failed:\n" + (r["pytest_tail"] or ""), flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    plan = {}
    for label, _ in checkouts:
        ok = []
        for r in result["runs"]:
            if r["label"] != label:
                continue
            rows = [row(r, ex) for ex in EXECUTORS]
            if all(x is not None and x["redraw_p95_s"] is not None and x["redraw_p95_s"] <= a.bar
                   and x["runs_completed"] == x["sessions"] and not x["rerun_key_sessions"] for x in rows) \
                    and r["passed"]:
                ok.append(r["sessions"])
        plan[label] = dict(largest_room_within_bar=max(ok) if ok else None,
                           participants_per_core=(max(ok) / cores) if ok else None)
    result["plan"] = plan
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{a.out}.json").write_text(json.dumps(result, indent=1))
    md = [f"# Load curve: `{result['command']}`", "",
          f"{result['date']} · {cores} cores · load average {result['load_avg_start']:.1f} at the start, "
          f"{result['load_avg_end']:.1f} at the end · bar: redraw p95 <= {a.bar:g} s", "",
          "| checkout | participants | runs in | redraw p50 / p95 (s) | run wall p50 (s) | runs finished | "
          "rerun key | server CPU-s per participant | workers CPU-s | peak RSS over idle per participant (MiB) | "
          "RSS after / idle | load avg |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        for ex in EXECUTORS:
            x = row(r, ex)
            if x is None:
                md.append(f"| {r['label']} | {r['sessions']} | {ex} | the test did not report this pass "
                          f"(passed: {r['passed']}) | | | | | | | | |")
                continue
            md.append(f"| {r['label']} | {x['sessions']} | {ex} | {fmt(x['redraw_p50_s'])} / {fmt(x['redraw_p95_s'])} | "
                      f"{fmt(x['run_wall_p50_s'], '{:.1f}')} | {x['runs_completed']} | {x['rerun_key_sessions']} | "
                      f"{fmt(x['server_cpu_s_per_participant'])} | {fmt(x['workers_cpu_s'], '{:.0f}')} | "
                      f"{fmt(x['peak_rss_over_idle_per_participant_mib'], '{:.1f}')} | "
                      f"{fmt(x['after_over_idle'])} | {fmt(x['load_avg_1m'], '{:.1f}')} |")
    md.append("")
    for label, p in plan.items():
        md.append(f"- {label}: largest room within the bar for both executors: "
                  + (f"{p['largest_room_within_bar']} participants, so plan for about "
                     f"{p['participants_per_core']:.0f} participants per core (on {cores} cores, tiny-bert runs, 2 at "
                     "a time)" if p["largest_room_within_bar"] else "none of the sizes measured"))
    (OUT / f"{a.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
