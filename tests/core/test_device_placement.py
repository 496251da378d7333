"""Device placement without a GPU: every method's forward, backward and AdamW step on a second, emulated device.

How: torch's ``FakeTensorMode`` (``torch._subclasses.fake_tensor``) runs every op on shapes and devices only, and
raises "Expected all tensors to be on the same device" when a tensor on the CPU meets one on another device (a
0-dim CPU scalar excepted, as on CUDA).  The second device is ``fakegpu``, torch's PrivateUse1 device registered
as a Python backend (``torch.utils.backend_registration._setup_privateuseone_for_python_backend``, experimental),
holding fake tensors only; not ``cuda``: on a CPU-only torch build fake ``cuda`` tensors can be made, but slicing
them (``x[1:2]``, in every model's forward) and autograd need CUDA's device guard, which a CPU-only build lacks
("PyTorch is not linked with support for cuda devices"; autograd aborts the process).  Not ``meta`` either: the
project treats meta weights as config-only models (indices stay on the CPU there), and a plain meta tensor lets
indexing and matmul with CPU tensors pass.  One check is added on top (``StrictIndex``): an index tensor on the
CPU used to index a tensor on the device fails.  On CUDA that works but copies the index to the GPU in every use;
this test calls it a bug.

The model (tiny-bert, tiny-llama) and the adapter are built on the CPU, as ``explorer.engine.train.train`` does, then every
parameter and buffer moves to the device (as ``model.to(device)`` does), and so does the batch.  A tensor that a
method keeps outside its parameters and buffers, or creates on the CPU inside forward, backward or its step hook,
meets the device tensors and fails.

What FakeTensorMode cannot run (values do not exist there) and how the test goes around it, narrowly:
- SMT's block selection (top-n over the scores, ``torch.unique`` and ``int(rows.max())`` when the blocks are
  installed) depends on values: the test runs SMT's warm-up step on the device (the gradient sums must live
  there), then the sparse steps with a fixed selection given to ``apply_method(..., smt_selection=...)`` (the SMT
  inspector's "train with this selection" path), installed on the CPU and moved with the model, as ``train()``
  moves it after ``finish_warmup``.  ``finish_warmup`` itself does not run here; that index buffers follow their
  weight's device when installed on a model already on the device is checked for SpaRTA-style entry modules
  (``test_index_buffers_follow_the_weight``; the block variant calls ``torch.unique``).
- Losses and gradient norms are not turned into Python numbers (``float(loss)`` needs a value).
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.overrides import TorchFunctionMode

from explorer import data as data_mod
from explorer.methods import METHODS, apply_method
from explorer.engine.prepare import param_groups, prepare_base

BACKEND = "fakegpu"


class _Backend:
    """The ``torch.fakegpu`` device module: available only while this file's tests run (``_backend_on``), so
    ``torch.accelerator.is_available()`` stays False for the rest of a test session in the same process."""

    active = False

    def is_available(self) -> bool:
        return _Backend.active

    def device_count(self) -> int:
        return 1 if _Backend.active else 0

    def is_initialized(self) -> bool:
        return True

    def current_device(self) -> int:
        return 0

    def _is_in_bad_fork(self) -> bool:
        return False

    def manual_seed_all(self, seed: int) -> None:
        pass


def _register_backend():
    """PrivateUse1 as a Python backend named ``fakegpu`` (once per process; torch allows one rename)."""
    import torch.utils.backend_registration as br

    name = torch._C._get_privateuse1_backend_name()
    if name == "privateuseone":
        br._setup_privateuseone_for_python_backend(BACKEND, backend_module=_Backend())
    elif name != BACKEND:
        pytest.skip(f"torch's PrivateUse1 device is already registered as '{name}' in this process", allow_module_level=True)


_register_backend()
DEVICE = torch.device(BACKEND, 0)


@pytest.fixture(autouse=True, scope="module")
def _backend_on():
    _Backend.active = True
    yield
    _Backend.active = False
MISMATCH = "Expected all tensors to be on the same device"

# every method at its default knobs, plus the variants with their own device-sensitive code paths
CASES = [(m, {}) for m in METHODS] + [
    ("lora-sp", dict(mask_mode="per-step")),  # redraws its masks after every step (on_step_end)
    ("smt", dict(warmup_mode="gradient-only")),  # warm-up with no optimizer, gradients summed only
    ("tied-lora", dict(preset="vBuA")),  # untied: one A and B per layer
    ("tied-lora", dict(preset="VeRA-like")),  # A and B frozen buffers
    ("sparta", dict(density=0.001)),  # few entries: the gather path of the entry gradient (default: chunked)
]


INDEXING = (torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put, torch.Tensor.index_put_,
            torch.index_put, torch.index_put_)


class StrictIndex(TorchFunctionMode):
    """Indexing a tensor on the device with a CPU index tensor (not a 0-dim scalar) fails (``x[i]``, ``x[i] = v``,
    ``index_put``; ``index_select``, ``gather`` and the rest fail in FakeTensorMode itself).

    Also: ``torch.tensor(data, device=fakegpu)`` is made on the CPU and moved (what it means on CUDA): its C++
    path would otherwise ask the Python backend for real memory."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.tensor, torch.as_tensor) and kwargs and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type == BACKEND:
            kw = dict(kwargs)
            dev = kw.pop("device")
            t = func(*args, **kw)  # on the CPU (fake tensors hold no values: only its shape and dtype go on)
            return torch.empty(t.shape, dtype=t.dtype, device=dev).requires_grad_(bool(kw.get("requires_grad")))
        if func in INDEXING and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu":
            flat, _ = torch.utils._pytree.tree_flatten(args[1:2])  # the index (not a value written)
            for t in flat:
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.device != args[0].device:
                    raise RuntimeError(f"{MISMATCH}, but found at least two devices, {args[0].device} and "
                                       f"{t.device}! (an index tensor)")
        return func(*args, **(kwargs or {}))


