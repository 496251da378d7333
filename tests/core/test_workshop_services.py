"""The services the Fine-tune and SMT inspector pages call (``explorer.workshop.runs`` and ``.inspector``): a
fine-tune that lands in the history, its stop, its time left and its memory refusal; the warm-up job, the block
budget and the hand-off of a selection."""

from __future__ import annotations

import threading
import time

import pytest

from explorer.engine.config import TrainConfig
from explorer.workshop.history import RunHistory
from explorer.workshop.inspector import (BlockGrid, SmtHandoff, WarmupSettings, block_grid, start_warmup,
                                         warmup_need_bytes)
from explorer.workshop.jobs import MemoryRefused, RunQueue
from explorer.workshop.runs import FineTuneRun, start_fine_tune


def free_big(_dev):
    return 10 ** 15


def _cfg(**kw):
    base = dict(model="tiny-bert", task="colour-shape", method="lora", steps=4, batch_size=4, max_len=16,
                eval_every=0, eval_examples=16, measure_memory=False)
    base.update(kw)
    return TrainConfig(**base)


def _wait(cond, timeout=60.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "not reached in time"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- fine-tune runs


def test_a_fine_tune_lands_in_the_history_and_frees_its_model(tiny_bert):
    q = RunQueue(max_running=1, free_fn=free_big)
    hist = RunHistory()
    run = start_fine_tune(_cfg(), tiny_bert, hist, "LoRA · tiny-bert · colour-shape", owner="me", queue=q)
    assert isinstance(run, FineTuneRun) and run.job.owner == "me" and run.label.startswith("LoRA")
    assert run.job.wait(120)
    assert not run.running and run.state.status == "finished"
    assert [e.id for e in hist] == [run.state.entry_id] == [run.job.result]
    e = hist.get(run.state.entry_id)
    assert e.label == run.label and e.summary["steps_done"] == 4 and e.config["method"] == "lora"
    assert run.state.result is None  # the model copy is dropped: memory goes back
    assert run.snapshot()["step"] == 4


def test_stop_ends_a_long_run_and_keeps_its_steps(tiny_bert):
    q = RunQueue(max_running=1, free_fn=free_big)
    hist = RunHistory()
    run = start_fine_tune(_cfg(steps=400), tiny_bert, hist, "long", queue=q)
    _wait(lambda: run.state.step >= 1)
    run.stop()
    assert run.job.wait(60) and not run.running
    assert run.state.status == "stopped" and 1 <= run.state.step < 400
    assert len(hist) == 1 and hist.get(run.state.entry_id).status == "stopped"


def test_the_page_polls_a_queued_run_slowly_a_training_one_fast_and_an_ended_one_not(tiny_bert):
    q = RunQueue(max_running=1, free_fn=free_big)
    first = start_fine_tune(_cfg(steps=400), tiny_bert, RunHistory(), "first", queue=q)
    second = start_fine_tune(_cfg(), tiny_bert, RunHistory(), "second", queue=q)  # waits for the first
    _wait(lambda: first.state.step >= 1)
    assert second.state.status == "queued" and second.poll_s == FineTuneRun.POLL_QUEUED_S == 2.0
    assert first.state.status == "running" and first.poll_s == FineTuneRun.POLL_TRAINING_S == 0.7
    first.stop()
    assert first.job.wait(60) and first.poll_s is None
    assert second.job.wait(120) and second.poll_s is None


def test_a_run_that_does_not_fit_is_refused_at_once(tiny_bert):
    q = RunQueue(max_running=1, free_fn=lambda _d: 2 ** 20)  # 1 MiB free
    with pytest.raises(MemoryRefused, match="would not fit"):
        start_fine_tune(_cfg(), tiny_bert, RunHistory(), "x", queue=q)
    assert q.stats()["queued"] == 0 and q.stats()["running"] == 0


def test_time_left_from_the_measured_pace():
    snap = dict(records=[dict(phase="train", step_time_s=0.5)], started=100.0, step=5, total_steps=20)
    # 10 s for 5 steps: 2 s a step, 15 steps left
    assert FineTuneRun.eta_s(snap, now=110.0) == pytest.approx(30.0)
    assert FineTuneRun.eta_s(dict(snap, step=20), now=140.0) == 0.0
    assert FineTuneRun.eta_s(dict(snap, records=[dict(phase="eval")]), now=110.0) is None  # no step yet
    assert FineTuneRun.eta_s(dict(snap, started=None), now=110.0) is None


# ----------------------------------------------------------------------------- the SMT inspector


def test_warmup_settings():
    v = dict(model="tiny-llama", task="", ws="6", bs="2", len="32", mode="full", seed="3")
    ws = WarmupSettings.from_values(v, "causal-lm")
    assert ws.task == "word-category" and ws.warmup_steps == 6 and ws.seed == 3 and ws.tokens == 6 * 2 * 32
    assert ws.sig == WarmupSettings.from_values(dict(v, task="word-category"), "causal-lm").sig
    assert ws.sig != WarmupSettings.from_values(dict(v, seed="4"), "causal-lm").sig
    assert warmup_need_bytes(1000, "full") == 1000 * 4 * 5 and warmup_need_bytes(1000, "gradient-only") == 8000


def test_warmup_job_records_and_reports(tiny_llama):
    q = RunQueue(max_running=1, free_fn=free_big)
    ws = WarmupSettings("tiny-llama", "word-category", 2, 2, 16, "gradient-only", 0)
    wj = start_warmup(tiny_llama, ws, owner="me", queue=q)
    assert wj.job.wait(120) and not wj.running
    rec, notice = wj.outcome()
    assert notice is None and rec.steps_done == 2 and wj.progress.frac == pytest.approx(1.0)
    # queued behind another job and stopped there: it never starts, and says so
    gate = threading.Event()
    blocker = q.submit(lambda job: gate.wait(30))
    wj2 = start_warmup(tiny_llama, ws, queue=q)
    assert wj2.job.status == "queued" and wj2.progress.msg == "queued"
    wj2.stop()
    gate.set()
    assert blocker.wait(30) and wj2.job.wait(30)
    assert wj2.outcome() == (None, "Stopped before the warm-up started.")
    with pytest.raises(MemoryRefused):
        start_warmup(tiny_llama, ws, queue=RunQueue(max_running=1, free_fn=lambda _d: 10))


def test_block_grid_and_budget(tiny_bert):
    from explorer.methods.smt_blocks import auto_blocks, valid_block_sizes
    from explorer.targets import find_targets

    ts = find_targets(tiny_bert.model, ["q", "v"])
    shapes = sorted({(t.d_out, t.d_in) for t in ts})
    g = block_grid(tiny_bert, ["q", "v"], 0)
    assert isinstance(g, BlockGrid) and g.block_size == g.auto and g.auto in g.valid
    assert set(g.valid) <= set(valid_block_sizes(shapes, limit=4096)) and all(b % g.grain == 0 for b in g.valid)
    b = g.valid[0]
    g2 = block_grid(tiny_bert, ["q", "v"], b)
    assert g2.block_size == b and g2.total == sum((t.d_out // b) * (t.d_in // b) for t in ts)
    assert (g2.auto_blocks, g2.capped) == auto_blocks(tiny_bert.info.n_params, b, g2.total)  # the one rule
    assert block_grid(tiny_bert, ["q", "v"], 7).block_size == g.auto  # not a valid size: auto
    assert g2.budget_args("blocks", 0, 0.5) == dict(n_blocks=min(g2.auto_blocks, g2.total))
    assert g2.budget_args("blocks", 3, 0.5) == dict(n_blocks=3)
    assert g2.budget_args("blocks", 10 ** 9, 0.5) == dict(n_blocks=g2.total)
    assert g2.budget_args("density", 5, 1e-9) == dict(density=1.0 / g2.total)
    assert g2.budget_args("density", 5, 0.25) == dict(density=0.25)


def _an():
    import torch

    from explorer import smt_inspector as A
    from explorer.targets import Target

    ts = [Target("l0.v", 0, "v", 64, 32), Target("l0.q", 0, "q", 64, 32), Target("l1.v", 1, "v", 64, 32)]
    g = torch.Generator().manual_seed(0)
    sums = {t.name: 0.01 * torch.randn(t.d_out, t.d_in, generator=g) for t in ts}
    sums["l0.v"][:16, :16] += 5.0
    sums["l1.v"][16:32, 16:32] += 3.0
    rec = A.record_from_sums(ts, [sums], [1], grain=16)
    return A.analyze(rec, 16, n_blocks=2)


def test_handoff_from_an_analysis_and_when_it_fits():
    an = _an()
    h = SmtHandoff.from_analysis(an, "tiny-bert", "colour-shape")
    assert h.selection == {"l0.v": ([0], [0]), "l1.v": ([1], [1])} and h.n_blocks == 2
    assert h.used_types == ["v"] and h.block_size == 16 and sorted(h.types) == ["q", "v"]
    # the run keeps SMT's warm-up in the inspector's mode, for its steps but at least the lessons' 40
    assert h.query == dict(model="tiny-bert", method="smt", src="built-in", task="colour-shape",
                           k_targets=",".join(an.types), k_block_size="16", k_blocks="2", k_density="0.0",
                           k_score=an.score, k_selection=an.rule, k_warmup_steps="40", k_warmup_mode="gradient-only")
    an.meta["steps_done"] = 100
    assert SmtHandoff.from_analysis(an, "tiny-bert", "colour-shape").query["k_warmup_steps"] == "100"
    assert h.mismatch("tiny-bert", dict(block_size=16, targets=["v"])) == []
    assert h.mismatch("minilm", dict(block_size=32, targets=["q"])) == [
        "it was made on tiny-bert", "its block size is 16", "the targets lack v"]
    assert h.take_switch() and not h.take_switch()  # the inspector opens Fine-tune once


def test_a_sweep_adds_each_run_to_the_history_through_its_sink(tiny_bert):
    from explorer.workshop.sweeps import Sweep

    q = RunQueue(max_running=1, free_fn=free_big)
    hist = RunHistory()
    items = [(f"r={r}", _cfg(steps=2, knobs=dict(rank=r))) for r in (1, 2)]
    sw = Sweep(items, q, loaded=tiny_bert, on_result=hist.sink("sweep · ", keep_adapter=False)).start()
    sw.thread.join(120)
    assert sw.snapshot().status == "finished"
    assert [e.label for e in hist] == ["sweep · r=1", "sweep · r=2"] and [e.id for e in hist] == ["run1", "run2"]
    assert all(e.adapter_zip is None for e in hist)  # keep_adapter=False
    assert [e.summary["trainable_params"] for e in hist] == [r.trainable for r in sw.snapshot().results]


def test_handoff_says_what_the_run_does_with_the_blocks():
    h = SmtHandoff.from_analysis(_an(), "tiny-bert", "colour-shape")
    full = h.using_text(dict(warmup_mode="full", warmup_steps=16))
    assert "2 blocks of 16×16" in full and "full warm-up (16 steps) still fine-tunes every weight first" in full
    assert "train from step 1" in h.using_text(dict(warmup_mode="gradient-only", warmup_steps=16))


def test_inspector_selects_from_smts_own_targets_by_default():
    from explorer.workshop.inspector import default_types

    assert default_types() == ["q", "k", "v"]


def test_the_first_heatmap_opens_where_smt_selects_blocks():
    from explorer.workshop.inspector import opening_matrix

    an = _an()  # blocks in l0.v and l1.v (one each); none in l0.q
    assert opening_matrix(an, 0, "q") == (0, "v")  # asked for a matrix without a block: the busiest one
    assert opening_matrix(an, 1, "v") == (1, "v")  # asked for one with blocks: kept
    assert opening_matrix(an, 5, "q") == (0, "v")  # a layer that is not there either
