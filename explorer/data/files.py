"""User data files: CSV, TSV, JSON or JSONL with text + label (encoders) or prompt + answer (causal
LMs) columns, mapped with ``text_col``/``label_col``/``prompt_col``/``answer_col``.  The
encoding is detected (UTF-8, UTF-8 or UTF-16 with a byte-order mark, UTF-16 without one,
else Windows-1252 / Latin-1, or a non-Latin code page ``charset_normalizer`` is sure of) or
chosen (``encoding=``), and said in the task's notes.  CSV/TSV are parsed by pandas (every
cell as text), JSON/JSONL by the json module, with library loggers silenced: a malformed file
gets one DataError line.  Size limit: ``explorer.limits.max_upload_bytes()``
(``PEFT_EXPLORER_MAX_UPLOAD_MB`` MiB, default 20).  Hub data sets by name (``glue/sst2``)
only when the hub is reachable (:mod:`explorer.data.load`).

Here: a file's columns (CSV/TSV through pandas, JSON/JSONL through json) and the names of stored uploads;
the columns become a task in :mod:`explorer.data.rows`.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

from explorer.data.encodings import decode_text, quiet_library_logs
from explorer.data.rows import rows_to_task
from explorer.data.task import Task
from explorer.errors import DataError
from explorer.limits import format_mib, max_upload_bytes

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")  # the data files read (the one list: uploads, loader, pages)
META_SUFFIX = ".meta.json"  # beside a stored upload: the user's file name, for display only
# a stored upload's server-made name (``explorer.workshop.security.new_file_name``)
_UPLOAD_NAME = re.compile("upload-[0-9a-f]{16}(" + "|".join(map(re.escape, DATA_SUFFIXES)) + ")")


def suffixes_text(names: bool = False) -> str:
    """The data suffixes as a sentence lists them: ".csv, .tsv, .json or .jsonl" (``names``: "CSV, TSV, JSON or
    JSONL")."""
    shown = [s[1:].upper() for s in DATA_SUFFIXES] if names else list(DATA_SUFFIXES)
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def _csv_columns(text: str, sep: str, name: str, what: str) -> tuple[list[str], dict]:
    import pandas as pd

    try:
        with quiet_library_logs():
            # every cell as text (labels "007" and "1.0" stay as written); only empty cells are missing
            df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                             engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} has no header row (the file is blank)") from None
    except (pd.errors.ParserError, ValueError, OverflowError, MemoryError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        m = re.search(r"EOF inside string starting at row (\d+)", msg)
        if m:
            msg = f"a quoted field that starts in data row {int(m.group(1)):,} is never closed"
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            msg = f"line {m.group(2)} has {m.group(3)} fields where the header has {m.group(1)}"
        raise DataError(f"{name} could not be read as {what}: {msg[:240]}") from None
    cols = [str(c) for c in df.columns]
    values = {str(c): df[c].tolist() for c in df.columns}
    glued = _glued_row(cols, values, sep)
    if glued is not None:
        row, start = glued
        raise DataError(f"{name}: a quote opens in data row {row:,} (\"{start[:40]}…\") and is not closed on its "
                        "line, so the next line(s) of the file were read into that row; close the quote, or double "
                        "it (\"\") inside a quoted text")
    return cols, values


def _glued_row(cols: list[str], values: dict, sep: str) -> tuple[int, str] | None:
    """(data row, its first line) of a cell that swallowed whole rows of the file: a quote that opens and never
    closes where it should makes the parser read on to the next quote.  A cell spanning several lines is such a
    runaway when one of its lines parses as a complete row (the header's number of fields) whose value in another
    column is one that column holds in ordinary rows (a label): a quoted text over several lines does not."""
    import csv

    n = len(cols)
    if n < 2:
        return None
    known = {c: {v for v in values[c] if isinstance(v, str) and "\n" not in v} for c in cols}
    for j, c in enumerate(cols):
        for i, v in enumerate(values[c]):
            if not isinstance(v, str) or "\n" not in v:
                continue
            for line in v.split("\n"):
                fields = next(csv.reader([line], delimiter=sep), [])
                if len(fields) == n and any(fields[k].strip() in known[cols[k]] for k in range(n) if k != j):
                    return i + 1, v.split("\n")[0]
    return None


def _json_records(text: str, name: str, lines: bool) -> list:
    if lines:
        recs = []
        for i, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                recs.append(json.loads(ln))
            except (json.JSONDecodeError, RecursionError) as e:
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                raise DataError(f"{name} could not be read as JSON lines: line {i}: {why}") from None
        return recs
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # a .json file that holds JSON lines
            return _json_records(text, name, True)
        raise DataError(f"{name} could not be read as JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{name} could not be read as JSON: nested too deeply") from None
    if isinstance(obj, dict):
        vals = list(obj.values())
        if len(vals) == 1 and isinstance(vals[0], list) and vals[0] and all(isinstance(r, dict) for r in vals[0]):
            return vals[0]  # {"data": [{...}, ...]}
        if vals and all(isinstance(v, list) for v in vals) and len({len(v) for v in vals}) == 1:
            return [dict(zip(obj, row)) for row in zip(*vals)]  # columns: {"text": [...], "label": [...]}
        return [obj]
    if isinstance(obj, list):
        return obj
    raise DataError(f"{name}: the JSON holds a {type(obj).__name__}; expected a list of objects "
                    "(one per row) or an object of columns")


def _json_columns(text: str, name: str, lines: bool) -> tuple[list[str], dict]:
    recs = _json_records(text, name, lines)
    cols: list[str] = []
    seen = set()
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise DataError(f"{name}: row {i + 1} is a {type(r).__name__}, not an object with named fields")
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return [str(c) for c in cols], {str(c): [r.get(c) for r in recs] for c in cols}


def _read_file_columns(path: Path, encoding=None, name: str | None = None) -> tuple[list[str], dict, str]:
    """(columns, {column: values}, encoding note) of a CSV/TSV/JSON/JSONL file; one-line DataError otherwise."""
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"{name}: unsupported file type '{suffix}'; use {suffixes_text()}")
    size = path.stat().st_size
    limit = max_upload_bytes()
    if size > limit:
        raise DataError(f"{name} is {format_mib(size)}; the limit is {format_mib(limit)} "
                        "(PEFT_EXPLORER_MAX_UPLOAD_MB)")
    if size == 0:
        raise DataError(f"{name} is empty")
    raw = path.read_bytes()
    text, note = decode_text(raw, encoding, name)
    if not text.strip():
        raise DataError(f"{name} is empty (only blank space)")
    if suffix in (".csv", ".tsv"):
        cols, values = _csv_columns(text, "\t" if suffix == ".tsv" else ",", name, suffix[1:].upper())
    else:
        cols, values = _json_columns(text, name, lines=suffix == ".jsonl")
    return cols, values, note


