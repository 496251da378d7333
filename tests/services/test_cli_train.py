"""``python -m explorer train``: files written, errors, and data parallel under torchrun (2 CPU processes)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_train_command_writes_metrics_adapter_and_merged(tmp_path, capsys):
    from explorer.__main__ import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "tiny-bert", "--task", "colour-shape", "--method", "sparta", "-k", "density=0.1",
               "--steps", "6", "--eval-every", "3", "--eval-examples", "32", "--max-len", "16", "--out", str(out),
               "--merged", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    assert printed["summary"]["final_accuracy"] == s["final_accuracy"]
    for key in ("final_accuracy", "peak_memory_bytes", "trainable_params", "wall_time_s", "device"):
        assert s[key] is not None, key
    assert s["status"] == "finished" and s["steps_done"] == 6
    assert [r["step"] for r in m["records"] if r.get("phase") == "train"] == list(range(1, 7))
    assert m["config"]["knobs"] == {"density": "0.1"} and m["config"]["lr"] > 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "phase", "loss", "lr", "step_time_s", "tokens_per_s", "total_bytes"} <= set(header)
    assert (out / "adapter" / "explorer_adapter.json").exists()
    # the merged folder loads with from_pretrained and gives the run's final accuracy
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from explorer import data

    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    tok = AutoTokenizer.from_pretrained(out / "merged")
    task = data.load_task("colour-shape", "seq-cls")
    ev = data.evaluate(merged, task, tok, "seq-cls", max_examples=32, max_len=16)
    assert ev["accuracy"] == s["final_accuracy"]


def test_train_command_bad_input_is_one_line(tmp_path, capsys):
    from explorer.__main__ import main

    rc = main(["train", "--model", "tiny-bert", "--method", "lora", "-k", "rank=0", "--steps", "2",
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "rank" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "metrics.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_end_with_identical_adapters(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this python")
    out = tmp_path / "ddp"
    env = dict(os.environ, EXPLORER_SAVE_ALL_RANKS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [str(torchrun), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "explorer", "train", "--model", "tiny-bert", "--task", "colour-shape", "--method", "lora",
           "--steps", "4", "--lr", "0.01", "--eval-every", "0", "--eval-examples", "32", "--max-len", "16",
           "--batch-size", "4", "--no-memory", "--quiet", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    a = (out / "rank0" / "adapter" / "adapter_model.safetensors").read_bytes()
    b = (out / "rank1" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert a == b
    # the adapter did train (B moved off zero), and rank 0 alone wrote the run files
    from safetensors.torch import load_file

    t = load_file(str(out / "rank0" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and float(v.abs().sum()) > 0 for k, v in t.items())
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["world_size"] == 2 and m["summary"]["status"] == "finished"


def test_a_clean_run_prints_only_the_projects_own_lines(tmp_path):
    """Issue 21: a successful run printed transformers' "Loading weights" bar and a FutureWarning
    (``is_gradient_checkpointing``, read by peft).  stderr now holds the project's tqdm bar and nothing else."""
    import re

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="default")
    cmd = [sys.executable, "-m", "explorer", "train", "--model", "minilm", "--task", "colour-shape", "--method",
           "lora", "--steps", "2", "--eval-every", "0", "--eval-examples", "16", "--max-len", "16", "--batch-size",
           "4", "--no-memory", "--out", str(tmp_path / "run")]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    pieces = [x.strip() for x in re.split(r"[\r\n]+", p.stderr) if x.strip()]
    bar = re.compile(r"^\d+%\|.*\| \d+/2 \[")
    assert pieces and all(bar.match(x) for x in pieces), pieces[:6]
    assert p.stdout.splitlines()[0].startswith("finished: lora on minilm")
