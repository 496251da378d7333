"""The one interface every method implements.

``apply_method(model, name, **knobs)`` adapts *the given model in place* (pass a
fresh copy of a cached base model) and returns an :class:`Adapter` that knows its
trainable tensors (tied ones once), its trainable count, a layout per target
weight (what can change, for drawing), how to save, merge and load itself.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from explorer.errors import KnobError
from explorer.sparse import linear_from
from explorer.targets import Target, find_targets, head_module_names

if TYPE_CHECKING:  # the widget context and widget a knob's options read and make
    from explorer.methods.facts import KnobContext, Widget


@dataclass
class Knob:
    """One knob of a method, described once: its type and range (validation, the CLI, the URL field derived
    by :meth:`url_field`) and the widget a page draws for it (``widget``, ``step``, ``format``, ``options``)."""

    name: str
    kind: str  # int, float, bool, choice, multi
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: list | None = None
    advanced: bool = False
    label: str = ""  # what a page shows ("frozen share of A and B"); the name stays the URL / CLI key
    # --- widget hints (pages draw from these; explorer/ never imports streamlit) ---
    # slider, select_slider, number, toggle, radio, select, multiselect; "" = from the kind
    widget: str = ""
    step: float | None = None
    format: str = ""  # printf-style format of a slider's value ("%.3f")
    model_types: bool = False  # multi: the choices are the layer types the loaded model has
    options: Callable[["KnobContext"], "Widget"] | None = None  # options that depend on the model / other knobs
    locked: Callable[[dict], Any] | None = None  # values -> the value this knob is held at (None: free)

    @property
    def shown(self) -> str:
        """The human label (the name when none is set)."""
        return self.label or self.name.replace("_", " ")

    @property
    def widget_kind(self) -> str:
        """The widget to draw: ``widget`` when set, else the plain one for the kind."""
        if self.widget:
            return self.widget
        if self.kind == "bool":
            return "toggle"
        if self.kind == "choice":
            return "radio" if len(self.choices or ()) <= 5 else "select"
        if self.kind == "multi":
            return "multiselect"
        return "number"

    def url_field(self, prefix: str = ""):
        """The whitelisted URL field of this knob (``explorer.urlstate.Field``), named ``prefix + name``."""
        from explorer.urlstate import Field

        name = prefix + self.name
        if self.kind == "int":
            return Field(name, "int", int(self.default), min=self.min, max=self.max, help=self.help)
        if self.kind == "float":
            return Field(name, "float", float(self.default), min=self.min, max=self.max, help=self.help)
        if self.kind == "bool":
            return Field(name, "bool", bool(self.default), help=self.help)
        if self.kind == "choice":
            return Field(name, "choice", self.default, choices=tuple(self.choices), help=self.help)
        if self.kind == "multi":
            return Field(name, "multi", list(self.default), choices=tuple(self.choices), help=self.help)
        return Field(name, "str", str(self.default), help=self.help)  # pragma: no cover - every kind is above

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if not callable(v)}


def validate_knobs(knobs: list[Knob], values: dict, method: str) -> dict:
    """Known knobs only, typed and range-checked; unknown names are an error."""
    spec = {k.name: k for k in knobs}
    unknown = [k for k in values if k not in spec]
    if unknown:
        raise KnobError(f"{method}: unknown knob(s) {', '.join(map(str, unknown))}; known: {', '.join(spec)}")
    out = {}
    for k in knobs:
        v = values.get(k.name, k.default)
        if v is None:  # None means "the default" (no knob has None as a valid value)
            v = k.default
        if v is None:
            out[k.name] = None
            continue
        try:
            if k.kind == "int":
                if isinstance(v, float) and not float(v).is_integer():
                    raise ValueError
                v = int(v)
            elif k.kind == "float":
                v = float(v)
                if v != v or v in (float("inf"), float("-inf")):
                    raise ValueError
            elif k.kind == "bool":
                if isinstance(v, str):
                    if v.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    v = v.lower() in ("1", "true", "yes", "on")
                else:
                    v = bool(v)
            elif k.kind == "choice":
                v = str(v)
                if v not in k.choices:
                    raise KnobError(f"{method}: {k.name} must be one of {', '.join(map(str, k.choices))} (got '{v[:40]}')")
            elif k.kind == "multi":
                if isinstance(v, str):
                    v = [s.strip() for s in v.split(",") if s.strip()]
                v = [str(s) for s in v]
                if k.choices:
                    bad = [s for s in v if s not in k.choices]
                    if bad:
                        raise KnobError(f"{method}: {k.name} has unknown value(s) {', '.join(bad)[:80]}; "
                                        f"choose from {', '.join(k.choices)}")
                if not v:
                    raise KnobError(f"{method}: {k.name} needs at least one value")
        except KnobError:
            raise
        except (TypeError, ValueError, OverflowError):
            raise KnobError(f"{method}: {k.name} must be a {k.kind} (got '{str(v)[:40]}')") from None
        if k.kind in ("int", "float"):
            if k.min is not None and v < k.min:
                raise KnobError(f"{method}: {k.name} must be >= {k.min} (got {v})")
            if k.max is not None and v > k.max:
                raise KnobError(f"{method}: {k.name} must be <= {k.max} (got {v})")
        out[k.name] = v
    return out


@dataclass
class Layout:
    """What can change in one target weight W (d_out x d_in)."""

    target: str
    type: str
    layer: int
    shape: tuple[int, int]
    kind: str  # dense, lowrank, entries, blocks, tied
    trainable: int  # trainable parameters attributed to this target
    changeable: int  # entries of W that training can change
    detail: dict = field(default_factory=dict)
    _mask: Any = None  # callable -> bool ndarray (d_out, d_in)

    def mask(self) -> np.ndarray:
        if self._mask is None:
            return np.ones(self.shape, dtype=bool)
        return self._mask()

    def to_dict(self):
        return dict(target=self.target, type=self.type, layer=self.layer, shape=list(self.shape), kind=self.kind,
                    trainable=int(self.trainable), changeable=int(self.changeable),
                    detail={k: v for k, v in self.detail.items() if isinstance(v, (int, float, str, bool, list))})


def unique_params(named):
    seen, out = set(), []
    for n, p in named:
        if id(p) in seen:
            continue
        seen.add(id(p))
        out.append((n, p))
    return out


class Adapter:
    """Base class: a method applied to one model."""

    method: str = ""
    needs_warmup: bool = False  # True while the method must still select what trains from a warm-up (SMT)
    warmup_moves_weights: bool = False  # the warm-up is full fine-tuning (its state is kept for the merge)
    saves_whole_model: bool = False  # the saved file holds every weight (full fine-tuning)
    delta_granule: int = 1  # ΔW's nonzero pattern comes in squares of this side (SMT: its block size)

    def __init__(self, model: nn.Module, knobs: dict, n_base: int):
        self.model = model
        self.knobs = knobs
        self.n_base = int(n_base)  # parameters of the unadapted model
        self.notes: list[str] = []  # shown on screen: defaults, approximations, deviations
        self.targets: list[Target] = []

    # --- trainable tensors -------------------------------------------------
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return unique_params((n, p) for n, p in self.model.named_parameters(remove_duplicate=False)
                             if p.requires_grad)

    def num_trainable(self) -> int:
        return sum(p.numel() for _, p in self.trainable_parameters())

    def num_total(self) -> int:
        return self.n_base

    def head_parameters(self) -> int:
        n = 0
        for name in head_module_names(self.model):
            n += sum(p.numel() for p in getattr(self.model, name).parameters())
        return n

    def layouts(self) -> list[Layout]:
        raise NotImplementedError

    def analytic_bytes(self) -> int:
        """Tensor bytes ``save()`` would write, from the shapes alone (config-only models on the meta device):
        the tensors ``state_tensors()`` names, or the trainable ones when it has none of its own (peft)."""
        try:
            tensors = list(self.state_tensors().values())
        except NotImplementedError:
            return sum(p.numel() * p.element_size() for _, p in self.trainable_parameters())
        return sum(t.numel() * t.element_size() for t in tensors)

    def meta_note(self) -> str:
        """What this method cannot show on a config-only model ("" when it shows everything)."""
        return ""

    def warmup_signature(self) -> tuple:
        """What a warm-up's summed gradients depend on besides model, data and seed (methods with a warm-up)."""
        return ()

    def shortcut_note(self, batches: int, task: str) -> str:
        """Said when a page selected from a short gradient-only warm-up (methods with a warm-up)."""
        return ""

    def summary(self) -> dict:
        n = self.num_trainable()
        return dict(method=self.method, knobs=self.knobs, total_params=self.n_base, trainable_params=n,
                    trainable_fraction=n / max(1, self.n_base), notes=list(self.notes),
                    targets=[lay.to_dict() for lay in self.layouts()])

    # --- hooks for the training loop -----------------------------------------
    def takes_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        """Whether AdamW's weight decay applies to this trainable tensor (default: matrices yes, vectors no)."""
        return param.dim() >= 2

    def lr_scale(self, name: str, param: nn.Parameter) -> float:
        """Factor on the run's learning rate for this trainable tensor (default 1: one rate for all)."""
        return 1.0

    def on_step_end(self, optimizer) -> None:
        """Called after every optimizer step (LoRA-SP's per-step masks use it)."""

    # --- persistence ---------------------------------------------------------
    state_names: tuple[str, ...] = ()  # the tensors each of state_parts() saves, by attribute name

    def state_parts(self) -> dict[str, nn.Module]:
        """The modules whose ``state_names`` tensors are saved, by the key their saved names start with."""
        return self.modules

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The new head's tensors, then ``<key>.<name>`` for each part and each of ``state_names`` (a method with
        no ``state_names`` writes its own, or saves in a library's format)."""
        if not self.state_names:
            raise NotImplementedError
        out = head_state(self.model)
        for key, part in self.state_parts().items():
            for name in self.state_names:
                out[f"{key}.{name}"] = getattr(part, name).detach()
        return out

    def prepare_load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Before :meth:`load_state_tensors` copies the tensors in: rebuild what the saved ones decide (which
        entries or blocks train)."""

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy what :meth:`state_tensors` named back in (a missing name is a KeyError)."""
        if not self.state_names:
            raise NotImplementedError
        self.prepare_load(tensors)
        load_head_state(self.model, tensors)
        with torch.no_grad():
            for key, part in self.state_parts().items():
                for name in self.state_names:
                    getattr(part, name).copy_(tensors[f"{key}.{name}"])

    def config(self) -> dict:
        return dict(method=self.method, knobs=self.knobs, n_base=self.n_base, format_version=1)

    def save(self, folder) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_tensors().items()}
        save_file(tensors, str(folder / "adapter.safetensors"), metadata={"method": self.method})
        (folder / "explorer_adapter.json").write_text(json.dumps(self.config(), indent=2, default=str))
        return folder

    def load(self, folder) -> None:
        """Load what :meth:`save` wrote into ``folder`` (the tensors of :meth:`state_tensors`)."""
        from safetensors.torch import load_file

        self.load_state_tensors(load_file(str(Path(folder) / "adapter.safetensors")))

    # --- merging ----------------------------------------------------------------
    def merge_into_model(self) -> nn.Module:
        """Merge in place and return the plain model (the adapter is spent).

        The default swaps every adapted target module for ``module.to_linear()`` (a frozen
        ``nn.Linear`` holding original + update, computed from the untouched original)."""
        from explorer.targets import set_submodule

        for t in self.targets:
            mod = self.model.get_submodule(t.name)
            if hasattr(mod, "to_linear"):
                set_submodule(self.model, t.name, mod.to_linear())
        if hasattr(self, "modules"):
            self.modules = {}
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self.model

    def merged_model(self) -> nn.Module:
        """A merged copy; this adapter stays usable."""
        clone = copy.deepcopy(self)
        return clone.merge_into_model()


class AdaptedLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus a method's update ``delta_weight()``; it reads as the base layer
    (``weight``, ``bias``) and merges into a plain one (``to_linear``: original + update, in fp32, then cast)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base

    @property
    def weight(self):
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def to_linear(self) -> nn.Linear:
        return linear_from(self.base, self.base.weight.float() + self.delta_weight().float())


def sparse_head_setup(model: nn.Module) -> None:
    """The new classification head trains fully (SpaRTA's paper; every PEFT method here)."""
    for name in head_module_names(model):
        for p in getattr(model, name).parameters():
            p.requires_grad_(True)


def head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name in head_module_names(model):
        for pn, p in getattr(model, name).named_parameters():
            out[f"head.{name}.{pn}"] = p.detach()
    return out


def load_head_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    for key, val in tensors.items():
        if not key.startswith("head."):
            continue
        _, name, pn = key.split(".", 2)
        mod = getattr(model, name)
        with torch.no_grad():
            mod.get_parameter(pn).copy_(val)


def resolve_targets(model: nn.Module, types, method: str) -> list[Target]:
    targets = find_targets(model, list(types))
    if not targets and any(type(m).__name__ == "Conv1D" for m in model.modules()):
        raise KnobError(f"{method}: this model (GPT-2 style) builds its blocks from Conv1D layers (c_attn fuses "
                        "q, k and v), which the PEFT methods here do not target; only full fine-tuning applies")
    if not targets:
        from explorer.targets import available_types

        raise KnobError(f"{method}: no linear layers of type(s) {', '.join(types)} in this model; "
                        f"it has {', '.join(available_types(model)) or 'none'}")
    return targets
