"""Lessons as data (explorer/workshop/lessons.py, explorer/views/page_schemas.py): the file format, the strict check
of every step's settings against the page's real schema, one-line errors naming the step and the field, the
bundled lessons, loading from a file, an upload, the environment and --lesson."""

import ast
import copy
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.views import pages as P
from explorer.workshop.lessons import (LESSON_ENV, MAX_LESSON_BYTES, Lesson, LessonError, bundled_lessons,
                                       lesson_arg, load_lesson_file, parse_lesson, server_lessons)

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def good() -> dict:
    return dict(title="A lesson", summary="Two steps.", steps=[
        dict(title="Rank", page="playground", settings=dict(model="minilm", m1="lora", a_rank=16, a_targets=["q", "v"]),
             do="Look.", notice="See.", minutes=5,
             question=dict(kind="number", prompt="How many?", unit="parameters",
                           truth=dict(kind="trainable_count", model="tiny-bert", method="lora",
                                      knobs=dict(rank=4, targets=["q", "v"])))),
        dict(title="Which", page="finetune", preset="Quick demo: LoRA on minilm (colour-shape-easy)", do="Run.",
             notice="Watch.", minutes=7.5, question=dict(kind="choice", prompt="Which?", choices=["LoRA", "SMT"])),
    ])


def parse(doc, name="l.json"):
    return parse_lesson(json.dumps(doc), name)


# ----------------------------------------------------------------------------- the format


def test_a_lesson_parses_with_every_step_checked_and_linked():
    lesson = parse(good())
    assert [s.title for s in lesson.steps] == ["Rank", "Which"] and lesson.minutes == 12.5
    s0, s1 = lesson.steps
    assert s0.values["a_rank"] == 16 and s0.values["a_targets"] == ["q", "v"] and s0.values["m2"] == "none"
    assert s0.query == {"model": "minilm", "m1": "lora", "a_rank": "16", "a_targets": "q,v"}
    assert s0.link("http://h:8501") == "http://h:8501/Methods_playground?model=minilm&m1=lora&a_rank=16&a_targets=q,v"
    # a preset's values are the step's settings (the fine-tune preset's method and knobs)
    assert s1.values["method"] == "lora" and s1.values["task"] == "colour-shape-easy" and s1.values["k_rank"] == 8
    assert s1.question.choices == ("LoRA", "SMT") and s1.question.truth is None


def test_toml_and_json_give_the_same_lesson_and_the_canonical_form_round_trips():
    toml = '''title = "A lesson"
summary = "Two steps."
[[steps]]
title = "Rank"
page = "playground"
settings = {model = "minilm", m1 = "lora", a_rank = 16, a_targets = ["q", "v"]}
do = "Look."
notice = "See."
minutes = 5
[steps.question]
kind = "number"
prompt = "How many?"
unit = "parameters"
truth = {kind = "trainable_count", model = "tiny-bert", method = "lora", knobs = {rank = 4, targets = ["q", "v"]}}
[[steps]]
title = "Which"
page = "finetune"
preset = "Quick demo: LoRA on minilm (colour-shape-easy)"
do = "Run."
notice = "Watch."
minutes = 7.5
[steps.question]
kind = "choice"
prompt = "Which?"
choices = ["LoRA", "SMT"]
'''
    a, b = parse_lesson(toml.encode(), "x.toml"), parse(good())
    assert a.to_dict() == b.to_dict() and a.key == b.key
    again = parse_lesson(a.to_json(), "again.json")
    assert again.to_dict() == a.to_dict() and [s.query for s in again.steps] == [s.query for s in a.steps]
    # without a suffix: a text starting with "{" is JSON, else TOML; a BOM is fine
    assert parse_lesson(b"\xef\xbb\xbf" + toml.encode(), "upload").key == a.key
    assert parse_lesson(json.dumps(good()), "upload").key == a.key


