"""The `methods` and `inspect` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def test_methods_json_lists_all_with_knobs():
    r = run("methods", "--json")
    assert r.returncode == 0, r.stderr
    data = {m["name"]: m for m in json.loads(r.stdout)}
    assert set(data) == {"full", "lora", "dora", "lora-sp", "tied-lora", "smt", "sparta", "vera"}
    assert {k["name"] for k in data["lora-sp"]["knobs"]} >= {"rank", "alpha", "targets", "freeze", "seed", "mask_mode"}


def test_inspect_json_counts(tmp_path):
    r = run("inspect", "--model", "tiny-llama", "--method", "lora", "-k", "rank=4", "-k", "targets=q,v", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    want = sum(4 * (t["shape"][0] + t["shape"][1]) for t in res["targets"])
    assert res["trainable_params"] == want
    assert abs(res["trainable_fraction"] - want / res["total_params"]) < 1e-12
    assert {t["shape"][0] for t in res["targets"]} == {64, 32}  # q is 64x64, v is 32x64 (GQA)
    assert all(t["changeable"] == t["shape"][0] * t["shape"][1] for t in res["targets"])


def test_inspect_sparta_changeable_entries():
    r = run("inspect", "--model", "tiny-bert", "--method", "sparta", "-k", "density=0.25", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for t in res["targets"]:
        assert t["changeable"] == round(0.25 * t["shape"][0] * t["shape"][1])


def test_inspect_bad_input_is_one_line():
    r = run("inspect", "--model", "tiny-bert", "--method", "lora", "-k", "rank=-3")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    r = run("inspect", "--model", "nope/nope-model", "--method", "lora")
    assert r.returncode == 2 and "not reachable" in r.stderr and "Traceback" not in r.stderr
