"""Session folders (``explorer.workshop.sessions``): server-made ids, who holds a folder, the clean-up rules and the
janitor thread that applies them in the server (the browser test in ``test_browser_sessions.py`` measures it in
the running app)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from explorer.errors import DataError
from explorer.workshop import sessions as S


@pytest.fixture(autouse=True)
def sessions_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    for k in ("PEFT_EXPLORER_SESSION_MAX_AGE_S", "PEFT_EXPLORER_SESSION_GRACE_S", "PEFT_EXPLORER_SESSION_SWEEP_S"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(S, "_HOLDERS", {})
    yield tmp_path / "sessions"
    S.stop_janitor()


def test_session_folder_only_for_server_ids(tmp_path):
    sid = S.new_session_id()
    f = S.session_dir(sid, create=False, base=tmp_path)
    assert f == (tmp_path / "sessions" / sid).resolve() and not f.exists()
    for bad in ("../x", "a" * 31, sid + "/..", "/etc/passwd", "", "ABCDEF" * 6, None, 5):
        with pytest.raises(DataError):
            S.session_dir(bad, create=False, base=tmp_path)


def test_a_session_ids_runs_go_to_one_page_once():
    """Issue 21: a link copied before its owner reloaded opened the owner's run history in another browser."""
    sid = S.new_session_id()
    live = {"owner-old"}
    S.hold(sid, "owner-old", is_live=live.__contains__)
    assert not S.claim_restore(sid, live.__contains__, me="friend", wait_s=0.1)  # the owner's page is open
    live.discard("owner-old")  # the owner reloads: the old page ends, the new one asks first
    assert S.claim_restore(sid, live.__contains__, me="owner-new", wait_s=0.1)
    assert not S.claim_restore(sid, live.__contains__, me="friend", wait_s=0.1)  # the copied link, later
    assert S.may_restore(sid, live.__contains__, me="friend", wait_s=0.1)  # (what the bare check alone said)
    assert not S.claim_restore("../etc", live.__contains__, me="x")


def test_may_restore_only_when_the_holder_page_is_gone():
    sid, other_sid = S.new_session_id(), S.new_session_id()
    live = {"page-a"}
    is_live = live.__contains__
    assert S.may_restore(sid, is_live, me="page-b")  # nobody holds it (e.g. after a server restart)
    S.hold(sid, "page-a", is_live=is_live)
    assert S.holder(sid) == "page-a"
    assert S.may_restore(sid, is_live, me="page-a")  # its own page
    t0 = time.monotonic()
    assert not S.may_restore(sid, is_live, me="page-b", wait_s=0.2)  # a link opened while the owner is open
    assert time.monotonic() - t0 >= 0.2
    # a reload: the old page disconnects a moment after the new one asks
    threading.Timer(0.1, live.discard, args=("page-a",)).start()
    assert S.may_restore(sid, is_live, me="page-c", wait_s=5.0)
    # an is_live that fails (no runtime) counts as not live; bad ids and owners are not recorded
    assert S.may_restore(sid, lambda _o: 1 / 0, me="page-d", wait_s=0.0)
    S.hold("../etc", "page-x")
    S.hold(other_sid, "")
    assert S.holder("../etc") is None and S.holder(other_sid) is None


def test_holders_stay_bounded_and_forget_closed_pages_first(monkeypatch):
    monkeypatch.setattr(S, "_MAX_HOLDERS", 10)
    live = {f"page-{i}" for i in range(0, 11, 2)}  # 6 open pages, 5 closed
    sids = [S.new_session_id() for _ in range(11)]
    for i, sid in enumerate(sids):
        S.hold(sid, f"page-{i}", is_live=live.__contains__)
    # the 11th hold went over the limit: the closed pages' ids went first, then the oldest down to 5
    assert len(S._HOLDERS) == 5
    assert set(S._HOLDERS.values()) <= live and S.holder(sids[10]) == "page-10"


def _folder(age_s: float, owner: str | None = None):
    sid = S.new_session_id()
    d = S.session_dir(sid)
    (d / "history.json").write_text("{}")
    t = time.time() - age_s
    os.utime(d, (t, t))
    if owner is not None:
        S.hold(sid, owner)
    return d


def test_cleanup_rules(sessions_root):
    live = {"open-page"}
    open_old = _folder(10_000, "open-page")          # its page is open: kept, however old
    ended_old = _folder(4_000, "closed-page")        # its page ended 4000 s ago: past the hour of grace
    ended_new = _folder(100, "closed-page-2")        # ended 100 s ago: within the grace
    nobody_day = _folder(2 * 86400)                  # nobody holds it (before a restart), two days old
    nobody_hour = _folder(7200)                      # nobody holds it, two hours old
    other = sessions_root / "not-a-session"
    other.mkdir()
    os.utime(other, (1, 1))
    assert S.cleanup(is_live=live.__contains__) == 2
    assert not ended_old.exists() and not nobody_day.exists()
    assert open_old.exists() and ended_new.exists() and nobody_hour.exists() and other.exists()
    assert time.time() - open_old.stat().st_mtime < 60  # touched: its age counts from the last time it was seen
    assert S.holder(ended_old.name) is None and S.holder(ended_new.name) == "closed-page-2"
    # the page closes: an hour later its folder goes
    live.clear()
    assert S.cleanup(is_live=live.__contains__) == 0
    t = time.time() - 3601
    os.utime(open_old, (t, t))
    assert S.cleanup(is_live=live.__contains__) == 1 and not open_old.exists()
    # without is_live nobody is known to be open or ended: the age rule alone
    assert S.cleanup(max_age_s=50) == 2 and not ended_new.exists() and not nobody_hour.exists()


def test_policy_from_the_environment(monkeypatch):
    assert S.CleanupPolicy.from_env() == S.CleanupPolicy(86400.0, 3600.0, 300.0)
    monkeypatch.setenv("PEFT_EXPLORER_SESSION_MAX_AGE_S", "7200")
    monkeypatch.setenv("PEFT_EXPLORER_SESSION_GRACE_S", "-5")  # not a duration: the default
    monkeypatch.setenv("PEFT_EXPLORER_SESSION_SWEEP_S", "soon")
    assert S.CleanupPolicy.from_env() == S.CleanupPolicy(7200.0, 3600.0, 300.0)


def test_janitor_sweeps_at_start_and_then_periodically():
    old = _folder(2 * 86400)
    assert S.janitor_stats() is None
    assert S.start_janitor(policy=S.CleanupPolicy(max_age_s=86400, grace_s=3600, interval_s=0.2))
    assert not S.start_janitor()  # once per process
    deadline = time.time() + 10
    while old.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not old.exists()  # the first sweep, nobody called cleanup
    later = _folder(2 * 86400)  # appears after the start: a later sweep removes it
    while later.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not later.exists()
    while S.janitor_stats()["removed"] < 2 and time.time() < deadline:  # counted when the sweep returns
        time.sleep(0.05)
    st = S.janitor_stats()
    assert st["removed"] == 2 and st["sweeps"] >= 2 and st["last_error"] == "" and st["policy"]["interval_s"] == 0.2
    assert any(t.name == "peft-sessions-janitor" for t in threading.enumerate())
    S.stop_janitor()
    assert S.janitor_stats() is None
    assert not any(t.name == "peft-sessions-janitor" and t.is_alive() for t in threading.enumerate())
