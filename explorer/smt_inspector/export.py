"""SMT analysis export: the JSON summary and the two CSV tables (no Streamlit)."""

from __future__ import annotations

import csv
import io
import json

from explorer.methods.smt_blocks import SCORE_LABELS
from explorer.smt_inspector.analysis import SMTAnalysis, masks


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{float(x):.{digits}g}")


def analysis_to_dict(an: SMTAnalysis, include_scores: bool = True, digits: int = 5) -> dict:
    meta = {k: v for k, v in an.meta.items() if k not in ("losses",)}
    out = dict(
        model=meta.get("model"), task=meta.get("task_name"), mode=meta.get("mode"),
        warmup_steps=meta.get("warmup_steps"), steps_done=meta.get("steps_done"),
        batch_size=meta.get("batch_size"), max_len=meta.get("max_len"), seed=meta.get("seed"),
        block_size=an.block_size, n_blocks=an.n_blocks, total_blocks=an.total_blocks,
        density=an.n_blocks / an.total_blocks, trainable_params=an.n_blocks * an.block_size ** 2,
        score=an.score, score_label=SCORE_LABELS[an.score], rule=an.rule, types=an.types,
        shares_type=an.shares_type, blocks_type=an.blocks_type, density_type=an.density_type,
        shares_layer={str(k): v for k, v in an.shares_layer.items()},
        stability=an.stability, overlaps=an.overlaps,
        warmup_losses=[_sig(v) for v in an.meta.get("losses", [])],
        warmup_seconds=meta.get("seconds"), warmup_cpu_seconds=meta.get("cpu_seconds"), from_cache=meta.get("from_cache"), notes=an.notes,
    )
    mats = []
    for t in an.targets:
        s = an.scores[t.name]
        r, c = an.selection[t.name]
        m = dict(name=t.name, layer=t.layer, type=t.type, shape=[t.d_out, t.d_in], grid=list(s.shape),
                 selected=[[int(a), int(b)] for a, b in zip(r.tolist(), c.tolist())],
                 max=_sig(s.max()), mean=_sig(s.mean()))
        if include_scores:
            m["scores"] = [[_sig(v, digits) for v in row] for row in s.tolist()]
        mats.append(m)
    out["matrices"] = mats
    return out


def analysis_to_json(an: SMTAnalysis, include_scores: bool = True) -> str:
    return json.dumps(analysis_to_dict(an, include_scores=include_scores), separators=(",", ":"))


def scores_csv(an: SMTAnalysis) -> str:
    """One row per block: target, layer, type, row, col, score, global rank, selected."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "layer", "type", "block_row", "block_col", "row_start", "col_start", "score", "rank",
                "selected"])
    b = an.block_size
    for t in an.targets:
        s, rk = an.scores[t.name], an.ranks[t.name]
        mask = masks({t.name: an.selection[t.name]}, {t.name: s.shape})[t.name]
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                w.writerow([t.name, t.layer, t.type, i, j, i * b, j * b, f"{s[i, j]:.6g}", int(rk[i, j]),
                            int(mask[i, j])])
    return buf.getvalue()


def selection_csv(an: SMTAnalysis) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "layer", "type", "block_row", "block_col", "row_start", "col_start", "block_size",
                "score", "rank"])
    b = an.block_size
    for t in an.targets:
        r, c = an.selection[t.name]
        for i, j in zip(r.tolist(), c.tolist()):
            w.writerow([t.name, t.layer, t.type, i, j, i * b, j * b, b, f"{an.scores[t.name][i, j]:.6g}",
                        int(an.ranks[t.name][i, j])])
    return buf.getvalue()


__all__ = ["analysis_to_dict", "analysis_to_json", "scores_csv", "selection_csv"]
