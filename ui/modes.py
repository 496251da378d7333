"""Instructor and projector modes, shared by every page, and ``show_fig``, which draws a figure in the mode's style.

- ``instructor_mode()`` / ``projector_mode()``: the sidebar switches (URL keys ``instr`` / ``proj``), drawn by
  ``ui.frame.chrome``.  A mode is kept in session state under ``_mode_<name>`` (Streamlit drops a widget's
  own state when another page runs), rides along in every page link (``mode_params()``) and preset, and is in
  the URL.
- Simple view (URL key ``instr``; "instructor" in the code): ``instructor_on()``, ``visible_knobs`` (hides
  ``Knob.advanced`` knobs and seeds) and ``keep_hidden_values`` (widgets not drawn keep their values).
- Projector mode: ``PROJECTOR_CSS`` and ``show_fig`` / ``plotly_template`` (dark template, large type).
"""

from __future__ import annotations

import streamlit as st


# ----------------------------------------------------------------------------- instructor and projector modes

# mode -> (URL key, switch label, help).  A mode lives in session state under ``_mode_<name>`` (a plain key,
# which survives page changes: Streamlit drops a widget's own state when another page runs), is copied into
# the switch's key before the switch is drawn, rides along in every page link and preset, and is in the URL.
MODES = {
    "instructor": ("instr", "Simple view",
                   "Fewer controls: hides the advanced knobs (dropout, mask redraw, seeds), which keep their values. "
                   "Anyone can turn it on or off; it changes no result and locks nothing."),
    "projector": ("proj", "Projector mode",
                  "Dark theme and large type for a projector: charts, numbers and captions readable from the "
                  "back of the room."),
}
_TRUE = ("1", "true", "on", "yes")


def _mode_key(name: str) -> str:
    return f"_mode_{name}"


def mode_on(name: str) -> bool:
    return bool(st.session_state.get(_mode_key(name), False))


def projector_on() -> bool:
    return mode_on("projector")


def mode_params() -> dict:
    """The URL keys of the modes that are on (``{"instr": "1", "proj": "1"}``): page links and presets carry them."""
    return {url: "1" for name, (url, _, _) in MODES.items() if mode_on(name)}


def modes_from_url() -> None:
    """A new session takes its modes from the URL; later the session's own state rules (page links carry it)."""
    for name, (url, _, _) in MODES.items():
        mk = _mode_key(name)
        if mk not in st.session_state:
            st.session_state[mk] = str(st.query_params.get(url, "0")).lower() in _TRUE
        st.session_state[name] = st.session_state[mk]  # re-seed the switch (its widget state is per page)


def modes_to_url() -> None:
    for name, (url, _, _) in MODES.items():
        on = mode_on(name)
        if on and st.query_params.get(url) != "1":
            st.query_params[url] = "1"
        elif not on and url in st.query_params:
            del st.query_params[url]


def _mode_switch(name: str) -> bool:
    url, label, help_ = MODES[name]

    def keep():
        st.session_state[_mode_key(name)] = bool(st.session_state.get(name))

    return st.toggle(label, key=name, help=help_, on_change=keep)


def instructor_mode() -> bool:
    """Sidebar switch (URL key ``instr``) that hides advanced knobs on every page."""
    return _mode_switch("instructor")


def instructor_on() -> bool:
    return mode_on("instructor")


INSTRUCTOR_HIDDEN_KNOBS = ("seed",)  # hidden in instructor mode besides every Knob.advanced


def visible_knobs(knobs, skip=()) -> list:
    """The method knobs a page draws: all but ``skip``, and in instructor mode neither the advanced ones
    (``Knob.advanced``) nor the seeds."""
    hide = instructor_on()
    return [kn for kn in knobs if kn.name not in skip
            and not (hide and (kn.advanced or kn.name in INSTRUCTOR_HIDDEN_KNOBS))]


def keep_hidden_values(page: str, names) -> None:
    """In instructor mode some widgets are not drawn, and Streamlit drops the state of a widget that is not
    drawn: re-assigning keeps their values (and so the URL keeps them).  ``names``: the page's field names."""
    if not instructor_on():
        return
    for n in names:
        key = f"{page}:{n}"  # = ui.state.wkey(page, n)
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def projector_mode() -> bool:
    """Sidebar switch (URL key ``proj``): dark theme and large type (``PROJECTOR_CSS``, ``show_fig``)."""
    return _mode_switch("projector")


