"""Every new classification head comes from the run's seed (issue 21): two runs of ``smt-blocks`` on minilm with
seed 0 gave step-1 losses 0.69943 and 0.68206 and shared 10 of 20 blocks, because the warm-up used the head the
process happened to draw when it loaded the model.  A second process is simulated here by a loaded model whose
head was drawn differently."""

from __future__ import annotations

import copy

import torch

from explorer import smt_inspector as A
from explorer.engine.config import TrainConfig
from explorer.engine.train import train
from explorer.models import fresh_copy


def _other_head(loaded, seed: int):
    """``loaded`` as another process would have it: the same encoder, another random new head."""
    other = copy.copy(loaded)
    other.model = fresh_copy(loaded.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        other.model.classifier.weight.copy_(torch.randn(other.model.classifier.weight.shape, generator=g))
    return other


def _warm(loaded, seed=0):
    rec = A.collect_gradients(loaded, "colour-shape", warmup_steps=3, batch_size=2, max_len=16, seed=seed,
                              cache=False)
    an = A.analyze(rec, 16, n_blocks=6, types=["q", "k", "v"], details=False)
    return rec.meta["losses"], {k: (r.tolist(), c.tolist()) for k, (r, c) in an.selection.items()}


def test_smt_warm_up_draws_its_head_from_the_seed(tiny_bert):
    losses, sel = _warm(tiny_bert)
    losses2, sel2 = _warm(_other_head(tiny_bert, 7))
    assert losses2 == losses and sel2 == sel
    losses3, _ = _warm(tiny_bert, seed=1)
    assert losses3 != losses  # the seed does reach the head (and the data order)


def test_the_cli_inspect_warm_up_draws_its_head_from_the_seed(tiny_bert, monkeypatch):
    from explorer.cli import core

    outs = []
    for global_seed, loaded in ((11, tiny_bert), (12, _other_head(tiny_bert, 7))):
        monkeypatch.setattr("explorer.models.load_model", lambda *a, _l=loaded, **k: _l)
        # whatever the process drew before (other tests, other pages): the warm-up's dropout comes from the seed too
        torch.manual_seed(global_seed)
        res = core.inspect("tiny-bert", "smt", dict(targets=["q", "k", "v"], block_size=16, blocks=6,
                                                    warmup_steps=3))
        outs.append([(t["target"], t["trainable"]) for t in res["targets"]])
    assert outs[0] == outs[1]


def test_a_fine_tune_twice_with_the_same_seed_is_the_same_run(tiny_bert):
    cfg = TrainConfig(model="tiny-bert", task="colour-shape", method="lora", steps=4, batch_size=4, max_len=16,
                      eval_every=2, eval_examples=16, measure_memory=False, seed=3)
    a = train(cfg, loaded=tiny_bert)
    b = train(cfg, loaded=_other_head(tiny_bert, 7))
    curve = lambda r: [(x["step"], x.get("loss"), x.get("eval_loss")) for x in r.records]  # noqa: E731
    assert curve(a) == curve(b) and a.summary["final_accuracy"] == b.summary["final_accuracy"]


def test_minilms_new_head_is_the_same_in_every_process():
    from explorer.engine.prepare import init_head
    from explorer.models import load_model

    m = load_model("minilm").model
    ref = copy.deepcopy(m)
    init_head(ref, 2, 0)
    assert torch.equal(m.classifier.weight, ref.classifier.weight)


def test_the_cli_inspect_selection_does_not_depend_on_what_the_process_drew_before(tiny_bert, monkeypatch):
    """The warm-up trains with dropout: before, ``inspect`` drew its masks from wherever torch's global generator
    stood, and 8 earlier seeds gave 3 different SMT selections (a flaky test under pytest-xdist found it)."""
    from explorer.cli import core

    monkeypatch.setattr("explorer.models.load_model", lambda *a, **k: tiny_bert)
    seen = set()
    for before in range(6):
        torch.manual_seed(before)
        res = core.inspect("tiny-bert", "smt", dict(targets=["q", "k", "v"], block_size=16, blocks=6,
                                                    warmup_steps=3))
        seen.add(tuple(t["trainable"] for t in res["targets"]))
    assert len(seen) == 1, seen
