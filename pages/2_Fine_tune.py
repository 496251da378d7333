"""Fine-tune: pick a model, a task and a method, start a short run, watch loss, accuracy and memory live."""

from __future__ import annotations

import time

import streamlit as st

from explorer import data as D
from explorer.views import figures_runs as FR
from explorer.workshop.inspector import SmtHandoff
from explorer.workshop.jobs import default_queue, estimate_run_bytes, estimate_run_label, queue_place
from explorer.workshop.runs import FineTuneRun, start_fine_tune
from explorer.methods import METHODS
from explorer.workshop.presets import for_page
from explorer.engine.config import TrainConfig
from explorer.views.page_schemas import FT_DEVICES, FT_SOURCES, finetune_base_schema, finetune_knob_schema
from explorer.views.verdicts import learning_verdict
from ui import frame, models, modes, polling, runs_panel, session, state, widgets

PAGE = "ft"
RUN_KEY = "ft_run"  # an explorer.workshop.runs.FineTuneRun
HANDOFF_KEY = "smt_inspector_selection"  # an explorer.workshop.inspector.SmtHandoff (from the SMT inspector)

LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2]
BATCHES = [1, 2, 4, 8, 16, 32, 64]

k = state.keys(PAGE)


def cuda_ok() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


# ----------------------------------------------------------------------------- the run (explorer.workshop.runs)


def active_run() -> FineTuneRun | None:
    return st.session_state.get(RUN_KEY)


def start_run(cfg: TrainConfig, loaded, hist, label: str) -> None:
    """Queue a run (refused with a readable message when it would not fit or one is active)."""
    run = active_run()
    if run is not None and run.running:
        st.session_state["ft_notice"] = ("warning", "A run is already going in this session: stop it first.")
        return
    try:
        st.session_state[RUN_KEY] = start_fine_tune(cfg, loaded, hist, label, owner=st.session_state.get("session_id"))
    except Exception as exc:  # noqa: BLE001 - MemoryRefused and friends: one readable line
        from explorer.errors import user_message

        st.session_state["ft_notice"] = ("error", user_message(exc))
        return
    st.session_state.pop("ft_notice", None)


def stop_run() -> None:
    run = active_run()
    if run is not None:
        run.stop()


# ----------------------------------------------------------------------------- live view


def draw_status(run: FineTuneRun, snap: dict) -> None:
    """Queued, progress, or how the run ended (with its learning verdict)."""
    status, recs = snap["status"], snap["records"]
    if status == "queued":
        pos = run.position()
        q = default_queue().stats()
        st.info(f"Queued: **{queue_place(pos)}** (at most {q['max_running']} fine-tunes run at once on this "
                f"server; {q['running']} running now). It starts by itself; Stop cancels it.",
                icon=":material/hourglass_top:")
    if status in ("running", "queued"):
        left = run.eta_s(snap)
        txt = (f"step {snap['step']} of {snap['total_steps']} · about {FR.fmt_eta(left)} left "
               "(from the measured pace)" if snap["step"] else
               ("loading the model and the task, first evaluation…" if status == "running" else "waiting"))
        st.progress(snap["progress"], text=txt)
    elif status == "finished":
        wall = (snap["ended"] or time.time()) - (snap["started"] or time.time())
        evs = [r for r in recs if r.get("eval_accuracy") is not None]
        acc = evs[-1]["eval_accuracy"] if evs else None
        v = learning_verdict(evs[0]["eval_accuracy"], acc, evs[-1].get("eval_n")) if len(evs) > 1 else None
        text = (f"Finished {snap['step']} steps in {wall:.1f} s" +
                (f" · final held-out accuracy {acc:.1%}" if acc is not None else "") +
                (f" · {v.text}" if v is not None else ""))
        if v is not None and v.kind == "nothing-learned":
            st.warning(text, icon=":material/trending_flat:")
        else:
            st.success(text, icon=":material/check_circle:")
        if v is not None:
            st.caption(f"Rule: {v.rule}.")
    elif status == "stopped":
        st.warning(f"Stopped: {snap['message'] or 'by the user'}. The steps done so far are kept in the history.",
                   icon=":material/stop_circle:")
    elif status == "nan":
        st.error(f"The run diverged: {snap['message']}", icon=":material/error:")
    else:
        st.error(f"The run failed: {snap['message']}", icon=":material/error:")


