"""AppTest: instructor and projector modes hold across pages and live in the URL; the Fine-tune run picker
follows the newest run until the user picks one.  (The real browser version: tests/browser/test_browser_modes.py.)"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.support.apptest import ROOT, no_problem, page_app

HOME = str(ROOT / "app.py")
FT = str(ROOT / "pages" / "2_Fine_tune.py")
TIMEOUT = 120


def modes(at: AppTest) -> tuple[bool, bool]:
    return at.toggle(key="instructor").value, at.toggle(key="projector").value


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_modes_come_from_the_url_and_survive_page_changes():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.query_params["instr"] = "1"
    at.query_params["proj"] = "1"
    at.run()
    no_problem(at)
    assert modes(at) == (True, True)
    for page in ("pages/1_Methods_playground.py", "pages/2_Fine_tune.py", "pages/5_SMT_block_inspector.py",
                 "pages/0_Home.py"):
        at.switch_page(page).run()
        no_problem(at)
        assert modes(at) == (True, True), page
        assert url(at).get("instr") == "1" and url(at).get("proj") == "1", (page, url(at))
    # off is kept too, and leaves the URL
    at.toggle(key="projector").set_value(False).run()
    assert modes(at) == (True, False) and "proj" not in url(at)
    at.switch_page("pages/2_Fine_tune.py").run()
    no_problem(at)
    assert modes(at) == (True, False) and "proj" not in url(at) and url(at).get("instr") == "1"


def test_a_fresh_session_starts_with_both_modes_off():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.run()
    no_problem(at)
    assert modes(at) == (False, False) and "instr" not in url(at) and "proj" not in url(at)
    at.toggle(key="instructor").set_value(True).run()
    assert url(at).get("instr") == "1"


def _entry(rid: str):
    from explorer.workshop.history import RunEntry

    return RunEntry(id=rid, config=dict(method="lora", model="tiny-bert"), records=[],
                    summary=dict(status="finished", steps_done=1, final_accuracy=0.5), label=f"run {rid}")


def test_run_picker_follows_the_newest_run_until_the_user_picks():
    from explorer.workshop.history import RunHistory

    hist = RunHistory()
    for rid in ("r1", "r2"):
        hist.add(_entry(rid))
    at = page_app(FT, TIMEOUT)
    at.query_params["model"] = "tiny-bert"
    at.session_state["run_history"] = hist
    at.run()
    no_problem(at)
    assert at.selectbox(key="ft_dl_pick").value == "r2"  # the newest, not the first one shown
    hist.add(_entry("r3"))
    at.run()
    assert at.selectbox(key="ft_dl_pick").value == "r3"  # a new run: the picker follows it
    at.selectbox(key="ft_dl_pick").set_value("r1").run()
    assert at.selectbox(key="ft_dl_pick").value == "r1"
    hist.add(_entry("r4"))
    at.run()
    no_problem(at)
    assert at.selectbox(key="ft_dl_pick").value == "r1"  # the user's pick is kept


def test_the_simple_view_is_named_for_what_it_does():
    """Issue 21: 'Instructor mode' was a switch anyone could turn on that only hid dropout and the seeds."""
    from ui import modes

    url, label, help_ = modes.MODES["instructor"]
    assert url == "instr" and label == "Simple view"  # old links keep working
    assert "Anyone can turn it on" in help_ and "changes no result" in help_
