"""How long each step of the 90-minute workshop takes to draw: every step's link of the bundled lessons opened in a
fresh session (a headless participant, ``tools/st_protocol.py``), in workshop order, on one fresh server.

Per step: ``first_s`` (the link opened until the page's first full run finished: what the first participant to
reach the step waits; models and caches load here when the step is the first to need them) and ``again_s`` (a
second fresh session opening the same link right after: what the rest of the room waits, one at a time), and
whether the page showed an error.  No lesson runs (the links are opened as a take-home's reader would).

Run: ``python -m benchmarks.lesson_steps`` (writes ``benchmarks/results/lesson_steps.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
OUT = ROOT / "benchmarks" / "results" / "lesson_steps"


async def open_once(url: str, path: str, query: str, timeout: float) -> dict:
    from tools.st_protocol import Session

    s = Session(url)
    t0 = time.perf_counter()
    try:
        await s.open(path, query)
        ok = await s.wait_for(lambda x: x.runs_finished >= 1 and not x.script_running, timeout)
        dt = time.perf_counter() - t0
        errors = list(s.errors) + [e.text[:160] for e in s.all("alert") if e.proto.format == e.proto.ERROR]
        return dict(seconds=dt if ok else None, errors=errors, elements=len(s.elements))
    finally:
        await s.close()


def measure(timeout: float = 300.0) -> list[dict]:
    from explorer.workshop.lessons import bundled_lessons
    from tools.streamlit_server import serve

    d = Path(tempfile.mkdtemp(prefix="lesson-steps-"))
    env = {"PEFT_EXPLORER_ROOM": d / "room.sqlite", "PEFT_EXPLORER_BOARD": d / "board.sqlite",
           "PEFT_EXPLORER_SESSIONS": d / "sessions"}
    rows = []
    with serve(env=env, log=d / "server.log") as srv:
        for lesson in bundled_lessons().values():
            for st in lesson.steps:
                u = urlsplit(st.link("http://x"))
                path, query = u.path.strip("/"), u.query
                load = os.getloadavg()[0]
                first = asyncio.run(open_once(srv.url, path, query, timeout))
                again = asyncio.run(open_once(srv.url, path, query, timeout))
                rows.append(dict(lesson=lesson.title, step=st.index + 1, title=st.title, page=st.page_title,
                                 minutes=st.minutes, link=st.link(), first_s=first["seconds"],
                                 again_s=again["seconds"], errors=first["errors"] + again["errors"], loadavg=load))
                print(f"{lesson.title} {st.index + 1}: {first['seconds']} / {again['seconds']} s "
                      f"(load {load:.1f}) {first['errors'] + again['errors']}", flush=True)
    return rows


def report(rows: list[dict]) -> str:
    total = sum(r["minutes"] for r in rows)
    firsts = [r["first_s"] for r in rows if r["first_s"] is not None]
    lines = ["# Each step's first draw (the 90-minute workshop)", "",
             f"`python -m benchmarks.lesson_steps` ({time.strftime('%Y-%m-%d %H:%M')}): the {len(rows)} steps of the "
             f"three bundled lessons ({total:g} minutes planned), each link opened by a fresh headless session on one "
             "fresh server, in workshop order; seconds until the page's first full run finished. `again`: a second "
             "fresh session right after. The machine is shared: the 1-minute load average is listed.", "",
             "| lesson | step | page | first | again | load | errors |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = "—" if r["first_s"] is None else f"{r['first_s']:.2f}"
        a = "—" if r["again_s"] is None else f"{r['again_s']:.2f}"
        lines.append(f"| {r['lesson']} | {r['step']}. {r['title']} | {r['page']} | {f} | {a} | {r['loadavg']:.1f} | "
                     f"{'; '.join(r['errors']) or 'none'} |")
    if firsts:
        lines += ["", f"Largest first draw {max(firsts):.2f} s; sum of first draws {sum(firsts):.1f} s for "
                  f"{total:g} planned minutes."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    rows = measure()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(rows, indent=1))
    Path(a.out + ".md").write_text(report(rows))
    print(report(rows))
    return 0 if all(r["first_s"] is not None and not r["errors"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