def test_every_page_can_be_a_step_and_the_participants_own_keys_cannot():
    for page in P.BY_KEY:
        d = good()
        d["steps"][0].update(page=page, settings={})
        del d["steps"][0]["question"]
        if page == "lesson":  # the teacher's page leads the lesson: no step shows it (following never moves there)
            with pytest.raises(LessonError, match=r"step 1 \('Rank'\), page: 'lesson' is not a page \(use one of "
                                                  r"home, .*, board\)$"):
                parse(d)
            continue
        assert parse(d).steps[0].page == page
    for key in ("instr", "proj", "sid"):
        d = good()
        d["steps"][0]["settings"][key] = "1"
        with pytest.raises(LessonError, match=rf"step 1 \('Rank'\), settings.{key}: each participant's own"):
            parse(d)


# ----------------------------------------------------------------------------- malformed files: one line each


def _set(path, value):
    def f(d):
        *head, last = path
        node = d
        for k in head:
            node = node[k]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
        return d
    return f


MALFORMED = [
    (_set(("title",), KeyError), r"^l.json: title: missing$"),
    (_set(("title",), 3), r"^l.json: title: must be text, not int$"),
    (_set(("title",), "x" * 81), r"title: 81 characters, at most 80"),
    (_set(("titel",), "x"), r"titel: not a field here; did you mean 'title'\?"),
    (_set(("format",), "slides"), r"format: this server reads 'peft-explorer-lesson' version 1"),
    (_set(("steps",), []), r"steps: missing"),
    (_set(("steps",), "one"), r"steps: missing"),
    (_set(("steps", 0), "x"), r"step 1, must be a table"),
    (_set(("steps", 1, "page"), "Fine-tune"), r"step 2 \('Which'\), page: 'Fine-tune' is not a page"),
    (_set(("steps", 0, "settings", "a_rnak"), 3), r"step 1 \('Rank'\), settings.a_rnak: the page Methods playground "
                                                   r"has no such setting; did you mean 'a_rank'\?"),
    (_set(("steps", 0, "settings", "a_rank"), 3000), r"step 1 \('Rank'\), settings.a_rank: 3000 is above the maximum"),
    (_set(("steps", 0, "settings", "a_rank"), 2.5), r"settings.a_rank: 2.5 is not a whole number"),
    (_set(("steps", 0, "settings", "a_targets"), ["q", "x"]), r"settings.a_targets: ignored unknown value\(s\) x"),
    (_set(("steps", 0, "settings", "m1"), "loraa"), r"settings.m1: 'loraa' is not one of"),
    (_set(("steps", 0, "settings", "b_rank"), 4), r"settings.b_rank: the page Methods playground has no such setting"),
    (_set(("steps", 0, "settings"), [1]), r"step 1 \('Rank'\), settings: must be a table"),
    (_set(("steps", 1, "preset"), "Quick demo"), r"step 2 \('Which'\), preset: 'Quick demo' is not a preset of "
                                                 r"Fine-tune; did you mean 'Quick demo: LoRA on minilm"),
    (_set(("steps", 0, "minutes"), 0), r"step 1 \('Rank'\), minutes: 0 is outside 0.5 .. 120"),
    (_set(("steps", 0, "minutes"), "5"), r"minutes: must be a number"),
    (_set(("steps", 0, "minutes"), True), r"minutes: must be a number"),
    (_set(("steps", 0, "do"), KeyError), r"step 1 \('Rank'\), do: missing"),
    (_set(("steps", 0, "do"), "a\x1b[31mred"), r"do: control characters \(U\+001B\) are not allowed"),
    (_set(("steps", 0, "notice"), "n" * 601), r"notice: 601 characters, at most 600"),
    (_set(("steps", 0, "titel"), "x"), r"step 1 \('Rank'\), titel: not a field here; did you mean 'title'\?"),
    (_set(("steps", 0, "question", "kind"), "poll"), r"question.kind: 'poll' is not one of number, choice, text"),
    (_set(("steps", 0, "question", "prompt"), ""), r"step 1 \('Rank'\), question.prompt: empty"),
    (_set(("steps", 0, "question", "choices"), ["a", "b"]), r"question.choices: not used by a number question"),
    (_set(("steps", 0, "question", "min"), 10.0 ** 20), r"question.min: 1e\+20 is outside"),
    (_set(("steps", 0, "question", "max"), -1), r"question.max: must be larger than min \(0\)"),
    (_set(("steps", 1, "question", "choices"), ["a"]), r"step 2 \('Which'\), question.choices: a list of 2 to 8"),
    (_set(("steps", 1, "question", "choices"), ["a", "a"]), r"question.choices: a choice is listed twice"),
    (_set(("steps", 1, "question", "choices"), ["a", 2]), r"question.choices: every choice must be text"),
    (_set(("steps", 0, "question", "truth"), 147456), r"question.truth: must be a table"),
    (_set(("steps", 0, "question", "truth", "kind"), "typed"), r"question.truth.kind: 'typed' is not known"),
    (_set(("steps", 0, "question", "truth", "model"), "gpt5"), r"question.truth.model: unknown model 'gpt5'"),
    (_set(("steps", 0, "question", "truth", "method"), "lorra"), r"question.truth.method: 'lorra' is not a method"),
    (_set(("steps", 0, "question", "truth", "knobs"), {"types": ["q"]}), r"question.truth.knobs: lora: unknown "
                                                                        r"knob\(s\) types"),
    (_set(("steps", 0, "question", "truth", "knobs"), {"rank": -1}), r"question.truth.knobs: "),
    (_set(("steps", 0, "question", "truth", "value"), 3), r"question.truth.value: not a field of a trainable_count"),
    (_set(("steps", 0, "question", "truth", "part"), "head"), r"question.truth.part: 'all'"),
    (_set(("steps", 1, "question", "truth"), {"kind": "trainable_count", "model": "minilm", "method": "lora"}),
     r"step 2 \('Which'\), question.truth.kind: a trainable_count truth answers a number question, not a choice"),
    (_set(("steps", 1, "question", "truth"), {"kind": "best_method_by_accuracy", "source": "board",
                                              "model": "minilm", "task": "colour-shape"}), None),  # valid
    (_set(("steps", 1, "question", "truth"), {"kind": "best_method_by_accuracy", "source": "class",
                                              "model": "minilm", "task": "colour-shape"}), r"question.truth.source"),
    (_set(("steps", 1, "question", "choices"), ["LoRA", "lora"]), None),  # two choices, no truth: fine
]


