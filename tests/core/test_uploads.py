"""Uploads and data files (issue 10): the first upload of a session, the user's file name, encodings,
one-line refusals, one upload limit everywhere, and held-out splits that are really held out."""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from explorer import data
from explorer.data import builtin
from explorer.workshop import history, security, sessions
from explorer.errors import DataError, user_message

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

# A real-looking Windows-1252 export, written byte by byte (not with Python's cp1252 codec), and the
# text each row must come back as.  0xe9 = é, 0xef = ï, 0x93/0x94 = “ ”, 0x96 = –, 0x80 = €.
W1252_ROWS = [
    (b"Le caf\xe9 \xe9tait bon", "Le café était bon", b"pos"),
    (b"Une id\xe9e na\xefve", "Une idée naïve", b"neg"),
    (b"Il a dit \x93super\x94 \x96 vraiment", "Il a dit “super” – vraiment", b"pos"),
    (b"Trop cher: 12 \x80", "Trop cher: 12 €", b"neg"),
]


def w1252_csv(n: int = 40) -> tuple[bytes, list[str]]:
    body, texts = b"text,label\r\n", []
    for i in range(n):
        raw, text, lab = W1252_ROWS[i % len(W1252_ROWS)]
        body += b'"' + raw + b" #" + str(i).encode() + b'",' + lab + b"\r\n"
        texts.append(f"{text} #{i}")
    return body, texts


UNICODE_ROWS = "text,label\n" + "".join(f"Größe {i} – “ok” naïve café,{'a' if i % 2 else 'b'}\n" for i in range(30))


@pytest.fixture(autouse=True)
def sessions_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.delenv("PEFT_EXPLORER_MAX_UPLOAD_MB", raising=False)


# ----------------------------------------------------------------------------- the first upload of a session


def test_first_upload_of_a_fresh_session_is_stored_and_loaded(tmp_path):
    """The bug: the session folder is made lazily by the first run's history.json, and the page's upload
    went to it before: ``[Errno 2] No such file or directory: '.../sessions/<id>'``."""
    sid = sessions.new_session_id()
    folder = sessions.session_dir(sid, create=False)  # what the page had: a name, no folder yet
    assert not folder.exists()
    body, texts = w1252_csv()
    path = history.save_upload(folder, "ventes.csv", body)  # raised FileNotFoundError before the fix
    assert path.parent == folder / "uploads" and path.read_bytes() == body
    task = security.load_uploaded_task(sessions.session_dir(sessions.new_session_id(), create=False), "avis clients.csv",
                                       body, "seq-cls")
    assert task.name == "avis clients.csv"
    assert sorted(t for t, _ in task.train + task.eval) == sorted(texts)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_one_session_folder_system(tmp_path):
    # ids and folders are made in one module only: the history keeps runs in a folder it is given
    for name in ("new_session_id", "valid_session_id", "session_folder", "hold", "may_restore", "cleanup"):
        assert not hasattr(history, name), name
    sid = sessions.new_session_id()
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    a = sessions.session_dir(sid, create=False, base=tmp_path)
    assert not a.exists()
    b = sessions.session_dir(sid, base=tmp_path)
    assert a == b == (tmp_path / "sessions" / sid).resolve() and b.is_dir()
    assert sessions.session_dir(sid, create=False) == sessions.root() / sid  # the default root
    for bad in ("../x", "A" * 32, "g" * 32, sid + "/..", "", None):
        with pytest.raises(DataError):
            sessions.session_dir(bad, create=False)
        with pytest.raises(DataError):
            sessions.session_dir(bad)
    # cleanup sees the history's folders, the uploads inside them included
    old = sessions.session_dir(sessions.new_session_id())
    history.RunHistory(old).save()
    history.save_upload(old, "x.csv", b"text,label\na,b\n")
    os.utime(old, (1, 1))
    assert sessions.cleanup(max_age_s=3600) == 1 and not old.exists() and b.exists()


