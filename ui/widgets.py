"""Widgets that pages share: one per method knob (the playground and Fine-tune), a fine-tune's precision, and
the sidebar's lesson presets.

Each method ``Knob`` (``explorer.methods.base``) carries its own widget hints (``widget_kind``, ``step``,
``format``, ``options``, ``locked``, ``model_types``): no knob-name cases here.  A preset (``explorer.workshop.presets.Preset``) is a full set of URL values for one
page; loading it replaces the page's address and reruns, so the page shows exactly the preset.
"""

from __future__ import annotations

import streamlit as st

from explorer.engine.config import PRECISIONS
from ui.state import apply_preset, wkey



def available_types(loaded) -> list[str]:
    """Short target types (q, k, v, ...) that the model has."""
    from explorer.targets import ALL_TYPES, find_targets

    have = {t.type for t in find_targets(loaded.model)}
    return [t for t in ALL_TYPES if t in have] or list(ALL_TYPES)


def type_label(loaded, t: str) -> str:
    from explorer.targets import TYPE_NAMES

    fam = loaded.info.family if loaded.info.family in TYPE_NAMES else "llama"
    return f"{t} ({TYPE_NAMES[fam].get(t, t)})"


def knob_context(page: str, prefix: str, loaded, method: str):
    """What a knob's widget options may depend on (``explorer.methods.facts.KnobContext``): the page's current
    values of the method's knobs and the loaded model's target shapes."""
    from explorer.methods import METHODS
    from explorer.methods.facts import KnobContext
    from explorer.targets import find_targets

    values = {kn.name: st.session_state.get(wkey(page, prefix + kn.name), kn.default)
              for kn in METHODS[method].knobs}

    def shapes(types):
        return sorted({(t.d_out, t.d_in) for t in find_targets(loaded.model, list(types))})

    def n_blocks(types, b):
        return sum((t.d_out // b) * (t.d_in // b) for t in find_targets(loaded.model, list(types))) if b else 0

    return KnobContext(values=values, shapes=shapes, n_blocks=n_blocks)


def knob_widget(page: str, prefix: str, knob, loaded, method: str) -> None:
    """One widget for a method Knob, bound to session key ``wkey(page, prefix + knob.name)``, drawn from the
    knob's own hints (``Knob.widget_kind``, ``step``, ``format``, ``options``, ``locked``, ``model_types``).

    Used by the playground (prefix ``a_``/``b_``) and the fine-tune page (prefix ``k_``).
    """
    key = wkey(page, prefix + knob.name)
    help_, label = knob.help, knob.shown  # label: Knob.label ("frozen share of A and B")
    cur = st.session_state.get(key, knob.default)
    w = knob.options(knob_context(page, prefix, loaded, method)) if knob.options else None
    if w is not None:
        help_ += w.help
    kind = knob.widget_kind
    if knob.model_types:  # the layer types this model has
        avail = available_types(loaded)
        st.session_state[key] = [t for t in st.session_state.get(key, []) if t in avail] or \
            [t for t in knob.default if t in avail] or avail[:1]
        st.multiselect(label, avail, key=key, help=help_, format_func=lambda t: type_label(loaded, t))
    elif kind == "select_slider":
        opts = list(w.options) if w is not None and w.options is not None else list(knob.choices or [cur])
        if cur not in opts:
            st.session_state[key] = w.fallback if w is not None and w.fallback is not None else knob.default
        labels = w.labels if w is not None else {}
        st.select_slider(label, opts, key=key, help=help_, format_func=lambda v: labels.get(v, str(v)))
    elif kind == "slider":
        lo = w.lo if w is not None and w.lo is not None else knob.min
        hi = w.hi if w is not None and w.hi is not None else knob.max
        if knob.kind == "int":
            if int(cur) > int(hi):
                st.session_state[key] = cur = int(hi)
            from explorer.views.playground import int_slider_stops  # a long range: log-scale stops, auto in place

            stops = int_slider_stops(method, knob.name, lo, hi, cur, loaded,
                                     knob_context(page, prefix, loaded, method).values)
            if stops is None:
                st.slider(label, int(lo), int(hi), key=key, help=help_)
            else:
                st.select_slider(label, stops[0], key=key, help=help_,
                                 format_func=lambda v, names=stops[1]: names.get(v, f"{v:,}"))
        else:
            st.slider(label, float(lo), float(hi), step=knob.step, format=knob.format or None, key=key, help=help_)
    elif kind == "toggle":
        held = knob.locked(knob_context(page, prefix, loaded, method).values) if knob.locked else None
        if held is not None:
            st.session_state[key] = held
        st.toggle(label, key=key, help=help_, disabled=held is not None)
    elif kind == "radio":
        st.radio(label, knob.choices, key=key, help=help_, horizontal=True)
    elif kind == "select":
        st.selectbox(label, knob.choices, key=key, help=help_)
    elif knob.kind == "int":
        st.number_input(label, min_value=int(knob.min or 0), max_value=int(knob.max or 2**31 - 1), step=1,
                        key=key, help=help_)
    else:
        st.number_input(label, min_value=float(knob.min or 0.0), max_value=float(knob.max or 1e9),
                        step=knob.step, key=key, help=help_)




def precision_widgets(page: str, prec_field: str, ckpt_field: str, cuda: bool) -> None:
    """The training precision (fp16 only where CUDA is) and the gradient-checkpointing switch of a fine-tune."""
    opts = list(PRECISIONS) if cuda else [p for p in PRECISIONS if p != "fp16"]
    key = wkey(page, prec_field)
    if st.session_state.get(key) not in opts:
        st.session_state[key] = "fp32"
    c = st.columns(2)
    c[0].radio("precision", opts, key=key, horizontal=True,
               help="fp32; bf16: autocast (weights, gradients and AdamW states stay fp32; the forward runs in bf16)"
                    + ("; fp16: autocast with a gradient scaler" if cuda else "; fp16 needs a CUDA GPU (none here)"))
    c[1].toggle("checkpointing", key=wkey(page, ckpt_field),  # short: it must fit its column on a projector
                help="gradient checkpointing: each layer keeps only its input; its activations are rebuilt in the "
                     "backward pass")
    if not cuda:  # what bf16 costs in time here: measured once per server (a CPU without bf16 units: many times)
        from explorer.engine.speed import precision_speed

        speed = precision_speed()
        if speed.slow and st.session_state.get(key) == "bf16":
            st.warning(speed.text() + ": this run will take that much longer.", icon=":material/speed:")
        else:
            st.caption(speed.text())


# ----------------------------------------------------------------------------- lesson presets

def preset_picker(presets: dict, page: str, prefix: str) -> None:
    """The sidebar's lesson presets: pick one, read its lesson, load it (replaces the page's URL and reruns).

    The loaded preset's name is kept in ``st.session_state[f"{prefix}_lesson"]`` so the page can show its
    lesson while the page still holds the preset's settings (:func:`preset_banner`).
    """
    if not presets:
        return
    with st.sidebar:
        st.subheader("Lesson presets")
        pick = st.selectbox("Preset", ["—"] + list(presets), key=f"{prefix}_preset_pick",
                            label_visibility="collapsed")
        if pick != "—":
            st.caption(presets[pick].lesson)
            if st.button("Load this preset", key=f"{prefix}_preset_go", width="stretch"):
                st.session_state[f"{prefix}_lesson"] = pick
                st.session_state[f"{prefix}_lesson_new"] = True  # the page may adjust its view once
                apply_preset(presets[pick].values, page)


def preset_banner(presets: dict, page: str, prefix: str, keys: tuple) -> None:
    """The loaded preset's lesson, shown while the widgets named by ``keys`` still hold its values."""
    name = st.session_state.get(f"{prefix}_lesson")
    p = presets.get(name)
    if p is None:
        return
    if all(str(st.session_state.get(wkey(page, key))) == str(p.values.get(key)) for key in keys):
        st.info(f"**Lesson: {name}.** {p.lesson}", icon=":material/school:")
