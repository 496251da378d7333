"""Memory calculator: the analytic memory model for large models, per method, with live measurements beside it."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from explorer.memory import units as U
from explorer.views import memory_figures as F
from explorer.views import memory_tables as T
from explorer.views import memory_views as V
from explorer.methods import METHODS
from ui import frame, models, modes, state, widgets

PAGE = "mem"

RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


k = state.keys(PAGE)


# ----------------------------------------------------------------------------- cached work


@st.cache_resource(max_entries=8, show_spinner=False)
def _spec_small(name: str):
    """A real small model's shape, read from its config (no weights loaded)."""
    return V.spec_for_choice(name)


@st.cache_data(max_entries=128, show_spinner=False)
def _measure(name: str, method: str, knobs_json: str, batch: int, seq_len: int, device: str) -> dict:
    """Two AdamW steps on a fresh copy of the cached base (one result per settings, shared by sessions)."""
    loaded = models.get_base(name)
    try:
        return V.measure_method(loaded, method, json.loads(knobs_json), batch, seq_len, device)
    except Exception as exc:  # noqa: BLE001 - a method that cannot run here is a row, not a page error
        from explorer.errors import user_message

        return dict(method=method, label=METHODS[method].label, settings="", error=user_message(exc))


# ----------------------------------------------------------------------------- widgets


def settings_panel(instr: bool) -> None:
    frame.main_control()
    with st.container(border=True):
        shape_and_training()
        if st.session_state.get(k("model")) == V.CUSTOM:
            custom_shape()
        method_knobs(instr)
        if not instr:
            advanced_settings()


def shape_and_training() -> None:
    """Model, precision, batch, length, methods, units; checkpointing, optimizer, ZeRO, GPUs."""
    c = st.columns([3, 3, 2, 2])
    c[0].selectbox("Model", V.MODELS, key=k("model"), format_func=lambda m: V.MODEL_LABELS[m],
                   help="Published configs of large models (counted from their config.json), the real small "
                        "models of this dashboard (read from their config), or a custom shape.")
    c[1].radio("Precision", V.PRECISIONS, key=k("prec"), horizontal=True,
               format_func=lambda p: {"fp32": "fp32", "bf16-mixed": "bf16 mixed", "4bit": "4-bit"}[p],
               help="fp32: everything 4 B. bf16 mixed: 2 B weights/gradients, fp32 Adam moments and master "
                    "copy. 4-bit: QLoRA-style frozen base (NF4 + double quantisation), adapters in bf16.")
    c[2].number_input("Batch size", 1, 1024, step=1, key=k("batch"), help="sequences per step (b)")
    c[3].number_input("Sequence length", 1, 131072, step=256, key=k("seq"), help="tokens per sequence (s)")
    c = st.columns([6, 2, 2])
    c[0].multiselect("Methods", list(METHODS), key=k("methods"), format_func=lambda m: V.SHORT[m],
                     help="one stacked bar per method")
    c[1].radio("Units", V.UNITS, key=k("unit"), horizontal=True,
               help="GB = 10^9 bytes (what vendors print on a GPU); GiB = 2^30 bytes (what nvidia-smi and "
                    "PyTorch report). 80 GiB = 85.9 GB.")
    c[2].toggle("Recomputation", key=k("recompute"),
                help="Selective recomputation (Korthikanti et al.): the attention scores (the a·s² term) are "
                     "recomputed in the backward pass instead of kept.")
    c = st.columns([2, 3, 2, 2, 3])
    c[0].toggle("Checkpointing", key=k("ckpt"),
                help="Full checkpointing per layer: each layer keeps only its input (s·b·h); one layer's "
                     "activations are rebuilt at a time in the backward pass (the forward runs twice).")
    c[1].radio("Optimizer", V.OPTIMIZER_CHOICES, key=k("opt"), horizontal=True,
               format_func=lambda o: V.OPTIMIZER_LABELS[o],
               help="AdamW keeps two fp32 moments (8 B per trainable parameter); 8-bit AdamW (bitsandbytes) "
                    "two 1-byte moments (2 B). The fp32 master copy of mixed precision is separate.")
    c[2].select_slider("ZeRO stage", [0, 1, 2, 3], key=k("zero"),
                       help="ZeRO data parallelism: 1 shards the optimizer state over the GPUs, 2 also the "
                            "gradients, 3 also the weights. 0: every GPU holds everything.")
    c[3].number_input("GPUs", 1, 4096, step=1, key=k("gpus"), help="GPUs the batch is spread over (data "
                      "parallel); the batch size above is per GPU")
    c[4].radio("Figures", V.SCOPES, key=k("scope"), horizontal=True, format_func=lambda x: V.SCOPE_LABELS[x],
               help="per GPU: what one GPU holds; all GPUs together: every term × the number of GPUs")