def test_stored_upload_keeps_the_users_name_everywhere(tmp_path, tiny_bert):
    """Task.name, the task a run loads again from the stored path, the run's summary, its history entry
    (config included) and its title: the user's file name, never the server's path or upload-<hex>."""
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    folder = sessions.session_dir(sessions.new_session_id())
    body, _ = w1252_csv(24)
    task = security.load_uploaded_task(folder, "C:\\Users\\ana\\Mes avis\x07.csv", body, "seq-cls")
    assert task.name == "Mes avis?.csv"  # folders dropped, control characters shown as '?'
    stored = Path(task.path)
    assert stored.parent == folder / "uploads" and re.fullmatch(r"upload-[0-9a-f]{16}\.csv", stored.name)
    assert data.display_name(str(stored)) == "Mes avis?.csv" and data.display_name("bbc-news") == "bbc-news"
    assert task.source == "upload: Mes avis?.csv"
    again = data.load_task(str(stored), "seq-cls")  # what the training thread does with cfg.task
    assert again.name == "Mes avis?.csv" and again.train == task.train
    res = train(TrainConfig(model="tiny-bert", task=str(stored), steps=2, eval_every=0, eval_examples=8,
                            batch_size=4), loaded=tiny_bert)
    assert res.summary["status"] == "finished", res.summary.get("message")
    e = history.entry_from_result(res, run_id="run1", keep_adapter=False)
    for shown in (e.summary["task"], e.config["task"]):
        assert shown == "Mes avis?.csv"
    text = json.dumps(e.to_dict())
    assert str(folder) not in text and "upload-" not in text


# ----------------------------------------------------------------------------- encodings


