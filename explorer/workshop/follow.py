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

The Lesson page (``LEAD_PAGE``) never moves anyone: it is where the teacher leads and where everyone takes the
workshop home.  ``shows_step`` says whether a page already shows a step's view (no switch needed: a participant who
opened the step's own link), ``on_step`` whether a participant counts as on the step (their heartbeat), and
``switch_query`` is the address a followed step opens with: the step's settings plus the participant's own keys
(modes, session id), never another participant's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from explorer.views.pages import BY_KEY, PARTICIPANT_KEYS

__all__ = ["Go", "follow", "back_to_lesson", "banner", "shows_step", "on_step", "switch_query", "LEAD_PAGE"]

LEAD_PAGE = "lesson"  # the teacher's page: following never moves a page away from it


@dataclass(frozen=True)
class Go:
    key: tuple  # (run, step): store it as the step followed
    page: str
    file: str  # for st.switch_page
    url_path: str
    query: dict  # the step's URL values (strings)
    values: dict = field(default_factory=dict)  # every value of the page's schema for this step


def back_to_lesson(state, lesson) -> Go | None:
    """The current step's view (None when no lesson runs)."""
    if lesson is None or not state.running or not 0 <= state.step < len(lesson.steps):
        return None
    s = lesson.steps[state.step]
    info = BY_KEY[s.page]
    return Go(key=(state.run, state.step), page=s.page, file=info.file, url_path=info.url_path, query=dict(s.query),
              values=dict(s.values))


def follow(state, lesson, last: tuple | None, following: bool = True, page: str | None = None) -> Go | None:
    """Where a following page goes now: the current step's view when the room is on a step this page has not
    followed yet (a new participant: the current step at once); None when nothing moved, following is off, or the
    page is the Lesson page (``page == LEAD_PAGE``)."""
    if not following or last == (state.run, state.step) or page == LEAD_PAGE:
        return None
    return back_to_lesson(state, lesson)


def shows_step(go: Go, page: str, query: Mapping) -> bool:
    """Whether ``page`` with the address ``query`` already shows ``go``'s view: the same page and every setting of
    the page's schema as the step has it (the participant's own keys aside; what the address leaves out is the
    page's default, as the page reads it)."""
    if page != go.page:
        return False
    from explorer.views.pages import page_schema

    own = {k: v for k, v in query.items() if k not in PARTICIPANT_KEYS}
    try:
        values = page_schema(page, own).parse(own)[0]
    except Exception:  # noqa: BLE001 - an address the page cannot read shows no step
        return False
    return values == go.values


def on_step(state, lesson, page: str, followed: tuple | None) -> bool:
    """Whether a participant counts as on the current step: their page is the step's page and the step is the one
    they followed (moving the step's sliders keeps them on it; another page, or a step they did not open, not)."""
    go = back_to_lesson(state, lesson)
    return go is not None and followed == go.key and page == go.page


def switch_query(go: Go, own: Mapping) -> dict:
    """The address ``go``'s view opens with: the step's settings plus the participant's own keys from ``own``
    (``instr``, ``proj``, ``sid``; anything else in ``own`` is dropped)."""
    q = dict(go.query)
    q.update({k: str(own[k]) for k in PARTICIPANT_KEYS if own.get(k) not in (None, "")})
    return q


def banner(state, lesson) -> dict | None:
    """What the lesson banner shows: step k of n, the title, what to do, the page (None: no lesson runs)."""
    if lesson is None or not state.running or not 0 <= state.step < len(lesson.steps):
        return None
    s = lesson.steps[state.step]
    return dict(k=state.step + 1, n=len(lesson.steps), title=s.title, do=s.do, notice=s.notice, page=s.page,
                page_title=s.page_title, lesson=lesson.title, question=s.question is not None)

