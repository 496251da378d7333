"""The Claims lab page in AppTest: every card shows its shipped verdict at once; a broken results file is one
line on its card; a live re-run (quick size) goes through the run queue and redraws as seeds finish."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tests.support.apptest import no_problem, open_page
from explorer.claims import results as R
from explorer.claims import specs
from explorer.claims import stats as S

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "6_Claims_lab.py")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    from explorer.workshop.jobs import default_queue

    default_queue().cancel_all()


def verdict_boxes(at) -> list[str]:
    return [e.value for kind in (at.success, at.error, at.warning) for e in kind if "Verdict:" in str(e.value)]


def test_each_card_shows_its_shipped_verdict():
    shipped = {n: json.loads((R.ASSETS / f"{n}.json").read_text()) for n in specs.NAMES}
    at = open_page(PAGE)
    no_problem(at)
    boxes = verdict_boxes(at)
    assert len(boxes) == len(specs.NAMES), boxes
    for n, doc in shipped.items():
        assert doc["verdict"] in S.VERDICTS
        assert sum(f"Verdict: {doc['verdict']}" in b for b in boxes) == \
            sum(d["verdict"] == doc["verdict"] for d in shipped.values())
    titles = [h.value for h in at.subheader]
    assert titles == [specs.EXPERIMENTS[n].title for n in specs.NAMES]
    texts = [e.label for e in at.expander if e.label.startswith("Chart as text:")]
    assert len(texts) == len(specs.NAMES) and "Chart as text: this chart" not in texts, texts
    md = " ".join(m.value for m in at.markdown)
    for n, doc in shipped.items():  # each arm's mean accuracy, as stored, in its card's table
        for a in doc["arms"]:
            assert f"| {a['label']} | {a['adapter_params']:,} |" in md
            assert f"{a['mean']:.3f}" in md
        assert "Fine_tune?model=minilm&src=built-in&task=bbc-news" in md
    assert len(at.dataframe) == len(specs.NAMES)  # one table of tests per card


def test_broken_and_missing_results_are_one_line_per_card(tmp_path, monkeypatch):
    (tmp_path / "smt.json").write_text("{broken")
    monkeypatch.setattr(R, "ASSETS", tmp_path)
    at = open_page(PAGE)
    assert not at.exception
    infos = [i.value for i in at.info]
    assert any("smt.json: not a readable results file" in i for i in infos), infos
    assert sum("python -m explorer claims --run" in i for i in infos) == len(specs.NAMES) - 1
    assert not verdict_boxes(at)


def test_live_rerun_quick_redraws_as_seeds_finish():
    at = open_page(PAGE)
    at.selectbox(key="claims_size_sparta").set_value("quick").run()
    at.button(key="claims_run_sparta").click().run()
    no_problem(at)
    live = at.session_state["claims_live"]["sparta"]
    seen = set()
    deadline = time.time() + 150
    while not live.done:
        assert time.time() < deadline, "the re-run did not finish"
        time.sleep(1.0)
        at.run()
        seen.add(len(live.document()["records"]))
    at.run()
    no_problem(at)
    doc = live.document()
    assert len(doc["records"]) == len(specs.get("sparta").arms) * len(specs.SIZES["quick"].seeds)
    assert all(r["status"] == "finished" for r in doc["records"])
    assert len(seen) > 1  # the page saw partial results before the end
    assert doc["verdict"] in S.VERDICTS
    assert at.radio(key="claims_show_sparta").value == "this re-run"
    assert any(f"Verdict: {doc['verdict']}" in b for b in verdict_boxes(at))
    hist = at.session_state["run_history"]
    assert sum(1 for e in hist if (e.label or "").startswith("claims · ")) == len(doc["records"])


def test_cards_say_what_each_interval_shows_and_projector_tables_grow():
    """Issue 21: the verdict's reason is on the card (not in a closed box), the held-out loss column is there,
    DoRA's identical accuracies are explained, and in projector mode the tests are an HTML table (it grows with
    the type; the data grid kept its small font)."""
    at = open_page(PAGE, proj="1")
    no_problem(at)
    visible = [m.value for m in at.markdown]  # markdown outside expanders too (an expander's would also show here)
    assert any(v.startswith("- **LoRA-SP r=8 keeps LoRA r=8's accuracy") and "wholly below zero" in v
               and "straddles the −2-point margin" in v for v in visible)
    in_boxes = [m.value for e in at.expander for m in e.markdown]
    assert not any("wholly below zero" in v for v in in_boxes)  # visible without opening a box
    assert any("held-out loss (mean)" in v for v in visible)
    assert any("have exactly the same accuracy on every seed" in v and "DoRA r=8" in v for v in visible)
    assert len(at.table) == len(specs.NAMES) and not at.dataframe
    at = open_page(PAGE)
    assert len(at.dataframe) == len(specs.NAMES)
