"""Core method tests on tiny models: counts, frozen entries, selection, save/load, merge."""

from __future__ import annotations

import math

import pytest
import torch

from explorer.methods import METHODS, KnobError, apply_method, load_adapter
from explorer.methods.smt_blocks import block_scores, select_blocks
from explorer.models import checksum, fresh_copy
from explorer.sparse import SparseDeltaLinear
from explorer.targets import find_targets


def make_batch(loaded, n=4, seed=0, length=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (n, length), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if loaded.info.kind == "seq-cls":
        batch["labels"] = torch.randint(0, 2, (n,), generator=g)
    else:
        batch["labels"] = ids.clone()
    return batch


def adapt(loaded, method, **knobs):
    m = fresh_copy(loaded.model)
    return apply_method(m, method, n_base=loaded.info.n_params, **knobs)


def train_steps(adapter, batch, steps=20, lr=1e-2, wd=0.1):
    opt = torch.optim.AdamW([p for _, p in adapter.trainable_parameters()], lr=lr, weight_decay=wd)
    adapter.model.train()
    losses = []
    for _ in range(steps):
        loss = adapter.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        adapter.on_step_end(opt)
        losses.append(float(loss.detach()))
    adapter.model.eval()
    return opt, losses


def head_count(loaded):
    return sum(p.numel() for p in loaded.model.classifier.parameters()) if hasattr(loaded.model, "classifier") else 0


def warm_smt(adapter, loaded, steps=2):
    from explorer.engine.warmup import run_warmup

    run_warmup(adapter, [make_batch(loaded, seed=s) for s in range(steps)], max_steps=steps)


# ----------------------------------------------------------------------------- counts

@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama"])
@pytest.mark.parametrize("rank,targets", [(1, ["q"]), (4, ["q", "v"]), (8, ["q", "k", "v", "o", "up", "down"])])
def test_lora_family_counts(request, model_fixture, rank, targets):
    loaded = request.getfixturevalue(model_fixture)
    ts = find_targets(loaded.model, targets)
    head = head_count(loaded)
    lora = adapt(loaded, "lora", rank=rank, targets=targets)
    assert lora.num_trainable() == sum(rank * (t.d_in + t.d_out) for t in ts) + head
    dora = adapt(loaded, "dora", rank=rank, targets=targets)
    assert dora.num_trainable() == sum(rank * (t.d_in + t.d_out) + t.d_out for t in ts) + head
    for freeze in (0.0, 0.5, 0.75):
        sp = adapt(loaded, "lora-sp", rank=rank, targets=targets, freeze=freeze)
        want = sum(round((1 - freeze) * rank * t.d_in) + round((1 - freeze) * rank * t.d_out) for t in ts)
        assert sp.num_trainable() == want + head
        assert abs(sp.num_trainable() - head - (1 - freeze) * sum(rank * (t.d_in + t.d_out) for t in ts)) <= len(ts)


def test_full_counts_everything(tiny_bert, tiny_llama):
    for loaded in (tiny_bert, tiny_llama):
        a = adapt(loaded, "full")
        assert a.num_trainable() == loaded.info.n_params == a.num_total()


def test_tied_lora_paper_formulas_mha(tiny_bert):
    """Multi-head attention (d_q = d_k = d_v = d): the paper's fused-QKV formulas."""
    cfg = tiny_bert.model.config
    d, L, r = cfg.hidden_size, cfg.num_hidden_layers, 4
    head = head_count(tiny_bert)
    counts = {p: adapt(tiny_bert, "tied-lora", preset=p, rank=r, targets=["q", "k", "v"]).num_trainable() - head
              for p in ("vBuA", "TL5", "TL6")}
    assert counts["vBuA"] == 4 * L * d * r
    assert counts["TL5"] == 4 * d * r
    assert counts["TL6"] == 4 * d * r + L * (r + 3 * d)


def test_tied_lora_counts_from_real_shapes_gqa(tiny_llama):
    """Grouped-query attention: k and v are smaller than q; counts follow the real shapes."""
    cfg = tiny_llama.model.config
    d, L, r = cfg.hidden_size, cfg.num_hidden_layers, 4
    dkv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    assert dkv < d
    fused = d + 2 * dkv
    tl5 = adapt(tiny_llama, "tied-lora", preset="TL5", rank=r, targets=["q", "k", "v"])
    assert tl5.num_trainable() == r * d + fused * r
    tl6 = adapt(tiny_llama, "tied-lora", preset="TL6", rank=r, targets=["q", "k", "v"])
    assert tl6.num_trainable() == r * d + fused * r + L * (r + fused)
    vbua = adapt(tiny_llama, "tied-lora", preset="vBuA", rank=r, targets=["q", "k", "v"])
    assert vbua.num_trainable() == L * (r * d + fused * r)


@pytest.mark.parametrize("combo", [(t, a, b, u, v) for t in (True, False) for a in (True, False)
                                   for b in (True, False) for u in (True, False) for v in (True, False)
                                   if a or b or u or v])
def test_tied_lora_every_combination(tiny_llama, combo):
    tied, a, b, u, v = combo
    r = 2
    ad = adapt(tiny_llama, "tied-lora", preset="custom", rank=r, targets=["q", "k", "v", "o"], tied=tied,
               train_A=a, train_B=b, train_u=u, train_v=v)
    # the paper's notation, from the config: q, k, v read the same input (one A of r x d, one fused B of
    # (d + 2 d_kv) x r); o is its own group (A r x d, B d x r).  A and B exist once (tied) or once per layer;
    # u (r) and v (one entry per row of B) always exist once per layer.
    cfg = tiny_llama.model.config
    d, L = cfg.hidden_size, cfg.num_hidden_layers
    d_kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    n_ab = 1 if tied else L
    want = 0
    for d_in, d_out in ((d, d + 2 * d_kv), (d, d)):  # (q, k, v) fused, then o
        want += n_ab * (a * r * d_in + b * d_out * r) + L * (u * r + v * d_out)
    assert ad.num_trainable() == want
    assert sum(lay.trainable for lay in ad.layouts()) == ad.num_trainable()
    # the update is zero at step 0 whatever is frozen
    batch = make_batch(tiny_llama)
    with torch.no_grad():
        base_out = tiny_llama.model(**batch).logits
        out = ad.model(**batch).logits
    assert torch.allclose(base_out, out, atol=1e-6)


def test_tied_lora_no_trained_tensor_is_refused(tiny_llama):
    with pytest.raises(KnobError, match="at least one"):
        adapt(tiny_llama, "tied-lora", preset="custom", train_A=False, train_B=False, train_u=False, train_v=False)


def test_tied_tensors_are_single_and_gradients_sum(tiny_bert):
    ad = adapt(tiny_bert, "tied-lora", preset="TL5", rank=2, targets=["q", "k", "v"])
    mods = [ad.model.get_submodule(t.name) for t in ad.targets]
    assert len({id(m.group.A) for m in mods}) == 1 and len({id(m.group.B) for m in mods}) == 1
    names = [n for n, _ in ad.trainable_parameters()]
    assert len(names) == len(set(names))
    params = [p for _, p in ad.trainable_parameters()]
    assert len({id(p) for p in params}) == len(params)
    # B = 0 at step 0 kills A's gradient: set B non-zero, then compare the shared tensors' gradients with the
    # sum of the per-use gradients worked out by hand from each use's input X and output gradient G:
    # out = W x + s * B[rows] (A x) (u = v = 1 in TL5), so dA = sum_uses (s G B[rows])^T X and
    # dB[rows] += s G^T (X A^T).
    grp = mods[0].group
    with torch.no_grad():
        grp.B.normal_()
    uses = []

    def keep(mod, inputs, out):
        rec = {"mod": mod, "x": inputs[0].detach().reshape(-1, inputs[0].shape[-1])}
        out.register_hook(lambda g: rec.__setitem__("g", g.detach().reshape(-1, g.shape[-1])))
        uses.append(rec)

    hooks = [m.register_forward_hook(keep) for m in mods]
    batch = make_batch(tiny_bert)
    ad.model(**batch).loss.backward()
    for h in hooks:
        h.remove()
    assert len(uses) == len(mods) == 3 * tiny_bert.model.config.num_hidden_layers
    A, B = grp.A.detach()[0], grp.B.detach()[0]
    want_A, want_B = torch.zeros_like(A), torch.zeros_like(B)
    for rec in uses:
        s_, rows = rec["mod"].scaling, rec["mod"].rows
        want_A += (s_ * rec["g"] @ B[rows]).t() @ rec["x"]
        want_B[rows] += s_ * rec["g"].t() @ (rec["x"] @ A.t())
    assert want_A.abs().sum() > 0
    torch.testing.assert_close(grp.A.grad[0], want_A, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grp.B.grad[0], want_B, rtol=1e-4, atol=1e-6)
    # and it is the sum, not one layer's share: the last layer alone is far from it
    last = [r for r in uses if r["mod"].layer == max(u["mod"].layer for u in uses)]
    only_last = sum((r["mod"].scaling * r["g"] @ B[r["mod"].rows]).t() @ r["x"] for r in last)
    assert not torch.allclose(only_last, want_A, rtol=1e-2, atol=1e-4)


def test_smt_counts_and_block_size_rules(tiny_bert, tiny_llama):
    for loaded in (tiny_bert, tiny_llama):
        ad = adapt(loaded, "smt", block_size=16, blocks=5, warmup_mode="gradient-only")
        assert ad.num_trainable() == 5 * 16 * 16 + head_count(loaded)  # before selection: the planned count
        warm_smt(ad, loaded)
        assert ad.num_trainable() == 5 * 16 * 16 + head_count(loaded)
        assert sum(lay.trainable for lay in ad.layouts()) == 5 * 256
    with pytest.raises(KnobError, match="does not divide"):
        adapt(tiny_bert, "smt", block_size=7)
    with pytest.raises(KnobError, match="only"):
        adapt(tiny_bert, "smt", block_size=32, blocks=10_000)
    # auto block size: the largest of 256/64/32/16 that divides every target and leaves >= 8 blocks in the
    # smallest one: tiny-bert's 64x64 q/k/v -> 16 (16 blocks each; 32 would leave 4, 64 one whole matrix)
    ad = adapt(tiny_bert, "smt")
    assert ad.block == 16
    # auto budget: 1 % of all parameters = round(0.01 * n / 256) blocks, capped at 25 % of the targets' blocks
    # (2 layers x 3 matrices x 16 blocks = 96; 1 % of tiny-bert's ~2 M parameters would be ~80)
    assert round(0.01 * tiny_bert.info.n_params / 256) > 24
    assert ad.n_blocks == 24 == int(0.25 * 96) and any("capped" in n for n in ad.notes)
    # tiny-llama: q 64x64 (16 blocks of 16), k and v 32x64 (8 each) in 2 layers = 64 blocks -> 16 by the cap
    ad = adapt(tiny_llama, "smt")
    assert ad.block == 16 and ad.total_blocks == 64 and ad.n_blocks == 16


def test_sparta_density_and_sparsity(tiny_bert):
    ts = find_targets(tiny_bert.model, ["v", "o"])
    for density in (0.01, 0.1, 0.5, 1.0):
        ad = adapt(tiny_bert, "sparta", density=density)
        sel = ad.num_trainable() - head_count(tiny_bert)
        assert sel == sum(round(density * t.d_out * t.d_in) for t in ts)
        for lay in ad.layouts():
            assert lay.mask().sum() == lay.trainable
    ad = adapt(tiny_bert, "sparta", sparsity=0.999)  # the authors' budget: head and deltas together
    assert ad.num_trainable() == round(0.001 * tiny_bert.info.n_params)
    with pytest.raises(KnobError, match="hold only"):
        adapt(tiny_bert, "sparta", sparsity=0.5)  # keeps more than v and o hold


def test_sparta_indices_int32_deltas_fp32(tiny_llama):
    ad = adapt(tiny_llama, "sparta", density=0.2)
    for m in ad.modules.values():
        assert m.rows.dtype == torch.int32 and m.cols.dtype == torch.int32
        assert m.delta.dtype == torch.float32 and torch.all(m.delta == 0)


# ----------------------------------------------------------------------------- frozen entries stay frozen

def test_lora_sp_frozen_entries_bit_identical(tiny_bert):
    ad = adapt(tiny_bert, "lora-sp", rank=4, targets=["q", "v"], freeze=0.5)
    before = {n: [f.detach().clone() for f in m.factors()] for n, m in ad.modules.items()}
    opt, losses = train_steps(ad, make_batch(tiny_bert), steps=20)
    for n, m in ad.modules.items():
        ma, mb = m.masks()
        a, b = m.factors()
        a0, b0 = before[n]
        frozen_a = torch.from_numpy(~ma)
        frozen_b = torch.from_numpy(~mb)
        assert torch.equal(a.detach()[frozen_a], a0[frozen_a])
        assert torch.equal(b.detach()[frozen_b], b0[frozen_b])
        assert not torch.equal(a.detach()[~frozen_a], a0[~frozen_a])  # trainable entries moved
        # frozen entries are not parameters and get no optimizer state
        for p in (m.a_vals, m.b_vals):
            assert opt.state[p]["exp_avg"].shape == p.shape
        assert m.a_vals.numel() == ma.sum() and m.b_vals.numel() == mb.sum()
    assert losses[-1] < losses[0]


def test_lora_sp_per_step_variant_keeps_frozen_values(tiny_bert):
    ad = adapt(tiny_bert, "lora-sp", rank=4, targets=["q"], freeze=0.5, mask_mode="per-step")
    m = next(iter(ad.modules.values()))
    idx0 = m.a_idx.clone()
    a_before = m.factors()[0].detach().clone()
    opt = torch.optim.AdamW([p for _, p in ad.trainable_parameters()], lr=1e-2, weight_decay=0.1)
    batch = make_batch(tiny_bert)
    ad.model.train()
    ad.model(**batch).loss.backward()
    opt.step()
    a_after_step = m.factors()[0].detach().clone()
    frozen = torch.ones(a_before.numel(), dtype=torch.bool)
    frozen[m.a_idx.long()] = False
    frozen = frozen.view_as(a_before)
    assert torch.equal(a_after_step[frozen], a_before[frozen])
    ad.on_step_end(opt)
    assert not torch.equal(m.a_idx, idx0)  # a new mask
    assert torch.equal(m.factors()[0].detach(), a_after_step)  # redraw changes nothing in A itself


@pytest.mark.parametrize("method,knobs", [
    ("sparta", dict(density=0.05)),
    ("smt", dict(block_size=16, blocks=3, warmup_mode="gradient-only", warmup_steps=2)),
])
def test_unselected_entries_bit_identical(tiny_bert, method, knobs):
    ad = adapt(tiny_bert, method, **knobs)
    if ad.needs_warmup:
        warm_smt(ad, tiny_bert)
    orig = {t.name: tiny_bert.model.get_submodule(t.name).weight.detach().clone() for t in ad.targets}
    train_steps(ad, make_batch(tiny_bert), steps=20)
    n_changed = 0
    for t in ad.targets:
        mod = ad.model.get_submodule(t.name)
        if not isinstance(mod, SparseDeltaLinear):
            assert torch.equal(mod.weight, orig[t.name])
            continue
        w_eff = mod.merged_weight()
        mask = torch.from_numpy(mod.mask())
        assert torch.equal(w_eff[~mask], orig[t.name][~mask])
        assert torch.equal(mod.base.weight, orig[t.name])  # the original is never written
        n_changed += int((w_eff[mask] != orig[t.name][mask]).sum())
    assert n_changed > 0
    # every non-target, non-head weight is untouched
    base_sd = tiny_bert.model.state_dict()
    for name, p in ad.model.named_parameters():
        if "classifier" in name or name.endswith("delta"):
            continue
        key = name.replace(".base.", ".")
        assert torch.equal(p, base_sd[key]), name


def test_only_selected_entries_reach_the_optimizer(tiny_llama):
    ad = adapt(tiny_llama, "smt", block_size=16, blocks=4, warmup_mode="gradient-only", warmup_steps=2)
    warm_smt(ad, tiny_llama)
    opt, _ = train_steps(ad, make_batch(tiny_llama), steps=2)
    state_numel = sum(t.numel() for st in opt.state.values() for k, t in st.items() if k in ("exp_avg", "exp_avg_sq"))
    assert state_numel == 2 * 4 * 16 * 16
    shapes = sorted(tuple(p.shape) for _, p in ad.trainable_parameters())
    assert all(s[1:] == (16, 16) for s in shapes) and sum(s[0] for s in shapes) == 4
    # no dense weight gradient exists anywhere: after one more backward (grads kept) every frozen tensor has no
    # .grad at all, every .grad that exists is a selected block, and no matrix product in the backward pass
    # produces a d_out x d_in (or d_in x d_out) result for a target layer, i.e. no dense weight gradient is
    # formed even transiently (the effective weight used for the input gradient is a sum, not a product)
    from torch.utils._python_dispatch import TorchDispatchMode

    dense_shapes = {(t.d_out, t.d_in) for t in ad.targets} | {(t.d_in, t.d_out) for t in ad.targets}
    products = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
                torch.ops.aten.matmul.default, torch.ops.aten.baddbmm.default}
    seen = []

    class Products(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in products:
                seen.append(tuple(out.shape[-2:]))
            return out

    batch = make_batch(tiny_llama)
    ad.model.train()
    loss = ad.model(**batch).loss
    with Products():
        loss.backward()
    assert seen, "the dispatch hook saw no matrix product in the backward pass"
    assert not [s for s in seen if s in dense_shapes], seen
    trainable = {id(p) for _, p in ad.trainable_parameters()}
    for name, p in ad.model.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and tuple(p.grad.shape[1:]) == (16, 16), name
        else:
            assert p.grad is None, f"frozen {name} has a .grad of shape {tuple(p.grad.shape)}"


# ----------------------------------------------------------------------------- SMT selection

def test_smt_selects_the_planted_blocks(tiny_llama):
    ad = adapt(tiny_llama, "smt", block_size=16, blocks=3, targets=["q", "v"], warmup_mode="gradient-only")
    ad.begin_warmup()
    planted = {ad.targets[0].name: [(1, 2), (3, 0)], ad.targets[-1].name: [(0, 3)]}
    for t in ad.targets:
        g = torch.randn(t.d_out, t.d_in) * 1e-3
        for (r, c) in planted.get(t.name, []):
            g[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 1.0
        ad.model.get_submodule(t.name).weight.grad = g
    ad.accumulate()
    sel = ad.finish_warmup()
    got = {n: sorted(zip(r.tolist(), c.tolist())) for n, (r, c) in sel.items() if len(r)}
    assert got == {n: sorted(v) for n, v in planted.items()}


@pytest.mark.parametrize("score", ["abs-mean", "mean-abs", "l1", "l2"])
def test_block_scores_and_rules(score):
    g = torch.zeros(32, 48)
    g[0:16, 16:32] = 2.0  # strong positive block
    g[16:32, 0:16] = torch.tensor([1.0, -1.0]).repeat(128)  .view(16, 16) * 3  # cancels under |mean|
    s = block_scores(g, 16, score)
    assert s.shape == (2, 3)
    if score == "abs-mean":
        assert s[1, 0] == 0 and s[0, 1] == 2.0
    else:
        assert s[1, 0] > s[0, 1]
    sel = select_blocks({"a": s, "b": torch.zeros(2, 3)}, 2, "per-matrix")
    assert len(sel["a"][0]) == 1 and len(sel["b"][0]) == 1
    top = select_blocks({"a": s}, 1, "global")["a"]
    want = (0, 1) if score == "abs-mean" else (1, 0)
    assert (int(top[0][0]), int(top[1][0])) == want


# ----------------------------------------------------------------------------- save, load, merge, cache

ALL = [("full", {}), ("lora", dict(rank=2)), ("dora", dict(rank=2)), ("lora-sp", dict(rank=2)),
       ("tied-lora", dict(rank=2)), ("sparta", dict(density=0.1)),
       ("smt", dict(block_size=16, blocks=3, warmup_mode="gradient-only", warmup_steps=2)), ("vera", dict(rank=4))]


def test_the_round_trip_covers_every_method():
    assert sorted(m for m, _ in ALL) == sorted(METHODS)


@pytest.mark.parametrize("method,knobs", ALL, ids=[m for m, _ in ALL])
@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama"])
def test_save_load_merge_and_cache_untouched(request, tmp_path, model_fixture, method, knobs):
    loaded = request.getfixturevalue(model_fixture)
    before = checksum(loaded.model)
    ad = adapt(loaded, method, **knobs)
    if ad.needs_warmup:
        warm_smt(ad, loaded)
    batch = make_batch(loaded)
    train_steps(ad, batch, steps=3)
    with torch.no_grad():
        out = ad.model(**batch).logits
    ad.save(tmp_path / "a")
    re = load_adapter(fresh_copy(loaded.model), tmp_path / "a")
    re.model.eval()
    with torch.no_grad():
        assert torch.equal(re.model(**batch).logits, out)
    assert re.num_trainable() == ad.num_trainable()
    merged = ad.merged_model().eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, out, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in merged.parameters())
    assert checksum(loaded.model) == before  # the cached base was never modified
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_peft_adapter_loads_in_plain_peft(tiny_bert, tmp_path):
    from peft import PeftModel

    ad = adapt(tiny_bert, "lora", rank=2)
    batch = make_batch(tiny_bert)
    train_steps(ad, batch, steps=3)
    with torch.no_grad():
        out = ad.model(**batch).logits
    ad.save(tmp_path)
    plain = PeftModel.from_pretrained(fresh_copy(tiny_bert.model), str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, out)


def test_sparse_gradients_match_dense_reference():
    """The custom autograd functions give the same gradients as a dense computation."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(3, 5, 64, requires_grad=True)
    for kw in (dict(rows=[0, 5, 47, 3], cols=[1, 63, 0, 3]), dict(brow=[0, 2], bcol=[3, 1], block=16)):
        mod = SparseDeltaLinear(lin, **kw)
        with torch.no_grad():
            mod.delta.normal_()
        y = mod(x)
        gy = torch.randn_like(y)
        gx, gd = torch.autograd.grad(y, (x, mod.delta), gy)
        w = (lin.weight + mod.delta_dense()).detach().requires_grad_(True)
        x2 = x.detach().requires_grad_(True)
        y2 = torch.nn.functional.linear(x2, w, lin.bias)
        gx2, gw = torch.autograd.grad(y2, (x2, w), gy)
        torch.testing.assert_close(y, y2)
        torch.testing.assert_close(gx, gx2)
        mask = torch.from_numpy(mod.mask())
        torch.testing.assert_close(gd.reshape(-1).sort().values, gw[mask].reshape(-1).sort().values)


def test_entry_gradient_chunked_path_matches():
    """Many entries: the chunked product path gives the same gradient as the gather path."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(32, 40)
    g = torch.Generator().manual_seed(0)
    from explorer.sparse import random_entries

    rows, cols = random_entries((40, 32), 900, g)
    mod = SparseDeltaLinear(lin, rows=rows, cols=cols)
    x = torch.randn(64, 32)  # 64 tokens x 900 entries > 40 x 32: chunked path
    gy = torch.randn(64, 40)
    y = mod(x)
    (gd,) = torch.autograd.grad(y, (mod.delta,), gy)
    ref = (gy.t() @ x)[mod.rows.long(), mod.cols.long()]
    torch.testing.assert_close(gd, ref)


def test_bad_knobs_give_clear_messages(tiny_bert):
    with pytest.raises(KnobError, match="rank must be >= 1"):
        adapt(tiny_bert, "lora", rank=0)
    with pytest.raises(KnobError, match="freeze must be <="):
        adapt(tiny_bert, "lora-sp", freeze=1.5)
    with pytest.raises(KnobError, match="unknown value"):
        adapt(tiny_bert, "lora", targets=["nope"])
    with pytest.raises(KnobError, match="unknown knob"):
        adapt(tiny_bert, "lora", ranks=3)
    with pytest.raises(KnobError, match="must be a int"):
        adapt(tiny_bert, "lora", rank="many")
    with pytest.raises(KnobError, match="Unknown method"):
        adapt(tiny_bert, "qlora")
    with pytest.raises(KnobError, match="no linear layers of type"):
        adapt(tiny_bert, "lora", targets=["gate"])  # BERT has no gate projection


def test_every_method_listed_with_knobs():
    assert set(METHODS) == {"full", "lora", "dora", "lora-sp", "tied-lora", "smt", "sparta", "vera"}
    for m in METHODS.values():
        assert m.paper and m.formula and m.description
        for k in m.knobs:
            assert k.help
            if k.kind in ("int", "float") and k.min is not None:
                assert k.min <= k.default <= k.max


# ----------------------------------------------------------------------------- persistence declared once

class _Scaled(torch.nn.Module):
    """A part of a hand-written adapter: a trained scale and a frozen index buffer."""

    def __init__(self, n: int, fill: float):
        super().__init__()
        self.s = torch.nn.Parameter(torch.full((n,), fill))
        self.register_buffer("idx", torch.arange(n, dtype=torch.int32) * int(fill))


def _declared_adapter(fill: float):
    from explorer.methods.base import Adapter

    class Declared(Adapter):
        method = "declared"
        state_names = ("s", "idx")

    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    ad = Declared(net, {}, 6)
    ad.modules = {"p0": _Scaled(3, fill), "p1": _Scaled(2, fill + 1)}
    return ad


def test_a_method_that_declares_its_tensor_names_saves_and_loads_them(tmp_path):
    """The base ``state_tensors`` / ``load_state_tensors`` serve any adapter that names its tensors: each part's
    ``<key>.<name>``, written by ``save`` and read back by ``load``."""
    ad = _declared_adapter(2.0)
    st = ad.state_tensors()
    assert list(st) == ["p0.s", "p0.idx", "p1.s", "p1.idx"] and not st["p0.s"].requires_grad
    ad.save(tmp_path)
    other = _declared_adapter(5.0)
    other.load(tmp_path)
    for key, part in other.modules.items():
        assert torch.equal(part.s, ad.modules[key].s) and torch.equal(part.idx, ad.modules[key].idx)
    with pytest.raises(KeyError, match="p1.idx"):
        other.load_state_tensors({k: v for k, v in st.items() if k != "p1.idx"})


def test_the_peft_methods_share_one_base_and_borrow_nothing(tiny_llama):
    """LoRA, DoRA and VeRA save, load and merge through ``PeftAdapter``; none takes another's methods."""
    from explorer.methods.peft_adapter import PeftAdapter

    classes = {name: type(adapt(tiny_llama, name)) for name in METHODS}
    classes = {name: cls for name, cls in classes.items() if issubclass(cls, PeftAdapter)}
    assert set(classes) == {"lora", "dora", "vera"}
    for cls in classes.values():
        for fn in ("save", "load", "merge_into_model", "head_parameters"):
            assert getattr(cls, fn) is getattr(PeftAdapter, fn), (cls, fn)
