"""The live lesson on every page: the banner, following the teacher, answering, the join address (streamlit).

``ui.frame.chrome`` calls :func:`lesson_frame` on every page.  While a lesson runs it draws the banner (step k of
n, the title, what to do, what to notice once the question is revealed, the question and this session's answer,
"Follow the teacher", "Back to the lesson") and a polling fragment (:func:`_ticker`, every ``POLL_S`` s) that reads
the room's one row and returns at once when its version is unchanged.  When the teacher moves, a following page
switches to the step's page with the step's settings plus the participant's own modes and ``sid``
(``explorer.workshop.follow``); any other change (a question closed or revealed, a page that does not follow)
reruns the page once so the banner is redrawn.  Runs and history live in the session: no step change resets them.
On a server where lessons cannot be led (no instructor token) and none runs, nothing is drawn and nothing polls.

The teacher's half lives on the Lesson page (``pages/8_Lesson.py``); :func:`lead` (one instructor action, its
refusal one line) and :func:`join_block` (the address participants open and its QR code) are shared with it and
with Home.
"""

from __future__ import annotations

import base64
import secrets
import time
from html import escape

import streamlit as st

from explorer.workshop import follow as F
from explorer.workshop.room import HEARTBEAT_S, RoomError, default_room, token_problem
from ui.modes import mode_params
from ui.state import raw_params

POLL_S = 1.0  # while a lesson runs: the teacher's click reaches a following page within about this plus a page run
IDLE_POLL_S = 2.0  # no lesson runs (but one can be started): a start is seen within this
FOLLOW, FOLLOW_SW = "_lesson_follow", "lesson_follow"  # this session's choice (plain key), its switch
FOLLOWED = "_lesson_followed"  # (run, step) this session last followed
SEEN = "_lesson_seen"  # what this page's last full run drew (the ticker compares the room with it)
PAGE_KEY = "_lesson_page"  # (the page this session shows now, the current step's page)
BEAT = "_lesson_beat"  # (run, step or None, time) of this session's last heartbeat
WHO, TOKEN, UNLOCKED = "_lesson_who", "_lesson_token", "_lesson_unlocked"
MSG = "_lesson_msg"
SID = "_lesson_sid"  # the session id this session's address had (kept for pages that drop it)
JOIN_SW = "lesson_join"


def room_or_none():
    try:
        return default_room()
    except RoomError:
        return None


def who() -> str:
    """This browser session's id for the room (only ever hashed there): one per session, stable across pages."""
    if WHO not in st.session_state:
        st.session_state[WHO] = secrets.token_hex(16)
    return st.session_state[WHO]


def following() -> bool:
    return bool(st.session_state.get(FOLLOW, True))


def unlocked() -> bool:
    return bool(st.session_state.get(UNLOCKED))


