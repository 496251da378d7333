"""Session folders: the one place that makes session ids, names their folders, knows who holds them and
removes them (pure Python, no streamlit).

A dashboard session's run history (``explorer.workshop.history.RunHistory``), its uploads and its exports live
in one folder.  Its id is made on the server (:func:`new_session_id`, 32 hex characters from ``secrets``),
checked with a strict pattern before it names a folder, and every path inside it goes through
:func:`explorer.workshop.security.safe_join`::

    sid = sessions.new_session_id()                   # kept in st.session_state and in the URL (sid)
    folder = sessions.session_dir(sid, create=False)  # <root>/<sid>; create=True makes it (0700)
    sessions.hold(sid, page_session_id)               # this open page owns the folder
    sessions.start_janitor(is_live)                   # once per server process: removes ended sessions' folders

Root: ``PEFT_EXPLORER_SESSIONS`` or ``<cache>/sessions`` (``explorer.model_files.cache_dir``).

**Who holds a folder.**  A page writes its session id into its URL (``sid``) so that a reload can restore the
runs.  A link copied from the address bar carries that id too; it must not hand the runs to someone else while
their owner's page is still open.  The server remembers which live page session holds each id (an opaque
token: the Streamlit session id); a new page may restore the runs of an id only when its holder is gone (a
reload: the old page disconnects first) or unknown (e.g. after a restart): :func:`may_restore`.

**Clean-up** (:func:`cleanup`; the janitor thread runs it when the server's first page loads and then every
``PEFT_EXPLORER_SESSION_SWEEP_S`` seconds, default 300):

- a folder held by a page that is still open is touched and kept;
- a folder whose page has ended (tab closed; a reload has copied its runs into the new session's folder) is
  removed once it has been untouched for ``PEFT_EXPLORER_SESSION_GRACE_S`` seconds (default 3600: a laptop
  closed over lunch comes back with its runs; far longer than Streamlit's 120 s reconnection window and a run's
  orphan timeout, whose last write touches the folder);
- a folder nobody holds (left from before a server restart, or made by scripts and tests) is removed once it
  has been untouched for ``PEFT_EXPLORER_SESSION_MAX_AGE_S`` seconds (default 86400: a day).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from explorer.workshop.security import UnsafePathError, safe_join

__all__ = ["root", "new_session_id", "valid_session_id", "session_dir", "hold", "holder", "may_restore",
           "claim_restore",
           "CleanupPolicy", "cleanup", "start_janitor", "stop_janitor", "janitor_stats"]

_SID = re.compile(r"[0-9a-f]{32}")
IsLive = Callable[[str], bool]


def root(base: Path | str | None = None) -> Path:
    """The folder holding every session folder (created 0700): ``base/sessions`` when ``base``
    is given, else ``PEFT_EXPLORER_SESSIONS`` or ``<cache>/sessions``; resolved."""
    if base is not None:
        p = Path(base) / "sessions"
    else:
        env = os.environ.get("PEFT_EXPLORER_SESSIONS")
        if env:
            p = Path(env)
        else:
            from explorer.model_files import cache_dir

            p = cache_dir() / "sessions"
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    return p.resolve()


def new_session_id() -> str:
    """A random id made on the server (128 bits, 32 hex characters)."""
    return secrets.token_hex(16)


def valid_session_id(sid) -> bool:
    return isinstance(sid, str) and bool(_SID.fullmatch(sid))


def session_dir(sid: str, create: bool = True, base: Path | str | None = None) -> Path:
    """The session's own folder (``root(base)/<sid>``); refuses ids not made by :func:`new_session_id`
    (``UnsafePathError``, a ``DataError``: one readable line).

    ``create=True`` makes it (0700) and marks it as in use (clean-up is by age); ``create=False``
    only names it (a session's first upload or run makes it; an old session's folder is only read)."""
    if not valid_session_id(sid):
        raise UnsafePathError("invalid session id")
    d = safe_join(root(base), sid)
    if create:
        d.mkdir(mode=0o700, exist_ok=True)
        os.utime(d)
    return d


# ----------------------------------------------------------------------------- who holds a session id

_HOLDERS: dict[str, str] = {}
_HOLDERS_LOCK = threading.Lock()
_MAX_HOLDERS = 20_000


def _safe_live(is_live: IsLive | None, owner: str) -> bool:
    try:
        return bool(is_live(owner)) if is_live is not None else False
    except Exception:  # noqa: BLE001 - no runtime (tests, scripts): nobody is live
        return False


def hold(session_id: str, owner: str, is_live: IsLive | None = None) -> None:
    """Record that the page session ``owner`` holds the session ``session_id`` (server-wide)."""
    if not valid_session_id(session_id) or not isinstance(owner, str) or not owner:
        return
    with _HOLDERS_LOCK:
        _HOLDERS[session_id] = owner
        if len(_HOLDERS) > _MAX_HOLDERS:  # forget the holders whose page is gone, then the oldest
            for k in [k for k, v in _HOLDERS.items() if is_live is None or not _safe_live(is_live, v)]:
                del _HOLDERS[k]
            for k in list(_HOLDERS)[: max(0, len(_HOLDERS) - _MAX_HOLDERS // 2)]:
                del _HOLDERS[k]


def holder(session_id: str) -> str | None:
    with _HOLDERS_LOCK:
        return _HOLDERS.get(session_id)


def _forget(session_id: str) -> None:
    with _HOLDERS_LOCK:
        _HOLDERS.pop(session_id, None)


def may_restore(session_id: str, is_live: IsLive, me: str | None = None, wait_s: float = 2.0) -> bool:
    """Whether a new page may start from a copy of ``session_id``'s runs.

    True when nobody holds the id, the holder is ``me``, or the holder's page is not connected
    (``is_live(owner)`` False) within ``wait_s`` seconds (a reload's old page may disconnect a
    moment after the new one connects).  False while the holder's page stays open: the id came
    from a shared link, and the runs stay with their owner.
    """
    owner = holder(session_id)
    if owner is None or owner == me:
        return True
    deadline = time.monotonic() + max(0.0, float(wait_s))
    while _safe_live(is_live, owner):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


_RESTORED: dict[str, str] = {}  # session id -> the page that took its runs (each id's runs are handed on once)


def claim_restore(session_id: str, is_live: IsLive, me: str | None = None, wait_s: float = 2.0) -> bool:
    """:func:`may_restore`, once per session id: the first page that may start from ``session_id``'s runs takes
    them (a reload), and any later page that brings the same id is refused.  A link copied from the address bar
    before its owner reloaded carries the old id: opened after the reload, it gets the settings, not the runs."""
    if not valid_session_id(session_id):
        return False
    with _HOLDERS_LOCK:
        if session_id in _RESTORED:
            return False
    if not may_restore(session_id, is_live, me=me, wait_s=wait_s):
        return False
    with _HOLDERS_LOCK:
        if session_id in _RESTORED:
            return False  # another page took them while this one waited
        _RESTORED[session_id] = me or "?"
        if len(_RESTORED) > _MAX_HOLDERS:
            for k in list(_RESTORED)[: len(_RESTORED) // 2]:
                del _RESTORED[k]
    return True


# ----------------------------------------------------------------------------- clean-up


def _env_seconds(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, ""))
        return v if v > 0 else default
    except ValueError:
        return default


@dataclass(frozen=True)
class CleanupPolicy:
    """How long folders stay (seconds); :meth:`from_env` reads the ``PEFT_EXPLORER_SESSION_*`` variables."""

    max_age_s: float = 24 * 3600   # a folder nobody holds, untouched this long, goes
    grace_s: float = 3600.0        # a folder whose page has ended, untouched this long, goes
    interval_s: float = 300.0      # the janitor's sweep period

    @classmethod
    def from_env(cls) -> "CleanupPolicy":
        return cls(max_age_s=_env_seconds("PEFT_EXPLORER_SESSION_MAX_AGE_S", cls.max_age_s),
                   grace_s=_env_seconds("PEFT_EXPLORER_SESSION_GRACE_S", cls.grace_s),
                   interval_s=_env_seconds("PEFT_EXPLORER_SESSION_SWEEP_S", cls.interval_s))


def cleanup(max_age_s: float | None = None, is_live: IsLive | None = None, grace_s: float | None = None) -> int:
    """Remove ended sessions' folders (the rules in the module docstring); returns how many were removed.

    Without ``is_live`` nobody's page is known to be open or ended: only the age rule (``max_age_s``) applies.
    Defaults: :meth:`CleanupPolicy.from_env`.
    """
    pol = CleanupPolicy.from_env()
    max_age = pol.max_age_s if max_age_s is None else float(max_age_s)
    grace = pol.grace_s if grace_s is None else float(grace_s)
    n = 0
    base = root()
    now = time.time()
    for d in base.iterdir():
        if not valid_session_id(d.name) or d.is_symlink() or not d.is_dir():
            continue
        owner = holder(d.name) if is_live is not None else None
        try:
            if owner is not None and _safe_live(is_live, owner):
                os.utime(d)  # its page is open: the age counts from the last time it was seen
                continue
            limit = grace if owner is not None else max_age
            if now - d.stat().st_mtime > limit:
                shutil.rmtree(d, ignore_errors=True)
                if owner is not None:
                    _forget(d.name)
                n += 1
        except OSError:
            pass
    return n


@dataclass
class JanitorStats:
    started: float
    policy: CleanupPolicy
    sweeps: int = 0
    removed: int = 0
    last_sweep: float | None = None
    last_error: str = ""


class _Janitor:
    def __init__(self, is_live: IsLive | None, policy: CleanupPolicy):
        self.is_live = is_live
        self.stats = JanitorStats(started=time.time(), policy=policy)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="peft-sessions-janitor", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                self.stats.removed += cleanup(self.stats.policy.max_age_s, self.is_live, self.stats.policy.grace_s)
                self.stats.last_error = ""
            except Exception as e:  # noqa: BLE001 - a sweep that fails is retried at the next period
                self.stats.last_error = f"{type(e).__name__}: {e}"[:200]
            self.stats.sweeps += 1
            self.stats.last_sweep = time.time()
            if self.stop_event.wait(self.stats.policy.interval_s):
                return


_JANITOR: _Janitor | None = None
_JANITOR_LOCK = threading.Lock()


def start_janitor(is_live: IsLive | None = None, policy: CleanupPolicy | None = None) -> bool:
    """Start the server's janitor thread once (later calls only update ``is_live``): it sweeps at once, then
    every ``policy.interval_s`` seconds.  Returns True when this call started it."""
    global _JANITOR
    with _JANITOR_LOCK:
        if _JANITOR is not None and _JANITOR.thread.is_alive():
            if is_live is not None:
                _JANITOR.is_live = is_live
            return False
        _JANITOR = _Janitor(is_live, policy or CleanupPolicy.from_env())
        _JANITOR.thread.start()
        return True


def stop_janitor(timeout: float = 5.0) -> None:
    """Stop the janitor thread (tests)."""
    global _JANITOR
    with _JANITOR_LOCK:
        j, _JANITOR = _JANITOR, None
    if j is not None:
        j.stop_event.set()
        j.thread.join(timeout)


def janitor_stats() -> dict | None:
    """What the janitor did (the debug status panel shows it): sweeps, folders removed, its policy; None when
    it has not started."""
    j = _JANITOR
    return None if j is None else asdict(j.stats)
