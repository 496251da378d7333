"""What keeps a redraw cheap when a room polls the server (issue 23): version counters, figures built once per input
and shared, fast live charts equal to the slow ones, the playground's views kept with their summary, the garbage
collector kept off long-lived objects, and the participant-cost benchmark's sorting of py-spy samples."""

from __future__ import annotations

import gc
import json
import threading
import time

import plotly.io as pio
import pytest

from explorer.engine.config import TrainConfig
from explorer.engine.state import RunState
from explorer.views import figures_runs as FR
from explorer.views import playground as pg
from explorer.views.figcache import FigureCache
from explorer.workshop.runs import FineTuneRun


# ----------------------------------------------------------------------------- the figure cache

def test_a_figure_is_built_once_per_key_and_the_oldest_key_goes_first():
    c = FigureCache(maxsize=2)
    built = []

    def build(v):
        built.append(v)
        return [v]

    a = c.get("a", lambda: build("a"))
    assert c.get("a", lambda: build("a again")) is a and built == ["a"]
    c.get("b", lambda: build("b"))
    c.get("a", lambda: build("a3"))  # a is now the most recent
    c.get("c", lambda: build("c"))  # b goes
    assert built == ["a", "b", "c"] and len(c) == 2
    c.get("b", lambda: build("b2"))
    assert built == ["a", "b", "c", "b2"] and c.hits == 2 and c.builds == 4


def test_sessions_that_miss_the_same_key_at_once_share_one_build():
    c = FigureCache()
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(10)
        return object()

    out = []
    first = threading.Thread(target=lambda: out.append(c.get("k", slow)))
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=lambda: out.append(c.get("k", slow))) for _ in range(5)]
    for t in others:
        t.start()
    time.sleep(0.2)  # the others are waiting for the first build (no event says "waiting")
    release.set()
    for t in [first] + others:
        t.join(10)
    assert len(calls) == 1 and len(out) == 6 and all(o is out[0] for o in out)


def test_a_build_that_fails_caches_nothing_and_the_next_ask_builds():
    c = FigureCache()

    def bad():
        raise ValueError("no")

    with pytest.raises(ValueError):
        c.get("k", bad)
    assert len(c) == 0 and c.get("k", lambda: 5) == 5


# ----------------------------------------------------------------------------- fast live charts

def _records(n: int, warm: int = 0, ckpt: bool = False) -> list[dict]:
    out = []
    for s in range(1, n + 1):
        r = dict(step=s, phase="warmup" if s <= warm else "train", loss=2.0 / s, weights_bytes=9 * 2**20,
                 grads_bytes=2**19, optimizer_bytes=2**20, activations_bytes=3 * 2**20, step_time_s=0.1)
        if ckpt:
            r["activations_recomputed_bytes"] = 2**20
        if s % 5 == 0:
            r.update(eval_accuracy=0.5 + s / 100, eval_n=200)
        out.append(r)
    return out


@pytest.mark.parametrize("tpl", [None, "plotly_dark"])
@pytest.mark.parametrize("n,warm,ckpt", [(0, 0, False), (1, 0, False), (40, 0, False), (40, 8, False),
                                         (12, 0, True)])
def test_fast_live_charts_are_the_figures_plotly_builds(tpl, n, warm, ckpt):
    recs = _records(n, warm, ckpt)
    for fast, slow in ((FR.live_curves, FR.live_curves_built), (FR.memory_stack, FR.memory_stack_built)):
        FR.live_curves(_records(3), tpl)  # the layout of this shape may already be kept from another record set
        got, want = fast(recs, tpl), slow(recs, tpl)
        assert json.loads(pio.to_json(got, validate=False)) == json.loads(pio.to_json(want, validate=False))


def test_a_fast_chart_changed_in_place_leaves_the_next_one_as_it_was():
    recs = _records(20)
    fig = FR.live_curves(recs, None)
    fig.update_traces(line=dict(color="red"))
    fig.update_layout(height=999, title_text="changed")
    again = FR.live_curves(recs, None)
    assert again.layout.height == 340 and again.data[0].line.color != "red"
    assert json.loads(pio.to_json(again)) == json.loads(pio.to_json(FR.live_curves_built(recs, None)))


