"""The class board's core (explorer.workshop.board): share / list / hide / clear, the size bound, a restart, concurrent
writers, hostile names, floods, the instructor token; and its chart (explorer.views.figures_runs.board_scatter)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from explorer.workshop import board as B
from explorer.workshop.board import Board, BoardError, clean_name

TOKEN = "correct horse battery"


def fields(**kw):
    f = dict(method="lora", model="minilm", task="colour-shape-easy", knobs="rank=4", trainable=36_864,
             accuracy=0.75, peak_bytes=95 * 2**20, steps=60)
    f.update(kw)
    return f


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def path(tmp_path):
    return tmp_path / "board.sqlite"


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(B.TOKEN_ENV, TOKEN)
    return TOKEN


def test_share_list_and_public_fields_only(path):
    b = Board(path)
    got = b.share(fields(), who="s" * 32, name="  Ada   Lovelace ", run_key="run1")
    assert got["name"] == "Ada Lovelace" and got["id"] == 1
    b.share(fields(method="smt", knobs="block_size=8 blocks=4", trainable=2048, accuracy=0.5), who="t" * 32,
            name=None, run_key="run1")
    es = b.entries()
    assert [e["method"] for e in es] == ["lora", "smt"]
    assert set(es[0]) == set(B.PUBLIC)  # what the chart needs and nothing else
    assert es[1]["name"] == "" and es[1]["trainable"] == 2048 and es[1]["accuracy"] == 0.5
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                               if path.with_name(path.name + "-wal").exists() else b"")
    assert b"s" * 32 not in raw and b"t" * 32 not in raw  # the session id is never stored
    assert b.counts() == (2, 0)


def test_paths_never_reach_the_board(path):
    b = Board(path)
    e = b.share(fields(model="/home/alice/models/my-bert", task="C:\\Users\\bob\\data.csv"), who="a")
    assert e["model"] == "my-bert" and e["task"] == "data.csv"
    e = b.share(fields(model="org/name", task="<img src=x onerror=alert(1)>"), who="b")
    assert e["model"] == "org/name" and "<" not in e["task"] and ">" not in e["task"]


def test_same_run_twice_refused_and_bad_runs_refused(path):
    b = Board(path)
    b.share(fields(), who="a", run_key="run1")
    with pytest.raises(BoardError, match="already on the class board"):
        b.share(fields(), who="a", run_key="run1")
    b.share(fields(), who="b", run_key="run1")  # another session's run1
    for bad, msg in [(dict(method="evil"), "cannot be shared"), (dict(accuracy=1.5), "final accuracy"),
                     (dict(accuracy=float("nan")), "final accuracy"), (dict(trainable=0), "trainable"),
                     (dict(steps=True), "step count"), (dict(peak_bytes=-1), "peak memory")]:
        with pytest.raises(BoardError, match=msg):
            b.share(fields(**bad), who="c")
    assert len(b.entries()) == 2


def test_fields_from_run_needs_a_finished_run_with_accuracy():
    from explorer.workshop.history import RunEntry

    cfg = dict(method="lora", model="tiny-bert", task="colour-shape-easy", knobs=dict(rank=4, alpha=8.0, seed=1))
    summ = dict(status="finished", final_accuracy=0.625, trainable_params=1234, peak_memory_bytes=4096,
                steps_done=30)
    f = B.fields_from_run(RunEntry("run1", cfg, dict(summ), []))
    assert f == dict(method="lora", model="tiny-bert", task="colour-shape-easy", knobs="rank=4 alpha=8",
                     trainable=1234, accuracy=0.625, peak_bytes=4096, steps=30)
    with pytest.raises(BoardError, match="only finished runs.*stopped"):
        B.fields_from_run(RunEntry("run2", cfg, dict(summ, status="stopped"), []))
    with pytest.raises(BoardError, match="no final accuracy"):
        B.fields_from_run(RunEntry("run3", cfg, dict(summ, final_accuracy=None), []))


@pytest.mark.parametrize("name, why", [
    ("a\x1b[31mred", "control characters"), ("tab\there", "control characters"), ("line\nbreak", "control"),
    ("<script>alert(1)</script>", "less-than sign"), ("**bold**", "asterisk"), ("[link](http://x)", "left square"),
    (":red[x]", "colon"), ("`code`", "grave accent"), ("x" * 41, "41 characters"), ("y" * 5000, "too long"),
    ("\u200b\u200d\u2060", "empty after removing"), ("\u202e\u200b", "empty after removing"), (b"bytes", "text"),
    (12, "text")])
def test_hostile_names_refused_with_one_line(path, name, why):
    b = Board(path)
    with pytest.raises(BoardError) as ei:
        b.share(fields(), who="a", name=name)
    msg = str(ei.value)
    assert why in msg and "\n" not in msg and len(msg) < 200
    assert b.entries() == []


def test_names_cleaned():
    assert clean_name("") == clean_name("   ") == clean_name(None) == ""
    assert clean_name("Zoë  O'Neil-Smith") == "Zoë O'Neil-Smith"
    assert clean_name("ﬁnn") == "finn"  # NFKC
    assert clean_name("An\u200bna") == "Anna"  # zero-width removed
    assert clean_name("x" * 40) == "x" * 40
    assert clean_name("李 雷") == "李 雷"


def test_bound_drops_the_oldest(path):
    b = Board(path, max_entries=5, session_limit=(100, 60), global_limit=(100, 60))
    for i in range(8):
        b.share(fields(trainable=1000 + i), who=f"s{i}")
    es = b.entries()
    assert [e["trainable"] for e in es] == [1003, 1004, 1005, 1006, 1007]


def test_survives_a_restart(path, token):
    b = Board(path, clock=Clock())
    b.share(fields(), who="a", name="Ada", run_key="run1")
    b.share(fields(method="smt"), who="a", run_key="run2")
    b.hide(2, TOKEN, who="i")
    del b
    b2 = Board(path)  # a new server process opens the same file
    assert [(e["name"], e["method"]) for e in b2.entries()] == [("Ada", "lora")]
    assert b2.counts() == (1, 1)
    with pytest.raises(BoardError, match="already"):
        b2.share(fields(), who="a", run_key="run1")  # the salt is kept in the file: the check still holds
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers(path):
    n_threads, per = 8, 12
    Board(path)
    errors = []

    def writer(i):
        b = Board(path, session_limit=(1000, 60), global_limit=(1000, 60))  # like another server process
        for j in range(per):
            try:
                b.share(fields(trainable=1 + i * 100 + j), who=f"session{i}", run_key=f"run{j}")
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors
    es = Board(path).entries()
    assert len(es) == n_threads * per
    assert sorted(e["trainable"] for e in es) == sorted(1 + i * 100 + j for i in range(n_threads) for j in range(per))
    assert len({e["id"] for e in es}) == len(es)


def test_concurrent_flood_never_passes_the_global_limit(path):
    Board(path)
    ok, refused = [], []

    def writer(i):
        b = Board(path, session_limit=(1000, 60), global_limit=(10, 60))
        for j in range(5):
            try:
                b.share(fields(), who=f"s{i}", run_key=f"r{j}")
                ok.append(1)
            except BoardError as e:
                refused.append(str(e))

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(ok) == 10 and len(refused) == 20  # 30 tries, exactly the limit got through
    assert all("the room shared 10 runs" in r for r in refused)


def test_flood_per_session_and_global(path):
    clk = Clock()
    b = Board(path, session_limit=(3, 60), global_limit=(5, 60), clock=clk)
    for i in range(3):
        b.share(fields(), who="a")
    with pytest.raises(BoardError, match=r"you shared 3 runs in the last 60 s; wait 60 s"):
        b.share(fields(), who="a")
    clk.t += 20
    with pytest.raises(BoardError, match="wait 40 s"):
        b.share(fields(), who="a")
    b.share(fields(), who="b")
    b.share(fields(), who="c")
    with pytest.raises(BoardError, match=r"the room shared 5 runs .* try again in 40 s"):
        b.share(fields(), who="d")
    clk.t += 41  # the first three have left the window
    b.share(fields(), who="a")
    b.share(fields(), who="d")
    assert len(b.entries()) == 7


def test_token_required_to_hide_and_clear(path, monkeypatch):
    b = Board(path)
    b.share(fields(), who="a")
    monkeypatch.delenv(B.TOKEN_ENV, raising=False)
    assert "has not set PEFT_EXPLORER_INSTRUCTOR_TOKEN" in B.token_problem()
    with pytest.raises(BoardError, match="disabled"):
        b.clear("", who="x")
    monkeypatch.setenv(B.TOKEN_ENV, "short")
    with pytest.raises(BoardError, match="shorter than 8"):
        b.clear("short", who="x")
    monkeypatch.setenv(B.TOKEN_ENV, TOKEN)
    assert B.token_problem() is None
    for wrong in ("", "correct horse", TOKEN + " ", None, 123):
        with pytest.raises(BoardError, match="wrong instructor token|type the instructor token"):
            b.clear(wrong, who=f"x{wrong!r}")
    assert len(b.entries()) == 1
    assert b.hide([1], TOKEN, who="i") == 1
    assert b.entries() == [] and len(b.entries(include_hidden=True)) == 1
    assert b.hide([1], TOKEN, who="i", hidden=False) == 1 and len(b.entries()) == 1
    assert b.clear(TOKEN, who="i") == 1 and b.entries() == []


def test_wrong_tokens_limited_per_session(path, token):
    clk = Clock()
    b = Board(path, clock=clk)
    for _ in range(5):
        with pytest.raises(BoardError, match="wrong"):
            b.authorize("guess", who="mallory")
    with pytest.raises(BoardError, match="too many wrong instructor tokens"):
        b.authorize(TOKEN, who="mallory")  # even the right one, until the window passes
    b.authorize(TOKEN, who="instructor")  # another session is not locked out
    clk.t += 301
    b.authorize(TOKEN, who="mallory")


def test_token_compared_with_compare_digest(path, token, monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(B.hmac, "compare_digest", lambda a, b_: calls.append((a, b_)) or real(a, b_))
    Board(path).authorize(TOKEN, who="i")
    assert calls == [(TOKEN.encode(), TOKEN.encode())]


def test_unreadable_file_is_one_line(tmp_path):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BoardError, match="unreadable") as ei:
        Board(p)
    assert "\n" not in str(ei.value)


def test_default_board_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(B.PATH_ENV, str(tmp_path / "x" / "b.sqlite"))
    monkeypatch.setenv(B.MAX_ENV, "7")
    b = B.default_board()
    assert b.path == tmp_path / "x" / "b.sqlite" and b.max_entries == 7 and b.path.exists()
    assert (b.path.stat().st_mode & 0o777) == 0o600
    monkeypatch.delenv(B.PATH_ENV)
    monkeypatch.setenv("PEFT_EXPLORER_CACHE", str(tmp_path / "cache"))
    assert B.default_board().path == tmp_path / "cache" / "class-board.sqlite"


def test_method_names_and_colours_match_the_methods():
    from explorer.views.figures_runs import METHOD_COLORS
    from explorer.methods import METHODS

    assert set(B.METHOD_NAMES) == set(METHODS) == set(METHOD_COLORS)
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)


def test_board_scatter_colours_and_means():
    from explorer.views.figures_runs import METHOD_COLORS, board_scatter

    es = [dict(fields(trainable=100, accuracy=0.5), name="a"), dict(fields(trainable=100, accuracy=0.7), name=""),
          dict(fields(trainable=400, accuracy=0.9), name="b"),
          dict(fields(method="smt", trainable=300, accuracy=0.6, peak_bytes=None), name="c")]
    fig = board_scatter(es, "trainable")
    dots = {t.name: t for t in fig.data if t.mode == "markers"}
    assert dots["lora"].marker.color == METHOD_COLORS["lora"] and dots["smt"].marker.color == METHOD_COLORS["smt"]
    assert list(dots["lora"].y) == pytest.approx([50, 70, 90])
    mean = next(t for t in fig.data if t.mode == "lines")
    assert list(mean.x) == [100, 400] and list(mean.y) == pytest.approx([60, 90])  # (50 + 70) / 2
    assert dots["lora"].customdata[1][0] == "anonymous"
    mem = board_scatter(es, "memory")
    assert [t.name for t in mem.data if t.mode == "markers"] == ["lora"]  # no peak memory: not on that chart
    assert list(mem.data[0].x) == pytest.approx([95, 95, 95])  # MiB
    assert board_scatter([], "trainable").layout.annotations[0].text == "No shared runs yet"


def test_anonymous_sharers_are_participants(path):
    """Issue 21: the board counted participants by display name, so anonymous shares counted as nobody."""
    b = Board(path)
    b.share(fields(), who="s" * 32, name="Ada", run_key="run1")
    b.share(fields(accuracy=0.8), who="s" * 32, name="Ada", run_key="run2")  # one person, two runs
    b.share(fields(), who="t" * 32, name="", run_key="run1")
    b.share(fields(), who="u" * 32, name="", run_key="run1")
    b.share(fields(), who="u" * 32, name="", run_key="run2")
    got = b.participants()
    assert got == dict(total=3, named=1, anonymous=2, unknown=0)
    es = b.entries()
    assert b.participants([es[2]["id"], es[3]["id"]])["total"] == 2  # counted over the entries shown
    assert "sharer" not in es[0]  # the keyed hash never leaves the board
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                               if path.with_name(path.name + "-wal").exists() else b"")
    assert b"u" * 32 not in raw


def test_a_board_from_before_sharers_were_kept_still_opens(path):
    b = Board(path)
    b.share(fields(), who="s" * 32, name="", run_key="run1")
    con = sqlite3.connect(path)
    con.execute("UPDATE entries SET sharer = NULL")  # as a row written by the previous version
    con.commit()
    con.close()
    got = Board(path).participants()
    assert got["unknown"] == 1 and got["total"] == 0


def test_board_axes_are_labelled_and_memory_starts_at_zero():
    """Issue 21: the log x axis had no tick labels; 111.8-112.2 MiB filled the memory axis."""
    from explorer.views.figures_runs import board_scatter

    es = [dict(fields(trainable=t, accuracy=a, peak_bytes=int(m * 2**20)), name="")
          for t, a, m in ((73_728, 0.9, 111.8), (75_653, 0.92, 112.2), (74_000, 0.91, 112.0))]
    fig = board_scatter(es, "trainable")
    assert fig.layout.xaxis.tickmode == "array" and len(fig.layout.xaxis.ticktext) >= 3
    mem = board_scatter(es, "memory")
    assert mem.layout.xaxis.rangemode == "tozero"
    assert any("between 111.8 and 112.2 MiB<br>(0.4 MiB apart" in a.text for a in mem.layout.annotations)


def test_a_table_column_is_as_wide_as_its_longest_text():
    from explorer.views.fmt import text_width_px

    knobs = ["rank=8", "targets=query,key,value,dense block_size=32 blocks=72 warmup_steps=15"]
    assert text_width_px(knobs) >= 7 * len(knobs[1])
    assert text_width_px([]) == 80 and text_width_px(["x" * 1000]) == 1200


def test_the_share_line_never_doubles_a_period():
    assert B.shared_message("run3", "Zoë K.") == "Shared run3 to the class board as Zoë K."
    assert B.shared_message("run3", "Ada") == "Shared run3 to the class board as Ada."
    assert B.shared_message("run3", "") == "Shared run3 to the class board as anonymous."
    assert clean_name("Zoë K.") == "Zoë K."
