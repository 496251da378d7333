"""The one training step (explorer/engine/step.py) and the typed records (explorer/engine/records.py)."""

import ast
import json
from pathlib import Path

import pytest
import torch

from explorer.engine.config import TrainConfig
from explorer.engine.records import RunSummary, StepRecord
from explorer.engine.step import StepPlan, run_step
from explorer.engine.train import train
from explorer.memory.measured import MemoryAccountant
from explorer.methods import apply_method
from explorer.models import fresh_copy

ROOT = Path(__file__).resolve().parents[2]


def _batch(seed=0, b=4, s=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (b, s), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (b,), generator=g)}


def _lora(tiny_bert):
    torch.manual_seed(0)
    return apply_method(fresh_copy(tiny_bert.model), "lora", n_base=tiny_bert.info.n_params)


def _opt(adapter, lr=1e-2):
    return torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=lr, weight_decay=0.1)


def test_step_equals_a_hand_written_step(tiny_bert):
    """forward, backward, clip at 0.5, AdamW: the same loss, norm and weights as the same step written out."""
    a, b = _lora(tiny_bert), _lora(tiny_bert)
    opt_a, opt_b = _opt(a), _opt(b)
    pa = [p for _, p in a.trainable_parameters()]
    pb = [p for _, p in b.trainable_parameters()]
    a.model.train()
    b.model.train()
    for seed in range(2):
        torch.manual_seed(100 + seed)  # dropout draws the same masks in both
        out = run_step(a.model, _batch(seed), StepPlan(optimizer=opt_a, params=pa, clip=0.5))
        torch.manual_seed(100 + seed)
        loss = b.model(**_batch(seed)).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(pb, 0.5)
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)
        assert out.ok and out.loss == float(loss.detach()) and out.grad_norm == float(norm)
        assert out.lr == 1e-2
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
        assert x.grad is None  # zeroed after the step
    assert not torch.equal(pa[0], _lora(tiny_bert).trainable_parameters()[0][1])  # the weights did move


def test_bad_loss_stops_before_backward_and_update(tiny_bert):
    a = _lora(tiny_bert)
    opt = _opt(a)
    before = [p.detach().clone() for _, p in a.trainable_parameters()]
    called = []
    plan = StepPlan(optimizer=opt, sink=lambda: called.append(1),
                    loss_fn=lambda m, batch: m(**batch).loss * float("nan"))
    out = run_step(a.model, _batch(), plan)
    assert out.status == "bad-loss" and not out.ok and out.loss != out.loss
    assert called == [] and all(p.grad is None for _, p in a.trainable_parameters())
    assert all(torch.equal(x, p) for x, (_, p) in zip(before, a.trainable_parameters()))


def test_bad_gradient_skips_the_update_only_when_guarded(tiny_bert):
    def poisoned():
        ad = _lora(tiny_bert)
        p = ad.trainable_parameters()[0][1]
        p.register_hook(lambda g: torch.full_like(g, float("inf")))
        return ad, p

    ad, p = poisoned()
    before = p.detach().clone()
    params = [q for _, q in ad.trainable_parameters()]
    out = run_step(ad.model, _batch(), StepPlan(optimizer=_opt(ad), params=params, clip=1.0, guard_grad=True))
    assert out.status == "bad-grad" and out.grad_norm == float("inf")
    assert torch.equal(p, before)
    ad, p = poisoned()
    params = [q for _, q in ad.trainable_parameters()]
    out = run_step(ad.model, _batch(), StepPlan(optimizer=_opt(ad), params=params, clip=1.0))
    assert out.ok and not torch.equal(p, before)  # unguarded: the update ran (the warm-up's behaviour)