def to_device(model, mode):
    """Every parameter and buffer of ``model`` as a fake tensor on DEVICE (shared tensors stay shared)."""
    memo, pmemo = {}, {}

    def conv(t):
        if id(t) not in memo:
            memo[id(t)] = mode.from_tensor(t.detach()).to(DEVICE)
        return memo[id(t)]

    for mod in model.modules():
        for k, p in list(mod._parameters.items()):
            if p is not None:
                if id(p) not in pmemo:
                    pmemo[id(p)] = torch.nn.Parameter(conv(p), requires_grad=p.requires_grad)
                mod._parameters[k] = pmemo[id(p)]
        for k, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[k] = conv(b)
    return model


def _on_device(t):
    return isinstance(t, FakeTensor) and t.device == DEVICE


def train_step(adapter, batch, on_device=None):
    """One step as ``explorer.engine.train.train`` makes it: forward, backward, clip, AdamW, the adapter's hook."""
    _on_device = on_device or globals()["_on_device"]
    params = adapter.trainable_parameters()
    assert params
    opt = torch.optim.AdamW(param_groups(params, 0.01, adapter, 1e-3), lr=1e-3)
    loss = adapter.model(**batch).loss
    assert _on_device(loss)
    loss.backward()
    for n, p in params:
        assert p.grad is not None and _on_device(p.grad), n
    torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
    opt.step()
    adapter.on_step_end(opt)
    opt.zero_grad(set_to_none=True)
    for n, p in params:
        assert _on_device(p), n
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0:
                assert _on_device(v), k
    return loss