# Projector mode.  Streamlit has no per-session theme, so the light app is turned dark by inverting the whole
# page (lightness inverted, hues kept by the 180° hue rotation: every widget, table and code block follows);
# charts are inverted back and drawn with a real dark plotly template and large fonts (``show_fig``).  Type is
# scaled through the root font size (Streamlit sizes text in rem); captions and labels lose their faint grey.
PROJECTOR_CSS = """<style>
html { font-size: 21px !important; background: #ffffff; filter: invert(1) hue-rotate(180deg); }
[data-testid="stPlotlyChart"], img, video, [data-testid="stImage"] { filter: invert(1) hue-rotate(180deg); }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] *,
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *, [data-testid="stWidgetLabel"] *,
[data-testid="stMarkdownContainer"] small, [data-testid="stTooltipIcon"] {
  color: #111318 !important; opacity: 1 !important; }
[data-testid="stCaptionContainer"] { font-size: 0.95rem !important; }
[data-testid="stMarkdownContainer"] code { font-size: 0.92em; }
[data-testid="stTable"] table, [data-testid="stTable"] th, [data-testid="stTable"] td { font-size: 1rem !important; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * { font-size: 2.1rem !important; font-weight: 600; }
[data-testid="stMetricLabel"] p { font-size: 1.0rem !important; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *, [data-testid="stMetricDelta"],
[data-testid="stMetricDelta"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
.stApp, [data-testid="stMarkdownContainer"] { color: #111318; }
[data-testid="stSidebar"] { min-width: 330px; }
[data-testid="stMainBlockContainer"] { padding-left: 2.5rem !important; padding-right: 2.5rem !important;
  max-width: none !important; }
[data-testid="stBaseButton-primary"] { filter: invert(1) hue-rotate(180deg); }
[data-testid="stBaseButton-primary"] [data-testid="stMarkdownContainer"],
[data-testid="stBaseButton-primary"] [data-testid="stMarkdownContainer"] * { color: #ffffff !important; }
[data-testid^="stBaseButton"] *, [data-testid="stPageLink"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
</style>"""


def plotly_template() -> str | None:
    """The plotly template pages pass to figure builders: None (Streamlit's chart theme, which follows the app's
    light or dark theme) or, in projector mode, "plotly_dark" (a plain string: builders and caches take it as
    is); ``show_fig`` then restyles the figure with ``explorer.views.figures.for_projector`` (dark, large type).
    ``explorer.views.figures.template_for(theme)`` gives a template for figures exported outside Streamlit."""
    return "plotly_dark" if projector_on() else None


def show_fig(fig, key: str | None = None, name: str | None = None) -> None:
    """Draw a plotly figure, with its text alternative (``figure_text``).  Normally with Streamlit's chart theme
    (follows the app's theme; colours and colour scales set on the traces are kept); in projector mode restyled by
    ``explorer.views.figures.for_projector`` (dark template, large fonts, taller) and drawn as is.  ``name``: what
    the text alternative calls a figure drawn without a title (under a heading of the page's own)."""
    if projector_on():
        from explorer.views.figures import for_projector

        st.plotly_chart(for_projector(fig), theme=None, key=key, config={"displaylogo": False})
    else:
        st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})
    chart_as_text(fig, key, name)


def chart_as_text(fig, key: str | None = None, name: str | None = None) -> None:
    """What a chart shows in words, its numbers as a table (small charts) and as a CSV (every chart): a screen
    reader cannot read the drawing.  The CSV is made only when asked for."""
    from explorer.views import figure_text as T

    title, sentence, table = T.alternative(fig)  # made once per figure (a poll redraws the same shared figure)
    with st.expander(f"Chart as text: {title or name or T.axes_name(fig) or 'this chart'}", icon=":material/table_view:"):
        st.markdown(sentence)
        if table:
            st.markdown(table)
        st.download_button("Download the numbers (CSV)", lambda: T.to_csv(fig), file_name="chart.csv",
                           mime="text/csv", on_click="ignore", key=None if key is None else f"{key}-csv",
                           icon=":material/download:")