# ----------------------------------------------------------------------------- a run's version and its figures

def _cfg() -> TrainConfig:
    return TrainConfig(model="tiny-bert", task="colour-shape", method="lora", steps=4)


def test_every_change_a_page_can_show_moves_the_runs_version():
    st = RunState(_cfg())
    v0 = st.version
    st.add_record(dict(step=1, phase="train", loss=1.0))
    v1 = st.version
    st.set(status="running")
    v2 = st.version
    st.set()  # a record completed in place (the final evaluation)
    assert v0 < v1 < v2 < st.version and st.snapshot()["version"] == st.version
    assert RunState(_cfg()).uid != st.uid


def test_a_watched_runs_figures_are_built_once_per_version():
    run = FineTuneRun(state=RunState(_cfg()), job=None, cfg=_cfg(), label="x")
    run.state.add_record(dict(step=1, phase="train", loss=1.0, weights_bytes=2**20))
    snap = run.snapshot()
    a, m = run.figure("curves", snap, None), run.figure("memory", snap, None)
    assert run.figure("curves", run.snapshot(), None) is a and run.figure("memory", run.snapshot(), None) is m
    assert run.figure("curves", snap, "plotly_dark") is not a  # per template
    run.state.add_record(dict(step=2, phase="train", loss=0.5, weights_bytes=2**20))
    b = run.figure("curves", run.snapshot(), None)
    assert b is not a and list(b.data[0].x) == [1, 2] and list(a.data[0].x) == [1]
    other = FineTuneRun(state=RunState(_cfg()), job=None, cfg=_cfg(), label="y")
    other.state.add_record(dict(step=1, phase="train", loss=9.0))
    other.state.add_record(dict(step=2, phase="train", loss=9.0))  # the same version number as run's: no mix-up
    assert other.snapshot()["version"] == run.snapshot()["version"]
    assert list(other.figure("curves", other.snapshot(), None).data[0].y) == [9.0, 9.0]


# ----------------------------------------------------------------------------- the playground's views

def test_the_playground_draws_a_summarys_views_once_and_keeps_them_with_it(tiny_bert):
    s = pg.summarize(tiny_bert, "lora", dict(rank=4, targets=["q", "v"]), use_cache=False)
    lay = pg.find_layout(s, "v", 0)
    pics = pg.matrix_pictures(s, lay)
    assert pics and pg.matrix_pictures(s, lay) is pics
    fig, extra = pg.picture_figure(pics[0], None)
    assert pg.picture_figure(pics[0], None)[0] is fig and pg.picture_figure(pics[0], "plotly_dark")[0] is not fig
    dv = pg.delta_view(s, lay, 0, None)
    assert pg.delta_view(s, lay, 0, None) is dv
    assert pg.delta_view(s, lay, 1, None) is not dv and pg.delta_view(s, lay, 0, "plotly_dark") is not dv
    d, note = pg.illustrative_delta(s, lay.target, seed=0)  # the view holds what the page drew before
    rank, exact, text = pg.delta_rank(s, lay.target, d, seed=0)
    red, f = pg.reduce_abs_max(d)
    assert (dv.note, dv.rank, dv.rank_exact, dv.rank_text, dv.factor) == (note, rank, exact, text, f)
    assert text in dv.figure.layout.title.text
    # a summary keeps at most DRAWN_PER_SUMMARY views
    from explorer.views.playground_pictures import DRAWN_PER_SUMMARY

    other = pg.find_layout(s, "q", 0)
    for seed in range(DRAWN_PER_SUMMARY + 2):
        pg.delta_view(s, other, seed, None)
    assert len(s.__dict__["_drawn"]) == DRAWN_PER_SUMMARY


# ----------------------------------------------------------------------------- the garbage collector

