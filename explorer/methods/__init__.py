"""The methods behind one interface, each owning its facts in its own module.

>>> from explorer.methods import apply_method, METHODS
>>> adapter = apply_method(model_copy, "lora-sp", rank=8, freeze=0.5)
>>> adapter.num_trainable(), adapter.layouts(), adapter.save("out/")
>>> METHODS["smt"].label, METHODS["smt"].default_lr, METHODS["smt"].knobs

**To add a method: write its module ``explorer/methods/<name>.py``, which declares ``METHOD = Method(...)``
(:class:`explorer.methods.contract.Method`: every fact, typed and documented there), and add one line to
``_REGISTRY`` below.**  Code outside this package asks ``METHODS[name]`` and never branches on a method's name
(``tests/core/test_method_facts.py`` checks both).  Behaviour that needs a model lives on the method's ``Adapter``
subclass (``needs_warmup``, ``delta_granule``, ``analytic_bytes()``, ``save()`` / ``load()``, ...).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import import_module
from pathlib import Path

from torch import nn

from explorer.errors import KnobError
from .base import Adapter, Knob, Layout, validate_knobs
from .contract import Method
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


def _declared(name: str, module: str) -> Method:
    """The ``METHOD`` a method module declares, named as the registry names it."""
    mod = import_module(f"{__name__}.{module}")
    method = getattr(mod, "METHOD", None)
    if not isinstance(method, Method):
        raise TypeError(f"method module {mod.__name__} declares no METHOD = Method(...)")
    return replace(method, name=name)


METHODS: dict[str, Method] = {name: _declared(name, module) for name, module in _REGISTRY.items()}
SWEEP_METHODS = tuple(k for k, m in METHODS.items() if m.sweepable)  # methods with a ``sweep_point``
LABELS = {k: m.label for k, m in METHODS.items()}  # derived, for callers that want name -> label


def get_method(name: str) -> Method:
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
    return info.apply(model, values, n_base, selection=smt_selection)


def load_adapter(model: nn.Module, folder) -> Adapter:
    """Rebuild a saved adapter on a fresh copy of its base model and load its tensors."""
    folder = Path(folder)
    cfg_path = folder / "explorer_adapter.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{folder} holds no saved adapter (explorer_adapter.json missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
        method, knobs = cfg["method"], dict(cfg["knobs"])
    except (ValueError, KeyError) as e:
        raise ValueError(f"{cfg_path} is not a valid adapter config: {e}") from None
    # an empty selection: a method that selects from data (SMT) takes the saved one instead of warming up
    adapter = apply_method(model, method, n_base=cfg.get("n_base"), smt_selection={}, **knobs)
    adapter.load(folder)
    return adapter


__all__ = ["METHODS", "LABELS", "Method", "Adapter", "Knob",
           "KnobError", "Layout", "Picture", "apply_method", "get_method",
           "load_adapter", "validate_knobs"]
