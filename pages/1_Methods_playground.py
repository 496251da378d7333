"""Methods playground: pick a model and a method, move its knobs, see what would train (no training)."""

from __future__ import annotations

import streamlit as st

from explorer.views import figures as F
from explorer.views import fmt
from explorer.views import playground as pg
from explorer.methods import METHODS
from explorer.workshop.presets import for_page
from explorer.targets import find_targets
from ui import frame, models, modes, state, widgets

PAGE = "pg"
k = state.keys(PAGE)


# ----------------------------------------------------------------------------- widgets


def knob_widget(side: str, knob, loaded, method: str) -> None:
    widgets.knob_widget(PAGE, f"{side}_", knob, loaded, method)  # shared with the fine-tune page


# ----------------------------------------------------------------------------- one side


def render_side(side: str, method: str, loaded, wt: str, layer: int, warm: int, compact: bool):
    info = METHODS[method]
    st.markdown(f"#### {info.label}")
    st.caption(f"{info.description}  \nPaper: {info.paper} · trainable: `{info.formula}`")
    knobs_vis = pg.visible_knobs(method, modes.instructor_on())
    if compact:
        kcol, mcol = st.container(), st.container()
    else:
        kcol, mcol = st.columns([2, 3], gap="large")
    with kcol:
        if side == "a":
            frame.main_control()
        if knobs_vis:
            with st.container(border=True):
                for kn in knobs_vis:
                    knob_widget(side, kn, loaded, method)
        else:
            st.caption(f"{info.label} has no knobs: every parameter trains.")
    values = state.widget_values(pg.side_schema(method, side), PAGE)
    knobs = pg.side_knobs(values, method, side)
    with mcol:
        cap = st.empty()  # the warm-up caption: what it will compute, then the time it took (measured)
        if info.playground_caption and not loaded.info.meta:
            cap.caption(pg.warmup_caption(info.playground_caption, warm, None, loaded.info.name))
        try:
            with st.spinner("Applying the method to a copy of the model…"):
                s = pg.summarize(loaded, method, knobs, warm=warm)
        except Exception as exc:  # noqa: BLE001 - knob errors are shown, the page goes on
            frame.show_error(exc)
            return None
        if info.playground_caption and not loaded.info.meta and s.warmup.get("seconds") is not None:
            cap.caption(pg.warmup_caption(info.playground_caption, warm, s.warmup["seconds"], loaded.info.name))
        # compact values never get cut off; the help starts with the exact value
        metrics = [("trainable parameters", fmt.count(s.trainable),
                    f"{fmt.exact(s.trainable)} exactly · unique tensors the optimizer updates"),
                   ("of all parameters", fmt.pct(s.fraction),
                    f"{s.fraction:.6%} · total {s.total:,} parameters in the model"),
                   ("adapter on disk", fmt.nbytes(s.adapter_bytes),
                    f"{fmt.exact_bytes(s.adapter_bytes)} · {s.adapter_bytes_how}"),
                   ("total parameters", fmt.count(s.total),
                    f"{fmt.exact(s.total)} exactly · every parameter of the model (tied ones once)"),
                   ("AdamW state", fmt.nbytes(s.optimizer_bytes),
                    f"{fmt.exact_bytes(s.optimizer_bytes)} · 2 fp32 moments = 8 B per trainable parameter"),
                   ("gradients", fmt.nbytes(s.gradient_bytes),
                    f"{fmt.exact_bytes(s.gradient_bytes)} · one fp32 gradient = 4 B per trainable parameter")]
        n = 2 if compact or modes.projector_on() else 3  # large projector type: two metrics a row
        for i in range(0, len(metrics), n):
            for c, (lab, val, hlp) in zip(st.columns(n), metrics[i:i + n]):
                c.metric(lab, val, help=hlp)
        lines, total = pg.formula(s)
        ok = total == s.trainable
        st.markdown("**The formula with this model's shapes**")
        st.code("\n".join(lines) + f"\n= {total:,} trainable parameters", language=None, wrap_lines=True)
        st.caption(("Check: the formula matches the count from the adapter's real tensors." if ok else
                    f"Warning: the formula gives {total:,} but the adapter holds {s.trainable:,}.") +
                   f" Computed in {s.seconds:.2f} s (cached after the first time).")
    with st.expander("Notes (defaults, deviations, what is counted)", expanded=False):
        for n in s.notes:
            st.markdown(f"- {n}")
        st.markdown(f"- Adapter size: {s.adapter_bytes_how}.")
    draw_pictures(s, side, wt, layer, compact)
    return s


def busiest_layout(s):
    """The adapted matrix with the most entries that can change (None when nothing is adapted)."""
    lays = [lay for lay in s.layouts() if lay.changeable > 0]
    return max(lays, key=lambda lay: (lay.changeable, -lay.layer)) if lays else None


