"""The Ray executor against a local Ray with 2 CPUs, inside a private network namespace (loopback only).

Ray binds to and talks over the machine's network address by default; the tests run it in
``unshare -n`` with only ``lo`` up, so no test traffic leaves the machine.  That needs root (CI runs as
root); elsewhere the tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("ray", reason="Ray is optional: make test installs requirements-ray.txt")


def netns_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not netns_ok(), reason="needs root for a private network namespace (unshare -n)")


def in_netns(argv: list[str], timeout: int = 300, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PEFT_EXPLORER_RAY_CPUS="2", PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    env.pop(  "PEFT_EXPLORER_RAY_ADDRESS", None)
    cmd = "ip link set lo up; exec " + " ".join(f"'{a}'" for a in argv)
    return subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


def test_cli_train_on_ray_writes_the_same_files(tmp_path):
    out = tmp_path / "run"
    r = in_netns([sys.executable, "-m", "explorer", "train", "--model", "tiny-bert", "--steps", "6",
                  "--eval-every", "3", "--executor", "ray", "--out", str(out), "--json", "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["status"] == "finished" and metrics["summary"]["steps_done"] == 6
    assert [x["step"] for x in metrics["records"] if x.get("phase") == "train"] == list(range(1, 7))
    assert metrics["records"][-1]["eval_accuracy"] is not None
    assert (out / "metrics.csv").exists()
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA"
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    # the same run in this process, same seed, on the CPU: the same final loss
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    here = train(TrainConfig(model="tiny-bert", method="lora", steps=6, eval_every=3, seed=0))
    assert abs(here.summary["final_loss"] - metrics["summary"]["final_loss"]) <= 1e-6


SCRIPT = textwrap.dedent('''
    import json, sys, threading, time
    from explorer.engine.config import TrainConfig
    from explorer.engine.state import RunState
    from explorer.workshop.ray_executor import RayExecutor

    ex = RayExecutor()
    out = {"cpus": ex.ray.cluster_resources().get("CPU")}
    # 1. a long run, stopped from the server side after two steps
    cfg = TrainConfig(model="tiny-bert", method="lora", steps=5000, eval_every=0, seed=0)
    st = RunState(cfg)
    box = {}
    th = threading.Thread(target=lambda: box.update(res=ex.run_train(cfg, st)), daemon=True)
    th.start()
    t0 = time.time()
    while st.step < 2 and time.time() - t0 < 240:
        time.sleep(0.05)
    st.stop(); t1 = time.time(); th.join(120)
    out["stop"] = dict(status=st.status, step=st.step, seconds=time.time() - t1, streamed=len(st.records))
    # 2. a user's data file travels with the run
    cfg2 = TrainConfig(model="tiny-bert", method="sparta", task=sys.argv[1], steps=4, eval_every=0, seed=0)
    st2 = RunState(cfg2)
    res = ex.run_train(cfg2, st2)
    out["file"] = dict(status=st2.status, message=st2.message, task=res.summary.get("task"),
                       zip=len(res.adapter_zip_bytes or b""), records=len(st2.records))
    out["actors"] = ex.stats()[0]["actors"]
    print("RESULT" + json.dumps(out))
''')


def test_progress_stop_and_a_data_file_through_ray(tmp_path):
    csv = tmp_path / "reviews.csv"
    rows = ["text,label"] + [f"{'great' if i % 2 else 'awful'} film number {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(60)]
    csv.write_text("\n".join(rows) + "\n")
    script = tmp_path / "ray_script.py"
    script.write_text(SCRIPT)
    r = in_netns([sys.executable, str(script), str(csv)], cwd=tmp_path)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(line[0][6:])
    assert out["cpus"] == 2
    stop = out["stop"]
    assert stop["status"] == "stopped" and 2 <= stop["step"] < 5000 and stop["seconds"] < 20
    assert stop["streamed"] >= 2  # records reached the server while the run went
    f = out["file"]
    assert f["status"] == "finished", f["message"]
    assert f["task"] == "reviews.csv" and f["zip"] > 0 and f["records"] >= 4
    assert out["actors"] == 1  # the second run reused the first run's actor
