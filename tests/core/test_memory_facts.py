"""Each method's memory facts live in its own module; the memory model, its views, page 4 and the ``memory``
command never branch on a method's name (issue 11, part 1).  Proved with a method the memory code has never
seen: registered for the test only, it flows through the analytic model and the page's helpers unchanged."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from explorer.memory.analytic import estimate
from explorer.memory.plan import LinearCall, MemoryPlan, adapter_shapes
from explorer.memory.specs import PUBLISHED
from explorer.methods import METHODS, Knob, Method
from explorer.views import memory_views as V

ROOT = Path(__file__).resolve().parents[2]
MEMORY_FILES = sorted((ROOT / "explorer" / "memory").glob("*.py")) + [
    ROOT / "explorer" / "views" / "memory_views.py", ROOT / "explorer" / "views" / "memory_tables.py",
    ROOT / "explorer" / "views" / "memory_figures.py", ROOT / "pages" / "4_Memory_calculator.py",
    ROOT / "explorer" / "cli" / "memory.py"]


def _name_comparisons(path: Path, names: set[str]) -> list[str]:
    """``x == "lora"``, ``x != "full"``, ``x in ("lora", "dora")``: a comparison against a method's name."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        consts = []
        for side in [node.left, *node.comparators]:
            if isinstance(side, ast.Constant):
                consts.append(side.value)
            elif isinstance(side, (ast.Tuple, ast.List, ast.Set)):
                consts += [e.value for e in side.elts if isinstance(e, ast.Constant)]
        if any(isinstance(c, str) and c in names for c in consts):
            hits.append(f"{path.name}:{node.lineno}")
    return hits


def test_memory_code_never_branches_on_a_method_name(tmp_path):
    names = set(METHODS)
    assert {"full", "lora", "smt"} <= names  # the scan looks for real names
    hits = [h for p in MEMORY_FILES for h in _name_comparisons(p, names)]
    assert hits == []
    # the scan does find a branch where one is written
    probe = tmp_path / "probe.py"
    probe.write_text('def f(method):\n    return method in ("lora", "x") or method == "smt" or method == "other"\n')
    assert _name_comparisons(probe, names) == ["probe.py:2", "probe.py:2"]


def test_every_method_module_provides_its_memory_facts():
    schema_keys = set(V.page_schema().fields)
    for name, info in METHODS.items():
        knob_names = {k.name for k in info.knobs}
        assert callable(info.memory_plan) and callable(info.settings_text), name
        assert set(info.memory_page_knobs) <= knob_names, name
        assert set(info.memory_page_knobs.values()) <= schema_keys, name
        assert set(info.measure_knobs) <= knob_names, name
        plan = estimate("llama-7b", name)  # every method at its defaults on a published config
        assert plan["trainable_params"] > 0 and isinstance(info.settings_text({}), str)


# ----------------------------------------------------------------------------- a method the memory code never saw

def _scale_saves(call: LinearCall) -> bool:
    """y = W x * s with a trained s of d_out: the product keeps W x (s b d_out)."""
    call.save(f"{call.out_key}.wx", call.tokens * call.d_out * call.e, "scale: W x")
    return True


def _scale_plan(spec, knobs):
    a = adapter_shapes(spec, "scale", knobs["targets"])
    return MemoryPlan(knobs, trainable_parts=dict(scales=sum(o for _, _, o, _ in a.shapes), head=spec.head_params()),
                      save_rules={t: _scale_saves for t in a.types}, notes=["scale: one vector per target"])


@pytest.fixture
def scale_method(monkeypatch):
    def _not_here(*args, **kwargs):  # what a model or the playground would need: never asked by the memory code
        raise AssertionError("the memory code asked a fact it should not need")

    info = Method(
        name="scale", label="Scale", short="scale", description="one trained scale per output row",
        what_trains="a scale per output row", paper="test", formula="d_out per target",
        knobs=[Knob("targets", "multi", ["q", "v"], "targets", choices=["q", "k", "v", "o"]),
               Knob("init", "float", 1.0, "the initial scale", min=0.0, max=10.0)],
        default_lr=1e-3, color_slot=8, apply=_not_here, formula_lines=_not_here, illustrative_delta=_not_here,
        matrix_pictures=_not_here, memory_plan=_scale_plan,
        settings_text=lambda knobs: f"scales on {','.join(knobs.get('targets', ['q', 'v']))}",
        memory_page_knobs={"init": "freeze"})  # borrows an existing float field of the page
    monkeypatch.setitem(METHODS, "scale", info)
    return info


def test_a_new_method_flows_through_the_memory_model(scale_method):
    sp = PUBLISHED["llama-7b"]  # 32 layers, hidden 4096, 32 heads (q and v are 4096 x 4096)
    n_base = 6_738_415_616  # LLaMA-7B's published parameter count
    assert sp.n_params() == n_base
    T = 32 * (4096 + 4096)  # one scale per output row of q and of v in every layer
    e = estimate(sp, "scale", precision="bf16-mixed", batch=2, seq_len=8)
    assert e["trainable_params"] == T and e["trainable_parts"] == dict(scales=T, head=0)
    assert e["grads_bytes"] == 2 * T and e["optimizer_bytes"] == (8 + 4) * T
    # base in bf16 + the scales in bf16 + LLaMA's two rotary buffers (d_head / 2 = 64 fp32 values each)
    assert e["weights_bytes"] == 2 * n_base + 2 * T + 2 * 4 * 64
    assert e["activation_terms"]["scale: W x"] == 32 * 2 * (2 * 8 * 4096 * 2)  # 32 layers x q, v x s b d_out x 2 B
    assert "scale: one vector per target" in e["notes"] and not e["trains_all"]
    # the page's helpers: its knob comes from the page field it names, its row reads its settings line
    vals = {**V.page_schema().defaults(), "freeze": 0.25, "tg": "attn"}
    assert V.method_knobs("scale", vals, "llama") == dict(init=0.25, targets=["q", "k", "v", "o"])
    (row,) = V.estimate_rows(sp, {**vals, "tg": "default"}, methods=["scale"])
    assert row["settings"] == "scales on q,v" and row["trainable_params"] == T
    # the page's texts name it where it reads a field, and list its default targets
    assert V.shared_knob_label("freeze", "share") == "LoRA-SP / scale share"
    text = V.default_targets_text()  # every registered method, then the test method last
    assert "; SpaRTA v,o;" in text and text.endswith("; scale q,v")


def test_full_fine_tuning_is_the_row_that_trains_everything():
    rows = V.estimate_rows(PUBLISHED["mistral-7b"], V.page_schema().defaults(), methods=list(METHODS))
    everything = [r["method"] for r in rows if r["trains_all"]]
    assert len(everything) == 1
    (full,) = [r for r in rows if r["trains_all"]]
    assert full["trainable_params"] == full["n_params"] and full["bytes_per_trainable_param"] == 16


def test_a_measurement_applies_the_methods_own_overrides(tiny_bert):
    with_overrides = [m for m, info in METHODS.items() if info.measure_knobs]
    assert with_overrides  # SMT's short gradient-only warm-up
    for m in with_overrides:
        res = V.measure_method(tiny_bert, m, {}, batch=2, seq_len=8)  # the method's defaults
        assert {k: res["knobs"][k] for k in METHODS[m].measure_knobs} == METHODS[m].measure_knobs
        assert res["rec"]["trainable_params"] == res["est"]["trainable_params"]
