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
