"""The questions' half of the room (``explorer.workshop.room.Room`` inherits it): answers, tallies, closing and
revealing a question with its truth computed at reveal time, and the record of a run for the take-home.

Pure Python (no streamlit).  The methods read and write the room's SQLite file through the store's one-transaction
helpers; ``self.state()``, ``self.lesson()``, ``self.agenda()`` and the token checks are the room's own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from explorer.errors import DataError
from explorer.workshop.answers import AnswerError, check_answer, tally

if TYPE_CHECKING:
    from explorer.workshop.room import RoomState

__all__ = ["Questions", "RoomError"]


class RoomError(DataError):
    """A lesson action the room refuses (one line, safe to show)."""


class Questions:
    """Answers and questions of the running lesson (a mixin of ``Room``)."""

    def question(self, step: int, run: int | None = None) -> dict:
        """``status`` (open | closed | revealed | none: the step asks nothing), the revealed ``truth``
        (``explorer.workshop.truths.Truth`` or None) and ``n`` answers."""
        from explorer.workshop.truths import Truth

        run = self.state().run if run is None else run
        lesson = self.lesson(run)
        if lesson is None or not 0 <= step < len(lesson.steps) or lesson.steps[step].question is None:
            return dict(status="none", truth=None, n=0)
        with self._tx(write=False) as con:
            row = con.execute("SELECT status, truth FROM questions WHERE run = ? AND step = ?", (run, step)).fetchone()
            n = con.execute("SELECT COUNT(*) FROM answers WHERE run = ? AND step = ?", (run, step)).fetchone()[0]
        status, truth = (row if row else ("open", None))
        return dict(status=status, truth=Truth.from_dict(json.loads(truth)) if truth else None, n=int(n))

    def answers(self, step: int, run: int | None = None) -> list:
        run = self.state().run if run is None else run
        with self._tx(write=False) as con:
            rows = con.execute("SELECT value FROM answers WHERE run = ? AND step = ? ORDER BY t, rowid", (run, step))
            return [json.loads(r[0]) for r in rows]

    def my_answer(self, who: str, step: int, run: int | None = None):
        run = self.state().run if run is None else run
        row = self._read_one("SELECT value FROM answers WHERE run = ? AND step = ? AND who = ?",
                             (run, step, self._hash("who", who or "")))
        return json.loads(row[0]) if row else None

    def tally(self, step: int, run: int | None = None) -> dict:
        """The room's answers to ``step``'s question for the projector (with the truth once revealed)."""
        run = self.state().run if run is None else run
        lesson = self.lesson(run)
        if lesson is None or not 0 <= step < len(lesson.steps) or lesson.steps[step].question is None:
            raise RoomError("this step asks no question")
        q = self.question(step, run)
        return tally(lesson.steps[step].question, self.answers(step, run), q["truth"])

    def answer(self, who: str, step: int, raw):
        """Store (or change) session ``who``'s answer to ``step``'s question; returns the stored value.
        RoomError (one line) when no lesson runs, the step asks nothing or has not been reached, the question is
        closed, the answer is refused (``explorer.workshop.answers.check_answer``) or answers come too fast."""
        s = self.state()
        lesson = self.lesson(s.run) if s.running else None
        if lesson is None:
            raise RoomError("no lesson is running")
        if not isinstance(step, int) or not 0 <= step < len(lesson.steps) or lesson.steps[step].question is None:
            raise RoomError("this step asks no question")
        try:
            value = check_answer(lesson.steps[step].question, raw)
        except AnswerError as e:
            raise RoomError(str(e)) from None
        who_h = self._hash("who", who or "")
        with self._tx() as con:
            now = float(self.clock())
            run = con.execute("SELECT run, status FROM room WHERE id = 1").fetchone()
            if run != (s.run, "running"):
                raise RoomError("the lesson has moved on; answer again")
            if not con.execute("SELECT 1 FROM visits WHERE run = ? AND step = ?", (s.run, step)).fetchone():
                raise RoomError("the teacher has not reached this question yet")
            st = con.execute("SELECT status FROM questions WHERE run = ? AND step = ?", (s.run, step)).fetchone()
            if st and st[0] != "open":
                raise RoomError("the teacher has closed this question")
            self._limit(con, who_h, now)
            con.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?) ON CONFLICT (run, step, who) DO UPDATE SET "
                        "value = excluded.value, t = excluded.t", (s.run, step, who_h, json.dumps(value), now))
            con.execute("UPDATE room SET answers_version = answers_version + 1 WHERE id = 1")
        return value

    def _limit(self, con, who_h: str, now: float) -> None:
        w = self._wait(con, "answer", who_h, self.session_limit, now)
        if w is not None:
            raise RoomError(f"you answered {self.session_limit[0]} times in the last {self.session_limit[1]:.0f} s; "
                            f"wait {w:.0f} s")
        w = self._wait(con, "answer", None, self.global_limit, now)
        if w is not None:
            raise RoomError(f"the room is answering faster than the server takes; try again in {w:.0f} s")
        self._event(con, "answer", who_h, now, max(self.session_limit[1], self.global_limit[1]))

    def _set_question(self, step: int, status: str, token, who: str, truth=None, allowed=("open", "closed")):
        s = self.state()
        lesson = self.lesson(s.run)
        if lesson is None or not 0 <= step < len(lesson.steps) or lesson.steps[step].question is None:
            raise RoomError("this step asks no question")

        def change(con, now):
            if con.execute("SELECT run FROM room WHERE id = 1").fetchone()[0] != s.run:
                raise RoomError("another lesson has started")
            row = con.execute("SELECT status FROM questions WHERE run = ? AND step = ?", (s.run, step)).fetchone()
            if (row[0] if row else "open") not in allowed:
                raise RoomError("the answer is already revealed")
            con.execute("INSERT INTO questions VALUES (?, ?, ?, ?, ?) ON CONFLICT (run, step) DO UPDATE SET "
                        "status = excluded.status, truth = excluded.truth, changed = excluded.changed",
                        (s.run, step, status, json.dumps(truth.to_dict()) if truth else None, now))

        return self._instructor(token, who, change)

    def close(self, step: int, token, who: str) -> RoomState:
        """Close a question: no more answers or changes.  Instructor only."""
        return self._set_question(step, "closed", token, who)

    def reopen(self, step: int, token, who: str) -> RoomState:
        """Open a closed question again (not once revealed).  Instructor only."""
        return self._set_question(step, "open", token, who)

    def reveal(self, step: int, token, who: str, ctx=None):
        """Close the question and reveal its truth, computed now by the project (``explorer.workshop.truths``;
        ``ctx`` a ``TruthContext``: the page's model loader, the board; ``since`` is this run's start).  A question
        without a truth reveals the room's answers only (returns None).  Revealing again recomputes (more runs may
        have been shared).  RoomError (one line) when the truth cannot be computed yet; the question stays as it
        was."""
        from explorer.workshop.truths import TruthContext, TruthError, compute_truth

        self.authorize(token, who)  # before any computation
        s = self.state()
        lesson = self.lesson(s.run)
        if lesson is None or not 0 <= step < len(lesson.steps) or lesson.steps[step].question is None:
            raise RoomError("this step asks no question")
        q = lesson.steps[step].question
        truth = None
        if q.truth is not None:
            ctx = ctx or TruthContext()
            ctx.since = float(s.started or 0.0)
            try:
                truth = compute_truth(q.truth, q, ctx)
            except TruthError as e:
                raise RoomError(str(e)) from None
        self._set_question(step, "revealed", token, who, truth=truth, allowed=("open", "closed", "revealed"))
        return truth

    def runs(self) -> list[dict]:
        """Every lesson run, newest first: run, title, started, ended."""
        with self._tx(write=False) as con:
            rows = con.execute("SELECT run, title, started, ended FROM runs ORDER BY run DESC").fetchall()
        return [dict(run=r[0], title=r[1], started=r[2], ended=r[3]) for r in rows]

    def record(self, run: int | None = None, who: str | None = None) -> dict | None:
        """A run as data (the take-home's room part): title, started, ended, the agenda, and per question the
        prompt, its status, the room's tally, the revealed truth and (with ``who``) that session's own answer."""
        run = self.state().run if run is None else run
        lesson = self.lesson(run)
        if lesson is None:
            return None
        row = self._read_one("SELECT started, ended FROM runs WHERE run = ?", (run,))
        questions = []
        for st in lesson.steps:
            if st.question is None:
                continue
            q = self.question(st.index, run)
            d = dict(step=st.index, prompt=st.question.prompt, kind=st.question.kind, status=q["status"],
                     tally=self.tally(st.index, run), truth=q["truth"].to_dict() if q["truth"] else None)
            if who is not None:
                d["yours"] = self.my_answer(who, st.index, run)
            questions.append(d)
        return dict(run=run, title=lesson.title, started=row[0], ended=row[1], agenda=self.agenda(run),
                    questions=questions)
