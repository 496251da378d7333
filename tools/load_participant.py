"""The load test's participants (``tests/load/test_load.py``; ``benchmarks/room_servers.py`` sends the same ones
through nginx): a headless participant (``tools.st_protocol.Session``) with two tabs, the playground and
Fine-tune, who starts a run and moves the rank slider while the room's runs train; what each count on screen must
be (worked out in the core); the room's plan (method and rank of participant ``i``).

``SESSIONS`` (the room size, ``PEFT_LOAD_SESSIONS``, 10 by default) sets the waits; a caller sizing another room
sets the environment variable before importing this module, or ``SESSIONS`` after.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

from explorer.views import fmt

SESSIONS = int(os.environ.get("PEFT_LOAD_SESSIONS", "10"))
# a participant waits for their run behind the room's queue (2 at a time): longer in a larger room
RUN_WAIT_S = 150 + 4 * SESSIONS
STEPS = 2  # browser clients: the page's minimum; it evaluates 200 held-out examples at steps 0, 1 and 2
P_STEPS = 40  # headless participants: runs long enough that the redraws happen while runs train
METHODS = ["lora", "dora", "lora-sp", "tied-lora"]
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # the playground's rank options (explorer.methods.facts.RANK_STEPS)

MOVES = 3  # rank slider moves per participant


def session_plan(i: int) -> tuple[str, int]:
    """Method and starting rank of session i (distinct pairs; MOVES slider steps stay inside RANKS)."""
    return METHODS[i % len(METHODS)], RANKS[(i // len(METHODS) + i) % (len(RANKS) - MOVES)]


# ----------------------------------------------------------------------------- expected counts (the core)

def expected_playground(method: str, rank: int) -> int:
    from explorer.views import playground as pg
    from explorer.models import load_model

    loaded = load_model("tiny-bert")
    vals = pg.side_schema(method, "a").defaults()
    vals["a_rank"] = rank
    return pg.summarize(loaded, method, pg.side_knobs(vals, method, "a")).trainable


def expected_run(method: str, rank: int) -> int:  # the count does not depend on the number of steps
    from explorer.methods import METHODS as M, apply_method
    from explorer.engine.config import TrainConfig
    from explorer.engine.prepare import load_for, prepare_base

    knobs = {kn.name: kn.default for kn in M[method].knobs}
    knobs["rank"] = rank
    cfg = TrainConfig(model="tiny-bert", method=method, knobs=knobs, steps=STEPS)
    loaded, task = load_for(cfg)
    ad = apply_method(prepare_base(loaded, task, cfg.seed), method, n_base=loaded.info.n_params, **knobs)
    return int(ad.num_trainable())


# ----------------------------------------------------------------------------- headless participants (protocol)

async def p_settle(ss, rec: dict, where: str) -> None:
    """The protocol twin of settle(): wait for the script run; a hung run gets one plain rerun, counted."""
    try:
        await ss.wait_idle()
    except AssertionError:
        rec.setdefault("rerun_key_needed", []).append(where)
        await ss.rerun()
        await ss.wait_idle()


def p_errors(ss) -> list[str]:
    return list(ss.errors) + [e.text for e in ss.all("alert") if e.proto.format == e.proto.ERROR]


async def p_server_status(url: str) -> dict:
    from tools.st_protocol import Session

    ss = Session(url)
    try:
        await ss.open("", "")
        ok = await ss.wait_for(lambda s: any('"base_models"' in e.text for e in s.all("code")), 90)
        assert ok, f"Home showed no server status: {ss.texts()[:20]}"
        return json.loads(next(e.text for e in ss.all("code") if '"base_models"' in e.text))
    finally:
        await ss.close()


async def p_watch_run(ft, rec: dict) -> None:
    """Timestamps of this participant's run as its Fine-tune tab shows it: training, then finished."""
    def training_or_done(s):
        seen = s.has_text(r"step \d+ of \d+") or s.has_text(r"Finished \d+ steps")
        if seen and rec.get("t_train_start") is None:
            rec["t_train_start"] = time.perf_counter()
        rec["saw_queue"] = rec.get("saw_queue") or s.has_text(r"in line")
        return s.has_text(r"Finished \d+ steps") or bool(p_errors(s))

    if not await ft.wait_for(training_or_done, RUN_WAIT_S):  # the live panel did not redraw by itself: one rerun
        rec.setdefault("rerun_key_needed", []).append("run status")
        await ft.rerun()
        await ft.wait_for(lambda s: s.has_text(r"Finished \d+ steps"), 60)
    rec["t_finished"] = time.perf_counter()
    # the tab polls a queued run every 2 s, so it notices the start late; the finish line says how long it ran
    m = next((re.search(r"Finished \d+ steps in ([\d.]+) s", t) for t in ft.texts()
              if re.search(r"Finished \d+ steps in ([\d.]+) s", t)), None)
    if m:
        start = rec["t_finished"] - float(m.group(1))
        rec["t_train_start"] = min(rec.get("t_train_start") or start, start)


