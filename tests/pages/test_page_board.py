"""Page tests (AppTest) of the class board: share a run of the session's history, see it on the board page, the
instructor's clear refused without the token and accepted with it; the share controls on Fine-tune and Compare."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import no_problem, page_app, qp

ROOT = Path(__file__).resolve().parents[2]
BOARD = str(ROOT / "pages" / "7_Class_board.py")
FT = str(ROOT / "pages" / "2_Fine_tune.py")
CMP = str(ROOT / "pages" / "3_Compare.py")
TOKEN = "the instructor's token"
SID = "ab" * 16


@pytest.fixture(scope="module")
def hist(tiny_bert):
    """A real 4-step tiny-bert LoRA run (finished, with a final accuracy) in a history."""
    import torch

    from explorer.workshop.history import RunHistory, entry_from_result
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = train(TrainConfig(model="tiny-bert", method="lora", knobs=dict(rank=2), steps=4, eval_every=2,
                                eval_examples=32, batch_size=4), loaded=tiny_bert)
    finally:
        torch.set_num_threads(before)
    h = RunHistory()
    h.add(entry_from_result(res, run_id="run1", label="lora r=2", keep_adapter=False))
    assert h.runs[0].status == "finished" and h.runs[0].summary["final_accuracy"] is not None
    return h


@pytest.fixture(autouse=True)
def board_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_BOARD", str(tmp_path / "board.sqlite"))
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.delenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", raising=False)
    return tmp_path / "board.sqlite"


def page(path: str, hist=None, **params) -> AppTest:
    at = page_app(path, 90)
    for k, v in params.items():
        at.query_params[k] = str(v)
    if hist is not None:
        at.session_state["run_history"] = hist
        at.session_state["session_id"] = SID
    at.run()
    return at


def board_entries():
    from explorer.workshop.board import default_board

    return default_board().entries(include_hidden=True)


def test_share_from_history_then_seen_on_the_board(hist):
    at = page(BOARD, hist)
    no_problem(at)
    assert any("Nothing shared yet" in i.value for i in at.info)
    at.text_input(key="board_board_name").input("Ada Lovelace").run()
    at.button(key="board_board_share").click().run()
    no_problem(at)
    assert any("Shared run1 to the class board as Ada Lovelace" in s.value for s in at.success)
    [e] = board_entries()
    s = hist.runs[0].summary
    assert (e["name"], e["method"], e["model"], e["trainable"], e["accuracy"], e["peak_bytes"], e["steps"]) == \
        ("Ada Lovelace", "lora", "tiny-bert", s["trainable_params"], s["final_accuracy"], s["peak_memory_bytes"], 4)
    df = at.dataframe[0].value
    assert list(df["name"]) == ["Ada Lovelace"] and list(df["trainable params"]) == [s["trainable_params"]]
    assert abs(df["final accuracy (%)"][0] - 100 * s["final_accuracy"]) < 1e-9
    assert not [b for b in at.button if b.key == "board_board_share"]  # shared once: no second button
    # another participant's page (a fresh session) sees it too
    other = page(BOARD)
    no_problem(other)
    assert list(other.dataframe[0].value["name"]) == ["Ada Lovelace"]
    assert any(m.label == "shared runs" and m.value == "1" for m in other.metric)


def test_hostile_name_refused_in_one_line(hist):
    at = page(BOARD, hist)
    at.text_input(key="board_board_name").input("<img src=x onerror=alert(1)>").run()
    at.button(key="board_board_share").click().run()
    assert not at.exception
    [err] = at.error
    assert err.value.startswith("Not shared: the display name may hold only letters") and "\n" not in err.value
    assert board_entries() == []


def test_clear_refused_without_token_accepted_with_it(hist, monkeypatch):
    from explorer.workshop.board import default_board

    default_board().share(dict(method="smt", model="minilm", task="t", knobs="k", trainable=10, accuracy=0.5,
                               peak_bytes=100, steps=3), who="someone", name="Bob")
    at = page(BOARD, hist)
    no_problem(at)
    assert any("has not set PEFT_EXPLORER_INSTRUCTOR_TOKEN" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key in ("board_unlock", "board_clear")]
    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    at.run()
    at.text_input(key="board_token").input("a guess").run()
    at.button(key="board_unlock").click().run()
    assert [e.value for e in at.error] == ["Refused: wrong instructor token."]
    assert not [b for b in at.button if b.key == "board_clear"] and len(board_entries()) == 1
    at.text_input(key="board_token").input(TOKEN).run()
    at.button(key="board_unlock").click().run()
    no_problem(at)
    [eid] = [e["id"] for e in board_entries()]
    at.multiselect(key="board_to_hide").set_value([eid]).run()
    at.button(key="board_hide").click().run()
    assert [e["hidden"] for e in board_entries()] == [True]
    assert any("Nothing shown (1 hidden by the instructor)" in i.value for i in at.info)  # hidden entries leave the chart and the table
    at.multiselect(key="board_to_show").set_value([eid]).run()
    at.button(key="board_show").click().run()
    assert [e["hidden"] for e in board_entries()] == [False] and list(at.dataframe[0].value["name"]) == ["Bob"]
    assert at.button(key="board_clear").disabled  # until the confirmation box is ticked
    at.checkbox(key="board_confirm").check().run()
    at.button(key="board_clear").click().run()
    no_problem(at)
    assert any("Cleared the board (1 entry deleted)" in s.value for s in at.success)
    assert board_entries() == []
    assert any("Nothing shared yet" in i.value for i in at.info)
    assert all(TOKEN not in str(v) for v in at.query_params.values())  # never in the URL


def test_compare_shares_and_shows_the_board(hist):
    at = page(CMP, hist)
    no_problem(at)
    assert any("No run has been shared" in i.value for i in at.info)
    at.button(key="cmp_board_share").click().run()  # blank name: anonymous
    no_problem(at)
    assert any("as anonymous" in s.value for s in at.success)
    assert [e["name"] for e in board_entries()] == [""]
    assert not [b for b in at.button if b.key == "cmp_board_share"]
    fresh = page(CMP, hist)  # a new page of the same session id: the board remembers the run was shared
    assert any(c.value == "run1 is on the class board." for c in fresh.caption)
    assert not [b for b in fresh.button if b.key == "cmp_board_share"]
    assert any("**1** run shared by the room" in m.value for m in at.markdown)


def test_fine_tune_share_control(hist):
    at = page(FT, hist, model="tiny-bert")
    no_problem(at)
    at.text_input(key="ft_board_name").input("Grace").run()
    at.button(key="ft_board_share").click().run()
    no_problem(at)
    assert [e["name"] for e in board_entries()] == ["Grace"]
    assert any(s.value == "Shared run1 to the class board as Grace." for s in at.success)
    assert not [b for b in at.button if b.key == "ft_board_share"]


def test_groups_and_the_link_to_one(board_file):
    from explorer.workshop.board import Board

    b = Board(board_file, session_limit=(100, 60))
    for i, (model, task) in enumerate([("minilm", "sst2-mini")] * 2 + [("tiny-bert", "colour-shape-easy")] * 3):
        b.share(dict(method="lora", model=model, task=task, knobs=f"rank={2 ** i}", trainable=100 * 4 ** i,
                     accuracy=0.5 + i / 20, peak_bytes=2**20 * (i + 1), steps=10), who="s")
    at = page(BOARD)
    no_problem(at)
    assert at.selectbox(key="board:group").value == "tiny-bert · colour-shape-easy"  # the pair most runs are of
    assert len(at.dataframe[0].value) == 3 and qp(at, "group") == "tiny-bert · colour-shape-easy"
    at = page(BOARD, group="minilm · sst2-mini")  # a link for the projector
    assert sorted(at.dataframe[0].value["knobs"]) == ["rank=1", "rank=2"]
    at.selectbox(key="board:group").set_value("all shared runs").run()
    assert len(at.dataframe[0].value) == 5 and qp(at, "group") == "all shared runs"
    at = page(BOARD, group="<script>x</script>")  # not a pair on the board: the default, with a notice
    no_problem(at)
    assert at.selectbox(key="board:group").value == "tiny-bert · colour-shape-easy"
    assert any("adjusted" in i.value for i in at.info)


def test_anonymous_shares_are_participants_and_knobs_show_whole(board_file):
    """Issue 21: one anonymous and one named sharer made 'participants 1'; the knobs column was cut off."""
    import json

    from explorer.workshop.board import Board

    knobs = "targets=query,key,value,dense block_size=32 blocks=72 warmup_steps=15"
    f = dict(method="smt", model="minilm", task="colour-shape", knobs=knobs, trainable=73_728, accuracy=0.9,
             peak_bytes=112 * 2**20, steps=60)
    b = Board(board_file)
    b.share(f, who="a" * 32, name="", run_key="run1")
    b.share(f, who="b" * 32, name="Bo", run_key="run1")
    at = page(BOARD)
    no_problem(at)
    assert next(m.value for m in at.metric if m.label == "participants") == "2"
    width = json.loads(at.dataframe[0].proto.columns)["knobs"]["width"]
    assert isinstance(width, int) and width >= 7 * len(knobs)
