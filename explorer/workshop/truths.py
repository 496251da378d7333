"""A question's truth, named in the lesson file as a computation and computed by the project at reveal time.

Pure Python (no streamlit).  A lesson never types the answer: it names what to compute, e.g.::

    truth = {kind = "trainable_count", model = "minilm", method = "lora", knobs = {rank = 16, targets = ["q", "v"]}}
    truth = {kind = "best_method_by_accuracy", source = "board", model = "minilm", task = "colour-shape"}

:func:`check_truth` validates the table when the lesson is loaded (unknown kind, method, knob or model: one line);
:func:`compute_truth` computes it when the teacher reveals (:class:`Truth`: the value, one sentence that says how it
was obtained, the numbers behind it).  Kinds (``KINDS``):

- ``trainable_count`` (number): the trainable parameters of ``method`` with ``knobs`` on ``model``, counted from the
  adapter's tensors after applying the method to a shared-weight copy (what the playground shows; ``part =
  "adapter"`` leaves the new classification head out);
- ``most_trainable`` / ``fewest_trainable`` (choice): ``options`` maps each choice to ``{method, knobs}``; the
  choice whose count is largest / smallest (every count is in the detail);
- ``count_ratio`` (number): the count of ``numerator = {method, knobs}`` divided by that of ``denominator``, on
  ``model`` (same counting);
- ``memory_estimate`` (number, GB = 10^9 bytes): the Memory calculator's total for ``method`` with the page's
  ``settings`` (its URL values, checked like a step's), the very number the page shows in that method's row;
- ``best_method_by_accuracy`` (choice; each choice a method's name or label: "lora" or "LoRA"): the method with the highest mean final
  held-out accuracy among shared runs of ``model`` on ``task`` (optionally ``steps``), from ``source = "board"``
  (the whole class board) or ``"room_runs"`` (runs the room shared since this lesson started);
- ``mean_accuracy`` (number, percent): the mean final accuracy of ``method``'s shared runs, same sources.

A truth that cannot be computed yet (no shared runs) raises :class:`TruthError` with one line, and the question
stays closed until it can.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from explorer.errors import DataError

__all__ = ["Truth", "TruthError", "TruthContext", "KINDS", "check_truth", "compute_truth", "method_of"]

SOURCES = ("board", "room_runs")


class TruthError(DataError):
    """A truth table that is malformed, or a truth that cannot be computed now (one line)."""


@dataclass
class Truth:
    kind: str
    value: object  # a number, a choice, or a list of choices (a tie)
    text: str  # one sentence: the value and how it was obtained
    detail: dict = field(default_factory=dict)
    computed_at: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Truth":
        return cls(kind=str(d["kind"]), value=d["value"], text=str(d["text"]), detail=dict(d.get("detail") or {}),
                   computed_at=float(d.get("computed_at") or 0.0))

    def matches(self, choice: str) -> bool:
        return choice in self.value if isinstance(self.value, list) else choice == self.value


@dataclass
class TruthContext:
    """What a computation may read: the model loader (a page passes its cached one), the board's entries and the
    time this lesson run started (``room_runs``)."""

    load_model: Callable | None = None
    board_entries: Callable[[], list] | None = None
    since: float = 0.0
    clock: Callable[[], float] = time.time


# ----------------------------------------------------------------------------- checking a truth table


def _need(spec: dict, key: str, types, what: str):
    v = spec.get(key)
    if v is None:
        raise TruthError(f"truth.{key}: missing ({what})")
    if not isinstance(v, types) or isinstance(v, bool):
        raise TruthError(f"truth.{key}: must be {what}")
    return v


def _only(spec: dict, allowed: tuple) -> None:
    extra = [k for k in spec if k not in allowed + ("kind",)]
    if extra:
        raise TruthError(f"truth.{str(extra[0])[:40]}: not a field of a {spec['kind']} truth (its fields: "
                         f"{', '.join(allowed)})")


def _model_name(spec: dict) -> str:
    from explorer.models import REGISTRY, config_models

    m = _need(spec, "model", str, "a model name")
    if m not in REGISTRY and m not in config_models():
        raise TruthError(f"truth.model: unknown model '{m[:40]}' (use one of {', '.join(REGISTRY)} or a bundled "
                         "config model)")
    return m


def _method_knobs(d: dict, where: str) -> tuple[str, dict]:
    from explorer.methods import METHODS, validate_knobs

    method = d.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise TruthError(f"{where}.method: '{str(method)[:40]}' is not a method (use one of {', '.join(METHODS)})")
    knobs = d.get("knobs", {})
    if not isinstance(knobs, dict):
        raise TruthError(f"{where}.knobs: must be a table of the method's knobs")
    try:
        validate_knobs(METHODS[method].knobs, knobs, method)
    except (ValueError, TypeError) as e:  # KnobError is a ValueError
        raise TruthError(f"{where}.knobs: {e}") from None
    return method, dict(knobs)


def _part(spec: dict) -> str:
    part = spec.get("part", "all")
    if part not in ("all", "adapter"):
        raise TruthError("truth.part: 'all' (what the playground counts, head included) or 'adapter'")
    return part


def _check_count(spec, question):
    _only(spec, ("model", "method", "knobs", "part"))
    _model_name(spec)
    _method_knobs(spec, "truth")
    _part(spec)


def _check_ratio(spec, question):
    _only(spec, ("model", "numerator", "denominator", "part"))
    _model_name(spec)
    _part(spec)
    for key in ("numerator", "denominator"):
        o = spec.get(key)
        if not isinstance(o, dict):
            raise TruthError(f"truth.{key}: must be a table {{method = ..., knobs = {{...}}}}")
        _only(dict(o, kind=spec["kind"]), ("method", "knobs"))
        _method_knobs(o, f"truth.{key}")


def _check_extreme(spec, question):
    _only(spec, ("model", "options", "part"))
    _model_name(spec)
    _part(spec)
    opts = spec.get("options")
    if not isinstance(opts, dict) or set(opts) != set(question.choices):
        raise TruthError("truth.options: a table with one {method, knobs} per choice of the question, named like "
                         "the choices")
    for name, o in opts.items():
        if not isinstance(o, dict):
            raise TruthError(f"truth.options.{name}: must be a table {{method = ..., knobs = {{...}}}}")
        _only(dict(o, kind=spec["kind"]), ("method", "knobs"))
        _method_knobs(o, f"truth.options.{name}")


def _check_memory(spec, question):
    from explorer.methods import METHODS
    from explorer.views.pages import SettingsError

    _only(spec, ("method", "settings"))
    if not isinstance(spec.get("method"), str) or spec["method"] not in METHODS:
        raise TruthError(f"truth.method: one of {', '.join(METHODS)}")
    try:
        _memory_row(spec)
    except SettingsError as e:
        raise TruthError(f"truth.{e}") from None
    except (DataError, TypeError, ValueError) as e:
        raise TruthError(f"truth: the memory model refuses these settings ({str(e)[:120]})") from None


def _check_measured(spec, question, with_method: bool):
    from explorer.methods import METHODS

    _only(spec, ("source", "model", "task", "steps", "min_runs") + (("method",) if with_method else ()))
    if not isinstance(spec.get("source"), str) or spec["source"] not in SOURCES:
        raise TruthError("truth.source: 'board' (the whole class board) or 'room_runs' (runs shared since the "
                         "lesson started)")
    _need(spec, "model", str, "the model of the runs")
    _need(spec, "task", str, "the task of the runs")
    for key, lo in (("steps", 1), ("min_runs", 1)):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < lo):
            raise TruthError(f"truth.{key}: a whole number >= {lo}")
    if with_method:
        if not isinstance(spec.get("method"), str) or spec["method"] not in METHODS:
            raise TruthError(f"truth.method: one of {', '.join(METHODS)}")
    else:
        bad = [c for c in question.choices if method_of(c) is None]
        if bad:
            raise TruthError(f"choices: '{bad[0][:40]}' is not a method; a best_method_by_accuracy question's "
                             f"choices are methods' names or labels ({', '.join(METHODS)})")
        if len({method_of(c) for c in question.choices}) != len(question.choices):
            raise TruthError("choices: two choices name the same method")


def method_of(choice: str) -> str | None:
    """The method a choice names (its name, label or short label, any case), else None."""
    from explorer.methods import METHODS

    c = str(choice).strip().lower()
    return next((k for k, m in METHODS.items() if c in (k.lower(), m.label.lower(), m.short.lower())), None)


@dataclass(frozen=True)
class Kind:
    question: str  # the question kind it answers
    check: Callable
    compute: Callable


def check_truth(spec, question) -> dict:
    """The truth table of ``question`` checked (TruthError: one line, e.g. "truth.knobs: lora: unknown knob(s)
    types; known: rank, alpha, targets, dropout, seed")."""
    if not isinstance(spec, dict):
        raise TruthError("truth: must be a table such as {kind = \"trainable_count\", ...}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise TruthError(f"truth.kind: '{str(kind)[:40]}' is not known (use one of {', '.join(KINDS)})")
    if KINDS[kind].question != question.kind:
        raise TruthError(f"truth.kind: a {kind} truth answers a {KINDS[kind].question} question, not a "
                         f"{question.kind} one")
    KINDS[kind].check(spec, question)
    return dict(spec)


# ----------------------------------------------------------------------------- computing

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _default_loader(name: str):
    from explorer.models import load_model

    with _MODELS_LOCK:
        if name not in _MODELS:
            _MODELS[name] = load_model(name, meta_ok=True)
        return _MODELS[name]


def _count(ctx: TruthContext, model: str, method: str, knobs: dict, part: str) -> tuple[int, str]:
    from explorer.methods import METHODS, apply_method
    from explorer.views.playground import shared_weight_copy

    loaded = (ctx.load_model or _default_loader)(model)
    a = apply_method(shared_weight_copy(loaded.model), method, n_base=loaded.info.n_params, **knobs)
    n = a.num_trainable() - (a.head_parameters() if part == "adapter" else 0)
    knob_text = METHODS[method].settings_text(a.knobs)
    return int(n), f"{METHODS[method].label} ({knob_text})"


def _compute_count(spec, question, ctx):
    part = _part(spec)
    n, what = _count(ctx, spec["model"], spec["method"], spec.get("knobs", {}), part)
    head = "" if part == "all" else ", the classification head left out"
    return n, (f"{n:,} trainable parameters: {what} on {spec['model']}{head}, counted from the adapter's tensors"), \
        dict(model=spec["model"], method=spec["method"], knobs=spec.get("knobs", {}), part=part)


def _compute_ratio(spec, question, ctx):
    part = _part(spec)
    (a, what_a), (b, what_b) = (_count(ctx, spec["model"], spec[k]["method"], spec[k].get("knobs", {}), part)
                                for k in ("numerator", "denominator"))
    if b == 0:
        raise TruthError(f"{what_b} trains nothing on {spec['model']}: the ratio has no value")
    r = a / b
    return r, (f"{r:,.3g} = {a:,} / {b:,}: {what_a} against {what_b} on {spec['model']}, counted from the "
               "adapters' tensors"), dict(numerator=a, denominator=b, model=spec["model"], part=part)


def _compute_extreme(spec, question, ctx):
    part = _part(spec)
    counts = {c: _count(ctx, spec["model"], o["method"], o.get("knobs", {}), part)[0]
              for c, o in spec["options"].items()}
    pick = max if spec["kind"] == "most_trainable" else min
    best = pick(counts.values())
    winners = [c for c in question.choices if counts[c] == best]
    word = "most" if spec["kind"] == "most_trainable" else "fewest"
    listing = "; ".join(f"{c}: {counts[c]:,}" for c in question.choices)
    return (winners[0] if len(winners) == 1 else winners), \
        f"{' and '.join(winners)} trains the {word} parameters on {spec['model']} ({listing}; counted from the " \
        f"adapters' tensors)", dict(counts=counts, model=spec["model"], part=part)


def _memory_row(spec) -> dict:
    """The Memory calculator's row for ``spec["method"]`` with the page's ``settings`` (its URL values)."""
    from explorer.views import memory_views as V
    from explorer.views.pages import check_settings

    values, _ = check_settings("memory", spec.get("settings") or {})
    row = V.estimate_rows(V.spec_for_choice(values["model"], values), values, methods=[spec["method"]])[0]
    if "error" in row:
        raise TruthError(f"the Memory calculator cannot estimate {spec['method']} here: {row['error'][:120]}")
    return row


def _compute_memory(spec, question, ctx):
    row = _memory_row(spec)
    gb = row["total_bytes"] / 1e9
    return gb, (f"{gb:,.1f} GB {row['scope_label']}: the Memory calculator's analytic total for {row['label']} on {row['model']} "
                f"({row['precision']}, batch {row['batch']} x {row['seq_len']} tokens)"), \
        {k: row[k] for k in ("total_bytes", "weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes")}


def _measured(spec, ctx, methods) -> dict[str, list[float]]:
    if ctx.board_entries is None:
        from explorer.workshop.board import default_board

        entries = default_board().entries()
    else:
        entries = ctx.board_entries()
    since = ctx.since if spec["source"] == "room_runs" else -math.inf
    out: dict[str, list[float]] = {m: [] for m in methods}
    for e in entries:
        if (e.get("method") in out and e.get("model") == spec["model"] and e.get("task") == spec["task"]
                and float(e.get("created", 0)) >= since and spec.get("steps") in (None, e.get("steps"))):
            out[e["method"]].append(float(e["accuracy"]))
    return out


def _where(spec) -> str:
    src = "on the class board" if spec["source"] == "board" else "shared by the room since the lesson started"
    steps = f", {spec['steps']} steps" if spec.get("steps") else ""
    return f"runs of {spec['model']} on {spec['task']}{steps} {src}"


def _too_few(need: int) -> str:
    return "no" if need == 1 else f"fewer than {need}"


def _compute_best(spec, question, ctx):
    from explorer.methods import METHODS

    of = {c: method_of(c) for c in question.choices}
    runs = _measured(spec, ctx, list(of.values()))
    need = int(spec.get("min_runs", 1))
    short = [m for m in of.values() if len(runs[m]) < need]
    if short:
        raise TruthError(f"not measured yet: {_too_few(need)} {' or '.join(METHODS[m].short for m in short)} "
                         f"{_where(spec)}")
    means = {c: sum(runs[m]) / len(runs[m]) for c, m in of.items()}
    best = max(means.values())
    winners = [c for c in question.choices if means[c] == best]
    listing = "; ".join(f"{METHODS[of[c]].label} {means[c]:.1%} (n={len(runs[of[c]])})" for c in question.choices)
    return (winners[0] if len(winners) == 1 else winners), \
        f"{' and '.join(METHODS[of[c]].label for c in winners)}: the highest mean final accuracy of the " \
        f"{_where(spec)} ({listing})", dict(means=means, n={c: len(runs[m]) for c, m in of.items()})


def _compute_mean(spec, question, ctx):
    from explorer.methods import METHODS

    runs = _measured(spec, ctx, [spec["method"]])[spec["method"]]
    need = int(spec.get("min_runs", 1))
    label = METHODS[spec["method"]].label
    if len(runs) < need:
        raise TruthError(f"not measured yet: {_too_few(need)} {label} {_where(spec)}")
    mean = 100.0 * sum(runs) / len(runs)
    return mean, f"{mean:.1f} %: the mean final accuracy of {len(runs)} {label} {_where(spec)}", \
        dict(n=len(runs), accuracies=runs)


KINDS: dict[str, Kind] = {
    "trainable_count": Kind("number", _check_count, _compute_count),
    "count_ratio": Kind("number", _check_ratio, _compute_ratio),
    "most_trainable": Kind("choice", _check_extreme, _compute_extreme),
    "fewest_trainable": Kind("choice", _check_extreme, _compute_extreme),
    "memory_estimate": Kind("number", _check_memory, _compute_memory),
    "best_method_by_accuracy": Kind("choice", lambda s, q: _check_measured(s, q, False), _compute_best),
    "mean_accuracy": Kind("number", lambda s, q: _check_measured(s, q, True), _compute_mean),
}


def compute_truth(spec: dict, question, ctx: TruthContext | None = None) -> Truth:
    """Compute a checked truth now (TruthError: one line when it cannot be computed yet or fails)."""
    ctx = ctx or TruthContext()
    try:
        value, text, detail = KINDS[spec["kind"]].compute(spec, question, ctx)
    except TruthError:
        raise
    except Exception as e:  # noqa: BLE001 - a model that fails to load, a knob the model cannot take: one line
        from explorer.errors import user_message

        raise TruthError(f"the truth could not be computed: {user_message(e)[:200]}") from None
    return Truth(kind=spec["kind"], value=value, text=text, detail=detail, computed_at=float(ctx.clock()))
