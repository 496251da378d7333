"""Shared helpers for every dashboard page (the one module besides pages that imports streamlit).

How a page uses them::

    import streamlit as st
    import ui_common as ui
    from explorer.urlstate import Field, Schema

    ui.page_setup("Fine-tune", "🏋️")                 # set_page_config + sidebar (instructor switch, links)
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
- ``url_values`` / ``write_url`` / ``wkey``: URL state through an ``explorer.urlstate.Schema``.
- ``apply_preset(preset, page)``: load a lesson preset (``explorer.presets``) into the URL and rerun.
- ``instructor_mode()``: the sidebar switch (URL key ``instr``); pages hide ``Knob.advanced`` knobs when on.
- ``plotly_template()`` / ``show_fig(fig)``: light/dark-aware plotly template, and drawing without Streamlit's theme.
- ``model_choice(...)``: the model picker (registry names + a custom folder / hub id box).
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

import streamlit as st

from explorer.errors import user_message
from explorer.figures import template_for
from explorer.urlstate import Schema

PAGES = [  # (path, label, icon) for links; pages that are not there yet are skipped
    ("app.py", "Home", "🏠"),
    ("pages/1_Methods_playground.py", "Methods playground", "🧪"),
    ("pages/2_Fine_tune.py", "Fine-tune", "🏋️"),
    ("pages/3_Compare.py", "Compare", "📊"),
    ("pages/4_Memory_calculator.py", "Memory calculator", "🧮"),
    ("pages/5_SMT_block_inspector.py", "SMT block inspector", "🧱"),
]
MODEL_CHOICES = ["minilm", "smollm2-135m", "tiny-bert", "tiny-llama"]
CUSTOM = "custom folder or hub id…"


# ----------------------------------------------------------------------------- page frame

def page_setup(title: str, icon: str = "🧪", layout: str = "wide") -> None:
    try:
        st.set_page_config(page_title=f"{title} · PEFT Explorer", page_icon=icon, layout=layout)
    except Exception:  # noqa: BLE001 - already set (e.g. called twice)
        pass
    with st.sidebar:
        st.markdown("**PEFT Explorer**")
        page_links()
        st.divider()
        instructor_mode()
        st.caption("Every setting is in the page address: copy it to share this exact view.")


def existing_pages():
    from pathlib import Path

    root = Path(__file__).resolve().parent
    return [(p, label, icon) for p, label, icon in PAGES if (root / p).exists()]


def page_links(exclude: str | None = None) -> None:
    for path, label, icon in existing_pages():
        if path != exclude:
            try:
                st.page_link(path, label=label, icon=icon)
            except Exception:  # noqa: BLE001 - a page run on its own (AppTest) knows no other pages
                pass


def show_error(exc: BaseException, prefix: str = "") -> None:
    st.error(prefix + user_message(exc), icon="⚠️")


def run_page(body: Callable[[], None]) -> None:
    """Run a page body; any exception becomes one readable line (never a traceback)."""
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - st.stop()/st.rerun() are BaseException and pass through
        show_error(exc)


# ----------------------------------------------------------------------------- models

@st.cache_resource(max_entries=4, show_spinner=False)
def get_base(name: str):
    """One read-only LoadedModel per model name per server (shared by every session)."""
    from explorer.models import load_model

    return load_model(name)


def load_base_or_error(name: str):
    """The cached base model, or None after showing a readable error."""
    try:
        with st.spinner(f"Loading {name} (once per server)…"):
            return get_base(name)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "Model: ")
        return None


def model_choice(key_select: str, key_custom: str, current: str, label: str = "Model") -> str:
    """Registry picker plus a text box for a local folder or hub id; returns the model name."""
    options = MODEL_CHOICES + [CUSTOM]
    if key_select not in st.session_state:
        st.session_state[key_select] = current if current in MODEL_CHOICES else CUSTOM
    if key_custom not in st.session_state:
        st.session_state[key_custom] = "" if current in MODEL_CHOICES else current
    pick = st.selectbox(label, options, key=key_select,
                        help="minilm: pretrained 22.7 M BERT encoder · smollm2-135m: pretrained 134.5 M LLaMA-style "
                             "causal LM · tiny-*: random weights, instant")
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
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _raw_params() -> dict:
    qp = st.query_params
    out = {}
    for k in qp.keys():
        vals = qp.get_all(k)
        out[k] = vals if len(vals) != 1 else vals[0]
    return out


def url_values(schema: Schema, page: str, notice: bool = True) -> dict:
    """Values from the URL through ``schema`` (clamped); seeds the widgets' session state.

    The widgets are re-seeded only when the URL differs from what this page last
    wrote (first visit, a pasted link, a preset), so moving a widget is not undone.
    """
    raw = _raw_params()
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
                "; ".join(warnings[:6]) + (" …" if len(warnings) > 6 else ""), icon="ℹ️")
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
    if st.session_state.get("instructor"):
        enc["instr"] = "1"
    if _raw_params() != enc:
        st.query_params.from_dict(enc)
    st.session_state[f"_urlsig:{page}"] = _sig(enc)


def apply_preset(values: dict, page: str) -> None:
    """Replace the URL by a preset's values and rerun (the widgets are re-seeded from the URL)."""
    st.query_params.from_dict({k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else
                                   ("1" if v is True else "0" if v is False else str(v)))
                               for k, v in values.items()})
    if st.session_state.get("instructor"):
        st.query_params["instr"] = "1"
    st.session_state.pop(f"_urlsig:{page}", None)
    st.rerun()


# ----------------------------------------------------------------------------- instructor mode, theme

def instructor_mode() -> bool:
    """Sidebar switch (URL key ``instr``) that hides advanced knobs on every page."""
    if "instructor" not in st.session_state:
        st.session_state["instructor"] = st.query_params.get("instr", "0") in ("1", "true", "on", "yes")
    return st.toggle("Instructor mode", key="instructor",
                     help="Hides advanced knobs (dropout, mask redraw, seeds) so a room sees the essentials.")


def plotly_template() -> str:
    try:
        t = st.context.theme.type
    except Exception:  # noqa: BLE001
        t = None
    return template_for(t)


def show_fig(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, theme=None, key=key, config={"displaylogo": False})
