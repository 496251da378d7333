"""A page's settings: its URL schema, the widgets bound to the schema's fields, and the URL written back.

Every setting lives in the page address (a link is a lesson).  A page opens its state once and reads, draws and
writes through it::

    from ui import state

    k = state.keys("ft")                                 # k("steps") -> "ft:steps", the widget's session key

    def body():
        with state.page_state("ft", page_schema(), keep=("sid",)) as ps:
            method = ps.setting("method", allowed=METHODS, default="lora")  # decides the knob fields
            ps.add(knob_schema(method), method_slot=("method", method))     # a new method: its own defaults
            vals = ps.load()                             # URL -> clamped values; seeds the widgets
            st.slider("steps", 2, 500, key=k("steps"))   # widgets bound by key, no value=
            ...                                          # a return or an error: the URL is written on exit

Widgets are re-seeded from the URL only when the URL changed under the page (first visit, a pasted link, a
preset), so moving a widget is not undone.  When the schema depends on a setting (the method decides the knob
fields), ``setting`` reads it from the URL while the URL is fresh and from the widget state otherwise.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

from explorer.urlstate import Schema
from ui.modes import MODES, mode_params

_MODE_URL_KEYS = tuple(url for url, _, _ in MODES.values())  # "instr", "proj": not page settings


def wkey(page: str, field: str) -> str:
    """Session-state key of the widget bound to a URL field."""
    return f"{page}:{field}"


def keys(page: str) -> Callable[[str], str]:
    """``k = keys("ft")``: ``k("steps")`` is the session key of the page's ``steps`` widget."""
    return partial(wkey, page)


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
    fresh = st.session_state.get(f"_urlsig:{page}") != _sig(raw)  # a new link / preset / first visit
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


class PageState:
    """One run of one page's settings (see the module's docstring); made by :func:`page_state`."""

    def __init__(self, page: str, schema: Schema, keep: tuple = ()):
        self.page, self.schema, self.keep = page, schema, keep
        self.values: dict | None = None  # set by load()
        self.written_values: dict | None = None  # explicit values for the URL (else the widgets')
        self._slots: list[tuple[str, str, Schema]] = []

    def key(self, name: str) -> str:
        return wkey(self.page, name)

    def setting(self, name: str, allowed=None, default=None):
        """A setting that decides the rest of the schema (``setting``); outside ``allowed``: ``default``."""
        v = setting(self.schema, self.page, name)
        return v if allowed is None or v in allowed else default

    def add(self, fields: Schema, method_slot: tuple[str, str] | None = None) -> None:
        """More fields (e.g. the picked method's knobs); ``method_slot=(slot, method)``: when that slot's method
        changed since the last run, these fields go back to their defaults (``reset_on_method_change``)."""
        self.schema = self.schema + fields
        if method_slot is not None:
            self._slots.append((method_slot[0], method_slot[1], fields))

    def load(self, notice: bool = True) -> dict:
        """The URL's values through the schema (clamped); seeds the widgets.  Call once, before the widgets."""
        self.values = url_values(self.schema, self.page, notice)
        for slot, method, fields in self._slots:
            reset_on_method_change(self.page, slot, method, fields)
        return self.values

    def current(self) -> dict:
        """The widgets' current values (clamped)."""
        return widget_values(self.schema, self.page)

    def write(self) -> None:
        if self.values is not None:
            write_url(self.schema, self.page, values=self.written_values, keep=self.keep)


@contextmanager
def page_state(page: str, schema: Schema, keep: tuple = ()) -> Iterator[PageState]:
    """A page's state for one run; the URL is written when the block ends, on every path: a return or an error
    (shown by ``frame.run_page``).  Not on ``st.rerun()`` (a preset just wrote its own URL) nor after
    ``st.stop()`` (Streamlit takes no more messages then)."""
    ps = PageState(page, schema, keep)
    try:
        yield ps
    except RerunException:
        raise
    except BaseException:
        ps.write()
        raise
    ps.write()
