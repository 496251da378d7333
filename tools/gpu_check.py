"""A prepared GPU check: the CUDA paths of the project, run once on a real GPU, in under 5 minutes.

    python -m benchmarks.gpu_check                      # on a machine with CUDA (an H200 in practice)
    python -m benchmarks.gpu_check --device cpu --quick # dry run on the CPU (tiny-llama, a few steps)

(``benchmarks/gpu_check.py`` is the entry point the README and the device instructions name; the code is here,
in ``tools/``, so that its test imports no benchmark.)

Parts (each timed; a part that cannot run is listed under ``skipped`` with the reason):

a. ``finetune``: a 100-step LoRA fine-tune of smollm2-135m on CUDA through ``explorer.engine.train.train``
   (``device="cuda"``), plus what ``device="auto"`` resolves to.
b. ``methods``: 30 steps of every method (``explorer.methods.METHODS``, default knobs) on smollm2-135m, side by
   side per method: the CUDA peak (``torch.cuda.max_memory_allocated`` after a reset at each step's forward,
   as recorded by the training loop: ``cuda_peak_bytes``), the byte account (``total_bytes``: weights +
   gradients + optimizer state + saved activations) and the analytic model (``explorer.memory.analytic.estimate``, fp32,
   the padded length of the peak step's batch, ``device="cuda"``), with their ratios.  SMT's warm-up steps
   (full fine-tuning inside the budget) are reported apart from its sparse steps.
c. ``queue``: the server's run queue (``explorer.workshop.jobs.default_queue()``) runs a fine-tune with
   ``device="cuda"``; its memory check reads ``free_bytes("cuda")`` (checked against ``torch.cuda.mem_get_info``),
   and a run that asks for more than the free GPU memory is refused at submit.
d. ``torchrun``: ``torchrun --nproc_per_node=2 -m explorer train ... --device cuda`` (nccl), only when 2 CUDA
   devices exist; both ranks save their adapters and the check compares them.

Writes ``benchmarks/results/gpu_check.json`` and ``.md`` (versions, GPU name, every figure, what was skipped and
why).  Without CUDA (and without ``--device cpu``) it prints one line and writes nothing.  ``--device cpu --quick``
exercises the same code on the CPU (no CUDA figures) and writes to a temporary folder unless ``--out`` is
given: a dry run is not a GPU result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MIB = 2 ** 20


def _ratio(a, b):
    return (float(a) / float(b)) if (a is not None and b) else None


def _versions() -> dict:
    import torch

    out = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=(torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None),
               platform=platform.platform())
    for mod in ("transformers", "peft", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


def _gpus() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(dict(index=i, name=p.name, total_memory_bytes=int(p.total_memory),
                        capability=f"{p.major}.{p.minor}", multiprocessors=int(p.multi_processor_count)))
    return out


def _widths(loaded, task, cfg) -> list[int]:
    """The padded width of every training batch of a run (same seed and order as ``train``)."""
    from explorer import data as data_mod

    return [int(b["input_ids"].shape[1]) for b in data_mod.iter_batches(
        task, loaded.tokenizer, "train", batch_size=cfg.batch_size, seed=cfg.seed, max_batches=cfg.steps,
        model_kind=loaded.info.kind, max_len=cfg.max_len)]


def _phase_peaks(records, phase):
    tr = [r for r in records if r.get("phase") == phase and r.get("step_time_s") is not None]

    def peak(key):
        vals = [r[key] for r in tr if r.get(key) is not None]
        return max(vals) if vals else None

    return tr, peak("total_bytes"), peak("cuda_peak_bytes")


def method_row(res, cfg, loaded, spec, widths, device: str) -> dict:
    """One method's figures: byte account, CUDA peak and the analytic model, steady (train) phase."""
    from explorer.memory.analytic import estimate

    s = res.summary
    tr, acct_peak, cuda_peak = _phase_peaks(res.records, "train")
    wu, acct_warm, cuda_warm = _phase_peaks(res.records, "warmup")
    peak_rec = max(tr, key=lambda r: r.get("total_bytes") or 0) if tr else None
    width = widths[peak_rec["step"] - 1] if peak_rec and 0 < peak_rec["step"] <= len(widths) else cfg.max_len
    try:
        est = estimate(spec, cfg.method, dict(cfg.knobs), precision="fp32", batch=cfg.batch_size,
                              seq_len=width, device="cuda" if device.startswith("cuda") else "cpu")
        analytic = float(est["total_bytes"])
        analytic_err = None
    except Exception as e:  # noqa: BLE001 - stated in the row
        analytic, analytic_err = None, str(e)
    steps = [r["step_time_s"] for r in tr[1:]] or [r["step_time_s"] for r in tr]
    return dict(
        method=cfg.method, status=s.get("status"), message=s.get("message"), device=s.get("device"),
        steps_done=s.get("steps_done"), train_steps=len(tr), warmup_steps=len(wu),
        trainable_params=s.get("trainable_params"), final_loss=s.get("final_loss"),
        final_accuracy=s.get("final_accuracy"),
        account_peak_bytes=acct_peak, cuda_peak_bytes=cuda_peak,
        weights_bytes=(peak_rec or {}).get("weights_bytes"), analytic_bytes=analytic,
        analytic_error=analytic_err, analytic_seq_len=width, batch_size=cfg.batch_size,
        cuda_vs_account=_ratio(cuda_peak, acct_peak), analytic_vs_account=_ratio(analytic, acct_peak),
        analytic_vs_cuda=_ratio(analytic, cuda_peak),
        warmup_account_peak_bytes=acct_warm, warmup_cuda_peak_bytes=cuda_warm,
        mean_step_time_s=(sum(steps) / len(steps)) if steps else None, wall_time_s=s.get("wall_time_s"))


