"""Streamlit pieces of the class board (``explorer.workshop.board``), shared by the Class board, Fine-tune and Compare pages.

- ``share_control(entry, prefix)``: a name field (blank = anonymous) and a "Share to the class board" button for
  one run of the session's history (``explorer.workshop.history.RunEntry``); refusals are one line.
- ``share_picker(hist, prefix)``: the same with a picker over the session's finished runs.
- ``board_panel(tpl, x, key)``: a small chart of the board with a link to its page (Compare).
- ``board_or_error()``: the server's board, or None after one readable line.
"""

from __future__ import annotations

import streamlit as st

from explorer.views import figures_runs as FR
from explorer.workshop import board as B
from ui import frame, modes

def board_or_error():
    try:
        return B.default_board()
    except B.BoardError as exc:
        st.error(f"Class board: {exc}", icon=":material/error:")
        return None


def who() -> str:
    """This session's id (only ever hashed by the board)."""
    return str(st.session_state.get("session_id") or "")


def page_link(label: str = "Open the class board") -> None:
    frame.page_link("board", label=label)


def _share(entry, prefix: str) -> None:
    """Button callback: share ``entry`` under the name typed in ``{prefix}_board_name``."""
    try:
        b = B.default_board()
        got = b.share(B.fields_from_run(entry), who=who(), name=st.session_state.get(f"{prefix}_board_name", ""),
                      run_key=entry.id)
        st.session_state[f"{prefix}_board_msg"] = (
            "ok", B.shared_message(entry.id, got["name"]), entry.id)
    except B.BoardError as exc:
        st.session_state[f"{prefix}_board_msg"] = ("error", f"Not shared: {exc}.", entry.id)


def share_control(entry, prefix: str) -> None:
    """Name field + button for one run; the last share's outcome below them."""
    b = board_or_error()
    if b is None or entry is None:
        return
    try:
        B.fields_from_run(entry)
        why = None
    except B.BoardError as exc:
        why = str(exc)
    if why:
        st.caption(f"Class board: {why}.")
        return
    msg = st.session_state.get(f"{prefix}_board_msg")
    msg = msg if msg and msg[2] == entry.id else None
    if b.is_shared(who(), entry.id):  # shared once from this session: say so, no second button
        c = st.columns([3, 2], vertical_alignment="center")
        if msg and msg[0] == "ok":
            c[0].success(msg[1])
        else:
            c[0].caption(f"{entry.id} is on the class board.")
        if prefix != "board":
            with c[1]:
                page_link("See it on the class board")
        return
    c = st.columns([3, 2], vertical_alignment="bottom")
    c[0].text_input("Your name on the class board", key=f"{prefix}_board_name", placeholder=B.ANONYMOUS,
                    max_chars=B.MAX_NAME,
                    help="blank: anonymous. Letters, digits, spaces and - . ' ! ? , only. The board keeps the name, "
                         "method, model, task, knobs, trainable parameters, final accuracy, peak memory and steps")
    c[1].button("Share to the class board", key=f"{prefix}_board_share", icon=":material/groups:",
                on_click=_share, args=(entry, prefix), width="stretch",
                help="opt-in: the whole room sees this run's dot on the class board")
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1])


def share_picker(hist, prefix: str) -> None:
    """Pick one of the session's finished runs and share it."""
    runs = [e for e in hist if e.status == "finished" and e.summary.get("final_accuracy") is not None][::-1]
    if not runs:
        st.caption("Class board: no finished run with a final accuracy to share yet.")
        return
    ids = [e.id for e in runs]
    if st.session_state.get(f"{prefix}_board_pick") not in ids:
        st.session_state[f"{prefix}_board_pick"] = ids[0]
    pick = st.selectbox("Run to share", ids, key=f"{prefix}_board_pick",
                        format_func=lambda i: f"{i}: {hist.get(i).title()} · "
                                              f"{hist.get(i).summary.get('final_accuracy', 0):.1%}")
    share_control(hist.get(pick), prefix)


def board_panel(tpl, x: str = "trainable", key: str = "board") -> None:
    """The room's shared runs on one small chart, with a count and a link to the board's page."""
    b = board_or_error()
    if b is None:
        return
    entries = b.entries()
    st.markdown("#### Class board")
    left, right = st.columns([3, 2], vertical_alignment="center")
    with right:
        n_models = len({(e["model"], e["task"]) for e in entries})
        st.markdown(f"**{len(entries)}** run{'s' if len(entries) != 1 else ''} shared by the room"
                    + (f", on {n_models} model/task pairs" if n_models > 1 else "") +
                    ". Each dot is one participant's run; the dotted lines join each method's mean at each budget. "
                    "Share one of your finished runs from \"Share a run to the class board\" under the table above, "
                    "or from the Fine-tune page.")
        page_link()
    with left:
        if entries:
            modes.show_fig(FR.board_scatter(entries, x, tpl, height=320), key=f"{key}-scatter")
        else:
            st.info("No run has been shared to the class board yet.", icon=":material/groups:")
