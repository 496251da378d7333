"""Page tests (AppTest) for Fine-tune and Compare: controls, URL state, real short runs, start/stop, history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
FT = str(ROOT / "pages" / "2_Fine_tune.py")
CMP = str(ROOT / "pages" / "3_Compare.py")
TIMEOUT = 90

from tests.support.apptest import no_problem, open_page, page_app, qp, stop_all_runs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: 1 torch thread


def ft(**params):
    return open_page(FT, TIMEOUT, **params)


@pytest.fixture(autouse=True)
def sessions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    yield
    stop_all_runs()



def run_state(at: AppTest):
    return at.session_state["ft_run"].state if "ft_run" in at.session_state else None


def wait_done(at: AppTest, timeout: float = 60.0) -> str:
    deadline = time.time() + timeout
    while True:
        at.run()
        st = run_state(at)
        if st is not None and st.done and at.session_state["ft_run"].job.done:  # history written too
            at.run()  # the page's redraw after the end
            return st.status
        if time.time() > deadline:
            raise AssertionError(f"the run did not end in {timeout} s (status {st.status if st else None})")
        time.sleep(0.3)


def test_default_page_runs():
    at = ft()
    no_problem(at)
    assert qp(at, "model") == "minilm" and qp(at, "method") == "lora" and qp(at, "seed") == "0"
    assert any(b.label == "Start" and not b.disabled for b in at.button)
    assert "ft_run" not in at.session_state


def test_every_control_moved():
    at = ft(model="tiny-bert")
    no_problem(at)
    at.slider(key="ft:steps").set_value(12).run()
    at.select_slider(key="ft:lr").set_value(1e-3).run()
    at.select_slider(key="ft:bs").set_value(8).run()
    at.number_input(key="ft:seed").set_value(7).run()
    at.selectbox(key="ft:device").set_value("cpu").run()
    no_problem(at)
    assert (qp(at, "steps"), qp(at, "lr"), qp(at, "bs"), qp(at, "seed"), qp(at, "device")) == \
        ("12", "0.001", "8", "7", "cpu")
    names = at.selectbox(key="ft:task").options
    assert "size-compare" in names and "word-category" not in names  # filtered by the model kind
    at.selectbox(key="ft:task").set_value("bbc-news").run()
    assert qp(at, "task") == "bbc-news"
    at.select_slider(key="ft:k_rank").set_value(4).run()
    assert qp(at, "k_rank") == "4"
    from explorer.methods import METHODS

    for m in METHODS:  # every method draws its knobs
        at.selectbox(key="ft:method").set_value(m).run()
        no_problem(at)
        assert qp(at, "method") == m
        for kn in METHODS[m].knobs:
            assert f"k_{kn.name}" in at.query_params
    at.selectbox(key="ft:method").set_value("sparta").run()
    at.slider(key="ft:k_sparsity").set_value(0.9).run()
    assert qp(at, "k_sparsity") == "0.9"
    at.radio(key="ft:src").set_value("hub").run()
    no_problem(at)
    at.radio(key="ft:src").set_value("upload").run()
    no_problem(at)
    start = next(b for b in at.button if b.label == "Start")
    assert start.disabled  # nothing uploaded yet
    # instructor mode hides advanced knobs and the seeds
    at.selectbox(key="ft:method").set_value("lora").run()
    at.toggle(key="instructor").set_value(True).run()
    no_problem(at)
    assert not [w for w in at.slider if w.key == "ft:k_dropout"]
    assert not [w for w in at.number_input if w.key in ("ft:seed", "ft:k_seed")]
    assert qp(at, "instr") == "1"
    assert qp(at, "seed") == "7"  # hidden, not forgotten


def test_precision_and_checkpointing_controls_reach_the_run():
    """The two controls: URL fields like the others, fp16 offered only with CUDA, both settings in the run."""
    import torch

    at = ft(model="tiny-bert", steps="4", bs="8", prec="bf16", ckpt="1")
    no_problem(at)
    assert at.radio(key="ft:prec").value == "bf16" and at.toggle(key="ft:ckpt").value is True
    assert ("fp16" in at.radio(key="ft:prec").options) == torch.cuda.is_available()
    at.radio(key="ft:prec").set_value("fp32").run()
    at.toggle(key="ft:ckpt").set_value(False).run()
    assert (qp(at, "prec"), qp(at, "ckpt")) == ("fp32", "0")
    at.radio(key="ft:prec").set_value("bf16").run()
    at.toggle(key="ft:ckpt").set_value(True).run()
    assert (qp(at, "prec"), qp(at, "ckpt")) == ("bf16", "1")
    at.button(key="ft_start").click().run()
    assert wait_done(at) == "finished", run_state(at).message
    e = list(at.session_state["run_history"])[0]
    assert e.config["precision"] == "bf16" and e.config["checkpointing"] is True
    assert all(r["activations_recomputed_bytes"] > 0 for r in e.records if r.get("phase") == "train")
    bad = ft(model="tiny-bert", prec="fp64", ckpt="maybe")
    assert not bad.exception and qp(bad, "prec") == "fp32"


def test_bad_url_values_clamped():
    at = ft(model="tiny-bert", steps="99999", method="bogus", k_rank="-5", lr="abc", bs="1e9", device="tpu",
            seed="-3", task="../../etc/passwd")
    assert not at.exception
    assert any("adjusted" in i.value for i in at.info)
    assert qp(at, "steps") == "500" and qp(at, "method") == "lora" and qp(at, "k_rank") == "1"
    assert qp(at, "lr") == "0.0" and qp(at, "bs") == "64" and qp(at, "device") == "auto" and qp(at, "seed") == "0"
    assert qp(at, "task") in ("", "colour-shape", "size-compare")


def test_preset_restored():
    at = ft(model="tiny-bert", method="tied-lora", steps="30", k_preset="TL5", k_rank="4", seed="11")
    no_problem(at)
    assert at.selectbox(key="ft:method").value == "tied-lora"
    assert at.slider(key="ft:steps").value == 30 and at.number_input(key="ft:seed").value == 11
    assert at.select_slider(key="ft:k_rank").value == 4 and qp(at, "k_preset") == "TL5"


def test_short_run_finishes_and_joins_history():
    at = ft(model="tiny-bert", steps="6", bs="8")
    no_problem(at)
    at.button(key="ft_start").click().run()
    assert not at.exception
    assert at.button(key="ft_start").disabled  # a second Start cannot start a second run
    status = wait_done(at)
    assert status == "finished", run_state(at).message
    no_problem(at)
    done = [s.value for s in list(at.success) + list(at.warning) if "Finished 6 steps" in s.value]
    # the verdict is computed from the run's own accuracies (6 steps on random tiny-bert learn nothing)
    assert done and ("nothing learned yet" in done[0] or "learned:" in done[0])
    assert ("nothing learned yet" in done[0]) == any("Finished 6 steps" in w.value for w in at.warning)
    hist = at.session_state["run_history"]
    assert len(hist) == 1
    e = list(hist)[0]
    assert e.status == "finished" and e.config["steps"] == 6 and e.config["batch_size"] == 8
    assert [r["step"] for r in e.records if r.get("phase") == "train"] == list(range(1, 7))
    assert e.adapter_zip and e.summary["trainable_params"] > 0
    assert not at.button(key="ft_start").disabled  # Start is back
    labels = [m.label for m in at.metric]
    assert "held-out accuracy" in labels and "training loss" in labels
    assert run_state(at).result is None  # the model copy was released


def test_start_then_stop_keeps_partial_history():
    at = ft(model="tiny-bert", steps="500", bs="4")
    at.button(key="ft_start").click().run()
    st = run_state(at)
    deadline = time.time() + 40
    while st.step < 2 and not st.done and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    assert at.button(key="ft_stop")  # shown while running
    at.button(key="ft_stop").click().run()
    status = wait_done(at, 40)
    assert status == "stopped"
    assert any("Stopped" in w.value for w in at.warning)
    e = list(at.session_state["run_history"])[0]
    steps = [r["step"] for r in e.records if r.get("phase") == "train"]
    assert 2 <= len(steps) < 500 and e.status == "stopped"


def test_two_starts_in_a_row_start_one_run():
    from explorer.workshop.jobs import default_queue

    at = ft(model="tiny-bert", steps="400", bs="4")
    at.button(key="ft_start").click().run()
    first = at.session_state["ft_run"].job
    for _ in range(3):  # reruns (fragment polls, other widgets) never start another run
        at.slider(key="ft:steps").set_value(300).run()
        assert at.button(key="ft_start").disabled
    assert at.session_state["ft_run"].job is first
    sid = at.session_state["session_id"]
    mine = [j for j in default_queue().running() + default_queue().queued() if j.owner == sid]
    assert len(mine) == 1
    at.button(key="ft_stop").click().run()
    assert wait_done(at, 40) == "stopped"


def test_malformed_upload_gives_clear_message(tmp_path):
    """The upload path of the page: save_upload + data.load_task (what load_upload calls)."""
    from explorer.data import load_task
    from explorer.errors import DataError, user_message
    from explorer.workshop.history import save_upload

    cases = [(b"sentence;verdict\nfoo;1\n" * 20, "missing a text column"),
             (b"text,label\n" + b"a,1\n" * 20, "single class"),
             (b'{"text": "a", "label": ', "could not be read"),
             (b"\x00\x01binary", "binary")]
    for data, needle in cases:
        with pytest.raises(DataError) as ei:
            p = save_upload(tmp_path, "mine.csv" if b"{" not in data else "mine.json", data)
            load_task(str(p), "seq-cls")
        msg = user_message(ei.value)
        assert needle in msg and "\n" not in msg and "Traceback" not in msg
        assert str(tmp_path) not in msg or "mine" in msg


# ----------------------------------------------------------------------------- Compare


def cmp(hist=None, **params) -> AppTest:
    at = page_app(CMP, TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = str(v)
    if hist is not None:
        at.session_state["run_history"] = hist
    at.run()
    return at


@pytest.fixture(scope="module")
def some_runs(tiny_bert):
    from explorer.workshop.history import RunHistory, entry_from_result
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    h = RunHistory()
    for m, kn in [("lora", dict(rank=1)), ("lora", dict(rank=8)), ("sparta", dict(density=0.05))]:
        res = train(TrainConfig(model="tiny-bert", method=m, knobs=kn, steps=3, eval_every=2, eval_examples=32,
                                batch_size=4), loaded=tiny_bert)
        h.add(entry_from_result(res, run_id=h.new_id(), label=f"{m} {kn}", keep_adapter=False))
    return h


def test_compare_empty():
    at = cmp()
    no_problem(at)
    assert any("No runs yet" in i.value for i in at.info)
    assert not at.dataframe


def test_compare_with_runs_and_controls(some_runs):
    at = cmp(some_runs)
    no_problem(at)
    df = at.dataframe[0].value
    assert list(df["run"]) == [e.id for e in some_runs]
    counts = list(df["trainable params"])
    assert counts[0] < counts[1]  # rank 1 < rank 8, as measured
    assert all(v > 0 for v in df["peak memory (MiB)"])
    texts = [e.label for e in at.expander if e.label.startswith("Chart as text:")]
    assert "Chart as text: Memory at the peak step" in texts and "Chart as text: this chart" not in texts, texts
    at.radio(key="cmp:x").set_value("memory").run()
    at.radio(key="cmp:curve").set_value("loss").run()
    at.multiselect(key="cmp_pick").set_value([some_runs.runs[0].id]).run()
    at.selectbox(key="cmp:sw_model").set_value("tiny-llama").run()
    at.slider(key="cmp:sw_steps").set_value(8).run()
    at.multiselect(key="cmp:sw_methods").set_value(["sparta"]).run()
    at.multiselect(key="cmp:sw_ranks").set_value(["1", "2"]).run()
    no_problem(at)
    assert (qp(at, "x"), qp(at, "curve"), qp(at, "sw_model"), qp(at, "sw_steps"), qp(at, "sw_methods"),
            qp(at, "sw_ranks")) == ("memory", "loss", "tiny-llama", "8", "sparta", "1,2")
    assert any(b.label.startswith("Run the sweep (2 runs)") for b in at.button)


def test_compare_bad_url_clamped():
    at = cmp(x="nope", sw_steps="-4", sw_methods="dora,../x", sw_ranks="999")
    assert not at.exception
    assert qp(at, "x") == "trainable" and qp(at, "sw_steps") == "4"
    assert qp(at, "sw_methods") == "lora,smt" and qp(at, "sw_ranks") == "1,4,16"


def test_compare_sweep_runs(tmp_path):
    at = cmp(sw_model="tiny-bert", sw_steps="4", sw_methods="lora", sw_ranks="1,2")
    at.button(key="cmp_sweep_go").click().run()
    sw = at.session_state["cmp_sweep"]
    sw.thread.join(60)
    at.run()
    no_problem(at)
    assert sw.status == "finished"
    hist = at.session_state["run_history"]
    assert [e.label for e in hist] == ["sweep · LoRA r=1", "sweep · LoRA r=2"]
    assert any("Sweep finished" in s.value for s in at.success)
    assert at.dataframe and len(at.dataframe[0].value) == 2


def test_export_import_round_trip_on_page(some_runs):
    from explorer.workshop.history import RunHistory

    text = some_runs.to_json()
    h = RunHistory()
    assert h.import_json(text) == len(some_runs)
    at = cmp(h)
    no_problem(at)
    assert list(at.dataframe[0].value["run"]) == [e.id for e in some_runs]
    assert RunHistory.parse(h.to_json())[0].to_dict() == some_runs.runs[0].to_dict()


def test_history_survives_a_reload_as_a_copy(some_runs):
    at = cmp()
    hist = at.session_state["run_history"]
    for e in some_runs:
        hist.add(e)
    sid = qp(at, "sid")
    assert sid == at.session_state["session_id"] and len(sid) == 32
    # a reload: a new session with the same link
    at2 = cmp(sid=sid)
    no_problem(at2)
    assert [e.id for e in at2.session_state["run_history"]] == [e.id for e in some_runs]
    assert qp(at2, "sid") != sid  # the copy lives under its own new id
    # the same link opened again (copied before the reload, opened in another browser): settings, not the runs
    at_friend = cmp(sid=sid)
    no_problem(at_friend)
    assert len(at_friend.session_state["run_history"]) == 0
    assert any("its owner's runs stay with them" in t.value for t in at_friend.toast)
    # a hostile sid is ignored: a fresh, empty history
    at3 = cmp(sid="../../../../etc")
    no_problem(at3)
    assert len(at3.session_state["run_history"]) == 0 and qp(at3, "sid") != "../../../../etc"


def test_memory_refusal_shown_with_estimate():
    from explorer.workshop.jobs import default_queue

    q = default_queue()
    old = q.free_fn
    q.free_fn = lambda dev: 2**20  # 1 MiB free: nothing fits
    try:
        at = ft(model="tiny-bert", steps="6")
        at.button(key="ft_start").click().run()
        assert not at.exception
        msgs = [e.value for e in at.error]
        assert any("would not fit" in m and "MiB" in m and "1 MiB are free" in m for m in msgs), msgs
        assert "ft_run" not in at.session_state and not at.button(key="ft_start").disabled
    finally:
        q.free_fn = old


def test_causal_model_page():
    at = ft(model="tiny-llama", method="dora")
    no_problem(at)
    assert at.selectbox(key="ft:task").options == ["word-category"]
    assert "gate (gate_proj)" in at.multiselect(key="ft:k_targets").options  # the LLaMA matrices are offered
