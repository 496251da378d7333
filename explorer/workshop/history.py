"""The run history of one dashboard session: runs, export to JSON, import back, atomic files.

Pure Python (no streamlit).  A :class:`RunEntry` is what the Compare page and the
downloads need from a finished (or stopped, failed, NaN) run: an id, the config,
the summary, the per-step records and the notes; the adapter (a zip of the
method's safetensors + JSON files) is kept beside it when it was saved.

    hist = RunHistory(folder=sessions.session_dir(sid, create=False))   # or RunHistory() in memory only
    hist.add(entry_from_result(result))                         # persisted atomically
    text = hist.to_json()                                       # a file a participant downloads
    RunHistory().import_json(text)                              # validated; DataError on a bad file

Files: ``<cache>/sessions/<session id>/history.json`` and ``<run id>.adapter.zip``,
written through a temporary file in the same folder and ``os.replace`` (a reader never
sees half a file).  The session folder, its id, who holds it and when it is removed are
``explorer.workshop.sessions``'s; run ids from an imported file are checked with a strict
pattern and never name a path on their own.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import secrets
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from explorer.errors import DataError

__all__ = ["RunEntry", "RunHistory", "entry_from_result", "atomic_write", "metrics_json", "metrics_csv",
           "adapter_zip", "save_upload", "FORMAT", "VERSION", "max_import_bytes"]

FORMAT = "peft-explorer-history"
VERSION = 1
MAX_RUNS = 500
MAX_RECORDS = 200_000
MAX_ADAPTER_ZIP = 64 * 2 ** 20  # adapters larger than this are not kept on disk or offered for download
MAX_HELD_BYTES = 4 * MAX_ADAPTER_ZIP  # ... but the latest ones stay in memory for "Try your model" (server-wide)
_RID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCALAR = (str, int, float, bool, type(None))


def save_upload(folder: Path | str, filename: str, data: bytes, max_bytes: int | None = None) -> Path:
    """Save an uploaded data file inside ``folder/uploads`` under a server-made name; returns its path.

    The checks (type, size against ``explorer.workshop.security.max_upload_bytes()``, emptiness, binary
    content) and the storing (the folder is made when missing; the user's file name is kept
    beside the file for display only) are ``explorer.workshop.security.store_upload``'s.
    """
    from explorer.workshop.security import store_upload

    return store_upload(folder, filename, data, limit=max_bytes, refuse_binary=True)


from explorer.workshop.security import atomic_write  # noqa: E402  (one implementation, re-exported)


def max_import_bytes() -> int:
    """The largest history file imported: the upload limit (``explorer.workshop.security.max_upload_bytes``)."""
    from explorer.workshop.security import max_upload_bytes

    return max_upload_bytes()


def _mib(n: int) -> str:
    from explorer.workshop.security import format_mib

    return format_mib(n)


def _jsonable(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else (None if v != v else str(v))
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, _SCALAR):
        return v
    return str(v)


@dataclass
class RunEntry:
    id: str
    config: dict
    summary: dict
    records: list[dict]
    notes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    label: str = ""
    adapter_zip: bytes | None = field(default=None, repr=False)  # not in the JSON export
    held: bool = field(default=False, repr=False)  # a larger adapter is held in memory for "Try your model"

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    def tryout_zip(self) -> bytes | None:
        """The adapter "Try your model" rebuilds: the kept one, else one held in memory only (too large to keep
        on disk or to download; the server holds the latest few, :data:`MAX_HELD_BYTES` in all)."""
        if self.adapter_zip:
            return self.adapter_zip
        return _held_get(self) if self.held else None

    def title(self) -> str:
        return self.label or f"{self.config.get('method', '?')} · {self.config.get('model', '?')} · #{self.id}"

    def to_dict(self) -> dict:
        return _jsonable(dict(id=self.id, label=self.label, created=self.created, config=self.config,
                              summary=self.summary, records=self.records, notes=self.notes))

    @classmethod
    def from_dict(cls, d, where: str = "run") -> "RunEntry":
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected an object, got {type(d).__name__}")
        rid = d.get("id")
        if not isinstance(rid, str) or not _RID.match(rid):
            raise DataError(f"{where}: 'id' must be 1-64 letters, digits, '-' or '_'")
        for key in ("config", "summary"):
            if not isinstance(d.get(key), dict):
                raise DataError(f"{where} ({rid}): '{key}' must be an object")
        recs = d.get("records", [])
        if not isinstance(recs, list):
            raise DataError(f"{where} ({rid}): 'records' must be a list")
        if len(recs) > MAX_RECORDS:
            raise DataError(f"{where} ({rid}): {len(recs):,} records is more than the {MAX_RECORDS:,} allowed")
        for i, r in enumerate(recs):
            if not isinstance(r, dict):
                raise DataError(f"{where} ({rid}): record {i} must be an object")
            if not isinstance(r.get("step"), int) or isinstance(r.get("step"), bool):
                raise DataError(f"{where} ({rid}): record {i} has no whole-number 'step'")
            for k, v in r.items():
                if not isinstance(v, _SCALAR):
                    raise DataError(f"{where} ({rid}): record {i} field '{str(k)[:40]}' must be a number or text")
        notes = d.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise DataError(f"{where} ({rid}): 'notes' must be a list of strings")
        created = d.get("created", 0.0)
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            raise DataError(f"{where} ({rid}): 'created' must be a number")
        label = d.get("label", "")
        if not isinstance(label, str):
            raise DataError(f"{where} ({rid}): 'label' must be text")
        return cls(id=rid, config=dict(d["config"]), summary=dict(d["summary"]), records=[dict(r) for r in recs],
                   notes=list(notes), created=float(created), label=label[:200])


EXAMPLE_CHARS = 200


def first_example(task) -> str | None:
    """The first held-out example's input (a sentence, or a causal LM's prompt) of ``task``, cut to
    ``EXAMPLE_CHARS``; None when the task has none."""
    for split in ("eval", "train"):
        rows = getattr(task, split, None) or []
        if rows and isinstance(rows[0], (tuple, list)) and rows[0] and isinstance(rows[0][0], str):
            text = " ".join(rows[0][0].split())
            if text:
                return text[:EXAMPLE_CHARS]
    return None


def entry_from_result(result, run_id: str | None = None, label: str = "", keep_adapter: bool = True) -> RunEntry:
    """A RunEntry from an ``explorer.engine.state.RunResult`` (the adapter zipped when it can be saved)."""
    from explorer.data import is_stored_upload
    from explorer.engine.export import metrics_dict

    d = metrics_dict(result)
    task = getattr(result, "task", None)
    if task is not None and is_stored_upload(d["config"].get("task")):
        d["config"]["task"] = task.name  # the user's file name, never the server's path
    entry = RunEntry(id=run_id or secrets.token_hex(4), config=d["config"], summary=d["summary"],
                     records=d["records"], notes=d["notes"], label=label)
    example = first_example(task)
    if example:  # "Try your model" offers a sentence of the run's own task (an upload cannot be read again later)
        entry.summary["example_input"] = example
    if keep_adapter:
        try:
            z = adapter_zip(result)
            entry.adapter_zip = z if z is not None and len(z) <= MAX_ADAPTER_ZIP else None
            if z is not None and entry.adapter_zip is None:
                entry.held = _held_put(entry, z)
                entry.notes.append(f"The adapter ({len(z) / 2**20:.0f} MiB zipped) is larger than "
                                   f"{MAX_ADAPTER_ZIP // 2**20} MiB: it is not kept for download"
                                   + (" (Try your model uses it from memory while the server holds it)."
                                      if entry.held else "."))
        except Exception as e:  # noqa: BLE001 - no adapter (failed run, SMT stopped in warm-up)
            entry.notes.append(f"No adapter to download: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
    return entry


_HELD: "dict[int, tuple[object, bytes]]" = {}  # id(entry) -> (entry, zip), oldest first; memory only
_HELD_LOCK = threading.Lock()


def _held_put(entry: RunEntry, z: bytes) -> bool:
    """Hold ``z`` in memory for ``entry`` (the oldest held ones leave first); False when it alone is too large."""
    if len(z) > MAX_HELD_BYTES:
        return False
    with _HELD_LOCK:
        _HELD[id(entry)] = (entry, z)
        while sum(len(v[1]) for v in _HELD.values()) > MAX_HELD_BYTES:
            old, _ = _HELD.pop(next(iter(_HELD)))
            old.held = False
    return True


def _held_get(entry: RunEntry) -> bytes | None:
    with _HELD_LOCK:
        got = _HELD.get(id(entry))
        return got[1] if got is not None and got[0] is entry else None


def adapter_zip(result) -> bytes | None:
    """The adapter of a run (safetensors + JSON files of ``export.save_adapter``) as zip bytes."""
    from explorer.engine.export import save_adapter

    if getattr(result, "adapter_zip_bytes", None) is not None:
        return result.adapter_zip_bytes  # zipped in the worker process that ran it
    if getattr(result, "adapter", None) is None:
        return None
    with tempfile.TemporaryDirectory(prefix="peft-adapter-") as tmp:
        folder = save_adapter(result, Path(tmp) / "adapter")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    z.write(p, arcname=str(Path("adapter") / p.relative_to(folder)))
        return buf.getvalue()


def metrics_json(entry: RunEntry) -> str:
    return json.dumps(entry.to_dict(), indent=2)


def metrics_csv(entry: RunEntry) -> str:
    keys: list[str] = []
    for r in entry.records:
        for k, v in r.items():
            if k not in keys and isinstance(v, _SCALAR):
                keys.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys or ["step"], extrasaction="ignore")
    w.writeheader()
    for r in entry.records:
        w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


class RunHistory:
    """The runs of one session, oldest first; persisted under ``folder`` when one is given."""

    def __init__(self, folder: Path | str | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.runs: list[RunEntry] = []
        self._lock = threading.RLock()
        if self.folder is not None and (self.folder / "history.json").exists():
            try:
                self.runs = self.parse((self.folder / "history.json").read_text("utf-8"))
                for r in self.runs:
                    zp = self.folder / f"{r.id}.adapter.zip"
                    if zp.exists():
                        r.adapter_zip = zp.read_bytes()
            except (DataError, OSError, UnicodeDecodeError):
                self.runs = []

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(list(self.runs))

    def get(self, run_id: str) -> RunEntry | None:
        return next((r for r in self.runs if r.id == run_id), None)

    def new_id(self) -> str:
        with self._lock:
            n = len(self.runs) + 1
            while self.get(f"run{n}") is not None:
                n += 1
            return f"run{n}"

    def add(self, entry: RunEntry) -> RunEntry:
        with self._lock:
            if self.get(entry.id) is not None:
                entry.id = self.new_id()
            self.runs.append(entry)
            del self.runs[:-MAX_RUNS]
            self.save(new_adapter=entry)
        return entry

    def add_result(self, result, label: str = "", keep_adapter: bool = True) -> RunEntry:
        """Add a finished (or stopped, failed) ``RunResult`` under a new id (:func:`entry_from_result`); worker
        threads call this when a run ends."""
        return self.add(entry_from_result(result, run_id=self.new_id(), label=label, keep_adapter=keep_adapter))

    def sink(self, prefix: str = "", keep_adapter: bool = True):
        """``on_result(label, result)`` for a ``sweeps.Sweep`` or a claims re-run: each run joins this history,
        its label prefixed."""
        return lambda label, result: self.add_result(result, f"{prefix}{label}", keep_adapter=keep_adapter)

    def remove(self, run_id: str) -> None:
        with self._lock:
            for r in self.runs:
                if r.id == run_id and r.held:
                    with _HELD_LOCK:
                        _HELD.pop(id(r), None)
                    r.held = False
            self.runs = [r for r in self.runs if r.id != run_id]
            if self.folder is not None:
                zp = self.folder / f"{run_id}.adapter.zip"
                if _RID.match(run_id) and zp.exists():
                    zp.unlink()
            self.save()

    def clear(self) -> None:
        for r in list(self.runs):
            self.remove(r.id)

    def save(self, new_adapter: RunEntry | None = None) -> None:
        if self.folder is None:
            return
        with self._lock:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a session folder is private
            if new_adapter is not None and new_adapter.adapter_zip:
                atomic_write(self.folder / f"{new_adapter.id}.adapter.zip", new_adapter.adapter_zip)
            atomic_write(self.folder / "history.json", self.to_json())

    # -- JSON ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dict(format=FORMAT, version=VERSION, exported=time.time(), runs=[r.to_dict() for r in self.runs])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def parse(data: str | bytes) -> list[RunEntry]:
        """Runs from an exported history file; DataError with a clear message for anything else."""
        limit = max_import_bytes()
        if isinstance(data, (bytes, bytearray)):
            if len(data) > limit:
                raise DataError(f"the history file is {_mib(len(data))}; the upload limit is {_mib(limit)}")
            if not data.strip():
                raise DataError("the history file is empty")
            if b"\x00" in data[:4096]:
                raise DataError("the history file is binary, not JSON text")
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"the history file is not UTF-8 text (byte {e.start})") from None
        if len(data.encode("utf-8")) > limit:
            raise DataError(f"the history file is too large; the upload limit is {_mib(limit)}")
        if not data.strip():
            raise DataError("the history file is empty")
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else \
                "nested too deeply"
            raise DataError(f"the history file is not valid JSON ({msg})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise DataError(f"not a PEFT Explorer run history (expected an object with \"format\": \"{FORMAT}\")")
        ver = obj.get("version")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver > VERSION or ver < 1:
            raise DataError(f"unsupported history version {str(ver)[:20]} (this server reads version {VERSION})")
        runs = obj.get("runs")
        if not isinstance(runs, list):
            raise DataError("the history file has no 'runs' list")
        if len(runs) > MAX_RUNS:
            raise DataError(f"the history file holds {len(runs)} runs; at most {MAX_RUNS} can be imported")
        out, seen = [], set()
        for i, d in enumerate(runs):
            e = RunEntry.from_dict(d, where=f"run {i + 1}")
            if e.id in seen:
                raise DataError(f"run {i + 1}: duplicate id '{e.id}'")
            seen.add(e.id)
            out.append(e)
        return out

    def restore_from(self, folder: Path | str) -> int:
        """Copy the runs (and adapters) persisted in another session folder into this history.

        Used after a page reload: the new session starts from a *copy* of the old one's runs,
        so two sessions never write the same files.  A missing or unreadable folder adds nothing.
        """
        old = RunHistory(folder)
        with self._lock:
            for e in old.runs:
                if self.get(e.id) is not None:
                    e.id = self.new_id()
                self.runs.append(e)
                if e.adapter_zip and self.folder is not None:
                    atomic_write(self.folder / f"{e.id}.adapter.zip", e.adapter_zip)
            del self.runs[:-MAX_RUNS]
            if old.runs:
                self.save()
        return len(old.runs)

    def import_json(self, data: str | bytes) -> int:
        """Add the runs of an exported file (ids that clash get new ones).  Returns how many were added."""
        runs = self.parse(data)
        with self._lock:
            for e in runs:
                if self.get(e.id) is not None:
                    e.id = self.new_id()
                self.runs.append(e)
            del self.runs[:-MAX_RUNS]
            self.save()
        return len(runs)
