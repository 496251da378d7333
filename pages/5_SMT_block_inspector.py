"""SMT block inspector: where Sparse Matrix Tuning puts its budget, and why.

Two kinds of settings:

1. **Warm-up** (model, task, warm-up steps, batch size, max length, warm-up mode): "Compute gradients"
   runs SMT's warm-up once (``explorer.smt.analysis.collect_gradients``) in a worker thread of the
   server's run queue, with progress and a Stop; the record is cached per (model, task, settings) by the
   core (memory + disk) and in this session.  Tiny models start at once (under a second).
2. **Selection** (block size, number of blocks or density, score, rule, matrix types): re-scored from the
   cached record by ``explorer.smt.analysis.analyze``; never recomputes gradients.

"Train with this selection" stores the selection in ``st.session_state[HANDOFF_KEY]``
(``"smt_inspector_selection"``: a dict with model, task, block_size, types, n_blocks, score, rule and
``selection`` = ``{target: ([rows], [cols])}``) and switches to the Fine-tune page with matching SMT knobs
in its URL; Fine-tune passes it as ``TrainConfig(smt_selection=...)`` when method, model, block size and
targets match.
"""

from __future__ import annotations

import json
import time

import streamlit as st

import ui_common as ui
from explorer import data as D
from explorer.views import fmt
from explorer.smt import analysis as A
from explorer.views import smt_views as V
from explorer.errors import user_message
from explorer.workshop.jobs import default_queue
from explorer.methods.smt import SCORE_LABELS, SCORES, auto_block_size, auto_blocks, valid_block_sizes
from explorer.targets import ALL_TYPES
from explorer.urlstate import Field, Schema

PAGE = "smt"
HANDOFF_KEY = "smt_inspector_selection"
JOB_KEY = "smt:job"
RECS_KEY = "smt:records"
FT_PAGE = "pages/2_Fine_tune.py"
MODELS = ("tiny-llama", "tiny-bert", "minilm", "smollm2-135m")
TINY = ("tiny-llama", "tiny-bert")
AUTO_TOKENS = 65_536  # a tiny model's first view starts by itself only up to this many warm-up tokens (~1 s)
TASK_NAMES = tuple(t["name"] for t in D.list_tasks())
LENS = [16, 32, 64, 128, 256, 512]
BATCHES = [1, 2, 4, 8, 16, 32]
ADVANCED = ("mode", "bs", "len", "types", "seed")  # hidden in instructor mode
SCORE_SHORT = V.SCORE_SHORT
OVERLAP_MEANING = {  # one line each: what a high overlap would mean
    "largest-magnitude": "**High** would mean SMT just picks the biggest weights; **near chance**: the gradient "
                         "finds other blocks.",
    "random": "**The chance level**: SpaRTA trains random entries; SMT's claim is that its choice beats this.",
    "largest": "**High** would mean SMT trains the blocks that full fine-tuning moves most.",
}

ui.page_setup("SMT block inspector", ":material/grid_view:")


def k(name: str) -> str:
    return ui.wkey(PAGE, name)


SCHEMA = Schema([
    Field("model", "choice", "tiny-llama", choices=MODELS),
    Field("task", "choice", "", choices=("",) + TASK_NAMES, help="'' = the model's built-in default task"),
    Field("ws", "int", 16, min=1, max=200, help="warm-up steps (batches whose gradients are summed)"),
    Field("bs", "int", 4, min=1, max=32),
    Field("len", "int", 128, min=16, max=512),
    Field("mode", "choice", "full", choices=tuple(A.MODES)),
    Field("seed", "int", 0, min=0, max=2**31 - 1),
    Field("b", "int", 0, min=0, max=4096, help="block size (0 = auto)"),
    Field("budget", "choice", "blocks", choices=("blocks", "density")),
    Field("n", "int", 0, min=0, max=10_000_000, help="number of blocks (0 = auto: about 1% of all parameters)"),
    Field("dens", "float", 0.01, min=0.0001, max=1.0),
    Field("score", "choice", "abs-mean", choices=tuple(SCORES)),
    Field("rule", "choice", "global", choices=tuple(A.RULES)),
    Field("types", "multi", list(ALL_TYPES), choices=tuple(ALL_TYPES)),
    Field("layer", "int", 0, min=0, max=200),
    Field("mat", "choice", "v", choices=tuple(ALL_TYPES)),
    Field("log", "bool", False),
    Field("grid", "choice", "v", choices=tuple(ALL_TYPES)),
])


