"""URL state: whitelisted, clamped, never raises; encode/parse round-trips; presets parse cleanly."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.views import playground as pg
from explorer.methods import METHODS
from explorer.workshop.presets import PRESETS, for_page
from explorer.urlstate import Field, Schema, knob_fields

SCHEMA = Schema([
    Field("n", "int", 8, min=1, max=512),
    Field("x", "float", 0.5, min=0.0, max=0.99),
    Field("on", "bool", False),
    Field("m", "choice", "lora", choices=("lora", "smt")),
    Field("t", "multi", ["q", "v"], choices=("q", "k", "v", "o")),
    Field("s", "str", "minilm", max_len=20),
])


def test_defaults_and_unknown_keys_ignored():
    vals, warns = SCHEMA.parse({"zzz": "1", "utm_source": "mail"})
    assert vals == SCHEMA.defaults() and warns == []


@pytest.mark.parametrize("raw,expected,warned", [
    ("64", 64, False), ("0", 1, True), ("-5", 1, True), ("1e9", 512, True), ("7.6", 8, True),
    ("abc", 8, True), ("nan", 8, True), ("inf", 512, True), ("-inf", 1, True), ("", 8, True),
])
def test_int_clamped(raw, expected, warned):
    vals, warns = SCHEMA.parse({"n": raw})
    assert vals["n"] == expected and isinstance(vals["n"], int)
    assert bool(warns) == warned


def test_float_bool_choice_multi_str():
    vals, warns = SCHEMA.parse({"x": "2", "on": "yes", "m": "SMT", "t": "v,zz,q,q", "s": "a\x00b" + "c" * 50})
    assert vals["x"] == 0.99 and vals["on"] is True and vals["m"] == "smt"
    assert vals["t"] == ["q", "v"]  # canonical order, duplicates and unknowns dropped
    assert vals["s"] == "ab" + "c" * 18 and len(vals["s"]) == 20
    assert len(warns) == 3  # x clamped, t unknown value, s cut
    vals, warns = SCHEMA.parse({"t": "zz", "m": "dora", "on": "maybe"})
    assert vals["t"] == ["q", "v"] and vals["m"] == "lora" and vals["on"] is False and len(warns) == 3


def test_list_values_last_wins():
    vals, _ = SCHEMA.parse({"n": ["3", "5"]})
    assert vals["n"] == 5


raw_values = st.one_of(st.text(max_size=300), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                       st.lists(st.text(max_size=20), max_size=4), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["n", "x", "on", "m", "t", "s", "other"]), raw_values))
def test_parse_never_raises_and_clamps(params):
    vals, warns = SCHEMA.parse(params)
    assert 1 <= vals["n"] <= 512 and isinstance(vals["n"], int)
    assert 0.0 <= vals["x"] <= 0.99 and math.isfinite(vals["x"])
    assert isinstance(vals["on"], bool)
    assert vals["m"] in ("lora", "smt")
    assert vals["t"] and set(vals["t"]) <= {"q", "k", "v", "o"}
    assert len(vals["s"]) <= 20
    # whatever came in, encode -> parse gives the same values and no warning
    again, w2 = SCHEMA.parse(SCHEMA.encode(vals))
    assert again == vals and w2 == []


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(METHODS)), st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=8))
def test_method_knob_fields_never_raise(method, junk):
    sch = pg.page_schema() + pg.side_schema(method, "a")
    params = {("a_" + k if i % 2 else k): v for i, (k, v) in enumerate(junk.items())}
    vals, _ = sch.parse(params)
    knobs = pg.side_knobs(vals, method, "a")
    assert set(knobs) <= {kn.name for kn in METHODS[method].knobs}
    for kn in METHODS[method].knobs:
        if kn.name in knobs and kn.kind in ("int", "float"):
            assert kn.min <= knobs[kn.name] <= kn.max


def test_knob_fields_follow_knobs():
    f = {x.name: x for x in knob_fields(METHODS["lora"].knobs, prefix="b_")}
    assert f["b_rank"].min == 1 and f["b_rank"].max == 512 and f["b_rank"].default == 8
    assert f["b_targets"].kind == "multi" and f["b_targets"].default == ["q", "v"]


def test_presets_parse_without_warnings():
    assert set(for_page("playground")) == {"LoRA rank 1 vs 64", "LoRA-SP vs LoRA", "TL6 vs LoRA",
                                            "SMT top 1% blocks", "SpaRTA on Wv/Wo"}
    for p in for_page("playground").values():
        base, w = pg.page_schema().parse({k: str(v) for k, v in p.values.items()})
        sch = pg.page_schema() + pg.side_schema(base["m1"], "a") + \
            (pg.side_schema(base["m2"], "b") if base["m2"] != "none" else Schema([]))
        from urllib.parse import parse_qsl

        params = dict(parse_qsl(p.url().lstrip("?")))
        vals, warns = sch.parse(params)
        assert warns == [], (p.name, warns)
        # every value of the preset is a whitelisted field (nothing silently dropped)
        assert set(p.values) <= set(sch.fields), (p.name, set(p.values) - set(sch.fields))


def test_a_cut_value_reads_back_the_same():
    """A value cut at the limit just after a space keeps no trailing space: the address it writes reads back to
    the same value (hypothesis found ``"0" * 19 + " 0"``)."""
    vals, warns = SCHEMA.parse({"s": "0" * 19 + " 0"})
    assert vals["s"] == "0" * 19 and len(warns) == 1
    assert SCHEMA.parse(SCHEMA.encode(vals)) == (vals, [])
