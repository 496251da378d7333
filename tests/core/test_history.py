"""Run history: atomic writes, JSON round trip, malformed imports, session folders, uploads."""

from __future__ import annotations

import json
import os
import zipfile
import io

import pytest

from explorer.errors import DataError
from explorer.workshop.history import (RunEntry, RunHistory, atomic_write, entry_from_result, metrics_csv, metrics_json,
                                       save_upload)


def entry(i: int, acc: float = 0.5) -> RunEntry:
    recs = [dict(step=0, phase="eval", eval_accuracy=0.5), dict(step=1, phase="train", loss=0.7 - i / 100),
            dict(step=2, phase="train", loss=0.6, eval_accuracy=acc)]
    return RunEntry(id=f"r{i}", config=dict(method="lora", model="tiny-bert", knobs=dict(rank=i)),
                    summary=dict(status="finished", final_accuracy=acc, trainable_params=100 * i), records=recs,
                    notes=[f"note {i}"], label=f"run {i}")


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "sub" / "f.json"
    atomic_write(p, "old")
    assert p.read_text() == "old"

    def broken_replace(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"  # a failed write never leaves half a file
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.json"]  # the temp file was removed


def test_round_trip_and_persistence(tmp_path):
    h = RunHistory(folder=tmp_path)
    for i in range(3):
        h.add(entry(i, acc=0.5 + i / 10))
    text = h.to_json()
    h2 = RunHistory()
    assert h2.import_json(text) == 3
    assert [e.to_dict() for e in h2] == [e.to_dict() for e in h]
    # persisted atomically under the folder: a new object (a page reload) reads it back
    h3 = RunHistory(folder=tmp_path)
    assert [e.id for e in h3] == ["r0", "r1", "r2"]
    assert h3.get("r2").summary["final_accuracy"] == pytest.approx(0.7)
    # importing again: the ids clash and get new ones, nothing is overwritten
    assert h.import_json(text) == 3
    assert len(h) == 6 and len({e.id for e in h}) == 6


def test_nonfinite_values_survive_export():
    e = entry(1)
    e.records.append(dict(step=3, phase="train", loss=float("nan")))
    h = RunHistory()
    h.add(e)
    back = RunHistory.parse(h.to_json())
    assert back[0].records[-1]["loss"] is None  # NaN exported as null (valid JSON)
    json.loads(h.to_json())


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b"\xff\xfe\xfa", "UTF-8"),
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "not a PEFT Explorer run history"),
    (json.dumps({"format": "other"}), "not a PEFT Explorer run history"),
    (json.dumps({"format": "peft-explorer-history", "version": 99, "runs": []}), "unsupported history version"),
    (json.dumps({"format": "peft-explorer-history", "version": 1}), "no 'runs' list"),
    (json.dumps({"format": "peft-explorer-history", "version": 1, "runs": [5]}), "expected an object"),
    (json.dumps({"format": "peft-explorer-history", "version": 1,
                 "runs": [{"id": "../../etc", "config": {}, "summary": {}}]}), "'id' must be"),
    (json.dumps({"format": "peft-explorer-history", "version": 1,
                 "runs": [{"id": "a", "config": [], "summary": {}}]}), "'config' must be an object"),
    (json.dumps({"format": "peft-explorer-history", "version": 1,
                 "runs": [{"id": "a", "config": {}, "summary": {}, "records": [{"loss": 1}]}]}), "'step'"),
    (json.dumps({"format": "peft-explorer-history", "version": 1,
                 "runs": [{"id": "a", "config": {}, "summary": {}, "records": [{"step": 1, "x": {"y": 1}}]}]}),
     "must be a number or text"),
    (json.dumps({"format": "peft-explorer-history", "version": 1,
                 "runs": [{"id": "a", "config": {}, "summary": {}}, {"id": "a", "config": {}, "summary": {}}]}),
     "duplicate id"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
])
def test_malformed_import_is_a_clear_error(data, needle):
    h = RunHistory()
    h.add(entry(1))
    with pytest.raises(DataError) as ei:
        h.import_json(data)
    assert needle in str(ei.value)
    assert "\n" not in str(ei.value)
    assert [e.id for e in h] == ["r1"]  # nothing half-imported


def test_import_size_limit(monkeypatch):
    import explorer.workshop.history as H

    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "0.0001")  # the one upload limit: 104 bytes
    assert H.max_import_bytes() == 104
    for data in (b"x" * 105, "x" * 105):
        with pytest.raises(DataError, match=r"upload limit is 104 bytes$"):
            RunHistory.parse(data)
    with pytest.raises(DataError, match="not valid JSON"):  # 104 bytes pass the size check
        RunHistory.parse(b"x" * 104)


def test_save_upload_safe_names_and_errors(tmp_path):
    p = save_upload(tmp_path, "../../evil name.csv", b"text,label\na,0\n")
    assert p.parent == tmp_path / "uploads" and p.suffix == ".csv" and ".." not in p.name
    assert p.read_bytes() == b"text,label\na,0\n"
    for name, data, needle in [("x.exe", b"abc", "is not read here"), ("x.csv", b"", "empty"),
                               ("x.json", b"\x00\x00", "binary"), ("x.csv", b"a" * 50, "upload limit")]:
        with pytest.raises(DataError, match=needle):
            save_upload(tmp_path, name, data, max_bytes=40)


def test_entry_from_real_run_with_adapter_zip(tiny_bert):
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train

    res = train(TrainConfig(model="tiny-bert", method="lora", knobs=dict(rank=2), steps=3, eval_every=0,
                            eval_examples=16, batch_size=4), loaded=tiny_bert)
    e = entry_from_result(res, run_id="run1")
    assert e.status == "finished" and e.summary["trainable_params"] == res.adapter.num_trainable()
    assert [r["step"] for r in e.records if r["phase"] == "train"] == [1, 2, 3]
    names = zipfile.ZipFile(io.BytesIO(e.adapter_zip)).namelist()
    assert any(n.endswith(".safetensors") for n in names) and "adapter/run.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    csv_text = metrics_csv(e)
    assert csv_text.splitlines()[0].startswith("step,") and len(csv_text.splitlines()) == len(e.records) + 1
    assert json.loads(metrics_json(e))["id"] == "run1"


def test_restore_from_copies_into_a_new_folder(tmp_path):
    a = RunHistory(folder=tmp_path / "a")
    e = entry(1)
    e.adapter_zip = b"PK-not-really"
    a.add(e)
    a.add(entry(2))
    b = RunHistory(folder=tmp_path / "b")
    assert b.restore_from(tmp_path / "a") == 2
    assert [x.id for x in b] == ["r1", "r2"] and b.get("r1").adapter_zip == b"PK-not-really"
    b.add(entry(3))  # the new session writes only its own folder
    assert len(RunHistory(folder=tmp_path / "a")) == 2 and len(RunHistory(folder=tmp_path / "b")) == 3
    assert RunHistory(folder=tmp_path / "c").restore_from(tmp_path / "missing") == 0
