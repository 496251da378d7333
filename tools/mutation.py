"""Mutation testing as a benchmark of the suite: how many small bugs planted in the core do the tests catch?

    make mutation                       # installs requirements-mutation.txt, then runs this module
    python -m tools.mutation [--scope all|methods|sparse|engine.warmup|memory] [--resume] [--max-children 1]

mutmut (requirements-mutation.txt) plants one small change at a time (``+`` -> ``-``, ``<`` -> ``<=``, a
constant changed, an argument dropped, ...) in

* ``explorer/methods/`` (every method),
* ``explorer/sparse.py`` (the sparse mechanism of LoRA-SP, SpaRTA and SMT),
* ``explorer/engine/warmup.py``'s ``run_warmup`` (a method's warm-up on its own: SMT's),
* the analytic memory model in ``explorer/memory/`` (every module but ``measured.py``, the byte account, which
  the byte-account tests cover) and each method's memory facts in its module (``memory_plan``, its save rule,
  ``settings_text``): only the functions in ``ANALYTIC`` below are run and counted (mutmut mutates whole
  files),

and runs, for each mutant, only the tests that call the mutated function (mutmut records which ones in a
first clean run), out of the selection in ``setup.cfg`` ([mutmut] pytest_add_cli_args_test_selection:
tests/core/test_methods.py, tests/core/test_memory.py, tests/core/test_sparse.py).  A mutant is *killed* when a
test fails, *survived* when all pass.

Writes ``benchmarks/results/mutation/mutation.json`` (totals, score, per-module figures, every survivor with its
diff and, where one is known, the reason it is equivalent: ``tools/mutation_equivalent.toml``) and
``mutation.md``.
Each run also writes its own ``mutation.<scope>.json`` / ``.md`` (a scope's commas become ``+``), and
``mutation.json`` / ``mutation.md`` are then rebuilt from every ``mutation.<scope>.json`` kept there: each mutant
counted once, from the newest run that checked it (``--merge-only`` rebuilds them without running).
Runs under ``nice -n 19`` with one worker by default (the project's CPUs are shared).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "benchmarks" / "results" / "mutation" / "mutation.json"
OUT_MD = ROOT / "benchmarks" / "results" / "mutation" / "mutation.md"


def scope_json(scope: str) -> Path:
    """This scope's own result file (mutation.<scope>.json; the combined report is rebuilt from these)."""
    return OUT_JSON.with_name(f"mutation.{scope.replace(',', '+')}.json")

# the analytic memory model: module -> its functions and classes (explorer/memory/ and each method's memory facts)
ANALYTIC = {
    "explorer.memory.units": ["fmt_bytes", "to_gb", "to_gib"],
    "explorer.memory.specs": ["ModelSpec", "spec_from_config", "spec_from_model", "spec_for"],
    "explorer.memory.plan": ["LinearCall", "trained_weight", "MemoryPlan", "adapter_shapes", "targets_text"],
    "explorer.memory.activations": ["Acts", "Walk", "_embeddings", "_bert_layer", "_llama_layer", "_head",
                                    "detailed_activations", "checkpointed", "korthikanti_activations"],
    "explorer.memory.options": ["Options", "options", "precision_notes", "shard"],
    "explorer.memory.analytic": ["resolve_spec", "memory_plan", "_weights", "estimate", "estimate_table"],
}
# every method module in explorer/methods/ (found, never named: a new method is its module and a registry line)
METHOD_MODULES = sorted(p.stem for p in (ROOT / "explorer" / "methods").glob("*.py") if p.stem != "__init__")


def _memory_facts(stem: str) -> list[str]:
    """A method module's memory facts: its ``memory_plan``, ``*_memory_plan`` and save rules (``*_saves``)."""
    tree = ast.parse((ROOT / "explorer" / "methods" / f"{stem}.py").read_text("utf-8"))
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and (n.name == "memory_plan" or n.name.endswith(("_memory_plan", "_saves")))]


for _m in METHOD_MODULES:
    if _memory_facts(_m):
        ANALYTIC[f"explorer.methods.{_m}"] = _memory_facts(_m)