def _explain(compact: bool):
    """Picture column and explanation column (stacked when two methods share the page, and in projector mode:
    the charts get the whole width for their large type)."""
    if compact or modes.projector_on():
        return st.container(), st.container()
    return st.columns([3, 2], vertical_alignment="center")


def show_picture(pic, key: str, compact: bool, tpl: str) -> None:
    """A method's picture (``explorer.methods.facts.Picture``) beside its sentence."""
    fig, extra = pg.picture_figure(pic, tpl)
    left, right = _explain(compact)
    with left:
        modes.show_fig(fig, key=key)
    with right:
        st.markdown(pic.text + extra)


def draw_pictures(s, side: str, wt: str, layer: int, compact: bool):
    tpl = modes.plotly_template()
    side_key = f"{side}-{s.method}"  # unique per side (both sides may hold the same cached summary)
    lay = pg.find_layout(s, wt, layer)
    st.markdown(f"**What can change in `{wt}` of layer {layer}**")
    for pic in pg.overview_pictures(s):  # e.g. Tied-LoRA's sharing diagram
        show_picture(pic, f"{pic.kind}-{side_key}", compact, tpl)
    if lay is None:
        types = sorted({t.type for t in s.adapter.targets})
        st.info(f"{METHODS[s.method].label} does not adapt `{wt}` in layer {layer} with these settings "
                f"(its targets: {', '.join(types) or 'none'}). Pick another matrix above.", icon=":material/info:")
        return
    shape = tuple(lay.shape)
    if lay.changeable == 0:
        best = busiest_layout(s)
        where = f" The most are in `{best.type}` of layer {best.layer} ({best.changeable:,} entries)." if best else ""
        c = st.columns([4, 1], vertical_alignment="center")
        c[0].info(f"With these settings nothing in `{wt}` of layer {layer} trains: {METHODS[s.method].label} "
                  f"selected none of its entries.{where}", icon=":material/info:")
        if best is not None and c[1].button("Show it", key=f"goto-{side}"):
            st.session_state["pg_goto"] = (best.type, best.layer)
            st.rerun()
        return
    for pic in pg.matrix_pictures(s, lay):  # what the method draws for this matrix, and why
        show_picture(pic, f"{pic.kind}-{side_key}", compact, tpl)
    # the update ΔW
    if any(p.device.type == "meta" for p in s.adapter.model.parameters()):
        return  # a config-only model has no values to illustrate an update with
    dv = pg.delta_view(s, lay, int(s.knobs.get("seed", 0) or 0), tpl)  # made once per summary, matrix, template
    note, rank, exact, f = dv.note, dv.rank, dv.rank_exact, dv.factor
    left, right = _explain(compact)
    with left:
        modes.show_fig(dv.figure, key=f"delta-{side_key}")
    with right:
        st.markdown(note + (f" Rank of this ΔW: **{rank}** (computed from its factors; a {shape[0]}×{shape[1]} "
                            f"matrix can reach {min(shape)})." if exact else
                            f" Its rank is at most **{rank}**: the rows and columns that hold a trainable entry "
                            f"(a {shape[0]}×{shape[1]} matrix can reach {min(shape)}).") +
                    (f" Each cell shows the largest |ΔW| of {f}×{f} entries." if f > 1 else ""))


# ----------------------------------------------------------------------------- page


def model_caption(loaded) -> None:
    inf = loaded.info
    st.caption(f"**{inf.label}** · {inf.n_params:,} parameters · {inf.n_layers} layers · hidden {inf.hidden} · "
               f"{'config only, no weights' if inf.meta else 'pretrained' if inf.pretrained else 'random weights'}"
               f" · source: {inf.source}")
    if inf.meta:
        st.info("Config-only model on the meta device: counts, layouts and sizes are exact (sizes analytic); "
                "SMT shows its budget and block grid (its selection needs a warm-up on real weights); no ΔW "
                "values are drawn. It cannot be fine-tuned here.", icon=":material/info:")


