"""Compare: this session's runs as a table and as charts; a budget sweep; history import/export."""

from __future__ import annotations

import streamlit as st

from explorer.views import figures_runs as FR
from explorer.methods import SWEEP_METHODS
from explorer.workshop.jobs import default_queue, queue_place, sweep_plan
from explorer.workshop.sweeps import Sweep
from explorer.methods import METHODS
from explorer.workshop.presets import for_page
from explorer.engine.config import TrainConfig
from explorer.views.page_schemas import SWEEP_MODELS, SWEEP_RANKS, compare_schema
from explorer.views.run_series import trend_lines
from ui import board_panel, frame, models, modes, polling, session, state, widgets

PAGE = "cmp"
SWEEP_KEY = "cmp_sweep"
# the sweep's task per model kind: one that the default sweep visibly learns in its default steps
# (measured on minilm, 60 steps, LoRA ranks 1/4/16 and SMT at the same budgets with a 15-step warm-up: every run
# rose from 18.5 % at step 0 to 86.5-94.5 %; colour-shape-easy left SMT at chance in 60 steps)
SWEEP_TASKS = {"seq-cls": "bbc-news", "causal-lm": "word-category"}
SMT_WARMUP_SHARE = 4  # a sweep's SMT runs warm up for a quarter of their steps (full fine-tuning, as the paper)

SCHEMA = compare_schema()


k = state.keys(PAGE)


def knobs_summary(cfg: dict) -> str:
    kn = cfg.get("knobs") or {}
    skip = {"seed", "dropout", "mask_mode", "warmup_mode", "score", "selection"}
    parts = []
    for key, v in kn.items():
        if key in skip or v in (0, 0.0, None, "") and key in ("blocks", "block_size", "density"):
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v))
        parts.append(f"{key}={v:g}" if isinstance(v, float) else f"{key}={v}")
    return " ".join(parts) or "—"


def rows_of(hist) -> list[dict]:
    rows = []
    for e in hist:
        s, c = e.summary, e.config
        peak = None
        recs = [r for r in e.records if r.get("total_bytes") is not None and r.get("phase") in ("train", "warmup")]
        if recs:
            top = max(recs, key=lambda r: r["total_bytes"])
            peak = {key: top.get(key) for key, _, _ in FR.MEM_PARTS}
        rows.append(dict(id=e.id, name=e.label or e.title(), method=c.get("method", "?"), model=c.get("model", "?"),
                         task=s.get("task") or c.get("task") or "", knobs=knobs_summary(c),
                         trainable=s.get("trainable_params"), accuracy=s.get("final_accuracy"),
                         base_accuracy=s.get("base_accuracy"),
                         eval_n=next((r.get("eval_n") for r in reversed(e.records) if r.get("eval_n")), None),
                         peak_bytes=s.get("peak_memory_bytes"), peak_train=s.get("peak_memory_train_bytes"),
                         peak_parts=peak,
                         step_ms=(s["mean_step_time_s"] * 1000 if s.get("mean_step_time_s") else None),
                         wall=s.get("wall_time_s"), device=s.get("device"), status=e.status,
                         steps=s.get("steps_done"), records=e.records, config=c))
    return rows


def table(rows: list[dict]) -> None:
    import pandas as pd

    df = pd.DataFrame([dict(run=r["id"], method=METHODS[r["method"]].label if r["method"] in METHODS else r["method"],
                            knobs=r["knobs"], model=r["model"], task=r["task"], status=r["status"], steps=r["steps"],
                            **{"trainable params": r["trainable"],
                               "final accuracy (%)": None if r["accuracy"] is None else 100 * r["accuracy"],
                               "peak memory (MiB)": None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20,
                               "peak after warm-up (MiB)": None if r["peak_train"] is None else r["peak_train"] / 2**20,
                               "step time (ms)": r["step_ms"], "wall time (s)": r["wall"]},
                            device=r["device"]) for r in rows])
    st.dataframe(df, hide_index=True, width="stretch",
                 column_config={"final accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
                                "peak memory (MiB)": st.column_config.NumberColumn(
                                    format="%.2f", help="largest measured total (weights + gradients + optimizer "
                                                        "state + activations) of any step"),
                                "peak after warm-up (MiB)": st.column_config.NumberColumn(
                                    format="%.2f", help="the same, over the training steps only (differs for SMT)"),
                                "knobs": st.column_config.TextColumn(width="medium"),
                                "step time (ms)": st.column_config.NumberColumn(format="%.1f"),
                                "wall time (s)": st.column_config.NumberColumn(format="%.1f"),
                                "trainable params": st.column_config.NumberColumn(format="localized")})


