"""The Streamlit side of PEFT Explorer (``explorer/`` is the core and never imports streamlit).

- ``frame``: the router's chrome (sidebar links, mode switches, projector styles), page links, errors as one line.
- ``state``: a page's settings, mirrored in its address (``page_state``, ``keys``).
- ``modes``: instructor and projector modes; ``show_fig`` draws a figure in the mode's style.
- ``models``: the cached read-only base models and the model picker.
- ``widgets``: one widget per method knob, a fine-tune's precision, the sidebar's lesson presets.
- ``session``: this session's run history and folder.
- panels that pages share: ``runs_panel`` (a session's runs, downloads, "Try your model"), ``smt_panel`` (the SMT
  inspector's views), ``board_panel`` (sharing to the class board).
"""

# Every script run imports this package first.  pandas and plotly are imported here, once, in this order: two
# sessions' first runs importing them lazily through different entry points (a chart builder in one thread,
# pandas in another) deadlock on Python's import locks, and one of them gets a partially initialised module
# ("module 'pandas' has no attribute 'Series'", seen in a room; tests/services/test_import_race.py).
import pandas  # noqa: E402, F401
import plotly.graph_objects  # noqa: E402, F401