SCOPES = {
    "methods": ["explorer.methods.*"],
    "sparse": ["explorer.sparse.*"],
    # a method's warm-up on its own, driven by the engine (SMT's run_warmup, once in explorer/methods/smt_adapter.py;
    # its batches, task_batches, are a data helper the command line and the playground call)
    "engine.warmup": ["explorer.engine.warmup.x_run_warmup__mutmut_*"],
    # mutmut names a function's mutants module.x_name__mutmut_N and a method's module.xǁClassǁname__mutmut_N
    "memory": [p for mod, names in ANALYTIC.items() for n in names
               for p in (f"{mod}.x_{n}__mutmut_*", f"{mod}.xǁ{n}ǁ*")],
}
SCOPES["all"] = SCOPES["methods"] + SCOPES["sparse"] + SCOPES["engine.warmup"] + SCOPES["memory"]
for _m in METHOD_MODULES:  # one method file at a time
    SCOPES[f"methods.{_m}"] = [f"explorer.methods.{_m}.*"]
for _mod, _names in ANALYTIC.items():  # one memory-model file at a time (memory.activations, ...)
    if _mod.startswith("explorer.memory."):
        SCOPES["memory." + _mod.rsplit(".", 1)[1]] = [p for n in _names
                                                      for p in (f"{_mod}.x_{n}__mutmut_*", f"{_mod}.xǁ{n}ǁ*")]


# the files each scope mutates, and the tests that cover them (the test selection of a scoped run; setup.cfg
# lists the union, for a plain `mutmut run`)
SCOPE_FILES = {"methods": ["explorer/methods/*"], "sparse": ["explorer/sparse.py"],
               "engine": ["explorer/engine/warmup.py"],
               "memory": sorted({m.replace(".", "/") + ".py" for m in ANALYTIC})}


# fixtures that load or train a model: seconds per test, paid again by every mutant the test reaches
MODEL_FIXTURES = {"runs", "tiny_bert", "tiny_llama", "minilm"}


def _tests_in(path: str, leave_out: tuple[str, ...] = (), fast: bool = False, avoid: frozenset = frozenset()
              ) -> list[str]:
    """A test file's tests by node id, less those named in ``leave_out`` (a subprocess test, which a mutant's
    trampoline cannot see and which costs seconds per mutant), those whose body uses a name in ``avoid`` and,
    with ``fast``, those that load a model (a model fixture among their arguments, or a model loaded in their
    body)."""
    tree = ast.parse((ROOT / path).read_text("utf-8"))

    def loads_a_model(fn) -> bool:
        args = {a.arg for a in fn.args.args}
        called = {x.func.id for x in ast.walk(fn) if isinstance(x, ast.Call) and isinstance(x.func, ast.Name)}
        return bool(args & MODEL_FIXTURES) or bool(called & {"load_model", "load_base", "from_pretrained"})

    return [f"{path}::{n.name}" for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_") and n.name not in leave_out and not (fast and loads_a_model(n))
            and not avoid & {x.id for x in ast.walk(n) if isinstance(x, ast.Name)}]


def _own_tests(stem: str) -> list[str]:
    """The tests of a method's own test file (``tests/core/test_<module>.py``), less those that read the git
    checkout or open a page (mutmut runs them in its mutants/ copy, which is neither)."""
    path = f"{CORE_TESTS}/test_{stem}.py"
    return _tests_in(path, avoid=frozenset({"repo_files", "open_page"})) if (ROOT / path).exists() else []


def _memory_tests(stem: str) -> list[str]:
    """The tests of an analytic memory module's own test file (``tests/core/test_memory_<module>.py``), less the
    ``memory`` command's subprocess test (a mutant's trampoline cannot see a subprocess)."""
    path = f"{CORE_TESTS}/test_memory_{stem}.py"
    if not (ROOT / path).exists():
        return []
    some = _tests_in(path, ("test_memory_cli_json",))
    return some if len(some) < len(_tests_in(path)) else [path]  # the whole file when nothing is left out


