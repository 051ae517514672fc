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
"""


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
            raise OutboxError(f"cannot open the outbox {self.path}: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _last_seq(self) -> int:
        """The highest seq ever given (kept in meta, so deleting sent events never reuses a number)."""
        row = self._db.execute(
            "SELECT max((SELECT value FROM meta WHERE key='last_seq'),"
            " coalesce((SELECT max(seq) FROM events), 0))").fetchone()
        return int(row[0])

    def add(self, event: dict[str, Any], created: float | None = None) -> int:
        """Store ``event`` with the next ``seq`` (also written into ``event``) in one transaction, and
        apply the count cap. Returns the seq."""
        created = time.time() if created is None else created
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._last_seq() + 1
                event["seq"] = seq
                self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                                 (seq, event["event_id"], created, json.dumps(event, separators=(",", ":"))))
                self._db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (seq,))
                over = self._db.execute("SELECT count(*) FROM events").fetchone()[0] - self.max_events
                if over > 0:
                    self._db.execute("DELETE FROM events WHERE seq IN "
                                     "(SELECT seq FROM events ORDER BY seq LIMIT ?)", (over,))
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._db.execute("ROLLBACK") if self._db.in_transaction else None
                raise OutboxError(f"cannot write the outbox {self.path}: {e}") from None
        if over > 0:
            log.warning("outbox full (%d events): dropped the %d oldest unsent events", self.max_events, over)
        return seq

    def expire(self, now: float | None = None) -> int:
        """Drop events older than ``max_age_s`` (with a warning); returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            n = self._db.execute("DELETE FROM events WHERE created < ?", (now - self.max_age_s,)).rowcount
        if n:
            log.warning("outbox: dropped %d unsent events older than %.0f s", n, self.max_age_s)
        return n

    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[Pending]:
        """Up to ``limit`` unacknowledged events, oldest first, skipping the seqs in ``exclude``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, created, payload FROM events ORDER BY seq LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        out = [Pending(int(s), float(c), json.loads(p)) for s, c, p in rows if s not in exclude]
        return out[:limit]

    def ack(self, seq: int) -> None:
        """The broker has the event: forget it."""
        with self._lock:
            self._db.execute("DELETE FROM events WHERE seq=?", (seq,))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
