"""SpaRTA's budget as its authors count it (issue 13, part 4) and its defaults on small models (part A).

sparsity = the fraction of ALL parameters that stay frozen, the fully trained head inside the budget;
weight decay on the sparse deltas, not on the head; an exact-count sampling rule, stated on screen."""

from __future__ import annotations

import pytest
import torch

from explorer.memory.analytic import estimate
from explorer.memory.specs import spec_for
from explorer.methods import KnobError, apply_method
from explorer.methods.sparta import apportion
from explorer.models import fresh_copy
from explorer.sparse import SparseDeltaLinear
from explorer.targets import find_targets
from explorer.engine.prepare import param_groups


def adapt(loaded, **knobs):
    return apply_method(fresh_copy(loaded.model), "sparta", n_base=loaded.info.n_params, **knobs)


def head_numel(loaded):
    mod = getattr(loaded.model, "classifier", None) or getattr(loaded.model, "score", None)
    return sum(p.numel() for p in mod.parameters()) if mod is not None else 0


def test_apportion_exact_and_proportional():
    sizes = [2048, 4096, 2048, 4096, 7]
    for total in (0, 1, 5, 1234, 12295):
        got = apportion(total, sizes)
        assert sum(got) == total
        for g, n in zip(got, sizes):
            assert abs(g - total * n / sum(sizes)) < 1  # largest remainder: within one of the exact share


@pytest.mark.parametrize("sparsity", [0.999, 0.998, 0.9995])
def test_head_inside_the_budget(tiny_bert, sparsity):
    N = tiny_bert.info.n_params
    head = head_numel(tiny_bert)
    assert head > 0
    ad = adapt(tiny_bert, sparsity=sparsity)
    total = round((1 - sparsity) * N)
    assert ad.num_trainable() == total  # head + deltas together, exactly
    deltas = sum(m.delta.numel() for m in ad.modules.values())
    assert deltas == total - head
    head_trainable = sum(p.numel() for n, p in ad.trainable_parameters() if n.startswith("classifier"))
    assert head_trainable == head
    # per-matrix counts follow the matrices' sizes; every matrix gets exactly its count of distinct entries
    ts = find_targets(tiny_bert.model, ["v", "o"])
    for t, lay in zip(ts, ad.layouts()):
        assert abs(lay.trainable - deltas * t.d_out * t.d_in / sum(x.d_out * x.d_in for x in ts)) < 1
        assert int(lay.mask().sum()) == lay.trainable
    # the sampling rule is on screen, and the memory model counts the same
    assert any(n.startswith("Sampling: an exact count") for n in ad.notes)
    est = estimate(spec_for("tiny-bert"), "sparta", dict(sparsity=sparsity))
    assert est["trainable_params"] == ad.num_trainable()


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_default_adapts_to_small_models(request, fixture):
    loaded = request.getfixturevalue(fixture)
    ad = adapt(loaded)  # sparsity 0.99 asks for more than half of v, o on these embedding-heavy models
    ts = find_targets(loaded.model, ["v", "o"])
    S = sum(t.d_out * t.d_in for t in ts)
    assert 0.01 * loaded.info.n_params - head_numel(loaded) > 0.5 * S  # the premise of the cap
    deltas = sum(m.delta.numel() for m in ad.modules.values())
    assert deltas == round(0.5 * S)
    assert ad.num_trainable() == deltas + head_numel(loaded)
    assert any("capped at 50%" in n for n in ad.notes)
    spec = spec_for(fixture.replace("_", "-"))
    assert estimate(spec, "sparta")["trainable_params"] == ad.num_trainable()


def test_explicit_impossible_sparsity_is_one_line(tiny_bert):
    with pytest.raises(KnobError) as e:
        adapt(tiny_bert, sparsity=0.5)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("sparta: sparsity 0.5 keeps") and "hold only" in msg
    with pytest.raises(KnobError, match="head"):
        adapt(tiny_bert, sparsity=0.99995)  # 102 trainable: fewer than the 130 of the head


def test_decay_groups_deltas_yes_head_no(tiny_bert):
    ad = adapt(tiny_bert, sparsity=0.999)
    params = ad.trainable_parameters()
    groups = param_groups(params, 0.1, ad)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    deltas = {id(m.delta) for m in ad.modules.values()}
    head = {id(p) for p in ad.model.classifier.parameters()}
    assert decay == deltas and no_decay == head
    # without the adapter the old rule (matrices decay, vectors not) would put the 1-D deltas in no-decay
    old = param_groups(params, 0.1)
    assert deltas <= {id(p) for g in old if g["weight_decay"] == 0 for p in g["params"]}


def test_weight_decay_moves_deltas_not_head_and_frozen_entries_stay(tiny_bert):
    torch.manual_seed(0)
    ad = adapt(tiny_bert, sparsity=0.999)
    originals = {n: m.base.weight.detach().clone() for n, m in ad.modules.items()}
    head_before = {n: p.detach().clone() for n, p in ad.model.classifier.named_parameters()}
    lr, wd = 1e-2, 0.5
    opt = torch.optim.AdamW(param_groups(ad.trainable_parameters(), wd, ad, lr), lr=lr)
    # 1) a step with zero gradients: only decoupled weight decay acts -> deltas shrink by lr*wd, the head does not
    with torch.no_grad():
        for m in ad.modules.values():
            m.delta.fill_(1.0)
    for _, p in ad.trainable_parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for m in ad.modules.values():
        assert torch.allclose(m.delta, torch.full_like(m.delta, 1 - lr * wd))
    for n, p in ad.model.classifier.named_parameters():
        assert torch.equal(p, head_before[n])
    # 2) real training with weight decay: every entry outside the selection stays bit-identical
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 5000, (4, 12), generator=g)
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1]))
    ad.model.train()
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        ad.model(**batch).loss.backward()
        opt.step()
    for n, m in ad.modules.items():
        assert isinstance(m, SparseDeltaLinear)
        assert torch.equal(m.base.weight, originals[n])  # the original is never written
        merged = m.merged_weight()
        sel = torch.from_numpy(m.mask())
        assert torch.equal(merged[~sel], originals[n][~sel])
        assert not torch.equal(merged[sel], originals[n][sel])
    assert any(not torch.equal(p, head_before[n]) for n, p in ad.model.classifier.named_parameters())
