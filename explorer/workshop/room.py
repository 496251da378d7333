"""The room's lesson: which lesson runs, the step the teacher is on, who follows, the questions and answers.

Pure Python (no streamlit).  One SQLite file beside the class board (``PEFT_EXPLORER_ROOM``, default
``lesson-room.sqlite`` in the board's folder), the board's pattern (``explorer.workshop.sqlite_store``): WAL, a
connection per call, one ``BEGIN IMMEDIATE`` transaction per change, so it survives a restart and serves several
server processes on one machine::

    room = default_room()
    s = room.state()                          # one single-row read: version, run, step, n_steps, title, status
    room.start(lesson, token=typed, who=sid)  # instructor only (RoomError: one line); a new run of the lesson
    room.move("next" | "prev" | k, token=typed, who=sid)
    room.heartbeat(sid, step)                 # "I am on step k" (None: wandered off); throttled per process
    room.present(step)                        # participants on that step within the last PRESENT_S seconds
    room.answer(sid, step, "150k")            # one per session per question, changeable until closed
    room.tally(step)                          # for the projector (explorer.workshop.answers.tally)
    room.close(step, ...); room.reveal(step, ...)   # instructor only; the truth is computed at reveal time
    room.record()                             # the run as data: agenda, questions, tallies, truths (take-home)

``version`` changes on every change the room sees (start, move, end, close, reopen, reveal) and
``answers_version`` on every answer, so a polling fragment reads one row and returns at once when nothing moved.
Session ids only feed a salted keyed hash; no name is stored with an answer.

The questions' half (answers, tallies, close, reopen, reveal, the record of a run) is
``explorer.workshop.room_questions``'s.

Limits (each refusal a :class:`RoomError` with one line): answers per session (``PEFT_EXPLORER_ANSWER_RATE``,
default 12 a minute) and per room (``PEFT_EXPLORER_ROOM_ANSWER_RATE``, default 600 a minute); wrong instructor
tokens per session (5 per 5 minutes); the instructor token is ``PEFT_EXPLORER_INSTRUCTOR_TOKEN`` (the class
board's), compared with ``hmac.compare_digest``; without one, lessons cannot be led.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from explorer.workshop.room_questions import Questions, RoomError
from explorer.workshop.sqlite_store import SqliteStore

__all__ = ["Room", "RoomError", "RoomState", "default_room", "room_path", "ROOM_ENV", "PRESENT_S", "HEARTBEAT_S"]

ROOM_ENV = "PEFT_EXPLORER_ROOM"
SESSION_RATE_ENV = "PEFT_EXPLORER_ANSWER_RATE"
GLOBAL_RATE_ENV = "PEFT_EXPLORER_ROOM_ANSWER_RATE"
SESSION_LIMIT = (12, 60.0)
GLOBAL_LIMIT = (600, 60.0)
TOKEN_TRIES = (5, 300.0)
HEARTBEAT_S = 5.0  # a page's heartbeat is written at most this often per session (unless its step changed)
PRESENT_S = 20.0  # a participant counts as present on a step for this long after a heartbeat
HEARTBEAT_KEEP_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS room (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,
    answers_version INTEGER NOT NULL, run INTEGER, status TEXT NOT NULL, step INTEGER NOT NULL,
    n_steps INTEGER NOT NULL, title TEXT NOT NULL, lesson_key TEXT NOT NULL, started REAL, step_started REAL);
INSERT OR IGNORE INTO room VALUES (1, 0, 0, NULL, 'idle', 0, 0, '', '', NULL, NULL);
CREATE TABLE IF NOT EXISTS runs (run INTEGER PRIMARY KEY AUTOINCREMENT, lesson TEXT NOT NULL, title TEXT NOT NULL,
    started REAL NOT NULL, ended REAL);
CREATE TABLE IF NOT EXISTS visits (run INTEGER NOT NULL, step INTEGER NOT NULL, t_in REAL NOT NULL, t_out REAL);
CREATE INDEX IF NOT EXISTS visits_run ON visits (run, step);
CREATE TABLE IF NOT EXISTS questions (run INTEGER NOT NULL, step INTEGER NOT NULL, status TEXT NOT NULL,
    truth TEXT, changed REAL NOT NULL, PRIMARY KEY (run, step));
CREATE TABLE IF NOT EXISTS answers (run INTEGER NOT NULL, step INTEGER NOT NULL, who TEXT NOT NULL,
    value TEXT NOT NULL, t REAL NOT NULL, PRIMARY KEY (run, step, who));
CREATE TABLE IF NOT EXISTS heartbeats (who TEXT PRIMARY KEY, run INTEGER, step INTEGER, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS heartbeats_t ON heartbeats (t)
"""


