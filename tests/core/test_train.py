"""The training loop (explorer/engine/train.py) and run export/reload (explorer/engine/export.py), on tiny models."""

import csv
import math
import random
import threading

import pytest
import torch

from explorer import data
from explorer.models import checksum
from explorer.engine.config import TrainConfig
from explorer.engine.state import RunState
from explorer.engine.train import start_in_thread, train

METHOD_KNOBS = {
    "full": {},
    "lora": {},
    "dora": {"targets": "q,k,v,o,up,down"},  # q,v alone barely move a random tiny-bert in 24 steps
    "lora-sp": {"targets": "q,k,v,o,up,down"},
    "tied-lora": {},
    "smt": {"block_size": 16, "blocks": 24, "warmup_steps": 6},
    "sparta": {"density": 0.2},
}


@pytest.fixture(scope="module")
def keyword_csv(tmp_path_factory):
    """A task a random tiny-bert can learn in a few steps: the label is which keyword the text holds."""
    rng = random.Random(0)
    words = "the a cat dog house tree river car book lamp sky road".split()
    p = tmp_path_factory.mktemp("kw") / "kw.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(240):
            ws = [rng.choice(words) for _ in range(6)]
            ws.insert(rng.randrange(7), "good" if i % 2 else "bad")
            w.writerow([" ".join(ws), "pos" if i % 2 else "neg"])
    return str(p)


TEST_LR = {"full": 3e-3, "dora": 1e-2}  # rates that move a random tiny-bert within 24 steps


