"""Answers (explorer/workshop/answers.py: what may be answered, the projector's tallies and histograms) and truths
(explorer/workshop/truths.py: computed at reveal time from the method code, the memory model and the room's runs)."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.workshop.answers import AnswerError, check_answer, histogram, tally
from explorer.workshop.lessons import Question
from explorer.workshop.truths import Truth, TruthContext, TruthError, check_truth, compute_truth

FAST = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
NUM = Question(kind="number", prompt="n?", min=0.0, max=1e9)
CHOICE = Question(kind="choice", prompt="c?", choices=("LoRA", "SMT", "SpaRTA"))
TEXT = Question(kind="text", prompt="t?", max_chars=40)


@pytest.mark.parametrize("raw,value", [
    ("147456", 147456.0), ("147,456", 147456.0), ("147 456", 147456.0), ("1.5e5", 150000.0), ("150k", 150000.0),
    ("2 M", 2e6), ("0.5G", 5e8), (".5", 0.5), (12, 12.0), (3.5, 3.5), ("1_000", 1000.0), ("+7", 7.0),
])
def test_numbers_are_read_as_people_write_them(raw, value):
    assert check_answer(NUM, raw) == value


@settings(FAST, max_examples=300)
@given(st.one_of(st.text(max_size=300), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-10**30, 10**30), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_any_answer_is_stored_valid_or_refused_with_one_line(raw):
    for q in (NUM, CHOICE, TEXT):
        try:
            v = check_answer(q, raw)
        except AnswerError as e:
            assert "\n" not in str(e) and 0 < len(str(e)) < 120
            continue
        if q is NUM:
            assert isinstance(v, float) and math.isfinite(v) and 0 <= v <= 1e9
        elif q is CHOICE:
            assert v in CHOICE.choices
        else:
            assert 0 < len(v) <= 40 and not set(v) & set("<>&*_[]()`#\\/\"=:;{}|~^$%@")
            assert all(c.isprintable() for c in v)


def test_a_histogram_goes_log_when_the_answers_span_two_decades():
    lin = histogram([90, 100, 110, 120, 150, 180])
    assert not lin["log"] and sum(lin["counts"]) == 6 and lin["edges"][0] == 90 and lin["edges"][-1] == 180
    wide = [1e3, 2e3, 1.5e5, 1.47e5, 1.6e5, 9e6]
    h = histogram(wide)
    assert h["log"] and sum(h["counts"]) == 6 and len(h["edges"]) == len(h["counts"]) + 1
    assert h["edges"][0] == pytest.approx(1e3) and h["edges"][-1] == pytest.approx(9e6)
    ratios = [b / a for a, b in zip(h["edges"], h["edges"][1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # log-spaced: equal ratios
    assert not histogram([0, 10, 10_000])["log"]  # a zero has no logarithm
    one = histogram([5, 5, 5])
    assert one["counts"] == [3] and one["edges"][0] < 5 < one["edges"][1]
    assert len(histogram(list(range(1, 10_000)))["counts"]) <= 12
    assert histogram([]) == dict(edges=[], counts=[], log=False)


def test_tallies_count_choices_in_order_and_score_against_the_truth():
    t = tally(CHOICE, ["SMT", "LoRA", "SMT"], Truth("best_method_by_accuracy", "SMT", "x"))
    assert t["counts"] == [dict(choice="LoRA", count=1), dict(choice="SMT", count=2), dict(choice="SpaRTA", count=0)]
    assert (t["n"], t["truth"], t["right"]) == (3, "SMT", 2)
    tie = tally(CHOICE, ["SMT", "LoRA", "SpaRTA"], Truth("k", ["LoRA", "SMT"], "x"))
    assert tie["right"] == 2
    n = tally(NUM, [100, 109, 111, 500], Truth("trainable_count", 100, "x"))
    assert n["right"] == 2 and n["median"] == 110 and n["q1"] == pytest.approx(106.75)
    assert "right" not in tally(NUM, [1, 2])


# ----------------------------------------------------------------------------- truths


def test_a_count_truth_is_computed_by_the_method_code(tiny_bert):
    from explorer.methods import apply_method
    from explorer.views.playground import shared_weight_copy

    ctx = TruthContext(load_model=lambda name: tiny_bert, clock=lambda: 42.0)
    spec = check_truth(dict(kind="trainable_count", model="tiny-bert", method="lora-sp",
                            knobs=dict(rank=4, freeze=0.5)), NUM)
    a = apply_method(shared_weight_copy(tiny_bert.model), "lora-sp", n_base=tiny_bert.info.n_params, rank=4,
                     freeze=0.5)
    t = compute_truth(spec, NUM, ctx)
    assert t.value == a.num_trainable() and t.computed_at == 42.0
    t2 = compute_truth(dict(spec, part="adapter"), NUM, ctx)
    assert t2.value == a.num_trainable() - a.head_parameters() and "head left out" in t2.text
    ratio = compute_truth(check_truth(dict(kind="count_ratio", model="tiny-bert", part="adapter",
                                           numerator=dict(method="lora", knobs=dict(rank=8)),
                                           denominator=dict(method="lora", knobs=dict(rank=2))), NUM), NUM, ctx)
    assert ratio.value == 4.0 and ratio.detail["numerator"] == 4 * ratio.detail["denominator"]
    q = Question(kind="choice", prompt="?", choices=("r1", "r8"))
    most = compute_truth(check_truth(dict(kind="most_trainable", model="tiny-bert", options=dict(
        r1=dict(method="lora", knobs=dict(rank=1)), r8=dict(method="lora", knobs=dict(rank=8)))), q), q, ctx)
    assert most.value == "r8" and most.detail["counts"]["r8"] > most.detail["counts"]["r1"]
    assert Truth.from_dict(json.loads(json.dumps(most.to_dict()))) == most


def test_a_memory_truth_is_the_number_the_memory_calculator_shows():
    from explorer.views import memory_views as V
    from explorer.views.pages import check_settings

    settings_ = dict(model="llama-7b", prec="bf16-mixed", batch=4, seq=1024)
    spec = check_truth(dict(kind="memory_estimate", method="full", settings=settings_), NUM)
    values, _ = check_settings("memory", settings_)
    row = V.estimate_rows(V.spec_for_choice("llama-7b", values), values, methods=["full"])[0]
    t = compute_truth(spec, NUM)
    assert t.value == row["total_bytes"] / 1e9 and t.detail["total_bytes"] == row["total_bytes"]
    with pytest.raises(TruthError, match="truth.settings.batch: 0 is below the minimum"):
        check_truth(dict(spec, settings=dict(settings_, batch=0)), NUM)


def test_truth_tables_are_checked_when_the_lesson_loads():
    with pytest.raises(TruthError, match=r"^truth.options: a table with one \{method, knobs\} per choice"):
        check_truth(dict(kind="fewest_trainable", model="minilm", options=dict(LoRA=dict(method="lora"))), CHOICE)
    with pytest.raises(TruthError, match=r"^truth.steps: a whole number >= 1$"):
        check_truth(dict(kind="mean_accuracy", source="board", model="m", task="t", method="lora", steps=0), NUM)
    with pytest.raises(TruthError, match=r"^truth.model: missing"):
        check_truth(dict(kind="trainable_count", method="lora"), NUM)
    with pytest.raises(TruthError, match=r"^truth: must be a table"):
        check_truth([1], NUM)


def test_measured_truths_use_the_board_or_only_the_runs_since_the_lesson_started():
    entries = [dict(method="lora", model="minilm", task="t", steps=60, accuracy=0.5, created=10.0),
               dict(method="lora", model="minilm", task="t", steps=60, accuracy=0.9, created=110.0),
               dict(method="lora", model="minilm", task="t", steps=30, accuracy=0.1, created=120.0),
               dict(method="lora", model="minilm", task="u", steps=60, accuracy=0.1, created=130.0)]
    pct = Question(kind="number", prompt="%", min=0, max=100)
    spec = dict(kind="mean_accuracy", source="board", model="minilm", task="t", method="lora", steps=60)
    ctx = TruthContext(board_entries=lambda: entries, since=100.0)
    assert compute_truth(check_truth(spec, pct), pct, ctx).value == pytest.approx(70.0)
    room = compute_truth(dict(spec, source="room_runs"), pct, ctx)
    assert room.value == pytest.approx(90.0) and room.detail["n"] == 1
    with pytest.raises(TruthError, match="^not measured yet: fewer than 2 LoRA runs of minilm on t, 60 steps shared "
                                         "by the room since the lesson started$"):
        compute_truth(dict(spec, source="room_runs", min_runs=2), pct, ctx)
    q = Question(kind="choice", prompt="?", choices=("lora", "smt"))
    entries.append(dict(method="smt", model="minilm", task="t", steps=60, accuracy=0.7, created=111.0))
    best = compute_truth(dict(kind="best_method_by_accuracy", source="board", model="minilm", task="t", steps=60), q,
                         ctx)
    assert best.detail["means"] == pytest.approx({"lora": 0.7, "smt": 0.7})
    assert best.value == ["lora", "smt"] and best.text.startswith("LoRA and SMT (Sparse Matrix Tuning): the highest")
    entries.append(dict(method="smt", model="minilm", task="t", steps=60, accuracy=0.8, created=112.0))
    assert compute_truth(dict(kind="best_method_by_accuracy", source="board", model="minilm", task="t", steps=60),
                         q, ctx).value == "smt"


def test_a_failing_computation_is_one_line(tiny_bert):
    ctx = TruthContext(load_model=lambda name: (_ for _ in ()).throw(RuntimeError("disk on fire\nsecond line")))
    with pytest.raises(TruthError, match=r"^the truth could not be computed: RuntimeError: disk on fire$"):
        compute_truth(dict(kind="trainable_count", model="minilm", method="lora"), NUM, ctx)
