"""Home: what PEFT is, the methods at a glance, the model in use and where to go next (starts nothing heavy; the
default model loads lazily, ~1.5 s)."""

from __future__ import annotations

import streamlit as st

from explorer.views import fmt
from explorer.methods import METHODS
from explorer.models import DEFAULT_MODEL, REGISTRY
from explorer.views.pages import PAGES
from ui import frame, lesson_panel, models, modes


def paper_link(p: str) -> str:
    if p.startswith("arXiv "):
        n = p.split()[1]
        return f"[{p}](https://arxiv.org/abs/{n})"
    return p


def overview(loaded):
    """Trainable parameters of every method at its default knobs on the loaded model (computed, log scale)."""
    from explorer.views import figures as F
    from explorer.views import playground as pg

    n = loaded.info.n_params
    rows = [(METHODS[k].label, c, (c / n) if c else err) for k, c, err in pg.default_counts(loaded)]
    good = [r for r in rows if r[1]]
    # projector mode: the chart takes the whole width (large type), the text goes under it
    left, right = (st.container(), st.container()) if modes.projector_on() else \
        st.columns([3, 2], vertical_alignment="center")
    with left:
        modes.show_fig(F.count_bars([r[0] for r in good], [r[1] for r in good],
                                 f"Trainable parameters at default knobs on {loaded.info.name}",
                                 modes.plotly_template()), key="home-counts")
    with right:
        lo = min(good, key=lambda r: r[1])
        st.markdown(
            f"Each bar is counted from the real tensors after applying the method to a copy of "
            f"**{loaded.info.name}** with its default knobs (log scale: each grid line is 10×). Full fine-tuning "
            f"trains all {loaded.info.n_params:,} parameters; **{lo[0]}** trains the fewest here: "
            f"{lo[1]:,} ({lo[2]:.3%}). The PEFT methods also train the new classification head. "
            "Move the knobs on the Methods playground to see how each count changes.")
        for r in rows:
            if not r[1]:
                st.caption(f"{r[0]}: {r[2]}")


def body():
    st.title("PEFT Explorer")
    if modes.projector_on():  # on the projector: the address the room opens, with its QR code
        lesson_panel.join_block()
    st.markdown(
        "**Parameter-efficient fine-tuning (PEFT)** adapts a pretrained model by training only a small set of "
        "parameters – a low-rank update, a few blocks or single entries of the weights – while the rest stays "
        "frozen. Fewer trainable parameters mean smaller gradients and optimizer state, small adapter files, "
        "and several tasks served from one base model. This dashboard lets you *see* what each method trains on "
        "small real models, fine-tune them live, and compare the results.")

    st.subheader(f"The {len(METHODS)} methods at a glance")
    rows = [{"method": m.label, "what trains": m.what_trains, "trainable parameters": m.formula,
             "paper": paper_link(m.paper)} for k, m in METHODS.items()]
    head = "| Method | What trains | Trainable parameters | Paper |\n|---|---|---|---|\n"
    st.markdown(head + "\n".join(f"| **{r['method']}** | {r['what trains']} | `{r['trainable parameters']}` | "
                                 f"{r['paper']} |" for r in rows))
    st.caption("d_in, d_out: the input and output size of a target weight W; r: the rank; b: SMT's block size. "
               "Every count on these pages is computed from the real tensors of the loaded model.")
    with st.expander("Where this project departs from the papers, and the defaults they leave open"):
        st.markdown("\n".join(f"- **{m.label}**: {d}" for m in METHODS.values() for d in m.deviations))

    st.subheader("The model in use")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("Models that work offline: " + ", ".join(f"`{k}`" for k in REGISTRY) +
                    ", or any local folder / hub id. The base model is loaded once per server and copied per "
                    "session, so nobody's experiment changes anyone else's.")
        show = st.toggle(f"Show the size of the default model ({DEFAULT_MODEL})", value=True, key="home_show_model")
    loaded = None
    with right:
        if show:
            loaded = models.load_base_or_error(DEFAULT_MODEL)
            if loaded is not None:
                inf = loaded.info
                st.metric("parameters (counted from the loaded tensors)", fmt.count(inf.n_params),
                          help=f"{fmt.exact(inf.n_params)} exactly")
                st.caption(f"**{inf.label}** · {inf.n_layers} layers · hidden {inf.hidden} · {inf.kind}  \n"
                           f"Source: {inf.source}  \n" + " ".join(inf.notes))
    if loaded is not None:
        overview(loaded)

    frame.main_control()
    st.subheader("Where to go next")
    cols = st.columns(2)
    for i, p in enumerate(q for q in PAGES if q.key != "home"):
        with cols[i % 2]:
            frame.page_link(p.key)
            st.caption(p.blurb)
    server_status_panel()


def server_status_panel():
    """PEFT_EXPLORER_DEBUG=1: checksums of the cached base models, live worker threads, active runs, RSS."""
    import os

    if os.environ.get("PEFT_EXPLORER_DEBUG") != "1":
        return
    import json

    from explorer.workshop.status import server_status

    with st.expander("Server status (debug)", expanded=True):
        st.code(json.dumps(server_status(settle=True), indent=1), language="json")


frame.run_page(body)