def custom_shape() -> None:
    st.markdown("**Custom shape** (a LLaMA-like causal LM: RMSNorm, rotary, SwiGLU MLP, grouped-query "
                "attention; untied head)")
    c = st.columns(6)
    c[0].number_input("layers L", 1, 200, key=k("c_layers"))
    c[1].number_input("hidden h", 8, 65536, step=64, key=k("c_hidden"))
    c[2].number_input("heads a", 1, 512, key=k("c_heads"))
    c[3].number_input("kv heads", 1, 512, key=k("c_kv"), help="= heads for multi-head attention; fewer "
                                                             "for grouped-query attention")
    c[4].number_input("MLP width f", 8, 262144, step=64, key=k("c_inter"))
    c[5].number_input("vocab V", 2, 1_000_000, step=1000, key=k("c_vocab"))


def method_knobs(instr: bool) -> None:
    with st.expander("Method knobs (one main knob per method)", expanded=False):
        c = st.columns(4)
        cur = int(st.session_state.get(k("rank"), 8))
        c[0].select_slider(V.shared_knob_label("rank", "rank r"), sorted(set(RANKS) | {cur}), key=k("rank"))
        c[1].slider("LoRA-SP frozen fraction", 0.0, 0.99, step=0.01, key=k("freeze"))
        c[2].selectbox("Tied-LoRA preset", V.TL_PRESETS, key=k("tl"),
                       help="named combinations of which of A, B, u, v train and whether A, B are shared "
                            "across layers (the playground draws each)")
        c[3].number_input("SpaRTA sparsity (of all parameters)", 0.0, 0.9999, step=0.001, format="%.4f",
                          key=k("sparsity"), help="0.99 trains 1 % of all parameters as single entries")
        c = st.columns(4)
        c[0].number_input("SMT blocks (0 = auto, ≈1 % of all params)", 0, 10_000_000, step=1, key=k("smt_blocks"))
        if not instr:
            c[1].slider("SMT density of target blocks (0 = use the count)", 0.0, 1.0, step=0.001, format="%.3f",
                        key=k("smt_density"))
            c[2].select_slider("SMT block size b", V.SMT_BLOCK_SIZES, key=k("smt_bs"),
                               help="auto: the largest of 256, 128, … that divides every target")
            c[3].selectbox("Targets of the PEFT methods", V.TARGET_SETS, key=k("tg"),
                           format_func=lambda t: V.TARGET_LABELS[t],
                           help="default: " + V.default_targets_text())


def advanced_settings() -> None:
    with st.expander("Advanced: activation model, attention kernel, device, master copy", expanded=False):
        c = st.columns(4)
        c[0].radio("Activation model", ("detailed", "korthikanti"), key=k("act"),
                   help="detailed: tensor-by-tensor count for this architecture and method; korthikanti: "
                        "s b h (34 + 5 a s / h) per layer (GPT block, any method)")
        c[1].radio("Attention kernel", ("auto", "flash", "materialized"), key=k("attn"),
                   help="flash/SDPA keeps no s² scores; materialized keeps the softmax (and its dropout "
                        "mask). auto: flash on CUDA, on CPU materialized when attention dropout is on")
        c[2].radio("Device assumed", ("cuda", "cpu"), key=k("dev"),
                   help="dropout masks: 1 byte per element on CUDA, a full float on CPU")
        c[3].toggle("fp32 master copy (mixed precision)", key=k("master"),
                    help="off: 12 B per trainable parameter instead of 16 (QLoRA's accounting)")


# ----------------------------------------------------------------------------- sections


def spec_caption(spec) -> str:
    kv = f" ({spec.kv_heads} kv)" if spec.kv_heads != spec.heads else ""
    return (f"**{spec.name}** · {spec.n_params():,} parameters · {spec.n_layers} layers · hidden {spec.hidden} · "
            f"{spec.heads} heads{kv} · MLP {spec.intermediate} · vocab {spec.vocab:,} · {spec.family}-like "
            f"{spec.task} · source: {spec.source}")


