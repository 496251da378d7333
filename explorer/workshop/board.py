"""The class board: finished runs that participants chose to share, for the whole room to see on one chart.

Pure Python (no streamlit).  One SQLite file (Python's ``sqlite3``) per server, so the board survives a restart::

    board = default_board()          # PEFT_EXPLORER_BOARD, else <cache>/class-board.sqlite
    board.share(fields_from_run(run_entry), who=session_id, name="Ada")   # BoardError: one readable line
    board.entries()                  # public entries, oldest first (hidden ones left out)
    board.hide(entry_id, token=typed, who=session_id)    # instructor only
    board.clear(token=typed, who=session_id)             # instructor only

The names, labels and fields an entry may hold are checked by ``explorer.workshop.board_fields``.  What an entry
holds: the display name ("" = anonymous), method, model, task, a knobs summary, trainable
parameters, final held-out accuracy (0-1), peak memory bytes, steps and the time it was shared; never a path
or a session id.  The session id only feeds three keyed hashes (with a random salt kept in the file) that the
rate limit, the "already shared" check and the count of participants (:meth:`Board.participants`, anonymous
sharers included) compare; none leaves this module.

Limits (each refusal is a :class:`BoardError` with one line):

- size: at most ``PEFT_EXPLORER_BOARD_MAX`` entries (default 500), the oldest dropped;
- floods: at most ``SESSION_LIMIT`` shares per session and ``GLOBAL_LIMIT`` per room in a rolling window
  (``PEFT_EXPLORER_BOARD_SESSION_RATE`` / ``PEFT_EXPLORER_BOARD_GLOBAL_RATE``: shares per minute);
- names: :func:`clean_name` (no control characters, no HTML or markdown marks, at most ``MAX_NAME`` characters);
- the instructor token (``PEFT_EXPLORER_INSTRUCTOR_TOKEN``, set by the server's operator): compared with
  ``hmac.compare_digest``; without one, hiding and clearing are disabled; wrong tokens are limited per session.

Concurrency: WAL journal, a connection per call, every write in one ``BEGIN IMMEDIATE`` transaction (the rate
check and the insert cannot interleave between sessions or server processes).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from explorer.workshop.board_fields import (ANONYMOUS, MAX_NAME, METHOD_NAMES, BoardError, _checked, _plural,
                                            clean_label, clean_name, fields_from_run, knobs_text, shared_message)
from explorer.workshop.sqlite_store import SqliteStore

__all__ = ["Board", "BoardError", "clean_name", "clean_label", "fields_from_run", "knobs_text", "shared_message",
           "default_board",
           "board_path", "instructor_token", "token_problem", "METHOD_NAMES", "MAX_NAME", "ANONYMOUS"]

PATH_ENV = "PEFT_EXPLORER_BOARD"
MAX_ENV = "PEFT_EXPLORER_BOARD_MAX"
TOKEN_ENV = "PEFT_EXPLORER_INSTRUCTOR_TOKEN"
SESSION_RATE_ENV = "PEFT_EXPLORER_BOARD_SESSION_RATE"
GLOBAL_RATE_ENV = "PEFT_EXPLORER_BOARD_GLOBAL_RATE"
DEFAULT_MAX = 500
SESSION_LIMIT = (5, 60.0)  # at most 5 shares per session per 60 s
GLOBAL_LIMIT = (60, 60.0)  # at most 60 shares per room per 60 s
TOKEN_TRIES = (5, 300.0)  # at most 5 wrong instructor tokens per session per 5 minutes
MIN_TOKEN = 8
SCHEMA_VERSION = 1
PUBLIC = ("id", "name", "method", "model", "task", "knobs", "trainable", "accuracy", "peak_bytes", "steps",
          "created", "hidden")


# ----------------------------------------------------------------------------- settings

def board_path() -> Path:
    p = os.environ.get(PATH_ENV)
    if p:
        return Path(p)
    from explorer.model_files import cache_dir

    return cache_dir() / "class-board.sqlite"


def _env_int(name: str, default: int, lo: int, hi: int) -> int:
    try:
        v = int(float(os.environ.get(name, default)))
    except (TypeError, ValueError, OverflowError):
        return default
    return min(hi, max(lo, v))


def instructor_token() -> str | None:
    t = os.environ.get(TOKEN_ENV, "")
    return t if t.strip() else None


def token_problem() -> str | None:
    """Why hiding and clearing are disabled on this server (one line), or None when they are enabled."""
    t = instructor_token()
    if t is None:
        return (f"Hiding and clearing are disabled: the server's operator has not set {TOKEN_ENV} "
                "(set it before starting the server to enable them).")
    if len(t) < MIN_TOKEN:
        return (f"Hiding and clearing are disabled: {TOKEN_ENV} is shorter than {MIN_TOKEN} characters; the "
                "operator should set a longer one.")
    return None


# ----------------------------------------------------------------------------- the board

class Board(SqliteStore):
    """One board file.  Every method opens its own connection: a Board is safe to share between threads."""

    error = BoardError
    noun = "the class board"
    schema_version = SCHEMA_VERSION
    schema = """CREATE TABLE IF NOT EXISTS entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, method TEXT NOT NULL, model TEXT NOT NULL,
        task TEXT NOT NULL, knobs TEXT NOT NULL, trainable INTEGER NOT NULL, accuracy REAL NOT NULL,
        peak_bytes INTEGER, steps INTEGER NOT NULL, created REAL NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
        dedupe TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS entries_dedupe ON entries (dedupe)"""

    def __init__(self, path=None, max_entries: int | None = None, session_limit: tuple | None = None,
                 global_limit: tuple | None = None, clock=time.time):
        self.max_entries = int(max_entries) if max_entries is not None else _env_int(MAX_ENV, DEFAULT_MAX, 1, 100_000)
        self.session_limit = session_limit or (_env_int(SESSION_RATE_ENV, SESSION_LIMIT[0], 1, 10_000),
                                               SESSION_LIMIT[1])
        self.global_limit = global_limit or (_env_int(GLOBAL_RATE_ENV, GLOBAL_LIMIT[0], 1, 100_000), GLOBAL_LIMIT[1])
        self.clock = clock
        super().__init__(path if path is not None else board_path())

    # -- the file's tables (the plumbing is SqliteStore's) ---------------------------
    def _migrate(self, con) -> None:
        cols = {r[1] for r in con.execute("PRAGMA table_info(entries)")}
        if "sharer" not in cols:  # a board from before participants were counted: its rows keep NULL
            con.execute("ALTER TABLE entries ADD COLUMN sharer TEXT")
        con.execute("INSERT OR IGNORE INTO meta VALUES ('version', '0')")

    @staticmethod
    def _bump(con) -> None:
        con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")

    # -- reading -------------------------------------------------------------------
    @property
    def cache_id(self) -> tuple[str, str]:
        """Names this board file in caches of what is drawn from it (with :meth:`version`): its path and the random
        salt made with the file, so a board made again at the same path is another board."""
        return str(self.path), self._salt.decode()

    def version(self) -> int:
        """A counter that grows with every change (share, hide, clear): a page redraws when it moved."""
        with self._tx(write=False) as con:
            return int(con.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])

    def entries(self, include_hidden: bool = False) -> list[dict]:
        """The shared runs, oldest first, as dicts with the keys of ``PUBLIC`` (``name`` "" = anonymous)."""
        q = f"SELECT {', '.join(PUBLIC)} FROM entries" + ("" if include_hidden else " WHERE hidden=0") + " ORDER BY id"
        with self._tx(write=False) as con:
            rows = con.execute(q).fetchall()
        return [dict(zip(PUBLIC, r), hidden=bool(r[-1])) for r in rows]

    def counts(self) -> tuple[int, int]:
        """(shown entries, hidden entries)."""
        with self._tx(write=False) as con:
            shown, hidden = con.execute("SELECT COALESCE(SUM(hidden=0), 0), COALESCE(SUM(hidden=1), 0) "
                                        "FROM entries").fetchone()
        return int(shown), int(hidden)

    def participants(self, entry_ids=None) -> dict:
        """How many people shared the given entries (default: every shown entry), anonymous shares included:
        ``total`` distinct sharers (a keyed hash of the session, kept in the file, never returned), ``named``
        distinct display names, ``anonymous`` sharers with at least one anonymous share, and ``unknown``
        anonymous entries shared before the board kept sharers (each may or may not be someone counted)."""
        with self._tx(write=False) as con:
            if entry_ids is None:
                rows = con.execute("SELECT name, sharer FROM entries WHERE hidden=0").fetchall()
            else:
                ids = [int(i) for i in entry_ids]
                rows = []
                for k in range(0, len(ids), 500):  # SQLite's parameter limit
                    part = ids[k:k + 500]
                    rows += con.execute(f"SELECT name, sharer FROM entries WHERE id IN ({','.join('?' * len(part))})",
                                        part).fetchall()
        known = {(sharer or f"name:{name}") for name, sharer in rows if sharer or name}
        return dict(total=len(known), named=len({name for name, _ in rows if name}),
                    anonymous=len({sharer for name, sharer in rows if not name and sharer}),
                    unknown=sum(1 for name, sharer in rows if not name and not sharer))

    def is_shared(self, who: str, run_key: str) -> bool:
        with self._tx(write=False) as con:
            return con.execute("SELECT 1 FROM entries WHERE dedupe=?",
                               (self._hash("run", who, run_key),)).fetchone() is not None

    # -- writing -------------------------------------------------------------------
    def share(self, fields: dict, who: str, name: str | None = "", run_key: str = "") -> dict:
        """Add one run (``fields``: see :func:`fields_from_run`) shared by session ``who`` under ``name``.

        Refused (BoardError, one line) for a hostile name, invalid fields, a run this session already shared
        (``run_key``: its id in the session), or when the session or the room shares too fast.  The oldest
        entries beyond ``max_entries`` are dropped.  Returns the public entry."""
        nm = clean_name(name)
        f = _checked(fields)
        who_h = self._hash("who", who or "")
        dedupe = self._hash("run", who or "", run_key) if run_key else self._hash("nokey", secrets.token_hex(8))
        with self._tx() as con:
            now = float(self.clock())
            if con.execute("SELECT 1 FROM entries WHERE dedupe=?", (dedupe,)).fetchone():
                raise BoardError("this run is already on the class board")
            w = self._wait(con, "share", who_h, self.session_limit, now)
            if w is not None:
                n, window = self.session_limit
                raise BoardError(f"you shared {_plural(n, 'run')} in the last {window:.0f} s; wait {w:.0f} s "
                                 "before sharing another")
            w = self._wait(con, "share", None, self.global_limit, now)
            if w is not None:
                n, window = self.global_limit
                raise BoardError(f"the room shared {_plural(n, 'run')} in the last {window:.0f} s, the most the "
                                 f"board takes; try again in {w:.0f} s")
            cur = con.execute("INSERT INTO entries (name, method, model, task, knobs, trainable, accuracy, "
                              "peak_bytes, steps, created, hidden, dedupe, sharer) "
                              "VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?)",
                              (nm, f["method"], f["model"], f["task"], f["knobs"], f["trainable"], f["accuracy"],
                               f["peak_bytes"], f["steps"], now, dedupe, self._hash("sharer", who or "")))
            eid = cur.lastrowid
            con.execute("INSERT INTO events VALUES ('share', ?, ?)", (who_h, now))
            keep = max(self.session_limit[1], self.global_limit[1], TOKEN_TRIES[1])
            con.execute("DELETE FROM events WHERE t < ?", (now - keep,))
            con.execute("DELETE FROM entries WHERE id NOT IN (SELECT id FROM entries ORDER BY id DESC LIMIT ?)",
                        (self.max_entries,))
            self._bump(con)
        return dict(id=eid, name=nm, created=now, hidden=False, **f)

    def authorize(self, token, who: str) -> None:
        """Check the instructor token typed by session ``who`` (``hmac.compare_digest``); BoardError when hiding
        and clearing are disabled, the token is wrong, or this session typed too many wrong ones."""
        why = token_problem()
        if why:
            raise BoardError(why)
        who_h = self._hash("who", who or "")
        with self._tx() as con:
            now = float(self.clock())
            w = self._wait(con, "bad_token", who_h, TOKEN_TRIES, now)
            if w is not None:
                raise BoardError(f"too many wrong instructor tokens from this session; wait {w:.0f} s")
            typed = token if isinstance(token, str) else ""
            if hmac.compare_digest(typed.encode("utf-8", "replace"), instructor_token().encode("utf-8", "replace")):
                return
            con.execute("INSERT INTO events VALUES ('bad_token', ?, ?)", (who_h, now))
        raise BoardError("wrong instructor token" if typed else "type the instructor token first")

    def hide(self, entry_ids, token, who: str, hidden: bool = True) -> int:
        """Hide (or show again) entries; instructor only.  Returns how many changed."""
        self.authorize(token, who)
        ids = [int(i) for i in ([entry_ids] if isinstance(entry_ids, int) else entry_ids)]
        with self._tx() as con:
            n = 0
            for i in ids:
                n += con.execute("UPDATE entries SET hidden=? WHERE id=? AND hidden<>?",
                                 (int(hidden), i, int(hidden))).rowcount
            self._bump(con)
        return n

    def clear(self, token, who: str) -> int:
        """Delete every entry; instructor only.  Returns how many were deleted."""
        self.authorize(token, who)
        with self._tx() as con:
            n = con.execute("DELETE FROM entries").rowcount
            self._bump(con)
        return n


_BOARDS: dict[tuple, Board] = {}
_BOARDS_LOCK = threading.Lock()


def default_board() -> Board:
    """The server's board (one object per file and settings; the environment is read on each call)."""
    key = (str(board_path()), os.environ.get(MAX_ENV), os.environ.get(SESSION_RATE_ENV),
           os.environ.get(GLOBAL_RATE_ENV))
    with _BOARDS_LOCK:
        b = _BOARDS.get(key)
        if b is None or not b.path.exists():
            b = _BOARDS[key] = Board(key[0])
        return b
