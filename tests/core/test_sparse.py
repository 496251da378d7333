"""Small, fast tests written against the mutants that ``make mutation`` (tools/mutation.py) found alive.

Every expected value here is written by hand (or from a paper's formula), never taken from the code under test.
"""

import numpy as np
import pytest
import torch

from explorer import sparse


def test_dense_from_blocks_places_each_block_by_hand():
    # 4 x 6 matrix, blocks of 2: a 2 x 3 grid; block (1, 2) holds [[1, 2], [3, 4]], block (0, 0) holds 5..8
    delta = torch.tensor([[[1., 2.], [3., 4.]], [[5., 6.], [7., 8.]]])
    d = sparse.dense_from_blocks((4, 6), torch.tensor([1, 0]), torch.tensor([2, 0]), delta, 2)
    want = torch.zeros(4, 6)
    want[2:4, 4:6] = torch.tensor([[1., 2.], [3., 4.]])
    want[0:2, 0:2] = torch.tensor([[5., 6.], [7., 8.]])
    assert torch.equal(d, want)
    m = sparse.block_mask((4, 6), [1, 0], [2, 0], 2)
    assert m.sum() == 8 and m[2:4, 4:6].all() and m[0:2, 0:2].all() and not m[0:2, 2:6].any()


def test_dense_from_entries_accumulates_by_hand():
    d = sparse.dense_from_entries((2, 3), torch.tensor([0, 1, 1]), torch.tensor([2, 0, 0]), torch.tensor([1., 2., 3.]))
    assert torch.equal(d, torch.tensor([[0., 0., 1.], [5., 0., 0.]]))
    assert np.array_equal(sparse.entry_mask((2, 3), [0, 1], [2, 0]), np.array([[0, 0, 1], [1, 0, 0]], dtype=bool))


# ----------------------------------------------------------------------------- SparseDeltaLinear by hand


def _linear(d_in, d_out, seed=0, bias=True):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        lin.weight.normal_()
        if bias:
            lin.bias.normal_()
    return lin


