"""The room's lesson state (explorer/workshop/room.py): instructor-only moves with a version that changes on each,
answers (one per session per question, changeable until closed, refused with one line), rate limits, heartbeats,
the agenda's time spent, reveals with a computed truth, a restart, two connections and two server processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.workshop.lessons import parse_lesson
from explorer.workshop.room import HEARTBEAT_S, PRESENT_S, Room, RoomError
from explorer.workshop.truths import TruthContext

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "room-token-123"


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


LESSON = dict(title="Room test", steps=[
    dict(title="Count", page="playground", settings=dict(m1="lora"), do="d", notice="n", minutes=2,
         question=dict(kind="number", prompt="How many?", max=1e9, truth=dict(
             kind="trainable_count", model="tiny-bert", method="lora", knobs=dict(rank=4, targets=["q", "v"]),
             part="adapter"))),
    dict(title="Pick", page="compare", do="d", notice="n", minutes=3,
         question=dict(kind="choice", prompt="Which?", choices=["LoRA", "SMT"], truth=dict(
             kind="best_method_by_accuracy", source="room_runs", model="minilm", task="colour-shape"))),
    dict(title="Say", page="board", do="d", notice="n", minutes=1,
         question=dict(kind="text", prompt="One word?", max_chars=20)),
    dict(title="Read", page="claims", settings=dict(claim="smt"), do="d", notice="n", minutes=4),
])


@pytest.fixture
def lesson():
    return parse_lesson(json.dumps(LESSON), "room-test.json")


@pytest.fixture
def room(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    return Room(tmp_path / "room.sqlite", clock=Clock())


def test_only_the_instructor_token_starts_and_moves_and_each_move_changes_the_version(room, lesson, monkeypatch):
    s0 = room.state()
    assert (s0.status, s0.run, s0.version) == ("idle", None, 0)
    for bad, msg in (("", "type the instructor token first"), ("nope", "wrong instructor token"),
                     (None, "type the instructor token first")):
        with pytest.raises(RoomError, match=f"^{msg}$"):
            room.start(lesson, bad, "p1")
    assert room.state() == s0  # nothing changed
    s = room.start(lesson, TOKEN, "teacher")
    assert (s.status, s.step, s.n_steps, s.title, s.run) == ("running", 0, 4, "Room test", 1)
    versions = [s.version]
    for to, step in (("next", 1), ("next", 2), ("prev", 1), (3, 3)):
        s = room.move(to, TOKEN, "teacher")
        assert s.step == step
        versions.append(s.version)
    assert len(set(versions)) == len(versions) and versions == sorted(versions)
    with pytest.raises(RoomError, match="^this is the last step$"):
        room.move("next", TOKEN, "teacher")
    with pytest.raises(RoomError, match="^there is no step 9: the lesson has 4$"):
        room.move(8, TOKEN, "teacher")
    with pytest.raises(RoomError, match="^move to 'next', 'prev' or a step number$"):
        room.move("up", TOKEN, "teacher")
    room.move(0, TOKEN, "teacher")
    with pytest.raises(RoomError, match="^this is the first step$"):
        room.move("prev", TOKEN, "teacher")
    with pytest.raises(RoomError, match="^wrong instructor token$"):
        room.move("next", "nope", "p2")
    assert room.state().step == 0
    s = room.end(TOKEN, "teacher")
    assert s.status == "ended" and not s.running
    with pytest.raises(RoomError, match="^no lesson is running; start one first$"):
        room.move("next", TOKEN, "teacher")


def test_without_a_token_leading_is_disabled_and_wrong_tokens_are_limited(room, lesson, monkeypatch):
    for i in range(5):
        with pytest.raises(RoomError, match="^wrong instructor token$"):
            room.authorize(f"guess{i}", "p1")
    with pytest.raises(RoomError, match=r"^too many wrong instructor tokens from this session; wait 300 s$"):
        room.start(lesson, TOKEN, "p1")  # even the right one, from this session, for a while
    room.start(lesson, TOKEN, "teacher")  # another session is not held back
    room.clock.t += 301
    room.authorize(TOKEN, "p1")
    monkeypatch.delenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN")
    with pytest.raises(RoomError, match="^Leading a lesson is disabled: the server's operator has not set "
                                        "PEFT_EXPLORER_INSTRUCTOR_TOKEN"):
        room.move("next", TOKEN, "teacher")
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", "short")
    with pytest.raises(RoomError, match="shorter than 8 characters"):
        room.move("next", "short", "teacher")


def test_one_answer_per_session_changeable_until_closed(room, lesson):
    with pytest.raises(RoomError, match="^no lesson is running$"):
        room.answer("p1", 0, "5")
    room.start(lesson, TOKEN, "teacher")
    v0 = room.state().answers_version
    assert room.answer("p1", 0, "150k") == 150000.0
    assert room.answer("p1", 0, "147,456") == 147456.0  # changed, not added
    assert room.answer("p2", 0, 3e4) == 30000.0
    assert sorted(room.answers(0)) == [30000.0, 147456.0] and room.my_answer("p1", 0) == 147456.0
    assert room.state().answers_version == v0 + 3 and room.question(0)["n"] == 2
    with pytest.raises(RoomError, match="^the teacher has not reached this question yet$"):
        room.answer("p1", 1, "LoRA")
    with pytest.raises(RoomError, match="^this step asks no question$"):
        room.answer("p1", 3, "x")
    with pytest.raises(RoomError, match="^this step asks no question$"):
        room.answer("p1", 99, "x")
    room.close(0, TOKEN, "teacher")
    assert room.question(0)["status"] == "closed"
    with pytest.raises(RoomError, match="^the teacher has closed this question$"):
        room.answer("p1", 0, "1")
    with pytest.raises(RoomError, match="^wrong instructor token$"):
        room.reopen(0, "x", "p1")
    room.reopen(0, TOKEN, "teacher")
    room.answer("p3", 0, "1")
    assert room.question(0)["n"] == 3


@pytest.mark.parametrize("step,raw,message", [
    (0, float("nan"), "type a finite number"), (0, "nan", "type a number"), (0, "inf", "type a number"),
    (0, -5, r"an answer between 0 and 1e\+09, please"), (0, "1e30", r"an answer between 0 and 1e\+09"),
    (0, "<b>5</b>", "type a number"), (0, "5" * 10_000, "that answer is 10,000 characters long"),
    (0, True, "type a number"), (0, [1], "type a number"),
    (1, "Full", "pick one of the choices"), (1, "lora", "pick one of the choices"), (1, 1, "pick one"),
    (2, "<script>alert(1)</script>", r"letters, digits, spaces and - \. ' ! \? , only \(not less-than sign\)"),
    (2, "**bold**", r"only \(not asterisk\)"), (2, "x" * 21, r"at most 20 characters, please \(21 typed\)"),
    (2, "a\nb", "no tabs, line breaks"), (2, "\u200b\u200b", "type a few words"), (2, "   ", "no answer given"),
    (2, "x" * 10_240, "that answer is 10,240 characters long; keep it short"),
])
def test_hostile_answers_are_refused_with_one_line(room, lesson, step, raw, message):
    room.start(lesson, TOKEN, "teacher")
    room.move(2, TOKEN, "teacher")  # every question reached
    with pytest.raises(RoomError, match=message) as e:
        room.answer("p1", step, raw)
    assert "\n" not in str(e.value)
    assert room.answers(step) == []


def test_free_text_is_cleaned_and_counted_case_folded(room, lesson):
    room.start(lesson, TOKEN, "teacher")
    room.move(2, TOKEN, "teacher")
    for who, text in (("a", "Plateau!"), ("b", "plateau! "), ("c", "ＬｏＲＡ"), ("d", "rank  matters")):
        room.answer(who, 2, text)
    t = room.tally(2)
    assert t["answers"] == [dict(text="Plateau!", count=2), dict(text="LoRA", count=1),
                            dict(text="rank matters", count=1)]


def test_answers_are_rate_limited_per_session_and_per_room(tmp_path, monkeypatch, lesson):
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    clock = Clock()
    room = Room(tmp_path / "r.sqlite", clock=clock, session_limit=(3, 60.0), global_limit=(5, 60.0))
    room.start(lesson, TOKEN, "teacher")
    for i in range(3):
        room.answer("p1", 0, str(i))
    with pytest.raises(RoomError, match="^you answered 3 times in the last 60 s; wait 60 s$"):
        room.answer("p1", 0, "9")
    room.answer("p2", 0, "1")
    room.answer("p3", 0, "1")
    with pytest.raises(RoomError, match="^the room is answering faster than the server takes; try again in 60 s$"):
        room.answer("p4", 0, "1")
    assert room.my_answer("p1", 0) == 2.0 and room.my_answer("p4", 0) is None
    clock.t += 61
    room.answer("p4", 0, "7")
    monkeypatch.setenv("PEFT_EXPLORER_ANSWER_RATE", "2")
    assert Room(tmp_path / "r.sqlite").session_limit == (2, 60.0)


def test_heartbeats_count_who_is_on_the_current_step(room, lesson):
    room.start(lesson, TOKEN, "teacher")
    assert room.heartbeat("p1", 0) and room.heartbeat("p2", 0) and room.heartbeat("p3", None)
    assert not room.heartbeat("p1", 0)  # throttled: same step within HEARTBEAT_S
    assert (room.present(), room.participants()) == (2, 3)
    room.move("next", TOKEN, "teacher")
    assert room.present() == 0 and room.present(0) == 2
    assert room.heartbeat("p1", 1)  # a new step is written at once
    assert (room.present(), room.present(0)) == (1, 1)
    room.clock.t += HEARTBEAT_S + 1
    assert room.heartbeat("p2", 0)
    room.clock.t += PRESENT_S - 1
    assert (room.present(), room.present(0)) == (0, 1)  # p1's beat is older than PRESENT_S, p2's is not


def test_the_agenda_sums_the_time_spent_on_each_step(room, lesson):
    room.start(lesson, TOKEN, "teacher")
    room.clock.t += 90
    room.move("next", TOKEN, "teacher")
    room.clock.t += 200
    room.move("prev", TOKEN, "teacher")
    room.clock.t += 30
    a = room.agenda()
    assert [(r["spent_s"], r["visited"], r["current"]) for r in a] == [
        (120.0, True, True), (200.0, True, False), (0.0, False, False), (0.0, False, False)]
    assert [r["minutes"] for r in a] == [2, 3, 1, 4]
    room.end(TOKEN, "teacher")
    room.clock.t += 500  # an ended lesson's clock stops
    assert [r["spent_s"] for r in room.agenda()] == [120.0, 200.0, 0.0, 0.0]


def test_the_reveal_computes_the_truth_from_the_method_code_and_stores_it(room, lesson, tiny_bert):
    room.start(lesson, TOKEN, "teacher")
    for who, v in (("a", "3000"), ("b", "3100"), ("c", "1e6")):
        room.answer(who, 0, v)
    with pytest.raises(RoomError, match="^wrong instructor token$"):
        room.reveal(0, "x", "a")
    ctx = TruthContext(load_model=lambda name: tiny_bert)
    truth = room.reveal(0, TOKEN, "teacher", ctx=ctx)
    # LoRA r=4 on q and v of every layer: r (d_in + d_out) per matrix
    from explorer.targets import find_targets

    want = sum(4 * (t.d_in + t.d_out) for t in find_targets(tiny_bert.model) if t.type in ("q", "v"))
    assert truth.value == want and f"{want:,} trainable parameters" in truth.text
    q = room.question(0)
    assert q["status"] == "revealed" and q["truth"].value == want
    with pytest.raises(RoomError, match="^the teacher has closed this question$"):
        room.answer("a", 0, "1")
    t = room.tally(0)
    assert t["truth"] == want and t["right"] == sum(abs(float(v) - want) <= 0.1 * want for v in (3000, 3100, 1e6))
    with pytest.raises(RoomError, match="^the answer is already revealed$"):
        room.reopen(0, TOKEN, "teacher")


def test_a_measured_truth_waits_for_the_rooms_runs_then_is_computed_from_them(room, lesson):
    entries = []
    ctx = lambda: TruthContext(board_entries=lambda: entries)  # noqa: E731
    room.start(lesson, TOKEN, "teacher")
    started = room.state().started
    room.move("next", TOKEN, "teacher")
    room.answer("p1", 1, "SMT")
    room.answer("p2", 1, "LoRA")
    with pytest.raises(RoomError, match="^not measured yet: no LoRA or SMT runs of minilm on colour-shape shared by "
                                        "the room since the lesson started$"):
        room.reveal(1, TOKEN, "teacher", ctx=ctx())
    assert room.question(1)["status"] == "open"  # nothing stored
    run = dict(model="minilm", task="colour-shape", steps=150)
    entries += [dict(run, method="lora", accuracy=0.99, created=started - 10),  # before the lesson: not counted
                dict(run, method="lora", accuracy=0.80, created=started + 1),
                dict(run, method="lora", accuracy=0.90, created=started + 2),
                dict(run, method="smt", accuracy=0.88, created=started + 3),
                dict(run, method="smt", accuracy=0.90, created=started + 4, model="tiny-bert")]
    truth = room.reveal(1, TOKEN, "teacher", ctx=ctx())
    assert truth.value == "SMT" and truth.detail["n"] == {"LoRA": 2, "SMT": 1}
    assert truth.detail["means"] == pytest.approx({"LoRA": 0.85, "SMT": 0.88})
    assert room.tally(1)["right"] == 1
    rec = room.record(who="p1")
    assert [q["step"] for q in rec["questions"]] == [0, 1, 2]
    assert rec["questions"][1]["truth"]["value"] == "SMT" and rec["questions"][1]["yours"] == "SMT"


def test_the_room_survives_a_restart_and_serves_two_connections(tmp_path, monkeypatch, lesson):
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    a = Room(tmp_path / "room.sqlite")
    b = Room(tmp_path / "room.sqlite")  # another server process's object: its own connections
    a.start(lesson, TOKEN, "teacher")
    b.answer("p1", 0, "12")
    a.move("next", TOKEN, "teacher")
    assert b.state() == a.state() and b.state().step == 1
    assert a.my_answer("p1", 0) == 12.0 and b.lesson().to_dict() == lesson.to_dict()
    del a, b
    c = Room(tmp_path / "room.sqlite")  # after a restart
    assert (c.state().step, c.state().title, c.answers(0)) == (1, "Room test", [12.0])
    assert oct((tmp_path / "room.sqlite").stat().st_mode & 0o777) == "0o600"


def test_a_new_run_keeps_the_old_runs_record_apart(room, lesson):
    room.start(lesson, TOKEN, "teacher")
    room.answer("p1", 0, "12")
    first = room.state().run
    room.start(lesson, TOKEN, "teacher")
    assert room.state().run == first + 1 and room.answers(0) == [] and room.answers(0, run=first) == [12.0]
    assert [r["run"] for r in room.runs()] == [first + 1, first] and room.runs()[1]["ended"] is not None


def test_an_unreadable_file_gets_one_line(tmp_path):
    p = tmp_path / "room.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RoomError, match="^the lesson room's file is unreadable") as e:
        Room(p)
    assert "\n" not in str(e.value)


TEACHER = r"""
import sys
from explorer.workshop.room import Room
room = Room(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # both processes start changing the room together
for i in range(int(sys.argv[2])):
    room.move(i % 4, sys.argv[3], "teacher")
print("moved")
"""


def test_two_server_processes_change_the_room_at_once(tmp_path, lesson, monkeypatch):
    """The teacher's server process moves 200 times while this process stores answers and heartbeats from before
    the first move until after the last: no change is lost, and each move is its own transaction (the version
    counts every one)."""
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    path = tmp_path / "room.sqlite"
    room = Room(path, clock=Clock(), session_limit=(10**6, 60.0), global_limit=(10**6, 60.0))
    room.start(lesson, TOKEN, "teacher")
    room.lesson()  # parsed before the race, as a serving process has it
    v0 = room.state().version
    teacher = subprocess.Popen([sys.executable, "-c", TEACHER, str(path), "200", TOKEN], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert teacher.stdout.readline().strip() == "ready"
    teacher.stdin.write("go\n")
    teacher.stdin.flush()
    i = 0
    while i < 40 or teacher.poll() is None:  # answering from before the first move until after the last
        room.answer(f"p{i}", 0, str(i))
        room.heartbeat(f"p{i}", 0)
        i += 1
    out, err = teacher.communicate(timeout=120)
    assert teacher.returncode == 0 and out.strip() == "moved", err[-800:]
    s = room.state()
    assert s.version == v0 + 200 and s.step == 199 % 4
    assert sorted(room.answers(0)) == [float(k) for k in range(i)] and s.answers_version == i
    assert room.present(0) == i


def test_a_following_page_goes_to_each_new_step_once_and_a_wanderer_stays(room, lesson):
    from explorer.workshop.follow import back_to_lesson, banner, follow

    assert follow(room.state(), None, None) is None  # no lesson: nothing to follow
    room.start(lesson, TOKEN, "teacher")
    s = room.state()
    go = follow(s, room.lesson(), last=None)  # a participant who joins lands in the current step
    assert (go.page, go.file, go.url_path, go.query, go.key) == ("playground", "pages/1_Methods_playground.py",
                                                                 "Methods_playground", {"m1": "lora"}, (s.run, 0))
    assert follow(s, room.lesson(), last=go.key) is None  # nothing moved: the page is left alone
    room.move("next", TOKEN, "teacher")
    s = room.state()
    assert follow(s, room.lesson(), last=go.key).page == "compare"
    assert follow(s, room.lesson(), last=go.key, following=False) is None  # the wanderer keeps their page
    assert back_to_lesson(s, room.lesson()).key == (s.run, 1)
    b = banner(s, room.lesson())
    assert (b["k"], b["n"], b["title"], b["question"]) == (2, 4, "Pick", True)
    room.end(TOKEN, "teacher")
    assert banner(room.state(), room.lesson()) is None and back_to_lesson(room.state(), room.lesson()) is None
