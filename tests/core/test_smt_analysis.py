"""SMT's gradient-block analysis: planted gradients, re-aggregation, checkpoints, stability, cache, CLI."""

import hashlib
import json

import numpy as np
import pytest
import torch

from explorer.methods import apply_method
from explorer.methods.base import KnobError
from explorer.methods.smt_blocks import block_scores, select_blocks
from explorer.models import fresh_copy
from explorer.smt_inspector import (RecordSettings, analysis_to_dict, analyze, clear_memory_cache, collect_gradients,
                          record_from_sums, score_maps, scores_csv, selection_csv, to_selection)
from explorer.targets import Target, find_targets

SCORES = ["abs-mean", "mean-abs", "l1", "l2"]


def _planted():
    """Two 32x32 matrices, 16x16 blocks.  In m0 each score prefers a different block:
    (0,0) constant +1        -> |mean| 1, mean|.| 1, L1 256, L2 16
    (0,1) alternating +-3    -> |mean| 0, mean|.| 3, L1 768, L2 48
    (1,0) one entry of 60    -> |mean| .23, mean|.| .23, L1 60, L2 60
    (1,1) constant 0.5       -> |mean| .5,  mean|.| .5, L1 128, L2 8
    m1 holds the same pattern scaled by 0.1 (every block weaker than its m0 twin)."""
    S = torch.zeros(32, 32)
    S[:16, :16] = 1.0
    alt = torch.ones(16, 16)
    alt[::2] = -1
    S[:16, 16:] = 3.0 * alt
    S[20, 5] = 60.0
    S[16:, 16:] = 0.5
    ts = [Target("layers.0.self_attn.q_proj", 0, "q", 32, 32), Target("layers.1.self_attn.v_proj", 1, "v", 32, 32)]
    sums = {ts[0].name: S, ts[1].name: 0.1 * S}
    return ts, sums


@pytest.mark.parametrize("score,best", [("abs-mean", (0, 0)), ("mean-abs", (0, 1)), ("l1", (0, 1)),
                                        ("l2", (1, 0))])
def test_planted_gradient_selection_each_score_and_rule(score, best):
    ts, sums = _planted()
    rec = record_from_sums(ts, [sums], [1], grain=8)
    m0, m1 = ts[0].name, ts[1].name
    an = analyze(rec, 16, n_blocks=1, score=score, rule="global")
    assert [(int(r), int(c)) for r, c in zip(*an.selection[m0])] == [best]
    assert len(an.selection[m1][0]) == 0
    # global top-2: both blocks in the strong matrix; per-matrix top-2: the best block of each matrix
    g = analyze(rec, 16, n_blocks=2, score=score, rule="global")
    assert len(g.selection[m0][0]) == 2 and len(g.selection[m1][0]) == 0
    p = analyze(rec, 16, n_blocks=2, score=score, rule="per-matrix")
    for name in (m0, m1):
        assert [(int(r), int(c)) for r, c in zip(*p.selection[name])] == [best]
    assert p.shares_type == {"q": 0.5, "v": 0.5}
    assert g.shares_type == {"q": 1.0, "v": 0.0}


def test_reaggregation_equals_direct_block_scores():
    torch.manual_seed(0)
    ts = [Target("a.layers.0.x", 0, "q", 48, 96), Target("a.layers.0.y", 0, "down", 96, 48)]
    sums = {t.name: torch.randn(t.d_out, t.d_in) * torch.rand(t.d_out, 1) for t in ts}
    rec = record_from_sums(ts, [sums], [3], grain=8)
    assert rec.block_sizes() == [8, 16, 24, 48]
    for b in rec.block_sizes():
        for score in SCORES:
            got = score_maps(rec, b, score)
            for t in ts:
                want = block_scores(sums[t.name], b, score)
                torch.testing.assert_close(got[t.name], want, rtol=2e-5, atol=1e-6)
    # and the selection equals select_blocks on the direct scores
    direct = {t.name: block_scores(sums[t.name], 16, "l2") for t in ts}
    sel = to_selection(rec, 16, 7, "l2", "global")
    want = select_blocks(direct, 7, "global")
    for t in ts:
        assert sorted(zip(sel.get(t.name, ([], []))[0].tolist(), sel.get(t.name, ([], []))[1].tolist())) == \
            sorted(zip(want[t.name][0].tolist(), want[t.name][1].tolist()))


