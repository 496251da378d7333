"""The Memory calculator's tables and texts: the on-screen compact table, the exact table, the CSV rows, the
measured-vs-estimated table and what each colour of the bars counts.  Pure Python; every number comes from the
rows of ``memory_views`` or from the settings' :class:`explorer.memory.options.Options`."""

from __future__ import annotations

from explorer.memory.units import compact_bytes, exact_bytes, in_unit
from explorer.memory.options import options
from explorer.views.memory_views import SHORT, TERMS, estimate_kwargs, rel_diff


def compact_count(n: float) -> str:
    """A count in at most 4 significant characters: 4,226 / 65.3 M / 6.74 B (exact value elsewhere)."""
    n = float(n)
    for div, suf in ((1e12, " T"), (1e9, " B"), (1e6, " M")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suf}" if v < 1000 else f"{v:,.0f}{suf}"
    return f"{n:,.0f}"


def display_rows(rows: list[dict], unit: str, exact: bool = True) -> list[dict]:
    """The on-screen table: short, never cut off (compact forms), the exact values in the last column;
    a method that cannot run shows "n/a" and says why.  ``exact=False`` (a projector's large type, where the
    columns must fit the screen): no exact values (the column kept only for a method that cannot run) and no
    bytes per trainable parameter."""
    out = []
    for r in rows:
        if "error" in r:
            reason = r["error"] if r["error"].startswith("n/a") else f"n/a: {r['error']}"
            out.append({"method": SHORT[r["method"]], "settings": r["settings"], "trainable": "n/a",
                        "trainable %": "n/a", "weights": "n/a", "gradients": "n/a", "optimizer state": "n/a",
                        "activations": "n/a", "total": "n/a", "B / trainable param": "n/a",
                        "exact values / note": reason})
            continue
        n, t = r["n_params"], r["trainable_params"]
        out.append({
            "method": SHORT[r["method"]], "settings": r["settings"], "trainable": compact_count(t),
            "trainable %": f"{100.0 * t / n:.4g} %" if n else "0 %",
            "weights": compact_bytes(r["weights_bytes"], unit), "gradients": compact_bytes(r["grads_bytes"], unit),
            "optimizer state": compact_bytes(r["optimizer_bytes"], unit),
            "activations": compact_bytes(r["activations_bytes"], unit),
            "total": compact_bytes(r["total_bytes"], unit),
            "B / trainable param": str(r["bytes_per_trainable_param"]),
            "exact values / note": f"trainable {t:,} of {n:,}; total {exact_bytes(r['total_bytes'])} "
                                   f"({r.get('scope_label', 'per GPU')})",
        })
    if not exact:
        keep = any("error" in r for r in rows)
        for d in out:
            d.pop("B / trainable param")  # the metrics above the chart give it for full fine-tuning
            note = d.pop("exact values / note")
            if keep:
                d["note"] = note if note.startswith("n/a") else ""
    return out


def table_rows(rows: list[dict], unit: str) -> list[dict]:
    """One dict per method for the exact table: counts, each term and the total in ``unit`` (named in the keys).
    Methods that cannot run are left out here (the on-screen table says why, :func:`display_rows`)."""
    out = []
    for r in rows:
        if "error" in r:
            continue
        n, t = r["n_params"], r["trainable_params"]
        out.append({
            "method": SHORT[r["method"]], "settings": r["settings"], "trainable params": t,
            "trainable %": 100.0 * t / n if n else 0.0,
            f"weights ({unit})": in_unit(r["weights_bytes"], unit),
            f"gradients ({unit})": in_unit(r["grads_bytes"], unit),
            f"optimizer state ({unit})": in_unit(r["optimizer_bytes"], unit),
            f"activations ({unit})": in_unit(r["activations_bytes"], unit),
            f"total ({unit})": in_unit(r["total_bytes"], unit),
            "B per trainable param": r["bytes_per_trainable_param"],
            f"activations, Korthikanti ({unit})": in_unit(r["activations_korthikanti_bytes"], unit),
        })
    return out


