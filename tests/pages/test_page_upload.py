"""The Fine-tune page's own upload path (AppTest): a fresh session's first upload, the encoding box, the
run titled with the user's file name, and the upload limit the widgets are given.  Unlike calling
``save_upload``/``load_task`` directly, these tests go through ``upload_task``/``load_upload``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import no_problem, open_page, page_app

ROOT = Path(__file__).resolve().parents[2]
FT = str(ROOT / "pages" / "2_Fine_tune.py")
CMP = str(ROOT / "pages" / "3_Compare.py")

# Windows-1252 bytes written by hand: 0xe9 é, 0xef ï, 0x93/0x94 “ ”
ROWS = [(b"Le caf\xe9 \xe9tait bon", "Le café était bon", b"pos"), (b"Une id\xe9e na\xefve", "Une idée naïve", b"neg"),
        (b"Il a dit \x93super\x94", "Il a dit “super”", b"pos"), (b"Trop sal\xe9", "Trop salé", b"neg")]
W1252 = b"text,label\r\n" + b"".join(b'"' + r[0] + b" " + str(i).encode() + b'",' + r[2] + b"\r\n"
                                    for i, r in enumerate(ROWS * 8))
NAME = "avis café.csv"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.delenv("PEFT_EXPLORER_MAX_UPLOAD_MB", raising=False)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    from explorer.workshop.jobs import default_queue

    default_queue().cancel_all()


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def upload(at, name: str, raw: bytes) -> AppTest:
    at.file_uploader(key="ft_upload").set_value((name, raw, "text/csv")).run()
    return at


def test_first_upload_in_a_fresh_session_runs_under_the_users_name(tmp_path):
    at = open_page(FT, 120, model="tiny-bert", steps="4", bs="4")
    no_problem(at)
    sid = at.session_state["session_id"]
    folder = tmp_path / "sessions" / sid
    assert not folder.exists()  # a fresh session: no run yet, so no folder (the old failure's condition)
    at.radio(key="ft:src").set_value("upload").run()
    upload(at, NAME, W1252)
    no_problem(at)
    cap = captions(at)
    assert f"**{NAME}**" in cap and "encoding: Windows-1252 (detected" in cap
    assert "2 labels (neg, pos)" in cap
    stored = list((folder / "uploads").glob("upload-*.csv"))
    assert len(stored) == 1 and stored[0].read_bytes() == W1252
    at.run()
    at.run()  # reruns do not store or parse the same file again
    assert len(list((folder / "uploads").glob("upload-*.csv"))) == 1
    start = at.button(key="ft_start")
    assert not start.disabled
    start.click().run()
    run = at.session_state["ft_run"]
    assert run.label.endswith(f"· tiny-bert · {NAME}") and str(folder) not in run.label
    assert run.cfg.task == str(stored[0])  # the run reads the stored copy
    deadline = time.time() + 120
    while not (run.state.done and run.job.done):
        assert time.time() < deadline, "the run did not end"
        time.sleep(0.3)
        at.run()
    at.run()
    no_problem(at)
    assert run.state.status == "finished", run.state.message
    assert any(NAME in m.value for m in at.markdown if m.value.startswith("####"))
    e = list(at.session_state["run_history"])[0]
    assert e.summary["task"] == NAME and e.config["task"] == NAME
    assert "upload-" not in json.dumps(e.to_dict())
    assert str(tmp_path) not in str(e.to_dict())
    # Compare lists it under the user's name too
    cmp = page_app(CMP, 120)
    cmp.session_state["run_history"] = at.session_state["run_history"]
    cmp.session_state["session_id"] = sid
    cmp.run()
    assert not cmp.exception
    shown = " ".join(str(df.value.to_dict()) for df in cmp.dataframe)
    assert NAME in shown and "upload-" not in shown


def test_encoding_box_and_wrong_choice(tmp_path):
    at = open_page(FT, 120, model="tiny-bert", src="upload")
    assert at.selectbox(key="ft_encoding").options == ["auto", "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"]
    upload(at, NAME, W1252)
    at.selectbox(key="ft_encoding").set_value("utf-8").run()
    assert not at.exception
    errs = [e.value for e in at.error]
    assert len(errs) == 1 and "\n" not in errs[0].strip()
    assert "avis café.csv is not UTF-8 text (byte 19 is 0xe9)" in errs[0]
    assert at.button(key="ft_start").disabled
    at.selectbox(key="ft_encoding").set_value("cp1252").run()
    no_problem(at)
    assert "encoding: Windows-1252 (chosen)" in captions(at)
    assert at.session_state["ft_upload_cache"][1].train  # the task, parsed with the chosen encoding
    for raw, said in ((W1252.decode("cp1252").encode("utf-16"), "UTF-16 (detected from its little-endian"),
                      (b"\xef\xbb\xbf" + W1252.decode("cp1252").encode(), "UTF-8 with BOM")):
        at.selectbox(key="ft_encoding").set_value("auto").run()
        upload(at, "other.csv", raw)
        no_problem(at)
        assert said in captions(at)


def test_malformed_uploads_through_the_page(tmp_path):
    at = open_page(FT, 120, model="tiny-bert", src="upload")
    cases = [("cut.csv", b'text,label\n"fine",1\n"cut inside a quote,0\nx,1\n', "never closed"),
             ("bad.json", b'[{"text": "a", "label": ', "could not be read as JSON"),
             ("bin.csv", bytes(range(256)) * 4, "binary"),
             ("one.csv", b"text,label\n" + b"a,1\n" * 20, "single class")]
    for name, raw, needle in cases:
        upload(at, name, raw)
        assert not at.exception
        errs = [e.value for e in at.error]
        assert len(errs) == 1 and needle in errs[0] and "\n" not in errs[0].strip(), errs
        assert str(tmp_path) not in errs[0] and "upload-" not in errs[0]
        assert at.button(key="ft_start").disabled


def test_upload_widgets_take_the_one_limit(monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "7.5")
    at = open_page(FT, 120, model="tiny-bert", src="upload")
    w = at.file_uploader(key="ft_upload")
    assert w.proto.max_upload_size_mb == 8 and "up to 7.5 MiB" in w.help
    cmp = open_page(CMP, 120)
    w = cmp.file_uploader(key="cmp_import")
    assert w.proto.max_upload_size_mb == 8 and "up to 7.5 MiB" in w.help
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "0.001")  # 1,048 bytes: the page refuses a larger file
    at = open_page(FT, 120, model="tiny-bert", src="upload")
    big = W1252 + b'"one more row",pos\r\n' * 40
    assert len(W1252) < 1048 < len(big)
    upload(at, NAME, W1252)
    no_problem(at)
    upload(at, NAME, big)
    errs = [e.value for e in at.error]
    assert len(errs) == 1 and "larger than the upload limit of 1,048 bytes" in errs[0]
