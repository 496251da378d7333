"""Shared helpers for every dashboard page: the one module a page imports (``import ui_common as ui``).

Streamlit is imported only here, in the ``ui_*.py`` modules beside it and in the pages.  Two parts live in their
own modules and are re-exported here: ``ui_modes.py`` (instructor and projector modes, ``show_fig``) and
``ui_session.py`` (the session's run history and folder).  Panels that one page draws live beside it:
``ui_runs.py`` (Fine-tune's runs, downloads and "Try your model"), ``ui_smt.py`` (the SMT inspector's views),
``ui_board.py`` (the class board's share control).

How a page uses them::

    import streamlit as st
    import ui_common as ui
    from explorer.urlstate import Field, Schema

    ui.page_setup("Fine-tune", ":material/model_training:")  # set_page_config + sidebar (links, modes)
    SCHEMA = Schema([Field("model", "str", "minilm"), Field("steps", "int", 30, min=1, max=500)])

    def body():
        vals = ui.url_values(SCHEMA, page="finetune")  # URL -> clamped values, notice if a value was changed;
                                                       # seeds st.session_state["finetune:<field>"] for widgets
        steps = st.slider("Steps", 1, 500, key=ui.wkey("finetune", "steps"))
        loaded = ui.load_base_or_error(vals["model"])  # cached read-only base, or a readable st.error -> None
        if loaded is None:
            return
        model = explorer.models.fresh_copy(loaded.model)  # a session's private copy: train this one
        ...
        ui.write_url(SCHEMA, page="finetune")          # widget values -> URL (a link reproduces the view)

    ui.run_page(body)                                   # any exception -> st.error(user_message(exc)), no traceback

Helpers
- ``get_base(name)``: ``st.cache_resource`` holding one read-only ``LoadedModel`` per model name per server.
  Never call ``requires_grad_``, ``.train()`` or attach adapters on it; use ``fresh_copy``.
- ``load_base_or_error(name)``: the same, showing ``ModelLoadError`` etc. as one readable line.
- ``run_page(fn)`` / ``show_error(exc)``: error display (Streamlit's stop/rerun pass through).
- ``url_values`` / ``write_url`` / ``wkey`` / ``widget_values`` / ``url_is_fresh`` / ``setting`` / ``raw_params``:
  URL state through an
  ``explorer.urlstate.Schema``.  Widgets are bound by key (``wkey(page, field)``, no ``value=``); they are
  re-seeded from the URL only when the URL changed under the page (pasted link, preset).  When the schema
  depends on a setting (e.g. the method decides the knob fields), read that setting from the URL while
  ``url_is_fresh(page)`` and from the widget state otherwise (``setting``); ``reset_on_method_change`` gives a newly
  picked method its own knob defaults.
- ``apply_preset(preset, page)``: load a lesson preset (``explorer.workshop.presets``) into the URL and rerun.
- ``instructor_mode()`` / ``projector_mode()``: the sidebar switches (URL keys ``instr`` / ``proj``), drawn by
  ``page_setup``.  A mode is kept in session state under ``_mode_<name>`` (Streamlit drops a widget's own state
  when another page runs), rides along in every page link (``mode_params()``) and preset, and is in the URL.
  ``instructor_on()``, ``visible_knobs`` (hides ``Knob.advanced`` knobs and seeds in instructor mode) and
  ``keep_hidden_values`` (hidden widgets keep their values); ``projector_on()`` for layout choices.
- Projector mode: ``PROJECTOR_CSS`` (dark by inverting the light app, charts inverted back; large type; no faint
  captions) and ``show_fig``, which restyles figures with ``explorer.views.figures.for_projector`` (dark template,
  large fonts); ``plotly_template()`` gives "plotly_dark" then, else None (Streamlit's chart theme).
- ``model_choice(...)``: the model picker (registry names + a custom folder / hub id box).
- ``knob_widget(page, prefix, knob, loaded, method)``: one widget per method ``Knob`` (rank as powers of two,
  SMT block sizes that divide every target, the blocks slider bounded by the blocks the targets hold,
  Tied-LoRA switches locked to the preset unless "custom"); ``available_types`` / ``type_label``.
- ``session_history()``: the session's run history (Fine-tune / Compare); ``session_folder()`` its folder;
  ``start_session_janitor()`` (from ``page_setup``) removes ended sessions' folders (``explorer.workshop.sessions``).
- Playground-only computations live in ``explorer.views.playground`` (cached summaries per model, method and knobs,
  thread-safe, shared by all sessions; built on a shared-weight copy that never writes the cached base).
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

import streamlit as st

from explorer.engine.config import PRECISIONS
from explorer.errors import user_message
from explorer.urlstate import Schema
from ui_modes import (INSTRUCTOR_HIDDEN_KNOBS, MODES, PROJECTOR_CSS, _modes_from_url, _modes_to_url,  # noqa: F401
                      instructor_mode, instructor_on, keep_hidden_values, mode_on, mode_params, plotly_template,
                      projector_mode, projector_on, show_fig, visible_knobs)
from ui_session import session_folder, session_history, start_session_janitor  # noqa: F401

PAGES = [  # (path, label, icon) for links; pages that are not there yet are skipped.  Material icons
    # render everywhere (emoji need a font that headless browsers often lack).
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Methods_playground.py", "Methods playground", ":material/science:"),
    ("pages/2_Fine_tune.py", "Fine-tune", ":material/model_training:"),
    ("pages/3_Compare.py", "Compare", ":material/leaderboard:"),
    ("pages/4_Memory_calculator.py", "Memory calculator", ":material/calculate:"),
    ("pages/5_SMT_block_inspector.py", "SMT block inspector", ":material/grid_view:"),
    ("pages/6_Claims_lab.py", "Claims lab", ":material/fact_check:"),
    ("pages/7_Class_board.py", "Class board", ":material/groups:"),
]
MODEL_CHOICES = ["minilm", "smollm2-135m", "tiny-bert", "tiny-llama"]
# config-only models (published config.json values, no weights): built on the meta device, inspected, never trained
BIG_MODEL_CHOICES = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "mistral-7b", "qwen2.5-0.5b",
                     "qwen2.5-7b", "gemma-2b", "gpt2", "bert-base", "bert-large"]
CUSTOM = "custom folder or hub id…"
_MODE_URL_KEYS = ("instr", "proj")  # = the URL keys of MODES


# ----------------------------------------------------------------------------- page frame

def page_setup(title: str, icon: str = ":material/science:", layout: str = "wide") -> None:
    try:
        st.set_page_config(page_title=f"{title} · PEFT Explorer", page_icon=icon, layout=layout)
    except Exception:  # noqa: BLE001 - already set (e.g. called twice)
        pass
    _modes_from_url()
    start_session_janitor()
    with st.sidebar:
        st.markdown("**PEFT Explorer**")
        page_links()
        st.divider()
        instructor_mode()
        projector_mode()
        st.caption("Every setting is in the page address: copy it to share this exact view.")
    _modes_to_url()
    if projector_on():
        st.html(PROJECTOR_CSS)


def existing_pages():
    from pathlib import Path

    root = Path(__file__).resolve().parent
    return [(p, label, icon) for p, label, icon in PAGES if (root / p).exists()]


def page_links(exclude: str | None = None) -> None:
    for path, label, icon in existing_pages():
        if path != exclude:
            try:
                st.page_link(path, label=label, icon=icon, query_params=mode_params() or None)
            except Exception:  # noqa: BLE001 - a page run on its own (AppTest) knows no other pages
                pass


def show_error(exc: BaseException, prefix: str = "") -> None:
    st.error(prefix + user_message(exc), icon=":material/error:")


def run_page(body: Callable[[], None]) -> None:
    """Run a page body; any exception becomes one readable line (never a traceback)."""
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - st.stop()/st.rerun() are BaseException and pass through
        show_error(exc)


# ----------------------------------------------------------------------------- models

@st.cache_resource(max_entries=4, show_spinner=False)
def get_base(name: str, meta_ok: bool = False):
    """One read-only LoadedModel per model name per server (shared by every session).

    ``meta_ok``: a config-only model is built on the meta device (inspecting pages); else it is refused."""
    from explorer.models import load_model
    from explorer.workshop.status import freeze_long_lived, register_base

    loaded = load_model(name, meta_ok=meta_ok)
    register_base(name, loaded)  # weakly: the debug status panel shows its checksum
    freeze_long_lived()  # the imports and the model live as long as the server: no full collection walks them again
    return loaded


def load_base_or_error(name: str, meta_ok: bool = False):
    """The cached base model, or None after showing a readable error."""
    from explorer.model_files import smollm2_converted

    what = (f"Converting {name} from its GGUF file into the local cache (once per machine, about 10-40 s; "
            "`make install` does it ahead)…" if name == "smollm2-135m" and not smollm2_converted() else
            f"Loading {name} (once per server)…")
    try:
        with st.spinner(what, show_time=True):
            return get_base(name, meta_ok) if meta_ok else get_base(name)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "Model: ")
        return None


def model_choice(key_select: str, key_custom: str, current: str, label: str = "Model", big: bool = False) -> str:
    """Registry picker plus a text box for a local folder or hub id; returns the model name.

    ``big``: also offer the config-only models (``BIG_MODEL_CHOICES``, labelled "config only")."""
    choices = MODEL_CHOICES + (BIG_MODEL_CHOICES if big else [])
    options = choices + [CUSTOM]
    if key_select not in st.session_state:
        st.session_state[key_select] = current if current in choices else CUSTOM
    if key_custom not in st.session_state:
        st.session_state[key_custom] = "" if current in choices else current
    pick = st.selectbox(label, options, key=key_select,
                        format_func=lambda m: f"{m} (big model, config only)" if m in BIG_MODEL_CHOICES else m,
                        help="minilm: pretrained 22.7 M BERT encoder · smollm2-135m: pretrained 134.5 M LLaMA-style "
                             "causal LM · tiny-*: random weights, instant" +
                             (" · config only: published shapes without weights (counts, layouts, sizes; "
                              "never trained)" if big else ""))
    if pick == CUSTOM:
        return st.text_input("Folder or hub id", key=key_custom, placeholder="/path/to/model or org/name",
                             help="A folder saved with save_pretrained, or a hub id (needs the hub; "
                                  "trust_remote_code is always off)").strip()
    return pick


# ----------------------------------------------------------------------------- URL state

def wkey(page: str, field: str) -> str:
    """Session-state key of the widget bound to a URL field."""
    return f"{page}:{field}"


def _sig(d: dict) -> str:
    """A URL's signature for "did the URL change under the page"; the mode keys are not page settings."""
    d = {k: v for k, v in d.items() if k not in _MODE_URL_KEYS}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def raw_params() -> dict:
    """The page address's query parameters as a plain dict (a key given twice: a list)."""
    qp = st.query_params
    out = {}
    for k in qp.keys():
        vals = qp.get_all(k)
        out[k] = vals if len(vals) != 1 else vals[0]
    return out


