"""Lessons as data: a small validated file (TOML or JSON) of ordered steps, each a page with its settings.

Pure Python (no streamlit).  A lesson file (see ``assets/lessons/*.toml`` for three real ones)::

    title = "What LoRA trains"
    summary = "Rank, targets and counts on the pretrained minilm."

    [[steps]]
    title = "Rank 1 against rank 64"
    page = "playground"                       # a key of explorer.views.pages.BY_KEY
    preset = "LoRA rank 1 vs 64"              # optional: a preset of that page; settings below override it
    settings = {layer = 2}                    # the page's URL values, checked against its schema
    do = "Compare the two trainable counts."
    notice = "The count grows linearly with r."
    minutes = 5

    [steps.question]                          # optional
    kind = "number"                           # number | choice | text
    prompt = "How many trainable parameters has LoRA r = 16 on q and v?"
    unit = "parameters"
    truth = {kind = "trainable_count", model = "minilm", method = "lora", knobs = {rank = 16}}

:func:`parse_lesson` takes the bytes or text of a file (an upload, ``--lesson FILE``, ``PEFT_EXPLORER_LESSON``)
and returns a :class:`Lesson`, or raises :class:`LessonError` with one line naming the file, the step and the
field ("my.toml: step 3 ('Rank 64'), settings.a_rnak: the page Methods playground has no such setting; did you
mean 'a_rank'?").  Every step's settings are checked against that page's real URL schema, a preset by name, a
question's truth by ``explorer.workshop.truths.check_truth``: a truth is a computation, never a typed value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import sys
import threading
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from explorer.errors import DataError
from explorer.views import pages as P

__all__ = ["Lesson", "Step", "Question", "LessonError", "parse_lesson", "load_lesson_file", "bundled_lessons",
           "server_lessons", "lesson_arg", "LESSON_ENV", "LESSONS_DIR", "MAX_LESSON_BYTES"]

LESSON_ENV = "PEFT_EXPLORER_LESSON"
LESSONS_DIR = Path(__file__).resolve().parents[2] / "assets" / "lessons"
MAX_LESSON_BYTES = 256 * 1024
MAX_STEPS = 60
QUESTION_KINDS = ("number", "choice", "text")
NUMBER_BOUND = 1e15  # a number question's range must lie within +- this
DEFAULT_RANGE = (0.0, 1e12)
LESSON_KEYS = ("title", "summary", "steps", "format", "version")
STEP_KEYS = ("title", "page", "preset", "settings", "do", "notice", "minutes", "question")
QUESTION_KEYS = ("kind", "prompt", "unit", "min", "max", "choices", "max_chars", "truth")
FORMAT = "peft-explorer-lesson"


class LessonError(DataError):
    """A lesson file that cannot be used (one line: the file, the step and the field)."""


@dataclass(frozen=True)
class Question:
    kind: str  # number | choice | text
    prompt: str
    unit: str = ""
    min: float = DEFAULT_RANGE[0]
    max: float = DEFAULT_RANGE[1]
    choices: tuple = ()
    max_chars: int = 80
    truth: dict | None = None  # a computation (explorer.workshop.truths), never a value

    def to_dict(self) -> dict:
        d = dict(kind=self.kind, prompt=self.prompt)
        if self.kind == "number":
            d.update(unit=self.unit, min=self.min, max=self.max)
        if self.kind == "choice":
            d.update(choices=list(self.choices))
        if self.kind == "text":
            d.update(max_chars=self.max_chars)
        if self.truth is not None:
            d.update(truth=self.truth)
        return d


@dataclass(frozen=True)
class Step:
    index: int  # 0-based
    title: str
    page: str
    do: str
    notice: str
    minutes: float
    settings: dict = field(default_factory=dict)  # as written (a preset's values, then the step's own)
    preset: str = ""
    values: dict = field(default_factory=dict)  # every value of the page's schema
    query: dict = field(default_factory=dict)  # the URL query (strings) that opens this step's view
    question: Question | None = None

    def link(self, base: str = "") -> str:
        return P.link(self.page, self.query, base)

    @property
    def page_title(self) -> str:
        return P.BY_KEY[self.page].title

    def to_dict(self) -> dict:
        d = dict(title=self.title, page=self.page, do=self.do, notice=self.notice, minutes=self.minutes,
                 settings=self.settings)
        if self.preset:
            d["preset"] = self.preset
        if self.question is not None:
            d["question"] = self.question.to_dict()
        return d


@dataclass(frozen=True)
class Lesson:
    title: str
    steps: tuple
    summary: str = ""
    name: str = ""  # where it came from (a file name), for messages

    @property
    def minutes(self) -> float:
        return sum(s.minutes for s in self.steps)

    def to_dict(self) -> dict:
        """The canonical form: parse_lesson(json.dumps(to_dict())) gives the same lesson."""
        d = dict(format=FORMAT, version=1, title=self.title, steps=[s.to_dict() for s in self.steps])
        if self.summary:
            d["summary"] = self.summary
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @property
    def key(self) -> str:
        """A short fingerprint of the content (two uploads of one file have one key)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- reading the file