@pytest.mark.parametrize("mutate,message", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_a_malformed_lesson_gets_one_line_naming_the_step_and_the_field(mutate, message):
    doc = mutate(copy.deepcopy(good()))
    if message is None:
        parse(doc)
        return
    with pytest.raises(LessonError) as e:
        parse(doc)
    assert "\n" not in str(e.value) and str(e.value).startswith("l.json: ")
    assert __import__("re").search(message, str(e.value)), str(e.value)


def test_choices_that_name_one_method_twice_are_refused_for_a_best_method_truth():
    doc = good()
    doc["steps"][1]["question"].update(choices=["LoRA", "lora"], truth=dict(
        kind="best_method_by_accuracy", source="board", model="minilm", task="colour-shape"))
    with pytest.raises(LessonError, match="two choices name the same method"):
        parse(doc)
    doc["steps"][1]["question"]["choices"] = ["LoRA", "Adapters"]
    with pytest.raises(LessonError, match="'Adapters' is not a method"):
        parse(doc)


@pytest.mark.parametrize("data,message", [
    (b"\xff\xfe\x00t", r"x.toml: not UTF-8 text \(byte 0\)"),
    (b"title = ", r"x.toml: not valid TOML: "),
    (b"[1, 2]", r"x.toml: not valid TOML"),
    (b"x" * (MAX_LESSON_BYTES + 1), r"x.toml: 262,145 bytes, more than a lesson file may hold \(256 KiB\)"),
    (None, r"x.toml: expected the text of a TOML or JSON file, got NoneType"),
])
def test_unreadable_files_get_one_line(data, message):
    with pytest.raises(LessonError, match=message) as e:
        parse_lesson(data, "x.toml")
    assert "\n" not in str(e.value)


def test_json_errors_and_non_tables_get_one_line():
    with pytest.raises(LessonError, match=r"^a.json: not valid JSON: Expecting"):
        parse_lesson('{"title": ', "a.json")
    with pytest.raises(LessonError, match=r"^a.json: a lesson is a table \(title, steps\), not a list$"):
        parse_lesson("[1]", "a.json")
    with pytest.raises(LessonError, match=r"^a.json: not valid JSON"):
        parse_lesson("[" * 100_000, "a.json")  # deep nesting: a RecursionError becomes one line


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                 st.text(max_size=300), st.lists(st.text(max_size=5), max_size=3),
                 st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(good()) if p]


