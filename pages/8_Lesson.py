"""Lesson: the teacher leads the room step by step; everyone answers the step's question and takes the workshop home.

The instructor token (the class board's, ``PEFT_EXPLORER_INSTRUCTOR_TOKEN``) is typed in a password field, never
put in a URL; it unlocks Start (a bundled lesson, the operator's ``--lesson`` file or an upload), Next, Previous,
a jump, End, the agenda and the question panel for the projector (the room's answers live, Close, Reveal: the truth
is computed now by ``Room.reveal``).  Following never moves a page away from this one.
"""

from __future__ import annotations

import re
import time

import streamlit as st

from explorer.views import lesson_figures as LF
from explorer.workshop.answers import shown
from explorer.workshop.lessons import LessonError, parse_lesson, server_lessons
from explorer.workshop.room import RoomError, token_problem
from ui import frame, lesson_panel as LP, modes, session

UPLOADED = "_lesson_uploaded"  # the lesson this session uploaded (parsed)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "lesson"


def _ago(t) -> str:
    return time.strftime("%H:%M", time.localtime(t)) if t else "?"


# ----------------------------------------------------------------------------- the token


def _unlock() -> None:
    typed = st.session_state.get("lesson_token_in") or ""
    room = LP.room_or_none()
    try:
        if room is None:
            raise RoomError("the lesson room cannot be opened")
        room.authorize(typed, LP.who())
    except RoomError as e:
        st.session_state[LP.UNLOCKED] = False
        LP.say("error", f"Refused: {e}.")
        return
    st.session_state[LP.TOKEN], st.session_state[LP.UNLOCKED] = typed, True
    st.session_state["lesson_token_in"] = ""
    LP.say("ok", "Lesson controls unlocked for this session.")


def _lock() -> None:
    for k in (LP.TOKEN, LP.UNLOCKED):
        st.session_state.pop(k, None)


def unlock_box() -> None:
    why = token_problem()
    if why:
        st.caption(why)
        return
    if LP.unlocked():
        st.button("Lock the controls", key="lesson_lock", on_click=_lock, icon=":material/lock:",
                  help="Forget the token in this session")
        return
    st.markdown("#### Lead the lesson")
    c = st.columns([3, 1], vertical_alignment="bottom")
    c[0].text_input("Instructor token", type="password", key="lesson_token_in",
                    help="set by the server's operator in PEFT_EXPLORER_INSTRUCTOR_TOKEN (the class board's); "
                         "never put it in a link")
    c[1].button("Unlock", key="lesson_unlock", on_click=_unlock, icon=":material/lock_open:", width="stretch")


# ----------------------------------------------------------------------------- starting a lesson


def lessons_offered() -> dict:
    lessons, problems = server_lessons()
    for p in problems:
        st.caption(f"Not offered: {p}")
    up = st.session_state.get(UPLOADED)
    if up is not None:
        lessons = {f"{up.title} (uploaded)": up, **lessons}
    return lessons


def upload() -> None:
    f = st.file_uploader("Or upload a lesson file (TOML or JSON)", type=["toml", "json"], key="lesson_upload",
                         help="the format of assets/lessons/*.toml; checked step by step against every page")
    if f is None:
        return
    try:
        lesson = parse_lesson(f.getvalue(), f.name)
    except LessonError as e:
        st.error(str(e), icon=":material/error:")
        return
    old = st.session_state.get(UPLOADED)
    if old is None or old.key != lesson.key:  # a new file: picked at once
        st.session_state[UPLOADED] = lesson
        st.session_state["lesson_pick"] = f"{lesson.title} (uploaded)"


def start_box(s) -> None:
    upload()
    lessons = lessons_offered()
    pick = st.selectbox("Lesson", list(lessons), key="lesson_pick",
                        format_func=lambda t: f"{t} · {len(lessons[t].steps)} steps, {lessons[t].minutes:g} min")
    label = "Start this lesson" + (" (ends the running one)" if s.running else "")
    st.button(label, key="lesson_start", on_click=LP.lead, args=("start", lessons[pick]), type="primary",
              icon=":material/play_arrow:")


