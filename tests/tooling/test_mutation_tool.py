"""The mutation benchmark's own bookkeeping (tools/mutation.py), without mutmut: scopes, and how the runs'
reports merge (each mutant from the newest run that checked it; a run stopped early hides no older check)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tools import mutation as mt

A = "explorer.memory.units.x_fmt_bytes__mutmut_"
B = "explorer.memory.options.x_options__mutmut_"


def _run(tmp, name: str, date: str, results: dict[str, str]) -> None:
    by_status = Counter(results.values())
    per_module: dict = {}
    for k, st in results.items():
        per_module.setdefault(mt._module_of(k), Counter())[st] += 1
    survivors = [dict(mutant=k, status=st, module=mt._module_of(k), function=mt._function_of(k), diff="-a\n+b",
                      equivalent=None) for k, st in results.items() if st == "survived"]
    doc = dict(command="x", scope=name, patterns=[], tests=["tests/t.py"], date=date, run_seconds=60.0,
               **mt._summary(dict(by_status), {m: dict(v) for m, v in per_module.items()}, survivors),
               results=results)
    (tmp / f"mutation.{name}.json").write_text(json.dumps(doc))


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(mt, "OUT_JSON", tmp_path / "mutation.json")
    monkeypatch.setattr(mt, "OUT_MD", tmp_path / "mutation.md")
    return tmp_path


def test_merge_counts_each_mutant_once_from_the_newest_check(results_dir):
    _run(results_dir, "memory.units", "2026-12-01 10:00 UTC",
         {A + "1": "killed", A + "2": "survived", A + "3": "not checked", A + "4": "survived"})
    # a later run re-checked 2 (now killed by a new test) and 3, and was stopped before 4
    _run(results_dir, "memory.units+memory.options", "2026-12-01 12:00 UTC",
         {A + "1": "not checked", A + "2": "killed", A + "3": "timeout", A + "4": "not checked",
          B + "1": "survived", B + "2": "not checked"})
    doc = mt.merge()
    assert (doc["total"], doc["killed"], doc["survived"], doc["timeouts"], doc["not_checked"]) == (6, 3, 2, 1, 1)
    assert doc["score"] == 0.6  # 3 killed (one by time-out) of 5 checked
    assert sorted(s["mutant"] for s in doc["survivors"]) == [B + "1", A + "4"]
    assert doc["per_module"]["explorer.memory.units"] == {"killed": 2, "timeout": 1, "survived": 1}
    assert [r["scope"] for r in doc["runs"]] == ["memory.units", "memory.units+memory.options"]
    assert doc["run_seconds"] == 120.0
    md = (results_dir / "mutation.md").read_text()
    assert "**3 of 6 mutants killed (60.0 % of the 5 that a selected test reaches)**" in md
    assert f"`{A}4` (survived) -- **not yet killed**" in md
    # what --survivors --unchecked re-runs in a checkout without mutants/: the merged view
    kept = mt._kept_results(mt.scope_patterns("memory.units"))
    assert kept == {A + "1": "killed", A + "2": "killed", A + "3": "timeout", A + "4": "survived"}


def test_an_equivalent_survivor_is_listed_with_its_reason(results_dir, monkeypatch):
    monkeypatch.setitem(mt.EQUIVALENT, A + "2", "a reason")
    _run(results_dir, "memory.units", "2026-12-01 10:00 UTC", {A + "1": "killed", A + "2": "survived"})
    doc = mt.merge()
    assert doc["score"] == 0.5 and doc["score_counting_equivalent_as_killed"] == 1.0
    assert "-- equivalent: a reason" in (results_dir / "mutation.md").read_text()


@pytest.mark.parametrize("survivors_rerun", [True, False])
def test_a_survivors_rerun_keeps_the_scopes_earlier_checks(results_dir, monkeypatch, survivors_rerun):
    _run(results_dir, "memory.units", "2026-12-01 10:00 UTC", {A + "1": "killed", A + "2": "survived"})
    # the re-run (a checkout without mutants/) checked only 2, now killed: mutmut left 1 unchecked
    monkeypatch.setattr(mt, "_read_results", lambda patterns: {A + "1": None, A + "2": 1})
    doc = mt.report(mt.scope_patterns("memory.units"), "memory.units", 5.0, "x", ["t"],
                    keep_earlier=survivors_rerun)
    assert doc["results"] == {A + "1": "killed" if survivors_rerun else "not checked", A + "2": "killed"}
    assert (doc["killed"], doc["not_checked"]) == ((2, 0) if survivors_rerun else (1, 1))
    assert json.loads((results_dir / "mutation.memory.units.json").read_text())["results"] == doc["results"]


def test_scopes_one_file_at_a_time():
    files, tests = mt.scope_files_and_tests("memory.specs")
    assert files == ["explorer/memory/specs.py"]
    own = [f"tests/core/test_memory_{m}.py" for m in ("analytic", "activations", "specs")]
    assert set(own) <= set(tests)  # the memory model's own fast tests
    mem = [t for t in tests if t.startswith("tests/core/test_memory.py::")]
    assert "tests/core/test_memory.py::test_korthikanti_formula_and_precisions" in mem
    # tests that train a model cost seconds per mutant: left to make test
    assert not any(t.endswith(("_on_minilm", "::test_analytic_agrees_with_measured")) for t in mem)
    assert not any(t.endswith("test_memory_cli_json") for t in tests)  # a subprocess: no mutant is seen there
    assert mt.scope_files_and_tests("methods.lora")[0] == ["explorer/methods/lora.py"]
    assert mt.scope_files_and_tests("engine.warmup")[0] == ["explorer/engine/warmup.py"]  # SMT's warm-up on its own
    assert "explorer/engine/warmup.py" in mt.scope_files_and_tests("all")[0]
    assert mt.scope_files_and_tests("sparse,memory.units")[0] == ["explorer/sparse.py", "explorer/memory/units.py"]
    pats = mt.scope_patterns("memory.units")
    assert mt._in_scope(A + "3", pats) and not mt._in_scope(B + "3", pats)
    assert not mt._in_scope("explorer.memory.units.x__digits__mutmut_1", pats)  # only the listed functions
    with pytest.raises(SystemExit, match="unknown scope 'memory.nope'"):
        mt.scope_patterns("memory.nope")
    # every memory-model file in ANALYTIC has its scope, and the memory scope is their union
    per_file = [p for s, ps in mt.SCOPES.items() if s.startswith("memory.") for p in ps]
    assert set(per_file) == {p for p in mt.SCOPES["memory"] if p.startswith("explorer.memory.")}


def test_mutant_names_read_back():
    assert mt._module_of("explorer.sparse.xǁSparseDeltaLinearǁ__init____mutmut_22") == "explorer.sparse"
    assert mt._function_of("explorer.sparse.xǁSparseDeltaLinearǁ__init____mutmut_22") == "SparseDeltaLinear.__init__"
    assert mt._function_of(A + "7") == "fmt_bytes" and mt._module_of(A + "7") == "explorer.memory.units"
    assert [mt._status(c) for c in (1, 0, 33, None, -24, 7)] == [
        "killed", "survived", "no tests", "not checked", "timeout", "suspicious"]


def test_the_equivalent_list_is_a_data_file_of_mutants_in_scope():
    """tools/mutation_equivalent.toml loads, and every mutant it names is one a scope of ``make mutation`` plants."""
    eq = mt.load_equivalent()
    assert eq == mt.EQUIVALENT and len(eq) > 100
    pats = mt.scope_patterns("all")
    assert [m for m in eq if not mt._in_scope(m, pats)] == []
    assert all(len(why) > 20 for why in eq.values())  # a reason in words, never a bare name


@pytest.mark.parametrize("text, refusal", [
    ('[[equivalent]]\nwhy = "w"\nmutants = ["a", "a"]\n', "a is listed twice"),
    ('[[equivalent]]\nreason = "nope"\nmutants = ["a"]\n', "unknown reason 'nope'"),
    ('[[equivalent]]\nmutants = ["a"]\n', "gives no reason"),
])
def test_the_equivalent_file_refuses_what_it_cannot_read(tmp_path, text, refusal):
    f = tmp_path / "eq.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=refusal):
        mt.load_equivalent(f)
    f.write_text('[reasons]\nr = "a reason"\n[[equivalent]]\nreason = "r"\nmutants = ["a", "b"]\n')
    assert mt.load_equivalent(f) == {"a": "a reason", "b": "a reason"}


def test_every_selected_test_exists():
    """The dry listing of each scope's tests: every file is there and every named test is a test of that file (a
    moved or renamed test file fails here, not in an hour-long mutation run)."""
    import ast

    for scope in ("all", "methods", "sparse", "engine.warmup", "memory"):
        tests = mt.scope_files_and_tests(scope)[1]
        assert tests, scope
        for t in tests:
            path, _, name = t.partition("::")
            assert path.startswith("tests/core/") and (mt.ROOT / path).is_file(), t
            if name:
                tree = ast.parse((mt.ROOT / path).read_text("utf-8"))
                assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, t
