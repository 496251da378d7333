"""Hand-built toy models and builders for the method tests (``tests/core/test_methods_<module>.py``): a few
nn.Linear layers named like a LLaMA block (so that ``find_targets`` finds them) with shapes that all differ, their
parameter counts by hand, and one builder per method.  Never a test."""

from __future__ import annotations

import torch
from torch import nn

from explorer.methods import apply_method

# hand-built shapes (d_out, d_in) per layer: every one different, so a swapped d_out / d_in shows
Q, V, UP, DOWN = (4, 6), (2, 6), (10, 6), (6, 10)


N_LABELS = 3


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(Q[1], Q[0])
        self.v_proj = nn.Linear(V[1], V[0])


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up_proj = nn.Linear(UP[1], UP[0])
        self.down_proj = nn.Linear(DOWN[1], DOWN[0])


class _Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = _Attn()
        self.mlp = _Mlp()


class _Body(nn.Module):
    def __init__(self, n_layers):
        super().__init__()
        self.layers = nn.ModuleList([_Layer() for _ in range(n_layers)])


class TinyNet(nn.Module):
    """model.layers.<i>.self_attn.{q,v}_proj and model.layers.<i>.mlp.{up,down}_proj, plus (head=True) a
    classification head ``score`` (6 -> 3) that every method trains fully."""

    def __init__(self, n_layers=2, head=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.model = _Body(n_layers)
        if head:
            self.score = nn.Linear(6, N_LABELS)

    def forward(self, x):
        out = []
        for layer in self.model.layers:
            a = layer.self_attn
            out += [a.q_proj(x), a.v_proj(x), layer.mlp.down_proj(layer.mlp.up_proj(x))]
        if hasattr(self, "score"):
            out.append(self.score(x))
        return torch.cat(out, dim=-1)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# by hand: weights + biases of one layer (q 4x6+4, v 2x6+2, up 10x6+10, down 6x10+6) and of the head (6x3+3)
LAYER_PARAMS = 28 + 14 + 70 + 66


HEAD_PARAMS = 21


def _lora_layer(ad, i=0):
    return ad.peft_model.base_model.model.model.layers[i].self_attn.q_proj


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


VERA_ALL = ["q", "v", "up", "down"]


def _vera(n_layers=2, head=True, **knobs):
    knobs = dict(dict(rank=4, targets=VERA_ALL), **knobs)
    return apply_method(TinyNet(n_layers, head=head), "vera", **knobs)


TL_ALL = ["q", "v", "up", "down"]


SW_ALL = ("train_A", "train_B", "train_u", "train_v")


def _tied(net=None, **knobs):
    knobs = dict(dict(rank=2, alpha=4.0, targets=TL_ALL, preset="TL6"), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "tied-lora", **knobs)


def _layouts(ad):
    return [(lay.target.split("layers.")[1], lay.trainable) for lay in ad.layouts()]


def _sp(net=None, **knobs):
    knobs = dict(dict(rank=2, alpha=6.0, targets=["q", "up"], freeze=0.5), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "lora-sp", **knobs)


def _flat_mask(idx, n):
    m = torch.zeros(n, dtype=torch.bool)
    m[idx.long()] = True
    return m


N_BASE2 = 2 * LAYER_PARAMS + HEAD_PARAMS  # 377, TinyNet(2)


def _sparta(net=None, **knobs):
    knobs = dict(dict(targets=["q", "v"]), **knobs)
    return apply_method(net if net is not None else TinyNet(2), "sparta", **knobs)


def _entries(mod):
    return sorted(zip(mod.rows.tolist(), mod.cols.tolist()))


def _spec(**kw):
    from explorer.memory.specs import ModelSpec

    # q 8x8, k 4x8, v 4x8 (grouped-query: 1 kv head of 4), o 8x8, gate/up 12x8, down 8x12; head 8 x 3 (no bias)
    return ModelSpec(**dict(dict(name="hand", family="llama", task="seq-cls", n_layers=2, hidden=8, heads=2,
                                 kv_heads=1, intermediate=12, vocab=20, num_labels=3), **kw))


def _plan(method, spec=None, **knobs):
    from explorer.methods import get_method, validate_knobs

    info = get_method(method)
    values = validate_knobs(info.knobs, knobs, method)
    plan = info.memory_plan(spec or _spec(), values)
    assert plan.knobs == values  # the plan says which knobs it was made for (the Memory page's rows)
    return plan


def _record(rule, d_in=6, d_out=4, needs_grad_in=True, autocast=False):
    from explorer.memory.plan import LinearCall

    saved = {}
    call = LinearCall(save=lambda k, b, label: saved.__setitem__(k, (b, label)), key_in="x", out_key="L0.q",
                      d_in=d_in, d_out=d_out, needs_grad_in=needs_grad_in, tokens=10, e=2, mask_e=1,
                      autocast=autocast)
    out = rule(call)
    return out, {k: b for k, (b, _) in saved.items()}, {k: label for k, (_, label) in saved.items()}


HEAD_SPEC = 8 * 3


def partial_rule(fn, **kw):
    from functools import partial

    return partial(fn, **kw)


def _kn(**kw):
    from explorer.methods.base import Knob

    return Knob(**dict(dict(name="n", kind="int", default=3), **kw))


Q_NAME, V_NAME = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"


def _smt(net=None, n_base=None, **knobs):
    knobs = dict(dict(targets=["q", "v"], block_size=2, blocks=3, warmup_mode="gradient-only", warmup_steps=2),
                 **knobs)
    return apply_method(net if net is not None else TinyNet(1), "smt", n_base=n_base, **knobs)


def _planted():
    # q (4 x 6) in 2 x 2 blocks: (1, 2) = 5, (0, 0) = 3 (a cancelling block (1, 0) scores 0 under |mean|);
    # v (2 x 6): (0, 1) = 4
    gq, gv = torch.zeros(4, 6), torch.zeros(2, 6)
    gq[2:4, 4:6], gq[0:2, 0:2] = 5.0, 3.0
    gq[2:4, 0:2] = torch.tensor([[9.0, -9.0], [9.0, -9.0]])
    gv[0:2, 2:4] = 4.0
    return gq, gv


def _planted_loss(gq, gv):
    def loss(model, batch):
        body = model.model.layers[0].self_attn
        return (body.q_proj.weight * gq).sum() + (body.v_proj.weight * gv).sum() + 0 * batch["x"].sum()
    return loss


def _one_param_net():
    net = nn.Module()
    net.model = _Body(1)
    layer = net.model.layers[0]
    layer.self_attn.q_proj = nn.Linear(1, 1, bias=False)  # the model's only parameter
    del layer.self_attn.v_proj, layer.mlp
    assert n_params(net) == 1
    return net


def _smt_b4(**knobs):
    # q 8 x 8 and v 4 x 8 in 4 x 4 blocks: q a 2 x 2 grid, v 1 x 2; 6 blocks (b = 4: b² = 16, not 2 b = 8)
    net = TinyNet(1)
    net.model.layers[0].self_attn.q_proj = nn.Linear(8, 8)
    net.model.layers[0].self_attn.v_proj = nn.Linear(8, 4)
    return _smt(net, block_size=4, **knobs)