def estimate_metrics(spec, good: list[dict], unit: str) -> None:
    cheapest = min(good, key=lambda r: r["total_bytes"])
    full = next((r for r in good if r["trains_all"]), None)  # the row that trains every parameter
    c = st.columns(4)
    c[0].metric("parameters", T.compact_count(spec.n_params()),
                help=f"{spec.n_params():,}, counted from the config (tied embeddings once)")
    c[1].metric("smallest total", U.fmt_bytes(cheapest["total_bytes"], unit), help=f"{cheapest['label']}: "
                f"{U.exact_bytes(cheapest['total_bytes'])}")
    if full is not None:
        c[2].metric("full fine-tuning total", U.fmt_bytes(full["total_bytes"], unit),
                    help=U.exact_bytes(full["total_bytes"]))
        c[3].metric("full FT: bytes per parameter", f"{full['bytes_per_trainable_param']} B",
                    help="weight + gradient + optimizer state, activations not included")
    else:
        c[2].metric("largest total", U.fmt_bytes(max(r["total_bytes"] for r in good), unit))
        c[3].metric("activations (largest)", U.fmt_bytes(max(r["activations_bytes"] for r in good), unit))


def estimate_chart(spec, vals: dict, good: list[dict]) -> None:
    unit = vals["unit"]
    left, right = st.columns([3, 2], gap="large")
    title = (f"{spec.name}, {V.PRECISION_LABELS[vals['prec']]}, batch {vals['batch']} × {vals['seq']} tokens"
             + (", recomputation" if vals["recompute"] else "") + (", checkpointing" if vals["ckpt"] else "")
             + (f"<br>ZeRO-{vals['zero']} × {vals['gpus']} GPUs, {good[0]['scope_label']}"
                if vals["zero"] or vals["gpus"] > 1 else ""))
    with left:
        modes.show_fig(F.stack_figure(good, unit, title, modes.plotly_template()), key="mem-stack")
        st.caption(f"Units: {V.UNIT_WORDS[unit]}. Hover a segment for its exact bytes. All figures from "
                   "`explorer.memory.analytic.estimate` (an analytic model, not a measurement).")
    with right:
        st.markdown("**What each colour is**")
        terms, per_param = T.colour_legend(vals, good[0]["scope_label"])
        st.markdown(terms)
        st.markdown(per_param)
        st.caption("Approximations: the total adds terms that do not all peak at the same instant (an upper bound "
                   "of the tensors themselves); CUDA context, allocator caches, temporaries in the backward pass "
                   "and Adam's scalar step counters are left out.")


def estimate_tables(spec, rows: list[dict], good: list[dict], unit: str) -> None:
    exact = not modes.projector_on()  # a projector's large type: the columns that fit the screen
    show = pd.DataFrame(T.display_rows(rows, unit, exact=exact))
    st.table(show.set_index("method"))  # a static table wraps its text: nothing is ever cut off
    st.caption(f"Compact forms (k/M/B for counts; "
               f"{'kB, MB, GB, TB = powers of 10' if unit == 'GB' else 'KiB, MiB, GiB, TiB = powers of 2'}); "
               f"the exact values are {'in the last column, ' if exact else ''}in 'Exact values' below and in the "
               "CSV.")
    df = pd.DataFrame(T.table_rows(rows, unit))
    cfg = {"settings": st.column_config.TextColumn(width="medium"),
           "trainable params": st.column_config.NumberColumn(format="localized", width="medium"),
           "trainable %": st.column_config.NumberColumn(format="%.4f %%")}
    for col in df.columns:
        if col.endswith(f"({unit})"):
            cfg[col] = st.column_config.NumberColumn(format="%.3f", width="medium")
    with st.expander(f"Exact values (in {unit})", expanded=False):
        st.dataframe(df, hide_index=True, column_config=cfg, width="stretch")
    exact = pd.DataFrame(T.bytes_rows(rows))
    st.download_button("Download the exact bytes (CSV)", exact.to_csv(index=False).encode(),
                       file_name=f"memory_{spec.name}.csv".replace(" ", "_"), mime="text/csv", key="mem_csv")
    notes = sorted({n for r in good for n in r.get("notes", [])})
    with st.expander("Notes from the model (defaults, deviations, what is counted)", expanded=False):
        for n in notes:
            st.markdown(f"- {n}")
        st.markdown("- Settings per method are in the table; knobs not on this page keep the method's defaults "
                    "(alpha does not change memory).")