def test_the_server_freezes_what_lives_long_and_the_tests_can_say_no(monkeypatch):
    from explorer.workshop.status import FREEZE_ENV, freeze_long_lived

    monkeypatch.setenv(FREEZE_ENV, "0")
    before = gc.get_freeze_count()
    assert freeze_long_lived() == 0 and gc.get_freeze_count() == before
    monkeypatch.setenv(FREEZE_ENV, "1")
    try:
        n = freeze_long_lived()
        assert n == gc.get_freeze_count() and n > 1000  # this process's modules, at least
    finally:
        gc.unfreeze()


# ----------------------------------------------------------------------------- the class board's cache name

def test_two_board_files_have_different_cache_names(tmp_path):
    from explorer.workshop.board import Board

    a, b = Board(tmp_path / "a.sqlite"), Board(tmp_path / "b.sqlite")
    assert a.cache_id != b.cache_id and a.version() == b.version()  # same version, other board
    assert Board(tmp_path / "a.sqlite").cache_id == a.cache_id
    (tmp_path / "a.sqlite").unlink()
    assert Board(tmp_path / "a.sqlite").cache_id != a.cache_id  # made again: another board


# ----------------------------------------------------------------------------- the benchmark's py-spy sorting

def test_participant_cost_sorts_pyspy_samples_by_page_streamlit_and_relay(tmp_path):
    from tools.pyspy_shares import attribute, parse_raw

    root = tmp_path / "co"
    sp = "/venv/lib/python3.11/site-packages"
    raw = "\n".join([
        f"thread (1): ScriptRunner.scriptThread;_run_script ({sp}/streamlit/runtime/scriptrunner/script_runner.py);"
        f"<module> ({root}/pages/2_Fine_tune.py);draw_live ({root}/pages/2_Fine_tune.py);"
        f"live_curves ({root}/explorer/views/figures_runs.py);__init__ ({sp}/plotly/graph_objs/_scatter.py) 6",
        f"thread (1): ScriptRunner.scriptThread;_run_script ({sp}/streamlit/runtime/scriptrunner/script_runner.py);"
        f"<module> ({root}/pages/2_Fine_tune.py);show_fig ({root}/ui_modes.py);"
        f"plotly_chart ({sp}/streamlit/elements/plotly_chart.py);dumps (/py/lib/python3.11/json/__init__.py) 3",
        f"thread (1): ScriptRunner.scriptThread;_run_script ({sp}/streamlit/runtime/scriptrunner/script_runner.py) 2",
        f"thread (2): MainThread;run ({sp}/tornado/ioloop.py) 4",
        f"thread (3): peft-run-17;_run ({root}/explorer/workshop/workers.py) 1",
        f"thread (4): ThreadPoolExecutor-0_0;run (/py/lib/python3.11/concurrent/futures/thread.py) 1",
        "garbage line",
    ])
    p = attribute(parse_raw(raw), root)
    assert p["samples"] == 17
    assert p["owner"] == {"page 2_Fine_tune.py": 9, "Streamlit server (main thread: WebSocket, messages, sessions)": 4,
                          "Streamlit script runner (outside page code)": 2, "run queue relay (peft-run threads)": 1,
                          "other thread (ThreadPoolExecutor-0)": 1}
    assert p["called"]["page 2_Fine_tune.py"] == {"plotly": 6, "streamlit": 3}
    assert p["functions"]["pages/2_Fine_tune.py:<module>"] == 9
    assert p["functions"]["explorer/views/figures_runs.py:live_curves"] == 6


# ----------------------------------------------------------------------------- a sweep, a warm-up and a claims re-run

class _Line:
    """A queued job's place in the server's line, as a page reads it (``Job.position``)."""

    def __init__(self, place: int):
        self.place = place

    def position(self) -> int:
        return self.place