def _check_against_dense(mod, base, D, x):
    """forward = x (W + D)^T + b; the input gradient g (W + D); returns delta's gradient for the caller."""
    W = base.weight.detach().clone()
    b = base.bias.detach().clone() if base.bias is not None else 0.0
    y = mod(x)
    torch.testing.assert_close(y, x @ (W + D).t() + b, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    torch.testing.assert_close(x.grad, g @ (W + D), rtol=1e-5, atol=1e-5)
    assert base.weight.grad is None and (base.bias is None or base.bias.grad is None)
    assert torch.equal(base.weight, W)  # the frozen weight is never written
    return g.reshape(-1, g.shape[-1]), x.detach().reshape(-1, x.shape[-1])


@pytest.mark.parametrize("n_entries,bias", [(3, True), (20, True), (20, False)])
def test_entry_delta_forward_and_gradients_by_hand(n_entries, bias):
    # 8 x 6 matrix, 2 x 5 = 10 tokens: 3 entries take the gather path (10 x 3 <= 48), 20 the chunked product
    base = _linear(6, 8, bias=bias)
    coords = [(7, 5), (0, 0), (3, 2), (0, 5), (7, 0), (4, 4), (1, 3), (2, 2), (5, 1), (6, 3), (3, 5), (2, 0),
              (1, 1), (4, 0), (6, 5), (5, 4), (0, 2), (7, 3), (2, 4), (3, 0)][:n_entries]  # unsorted on purpose
    mod = sparse.SparseDeltaLinear(base, rows=[r for r, _ in coords], cols=[c for _, c in coords])
    assert mod.delta.shape == (n_entries,) and mod.delta.dtype == torch.float32 and mod.delta.requires_grad
    assert [p for p in mod.parameters() if p.requires_grad] == [mod.delta]
    got = list(zip(mod.rows.tolist(), mod.cols.tolist()))
    assert got == sorted(coords) and mod.rows.dtype == torch.int32 and mod.cols.dtype == torch.int32
    with torch.no_grad():
        mod.delta.copy_(torch.arange(1, n_entries + 1, dtype=torch.float32) / 10)
    D = torch.zeros(8, 6)
    for i, (r, c) in enumerate(got):
        D[r, c] = (i + 1) / 10
    x = torch.randn(2, 5, 6, requires_grad=True)
    g, xs = _check_against_dense(mod, base, D, x)
    want = torch.tensor([float((g[:, r] * xs[:, c]).sum()) for r, c in got])
    torch.testing.assert_close(mod.delta.grad, want, rtol=1e-5, atol=1e-5)
    # the merged weight, the dense delta, the mask and the plain Linear agree with D
    torch.testing.assert_close(mod.delta_dense(), D)
    torch.testing.assert_close(mod.merged_weight(), base.weight.detach() + D)
    assert np.array_equal(mod.mask(), (D != 0).numpy())
    lin = mod.to_linear()
    assert isinstance(lin, torch.nn.Linear) and not any(p.requires_grad for p in lin.parameters())
    assert (lin.bias is None) == (not bias)
    with torch.no_grad():
        torch.testing.assert_close(lin(x), mod(x), rtol=1e-5, atol=1e-5)
    assert mod.extra_repr() == f"shape=(8, 6), trainable={n_entries} entries"
    assert mod.weight is base.weight and mod.bias is base.bias


@pytest.mark.parametrize("grid_blocks", [3, 70])
def test_block_delta_forward_and_gradients_by_hand(grid_blocks):
    # blocks of 2; 3 blocks on a 4 x 6 matrix, or 70 of the 72 blocks of an 18 x 16 matrix (more than the 64
    # blocks the backward handles per batch)
    d_out, d_in, b = (4, 6, 2) if grid_blocks == 3 else (18, 16, 2)
    C = d_in // b
    base = _linear(d_in, d_out, seed=1)
    if grid_blocks == 3:
        blocks = [(1, 2), (0, 1), (1, 0)]
    else:
        blocks = [(r, c) for r in range(d_out // b) for c in range(C)][::-1][:70]  # reverse order
    mod = sparse.SparseDeltaLinear(base, brow=[r for r, _ in blocks], bcol=[c for _, c in blocks], block=b)
    got = list(zip(mod.brow.tolist(), mod.bcol.tolist()))
    assert got == sorted(blocks) and mod.brow.dtype == torch.int32
    assert mod.delta.shape == (len(blocks), b, b) and mod.delta.requires_grad
    assert sorted(set(mod.ucols.tolist())) == mod.ucols.tolist() == sorted({c for _, c in blocks})
    vals = torch.randn(len(blocks), b, b)
    with torch.no_grad():
        mod.delta.copy_(vals)
    D = torch.zeros(d_out, d_in)
    for i, (r, c) in enumerate(got):
        D[r * b:(r + 1) * b, c * b:(c + 1) * b] = vals[i]
    x = torch.randn(3, 4, d_in, requires_grad=True)
    g, xs = _check_against_dense(mod, base, D, x)
    want = torch.stack([g[:, r * b:(r + 1) * b].t() @ xs[:, c * b:(c + 1) * b] for r, c in got])
    torch.testing.assert_close(mod.delta.grad, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mod.delta_dense(), D)
    torch.testing.assert_close(mod.merged_weight(), base.weight.detach() + D)
    m = np.zeros((d_out, d_in), dtype=bool)
    for r, c in got:
        m[r * b:(r + 1) * b, c * b:(c + 1) * b] = True
    assert np.array_equal(mod.mask(), m)
    with torch.no_grad():
        torch.testing.assert_close(mod.to_linear()(x), mod(x), rtol=1e-5, atol=1e-5)
    assert mod.extra_repr() == f"shape=({d_out}, {d_in}), trainable={len(blocks)} blocks of 2x2"


def test_only_the_input_gradient_or_only_the_delta_gradient():
    base = _linear(6, 8)
    mod = sparse.SparseDeltaLinear(base, rows=[1, 2], cols=[3, 4])
    x = torch.randn(5, 6)  # no gradient asked for the input
    mod(x).sum().backward()
    assert mod.delta.grad is not None and mod.delta.grad.shape == (2,)
    mod.delta.requires_grad_(False)
    x = torch.randn(5, 6, requires_grad=True)
    mod(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(5, 8) @ base.weight.detach())
    blk = sparse.SparseDeltaLinear(_linear(4, 4), brow=[1], bcol=[0], block=2)
    blk.delta.requires_grad_(False)
    x = torch.randn(3, 4, requires_grad=True)
    blk(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3, 4) @ blk.base.weight.detach())


# ----------------------------------------------------------------------------- helpers by hand


def test_random_entries_are_distinct_sorted_int32_and_clamped():
    g = torch.Generator().manual_seed(0)
    r, c = sparse.random_entries((5, 7), 12, g)
    assert r.dtype == torch.int32 and c.dtype == torch.int32 and len(r) == len(c) == 12
    flat = (r.long() * 7 + c.long()).tolist()
    assert flat == sorted(set(flat)) and all(0 <= v < 35 for v in flat)
    assert int(r.max()) <= 4 and int(c.max()) <= 6
    r, c = sparse.random_entries((5, 7), 99, torch.Generator().manual_seed(0))
    assert (r.long() * 7 + c.long()).tolist() == list(range(35))  # k above n: every entry once
    assert len(sparse.random_entries((5, 7), -3, torch.Generator().manual_seed(0))[0]) == 0
    a = sparse.random_entries((50, 40), 30, torch.Generator().manual_seed(4))
    b = sparse.random_entries((50, 40), 30, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    # uniform over the whole matrix: 2,000 of 200,000 entries land in every half of it
    r, c = sparse.random_entries((400, 500), 2000, torch.Generator().manual_seed(1))
    assert 900 < int((r < 200).sum()) < 1100 and 900 < int((c < 250).sum()) < 1100


def test_linear_from_copies_weight_and_bias_frozen():
    base = _linear(3, 2)
    w = torch.tensor([[1., 2., 3.], [4., 5., 6.]], dtype=torch.float64)
    lin = sparse.linear_from(base, w)
    assert lin.weight.dtype == torch.float32 and torch.equal(lin.weight, w.float())
    assert torch.equal(lin.bias, base.bias) and lin.bias is not base.bias
    assert (lin.in_features, lin.out_features) == (3, 2)
    assert not lin.weight.requires_grad and not lin.bias.requires_grad
    nob = sparse.linear_from(_linear(3, 2, bias=False), w)
    assert nob.bias is None and torch.equal(nob.weight, w.float())
    half = torch.nn.Linear(3, 2).to(torch.float16)
    assert sparse.linear_from(half, w).weight.dtype == torch.float16


def test_scatter_entries_replaces_only_the_given_entries():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    vals = torch.tensor([100., 200.], requires_grad=True)
    out = sparse.scatter_entries(base, torch.tensor([1, 10], dtype=torch.int32), vals)
    want = base.clone()
    want[0, 1], want[2, 2] = 100., 200.
    assert torch.equal(out, want) and out.shape == (3, 4)
    (out * torch.arange(12.).reshape(3, 4)).sum().backward()
    assert torch.equal(vals.grad, torch.tensor([1., 10.]))
    assert torch.equal(base, torch.arange(12, dtype=torch.float32).reshape(3, 4))  # base untouched
    d = sparse.dense_from_entries((2, 2), torch.tensor([1]), torch.tensor([0]), torch.tensor([3.]),
                                  dtype=torch.float64)
    assert d.dtype == torch.float64 and torch.equal(d, torch.tensor([[0., 0.], [3., 0.]], dtype=torch.float64))
    d = sparse.dense_from_blocks((2, 4), torch.tensor([0]), torch.tensor([1]), torch.ones(1, 2, 2), 2,
                                 dtype=torch.float64)
    assert d.dtype == torch.float64 and d[:, 2:].sum() == 4 and d[:, :2].sum() == 0


@pytest.mark.parametrize("mode", ["entries", "blocks"])
def test_sparse_delta_on_a_bf16_base_keeps_the_base_dtype(mode):
    """The delta is fp32 while the frozen base may be bf16: the sum is made in the base's dtype."""
    base = _linear(4, 4, seed=3).to(torch.bfloat16)
    if mode == "entries":
        mod = sparse.SparseDeltaLinear(base, rows=[0, 3], cols=[1, 2])
    else:
        mod = sparse.SparseDeltaLinear(base, brow=[1], bcol=[0], block=2)
    assert mod.delta.dtype == torch.float32
    with torch.no_grad():
        mod.delta.fill_(0.5)
    x = torch.randn(3, 4, dtype=torch.bfloat16, requires_grad=True)
    y = mod(x)
    assert y.dtype == torch.bfloat16
    D = torch.zeros(4, 4)
    if mode == "entries":
        D[0, 1] = D[3, 2] = 0.5
    else:
        D[2:4, 0:2] = 0.5
    want = x.detach().float() @ (base.weight.detach().float() + D).t() + base.bias.detach().float()
    torch.testing.assert_close(y.float(), want, rtol=0.05, atol=0.05)
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and mod.delta.grad.dtype == torch.float32
    assert mod.merged_weight().dtype == torch.bfloat16 and mod.to_linear().weight.dtype == torch.bfloat16


def test_index_buffers_are_int32_and_only_the_coordinates_are_saved():
    blk = sparse.SparseDeltaLinear(_linear(6, 4), brow=[1, 0], bcol=[2, 1], block=2)
    assert {blk.brow.dtype, blk.bcol.dtype, blk.ucols.dtype, blk.colpos.dtype} == {torch.int32}
    assert blk.colpos.tolist() == [0, 1] and blk.ucols.tolist() == [1, 2]  # (0, 1) then (1, 2), sorted
    # the helper buffers are rebuilt from brow/bcol, never saved
    assert set(blk.state_dict()) == {"base.weight", "base.bias", "brow", "bcol", "delta"}
    ent = sparse.SparseDeltaLinear(_linear(6, 4), rows=[1], cols=[2])
    assert set(ent.state_dict()) == {"base.weight", "base.bias", "rows", "cols", "delta"}


def test_the_delta_is_fp32_whatever_torch_s_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        base = torch.nn.Linear(4, 4).to(torch.float32)
        assert sparse.SparseDeltaLinear(base, rows=[1], cols=[2]).delta.dtype == torch.float32
        assert sparse.SparseDeltaLinear(base, brow=[1], bcol=[0], block=2).delta.dtype == torch.float32
    finally:
        torch.set_default_dtype(old)


def test_masks_are_boolean():
    m = sparse.entry_mask((2, 3), np.array([1], dtype=np.int32), np.array([2], dtype=np.int32))
    assert m.dtype == bool and m.sum() == 1 and m[1, 2]
    bm = sparse.block_mask((4, 4), np.array([1], dtype=np.int32), np.array([0], dtype=np.int32), 2)
    assert bm.dtype == bool and bm.sum() == 4 and bm[2:, :2].all()


def test_scatter_entries_casts_the_values_to_the_base_dtype():
    out = sparse.scatter_entries(torch.zeros(2, 2), torch.tensor([3]), torch.tensor([2.5], dtype=torch.float64))
    assert out.dtype == torch.float32 and out[1, 1] == 2.5


def test_many_blocks_of_one_all_get_their_gradient():
    # 200 blocks of 1 x 1 (more than three batches of 64 in the backward): each gradient is g[:, r] . x[:, c]
    base = _linear(16, 16, seed=5)
    coords = [(r, c) for r in range(16) for c in range(16)][:200]
    mod = sparse.SparseDeltaLinear(base, brow=[r for r, _ in coords], bcol=[c for _, c in coords], block=1)
    x = torch.randn(3, 16, requires_grad=True)
    g = torch.randn(3, 16)
    (mod(x) * g).sum().backward()
    want = torch.tensor([float(g[:, r] @ x.detach()[:, c]) for r, c in coords])
    torch.testing.assert_close(mod.delta.grad.reshape(-1), want, rtol=1e-4, atol=1e-5)


def test_entry_gradient_in_row_chunks_of_a_very_wide_matrix():
    """d_in = 2^21 makes the backward cut the rows in chunks of 2; only row 2 (the second chunk) holds entries,
    every one of them, and 4 tokens x 2^21 entries exceeds the matrix, so the chunked product is used."""
    d_in, d_out = 1 << 21, 3
    base = torch.nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        base.weight.zero_()
    cols = torch.arange(d_in)
    mod = sparse.SparseDeltaLinear(base, rows=torch.full((d_in,), 2), cols=cols)
    x = torch.randn(4, d_in)
    g = torch.tensor([[0., 0., 1.], [0., 0., -2.], [0., 0., 0.5], [0., 0., 3.]])
    (mod(x) * g).sum().backward()
    want = (g[:, 2:3] * x).sum(0)
    torch.testing.assert_close(mod.delta.grad, want, rtol=1e-4, atol=1e-4)
