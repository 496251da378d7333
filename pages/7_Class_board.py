"""Class board: every run the room chose to share, on one chart (accuracy against budget, coloured by method)."""

from __future__ import annotations

import time

import streamlit as st

from explorer.workshop import board as B
from explorer.views import figures_runs as FR
from explorer.views.figcache import cached
from explorer.views.fmt import count, exact, nbytes, text_width_px
from explorer.urlstate import Field, Schema
from ui import board_panel, frame, modes, session, state

PAGE = "board"
ALL = "all shared runs"
GROUP = state.wkey(PAGE, "group")


def schema(opts: list[str]) -> Schema:
    """The page's URL setting: the model and task shown, one of the pairs on the board now (default: the pair most
    of the room ran), so a link can point the projector at one pair.  The instructor token is never in the URL."""
    return Schema([Field("group", "choice", opts[0], choices=tuple(opts), help="model · task shown")])


def watch(board) -> None:
    """While the page is open, look at the board's change counter every 5 s and redraw when it moved."""
    st.session_state["board_seen"] = board.version()  # this run draws this version

    def _check():
        try:
            v = board.version()
        except B.BoardError:
            return
        if v != st.session_state.get("board_seen"):
            st.session_state["board_seen"] = v
            st.rerun(scope="app")

    st.fragment(run_every=5.0)(_check)()


def group_of(e: dict) -> str:
    return f"{e['model']} · {e['task']}"


def groups_of(entries: list[dict]) -> dict[str, int]:
    """{"model · task": runs}, the pair most runs are of first."""
    groups: dict[str, int] = {}
    for e in entries:
        groups[group_of(e)] = groups.get(group_of(e), 0) + 1
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def pick_group(entries: list[dict]) -> list[dict]:
    groups = groups_of(entries)
    if len(groups) < 2:
        return entries
    opts = list(groups) + [ALL]
    if st.session_state.get(GROUP) not in opts:
        st.session_state[GROUP] = opts[0]  # the model and task most of the room ran
    g = st.selectbox("Runs of", opts, key=GROUP,
                     format_func=lambda g: f"{g} ({groups[g]} runs)" if g in groups else f"{g} ({len(entries)})",
                     help="compare like with like: one model on one task (accuracies of different tasks differ)")
    return entries if g == ALL else [e for e in entries if group_of(e) == g]


def table(entries: list[dict]) -> None:
    import pandas as pd

    now = time.time()
    df = pd.DataFrame([{"#": e["id"], "name": e["name"] or B.ANONYMOUS, "method": e["method"], "knobs": e["knobs"],
                        "model": e["model"], "task": e["task"], "trainable params": e["trainable"],
                        "final accuracy (%)": 100 * e["accuracy"],
                        "peak memory (MiB)": None if e["peak_bytes"] is None else e["peak_bytes"] / 2**20,
                        "steps": e["steps"], "shared (min ago)": max(0.0, (now - e["created"]) / 60)}
                       for e in entries[::-1]])
    st.dataframe(df, hide_index=True, width="stretch",
                 column_config={"final accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
                                "peak memory (MiB)": st.column_config.NumberColumn(format="%.2f"),
                                "shared (min ago)": st.column_config.NumberColumn(format="%.0f"),
                                "trainable params": st.column_config.NumberColumn(format="localized"),
                                "knobs": st.column_config.TextColumn(width=text_width_px(df["knobs"]))})


# ----------------------------------------------------------------------------- instructor


def _token() -> str:
    return st.session_state.get("board_token") or ""


def _say(kind: str, text: str) -> None:
    st.session_state["board_instr_msg"] = (kind, text)


def unlock() -> None:
    try:
        B.default_board().authorize(_token(), board_panel.who())
        st.session_state["board_unlocked"] = True
        _say("ok", "Instructor controls unlocked for this session.")
    except B.BoardError as exc:
        st.session_state["board_unlocked"] = False
        _say("error", f"Refused: {exc}.")


def do_hide(hidden: bool) -> None:
    key = "board_to_hide" if hidden else "board_to_show"
    ids = st.session_state.get(key) or []
    try:
        n = B.default_board().hide(ids, _token(), board_panel.who(), hidden=hidden)
        _say("ok", f"{'Hid' if hidden else 'Showed again'} {n} entr{'y' if n == 1 else 'ies'}.")
        st.session_state[key] = []
    except B.BoardError as exc:
        _say("error", f"Refused: {exc}.")


def do_clear() -> None:
    try:
        n = B.default_board().clear(_token(), board_panel.who())
        _say("ok", f"Cleared the board ({n} entr{'y' if n == 1 else 'ies'} deleted).")
    except B.BoardError as exc:
        _say("error", f"Refused: {exc}.")
    st.session_state["board_confirm"] = False


