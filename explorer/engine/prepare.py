"""Getting a fine-tune ready: the device, the model and task, the head, the optimizer's groups and the
learning-rate schedule (no Streamlit)."""

from __future__ import annotations

import torch
from torch import nn

from explorer import data as data_mod
from explorer.engine.config import TrainConfig
from explorer.targets import init_head  # re-exported: the head every run and warm-up draws from its seed


def pick_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        from explorer.errors import KnobError

        raise KnobError(f"Unknown device '{name[:30]}': use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from explorer.errors import KnobError

        raise KnobError("CUDA was asked for but no CUDA device is available here; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        from explorer.errors import KnobError

        raise KnobError("MPS was asked for but is not available here; use --device cpu or auto")
    return dev


def dist_info():
    """(rank, world_size) of an initialised torch.distributed group, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # pragma: no cover
        pass
    return 0, 1


def prepare_base(loaded, task, seed: int) -> nn.Module:
    """A private copy of the cached base model, ready for ``apply_method`` (the cache is never touched)."""
    from explorer.models import fresh_copy

    m = fresh_copy(loaded.model)
    if loaded.info.kind == "seq-cls":
        init_head(m, max(2, task.num_labels), seed)
    return m


def param_groups(params, wd: float, adapter=None, lr: float | None = None):
    """AdamW groups: the adapter says which tensors take weight decay (default: matrices yes, vectors no) and
    which train at a multiple of the run's rate ``lr`` (``Adapter.lr_scale``; default 1).  The groups at the
    run's own rate come first, so ``param_groups[0]["lr"]`` is the run's rate."""
    rule = adapter.takes_weight_decay if adapter is not None else (lambda n, p: p.dim() >= 2)
    scale = adapter.lr_scale if adapter is not None else (lambda n, p: 1.0)
    keyed: dict[tuple[float, bool], list] = {}
    for n, p in params:
        keyed.setdefault((float(scale(n, p)), bool(rule(n, p))), []).append(p)
    groups = []
    for (s, decay), ps in sorted(keyed.items(), key=lambda kv: (kv[0][0] != 1.0, not kv[0][1])):
        g = {"params": ps, "weight_decay": wd if decay else 0.0}
        if s != 1.0:
            if lr is None:
                raise ValueError("param_groups: a scaled learning rate needs the run's rate (lr)")
            g["lr"] = lr * s
        groups.append(g)
    return groups


def schedule(total: int, warm: int):
    def f(i):  # i = number of scheduler steps taken so far (0-based)
        if warm > 0 and i < warm:
            return (i + 1) / warm
        return max(0.0, (total - i) / max(1, total - warm))
    return f


def load_for(cfg: TrainConfig, loaded=None):
    """(loaded model, task) for a config; the model loads with the task's number of labels."""
    from explorer.models import REGISTRY, load_model

    if loaded is None:
        kind = REGISTRY[cfg.model]["kind"] if cfg.model in REGISTRY else None
        if kind is not None:
            task = data_mod.load_task(cfg.task or data_mod.default_task_for(kind), kind, cfg.text_col,
                                      cfg.label_col, cfg.prompt_col, cfg.answer_col, encoding=cfg.encoding)
            loaded = load_model(cfg.model, num_labels=max(2, task.num_labels))
            return loaded, task
        loaded = load_model(cfg.model)
    kind = loaded.info.kind
    task = data_mod.load_task(cfg.task or data_mod.default_task_for(kind), kind, cfg.text_col, cfg.label_col,
                              cfg.prompt_col, cfg.answer_col, encoding=cfg.encoding)
    return loaded, task






def enable_checkpointing(model: nn.Module) -> None:
    """Gradient checkpointing of every transformer layer of the Hugging Face model inside ``model``.

    Reentrant checkpointing (``use_reentrant=True``): each layer saves only its inputs in the forward and is
    rebuilt in the backward pass, under the same autocast and random state.  A reentrant layer passes gradients
    to the parameters inside it only when one of its inputs requires a gradient, so the input embeddings'
    output is made to require one (``enable_input_require_grads``): the adapters inside every layer get the
    same gradients as without checkpointing.  Reentrant rather than non-reentrant: its saved inputs and the
    rebuilt layers go through ``saved_tensors_hooks``, so the byte account sees them."""
    from explorer.errors import KnobError

    hf = next((m for m in model.modules() if getattr(m, "supports_gradient_checkpointing", False)), None)
    if hf is None:
        raise KnobError(f"gradient checkpointing: {type(model).__name__} has no Hugging Face layers to checkpoint")
    kw = {"use_reentrant": True}
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:  # pragma: no cover - transformers < 5
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    hf.enable_input_require_grads()


__all__ = ["pick_device", "dist_info", "init_head", "prepare_base", "param_groups", "schedule", "load_for",
           "enable_checkpointing"]
