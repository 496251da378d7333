"""Claims lab: each paper's headline claim reproduced at small scale, with seeds, error bars and a computed
verdict.  The shipped results (assets/claims/) show at once; a live re-run goes through the server's queue."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.claims import figures as F
from explorer.claims import live as L
from explorer.claims import results as R
from explorer.claims import specs
from explorer.claims import stats as S
from explorer.claims import words as W
from explorer.views.page_schemas import claims_schema
from explorer.views.figcache import cached
from ui import frame, models, modes, polling, session, state

LIVE_KEY = "claims_live"  # {claim name: LiveRun}
VERDICT_BOX = {S.HOLDS: (st.success, ":material/check_circle:"), S.FAILS: (st.error, ":material/cancel:"),
               S.UNSURE: (st.warning, ":material/help:")}


def _fmt_ci(lo, hi) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "—"


def tests_table(doc: dict) -> pd.DataFrame:
    rows = []
    for t in doc["tests"]:
        if t.get("verdict") is None:
            rows.append(dict(part=t["label"], measured=t.get("note") or "—", **{"95 % interval": "—"},
                             verdict="(waiting)"))
            continue
        if "diff" in t:
            measured = f"B − A = {t['diff']:+.3f} (A {t['mean_a']:.3f}, B {t['mean_b']:.3f})"
            ci = _fmt_ci(t["lo"], t["hi"])
        elif "slope_b" in t:
            measured = (f"slope per doubling: {t['b']} {t['slope_b']['slope']:+.3f}, {t['a']} {t['slope_a']['slope']:+.3f}; "
                        f"difference {t['slope_diff']['diff']:+.3f}")
            ci = (f"{t['b']} {_fmt_ci(t['slope_b']['lo'], t['slope_b']['hi'])}; "
                  f"difference {_fmt_ci(t['slope_diff']['lo'], t['slope_diff']['hi'])}")
        else:
            measured = f"mean {t['mean']:.3f} (level {t['level']:.3f})"
            ci = f"[{t['lo']:.3f}, {t['hi']:.3f}]"
        rows.append(dict(part=t["label"], measured=measured, **{"95 % interval": ci}, verdict=t["verdict"]))
    return pd.DataFrame(rows)


def arms_table(doc: dict, memo=lambda what, build: build()) -> None:
    """The arms as run (from the results file itself), with links that open Fine-tune with each run's settings
    (``memo(what, build)``: a re-run's card keeps what it built from one version of its document)."""
    st.markdown(memo("arms", lambda: arms_markdown(doc)))
    for note in W.same_accuracy_notes(doc):
        st.markdown(note)
    res = W.resolution_note(doc)
    if res:
        st.caption(res)


def arms_markdown(doc: dict) -> str:
    exp = specs.from_dict(doc["experiment"])
    sz = specs.size_from_settings(doc["settings"], doc.get("size", "full"))
    arms = {a.key: a for a in exp.arms}
    ref = doc["arms"][0]["adapter_params"] if doc["arms"] else None
    rows = []
    for a in doc["arms"]:
        arm = arms.get(a["arm"])
        links = " ".join(f"[seed {s}]({L.finetune_link(exp, arm, s, sz)})" for s in sz.seeds) if arm else "—"
        ratio = f"{a['adapter_params'] / ref:.1%}" if ref and a["adapter_params"] else "—"
        mean = f"{a['mean']:.3f}" if a["mean"] is not None else "—"
        ci = f"[{a['lo']:.3f}, {a['hi']:.3f}]" if a["lo"] is not None else "—"
        accs = ", ".join(f"{x:.3f}" for x in a["accuracy"]) or "—"
        loss = W.loss_text(a)
        rows.append(f"| {a['label']} | {a['adapter_params']:,} | {ratio} | {mean} | {ci} | {accs} | {loss} | {links} |"
                    if a["adapter_params"] else
                    f"| {a['label']} | — | — | {mean} | {ci} | {accs} | {loss} | {links} |")
    return ("| arm | adapter parameters | vs first arm | mean accuracy | 95 % CI | per seed | held-out loss (mean) "
            "| open in Fine-tune |\n"
            "|---|---:|---:|---:|---|---|---:|---|\n" + "\n".join(rows))


def verdict_box(doc: dict) -> None:
    v = doc.get("verdict")
    if v is None:
        st.info("Verdict: waiting for seeds.", icon=":material/hourglass_top:")
        return
    box, icon = VERDICT_BOX[v]
    n = len({r["seed"] for r in doc.get("records", []) if r.get("status") == "finished"})
    box(f"**Verdict: {v}**" + (f" ({n} seeds per arm)" if n else ""), icon=icon)
    first = doc.get("first_seeds")
    if first and first.get("verdict"):
        st.caption(f"The same rules on the first {len(first['seeds'])} seeds only: {first['verdict']} "
                   f"({'; '.join(str(t['verdict']) for t in first['tests'])}).")


def live_controls(name: str) -> None:
    lives = st.session_state.setdefault(LIVE_KEY, {})
    lr = lives.get(name)
    c = st.columns([2, 2, 5], vertical_alignment="bottom")
    size = c[0].selectbox("Re-run size", list(specs.SIZES), key=f"claims_size_{name}",
                          help=f"full: the shipped experiment ({len(specs.SIZES['full'].seeds)} seeds per arm; tens "
                               "of minutes on a CPU server). "
                               "quick: a few steps per run, to see the machinery (its verdicts mean nothing).")
    busy = lr is not None and not lr.done
    if busy:
        c[1].button("⏹ Stop the re-run", key=f"claims_stop_{name}", on_click=lr.stop)
    elif c[1].button("▶ Re-run live", key=f"claims_run_{name}",
                     help="Sends every run of this experiment through the server's run queue; the chart and the "
                          "verdict redraw as seeds finish. The runs also join this session's history (Compare)."):
        exp = specs.get(name)
        hist = session.session_history()
        loaded = models.get_base(exp.model)
        st.session_state[f"claims_seen_{name}"] = False
        lives[name] = L.LiveRun(name, size, loaded=loaded, on_result=hist.sink("claims · ", keep_adapter=False),
                                owner=st.session_state.get("session_id")).start()
        st.rerun()
    n = len(L.runner.plan(specs.get(name), specs.size(size)))
    c[2].caption(f"{n} runs ({len(specs.get(name).arms)} arms x {len(specs.size(size).seeds)} seeds, "
                 f"{specs.size(size).steps} steps each).")


def card_body(name: str, shipped: dict | None, error: str | None) -> None:
    try:  # a fragment's exception does not reach run_page: one readable line on this card
        _card_body(name, shipped, error)
    except Exception as exc:  # noqa: BLE001
        frame.show_error(exc, "Claims lab: ")


def _card_body(name: str, shipped: dict | None, error: str | None) -> None:
    lr = st.session_state.get(LIVE_KEY, {}).get(name)
    doc = shipped
    if lr is not None:
        snap = lr.document()
        show = st.radio("Show", ["this re-run", "shipped results"], horizontal=True, key=f"claims_show_{name}")
        if show == "this re-run":
            doc = snap
            live = snap["live"]
            if not lr.done:
                polling.retime(f"claims_poll_{name}", lr.poll_s)
                lr.sweep.heartbeat()
                st.progress(live["done"] / max(1, live["total"]),
                            text=f"re-run: {live['done']} of {live['total']} runs finished")
            else:
                if not st.session_state.get(f"claims_seen_{name}"):
                    st.session_state[f"claims_seen_{name}"] = True
                    st.rerun()  # the whole page once, so this card stops polling
                st.caption(f"Re-run {live['status']}: {live['done']} of {live['total']} runs"
                           + (f" ({live['message']})" if live["message"] else "") + ".")
    if doc is None:
        st.info(error or f"No results shipped for this claim yet: `python -m explorer claims --run {name}`.",
                icon=":material/info:")
        return

    def memo(what, build):  # a re-run's card: built once per version of its document (the polls between seeds)
        return cached(("claims", what, lr.uid, doc["live"]["version"]), build) if "live" in doc else build()

    left, right = st.columns([3, 2])
    with left:
        if any(a["mean"] is not None for a in doc["arms"]):
            modes.show_fig(memo("figure", lambda: F.claim_figure(doc)),
                           key=f"claims_fig_{name}_{'live' if 'live' in doc else 'shipped'}")
        else:
            st.caption("The chart appears when the first seed of an arm finishes.")
    with right:
        verdict_box(doc)
        labels = {a["arm"]: a["label"] for a in doc["arms"]}
        for t in doc["tests"]:  # where each interval lies against zero and the margin, in words from the numbers
            st.markdown(f"- **{t['label']}**: {W.explain_test(t, labels)}")
        with st.expander("The rule"):
            for t in doc["tests"]:
                st.markdown(f"- **{t['label']}**: {t.get('rule', '')}")
            st.markdown(f"- **The claim**: {doc.get('rule', S.rule_text('all'))}")
            st.caption("A = the reference arm, B = the arm the claim is about; 95 % intervals over seeds.")
    if modes.projector_on():  # an HTML table: it grows with the projector's type (a data grid keeps its small font)
        st.table(memo("tests", lambda: tests_table(doc)), hide_index=True)
    else:
        st.dataframe(memo("tests", lambda: tests_table(doc)), hide_index=True, width="stretch")
    arms_table(doc, memo)
    st.caption("Each link opens the Fine-tune page with that arm's exact settings: same seed, same batches, same "
               "held-out sentences, so on a CPU its final accuracy is this table's figure for that seed. "
               "Runs of a live re-run also appear on the Compare page.")
    ran = specs.from_dict(doc["experiment"])  # the experiment as the results file records it
    with st.expander("Caveats of scale, and how this was run"):
        for c in ran.caveats:
            st.markdown(f"- {c}")
        st.markdown(f"- Why this setting: {ran.why}")
        if doc.get("command"):
            v = doc.get("versions") or {}
            st.caption(f"`{doc['command']}` · commit {str(doc.get('commit') or '?')[:10]} · "
                       + ", ".join(f"{k} {val}" for k, val in v.items() if val) + f" · {doc.get('finished', '')}")


def card(name: str) -> None:
    exp = specs.EXPERIMENTS[name]
    shipped, error = None, None
    try:
        shipped = R.load(name)
    except Exception as exc:  # noqa: BLE001 - a broken file: one line on its card, the others still show
        from explorer.errors import user_message

        error = user_message(exc)
    with st.container(border=True):
        st.subheader(exp.title)
        st.markdown(f"**Claim** ({exp.source}): {exp.claim}")
        st.markdown(f"**The paper's own figure:** {exp.paper_figure}")
        st.markdown(f"**Here:** {exp.why}")
        lr = st.session_state.get(LIVE_KEY, {}).get(name)
        running = lr is not None and not lr.done
        polling.panel(card_body, f"claims_poll_{name}", lambda: lr.poll_s if running else None, name, shipped, error)
        with st.expander("Re-run this experiment live", expanded=running):
            live_controls(name)


def body():
    st.title("Claims lab")
    st.markdown("Each paper's headline claim, tested at small scale on a real pretrained model (minilm) and a real "
                "task (BBC News topics): every arm runs with 3 or more seeds, the chart shows the mean with its "
                "95 % interval, and the verdict (**holds at this scale**, **does not hold at this scale** or "
                "**inconclusive**) is computed from the numbers by the rule stated on each card. A claim that does "
                "not hold at this scale is a result too: the caveats say what differs from the paper.")
    st.caption("Shipped results: `assets/claims/` (made with `python -m benchmarks.claims`). "
               "`python -m explorer claims --json` lists the same verdicts and numbers.")
    schema = claims_schema()
    with state.page_state("claims", schema) as ps:
        ps.load()
        frame.main_control()
        st.radio("Claims shown", ("all",) + tuple(specs.NAMES), key=ps.key("claim"), horizontal=True,
                 help="one card only, e.g. for a link shown on the projector")
        pick = ps.current()["claim"]
        for name in specs.NAMES:
            if pick in ("all", name):
                card(name)


frame.run_page(body)
