"""benchmarks/gpu_check.py: its CPU dry run (same code paths, no CUDA figures), its one-line exit without CUDA,
and (marked ``cuda``, skipped without a GPU) a short run on CUDA."""

import json

import pytest
import torch

from benchmarks import gpu_check
from explorer import memory
from explorer.methods import METHODS

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


def test_cpu_dry_run_writes_json_and_table(tmp_path):
    out = tmp_path / "gc.json"
    rc = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    md = out.with_suffix(".md").read_text()
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
    spec = memory.spec_from_model(load_model("tiny-llama").model)
    for m, r in rows.items():
        assert r["status"] == "finished", (m, r["message"])
        assert r["cuda_peak_bytes"] is None and r["cuda_vs_account"] is None  # no CUDA figure on the CPU
        assert r["weights_bytes"] >= 4 * n_params  # fp32 weights at least
        assert r["account_peak_bytes"] > r["weights_bytes"]
        est = memory.estimate(spec, m, {}, precision="fp32", batch=16, seq_len=r["analytic_seq_len"], device="cpu")
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