def draw_curves(run: FineTuneRun, snap: dict, tpl: str) -> None:
    """Loss and held-out accuracy, then the measured memory by part (figures cached per run version)."""
    recs = snap["records"]
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    with c1:
        modes.show_fig(run.figure("curves", snap, tpl), key=f"ft-live-{id(run.state)}")
    with c2:
        tr = [r for r in recs if r.get("loss") is not None]
        ev = [r for r in recs if r.get("eval_accuracy") is not None]
        st.markdown("**Loss and accuracy.** The blue line is the training loss of each batch (cross-entropy); "
                    "the orange dots are the accuracy on held-out examples the model never trains on, measured "
                    "at step 0 (before training) and every few steps.")
        m = st.columns(2)
        m[0].metric("training loss", f"{tr[-1]['loss']:.4f}" if tr else "—", help="loss of the latest batch")
        m[1].metric("held-out accuracy", f"{ev[-1]['eval_accuracy']:.1%}" if ev else "—",
                    delta=(f"{(ev[-1]['eval_accuracy'] - ev[0]['eval_accuracy']) * 100:+.1f} pts since step 0"
                           if len(ev) > 1 else None), help="share of held-out examples answered correctly")
    mem = [r for r in recs if r.get("weights_bytes") is not None]
    if not mem:
        return
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    last = mem[-1]
    with c1:
        modes.show_fig(run.figure("memory", snap, tpl), key=f"ft-mem-{id(run.state)}")
    with c2:
        parts = " · ".join(f"{lab}: **{(last.get(key) or 0) / 2**20:,.2f} MiB**" for key, lab, _ in FR.MEM_PARTS)
        st.markdown("**Memory, part by part** (measured every step by a byte account of the live tensors, "
                    "not estimated). Gradients and AdamW's two moments exist only for the trainable "
                    "parameters; the activations are the tensors autograd keeps between forward and backward. "
                    "On a small model with a PEFT method the grey band (frozen weights) dominates: the thin "
                    "bands on top are what training adds.")
        st.caption(f"Latest step: {parts} · total {last.get('total_bytes', 0) / 2**20:,.2f} MiB "
                   f"(MiB = 2^20 bytes)")


def draw_live(run: FineTuneRun, tpl: str) -> None:
    snap = run.snapshot()
    st.markdown(f"#### {run.label}")
    draw_status(run, snap)
    if snap["records"]:
        draw_curves(run, snap, tpl)


def live_panel() -> None:
    """Polls the run while it is queued (every 2 s) or training (every 0.7 s); a plain redraw otherwise (idle pages
    stay idle).  When a queued run starts, the panel polls faster from its next poll on (``ui.polling``)."""
    polling.panel(_live_panel, "ft_poll_s", lambda: getattr(active_run(), "poll_s", None))


def _live_panel() -> None:
    run = active_run()
    if run is None:
        return
    tpl = modes.plotly_template()
    if run.running:
        polling.retime("ft_poll_s", run.poll_s)  # queued -> training: the training pace, no full-page run
        run.heartbeat()  # the page is open; a run no page polls for PEFT_EXPLORER_ORPHAN_S s is stopped
        st.button("Stop", icon=":material/stop_circle:", key="ft_stop", on_click=stop_run, type="secondary",
                  help="Ends the run within one step; the steps done so far are kept")
    draw_live(run, tpl)
    if not run.running and not run.seen_done:
        run.seen_done = True
        st.rerun(scope="app")  # Start comes back, the history and downloads update


# ----------------------------------------------------------------------------- task choice


