"""SMT block inspector: where Sparse Matrix Tuning puts its budget, and why.

Two kinds of settings:

1. **Warm-up** (model, task, warm-up steps, batch size, max length, warm-up mode): "Compute gradients"
   runs SMT's warm-up once (``explorer.smt_inspector.collect.collect_gradients``) in a worker thread of the
   server's run queue, with progress and a Stop; the record is cached per (model, task, settings) by the
   core (memory + disk) and in this session.  Tiny models start at once (under a second).
2. **Selection** (block size, number of blocks or density, score, rule, matrix types): re-scored from the
   cached record by ``explorer.smt_inspector.analysis.analyze``; never recomputes gradients.

"Train with this selection" stores an ``explorer.workshop.inspector.SmtHandoff`` in
``st.session_state[HANDOFF_KEY]`` (``"smt_inspector_selection"``: model, task, block size, types, the selection
``{target: ([rows], [cols])}`` and the Fine-tune address with matching SMT knobs) and switches to the Fine-tune
page; Fine-tune passes the selection as ``TrainConfig(smt_selection=...)`` when model, block size and targets
match (``SmtHandoff.mismatch``).  The warm-up job, its settings and the block budget are the services of
``explorer.workshop.inspector``.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from explorer import data as D
from explorer import smt_inspector as A
from explorer.views import smt_views as V
from explorer.errors import user_message
from explorer.workshop.inspector import BlockGrid, SmtHandoff, WarmupSettings, block_grid, start_warmup
from explorer.workshop.jobs import queue_place
from explorer.methods.smt_blocks import SCORE_LABELS, SCORES
from explorer.views.page_schemas import SMT_INSTANT, SMT_MODELS, smt_schema
from ui import frame, models, modes, polling, smt_panel, state, widgets

PAGE = "smt"
HANDOFF_KEY = "smt_inspector_selection"
JOB_KEY = "smt:job"
RECS_KEY = "smt:records"
FT_PAGE = "pages/2_Fine_tune.py"
AUTO_TOKENS = 65_536  # a tiny model's first view starts by itself only up to this many warm-up tokens (~1 s)
LENS = [16, 32, 64, 128, 256, 512]
BATCHES = [1, 2, 4, 8, 16, 32]
ADVANCED = ("mode", "bs", "len", "types", "seed")  # hidden in instructor mode
SCORE_SHORT = V.SCORE_SHORT



k = state.keys(PAGE)


SCHEMA = smt_schema()


# ----------------------------------------------------------------------------- the gradient job


def start_job(loaded, ws: WarmupSettings) -> None:
    wj = st.session_state.get(JOB_KEY)
    if wj is not None and wj.running:
        return
    try:
        st.session_state[JOB_KEY] = start_warmup(loaded, ws, owner=st.session_state.get("session_id"))
    except Exception as exc:  # noqa: BLE001 - MemoryRefused: one readable line
        st.session_state["smt:notice"] = user_message(exc)
        return
    st.session_state.pop("smt:notice", None)


def stop_job() -> None:
    wj = st.session_state.get(JOB_KEY)
    if wj is not None:
        wj.stop()


def collect_finished() -> None:
    """Move a finished job's record into this session's store (or its error into a notice)."""
    wj = st.session_state.get(JOB_KEY)
    if wj is None or wj.running or wj.seen:
        return
    wj.seen = True
    rec, notice = wj.outcome()
    if rec is not None:
        recs = st.session_state.setdefault(RECS_KEY, {})
        recs[wj.settings.sig] = rec
        while len(recs) > 4:
            recs.pop(next(iter(recs)))
        st.session_state.pop("smt:notice", None)
    else:
        st.session_state["smt:notice"] = notice


def progress_panel() -> None:
    """Polls the warm-up every 2 s while it waits in line, every 0.5 s while it computes (``ui.polling``)."""
    polling.panel(_progress_panel, "smt_poll_s", lambda: getattr(st.session_state.get(JOB_KEY), "poll_s", None))


def _progress_panel() -> None:
    wj = st.session_state.get(JOB_KEY)
    if wj is None:
        return
    if wj.running:
        polling.retime("smt_poll_s", wj.poll_s)  # it left the line: the faster pace, no full-page run
        p = wj.progress
        wait = f" · {queue_place(wj.job.position())}" if wj.job.status == "queued" else ""
        c = st.columns([5, 1], vertical_alignment="center")
        c[0].progress(min(1.0, p.frac), text=f"{p.msg}{wait} · {time.time() - p.t0:.0f} s")
        c[1].button("Stop", key="smt_stop", on_click=stop_job, icon=":material/stop_circle:", width="stretch",
                    help="Ends the warm-up within one step; the steps done so far are shown (not cached)")
        return
    if not wj.seen:
        collect_finished()
        st.rerun(scope="app")


# ----------------------------------------------------------------------------- controls


def warmup_controls(instructor: bool) -> None:
    st.selectbox("Model", SMT_MODELS, key=k("model"),
                 help="tiny-*: random weights (instant) · minilm: pretrained 22.7 M BERT · "
                      "smollm2-135m: pretrained 134.5 M LLaMA-style (16 steps of 4 × 128 tokens: about 2–3 min "
                      "on CPU)")
    model = st.session_state[k("model")]
    kind = "causal-lm" if model in ("tiny-llama", "smollm2-135m") else "seq-cls"
    fits = [t["name"] for t in D.list_tasks() if t["kind"] == kind]
    if st.session_state.get(k("task")) not in fits:
        st.session_state[k("task")] = D.default_task_for(kind)
    st.selectbox("Task", fits, key=k("task"), help="a built-in task of this model kind")
    st.slider("Warm-up steps", 1, 200, key=k("ws"),
              help="batches whose gradients are summed (the SMT code uses about 100)")
    if not instructor:
        c = st.columns(2)
        if st.session_state.get(k("bs")) not in BATCHES:
            st.session_state[k("bs")] = min(BATCHES, key=lambda b: abs(b - int(st.session_state.get(k("bs"), 4))))
        c[0].select_slider("Batch size", BATCHES, key=k("bs"))
        if st.session_state.get(k("len")) not in LENS:
            st.session_state[k("len")] = min(LENS, key=lambda b: abs(b - int(st.session_state.get(k("len"), 128))))
        c[1].select_slider("Max length", LENS, key=k("len"), help="tokens per example (longer ones are cut)")
        st.radio("Warm-up mode", A.MODES, key=k("mode"), horizontal=True,
                 format_func=lambda m: {"full": "full (as in the public SMT code)",
                                        "gradient-only": "gradient-only"}[m],
                 help="full: every warm-up step is an AdamW step of full fine-tuning, gradients summed on the way "
                      "(the public SMT code) · gradient-only: weights never move (a deviation; less memory)")
        st.number_input("Seed", 0, 2**31 - 1, step=1, key=k("seed"), help="data order and the random comparison")


def selection_controls(loaded, instructor: bool) -> tuple[BlockGrid, list[str]]:
    """Block size, budget, score, rule (and types): returns the block grid in use and the types."""
    have = widgets.available_types(loaded)
    if not instructor:
        cur = [t for t in st.session_state.get(k("types"), have) if t in have] or have
        st.session_state[k("types")] = cur
        st.multiselect("Matrix types to select from", have, key=k("types"),
                       format_func=lambda t: V.type_name(t, loaded.info.family),
                       help="SMT's own targets q, k, v by default (the paper's); add the other matrices to see "
                            "where else the gradient would put the budget")
    types = [t for t in st.session_state.get(k("types"), have) if t in have] or have
    g = block_grid(loaded, types)
    if st.session_state.get(k("b")) not in [0] + g.valid:
        st.session_state[k("b")] = 0
    left, right = st.columns(2, gap="large")
    left.select_slider("Block size b", [0] + g.valid, key=k("b"),
                       format_func=lambda b: f"auto ({g.auto})" if b == 0 else str(b),
                       help=f"only sizes that divide every chosen matrix and are multiples of the stored grain "
                            f"{g.grain}")
    g = block_grid(loaded, types, int(st.session_state[k("b")]))
    b, total = g.block_size, g.total
    right.radio("Budget", ["blocks", "density"], key=k("budget"), horizontal=True,
                format_func=lambda x: {"blocks": "number of blocks", "density": "density"}[x])
    if st.session_state[k("budget")] == "blocks":
        if int(st.session_state.get(k("n"), 0)) > total:
            st.session_state[k("n")] = total
        right.slider("Number of blocks", 0, total, key=k("n"),
                     help=f"0 = auto: about 1 % of all {g.n_params:,} parameters = {g.auto_blocks} blocks"
                          + (f" ({g.capped})" if g.capped else "") + f" · {total:,} blocks of {b}×{b} in all")
        left.caption(f"{int(st.session_state[k('n')]) or g.auto_blocks} of {total:,} blocks of {b}×{b}"
                     + (" (auto: ≈1 % of all parameters, SMT's default)" if not st.session_state[k('n')] else ""))
    else:
        lo = g.min_density()
        if float(st.session_state.get(k("dens"), 0.01)) < lo:
            st.session_state[k("dens")] = min(1.0, round(lo, 4) if round(lo, 4) >= lo else lo)
        right.slider("Density", 0.0001, 1.0, key=k("dens"), step=0.0001, format="%.4f",
                     help="fraction of the chosen matrices' blocks that train")
    c = st.columns(2)
    c[0].radio("Score", list(SCORES), key=k("score"), horizontal=True, format_func=lambda s: SCORE_SHORT[s],
               help="; ".join(f"{SCORE_SHORT[s]}: {SCORE_LABELS[s]}" for s in SCORES))
    c[1].radio("Selection rule", list(A.RULES), key=k("rule"), horizontal=True,
               help="global: the n best blocks anywhere · per-matrix: the same share of blocks in every matrix")
    return g, types


def hand_over(an, loaded) -> None:
    v = state.widget_values(SCHEMA, PAGE)
    st.session_state[HANDOFF_KEY] = SmtHandoff.from_analysis(an, v["model"],
                                                             v["task"] or D.default_task_for(loaded.info.kind))


# ----------------------------------------------------------------------------- page


def _running() -> bool:
    wj = st.session_state.get(JOB_KEY)
    return wj is not None and wj.running


def sidebar_warmup(instructor: bool) -> None:
    with st.sidebar:
        st.subheader("1 · Warm-up")
        st.caption("Changing these recomputes the gradients.")
        warmup_controls(instructor)
        if instructor:
            st.caption(f"Hidden in the simple view: warm-up mode **{st.session_state[k('mode')]}**, batch "
                       f"{st.session_state[k('bs')]} × {st.session_state[k('len')]} tokens, seed "
                       f"{st.session_state[k('seed')]}, matrix types {', '.join(st.session_state[k('types')])}.")


def autostart(name: str, loaded, ws: WarmupSettings, recs: dict) -> None:
    """Tiny models: the first view starts at once (under a second); a failure is not retried."""
    auto = st.session_state.setdefault("smt:auto_tried", set())
    first = not any(json.loads(s)["model"] == name for s in recs)
    if first and ws.tokens <= AUTO_TOKENS and not _running() and name in SMT_INSTANT and ws.sig not in auto:
        auto.add(ws.sig)
        start_job(loaded, ws)


def compute_bar(name: str, loaded, ws: WarmupSettings) -> None:
    c = st.columns([1, 3], vertical_alignment="center")
    with c[0]:
        frame.main_control()
    c[0].button("Compute gradients", key="smt_compute", type="primary", disabled=_running(), width="stretch",
                icon=":material/play_arrow:", on_click=start_job, args=(loaded, ws),
                help="Runs the warm-up once for these settings (cached per model, task and settings)")
    c[1].caption(f"{name} · task **{ws.task}** · {ws.warmup_steps} warm-up steps of {ws.batch_size} × "
                 f"{ws.max_len} tokens · mode **{ws.mode}**"
                 + (" (as in the public SMT code)" if ws.mode == "full" else " (a deviation: weights never move)")
                 + " · results are cached: a second press with the same settings is instant")
    note = st.session_state.get("smt:notice")
    if note:
        st.warning(note, icon=":material/warning:")


def record_to_show(recs: dict, sig: str, name: str):
    """The gradients of these settings, else the latest ones of this model (said so), else None (said why)."""
    rec = recs.get(sig)
    if rec is not None:
        return rec
    shown = [r for s, r in recs.items() if json.loads(s)["model"] == name]
    if shown:
        rec = shown[-1]
        st.info("The warm-up settings changed: the views below still show the previous gradients "
                f"({rec.meta.get('steps_done')} steps, {rec.meta.get('mode')}, task {rec.meta.get('task_name')}). "
                "Press **Compute gradients** for the new settings.", icon=":material/history:")
        return rec
    if not _running():
        st.info("Press **Compute gradients** to run the warm-up for these settings.", icon=":material/info:")
    return None


def analyse(rec, grid: BlockGrid, types: list[str], seed: int):
    """The selection from the cached gradients (no recomputation); what is on screen goes to ``smt:view``."""
    an = A.analyze(rec, grid.block_size, score=st.session_state[k("score")], rule=st.session_state[k("rule")],
                   types=types if set(types) != set(rec.types()) else None, seed=seed,
                   **grid.budget_args(st.session_state[k("budget")], st.session_state.get(k("n"), 0),
                                      st.session_state[k("dens")]))
    st.session_state["smt:view"] = dict(  # what is on screen (small; the tests read it)
        block_size=an.block_size, n_blocks=an.n_blocks, score=an.score, rule=an.rule, types=list(an.types),
        steps_done=rec.steps_done, selection={kk: (r.tolist(), c.tolist()) for kk, (r, c) in an.selection.items()})
    return an


def switch_to_fine_tune(an) -> None:
    """After "Train with this selection": open Fine-tune with the hand-off's settings."""
    h = st.session_state.get(HANDOFF_KEY)
    if h is not None and h.take_switch():
        try:
            st.switch_page(FT_PAGE, query_params=h.query)
        except Exception:  # noqa: BLE001 - a page run on its own (AppTest) knows no other pages
            st.info(f"The selection ({an.n_blocks} blocks) is stored for the Fine-tune page: open it from the "
                    "sidebar.", icon=":material/info:")