def part_finetune(args, loaded, task) -> dict:
    import torch

    from explorer.engine.config import TrainConfig
    from explorer.engine.prepare import pick_device
    from explorer.engine.train import train

    cfg = TrainConfig(model=args.model, method="lora", steps=args.finetune_steps, device=args.device,
                      batch_size=args.batch_size, max_len=args.max_len, eval_every=0,
                      eval_examples=args.eval_examples, seed=0)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    res = train(cfg, loaded=loaded)
    s = res.summary
    auto = str(pick_device("auto"))
    return dict(status=s.get("status"), message=s.get("message"), device=s.get("device"), auto_device=auto,
                steps=cfg.steps, steps_done=s.get("steps_done"), base_accuracy=s.get("base_accuracy"),
                final_accuracy=s.get("final_accuracy"), final_loss=s.get("final_loss"),
                first_loss=next((r["loss"] for r in res.records if r.get("loss") is not None), None),
                trainable_params=s.get("trainable_params"), peak_account_bytes=s.get("peak_memory_bytes"),
                peak_cuda_bytes=s.get("peak_cuda_bytes"), mean_step_time_s=s.get("mean_step_time_s"),
                wall_time_s=s.get("wall_time_s"), task=s.get("task"))


def part_methods(args, loaded, task, deadline) -> tuple[list[dict], list[dict]]:
    import torch

    from explorer.memory.specs import spec_from_model
    from explorer.methods import METHODS
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    spec = spec_from_model(loaded.model, args.model)
    rows, skipped = [], []
    for m in METHODS:
        if time.monotonic() > deadline:
            skipped.append(dict(part=f"methods/{m}", reason=f"time budget of {args.budget_s:g} s spent"))
            continue
        cfg = TrainConfig(model=args.model, method=m, steps=args.method_steps, device=args.device,
                          batch_size=args.batch_size, max_len=args.max_len, eval_every=0,
                          eval_examples=args.eval_examples, seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        res = train(cfg, loaded=loaded)
        rows.append(method_row(res, cfg, loaded, spec, _widths(loaded, task, cfg), args.device))
        res = None
        r = rows[-1]
        print(f"  {m}: {r['status']} account {_mib(r['account_peak_bytes'])} cuda {_mib(r['cuda_peak_bytes'])} "
              f"analytic {_mib(r['analytic_bytes'])} MiB", flush=True)
    return rows, skipped


def part_queue(args, loaded) -> dict:
    import torch

    from explorer.workshop.jobs import MemoryRefused, default_queue, estimate_run_bytes, free_bytes
    from explorer.engine.config import TrainConfig
    from explorer.engine.state import RunState
    from explorer.engine.train import train

    q = default_queue()
    cfg = TrainConfig(model=args.model, method="lora", steps=args.queue_steps, device=args.device,
                      batch_size=args.batch_size, max_len=args.max_len, eval_every=0, eval_examples=args.eval_examples)
    free = free_bytes(args.device)
    torch_free = int(torch.cuda.mem_get_info()[0]) if args.device.startswith("cuda") else None
    need = estimate_run_bytes(cfg, loaded)
    state = RunState(cfg)
    t0 = time.perf_counter()
    job = q.submit(lambda job: train(cfg, loaded=loaded, state=state), state=state, need_bytes=need,
                   label="gpu check: lora", device=args.device)
    finished = job.wait(timeout=args.budget_s)
    res = state.result
    out = dict(free_bytes=free, torch_mem_get_info_free_bytes=torch_free, need_bytes=need, safety=q.safety,
               job_status=job.status, job_message=job.message, run_status=state.status, run_message=state.message,
               finished_in_time=bool(finished), wall_time_s=time.perf_counter() - t0,
               run_device=(res.summary.get("device") if res else None),
               peak_cuda_bytes=(res.summary.get("peak_cuda_bytes") if res else None),
               peak_account_bytes=(res.summary.get("peak_memory_bytes") if res else None))
    # the memory check path: a run that needs more than the free memory is refused at submit
    if free:
        try:
            q.submit(lambda job: None, need_bytes=float(free) * 2, label="gpu check: too big", device=args.device)
            out["oversize_refused"], out["oversize_message"] = False, "submitted (not refused)"
        except MemoryRefused as e:
            out["oversize_refused"], out["oversize_message"] = True, str(e)
    else:
        out["oversize_refused"], out["oversize_message"] = None, "no free-memory figure: the check cannot refuse"
    return out


def part_torchrun(args) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "explorer",
               "train", "--model", args.model, "--method", "lora", "--steps", str(args.method_steps), "--device",
               "cuda", "--eval-every", "0", "--eval-examples", str(args.eval_examples or 0), "--batch-size",
               str(args.batch_size), "--max-len", str(args.max_len), "--quiet", "--json", "--out", tmp]
        env = dict(os.environ, EXPLORER_SAVE_ALL_RANKS="1", OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, args.budget_s), env=env,
                           cwd=str(Path(__file__).resolve().parents[1]))
        out = dict(command=" ".join(["torchrun"] + cmd[3:]), returncode=p.returncode,
                   wall_time_s=time.perf_counter() - t0, stderr_tail=p.stderr[-2000:])
        try:
            start = p.stdout.index("{")
            summary = json.loads(p.stdout[start:])["summary"]
            out.update(status=summary.get("status"), world_size=summary.get("world_size"),
                       device=summary.get("device"), final_loss=summary.get("final_loss"))
        except (ValueError, KeyError) as e:
            out["parse_error"] = f"no JSON summary on stdout: {e}"
        adapters = [Path(tmp) / f"rank{r}" / "adapter" for r in (0, 1)]
        files = [sorted(a.glob("*.safetensors")) for a in adapters]
        if all(files):
            from safetensors.torch import load_file

            t0s, t1s = load_file(str(files[0][0])), load_file(str(files[1][0]))
            out["ranks_identical"] = (t0s.keys() == t1s.keys()
                                      and all(torch.equal(t0s[k], t1s[k]) for k in t0s))
        else:
            out["ranks_identical"] = None
    return out