@dataclass(frozen=True)
class RoomState:
    """The one row every page polls."""

    version: int
    answers_version: int
    run: int | None
    status: str  # idle | running | ended
    step: int
    n_steps: int
    title: str
    started: float | None
    step_started: float | None

    @property
    def running(self) -> bool:
        return self.status == "running"


def room_path() -> Path:
    p = os.environ.get(ROOM_ENV)
    if p:
        return Path(p)
    from explorer.workshop.board import board_path

    return board_path().with_name("lesson-room.sqlite")


def _env_limit(name: str, default: tuple) -> tuple:
    try:
        n = int(float(os.environ.get(name, default[0])))
    except (TypeError, ValueError, OverflowError):
        n = default[0]
    return (min(100_000, max(1, n)), default[1])


def token_problem() -> str | None:
    """Why lessons cannot be led on this server (one line), or None."""
    from explorer.workshop.board import MIN_TOKEN, TOKEN_ENV, instructor_token

    t = instructor_token()
    if t is None:
        return (f"Leading a lesson is disabled: the server's operator has not set {TOKEN_ENV} (set it before "
                "starting the server to enable it).")
    if len(t) < MIN_TOKEN:
        return f"Leading a lesson is disabled: {TOKEN_ENV} is shorter than {MIN_TOKEN} characters."
    return None