def bytes_rows(rows: list[dict]) -> list[dict]:
    """Exact bytes per term (for a CSV download)."""
    out = []
    for r in rows:
        if "error" in r:
            continue
        out.append(dict(model=r["model"], method=r["method"], settings=r["settings"], precision=r["precision"],
                        optimizer=r["optimizer"], checkpointing=r["checkpointing"], zero=r["zero"], gpus=r["gpus"],
                        scope=r.get("scope_label", "per GPU"),
                        batch=r["batch"], seq_len=r["seq_len"], recompute=r["recompute"],
                        activation_model=r["activation_model"], n_params=r["n_params"],
                        trainable_params=r["trainable_params"],
                        **{k: r[k] for k, _, _ in TERMS}, total_bytes=r["total_bytes"]))
    return out


def compare_table(rows: list[dict], unit: str) -> list[dict]:
    """Measured vs estimated per term with the relative difference (estimate − measured) / measured."""
    out = []
    for r in rows:
        if "error" in r:
            out.append({"method": SHORT[r["method"]], "term": "—", "note": r["error"]})
            continue
        for key, label in [(k, lab) for k, lab, _ in TERMS] + [("total_bytes", "total")]:
            e, m = r["est"][key], r["meas"][key]
            d = rel_diff(e, m)
            out.append({"method": SHORT[r["method"]], "term": label, f"estimated ({unit})": in_unit(e, unit),
                        f"measured ({unit})": in_unit(m, unit), "estimated (bytes)": int(round(e)),
                        "measured (bytes)": int(m), "difference %": None if d is None else 100.0 * d})
        if r.get("cuda_peak") is not None:
            out.append({"method": SHORT[r["method"]], "term": "CUDA peak (max_memory_allocated)",
                        f"measured ({unit})": in_unit(r["cuda_peak"], unit), "measured (bytes)": int(r["cuda_peak"]),
                        "note": "allocator peak during the step: includes temporaries the model does not count"})
    return out


def colour_legend(values: dict, scope_label: str) -> tuple[str, str]:
    """What each colour of the stacked bars counts at the page's settings (markdown bullets), and the bytes per
    parameter of full fine-tuning they add up to; the sharded terms say by how many GPUs."""
    o = options(**estimate_kwargs(values))
    e, mom, master, z, n = o.e, o.moments, o.master, o.zero, o.gpus

    def shard(stage):
        return f" ÷ {n} GPUs (ZeRO-{z})" if z >= stage and n > 1 else ""
    terms = (
        f"- **Weights**: every parameter and buffer: N × {e} B"
        + (" (the blocks' linear weights at 0.5 B + 0.127 bit of quantisation constants, the rest 2 B; the "
           "adapters 2 B)" if o.precision == "4bit" else "") +
        " plus the adapter's own tensors (frozen ones too)" + shard(3) + ".\n"
        f"- **Gradients**: one per *trainable* parameter: T × {e} B" + shard(2) + ".\n"
        f"- **Optimizer state**: {'8-bit' if mom == 2 else 'fp32'} AdamW moments, T × {mom} B"
        + (", plus the fp32 master copy T × 4 B" if master else "") + shard(1) + ".\n"
        "- **Activations**: tensors the forward pass keeps for the backward pass; they grow with "
        "batch × length (and length² for materialised attention scores)"
        + ("; with checkpointing only each layer's input plus one rebuilt layer" if o.checkpointing else "")
        + ("; per GPU, never sharded" if n > 1 else "") + ".")
    per_param = (f"So full fine-tuning costs **{e + e + mom + master} B per parameter** before activations"
                 + (" and before sharding" if z and n > 1 else "") + "; a PEFT method pays that only for its T "
                 "trainable parameters and keeps the frozen weights. Figures: **" + scope_label + "**.")
    return terms, per_param
