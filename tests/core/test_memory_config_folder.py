"""``memory --model <folder with a config.json>`` reads the folder's config on the meta device, as the bundled
configs are read (issue 21: llama-2-7b's own config copied into a folder was refused as too large to load)."""

from __future__ import annotations

import json

import pytest

from explorer.cli.memory import breakdown
from explorer.models import config_models


def _folder(tmp_path, name):
    d = {k: v for k, v in json.loads(config_models()[name].read_text()).items() if not k.startswith("_")}
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(d))
    return folder


@pytest.mark.parametrize("name", sorted(config_models()))
def test_a_config_folder_estimates_as_its_bundled_config(tmp_path, name):
    method = "full" if name == "gpt2" else "lora"  # GPT-2 builds from Conv1D: only full fine-tuning applies
    want = breakdown(name, method, precision="bf16-mixed", batch=1, seq_len=128)
    got = breakdown(str(_folder(tmp_path, name)), method, precision="bf16-mixed", batch=1, seq_len=128)
    assert got["n_params"] == want["n_params"] and got["trainable_params"] == want["trainable_params"]
    assert got["total_bytes"] == want["total_bytes"]


def test_the_cli_prints_a_config_folders_breakdown(tmp_path, capsys):
    from explorer.__main__ import main

    assert main(["memory", "--model", str(_folder(tmp_path, "llama-2-7b")), "--method", "lora"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("model") and "parameters" in first and "total" in out