# the core's tests (tests/core/): a module's own tests are tests/core/test_<module>.py
CORE_TESTS = "tests/core"
_OWN = [t for m in METHOD_MODULES for t in _own_tests(m)]
_MEMORY_OWN = [t for m in ANALYTIC if m.startswith("explorer.memory.") for t in _memory_tests(m.rsplit(".", 1)[1])]
# the fast, hand-counted tests of each method module (tests/core/test_methods_<module>.py: one per method,
# base, facts, the memory facts, the playground's pictures, SMT's blocks and adapter)
_METHOD_FILES = sorted(f"{CORE_TESTS}/{p.name}" for p in (ROOT / CORE_TESTS).glob("test_methods_*.py"))
SCOPE_TESTS = {"methods": [f"{CORE_TESTS}/test_methods.py", f"{CORE_TESTS}/test_method_facts.py",  # the contract's
                           f"{CORE_TESTS}/test_sparse.py",
                           f"{CORE_TESTS}/test_memory.py", *_OWN, f"{CORE_TESTS}/test_sparta_budget.py",
                           *_METHOD_FILES],
               "sparse": [f"{CORE_TESTS}/test_sparse.py"],
               "engine": [f"{CORE_TESTS}/test_methods.py", *_METHOD_FILES],  # the warm-up's
               # the memory model: its fast tests (the byte-account agreement tests, which train tiny models, cost
               # seconds per mutant; they run in make test) and each module's own tests/core/test_memory_<module>.py
               "memory": [*_tests_in(f"{CORE_TESTS}/test_memory.py", fast=True), *_MEMORY_OWN]}


def _scope_parts(scope: str) -> list[str]:
    return ["methods", "sparse", "engine.warmup", "memory"] if scope == "all" else [p.strip() for p in scope.split(",")]


def scope_files_and_tests(scope: str) -> tuple[list[str], list[str]]:
    files, tests = [], []
    for part in _scope_parts(scope):
        top = part.split(".")[0]
        fs = [f"explorer/{top}/{part.split('.', 1)[1]}.py"] if "." in part else SCOPE_FILES[top]
        files += [f for f in fs if f not in files]
        tests += [t for t in SCOPE_TESTS[top] if t not in tests]
    return files, tests


def _configure(files: list[str], tests: list[str]) -> str | None:
    """Point setup.cfg's [mutmut] only_mutate and test selection at this scope; returns the text to restore."""
    cfg = ROOT / "setup.cfg"
    old = cfg.read_text() if cfg.exists() else None
    lines, out, skip = (old or "[mutmut]\n").splitlines(), [], False
    for ln in lines:
        key = ln.split("=")[0].strip()
        if skip and (ln.startswith((" ", "\t")) or not ln.strip()):
            continue
        skip = key in ("only_mutate", "pytest_add_cli_args_test_selection") and "=" in ln
        if not skip:
            out.append(ln)
    i = out.index("[mutmut]") + 1
    out[i:i] = ["only_mutate ="] + [f"    {f}" for f in files] + \
               ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    cfg.write_text("\n".join(out) + "\n")
    return old


def scope_patterns(scope: str) -> list[str]:
    """``all``, one scope, or several joined by commas (``sparse,methods.lora``)."""
    out: list[str] = []
    for part in scope.split(","):
        if part.strip() not in SCOPES:
            raise SystemExit(f"unknown scope '{part}': use {', '.join(SCOPES)} (or several, joined by commas)")
        out += [p for p in SCOPES[part.strip()] if p not in out]
    return out

# Surviving mutants that cannot be killed because they do not change behaviour, each with its reason: a data file
# (tools/mutation_equivalent.toml).  A survivor not listed there is a gap in the tests.
EQUIVALENT_FILE = Path(__file__).resolve().with_name("mutation_equivalent.toml")


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """mutant name -> why it is equivalent, from the data file: ``[reasons]`` names reasons used by several groups;
    each ``[[equivalent]]`` group lists its ``mutants`` with a ``reason`` (a name) or a ``why`` (the words).  A
    mutant listed twice, an unknown reason name or a group with neither is refused (one line)."""
    import tomllib

    doc = tomllib.loads(path.read_text("utf-8"))
    reasons, out = doc.get("reasons", {}), {}
    for i, group in enumerate(doc.get("equivalent", []), 1):
        if "reason" in group and group["reason"] not in reasons:
            raise ValueError(f"{path.name}: group {i} names an unknown reason '{group['reason']}'")
        why = reasons[group["reason"]] if "reason" in group else group.get("why")
        if not why:
            raise ValueError(f"{path.name}: group {i} gives no reason (reason = a name of [reasons], or why = words)")
        for m in group.get("mutants", []):
            if m in out:
                raise ValueError(f"{path.name}: {m} is listed twice")
            out[m] = why
    return out


