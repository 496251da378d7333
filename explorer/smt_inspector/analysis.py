"""Where does SMT put its budget, and why: the analysis of a warm-up record (no Streamlit).

:func:`analyze` turns a :class:`explorer.smt_inspector.record.GradientRecord` into block scores, the
global / per-matrix top-n selection (``explorer.methods.smt_blocks.select_blocks``), shares per matrix type
and layer, the stability curve (Jaccard overlap of the selection after step t with the final one) and
overlaps with other choices of the same number of blocks.  Block size, budget, score, rule and types
are arguments: moving a slider never recomputes gradients.

The package ``explorer.smt_inspector``: ``record`` (the record), ``collect`` (the warm-up that makes it),
``cache`` (memory and disk caches), this module (scores, selection, analysis) and ``export``
(JSON and CSV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from explorer.methods.base import KnobError
from explorer.methods.smt_blocks import SCORE_LABELS, SCORES, block_scores, select_blocks, valid_block_sizes
from explorer.smt_inspector.cache import cached_analysis, remember_analysis
from explorer.smt_inspector.record import GradientRecord, default_grain, pick_targets
from explorer.targets import ALL_TYPES, Target, find_targets

RULES = ["global", "per-matrix"]


# ----------------------------------------------------------------------------- scoring


def _check_block_size(rec: GradientRecord, b, ts: list[Target]) -> int:
    try:
        b = int(b)
    except (TypeError, ValueError):
        raise KnobError(f"smt analysis: block size must be an integer (got {b!r})") from None
    ok = b > 0 and b % rec.grain == 0 and all(t.d_out % b == 0 and t.d_in % b == 0 for t in ts)
    if not ok:
        valid = [v for v in valid_block_sizes([(t.d_out, t.d_in) for t in ts], limit=4096) if v % rec.grain == 0]
        shapes = ", ".join(sorted({f"{t.d_out}x{t.d_in}" for t in ts}))
        raise KnobError(f"smt analysis: block size {b} must be a multiple of the stored grain {rec.grain} that "
                        f"divides every matrix ({shapes}); valid: {', '.join(map(str, valid)) or 'none'}")
    return b


def check_request(model, block_size: int | None = None, types=None, grain: int | None = None) -> list[Target]:
    """Validate types and block size against a model *before* a warm-up is spent; returns the chosen targets."""
    from types import SimpleNamespace

    targets = find_targets(model)
    if not targets:
        raise KnobError("smt analysis: this model has no attention or MLP linear layers to score")
    g = grain or default_grain([(t.d_out, t.d_in) for t in targets])
    probe = SimpleNamespace(targets=targets, grain=g,
                            types=lambda: list(dict.fromkeys(t.type for t in targets)))
    ts = pick_targets(probe, types)
    if block_size:
        _check_block_size(probe, block_size, ts)
    return ts


def _index(rec: GradientRecord) -> dict[str, int]:
    return {t.name: i for i, t in enumerate(rec.targets)}


def score_maps(rec: GradientRecord, block_size: int, score: str = "abs-mean", types=None,
               checkpoint: int = -1) -> dict[str, torch.Tensor]:
    """Block scores ``{target: (d_out/b, d_in/b) fp32}`` re-aggregated from the grain sums at one checkpoint.

    Equal (up to fp32 rounding) to ``block_scores(summed_gradient, b, score)``.
    """
    if score not in SCORES:
        raise KnobError(f"smt analysis: unknown score '{str(score)[:40]}'; choose from {', '.join(SCORES)}")
    ts = pick_targets(rec, types)
    b = _check_block_size(rec, block_size, ts)
    k = b // rec.grain
    idx = _index(rec)
    out = {}
    for t in ts:
        i = idx[t.name]
        if score == "abs-mean":  # |sum S| / b^2 ; block_scores(., k, abs-mean) = |sum of grain sums| / k^2
            out[t.name] = block_scores(rec.grid(rec.sums[checkpoint], i), k, "abs-mean") / float(rec.grain ** 2)
        elif score == "mean-abs":
            out[t.name] = block_scores(rec.grid(rec.abs_sums[checkpoint], i), k, "l1") / float(b * b)
        elif score == "l1":
            out[t.name] = block_scores(rec.grid(rec.abs_sums[checkpoint], i), k, "l1")
        else:  # l2 = sqrt(sum S^2); the grain sums of S^2 are >= 0 so their L1 is their sum
            out[t.name] = block_scores(rec.grid(rec.sq_sums[checkpoint], i), k, "l1").sqrt()
    return out


def _mean_maps(rec: GradientRecord, arr: np.ndarray, b: int, ts: list[Target]) -> dict[str, torch.Tensor]:
    k = b // rec.grain
    idx = _index(rec)
    return {t.name: block_scores(rec.grid(arr, idx[t.name]), k, "l1") / float(b * b) for t in ts}


def weight_magnitude_maps(rec: GradientRecord, block_size: int, types=None) -> dict[str, torch.Tensor]:
    """mean |W| per block of the base weights."""
    ts = pick_targets(rec, types)
    return _mean_maps(rec, rec.w_abs, _check_block_size(rec, block_size, ts), ts)


def weight_change_maps(rec: GradientRecord, block_size: int, types=None) -> dict[str, torch.Tensor] | None:
    """mean |W_after - W_before| per block after the full fine-tuning warm-up (None in gradient-only mode)."""
    if rec.dw_abs is None:
        return None
    ts = pick_targets(rec, types)
    return _mean_maps(rec, rec.dw_abs, _check_block_size(rec, block_size, ts), ts)


# ----------------------------------------------------------------------------- selection and analysis


def _budget(total: int, n_blocks, density) -> int:
    if density is not None and float(density) > 0:
        if not 0 < float(density) <= 1:
            raise KnobError(f"smt analysis: density must be in (0, 1] (got {density})")
        n = int(round(float(density) * total))
    elif n_blocks is not None:
        try:
            n = int(n_blocks)
        except (TypeError, ValueError):
            raise KnobError(f"smt analysis: number of blocks must be an integer (got {n_blocks!r})") from None
    else:
        raise KnobError("smt analysis: give a number of blocks or a density")
    if n < 1:
        raise KnobError("smt analysis: the budget selects no block; raise the number of blocks or the density")
    if n > total:
        raise KnobError(f"smt analysis: {n} blocks asked but the chosen matrices hold only {total} blocks")
    return n


def masks(selection: dict, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    out = {}
    for name, (R, C) in shapes.items():
        m = np.zeros((R, C), dtype=bool)
        rows, cols = selection.get(name, ([], []))
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.size:
            m[rows, cols] = True
        out[name] = m
    return out


def _overlap(a: dict, b: dict) -> tuple[int, int]:
    inter = sum(int(np.count_nonzero(a[k] & b[k])) for k in a)
    union = sum(int(np.count_nonzero(a[k] | b[k])) for k in a)
    return inter, union


def jaccard(sel_a: dict, sel_b: dict, shapes: dict[str, tuple[int, int]]) -> float:
    inter, union = _overlap(masks(sel_a, shapes), masks(sel_b, shapes))
    return 1.0 if union == 0 else inter / union


@dataclass
class SMTAnalysis:
    """One analysis of a warm-up record (:func:`analyze`).  Its JSON summary and CSV tables are
    ``explorer.smt_inspector.export``'s, which reads this module (never the other way round)."""

    block_size: int
    n_blocks: int
    total_blocks: int
    score: str
    rule: str
    types: list[str]
    targets: list[Target]
    scores: dict[str, np.ndarray]
    selection: dict[str, tuple[np.ndarray, np.ndarray]]
    ranks: dict[str, np.ndarray]
    shares_type: dict[str, float]
    shares_layer: dict[int, float]
    density_type: dict[str, float]
    blocks_type: dict[str, int]
    stability: list[dict]
    overlaps: dict
    meta: dict
    notes: list[str]


