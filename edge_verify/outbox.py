"""The outbox: every event is stored in SQLite (WAL) before it is published, and deleted only when the
broker acknowledges it (PUBACK). It also keeps ``seq``, so numbering continues across restarts.

Capped by count and by age: the oldest events beyond a cap are dropped, with a warning in the log.
Thread-safe (one connection behind a lock): the frame loop adds, the MQTT thread acknowledges.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgeVerifyError
from .statedir import private_file

log = logging.getLogger(__name__)

FILENAME = "outbox.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    quarantined REAL NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL
);
"""
# SQLite errors that pass by themselves: retried by the daemon, never a reason to exit
_TRANSIENT = ("locked", "busy", "full", "disk i/o", "unable to open")


def _is_transient(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, OSError) or any(t in text for t in _TRANSIENT)


class OutboxError(EdgeVerifyError):
    """The outbox database cannot be opened or written."""


@dataclass(frozen=True)
class Pending:
    seq: int
    created: float
    event: dict[str, Any]


class Outbox:
    """Events waiting for their PUBACK, oldest first."""

    def __init__(self, path: str | Path, max_events: int = 10000, max_age_s: float = 7 * 86400.0) -> None:
        self.path = Path(path)
        self.max_events, self.max_age_s = max_events, max_age_s
        self._lock = threading.Lock()
        try:
            private_file(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('last_seq', 0)")
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"cannot open the outbox {self.path}: {e}", transient=_is_transient(e)) from None
        self._quarantined: list[tuple[int, str]] = []  # quarantined by pending(), not yet reported

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; any SQLite failure becomes an OutboxError (transient
        for a locked database or a full disk)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise OutboxError(f"cannot write the outbox {self.path}: {e}", transient=_is_transient(e)) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise OutboxError(f"cannot read the outbox {self.path}: {e}", transient=_is_transient(e)) from None

    def _last_seq(self) -> int:
        """The highest seq ever given (kept in meta, so deleting sent events never reuses a number)."""
        row = self._db.execute(
            "SELECT max((SELECT value FROM meta WHERE key='last_seq'),"
            " coalesce((SELECT max(seq) FROM events), 0), coalesce((SELECT max(seq) FROM quarantine), 0))"
        ).fetchone()
        return int(row[0])

    def add(self, event: dict[str, Any], created: float | None = None) -> int:
        """Store ``event`` with the next ``seq`` (also written into ``event``) in one transaction, and
        apply the count cap. Returns the seq. An event that JSON cannot carry (NaN, inf) is refused
        before anything is written."""
        created = time.time() if created is None else created
        try:
            json.dumps(event, allow_nan=False)
        except (ValueError, TypeError) as e:
            raise OutboxError(f"event not stored: not valid JSON: {e}") from None
        with self._transaction() as db:
            seq = self._last_seq() + 1
            payload = json.dumps({**event, "seq": seq}, separators=(",", ":"), allow_nan=False)
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (seq, event["event_id"], created, payload))
            db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (seq,))
            over = db.execute("SELECT count(*) FROM events").fetchone()[0] - self.max_events
            if over > 0:
                db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (over,))
        event["seq"] = seq
        if over > 0:
            log.warning("outbox full (%d events): dropped the %d oldest unsent events", self.max_events, over)
        return seq

    def expire(self, now: float | None = None) -> int:
        """Drop events older than ``max_age_s`` (with a warning); returns how many."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            n = db.execute("DELETE FROM events WHERE created < ?", (now - self.max_age_s,)).rowcount
        if n:
            log.warning("outbox: dropped %d unsent events older than %.0f s", n, self.max_age_s)
        return int(n)

    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[Pending]:
        """Up to ``limit`` unacknowledged events, oldest first, skipping the seqs in ``exclude``. A row
        that is not a JSON object is quarantined (see :meth:`take_quarantined`), never returned."""
        rows = self._query("SELECT seq, created, payload FROM events ORDER BY seq LIMIT ?", (limit + len(exclude),))
        out = []
        for s, c, p in rows:
            if s in exclude:
                continue
            try:
                event = json.loads(p)
                if not isinstance(event, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, TypeError, RecursionError) as e:
                reason = f"unreadable row: {type(e).__name__}: {e}"
                self.quarantine(int(s), reason)
                self._quarantined.append((int(s), reason))
                continue
            out.append(Pending(int(s), float(c), event))
        return out[:limit]

    def quarantine(self, seq: int, reason: str) -> None:
        """Move an event that cannot be sent out of the queue (kept in the ``quarantine`` table for a
        person to look at), so that it never blocks the events behind it."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO quarantine SELECT seq, created, ?, ?, payload FROM events WHERE seq=?",
                       (time.time(), reason[:500], seq))
            db.execute("DELETE FROM events WHERE seq=?", (seq,))

    def take_quarantined(self) -> list[tuple[int, str]]:
        """(seq, reason) of the rows :meth:`pending` quarantined since the last call."""
        out, self._quarantined = self._quarantined, []
        return out

    def quarantined(self) -> int:
        return int(self._query("SELECT count(*) FROM quarantine")[0][0])

    def ack(self, seq: int) -> None:
        """The broker has the event: forget it."""
        with self._transaction() as db:
            db.execute("DELETE FROM events WHERE seq=?", (seq,))

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM events")[0][0])