def _decode(data, name: str) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = bytes(data)
        if len(b) > MAX_LESSON_BYTES:
            raise LessonError(f"{name}: {len(b):,} bytes, more than a lesson file may hold "
                              f"({MAX_LESSON_BYTES // 1024} KiB)")
        try:
            return b.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise LessonError(f"{name}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if isinstance(data, str):
        if len(data.encode("utf-8", "replace")) > MAX_LESSON_BYTES:
            raise LessonError(f"{name}: more than a lesson file may hold ({MAX_LESSON_BYTES // 1024} KiB)")
        return data
    raise LessonError(f"{name}: expected the text of a TOML or JSON file, got {type(data).__name__}")


def _load(text: str, name: str) -> dict:
    as_json = name.lower().endswith(".json") or (not name.lower().endswith(".toml") and text.lstrip()[:1] == "{")
    try:
        doc = json.loads(text) if as_json else tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LessonError(f"{name}: not valid TOML: {_clip(str(e), 160)}") from None
    except (ValueError, RecursionError) as e:
        raise LessonError(f"{name}: not valid JSON: {_clip(str(e), 160)}") from None
    if not isinstance(doc, dict):
        raise LessonError(f"{name}: a lesson is a table (title, steps), not a {type(doc).__name__}")
    return doc


def _clip(s, n: int = 60) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ----------------------------------------------------------------------------- checking fields


class _Field(Exception):
    """A problem with one field (the caller adds the file and the step)."""


def _unknown(d: dict, allowed: tuple, where: str) -> None:
    for k in d:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f" (fields: {', '.join(allowed)})"
            raise _Field(f"{where}{_clip(k, 40)}: not a field here{hint}")


def _text(d: dict, key: str, limit: int, required: bool = True, lines: bool = False, where: str = "") -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise _Field(f"{where}{key}: missing")
        return ""
    if not isinstance(v, str):
        raise _Field(f"{where}{key}: must be text, not {type(v).__name__}")
    v = unicodedata.normalize("NFC", v).strip()
    bad = [ch for ch in v if unicodedata.category(ch) == "Cc" and not (lines and ch == "\n")]
    if bad:
        raise _Field(f"{where}{key}: control characters (U+{ord(bad[0]):04X}) are not allowed")
    if required and not v:
        raise _Field(f"{where}{key}: empty")
    if len(v) > limit:
        raise _Field(f"{where}{key}: {len(v)} characters, at most {limit}")
    return v


def _number(d: dict, key: str, lo: float, hi: float, where: str = "", integer: bool = False):
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Field(f"{where}{key}: must be a number")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise _Field(f"{where}{key}: {_clip(v, 20)} is outside {lo:g} .. {hi:g}")
    if integer and v != int(v):
        raise _Field(f"{where}{key}: must be a whole number")
    return int(v) if integer else float(v)


def _question(d) -> Question:
    from explorer.workshop.truths import TruthError, check_truth

    w = "question."
    if not isinstance(d, dict):
        raise _Field("question: must be a table (kind, prompt, ...)")
    _unknown(d, QUESTION_KEYS, w)
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in QUESTION_KINDS:
        raise _Field(f"question.kind: '{_clip(kind, 20)}' is not one of {', '.join(QUESTION_KINDS)}")
    prompt = _text(d, "prompt", 300, where=w)
    extra = {"number": ("unit", "min", "max"), "choice": ("choices",), "text": ("max_chars",)}[kind]
    for k in ("unit", "min", "max", "choices", "max_chars"):
        if k in d and k not in extra:
            raise _Field(f"question.{k}: not used by a {kind} question")
    kw = {}
    if kind == "number":
        kw["unit"] = _text(d, "unit", 30, required=False, where=w)
        lo = _number(d, "min", -NUMBER_BOUND, NUMBER_BOUND, w) if "min" in d else DEFAULT_RANGE[0]
        hi = _number(d, "max", -NUMBER_BOUND, NUMBER_BOUND, w) if "max" in d else DEFAULT_RANGE[1]
        if not lo < hi:
            raise _Field(f"question.max: must be larger than min ({lo:g})")
        kw.update(min=lo, max=hi)
    if kind == "choice":
        ch = d.get("choices")
        if not isinstance(ch, list) or not 2 <= len(ch) <= 8:
            raise _Field("question.choices: a list of 2 to 8 answers")
        ch = [_text({"c": c}, "c", 60, where="") if isinstance(c, str) else None for c in ch]
        if None in ch:
            raise _Field("question.choices: every choice must be text")
        if len(set(ch)) != len(ch):
            raise _Field("question.choices: a choice is listed twice")
        kw["choices"] = tuple(ch)
    if kind == "text":
        kw["max_chars"] = _number(d, "max_chars", 1, 200, w, integer=True) if "max_chars" in d else 80
        if "truth" in d:
            raise _Field("question.truth: a free-text question has no computed truth (the room's answers are "
                         "shown as they are)")
    q = Question(kind=kind, prompt=prompt, **kw)
    if d.get("truth") is not None:
        try:
            q = replace(q, truth=check_truth(d["truth"], q))
        except TruthError as e:
            raise _Field(f"question.{e}") from None
    return q


def _settings(d: dict, page: str) -> tuple[dict, str]:
    preset = _text(d, "preset", 120, required=False)
    settings = d.get("settings", {})
    if not isinstance(settings, dict):
        raise _Field("settings: must be a table of the page's URL values")
    merged = {}
    if preset:
        presets = P.presets_for(page)
        if preset not in presets:
            near = [p for p in presets if p.lower().startswith(preset.lower())] or \
                difflib.get_close_matches(preset, list(presets), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else \
                (f" (its presets: {', '.join(presets)})" if presets else " (this page has no presets)")
            raise _Field(f"preset: '{_clip(preset, 60)}' is not a preset of {P.BY_KEY[page].title}{hint}")
        merged.update(presets[preset].values)
    merged.update(settings)
    return merged, preset


def _step(d, i: int, where: str) -> Step:
    if not isinstance(d, dict):
        raise _Field("must be a table (title, page, settings, do, notice, minutes)")
    _unknown(d, STEP_KEYS, "")
    title = _text(d, "title", 80)
    page = d.get("page")
    if not isinstance(page, str) or page not in P.BY_KEY or page == "lesson":  # the teacher's page is no step
        pages = ", ".join(k for k in P.BY_KEY if k != "lesson")
        raise _Field(f"page: '{_clip(page, 40)}' is not a page (use one of {pages})")
    merged, preset = _settings(d, page)
    try:
        values, query = P.check_settings(page, merged)
    except P.SettingsError as e:
        raise _Field(str(e)) from None
    q = _question(d["question"]) if "question" in d else None
    return Step(index=i, title=title, page=page, do=_text(d, "do", 600, lines=True),
                notice=_text(d, "notice", 600, lines=True), minutes=_number(d, "minutes", 0.5, 120),
                settings=dict(merged), preset=preset, values=values, query=query, question=q)


def parse_lesson(data, name: str = "lesson") -> Lesson:
    """A lesson from the bytes or text of a TOML or JSON file (``name``: for messages and the format: a name
    ending in .json is JSON, .toml is TOML, else a text starting with "{" is JSON).  LessonError: one line."""
    name = _clip(os.path.basename(str(name or "lesson")), 60) or "lesson"
    doc = _load(_decode(data, name), name)
    try:
        _unknown(doc, LESSON_KEYS, "")
        if doc.get("format", FORMAT) != FORMAT or doc.get("version", 1) != 1:
            raise _Field(f"format: this server reads '{FORMAT}' version 1")
        title = _text(doc, "title", 80)
        summary = _text(doc, "summary", 600, required=False, lines=True)
    except _Field as e:
        raise LessonError(f"{name}: {e}") from None
    raw = doc.get("steps")
    if not isinstance(raw, list) or not raw:
        raise LessonError(f"{name}: steps: missing; a lesson has one [[steps]] table per step")
    if len(raw) > MAX_STEPS:
        raise LessonError(f"{name}: steps: {len(raw)} steps, at most {MAX_STEPS}")
    steps = []
    for i, d in enumerate(raw):
        t = d.get("title") if isinstance(d, dict) else None
        where = f"step {i + 1}" + (f" ('{_clip(t, 40)}')" if isinstance(t, str) and t.strip() else "")
        try:
            steps.append(_step(d, i, where))
        except _Field as e:
            raise LessonError(f"{name}: {where}, {e}") from None
    return Lesson(title=title, summary=summary, steps=tuple(steps), name=name)


def load_lesson_file(path) -> Lesson:
    """A lesson from a file on the server (``--lesson FILE``, ``PEFT_EXPLORER_LESSON``); LessonError: one line."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_LESSON_BYTES:
            raise LessonError(f"{p.name}: larger than a lesson file may be ({MAX_LESSON_BYTES // 1024} KiB)")
        data = p.read_bytes()
    except OSError as e:
        raise LessonError(f"{_clip(p.name, 60)}: cannot be read ({e.strerror or e})") from None
    return parse_lesson(data, p.name)


_BUNDLED: dict = {}
_BUNDLED_LOCK = threading.Lock()


def bundled_lessons() -> dict[str, Lesson]:
    """The lessons shipped in ``assets/lessons/`` (file name order), by title; read once per process."""
    with _BUNDLED_LOCK:
        if "all" not in _BUNDLED:
            out = {}
            for f in sorted(LESSONS_DIR.glob("*.toml")) + sorted(LESSONS_DIR.glob("*.json")):
                lesson = load_lesson_file(f)
                out[lesson.title] = lesson
            _BUNDLED["all"] = out
        return dict(_BUNDLED["all"])


def lesson_arg(argv=None) -> str | None:
    """The FILE of ``--lesson FILE`` / ``--lesson=FILE`` among ``argv`` (default ``sys.argv``: ``streamlit run
    app.py -- --lesson FILE`` hands it to the script), else None."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(argv):
        if a == "--lesson" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--lesson="):
            return a.split("=", 1)[1]
    return None


def server_lessons(argv=None, environ=None) -> tuple[dict[str, Lesson], list[str]]:
    """The lessons this server offers the teacher: the bundled ones, then ``PEFT_EXPLORER_LESSON`` and ``--lesson
    FILE`` (the operator's own; same title: theirs wins), and the one-line problems of files that failed."""
    environ = os.environ if environ is None else environ
    out, problems = bundled_lessons(), []
    for path in (environ.get(LESSON_ENV), lesson_arg(argv)):
        if not path:
            continue
        try:
            lesson = load_lesson_file(path)
        except LessonError as e:
            problems.append(str(e))
            continue
        out[lesson.title] = lesson
    return out, problems