def _mib(x, fmt="{:,.1f}"):
    return "n/a" if x is None else fmt.format(x / MIB)


def _mibu(x):
    return "n/a" if x is None else f"{x / MIB:,.1f} MiB"


def checks(out: dict) -> list[dict]:
    """Pass/fail lines derived from the figures (a GPU run must pass them all)."""
    res = []

    def add(name, ok, value=None):
        res.append(dict(check=name, ok=bool(ok), value=value))

    cuda = str(out.get("device", "")).startswith("cuda")
    ft = out.get("finetune")
    if ft:
        add("fine-tune finished on the asked device", ft["status"] == "finished"
            and str(ft["device"]).split(":")[0] == out["device"].split(":")[0], ft["device"])
        add("fine-tune loss went down", ft["first_loss"] is not None and ft["final_loss"] is not None
            and ft["final_loss"] < ft["first_loss"], [ft["first_loss"], ft["final_loss"]])
        if cuda:
            add("device auto resolves to cuda", str(ft["auto_device"]).startswith("cuda"), ft["auto_device"])
    for r in out.get("methods") or []:
        add(f"{r['method']} finished", r["status"] == "finished", r["message"] or r["status"])
        if cuda:
            add(f"{r['method']} CUDA peak measured and >= the weights' bytes",
                (r["cuda_peak_bytes"] or 0) >= (r["weights_bytes"] or 1), [r["cuda_peak_bytes"], r["weights_bytes"]])
    q = out.get("queue")
    if q:
        add("queue run finished", q["job_status"] == "done" and q["run_status"] == "finished", q["run_status"])
        add("queue refuses a run larger than the free memory", q["oversize_refused"] is True, q["oversize_refused"])
        if cuda:
            a, b = q["free_bytes"], q["torch_mem_get_info_free_bytes"]
            add("free_bytes('cuda') = torch.cuda.mem_get_info free (within 5 %)",
                a is not None and b and abs(a - b) <= 0.05 * b, [a, b])
            add("queue run ran on CUDA", str(q["run_device"]).startswith("cuda"), q["run_device"])
    d = out.get("torchrun")
    if d:
        add("torchrun exited 0 with world size 2", d["returncode"] == 0 and d.get("world_size") == 2,
            [d["returncode"], d.get("world_size")])
        add("torchrun ranks ended with identical adapters", d.get("ranks_identical") is True, d.get("ranks_identical"))
    return res


