"""``train`` command: one short fine-tune, headless.

    python -m explorer train --model tiny-bert --task size-compare --method lora -k rank=4 \\
        --steps 100 --seed 0 --out runs/lora [--merged] [--json]
    python -m explorer train --task reviews.csv --encoding cp1252    # a data file (encoding: auto by default)

Writes DIR/metrics.json, DIR/metrics.csv, DIR/adapter/ and with --merged DIR/merged/.
A progress bar goes to stderr.  Under ``torchrun --nproc_per_node=N`` (or ``accelerate
launch``) it runs data parallel: torch.distributed starts from the environment (gloo on
CPU, nccl on CUDA), every process takes its own slice of each global batch, the
gradients of the trainable tensors are averaged across processes, and only rank 0 prints
and writes files.  With EXPLORER_SAVE_ALL_RANKS=1 every rank also saves its adapter to
DIR/rank{r}/adapter (to check that the processes end identical).
"""

from __future__ import annotations

import json
import os
import sys
import time


def add_parser(sub):
    p = sub.add_parser("train", help="run a short fine-tune and write metrics, the adapter and (--merged) the "
                                     "merged model")
    from explorer.models import model_names

    p.add_argument("--model", default="minilm", help=f"{', '.join(model_names())}, a folder or hub id")
    p.add_argument("--task", default="", help="built-in task (size-compare, bbc-news, word-category), a CSV/JSON/"
                   "JSONL file, or a hub data set; default: the model's built-in task")
    from explorer.methods import METHODS

    p.add_argument("--method", default="lora", help=", ".join(METHODS))
    p.add_argument("--knob", "-k", action="append", default=[], metavar="NAME=VALUE",
                   help="a method knob, repeatable (e.g. -k rank=4 -k targets=q,v)")
    p.add_argument("--steps", type=int, default=150, help="optimizer steps (SMT's warm-up counts inside them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>-<method>-<time>)")
    p.add_argument("--merged", action="store_true", help="also write a merged model folder (from_pretrained)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per method)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size per process")
    p.add_argument("--max-len", type=int, default=64, help="max tokens per example")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.06, help="fraction of steps of linear lr warm-up")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=25, help="evaluate every K steps (0: at the end only)")
    p.add_argument("--eval-examples", type=int, default=200, help="held-out examples per evaluation (0: all)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--text-col", default=None)
    p.add_argument("--label-col", default=None)
    p.add_argument("--prompt-col", default=None)
    p.add_argument("--answer-col", default=None)
    p.add_argument("--encoding", default="auto",
                   help="text encoding of a --task file: auto (detects UTF-8, UTF-8/UTF-16 with BOM, UTF-16, "
                        "else Windows-1252/Latin-1; the output says which), utf-8, utf-8-sig, utf-16, cp1252, "
                        "latin-1 or another codec name")
    p.add_argument("--executor", default="thread", choices=("thread", "process", "ray"),
                   help="where the run executes: thread (this process, default), process (a spawned worker "
                        "process) or ray (a Ray cluster: PEFT_EXPLORER_RAY_ADDRESS, else a local Ray)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-step byte account")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fp32; bf16 autocast (CPU and CUDA); fp16 autocast with a gradient scaler (CUDA only)")
    p.add_argument("--checkpointing", action="store_true",
                   help="gradient checkpointing: each layer keeps its input, rebuilt in the backward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)
    return p


def _init_distributed(device_name: str):
    """Initialise torch.distributed from torchrun's environment; returns (rank, world, device_name)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, device_name
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device_name


class Progress:
    """The run's progress on stderr: a ``tqdm`` bar over the steps, with the phase, the loss and the latest
    held-out accuracy beside it; ``bar(record)`` after every step record, ``bar.close()`` at the end."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = max(1, int(total)), stream or sys.stderr
        self.acc = None
        self.bar = None  # drawn at the first step record: a run refused before it starts prints its one line only

    def _open(self):
        from tqdm import tqdm

        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        return tqdm(total=self.total, file=self.stream, unit="step", dynamic_ncols=True, leave=True,
                    mininterval=0.2 if tty else 2.0)

    def __call__(self, rec: dict):
        if self.bar is None:
            self.bar = self._open()
        if rec.get("eval_accuracy") is not None:
            self.acc = rec["eval_accuracy"]
        step = min(int(rec.get("step", 0)), self.bar.total)
        post = {}
        if rec.get("phase"):
            post["phase"] = rec["phase"]
        if rec.get("loss") is not None:
            post["loss"] = f"{rec['loss']:.4f}"
        if self.acc is not None:
            post["acc"] = f"{self.acc:.3f}"
        self.bar.set_postfix(post, refresh=False)
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        elif post:
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(args) -> int:
    from explorer.engine import export
    from explorer.cli.core import parse_knobs
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    rank, world, device = _init_distributed(args.device)
    cfg = TrainConfig(model=args.model, task=args.task or "", method=args.method, knobs=parse_knobs(args.knob),
                      steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
                      max_len=args.max_len, warmup_ratio=args.warmup_ratio, grad_clip=args.grad_clip,
                      eval_every=args.eval_every, eval_examples=(args.eval_examples or None), seed=args.seed,
                      device=device, measure_memory=not args.no_memory, precision=args.precision,
                      checkpointing=bool(args.checkpointing), text_col=args.text_col,
                      label_col=args.label_col, prompt_col=args.prompt_col, answer_col=args.answer_col,
                      encoding=None if str(args.encoding or "auto").lower() == "auto" else args.encoding)
    out = args.out or os.path.join("runs", f"{args.model.replace('/', '_')}-{args.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    bar = Progress(cfg.steps) if rank == 0 and not args.quiet else None
    executor = getattr(args, "executor", "thread") or "thread"
    if executor != "thread" and (world > 1 or args.merged):
        print(f"error: --executor {executor} runs one process elsewhere: "
              + ("--merged needs the model in this process" if args.merged else "not under torchrun")
              + "; use --executor thread", file=sys.stderr)
        return 2
    try:
        res = train(cfg, on_step=bar) if executor == "thread" else _run_elsewhere(executor, cfg, bar)
    finally:
        if bar:
            bar.close()
    status = res.summary["status"]
    if status == "failed":
        if rank == 0:
            print(f"error: {res.summary['message']}", file=sys.stderr)
        _shutdown(world)
        return 2
    res.summary["world_size"] = world
    paths = {}
    if rank == 0:
        paths = export.save_run(res, out, merged=args.merged)
        if getattr(res, "adapter_zip_bytes", None):  # the adapter was saved where the run executed
            paths["adapter"] = _unzip_adapter(res.adapter_zip_bytes, out)
    if world > 1 and os.environ.get("EXPLORER_SAVE_ALL_RANKS"):
        export.save_adapter(res, os.path.join(out, f"rank{rank}", "adapter"))
    if rank == 0:
        s = res.summary
        data_notes = list(res.task.notes) if res.task is not None and getattr(res.task, "path", "") else []
        if args.json:
            print(json.dumps(export._jsonable(dict(summary=s, files=paths, data_notes=data_notes)), indent=2))
        else:
            for n in data_notes:
                print(f"data: {s['task']}: {n}")
            acc = s.get("final_accuracy")
            peak = s.get("peak_memory_bytes") or s.get("peak_cuda_bytes") or s.get("peak_rss_bytes")
            print(f"{s['status']}: {s['method']} on {s['model']} / {s['task']}, {s['steps_done']} steps, "
                  f"device {s['device']}" + (f" x {world} processes" if world > 1 else ""))
            print(f"accuracy  base {s.get('base_accuracy'):.3f} -> final "
                  + (f"{acc:.3f}" if acc is not None else "n/a")
                  + (f" (best {s['best_accuracy']:.3f})" if s.get("best_accuracy") is not None else ""))
            print(f"trainable {s['trainable_params']:,} of {s['total_params']:,} parameters; "
                  f"peak memory {peak / 2**20:,.1f} MiB; wall {s['wall_time_s']:.1f} s" if peak else
                  f"trainable {s['trainable_params']:,} of {s['total_params']:,}; wall {s['wall_time_s']:.1f} s")
            if s.get("message"):
                print(f"note: {s['message']}")
            print(f"wrote {out}")
    _shutdown(world)
    if status == "nan":
        if rank == 0 and args.json:
            pass
        elif rank == 0:
            print(f"error: {res.summary['message']}", file=sys.stderr)
        return 3
    return 130 if status == "stopped" else 0


def _run_elsewhere(kind: str, cfg, bar):
    """Run ``cfg`` in a worker process or on Ray; the progress bar follows the streamed records."""
    import threading

    from explorer.engine.state import RunState
    from explorer.errors import user_message
    from explorer.workshop.workers import ProcessExecutor

    if kind == "ray":
        from explorer.workshop.ray_executor import RayExecutor

        ex = RayExecutor()
    else:
        ex = ProcessExecutor(workers=1, niceness=0)
    state, box = RunState(cfg), {}

    def go():
        try:
            box["res"] = ex.run_train(cfg, state)
        except BaseException as e:  # noqa: BLE001 - reported below as the run's status
            box["err"] = e

    th = threading.Thread(target=go, daemon=True)
    th.start()
    shown = 0
    try:
        while th.is_alive():
            th.join(0.2)
            recs = state.records
            for r in recs[shown:]:
                if bar:
                    bar(r)
            shown = len(recs)
    except KeyboardInterrupt:
        state.stop()
        th.join()
    finally:
        ex.shutdown()
    if "res" in box:
        return box["res"]
    from explorer.engine.state import RunResult

    msg = state.message or user_message(box.get("err") or RuntimeError("the run ended without a result"))
    return RunResult(records=list(state.records), summary=dict(status="failed", message=msg), config=cfg)


def _unzip_adapter(data: bytes, out) -> str:
    import io
    import zipfile
    from pathlib import Path

    out = Path(out)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            target = (out / name).resolve()
            if out.resolve() not in target.parents:  # only the adapter's own files, never a path out of DIR
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
    return str(out / "adapter")


def _shutdown(world):
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
