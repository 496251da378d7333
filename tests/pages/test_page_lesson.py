"""Page tests (AppTest) of the live lesson: the Lesson page's token (refused, accepted, never in the address), a
malformed upload (one line naming the step and the field), the banner every page draws while a lesson runs (a
move changes it and a following page opens the step with its settings; the session's runs are kept), following
switched off, answering from the banner, and the teacher's question panel (answers, close, reveal with the truth
computed by the project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.apptest import no_problem, page_app, qp

ROOT = Path(__file__).resolve().parents[2]
LESSON_PAGE = "pages/8_Lesson.py"
HOME = "pages/0_Home.py"
TOKEN = "the lesson page's token"
SID = "cd" * 16


@pytest.fixture(autouse=True)
def room_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_ROOM", str(tmp_path / "room.sqlite"))
    monkeypatch.setenv("PEFT_EXPLORER_BOARD", str(tmp_path / "board.sqlite"))
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    monkeypatch.delenv("PEFT_EXPLORER_LESSON", raising=False)


def room():
    from explorer.workshop.room import default_room

    return default_room()


def lesson(title: str = "What LoRA trains"):
    from explorer.workshop.lessons import bundled_lessons

    return bundled_lessons()[title]


def open_at(path: str, **params):
    at = page_app(path, 120)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    return at


def banner_text(at) -> str:
    return "\n".join(m.value for m in at.markdown if m.value.startswith(":material/school: **Step "))


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def unlock(at, token: str = TOKEN):
    at.text_input(key="lesson_token_in").input(token).run()
    at.button(key="lesson_unlock").click().run()
    return at


# ----------------------------------------------------------------------------- the token


def test_the_token_is_refused_then_accepted_and_never_in_the_address():
    at = open_at(LESSON_PAGE)
    no_problem(at)
    assert not [b for b in at.button if b.key == "lesson_start"]  # locked: no controls
    unlock(at, "a wrong token")
    assert errors(at) == ["Refused: wrong instructor token."]
    assert not [b for b in at.button if b.key == "lesson_start"]
    unlock(at)
    no_problem(at)
    assert [s.value for s in at.success] == ["Lesson controls unlocked for this session."]
    assert at.button(key="lesson_start")
    assert all(TOKEN not in str(v) for v in at.query_params.values())
    at.button(key="lesson_start").click().run()
    no_problem(at)
    s = room().state()
    assert s.running and s.title == "What LoRA trains" and s.step == 0
    at.button(key="lesson_next").click().run()
    assert room().state().step == 1
    assert "### Step 2 of 5: Rank 1 against rank 64" in [m.value for m in at.markdown]


def test_without_a_token_nothing_is_led_drawn_or_polled(monkeypatch):
    monkeypatch.delenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN")
    at = open_at(LESSON_PAGE)
    no_problem(at)
    assert any("Leading a lesson is disabled" in c.value for c in at.caption)
    home = open_at(HOME)
    assert not [t for t in home.toggle if t.key == "lesson_follow"] and not banner_text(home)


# ----------------------------------------------------------------------------- uploads


def test_a_malformed_upload_is_one_line_naming_the_step_and_the_field():
    bad = (ROOT / "assets/lessons/1-what-lora-trains.toml").read_text().replace("a_rank = 16", "a_rnak = 16")
    at = unlock(open_at(LESSON_PAGE))
    at.file_uploader(key="lesson_upload").set_value(("mine.toml", bad.encode(), "text/plain")).run()
    assert not at.exception
    assert errors(at) == ["mine.toml: step 3 ('Check your prediction: r = 16'), settings.a_rnak: the page Methods "
                          "playground has no such setting; did you mean 'a_rank'?"]
    assert not any("uploaded" in o for o in at.selectbox(key="lesson_pick").options)
    good = bad.replace("a_rnak = 16", "a_rank = 16").replace('title = "What LoRA trains"', 'title = "My LoRA"')
    at.file_uploader(key="lesson_upload").set_value(("mine.toml", good.encode(), "text/plain")).run()
    no_problem(at)
    assert at.selectbox(key="lesson_pick").value == "My LoRA (uploaded)"
    at.button(key="lesson_start").click().run()
    assert room().state().title == "My LoRA"


# ----------------------------------------------------------------------------- the banner and following


@pytest.fixture()
def hist():
    from explorer.workshop.history import RunEntry, RunHistory

    h = RunHistory()
    h.add(RunEntry(id="run1", config=dict(method="lora", model="tiny-bert"),
                   summary=dict(status="finished", final_accuracy=0.5), records=[]))
    return h


def participant(hist, path: str = HOME, **params):
    at = page_app(path, 120)
    at.query_params["sid"] = SID
    for k, v in params.items():
        at.query_params[k] = v
    at.session_state["run_history"] = hist
    at.run()
    return at


def test_a_move_changes_the_banner_and_a_following_page_opens_the_step(hist):
    r = room()
    r.start(lesson(), TOKEN, "teacher")
    at = participant(hist, proj="1")  # this participant's laptop is in projector mode
    no_problem(at)
    assert "Step 1 of 5 · Eight methods, one model" in banner_text(at)
    assert at.toggle(key="lesson_follow").value is True
    who = at.session_state["_lesson_who"]
    assert r.present(0) == 1  # its heartbeat: on step 1 (Home is the step's page)
    r.move("next", TOKEN, "teacher")
    at.run()
    no_problem(at)
    assert "Step 2 of 5 · Rank 1 against rank 64" in banner_text(at)
    assert any(h.value == "Methods playground" for h in at.title)  # it opened the step's page ...
    assert (qp(at, "a_rank"), qp(at, "b_rank"), qp(at, "m1")) == ("1", "64", "lora")  # the step's settings
    assert qp(at, "proj") == "1"  # ... and the participant's own mode
    assert at.session_state["run_history"] is hist and [e.id for e in hist.runs] == ["run1"]  # runs kept
    assert at.session_state["_lesson_who"] == who
    assert r.present(1) == 1 and r.present(0) == 0
    r.start(lesson("Fine-tune and compare"), TOKEN, "teacher")  # a new lesson: its first step, on Fine-tune
    at.run()
    no_problem(at)
    assert any(h.value == "Fine-tune" for h in at.title)
    assert (qp(at, "method"), qp(at, "steps"), qp(at, "sid"), qp(at, "proj")) == ("lora", "60", SID, "1")
    assert [e.id for e in at.session_state["run_history"].runs] == ["run1"]


def test_a_page_that_does_not_follow_stays_and_comes_back_when_asked(hist):
    r = room()
    r.start(lesson(), TOKEN, "teacher")
    at = participant(hist)
    at.toggle(key="lesson_follow").set_value(False).run()
    r.move(2, TOKEN, "teacher")
    at.run()
    assert "Step 3 of 5" in banner_text(at)
    assert any(h.value == "PEFT Explorer" for h in at.title)  # still Home
    assert r.present(2) == 0  # not on the step
    at.button(key="lesson-back").click().run()
    no_problem(at)
    assert any(h.value == "Methods playground" for h in at.title) and qp(at, "a_rank") == "16"
    assert at.toggle(key="lesson_follow").value is False  # still its own choice
    r.move("next", TOKEN, "teacher")
    at.run()
    assert "Step 4 of 5" in banner_text(at) and qp(at, "a_rank") == "16"  # stays on step 3's view


def test_answers_from_the_banner_one_per_session_changeable_refusals_one_line(hist):
    r = room()
    r.start(lesson(), TOKEN, "teacher")
    r.move("next", TOKEN, "teacher")
    at = participant(hist)  # joins at Home while the room is on step 2: lands in it
    assert any(h.value == "Methods playground" for h in at.title) and qp(at, "b_rank") == "64"
    run = r.state().run
    box, send = f"lesson-ans-{run}-1", f"lesson-send-{run}-1"
    at.text_input(key=box).input("<b>1</b>")
    at.button(key=send).click().run()
    assert errors(at) == ["Refused: type a number, such as 147456, 1.5e5 or 150k."]
    at.text_input(key=box).input("150k")
    at.button(key=send).click().run()
    no_problem(at)
    who = at.session_state["_lesson_who"]
    assert r.my_answer(who, 1) == 150000.0
    at.text_input(key=box).input("2e5")
    at.button(key=send).click().run()
    assert r.my_answer(who, 1) == 200000.0 and r.tally(1)["n"] == 1  # changed, still one answer
    assert any("Your answer: 200,000 parameters" in c.value for c in at.caption)
    r.close(1, TOKEN, "teacher")
    at.run()
    assert not [t for t in at.text_input if t.key == box]  # closed: no more answers
    assert any("The teacher closed the question; your answer: 200,000 parameters." in c.value for c in at.caption)


def test_the_teachers_panel_counts_closes_and_reveals_the_computed_truth():
    r = room()
    at = unlock(open_at(LESSON_PAGE))
    at.button(key="lesson_start").click().run()
    at.button(key="lesson_next").click().run()
    for who, a in (("p1", "150k"), ("p2", "147456"), ("p3", "1e6")):
        r.answer(who, 1, a)
    at.run()
    no_problem(at)
    assert [m.value for m in at.metric if m.label == "answers"] == ["3"]
    at.button(key="lesson_close").click().run()
    assert r.question(1)["status"] == "closed" and at.button(key="lesson_reopen")
    at.button(key="lesson_reveal").click().run()
    no_problem(at)
    revealed = [s.value for s in at.success if s.value.startswith("**Revealed:**")]
    assert revealed == ["**Revealed:** 147,456 trainable parameters: LoRA (r=16 on q,v) on minilm, the "
                        "classification head left out, counted from the adapter's tensors. 2 of 3 answered it "
                        "(within 10 %)."]
    assert r.question(1)["truth"].value == 147456


def test_the_unlocked_teacher_moves_the_room_from_any_pages_banner_and_follows_it():
    at = unlock(open_at(LESSON_PAGE))
    at.button(key="lesson_start").click().run()
    assert not banner_text(at)  # the teacher's own page shows the step itself, without a banner
    at.switch_page(HOME).run()
    no_problem(at)
    assert "Step 1 of 5" in banner_text(at)
    at.button(key="lesson-banner-next").click().run()
    no_problem(at)
    assert room().state().step == 1
    assert "Step 2 of 5" in banner_text(at) and any(h.value == "Methods playground" for h in at.title)
    assert [s.value for s in at.success] == ["Moved the room to step 2."]