# ----------------------------------------------------------------------------- the gradient job


def warm_settings(v: dict, kind: str) -> dict:
    task = v["task"] or D.default_task_for(kind)
    return dict(model=v["model"], task=task, warmup_steps=int(v["ws"]), batch_size=int(v["bs"]),
                max_len=int(v["len"]), mode=v["mode"], seed=int(v["seed"]))


def sig_of(ws: dict) -> str:
    return json.dumps(ws, sort_keys=True)


def need_bytes(loaded, mode: str) -> int:
    """Rough fp32 estimate for the queue's memory check: a model copy, gradients (+ AdamW moments and
    the running sums in full mode)."""
    n = int(loaded.info.n_params)
    return n * 4 * (5 if mode == "full" else 2)


def start_job(loaded, ws: dict) -> None:
    job0 = st.session_state.get(JOB_KEY)
    if job0 is not None and not job0["job"].done:
        return
    prog = {"frac": 0.0, "msg": "queued", "t0": time.time()}

    def work(job, ws=ws, loaded=loaded, prog=prog):  # worker thread: no Streamlit calls
        task = D.load_task(ws["task"], model_kind=loaded.info.kind)
        base = loaded
        if loaded.info.kind == "seq-cls" and task.num_labels and task.num_labels != 2:
            from explorer.models import load_model

            base = load_model(ws["model"], num_labels=task.num_labels)

        def progress(f, m):
            prog["frac"], prog["msg"] = float(f), str(m)

        return A.collect_gradients(base, task, warmup_steps=ws["warmup_steps"], batch_size=ws["batch_size"],
                                   max_len=ws["max_len"], mode=ws["mode"], seed=ws["seed"], progress=progress,
                                   stop_event=job.stop_event)

    try:
        job = default_queue().submit(work, need_bytes=need_bytes(loaded, ws["mode"]),
                                     label=f"SMT warm-up · {ws['model']}", owner=st.session_state.get("session_id"))
    except Exception as exc:  # noqa: BLE001 - MemoryRefused: one readable line
        st.session_state["smt:notice"] = user_message(exc)
        return
    st.session_state[JOB_KEY] = dict(job=job, sig=sig_of(ws), ws=ws, prog=prog, seen=False)
    st.session_state.pop("smt:notice", None)


def stop_job() -> None:
    j = st.session_state.get(JOB_KEY)
    if j is not None:
        j["job"].cancel()


def collect_finished() -> None:
    """Move a finished job's record into this session's store (or its error into a notice)."""
    j = st.session_state.get(JOB_KEY)
    if j is None or not j["job"].done or j["seen"]:
        return
    j["seen"] = True
    job = j["job"]
    if job.status == "done" and job.result is not None:
        recs = st.session_state.setdefault(RECS_KEY, {})
        recs[j["sig"]] = job.result
        while len(recs) > 4:
            recs.pop(next(iter(recs)))
        st.session_state.pop("smt:notice", None)
    elif job.status == "cancelled":
        st.session_state["smt:notice"] = "Stopped before the warm-up started."
    elif job.stop_event.is_set():
        st.session_state["smt:notice"] = "Stopped before the first warm-up step ended: nothing to show."
    else:
        st.session_state["smt:notice"] = f"The warm-up failed: {job.message or job.status}"


def progress_panel() -> None:
    j = st.session_state.get(JOB_KEY)
    running = j is not None and not j["job"].done
    st.fragment(run_every=0.5 if running else None)(_progress_panel)()


