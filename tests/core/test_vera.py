"""VeRA (arXiv 2310.11454) as one more method module: counts from the paper's formula, frozen shared A and B,
the update diag(b) B diag(d) A, peft-format adapters, and the claim that adding it touched only explorer/methods/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

from explorer.methods import METHODS, KnobError, apply_method, load_adapter
from explorer.methods import vera as vera_module
from explorer.models import checksum, fresh_copy, load_model
from tests.support.batches import make_batch

ROOT = Path(__file__).resolve().parents[2]


def adapt(loaded, **knobs):
    return apply_method(fresh_copy(loaded.model), "vera", n_base=loaded.info.n_params, **knobs)


def out_sizes_from_config(cfg) -> dict:
    """d_out of each matrix type from the model's config alone (not from the model's modules)."""
    d = cfg.hidden_size
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    d_kv = kv_heads * (d // cfg.num_attention_heads)
    return {"q": d, "k": d_kv, "v": d_kv, "o": d, "gate": cfg.intermediate_size, "up": cfg.intermediate_size,
            "down": d}


def head_from_config(loaded) -> int:
    """A new classification head: hidden x labels + labels (seq-cls); causal LMs add none."""
    cfg = loaded.model.config
    return cfg.hidden_size * cfg.num_labels + cfg.num_labels if loaded.info.kind == "seq-cls" else 0


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama", "minilm"])
@pytest.mark.parametrize("rank,targets", [(1, ["q"]), (16, ["q", "v"]), (256, ["q", "k", "v", "o", "up", "down"])])
def test_count_is_the_papers_formula(request, model_fixture, rank, targets):
    """Σ over adapted layers (r + d_out), plus the head; A and B are not counted (frozen)."""
    loaded = request.getfixturevalue(model_fixture)
    cfg = loaded.model.config
    sizes = out_sizes_from_config(cfg)
    want = cfg.num_hidden_layers * sum(rank + sizes[t] for t in targets) + head_from_config(loaded)
    ad = adapt(loaded, rank=rank, targets=targets)
    assert ad.num_trainable() == want
    assert sum(lay.trainable for lay in ad.layouts()) + ad.head_parameters() == want
    assert vera_module.analytic_count(ad.targets, rank) + ad.head_parameters() == want


def test_defaults_count_on_minilm(minilm):
    """The defaults (r = 512 on every linear layer; BERT has no gate) on all-MiniLM-L6 (6 layers, hidden 384,
    intermediate 1536, 2 labels): per layer q, k, v, o and down give 512 + 384 each, up 512 + 1536;
    plus a head of 384 x 2 + 2."""
    ad = adapt(minilm)
    assert ad.knobs["rank"] == 512 and ad.knobs["d_init"] == 0.1
    cfg = minilm.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (6, 384, 1536)
    assert ad.num_trainable() == 6 * (5 * (512 + 384) + (512 + 1536)) + (384 * 2 + 2) == 39_938
    A, B = ad.shared_projections()
    assert tuple(A.shape) == (512, 1536) and tuple(B.shape) == (1536, 512)


def test_shared_frozen_projections_never_reach_the_optimizer(tiny_llama):
    """One A and one B for all layers (sized to the largest target, sliced per target); not parameters;
    bit-identical after training while b and d move."""
    ad = adapt(tiny_llama, rank=8, targets=["q", "v", "up", "down"])
    A, B = ad.shared_projections()
    cfg = tiny_llama.model.config
    assert tuple(A.shape) == (8, max(cfg.hidden_size, cfg.intermediate_size))
    assert tuple(B.shape) == (max(cfg.hidden_size, cfg.intermediate_size), 8)
    assert not A.requires_grad and not B.requires_grad
    mods = [ad.peft_model.base_model.model.get_submodule(t.name) for t in ad.targets]
    assert {id(m.vera_A["default"]) for m in mods} == {id(A)} and {id(m.vera_B["default"]) for m in mods} == {id(B)}
    params = [p for _, p in ad.trainable_parameters()]
    assert all(p is not A and p is not B for p in params)
    assert all(p.dim() == 1 for p in params)  # only vectors train (tiny-llama has no new head)
    a0, b0 = A.clone(), B.clone()
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == 2 * len(ad.targets)
    batch = make_batch(tiny_llama, s=12)
    for _ in range(3):
        ad.model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(A, a0) and torch.equal(B, b0)
    assert all(float(m.vera_lambda_b["default"].detach().abs().max()) > 0 for m in mods)


def test_the_new_head_trains_at_a_tenth_of_the_rate_of_d_and_b(tiny_bert):
    """AdamW groups: d and b at the run's rate (the first group, which the step records read), the new
    classification head (peft's modules_to_save copy) at HEAD_LR_SCALE x; the schedule keeps the ratio."""
    from explorer.engine.prepare import param_groups, schedule
    from explorer.methods import vera

    assert vera.HEAD_LR_SCALE == 0.1
    ad = adapt(tiny_bert, rank=8, targets=["q", "v"])
    named = ad.trainable_parameters()
    head = {id(p) for n, p in named if ".classifier.modules_to_save." in n}
    vectors = {id(p) for n, p in named if "vera_lambda" in n}
    assert len(head) == 2 and len(vectors) == 2 * 2 * 2  # weight + bias; d and b for q, v in 2 layers
    assert head | vectors == {id(p) for _, p in named}
    lr = 3e-2
    opt = torch.optim.AdamW(param_groups(named, 0.1, ad, lr), lr=lr)
    by_lr = {}
    for g in opt.param_groups:
        by_lr.setdefault(g["lr"], set()).update(id(p) for p in g["params"])
    assert len(by_lr) == 2 and by_lr[lr] == vectors
    (other,) = [k for k in by_lr if k != lr]
    assert other == pytest.approx(lr * 0.1) and by_lr[other] == head
    assert opt.param_groups[0]["lr"] == lr
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(10, 2))
    for _ in range(3):
        opt.step()
        sched.step()
    rates = sorted({g["lr"] for g in opt.param_groups})
    assert len(rates) == 2 and rates[0] / rates[1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs the run's rate"):
        param_groups(named, 0.1, ad)  # a scaled group without the run's rate
    lora = apply_method(fresh_copy(tiny_bert.model), "lora", n_base=tiny_bert.info.n_params, rank=4)
    assert all("lr" not in g for g in param_groups(lora.trainable_parameters(), 0.1, lora, lr))  # one rate


def test_zero_change_at_step_zero_and_the_update_formula(tiny_bert):
    ad = adapt(tiny_bert, rank=4, targets=["q", "up"], d_init=0.3)
    batch = make_batch(tiny_bert, s=12)
    ad.model.eval()
    with torch.no_grad():  # b = 0: the adapted model computes what the base computes (the head is a copy)
        torch.testing.assert_close(ad.model(**batch).logits, tiny_bert.model(**batch).logits, atol=1e-6, rtol=0)
    for t in ad.targets:
        m = ad.peft_model.base_model.model.get_submodule(t.name)
        assert torch.equal(m.vera_lambda_b["default"], torch.zeros(t.d_out))
        assert torch.equal(m.vera_lambda_d["default"], torch.full((4,), 0.3))
    # train a little, then ΔW = diag(b) B[:d_out] diag(d) A[:, :d_in], computed here by hand
    opt = torch.optim.AdamW([p for _, p in ad.trainable_parameters()], lr=5e-2)
    ad.model.train()
    for _ in range(3):
        ad.model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    A, B = ad.shared_projections()
    merged = ad.merged_model()
    for t in ad.targets:
        m = ad.peft_model.base_model.model.get_submodule(t.name)
        b, d = m.vera_lambda_b["default"].detach(), m.vera_lambda_d["default"].detach()
        delta = (b[:, None] * B[: t.d_out]) @ (d[:, None] * A[:, : t.d_in])
        w0 = tiny_bert.model.get_submodule(t.name).weight
        torch.testing.assert_close(merged.get_submodule(t.name).weight - w0, delta, atol=1e-6, rtol=1e-5)
        assert float(delta.abs().max()) > 0


def test_saves_in_peft_format_and_loads_in_plain_peft(tiny_bert, tmp_path):
    from peft import PeftModel

    before = checksum(tiny_bert.model)
    ad = adapt(tiny_bert, rank=8)
    batch = make_batch(tiny_bert, s=12)
    opt = torch.optim.AdamW([p for _, p in ad.trainable_parameters()], lr=1e-2)
    for _ in range(2):
        ad.model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    ad.model.eval()
    with torch.no_grad():
        out = ad.model(**batch).logits
    ad.save(tmp_path)
    assert (tmp_path / "adapter_config.json").exists() and (tmp_path / "adapter_model.safetensors").exists()
    plain = PeftModel.from_pretrained(fresh_copy(tiny_bert.model), str(tmp_path)).eval()
    again = load_adapter(fresh_copy(tiny_bert.model), tmp_path)
    again.model.eval()
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, out)
        assert torch.equal(again.model(**batch).logits, out)
    assert checksum(tiny_bert.model) == before
    # the file holds d, b, the head and the shared A and B: its size is the analytic count plus a small header
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    A, B = ad.shared_projections()
    want = 4 * (ad.num_trainable() + A.numel() + B.numel())
    assert ad.analytic_bytes() == want and 0 < size - want < 16_384