def body():
    st.title("SMT block inspector")
    st.markdown("**Sparse Matrix Tuning** (He et al., 2024) trains only a few b × b blocks of the weight matrices: "
                "the blocks whose gradients, summed over a short warm-up, are largest. This page runs that "
                "warm-up on a real model and shows **which blocks win, where they sit, how early the choice "
                "settles, and how it compares** with other ways to spend the same budget.")
    with state.page_state(PAGE, SCHEMA, keep=("sid",)) as ps:
        ps.load()
        instructor = modes.instructor_on()
        modes.keep_hidden_values(PAGE, ADVANCED)
        sidebar_warmup(instructor)
        name = st.session_state[k("model")]
        loaded = models.load_base_or_error(name)
        if loaded is None:
            return
        v = ps.current()
        ws = WarmupSettings.from_values(v, loaded.info.kind)
        collect_finished()
        recs = st.session_state.setdefault(RECS_KEY, {})
        autostart(name, loaded, ws, recs)
        st.markdown("##### Selection")
        st.caption("Step 2. These re-score the cached gradients instantly, without recomputing them; the warm-up "
                   "settings (step 1) are in the sidebar.")
        with st.container(border=True):
            grid, types = selection_controls(loaded, instructor)
        compute_bar(name, loaded, ws)
        progress_panel()
        rec = record_to_show(recs, ws.sig, name)
        if rec is None:
            return
        an = analyse(rec, grid, types, int(v["seed"]))
        smt_panel.views(an, rec, loaded, modes.plotly_template(), PAGE, on_train=hand_over)
        switch_to_fine_tune(an)


frame.run_page(body)