def watch_key(room, s, page: str) -> tuple:
    """What a page redraws for: the room's version; the unlocked teacher's Lesson page also the answers, who is
    on the step, and a 15-second clock (time spent per step)."""
    if page == F.LEAD_PAGE and unlocked():
        return (s.version, s.answers_version, room.present(), int(time.time() // 15))
    return (s.version,)


# ----------------------------------------------------------------------------- following


def own_keys() -> dict:
    """This participant's own address keys: the modes that are on and the session's id (``sid``: the session's
    own, else the one its address had; a page that does not keep it in its address does not lose it)."""
    from explorer.workshop.sessions import valid_session_id

    raw = raw_params()
    if valid_session_id(raw.get("sid")):
        st.session_state[SID] = raw["sid"]
    sid = next((v for v in (st.session_state.get("session_id"), st.session_state.get(SID)) if valid_session_id(v)),
               None)
    return {**mode_params(), **({"sid": sid} if sid else {})}


def open_step(go: F.Go) -> None:
    """Open the step's page with its settings (and the participant's own keys)."""
    st.session_state[FOLLOWED] = go.key
    st.switch_page(go.file, query_params=F.switch_query(go, own_keys()))


def _follow_now(s, lesson, page: str) -> None:
    go = F.follow(s, lesson, st.session_state.get(FOLLOWED), following(), page)
    if go is None:
        return
    st.session_state[FOLLOWED] = go.key
    if not F.shows_step(go, page, raw_params()):
        open_step(go)


def _beat(room, s, lesson, page: str, now: float) -> None:
    """Tell the room which step this page shows (None: elsewhere); at most every HEARTBEAT_S s unless it changed."""
    value = s.step if lesson is not None and F.on_step(s, lesson, page, st.session_state.get(FOLLOWED)) else None
    last = st.session_state.get(BEAT)
    if last is not None and last[:2] == (s.run, value) and now - last[2] < HEARTBEAT_S:
        return
    try:
        room.heartbeat(who(), value)
    except RoomError:
        return
    st.session_state[BEAT] = (s.run, value, now)


def _ticker(room, page: str, every: float) -> None:
    """The polling fragment: one row read; unchanged -> return (after a throttled heartbeat); the teacher moved
    -> a following page opens the step; any other change -> the page reruns once (the banner)."""

    def tick():
        try:
            s = room.state()
            if watch_key(room, s, page) == st.session_state.get(SEEN):
                last = st.session_state.get(BEAT)
                if last is not None and time.time() - last[2] >= HEARTBEAT_S:
                    room.heartbeat(who(), last[1] if last[0] == s.run else None)
                    st.session_state[BEAT] = (last[0], last[1], time.time())
                return
            lesson = room.lesson(s.run) if s.running else None
        except RoomError:
            return
        if lesson is not None:
            go = F.follow(s, lesson, st.session_state.get(FOLLOWED), following(), page)
            if go is not None and not F.shows_step(go, page, raw_params()):
                open_step(go)
        st.rerun(scope="app")

    st.fragment(run_every=every)(tick)()


# ----------------------------------------------------------------------------- the banner


def _keep_follow() -> None:
    on = bool(st.session_state.get(FOLLOW_SW))
    st.session_state[FOLLOW] = on
    page, step_page = st.session_state.get(PAGE_KEY, (None, None))
    if on and page != step_page:  # following again: the current step at once (on its page already: stay)
        st.session_state.pop(FOLLOWED, None)


def _follow_switch() -> None:
    st.session_state[FOLLOW_SW] = following()
    st.toggle("Follow the teacher", key=FOLLOW_SW, on_change=_keep_follow,
              help="On: when the teacher moves to the next step, this page opens it with its settings. Off: you "
                   "stay where you are with your own settings; the banner keeps showing the step.")


def _answer_box(room, s, step, q: dict) -> None:
    from explorer.workshop.answers import shown

    mine = room.my_answer(who(), s.step)
    st.markdown(f"**Question:** {step.question.prompt}")
    if q["status"] == "revealed":
        truth = q["truth"]
        st.success(f"Revealed: {truth.text}." if truth else "The teacher revealed the room's answers.",
                   icon=":material/lightbulb:")
        st.caption(f"Your answer: {shown(mine, step.question)}." if mine is not None else "You did not answer.")
        return
    if q["status"] == "closed":
        st.caption("The teacher closed the question" + (f"; your answer: {shown(mine, step.question)}."
                                                         if mine is not None else "; you did not answer."))
        return
    _answer_form(room, s, step.question, mine)


def _answer_form(room, s, question, mine) -> None:
    from explorer.workshop.answers import shown

    with st.form(f"lesson-answer-{s.run}-{s.step}", border=False, enter_to_submit=True):
        c = st.columns([3, 1], vertical_alignment="bottom")
        label = "Your answer" + (f" ({question.unit})" if question.unit else "")
        if question.kind == "choice":
            raw = c[0].radio(label, question.choices, horizontal=True, key=f"lesson-ans-{s.run}-{s.step}",
                             index=question.choices.index(mine) if mine in question.choices else None)
        else:
            raw = c[0].text_input(label, key=f"lesson-ans-{s.run}-{s.step}", max_chars=200,
                                  placeholder="a number, e.g. 150000, 1.5e5 or 150k" if question.kind == "number"
                                  else f"a few words (at most {question.max_chars} characters)")
        sent = c[1].form_submit_button("Send my answer", icon=":material/send:", width="stretch",
                                      key=f"lesson-send-{s.run}-{s.step}")
    if sent:
        try:
            mine = room.answer(who(), s.step, raw)
        except RoomError as e:
            st.error(f"Refused: {e}.", icon=":material/block:")
    if mine is not None:
        st.caption(f"Your answer: {shown(mine, question)} (you can change it until the teacher closes the question).")


def _teacher_buttons(s) -> None:
    c = st.columns(2)
    c[0].button("Previous step", key="lesson-banner-prev", on_click=lead, args=("move", "prev"),
                icon=":material/skip_previous:", disabled=s.step == 0, width="stretch")
    c[1].button("Next step", key="lesson-banner-next", on_click=lead, args=("move", "next"),
                icon=":material/skip_next:", disabled=s.step >= s.n_steps - 1, width="stretch")


def _banner(room, s, lesson, page: str) -> None:
    b = F.banner(s, lesson)
    step = lesson.steps[s.step]
    here = F.on_step(s, lesson, page, st.session_state.get(FOLLOWED))
    with st.container(border=True, key="lesson-banner"):
        st.markdown(f":material/school: **Step {b['k']} of {b['n']} · {b['title']}** — *{b['lesson']}*, on the "
                    f"{b['page_title']} page")
        st.markdown(f"**Do:** {b['do']}")
        q = room.question(s.step) if step.question is not None else None
        if q is None or q["status"] == "revealed":
            st.markdown(f"**Notice:** {b['notice']}")
        teacher = unlocked()  # the teacher on another page: Previous and Next in the banner
        c = st.columns([2, 2, 2] + ([3] if teacher else []), vertical_alignment="center")
        with c[0]:
            _follow_switch()
        if not here:
            go = F.back_to_lesson(s, lesson)
            if c[1].button("Back to the lesson", key="lesson-back", icon=":material/undo:", type="primary",
                           help="Open the step the teacher is on, with its settings"):
                open_step(go)
        with c[2]:
            st.toggle("Show the join address", key=JOIN_SW, help="The address and QR code participants open")
        if teacher:
            with c[3]:
                _teacher_buttons(s)
        if page != F.LEAD_PAGE:  # the Lesson page shows its messages beside its controls
            show_message()
        if step.question is not None:
            _answer_box(room, s, step, q)
        if st.session_state.get(JOIN_SW):
            join_block()


def lesson_frame(current) -> None:
    """The lesson's part of every page (``ui.frame.chrome``): follow the room, the banner, the polling fragment."""
    room = room_or_none()
    if room is None:
        return
    try:
        s = room.state()
        if not s.running and token_problem() is not None:
            return  # lessons cannot be led on this server and none runs: nothing to draw, nothing to poll
        lesson = room.lesson(s.run) if s.running else None
        st.session_state[SEEN] = watch_key(room, s, current.key)
    except Exception:  # noqa: BLE001 - the room's file unreadable: the page itself still works
        return
    go = F.back_to_lesson(s, lesson)
    st.session_state[PAGE_KEY] = (current.key, go.page if go else None)
    own_keys()  # remembers the address's sid
    if lesson is not None:
        _follow_now(s, lesson, current.key)
    _beat(room, s, lesson, current.key, time.time())
    if lesson is not None and not (current.key == F.LEAD_PAGE and unlocked()):  # the teacher's page shows it all
        _banner(room, s, lesson, current.key)
    _ticker(room, current.key, POLL_S if s.running else IDLE_POLL_S)


# ----------------------------------------------------------------------------- the teacher's actions


def say(kind: str, text: str) -> None:
    st.session_state[MSG] = (kind, text)


def show_message() -> None:
    msg = st.session_state.pop(MSG, None)
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1], icon=":material/check:" if msg[0] == "ok"
                                                      else ":material/block:")


