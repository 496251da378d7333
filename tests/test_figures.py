"""Playground core and figure builders: exact counts, untouched cache, honest reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import figures as F
from explorer import playground as pg
from explorer.methods import METHODS, apply_method
from explorer.models import checksum, fresh_copy

KNOBS = {
    "full": {}, "lora": dict(rank=4), "dora": dict(rank=4), "lora-sp": dict(rank=4, freeze=0.5),
    "tied-lora": dict(rank=4, preset="TL6"), "smt": dict(block_size=16, blocks=6),
    "sparta": dict(density=0.05, targets=["v", "o"]),
}


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama"])
def test_summaries_exact_and_cache_untouched(model_fixture, request):
    loaded = request.getfixturevalue(model_fixture)
    before = checksum(loaded.model)
    for method, knobs in KNOBS.items():
        s = pg.summarize(loaded, method, knobs, warm=1, use_cache=False)
        # the same method on a real deep copy (what training uses) gives the same counts
        ref = apply_method(fresh_copy(loaded.model), method, n_base=loaded.info.n_params,
                           smt_selection={} if method == "smt" else None,
                           **({**knobs, "warmup_mode": "gradient-only"} if method == "smt" else knobs))
        assert s.trainable == (ref.num_trainable() if method != "smt" else 6 * 16 * 16 + ref.head_parameters())
        assert s.total == loaded.info.n_params
        lines, total = pg.formula(s)
        assert total == s.trainable, (method, lines)
        assert s.optimizer_bytes == 8 * s.trainable and s.gradient_bytes == 4 * s.trainable
        assert s.adapter_bytes > 0
        if method != "full":  # the saved tensors hold at least the trainable values in fp32
            assert s.adapter_bytes >= 4 * (s.trainable - s.head)
    assert checksum(loaded.model) == before
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert all(p.grad is None for p in loaded.model.parameters())


def test_shared_copy_shares_storage_but_not_flags(tiny_bert):
    m = pg.shared_weight_copy(tiny_bert.model)
    p0 = dict(tiny_bert.model.named_parameters())
    for n, p in m.named_parameters():
        assert p.data_ptr() == p0[n].data_ptr() and p is not p0[n]
        p.requires_grad_(True)
    assert not any(p.requires_grad for p in tiny_bert.model.parameters())


def test_summary_cache_hits_and_rank_changes_count(tiny_bert):
    pg.clear_cache()
    a = pg.summarize(tiny_bert, "lora", dict(rank=2))
    assert pg.summarize(tiny_bert, "lora", dict(rank=2)) is a
    b = pg.summarize(tiny_bert, "lora", dict(rank=8))
    assert b.trainable - b.head == 4 * (a.trainable - a.head)


def test_smt_selection_uses_warmup_gradients(tiny_llama):
    s = pg.summarize(tiny_llama, "smt", dict(block_size=16, blocks=3, targets=["v"]), warm=1, use_cache=False)
    g = pg.smt_grad_sums(tiny_llama, ("v",), 1, 0)["sums"]
    from explorer.methods.smt import block_scores

    scores = torch.cat([block_scores(v, 16).reshape(-1) for v in g.values()])
    chosen = torch.cat([s.adapter.scores[k].reshape(-1)[
        (s.adapter.modules[k].brow.long() * s.adapter.scores[k].shape[1] + s.adapter.modules[k].bcol.long())]
        for k in s.adapter.modules])
    assert chosen.numel() == 3
    assert float(chosen.min()) >= float(torch.sort(scores, descending=True).values[2]) - 1e-12
    assert s.warmup["batches"] == 1


def test_reduce_mask_keeps_fractions():
    m = np.zeros((1536, 384), bool)
    m[:3, :3] = True
    red, f = pg.reduce_mask(m, 512)
    assert f == 3 and red.shape == (512, 128) and red.dtype == np.float32
    assert red[0, 0] == pytest.approx(1.0) and red[1:, 1:].sum() == 0
    assert red.sum() * 9 == pytest.approx(m.sum())
    # a ragged edge is averaged over real entries only
    red, f = pg.reduce_mask(np.ones((1000, 7), bool), 512)
    assert f == 2 and np.allclose(red, 1.0)
    small, f = pg.reduce_mask(np.eye(4, dtype=bool))
    assert f == 1 and np.array_equal(small, np.eye(4, dtype=np.float32))


def test_reduce_abs_max_keeps_single_entries():
    d = np.zeros((1024, 1024), np.float32)
    d[1000, 3] = -2.5
    red, f = pg.reduce_abs_max(d, 512)
    assert f == 2 and red.max() == pytest.approx(2.5) and (red > 0).sum() == 1


def test_illustrative_delta_structure(tiny_bert):
    s = pg.summarize(tiny_bert, "lora", dict(rank=3))
    t = s.adapter.targets[0]
    d, note = pg.illustrative_delta(s, t.name)
    assert d.shape == (t.d_out, t.d_in) and pg.numerical_rank(d) == 3 and "zero" in note
    assert pg.delta_rank(s, t.name, d) == (3, True, "rank 3")  # from the factors, same as a full SVD
    s = pg.summarize(tiny_bert, "sparta", dict(density=0.1, targets=["v"]))
    lay = s.layouts()[0]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert np.array_equal(d != 0, lay.mask())  # only the selected entries change
    r, exact, _ = pg.delta_rank(s, lay.target, d)
    assert not exact and pg.numerical_rank(d) <= r <= min(d.shape)
    s = pg.summarize(tiny_bert, "tied-lora", dict(rank=2, preset="TL6", targets=["q"]))
    lay = s.layouts()[1]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert pg.delta_rank(s, lay.target, d)[:2] == (pg.numerical_rank(d), True) and pg.numerical_rank(d) == 2
    s = pg.summarize(tiny_bert, "lora-sp", dict(rank=2, freeze=0.9, targets=["q"]))
    lay = s.layouts()[0]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert not (d[~lay.mask()]).any()  # rows whose B entries are all frozen stay zero


def test_figures_fixed_ranges_and_units(tiny_bert):
    red, f = pg.reduce_mask(np.random.default_rng(0).random((64, 128)) < 0.1)
    fig = F.mask_heatmap(red, (64, 128), f, "mask", "plotly_dark")
    hm = fig.data[0]
    assert (hm.zmin, hm.zmax) == (0.0, 1.0) and fig.layout.template.layout.paper_bgcolor is not None
    assert "input column" in fig.layout.xaxis.title.text and fig.layout.uirevision == "keep"
    assert F.template_for("dark") == "plotly_dark" and F.template_for(None) == "plotly_white"
    s = pg.summarize(tiny_bert, "tied-lora", dict(rank=4, preset="TL5"))
    fig = F.tied_diagram(pg.tied_structure(s), "tied")
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "A (shared)" in texts and "B (shared)" in texts and "u_1" in texts
    fig = F.memory_bars([dict(name="x", grad=2**20, optim=2**21, adapter=10)], "m")
    assert "MiB" in fig.layout.xaxis.title.text and fig.data[1].x[0] == pytest.approx(2.0)
    fig = F.block_scores(np.random.rand(4, 4).astype(np.float32), np.eye(4, dtype=bool), 16, "s")
    assert len(fig.data[1].x) == 4
