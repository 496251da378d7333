"""``methods`` and ``inspect`` commands."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("methods", help="list the methods and their knobs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_methods)

    from explorer.methods import METHODS
    from explorer.model_configs import config_model_names
    from explorer.models import model_names

    p = sub.add_parser("inspect", help="apply a method to a model and report what it makes trainable")
    p.add_argument("--model", default="minilm", help=f"registry name ({', '.join(model_names())}), a bundled "
                   f"config-only model ({', '.join(config_model_names())}: built on the meta device), a local folder "
                   "(a config.json alone is enough) or a hub id")

    p.add_argument("--method", default="lora", help=", ".join(METHODS))
    p.add_argument("--knob", "-k", action="append", default=[], metavar="NAME=VALUE",
                   help="a method knob, repeatable (e.g. -k rank=4 -k targets=q,v)")
    p.add_argument("--task", default=None, help="task for SMT's warm-up batches (default: the model's built-in task)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_inspect)
    # knobs as plain flags too: --rank 4 --targets q,v
    return p


def parse_knobs(pairs, extra=None) -> dict:
    from explorer.methods.base import KnobError

    out = {}
    for item in pairs:
        if "=" not in item:
            raise KnobError(f"knob '{item[:40]}' must look like NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    out.update(extra or {})
    return out


def run_methods(args) -> int:
    from explorer.methods import METHODS

    data = [m.to_dict() for m in METHODS.values()]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for m in data:
        print(f"{m['name']:10s} {m['label']} ({m['paper']}): {m['description']}")
        print(f"{'':10s} trainable: {m['formula']}")
        for k in m["knobs"]:
            rng = f" [{k['min']}..{k['max']}]" if k["min"] is not None else ""
            ch = f" {{{', '.join(map(str, k['choices']))}}}" if k["choices"] else ""
            print(f"{'':12s}{k['name']}={k['default']}{rng}{ch}  {k['help']}")
    return 0


def inspect(model: str, method: str, knobs: dict, task=None) -> dict:
    from explorer.methods import apply_method
    from explorer.models import fresh_copy, load_model

    loaded = load_model(model, meta_ok=True)
    m = fresh_copy(loaded.model)
    adapter = apply_method(m, method, n_base=loaded.info.n_params, **knobs)
    if adapter.needs_warmup and loaded.info.meta:
        adapter.notes.append(adapter.meta_note())  # SMT: its budget and block grid, not a selection
    elif adapter.needs_warmup:
        import torch

        from explorer.engine.warmup import run_warmup, task_batches

        if loaded.info.kind == "seq-cls":  # the warm-up's new head comes from the method's seed, as a run's does
            from explorer.engine.prepare import init_head

            init_head(adapter.model, int(getattr(adapter.model.config, "num_labels", 2) or 2),
                      int(adapter.knobs.get("seed", 0)))
        steps = adapter.knobs["warmup_steps"]
        batches = task_batches(loaded, task, n=min(steps, 8))
        with torch.random.fork_rng(devices=[]):  # the warm-up's dropout from the seed too, as a run's and the
            torch.manual_seed(int(adapter.knobs.get("seed", 0)))  # inspector's are, whatever the process drew before
            run_warmup(adapter, batches, max_steps=min(steps, len(batches)))
        adapter.notes.append(f"inspect ran a short warm-up of {min(steps, len(batches))} batches to select blocks.")
    s = adapter.summary()
    s["model"] = dict(name=loaded.info.name, label=loaded.info.label, kind=loaded.info.kind,
                      pretrained=loaded.info.pretrained, source=loaded.info.source, config_only=loaded.info.meta)
    if loaded.info.meta:
        s["notes"] = list(loaded.info.notes) + s["notes"]
    return s


def run_inspect(args) -> int:
    res = inspect(args.model, args.method, parse_knobs(args.knob), task=args.task)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
        return 0
    print(f"model   {res['model']['label']}")
    print(f"method  {res['method']}  knobs {res['knobs']}")
    print(f"total parameters      {res['total_params']:,}")
    print(f"trainable parameters  {res['trainable_params']:,} ({res['trainable_fraction']:.4%})")
    for n in res["notes"]:
        print(f"note    {n}")
    print(f"{'target':50s} {'shape':>12s} {'trainable':>10s} {'can change':>11s}")
    for t in res["targets"]:
        print(f"{t['target']:50s} {t['shape'][0]:>5d}x{t['shape'][1]:<6d} {t['trainable']:>10,d} {t['changeable']:>11,d}")
    return 0
