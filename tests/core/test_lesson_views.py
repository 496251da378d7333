"""The pure parts of the lesson in the pages: where a following page goes (``explorer.workshop.follow``: a page
that already shows the step, a participant on the step, the address a step opens with), the projector's chart of
the room's answers (``explorer.views.lesson_figures``: log axis where the range needs it, the truth marked), the
agenda's rows and how answers are shown."""

from __future__ import annotations

import math

import pytest

from explorer.views import figure_text as T
from explorer.views.lesson_figures import agenda_rows, answers_figure
from explorer.workshop.answers import shown, tally
from explorer.workshop.follow import LEAD_PAGE, back_to_lesson, follow, on_step, shows_step, switch_query
from explorer.workshop.lessons import Question, bundled_lessons
from explorer.workshop.room import RoomState

LESSON = bundled_lessons()["What LoRA trains"]


def state(step: int, run: int = 7, status: str = "running") -> RoomState:
    return RoomState(version=3, answers_version=0, run=run, status=status, step=step, n_steps=len(LESSON.steps),
                     title=LESSON.title, started=0.0, step_started=0.0)


# ----------------------------------------------------------------------------- following


def test_a_page_shows_a_step_when_its_address_reads_as_the_steps_values():
    go = back_to_lesson(state(3), LESSON)  # the playground, r = 8 on q, v against q, k, v, o
    assert shows_step(go, "playground", dict(go.query))
    # what the page writes back (every field, defaults included) and the participant's own keys: the same view
    written = {"model": "minilm", "m1": "lora", "m2": "lora", "wt": "q", "layer": "0", "warm": "2", "a_rank": "8",
               "a_alpha": "16.0", "a_targets": "q,v", "a_dropout": "0.0", "a_seed": "0", "b_rank": "8",
               "b_alpha": "16.0", "b_targets": "q,k,v,o", "b_dropout": "0.0", "b_seed": "0",
               "sid": "ab" * 16, "proj": "1", "instr": "1"}
    assert shows_step(go, "playground", written)
    assert not shows_step(go, "playground", {**written, "b_targets": "q,v"})  # another setting: another view
    assert not shows_step(go, "playground", {k: v for k, v in written.items() if k != "b_targets"})  # a default
    assert not shows_step(go, "memory", dict(go.query))  # another page
    home = back_to_lesson(state(0), LESSON)
    assert shows_step(home, "home", {}) and shows_step(home, "home", {"sid": "ab" * 16})


def test_the_lesson_page_never_follows_and_a_participant_is_on_the_step_only_on_its_page():
    s = state(1)
    assert follow(s, LESSON, last=None, page=LEAD_PAGE) is None
    assert follow(s, LESSON, last=None, page="home").key == (7, 1)
    assert on_step(s, LESSON, "playground", (7, 1))
    assert not on_step(s, LESSON, "home", (7, 1))  # wandered to another page
    assert not on_step(s, LESSON, "playground", (7, 0))  # did not open this step
    assert not on_step(s, LESSON, "playground", (6, 1))  # an earlier run of the lesson
    assert not on_step(state(1, status="ended"), LESSON, "playground", (7, 1))


def test_a_step_opens_with_its_settings_and_the_participants_own_keys_only():
    go = back_to_lesson(state(1), LESSON)
    q = switch_query(go, {"sid": "ab" * 16, "proj": "1", "a_rank": "256", "token": "x", "instr": ""})
    assert q == {**go.query, "sid": "ab" * 16, "proj": "1"}
    assert q["a_rank"] == "1"  # the step's, not the participant's old value


# ----------------------------------------------------------------------------- the projector's chart


def number_q(**kw) -> Question:
    return Question(kind="number", prompt="How many?", unit="parameters", **kw)


def test_answers_spanning_decades_are_drawn_on_a_log_scale_with_the_truth_at_its_value():
    class Truth:
        value, text = 147456.0, "147,456"

        @staticmethod
        def matches(v):
            return False

    q = number_q(max=1e9)
    t = tally(q, [1e3, 2e4, 1.5e5, 1.5e5, 1e6, 3e7], truth=Truth)
    assert t["log"]
    fig = answers_figure(t, q)
    bar = fig.data[0]
    edges = t["edges"]
    assert fig.layout.xaxis.type == "category" and sum(bar.y) == 6 and len(bar.x) == len(edges) - 1
    assert bar.x[0] == "1k to " + bar.x[1].split(" to ")[0]  # each bar named by its range
    ratios = [b / a for a, b in zip(edges[:-1], edges[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # equal in log: the bars' places are a log scale
    assert f"each bar spans ×{ratios[0]:.3g}" in fig.layout.xaxis.title.text
    [line] = fig.layout.shapes  # the truth, where its logarithm falls among the bars (bar i spans i ± 0.5)
    i = next(i for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])) if a <= 147456 < b)
    frac = (math.log10(147456) - math.log10(edges[i])) / (math.log10(edges[i + 1]) - math.log10(edges[i]))
    assert line.x0 == pytest.approx(i - 0.5 + frac)
    assert "log scale" in T.describe(fig)
    assert "The room's answers (6 answers)" in T.describe(fig)


def test_answers_in_one_decade_get_linear_bins_and_choices_get_bars_with_the_truth_coloured():
    q = number_q()
    t = tally(q, [140_000, 150_000, 160_000])
    fig = answers_figure(t, q)
    assert not t["log"] and not fig.layout.shapes and "log" not in fig.layout.xaxis.title.text
    assert list(fig.data[0].y) == t["counts"] and "each bar spans" in fig.layout.xaxis.title.text

    class Truth:
        value, text = ["VeRA", "LoRA"], "a tie"

        @staticmethod
        def matches(v):
            return v in ("VeRA", "LoRA")

    c = Question(kind="choice", prompt="Which?", choices=("LoRA", "VeRA", "SpaRTA"))
    fig = answers_figure(tally(c, ["LoRA", "SpaRTA", "SpaRTA"], truth=Truth), c)
    assert list(fig.data[0].x) == ["LoRA", "VeRA", "SpaRTA"] and list(fig.data[0].y) == [1, 0, 2]
    colors = list(fig.data[0].marker.color)
    assert colors[0] == colors[1] != colors[2]  # the truth's bars (a tie) in the accent colour
    assert answers_figure(tally(c, []), c) is None  # nothing to draw yet
    text = Question(kind="text", prompt="Why?")
    assert answers_figure(tally(text, ["because"]), text) is None  # free text is listed, not drawn


def test_agenda_rows_and_answers_as_shown():
    agenda = [dict(index=0, title="A", page="home", minutes=5.0, spent_s=90.0, visited=True, current=False),
              dict(index=1, title="B", page="playground", minutes=7.0, spent_s=30.0, visited=True, current=True),
              dict(index=2, title="C", page="memory", minutes=6.0, spent_s=0.0, visited=False, current=False)]
    rows = agenda_rows(agenda)
    assert [(r["step"], r["page"], r["planned (min)"], r["spent (min)"], r[""]) for r in rows] == [
        (1, "Home", 5.0, 1.5, "done"), (2, "Methods playground", 7.0, 0.5, "◀ now"), (3, "Memory calculator", 6.0,
                                                                                     0.0, "")]
    q = number_q()
    assert shown(147456.0, q) == "147,456 parameters" and shown(2.0, Question("number", "x")) == "2"
    assert shown(["LoRA", "VeRA"], q) == "LoRA and VeRA" and shown("LoRA", q) == "LoRA"
