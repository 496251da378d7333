"""The methods behind one interface, each owning its facts in its own module.

>>> from explorer.methods import apply_method, METHODS
>>> adapter = apply_method(model_copy, "lora-sp", rank=8, freeze=0.5)
>>> adapter.num_trainable(), adapter.layouts(), adapter.save("out/")
>>> METHODS["smt"].label, METHODS["smt"].default_lr, METHODS["smt"].knobs

**To add a method: write its module ``explorer/methods/<name>.py``, add one line to ``_REGISTRY`` below.**
Code outside this package asks :class:`MethodInfo` and never branches on a method's name
(``tests/test_method_facts.py`` checks both).  A method module defines, at module level:

required (``REQUIRED_FACTS``; the test checks every module):
  ``LABEL`` (pages, legends), ``SHORT`` (narrow tables), ``DESCRIPTION`` (one sentence), ``WHAT_TRAINS`` (the
  Home table), ``PAPER`` ("arXiv ..." or "baseline"), ``FORMULA`` (the trainable count in words),
  ``DEFAULT_LR`` (the fine-tune learning rate when none is given), ``COLOR_SLOT`` (its colour on run charts:
  an index into ``explorer.views.figures.COLORS``, distinct per method, below ``len(COLORS)`` (9: two to spare)),
  ``DEVIATIONS`` (sentences: where the project departs from the paper or picks a default it leaves open; [] when
  none), ``KNOBS`` (list of ``base.Knob``: type, range, widget hints; the URL field derives from it),
  ``apply(model, knobs, n_base, selection=None)`` -> Adapter, ``formula_lines(adapter, total, head)`` ->
  (lines, count) (the playground's formula with the real shapes, computed from shapes and knobs, not from the
  adapter's tensors; ``base.with_head`` adds the head line), ``illustrative_delta(adapter, target, generator)``
  -> (ΔW, factors or None, sentence), ``matrix_pictures(adapter, layout, warmup)`` -> list of ``base.Picture``
  (what the playground draws for one matrix, with the sentence beside it).

optional (``OPTIONAL_FACTS``, default in brackets): ``overview_pictures(adapter)`` [no pictures: drawn before the
  matrix ones, e.g. Tied-LoRA's sharing diagram], ``playground_knobs(warm)`` [{}: knobs the playground fixes and
  hides, e.g. SMT's gradient-only warm-up], ``PLAYGROUND_CAPTION`` [""; ``{warm}`` is filled in],
  ``sweep_point(rank, budget, geometry)`` [None: not in budget sweeps; else (knobs, label) for a LoRA-rank-matched
  budget], ``LOAD_FORMAT`` ["tensors": ``adapter.safetensors`` from ``state_tensors()``; "peft": peft's own files],
  ``warmup_is_full_finetuning(knobs)`` [False: with these knobs a warm-up phase costs what full fine-tuning
  costs (SMT's "full" warm-up mode); memory checks take its peak], ``HAS_WARMUP`` [False: a warm-up phase,
  knob ``warmup_steps``, picks what trains], ``TAKES_SELECTION`` [False: can train a selection handed over by
  the SMT block inspector instead of warming up].

Behaviour that differs per method lives on its ``Adapter`` subclass (``needs_warmup``, ``warmup_moves_weights``,
``delta_granule``, ``analytic_bytes()``, ``saves_whole_model``, ``meta_note()``, ...).

Memory facts (``REQUIRED_FACTS`` / ``OPTIONAL_FACTS`` too): the memory calculator (``explorer.memory``,
``explorer.views.memory_views``, page 4, the ``memory`` command) never asks a method's name.  Required:
``memory_plan(spec, knobs) -> explorer.memory.plan.MemoryPlan`` (the trainable count by part from a
``ModelSpec``'s shapes, frozen adapter floats and int32 index bytes, and per target type a save rule that
records what the adapted layer keeps for backward; ``explorer.memory.plan.adapter_shapes`` finds the targets)
and ``settings_text(knobs) -> str`` (one short line for a table row).  Optional: ``MEMORY_PAGE_KNOBS`` [{}: the
knobs the Memory calculator shows, knob name -> its address key, e.g. ``{"rank": "rank"}``] and
``MEASURE_KNOBS`` [{}: knobs a quick memory measurement overrides, e.g. SMT's short warm-up].
"""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .base import Adapter, Knob, KnobError, Layout, validate_knobs
from .facts import Picture

# the registry: one line per method (its name -> its module in this package), in the order pages list them
_REGISTRY = {
    "full": "full",
    "lora": "lora",
    "dora": "dora",
    "lora-sp": "lora_sp",
    "tied-lora": "tied_lora",
    "smt": "smt",
    "sparta": "sparta",
    "vera": "vera",
}
_MODULES = {name: import_module(f"{__name__}.{module}") for name, module in _REGISTRY.items()}

REQUIRED_FACTS = ("LABEL", "SHORT", "DESCRIPTION", "WHAT_TRAINS", "PAPER", "FORMULA", "DEFAULT_LR", "COLOR_SLOT",
                  "DEVIATIONS", "KNOBS", "apply", "formula_lines", "illustrative_delta", "matrix_pictures",
                  "memory_plan", "settings_text")