# ----------------------------------------------------------------------------- leading it


def moves(s, lesson) -> None:
    frame.main_control()
    c = st.columns([2, 2, 3, 2, 2], vertical_alignment="bottom")
    c[0].button("Next step", key="lesson_next", on_click=LP.lead, args=("move", "next"), type="primary",
                icon=":material/skip_next:", disabled=s.step >= s.n_steps - 1, width="stretch")
    c[1].button("Previous step", key="lesson_prev", on_click=LP.lead, args=("move", "prev"),
                icon=":material/skip_previous:", disabled=s.step == 0, width="stretch")
    titles = [f"{st_.index + 1}. {st_.title}" for st_ in lesson.steps]
    to = c[2].selectbox("Jump to", range(len(titles)), index=s.step, format_func=titles.__getitem__,
                        key=f"lesson_jump_{s.run}_{s.step}")
    c[3].button("Go there", key="lesson_go", on_click=LP.lead, args=("move", int(to)), icon=":material/redo:",
                width="stretch")
    confirm = c[4].checkbox("Yes, end it", key="lesson_end_ok")
    c[4].button("End the lesson", key="lesson_end", on_click=LP.lead, args=("end",), disabled=not confirm,
                icon=":material/stop:", width="stretch")


def agenda(room, s) -> None:
    import pandas as pd

    rows = LF.agenda_rows(room.agenda())
    planned = sum(r["planned (min)"] for r in rows)
    spent = sum(r["spent (min)"] for r in rows)
    st.markdown("#### Agenda")
    st.caption(f"Planned {planned:g} min (from the lesson file); spent {spent:.1f} min so far "
               f"(started {_ago(s.started)}; this step since {_ago(s.step_started)}).")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def question_panel(room, s, step) -> None:
    """The projector's view of the step's question: the room's answers live, Close / Reveal, the truth."""
    q, t = room.question(s.step), room.tally(s.step)
    question = step.question
    st.subheader(question.prompt)
    m = st.columns(3)
    m[0].metric("answers", t["n"])
    m[1].metric("on this step now", room.present(), help="participants whose page shows this step (last 20 s)")
    m[2].metric("question", q["status"])
    fig = LF.answers_figure(t, question, modes.plotly_template())
    if fig is not None:
        modes.show_fig(fig, key="lesson-answers")
    if t["kind"] == "number" and t["n"]:
        st.caption(f"Median {shown(t['median'], question)}; the middle half from {shown(t['q1'], question)} to "
                   f"{shown(t['q3'], question)}; {t['n']} answers from {shown(t['min'], question)} to "
                   f"{shown(t['max'], question)}.")
    if t["kind"] == "text":
        st.markdown(" · ".join(f"{a['text']}" + (f" ({a['count']})" if a["count"] > 1 else "")
                               for a in t["answers"]) or "No answers yet.")
    elif not t["n"]:
        st.info("No answers yet: the participants answer in the banner of their page.", icon=":material/hourglass_top:")
    if q["truth"] is not None:
        right = f" {t['right']} of {t['n']} answered it" + (" (within 10 %)" if t["kind"] == "number" else "") + \
            "." if "right" in t else ""
        st.success(f"**Revealed:** {q['truth'].text}.{right}", icon=":material/lightbulb:")
    question_buttons(s, q)


def question_buttons(s, q) -> None:
    c = st.columns(3)
    if q["status"] == "open":
        c[0].button("Close the question", key="lesson_close", on_click=LP.lead, args=("close", s.step),
                    icon=":material/lock:", width="stretch")
    elif q["status"] == "closed":
        c[0].button("Open it again", key="lesson_reopen", on_click=LP.lead, args=("reopen", s.step),
                    icon=":material/lock_open:", width="stretch")
    label = "Reveal the truth" if q["status"] != "revealed" else "Reveal again (recompute)"
    if c[1].button(label, key="lesson_reveal", icon=":material/lightbulb:", type="primary", width="stretch",
                   help="closes the question; the project computes the truth now (a count, a size, a measured "
                        "accuracy from the room's runs)"):
        from explorer.workshop.truths import TruthContext
        from ui.models import get_base

        with st.spinner("Computing the truth…", show_time=True):
            LP.lead("reveal", s.step, ctx=TruthContext(load_model=get_base))
        st.rerun()


