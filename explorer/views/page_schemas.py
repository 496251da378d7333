"""Every page's address in one place: its key, title, URL path, file, and the schema of its URL settings.

Pure Python (no streamlit).  Lessons (``explorer.workshop.lessons``) name a page by its key and give its settings
as URL values; this module checks them against the page's real schema (strictly: an unknown key or a value the
schema would change is an error, so a typo in a lesson file is caught) and writes the link that reproduces the
view::

    values, query = check_settings("playground", {"m1": "lora", "a_rank": 16})   # SettingsError: one line
    link("playground", query, base="http://host:8501")   # 'http://host:8501/Methods_playground?m1=lora&a_rank=16'
    page_for_path("/Methods_playground")                  # 'playground'

Schemas whose fields depend on a value (the playground's methods m1/m2, Fine-tune's method) are built from the
values given (:func:`page_schema`).  The schemas of the playground and the Memory calculator are the page's own
(``explorer.views.playground`` / ``memory_views``); those of Fine-tune, Compare, the SMT inspector, the Claims lab
and the Class board are declared here with the same fields as the page files (``tests/test_lessons.py`` compares
them field by field with the pages' source, so the two cannot drift apart unseen).  ``instr`` and ``proj`` (the
instructor and projector modes) and ``sid`` (the session) are each participant's own, never a page setting.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlencode

from explorer.errors import DataError
from explorer.urlstate import Field, Schema, knob_fields

__all__ = ["PageInfo", "PAGES", "SettingsError", "page_schema", "check_settings", "link", "page_for_path",
           "presets_for", "PARTICIPANT_KEYS"]

PARTICIPANT_KEYS = ("instr", "proj", "sid")  # each participant's own: never in a lesson step


class SettingsError(DataError):
    """A page setting a lesson names that the page does not have or would change (one line)."""


@dataclass(frozen=True)
class PageInfo:
    key: str  # the name lessons and presets use
    title: str
    url_path: str  # "" = Home; Streamlit's address of the page
    file: str  # for st.switch_page
    schema: Callable[[Mapping], Schema]  # the full schema for these (raw or typed) values


# ----------------------------------------------------------------------------- the schemas


def _playground(values: Mapping) -> Schema:
    from explorer.views import playground as pg

    base = pg.page_schema()
    v, _ = base.parse(values)
    s = base + pg.side_schema(v["m1"], "a")
    return s + pg.side_schema(v["m2"], "b") if v["m2"] != "none" else s


def _task_names() -> tuple:
    from explorer import data as D

    return tuple(t["name"] for t in D.list_tasks())


def finetune_base_schema() -> Schema:
    """= ``page_schema()`` of ``pages/2_Fine_tune.py``."""
    from explorer.engine.config import PRECISIONS, TrainConfig
    from explorer.methods import METHODS

    return Schema([
        Field("model", "str", "minilm", max_len=200), Field("src", "choice", "built-in",
                                                            choices=("built-in", "upload", "hub")),
        Field("task", "choice", "", choices=("",) + _task_names()), Field("hub", "str", "", max_len=96),
        Field("method", "choice", "lora", choices=tuple(METHODS)),
        Field("steps", "int", TrainConfig.steps, min=2, max=500), Field("lr", "float", 0.0, min=0.0, max=0.1),
        Field("bs", "int", 16, min=1, max=64), Field("seed", "int", 0, min=0, max=2**31 - 1),
        Field("device", "choice", "auto", choices=("auto", "cpu", "cuda")),
        Field("prec", "choice", TrainConfig.precision, choices=PRECISIONS),
        Field("ckpt", "bool", TrainConfig.checkpointing),
    ])


def _finetune(values: Mapping) -> Schema:
    from explorer.methods import METHODS

    base = finetune_base_schema()
    method = base.parse(values)[0]["method"]
    return base + Schema(knob_fields(METHODS[method].knobs, prefix="k_"))


def _compare(values: Mapping) -> Schema:
    """= ``SCHEMA`` of ``pages/3_Compare.py``."""
    from explorer.workshop.jobs import SWEEP_METHODS

    return Schema([
        Field("x", "choice", "trainable", choices=("trainable", "memory")),
        Field("curve", "choice", "accuracy", choices=("accuracy", "loss")),
        Field("sw_model", "choice", "minilm", choices=("minilm", "tiny-bert", "tiny-llama", "smollm2-135m")),
        Field("sw_methods", "multi", ["lora", "smt"], choices=SWEEP_METHODS),
        Field("sw_ranks", "multi", ["1", "4", "16"], choices=tuple(str(r) for r in (1, 2, 4, 8, 16, 32))),
        Field("sw_steps", "int", 60, min=4, max=400), Field("sw_seed", "int", 0, min=0, max=2**31 - 1),
    ])


def _memory(values: Mapping) -> Schema:
    from explorer.views import memory_views as V

    return V.page_schema()


def _smt(values: Mapping) -> Schema:
    """= ``SCHEMA`` of ``pages/5_SMT_block_inspector.py``."""
    from explorer import smt as A
    from explorer.methods.smt import SCORES
    from explorer.targets import ALL_TYPES

    types = tuple(ALL_TYPES)
    return Schema([
        Field("model", "choice", "tiny-llama", choices=("tiny-llama", "tiny-bert", "minilm", "smollm2-135m")),
        Field("task", "choice", "", choices=("",) + _task_names()),
        Field("ws", "int", 16, min=1, max=200), Field("bs", "int", 4, min=1, max=32),
        Field("len", "int", 128, min=16, max=512), Field("mode", "choice", "full", choices=tuple(A.MODES)),
        Field("seed", "int", 0, min=0, max=2**31 - 1), Field("b", "int", 0, min=0, max=4096),
        Field("budget", "choice", "blocks", choices=("blocks", "density")),
        Field("n", "int", 0, min=0, max=10_000_000), Field("dens", "float", 0.01, min=0.0001, max=1.0),
        Field("score", "choice", "abs-mean", choices=tuple(SCORES)),
        Field("rule", "choice", "global", choices=tuple(A.RULES)),
        Field("types", "multi", list(types), choices=types), Field("layer", "int", 0, min=0, max=200),
        Field("mat", "choice", "v", choices=types), Field("log", "bool", False),
        Field("grid", "choice", "v", choices=types),
    ])


def _claims(values: Mapping) -> Schema:
    from explorer.claims import specs

    return Schema([Field("claim", "choice", "all", choices=("all",) + tuple(specs.NAMES))])


def _board(values: Mapping) -> Schema:
    # the page's choices are the model · task pairs on the board at the time; a lesson can only name one as text
    return Schema([Field("group", "str", "", max_len=130)])


def _home(values: Mapping) -> Schema:
    return Schema([])


PAGES: dict[str, PageInfo] = {p.key: p for p in [
    PageInfo("home", "Home", "", "app.py", _home),
    PageInfo("playground", "Methods playground", "Methods_playground", "pages/1_Methods_playground.py", _playground),
    PageInfo("finetune", "Fine-tune", "Fine_tune", "pages/2_Fine_tune.py", _finetune),
    PageInfo("compare", "Compare", "Compare", "pages/3_Compare.py", _compare),
    PageInfo("memory", "Memory calculator", "Memory_calculator", "pages/4_Memory_calculator.py", _memory),
    PageInfo("smt", "SMT block inspector", "SMT_block_inspector", "pages/5_SMT_block_inspector.py", _smt),
    PageInfo("claims", "Claims lab", "Claims_lab", "pages/6_Claims_lab.py", _claims),
    PageInfo("board", "Class board", "Class_board", "pages/7_Class_board.py", _board),
]}


# ----------------------------------------------------------------------------- checking and links


def page_schema(page: str, values: Mapping | None = None) -> Schema:
    if not isinstance(page, str) or page not in PAGES:
        raise SettingsError(f"unknown page '{str(page)[:40]}': use one of {', '.join(PAGES)}")
    return PAGES[page].schema(dict(values or {}))


def presets_for(page: str) -> dict:
    """The named presets of a page (``explorer.workshop.presets`` and the Memory calculator's own)."""
    from explorer.workshop.presets import for_page

    if page == "memory":
        from explorer.views import memory_views as V

        return dict(V.PRESETS)
    return for_page(page)


def _suggest(key: str, known) -> str:
    near = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean '{near[0]}'?" if near else f"; this page's settings: {', '.join(known) or 'none'}"


def check_settings(page: str, settings: Mapping) -> tuple[dict, dict]:
    """(every value of the page's schema, the given ones encoded as URL strings) for ``settings``.

    Strict, for lesson files: an unknown key, a participant's own key, or a value that the page would clamp,
    drop or replace is a :class:`SettingsError` naming the key ("settings.a_rank: 300 is above the maximum,
    set to 256").  ``settings`` values may be typed (TOML numbers, lists) or URL strings."""
    if not isinstance(settings, Mapping):
        raise SettingsError("settings must be a table of the page's URL values")
    schema = page_schema(page, settings)
    for key in settings:
        if key in PARTICIPANT_KEYS:
            raise SettingsError(f"settings.{key}: each participant's own (modes and session), not a step's setting")
        if key not in schema:
            raise SettingsError(f"settings.{str(key)[:40]}: the page {PAGES[page].title} has no such setting"
                                + _suggest(str(key), schema.fields))
    typed = {}
    for key, raw in settings.items():
        v, warn = schema[key].clamp(raw)
        if warn:
            raise SettingsError(f"settings.{warn}")
        typed[key] = v
    values = schema.clamp(typed)
    return values, schema.encode(typed)


def link(page: str, query: Mapping | None = None, base: str = "") -> str:
    """The address of ``page`` with ``query`` (URL strings): ``base`` + "/" + the page's path + "?" + query.
    ``base`` "" gives a relative link ("Methods_playground?..."; Home: "./?...")."""
    info = PAGES[page]
    path = info.url_path or ("" if base else "./")
    url = (base.rstrip("/") + "/" + path) if base else path
    return url + ("?" + urlencode(dict(query), safe=",") if query else "")


def page_for_path(path: str) -> str | None:
    """The page key of a URL path ("/Fine_tune", "Fine_tune/", "" = home); None for an unknown one."""
    p = str(path or "").strip().strip("/").rsplit("/", 1)[-1]
    p = "" if p in (".", "") else p
    return next((k for k, info in PAGES.items() if info.url_path.lower() == p.lower()), None)