def _no_pictures(adapter) -> list:
    return []


def _no_fixed_knobs(warm: int) -> dict:
    return {}


def _no_full_warmup(knobs: dict) -> bool:
    return False


OPTIONAL_FACTS: dict[str, Any] = {"overview_pictures": _no_pictures, "playground_knobs": _no_fixed_knobs,
                                  "PLAYGROUND_CAPTION": "", "sweep_point": None, "LOAD_FORMAT": "tensors",
                                  "warmup_is_full_finetuning": _no_full_warmup, "HAS_WARMUP": False,
                                  "TAKES_SELECTION": False, "MEMORY_PAGE_KNOBS": {}, "MEASURE_KNOBS": {}}


class MethodInfo:
    """Everything about one method, read from its module (see the module docstring for the facts)."""

    def __init__(self, name, module):
        missing = [f for f in REQUIRED_FACTS if not hasattr(module, f)]
        if missing:
            raise TypeError(f"method module {module.__name__} lacks {', '.join(missing)}")
        self.name = name
        self.module = module
        self.label: str = module.LABEL
        self.short: str = module.SHORT
        self.knobs: list[Knob] = module.KNOBS
        self.description: str = module.DESCRIPTION
        self.what_trains: str = module.WHAT_TRAINS
        self.paper: str = module.PAPER
        self.formula: str = module.FORMULA
        self.default_lr: float = float(module.DEFAULT_LR)
        self.color_slot: int = int(module.COLOR_SLOT)
        self.deviations: list[str] = list(module.DEVIATIONS)
        self.formula_lines: Callable = module.formula_lines
        self.illustrative_delta: Callable = module.illustrative_delta
        self.matrix_pictures: Callable = module.matrix_pictures
        opt = {k: getattr(module, k, d) for k, d in OPTIONAL_FACTS.items()}
        self.overview_pictures: Callable = opt["overview_pictures"]
        self.playground_knobs: Callable[[int], dict] = opt["playground_knobs"]
        self.playground_caption: str = opt["PLAYGROUND_CAPTION"]
        self.sweep_point: Callable | None = opt["sweep_point"]
        self.load_format: str = opt["LOAD_FORMAT"]
        self.warmup_is_full_finetuning: Callable[[dict], bool] = opt["warmup_is_full_finetuning"]
        self.has_warmup: bool = bool(opt["HAS_WARMUP"])
        self.takes_selection: bool = bool(opt["TAKES_SELECTION"])
        # memory facts (see the module docstring)
        self.memory_plan: Callable = module.memory_plan
        self.settings_text: Callable[[dict], str] = module.settings_text
        self.memory_page_knobs: dict[str, str] = opt["MEMORY_PAGE_KNOBS"]
        self.measure_knobs: dict = opt["MEASURE_KNOBS"]

    @property
    def sweepable(self) -> bool:
        return self.sweep_point is not None

    def knob(self, name: str) -> Knob | None:
        return next((k for k in self.knobs if k.name == name), None)

    def to_dict(self):
        return dict(name=self.name, label=self.label, short=self.short, description=self.description,
                    what_trains=self.what_trains, paper=self.paper, formula=self.formula,
                    default_lr=self.default_lr, deviations=list(self.deviations),
                    knobs=[k.to_dict() for k in self.knobs])


METHODS: dict[str, MethodInfo] = {k: MethodInfo(k, m) for k, m in _MODULES.items()}
LABELS = {k: m.label for k, m in METHODS.items()}  # derived, for callers that want name -> label


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise KnobError(f"Unknown method '{str(name)[:40]}': choose from {', '.join(METHODS)}")
    return METHODS[name]


def apply_method(model: nn.Module, method: str, n_base: int | None = None, smt_selection=None, **knobs) -> Adapter:
    """Adapt ``model`` in place (give it a private copy) and return the adapter."""
    info = get_method(method)
    values = validate_knobs(info.knobs, knobs, method)
    if n_base is None:
        n_base = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    return info.module.apply(model, values, n_base, selection=smt_selection)


def load_adapter(model: nn.Module, folder) -> Adapter:
    """Rebuild a saved adapter on a fresh copy of its base model and load its tensors."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / "explorer_adapter.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{folder} holds no saved adapter (explorer_adapter.json missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
        method, knobs = cfg["method"], dict(cfg["knobs"])
    except (ValueError, KeyError) as e:
        raise ValueError(f"{cfg_path} is not a valid adapter config: {e}") from None
    info = get_method(method)
    if info.load_format == "peft":
        adapter = apply_method(model, method, n_base=cfg.get("n_base"), **knobs)
        adapter.load_from(folder)
        return adapter
    tensors = load_file(str(folder / "adapter.safetensors"))
    # an empty selection: a method that selects from data (SMT) takes the saved one instead of warming up
    adapter = apply_method(model, method, n_base=cfg.get("n_base"), smt_selection={}, **knobs)
    adapter.load_state_tensors(tensors)
    return adapter


__all__ = ["METHODS", "LABELS", "REQUIRED_FACTS", "OPTIONAL_FACTS", "MethodInfo", "Adapter", "Knob",
           "KnobError", "Layout", "Picture", "apply_method", "get_method",
           "load_adapter", "validate_knobs"]