def estimates_section(spec, vals: dict, rows: list[dict]) -> None:
    good = [r for r in rows if "error" not in r]
    if good:
        estimate_metrics(spec, good, vals["unit"])
    for r in rows:
        if "error" in r:
            st.warning(f"{r['label']}: n/a: {r['error']}", icon=":material/warning:")
    if not good:
        st.info("No method to draw: pick at least one method that fits these settings.", icon=":material/info:")
        return
    estimate_chart(spec, vals, good)
    estimate_tables(spec, rows, good, vals["unit"])


def activations_section(spec, vals: dict, rows: list[dict]) -> None:
    good = {r["method"]: r for r in rows if "error" not in r}
    if not good:
        return
    unit = vals["unit"]
    st.subheader("Inside the activations")
    if vals["breakdown"] not in good:
        st.session_state[k("breakdown")] = next(iter(good))
    left, right = st.columns([3, 2], gap="large")
    with right:
        st.selectbox("Method shown", list(good), key=k("breakdown"), format_func=lambda m: METHODS[m].label)
        r = good[st.session_state[k("breakdown")]]
        s, b, h, a, L = r["seq_len"], r["batch"], spec.hidden, spec.heads, spec.n_layers
        per_layer = s * b * h * (34 + (0 if vals["recompute"] else 5 * a * s / h))
        st.markdown(
            "**Korthikanti et al. (arXiv 2205.05198)**, per transformer layer with 16-bit activations:\n\n"
            "&nbsp;&nbsp;&nbsp;&nbsp;`s b h (34 + 5 a s / h)` bytes, `34 s b h` with selective recomputation\n\n"
            f"Here s = {s}, b = {b}, h = {h}, a = {a}: "
            f"{per_layer:,.0f} B per layer × {L} layers"
            + (" × 2 (fp32)" if vals["prec"] == "fp32" else "") +
            f" = **{U.fmt_bytes(r['activations_korthikanti_bytes'], unit)}**. It assumes a GPT block (4h MLP, dropout, "
            "attention scores kept) and leaves out the embeddings, the head and the logits: an approximation.")
        st.markdown(
            f"The **detailed model** (default) walks the real {spec.family} block tensor by tensor, with what this "
            f"method adds: **{U.fmt_bytes(r['activations_detailed_bytes'], unit)}**. A frozen layer whose input "
            "needs no gradient saves nothing, so PEFT methods keep less than full fine-tuning.")
        if r["attention"] == "flash":
            st.caption("Attention kernel: flash/SDPA keeps no s² scores, so recomputation changes nothing in the "
                       "detailed model here; pick 'materialized' under Advanced to see the a·s² term.")
    with left:
        modes.show_fig(F.activation_figure(r, unit, f"Saved for backward by {r['label']}: the detailed model's terms", modes.plotly_template()), key="mem-acts")
        st.caption(f"Units: {V.UNIT_WORDS[unit]}. Terms of the detailed model; hover for exact bytes.")


