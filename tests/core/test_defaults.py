"""Every bundled model x every method works at its default knobs: in ``inspect``, in a short training run
(tiny models), on the Methods playground and on the Fine-tune page (no error box).  The fastest models are the ones a class picks first."""

from __future__ import annotations

import pytest

from explorer.cli.core import inspect
from explorer.methods import METHODS
from explorer.engine.config import TrainConfig
from explorer.engine.train import train
from tests.support.apptest import ROOT, no_problem, open_page

MODELS = ("tiny-bert", "tiny-llama", "minilm", "smollm2-135m")


@pytest.mark.parametrize("model", MODELS)
def test_inspect_every_method_at_defaults(model):
    for method in METHODS:
        s = inspect(model, method, {})
        assert 0 < s["trainable_params"] <= s["total_params"], (model, method)
        # what trains is what the targets report (plus a fully trained head for classifiers)
        per_target = sum(t["trainable"] for t in s["targets"])
        assert per_target <= s["trainable_params"], (model, method)


@pytest.mark.parametrize("loaded_name", ["tiny_bert", "tiny_llama"])
@pytest.mark.parametrize("method", list(METHODS))
def test_tiny_models_train_at_defaults(request, loaded_name, method):
    loaded = request.getfixturevalue(loaded_name)
    cfg = TrainConfig(model=loaded.info.name, method=method, steps=2, batch_size=4, eval_every=0, eval_examples=8,
                      measure_memory=False)
    res = train(cfg, loaded=loaded)
    assert res.status == "finished", (method, res.summary.get("message"))
    assert res.summary["final_accuracy"] is not None


@pytest.mark.parametrize("model", MODELS)
def test_fine_tune_page_renders_every_method_at_defaults(model):
    for method in METHODS:
        at = open_page(str(ROOT / "pages" / "2_Fine_tune.py"), model=model, method=method)
        no_problem(at)
        assert at.selectbox(key="ft:method").value == method
        assert not at.button(key="ft_start").disabled


def method_pairs() -> list[tuple[str, str]]:
    """Every method once, two per playground page (side A and the comparison's side B)."""
    names = list(METHODS)
    return [(names[i], names[i + 1] if i + 1 < len(names) else "none") for i in range(0, len(names), 2)]


@pytest.mark.parametrize("model", MODELS)
def test_playground_draws_every_method_at_defaults(model):
    """Each bundled model with every method at its defaults, two methods per page (each side at its own
    defaults): both sides show their trainable count, no error box.  (The browser draws one such page per model
    and per method: ``tests/browser/test_browser_lessons.py``.)"""
    for m1, m2 in method_pairs():
        at = open_page(str(ROOT / "pages" / "1_Methods_playground.py"), model=model, m1=m1, m2=m2)
        no_problem(at)
        counts = [m for m in at.metric if m.label == "trainable parameters"]
        assert len(counts) == (2 if m2 != "none" else 1), (model, m1, m2, [m.label for m in at.metric])
