"""The model in use: one read-only base model per name per server, the model picker, and load errors as one line.

``get_base(name)`` is a ``st.cache_resource`` shared by every session: never call ``requires_grad_``,
``.train()`` or attach adapters on it; a session adapts its own copy (``explorer.models.fresh_copy``).
"""

from __future__ import annotations

import streamlit as st

from explorer.model_configs import config_model_names
from explorer.models import model_names
from ui.frame import show_error
from ui.state import wkey

MODEL_CHOICES = model_names()  # the registry's models (explorer.models.REGISTRY)
# config-only models (published config.json values, no weights): built on the meta device, inspected, never trained
BIG_MODEL_CHOICES = config_model_names()  # every explorer/configs/*.json
CUSTOM = "custom folder or hub id…"


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