def upload_task(kind: str):
    """The uploaded file saved in this session's folder and loaded as a Task (or None + a message)."""
    from explorer.workshop.security import format_mib, max_upload_bytes, streamlit_max_upload_mb

    up = st.file_uploader(f"Data file ({D.suffixes_text(names=True)})", type=[s[1:] for s in D.DATA_SUFFIXES],
                          key="ft_upload", max_upload_size=streamlit_max_upload_mb(),
                          help=f"up to {format_mib(max_upload_bytes())}; columns text + label (encoders) or "
                               "prompt + answer (causal LMs); name other columns below")
    cols = st.columns([2, 2, 1.4])
    if kind == D.SEQ_CLS:
        c_a = cols[0].text_input("text column", key="ft_col_a", placeholder="auto (text, sentence, …)")
        c_b = cols[1].text_input("label column", key="ft_col_b", placeholder="auto (label, class, …)")
    else:
        c_a = cols[0].text_input("prompt column", key="ft_col_a", placeholder="auto (prompt, question, …)")
        c_b = cols[1].text_input("answer column", key="ft_col_b", placeholder="auto (answer, completion, …)")
    enc = cols[2].selectbox("encoding", D.ENCODINGS, key="ft_encoding",
                            help="auto: a byte-order mark (UTF-8, UTF-16), else UTF-8, else Windows-1252 / Latin-1; "
                                 "the summary below says which was used")
    if up is None:
        st.caption("No file yet: upload one, or pick a built-in task.")
        return None, {}
    cols_map = (dict(text_col=c_a.strip() or None, label_col=c_b.strip() or None) if kind == D.SEQ_CLS else
                dict(prompt_col=c_a.strip() or None, answer_col=c_b.strip() or None))
    cols_map["encoding"] = None if enc == "auto" else enc
    try:
        task = load_upload(up.name, up.getvalue(), kind, cols_map)
    except Exception as exc:  # noqa: BLE001 - DataError: a readable line
        frame.show_error(exc, "Data file: ")
        return None, {}
    st.caption(f"**{task.name}**: {len(task.train):,} training and {len(task.eval):,} held-out rows · "
               + (f"{task.num_labels} labels ({', '.join(map(str, task.label_names[:8]))})"
                  if kind == D.SEQ_CLS else "prompt → answer") + ("; " + "; ".join(task.notes) if task.notes else ""))
    return task.path, cols_map


def load_upload(name: str, data: bytes, kind: str, cols_map: dict):
    """Store an upload in this session's folder (made on first use) and load it as a Task named by the
    user's file name (DataError with a clear line when malformed).  The same file with the same settings
    is stored and parsed once per session, not on every rerun."""
    import hashlib

    from explorer.workshop.security import load_uploaded_task

    sig = (name, hashlib.sha256(data).hexdigest(), kind, tuple(sorted(cols_map.items())))
    cached = st.session_state.get("ft_upload_cache")
    if cached is None or cached[0] != sig:
        folder = session.session_folder()
        try:
            cached = (sig, load_uploaded_task(folder, name, data, kind, **cols_map))
        except Exception as exc:  # noqa: BLE001 - kept: a refused file is not stored again on every rerun
            cached = (sig, exc)
        st.session_state["ft_upload_cache"] = cached
    if isinstance(cached[1], Exception):
        raise cached[1]
    return cached[1]


# ----------------------------------------------------------------------------- page


