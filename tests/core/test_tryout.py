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


def _smt_run(tiny_bert, mode="full"):
    cfg = TrainConfig(model="tiny-bert", task="colour-shape-easy", method="smt", steps=6, eval_every=0,
                      eval_examples=16, measure_memory=False, batch_size=4, max_len=16,
                      knobs=dict(targets=["q", "k", "v"], block_size=16, blocks=4, warmup_steps=2, warmup_mode=mode))
    res = train(cfg, loaded=tiny_bert)
    assert res.status == "finished", res.summary
    return res


def test_a_run_too_large_to_keep_is_still_tried_from_memory(tiny_bert, monkeypatch, tmp_path):
    """SMT's full warm-up moves every weight, so its run is the whole warmed-up model: larger than the download
    limit for minilm (80 MiB zipped).  It is not offered for download or written to disk, but "Try your model"
    rebuilds it from memory, answering as the model that trained."""
    from explorer.workshop import history as H

    res = _smt_run(tiny_bert)
    monkeypatch.setattr(H, "MAX_ADAPTER_ZIP", 1000)  # this small run's adapter counts as too large
    hist = H.RunHistory(tmp_path / "s")
    entry = hist.add(entry_from_result(res, run_id="r9"))
    assert entry.adapter_zip is None and not list((tmp_path / "s").glob("*.adapter.zip"))
    assert any("not kept for download (Try your model uses it from memory" in n for n in entry.notes)
    assert "r9" in hist.to_json() and "adapter_zip" not in hist.to_json()
    t = load_tryout(tiny_bert, entry.id, entry.tryout_zip())
    rows = classify(t, "i saw the red circle on the table.")
    enc = tiny_bert.tokenizer(["i saw the red circle on the table."], return_tensors="pt")
    with torch.no_grad():
        res.adapter.model.eval()
        ref = torch.softmax(res.adapter.model(**enc).logits[0], -1)
    assert torch.allclose(torch.tensor([r["tuned"] for r in rows]), ref, atol=1e-5)
    hist.remove("r9")
    assert entry.tryout_zip() is None  # a removed run lets go of it


def test_held_adapters_are_bounded_server_wide(monkeypatch):
    from explorer.workshop import history as H

    monkeypatch.setattr(H, "MAX_HELD_BYTES", 250)
    monkeypatch.setattr(H, "_HELD", {})
    es = [H.RunEntry(id=f"r{i}", config={}, summary={}, records=[]) for i in range(3)]
    for e in es:
        e.held = H._held_put(e, bytes(100))
    assert [e.tryout_zip() is not None for e in es] == [False, True, True]  # the oldest left first
    big = H.RunEntry(id="big", config={}, summary={}, records=[])
    assert not H._held_put(big, bytes(251))


def test_smts_adapter_holds_only_its_blocks_indices_and_head(tiny_bert, tmp_path):
    """The SMT adapter file is the selected blocks, their int32 coordinates and the head: never whole matrices.
    With a gradient-only warm-up (no weight moves) that is all the run needs; a full warm-up adds the moved
    base weights beside it (warmup_base.safetensors), which the adapter alone cannot replace."""
    from safetensors.torch import load_file

    from explorer.engine.export import save_adapter

    for mode in ("gradient-only", "full"):
        res = _smt_run(tiny_bert, mode)
        folder = save_adapter(res, tmp_path / mode)
        t = load_file(str(folder / "adapter.safetensors"))
        blocks = [v for k, v in t.items() if k.endswith(".delta")]
        assert sum(v.numel() for v in blocks) == 4 * 16 * 16
        other = {k: v for k, v in t.items() if not k.endswith(".delta")}
        assert all(k.startswith("head.") or k.endswith((".brow", ".bcol")) for k in other), sorted(other)
        assert (folder / "warmup_base.safetensors").exists() == (mode == "full")