def _progress_panel() -> None:
    j = st.session_state.get(JOB_KEY)
    if j is None:
        return
    job = j["job"]
    if not job.done:
        p = j["prog"]
        wait = f" · {job.position()} in line" if job.status == "queued" else ""
        c = st.columns([5, 1], vertical_alignment="center")
        c[0].progress(min(1.0, p["frac"]), text=f"{p['msg']}{wait} · {time.time() - p['t0']:.0f} s")
        c[1].button("Stop", key="smt_stop", on_click=stop_job, icon=":material/stop_circle:", width="stretch",
                    help="Ends the warm-up within one step; the steps done so far are shown (not cached)")
        return
    if not j["seen"]:
        collect_finished()
        st.rerun(scope="app")


# ----------------------------------------------------------------------------- controls


def warmup_controls(instructor: bool) -> None:
    st.selectbox("Model", MODELS, key=k("model"),
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


def selection_controls(loaded, instructor: bool) -> tuple[int, list[str], int]:
    """Block size, budget, score, rule (and types): returns (block size, types, total blocks)."""
    from explorer.targets import find_targets

    all_t = find_targets(loaded.model)
    have = [t for t in ALL_TYPES if any(x.type == t for x in all_t)]
    if not instructor:
        cur = [t for t in st.session_state.get(k("types"), have) if t in have] or have
        st.session_state[k("types")] = cur
        st.multiselect("Matrix types to select from", have, key=k("types"),
                       format_func=lambda t: V.type_name(t, loaded.info.family),
                       help="every attention and MLP matrix by default (the SMT method's own default is q, k, v)")
    types = [t for t in st.session_state.get(k("types"), have) if t in have] or have
    ts = [t for t in all_t if t.type in types]
    grain = A.default_grain([(t.d_out, t.d_in) for t in all_t])
    shapes = sorted({(t.d_out, t.d_in) for t in ts})
    valid = [b for b in valid_block_sizes(shapes, limit=4096) if b % grain == 0]
    auto = auto_block_size(shapes)
    auto = auto if auto in valid else (valid[-1] if valid else grain)
    if st.session_state.get(k("b")) not in [0] + valid:
        st.session_state[k("b")] = 0
    left, right = st.columns(2, gap="large")
    left.select_slider("Block size b", [0] + valid, key=k("b"),
                     format_func=lambda b: f"auto ({auto})" if b == 0 else str(b),
                     help=f"only sizes that divide every chosen matrix and are multiples of the stored grain {grain}")
    b = int(st.session_state[k("b")]) or auto
    total = sum((t.d_out // b) * (t.d_in // b) for t in ts)
    right.radio("Budget", ["blocks", "density"], key=k("budget"), horizontal=True,
             format_func=lambda x: {"blocks": "number of blocks", "density": "density"}[x])
    auto_n, capped = auto_blocks(loaded.info.n_params, b, total)
    if st.session_state[k("budget")] == "blocks":
        if int(st.session_state.get(k("n"), 0)) > total:
            st.session_state[k("n")] = total
        right.slider("Number of blocks", 0, total, key=k("n"),
                  help=f"0 = auto: about 1 % of all {loaded.info.n_params:,} parameters = {auto_n} blocks"
                       + (f" ({capped})" if capped else "") + f" · {total:,} blocks of {b}×{b} in all")
        left.caption(f"{int(st.session_state[k('n')]) or auto_n} of {total:,} blocks of {b}×{b}"
                   + (" (auto: ≈1 % of all parameters, SMT's default)" if not st.session_state[k('n')] else ""))
    else:
        lo = 1.0 / total
        if float(st.session_state.get(k("dens"), 0.01)) < lo:
            st.session_state[k("dens")] = min(1.0, round(lo, 4) if round(lo, 4) >= lo else lo)
        right.slider("Density", 0.0001, 1.0, key=k("dens"), step=0.0001, format="%.4f",
                  help="fraction of the chosen matrices' blocks that train")
    c = st.columns(2)
    c[0].radio("Score", list(SCORES), key=k("score"), horizontal=True, format_func=lambda s: SCORE_SHORT[s],
               help="; ".join(f"{SCORE_SHORT[s]}: {SCORE_LABELS[s]}" for s in SCORES))
    c[1].radio("Selection rule", list(A.RULES), key=k("rule"), horizontal=True,
               help="global: the n best blocks anywhere · per-matrix: the same share of blocks in every matrix")
    return b, types, total


def budget_args(total: int, b: int, loaded) -> dict:
    if st.session_state[k("budget")] == "density":
        return dict(density=max(float(st.session_state[k("dens")]), 1.0 / total))
    n = int(st.session_state.get(k("n"), 0))
    if n <= 0:
        n = min(auto_blocks(loaded.info.n_params, b, total)[0], total)
    return dict(n_blocks=min(n, total))


# ----------------------------------------------------------------------------- views


def explain(col, md: str) -> None:
    with col:
        st.markdown(md)


def views(an, rec, loaded, tpl: str) -> None:
    fam = loaded.info.family
    log = bool(st.session_state.get(k("log")))
    meta = rec.meta
    partial = bool(meta.get("stopped"))
    m = st.columns(5)
    n_entries = an.n_blocks * an.block_size ** 2  # compact values (never cut off), the exact one in the help
    m[0].metric("selected blocks", fmt.count(an.n_blocks), help=f"{fmt.exact(an.n_blocks)} of {an.total_blocks:,} "
                f"blocks of {an.block_size}×{an.block_size} in the chosen matrices")
    m[1].metric("trainable entries", fmt.count(n_entries),
                help=f"{fmt.exact(n_entries)} exactly: n × b² entries of W train (plus the classification head "
                     "for encoders)")
    m[2].metric("density", f"{an.n_blocks / an.total_blocks:.2%}", help="share of the chosen matrices' blocks")
    m[3].metric("warm-up", f"{meta.get('steps_done')} steps", help=f"mode {meta.get('mode')}, "
                f"batch {meta.get('batch_size')} × {meta.get('max_len')} tokens, task {meta.get('task_name')}")
    sec = float(meta.get("seconds") or 0.0)
    m[4].metric("warm-up time", f"{sec:.1f} s" if sec >= 1 else f"{sec:.2f} s",
                delta="loaded from the cache" if meta.get("from_cache") else None, delta_color="off",
                delta_arrow="off",
                help=f"measured: {meta.get('seconds', 0):.1f} s wall, {meta.get('cpu_seconds', 0):.1f} s CPU, "
                     f"{meta.get('torch_threads')} torch threads"
                     + (" (loaded from the disk cache)" if meta.get("from_cache") else ""))
    if partial:
        st.warning(f"Stopped after {meta.get('steps_done')} of {meta.get('warmup_steps')} warm-up steps: a partial "
                   "result (not cached).", icon=":material/stop_circle:")

    # ---- one matrix
    st.subheader("Gradient-block heatmap of one matrix")
    layers = sorted({t.layer for t in an.targets})
    if int(st.session_state.get(k("layer"), 0)) not in layers:
        st.session_state[k("layer")] = layers[0]
    if st.session_state.get(k("mat")) not in an.types:
        st.session_state[k("mat")] = "v" if "v" in an.types else an.types[0]
    c = st.columns([2, 3, 2], vertical_alignment="bottom")
    c[0].selectbox("Layer", layers, key=k("layer"))
    c[1].radio("Matrix", an.types, key=k("mat"), horizontal=True, format_func=lambda t: V.type_name(t, fam))
    c[2].toggle("Log colour scale", key=k("log"), help="log10 of the score: shows the small blocks' structure")
    layer, mat = int(st.session_state[k("layer")]), st.session_state[k("mat")]
    tgt = next(t for t in an.targets if t.layer == layer and t.type == mat)
    left, right = st.columns([3, 2], gap="large")
    with left:
        fig = V.block_heatmap(an, tgt.name, log=log, template=tpl)
        ui.show_fig(fig, key="smt-heat")
    nsel = len(an.selection[tgt.name][0])
    R, C = an.scores[tgt.name].shape
    explain(right, f"**`{tgt.name}`** ({tgt.d_out} × {tgt.d_in}) cut into **{R} × {C} blocks of "
                   f"{an.block_size} × {an.block_size}**. Colour: the block's score, "
                   f"{SCORE_LABELS[an.score]}, of the gradient summed over the warm-up. "
                   f"**Red outlines: the {nsel} block(s) SMT selects here** "
                   f"({nsel / (R * C):.1%} of this matrix).\n\n"
                   "The colour range is the same for every matrix of this analysis, so a bright block here is "
                   "bright compared with all the others; hover a block for its score and its global rank. "
                   + ("The log scale spreads the many small scores apart." if log else
                      "Turn on the log scale when a few blocks outshine the rest."))
    with right:
        dl_fig("heatmap", fig, "smt_dl_heat")

    # ---- all layers
    st.subheader("All layers of one matrix type")
    if st.session_state.get(k("grid")) not in an.types:
        st.session_state[k("grid")] = "v" if "v" in an.types else an.types[0]
    st.radio("Matrix type", an.types, key=k("grid"), horizontal=True, format_func=lambda t: V.type_name(t, fam))
    gt = st.session_state[k("grid")]
    gfig = V.small_multiples(an, gt, log=log, template=tpl, cols=6 if len(layers) > 4 else len(layers),
                             cell_px=150 if len(layers) > 4 else 260)
    ui.show_fig(gfig, key="smt-grid")
    cnt = {t.layer: len(an.selection[t.name][0]) for t in an.targets if t.type == gt}
    best = max(cnt, key=lambda x: cnt[x])
    st.caption(f"Same colour range as above. Each panel is one layer's {V.type_name(gt, fam)} matrix; the title "
               f"counts its selected blocks (most: layer {best}, {cnt[best]} blocks). Depth trends show up here: "
               "do early or late layers collect the budget?")

    # ---- where the budget goes
    st.subheader("Where the budget goes")
    left, right = st.columns([3, 2], gap="large")
    with left:
        bfig = V.budget_bars(an, template=tpl, family=fam)
        ui.show_fig(bfig, key="smt-bars")
    with right:
        st.markdown("Left: how many selected blocks land in each matrix type (labels: share of the selection). "
                    "MLP matrices are bigger, so they also hold more candidate blocks; hover a bar for the share "
                    "of that type's own blocks. Right: selected blocks per layer.")
        st.markdown(V.value_finding(an))
        dl_fig("budget", bfig, "smt_dl_bars")

    # ---- stability
    st.subheader("How many warm-up steps does SMT need?")
    left, right = st.columns([3, 2], gap="large")
    with left:
        sfig = V.stability_figure(an, template=tpl)
        ui.show_fig(sfig, key="smt-stab")
    with right:
        st.markdown("Each point re-runs the selection (same block size, budget, score and rule) on the gradient "
                    "summed over the **first t steps only**, and measures its overlap with the final selection: "
                    "Jaccard = shared blocks / blocks in either. 1.0 means the same blocks. A curve that reaches "
                    "1.0 early means a short warm-up would pick the same blocks; one that climbs to the end means "
                    "the choice still depends on how long the warm-up runs.")
        st.markdown(V.stability_sentence(an))
        dl_fig("stability", sfig, "smt_dl_stab")

    # ---- overlaps
    st.subheader("Compared with other ways to spend the same budget")
    rows = V.overlap_rows(an)
    st.caption(f"Each alternative picks the same {an.n_blocks} blocks of {an.block_size}×{an.block_size} with the "
               "same rule. Jaccard = shared blocks / blocks in either selection: 0 = nothing in common, 1 = the same "
               "blocks.")
    cols = st.columns(len(rows))
    for col, r in zip(cols, rows):
        with col, st.container(border=True):
            if r["jaccard"] is None:
                st.metric(r["comparison"], "—")
            else:
                exp = r.get("expected_jaccard")
                st.metric(r["comparison"], f"Jaccard {r['jaccard']:.3f}",
                          delta=None if exp is None else f"{r['jaccard'] - exp:+.3f} vs chance", delta_color="off",
                          help=f"{r['shared_blocks']} shared blocks = {r['share_of_smt']:.1%} of SMT's blocks")
            ex = r["explain"]
            st.caption(OVERLAP_MEANING.get(r["comparison"].split(" ")[0], "") + " How it is drawn: " + ex)

    # ---- losses and notes
    losses = meta.get("losses") or []
    with st.expander("Warm-up loss and notes"):
        if losses:
            ui.show_fig(V.loss_figure(losses, template=tpl), key="smt-loss")
        for n in an.notes:
            st.caption(n)

    # ---- export and training
    st.subheader("Export and train")
    c = st.columns(4)
    c[0].download_button("block scores (CSV)", lambda: A.scores_csv(an), file_name="smt_block_scores.csv",
                         mime="text/csv", key="smt_dl_scores", on_click="ignore", width="stretch",
                         icon=":material/download:")
    c[1].download_button("selection (CSV)", lambda: A.selection_csv(an), file_name="smt_selection.csv",
                         mime="text/csv", key="smt_dl_sel", on_click="ignore", width="stretch",
                         icon=":material/download:")
    c[2].download_button("analysis (JSON)", lambda: A.analysis_to_json(an), file_name="smt_analysis.json",
                         mime="application/json", key="smt_dl_json", on_click="ignore", width="stretch",
                         icon=":material/download:", help="settings, scores of every block, selection, shares, "
                                                          "stability curve and overlaps")
    c[3].button("Train with this selection", key="smt_train", type="primary", width="stretch",
                icon=":material/model_training:", on_click=hand_over, args=(an, loaded),
                help="Opens Fine-tune with method SMT and exactly these blocks (no warm-up there)")
    st.caption("PNG: every chart's camera button (top right of the chart, \"Download plot as png\") saves it as "
               "an image; the server has no kaleido for PNG export, so the per-chart download gives interactive "
               "HTML (its plotly.js comes from the CDN, so opening it needs the internet).")
    if st.session_state.get("smt:go_ft"):
        st.session_state.pop("smt:go_ft")
        try:
            st.switch_page(FT_PAGE, query_params=st.session_state.get("smt:ft_query"))
        except Exception:  # noqa: BLE001 - a page run on its own (AppTest) knows no other pages
            st.info(f"The selection ({an.n_blocks} blocks) is stored for the Fine-tune page: open it from the "
                    "sidebar.", icon=":material/info:")


def dl_fig(name: str, fig, key: str) -> None:
    st.download_button(f"{name} figure (HTML)", lambda fig=fig: V.figure_html(fig), file_name=f"smt_{name}.html",
                       mime="text/html", key=key, on_click="ignore", icon=":material/download:",
                       help="interactive HTML; for a PNG use the chart's camera button")


def hand_over(an, loaded) -> None:
    sel = V.selection_for_training(an)
    used = [t for t in an.types if any(x.type == t and x.name in sel for x in an.targets)]
    v = ui.widget_values(SCHEMA, PAGE)
    st.session_state[HANDOFF_KEY] = dict(model=v["model"], task=v["task"] or D.default_task_for(loaded.info.kind),
                                         block_size=int(an.block_size), types=list(an.types), used_types=used,
                                         n_blocks=int(sum(len(r) for r, _ in sel.values())), score=an.score,
                                         rule=an.rule, selection=sel, created=time.time())
    q = dict(model=v["model"], method="smt", src="built-in", task=v["task"] or D.default_task_for(loaded.info.kind),
             k_targets=",".join(an.types), k_block_size=str(an.block_size), k_blocks=str(an.n_blocks),
             k_density="0.0", k_score=an.score, k_selection=an.rule)
    st.session_state["smt:ft_query"] = q
    st.session_state["smt:go_ft"] = True


# ----------------------------------------------------------------------------- page


def body():
    st.title("SMT block inspector")
    st.markdown("**Sparse Matrix Tuning** (He et al., 2024) trains only a few b × b blocks of the weight matrices: "
                "the blocks whose gradients, summed over a short warm-up, are largest. This page runs that "
                "warm-up on a real model and shows **which blocks win, where they sit, how early the choice "
                "settles, and how it compares** with other ways to spend the same budget.")
    ui.url_values(SCHEMA, PAGE)
    instructor = bool(st.session_state.get("instructor", False))
    with st.sidebar:
        st.subheader("1 · Warm-up")
        st.caption("Changing these recomputes the gradients.")
        warmup_controls(instructor)
        if instructor:
            st.caption(f"Hidden in instructor mode: warm-up mode **{st.session_state[k('mode')]}**, batch "
                       f"{st.session_state[k('bs')]} × {st.session_state[k('len')]} tokens, seed "
                       f"{st.session_state[k('seed')]}, matrix types {', '.join(st.session_state[k('types')])}.")
    name = st.session_state[k("model")]
    loaded = ui.load_base_or_error(name)
    if loaded is None:
        ui.write_url(SCHEMA, PAGE, keep=("sid",))
        return
    v = ui.widget_values(SCHEMA, PAGE)
    ws = warm_settings(v, loaded.info.kind)
    sig = sig_of(ws)
    collect_finished()
    recs = st.session_state.setdefault(RECS_KEY, {})
    job = st.session_state.get(JOB_KEY)
    running = job is not None and not job["job"].done
    auto = st.session_state.setdefault("smt:auto_tried", set())
    first = not any(json.loads(s)["model"] == name for s in recs)
    small = ws["warmup_steps"] * ws["batch_size"] * ws["max_len"] <= AUTO_TOKENS
    if first and small and not running and name in TINY and sig not in auto:
        auto.add(sig)  # tiny models: the first view starts at once (under a second); a failure is not retried
        start_job(loaded, ws)
        job = st.session_state.get(JOB_KEY)
        running = job is not None and not job["job"].done

    st.markdown("##### Selection")
    st.caption("Step 2. These re-score the cached gradients instantly, without recomputing them; the warm-up "
               "settings (step 1) are in the sidebar.")
    with st.container(border=True):
        b, types, total = selection_controls(loaded, instructor)

    c = st.columns([1, 3], vertical_alignment="center")
    c[0].button("Compute gradients", key="smt_compute", type="primary", disabled=running, width="stretch",
                icon=":material/play_arrow:", on_click=start_job, args=(loaded, ws),
                help="Runs the warm-up once for these settings (cached per model, task and settings)")
    c[1].caption(f"{name} · task **{ws['task']}** · {ws['warmup_steps']} warm-up steps of {ws['batch_size']} × "
                 f"{ws['max_len']} tokens · mode **{ws['mode']}**"
                 + (" (as in the public SMT code)" if ws["mode"] == "full" else " (a deviation: weights never move)")
                 + " · results are cached: a second press with the same settings is instant")
    note = st.session_state.get("smt:notice")
    if note:
        st.warning(note, icon=":material/warning:")
    progress_panel()

    rec = recs.get(sig)
    if rec is None:
        older = list(recs.items())
        shown = [r for s, r in older if json.loads(s)["model"] == name]
        if shown:
            rec = shown[-1]
            st.info("The warm-up settings changed: the views below still show the previous gradients "
                    f"({rec.meta.get('steps_done')} steps, {rec.meta.get('mode')}, task {rec.meta.get('task_name')}). "
                    "Press **Compute gradients** for the new settings.", icon=":material/history:")
        else:
            if not running:
                st.info("Press **Compute gradients** to run the warm-up for these settings.",
                        icon=":material/info:")
            ui.write_url(SCHEMA, PAGE, keep=("sid",))
            return
    try:
        an = A.analyze(rec, b, score=st.session_state[k("score")], rule=st.session_state[k("rule")],
                       types=types if set(types) != set(rec.types()) else None, seed=int(v["seed"]),
                       **budget_args(total, b, loaded))
    except Exception as exc:  # noqa: BLE001 - a bad combination is one readable line
        ui.show_error(exc)
        ui.write_url(SCHEMA, PAGE, keep=("sid",))
        return
    st.session_state["smt:view"] = dict(  # what is on screen (small; the tests read it)
        block_size=an.block_size, n_blocks=an.n_blocks, score=an.score, rule=an.rule, types=list(an.types),
        steps_done=rec.steps_done, selection={kk: (r.tolist(), c.tolist()) for kk, (r, c) in an.selection.items()})
    views(an, rec, loaded, ui.plotly_template())
    ui.write_url(SCHEMA, PAGE, keep=("sid",))


ui.run_page(body)
