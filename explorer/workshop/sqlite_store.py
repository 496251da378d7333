"""One SQLite file shared by the server processes of one machine: the plumbing of the class board's pattern.

Pure Python (no streamlit).  A connection per call (a store is safe to share between threads), WAL journal
(readers never wait for a writer), every write one ``BEGIN IMMEDIATE`` transaction (a rate check and the insert
it guards cannot interleave between sessions or processes), a file private to the server's user, one-line
errors of the store's own type, a salted keyed hash so that session ids never reach the file, and rolling-window
rate limits read from an ``events`` table.  The class board (``explorer.workshop.board``) and the lesson room
(``explorer.workshop.room``) are built on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from contextlib import contextmanager
from pathlib import Path


class SqliteStore:
    """Subclasses set ``error`` (an exception type taking one line), ``noun`` ("the lesson room") and ``schema``
    (SQL run once in the first transaction), and may use ``_tx``, ``_hash``, ``_wait`` and ``_event``."""

    error: type = RuntimeError
    noun = "the store"
    schema_version = 1
    schema = ""

    def __init__(self, path):
        self.path = Path(path)
        self._open()

    # -- connections and transactions ------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.path), timeout=15.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=15000")
        return con

    def _fail(self, what: str, e: Exception):
        return self.error(f"{self.noun} {what} ({str(e)[:80]})")

    @contextmanager
    def _tx(self, write: bool = True):
        try:
            con = self._connect()
        except sqlite3.Error as e:
            raise self._fail("cannot be opened", e) from None
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield con
            con.execute("COMMIT")
        except sqlite3.OperationalError as e:
            self._rollback(con)
            if "locked" in str(e) or "busy" in str(e):
                raise self.error(f"{self.noun} is busy; try again in a moment") from None
            raise self._fail("cannot be used", e) from None
        except sqlite3.DatabaseError as e:
            self._rollback(con)
            raise self.error(f"{self.noun}'s file is unreadable ({str(e)[:60]}); the server's operator can move "
                             f"it away to start afresh") from None
        except BaseException:
            self._rollback(con)
            raise
        finally:
            con.close()

    def _read_one(self, sql: str, args: tuple = ()):
        """One row of one SELECT, without a transaction (a single statement reads one snapshot)."""
        try:
            con = self._connect()
        except sqlite3.Error as e:
            raise self._fail("cannot be opened", e) from None
        try:
            return con.execute(sql, args).fetchone()
        except sqlite3.Error as e:
            raise self._fail("cannot be read", e) from None
        finally:
            con.close()

    @staticmethod
    def _rollback(con) -> None:
        try:
            if con.in_transaction:
                con.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # private to the server's user
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as e:
            raise self.error(f"{self.noun}'s file cannot be made ({e.strerror})") from None
        try:
            con = self._connect()
            try:
                con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise self.error(f"{self.noun}'s file is unreadable ({str(e)[:60]}); the server's operator can move "
                             f"it away to start afresh") from None
        with self._tx() as con:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, who TEXT NOT NULL, t REAL NOT NULL)")
            con.execute("CREATE INDEX IF NOT EXISTS events_kind_t ON events (kind, t)")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(self.schema_version),))
            ver = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
            if ver != str(self.schema_version):
                raise self.error(f"{self.noun}'s file has schema {str(ver)[:10]}; this server reads "
                                 f"{self.schema_version}")
            for statement in self.schema.split(";"):  # executescript would commit mid-transaction
                if statement.strip():
                    con.execute(statement)
            self._migrate(con)
            self._salt = con.execute("SELECT value FROM meta WHERE key='salt'").fetchone()[0].encode()

    def _migrate(self, con) -> None:
        """Bring an older file's tables up to date, in the first transaction (subclasses)."""

    # -- helpers -----------------------------------------------------------------------
    def _hash(self, *parts) -> str:
        msg = "\0".join(str(p) for p in parts).encode("utf-8", "replace")
        return hmac.new(self._salt, msg, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def _wait(con, kind: str, who: str | None, limit: tuple, now: float) -> float | None:
        """Seconds until one more event of ``kind`` (by ``who``, or by anyone) fits ``limit`` = (n, window s);
        None: it fits now."""
        n, window = limit
        q = "SELECT t FROM events WHERE kind=? AND t>?" + (" AND who=?" if who is not None else "") + " ORDER BY t"
        ts = [r[0] for r in con.execute(q, (kind, now - window) + ((who,) if who is not None else ()))]
        if len(ts) < n:
            return None
        return max(1.0, ts[len(ts) - n] + window - now)

    @staticmethod
    def _event(con, kind: str, who: str, now: float, keep: float) -> None:
        con.execute("INSERT INTO events VALUES (?, ?, ?)", (kind, who, now))
        con.execute("DELETE FROM events WHERE kind=? AND t < ?", (kind, now - keep))