def test_without_optimizer_gradients_sum_over_steps(tiny_bert):
    """No optimizer: nothing is zeroed, so .grad is the sum of the steps' gradients (SMT's gradient-only mode)."""
    def grad_of(seeds):
        ad = _lora(tiny_bert)
        ad.model.eval()  # no dropout: the same gradient for the same batch in every run
        for s in seeds:
            assert run_step(ad.model, _batch(s), StepPlan()).ok
        # lora_B: lora_A's gradient is 0 while B is still 0
        return next(p for n, p in ad.trainable_parameters() if "lora_B" in n).grad.clone()

    g0, g1, both = grad_of([0]), grad_of([1]), grad_of([0, 1])
    assert torch.allclose(both, g0 + g1, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(both, g0)


def test_sink_sees_gradients_before_the_update_and_snapshot_counts_them(tiny_bert):
    ad = _lora(tiny_bert)
    opt = _opt(ad)
    p = next(q for n, q in ad.trainable_parameters() if "lora_B" in n)
    seen = {}

    def sink():
        seen["grad"] = p.grad.clone()
        seen["weight"] = p.detach().clone()

    before = p.detach().clone()
    acct = MemoryAccountant(ad.model, opt)
    order = []
    plan = StepPlan(optimizer=opt, sink=sink, accountant=acct, after_update=lambda o: order.append(o is opt))
    out = run_step(ad.model, _batch(), plan)
    assert torch.equal(seen["weight"], before) and not torch.equal(p, before)
    assert seen["grad"].abs().sum() > 0 and order == [True]
    n_train = sum(q.numel() for _, q in ad.trainable_parameters())
    assert out.memory["grads_bytes"] == 4 * n_train  # fp32 gradients of every trainable tensor, still there
    assert out.memory["optimizer_bytes"] >= 2 * 4 * n_train  # AdamW's two moments
    assert p.grad is None


def test_backward_is_called_in_one_place_only():
    """The training step is written once: no other module of explorer/ calls .backward() (docstrings aside)."""
    callers = []
    for f in sorted((ROOT / "explorer").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
                callers.append(str(f.relative_to(ROOT)))
    assert callers == ["explorer/engine/step.py"]


@pytest.fixture(scope="module")
def smt_run(tiny_bert):
    cfg = TrainConfig(model="tiny-bert", method="smt", knobs=dict(block_size=16, blocks=8, warmup_steps=2), steps=5,
                      eval_every=4, eval_examples=16, batch_size=4, max_len=12)
    return train(cfg, loaded=tiny_bert)


def test_records_round_trip_byte_for_byte(smt_run):
    res = smt_run
    assert res.status == "finished"
    phases = [r["phase"] for r in res.records]
    assert phases == ["eval", "warmup", "warmup", "train", "train", "train"]
    for r in res.records:
        back = StepRecord.from_dict(r).to_dict()
        assert json.dumps(back) == json.dumps(r)  # same keys, same order, same values
    rec = StepRecord.from_dict(res.records[4])  # step 4: evaluated (eval_every=4) and measured
    assert rec.trained and rec.eval is not None and rec.memory["total_bytes"] > 0
    assert rec.grad_norm is not None and StepRecord.from_dict(res.records[1]).grad_norm is None  # warm-up: none
    assert json.dumps(RunSummary.from_dict(res.summary).to_dict()) == json.dumps(res.summary)
    assert list(res.summary)[:5] == ["trainable_params", "total_params", "base_accuracy", "final_accuracy",
                                     "final_eval_loss"]
    head = sum(p.numel() for n, p in res.adapter.model.named_parameters() if n.startswith("classifier."))
    assert head > 0
    assert res.summary["steps_done"] == 5 and res.summary["trainable_params"] == 8 * 16 * 16 + head


def test_summary_of_a_run_that_failed_at_once():
    res = train(TrainConfig(model="tiny-bert", steps=0))
    s = res.summary
    assert s["status"] == "failed" and "steps must be at least 1" in s["message"]
    assert list(s)[0] == "status" and list(s)[-1] == "final_accuracy" and s["final_accuracy"] is None
    assert "trainable_params" not in s and "base_accuracy" not in s
    assert json.dumps(RunSummary.from_dict(s).to_dict()) == json.dumps(s)


def test_config_round_trip():
    cfg = TrainConfig(model="tiny-llama", method="sparta", knobs={"density": 0.2}, steps=7, lr=None, seed=3)
    d = cfg.to_dict()
    assert d["lr"] == cfg.resolved_lr()
    back = TrainConfig.from_dict(d)
    assert back.knobs == cfg.knobs and back.steps == 7 and back.seed == 3 and back.lr == d["lr"]
    sel = TrainConfig(method="smt", smt_selection={"x": ([1, 2], [0, 0])})
    assert sel.to_dict()["smt_selection"] == "2 blocks given"
    assert TrainConfig.from_dict(sel.to_dict()).smt_selection is None


def test_the_loop_ends_on_an_infinite_gradient(tiny_bert, monkeypatch):
    """A finite loss with an infinite gradient: status nan, no update, the message names the gradient and step."""
    from explorer.engine import train as train_mod

    def poison(step, phase, model):
        if step == 2:
            p = next(p for p in model.parameters() if p.requires_grad)
            p.register_hook(lambda g: torch.full_like(g, float("inf")))

    monkeypatch.setattr(train_mod, "FAULT_HOOK", poison)
    res = train(TrainConfig(model="tiny-bert", method="lora", steps=4, eval_every=0, eval_examples=8, batch_size=4,
                            max_len=12, measure_memory=False), loaded=tiny_bert)
    assert res.status == "nan"
    assert res.summary["message"].startswith("The gradient became infinite at step 2: lower the learning rate")
    assert [r["phase"] for r in res.records] == ["eval", "train", "train"]
    assert list(res.records[-1]) == ["step", "phase", "loss"] and res.records[-1]["step"] == 2
    assert res.summary["steps_done"] == 1 and res.adapter is None
