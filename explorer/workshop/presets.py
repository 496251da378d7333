"""Named presets for lessons: each is a full set of URL values for one page.

A preset is applied by writing ``preset.values`` into the page's URL (through the
page's :class:`explorer.urlstate.Schema`, so a preset is clamped like any link);
``preset.url(base)`` gives a shareable link.  Presets that compare two methods
fill both sides of the playground (``m1``/``a_*`` and ``m2``/``b_*``).

Playground URL keys (see ``explorer.views.playground.page_schema``): ``model``, ``m1``
and ``m2`` (methods; ``m2=none`` shows one), ``a_<knob>`` and ``b_<knob>`` (the
knobs of each side), ``wt`` (matrix type drawn), ``layer`` (its layer), ``warm``
(SMT warm-up batches); ``instr`` (instructor mode) is
shared by every page (``ui.modes.instructor_mode``).

Fine-tune URL keys (``pages/2_Fine_tune.py``): ``model``, ``src``, ``task``, ``method``, ``steps``,
``lr``, ``bs``, ``seed`` and the method's knobs as ``k_<knob>``.  A preset replaces the whole URL, so
every setting it does not name takes its default: the page then shows, and Start runs, exactly
the preset.  Compare presets carry ``runs``: one button queues them all, and they run one after the
other (a comparison runs both methods).  Every Fine-tune and Compare preset's model and task were chosen so the run visibly learns,
measured on 2 CPU cores (held-out accuracy at step 0 -> at the end): LoRA on colour-shape-easy, 60 steps,
0.575 -> 0.88; SMT on colour-shape, 150 steps with a 40-step warm-up, 0.535 -> 0.945; LoRA on colour-shape,
150 steps, 0.535 -> 0.975 (``benchmarks/default_run.py``); Tied-LoRA TL6 on bbc-news reaches 0.90 after 60
steps in the claims lab (``assets/claims/tied-lora.json``); full fine-tuning on colour-shape: 0.99 at step 100
and 1.00 at 150 (the per-method curve in the README, measured in an earlier session).  The room demo ``DEMO``
(LoRA at lr 5e-3, 50 steps on colour-shape-easy) is measured as the page runs it, three seeds, wall time with the
load average, by ``benchmarks/demo_preset.py`` (``benchmarks/results/demo_preset.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode


@dataclass(frozen=True)
class Preset:
    name: str
    page: str  # "playground", "finetune", "compare", ... (the page whose schema reads the values)
    lesson: str  # one or two sentences: what to look at
    values: dict = field(default_factory=dict)
    # Compare: the runs the lesson queues (one after the other), each a dict of ``TrainConfig`` fields
    runs: tuple = ()

    def url(self, base: str = "") -> str:
        return base + "?" + urlencode({k: _enc(v) for k, v in self.values.items()})


def _enc(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


# SMT's warm-up in the lessons (its preset, the Compare lesson, a hand-off from the block inspector): 40 full
# fine-tuning steps of the 150-step budget (benchmarks/results/smt_handoff.md)
SMT_LESSON_WARMUP = 40
DEMO = "Room demo: LoRA on minilm (colour-shape-easy, 50 steps)"  # benchmarks/demo_preset.py measures it
# what the room demonstration promises (benchmarks/demo_preset.py measures it against these; its test reads them)
DEMO_TARGET_ACC, DEMO_TARGET_S = 0.75, 30.0
_PG = "playground"
_FT = "finetune"
_CMP = "compare"

PRESETS: dict[str, Preset] = {p.name: p for p in [
    # ------------------------------------------------------------------ Methods playground
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
           "target matrices); the page opens on the matrix that holds the most selected blocks.",
           dict(model="minilm", m1="smt", m2="none", wt="v", layer=0, warm=2,
                a_targets="q,k,v", a_block_size=0, a_blocks=0, a_density=0.01, a_score="abs-mean",
                a_selection="global", a_seed=0)),
    Preset("SpaRTA on Wv/Wo", _PG,
           "SpaRTA trains random single entries of the attention value and output matrices; sparsity 0.99 "
           "keeps 1 % of ALL parameters, so the density inside Wv and Wo is much higher.",
           dict(model="minilm", m1="sparta", m2="none", wt="v", layer=0,
                a_targets="v,o", a_sparsity=0.99, a_density=0.0, a_seed=0)),
    # ------------------------------------------------------------------ Fine-tune (one run each)
    Preset(DEMO, _FT,
           "A short demonstration for a room: LoRA r=8 on q and v of the pretrained minilm, at a higher learning "
           "rate (5e-3) than LoRA's default, learns the easy colour-shape rule in 50 steps: watch the held-out "
           "accuracy climb from about 50 %. Measured accuracy and wall time on 2 cores: "
           "benchmarks/results/demo_preset.md.",
           dict(model="minilm", src="built-in", task="colour-shape-easy", method="lora", steps=50, lr=5e-3,
                k_rank=8, k_alpha=16.0, k_targets="q,v")),
    Preset("Quick demo: LoRA on minilm (colour-shape-easy)", _FT,
           "LoRA r=8 on q and v of the pretrained minilm learns the easy colour-shape rule within 60 steps: "
           "watch the held-out accuracy leave 50 %.",
           dict(model="minilm", src="built-in", task="colour-shape-easy", method="lora", steps=60,
                k_rank=8, k_alpha=16.0, k_targets="q,v")),
    Preset("Tied-LoRA TL6 on minilm (bbc-news)", _FT,
           "Tied-LoRA TL6 (one A and B for all layers, per-layer u and v) learns the topic of real BBC News "
           "sentences: compare its trainable count, shown when the run starts, with LoRA's at the same rank.",
           dict(model="minilm", src="built-in", task="bbc-news", method="tied-lora", steps=100,
                k_preset="TL6", k_rank=8, k_alpha=16.0, k_targets="q,k,v")),
    Preset("SMT on minilm (colour-shape)", _FT,
           "SMT spends its first steps on a full fine-tuning warm-up, picks the blocks with the largest summed "
           "gradients, then trains only those: see the phases in the loss curve and the memory drop after it.",
           dict(model="minilm", src="built-in", task="colour-shape", method="smt", steps=150,
                k_targets="q,k,v", k_warmup_steps=SMT_LESSON_WARMUP)),
    Preset("Full fine-tuning on minilm (colour-shape)", _FT,
           "Every weight trains: the fastest learner here, and the largest gradients and optimizer state in the "
           "memory chart (compare with a LoRA run on Compare).",
           dict(model="minilm", src="built-in", task="colour-shape", method="full", steps=150)),
    # ------------------------------------------------------------------ Compare (several runs)
    Preset("LoRA vs SMT on minilm (colour-shape)", _CMP,
           "LoRA r=8 and SMT with its default 1 % budget, same task, steps and seed: one button queues both; "
           "they run one after the other and each joins the table and the charts when it ends.",
           dict(sw_model="minilm"),
           runs=(dict(model="minilm", task="colour-shape", method="lora", steps=150,
                      knobs=dict(rank=8, alpha=16.0, targets=["q", "v"])),
                 dict(model="minilm", task="colour-shape", method="smt", steps=150,
                      knobs=dict(targets=["q", "k", "v"], warmup_steps=SMT_LESSON_WARMUP)))),
]}


def for_page(page: str) -> dict[str, Preset]:
    return {k: p for k, p in PRESETS.items() if p.page == page}