def test_shares_add_up_and_stability_ends_at_one():
    torch.manual_seed(1)
    ts = [Target(f"m.layers.{i}.{ty}", i, ty, 32, 64) for i in range(3) for ty in ("q", "k", "v", "o")]
    steps = [1, 2, 5, 8]
    run, hist = {t.name: torch.zeros(32, 64) for t in ts}, []
    for s in range(1, 9):
        for t in ts:
            run[t.name] = run[t.name] + torch.randn(32, 64) * (1 + (t.type == "v"))
        if s in steps:
            hist.append({k: v.clone() for k, v in run.items()})
    rec = record_from_sums(ts, hist, steps, grain=16)
    for rule in ("global", "per-matrix"):
        for score in SCORES:
            an = analyze(rec, 16, n_blocks=17, score=score, rule=rule)
            assert sum(an.blocks_type.values()) == 17
            assert abs(sum(an.shares_type.values()) - 1) < 1e-12
            assert abs(sum(an.shares_layer.values()) - 1) < 1e-12
            assert [s["step"] for s in an.stability] == steps
            assert an.stability[-1]["jaccard"] == 1.0
            assert all(0 <= s["jaccard"] <= 1 for s in an.stability)
    # the early selection of pure noise differs from the final one
    an = analyze(rec, 16, n_blocks=17, score="abs-mean")
    assert an.stability[0]["jaccard"] < 1.0
    quick = analyze(rec, 16, n_blocks=17, score="abs-mean", details=False)
    assert quick.stability == [] and quick.overlaps == {}
    for k in quick.selection:
        assert quick.selection[k][0].tolist() == an.selection[k][0].tolist()
    # density form of the budget, and types restrict the candidates
    an = analyze(rec, 32, density=0.25, score="l2", types=["v"])
    assert an.n_blocks == round(0.25 * 3 * 2) and set(an.shares_type) == {"v"}


def test_magnitude_overlap_is_one_when_gradient_equals_weights():
    torch.manual_seed(2)
    ts = [Target("m.layers.0.q", 0, "q", 32, 32), Target("m.layers.0.v", 0, "v", 32, 32)]
    W = {t.name: torch.randn(32, 32) * torch.rand(32, 1) for t in ts}
    rec = record_from_sums(ts, [W], [1], grain=8, weights=W)
    an = analyze(rec, 8, n_blocks=5, score="mean-abs")
    assert an.overlaps["magnitude"]["jaccard"] == 1.0
    assert an.overlaps["weight_change"]["jaccard"] is None
    r = an.overlaps["random"]
    assert r["expected_shared_blocks"] == pytest.approx(25 / 32)
    assert 0 <= r["jaccard"] <= 1


