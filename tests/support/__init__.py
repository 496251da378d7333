"""Helpers shared by the test layers (imported as ``tests.support.<module>``; never a test module).

* ``apptest``: page tests in Streamlit's AppTest (page_app, open_page, no_problem, qp, metric, stop_all_runs);
* ``browser``: the real server in Debian's chromium (streamlit_server, wait_idle, page_errors, axe_serious,
  screenshot, the keyboard helpers).

Fixtures live in ``conftest.py`` files (``tests/conftest.py`` for all, ``tests/<layer>/conftest.py`` for one
layer), never in a test module another one imports.
"""