def _write(tmp_path, name, raw: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(raw)
    return str(p)


def test_windows_1252_file_is_detected_and_read_right(tmp_path):
    body, texts = w1252_csv()
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # the file really is not UTF-8
    t = data.load_task(_write(tmp_path, "w.csv", body), "seq-cls")
    assert sorted(x for x, _ in t.train + t.eval) == sorted(texts)
    assert body.index(b"\xe9") == 19  # the first byte that is not UTF-8 (0-based offset)
    assert t.notes[0].startswith("encoding: Windows-1252 (detected: not UTF-8 from byte 19")
    assert t.label_names == ["neg", "pos"]


@pytest.mark.parametrize("bom,codec,said", [
    (b"", "utf-8", "encoding: UTF-8 (detected)"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8 with BOM (detected from its byte-order mark)"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 (detected from its little-endian byte-order mark)"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 (detected from its big-endian byte-order mark)"),
    (b"", "utf-16-le", "UTF-16 LE (detected: zero bytes in every other position, no BOM)"),
    (b"", "utf-16-be", "UTF-16 BE (detected: zero bytes in every other position, no BOM)"),
])
def test_unicode_files_with_and_without_bom(tmp_path, bom, codec, said):
    raw = bom + UNICODE_ROWS.encode(codec)
    t = data.load_task(_write(tmp_path, "u.csv", raw), "seq-cls")
    assert said in t.notes[0]
    expected = sorted(line.rsplit(",", 1)[0] for line in UNICODE_ROWS.splitlines()[1:])
    assert sorted(x for x, _ in t.train + t.eval) == expected  # no BOM character left in the header or text


def test_cyrillic_code_page_is_recognised(tmp_path):
    rows = "text,label\n" + "".join(f"Это очень хороший фильм номер {i},{i % 2}\n" for i in range(30))
    t = data.load_task(_write(tmp_path, "ru.csv", rows.encode("cp1251")), "seq-cls")
    assert "cp1251" in t.notes[0]
    assert t.train[0][0].startswith("Это очень хороший фильм")


def test_explicit_encodings(tmp_path):
    body, texts = w1252_csv()
    p = _write(tmp_path, "w.csv", body)
    t = data.load_task(p, "seq-cls", encoding="cp1252")
    assert t.notes[0] == "encoding: Windows-1252 (chosen)" and sorted(x for x, _ in t.train + t.eval) == sorted(texts)
    lat = data.load_task(p, "seq-cls", encoding="latin-1")  # every byte is Latin-1: loads, but says so
    assert "Latin-1 (ISO-8859-1) (chosen); auto-detection would read it as Windows-1252" in lat.notes[0]
    assert any("\x93super\x94" in x for x, _ in lat.train + lat.eval)  # what Latin-1 makes of 0x93/0x94
    with pytest.raises(DataError, match=r"^w.csv is not UTF-8 text \(byte 19 is 0xe9\); choose another encoding"):
        data.load_task(p, "seq-cls", encoding="utf-8")
    with pytest.raises(DataError, match=r"^w.csv does not read as UTF-16 text \(its 41 line breaks become 0\)"):
        data.load_task(p, "seq-cls", encoding="utf-16")
    u16 = _write(tmp_path, "u16.csv", UNICODE_ROWS.encode("utf-16"))
    with pytest.raises(DataError, match="holds NUL characters: a binary file, or another encoding"):
        data.load_task(u16, "seq-cls", encoding="cp1252")
    u8 = _write(tmp_path, "u8.csv", codecs.BOM_UTF8 + UNICODE_ROWS.encode())
    assert data.load_task(u8, "seq-cls", encoding="utf-8").label_names == ["a", "b"]  # a BOM never names a column
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        data.load_task(p, "seq-cls", encoding="klingon")
    with pytest.raises(DataError, match="not a text encoding"):
        data.load_task(p, "seq-cls", encoding="rot13")


@pytest.mark.parametrize("raw", [bytes(range(256)) * 8, b"PK\x03\x04" + bytes(range(40)) * 20,
                                 b"\x7fELF\x02\x01\x01" + b"\x00" * 100])
def test_binary_files_are_still_refused(tmp_path, raw):
    p = _write(tmp_path, "b.csv", raw)
    with pytest.raises(DataError, match="binary"):
        data.load_task(p, "seq-cls")
    with pytest.raises(DataError, match="binary"):
        history.save_upload(tmp_path, "b.csv", raw)
    with pytest.raises(DataError, match="NUL|binary"):
        data.load_task(p, "seq-cls", encoding="latin-1")


def test_cli_train_encoding_flag_and_output(tmp_path):
    body, _ = w1252_csv(24)
    p = _write(tmp_path, "avis.csv", body)
    base = [sys.executable, "-m", "explorer", "train", "--model", "tiny-bert", "--task", p, "--steps", "2",
            "--eval-every", "0", "--eval-examples", "8", "--batch-size", "4", "--quiet", "--no-memory"]
    r = subprocess.run(base + ["--out", str(tmp_path / "o1")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "data: avis.csv: encoding: Windows-1252 (detected: not UTF-8 from byte 19" in r.stdout
    r = subprocess.run(base + ["--out", str(tmp_path / "o2"), "--encoding", "utf-8"], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == "error: avis.csv is not UTF-8 text (byte 19 is 0xe9); choose another encoding, or auto"


# ----------------------------------------------------------------------------- one line per refusal

BAD_FILES = [
    ("cut.csv", b'text,label\n"fine row",1\n"cut inside a quoted field,0\nmore,1\n',
     "cut.csv could not be read as CSV: a quoted field that starts in data row 2 is never closed"),
    ("bad.json", b'[{"text": "a", "label": 1},\n {"text": "b" "label": 0}]',
     "bad.json could not be read as JSON: line 2, column 15: Expecting ',' delimiter"),
    ("bad.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", label: 0}\n',
     "bad.jsonl could not be read as JSON lines: line 2: Expecting property name enclosed in double quotes"),
    ("ragged.tsv", b"text\tlabel\na\t1\nb\t0\tx\n", "ragged.tsv could not be read as TSV: line 3 has 3 fields"),
]


@pytest.mark.parametrize("name,raw,msg", BAD_FILES)
def test_a_malformed_file_is_one_line_and_nothing_else(tmp_path, capfd, caplog, recwarn, name, raw, msg):
    p = _write(tmp_path, name, raw)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DataError) as ei:
        data.load_task(p, "seq-cls")
    text = user_message(ei.value)
    assert text.startswith(msg) and "\n" not in text
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [r for r in caplog.records if not r.name.startswith("explorer")] == []
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]


@pytest.mark.parametrize("name,raw,msg", BAD_FILES[:3])
def test_cli_refusal_is_exactly_one_line(tmp_path, name, raw, msg):
    p = _write(tmp_path, name, raw)
    r = subprocess.run([sys.executable, "-m", "explorer", "train", "--model", "tiny-bert", "--task", p, "--quiet",
                        "--out", str(tmp_path / "o")], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: " + msg), r.stderr


def test_json_shapes_that_load(tmp_path):
    rows = [{"text": f"row {i}", "label": "x" if i % 2 else "y"} for i in range(20)]
    shapes = {"list.json": json.dumps(rows), "lines.json": "\n".join(json.dumps(r) for r in rows),
              "columns.json": json.dumps({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}),
              "wrapped.json": json.dumps({"data": rows}), "rows.jsonl": "\n".join(json.dumps(r) for r in rows) + "\n\n"}
    for name, body in shapes.items():
        t = data.load_task(_write(tmp_path, name, body.encode()), "seq-cls")
        assert sorted(x for x, _ in t.train + t.eval) == sorted(r["text"] for r in rows), name
    for body, needle in [("3", "holds a int"), ('[[1, 2]]', "row 1 is a list"), ("[]", "no rows")]:
        with pytest.raises(DataError, match=re.escape(needle)):
            data.load_task(_write(tmp_path, "s.json", body.encode()), "seq-cls")


def test_cells_stay_as_written(tmp_path):
    """Labels "007", "NA" and "1.0" are text, not numbers or missing values; only empty cells are missing."""
    body = "text,label\n" + "".join(f"row {i},{['007', 'NA', '1.0'][i % 3]}\n" for i in range(30)) + "empty,\n"
    t = data.load_task(_write(tmp_path, "c.csv", body.encode()), "seq-cls")
    assert t.label_names == ["007", "1.0", "NA"] and "1 empty row(s) skipped" in t.notes


# ----------------------------------------------------------------------------- one upload limit


def test_one_upload_limit_for_every_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "0.001")  # 1,048 bytes
    limit = security.max_upload_bytes()
    assert limit == 1048
    big = b"text,label\n" + b"".join(b"row%03d,%d\n" % (i, i % 2) for i in range(120))
    assert len(big) > limit
    with pytest.raises(DataError, match=r"larger than the upload limit of 1,048 bytes"):
        history.save_upload(tmp_path, "big.csv", big)  # the Fine-tune upload
    with pytest.raises(DataError, match=r"larger than the upload limit of 1,048 bytes"):
        security.load_uploaded_task(tmp_path, "big.csv", big, "seq-cls")
    with pytest.raises(DataError, match=r"the upload limit is 1,048 bytes"):
        history.RunHistory().import_json(b" " * 1049)  # Compare's history import
    with pytest.raises(DataError, match=r"big.csv is 1,091 bytes; the limit is 1,048 bytes"):
        data.load_task(_write(tmp_path, "big.csv", big), "seq-cls")  # a local file (CLI)
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "50")
    assert security.max_upload_bytes() == 50 * 2**20
    history.save_upload(tmp_path, "big.csv", big)
    assert data.load_task(_write(tmp_path, "big.csv", big), "seq-cls").label_names == ["0", "1"]


@pytest.mark.parametrize("env,mib", [(None, 20), ("20", 20), ("0.5", 1), ("20.5", 21), ("64", 64), ("-3", 20),
                                     ("abc", 20)])
def test_streamlit_limit_follows_the_variable(monkeypatch, env, mib):
    if env is None:
        monkeypatch.delenv("PEFT_EXPLORER_MAX_UPLOAD_MB", raising=False)
    else:
        monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", env)
    assert security.streamlit_max_upload_mb() == mib
    assert security.streamlit_max_upload_mb() * 2**20 >= security.max_upload_bytes()  # never below the core's


def test_streamlit_config_and_make_run_use_the_limit():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] == security.DEFAULT_MAX_UPLOAD_MB  # a plain `streamlit run`
    make = (ROOT / "Makefile").read_text()
    recipe = make[make.index("\nrun:"):].split("\n\n")[0].replace("\\\n", " ")
    m = re.search(r"--server\.maxUploadSize (\$\$\(\$\(PY\)[^)]*\))", recipe)
    assert m, recipe
    cmd = m.group(1).replace("$$", "$").replace("$(PY)", sys.executable)
    for env, want in (("64", "64"), ("0.5", "1"), (None, "20")):
        e = dict(ENV)
        e.pop("PEFT_EXPLORER_MAX_UPLOAD_MB", None)
        if env:
            e["PEFT_EXPLORER_MAX_UPLOAD_MB"] = env
        out = subprocess.run(["bash", "-c", f"echo {cmd}"], cwd=ROOT, env=e, capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip() == want, out.stderr


def test_sizes_are_said_in_mib():
    assert security.format_mib(20 * 2**20) == "20 MiB" and security.format_mib(2**19) == "0.5 MiB"
    assert security.format_mib(1048) == "1,048 bytes" and security.format_mib(int(25.34 * 2**20)) == "25.3 MiB"
    data_modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "explorer" / "data").glob("*.py"))
    assert "explorer/data/files.py" in data_modules  # the size check's message is there
    for f in (*data_modules, "explorer/workshop/security.py", "explorer/workshop/history.py", "pages/2_Fine_tune.py",
              "pages/3_Compare.py"):
        src = (ROOT / f).read_text()
        assert not re.search(r"\d\s*MB\b|\}\s*MB\b", src), f