async def p_one_session(url: str, i: int, exp_pg: dict, exp_run: dict, out: dict, headers: dict | None = None) -> None:
    """A participant with two tabs: the playground, and Fine-tune.  They start a run, then move the rank slider
    on the playground while the room's runs are queued and training (the redraws the room waits for).  ``headers``
    go with both tabs' WebSockets (benchmarks/room_servers.py: the proxy's cookie, as one browser sends it)."""
    from tools.st_protocol import Session

    method, rank = session_plan(i)
    rec = dict(session=i, method=method, rank=rank, redraws=[], errors=[], saw_queue=False)
    t_begin = time.perf_counter()
    out[i] = rec
    pg, ft = Session(url, headers=dict(headers or {})), Session(url, headers=dict(headers or {}))
    try:
        # 1. the playground with this participant's own settings
        await pg.open("Methods_playground", f"model=tiny-bert&m1={method}&m2=none&a_rank={rank}&wt=v&layer=0")
        await p_settle(pg, rec, "playground")
        rec["playground_count"] = pg.metric("trainable parameters")
        rec["playground_expected"] = fmt.count(exp_pg[(method, rank)])  # the metric's compact form
        # 2. Fine-tune in a second tab with the same method and rank: Start
        await ft.open("Fine_tune", f"model=tiny-bert&method={method}&k_rank={rank}&steps={P_STEPS}&bs=8&seed={i}")
        await p_settle(ft, rec, "fine-tune")
        t0 = time.perf_counter()
        await ft.click("ft_start")
        watch = asyncio.create_task(p_watch_run(ft, rec))
        # 3. back on the playground once the room's runs go (the queue line on the tab says "N running now")
        await ft.wait_for(lambda s: s.has_text(r"[1-9]\d* running now|step \d+ of \d+|Finished"), 30)
        cur = rank
        for _ in range(MOVES):
            await asyncio.sleep(0.7)  # a participant's pause between moves
            nxt = RANKS[RANKS.index(cur) + 1]
            want = fmt.count(exp_pg[(method, nxt)])
            t_sent = time.perf_counter()
            await pg.set_slider("pg:a_rank", nxt)
            await pg.wait_for(lambda s: s.metric("trainable parameters") == want, 60)
            shown_s = time.perf_counter() - t_sent
            got = pg.metric("trainable parameters")
            await p_settle(pg, rec, "redraw")
            rec["redraws"].append(dict(rank=nxt, seconds=shown_s, script_done_s=time.perf_counter() - t_sent,
                                       t_sent=t_sent, shown=got, expected=want))
            cur = nxt
        rec["errors"] += p_errors(pg)
        rec["t_playground_done"] = time.perf_counter() - t_begin
        # 4. the run's end, and the history it leaves
        await watch
        rec["run_seconds"] = rec["t_finished"] - t0
        rec["finished"] = ft.has_text(r"Finished \d+ steps")
        await p_settle(ft, rec, "run done")
        cap = r"trainable [\d,]+ · final accuracy"
        if rec["finished"]:  # the history section appears with the page's rerun after the run
            rec["history_shown_by_itself"] = await ft.wait_for(lambda s: s.has_text(cap), 20)
            if not rec["history_shown_by_itself"]:  # any widget move reruns the page
                await ft.set_slider("ft:steps", P_STEPS + 1)
                await ft.wait_for(lambda s: s.has_text(cap), 60)
            m = next((re.search(r"trainable ([\d,]+)", t) for t in ft.texts() if re.search(cap, t)), None)
            rec["run_count"] = m.group(1) if m else None
        rec["run_expected"] = f"{exp_run[(method, rank)]:,}"
        rec["t_done"] = time.perf_counter() - t_begin
        rec["errors"] += p_errors(ft)
    except Exception as e:  # noqa: BLE001 - reported by the test with the session's record
        rec["errors"].append(f"{type(e).__name__}: {str(e)[:300]}")
    finally:
        await pg.close()
        await ft.close()


def expectations() -> tuple[dict, dict]:
    plans = [session_plan(i) for i in range(SESSIONS)] + [session_plan(0)]
    exp_pg = {}
    for m, r in plans:
        for rr in RANKS[RANKS.index(r):RANKS.index(r) + MOVES + 1]:
            exp_pg.setdefault((m, rr), expected_playground(m, rr))
    return exp_pg, {(m, r): expected_run(m, r) for m, r in plans}


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def server_cpu(pid: int) -> dict:
    """CPU seconds (user + system) of the server process, of its reaped children and of each live child (worker
    processes), keyed by (pid, start time)."""
    import psutil

    p = psutil.Process(pid)
    t = p.cpu_times()
    kids = {}
    for c in p.children(recursive=True):
        try:
            ct = c.cpu_times()
            kids[(c.pid, c.create_time())] = ct.user + ct.system
        except psutil.Error:
            pass
    return dict(server=t.user + t.system, reaped=t.children_user + t.children_system, children=kids)