def instructor(board) -> None:
    st.markdown("#### Instructor")
    why = B.token_problem()
    if why:
        st.caption(why)
        return
    c = st.columns([3, 1], vertical_alignment="bottom")
    c[0].text_input("Instructor token", type="password", key="board_token",
                    help="set by the server's operator in PEFT_EXPLORER_INSTRUCTOR_TOKEN; never put it in a link")
    c[1].button("Unlock", key="board_unlock", on_click=unlock, icon=":material/lock_open:", width="stretch")
    msg = st.session_state.get("board_instr_msg")
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1])
    if not st.session_state.get("board_unlocked"):
        st.caption("Only the instructor can hide entries or clear the board.")
        return
    every = board.entries(include_hidden=True)
    label = {e["id"]: f"#{e['id']} {e['name'] or B.ANONYMOUS}: {e['method']} {e['knobs']} · "
                      f"{100 * e['accuracy']:.1f} %" for e in every}
    c = st.columns(2, gap="large")
    shown = [e["id"] for e in every if not e["hidden"]]
    hidden = [e["id"] for e in every if e["hidden"]]
    for key, ids in (("board_to_hide", shown), ("board_to_show", hidden)):
        st.session_state[key] = [i for i in st.session_state.get(key) or [] if i in ids]
    with c[0]:
        st.multiselect("Hide entries", shown, key="board_to_hide", format_func=label.get)
        st.button("Hide", key="board_hide", on_click=do_hide, args=(True,), icon=":material/visibility_off:")
    with c[1]:
        st.multiselect("Show hidden entries again", hidden, key="board_to_show", format_func=label.get)
        st.button("Show again", key="board_show", on_click=do_hide, args=(False,), icon=":material/visibility:")
    c = st.columns([2, 1], vertical_alignment="center")
    c[0].checkbox(f"Yes, delete all {len(every)} entries of the board", key="board_confirm")
    c[1].button("Clear the board", key="board_clear", on_click=do_clear, icon=":material/delete:",
                disabled=not st.session_state.get("board_confirm"), width="stretch")


# ----------------------------------------------------------------------------- page


def metrics(board, rows: list[dict], n_shown: int, n_hidden: int) -> None:
    m = st.columns(4)
    m[0].metric("shared runs", count(len(rows)), help=f"{n_shown} on the board in all"
                + (f"; {n_hidden} hidden by the instructor" if n_hidden else ""))
    who = board.participants([e["id"] for e in rows])
    m[1].metric("participants", count(who["total"]),
                help=f"people who shared these runs, anonymous shares included: {who['named']} named, "
                     f"{who['anonymous']} anonymous" + (f"; {who['unknown']} anonymous run(s) shared before "
                                                       "the board kept sharers are not counted" if who["unknown"]
                                                       else ""))
    m[2].metric("methods", count(len({e['method'] for e in rows})))
    best = max(rows, key=lambda e: e["accuracy"])
    m[3].metric("best accuracy", f"{100 * best['accuracy']:.1f} %",
                help=f"{best['name'] or B.ANONYMOUS}: {best['method']} {best['knobs']}, "
                     f"{exact(best['trainable'])} trainable, peak {nbytes(best['peak_bytes'])}")


def charts(board, rows: list[dict]) -> None:
    """The two scatters, built once per board version, group and template (shared by every session)."""
    tpl = modes.plotly_template()
    seen = ("board", board.cache_id, st.session_state.get("board_seen"), st.session_state.get(GROUP), tpl)
    c = st.columns(2) if not modes.projector_on() else [st.container(), st.container()]
    with c[0]:
        modes.show_fig(cached(seen + ("trainable",), lambda: FR.board_scatter(rows, "trainable", tpl)),
                       key="board-trainable")
    with c[1]:
        if any(e["peak_bytes"] for e in rows):
            modes.show_fig(cached(seen + ("memory",), lambda: FR.board_scatter(rows, "memory", tpl)),
                           key="board-memory")
    st.caption("Dots: one shared run each, coloured by method (the colours of Compare). Dotted lines: each "
               "method's mean over the room's runs at each budget, in budget order. Peak memory is the byte "
               "account's largest step (weights + gradients + optimizer state + activations).")


def body():
    st.title("Class board")
    st.markdown("Runs that participants chose to share, from every session of the room (every server that shares "
                "this board): each dot is one fine-tune's final held-out accuracy against what it trained "
                "(parameters) and what it cost (peak memory). Together the room fills in the budget sweep: does LoRA "
                "plateau as its rank grows while SMT keeps gaining?")
    hist = session.session_history()
    board = board_panel.board_or_error()
    if board is None:
        return
    watch(board)
    entries = board.entries()
    groups = groups_of(entries)
    sch = schema(list(groups) + [ALL] if len(groups) > 1 else [ALL])
    with state.page_state(PAGE, sch, keep=("sid",)) as ps:
        ps.load()
        n_shown, n_hidden = board.counts()
        frame.main_control()
        if entries:
            rows = pick_group(entries)
            metrics(board, rows, n_shown, n_hidden)
            charts(board, rows)
            table(rows)
        else:
            st.info((f"Nothing shown ({n_hidden} hidden by the instructor). " if n_hidden else "Nothing shared yet. ") +
                    "Finish a run on **Fine-tune** (or a sweep on **Compare**) and press "
                    "**Share to the class board** there or below.", icon=":material/groups:")
        with st.expander("Share one of your runs", expanded=not entries):
            board_panel.share_picker(hist, "board")
        st.divider()
        instructor(board)


frame.run_page(body)
