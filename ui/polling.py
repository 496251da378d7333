"""Panels that poll what runs on the server (a fine-tune, a sweep, SMT's warm-up, a claims re-run) at a pace chosen
from its state, and change that pace from inside the panel, without a full-page run.

    polling.panel(_live_panel, "ft_poll_s", pace)   # draws _live_panel() in a fragment polling every pace() s
    # inside _live_panel, when the state moved (queued -> training):
    polling.retime("ft_poll_s", pace())               # from now on the fragment polls at the new pace

Streamlit sends a fragment's ``run_every`` to the browser when the fragment is first drawn (a full run); a
fragment's own reruns never send it again, so a panel that starts polling a queued run every 2 s would keep that
pace while the run trains.  :func:`retime` sends the browser the fragment's new pace itself (the message
``st.fragment(run_every=...)`` sends: the browser keeps one timer per fragment and replaces it), or, with no pace,
stops it; the browser drops every timer at the next full run, which draws the panel with its pace again.  The pace
in use is kept in ``st.session_state[key]``.  Where Streamlit's internals are not what this module expects (another
Streamlit version), :func:`retime` falls back to a full-page run, which redraws the panel at the new pace.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st


def panel(body: Callable[..., None], key: str, pace: Callable[[], float | None], *args) -> None:
    """Draw ``body(*args)`` in a fragment that reruns every ``pace()`` seconds (None: only when the page reruns)."""
    st.session_state[key] = pace()
    st.fragment(run_every=st.session_state[key])(body)(*args)


def retime(key: str, seconds: float | None) -> None:
    """Inside the panel's fragment: poll every ``seconds`` from now on (None: stop), if that is a new pace."""
    if st.session_state.get(key) == seconds:
        return
    st.session_state[key] = seconds
    if not _send_pace(seconds):
        st.rerun(scope="app")


def _send_pace(seconds: float | None) -> bool:
    try:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState, get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
        fid = ThreadState.get().fragment_id
    except Exception:  # noqa: BLE001 - another Streamlit: the caller falls back to a full-page run
        return False
    if ctx is None or not fid:
        return False
    msg = ForwardMsg()
    if seconds:
        msg.auto_rerun.interval = float(seconds)
        msg.auto_rerun.fragment_id = fid
    else:
        msg.stop_auto_rerun.fragment_ids.append(fid)
    ctx.enqueue(msg)
    return True