def url_is_fresh(page: str) -> bool:
    """True when the URL differs from what this page last wrote (first visit, pasted link, preset):
    settings must then come from the URL, not from the widgets' session state."""
    return st.session_state.get(f"_urlsig:{page}") != _sig(raw_params())


def setting(schema: Schema, page: str, name: str):
    """A setting that decides the rest of the page's schema (e.g. the method decides its knob fields): from the
    URL while it is fresh (a new link or preset: ``url_is_fresh``), else from the widget's state."""
    url_value = schema.parse(raw_params())[0][name]
    return url_value if url_is_fresh(page) else st.session_state.get(wkey(page, name), url_value)


def reset_on_method_change(page: str, slot: str, method: str, fields) -> bool:
    """A newly picked method starts from its own knob defaults: when ``method`` differs from the one this page's
    ``slot`` (e.g. "method", or one side of the playground) showed on the last run, and the URL did not just
    change (a link or preset brings its own knobs), the widgets of ``fields`` (``urlstate.Field``) are reset.
    Returns True when they were."""
    key = f"_prev_method:{page}:{slot}"
    prev = st.session_state.get(key)
    changed = prev is not None and prev != method and not st.session_state.get(f"_urlfresh:{page}")
    if changed:
        for f in fields:
            st.session_state[wkey(page, f.name)] = f.default_value()
    st.session_state[key] = method
    return changed


