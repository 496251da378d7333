"""Which runs of a history form one budget curve (a sweep), and the computed verdict of each curve.

Pure Python (no streamlit, no plotly).  Runs belong to one *series* when their settings differ only in the
knobs that set the budget (LoRA's rank and alpha, SMT's block count, SpaRTA's density or sparsity): the runs of
one Compare sweep for one method, or runs of one method that a participant started at several ranks with the
same model, task, steps, seed and learning rate.  A run whose settings match no other run is a single point:
it is drawn as a dot and joins no line, so a lesson's runs on another task never zig-zag into a sweep's line.
Runs with the same settings *and* budget (a sweep run twice) start a second series.

``rows`` are the dicts of ``pages/3_Compare.rows_of``: ``id``, ``name``, ``method``, ``model``, ``task``,
``config`` (the run's TrainConfig as a dict), ``trainable``, ``accuracy``, ``base_accuracy``, ``eval_n``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from explorer.views.verdicts import BUDGET_RULE, budget_verdict

__all__ = ["BUDGET_KNOBS", "Series", "split_series", "panels", "trend_lines"]

# the knobs that set a run's budget (a sweep varies only these: explorer.methods.*.sweep_point)
BUDGET_KNOBS = frozenset({"rank", "alpha", "blocks", "density", "sparsity"})
# settings that change what is recorded, not what is learned
_NOT_SETTINGS = frozenset({"eval_every", "measure_memory", "eval_batch_size"})


@dataclass
class Series:
    """Runs of one method that differ only in their budget, in budget order."""

    method: str
    model: str
    task: str
    rows: list[dict] = field(default_factory=list)
    describe: str = ""  # the settings the runs share, for a legend or a verdict line

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]


def _settings_key(row: dict) -> str | None:
    cfg = row.get("config")
    if not isinstance(cfg, dict):
        return None
    rest = {k: v for k, v in cfg.items() if k not in _NOT_SETTINGS and k != "knobs"}
    knobs = {k: v for k, v in (cfg.get("knobs") or {}).items() if k not in BUDGET_KNOBS}
    return json.dumps(dict(rest, knobs=knobs, _method=row.get("method"), _model=row.get("model"),
                           _task=row.get("task")), sort_keys=True, default=str)


def _budget_key(row: dict) -> str:
    kn = (row.get("config") or {}).get("knobs") or {}
    return json.dumps({k: kn.get(k) for k in sorted(BUDGET_KNOBS)}, sort_keys=True, default=str)


def _describe(row: dict) -> str:
    cfg = row.get("config") or {}
    parts = []
    if cfg.get("steps") is not None:
        parts.append(f"{cfg['steps']} steps")
    if cfg.get("seed") is not None:
        parts.append(f"seed {cfg['seed']}")
    return ", ".join(parts)


def split_series(rows: list[dict]) -> tuple[list[Series], list[dict]]:
    """The series of ``rows`` (two or more runs each, in budget order) and the runs that belong to none.

    Only rows with a final accuracy count; a row without a ``config`` is a single point."""
    groups: dict[str, list[dict]] = {}  # settings -> [{budget key: row}, ...] (a repeat starts a new series)
    singles: list[dict] = []
    order: list[tuple[str, int]] = []
    for r in rows:
        if r.get("accuracy") is None:
            continue
        key = _settings_key(r)
        if key is None:
            singles.append(r)
            continue
        bk = _budget_key(r)
        lanes = groups.setdefault(key, [])
        for i, lane in enumerate(lanes):
            if bk not in lane:
                lane[bk] = r
                break
        else:
            lanes.append({bk: r})
            order.append((key, len(lanes) - 1))
    series: list[Series] = []
    for key, i in order:
        lane = list(groups[key][i].values())
        if len(lane) < 2:
            singles.extend(lane)
            continue
        lane.sort(key=lambda r: (r.get("trainable") or 0))
        first = lane[0]
        series.append(Series(method=first["method"], model=first["model"], task=first["task"], rows=lane,
                             describe=_describe(first)))
    where = {id(r): i for i, r in enumerate(rows)}
    singles.sort(key=lambda r: where[id(r)])  # in history order
    return series, singles


def panels(rows: list[dict]) -> list[tuple[str, str]]:
    """The (model, task) pairs of the runs with an accuracy, in order of first appearance: one chart panel
    each, so accuracies of different tasks never share an axis."""
    out: list[tuple[str, str]] = []
    for r in rows:
        if r.get("accuracy") is None:
            continue
        p = (r.get("model") or "?", r.get("task") or "?")
        if p not in out:
            out.append(p)
    return out


def trend_lines(rows: list[dict], label=lambda m: m) -> list[str]:
    """One computed verdict per series (explorer.views.verdicts.budget_verdict on exactly the points its line
    joins), a line for the runs drawn as single points, and the rule.  ``label(method)``: a method's name."""
    series, singles = split_series(rows)
    out = []
    for s in series:
        v = budget_verdict([(r.get("trainable") or 0, r["accuracy"], r.get("base_accuracy"), r.get("eval_n") or 0)
                            for r in s.rows])
        out.append(f"**{label(s.method)}** ({s.model}, {s.task}; {s.describe}; {len(s.rows)} runs, one line): "
                   f"{v.text}")
    if singles:
        n = len(singles)
        out.append(f"{n} run{'s' if n != 1 else ''} with settings no other run shares (another task, seed or "
                   f"step count) {'are' if n != 1 else 'is'} drawn as single points, joined to no line"
                   + ("" if series else ": a trend needs runs that differ only in their budget, e.g. a sweep")
                   + ".")
    if series:
        out.append(f"Rule: {BUDGET_RULE}.")
    return out
