"""The method contract: the one object each method module declares, ``METHOD = Method(...)``.

Every fact a page, the command line, the memory calculator or a benchmark may ask of a method is a field here,
typed and documented once (its ``help``); the registry (``explorer.methods``) reads ``METHOD`` from each module
and names it.  Code outside ``explorer/methods/`` asks these fields and never branches on a method's name
(``tests/core/test_method_facts.py`` checks both).  Behaviour that needs a model lives on the method's ``Adapter``
subclass (``explorer.methods.base``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .base import Adapter, Knob


def fact(help_: str, **default) -> Any:
    """A field of the contract with its help text (``default=`` or ``default_factory=`` for an optional one)."""
    return field(metadata={"help": help_}, **default)


def _no_pictures(adapter) -> list:
    return []


def _no_fixed_knobs(warm: int) -> dict:
    return {}


def _never(knobs: dict) -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class Method:
    """Everything about one method that is known without a model (see each field's ``help``)."""

    # ----------------------------------------------------------------- what the pages say
    label: str = fact("its name on pages and in legends")
    short: str = fact("its name in narrow tables")
    description: str = fact("one sentence: what it does")
    what_trains: str = fact("what trains, for the Home table")
    paper: str = fact('"arXiv ..." or "baseline"')
    formula: str = fact("the trainable count in words")
    deviations: list[str] = fact("sentences: where the project departs from the paper or picks a default it "
                                 "leaves open (empty when none)", default_factory=list)
    # ----------------------------------------------------------------- training
    knobs: list[Knob] = fact("its knobs (``base.Knob``: type, range, widget hints; the URL field derives from "
                             "each)")
    default_lr: float = fact("the fine-tune learning rate when none is given")
    color_slot: int = fact("its colour on run charts: an index into ``explorer.views.figures.COLORS``, distinct "
                           "per method")
    apply: Callable[..., Adapter] = fact("``apply(model, knobs, n_base, selection=None) -> Adapter``: adapt the "
                                         "model in place (``selection``: see ``takes_selection``)")
    has_warmup: bool = fact("a warm-up phase (knob ``warmup_steps``) picks what trains", default=False)
    takes_selection: bool = fact("can train a selection handed over by the SMT block inspector instead of "
                                 "warming up", default=False)
    warmup_is_full_finetuning: Callable[[dict], bool] = fact(
        "``(knobs) -> bool``: with these knobs the warm-up phase costs what full fine-tuning costs (memory checks "
        "take its peak)", default=_never)
    # ----------------------------------------------------------------- what the playground draws
    formula_lines: Callable = fact("``(adapter, total, head) -> (lines, count)``: the formula with the real "
                                   "shapes, computed from shapes and knobs, not from the adapter's tensors "
                                   "(``facts.with_head`` adds the head line)")
    illustrative_delta: Callable = fact("``(adapter, target, generator) -> (ΔW, factors or None, sentence)``")
    matrix_pictures: Callable = fact("``(adapter, layout, warmup) -> list of facts.Picture``: what the playground "
                                     "draws for one matrix, with the sentence beside it")
    overview_pictures: Callable = fact("``(adapter) -> list of facts.Picture`` drawn before the matrix ones "
                                       "(Tied-LoRA's sharing diagram)", default=_no_pictures)
    playground_knobs: Callable[[int], dict] = fact("``(warm) -> knobs`` the playground fixes and hides (SMT's "
                                                   "gradient-only warm-up)", default=_no_fixed_knobs)
    playground_caption: str = fact("a caption above the playground's pictures; ``{warm}`` is filled in",
                                   default="")
    sweep_point: Callable | None = fact("``(rank, budget, geometry) -> (knobs, label)`` for a budget sweep matched "
                                        "to LoRA at that rank; None: not in budget sweeps", default=None)
    # ----------------------------------------------------------------- the memory calculator
    memory_plan: Callable = fact("``(spec, knobs) -> explorer.memory.plan.MemoryPlan``: the trainable count by "
                                 "part from a ``ModelSpec``'s shapes, frozen adapter floats, int32 index bytes and "
                                 "per target type a save rule (what the adapted layer keeps for backward)")
    settings_text: Callable[[dict], str] = fact("``(knobs) -> str``: one short line for a table row")
    memory_page_knobs: dict[str, str] = fact("the knobs the Memory calculator shows: knob name -> its address "
                                             "key", default_factory=dict)
    measure_knobs: dict = fact("knobs a quick memory measurement overrides (SMT's short warm-up)",
                               default_factory=dict)
    # ----------------------------------------------------------------- filled in by the registry
    name: str = fact("the registry's name (the URL and command-line value)", default="")

    @property
    def sweepable(self) -> bool:
        return self.sweep_point is not None

    def knob(self, name: str) -> Knob | None:
        return next((k for k in self.knobs if k.name == name), None)

    def to_dict(self) -> dict:
        return dict(name=self.name, label=self.label, short=self.short, description=self.description,
                    what_trains=self.what_trains, paper=self.paper, formula=self.formula,
                    default_lr=self.default_lr, deviations=list(self.deviations),
                    knobs=[k.to_dict() for k in self.knobs])