EQUIVALENT: dict[str, str] = load_equivalent()


def _mutmut_cmd() -> list[str]:
    exe = os.environ.get("MUTMUT") or shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    if not Path(exe).exists() and not shutil.which(exe):
        sys.exit("mutmut is not installed: pip install -r requirements-mutation.txt (or make mutation)")
    return [exe]


def _module_of(name: str) -> str:
    mod = name.split("__mutmut_")[0]
    mod = mod.rsplit(".x_", 1)[0] if ".x_" in mod else mod.rsplit(".xǁ", 1)[0]
    return mod


def _function_of(name: str) -> str:
    base = name.split("__mutmut_")[0]
    if ".xǁ" in base:
        return base.rsplit(".xǁ", 1)[1].replace("ǁ", ".")
    return base.rsplit(".x_", 1)[1]


def _in_scope(name: str, patterns: list[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _read_results(patterns: list[str]) -> dict[str, int | None]:
    """mutant name -> mutmut's exit code, from the .meta files mutmut writes under mutants/."""
    out: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants" / "explorer").rglob("*.meta")):
        data = json.loads(meta.read_text())
        for k, v in data["exit_code_by_key"].items():
            if _in_scope(k, patterns):
                out[k] = v
    return out


def _kept_results(patterns: list[str]) -> dict[str, str]:
    """mutant name -> status, from the runs' own reports kept in benchmarks/results (each mutant from the newest
    run that checked it): what --survivors re-runs in a checkout without mutants/."""
    out: dict[str, str] = {}
    runs = [json.loads(f.read_text()) for f in OUT_JSON.parent.glob("mutation.*.json")]
    for d in sorted((d for d in runs if "results" in d and "runs" not in d), key=lambda d: d["date"]):
        out.update({k: v for k, v in d["results"].items()
                    if _in_scope(k, patterns) and (v != "not checked" or k not in out)})
    return out


def _status(code) -> str:
    # mutmut.stats.status_by_exit_code, the codes that matter here
    return {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
            36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
            None: "not checked", -11: "segfault", -9: "segfault"}.get(code, "suspicious")


def _diff(name: str) -> str:
    try:  # in this process (mutmut importable): milliseconds instead of a `mutmut show` process per mutant
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            text = get_diff_for_mutant(name, path=Path(*_module_of(name).split(".")).with_suffix(".py"))
        finally:
            os.chdir(cwd)
        lines = [ln for ln in text.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
        if lines:
            return "\n".join(lines)
    except Exception:  # noqa: BLE001 - fall back to the command line
        pass
    try:
        r = subprocess.run(_mutmut_cmd() + ["show", name], cwd=ROOT, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
        return "\n".join(lines) or r.stdout.strip()[-400:]
    except Exception as e:  # noqa: BLE001 - the report still lists the name
        return f"(no diff: {e})"


def report(patterns: list[str], scope: str, seconds: float | None, command: str,
           selection: list[str] | None = None, keep_earlier: bool = False) -> dict:
    res = {k: _status(v) for k, v in _read_results(patterns).items()}
    path = scope_json(scope)
    if keep_earlier and path.exists():  # a --survivors re-run checks a few: the scope's other checks stand
        earlier = json.loads(path.read_text()).get("results", {})
        res.update({k: st for k, st in earlier.items() if res.get(k) == "not checked" and st != "not checked"})
    by_status: dict[str, int] = defaultdict(int)
    per_module: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for k, st in res.items():
        by_status[st] += 1
        per_module[_module_of(k)][st] += 1
    survivors = []
    for k in sorted(k for k, st in res.items() if st in ("survived", "suspicious", "no tests")):
        survivors.append(dict(mutant=k, status=res[k], module=_module_of(k), function=_function_of(k),
                              diff=_diff(k), equivalent=EQUIVALENT.get(k)))
    if selection is None:
        selection = scope_files_and_tests(scope)[1]
    doc = _summary(by_status, per_module, survivors)
    doc = dict(
        command=command, scope=scope, patterns=patterns, tests=selection,
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        run_seconds=None if seconds is None else round(seconds, 1), **doc,
        results=dict(sorted(res.items())),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    path.with_suffix(".md").write_text(markdown(doc))
    merge()
    return doc


def _with_equivalent(d: dict) -> float | None:
    checked = d["killed"] + d["survived"] + d["suspicious"]
    eq = sum(1 for s in d.get("survivors", []) if s["equivalent"] and s["status"] in ("survived", "suspicious"))
    return round((d["killed"] + eq) / checked, 4) if checked else None


def _summary(by_status: dict, per_module: dict, survivors: list[dict]) -> dict:
    killed = by_status.get("killed", 0) + by_status.get("timeout", 0) + by_status.get("segfault", 0)
    checked = killed + by_status.get("survived", 0) + by_status.get("suspicious", 0)
    return dict(
        total=sum(by_status.values()), killed=killed, survived=by_status.get("survived", 0),
        no_tests=by_status.get("no tests", 0), suspicious=by_status.get("suspicious", 0),
        not_checked=by_status.get("not checked", 0), timeouts=by_status.get("timeout", 0),
        score=round(killed / checked, 4) if checked else None,
        score_counting_equivalent_as_killed=(round((killed + sum(1 for s in survivors if s["equivalent"]))
                                                   / checked, 4) if checked else None),
        per_module={m: dict(v) for m, v in sorted(per_module.items())},
        survivors=survivors,
    )


def merge() -> dict:
    """Rebuild mutation.json / mutation.md from every mutation.<scope>.json: each mutant once, from the newest
    run that checked it (a run's file lists every mutant's status under ``results``; a file without them, from
    before this tool kept them, counts by module, for modules no newer file has)."""
    runs = []
    for f in OUT_JSON.parent.glob("mutation.*.json"):
        d = json.loads(f.read_text())
        if "scope" in d and d.get("date") and "runs" not in d:
            for sv in d.get("survivors", []):  # the reasons known now
                sv["equivalent"] = EQUIVALENT.get(sv["mutant"])
            d["score_counting_equivalent_as_killed"] = _with_equivalent(d)
            f.with_suffix(".md").write_text(markdown(d))  # each run's own report, in today's format
            runs.append((d["date"], f.name, d))
    runs.sort(key=lambda r: (r[0], r[1]))
    status: dict[str, str] = {}
    survivor_of: dict[str, dict] = {}
    module_counts: dict[str, dict[str, int]] = {}  # old files without per-mutant results
    for _, _, d in runs:
        for s in d.get("survivors", []):
            survivor_of[s["mutant"]] = s
        if "results" in d:  # a run stopped early leaves a mutant "not checked": an older run's check stands
            status.update({k: v for k, v in d["results"].items() if v != "not checked" or k not in status})
        else:
            for m, v in d["per_module"].items():
                module_counts[m] = dict(v)
                for k in [k for k in status if _module_of(k) == m]:
                    del status[k]
    by_status: dict[str, int] = defaultdict(int)
    per_module: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m, v in module_counts.items():
        if any(_module_of(k) == m for k in status):
            continue  # a newer run with per-mutant results covers this module
        for st, n in v.items():
            by_status[st] += n
            per_module[m][st] += n
    survivors = []
    for k, st in status.items():
        by_status[st] += 1
        per_module[_module_of(k)][st] += 1
    counted_old = {m for m in module_counts if m in per_module and not any(_module_of(k) == m for k in status)}
    for k in sorted(survivor_of):
        s = survivor_of[k]
        if status.get(k, s["status"] if s["module"] in counted_old else None) in ("survived", "suspicious",
                                                                                  "no tests"):
            survivors.append(dict(s, status=status.get(k, s["status"]), equivalent=EQUIVALENT.get(k)))
    doc = dict(
        command="python -m tools.mutation --merge-only (the runs listed under 'runs', merged)",
        scope="+".join(d["scope"] for _, _, d in runs), tests=sorted({t for _, _, d in runs for t in d["tests"]}),
        date=max((r[0] for r in runs), default=None),
        run_seconds=round(sum(d.get("run_seconds") or 0 for _, _, d in runs), 1),
        runs=[dict(file=name, command=d["command"], scope=d["scope"], date=d["date"], run_seconds=d["run_seconds"],
                   tests=d["tests"], total=d["total"], score=d["score"]) for _, name, d in runs],
        **_summary(by_status, per_module, survivors),
    )
    OUT_JSON.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    OUT_MD.write_text(markdown(doc))
    return doc


def markdown(doc: dict) -> str:
    pct = (lambda x: "n/a" if x is None else f"{100 * x:.1f} %")
    mins = "n/a" if doc["run_seconds"] is None else f"{doc['run_seconds'] / 60:.1f} min"
    if doc.get("runs") is not None:  # the combined report
        lines = ["# Mutation testing (mutmut), every scope run", "",
                 f"Merged by `python -m tools.mutation --merge-only` from the runs below (each mutant counted "
                 f"once, from the newest run that checked it); run time {mins} in all (one worker, 2-core machine "
                 "shared with other jobs). Each run ran, against each mutant, the tests of its selection that call "
                 "the mutated function.", "",
                 "| run (its own report) | scope | date | run time | mutants | score | tests |",
                 "|---|---|---|---:|---:|---:|---|"]
        for r in doc["runs"]:
            rt = "n/a" if r["run_seconds"] is None else f"{r['run_seconds'] / 60:.1f} min"
            lines.append(f"| `{r['file'][:-5]}.md` | `{r['scope']}` | {r['date']} | {rt} | {r['total']} | "
                         f"{pct(r['score'])} | {_short_tests(r['tests'])} |")
        lines.append("")
    else:
        lines = [
            "# Mutation testing (mutmut)", "",
            f"`{doc['command']}` on {doc['date']}, scope `{doc['scope']}`, run time {mins} (one worker, nice 19, "
            "2-core machine shared with other jobs).", "",
            "Tests run against each mutant (those of " + ", ".join(f"`{t}`" for t in doc["tests"])
            + " that call the mutated function).", "",
        ]
    lines += [
        f"**{doc['killed']} of {doc['total']} mutants killed ({pct(doc['score'])} of the "
        f"{doc['killed'] + doc['survived'] + doc['suspicious']} that a selected test reaches)**; "
        f"{doc['survived']} survived, {doc['no_tests']} not reached by any selected test, "
        f"{doc['timeouts']} killed by time-out, {doc['not_checked']} not checked. "
        f"Counting the survivors listed as equivalent as killed: {pct(doc['score_counting_equivalent_as_killed'])}.",
        "", "| module | mutants | killed (of them by time-out) | survived | no test reaches it | not checked | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, v in doc["per_module"].items():
        k = v.get("killed", 0) + v.get("timeout", 0) + v.get("segfault", 0)
        reached = k + v.get("survived", 0) + v.get("suspicious", 0)
        lines.append(f"| `{m}` | {sum(v.values())} | {k} ({v.get('timeout', 0)}) | "
                     f"{v.get('survived', 0) + v.get('suspicious', 0)} | {v.get('no tests', 0)} | "
                     f"{v.get('not checked', 0)} | {pct(k / reached if reached else None)} |")
    lines += ["", "A time-out (mutmut's CPU limit: (the mutant's tests' time in the clean run + 1 s) x 30) counts as "
              "killed, as mutmut counts it; the four re-run by hand on 2026-12-01 (dora and full memory_plan, two of "
              "tied_lora's structure) each failed a test of tests/core/test_methods_<module>.py within 10 s. \"Not checked\": "
              "the run was stopped before reaching them (mutmut runs the cheapest first).",
              "", "## Surviving mutants", ""]
    if not doc["survivors"]:
        lines.append("None.")
    for s in doc["survivors"]:
        why = f" -- equivalent: {s['equivalent']}" if s["equivalent"] else " -- **not yet killed**"
        lines.append(f"- `{s['mutant']}` ({s['status']}){why}")
        if s["diff"]:
            lines += ["  ```diff"] + ["  " + ln for ln in s["diff"].splitlines()[:8]] + ["  ```"]
    return "\n".join(lines) + "\n"


def _short_tests(tests: list[str]) -> str:
    """Test files, a file's selected tests counted ("test_lora.py (6 tests)")."""
    files: dict[str, int] = {}
    for t in tests:
        f, _, node = t.partition("::")
        files[f.split("/")[-1]] = files.get(f.split("/")[-1], 0) + (1 if node else 0)
    return ", ".join(f"{f} ({n} tests)" if n else f for f, n in files.items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scope", default="all", help="all, " + ", ".join(SCOPES) + "; several joined by commas")
    ap.add_argument("--resume", action="store_true", help="keep mutants/ and earlier results (re-runs the scope)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from mutants/ without running")
    ap.add_argument("--merge-only", action="store_true",
                    help="rebuild mutation.json / .md from the mutation.<scope>.json files kept, without running")
    ap.add_argument("--survivors", action="store_true",
                    help="re-run only the scope's surviving and unreached mutants (after adding tests; keeps "
                         "mutants/)")
    ap.add_argument("--timeouts", action="store_true", help="with --survivors: the timed-out mutants too")
    ap.add_argument("--unchecked", action="store_true",
                    help="with --survivors: the mutants a stopped run left unchecked too (keeps mutants/)")
    ap.add_argument("--max-children", type=int, default=1)
    ap.add_argument("--tests", help="test files to run against the mutants, comma-separated (default: the scope's, "
                                    "SCOPE_TESTS)")
    a = ap.parse_args(argv)
    if a.merge_only:
        doc = merge()
        print(f"{doc['killed']}/{doc['total']} killed ({doc['score']}) over {len(doc['runs'])} runs; "
              f"{OUT_JSON.relative_to(ROOT)}, {OUT_MD.relative_to(ROOT)}")
        return 0
    patterns = scope_patterns(a.scope)
    command = "make mutation" if a.scope == "all" else f"python -m tools.mutation --scope {a.scope}"
    seconds, selection = None, (a.tests.split(",") if a.tests else None)
    if not a.report_only:
        if a.survivors:
            known = {k: _status(v) for k, v in _read_results(patterns).items()} or _kept_results(patterns)
            names = [k for k, v in known.items()
                     if v in ("survived", "suspicious", "no tests") + (("timeout",) if a.timeouts else ())
                     + (("not checked",) if a.unchecked else ())]
            if not names:
                print("no surviving mutants to re-run")
            patterns_run = names
        else:
            patterns_run = patterns
        if not a.resume and not a.survivors:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = ["nice", "-n", "19"] + _mutmut_cmd() + ["run", "--max-children", str(a.max_children)] + patterns_run
        files, tests = scope_files_and_tests(a.scope)
        if a.tests:
            tests = a.tests.split(",")
        old_cfg = _configure(files, tests)
        t0 = time.monotonic()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        finally:
            seconds = time.monotonic() - t0
            if old_cfg is not None:
                (ROOT / "setup.cfg").write_text(old_cfg)
        selection = tests
        if rc != 0:
            print(f"mutmut exited with {rc}", file=sys.stderr)
    if a.report_only and scope_json(a.scope).exists():  # rewriting the report keeps the run's own time
        seconds = json.loads(scope_json(a.scope).read_text()).get("run_seconds")
    if a.survivors and scope_json(a.scope).exists() and seconds is not None:  # the first run's time plus this one's
        prev = json.loads(scope_json(a.scope).read_text()).get("run_seconds")
        seconds += prev or 0.0
        command += " (then --survivors after new tests)"
    doc = report(patterns, a.scope, seconds, command, selection, keep_earlier=a.survivors)
    print(f"{doc['killed']}/{doc['total']} killed ({doc['score']}), {doc['survived']} survived, "
          f"{doc['no_tests']} no tests; {scope_json(a.scope).relative_to(ROOT)}; merged into "
          f"{OUT_JSON.relative_to(ROOT)}, {OUT_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
