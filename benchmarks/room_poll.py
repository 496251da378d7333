"""What a lesson poll costs: the room's one-row ``state()`` read against the reads a page does when it changed.

Every open page polls the room (``explorer.workshop.room.Room.state``) about once a second, so the poll must be
cheap.  Side by side in one run, on one room file holding a running lesson with 30 participants' answers and
heartbeats: the median of ``state()``, ``present()``, ``tally(step)`` (what the projector redraws when answers
came in) and the class board's ``entries()`` with 60 shared runs, each repeated; reported as ratios to ``state()``.

Run: ``python -m benchmarks.room_poll`` (writes ``benchmarks/results/room_poll.json``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "room_poll.json"
TOKEN = "benchmark-token"


def median_s(fn, n: int = 300) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> dict:
    os.environ["PEFT_EXPLORER_INSTRUCTOR_TOKEN"] = TOKEN
    from explorer.workshop.board import Board
    from explorer.workshop.lessons import bundled_lessons
    from explorer.workshop.room import Room

    d = Path(tempfile.mkdtemp(prefix="room-poll-"))
    room = Room(d / "room.sqlite", session_limit=(10**4, 60.0), global_limit=(10**4, 60.0))
    board = Board(d / "board.sqlite", session_limit=(10**4, 60.0), global_limit=(10**4, 60.0))
    room.start(bundled_lessons()["What LoRA trains"], TOKEN, "teacher")
    room.move("next", TOKEN, "teacher")
    for i in range(30):
        room.answer(f"p{i}", 1, str(1000 * (i + 1)))
        room.heartbeat(f"p{i}", 1)
    for i in range(60):
        board.share(dict(method="lora", model="minilm", task="colour-shape", knobs=f"rank={i}", trainable=1000 + i,
                         accuracy=0.5 + i / 200, peak_bytes=None, steps=60), who=f"p{i % 30}", run_key=str(i))
    room.lesson()  # parsed once per process, as in a server
    reads = {"state()": room.state, "present()": room.present, "tally(step)": lambda: room.tally(1),
             "board.entries()": board.entries}
    med = {k: median_s(f) for k, f in reads.items()}
    base = med["state()"]
    res = dict(loadavg=open("/proc/loadavg").read().split()[:3], median_ms={k: round(v * 1e3, 4) for k, v in med.items()},
               ratio_to_state={k: round(v / base, 2) for k, v in med.items()}, participants=30, board_entries=60)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
