"""What a class-board entry may hold, cleaned and checked (pure Python): a participant's display name, labels that
come from a run, and the fields of a finished run (:func:`fields_from_run`).  Every refusal is a
:class:`BoardError` with one line; ``explorer.workshop.board`` stores what passes."""

from __future__ import annotations

import math
import unicodedata

from explorer.errors import DataError
from explorer.methods import METHODS

__all__ = ["BoardError", "clean_name", "clean_label", "knobs_text", "fields_from_run", "METHOD_NAMES", "MAX_NAME",
           "ANONYMOUS"]

MAX_NAME = 40
ANONYMOUS = "anonymous"
NAME_PUNCT = " -.'!?,"
METHOD_NAMES = tuple(METHODS)  # runs of any registered method can be shared


class BoardError(DataError):
    """A share, hide or clear that the board refuses (one line, safe to show)."""


# ----------------------------------------------------------------------------- names and labels

def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def clean_name(name) -> str:
    """A participant's display name, cleaned; "" (blank or None) means anonymous.

    Cleaning: Unicode NFKC, invisible format characters (zero-width, bidi overrides) removed, runs of spaces
    made one.  Refused with one line: not text, control characters, anything but letters, digits, spaces and
    ``- . ' ! ? ,`` (so no HTML, markdown or emoji shortcodes), more than ``MAX_NAME`` characters, or a name
    that is empty after cleaning (only invisible characters)."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise BoardError("the display name must be text")
    if len(name) > 8 * MAX_NAME:
        raise BoardError(f"the display name is too long: at most {MAX_NAME} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BoardError("the display name contains control characters (tabs, line breaks, escapes); "
                         "use letters, digits and spaces")
    if not name.strip():
        return ""
    n = unicodedata.normalize("NFKC", name)
    n = "".join(ch for ch in n if unicodedata.category(ch) not in ("Cf", "Co", "Cs", "Cn"))
    n = " ".join(n.split())
    if not n:
        raise BoardError("the display name is empty after removing invisible characters; type a name or leave "
                         "it blank to share anonymously")
    if len(n) > MAX_NAME:
        raise BoardError(f"the display name has {len(n)} characters; at most {MAX_NAME} are shown on the board")
    bad = [ch for ch in n if not (ch.isalnum() or unicodedata.category(ch).startswith("M") or ch in NAME_PUNCT)]
    if bad:
        first = unicodedata.name(bad[0], f"U+{ord(bad[0]):04X}").lower()
        raise BoardError(f"the display name may hold only letters, digits, spaces and - . ' ! ? , "
                         f"({_plural(len(bad), 'other character')}; the first: {first})")
    return n


def clean_label(s, limit: int = 60) -> str:
    """Text that comes from a run (model, task, knobs): no control or format characters, no ``<``, ``>``, ``&``
    (chart hover text reads HTML), spaces collapsed, at most ``limit`` characters."""
    s = unicodedata.normalize("NFKC", str(s if s is not None else ""))
    s = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in s
                if unicodedata.category(ch) not in ("Cf", "Co", "Cs", "Cn") and ch not in "<>&")
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _no_path(s: str) -> str:
    """A model or task name without the server's folders: a path keeps its last component; ``org/name`` hub ids
    are kept as they are."""
    s = str(s or "")
    if s.startswith(("/", "~", ".")) or "\\" in s or ":" in s or s.count("/") > 1:
        s = s.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return s


def knobs_text(cfg: dict) -> str:
    """The knobs of a run config as one short line ("rank=8 alpha=16 targets=query,value")."""
    kn = cfg.get("knobs") or {}
    skip = {"seed", "dropout", "mask_mode", "warmup_mode", "score", "selection"}
    parts = []
    for key, v in kn.items() if isinstance(kn, dict) else ():
        if key in skip or (v in (0, 0.0, None, "") and key in ("blocks", "block_size", "density")):
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v))
        parts.append(f"{key}={v:g}" if isinstance(v, float) else f"{key}={v}")
    return " ".join(parts) or "—"


def _num(v, what: str, integer: bool, lo: float, hi: float, optional: bool = False):
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise BoardError(f"this run has no valid {what} to share")
    return int(v) if integer else float(v)


def _checked(fields: dict) -> dict:
    if not isinstance(fields, dict):
        raise BoardError("nothing to share")
    method = fields.get("method")
    if method not in METHOD_NAMES:
        raise BoardError(f"runs of method '{clean_label(method, 30)}' cannot be shared")
    return dict(method=method, model=clean_label(_no_path(fields.get("model")), 60) or "?",
                task=clean_label(_no_path(fields.get("task")), 60) or "?",
                knobs=clean_label(fields.get("knobs") or "—", 120),
                trainable=_num(fields.get("trainable"), "trainable parameter count", True, 1, 1e13),
                accuracy=_num(fields.get("accuracy"), "final accuracy", False, 0.0, 1.0),
                peak_bytes=_num(fields.get("peak_bytes"), "peak memory", True, 1, 2 ** 50, optional=True),
                steps=_num(fields.get("steps"), "step count", True, 1, 10 ** 7))


def fields_from_run(entry) -> dict:
    """What the board keeps of an ``explorer.workshop.history.RunEntry``; BoardError for a run that is not finished or has
    no final accuracy."""
    status = getattr(entry, "status", "unknown")
    if status != "finished":
        raise BoardError(f"only finished runs can be shared; this one is {clean_label(status, 20)}")
    s, c = entry.summary, entry.config
    if s.get("final_accuracy") is None:
        raise BoardError("this run has no final accuracy (no held-out evaluation), so it has no place on the chart")
    return _checked(dict(method=c.get("method"), model=c.get("model"), task=s.get("task") or c.get("task"),
                         knobs=knobs_text(c), trainable=s.get("trainable_params"), accuracy=s.get("final_accuracy"),
                         peak_bytes=s.get("peak_memory_bytes"), steps=s.get("steps_done")))


def shared_message(entry_id: str, name: str) -> str:
    """The line said after a share: "Shared run3 to the class board as Ada." (a name that ends in a period, "Zoë
    K.", is not given a second one; a blank name reads "anonymous")."""
    who = name or ANONYMOUS
    return f"Shared {entry_id} to the class board as {who}" + ("" if who.endswith((".", "!", "?")) else ".")