def lead_box(room, s, lesson) -> None:
    LP.show_message()
    if s.running and lesson is not None:
        moves(s, lesson)
        step = lesson.steps[s.step]
        st.markdown(f"### Step {s.step + 1} of {s.n_steps}: {step.title}")
        st.caption(f"{step.page_title} page · {step.minutes:g} min planned · {room.present()} participant(s) on "
                   f"this step, {room.participants()} connected (last 20 s)")
        frame.page_link(step.page, label=f"Open this step's view ({step.page_title})", query=dict(step.query))
        if step.question is not None:
            with st.container(border=True, key="lesson-question"):
                question_panel(room, s, step)
        agenda(room, s)
    with st.expander("Start a lesson", expanded=not s.running):
        start_box(s)


# ----------------------------------------------------------------------------- taking it home


def takehome(room, s) -> None:
    from explorer.workshop.board import default_board
    from explorer.workshop.takehome import takehome_data, takehome_files

    st.markdown("#### Take the workshop home")
    runs = room.runs()
    if not runs:
        st.caption("No lesson has run on this server yet: the take-home appears once the teacher starts one.")
        return
    run = s.run if s.run is not None else runs[0]["run"]
    lesson = room.lesson(run)
    hist, me, base = session.session_history(), LP.who(), LP.join_info().url

    def doc():
        try:
            board = default_board().entries()
        except Exception:  # noqa: BLE001 - no board: the take-home without it
            board = []
        return takehome_files(takehome_data(lesson, room.record(run, who=me), hist.runs, board, base_url=base))

    n = len(hist.runs)
    yours = "your own runs (none yet)" if not n else f"your own {n} run{'s' if n != 1 else ''}"
    st.caption(f"“{lesson.title}”: each step with the link that reproduces its view, the room's answers and the "
               f"revealed truths, the class board and {yours}. One HTML file that prints (A4 or Letter), and the "
               "JSON behind it.")
    c = st.columns(2)
    c[0].download_button("Download the workshop (HTML)", lambda: doc()[0], file_name=f"{_slug(lesson.title)}.html",
                         mime="text/html", on_click="ignore", icon=":material/download:", key="lesson_th_html")
    c[1].download_button("Download its data (JSON)", lambda: doc()[1], file_name=f"{_slug(lesson.title)}.json",
                         mime="application/json", on_click="ignore", icon=":material/data_object:",
                         key="lesson_th_json")


def handout() -> None:
    from explorer.workshop.takehome import handout_data, render_html

    with st.expander("A printable handout of a lesson (before the workshop)"):
        lessons = lessons_offered()
        pick = st.selectbox("Lesson", list(lessons), key="lesson_handout_pick")
        base = LP.join_info().url
        lesson = lessons[pick]
        st.download_button("Download the handout (HTML)", lambda: render_html(handout_data(lesson, base_url=base)),
                           file_name=f"{_slug(lesson.title)}-handout.html", mime="text/html", on_click="ignore",
                           icon=":material/print:", key="lesson_handout")
        st.caption("Steps, links (each with a QR code), questions with room to write a prediction.")


def body():
    st.title("Lesson")
    room = LP.room_or_none()
    if room is None:
        st.error("The lesson room cannot be opened on this server.", icon=":material/error:")
        return
    s = room.state()
    lesson = room.lesson(s.run) if s.run is not None else None
    if s.running:
        st.markdown(f"**{s.title}** is running: step {s.step + 1} of {s.n_steps}. Every page shows the step in its "
                    "banner and, with *Follow the teacher* on, opens it when the teacher moves.")
    else:
        st.markdown("No lesson is running. When the teacher starts one, every page shows its step in a banner and "
                    "follows the teacher (switchable on each page). This page never moves you.")
    if LP.unlocked():
        lead_box(room, s, lesson)
    else:
        LP.show_message()
        frame.main_control()
    unlock_box()
    st.divider()
    takehome(room, s)
    handout()


frame.run_page(body)