def url_values(schema: Schema, page: str, notice: bool = True) -> dict:
    """Values from the URL through ``schema`` (clamped); seeds the widgets' session state.

    The widgets are re-seeded only when the URL differs from what this page last
    wrote (first visit, a pasted link, a preset), so moving a widget is not undone.
    """
    raw = raw_params()
    values, warnings = schema.parse(raw)
    sig_key = f"_urlsig:{page}"
    fresh = st.session_state.get(sig_key) != _sig(raw)  # a new link / preset / first visit
    st.session_state[f"_urlfresh:{page}"] = fresh
    for name, v in values.items():
        k = wkey(page, name)
        if fresh or k not in st.session_state:
            st.session_state[k] = v
    if warnings and notice:
        st.info("Some values in the link were out of range or unknown and were adjusted: " +
                "; ".join(warnings[:6]) + (" …" if len(warnings) > 6 else ""), icon=":material/info:")
    return values


def widget_values(schema: Schema, page: str) -> dict:
    """Current widget values for the schema's fields (falling back to defaults), clamped."""
    vals = {f.name: st.session_state.get(wkey(page, f.name), f.default_value()) for f in schema}
    return schema.clamp(vals)


def write_url(schema: Schema, page: str, values: dict | None = None, keep: tuple = ()) -> None:
    """Write the page's settings to the URL (only when they changed: no extra reruns)."""
    values = widget_values(schema, page) if values is None else schema.clamp(values)
    enc = schema.encode(values)
    for k in keep:
        if k in st.query_params and k not in enc:
            enc[k] = st.query_params[k]
    enc.update(mode_params())
    if raw_params() != enc:
        st.query_params.from_dict(enc)
    st.session_state[f"_urlsig:{page}"] = _sig(enc)