def _selection_np(sel: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (np.asarray(r, dtype=np.int32), np.asarray(c, dtype=np.int32)) for k, (r, c) in sel.items()}


def _ranks(scores: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Global rank (1 = best) of every block, ties broken by position as select_blocks does."""
    names = list(scores)
    flat = torch.cat([scores[k].reshape(-1).float() for k in names])
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, order.numel() + 1)
    out, start = {}, 0
    for k in names:
        n = scores[k].numel()
        out[k] = rank[start:start + n].reshape(scores[k].shape).numpy().astype(np.int64)
        start += n
    return out


def analyze(rec: GradientRecord, block_size: int, n_blocks: int | None = None, density: float | None = None,
            score: str = "abs-mean", rule: str = "global", types=None, seed: int = 0,
            details: bool = True) -> SMTAnalysis:
    """Scores, selection, shares, stability and overlaps for one setting; no gradient is recomputed.

    Results for cached records are memoised (an LRU of the last few settings), so redraws are instant.
    ``details=False`` leaves out the stability curve and the overlaps (a faster first draw of a heatmap).
    """
    memo = None
    if rec.key is not None:
        tkey = None if types is None else (types if isinstance(types, str) else tuple(types))
        memo = (rec.key, block_size, n_blocks, density, score, rule, tkey, seed, bool(details))
        an = cached_analysis(memo)
        if an is not None:
            return an
    s = Setting.make(rec, block_size, n_blocks, density, score, rule, types)
    an = s.analysis(s.stability(), s.overlaps(seed)) if details else s.analysis([], {})
    if memo is not None:
        remember_analysis(memo, an)
    return an


@dataclass
class Setting:
    """One scoring setting on a record and its selection: the chosen matrices, block size b, budget n of
    ``total`` blocks, score and rule, block grids per matrix, scores, the selected blocks and their masks."""

    rec: GradientRecord
    targets: list[Target]
    b: int
    n: int
    total: int
    score: str
    rule: str
    grids: dict[str, tuple[int, int]]
    scores: dict[str, torch.Tensor]
    selection: dict[str, tuple]
    masks: dict[str, np.ndarray]

    @classmethod
    def make(cls, rec, block_size, n_blocks, density, score, rule, types) -> "Setting":
        if rule not in RULES:
            raise KnobError(f"smt analysis: unknown selection rule '{str(rule)[:40]}'; choose global or per-matrix")
        ts = pick_targets(rec, types)
        b = _check_block_size(rec, block_size, ts)
        grids = {t.name: (t.d_out // b, t.d_in // b) for t in ts}
        total = sum(R * C for R, C in grids.values())
        n = _budget(total, n_blocks, density)
        scores = score_maps(rec, b, score, [t.type for t in ts])
        sel = select_blocks(scores, n, rule)
        return cls(rec, ts, b, n, total, score, rule, grids, scores, sel, masks(sel, grids))

    @property
    def type_names(self) -> list[str]:
        return [t.type for t in self.targets]

    def type_order(self) -> list[str]:
        ts = self.targets
        return [t for t in ALL_TYPES if any(x.type == t for x in ts)] + \
            [t for t in dict.fromkeys(x.type for x in ts) if t not in ALL_TYPES]

    def stability(self) -> list[dict]:
        """The selection after each checkpoint against the final one (Jaccard)."""
        out = []
        for i, step in enumerate(self.rec.steps):
            s_i = select_blocks(score_maps(self.rec, self.b, self.score, self.type_names, checkpoint=i), self.n,
                                self.rule)
            inter, union = _overlap(masks(s_i, self.grids), self.masks)
            out.append(dict(step=int(step), jaccard=float(inter / union if union else 1.0)))
        return out

    def _compare(self, other_sel, label, explain) -> dict:
        inter, union = _overlap(self.masks, masks(other_sel, self.grids))
        return dict(label=label, jaccard=inter / union if union else 1.0, shared_blocks=inter,
                    share_of_smt=inter / self.n, explain=explain)

    def overlaps(self, seed: int) -> dict:
        """Overlaps with other ways to spend the same budget under the same rule."""
        rec, b, n, rule, shapes, sel, total = self.rec, self.b, self.n, self.rule, self.grids, self.selection, self.total
        overlaps = {}
        mag = select_blocks(weight_magnitude_maps(rec, b, self.type_names), n, rule)
        overlaps["magnitude"] = self._compare(mag, "largest-magnitude weights",
                                              "the n blocks with the largest mean |W| of the base weights")
        gen = torch.Generator().manual_seed(int(seed))
        rnd_scores = {k: torch.rand(shapes[k], generator=gen) for k in shapes}
        rnd = select_blocks(rnd_scores, n, rule)
        r = self._compare(rnd, "random blocks (SpaRTA-style)",
                          f"n blocks drawn uniformly at random (seed {seed}; per matrix with the same quotas under "
                          "the per-matrix rule). SpaRTA draws single entries; drawn as blocks here so the budgets "
                          "match.")
        # expected overlap of a uniform random choice with the same quotas: E[I] = sum_m n_m^2 / N_m
        if rule == "global":
            e_inter = n * n / total
        else:
            e_inter = sum(len(sel[k][0]) ** 2 / (shapes[k][0] * shapes[k][1]) for k in shapes)
        r["expected_shared_blocks"] = e_inter
        r["expected_share_of_smt"] = e_inter / n
        r["expected_jaccard"] = e_inter / (2 * n - e_inter) if 2 * n - e_inter > 0 else 1.0
        r["expected_note"] = "expected Jaccard as E[shared] / (2n - E[shared]) (a ratio of expectations, approximate)"
        overlaps["random"] = r
        dmaps = weight_change_maps(rec, b, self.type_names)
        if dmaps is not None:
            overlaps["weight_change"] = self._compare(
                select_blocks(dmaps, n, rule), "largest change under full fine-tuning",
                f"the n blocks whose mean |W_after - W_before| is largest after the {rec.steps_done} full "
                "fine-tuning warm-up steps of this run (AdamW moves every weight by about lr per step early on, so "
                "after a short warm-up this ranking says little)")
        else:
            overlaps["weight_change"] = dict(label="largest change under full fine-tuning", jaccard=None,
                                             explain="only available in full warm-up mode (gradient-only leaves the "
                                                     "weights unchanged)")
        return overlaps

    def analysis(self, stability: list[dict], overlaps: dict) -> SMTAnalysis:
        # shares per type and per layer (counts of b x b blocks, so they are shares of parameters too)
        type_order = self.type_order()
        blocks_type = {ty: 0 for ty in type_order}
        avail_type = {ty: 0 for ty in type_order}
        layer_counts: dict[int, int] = {}
        for t in self.targets:
            c = int(len(self.selection[t.name][0]))
            blocks_type[t.type] += c
            avail_type[t.type] += self.grids[t.name][0] * self.grids[t.name][1]
            layer_counts[t.layer] = layer_counts.get(t.layer, 0) + c
        got = sum(blocks_type.values())
        b, n, total = self.b, self.n, self.total
        notes = list(self.rec.meta.get("notes", []))
        notes.append(f"Block size {b} x {b}; {n} of {total} blocks ({n / total:.2%} of the chosen matrices); "
                     f"score: {SCORE_LABELS[self.score]}; selection: {self.rule}.")
        return SMTAnalysis(block_size=b, n_blocks=n, total_blocks=total, score=self.score, rule=self.rule,
                           types=list(type_order), targets=self.targets,
                           scores={k: v.numpy() for k, v in self.scores.items()},
                           selection=_selection_np(self.selection), ranks=_ranks(self.scores),
                           shares_type={ty: blocks_type[ty] / got for ty in type_order},
                           shares_layer={ly: layer_counts[ly] / got for ly in sorted(layer_counts)},
                           density_type={ty: blocks_type[ty] / avail_type[ty] for ty in type_order},
                           blocks_type=blocks_type, stability=stability, overlaps=overlaps,
                           meta=dict(self.rec.meta), notes=notes)


def to_selection(rec: GradientRecord, block_size: int, n_blocks: int | None = None, score: str = "abs-mean",
                 rule: str = "global", types=None, density: float | None = None) -> dict:
    """``{target: (rows int32, cols int32)}`` for ``apply_method(m, "smt", smt_selection=..., block_size=b,
    targets=types)`` ("train with this selection")."""
    ts = pick_targets(rec, types)
    b = _check_block_size(rec, block_size, ts)
    total = sum((t.d_out // b) * (t.d_in // b) for t in ts)
    n = _budget(total, n_blocks, density)
    sel = select_blocks(score_maps(rec, b, score, [t.type for t in ts]), n, rule)
    return {k: (r.to(torch.int32), c.to(torch.int32)) for k, (r, c) in sel.items() if r.numel()}


__all__ = ["analyze", "SMTAnalysis", "Setting", "to_selection", "score_maps", "weight_magnitude_maps",
           "weight_change_maps", "check_request", "jaccard", "masks", "RULES"]


def default_types() -> list[str]:
    """The matrix types the inspector selects from by default: SMT's own default targets (q, k, v, the paper's).
    A selection over every matrix type put most blocks in the MLP's down projection on minilm and, handed to
    Fine-tune, learned far less than the SMT preset (benchmarks/results/smt_handoff.md)."""
    from explorer.methods.smt import KNOBS

    return list(next(k for k in KNOBS if k.name == "targets").default)