def _batches(n, seed=0, bs=2, seq=12, vocab=30522):
    """Random token batches; labels only on the last third (answer-like), padding on one row."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (bs, seq), generator=g)
        att = torch.ones_like(ids)
        att[0, -2:] = 0
        lab = ids.clone()
        lab[:, : 2 * seq // 3] = -100
        lab[att == 0] = -100
        out.append(dict(input_ids=ids, attention_mask=att, labels=lab))
    return out


def _grain_sums(S, g):
    d_out, d_in = S.shape
    return S.reshape(d_out // g, g, d_in // g, g).sum(dim=(1, 3))


@pytest.mark.parametrize("mode", ["gradient-only", "full"])
def test_checkpoint_sums_equal_direct_computation(tiny_llama, mode):
    batches = _batches(4)
    rec = collect_gradients(tiny_llama, batches=batches, warmup_steps=4, mode=mode, checkpoints=(1, 3),
                            grain=8, lr=1e-3, cache=False)
    assert rec.steps == [1, 3, 4]
    targets = find_targets(tiny_llama.model)
    assert len(targets) == 2 * 7
    # direct: a fresh copy, per-step gradients summed by hand (full: AdamW steps in between)
    m = fresh_copy(tiny_llama.model)
    m.train()
    for p in m.parameters():
        p.requires_grad_(mode == "full")
    ws = [m.get_submodule(t.name).weight for t in targets]
    for w in ws:
        w.requires_grad_(True)
    opt = torch.optim.AdamW(list(m.parameters()), lr=1e-3, weight_decay=0.0) if mode == "full" else None
    run = [torch.zeros_like(w) for w in ws]
    ck = {}
    for s, b in enumerate(batches, 1):
        m(**b).loss.backward()  # the model's own loss (collect_gradients skips unlabelled logits)
        for r, w in zip(run, ws):
            r += w.grad
        if opt:
            opt.step()
        for p in m.parameters():
            p.grad = None
        ck[s] = [r.clone() for r in run]
    # full mode: AdamW's update m / sqrt(v) turns a rounding difference in a tiny gradient (summation order
    # changes with torch's thread count) into a weight difference of order lr, so later steps agree to 1e-3
    rtol = 1e-4 if mode == "gradient-only" else 1e-3
    for i, step in enumerate(rec.steps):
        for j, t in enumerate(targets):
            want = _grain_sums(ck[step][j], 8)
            absum = _grain_sums(ck[step][j].abs(), 8)
            sq = _grain_sums(ck[step][j] ** 2, 8)
            # signed sums cancel: a cell near 0 carries the rounding of its large terms, so the absolute
            # tolerance scales with the grid's largest terms
            torch.testing.assert_close(rec.grid(rec.sums[i], j), want, rtol=rtol,
                                       atol=max(1e-6, rtol * float(absum.max())))
            torch.testing.assert_close(rec.grid(rec.abs_sums[i], j), absum, rtol=rtol, atol=1e-6)
            torch.testing.assert_close(rec.grid(rec.sq_sums[i], j), sq, rtol=rtol, atol=1e-9)
    if mode == "full":
        assert rec.dw_abs is not None and float(rec.dw_abs.sum()) > 0
        an = analyze(rec, 16, n_blocks=10)
        assert an.overlaps["weight_change"]["jaccard"] is not None
    else:
        assert rec.dw_abs is None
    assert len(rec.meta["losses"]) == 4 and all(np.isfinite(rec.meta["losses"]))


def test_cached_model_untouched_and_stop_event(tiny_llama):
    import threading

    from explorer.models import checksum

    before = checksum(tiny_llama.model)
    ev = threading.Event()
    seen = []

    def progress(frac, msg):
        seen.append(frac)
        if frac >= 0.5:
            ev.set()

    rec = collect_gradients(tiny_llama, batches=_batches(4, seed=3), warmup_steps=4, mode="full", grain=16,
                            progress=progress, stop_event=ev, cache_key="stopped-run")
    assert rec.steps_done == 2 and rec.meta["stopped"] and rec.key is None
    assert any("partial" in n for n in rec.meta["notes"])
    assert checksum(tiny_llama.model) == before
    assert not any(p.requires_grad for p in tiny_llama.model.parameters())


def test_cache_hit_returns_identical_results(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_CACHE", str(tmp_path))
    clear_memory_cache()
    kw = dict(warmup_steps=3, mode="gradient-only", checkpoints=(1, 2), grain=16, cache_key="t1")
    r1 = collect_gradients(tiny_llama, batches=_batches(3, seed=5), **kw)
    files = list((tmp_path / "smt-analysis").glob("*.safetensors"))
    assert len(files) == 1 and r1.key and files[0].name.startswith(r1.key)
    calls = []
    r2 = collect_gradients(tiny_llama, batches=_batches(3, seed=99), progress=lambda f, m: calls.append(m), **kw)
    assert r2 is r1 and calls == ["loaded from the cache"]
    an1 = analyze(r1, 32, n_blocks=9, score="l2")
    assert analyze(r1, 32, n_blocks=9, score="l2") is an1  # memoised: a redraw recomputes nothing
    a1 = analysis_to_dict(an1)
    clear_memory_cache()
    r3 = collect_gradients(tiny_llama, batches=_batches(3, seed=99), **kw)
    assert r3 is not r1 and r3.meta["from_cache"] == "disk"
    assert r3.steps == r1.steps and r3.grain == r1.grain and r3.targets == r1.targets
    # the file's name: sha256 of the settings (these 14 fields, as in every cache written so far) + format 1
    names = ["model", "source", "n_params", "kind", "task", "warmup_steps", "batch_size", "max_len", "mode",
             "checkpoints", "lr", "weight_decay", "seed", "grain"]
    from explorer.smt_inspector.cache import FORMAT_VERSION

    blob = json.dumps(dict({k: r3.meta[k] for k in names}, format=FORMAT_VERSION), sort_keys=True, default=str)
    assert hashlib.sha256(blob.encode()).hexdigest()[:24] == r1.key == RecordSettings.from_dict(r3.meta).key()
    assert list(RecordSettings.from_dict(r3.meta).to_dict()) == names and list(r3.meta)[:14] == names
    for a, b in zip(r1.sums + r1.abs_sums + r1.sq_sums, r3.sums + r3.abs_sums + r3.sq_sums):
        np.testing.assert_array_equal(a, b)
    an3 = analyze(r3, 32, n_blocks=9, score="l2")
    assert an3 is not an1
    a3 = analysis_to_dict(an3)
    a1.pop("from_cache"), a3.pop("from_cache")
    assert a1 == a3
    # other settings are another entry
    r4 = collect_gradients(tiny_llama, batches=_batches(3, seed=5), **dict(kw, mode="full"))
    assert r4.key != r1.key
    clear_memory_cache()


def test_bad_inputs_give_clear_knob_errors():
    ts, sums = _planted()
    rec = record_from_sums(ts, [sums], [1], grain=8)
    with pytest.raises(KnobError, match=r"block size 12 .*valid: 8, 16, 32"):
        analyze(rec, 12, n_blocks=1)
    with pytest.raises(KnobError, match="block size 4 must be a multiple of the stored grain 8"):
        analyze(rec, 4, n_blocks=1)
    with pytest.raises(KnobError, match="only 8 blocks"):
        analyze(rec, 16, n_blocks=9)
    with pytest.raises(KnobError, match="selects no block"):
        analyze(rec, 16, n_blocks=0)
    with pytest.raises(KnobError, match="unknown score"):
        analyze(rec, 16, n_blocks=1, score="max")
    with pytest.raises(KnobError, match="selection rule"):
        analyze(rec, 16, n_blocks=1, rule="local")
    with pytest.raises(KnobError, match="unknown matrix type"):
        analyze(rec, 16, n_blocks=1, types=["gate"])


def test_to_selection_trains_with_smt_adapter(tiny_llama):
    rec = collect_gradients(tiny_llama, batches=_batches(2, seed=7), warmup_steps=2, mode="gradient-only",
                            grain=16, cache=False)
    sel = to_selection(rec, 32, 5, "abs-mean", "global", ["q", "k", "v"])
    assert sum(len(r) for r, _ in sel.values()) == 5
    m = fresh_copy(tiny_llama.model)
    ad = apply_method(m, "smt", n_base=tiny_llama.info.n_params, smt_selection=sel, block_size=32, blocks=5,
                      targets=["q", "k", "v"])
    assert not ad.needs_warmup and ad.num_trainable() == 5 * 32 * 32
    got = ad.selection()
    for k, (r, c) in sel.items():
        assert sorted(zip(got[k][0].tolist(), got[k][1].tolist())) == sorted(zip(r.tolist(), c.tolist()))
    an = analyze(rec, 32, n_blocks=5, types="q,k,v")
    rows = selection_csv(an).strip().splitlines()
    assert len(rows) == 1 + 5
    assert len(scores_csv(an).strip().splitlines()) == 1 + an.total_blocks


def test_cli_smt_blocks_writes_json(tmp_path, monkeypatch, capsys):
    from explorer.__main__ import main

    monkeypatch.setenv("PEFT_EXPLORER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o.json"
    rc = main(["smt-blocks", "--model", "tiny-llama", "--warmup-steps", "3", "--block-size", "32", "--blocks", "6",
               "--score", "l2", "--selection", "per-matrix", "--mode", "full", "--batch-size", "2", "--max-len",
               "32", "--checkpoints", "1,2", "--json", str(out), "--selection-csv", str(tmp_path / "s.csv")])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["block_size"] == 32 and d["n_blocks"] == 6 and d["rule"] == "per-matrix" and d["score"] == "l2"
    assert abs(sum(d["shares_type"].values()) - 1) < 1e-9
    assert [s["step"] for s in d["stability"]] == [1, 2, 3] and d["stability"][-1]["jaccard"] == 1.0
    assert {"magnitude", "random", "weight_change"} <= set(d["overlaps"])
    assert sum(len(m["selected"]) for m in d["matrices"]) == 6
    assert all(len(m["scores"]) == m["grid"][0] for m in d["matrices"])
    err = capsys.readouterr().err
    assert "warm-up step 3/3" in err
    assert len((tmp_path / "s.csv").read_text().strip().splitlines()) == 7
    rc = main(["smt-blocks", "--model", "tiny-llama", "--warmup-steps", "2", "--block-size", "24", "--blocks", "1",
               "--batch-size", "2", "--max-len", "16", "--json", str(out)])
    assert rc == 2
    assert "block size 24" in capsys.readouterr().err


def test_warmup_loss_equals_model_loss(tiny_llama):
    from explorer.smt_inspector import warmup_loss

    m = fresh_copy(tiny_llama.model)
    b = _batches(1, seed=11)[0]
    torch.testing.assert_close(warmup_loss(m, b), m(**b).loss, rtol=1e-5, atol=1e-6)
