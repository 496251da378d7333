"""Following the teacher: what a participant's page does when the room's step changes (pure Python).

A page polls ``Room.state()`` (one row) about once a second and keeps the (run, step) it last followed::

    go = follow(state, lesson, last=st.session_state.get("followed"), following=toggle)
    if go:                                    # a new step (or a new participant): open its view
        st.session_state["followed"] = go.key
        open go.file with go.query (+ the participant's own modes and sid)
    banner(state, lesson)                     # "Step 2 of 5 · Rank 1 against rank 64 · do ..."

A participant who switched following off keeps their own page and state; ``follow(..., following=False)`` returns
None, and ``back_to_lesson`` gives the current step's view when they ask for it.  Runs and history live in the
session, so opening another step's view never resets them.
"""

from __future__ import annotations

from dataclasses import dataclass

from explorer.views.pages import BY_KEY

__all__ = ["Go", "follow", "back_to_lesson", "banner"]


@dataclass(frozen=True)
class Go:
    key: tuple  # (run, step): store it as the step followed
    page: str
    file: str  # for st.switch_page
    url_path: str
    query: dict  # the step's URL values (strings)


def back_to_lesson(state, lesson) -> Go | None:
    """The current step's view (None when no lesson runs)."""
    if lesson is None or not state.running or not 0 <= state.step < len(lesson.steps):
        return None
    s = lesson.steps[state.step]
    info = BY_KEY[s.page]
    return Go(key=(state.run, state.step), page=s.page, file=info.file, url_path=info.url_path, query=dict(s.query))


def follow(state, lesson, last: tuple | None, following: bool = True) -> Go | None:
    """Where a following page goes now: the current step's view when the room is on a step this page has not
    followed yet (a new participant: the current step at once); None when nothing moved or following is off."""
    if not following or last == (state.run, state.step):
        return None
    return back_to_lesson(state, lesson)


def banner(state, lesson) -> dict | None:
    """What the lesson banner shows: step k of n, the title, what to do, the page (None: no lesson runs)."""
    if lesson is None or not state.running or not 0 <= state.step < len(lesson.steps):
        return None
    s = lesson.steps[state.step]
    return dict(k=state.step + 1, n=len(lesson.steps), title=s.title, do=s.do, notice=s.notice, page=s.page,
                page_title=s.page_title, lesson=lesson.title, question=s.question is not None)