def is_stored_upload(path) -> bool:
    """Whether ``path`` names an upload stored by ``explorer.workshop.security.store_upload`` (server-made name)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    return p.parent.name == "uploads" and bool(_UPLOAD_NAME.fullmatch(p.name))


def upload_meta(path) -> dict:
    """What ``store_upload`` kept beside a stored upload (the user's file name); {} for other files."""
    if not is_stored_upload(path):
        return {}
    try:
        meta = json.loads(Path(path).with_name(Path(path).name + META_SUFFIX).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def display_name(task: str) -> str:
    """A task as shown to people: an upload's own file name instead of the server's path to it."""
    name = upload_meta(task).get("name")
    return str(name) if isinstance(name, str) and name else ("upload" if is_stored_upload(task) else str(task))


def load_file_task(path, model_kind: str, text_col=None, label_col=None, prompt_col=None, answer_col=None,
                   encoding=None) -> Task:
    """A CSV, TSV, JSON or JSONL file as a task.  ``encoding``: None/"auto" detects it (see
    :func:`decode_text`); the task's first note says which encoding was used.  A stored upload
    (``explorer.workshop.security.store_upload``) is named by the user's own file name, never its server path."""
    path = Path(path).expanduser()
    try:
        there = path.exists()
    except OSError as e:  # e.g. a name longer than the OS allows
        raise DataError(f"Not a usable file name: {str(path)[:80]} ({e.strerror})") from None
    if not there:
        raise DataError(f"No such data file: {str(path)[:300]}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a {suffixes_text()} file")
    upload = is_stored_upload(path)
    name = display_name(str(path)) if upload else path.name
    cols, values, note = _read_file_columns(path, encoding, name)
    task = rows_to_task(values, cols, name, model_kind, f"upload: {name}" if upload else str(path), text_col,
                         label_col, prompt_col, answer_col)
    task.notes.insert(0, note)
    task.path = str(path)
    return task