def task_section(kind: str) -> tuple[str, str, dict]:
    """Where the task comes from: (source, task name or file path or hub name, the upload's column settings)."""
    st.markdown("##### Task")
    src = st.radio("Task source", FT_SOURCES, key=k("src"), horizontal=True, label_visibility="collapsed",
                   format_func=lambda s: {"built-in": "built-in task", "upload": "upload a file",
                                          "hub": "hub data set"}[s])
    task_name, cols_map = "", {}
    if src == "built-in":
        fits = [t for t in D.list_tasks() if t["kind"] == kind]
        names = [t["name"] for t in fits]
        if st.session_state.get(k("task")) not in names:
            st.session_state[k("task")] = D.default_task_for(kind)
        task_name = st.selectbox("Built-in task", names, key=k("task"))
        spec = next(t for t in fits if t["name"] == task_name)
        st.caption(f"{spec['description']}  \n{spec['size']} · source: {spec['source']}")
    elif src == "upload":
        task_name, cols_map = upload_task(kind)
    else:
        task_name = st.text_input("Hub data set", key=k("hub"), placeholder="glue/sst2",
                                  help="loaded with `datasets` when the hub is reachable").strip()
        if not task_name:
            st.caption("Type a data set name, e.g. glue/sst2 (needs the internet).")
    return src, task_name, cols_map


def training_section(method: str) -> None:
    """Steps, learning rate, batch size, seed, device, precision."""
    st.markdown("##### Training")
    c = st.columns(2)
    c[0].slider("steps", 2, 500, key=k("steps"), help="optimizer steps (SMT's warm-up is inside this budget)")
    cur_lr = float(st.session_state.get(k("lr"), 0.0))
    lr_opts = [0.0] + sorted(set(LRS) | ({cur_lr} if cur_lr > 0 else set()))
    c[1].select_slider("learning rate", lr_opts, key=k("lr"),
                       format_func=lambda x: f"default ({METHODS[method].default_lr:g})" if x == 0 else f"{x:g}",
                       help="AdamW peak rate; linear warm-up then linear decay")
    c = st.columns(3)
    if int(st.session_state.get(k("bs"), 16)) not in BATCHES:
        st.session_state[k("bs")] = min(BATCHES, key=lambda b: abs(b - int(st.session_state[k("bs")])))
    c[0].select_slider("batch size", BATCHES, key=k("bs"))
    if not modes.instructor_on():
        c[1].number_input("seed", 0, 2**31 - 1, step=1, key=k("seed"),
                          help="data order, head initialisation and the method's random choices")
    devs = list(FT_DEVICES) if cuda_ok() else ["auto", "cpu"]
    if st.session_state.get(k("device")) not in devs:
        st.session_state[k("device")] = "auto"
    c[2].selectbox("device", devs, key=k("device"),
                   help="auto: CUDA when there is a GPU, else CPU" + ("" if cuda_ok() else " (no GPU here)"))
    widgets.precision_widgets(PAGE, "prec", "ckpt", cuda=cuda_ok())


def method_section(method: str, loaded) -> None:
    """The method picker and its knobs."""
    st.markdown("##### Method")
    st.selectbox("Method", list(METHODS), key=k("method"), format_func=lambda m: METHODS[m].label,
                 label_visibility="collapsed")
    info = METHODS[method]
    st.caption(f"{info.description}  \nPaper: {info.paper} · trainable: `{info.formula}`")
    kv = modes.visible_knobs(info.knobs)
    if kv:
        with st.container(border=True):
            for kn in kv:
                widgets.knob_widget(PAGE, "k_", kn, loaded, method)
    else:
        st.caption("Full fine-tuning has no knobs: every parameter trains.")