def worked_example_section(unit: str) -> None:
    st.subheader("Worked example: full fine-tuning of LLaMA-65B needs more than a terabyte")
    w = V.worked_example()
    wm, q = w["with_master"], w["qlora"]
    N = w["n_params"]
    gb = "GB"  # the claim is in GB (10^9 bytes, 1 TB = 1,000 GB); GiB in the hover and the text

    def both(x):
        return f"{U.fmt_bytes(x, 'GB')} = {U.fmt_bytes(x, 'GiB')} = {U.exact_bytes(x)}"

    c = st.columns(4)
    c[0].metric("LLaMA-65B parameters", f"{N:,}", help="counted from huggyllama/llama-65b's config")
    c[1].metric("16 B/param (bf16 mixed + AdamW)", U.fmt_bytes(w["static16"], gb), help=both(w["static16"]))
    c[2].metric("12 B/param (no master copy)", U.fmt_bytes(w["static12"], gb), help=both(w["static12"]))
    c[3].metric("QLoRA: 4-bit + LoRA r=64", U.fmt_bytes(w["static_qlora"], gb), help=both(w["static_qlora"]))
    other = "GiB" if unit == "GB" else "GB"
    st.markdown(
        f"Per parameter: a bf16 weight (2 B) + a bf16 gradient (2 B) + AdamW's two fp32 moments (8 B) + the fp32 "
        f"master copy (4 B) = **{w['bpp16']} B**. Times {N:,} parameters: "
        f"{U.fmt_bytes(wm['weights_bytes'], unit)} weights + {U.fmt_bytes(wm['grads_bytes'], unit)} gradients + "
        f"{U.fmt_bytes(wm['optimizer_bytes'], unit)} optimizer state = **{U.fmt_bytes(w['static16'], unit)}** "
        f"({U.fmt_bytes(w['static16'], other)}), before a single activation "
        f"(batch 1 × 512 tokens adds {U.fmt_bytes(wm['activations_bytes'], unit)}: total "
        f"{U.fmt_bytes(wm['total_bytes'], unit)}). Without the master copy, as the QLoRA paper counts "
        f"(\"more than 780 GB\"): {w['bpp12']} B/param = **{U.fmt_bytes(w['static12'], unit)}** "
        f"({U.fmt_bytes(w['static12'], other)}). "
        f"QLoRA's 4-bit frozen base with LoRA r=64 on every linear layer keeps "
        f"{U.fmt_bytes(q['weights_bytes'], unit)} of weights and "
        f"{U.fmt_bytes(q['grads_bytes'] + q['optimizer_bytes'], unit)} of gradients and optimizer state ({q['trainable_params']:,} trainable parameters).")
    st.caption("Every number above is computed by `explorer.memory.analytic.estimate` from the published config. The "
               "metrics are in GB = 10^9 bytes (the unit of the claim: 1 TB = 1,000 GB; hover for GiB and exact "
               f"bytes); the text in {V.UNIT_WORDS[unit]}. The preset 'LLaMA-65B full fine-tuning > 1 TB' draws it.")


def measure_controls(name: str, b: int, s: int, capped: str, cuda: bool) -> bool:
    """What to measure, where, and the button (True when pressed)."""
    st.multiselect("Methods to measure", list(METHODS), key=k("mmethods"), format_func=lambda m: V.SHORT[m])
    st.radio("Device", V.MEASURE_DEVICES if cuda else ("cpu",), key=k("mdev"), horizontal=True,
             help="cuda also reports torch.cuda.max_memory_allocated() (the allocator's peak)")
    pressed = st.button("Measure on this machine", type="primary", key="mem_measure", width="stretch")
    st.markdown(
        f"A fresh copy of **{name}**, each method applied with the knobs above, then {V.MEASURE_STEPS} AdamW "
        f"steps (Adam allocates its state on the first) at **batch {b} × {s} tokens**, **fp32**, counting the "
        "bytes that really exist with `MemoryAccountant`: parameters and buffers, `.grad` tensors, optimizer "
        "state, and the tensors autograd saved for backward (each storage once). The estimate beside it uses "
        "the same settings (fp32, this device), not the precision chosen above.")
    if capped:
        st.caption("Note: " + capped + ".")
    st.caption("SMT: blocks picked after a 2-batch gradient-only warm-up (a shortcut; memory depends on how "
               "many blocks, not which). Batches are random token ids (memory does not depend on them).")
    return pressed


def measure(name: str, methods: list[str], wv: dict, family: str, b: int, s: int) -> list[dict]:
    results = []
    bar = st.progress(0.0, text="measuring…")
    for i, m in enumerate(methods):
        bar.progress(i / len(methods), text=f"measuring {METHODS[m].label}…")
        knobs = V.method_knobs(m, wv, family)
        results.append(_measure(name, m, json.dumps(knobs, sort_keys=True), b, s, wv["mdev"]))
    bar.empty()
    return results


