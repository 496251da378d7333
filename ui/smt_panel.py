"""The SMT block inspector's result views (streamlit; the page ``pages/5_SMT_block_inspector.py`` draws its
controls and calls :func:`views` with one analysis of ``explorer.smt_inspector.analysis``).  Figures come from
``explorer.views.smt_views``; every number shown is read from the analysis."""

from __future__ import annotations

import streamlit as st

from explorer import smt_inspector as A
from explorer.views import fmt
from explorer.views import smt_views as V
from explorer.methods.smt_blocks import SCORE_LABELS
from explorer.workshop.inspector import opening_matrix
from ui import modes, state

OVERLAP_MEANING = {  # one line each: what a high overlap would mean
    "largest-magnitude": "**High** would mean SMT just picks the biggest weights; **near chance**: the gradient "
                         "finds other blocks.",
    "random": "**The chance level**: SpaRTA trains random entries; SMT's claim is that its choice beats this.",
    "largest": "**High** would mean SMT trains the blocks that full fine-tuning moves most.",
}


def explain(col, md: str) -> None:
    with col:
        st.markdown(md)


def views(an, rec, loaded, tpl: str, page: str, on_train) -> None:
    """Every view of one analysis: metrics, one matrix's heatmap, all layers, where the budget goes, stability,
    overlaps, notes, exports and "Train with this selection" (``on_train(an, loaded)``)."""
    k = state.keys(page)
    metrics(an, rec)
    log = one_matrix(an, rec, loaded, tpl, k)
    all_layers(an, loaded, tpl, k, log)
    budget(an, loaded, tpl)
    stability(an, tpl)
    overlaps(an)
    with st.expander("Warm-up loss and notes"):
        losses = rec.meta.get("losses") or []
        if losses:
            modes.show_fig(V.loss_figure(losses, template=tpl), key="smt-loss", name="the warm-up loss")
        for n in an.notes:
            st.caption(n)
    export_and_train(an, loaded, on_train)


def metrics(an, rec) -> None:
    """The selection's size and the warm-up that made it."""
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


def one_matrix(an, rec, loaded, tpl: str, k) -> bool:
    """The heatmap of one matrix, opened where SMT selects blocks; returns whether the log colour scale is on."""
    fam = loaded.info.family
    st.subheader("Gradient-block heatmap of one matrix")
    layers = sorted({t.layer for t in an.targets})
    if st.session_state.get("smt:opened") != (rec.key or id(rec)):  # a new record opens where SMT selects blocks
        st.session_state["smt:opened"] = rec.key or id(rec)
        st.session_state[k("layer")], st.session_state[k("mat")] = opening_matrix(
            an, int(st.session_state.get(k("layer"), 0) or 0), st.session_state.get(k("mat"), "v"))
    if int(st.session_state.get(k("layer"), 0)) not in layers:
        st.session_state[k("layer")] = layers[0]
    if st.session_state.get(k("mat")) not in an.types:
        st.session_state[k("mat")] = "v" if "v" in an.types else an.types[0]
    c = st.columns([2, 3, 2], vertical_alignment="bottom")
    c[0].selectbox("Layer", layers, key=k("layer"))
    c[1].radio("Matrix", an.types, key=k("mat"), horizontal=True, format_func=lambda t: V.type_name(t, fam))
    c[2].toggle("Log colour scale", key=k("log"), help="log10 of the score: shows the small blocks' structure")
    layer, mat = int(st.session_state[k("layer")]), st.session_state[k("mat")]
    log = bool(st.session_state.get(k("log")))
    tgt = next(t for t in an.targets if t.layer == layer and t.type == mat)
    left, right = st.columns([3, 2], gap="large")
    with left:
        fig = V.block_heatmap(an, tgt.name, log=log, template=tpl)
        modes.show_fig(fig, key="smt-heat", name="gradient-block heatmap of one matrix")
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
    return log


def all_layers(an, loaded, tpl: str, k, log: bool) -> None:
    fam = loaded.info.family
    layers = sorted({t.layer for t in an.targets})
    st.subheader("All layers of one matrix type")
    if st.session_state.get(k("grid")) not in an.types:
        st.session_state[k("grid")] = "v" if "v" in an.types else an.types[0]
    st.radio("Matrix type", an.types, key=k("grid"), horizontal=True, format_func=lambda t: V.type_name(t, fam))
    gt = st.session_state[k("grid")]
    gfig = V.small_multiples(an, gt, log=log, template=tpl, cols=6 if len(layers) > 4 else len(layers),
                             cell_px=150 if len(layers) > 4 else 260)
    modes.show_fig(gfig, key="smt-grid", name="all layers of one matrix type")
    cnt = {t.layer: len(an.selection[t.name][0]) for t in an.targets if t.type == gt}
    best = max(cnt, key=lambda x: cnt[x])
    st.caption(f"Same colour range as above. Each panel is one layer's {V.type_name(gt, fam)} matrix; the title "
               f"counts its selected blocks (most: layer {best}, {cnt[best]} blocks). Depth trends show up here: "
               "do early or late layers collect the budget?")


def budget(an, loaded, tpl: str) -> None:
    fam = loaded.info.family
    st.subheader("Where the budget goes")
    left, right = st.columns([3, 2], gap="large")
    with left:
        bfig = V.budget_bars(an, template=tpl, family=fam)
        modes.show_fig(bfig, key="smt-bars", name="where the budget goes")
    with right:
        st.markdown("Left: how many selected blocks land in each matrix type (labels: share of the selection). "
                    "MLP matrices are bigger, so they also hold more candidate blocks; hover a bar for the share "
                    "of that type's own blocks. Right: selected blocks per layer.")
        st.markdown(V.value_finding(an))
        dl_fig("budget", bfig, "smt_dl_bars")


def stability(an, tpl: str) -> None:
    st.subheader("How many warm-up steps does SMT need?")
    left, right = st.columns([3, 2], gap="large")
    with left:
        sfig = V.stability_figure(an, template=tpl)
        modes.show_fig(sfig, key="smt-stab", name="how many warm-up steps SMT needs")
    with right:
        st.markdown("Each point re-runs the selection (same block size, budget, score and rule) on the gradient "
                    "summed over the **first t steps only**, and measures its overlap with the final selection: "
                    "Jaccard = shared blocks / blocks in either. 1.0 means the same blocks. A curve that reaches "
                    "1.0 early means a short warm-up would pick the same blocks; one that climbs to the end means "
                    "the choice still depends on how long the warm-up runs.")
        st.markdown(V.stability_sentence(an))
        dl_fig("stability", sfig, "smt_dl_stab")


def overlaps(an) -> None:
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


def export_and_train(an, loaded, on_train) -> None:
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
                icon=":material/model_training:", on_click=on_train, args=(an, loaded),
                help="Opens Fine-tune with method SMT and exactly these blocks: its full warm-up still fine-tunes "
                     "every weight first (as in the public SMT code), then these blocks train")
    st.caption("PNG: every chart's camera button (top right of the chart, \"Download plot as png\") saves it as "
               "an image; the server has no kaleido for PNG export, so the per-chart download gives interactive "
               "HTML, with plotly.js inside the file: it opens offline.")


def dl_fig(name: str, fig, key: str) -> None:
    st.download_button(f"{name} figure (HTML)", lambda fig=fig: V.figure_html(fig), file_name=f"smt_{name}.html",
                       mime="text/html", key=key, on_click="ignore", icon=":material/download:",
                       help="interactive HTML; for a PNG use the chart's camera button")
