"""Built-in tasks, user files, hub names, batching and evaluation (explorer/data/)."""

import json
import time

import pytest
import torch

from explorer import data
from explorer.data import builtin
from explorer.errors import DataError


def test_list_tasks_documents_every_builtin():
    tasks = {t["name"]: t for t in data.list_tasks()}
    assert {"colour-shape", "colour-shape-easy", "size-compare", "bbc-news", "word-category"} <= set(tasks)
    for t in tasks.values():
        for key in ("kind", "description", "size", "splits", "source", "num_labels"):
            assert t[key] is not None and (t[key] != "" or key == "num_labels")
    assert "Greene and Cunningham (2006)" in tasks["bbc-news"]["source"]
    assert data.default_task_for("seq-cls") == "colour-shape"
    assert data.default_task_for("causal-lm") == "word-category"


def test_size_compare_is_balanced_twinned_and_held_out():
    t = data.load_task("size-compare", "seq-cls")
    assert (len(t.train), len(t.eval)) == (2000, 500)
    assert t.label_names == ["false", "true"]
    assert sum(y for _, y in t.eval) == 250  # exactly balanced held-out split
    assert not ({x for x, _ in t.train} & {x for x, _ in t.eval})
    # every held-out statement has its twin (other comparison word, same words) with the opposite label
    ev = dict(t.eval)
    for text, y in list(ev.items())[:50]:
        twin = text.replace("bigger", "@").replace("smaller", "bigger").replace("@", "smaller")
        assert ev[twin] == 1 - y
    # rebuilt from scratch: identical
    assert builtin._size_compare().train == t.train


def test_word_category_and_bbc():
    t = data.load_task("word-category", "causal-lm")
    assert t.kind == "causal-lm" and (len(t.train), len(t.eval)) == (288, 96)
    words_train = {p for p, _ in t.train}
    assert not (words_train & {p for p, _ in t.eval})
    assert {a for _, a in t.eval} == set(builtin.COLOURS)
    b = data.load_task("bbc-news", "seq-cls")
    assert b.label_names == ["business", "entertainment", "politics", "sport", "tech"]
    assert len(b.train) + len(b.eval) > 2000 and 400 < len(b.eval) < 500
    assert "Greene and Cunningham" in b.source
    assert all(10 < len(x) <= 300 for x, _ in b.train[:200])


def test_kind_mismatch_and_unknown_kind():
    with pytest.raises(DataError, match="causal-lm task"):
        data.load_task("word-category", "seq-cls")
    with pytest.raises(DataError):
        data.load_task("size-compare", "vision")


def test_batches_deterministic_and_causal_labels(tiny_llama, tiny_bert):
    t = data.load_task("word-category", "causal-lm")
    a = list(data.iter_batches(t, tiny_llama.tokenizer, "train", batch_size=4, seed=3, max_batches=3))
    b = list(data.iter_batches(t, tiny_llama.tokenizer, "train", batch_size=4, seed=3, max_batches=3))
    c = list(data.iter_batches(t, tiny_llama.tokenizer, "train", batch_size=4, seed=4, max_batches=3))
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    batch = a[0]
    assert "token_type_ids" not in batch
    lab = batch["labels"]
    # only the answer tokens are scored: one answer token per example here, padding and prompt are -100
    assert ((lab != -100).sum(dim=1) >= 1).all()
    assert (lab[batch["attention_mask"] == 0] == -100).all()
    for row, ids in zip(lab, batch["input_ids"]):
        scored = ids[row != -100].tolist()
        assert tiny_llama.tokenizer.decode(scored).strip() in builtin.COLOURS
    # repeat mode: more batches than one pass
    t2 = data.load_task("size-compare", "seq-cls")
    n = len(list(data.iter_batches(t2, tiny_bert.tokenizer, "train", batch_size=500, max_batches=9)))
    assert n == 9


def test_rank_shards_cover_the_global_batch(tiny_bert):
    t = data.load_task("size-compare", "seq-cls")
    whole = next(data.iter_batches(t, tiny_bert.tokenizer, "train", batch_size=8, seed=1, max_batches=1))
    r0 = next(data.iter_batches(t, tiny_bert.tokenizer, "train", batch_size=4, seed=1, max_batches=1,
                                rank=0, world_size=2))
    r1 = next(data.iter_batches(t, tiny_bert.tokenizer, "train", batch_size=4, seed=1, max_batches=1,
                                rank=1, world_size=2))
    assert torch.equal(torch.cat([r0["labels"], r1["labels"]]), whole["labels"])


def test_evaluate_restores_train_mode(tiny_bert):
    from explorer.models import fresh_copy

    m = fresh_copy(tiny_bert.model)
    m.train()
    t = data.load_task("size-compare", "seq-cls")
    res = data.evaluate(m, t, tiny_bert.tokenizer, "seq-cls", max_examples=40)
    assert m.training and res["n"] == 40 and 0 <= res["accuracy"] <= 1 and res["loss"] > 0


def _write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text)
    return str(p)


def test_user_csv_and_jsonl_load_with_mapping(tmp_path):
    rows = "\n".join(f'"sample text {i}",{"yes" if i % 2 else "no"}' for i in range(30))
    p = _write(tmp_path, "ok.csv", "sentence,verdict\n" + rows + "\n")
    t = data.load_task(p, "seq-cls", label_col="verdict")
    assert t.label_names == ["no", "yes"] and len(t.train) + len(t.eval) == 30 and t.eval
    j = _write(tmp_path, "qa.jsonl", "\n".join(json.dumps({"q": f"what is {i}", "a": str(i % 3)})
                                                for i in range(20)))
    t2 = data.load_task(j, "causal-lm", prompt_col="q", answer_col="a")
    assert t2.kind == "causal-lm" and isinstance(t2.train[0][1], str)


