"""The claims lab's experiments, defined in code: one :class:`Experiment` per paper's headline claim.

Everything a run needs is here (model, task, methods and knobs per arm, steps, batch, seeds, the tests
and their rules); :mod:`explorer.claims.runner` runs them and :mod:`explorer.claims.analysis` turns the
per-seed numbers into verdicts.  Pure Python (no Streamlit).

Why these settings (measured with short exploratory runs on this 2-core CPU machine, December 2026):

- ``minilm`` (all-MiniLM-L6-v2, pretrained, 22.7 M parameters): the only bundled pretrained model that
  trains in seconds on a CPU (``smollm2-135m`` is about 6x slower per step; ``tiny-bert`` has random
  weights, so "keeps the pretrained model's accuracy" means nothing there).
- ``bbc-news`` (5-way topic of a real news sentence): a real task whose accuracy rises over tens of
  steps, so methods separate by how much they learn in a short budget instead of jumping from 50 % to
  100 % at a seed-dependent step (the synthetic ``colour-shape`` tasks do that: their final accuracy is
  nearly binary, which makes 3-seed intervals useless).  LoRA (rank 8, q and v) measured 0.79 / 0.93 /
  0.91 held-out accuracy at 20 / 40 / 60 steps (exploration at max length 32, batch 16, seed 0): below
  the ceiling, so there is room to differ.
- ``STEPS`` = 60, batch 16 (960 sentences, about half an epoch), up to 64 tokens (the Fine-tune page's
  length; the sentences have 28 tokens on average, 55 at most): LoRA has levelled off by then (0.93 at
  40 steps, 0.91 at 60 in the exploration), LoRA-SP 0.86 -> 0.90, TL6 0.92 -> 0.92, SpaRTA (5 % of Wv/Wo)
  0.91 -> 0.91, so the test is near the methods' plateau rather than of how fast they start.  About
  30-120 s per run on the shared CPU; the suite (39 distinct runs) in about an hour.  Evaluation on 200
  held-out sentences, as the Fine-tune page does, so a link from a card reproduces a run and its figure.
- Every method at the project's default learning rate (``explorer.engine.config.default_lr``): no per-method
  tuning, which a paper would do; said in the caveats.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

MODEL = "minilm"
TASK = "bbc-news"
STEPS = 60
BATCH = 16
MAX_LEN = 64  # the Fine-tune page's length, so its links reproduce a run exactly
SEEDS = (0, 1, 2, 3, 4)  # 3 gave intervals of +-2 to +-7 points (every claim inconclusive): 5 for every arm
EVAL_EXAMPLES = 200  # as the Fine-tune page: its links then reproduce a run and its figure exactly

# minilm shapes (read from its config: 6 layers, hidden 384): the budgets below are computed from them
LAYERS, HIDDEN = 6, 384


@dataclass(frozen=True)
class Size:
    name: str
    steps: int
    seeds: tuple
    eval_examples: int | None
    max_len: int


SIZES = {
    "full": Size("full", STEPS, SEEDS, EVAL_EXAMPLES, MAX_LEN),
    # the quick size checks the machinery end to end (a few steps: the verdicts mean nothing)
    "quick": Size("quick", 3, SEEDS[:3], 32, 16),
}


@dataclass
class Arm:
    key: str
    label: str
    method: str
    knobs: dict = field(default_factory=dict)
    lr: float | None = None  # None: the project's default rate for the method
    budget: int | None = None  # intended adapter parameters (without the head), for the x axis / the rule
    group: str = ""  # series name on the chart (arms of one method at several budgets share it)


@dataclass
class Test:
    """One part of a claim: a rule applied to the per-seed results of arms ``a`` (reference) and ``b``."""

    key: str
    label: str
    kind: str  # noninferior, superior, rising, above
    a: str | tuple = ""  # arm key (or a group name for "rising")
    b: str | tuple = ""
    metric: str = "accuracy"  # or "v_share" (SMT: the share of selected blocks in the value matrices)
    delta: float | None = None
    level: float | None = None


@dataclass
class Experiment:
    name: str
    title: str
    claim: str  # the claim in one sentence
    source: str
    paper_figure: str  # the paper's own number, as the paper states it
    why: str  # why this setting
    arms: list[Arm]
    tests: list[Test]
    caveats: list[str]
    x: str = "adapter_params"  # x axis of the chart
    model: str = MODEL
    task: str = TASK
    batch_size: int = BATCH

    def arm(self, key: str) -> Arm:
        return next(a for a in self.arms if a.key == key)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- budgets from the shapes


def lora_params(rank: int, n_targets_per_layer: int, layers: int = LAYERS, d: int = HIDDEN) -> int:
    return rank * (d + d) * n_targets_per_layer * layers


QV = ["q", "v"]
QKV = ["q", "k", "v"]
SMT_BLOCK = 32  # 384 = 12 x 32: fine enough to match LoRA's budgets to within one block
LORA_RANKS = (8, 32)  # the middle budget (rank 8) and 4x it, where the paper says LoRA plateaus
SPARTA_TARGET_ENTRIES = 2 * HIDDEN * HIDDEN * LAYERS  # Wv and Wo (or Wq and Wk): 1,769,472 entries


def tl6_params(rank: int, layers: int = LAYERS, d: int = HIDDEN) -> int:
    """Tied-LoRA TL6 on fused q, k, v (METHODS.md): A (r x d) and B (3d x r) once, u (r) and v (3d) per layer."""
    return 4 * d * rank + layers * (rank + 3 * d)


def _lora(rank: int, targets=QV, method: str = "lora", **extra) -> Arm:
    from explorer.methods import METHODS

    info = METHODS[method]
    label = info.label
    budget = lora_params(rank, len(targets))
    if info.knob("freeze") is not None:  # LoRA-SP: the frozen share of A and B does not train
        budget = int(budget * (1.0 - float(extra.get("freeze", info.knob("freeze").default))))
    knobs = dict(rank=rank, targets=list(targets), **extra)
    return Arm(key=f"{method}-r{rank}-{''.join(targets)}", label=f"{label} r={rank} ({','.join(targets)})",
               method=method, knobs=knobs, budget=budget, group=label)


def _smt(budget: int) -> Arm:
    blocks = max(1, round(budget / SMT_BLOCK ** 2))
    return Arm(key=f"smt-{blocks}b", label=f"SMT {blocks} blocks of {SMT_BLOCK}x{SMT_BLOCK} (q,k,v)", method="smt",
               knobs=dict(targets=QKV, block_size=SMT_BLOCK, blocks=blocks, warmup_steps=STEPS // 4,
                          warmup_mode="full"),
               budget=blocks * SMT_BLOCK ** 2, group="SMT")


def _sparta(targets, budget: int) -> Arm:
    density = round(budget / SPARTA_TARGET_ENTRIES, 6)
    return Arm(key=f"sparta-{''.join(targets)}", label=f"SpaRTA density {density:.2%} of W{'/W'.join(targets)}",
               method="sparta", knobs=dict(targets=list(targets), density=density), budget=budget,
               group=f"SpaRTA ({','.join(targets)})")


# ----------------------------------------------------------------------------- the four claims

_SCALE = ("Scale: minilm has 22.7 M parameters and 6 layers (the papers use models of billions of parameters); "
          "{steps} steps of batch {batch} on one real 5-way topic task (bbc-news, first sentence of an article), "
          "{seeds} seeds per arm, evaluated on {evals} held-out sentences, "
          "every method at this project's default learning rate (the papers tune them).")


def _caveats(*extra: str) -> list[str]:
    return [_SCALE.format(steps=STEPS, batch=BATCH, seeds=len(SEEDS), evals=EVAL_EXAMPLES), *extra]


def _experiments() -> list[Experiment]:
    r8 = _lora(8)
    lora_budget = r8.budget  # 73,728: LoRA rank 8 on Wq and Wv of minilm
    out = [
        Experiment(
            name="lora-sp",
            title="LoRA-SP: half of LoRA's parameters, same accuracy",
            claim=("Freezing a random half of the entries of LoRA's A and B keeps LoRA's accuracy with about half "
                   "the trainable parameters and optimizer memory."),
            source="LoRA-SP, arXiv 2403.08822",
            paper_figure=("The paper reports accuracy comparable to LoRA while training about half of LoRA's "
                          "parameters (freeze ratio 0.5), with the optimizer memory that goes with them."),
            why=("LoRA rank 8 on q and v (the project's default) against LoRA-SP at the same rank with the paper's "
                 "freeze ratio 0.5."),
            arms=[r8, _lora(8, method="lora-sp", freeze=0.5)],
            tests=[Test("keeps", "LoRA-SP r=8 keeps LoRA r=8's accuracy (within 2 points)", "noninferior",
                        a=r8.key, b="lora-sp-r8-qv", delta=0.02)],
            caveats=_caveats("LoRA-SP has no public code: the project freezes one fixed, seeded Bernoulli mask per "
                             "matrix (labelled on every page).",
                             "The half-parameter part is structural (counted, not tested): trainable counts and "
                             "AdamW state are exactly proportional to the unfrozen entries."),
        ),
        Experiment(
            name="tied-lora",
            title="Tied-LoRA: TL6 close to LoRA with a fraction of its parameters",
            claim=("TL6 (one A and one B shared by all layers, per-layer scaling vectors u and v, all trained) "
                   "comes close to LoRA with about 12.5 % of its parameters, and is the best of the tied "
                   "combinations."),
            source="Tied-LoRA, arXiv 2311.09578",
            paper_figure=("LLaMA-2-7B, rank 8: TL6 trains 12.5 % of LoRA's parameters (the abstract rounds it to "
                          "13 %) and performs comparably to LoRA across the paper's tasks; TL6 is the paper's best "
                          "tied combination."),
            why=("All arms on q, k and v fused as in the paper, rank 8: LoRA (vBuA, untied), TL6, TL5 and the "
                 "VeRA-like combination."),
            arms=[_lora(8, QKV),
                  Arm("tl6", "Tied-LoRA TL6 r=8 (q,k,v)", "tied-lora", dict(preset="TL6", rank=8, targets=QKV),
                      group="TL6"),
                  Arm("tl5", "Tied-LoRA TL5 r=8 (q,k,v)", "tied-lora", dict(preset="TL5", rank=8, targets=QKV),
                      group="TL5"),
                  Arm("vera", "Tied-LoRA VeRA-like r=8 (q,k,v)", "tied-lora",
                      dict(preset="VeRA-like", rank=8, targets=QKV), group="VeRA-like")],
            tests=[Test("close", "TL6 comes close to LoRA (within 2 points)", "noninferior", a="lora-r8-qkv", b="tl6",
                        delta=0.02),
                   Test("over-tl5", "TL6 beats TL5", "superior", a="tl5", b="tl6"),
                   Test("over-vera", "TL6 beats the VeRA-like combination", "superior", a="vera", b="tl6")],
            caveats=_caveats("minilm has separate q, k, v projections: they are fused for sharing as in the paper; "
                             f"with {LAYERS} layers (not 32) tying saves less: TL6 is {tl6_params(8) / lora_params(8, 3):.1%} "
                             "of LoRA's parameters here (4dr + L(r + 3d) against 3 x 2dr x L; the measured counts are "
                             "in the table)."),
        ),
        Experiment(
            name="smt",
            title="SMT: beats LoRA and DoRA at equal budget and keeps rising",
            claim=("At an equal trainable budget SMT beats LoRA and DoRA, its accuracy keeps rising with the budget "
                   "where LoRA's plateaus, and its selected blocks concentrate in the attention value matrices."),
            source="SMT (Sparse Matrix Tuning), arXiv 2405.15525",
            paper_figure=("LLaMA-family models: SMT above LoRA and DoRA at equal parameter counts (on Llama-2-7B, 890 "
                          "blocks of 256 x 256 = 0.86 % of the parameters); LoRA and DoRA plateau as the trainable "
                          "count grows while SMT keeps improving; the V matrices carry most of the selected blocks."),
            why=("Budgets of LoRA ranks 8 and 32 on q and v (73,728 / 294,912 parameters); SMT gets the "
                 f"same count as {SMT_BLOCK}x{SMT_BLOCK} blocks on q, k, v (its default targets); DoRA rank 8 at the "
                 "middle budget. SMT's warm-up is a quarter of the steps, in the step budget."),
            arms=[*(_lora(r) for r in LORA_RANKS), *(_smt(lora_params(r, 2)) for r in LORA_RANKS),
                  _lora(8, method="dora")],
            tests=[Test("over-lora", "SMT beats LoRA at the middle budget (73,728)", "superior", a=r8.key,
                        b=_smt(lora_budget).key),
                   Test("over-dora", "SMT beats DoRA at the middle budget", "superior", a="dora-r8-qv",
                        b=_smt(lora_budget).key),
                   Test("rising", "SMT keeps rising with the budget where LoRA plateaus", "rising", a="LoRA",
                        b="SMT"),
                   Test("v-share", "Selected blocks concentrate in V (share above an even 1/3)", "above",
                        a="", b=_smt(lora_budget).key, metric="v_share", level=1 / 3)],
            caveats=_caveats(f"SMT's warm-up ({STEPS // 4} of {STEPS} steps) is full fine-tuning, as in the public "
                             "code: every weight moves then, which LoRA and DoRA do not get.",
                             f"Block size {SMT_BLOCK} (the paper's 256 does not divide minilm's 384).",
                             f"DoRA rank 8 trains {HIDDEN * 2 * LAYERS:,} more parameters than LoRA rank 8 (its "
                             "magnitude vectors, one per output row of each target)."),
        ),
        Experiment(
            name="sparta",
            title="SpaRTA: random sparse entries of Wv/Wo compete with LoRA",
            claim=("Training a random sparse subset of the entries of Wv and Wo competes with LoRA at the same "
                   "trainable count, and Wv/Wo is a better place for the budget than other matrices."),
            source="SpaRTA, arXiv 2502.15975",
            paper_figure=("SpaRTA is competitive with LoRA at similar trainable counts, and does best when its "
                          "budget is concentrated on Wv and Wo."),
            why=("SpaRTA with the density in Wv/Wo set so that it trains exactly LoRA rank 8's count on q and v "
                 f"({lora_budget:,}); the same count in Wq/Wk for the placement part. Arms are defined by "
                 "explicit density in the target matrices, so they do not depend on how the sparsity knob "
                 "counts the classification head."),
            arms=[r8, _sparta(["v", "o"], lora_budget), _sparta(["q", "k"], lora_budget)],
            tests=[Test("competes", "SpaRTA (Wv/Wo) competes with LoRA (within 2 points)", "noninferior", a=r8.key,
                        b="sparta-vo", delta=0.02),
                   Test("placement", "Wv/Wo beats Wq/Wk at the same count", "superior", a="sparta-qk", b="sparta-vo")],
            caveats=_caveats(f"Density is of the target matrices ({lora_budget / SPARTA_TARGET_ENTRIES:.2%} of Wv and "
                             "Wo), not the paper's sparsity of all parameters; the classification head trains fully in "
                             "every arm of every claim and is left out of the counts."),
        ),
    ]
    return out


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _experiments()}
NAMES = list(EXPERIMENTS)


def get(name: str) -> Experiment:
    from explorer.errors import DataError

    if name not in EXPERIMENTS:
        raise DataError(f"unknown claim '{name}': choose one of {', '.join(NAMES)}")
    return copy.deepcopy(EXPERIMENTS[name])


def size(name: str) -> Size:
    from explorer.errors import DataError

    if name not in SIZES:
        raise DataError(f"unknown size '{name}': choose one of {', '.join(SIZES)}")
    return SIZES[name]


def from_dict(d: dict) -> Experiment:
    """An Experiment back from a results file's ``experiment`` (what was really run)."""
    d = dict(d)
    d["arms"] = [Arm(**a) for a in d.get("arms", [])]
    d["tests"] = [Test(**t) for t in d.get("tests", [])]
    return Experiment(**d)


def size_from_settings(settings: dict, name: str = "full") -> Size:
    """The Size a results file was made with (its ``settings``)."""
    return Size(name, int(settings["steps"]), tuple(settings["seeds"]), settings.get("eval_examples"),
                int(settings["max_len"]))


def arm_config_kwargs(exp: Experiment, arm: Arm, seed: int, sz: Size) -> dict:
    """The keyword arguments of the TrainConfig of one (arm, seed) run."""
    knobs = dict(arm.knobs)
    knobs["seed"] = int(seed)  # masks / init / tie-breaks differ per seed, like the data order and the head
    from explorer.methods import METHODS

    if METHODS[arm.method].has_warmup:  # SMT: a quarter of the steps pick the blocks
        knobs["warmup_steps"] = max(1, sz.steps // 4)
    return dict(model=exp.model, task=exp.task, method=arm.method, knobs=knobs, steps=sz.steps, lr=arm.lr,
                batch_size=exp.batch_size, max_len=sz.max_len, seed=int(seed), eval_every=0,
                eval_examples=sz.eval_examples, measure_memory=False, device="cpu")
