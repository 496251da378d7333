"""tools/gpu_check.py (run as ``benchmarks/gpu_check.py``): its CPU dry run (same code paths, no CUDA figures), its
one-line exit without CUDA, and (marked ``cuda``, skipped without a GPU) a short run on CUDA."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer.memory.analytic import estimate
from explorer.memory.specs import spec_from_model
from explorer.methods import METHODS
from tools import gpu_check

@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()  # the check sets torch's threads (and the run queue shares the cores)
    yield
    torch.set_num_threads(n)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_without_cuda_one_line_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "CUDA is absent" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_device_one_line(tmp_path, capsys):
    assert gpu_check.main(["--device", "tpu", "--out", str(tmp_path / "x.json")]) == 2
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--device" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    n = torch.get_num_threads()
    out = tmp_path_factory.mktemp("gpu_check") / "gc.json"
    rc = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    torch.set_num_threads(n)
    return rc, json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_cpu_dry_run_writes_json_and_table(dry):
    rc, data, md = dry
    assert rc == 0, data["errors"] or [c for c in data["checks"] if not c["ok"]]
    assert data["dry_run"] is True and data["model"] == "tiny-llama" and data["errors"] == []
    assert "DRY RUN" in md and data["versions"]["torch"] == torch.__version__
    # a. the fine-tune ran on the CPU and learned a little
    ft = data["finetune"]
    assert ft["status"] == "finished" and ft["device"] == "cpu" and ft["steps_done"] == 5
    assert ft["final_loss"] < ft["first_loss"] and ft["peak_cuda_bytes"] is None
    # b. every method, with the byte account and the analytic model side by side
    rows = {r["method"]: r for r in data["methods"]}
    assert list(rows) == list(METHODS)
    from explorer.models import load_model

    n_params = load_model("tiny-llama").info.n_params
    spec = spec_from_model(load_model("tiny-llama").model)
    for m, r in rows.items():
        assert r["status"] == "finished", (m, r["message"])
        assert r["cuda_peak_bytes"] is None and r["cuda_vs_account"] is None  # no CUDA figure on the CPU
        assert r["weights_bytes"] >= 4 * n_params  # fp32 weights at least
        assert r["account_peak_bytes"] > r["weights_bytes"]
        est = estimate(spec, m, {}, precision="fp32", batch=16, seq_len=r["analytic_seq_len"], device="cpu")
        assert r["analytic_bytes"] == pytest.approx(est["total_bytes"])
        assert r["analytic_vs_account"] == pytest.approx(est["total_bytes"] / r["account_peak_bytes"])
        assert f"| {m} | finished | {r['trainable_params']:,} | {r['account_peak_bytes'] / 2**20:,.1f} | n/a |" in md
    assert rows["full"]["account_peak_bytes"] > rows["lora"]["account_peak_bytes"]
    assert rows["smt"]["warmup_steps"] == 2 and rows["smt"]["train_steps"] == 2
    # c. the run queue ran a job and its memory check refused an oversized one
    q = data["queue"]
    assert q["job_status"] == "done" and q["run_status"] == "finished" and q["oversize_refused"] is True
    assert "would not fit" in q["oversize_message"]
    # d. torchrun skipped, with the reason stated
    skipped = {s["part"]: s["reason"] for s in data["skipped"]}
    assert "torchrun" in skipped and "2 CUDA" in skipped["torchrun"]
    assert "torchrun: dry run" in md
    assert all(c["ok"] for c in data["checks"]) and "PASS fine-tune loss went down" in md


@pytest.mark.cuda
@needs_cuda
def test_quick_run_on_cuda(tmp_path):
    out = tmp_path / "gc.json"
    rc = gpu_check.main(["--device", "cuda", "--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert rc == 0, data["errors"] or [c for c in data["checks"] if not c["ok"]]
    assert data["gpus"] and data["finetune"]["device"].startswith("cuda")
    for r in data["methods"]:
        assert r["cuda_peak_bytes"] > 0 and r["cuda_vs_account"] == pytest.approx(
            r["cuda_peak_bytes"] / r["account_peak_bytes"])
    assert str(data["queue"]["run_device"]).startswith("cuda")


def test_render_and_checks_with_cuda_figures(dry):
    """The CUDA branch of the table and the checks, fed with figures of a GPU run's shape (made up here from the
    dry run: this machine has no GPU), so that a GPU run does not meet an untested formatting path."""
    import copy

    data = copy.deepcopy(dry[1])
    data.update(device="cuda", dry_run=False, skipped=[], gpus=[dict(index=0, name="Fake H200", total_memory_bytes=1,
                                                                      capability="9.0", multiprocessors=1)])
    data["finetune"].update(device="cuda:0", auto_device="cuda", peak_cuda_bytes=3 * 2**20)
    for r in data["methods"]:
        r["cuda_peak_bytes"] = r["account_peak_bytes"] // 2
        r["cuda_vs_account"] = 0.5
        r["analytic_vs_cuda"] = r["analytic_bytes"] / r["cuda_peak_bytes"]
    lora = next(r for r in data["methods"] if r["method"] == "lora")
    lora["cuda_peak_bytes"] = lora["weights_bytes"] - 1  # below the weights: impossible on a real GPU
    data["queue"].update(run_device="cuda:0", free_bytes=1000, torch_mem_get_info_free_bytes=1010)
    data["torchrun"] = dict(command="torchrun ...", returncode=0, wall_time_s=1.0, status="finished", world_size=2,
                            device="cuda:0", ranks_identical=True)
    checks = {c["check"]: c["ok"] for c in gpu_check.checks(data)}
    assert checks["device auto resolves to cuda"] and checks["torchrun ranks ended with identical adapters"]
    assert checks["free_bytes('cuda') = torch.cuda.mem_get_info free (within 5 %)"]
    assert not checks["lora CUDA peak measured and >= the weights' bytes"]
    assert checks["full CUDA peak measured and >= the weights' bytes"]
    data["queue"]["torch_mem_get_info_free_bytes"] = 2000
    assert not {c["check"]: c["ok"] for c in gpu_check.checks(data)}[
        "free_bytes('cuda') = torch.cuda.mem_get_info free (within 5 %)"]
    data["checks"] = gpu_check.checks(data)
    md = gpu_check.render(data)
    assert md.startswith("### GPU check: Fake H200 x 1")
    assert (f"| lora | finished | {lora['trainable_params']:,} | {lora['account_peak_bytes'] / 2**20:,.1f} | "
            f"{lora['cuda_peak_bytes'] / 2**20:,.1f} | {lora['analytic_bytes'] / 2**20:,.1f} | 0.500 |") in md
    full = next(r for r in data["methods"] if r["method"] == "full")
    assert f"| {full['analytic_bytes'] / full['account_peak_bytes']:.3f} | {full['analytic_vs_cuda']:.3f} |" in md
    assert "world size 2" in md and "ranks' adapters identical: True" in md and "FAIL free_bytes" in md


def test_the_benchmarks_entry_point_runs_the_check():
    """``python benchmarks/gpu_check.py`` (the name the README and the device instructions give) runs this check."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "tpu"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--device must be cuda, cuda:N or cpu" in out.stdout, (out.stdout, out.stderr)