def run_config(values: dict, method: str, name: str, src: str, task_name: str, cols_map: dict) -> TrainConfig:
    """The run the Start button would queue, from the page's current settings."""
    knobs = {f.name[2:]: values[f.name] for f in finetune_knob_schema(method)}
    steps = int(values["steps"])
    smt_sel = inspector_selection(method, name, knobs) if METHODS[method].takes_selection else None
    return TrainConfig(model=name, task=task_name if src != "built-in" else values["task"], method=method,
                       knobs=knobs, steps=steps, lr=float(values["lr"]) or None, batch_size=int(values["bs"]),
                       seed=int(values["seed"]), device=values["device"], eval_every=max(2, steps // 6),
                       eval_examples=200, precision=values["prec"], checkpointing=bool(values["ckpt"]),
                       smt_selection=smt_sel, **cols_map)


def start_bar(cfg: TrainConfig, loaded, hist, label: str, can: bool) -> None:
    """Start, the run's memory estimate and the server's queue; the last refusal under them."""
    st.divider()
    run = active_run()
    b = st.columns([1, 1, 4], vertical_alignment="center")
    need = estimate_run_bytes(cfg, loaded)
    with b[0]:
        frame.main_control()
    b[0].button("Start", icon=":material/play_arrow:", key="ft_start", type="primary",
                disabled=(run is not None and run.running) or not can, on_click=start_run,
                args=(cfg, loaded, hist, label), width="stretch", help="Runs in the background; the page stays usable")
    q = default_queue().stats()
    b[2].caption(f"Evaluates on up to 200 held-out examples every {cfg.eval_every} steps. "
                 + (f"Memory estimate for this run: about {need / 2**20:,.0f} MiB ({estimate_run_label(cfg)}). "
                    if need else "") +
                 f"Server: {q['running']} of {q['max_running']} fine-tune slots busy, {q['queued']} waiting.")
    note = st.session_state.get("ft_notice")
    if note:
        (st.error if note[0] == "error" else st.warning)(note[1], icon=":material/warning:")


def body():
    st.title("Fine-tune")
    st.markdown("Train a PEFT method on a small task **for real**, right here: loss, held-out accuracy and memory "
                "are measured step by step while the run goes. Every run joins this session's history "
                "(see **Compare**) and can be downloaded.")
    hist = session.session_history()  # before anything uses the session id (uploads)
    presets = for_page("finetune")
    widgets.preset_picker(presets, PAGE, "ft")
    with state.page_state(PAGE, finetune_base_schema(), keep=("sid",)) as ps:
        method = ps.setting("method", allowed=METHODS, default="lora")  # a new link or preset: its knobs are read
        ps.add(finetune_knob_schema(method), method_slot=("method", method))
        vals = ps.load()
        loaded = models.sidebar_model(PAGE, vals["model"])
        name = st.session_state.get(k("model"), vals["model"])
        if loaded is None:
            return
        widgets.preset_banner(presets, PAGE, "ft", ("method", "model", "task", "steps"))
        inf = loaded.info
        st.caption(f"**{inf.label}** · {inf.n_params:,} parameters · {inf.kind} · "
                   f"{'pretrained' if inf.pretrained else 'random weights'}")
        modes.keep_hidden_values(PAGE, [f.name for f in ps.schema if f.name == "seed" or f.name.startswith("k_")])
        left, right = st.columns([1, 1], gap="large")
        with left:
            src, task_name, cols_map = task_section(inf.kind)
            training_section(method)
        with right:
            method_section(method, loaded)
        cfg = run_config(ps.current(), method, name, src, task_name, cols_map)
        label = f"{METHODS[method].label} · {name} · " \
                f"{D.display_name(cfg.task) if cfg.task else D.default_task_for(inf.kind)}"
        start_bar(cfg, loaded, hist, label, can=bool(cfg.task or src == "built-in"))
        live_panel()
        runs_panel.downloads(hist)
        runs_panel.tryout_section(hist)


def inspector_selection(method: str, name: str, knobs: dict):
    """The blocks handed over by the SMT block inspector when they fit this run (same model, block size, and
    targets that hold every selected block), else None."""
    h: SmtHandoff | None = st.session_state.get(HANDOFF_KEY)
    if h is None or not METHODS[method].takes_selection:
        return None
    why = h.mismatch(name, knobs)
    c = st.columns([5, 1], vertical_alignment="center")
    if why:
        c[0].caption(f"The SMT block inspector's selection is not used: {'; '.join(why)}.")
        return None
    c[0].info(h.using_text(knobs), icon=":material/grid_view:")
    if c[1].button("Forget it", key="ft_forget_smt_sel", help="SMT picks its own blocks with a warm-up again"):
        st.session_state.pop(HANDOFF_KEY, None)
        st.rerun()
    return h.selection


frame.run_page(body)
