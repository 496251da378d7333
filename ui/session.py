"""This session's run history and folder (streamlit).  Session ids,
folders, who holds them and their clean-up are ``explorer.workshop.sessions``'s; this module only asks Streamlit
which page is which and which pages are still open."""

from __future__ import annotations

import streamlit as st


def _page_session_id() -> str | None:
    """Streamlit's id of this browser page's session (None outside a running server)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        return ctx.session_id if ctx is not None else None
    except Exception:  # noqa: BLE001
        return None


def _page_is_live(page_session_id: str) -> bool:
    """Whether that page session is connected to this server now (False without a runtime, as in AppTest)."""
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(page_session_id)


def session_history():
    """This session's ``explorer.workshop.history.RunHistory``, persisted under a server-made session folder
    (``explorer.workshop.sessions``: the one place for session ids, folders, holders and clean-up).

    The folder's id (32 hex characters, made with ``secrets``) is also written to the URL as
    ``sid``; after a page reload the new session starts from a *copy* of that folder's runs
    (validated id, existing folder only; the id never names a path by itself), under its own
    new id, so two sessions never write the same files.  A link copied from the address bar
    while its owner's page is still open, or opened after its owner reloaded, does not carry the runs
    (``sessions.claim_restore``: an id's runs go to one page once):
    the receiver starts with an empty history and a one-line notice.  The old folder is removed by the
    janitor once its page has ended (``ui.frame.chrome`` starts it).
    """
    from explorer.workshop import history as H
    from explorer.workshop import sessions as S

    me = _page_session_id()
    if "run_history" not in st.session_state:
        sid = S.new_session_id()
        try:
            hist = H.RunHistory(S.session_dir(sid, create=False))
        except Exception:  # noqa: BLE001 - no folder: the history stays in memory
            hist = H.RunHistory()
        prev = st.query_params.get("sid")
        if prev and S.valid_session_id(prev) and prev != sid:
            if S.claim_restore(prev, _page_is_live, me=me):
                try:
                    old = S.session_dir(prev, create=False)
                    if old.is_dir():
                        hist.restore_from(old)
                except Exception:  # noqa: BLE001 - an unreadable old folder: start empty
                    pass
            else:
                st.toast("Shared link: you get its settings; its owner's runs stay with them.",
                         icon=":material/link:")
        st.session_state["session_id"] = sid
        st.session_state["run_history"] = hist
        if me:
            S.hold(sid, me, is_live=_page_is_live)
    sid = st.session_state.get("session_id")
    if S.valid_session_id(sid) and st.query_params.get("sid") != sid:
        st.query_params["sid"] = sid
    return st.session_state["run_history"]


def session_folder(create: bool = True):
    """This session's own folder (uploads, history), made on first use (``create``)."""
    from explorer.workshop import sessions as S

    if not S.valid_session_id(st.session_state.get("session_id")):
        session_history()  # makes the session's id
    return S.session_dir(st.session_state["session_id"], create=create)


def start_session_janitor() -> None:
    """Start the server's session-folder janitor (once per process; the router calls this through ``ui.frame.chrome``):
    it sweeps when the first page of a new server loads, then every ``PEFT_EXPLORER_SESSION_SWEEP_S`` seconds, and
    asks Streamlit's runtime which pages are still open.  Not without a server (AppTest, scripts)."""
    from streamlit import runtime

    from explorer.workshop import sessions as S

    try:
        if runtime.exists():
            S.start_janitor(is_live=_page_is_live)
    except Exception:  # noqa: BLE001 - no sessions root (read-only disk): pages still work
        pass
