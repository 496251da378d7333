"""Named presets for lessons: each is a full set of URL values for one page.

A preset is applied by writing ``preset.values`` into the page's URL (through the
page's :class:`explorer.urlstate.Schema`, so a preset is clamped like any link);
``preset.url(base)`` gives a shareable link.  Presets that compare two methods
fill both sides of the playground (``m1``/``a_*`` and ``m2``/``b_*``).

Playground URL keys (see ``explorer.playground.page_schema``): ``model``, ``m1``
and ``m2`` (methods; ``m2=none`` shows one), ``a_<knob>`` and ``b_<knob>`` (the
knobs of each side), ``wt`` (matrix type drawn), ``layer`` (its layer), ``warm``
(SMT warm-up batches); ``instr`` (instructor mode) is
shared by every page (``ui_common.instructor_mode``).  Other pages may add their own
presets with their own ``page`` name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode


@dataclass(frozen=True)
class Preset:
    name: str
    page: str  # "playground", ... (the page whose schema reads the values)
    lesson: str  # one or two sentences: what to look at
    values: dict = field(default_factory=dict)

    def url(self, base: str = "") -> str:
        return base + "?" + urlencode({k: _enc(v) for k, v in self.values.items()})


def _enc(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


_PG = "playground"

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("LoRA rank 1 vs 64", _PG,
           "The same LoRA on q and v at rank 1 and at rank 64: the trainable count grows linearly with r, "
           "while the update B A can reach rank r at most.",
           dict(model="minilm", m1="lora", m2="lora", wt="v", layer=0,
                a_rank=1, a_alpha=2.0, a_targets="q,v", a_seed=0,
                b_rank=64, b_alpha=128.0, b_targets="q,v", b_seed=0)),
    Preset("LoRA-SP vs LoRA", _PG,
           "LoRA-SP freezes a random half of the entries of A and B: about half of LoRA's trainable count "
           "at the same rank; the frozen entries are drawn in the masks.",
           dict(model="minilm", m1="lora-sp", m2="lora", wt="v", layer=0,
                a_rank=8, a_alpha=16.0, a_targets="q,v", a_freeze=0.5, a_seed=0, a_mask_mode="fixed",
                b_rank=8, b_alpha=16.0, b_targets="q,v", b_seed=0)),
    Preset("TL6 vs LoRA", _PG,
           "Tied-LoRA TL6 shares one A and one B across all layers and trains small per-layer vectors u and v: "
           "compare its count with plain LoRA on the same q, k, v targets at the same rank.",
           dict(model="minilm", m1="tied-lora", m2="lora", wt="q", layer=0,
                a_preset="TL6", a_rank=8, a_alpha=16.0, a_targets="q,k,v", a_seed=0,
                b_rank=8, b_alpha=16.0, b_targets="q,k,v", b_seed=0)),
    Preset("SMT top 1% blocks", _PG,
           "SMT keeps the top 1 % of the blocks of q, k, v by the warm-up gradient (density 0.01 of the "
           "target matrices); the picture shows which blocks won.",
           dict(model="minilm", m1="smt", m2="none", wt="v", layer=0, warm=2,
                a_targets="q,k,v", a_block_size=0, a_blocks=0, a_density=0.01, a_score="abs-mean",
                a_selection="global", a_seed=0)),
    Preset("SpaRTA on Wv/Wo", _PG,
           "SpaRTA trains random single entries of the attention value and output matrices; sparsity 0.99 "
           "keeps 1 % of ALL parameters, so the density inside Wv and Wo is much higher.",
           dict(model="minilm", m1="sparta", m2="none", wt="v", layer=0,
                a_targets="v,o", a_sparsity=0.99, a_density=0.0, a_seed=0)),
]}


def for_page(page: str) -> dict[str, Preset]:
    return {k: p for k, p in PRESETS.items() if p.page == page}
