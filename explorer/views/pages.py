"""The dashboard's pages, listed once: the router (``app.py``), the sidebar links, Home's "where to go next",
presets and lesson files all read this list.

``key`` is the page's short name (presets, lessons and session keys use it), ``file`` its script under
``pages/``, ``url_path`` its address (the names the legacy ``pages/`` folder gave them, so old links keep
working), ``title`` and ``icon`` what the sidebar and the browser tab show (Material icons: they render without
an emoji font), ``blurb`` one line for Home, ``main_control`` what the page's skip link jumps to (keyboard users
reach it in a few Tab presses; the page marks the spot with ``ui.frame.main_control()``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from explorer.errors import DataError
from explorer.urlstate import Schema


@dataclass(frozen=True)
class PageSpec:
    key: str
    file: str
    url_path: str
    title: str
    icon: str
    blurb: str = ""
    main_control: str = ""

    def address(self, query: str = "") -> str:
        """The page's address relative to the server root ("/Fine_tune?model=minilm")."""
        return "/" + self.url_path + (f"?{query}" if query else "")


PAGES: tuple[PageSpec, ...] = (
    PageSpec("home", "pages/0_Home.py", "", "Home", ":material/home:", main_control="the pages"),
    PageSpec("playground", "pages/1_Methods_playground.py", "Methods_playground", "Methods playground",
             ":material/science:", "Move a method's knobs; see counts, memory, masks and ΔW live.", "the method's knobs"),
    PageSpec("finetune", "pages/2_Fine_tune.py", "Fine_tune", "Fine-tune", ":material/model_training:",
             "Train a method on a task with live loss, accuracy and memory curves.", "Start"),
    PageSpec("compare", "pages/3_Compare.py", "Compare", "Compare", ":material/leaderboard:",
             "Runs side by side: accuracy against trainable parameters and memory.", "the budget sweep"),
    PageSpec("memory", "pages/4_Memory_calculator.py", "Memory_calculator", "Memory calculator",
             ":material/calculate:", "What a 7B–65B model needs per method, precision and batch.", "the settings"),
    PageSpec("smt", "pages/5_SMT_block_inspector.py", "SMT_block_inspector", "SMT block inspector",
             ":material/grid_view:", "SMT's warm-up gradients and the blocks it picks.", "Compute gradients"),
    PageSpec("claims", "pages/6_Claims_lab.py", "Claims_lab", "Claims lab", ":material/fact_check:",
             "Each paper's headline claim tested at small scale: intervals over seeds, a computed verdict.", "the claims"),
    PageSpec("board", "pages/7_Class_board.py", "Class_board", "Class board", ":material/groups:",
             "The runs the room shared, on one chart: the budget sweep built together.", "the board"),
    PageSpec("lesson", "pages/8_Lesson.py", "Lesson", "Lesson", ":material/school:",
             "A live lesson: the teacher leads the room step by step; everyone answers and takes the workshop home.",
             "the lesson controls"),
)
BY_KEY = {p.key: p for p in PAGES}

PARTICIPANT_KEYS = ("instr", "proj", "sid")  # each participant's own (modes, session): never a lesson step's


class SettingsError(DataError):
    """A page setting a lesson names that the page does not have or would change (one line)."""


# ----------------------------------------------------------------------------- checking and links


def page_schema(page: str, values: Mapping | None = None) -> Schema:
    """The schema of ``page``'s URL settings for these (raw or typed) values (``explorer.views.page_schemas``)."""
    from explorer.views.page_schemas import SCHEMAS

    if not isinstance(page, str) or page not in BY_KEY:
        raise SettingsError(f"unknown page '{str(page)[:40]}': use one of {', '.join(BY_KEY)}")
    return SCHEMAS[page](dict(values or {}))


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
            raise SettingsError(f"settings.{str(key)[:40]}: the page {BY_KEY[page].title} has no such setting"
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
    info = BY_KEY[page]
    path = info.url_path or ("" if base else "./")
    url = (base.rstrip("/") + "/" + path) if base else path
    return url + ("?" + urlencode(dict(query), safe=",") if query else "")


def page_for_path(path: str) -> str | None:
    """The page key of a URL path ("/Fine_tune", "Fine_tune/", "" = home); None for an unknown one."""
    p = str(path or "").strip().strip("/").rsplit("/", 1)[-1]
    p = "" if p in (".", "") else p
    return next((info.key for info in PAGES if info.url_path.lower() == p.lower()), None)