def test_bad_knobs_are_one_clear_line(tiny_bert):
    with pytest.raises(KnobError, match="d_init must be >="):
        adapt(tiny_bert, d_init=0)  # b = 0 and d = 0: no gradient reaches either, nothing would ever train
    with pytest.raises(KnobError, match="rank must be >= 1"):
        adapt(tiny_bert, rank=0)
    with pytest.raises(KnobError, match="no linear layers of type"):
        adapt(tiny_bert, targets=["gate"])


# ----------------------------------------------------------------------------- one folder, one registry line

# The Tied-LoRA paper's "VeRA-like" combination is a Tied-LoRA preset (frozen tied A, B; trained u, v), named by
# Tied-LoRA's facts and its claim; it is not this method.  The claim's arm ids are fixed by its shipped results.
TIED_LORA_NAMES = re.compile(r"VeRA-like", re.I)
ALLOWED = {"explorer/claims/specs.py": re.compile(r"""["'](over-)?vera["']""", re.I),
           # mutmut's names of the surviving mutants judged equivalent (module.function__mutmut_N): data, no branch
           "tools/mutation.py": re.compile(r"\{_M\}vera\.x[ǁ_]")}
NOT_CODE = ("README.md", "assets/", "benchmarks/results/")  # prose written by the lead, and shipped measurements