@settings(FAST, max_examples=60)
@given(st.sampled_from(PATHS), JUNK)
def test_any_field_replaced_by_junk_is_either_accepted_or_refused_in_one_line(path, junk):
    doc = _set(path, junk)(copy.deepcopy(good()))
    try:
        lesson = parse(doc)
    except LessonError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith("l.json: ") and len(msg) < 400
        if path[0] == "steps" and len(path) > 2:
            assert f"step {path[1] + 1}" in msg
        return
    assert isinstance(lesson, Lesson)
    for s in lesson.steps:  # what is accepted opens a view the page reads back unchanged
        assert P.page_schema(s.page, s.query).parse(s.query) == (s.values, [])


# ----------------------------------------------------------------------------- the bundled lessons


def test_three_bundled_lessons_fill_a_90_minute_workshop():
    lessons = bundled_lessons()
    assert list(lessons) == ["What LoRA trains", "Sparse methods", "Fine-tune and compare"]
    total = sum(l.minutes for l in lessons.values())
    assert 85 <= total <= 100, total
    assert sum(s.question is not None for l in lessons.values() for s in l.steps) >= 9
    kinds = {s.question.truth["kind"] for l in lessons.values() for s in l.steps if s.question and s.question.truth}
    assert {"trainable_count", "best_method_by_accuracy", "memory_estimate", "mean_accuracy"} <= kinds
    pages = {s.page for l in lessons.values() for s in l.steps}
    assert {"playground", "finetune", "compare", "board", "memory", "smt"} <= pages


def test_every_bundled_step_link_parses_back_to_its_settings():
    for lesson in bundled_lessons().values():
        for s in lesson.steps:
            url = urlsplit(s.link("http://room:8501"))
            assert P.page_for_path(url.path) == s.page
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            values, warnings = P.page_schema(s.page, q).parse(q)
            assert warnings == [] and values == s.values, (lesson.title, s.title)


def test_bundled_playground_steps_build_on_minilm():
    """Each playground step's sides apply to minilm with the knobs its link carries (the page's own knob mapping;
    SMT's selection from a warm-up is the presets' browser test's, tests/browser/test_browser_presets.py)."""
    from explorer.methods import apply_method
    from explorer.models import load_model
    from explorer.views import playground as pg

    loaded = load_model("minilm")
    n = 0
    for lesson in bundled_lessons().values():
        for s in lesson.steps:
            for side, m in (("a", s.values.get("m1")), ("b", s.values.get("m2"))):
                if s.page != "playground" or m == "none":
                    continue
                a = apply_method(pg.shared_weight_copy(loaded.model), m, n_base=loaded.info.n_params,
                                 **pg.side_knobs(s.values, m, side))
                assert a.num_trainable() > 0
                n += 1
    assert n >= 8


def test_bundled_memory_and_finetune_steps_hold_valid_settings():
    from explorer.engine.config import TrainConfig
    from explorer.methods import METHODS, validate_knobs
    from explorer.views import memory_views as V

    for lesson in bundled_lessons().values():
        for s in lesson.steps:
            v = s.values
            if s.page == "memory":
                rows = V.estimate_rows(V.spec_for_choice(v["model"], v), v)
                assert rows and not [r for r in rows if "error" in r]
            if s.page == "finetune":
                knobs = {k[2:]: x for k, x in v.items() if k.startswith("k_")}
                validate_knobs(METHODS[v["method"]].knobs, knobs, v["method"])
                TrainConfig(model=v["model"], task=v["task"], method=v["method"], steps=v["steps"], knobs=knobs)


