"""The shipped results (``assets/claims/<claim>.json``): load, validate, list (pure Python)."""

from __future__ import annotations

import json
from pathlib import Path

from explorer.errors import DataError
from . import specs

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "claims"


def path_for(name: str, folder: Path | None = None) -> Path:
    return Path(folder or ASSETS) / f"{name}.json"


def load(name: str, folder: Path | None = None) -> dict | None:
    """A claim's results document, or None when it has not been run; a broken file raises DataError."""
    p = path_for(name, folder)
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{p.name}: not a readable results file ({e.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("claim") != name or "records" not in doc:
        raise DataError(f"{p.name}: not a claims-lab results file for '{name}'")
    return doc


def _num(x, nd=4):
    return None if x is None else round(float(x), nd)


def brief(name: str, folder: Path | None = None) -> dict:
    """One claim's verdict and the numbers behind it (for ``python -m explorer claims --json``)."""
    exp = specs.EXPERIMENTS[name]
    p = path_for(name, folder)
    try:
        shown = str(p.resolve().relative_to(ROOT))  # relative to the repository when it lies inside it
    except ValueError:
        shown = str(p)
    out = dict(claim=name, title=exp.title, statement=exp.claim, source=exp.source, results_file=shown)
    try:
        doc = load(name, folder)
    except DataError as e:
        return dict(out, verdict=None, error=str(e))
    if doc is None:
        return dict(out, verdict=None, error="not run yet: python -m explorer claims --run " + name)
    arms = [dict(arm=a["arm"], label=a["label"], n=len(a["accuracy"]), mean=_num(a["mean"]),
                 ci95=[_num(a["lo"]), _num(a["hi"])], adapter_params=a["adapter_params"]) for a in doc["arms"]]
    tests = []
    for t in doc["tests"]:
        row = dict(test=t["label"], verdict=t["verdict"], rule=t.get("rule"))
        if "diff" in t:
            row.update(diff=_num(t["diff"]), ci95=[_num(t["lo"]), _num(t["hi"])])
        if "slope_b" in t:
            row.update(slope_b=_num(t["slope_b"]["slope"]), slope_b_ci95=[_num(t["slope_b"]["lo"]), _num(t["slope_b"]["hi"])],
                       slope_a=_num(t["slope_a"]["slope"]), slope_a_ci95=[_num(t["slope_a"]["lo"]), _num(t["slope_a"]["hi"])],
                       slope_diff_ci95=[_num(t["slope_diff"]["lo"]), _num(t["slope_diff"]["hi"])])
        if t.get("kind") == "above" and t.get("mean") is not None:
            row.update(mean=_num(t["mean"]), ci95=[_num(t["lo"]), _num(t["hi"])], level=_num(t["level"]))
        if t.get("note"):
            row["note"] = t["note"]
        tests.append(row)
    return dict(out, verdict=doc.get("verdict"), size=doc.get("size"), settings=doc.get("settings"),
                commit=doc.get("commit"), arms=arms, tests=tests)


def all_briefs(folder: Path | None = None) -> list[dict]:
    return [brief(n, folder) for n in specs.NAMES]


def _pts(x) -> str:
    return f"{100 * x:+.1f}"


def markdown_table(folder: Path | None = None) -> str:
    """The verdicts and the numbers behind them as a markdown table (for the README), from the shipped results."""
    lines = ["| claim | part | measured (95 % interval over seeds) | verdict | with the first 3 seeds |",
             "|---|---|---|---|---|"]
    for name in specs.NAMES:
        try:
            doc = load(name, folder)
        except DataError as e:
            lines.append(f"| {name} | | {e} | | |")
            continue
        if doc is None:
            lines.append(f"| {name} | | not run | | |")
            continue
        arms = {a["arm"]: a for a in doc["arms"]}
        first = {t["key"]: t for t in (doc.get("first_seeds") or {}).get("tests", [])}
        n = len(doc.get("settings", {}).get("seeds") or [])
        for i, t in enumerate(doc["tests"]):
            if t.get("verdict") is None:
                measured = t.get("note") or ""
            elif "diff" in t:
                a, b = arms.get(t["a"]), arms.get(t["b"])
                measured = (f"{b['label']} {b['mean']:.3f} vs {a['label']} {a['mean']:.3f}: "
                            f"{_pts(t['diff'])} points [{_pts(t['lo'])}, {_pts(t['hi'])}]")
            elif "slope_b" in t:
                sb, sa, sd = t["slope_b"], t["slope_a"], t["slope_diff"]
                measured = (f"accuracy per doubling of the budget: {t['b']} {_pts(sb['slope'])} points "
                            f"[{_pts(sb['lo'])}, {_pts(sb['hi'])}], {t['a']} {_pts(sa['slope'])} "
                            f"[{_pts(sa['lo'])}, {_pts(sa['hi'])}]; difference [{_pts(sd['lo'])}, {_pts(sd['hi'])}]")
            else:
                measured = f"share {t['mean']:.2f} [{t['lo']:.2f}, {t['hi']:.2f}] vs {t['level']:.2f}"
            head = f"**{name}** ({n} seeds): {doc['verdict']}" if i == 0 else ""
            f3 = first.get(t["key"])
            if f3 and f3.get("lo") is not None:
                ci = (f"[{f3['lo']:.2f}, {f3['hi']:.2f}]" if t.get("kind") == "above"
                      else f"[{_pts(f3['lo'])}, {_pts(f3['hi'])}] points")
                f3 = f"{f3['verdict']} {ci}"
            else:
                f3 = (f3 or {}).get("verdict") or "—"
            lines.append(f"| {head} | {t['label']} | {measured} | {t['verdict'] or 'waiting'} | {f3} |")
    return "\n".join(lines)