def charts(rows: list[dict], tpl: str) -> None:
    good = [r for r in rows if r["accuracy"] is not None]
    st.markdown("#### Accuracy against budget")
    left, right = st.columns([3, 2], vertical_alignment="center")
    with right:
        st.radio("x axis", ("trainable", "memory"), key=k("x"), horizontal=True,
                 format_func=lambda x: {"trainable": "trainable parameters (log)", "memory": "peak memory"}[x])
        st.markdown("Each dot is one run: its final accuracy on held-out examples against the number of parameters "
                    "it trained (log scale) or the peak of its measured memory (weights + gradients + optimizer "
                    "state + activations). A line joins the runs of one method that differ only in their budget "
                    "(a sweep); every other run is an open diamond; each model and task has its own panel. The SMT "
                    "paper reports "
                    "that LoRA and DoRA plateau as their budget grows while SMT keeps gaining; what these runs "
                    "show, computed from their accuracies:")
        for line in trend_lines(good, lambda m: METHODS[m].label if m in METHODS else m):
            st.markdown(f"- {line}")
        if any(r["method"] in METHODS and METHODS[r["method"]].has_warmup for r in good):
            st.caption("SMT's peak memory includes its warm-up, which (in 'full' mode) trains every weight with "
                       "AdamW for a few steps; the table shows the peak after the warm-up beside it.")
    with left:
        if good:
            modes.show_fig(FR.accuracy_scatter(good, "trainable" if st.session_state[k("x")] == "trainable" else "memory",
                                            tpl), key="cmp-scatter")
        else:
            st.info("No run has a final accuracy yet (stopped during SMT's warm-up, failed or diverged).", icon=":material/info:")
    st.markdown("#### Curves overlaid")
    left, right = st.columns([3, 2], vertical_alignment="center")
    names = {r["id"]: f"{r['id']}: {r['name']}".replace("sweep · ", "")[:34] for r in rows}
    with right:
        st.radio("curve", ("accuracy", "loss"), key=k("curve"), horizontal=True,
                 format_func=lambda c: {"accuracy": "held-out accuracy", "loss": "training loss"}[c])
        default = [r["id"] for r in rows][-8:]
        cur = st.session_state.get("cmp_pick")
        # follow the newest runs until the user picks by hand
        if cur is None or not set(cur) <= set(names) or cur == st.session_state.get("cmp_pick_default"):
            st.session_state["cmp_pick"] = default
        st.session_state["cmp_pick_default"] = default
        st.multiselect("runs", list(names), key="cmp_pick", format_func=lambda i: names[i])
        st.markdown("Held-out accuracy at each evaluation, or the training loss of every batch, for the runs picked "
                    "above. Runs that learn faster rise (or fall) earlier; SMT's first steps are its warm-up.")
    with left:
        picked = [r for r in rows if r["id"] in st.session_state["cmp_pick"]]
        modes.show_fig(FR.overlay_curves([(names[r["id"]], r["records"]) for r in picked], st.session_state[k("curve")],
                                      tpl), key="cmp-curves")
    mem = [dict(name=f"{r['id']}: {r['name']}"[:48], **r["peak_parts"]) for r in rows if r["peak_parts"]]
    if mem:
        st.markdown("#### Memory at the peak step")
        left, right = st.columns([3, 2], vertical_alignment="center")
        with left:
            modes.show_fig(FR.memory_bar(mem, tpl, height=max(220, 60 + 34 * len(mem)), title=None), key="cmp-mem",
                           name="Memory at the peak step")
        with right:
            st.markdown("The step with the largest measured total of each run, split into its parts (MiB). The "
                        "frozen weights dominate for PEFT methods on small models; gradients and AdamW state grow "
                        "with the trainable count; activations grow with batch size and sequence length.")


# ----------------------------------------------------------------------------- sweep


