"""Load test of a live lesson: headless participants (``tools/st_protocol.py``) follow the teacher through five
steps of "What LoRA trains" on the real server while two runs train (``tools/lesson_room.py``).

Checks: every participant reaches every step (the banner says it and the page's address is the step's view),
no page shows an error, the probe's slider redraws all complete, and both runs were training or finished at each
move.  ``PEFT_LOAD_LESSON_PARTICIPANTS`` participants (default 10); the follow times go to
``tests/artifacts/lesson_follow.json`` for information (the bound is ``benchmarks/lesson_follow.py``'s to measure,
side by side with the slider redraw, for 10 and 30 participants).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tools.lesson_room import follow_room

from explorer.workshop.lessons import bundled_lessons
from explorer.workshop.room import Room
from tools.streamlit_server import serve

ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS = int(os.environ.get("PEFT_LOAD_LESSON_PARTICIPANTS", "10"))
TOKEN = "load-test-instructor-token"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("lesson-load")
    env = {"PEFT_EXPLORER_INSTRUCTOR_TOKEN": TOKEN, "PEFT_EXPLORER_ROOM": d / "room.sqlite",
           "PEFT_EXPLORER_BOARD": d / "board.sqlite", "PEFT_EXPLORER_SESSIONS": d / "sessions",
           "PEFT_EXPLORER_MAX_RUNS": "2"}
    log = ROOT / ".pytest_cache" / "lesson_load_server.log" if (ROOT / ".pytest_cache").exists() else None
    with serve(env=env, log=log) as srv:
        yield srv.url, d / "room.sqlite"


def test_every_participant_follows_every_step_while_two_runs_train(server, monkeypatch):
    url, room_file = server
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)  # this process writes the teacher's moves
    out = asyncio.run(follow_room(url, Room(room_file), bundled_lessons()["What LoRA trains"], TOKEN,
                                  participants=PARTICIPANTS, steps=5, runs=2,
                                  pause=1.0))  # 1 s between moves (the benchmark's room looks 3 s at each step)
    art = ROOT / "tests" / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    (art / "lesson_follow.json").write_text(json.dumps(out, indent=1, default=str))
    assert not out["missed"], out["missed"][:5]
    assert len(out["follows"]) == PARTICIPANTS * 5
    assert {(f["participant"], f["step"]) for f in out["follows"]} == \
        {(i, k) for i in range(PARTICIPANTS) for k in range(1, 6)}
    assert not out["errors"], out["errors"][:5]
    assert out["probe"] and all(p["ok"] for p in out["probe"])
    for lines in out["runs_training"][1:]:  # the runs' own tabs, at each move after the first
        assert all(("step " in line and " of 500" in line) or line.startswith("Finished 500 steps")
                   for line in lines), lines
