"""Try your model: a finished run's saved adapter answers exactly like the model that trained, beside the base."""

import torch

from explorer.workshop.history import entry_from_result
from explorer.engine.config import TrainConfig
from explorer.engine.prepare import prepare_base
from explorer.engine.train import train
from explorer.workshop.tryout import classify, complete, load_tryout


def test_classification_tryout_matches_the_trained_model(tiny_bert):
    cfg = TrainConfig(model="tiny-bert", task="colour-shape-easy", method="lora", steps=6, eval_every=0,
                      eval_examples=16, measure_memory=False)
    res = train(cfg, loaded=tiny_bert)
    assert res.status == "finished"
    entry = entry_from_result(res, run_id="r1")
    t = load_tryout(tiny_bert, entry.id, entry.adapter_zip)
    rows = classify(t, "i saw the red circle on the table.")
    assert [r["label"] for r in rows] == ["no", "yes"]
    assert abs(sum(r["tuned"] for r in rows) - 1) < 1e-5 and abs(sum(r["base"] for r in rows) - 1) < 1e-5
    # independent references: the model that trained (in memory) and the untrained step-0 model
    enc = tiny_bert.tokenizer(["i saw the red circle on the table."], return_tensors="pt")
    with torch.no_grad():
        res.adapter.model.eval()
        ref = torch.softmax(res.adapter.model(**enc).logits[0], -1)
        step0 = prepare_base(tiny_bert, res.task, cfg.seed)
        ref0 = torch.softmax(step0(**enc).logits[0], -1)
    assert torch.allclose(torch.tensor([r["tuned"] for r in rows]), ref, atol=1e-5)
    assert torch.allclose(torch.tensor([r["base"] for r in rows]), ref0, atol=1e-5)
    assert not torch.allclose(ref, ref0, atol=1e-4)  # training changed the answer


def test_causal_tryout_completes_with_both_models(tiny_llama):
    cfg = TrainConfig(model="tiny-llama", method="lora", steps=4, eval_every=0, eval_examples=8,
                      measure_memory=False, batch_size=4)
    res = train(cfg, loaded=tiny_llama)
    entry = entry_from_result(res, run_id="r2")
    t = load_tryout(tiny_llama, entry.id, entry.adapter_zip)
    out = complete(t, "the colour of a blick is", max_new_tokens=3)
    assert set(out) == {"tuned", "base"} and all(isinstance(v, str) for v in out.values())
    tok = tiny_llama.tokenizer
    ids = tok("the colour of a blick is", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        cur = ids
        for _ in range(3):
            nxt = tiny_llama.model(input_ids=cur).logits[0, -1].argmax()
            cur = torch.cat([cur, nxt.view(1, 1)], 1)
    assert out["base"] == tok.decode(cur[0, ids.shape[1]:], skip_special_tokens=True).strip()


def test_tryout_refuses_a_run_without_adapter(tiny_bert):
    import pytest

    from explorer.errors import DataError

    with pytest.raises(DataError):
        load_tryout(tiny_bert, "x", None)


def test_try_your_model_offers_a_sentence_of_the_runs_own_task():
    """Issue 21: 'i saw the shiny red cube on the table.' was offered for bbc-news and for a French CSV."""
    from types import SimpleNamespace

    from explorer import data
    from explorer.data.task import Task
    from explorer.workshop.history import RunEntry
    from explorer.workshop.tryout import example_input

    bbc = data.load_task("bbc-news", model_kind="seq-cls")
    got = example_input(RunEntry(id="r1", config=dict(task="bbc-news"), summary={}, records=[]), "seq-cls")
    assert got == " ".join(bbc.eval[0][0].split()) and "cube" not in got
    french = Task(name="avis.csv", kind="seq-cls", label_names=["neg", "pos"],
                  train=[("c'était très bien", 1)], eval=[("  le film était  long et lent ", 0)])
    res = SimpleNamespace(config=TrainConfig(model="tiny-bert", task="avis.csv"), task=french, records=[], notes=[],
                          summary=dict(status="finished"))
    e = entry_from_result(res, run_id="r2", keep_adapter=False)
    assert example_input(e, "seq-cls") == "le film était long et lent"  # kept when the run ended
    assert example_input(RunEntry(id="r3", config=dict(task="avis.csv"), summary={}, records=[]), "seq-cls") is None