def _fixed_selection(adapter):
    """A stand-in for SMT's top-n choice (it needs values): the first n blocks, row-major over the targets."""
    out, left = {}, adapter.n_blocks
    for t in adapter.targets:
        C = t.d_in // adapter.block
        take = min(left, (t.d_out // adapter.block) * C)
        out[t.name] = ([i // C for i in range(take)], [i % C for i in range(take)])
        left -= take
    return out


@pytest.fixture(scope="module")
def setups():
    from explorer.models import load_model

    out = {}
    for name in ("tiny-bert", "tiny-llama"):
        loaded = load_model(name)
        kind = loaded.info.kind
        task = data_mod.load_task(data_mod.default_task_for(kind), kind)
        batch = next(data_mod.iter_batches(task, loaded.tokenizer, "train", batch_size=4, seed=0, max_batches=1,
                                           model_kind=kind, max_len=32))
        out[name] = (loaded, task, batch)
    return out


def run_on_device(loaded, task, batch, method, knobs, smt_selection=None):
    torch.manual_seed(0)
    base = prepare_base(loaded, task, 0)  # on the CPU, as in train()
    adapter = apply_method(base, method, n_base=loaded.info.n_params, smt_selection=smt_selection, **knobs)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, StrictIndex():
        to_device(adapter.model, mode)
        b = {k: mode.from_tensor(v).to(DEVICE) for k, v in batch.items()}
        adapter.model.train()
        if not getattr(adapter, "needs_warmup", False):
            return train_step(adapter, b)
        # SMT: one warm-up step on the device (train() order: begin_warmup after the model moved)
        wparams = adapter.begin_warmup()
        wopt = torch.optim.AdamW(wparams, lr=1e-4) if wparams else None
        loss = adapter.model(**b).loss
        loss.backward()
        adapter.accumulate()
        for g in adapter.grad_sums.values():
            assert _on_device(g)
        if wopt is not None:
            wopt.step()
            wopt.zero_grad(set_to_none=True)
    # the selection itself needs values; the sparse steps run with a given selection (installed on the CPU and
    # moved, as train() moves the model after finish_warmup)
    return run_on_device(loaded, task, batch, method, knobs, smt_selection=_fixed_selection(adapter))


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method,knobs", CASES, ids=[f"{m}-{'-'.join(map(str, k.values())) or 'default'}"
                                                     for m, k in CASES])
def test_step_on_a_second_device(setups, model, method, knobs):
    loaded, task, batch = setups[model]
    loss = run_on_device(loaded, task, batch, method, knobs)
    assert loss.shape == ()


def test_a_cpu_tensor_meeting_the_device_fails():
    """The emulation itself: mixes that fail on CUDA fail here (and a 0-dim CPU scalar passes, as on CUDA)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, StrictIndex():
        x = torch.ones(4, 3, device=DEVICE)
        with pytest.raises(Exception, match=MISMATCH):
            x @ torch.ones(3, 2)
        with pytest.raises(Exception, match=MISMATCH):
            torch.nn.functional.linear(x, torch.ones(2, 3))
        with pytest.raises(Exception, match=MISMATCH):
            x[torch.tensor([0, 1])]
        with pytest.raises(Exception, match=MISMATCH):
            x.index_select(0, torch.tensor([0, 1]))
        y = torch.zeros(4, 3, device=DEVICE)
        with pytest.raises(Exception, match=MISMATCH):
            y[torch.tensor([0, 1])] = 1.0
        with pytest.raises(Exception, match=MISMATCH):
            y.index_put((torch.tensor([0, 1]),), torch.ones(2, 3, device=DEVICE))
        assert (x * torch.tensor(2.0)).device == DEVICE  # a CPU scalar is fine
        assert x[torch.tensor([0, 1], device=DEVICE)].device == DEVICE
        assert x[1:3, :2].device == DEVICE


def test_a_planted_cpu_index_fails(setups, monkeypatch):
    """A method bug of the kind this test exists for: SpaRTA's entry indices made on the CPU in every forward."""
    import explorer.sparse as sp

    real = sp.SparseDeltaLinear.forward

    def planted(self, x):
        if not self.block:
            return sp._EntryDeltaLinear.apply(x, self.base.weight, self.base.bias, self.rows.cpu(), self.cols.cpu(),
                                              self.delta)
        return real(self, x)

    loaded, task, batch = setups["tiny-llama"]
    run_on_device(loaded, task, batch, "sparta", {})  # passes as shipped
    monkeypatch.setattr(sp.SparseDeltaLinear, "forward", planted)
    with pytest.raises(Exception, match=MISMATCH):
        run_on_device(loaded, task, batch, "sparta", {})


def test_index_buffers_follow_the_weight():
    """A sparse module built around a weight already on the device keeps its indices there (SMT installs its
    blocks after the warm-up, when the model may already be on the GPU; cli_smt and the Memory calculator's
    measurements do so)."""
    from explorer.sparse import SparseDeltaLinear

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, StrictIndex():
        lin = torch.nn.Linear(8, 6, device=DEVICE)
        mod = SparseDeltaLinear(lin, rows=[0, 5, 2], cols=[7, 1, 3])
        for name in ("rows", "cols"):
            assert getattr(mod, name).device == DEVICE and getattr(mod, name).dtype == torch.int32
        assert mod.delta.device == DEVICE
        y = mod(torch.ones(2, 8, device=DEVICE))
        y.sum().backward()
        assert _on_device(mod.delta.grad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("method,knobs", CASES, ids=[f"{m}-{'-'.join(map(str, k.values())) or 'default'}"
                                                     for m, k in CASES])
def test_step_on_cuda(setups, model, method, knobs):
    """The same step on a real GPU (SMT with a given selection)."""
    loaded, task, batch = setups[model]
    torch.manual_seed(0)
    base = prepare_base(loaded, task, 0)
    sel = None
    if method == "smt":
        sel = _fixed_selection(apply_method(prepare_base(loaded, task, 0), method, n_base=loaded.info.n_params,
                                            **knobs))
    adapter = apply_method(base, method, n_base=loaded.info.n_params, smt_selection=sel, **knobs)
    adapter.model.to("cuda").train()
    b = {k: v.to("cuda") for k, v in batch.items()}
    loss = train_step(adapter, b, on_device=lambda t: t.device.type == "cuda")
    assert torch.isfinite(loss)
