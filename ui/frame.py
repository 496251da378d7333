"""The frame every page is drawn in: the router's chrome (tab title, sidebar links, the mode switches, projector
styles, the live lesson's banner: ``ui.lesson_panel``), page links, and errors shown as one readable line.

``app.py`` is the router: it makes one ``st.Page`` per ``explorer.views.pages.PAGES`` entry, picks the current
one with ``st.navigation`` and calls :func:`chrome` before running it.  A page never draws the frame itself.
"""

from __future__ import annotations

import threading
from typing import Callable

import streamlit as st

from explorer.errors import user_message
from explorer.views.pages import BY_KEY, PAGES, PageSpec
from ui.modes import PROJECTOR_CSS, instructor_mode, mode_params, modes_from_url, modes_to_url, projector_mode, \
    projector_on
from ui.session import start_session_janitor

MAIN_CONTROL = "main-control"  # the id of the spot a page's skip link jumps to
# Every page: Streamlit's grey captions and green inline code are below WCAG AA contrast on white (axe-core:
# color-contrast); the skip link shows only when it has the keyboard focus; Streamlit's own "Stop" in the status
# widget (top right, while a script or a polling fragment runs) is hidden: it stops the page's script, not a
# training run, so a room saw two Stop buttons and pressed the one that leaves the run going.
BASE_CSS = """<style>
[data-testid="stStatusWidget"] button { display: none !important; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] * {
  color: #484b55 !important; opacity: 1 !important; }
[data-testid="stMarkdownContainer"] code { color: #14622e !important; }
a.peftx-skip { position: absolute; left: -10000px; }
a.peftx-skip:focus { position: static; display: inline-block; padding: 0.2rem 0.5rem; outline: 2px solid #1c4f9c; }
</style>"""
_this_run = threading.local()  # each session's script runs in its own thread: did the router draw this run?


def chrome(current: PageSpec) -> None:
    """Tab title, the session's modes, the sidebar (page links, mode switches) and the projector styles."""
    st.set_page_config(page_title=f"{current.title} · PEFT Explorer", page_icon=current.icon, layout="wide")
    modes_from_url()
    start_session_janitor()
    st.html(BASE_CSS)
    with st.sidebar:
        if current.main_control:  # after Streamlit's own "Skip to main content", before the page links
            st.html(f'<a class="peftx-skip" href="#{MAIN_CONTROL}">Skip to {current.main_control}</a>')
        st.markdown("**PEFT Explorer**")
        for p in PAGES:
            page_link(p.key)
        st.divider()
        instructor_mode()
        projector_mode()
        st.caption("Every setting is in the page address: copy it to share this exact view.")
    modes_to_url()
    if projector_on():
        st.html(PROJECTOR_CSS)
    _this_run.routed = True
    from ui.lesson_panel import lesson_frame

    lesson_frame(current)  # while a lesson runs: the banner, following the teacher (may open the step's page)


def page_link(key: str, label: str | None = None, icon: str | None = None, query: dict | None = None) -> None:
    """A link to a page (by its key in ``explorer.views.pages``) that keeps the session's modes."""
    p = BY_KEY[key]
    params = {**(query or {}), **mode_params()}
    try:
        st.page_link(p.file, label=label or p.title, icon=icon or p.icon, query_params=params or None)
    except Exception:  # noqa: BLE001 - a page run without the router (a script of its own) knows no other pages
        pass


def main_control() -> None:
    """Mark where the page's skip link lands: the next Tab press reaches the control drawn after this."""
    st.html(f'<div id="{MAIN_CONTROL}" tabindex="-1" aria-hidden="true"></div>')


def switch_page(key: str, query: dict | None = None) -> None:
    """Go to a page (by key), with ``query`` as its address's parameters and the session's modes."""
    st.switch_page(BY_KEY[key].file, query_params={**(query or {}), **mode_params()} or None)


def show_error(exc: BaseException, prefix: str = "") -> None:
    st.error(prefix + user_message(exc), icon=":material/error:")


def _through_the_router() -> None:
    """Streamlit (1.67) keeps a legacy mode for apps with a ``pages/`` folder beside the main script: the first
    request a fresh server gets, and every AppTest run, executes the page file directly, without ``app.py`` (no
    sidebar, no modes), until some run calls ``st.navigation``.  A page that finds itself run that way switches
    the legacy mode off (as ``st.navigation`` does) and reruns, now through the router.  A page run as a script
    of its own (no ``pages/`` folder beside it) has no router and is drawn as it is."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(_this_run, "routed", False) or not PagesManager.uses_pages_directory:
        return
    PagesManager.uses_pages_directory = False
    st.rerun()


def run_page(body: Callable[[], None]) -> None:
    """Run a page body (through the router); any exception becomes one readable line (never a traceback)."""
    _through_the_router()
    _this_run.routed = False
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - st.stop()/st.rerun() are BaseException and pass through
        show_error(exc)