def apply_preset(values: dict, page: str) -> None:
    """Replace the URL by a preset's values and rerun (the widgets are re-seeded from the URL)."""
    st.query_params.from_dict({k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else
                                   ("1" if v is True else "0" if v is False else str(v)))
                               for k, v in values.items()})
    for kk, vv in mode_params().items():
        st.query_params[kk] = vv
    st.session_state.pop(f"_urlsig:{page}", None)
    st.rerun()


# ----------------------------------------------------------------------------- method knobs (shared by pages)

from explorer.methods.facts import RANK_STEPS as KNOB_RANKS  # noqa: E402 - the rank slider's stops


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
    """What a knob's widget options may depend on (``explorer.methods.base.KnobContext``): the page's current
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
                st.session_state[key] = int(hi)
            st.slider(label, int(lo), int(hi), key=key, help=help_)
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


def sidebar_model(page: str, current: str, big: bool = False):
    """The sidebar's model picker and the cached base model, shared by pages.

    A fresh URL (a pasted link or a preset) resets the picker to the URL's model.  Returns the
    read-only ``LoadedModel``, or None after showing why (no name typed, or a readable load error).
    """
    sel, custom = wkey(page, "model_sel"), wkey(page, "model_custom")
    if st.session_state.get(f"_urlfresh:{page}"):
        for kk in (sel, custom):
            st.session_state.pop(kk, None)
    with st.sidebar:
        st.subheader("Model")
        name = model_choice(sel, custom, current, big=big)
        st.session_state[wkey(page, "model")] = name
    if not name:
        st.info("Type a local folder or a hub id in the sidebar.", icon=":material/info:")
        return None
    return load_base_or_error(name, meta_ok=big)



# ----------------------------------------------------------------------------- lesson presets (every page)

def preset_picker(presets: dict, page: str, prefix: str) -> None:
    """The sidebar's lesson presets: pick one, read its lesson, load it (replaces the page's URL and reruns).

    The loaded preset's name is kept in ``st.session_state[f"{prefix}_lesson"]`` so the page can show its
    lesson while the page still holds the preset's settings (:func:`lesson_banner`).
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


def lesson_banner(presets: dict, page: str, prefix: str, keys: tuple) -> None:
    """The loaded preset's lesson, shown while the widgets named by ``keys`` still hold its values."""
    name = st.session_state.get(f"{prefix}_lesson")
    p = presets.get(name)
    if p is None:
        return
    if all(str(st.session_state.get(wkey(page, key))) == str(p.values.get(key)) for key in keys):
        st.info(f"**Lesson: {name}.** {p.lesson}", icon=":material/school:")