@pytest.mark.parametrize("content,kwargs,match", [
    ('text,label\n"unterminated,1\nfoo,0\n' + "x,1\n" * 10, {}, "could not be read|missing|usable"),
    ("words,label\n" + "a,1\nb,0\n" * 10, {}, "missing a text column"),
    ("text,label\n" + "a,1\nb,0\n" * 10, {"label_col": "nope"}, "no column 'nope'"),
    ("text,label\n" + ",\n" * 20, {}, "empty"),
    ("text,label\n" + "a,1\nb,1\n" * 10, {}, "single class"),
    ("text,label\na,1\nb,0\n", {}, "only 2 usable rows"),
    ("", {}, "empty"),
])
def test_bad_csv_files_name_the_problem(tmp_path, content, kwargs, match):
    p = _write(tmp_path, "bad.csv", content)
    with pytest.raises(DataError, match=match):
        data.load_task(p, "seq-cls", **kwargs)


def test_binary_missing_and_oversized_files(tmp_path, monkeypatch):
    p = _write(tmp_path, "bin.csv", bytes(range(256)) * 8, mode="wb")
    with pytest.raises(DataError, match="binary"):
        data.load_task(p, "seq-cls")
    with pytest.raises(DataError, match="No such data file"):
        data.load_task(str(tmp_path / "missing.csv"), "seq-cls")
    with pytest.raises(DataError, match="unsupported file type"):
        data.load_task(_write(tmp_path, "x.txt", "hello"), "seq-cls")
    big = _write(tmp_path, "big.csv", "text,label\n" + "a,1\nb,0\n" * 100)
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "0.0001")  # the upload limit (104 bytes) for files too
    with pytest.raises(DataError, match=r"big.csv is 811 bytes; the limit is 104 bytes"):
        data.load_task(big, "seq-cls")
    monkeypatch.delenv("PEFT_EXPLORER_MAX_UPLOAD_MB")
    bad_json = _write(tmp_path, "bad.json", "{not json at all")
    with pytest.raises(DataError, match="could not be read"):
        data.load_task(bad_json, "causal-lm")


def test_hub_name_offline_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="not reachable"):
        data.load_task("glue/sst2", "seq-cls")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(DataError, match="Unknown task"):
        data.load_task("no such task!!", "seq-cls")


def test_colour_shape_rule_is_balanced_and_not_one_word():
    for n in (4, 6):
        rule = builtin.colour_shape_rule(0, n)
        assert len(rule) == n * n and sum(rule.values()) == n * n // 2
        for c in {c for c, _ in rule}:
            assert sum(v for (cc, _), v in rule.items() if cc == c) == n // 2
        for s in {s for _, s in rule}:
            assert sum(v for (_, ss), v in rule.items() if ss == s) == n // 2
    t = data.load_task("colour-shape", "seq-cls")
    assert (len(t.train), len(t.eval)) == (2000, 500)
    assert not ({x for x, _ in t.train} & {x for x, _ in t.eval})
    assert 200 < sum(y for _, y in t.eval) < 300


def test_a_csv_loads_whatever_the_working_directory(tmp_path, monkeypatch):
    """load_task does not read project-relative paths or the cwd: it works from another folder, and from a
    working directory that has been deleted (a server started in a temporary folder that is gone)."""
    import os

    from explorer.data import load_task

    f = tmp_path / "files" / "t.csv"
    f.parent.mkdir()
    f.write_text("text,label\n" + "".join(f"good thing {i},pos\nbad thing {i},neg\n" for i in range(12)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    task = load_task(str(f), "seq-cls")
    assert len(task.train) + len(task.eval) == 24 and task.num_labels == 2
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    os.rmdir(gone)
    task = load_task(str(f), "seq-cls")
    assert len(task.train) + len(task.eval) == 24
    tsv = tmp_path / "files" / "t.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"good {i}\tpos\nbad {i}\tneg\n" for i in range(6)))
    assert load_task(str(tsv), "seq-cls").num_labels == 2


def _sentences(n):
    return [f"they saw item {i} near the door" for i in range(n)]


def test_a_quote_that_never_closes_mid_file_is_refused_naming_the_row(tmp_path):
    """Issue 21: 160 rows, one opening quote in the middle: pandas glued two rows into one (159 loaded, nothing
    said).  It is refused with one line that names the row."""
    rows = [f"{t},{i % 2}" for i, t in enumerate(_sentences(160))]
    rows[57] = '"' + rows[57]                      # opens, never closes on its line
    rows[58] = 'they said "hi" at the door,0'      # the next quote in the file ends the runaway field
    p = _write(tmp_path, "glued.csv", "text,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"data row 58 .*quote") as e:
        data.load_task(p, "seq-cls")
    assert "\n" not in str(e.value)


def test_a_quoted_text_over_several_lines_still_loads(tmp_path):
    rows = [f"{t},{i % 2}" for i, t in enumerate(_sentences(40))]
    rows[5] = '"a poem, in two lines:\nroses are red, violets blue",1'  # a real multi-line cell
    p = _write(tmp_path, "poem.csv", "text,label\n" + "\n".join(rows) + "\n")
    t = data.load_task(p, "seq-cls")
    assert len(t.train) + len(t.eval) == 40


def test_without_a_label_column_the_cli_names_its_flag(tmp_path, capsys):
    from explorer.__main__ import main

    p = _write(tmp_path, "nolabel.csv", "text,verdict\n" + "a b,1\nc d,0\n" * 10)
    rc = main(["train", "--model", "tiny-bert", "--task", p, "--steps", "1", "--quiet", "--no-memory"])
    err = capsys.readouterr().err
    assert rc != 0 and "--label-col" in err and "Traceback" not in err
