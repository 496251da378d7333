"""Each method owns its facts (issue 11): code outside ``explorer/methods/`` asks the method and never branches on
its name; every registered method provides every fact.

The rule the scan enforces, on every ``.py`` file of the repository outside ``explorer/methods/`` and ``tests/``
(parsed with ``ast``, so comments and docstrings do not count):

1. No comparison that branches on a method name: a ``Compare`` whose ``==`` / ``!=`` has a registered method name
   as a string constant on either side (``method == "smt"``), or whose ``in`` / ``not in`` tests a value against
   a tuple, list or set literal holding one (``m in ("lora", "dora")``).  Looking a name up in a collection
   (``"full" in rows``) is not a branch and is allowed.  One exemption: SMT's warm-up mode is also called
   ``"full"``; ``x == "full"`` is allowed where ``x`` reads a mode (its source text contains ``mode``).
2. No per-method table: a dict literal with two or more registered method names as keys.  Allowed only in the
   data files that say which method a lesson or an experiment uses: ``explorer/workshop/presets.py`` and
   ``explorer/claims/specs.py``.

A plain string constant naming a method (a page's default method, the methods a benchmark runs, a preset) is data,
not a fact about the method, and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from explorer.methods import METHODS
from explorer.methods.contract import Method

ROOT = Path(__file__).resolve().parents[2]
NAMES = set(METHODS)
TABLES_ALLOWED = {"explorer/workshop/presets.py", "explorer/claims/specs.py"}


def _names_in(node) -> list[str]:
    if isinstance(node, ast.Constant) and node.value in NAMES:
        return [node.value]
    return []


def _names_in_literal(node) -> list[str]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in NAMES]
    return _names_in(node)


def branches(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, source) of every comparison that branches on a method name (rule 1)."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            hit = []
            if isinstance(op, (ast.Eq, ast.NotEq)):
                for const, other in ((left, right), (right, left)):
                    names = _names_in(const)
                    if names and not (names == ["full"] and "mode" in ast.unparse(other)):
                        hit += names
            elif isinstance(op, (ast.In, ast.NotIn)):
                hit += _names_in_literal(right)
            if hit:
                out.append((node.lineno, ast.unparse(node)))
                break
            left = right
    return out


def tables(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, keys) of every dict literal keyed by two or more method names (rule 2)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in NAMES]
            if len(keys) >= 2:
                out.append((node.lineno, ", ".join(keys)))
    return out


def _files():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if rel.startswith((".venv/", "tests/", "explorer/methods/")) or "/." in "/" + rel:
            continue
        yield rel, ast.parse(p.read_text(), filename=rel)


def test_the_scan_finds_branches_and_tables():
    """The scanner itself: it must catch each form it claims to, and let the allowed ones pass."""
    src = '''
if method == "smt": pass
if "lora" != m: pass
if s.method in ("lora", "dora"): pass
if warmup_mode == "full": pass
if "full" in rows: pass
if x == "other": pass
T = {"lora": 1, "smt": 2}
U = {"full": 1, "quick": 2}
'''
    tree = ast.parse(src)
    assert [ln for ln, _ in branches(tree)] == [2, 3, 4]
    assert [ln for ln, _ in tables(tree)] == [8]


def test_no_method_name_branches_outside_methods():
    found = [f"{rel}:{ln}: {code}" for rel, tree in _files() for ln, code in branches(tree)]
    assert not found, "branch on a method's name (ask explorer.methods.METHODS[name] instead):\n" + "\n".join(found)


def test_no_per_method_tables_outside_methods():
    found = [f"{rel}:{ln}: keys {keys}" for rel, tree in _files() if rel not in TABLES_ALLOWED
             for ln, keys in tables(tree)]
    assert not found, "per-method table (make it a fact of each method module):\n" + "\n".join(found)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_provides_every_fact(name):
    info = METHODS[name]
    assert isinstance(info, Method) and info.name == name
    for text in ("label", "short", "description", "what_trains", "paper", "formula"):
        assert isinstance(getattr(info, text), str) and getattr(info, text).strip(), f"{name}: {text} is empty"
    assert all(isinstance(d, str) and d.strip() for d in info.deviations)
    assert 0 < info.default_lr < 1
    for fn in ("apply", "formula_lines", "illustrative_delta", "matrix_pictures", "overview_pictures",
               "playground_knobs", "warmup_is_full_finetuning", "memory_plan", "settings_text"):
        assert callable(getattr(info, fn)), f"{name}: {fn} is not callable"
    assert info.sweepable == callable(info.sweep_point)
    # every knob derives its URL field (same name, kind and default) and has a widget
    for k in info.knobs:
        f = k.url_field("x_")
        assert (f.name, f.kind) == ("x_" + k.name, k.kind)
        assert f.clamp(k.default)[1] is None, f"{name}.{k.name}: the default does not pass its own URL field"
        assert k.widget_kind in ("slider", "select_slider", "number", "toggle", "radio", "select", "multiselect")


def test_the_contract_documents_every_fact_once():
    """Each field of :class:`Method` carries its help text, and a method that leaves out a required fact does not
    get built (the registry never fills a gap with a default)."""
    from dataclasses import fields

    assert all(f.metadata.get("help", "").strip() for f in fields(Method))
    lora = METHODS["lora"]
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'memory_plan'"):
        Method(**{f.name: getattr(lora, f.name) for f in fields(Method) if f.name != "memory_plan"})
    with pytest.raises(TypeError):
        Method(lora.label)  # keyword-only: a fact is always named where it is declared
    # the optional facts' defaults: nothing drawn, fixed or swept, no warm-up
    bare = Method(**{f.name: getattr(lora, f.name) for f in fields(Method) if f.name in _REQUIRED})
    assert bare.overview_pictures(None) == [] and bare.playground_knobs(3) == {} and bare.playground_caption == ""
    assert not bare.sweepable and not bare.has_warmup and not bare.takes_selection
    assert bare.warmup_is_full_finetuning({"warmup_mode": "full"}) is False
    assert bare.memory_page_knobs == {} and bare.measure_knobs == {} and bare.deviations == [] and bare.name == ""
    assert bare.knob("rank") is lora.knob("rank") and bare.knob("nothing") is None


_REQUIRED = {"label", "short", "description", "what_trains", "paper", "formula", "knobs", "default_lr", "color_slot",
             "apply", "formula_lines", "illustrative_delta", "matrix_pictures", "memory_plan", "settings_text"}


def test_every_method_module_is_registered_and_declares_only_its_method():
    """A module of ``explorer/methods/`` that declares ``METHOD`` is in the registry (one line), and a method
    module keeps no module-level copy of a fact beside it (the old ``LABEL``, ``DEFAULT_LR``, ... names)."""
    from explorer import methods

    folder = ROOT / "explorer" / "methods"
    declaring = {p.stem for p in folder.glob("*.py")
                 if any(isinstance(n, ast.Assign) and [getattr(t, "id", "") for t in n.targets] == ["METHOD"]
                        for n in ast.parse(p.read_text()).body)}
    assert declaring == set(methods._REGISTRY.values())
    old_names = {"LABEL", "SHORT", "DESCRIPTION", "WHAT_TRAINS", "PAPER", "FORMULA", "DEFAULT_LR", "COLOR_SLOT",
                 "DEVIATIONS", "LOAD_FORMAT", "HAS_WARMUP", "TAKES_SELECTION", "PLAYGROUND_CAPTION",
                 "MEMORY_PAGE_KNOBS", "MEASURE_KNOBS"}
    for stem in sorted(declaring):
        tree = ast.parse((folder / f"{stem}.py").read_text())
        names = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        assert not names & old_names, f"{stem}: {sorted(names & old_names)} beside METHOD"


def test_a_module_without_its_method_is_refused(monkeypatch):
    import sys
    import types

    from explorer import methods

    monkeypatch.setitem(sys.modules, "explorer.methods.nothing", types.ModuleType("explorer.methods.nothing"))
    with pytest.raises(TypeError, match=r"^method module explorer\.methods\.nothing declares no METHOD"):
        methods._declared("nothing", "nothing")
    assert methods._declared("lora", "lora") == METHODS["lora"]


def test_facts_are_distinct_where_they_must_be():
    labels = [m.label for m in METHODS.values()]
    shorts = [m.short for m in METHODS.values()]
    slots = [m.color_slot for m in METHODS.values()]
    assert len(set(labels)) == len(labels) and len(set(shorts)) == len(shorts)
    assert len(set(slots)) == len(slots), "two methods share a colour on the run charts"
    from explorer.views.figures import COLORS

    assert all(0 <= s < len(COLORS) for s in slots), "a COLOR_SLOT beyond the palette (add a colour to COLORS)"


def test_smt_block_budget_is_the_one_rule():
    """SMT's automatic budget (about 1 % of all parameters, capped at a quarter of the targets' blocks), written
    out here from the paper's rule, matches methods/smt_blocks.block_budget, which the adapter, the memory model and the
    block inspector call."""
    from explorer.methods.smt_blocks import block_budget

    # 1 % of 10,000,000 parameters in 16 x 16 blocks = 390.625 -> 391 blocks; 10,000 blocks in the targets
    assert block_budget(dict(blocks=0, density=0.0), 10_000_000, 16, 10_000) == (391, "")
    n, note = block_budget(dict(blocks=0), 10_000_000, 16, 1_000)  # cap: a quarter of 1,000
    assert n == 250 and "capped" in note
    assert block_budget(dict(blocks=7), 10_000_000, 16, 1_000) == (7, "")
    assert block_budget(dict(blocks=7, density=0.1), 10_000_000, 16, 1_000) == (100, "")  # density wins


def test_knob_widget_hints_from_the_method():
    """The widget options a page draws come from the knob (no knob-name cases in ui/widgets.py): SMT's block size and
    block count follow the model's shapes; Tied-LoRA's switches are held by a named preset."""
    from explorer.methods.facts import KnobContext

    smt = METHODS["smt"]
    # two layers of q, k, v, each 64 x 64 (counted here by hand: 6 matrices)
    shapes = {"q": (64, 64), "k": (64, 64), "v": (64, 64)}

    def ctx(**values):
        vals = {k.name: k.default for k in smt.knobs} | values
        return KnobContext(values=vals, shapes=lambda types: sorted({shapes[t] for t in types}),
                           n_blocks=lambda types, b: 2 * sum((shapes[t][0] // b) * (shapes[t][1] // b) for t in types))

    bs = smt.knob("block_size").options(ctx())
    assert bs.options == [0, 4, 8, 16, 32, 64]  # the sizes >= 4 that divide 64
    assert bs.labels == {0: "auto (16)"}  # 64 and 32 leave fewer than 8 blocks in a 64 x 64 matrix; 16 leaves 16
    assert smt.knob("blocks").options(ctx()).hi == 6 * 16  # auto b = 16: 16 blocks in each of the 6 matrices
    assert smt.knob("blocks").options(ctx(block_size=32)).hi == 6 * 4
    assert smt.knob("blocks").options(ctx(targets=["v"], block_size=32)).hi == 2 * 4
    tied = METHODS["tied-lora"]
    assert tied.knob("train_u").locked({"preset": "TL5"}) is False  # TL5: u, v frozen at 1
    assert tied.knob("tied").locked({"preset": "vBuA"}) is False
    assert tied.knob("train_u").locked({"preset": "custom"}) is None  # custom: the switch is free
    lora = METHODS["lora"]
    assert lora.knob("rank").options(KnobContext(values={"rank": 12}, shapes=lambda t: [])).options == \
        [1, 2, 4, 8, 12, 16, 32, 64, 128, 256]
    assert lora.knob("targets").model_types and lora.knob("rank").widget_kind == "select_slider"


def test_a_methods_dict_is_what_the_command_line_prints():
    """``Method.to_dict`` (``python -m explorer methods --json``): every page-facing fact of the declaration, its
    knobs' own dicts, in JSON; the lists are copies (a caller cannot change the declaration)."""
    import json

    from explorer.methods import METHODS

    for name, m in METHODS.items():
        d = m.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert d == dict(name=name, label=m.label, short=m.short, description=m.description,
                         what_trains=m.what_trains, paper=m.paper, formula=m.formula, default_lr=m.default_lr,
                         deviations=list(m.deviations), knobs=[k.to_dict() for k in m.knobs])
        assert d["name"] == m.name and d["deviations"] is not m.deviations
    assert {k["name"] for k in METHODS["lora-sp"].to_dict()["knobs"]} >= {"rank", "alpha", "targets", "freeze"}
