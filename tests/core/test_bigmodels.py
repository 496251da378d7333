"""Config-only big models (issue 13, part 1): bundled configs built on the meta device, the same method code,
analytic counts == meta adapter counts, published figures, fast inspect, refused for training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from explorer.memory.analytic import estimate
from explorer.memory.specs import spec_for
from explorer.methods import METHODS, KnobError, apply_method
from explorer.models import ModelLoadError, build_meta, config_models, fresh_copy, load_model

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "mistral-7b", "qwen2.5-0.5b", "qwen2.5-7b",
         "gemma-2b", "gpt2", "bert-base", "bert-large"]
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def metas():
    return {n: load_model(n, meta_ok=True) for n in NAMES}


def test_bundled_under_exactly_those_names():
    assert sorted(config_models()) == sorted(NAMES)
    for p in config_models().values():
        assert json.loads(p.read_text())["_source"].endswith("config.json")  # where the values come from


# published parameter counts (model cards / papers), independent of the memory model
PUBLISHED_TOTALS = {"llama-2-7b": 6_738_415_616, "gpt2": 124_439_808, "bert-base": 109_482_240 + 768 * 2 + 2}


@pytest.mark.parametrize("name", NAMES)
def test_every_config_every_method_analytic_equals_meta(metas, name):
    loaded = metas[name]
    assert loaded.info.meta and loaded.tokenizer is None
    assert all(p.device.type == "meta" for p in loaded.model.parameters())
    spec = spec_for(name)
    assert spec.n_params() == loaded.info.n_params
    if name in PUBLISHED_TOTALS:
        assert loaded.info.n_params == PUBLISHED_TOTALS[name]
    for m in METHODS:
        if name == "gpt2" and m != "full":  # Conv1D blocks: stated clearly on both sides
            for call in (lambda: apply_method(fresh_copy(loaded.model), m, n_base=loaded.info.n_params),
                         lambda: estimate(spec, m)):
                with pytest.raises(KnobError, match="Conv1D.*only full fine-tuning applies"):
                    call()
            continue
        ad = apply_method(fresh_copy(loaded.model), m, n_base=loaded.info.n_params)
        est = estimate(spec, m)
        assert est["trainable_params"] == ad.num_trainable(), (name, m)
        assert est["n_params"] == ad.num_total()


def test_published_figures(metas):
    l7 = metas["llama-2-7b"]
    N = l7.info.n_params
    lora = apply_method(fresh_copy(l7.model), "lora", n_base=N, rank=8, targets=["q", "v"])
    assert lora.num_trainable() == 4_194_304  # LoRA paper / peft: r=8 on q, v of LLaMA-2-7B
    smt = apply_method(fresh_copy(l7.model), "smt", n_base=N, blocks=890, block_size=256)
    assert smt.num_trainable() == 890 * 256 * 256
    assert round(100 * smt.num_trainable() / N, 4) == 0.8656  # SMT paper: 890 blocks = 0.8656 %
    tl6 = apply_method(fresh_copy(l7.model), "tied-lora", n_base=N, preset="TL6", rank=8)
    fused_lora = 32 * 8 * (4096 + 3 * 4096)  # LoRA on the fused qkv projection, r = 8, 32 layers
    assert tl6.num_trainable() / fused_lora == pytest.approx(0.125, abs=0.0005)  # Tied-LoRA: TL6 = 12.5 %


def test_sparta_and_lora_sp_meta_draws_equal_real_draws(tiny_bert):
    """The meta path draws a matrix's entries lazily with the same seed and rule as real weights."""
    meta = build_meta(tiny_bert.model.config, "seq-cls", 2)
    N = tiny_bert.info.n_params
    for method, knobs in (("sparta", dict(sparsity=0.998)), ("lora-sp", dict(rank=4))):
        real = apply_method(fresh_copy(tiny_bert.model), method, n_base=N, **knobs)
        lazy = apply_method(fresh_copy(meta), method, n_base=N, **knobs)
        assert real.num_trainable() == lazy.num_trainable()
        for a, b in zip(real.layouts(), lazy.layouts()):
            assert (a.trainable, a.changeable) == (b.trainable, b.changeable)
            assert (a.mask() == b.mask()).all()


def test_sparta_meta_never_materialises_indices(metas):
    l70 = metas["llama-2-70b"]
    ad = apply_method(fresh_copy(l70.model), "sparta", n_base=l70.info.n_params)
    assert ad.num_trainable() == round(0.01 * l70.info.n_params)  # head-less causal LM: 1 % of all
    assert all(m.rows.device.type == "meta" for m in ad.modules.values())
    lay = ad.layouts()[0]  # v of layer 0: 1024 x 8192, drawn on demand
    assert int(lay.mask().sum()) == lay.trainable


def test_inspect_70b_every_method_fast():
    from explorer.cli.core import inspect

    inspect("llama-2-70b", "lora", {})  # imports and first-use caches out of the measurement
    torch.set_num_threads(1)
    for m in METHODS:
        t0 = time.process_time()  # CPU time: the machine is shared, wall time depends on the neighbours
        res = inspect("llama-2-70b", m, {})
        cpu = time.process_time() - t0
        assert cpu < 2.0, (m, cpu)
        assert res["model"]["config_only"] and res["total_params"] == 68_976_648_192
        assert res["trainable_params"] > 0 and res["targets"]
        if m == "smt":
            assert any("needs a warm-up on real weights" in n and "block grid" in n for n in res["notes"])


def test_inspect_cli_json_and_config_folder(tmp_path):
    folder = tmp_path / "l7"
    folder.mkdir()
    d = json.loads(config_models()["llama-2-7b"].read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in d.items() if not k.startswith("_")}))
    r = subprocess.run([sys.executable, "-m", "explorer", "inspect", "--model", str(folder), "--method", "lora",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    out = json.loads(r.stdout)
    assert out["trainable_params"] == 4_194_304 and out["model"]["config_only"]


def test_training_refused_with_the_memory_reason(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_model("llama-2-70b")
    msg = str(e.value)
    assert "\n" not in msg and "68,977 M parameters" in msg and "GiB" in msg and "cannot be fine-tuned" in msg
    with pytest.raises(ModelLoadError, match="without weights"):
        load_model("gpt2")  # small enough, but there are no weights to train
    r = subprocess.run([sys.executable, "-m", "explorer", "train", "--model", "llama-2-70b", "--method", "lora",
                        "--steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert len(lines) == 1 and "cannot be fine-tuned" in lines[0] and "Traceback" not in r.stderr


def test_playground_page_on_a_config_only_model():
    from tests.support.apptest import no_problem, open_page

    page = str(ROOT / "pages" / "1_Methods_playground.py")
    expected = {"lora": 16_384_000, "sparta": 689_766_482, "smt": 689_766_400}
    for m in ("lora", "sparta", "smt", "lora-sp"):
        at = open_page(page, 300, model="llama-2-70b", m1=m)
        no_problem(at)
        if m in expected:  # the metric shows a compact form; its help starts with the exact count
            tp = next(x for x in at.metric if x.label == "trainable parameters")
            assert int(tp.help.split()[0].replace(",", "")) == expected[m]
        assert any("config only" in c.value for c in at.caption)
        assert any("Config-only model" in i.value for i in at.info)
        helps = [x.help for x in at.metric if x.label == "adapter on disk"]
        assert helps and "analytic" in helps[0]
        if m == "smt":
            assert any("needs a warm-up on real weights" in x.value for x in at.markdown)
