"""The Fine-tune page's panel of this session's runs (streamlit): pick a run, download its metrics and adapter,
share it to the class board, and try it ("Try your model": ``explorer.workshop.tryout``).  Session keys keep
the page's ``ft_`` names."""

from __future__ import annotations

import streamlit as st

from explorer.workshop.history import metrics_csv, metrics_json
from ui import board_panel, frame, models


def downloads(hist) -> None:
    if not len(hist):
        return
    st.divider()
    st.markdown("##### This session's runs")
    runs = list(hist)[::-1]
    ids = [r.id for r in runs]  # newest first
    if st.session_state.get("ft_dl_pick") not in ids or not st.session_state.get("_ft_dl_user_pick"):
        st.session_state["ft_dl_pick"] = ids[0]  # the newest run, until the user picks one by hand
    pick = st.selectbox("Run", ids, key="ft_dl_pick",
                        format_func=lambda i: f"{hist.get(i).title()} · {hist.get(i).status}",
                        on_change=lambda: st.session_state.__setitem__("_ft_dl_user_pick", True))
    e = hist.get(pick)
    if e is None:
        return
    c = st.columns(4)
    c[0].download_button("metrics (JSON)", metrics_json(e), file_name=f"{e.id}-metrics.json",
                         mime="application/json", key="ft_dl_json", width="stretch")
    c[1].download_button("metrics (CSV)", metrics_csv(e), file_name=f"{e.id}-metrics.csv", mime="text/csv",
                         key="ft_dl_csv", width="stretch")
    if e.adapter_zip:
        c[2].download_button("adapter (zip)", e.adapter_zip, file_name=f"{e.id}-adapter.zip",
                             mime="application/zip", key="ft_dl_zip", width="stretch",
                             help="the method's safetensors + JSON files; reload with explorer.engine.export.load_run_adapter")
    else:
        c[2].caption("no adapter saved for this run")
    with c[3]:
        frame.page_link("compare", label="Compare runs", icon=":material/bar_chart:")
    s = e.summary
    st.caption(f"{s.get('status')} · {s.get('steps_done')} steps · trainable {s.get('trainable_params') or 0:,} · "
               f"final accuracy {(s.get('final_accuracy') or 0):.1%} · wall {s.get('wall_time_s') or 0:.1f} s · "
               f"device {s.get('device')}")
    if e.notes:  # what the run kept or left out, and why (e.g. an adapter held in memory only)
        st.markdown("**Notes on this run**  \n" + "\n".join(f"- {n}" for n in e.notes))
    share_section(e)


def share_section(e) -> None:
    """Share the picked run to the class board (opt-in; a blank name is anonymous)."""
    board_panel.share_control(e, "ft")


def tryout_section(hist) -> None:
    """Try your model: type a sentence; the fine-tuned and the base model answer side by side."""
    from explorer.workshop import tryout as T

    e = hist.get(st.session_state.get("ft_dl_pick")) if len(hist) else None
    if e is None or e.status not in ("finished", "stopped"):
        return
    st.markdown(f"##### Try your model: {e.title()}")
    zipped = e.tryout_zip()  # the kept adapter, or a larger one held in memory only
    if not zipped:
        st.caption("This run kept no adapter to try (see its notes).")
        return
    loaded = models.load_base_or_error(e.config.get("model", ""))
    if loaded is None:
        return
    kind = loaded.info.kind
    placeholder = T.example_input(e, kind) or ""  # a sentence of the run's own task, never another task's
    with st.form("ft_try_form", border=False):
        c = st.columns([5, 1], vertical_alignment="bottom")
        text = c[0].text_input("Your sentence" if kind == "seq-cls" else "Your prompt", key="ft_try_text",
                               placeholder=placeholder, max_chars=T.MAX_TEXT)
        go = c[1].form_submit_button("Ask both", icon=":material/send:", width="stretch")
    if not go:
        st.caption("The fine-tuned model and the base model (the same new head, untrained: the model of step 0) "
                   "answer side by side." if kind == "seq-cls" else
                   "The fine-tuned model and the base model complete your prompt (greedy, a few tokens).")
        return
    held = st.session_state.get("ft_try")
    try:
        if held is None or held.run_id != e.id:
            st.session_state.pop("ft_try", None)  # one rebuilt model per session at most
            with st.spinner("Rebuilding the run's adapter on a copy of the base model…"):
                held = T.load_tryout(loaded, e.id, zipped, max_len=int(e.config.get("max_len") or 64))
            st.session_state["ft_try"] = held
        if not (text or placeholder):
            st.caption("Type a sentence like those of your task first.")
            return
        out = T.compare(held, text or placeholder)
    except Exception as exc:  # noqa: BLE001 - a readable line
        frame.show_error(exc, "Try your model: ")
        return
    if out["kind"] == "seq-cls":
        import pandas as pd

        df = pd.DataFrame([{"class": r["label"], "fine-tuned (%)": 100 * r["tuned"], "base (%)": 100 * r["base"]}
                           for r in out["rows"]])
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={"fine-tuned (%)": st.column_config.ProgressColumn(format="%.1f", min_value=0,
                                                                                      max_value=100),
                                    "base (%)": st.column_config.ProgressColumn(format="%.1f", min_value=0,
                                                                                max_value=100)})
        best_t = max(out["rows"], key=lambda r: r["tuned"])
        best_b = max(out["rows"], key=lambda r: r["base"])
        st.caption(f"Fine-tuned: **{best_t['label']}** ({best_t['tuned']:.1%}) · base: **{best_b['label']}** "
                   f"({best_b['base']:.1%}). Probabilities from a softmax over the head's outputs.")
    else:
        c = st.columns(2)
        c[0].markdown(f"**Fine-tuned**  \n{text or placeholder} **{out['tuned'] or '∅'}**")
        c[1].markdown(f"**Base**  \n{text or placeholder} **{out['base'] or '∅'}**")