def _f(x, fmt="{:.3f}"):
    return "n/a" if x is None else fmt.format(x)


def render(out: dict) -> str:
    g = out.get("gpus") or []
    v = out["versions"]
    head = ("DRY RUN on the CPU (no CUDA figures; not a GPU result)" if out.get("dry_run")
            else f"{g[0]['name']} x {len(g)}" if g else "no GPU")
    lines = [f"### GPU check: {head}", "",
             f"Command: `{out['command']}`. {out['model']}, batch {out['batch_size']}, max length {out['max_len']}, "
             f"fp32, seed 0. torch {v['torch']} (CUDA {v['cuda']}, cuDNN {v['cudnn']}), transformers "
             f"{v['transformers']}, peft {v['peft']}, Python {v['python']}. Wall time {out['wall_time_s']:.0f} s.", ""]
    ft = out.get("finetune")
    if ft:
        lines.append(f"**a. Fine-tune** ({ft['steps']} LoRA steps, device asked `{out['device']}`, ran on "
                     f"`{ft['device']}`; `auto` resolves to `{ft['auto_device']}`): {ft['status']}, loss "
                     f"{_f(ft['first_loss'])} -> {_f(ft['final_loss'])}, accuracy {_f(ft['base_accuracy'])} -> "
                     f"{_f(ft['final_accuracy'])} ({ft['task']}), peak CUDA {_mibu(ft['peak_cuda_bytes'])}, byte "
                     f"account {_mibu(ft['peak_account_bytes'])}, mean step "
                     f"{_f(ft['mean_step_time_s'] and ft['mean_step_time_s'] * 1000, '{:.1f}')} ms, wall "
                     f"{ft['wall_time_s']:.1f} s.")
        lines.append("")
    rows = out.get("methods") or []
    if rows:
        lines += [f"**b. Every method, {out['method_steps']} steps**: peak memory of the sparse/adapter steps "
                  "(MiB = 2^20 B)", "",
                  "| method | status | trainable | byte account | CUDA peak | analytic | CUDA / account "
                  "| analytic / account | analytic / CUDA | step ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(
                f"| {r['method']} | {r['status']} | {r['trainable_params'] or 0:,} | {_mib(r['account_peak_bytes'])} | "
                f"{_mib(r['cuda_peak_bytes'])} | {_mib(r['analytic_bytes'])} | {_f(r['cuda_vs_account'])} | "
                f"{_f(r['analytic_vs_account'])} | {_f(r['analytic_vs_cuda'])} | "
                f"{_f(r['mean_step_time_s'] and r['mean_step_time_s'] * 1000, '{:.1f}')} |")
        smt = next((r for r in rows if r.get("warmup_steps")), None)
        if smt:
            lines.append("")
            lines.append(f"{smt['method'].upper()}'s {smt['warmup_steps']} warm-up steps (full fine-tuning inside the budget) peak at "
                         f"{_mibu(smt['warmup_account_peak_bytes'])} (account) / "
                         f"{_mibu(smt['warmup_cuda_peak_bytes'])} (CUDA); the row shows its sparse steps.")
        lines += ["", "Byte account: weights + gradients + optimizer state + saved activations, counted tensor by "
                  "tensor (an upper bound: the terms do not all peak at once). CUDA peak: "
                  "`torch.cuda.max_memory_allocated` since the step's forward began (includes temporaries and the "
                  "allocator's rounding). Analytic: `explorer.memory.analytic.estimate` (fp32, detailed activations) at the "
                  "padded length of the peak step's batch.", ""]
    q = out.get("queue")
    if q:
        lines.append(f"**c. Run queue** (`default_queue()`, device `{out['device']}`): job {q['job_status']}, run "
                     f"{q['run_status']} on `{q['run_device']}` in {q['wall_time_s']:.1f} s; free memory seen by the "
                     f"check {_mibu(q['free_bytes'])} (torch.cuda.mem_get_info: "
                     f"{_mibu(q['torch_mem_get_info_free_bytes'])}), estimate {_mibu(q['need_bytes'])} x "
                     f"{q['safety']:g}; a run asking for twice the free memory refused at submit: "
                     f"{q['oversize_refused']}.")
        lines.append("")
    d = out.get("torchrun")
    if d:
        lines.append(f"**d. torchrun** (`{d['command']}`): return code {d['returncode']}, status {d.get('status')}, "
                     f"world size {d.get('world_size')}, device {d.get('device')}, ranks' adapters identical: "
                     f"{d.get('ranks_identical')}, wall {d['wall_time_s']:.1f} s.")
        lines.append("")
    if out.get("skipped"):
        lines.append("**Skipped:**")
        for s in out["skipped"]:
            lines.append(f"- {s['part']}: {s['reason']}")
        lines.append("")
    if out.get("checks"):
        lines.append("**Checks:**")
        for c in out["checks"]:
            lines.append(f"- {'PASS' if c['ok'] else 'FAIL'} {c['check']}")
        lines.append("")
    if out.get("errors"):
        lines.append("**Errors:**")
        for s in out["errors"]:
            lines.append(f"- {s['part']}: {s['error']}")
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--quick", action="store_true", help="tiny-llama and a few steps (a dry run of the code paths)")
    ap.add_argument("--model", default=None, help="default: smollm2-135m (tiny-llama with --quick)")
    ap.add_argument("--finetune-steps", type=int, default=None, help="default 100 (5 with --quick)")
    ap.add_argument("--method-steps", type=int, default=None, help="default 30 (4 with --quick)")
    ap.add_argument("--queue-steps", type=int, default=None, help="default 20 (2 with --quick)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--eval-examples", type=int, default=None, help="default: all held-out examples (16 with --quick)")
    ap.add_argument("--budget-s", type=float, default=270.0, help="parts not started by then are skipped")
    ap.add_argument("--parts", default="finetune,methods,queue,torchrun")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_check.json on CUDA; "
                                                "a temporary folder for a CPU dry run); the .md goes beside it")
    args = ap.parse_args(argv)
    import torch

    dev = args.device.strip().lower()
    if dev.startswith("cuda") and not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        print(f"gpu_check: CUDA is absent here ({why}; torch {torch.__version__}): nothing measured, nothing "
              "written (use --device cpu --quick for a dry run)")
        return 0
    if not (dev.startswith("cuda") or dev == "cpu"):
        print(f"gpu_check: --device must be cuda, cuda:N or cpu (got '{args.device[:30]}')")
        return 2
    args.device = dev
    q = args.quick
    args.model = args.model or ("tiny-llama" if q else "smollm2-135m")
    args.finetune_steps = args.finetune_steps or (5 if q else 100)
    args.method_steps = args.method_steps or (4 if q else 30)
    args.queue_steps = args.queue_steps or (2 if q else 20)
    if args.eval_examples is None and q:
        args.eval_examples = 16
    dry = dev == "cpu"
    out_json = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / "gpu_check_dryrun" / "gpu_check.json" if dry else RESULTS / "gpu_check.json")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    torch.set_num_threads(1 if dry else min(8, os.cpu_count() or 1))
    t_all = time.perf_counter()
    deadline = time.monotonic() + args.budget_s
    out = dict(command="python -m benchmarks.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:]),
               dry_run=dry, device=dev, model=args.model, batch_size=args.batch_size, max_len=args.max_len,
               finetune_steps=args.finetune_steps, method_steps=args.method_steps, versions=_versions(),
               gpus=_gpus(), cuda_device_count=(torch.cuda.device_count() if torch.cuda.is_available() else 0),
               started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), skipped=[], errors=[])
    if dry:
        out["skipped"].append(dict(part="CUDA figures", reason="dry run on the CPU: no CUDA peak memory, no GPU"))
    from explorer.engine.config import TrainConfig
    from explorer.engine.prepare import load_for

    t0 = time.perf_counter()
    loaded, task = load_for(TrainConfig(model=args.model, method="lora", device=dev))
    out["load_time_s"] = time.perf_counter() - t0
    print(f"gpu_check: {args.model} loaded in {out['load_time_s']:.1f} s; device {dev}"
          + (f" ({out['gpus'][0]['name']})" if out["gpus"] else ""), flush=True)

    def run_part(name, fn):
        if name not in parts:
            out["skipped"].append(dict(part=name, reason="not asked for (--parts)"))
            return
        if time.monotonic() > deadline:
            out["skipped"].append(dict(part=name, reason=f"time budget of {args.budget_s:g} s spent"))
            return
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the check reports every part, whatever fails
            out["errors"].append(dict(part=name, error=f"{type(e).__name__}: {e}"[:500]))
        print(f"gpu_check: {name} done in {time.perf_counter() - t:.1f} s", flush=True)

    def do_finetune():
        out["finetune"] = part_finetune(args, loaded, task)

    def do_methods():
        rows, skipped = part_methods(args, loaded, task, deadline)
        out["methods"] = rows
        out["skipped"].extend(skipped)

    def do_queue():
        out["queue"] = part_queue(args, loaded)

    def do_torchrun():
        n = out["cuda_device_count"]
        if dry or n < 2:
            out["skipped"].append(dict(part="torchrun", reason=(
                "dry run on the CPU: the nccl path needs 2 CUDA devices" if dry else
                f"{n} CUDA device(s) visible; 2-process torchrun with nccl needs 2")))
            return
        out["torchrun"] = part_torchrun(args)

    run_part("finetune", do_finetune)
    run_part("methods", do_methods)
    run_part("queue", do_queue)
    run_part("torchrun", do_torchrun)
    out["checks"] = checks(out)
    out["wall_time_s"] = time.perf_counter() - t_all
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(out, indent=2, default=str))
    md = render(out)
    out_json.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out_json} and {out_json.with_suffix('.md')}")
    return 1 if out["errors"] or not all(c["ok"] for c in out["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
