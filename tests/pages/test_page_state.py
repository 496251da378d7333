"""ui.state.page_state: a page's settings come from the address, seed the widgets, and go back to the address on
every way out of the page (a return, an error), but not when a preset reruns with its own address."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

SCRIPT = """
import streamlit as st
from explorer.urlstate import Field, Schema
from ui import frame, state

def body():
    base = Schema([Field("method", "choice", "lora", choices=("lora", "smt")), Field("steps", "int", 30, min=2, max=500)])
    with state.page_state("t", base) as ps:
        method = ps.setting("method", allowed=("lora", "smt"), default="lora")
        ps.add(Schema([Field(f"k_{method}", "int", 8 if method == "lora" else 3, min=1, max=64)]),
               method_slot=("method", method))
        ps.load()
        st.slider("steps", 2, 500, key=ps.key("steps"))
        st.selectbox("method", ["lora", "smt"], key=ps.key("method"))
        st.number_input("knob", 1, 64, key=ps.key(f"k_{method}"))
        how = st.session_state.get("how")
        if how == "return":
            return
        if how == "error":
            raise ValueError("a readable problem")
        if how == "preset":
            st.session_state["how"] = None
            state.apply_preset({"method": "smt", "steps": 7}, "t")

frame.run_page(body)
"""


def app(**params) -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_values_come_from_the_address_clamped_and_go_back_to_it():
    at = app(steps="9999", method="lora")
    assert at.slider(key="t:steps").value == 500
    assert url(at) == {"method": "lora", "steps": "500", "k_lora": "8"}
    at.slider(key="t:steps").set_value(40).run()
    assert url(at)["steps"] == "40" and at.slider(key="t:steps").value == 40  # a moved widget is not undone


@pytest.mark.parametrize("how", ["return", "error"])
def test_the_address_is_written_on_every_way_out(how):
    at = app(method="lora")
    at.session_state["how"] = how
    at.slider(key="t:steps").set_value(77).run()
    assert url(at)["steps"] == "77", how
    if how == "error":
        assert [e.value for e in at.error] == ["ValueError: a readable problem"] and not at.exception


def test_a_new_method_starts_from_its_own_knob_defaults_but_a_link_brings_its_own():
    at = app(method="lora", k_lora="32")
    assert at.number_input(key="t:k_lora").value == 32  # the link's knob
    at.selectbox(key="t:method").set_value("smt").run()
    at.run()
    assert at.number_input(key="t:k_smt").value == 3 and url(at).get("k_smt") == "3"


def test_a_preset_keeps_its_own_address():
    at = app(method="lora", steps="40")
    at.session_state["how"] = "preset"
    at.run()
    assert url(at) == {"method": "smt", "steps": "7", "k_smt": "3"}
    assert at.slider(key="t:steps").value == 7