class Room(Questions, SqliteStore):
    error = RoomError
    noun = "the lesson room"
    schema = _SCHEMA

    def __init__(self, path=None, clock=time.time, session_limit: tuple | None = None,
                 global_limit: tuple | None = None):
        self.clock = clock
        self.session_limit = session_limit or _env_limit(SESSION_RATE_ENV, SESSION_LIMIT)
        self.global_limit = global_limit or _env_limit(GLOBAL_RATE_ENV, GLOBAL_LIMIT)
        self._beats: dict[str, tuple] = {}  # who hash -> (run, step, time written): this process's throttle
        self._lessons: dict[int, object] = {}
        self._lock = threading.Lock()
        super().__init__(path if path is not None else room_path())

    # ------------------------------------------------------------------------- reading
    def state(self) -> RoomState:
        row = self._read_one("SELECT version, answers_version, run, status, step, n_steps, title, "
                             "started, step_started FROM room WHERE id = 1")
        return RoomState(*row)

    def lesson(self, run: int | None = None):
        """The lesson of ``run`` (default: the current one) or None; parsed once per process per run."""
        from explorer.workshop.lessons import parse_lesson

        run = self.state().run if run is None else run
        if run is None:
            return None
        with self._lock:
            if run in self._lessons:
                return self._lessons[run]
        row = self._read_one("SELECT lesson FROM runs WHERE run = ?", (int(run),))
        if row is None:
            return None
        lesson = parse_lesson(row[0], "room.json")
        with self._lock:
            self._lessons[run] = lesson
        return lesson

    def present(self, step: int | None = None, now: float | None = None) -> int:
        """Participants whose page reported ``step`` (default: the current one) of the current run in the last
        ``PRESENT_S`` seconds."""
        s = self.state()
        now = float(self.clock()) if now is None else now
        step = s.step if step is None else step
        return int(self._read_one("SELECT COUNT(*) FROM heartbeats WHERE run IS ? AND step = ? AND t > ?",
                                  (s.run, int(step), now - PRESENT_S))[0])

    def participants(self, now: float | None = None) -> int:
        """Pages that reported anything (a step or "wandered off") in the last ``PRESENT_S`` seconds."""
        now = float(self.clock()) if now is None else now
        return int(self._read_one("SELECT COUNT(*) FROM heartbeats WHERE t > ?", (now - PRESENT_S,))[0])

    def agenda(self, run: int | None = None, now: float | None = None) -> list[dict]:
        """Per step: index, title, page, planned minutes, seconds spent so far (every visit summed; the open
        visit counts up to now), visited, current."""
        s = self.state()
        run = s.run if run is None else run
        lesson = self.lesson(run)
        if lesson is None:
            return []
        now = float(self.clock()) if now is None else now
        with self._tx(write=False) as con:
            rows = con.execute("SELECT step, t_in, t_out FROM visits WHERE run = ?", (run,)).fetchall()
        spent, seen = {}, set()
        for step, t_in, t_out in rows:
            spent[step] = spent.get(step, 0.0) + max(0.0, (t_out if t_out is not None else now) - t_in)
            seen.add(step)
        cur = s.step if run == s.run and s.running else None
        return [dict(index=st.index, title=st.title, page=st.page, minutes=st.minutes,
                     spent_s=round(spent.get(st.index, 0.0), 3), visited=st.index in seen, current=st.index == cur)
                for st in lesson.steps]

    # ------------------------------------------------------------------------- participants
    def heartbeat(self, who: str, step: int | None) -> bool:
        """Record that ``who``'s page shows ``step`` of the current run (None: it wandered off).  Written at most
        every ``HEARTBEAT_S`` seconds per session unless the step changed; returns whether it was written."""
        who_h = self._hash("who", who or "")
        now = float(self.clock())
        run = self.state().run
        last = self._beats.get(who_h)
        if last is not None and last[:2] == (run, step) and now - last[2] < HEARTBEAT_S:
            return False
        with self._tx() as con:
            con.execute("INSERT INTO heartbeats VALUES (?, ?, ?, ?) ON CONFLICT (who) DO UPDATE SET run = excluded.run,"
                        " step = excluded.step, t = excluded.t", (who_h, run, None if step is None else int(step), now))
            con.execute("DELETE FROM heartbeats WHERE t < ?", (now - HEARTBEAT_KEEP_S,))
        self._beats[who_h] = (run, step, now)
        return True

    # ------------------------------------------------------------------------- the instructor
    def authorize(self, token, who: str) -> None:
        """Check the instructor token typed by session ``who``; RoomError when leading is disabled, the token is
        wrong, or this session typed too many wrong ones.  (Every instructor action checks it itself.)"""
        with self._tx() as con:
            bad = self._check_token(con, token, who, float(self.clock()))
        if bad:
            raise RoomError(bad)

    def _check_token(self, con, token, who: str, now: float) -> str | None:
        from explorer.workshop.board import instructor_token

        why = token_problem()
        if why:
            return why
        who_h = self._hash("who", who or "")
        w = self._wait(con, "bad_token", who_h, TOKEN_TRIES, now)
        if w is not None:
            return f"too many wrong instructor tokens from this session; wait {w:.0f} s"
        typed = token if isinstance(token, str) else ""
        if hmac.compare_digest(typed.encode("utf-8", "replace"), instructor_token().encode("utf-8", "replace")):
            return None
        self._event(con, "bad_token", who_h, now, TOKEN_TRIES[1])
        return "wrong instructor token" if typed else "type the instructor token first"

    def _instructor(self, token, who: str, change) -> RoomState:
        """Run ``change(con, now)`` in one transaction after the token check (a wrong token's record commits)."""
        bad = None
        with self._tx() as con:
            now = float(self.clock())
            bad = self._check_token(con, token, who, now)
            if bad is None:
                change(con, now)
                con.execute("UPDATE room SET version = version + 1 WHERE id = 1")
        if bad:
            raise RoomError(bad)
        return self.state()

    @staticmethod
    def _enter(con, run: int, step: int, now: float) -> None:
        con.execute("UPDATE visits SET t_out = ? WHERE run = ? AND t_out IS NULL", (now, run))
        con.execute("INSERT INTO visits VALUES (?, ?, ?, NULL)", (run, step, now))
        con.execute("UPDATE room SET step = ?, step_started = ? WHERE id = 1", (step, now))

    def start(self, lesson, token, who: str) -> RoomState:
        """Start ``lesson`` (an ``explorer.workshop.lessons.Lesson``) at its first step as a new run; a lesson
        that was running ends.  Instructor only."""
        text = lesson.to_json()

        def change(con, now):
            old = con.execute("SELECT run FROM room WHERE id = 1 AND status = 'running'").fetchone()
            if old:
                con.execute("UPDATE runs SET ended = ? WHERE run = ?", (now, old[0]))
                con.execute("UPDATE visits SET t_out = ? WHERE run = ? AND t_out IS NULL", (now, old[0]))
            run = con.execute("INSERT INTO runs (lesson, title, started) VALUES (?, ?, ?)",
                              (text, lesson.title, now)).lastrowid
            con.execute("UPDATE room SET run = ?, status = 'running', n_steps = ?, title = ?, lesson_key = ?, "
                        "started = ? WHERE id = 1", (run, len(lesson.steps), lesson.title, lesson.key, now))
            self._enter(con, run, 0, now)

        return self._instructor(token, who, change)

    def move(self, to, token, who: str) -> RoomState:
        """Move the room to the next step (``"next"``), the previous one (``"prev"``) or step ``to`` (0-based).
        Instructor only; RoomError past either end or when no lesson runs."""
        def change(con, now):
            run, status, step, n = con.execute("SELECT run, status, step, n_steps FROM room WHERE id = 1").fetchone()
            if status != "running":
                raise RoomError("no lesson is running; start one first")
            target = step + 1 if to == "next" else step - 1 if to == "prev" else to
            if isinstance(target, bool) or not isinstance(target, int):
                raise RoomError("move to 'next', 'prev' or a step number")
            if not 0 <= target < n:
                raise RoomError("this is the last step" if to == "next" else "this is the first step"
                                if to == "prev" else f"there is no step {target + 1}: the lesson has {n}")
            if target != step:
                self._enter(con, run, target, now)

        return self._instructor(token, who, change)

    def end(self, token, who: str) -> RoomState:
        """End the running lesson (its record stays for the take-home).  Instructor only."""
        def change(con, now):
            run, status = con.execute("SELECT run, status FROM room WHERE id = 1").fetchone()
            if status != "running":
                raise RoomError("no lesson is running")
            con.execute("UPDATE visits SET t_out = ? WHERE run = ? AND t_out IS NULL", (now, run))
            con.execute("UPDATE runs SET ended = ? WHERE run = ?", (now, run))
            con.execute("UPDATE room SET status = 'ended' WHERE id = 1")

        return self._instructor(token, who, change)

_ROOMS: dict[str, Room] = {}
_ROOMS_LOCK = threading.Lock()


def default_room() -> Room:
    """The server's room (one object per file and settings; the environment is read on each call)."""
    key = "|".join((str(room_path()), os.environ.get(SESSION_RATE_ENV, ""), os.environ.get(GLOBAL_RATE_ENV, "")))
    with _ROOMS_LOCK:
        r = _ROOMS.get(key)
        if r is None or not r.path.exists():
            r = _ROOMS[key] = Room()
        return r