DONE = {"move": "Moved the room to step {k}.", "start": "Started “{title}”: the room is on step 1.",
        "end": "Ended the lesson; its record stays for the take-home.", "close": "Closed the question.",
        "reopen": "Opened the question again."}


def lead(action: str, *args, **kw):
    """One instructor action on the room (``Room.<action>(*args, token=..., who=...)``) with the token typed on the
    Lesson page; its result, or None after one line saying why it was refused (shown by the next run)."""
    room = room_or_none()
    if room is None:
        say("error", "Refused: the lesson room cannot be opened.")
        return None
    try:
        out = getattr(room, action)(*args, token=st.session_state.get(TOKEN, ""), who=who(), **kw)
    except RoomError as e:
        say("error", f"Refused: {e}.")
        return None
    s = room.state()
    if action in DONE:
        say("ok", DONE[action].format(k=s.step + 1, title=s.title))
    return out


# ----------------------------------------------------------------------------- joining


def _host() -> tuple[str | None, str]:
    try:
        h = st.context.headers
        proto = (h.get("X-Forwarded-Proto") or "http").split(",")[0].strip()
        return h.get("X-Forwarded-Host") or h.get("Host"), proto
    except Exception:  # noqa: BLE001 - no request (AppTest, scripts)
        return None, "http"


def join_info():
    """The address participants open (``explorer.workshop.joining.JoinInfo``): ``PEFT_EXPLORER_PUBLIC_URL``, else
    the host this request reached."""
    from explorer.workshop.joining import join_url

    host, scheme = _host()
    return join_url(host, scheme=scheme)


def join_block(width: int = 220) -> None:
    """The address participants open and its QR code."""
    from explorer.workshop.joining import qr_png

    info = join_info()
    png = base64.b64encode(qr_png(info.url, scale=10)).decode()
    c = st.columns([1, 3], vertical_alignment="center")
    c[0].html(f'<img src="data:image/png;base64,{png}" alt="QR code of the join address {escape(info.url)}" '
              f'style="width: {width}px; max-width: 100%; image-rendering: pixelated">')
    with c[1]:
        st.markdown(f"#### Join the workshop\nOpen **{info.url}** on your laptop or phone, or scan the code. When "
                    "the teacher leads a lesson, your page follows it.")
        if info.warning:
            st.caption(info.warning[0].upper() + info.warning[1:] + ".")