def start_sweep(model: str, methods: list[str], ranks: list[int], steps: int, seed: int) -> None:
    loaded = models.get_base(model)
    plan = sweep_plan(loaded, methods=methods, ranks=ranks)
    task = SWEEP_TASKS[loaded.info.kind]
    for p in plan:
        if METHODS[p["method"]].has_warmup:  # its warm-up takes a share of the steps
            p["knobs"]["warmup_steps"] = max(1, steps // SMT_WARMUP_SHARE)
    start_runs([(f"sweep · {p['label']}", TrainConfig(model=model, task=task, method=p["method"], knobs=p["knobs"],
                                                      steps=steps, seed=seed, eval_every=max(2, steps // 6),
                                                      eval_examples=200)) for p in plan], loaded, kind="sweep")


def start_lesson(name: str) -> None:
    """Queue every run of a Compare lesson preset with one button (one sweep: they run one after the other)."""
    p = for_page("compare")[name]
    items = []
    for r in p.runs:
        cfg = TrainConfig(**r)
        cfg.eval_every = max(2, cfg.steps // 6)
        label = f"{METHODS[cfg.method].label} · {cfg.model} · {cfg.task}"
        items.append((label, cfg))
    start_runs(items, models.get_base(items[0][1].model), kind="lesson")


def start_runs(items: list, loaded, kind: str) -> None:
    """Run ``items`` [(label, TrainConfig)] one after another through the queue; each joins the history."""
    sw = st.session_state.get(SWEEP_KEY)
    if sw is not None and not sw.done:
        return
    hist = session.session_history()
    st.session_state[SWEEP_KEY] = Sweep(items, default_queue(), loaded=loaded, on_result=hist.sink(),
                                        owner=st.session_state.get("session_id")).start()
    st.session_state["cmp_sweep_seen"] = False
    st.session_state["cmp_sweep_kind"] = kind  # where its progress is drawn: the lesson card or the sweep


def lesson_section() -> None:
    """A loaded Compare lesson: what it compares and one button that starts all its runs."""
    presets = for_page("compare")
    name = st.session_state.get("cmp_lesson")
    if name not in presets:
        return
    p = presets[name]
    sw = st.session_state.get(SWEEP_KEY)
    busy = sw is not None and not sw.done
    with st.container(border=True):
        st.markdown(f"**Lesson: {name}.** {p.lesson}")
        for r in p.runs:
            kn = ", ".join(f"{a}={','.join(v) if isinstance(v, list) else v}" for a, v in r.get("knobs", {}).items())
            st.markdown(f"- {METHODS[r['method']].label} on {r['model']}, {r['task']}, {r['steps']} steps"
                        + (f" ({kn})" if kn else ""))
        st.button(f"Run all {len(p.runs)}", key="cmp_lesson_go", type="primary", icon=":material/play_arrow:",
                  disabled=busy, on_click=start_lesson, args=(name,),
                  help="the runs go through the server's queue one after another and join the table below")
        if st.session_state.get("cmp_sweep_kind") == "lesson":
            sweep_panel()


def stop_sweep() -> None:
    sw = st.session_state.get(SWEEP_KEY)
    if sw is not None:
        sw.stop()


def sweep_panel() -> None:
    """Polls the sweep while it runs (every 2 s while its run waits in line, every second while it trains; the
    snapshot is rebuilt only when something in it changed); a plain redraw otherwise."""
    polling.panel(_sweep_panel, "cmp_poll_s", lambda: getattr(st.session_state.get(SWEEP_KEY), "poll_s", None))


def _sweep_panel() -> None:
    sw = st.session_state.get(SWEEP_KEY)
    if sw is None:
        return
    snap = sw.snapshot()
    if not sw.done:
        polling.retime("cmp_poll_s", sw.poll_s)  # its run left the line, or the next one joined it
        sw.heartbeat()  # the page is open; a sweep no page polls for PEFT_EXPLORER_ORPHAN_S s is stopped
        st.button("Stop the sweep", icon=":material/stop_circle:", key="cmp_sweep_stop", on_click=stop_sweep)
        cur = snap.current
        txt = f"run {snap.index + 1} of {snap.total}: {snap.current_label or ''}"
        if cur and cur["status"] == "queued":
            txt += f" · queued, {queue_place(snap.position)}"
        elif cur:
            txt += f" · step {cur['step']} of {cur['total_steps']}"
        st.progress(min(1.0, (snap.index + snap.within) / max(1, snap.total)), text=txt)
    else:
        msg = {"finished": f"Sweep finished: {snap.index} runs added to the history.",
               "stopped": f"Sweep {snap.message}.", "failed": f"Sweep failed: {snap.message}"}[snap.status]
        (st.success if snap.status == "finished" else st.warning)(msg)
    if snap.results:
        st.caption(" · ".join(f"{r.label.replace('sweep · ', '')}: "
                              + (f"{r.final_accuracy:.1%}" if r.final_accuracy is not None else r.status)
                              for r in snap.results))
    if sw.done and not st.session_state.get("cmp_sweep_seen"):
        st.session_state["cmp_sweep_seen"] = True
        st.rerun(scope="app")
    elif len(snap.results) != st.session_state.get("cmp_sweep_n", 0):
        st.session_state["cmp_sweep_n"] = len(snap.results)
        st.rerun(scope="app")  # a new run joined the history: redraw the table and the charts


def sweep_section() -> None:
    frame.main_control()
    st.markdown("#### Budget sweep: does accuracy plateau as parameters grow?")
    sw = st.session_state.get(SWEEP_KEY)
    busy = sw is not None and not sw.done
    left, right = st.columns([3, 2], gap="large")
    with left:
        c = st.columns(2)
        c[0].selectbox("model", SWEEP_MODELS, key=k("sw_model"),
                       help="minilm (pretrained) learns; tiny models (random weights) run in seconds but learn little")
        c[1].slider("steps per run", 4, 400, key=k("sw_steps"))
        st.multiselect("methods", SWEEP_METHODS, key=k("sw_methods"), format_func=lambda m: METHODS[m].label)
        st.multiselect("budgets (LoRA-equivalent ranks)", [str(r) for r in SWEEP_RANKS], key=k("sw_ranks"))
        vals = state.widget_values(SCHEMA, PAGE)
        ranks = sorted(int(r) for r in vals["sw_ranks"])
        n_runs = len(vals["sw_methods"]) * len(ranks)
        st.button(f"Run the sweep ({n_runs} runs)", icon=":material/play_arrow:", key="cmp_sweep_go", type="primary",
                  disabled=busy or not n_runs, on_click=start_sweep,
                  args=(vals["sw_model"], vals["sw_methods"], ranks, int(vals["sw_steps"]), int(vals["sw_seed"])))
    with right:
        st.markdown("One method at several budgets on a task the model learns in a few dozen steps (encoders: "
                    f"`{SWEEP_TASKS['seq-cls']}`; causal LMs: `{SWEEP_TASKS['causal-lm']}`), one run after another through the "
                    "server's queue. The budgets are matched on the query and value matrices: LoRA rank r trains "
                    "r·(d_in+d_out) per matrix; SMT gets about as many parameters in b×b blocks; SpaRTA about as "
                    "many single entries. The real count of every run is measured and shown in the table.")
        st.caption("The SMT paper (He et al., 2024) reports that LoRA and DoRA plateau as the rank grows while SMT "
                   "keeps gaining. Small models and short runs may or may not show it: this sweep measures it.")
    if st.session_state.get("cmp_sweep_kind", "sweep") == "sweep":
        sweep_panel()


# ----------------------------------------------------------------------------- import / export


def import_export(hist) -> None:
    st.markdown("#### Keep your results")
    left, right = st.columns(2, gap="large")
    with left:
        st.download_button("Download the history (JSON)", hist.to_json(), file_name="peft-explorer-history.json",
                           icon=":material/download:", mime="application/json", key="cmp_export", disabled=not len(hist),
                           help="every run's config, summary and per-step records (adapters are downloaded per run "
                                "on the Fine-tune page)")
        st.caption("A participant's results in one file: import it later, here or on another server.")
    with right:
        from explorer.workshop.security import format_mib, max_upload_bytes, streamlit_max_upload_mb

        up = st.file_uploader("Import a history file (JSON)", type=["json"], key="cmp_import",
                              max_upload_size=streamlit_max_upload_mb(),
                              help=f"a file downloaded with the button on the left (up to "
                                   f"{format_mib(max_upload_bytes())})")
        if up is not None:
            sig = (up.name, up.size, getattr(up, "file_id", None))
            if st.session_state.get("cmp_import_sig") != sig:
                try:
                    n = hist.import_json(up.getvalue())
                    st.session_state["cmp_import_msg"] = ("ok", f"Imported {n} run(s) from {up.name[:80]}.")
                except Exception as exc:  # noqa: BLE001 - DataError: one readable line
                    from explorer.errors import user_message

                    st.session_state["cmp_import_msg"] = ("error", f"{up.name[:80]}: {user_message(exc)}")
                st.session_state["cmp_import_sig"] = sig
        msg = st.session_state.get("cmp_import_msg")
        if msg:
            (st.success if msg[0] == "ok" else st.error)(msg[1])


def body():
    st.title("Compare runs")
    st.markdown("Every run of this session (Fine-tune page, sweeps below, imported files) side by side: what each "
                "method trained, how accurate it became, and what it cost in memory and time.")
    hist = session.session_history()
    widgets.preset_picker(for_page("compare"), PAGE, "cmp")
    with state.page_state(PAGE, SCHEMA, keep=("sid",)) as ps:
        ps.load()
        lesson_section()
        rows = rows_of(hist)
        tpl = modes.plotly_template()
        if rows:
            table(rows)
            c = st.columns([1, 1, 4])
            if c[0].button("Clear the history", key="cmp_clear", help="removes every run of this session"):
                hist.clear()
                st.rerun()
            with st.expander("Share a run to the class board"):
                board_panel.share_picker(hist, "cmp")
            charts(rows, tpl)
        else:
            st.info("No runs yet. Start one on the **Fine-tune** page, run a sweep below, or import a history file.",
                    icon=":material/info:")
            frame.page_link("finetune", label="Go to Fine-tune")
        st.divider()
        board_panel.board_panel(tpl, "trainable" if st.session_state.get(k("x"), "trainable") == "trainable" else "memory",
                             key="cmp-board")
        st.divider()
        sweep_section()
        st.divider()
        import_export(hist)
        frame.page_link("lesson", label="Take the workshop home (the Lesson page)", icon=":material/download:")


frame.run_page(body)
