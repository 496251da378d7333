"""One entry point for a task: a built-in name, a local CSV/TSV/JSON/JSONL file, or a hub data set."""

from __future__ import annotations

import re
from pathlib import Path

from explorer.data.builtin import BUILTIN, default_task_for
from explorer.data.encodings import quiet_library_logs
from explorer.data.files import DATA_SUFFIXES, load_file_task
from explorer.data.rows import rows_to_task
from explorer.data.task import CAUSAL, SEQ_CLS, Task
from explorer.errors import DataError

_CACHE: dict[str, Task] = {}  # built-in tasks, built once per process


def load_hub_task(name: str, model_kind: str, text_col=None, label_col=None, prompt_col=None,
                  answer_col=None) -> Task:
    from explorer.models import hub_reachable

    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", name) or len(name) > 96:
        raise DataError(f"Unknown task '{name[:80]}': use one of {', '.join(BUILTIN)}, a .csv/.json/.jsonl file "
                        "or a hub data set such as glue/sst2")
    if not hub_reachable():
        raise DataError(f"Unknown task '{name}' and the data hub is not reachable from this machine (offline): "
                        f"use one of {', '.join(BUILTIN)} or a local CSV/JSON file")
    import datasets

    parts = name.split("/")
    try:
        with quiet_library_logs():
            try:
                dd = datasets.load_dataset(name)
            except Exception:  # noqa: BLE001 - "glue/sst2" is (path, config)
                if len(parts) != 2:
                    raise
                dd = datasets.load_dataset(parts[0], parts[1])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"Could not load hub data set '{name}': {str(e).splitlines()[0][:200]}") from None
    splits = list(dd.keys())
    tr_split = "train" if "train" in splits else splits[0]
    ev_split = next((s for s in ("validation", "test", "eval") if s in splits and s != tr_split), None)
    tr = dd[tr_split]
    cols = list(tr.column_names)
    feat = tr.features.get(label_col or "label")
    names = getattr(feat, "names", None)
    tr_cols = {c: tr[c] for c in cols}
    if names and (label_col or "label") in tr_cols:
        lc = label_col or "label"
        tr_cols[lc] = [names[i] if isinstance(i, int) and 0 <= i < len(names) else None for i in tr_cols[lc]]
    ev_cols = None
    if ev_split is not None:
        ev = dd[ev_split]
        ev_cols = {c: ev[c] for c in cols if c in ev.column_names}
        if names and (label_col or "label") in ev_cols:
            lc = label_col or "label"
            ev_cols[lc] = [names[i] if isinstance(i, int) and 0 <= i < len(names) else None for i in ev_cols[lc]]
            if all(v is None for v in ev_cols[lc]):  # unlabelled test split
                ev_cols = None
    return rows_to_task(tr_cols, cols, name, model_kind, f"hub: {name}", text_col, label_col, prompt_col,
                         answer_col, eval_rows=ev_cols)


def load_task(name_or_path: str, model_kind: str, text_col=None, label_col=None, prompt_col=None,
              answer_col=None, encoding=None) -> Task:
    """A built-in task by name, a local CSV/TSV/JSON/JSONL file, or a hub data set (``glue/sst2``).

    ``encoding`` applies to files only (None/"auto" detects it)."""
    name = (str(name_or_path) if name_or_path is not None else "").strip()
    if model_kind not in (SEQ_CLS, CAUSAL):
        raise DataError(f"Unknown model kind '{model_kind}': expected seq-cls or causal-lm")
    if not name:
        name = default_task_for(model_kind)
    if name in BUILTIN:
        spec = BUILTIN[name]
        if spec["kind"] != model_kind:
            fits = [k for k, v in BUILTIN.items() if v["kind"] == model_kind]
            raise DataError(f"Task '{name}' is a {spec['kind']} task but the model is {model_kind}; "
                            f"use {', '.join(fits)}")
        if name not in _CACHE:
            _CACHE[name] = spec["builder"]()
        return _CACHE[name]
    p = Path(name).expanduser()
    try:
        exists = p.exists()
    except OSError:  # a name the OS refuses (too long): not a local file
        exists = False
    if p.suffix.lower() in DATA_SUFFIXES or exists or name.startswith((".", "/", "~")):
        return load_file_task(p, model_kind, text_col, label_col, prompt_col, answer_col, encoding=encoding)
    return load_hub_task(name, model_kind, text_col, label_col, prompt_col, answer_col)