def cfg(task, method, **kw):
    base = dict(model="tiny-bert", task=task, method=method, knobs=dict(METHOD_KNOBS[method]), steps=24,
                lr=TEST_LR.get(method, 2e-2), warmup_lr=3e-3, eval_every=0, eval_examples=48,
                batch_size=16, max_len=16, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _losses(res, phase=None):
    return [r["loss"] for r in res.records if r.get("phase") in ((phase,) if phase else ("train", "warmup"))]


@pytest.mark.parametrize("method", list(METHOD_KNOBS))
def test_loss_falls_and_saved_adapter_reproduces_final_eval(tiny_bert, keyword_csv, tmp_path, method):
    from explorer.engine.export import load_run_adapter, save_run

    before = checksum(tiny_bert.model)
    res = train(cfg(keyword_csv, method), loaded=tiny_bert)
    assert res.status == "finished", res.summary["message"]
    assert checksum(tiny_bert.model) == before  # the cached base is never trained
    losses = _losses(res)
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.01, (method, first, last)
    rec = [r for r in res.records if r.get("phase") == "train"][-1]
    for key in ("loss", "lr", "step_time_s", "tokens_per_s", "total_bytes", "activations_bytes"):
        assert rec.get(key) is not None and rec[key] >= 0, key
    s = res.summary
    assert s["trainable_params"] > 0 and s["total_params"] == tiny_bert.info.n_params
    assert s["peak_memory_bytes"] > 0 and s["device"] == "cpu"
    # save -> reload onto a fresh copy of the base -> the same final evaluation, exactly
    save_run(res, tmp_path / "run")
    ad = load_run_adapter(tiny_bert, tmp_path / "run" / "adapter")
    ev = data.evaluate(ad.model, res.task, tiny_bert.tokenizer, "seq-cls", max_examples=48, max_len=16)
    assert ev["accuracy"] == s["final_accuracy"]
    assert math.isclose(ev["loss"], s["final_eval_loss"], rel_tol=1e-5, abs_tol=1e-6)


def test_smt_warmup_inside_budget_is_labelled(tiny_bert, keyword_csv):
    res = train(cfg(keyword_csv, "smt", steps=12), loaded=tiny_bert)
    phases = [r["phase"] for r in res.records if r.get("phase") in ("train", "warmup")]
    assert phases == ["warmup"] * 6 + ["train"] * 6
    assert any("warm-up" in n for n in res.notes)
    # warm-up is full fine-tuning (every weight has grads and Adam state), afterwards only the blocks + head
    warm = [r for r in res.records if r.get("phase") == "warmup"][-1]
    tr = [r for r in res.records if r.get("phase") == "train"][-1]
    assert tr["optimizer_bytes"] < warm["optimizer_bytes"] / 10
    assert res.summary["trainable_params"] == 24 * 16 * 16 + sum(p.numel() for p in res.adapter.model.classifier.parameters())


def _comparable(records):
    drop = {"step_time_s", "tokens_per_s", "rss_bytes", "cuda_peak_bytes"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def test_same_seed_same_metrics_other_seed_differs(tiny_bert, keyword_csv):
    kw = dict(steps=6, eval_every=3, eval_examples=16, knobs={})
    a = train(cfg(keyword_csv, "lora-sp", **kw), loaded=tiny_bert)
    b = train(cfg(keyword_csv, "lora-sp", **kw), loaded=tiny_bert)
    c = train(cfg(keyword_csv, "lora-sp", seed=1, **kw), loaded=tiny_bert)
    assert _comparable(a.records) == _comparable(b.records)
    assert _losses(a) != _losses(c)


def test_stop_ends_within_one_step_and_keeps_history(tiny_bert, keyword_csv):
    stop = threading.Event()

    def on_step(rec):
        if rec.get("step") == 3 and rec.get("phase") == "train":
            stop.set()

    res = train(cfg(keyword_csv, "lora", steps=50), loaded=tiny_bert, stop_event=stop, on_step=on_step)
    assert res.status == "stopped" and "after 3 of 50" in res.summary["message"]
    assert res.summary["steps_done"] == 3 and len(_losses(res)) == 3
    assert res.summary["final_accuracy"] is not None  # the partial run is still evaluated


def test_worker_thread_stop(tiny_bert, keyword_csv):
    state, th = start_in_thread(cfg(keyword_csv, "lora", steps=100000), loaded=tiny_bert)
    for _ in range(600):
        if state.step >= 2 or state.done:
            break
        threading.Event().wait(0.05)
    state.stop()
    th.join(timeout=30)
    assert not th.is_alive()
    snap = state.snapshot()
    assert snap["status"] == "stopped" and snap["records"] and 0 < snap["progress"] < 1


def test_nan_loss_stops_with_status(tiny_bert, keyword_csv):
    from explorer.models import LoadedModel

    poisoned = LoadedModel(model=__import__("copy").deepcopy(tiny_bert.model), tokenizer=tiny_bert.tokenizer,
                           info=tiny_bert.info)
    poisoned.model.bert.embeddings.register_forward_hook(lambda m, i, o: o * float("nan") if m.training else o)
    res = train(cfg(keyword_csv, "lora", steps=10), loaded=poisoned)
    assert res.status == "nan" and "NaN" in res.summary["message"] and "learning rate" in res.summary["message"]
    assert res.summary["steps_done"] == 0 and len(res.records) >= 1


def test_errors_end_with_failed_status(tiny_bert, keyword_csv):
    res = train(cfg(keyword_csv, "lora", knobs={"rank": 0}), loaded=tiny_bert)
    assert res.status == "failed" and "rank" in res.summary["message"]
    res = train(cfg("word-category", "lora"), loaded=tiny_bert)
    assert res.status == "failed" and "causal-lm" in res.summary["message"]
    res = train(cfg(keyword_csv, "lora", device="cuda:7" if not torch.cuda.is_available() else "nope"),
                loaded=tiny_bert)
    assert res.status == "failed" and res.summary["message"]
    st = RunState()
    assert st.status == "queued" and not st.done


def test_causal_lm_runs_and_scores_answers(tiny_llama):
    res = train(TrainConfig(model="tiny-llama", method="lora", steps=12, lr=2e-2, eval_every=6, eval_examples=16,
                            batch_size=8, measure_memory=False), loaded=tiny_llama)
    assert res.status == "finished" and res.task.name == "word-category"
    losses = _losses(res)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert [r["step"] for r in res.records if r.get("eval_accuracy") is not None] == [0, 6, 12]