def measured_table(rows: list[dict], good: list[dict], unit: str) -> None:
    for r in rows:
        if "error" in r:
            st.warning(f"{r['label']} was not measured: {r['error']}", icon=":material/warning:")
    if not good:
        return
    df = pd.DataFrame(T.compare_table(good, unit))
    cfg = {c: st.column_config.NumberColumn(format="%.5f") for c in df.columns if c.endswith(f"({unit})")}
    cfg["difference %"] = st.column_config.NumberColumn(format="%+.2f %%", help="(estimated − measured) / measured")
    for c in ("estimated (bytes)", "measured (bytes)"):
        cfg[c] = st.column_config.NumberColumn(format="localized")
    st.dataframe(df, hide_index=True, column_config=cfg, width="stretch")
    scal = {r["label"]: r["meas_opt_scalar"] for r in rows if r.get("meas_opt_scalar")}
    st.caption("Where they differ, and why: the measured optimizer state includes Adam's scalar `step` "
               "counters (4 B per parameter tensor: " + ", ".join(f"{k_}: {v:,} B" for k_, v in scal.items())
               + ") that the model leaves out; SMT's activations assume its blocks spread over distinct input "
               "columns (an upper bound); the total is a sum of terms, not the process's memory (Python, "
               "libraries and allocator caches come on top).")


def measured_section(vals: dict) -> None:
    import torch

    name, unit = vals["model"], vals["unit"]
    st.subheader("Measured on this machine vs estimated")
    if name not in V.SMALL:
        st.info("Measurements need a model this machine can train: pick minilm, smollm2-135m, tiny-bert or "
                "tiny-llama above to put measured bytes beside the estimates.", icon=":material/info:")
        return
    cuda = torch.cuda.is_available()
    if not cuda and st.session_state.get(k("mdev")) == "cuda":
        st.session_state[k("mdev")] = "cpu"
    spec = _spec_small(name)
    b, s, capped = V.measure_shape(vals["batch"], vals["seq"], spec.max_positions)
    left, right = st.columns([3, 2], gap="large")
    with right:
        pressed = measure_controls(name, b, s, capped, cuda)
    wv = state.widget_values(V.page_schema(), PAGE)
    methods = list(wv["mmethods"])
    sig = json.dumps([name, methods, b, s, wv["mdev"], [V.method_knobs(m, wv, spec.family) for m in methods]],
                     sort_keys=True)
    store = st.session_state.setdefault("mem:measured", {})
    if pressed and methods:
        store[sig] = measure(name, methods, wv, spec.family, b, s)
    results = store.get(sig)
    with left:
        if not results:
            st.info("Press **Measure on this machine** to put measured bytes beside the estimates "
                    "(a few seconds for tiny models and minilm; results are kept per settings)." if methods else
                    "Pick at least one method to measure.", icon=":material/info:")
            return
        rows = V.compare_rows(results)
        good = [r for r in rows if "error" not in r]
        if good:
            modes.show_fig(F.compare_figure(good, unit, f"{name}: estimated vs measured, fp32, batch {b} × {s}",
                                            modes.plotly_template()), key="mem-compare")
            st.caption(f"Units: {V.UNIT_WORDS[unit]}. Measured = bytes of real tensors after step "
                       f"{V.MEASURE_STEPS}; hover for exact bytes. Measuring took "
                       f"{sum(r['seconds'] for r in good):.1f} s in all (cached per settings).")
    measured_table(rows, good, unit)


# ----------------------------------------------------------------------------- page


def body():
    st.title("Memory calculator")
    st.markdown("How much memory does fine-tuning take? The **analytic model** below adds up weights, gradients, "
                "optimizer state and activations for each method on large published models or a shape of your "
                "own; for the small models the **measured** bytes of a real training step sit beside the estimate.")
    widgets.preset_picker(V.PRESETS, PAGE, "mem")
    with state.page_state(PAGE, V.page_schema()) as ps:
        vals = ps.load()
        settings_panel(modes.instructor_on())
        vals = ps.current()
        try:
            spec = _spec_small(vals["model"]) if vals["model"] in V.SMALL else V.spec_for_choice(vals["model"], vals)
        except Exception as exc:  # noqa: BLE001 - e.g. a custom shape whose heads do not divide hidden
            frame.show_error(exc, "Model shape: ")
            return
        st.caption(spec_caption(spec))
        if not vals["methods"]:
            st.info("Pick at least one method.", icon=":material/info:")
        rows = V.estimate_rows(spec, vals)
        if rows:
            estimates_section(spec, vals, rows)
            activations_section(spec, vals, rows)
        st.divider()
        measured_section(vals)
        st.divider()
        worked_example_section(vals["unit"])


frame.run_page(body)