def test_a_sweep_hands_out_the_same_snapshot_until_something_in_it_changes():
    from explorer.workshop.sweeps import Sweep

    sw = Sweep([("a", _cfg()), ("b", _cfg())], queue=object())
    state, line = RunState(_cfg()), _Line(3)
    sw._set(current_state=state, current_job=line)
    s1 = sw.snapshot()
    assert sw.snapshot() is s1 and s1.position == 3 and s1.current["version"] == state.version
    assert sw.poll_s == Sweep.POLL_QUEUED_S == 2.0  # its run waits in line
    line.place = 2  # someone ahead left the line
    s2 = sw.snapshot()
    assert s2 is not s1 and s2.position == 2 and sw.snapshot() is s2
    state.set(status="running")
    line.place = 0
    assert sw.poll_s == Sweep.POLL_TRAINING_S == 1.0
    v = sw.version
    state.add_record(dict(step=1, phase="train", loss=1.0))
    assert sw.version != v
    s3 = sw.snapshot()
    assert s3 is not s2 and s3.current["step"] == 1 and sw.snapshot() is s3
    sw._set(status="finished")
    assert sw.snapshot().status == "finished" and sw.poll_s is None


def test_a_warm_up_is_polled_slowly_in_line_quickly_while_it_computes_and_not_after():
    from explorer.workshop.inspector import WarmupJob, WarmupProgress, WarmupSettings

    class J:
        status, done = "queued", False

    job, prog = J(), WarmupProgress()
    wj = WarmupJob(job=job, settings=WarmupSettings("tiny-bert", "colour-shape", 4, 2, 16, "full", 0), progress=prog)
    assert wj.poll_s == WarmupJob.POLL_QUEUED_S == 2.0
    job.status = "running"
    assert wj.poll_s == WarmupJob.POLL_RUNNING_S == 0.5
    v = prog.version
    prog(0.5, "step 2 of 4")
    assert prog.version == v + 1 and (prog.frac, prog.msg) == (0.5, "step 2 of 4")
    job.done = True
    assert wj.poll_s is None


def test_a_claims_rerun_is_analysed_and_drawn_once_per_finished_seed():
    from explorer.claims import analysis, live
    from explorer.engine.state import RunResult
    from explorer.workshop.jobs import RunQueue

    lr = live.LiveRun("sparta", "quick", queue=RunQueue(max_running=1))
    assert lr.poll_s == live.LiveRun.POLL_S
    calls = []
    real = analysis.analyse

    def counted(exp, recs):
        calls.append(len(recs))
        return real(exp, recs)

    analysis.analyse = counted
    try:
        d0 = lr.document()
        assert lr.document() is d0 and calls == [0]  # polls between two seeds: nothing analysed again
        label = lr.plan[0][0]
        lr._on_result(label, RunResult(records=[], summary=dict(status="finished", final_accuracy=0.8,
                                                                trainable_params=1000)))
        d1 = lr.document()
        assert d1 is not d0 and len(d1["records"]) == 1 and lr.document() is d1 and calls == [0, 1]
        assert d1["live"]["version"] == lr.version != d0["live"]["version"]
    finally:
        analysis.analyse = real
    lr.sweep._set(status="stopped", message="stopped after 1 of 6 runs")
    d2 = lr.document()
    assert d2 is not d1 and d2["live"]["status"] == "stopped" and lr.poll_s is None


def test_a_charts_text_alternative_is_made_once_per_figure_and_goes_with_it(monkeypatch):
    from explorer.views import figure_text as T

    fig = FR.memory_stack(_records(30), None)
    made = []
    real = T.describe
    monkeypatch.setattr(T, "describe", lambda f: made.append(1) or real(f))
    alt = T.alternative(fig)
    assert alt == (T.plain(fig.layout.title.text), real(fig), T.markdown_table(fig)) and alt[1]
    assert T.alternative(fig) is alt and len(made) == 1  # every poll that redraws this figure: nothing made again
    other = FR.live_curves(_records(30), None)
    assert T.alternative(other) != alt and len(made) == 2
    key = id(fig)
    del fig
    gc.collect()
    assert key not in T._KEPT  # kept only while the figure lives (an id is reused by later objects)