def repo_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(set(out))


def test_no_file_outside_the_methods_package_names_vera():
    files = repo_files()
    assert "explorer/methods/vera.py" in files and "pages/3_Compare.py" in files
    hits = []
    for f in files:
        if f.startswith(("explorer/methods/", "tests/")) or f.startswith(NOT_CODE) or not (ROOT / f).is_file():
            continue
        try:
            text = (ROOT / f).read_text("utf-8")
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            line = TIED_LORA_NAMES.sub("", line)
            if f in ALLOWED:
                line = ALLOWED[f].sub("", line)
            if re.search(r"(?<![a-z])vera(?![a-z])", line, re.I):
                hits.append(f"{f}:{i}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


def test_the_check_finds_a_mention():
    """The scan above is not blind: the same pattern finds the method's key and label, and not 'several'."""
    pat = re.compile(r"(?<![a-z])vera(?![a-z])", re.I)
    assert pat.search('if method == "vera":') and pat.search("VeRA (arXiv 2310.11454)")
    assert not pat.search("several averaged values") and not pat.search(TIED_LORA_NAMES.sub("", "VeRA-like"))


def test_pages_offer_it_without_naming_it():
    """The registry line is enough: the playground and the fine-tune page offer it, the memory calculator has
    its row, and the Home table lists what it trains (every text from the module)."""
    from tests.support.apptest import no_problem, open_page

    info = METHODS["vera"]
    at = open_page(str(ROOT / "app.py"))
    no_problem(at)
    assert info.what_trains in " ".join(str(t.value) for t in at.table) + " ".join(str(m.value) for m in at.markdown)
    for page, key in (("pages/1_Methods_playground.py", "pg:m1"), ("pages/2_Fine_tune.py", "ft:method")):
        at = open_page(str(ROOT / page))
        no_problem(at)
        assert info.label in at.selectbox(key=key).options  # the widget shows the module's LABEL
    at = open_page(str(ROOT / "pages/4_Memory_calculator.py"))
    no_problem(at)
    assert {info.label, info.short} & set(at.multiselect(key="mem:methods").options)