def view_controls(loaded) -> tuple[str, int, int]:
    """Method pickers, the matrix and layer drawn, and SMT's warm-up batches: (matrix type, layer, warm-up)."""
    goto = st.session_state.pop("pg_goto", None)  # (type, layer) asked for by a lesson or a "show it" button
    if goto is not None:
        st.session_state[k("wt")], st.session_state[k("layer")] = goto
    avail = widgets.available_types(loaded)
    if st.session_state.get(k("wt")) not in avail:
        st.session_state[k("wt")] = "v" if "v" in avail else avail[0]
    n_layers = max(1, loaded.info.n_layers or 1 + max((t.layer for t in find_targets(loaded.model)), default=0))
    if int(st.session_state.get(k("layer"), 0)) > n_layers - 1:
        st.session_state[k("layer")] = n_layers - 1
    c = st.columns([2, 2, 2, 2])
    c[0].selectbox("Method", list(METHODS), key=k("m1"), format_func=lambda m: METHODS[m].label)
    c[1].selectbox("Compare with", ["none"] + list(METHODS), key=k("m2"),
                   format_func=lambda m: "— nothing —" if m == "none" else METHODS[m].label)
    c[2].selectbox("Matrix drawn", avail, key=k("wt"), format_func=lambda t: widgets.type_label(loaded, t))
    if n_layers > 1:
        c[3].slider("Layer drawn", 0, n_layers - 1, key=k("layer"))
    else:
        st.session_state[k("layer")] = 0
    warming = [METHODS[m] for m in (st.session_state[k("m1")], st.session_state[k("m2")])
               if m in METHODS and pg.page_fixed_knobs(m)]  # methods whose warm-up the page drives (SMT)
    if warming:
        with st.sidebar:
            st.slider(f"{warming[0].short} warm-up batches", 1, 8, key=k("warm"),
                      help="gradient-only warm-up batches of the model's built-in task used to pick "
                           f"{warming[0].short}'s selection")
    return st.session_state[k("wt")], int(st.session_state[k("layer")]), int(st.session_state.get(k("warm"), 2))


def side_by_side(good: list) -> None:
    """Two methods' gradients, optimizer state and adapter size on one chart."""
    st.divider()
    st.markdown("#### Side by side: what training would keep in memory for these parameters")
    left, right = st.columns([3, 2], vertical_alignment="center")
    rows = [dict(name=f"{METHODS[m].label} ({'left' if i == 0 else 'right'})", grad=s.gradient_bytes,
                 optim=s.optimizer_bytes, adapter=s.adapter_bytes) for i, (m, s) in enumerate(good)]
    with left:
        modes.show_fig(F.memory_bars(rows, "Gradients, optimizer state and adapter size", modes.plotly_template()),
                       key="pg-membars")
    with right:
        a, b = good[0][1], good[1][1]
        ratio = a.trainable / b.trainable if b.trainable else float("inf")
        st.markdown(f"The left method trains **{ratio:.3g}×** as many parameters as the right one "
                    f"({a.trainable:,} vs {b.trainable:,}). Gradients (4 B) and AdamW's two moments (8 B) exist "
                    "only for trainable parameters; the frozen fp32 weights "
                    f"({fmt.nbytes(a.weight_bytes)}) and the activations come on top for both.")


def body():
    st.title("Methods playground")
    st.markdown("Pick a model and a PEFT method, move its knobs, and see **what would train** – counts, memory, "
                "masks and the update to W – computed live on the real model, without training.")
    presets = for_page("playground")
    widgets.preset_picker(presets, PAGE, "pg")
    with state.page_state(PAGE, pg.page_schema()) as ps:
        # the method of each side decides which knob fields are whitelisted (a new link or preset: its own)
        m1 = ps.setting("m1", allowed=METHODS, default="lora")
        m2 = ps.setting("m2", allowed=[*METHODS, "none"], default="none")
        ps.add(pg.side_schema(m1, "a"), method_slot=("a", m1))  # a newly picked method: its own defaults
        ps.add(pg.side_schema(m2, "b") if m2 != "none" else pg.Schema([]), method_slot=("b", m2))
        vals = ps.load()
        loaded = models.sidebar_model(PAGE, vals["model"], big=True)  # config-only big models: counts, no values
        if loaded is None:
            return
        widgets.preset_banner(presets, PAGE, "pg", ("m1", "m2"))
        model_caption(loaded)
        wt, layer, warm = view_controls(loaded)
        sides = [("a", m1)] + ([("b", m2)] if m2 != "none" else [])
        cols = st.columns(len(sides), gap="large") if len(sides) > 1 else [st.container()]
        results = []
        for (side, method), col in zip(sides, cols):
            with col:
                results.append(render_side(side, method, loaded, wt, layer, warm, compact=len(sides) > 1))
        if st.session_state.pop("pg_lesson_new", False) and results and results[0] is not None:
            best = busiest_layout(results[0])  # a lesson opens on a matrix where something trains
            lay = pg.find_layout(results[0], wt, layer)
            if best is not None and (lay is None or lay.changeable == 0):
                st.session_state["pg_goto"] = (best.type, best.layer)
                st.rerun()
        good = [(m, s) for (_, m), s in zip(sides, results) if s is not None]
        if len(good) > 1:
            side_by_side(good)


frame.run_page(body)