# ----------------------------------------------------------------------------- the page schemas match the pages


def _page_fields(path: str, function: str | None = None) -> dict:
    """{name: (kind, literal default or None)} of the Field(...) calls in a page file (in ``function`` only)."""
    tree = ast.parse((ROOT / path).read_text())
    if function:
        tree = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Field":
            name, kind = (a.value for a in node.args[:2])
            try:
                default = ast.literal_eval(node.args[2])
            except ValueError:
                default = None
            out[name] = (kind, default)
    return out


@pytest.mark.parametrize("path", ["pages/1_Methods_playground.py", "pages/2_Fine_tune.py", "pages/3_Compare.py",
                                  "pages/4_Memory_calculator.py", "pages/5_SMT_block_inspector.py",
                                  "pages/6_Claims_lab.py"])
def test_the_pages_read_their_settings_from_the_core_schemas(path):
    """One source: a page declares no URL field of its own; lessons are checked against what the page reads."""
    assert _page_fields(path) == {}


def test_the_board_page_has_its_one_setting_and_the_playground_and_memory_use_the_pages_own_schemas():
    assert list(_page_fields("pages/7_Class_board.py")) == [f.name for f in P.page_schema("board")]
    from explorer.views import memory_views as V

    assert [f.name for f in P.page_schema("memory")] == [f.name for f in V.page_schema()]
    for info in P.PAGES:
        assert (ROOT / info.file).exists()
        assert P.page_for_path("/" + info.url_path) == info.key
        assert P.page_for_path("http://x:1/sub/" + info.url_path + "/") == info.key or info.key == "home"
    assert P.page_for_path("/Nope") is None


# ----------------------------------------------------------------------------- loading


def test_a_lesson_file_is_loaded_from_the_environment_and_from_lesson(tmp_path):
    a = tmp_path / "mine.toml"
    a.write_text(Path(ROOT / "assets/lessons/2-sparse-methods.toml").read_text().replace(
        'title = "Sparse methods"', 'title = "My sparse lesson"'))
    b = tmp_path / "broken.json"
    b.write_text('{"title": "x", "steps": [{"title": "s", "page": "nope"}]}')
    assert lesson_arg(["--server.port", "1", "--lesson", str(a)]) == str(a)
    assert lesson_arg([f"--lesson={b}"]) == str(b) and lesson_arg(["--lesson"]) is None
    lessons, problems = server_lessons(argv=["--lesson", str(a)], environ={LESSON_ENV: str(b)})
    assert "My sparse lesson" in lessons and "What LoRA trains" in lessons
    assert problems == ["broken.json: step 1 ('s'), page: 'nope' is not a page (use one of "
                        "home, playground, finetune, compare, memory, smt, claims, board)"]
    _, problems = server_lessons(argv=[], environ={LESSON_ENV: str(tmp_path / "missing.toml")})
    assert problems == ["missing.toml: cannot be read (No such file or directory)"]
    assert load_lesson_file(a).title == "My sparse lesson"


def test_the_lesson_command_checks_lists_and_writes_a_handout(tmp_path, capsys):
    from explorer.__main__ import main

    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\n[[steps]]\ntitle = "a"\npage = "playground"\nsettings = {a_rnak = 3}\n'
                   'do = "d"\nnotice = "n"\nminutes = 3\n')
    assert main(["lesson", "check", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == ("error: bad.toml: step 1 ('a'), settings.a_rnak: the page Methods "
                                               "playground has no such setting; did you mean 'a_rank'?")
    assert main(["lesson", "list", "--json"]) == 0
    assert [r["title"] for r in json.loads(capsys.readouterr().out)] == list(bundled_lessons())
    out = tmp_path / "h.html"
    assert main(["lesson", "handout", "Sparse methods", "--base", "http://10.0.0.5:8501", "-o", str(out), "--json"]) == 0
    assert "Sparse methods" in out.read_text() and json.loads(out.with_suffix(".json").read_text())["kind"] == "handout"
    assert main(["lesson", "handout", "No such lesson"]) == 2
    assert "not a bundled lesson" in capsys.readouterr().err