# ----------------------------------------------------------------------------- held out means held out


@pytest.mark.parametrize("name", list(data.BUILTIN))
def test_no_held_out_text_is_in_training(name):
    spec = data.BUILTIN[name]
    t = data.load_task(name, spec["kind"])
    train_texts = [x for x, _ in t.train]
    eval_texts = [x for x, _ in t.eval]
    assert not set(eval_texts) & set(train_texts)
    assert len(set(eval_texts)) == len(eval_texts) and len(set(train_texts)) == len(train_texts)
    labels = {}
    for x, y in t.train + t.eval:
        assert labels.setdefault(x, y) == y  # no text with two labels
    assert spec["size"].startswith(f"{len(t.train):,} train / {len(t.eval):,} eval")  # the size shown


def test_bbc_news_split_against_the_corpus_files():
    """Recounted from the corpus files here: every distinct first sentence once, each on the side of its
    first copy (every 5th file held out), so the split loses no sentence and keeps none twice."""
    folder = builtin.bbc_folder()
    first_side, n_files = {}, 0
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in builtin.BBC_TOPICS):
        for f in sorted(d.glob("*.txt"), key=lambda f: int(f.stem)):
            lines = [ln for ln in f.read_bytes().decode("utf-8", errors="replace").split("\n") if ln.strip()]
            if len(lines) < 2:
                continue
            n_files += 1
            first_side.setdefault(builtin._first_sentence(" ".join(lines[1:])), int(f.stem) % 5 == 0)
    t = data.load_task("bbc-news", "seq-cls")
    assert n_files == 2225
    assert {x for x, _ in t.eval} == {s for s, held in first_side.items() if held}
    assert {x for x, _ in t.train} == {s for s, held in first_side.items() if not held}
    assert (len(t.train), len(t.eval)) == (1651, 412)
    assert t.notes and "2,063 distinct first sentences" in t.notes[0]


def test_a_files_repeated_rows_never_straddle_the_split(tmp_path):
    """User files are split by distinct text too: a text that repeats (even with another label) is held
    out whole or trained on whole."""
    rows = [(f"sentence {i % 37}", "ab"[i % 2 if i < 150 else (i // 2) % 2]) for i in range(200)]
    body = "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)
    t = data.load_task(_write(tmp_path, "rep.csv", body.encode()), "seq-cls")
    assert len(t.train) + len(t.eval) == 200  # every row kept
    assert t.eval and not {x for x, _ in t.eval} & {x for x, _ in t.train}
    assert "163 row(s) repeat an earlier text" in t.notes[-1] and "no held-out text is in training" in t.notes[-1]
    with pytest.raises(DataError, match="all 20 rows have the same text"):
        data.load_task(_write(tmp_path, "same.csv", b"text,label\n" + b"same,a\nsame,b\n" * 10), "seq-cls")
