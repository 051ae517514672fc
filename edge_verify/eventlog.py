"""The local event log: every event the daemon decides, kept in ``<state_dir>/events.sqlite3`` (0600) for
the web console, with retention by age and by rows. The outbox is not a log: it deletes each event once
the broker has acknowledged it.

The log also indexes the face snapshots (:mod:`edge_verify.snapshots`), so that forgetting a person
finds theirs. One connection behind a lock: the daemon's frame loop appends, the console reads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgeVerifyError
from .events import parse_iso_utc
from .statedir import private_file

log = logging.getLogger(__name__)

FILENAME = "events.sqlite3"
PRUNE_EVERY = 100  # appends between two retention passes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    event_type TEXT NOT NULL,
    person TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_person ON events(person);
CREATE TABLE IF NOT EXISTS snapshots (
    event_id TEXT PRIMARY KEY,
    person TEXT,
    ts REAL NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_ts ON snapshots(ts);
"""


class EventLogError(EdgeVerifyError):
    """The event log cannot be opened, read or written."""


@dataclass(frozen=True)
class LoggedEvent:
    event: dict[str, Any]  # as published (schema v1), with its seq
    snapshot: str | None  # the snapshot's file name, when one was kept


@dataclass(frozen=True)
class Snapshot:
    event_id: str
    person: str | None
    ts: float
    file: str
    bytes: int


def _where(conditions: list[tuple[str, list[Any] | None]]) -> tuple[str, list[Any]]:
    """A WHERE clause of the conditions whose arguments are not None (ANDed), and its arguments."""
    used = [(sql, args) for sql, args in conditions if args is not None]
    clause = " WHERE " + " AND ".join(sql for sql, _ in used) if used else ""
    return clause, [a for _, args in used for a in args]


class EventLog:
    def __init__(self, state_dir: str | Path, retention_days: float = 90.0, max_rows: int = 100000) -> None:
        self.path = Path(state_dir) / FILENAME
        self.retention_s, self.max_rows = retention_days * 86400.0, max_rows
        self._lock = threading.Lock()
        self._appended = 0
        try:
            private_file(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise EventLogError(f"cannot open the event log {self.path}: {e}", transient=True) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as e:
            raise EventLogError(f"event log {self.path}: {e}", transient=True) from None

    def _change(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement that changes rows; how many it changed."""
        try:
            with self._lock:
                return int(self._db.execute(sql, tuple(args)).rowcount)
        except sqlite3.Error as e:
            raise EventLogError(f"event log {self.path}: {e}", transient=True) from None

    # -- events -------------------------------------------------------------------------------------
    def record(self, event: dict[str, Any]) -> None:
        """Append one event (as stored in the outbox, with its seq); duplicates are ignored."""
        self._change("INSERT OR IGNORE INTO events(event_id, seq, ts, event_type, person, payload) "
                  "VALUES (?, ?, ?, ?, ?, ?)",
                  (event["event_id"], int(event["seq"]), parse_iso_utc(event["ts"]), event["event_type"],
                   event.get("person"), json.dumps(event, separators=(",", ":"))))
        self._appended += 1
        if self._appended % PRUNE_EVERY == 1:
            self.prune()

    def prune(self, now: float | None = None) -> int:
        """Drop events older than the retention or beyond ``max_rows``; returns how many went."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        gone = self._change("DELETE FROM events WHERE ts < ?", (cutoff,))
        gone += self._change("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_rows,))
        if gone:
            log.info("event log: %d old events dropped", gone)
        return gone

    def query(self, *, types: Sequence[str] = (), person: str | None = None, since: float | None = None,
              until: float | None = None, limit: int = 100) -> list[LoggedEvent]:
        """Events newest first; ``types`` (any of), ``person`` (exact name), ``since``/``until`` (Unix s)."""
        where, args = _where([(f"e.event_type IN ({','.join('?' * len(types))})", list(types) if types else None),
                              ("e.person = ?", [person] if person else None),
                              ("e.ts >= ?", [since] if since is not None else None),
                              ("e.ts < ?", [until] if until is not None else None)])
        sql = ("SELECT e.payload, s.file FROM events e LEFT JOIN snapshots s ON s.event_id = e.event_id"
               + where + " ORDER BY e.id DESC LIMIT ?")
        rows = self._run(sql, [*args, max(1, min(int(limit), 1000))])
        return [LoggedEvent(json.loads(payload), file) for payload, file in rows]

    def count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM events")[0][0])

    # -- snapshots (files kept by edge_verify.snapshots) --------------------------------------------
    def add_snapshot(self, s: Snapshot) -> None:
        self._change("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                     (s.event_id, s.person, s.ts, s.file, s.bytes))

    def snapshot(self, event_id: str) -> Snapshot | None:
        rows = self._run("SELECT * FROM snapshots WHERE event_id = ?", (event_id,))
        return Snapshot(*rows[0]) if rows else None

    def snapshots(self, *, person: str | None = None, older_than: float | None = None) -> list[Snapshot]:
        """Snapshots oldest first: all, one person's, or those taken before ``older_than``."""
        where, args = _where([("person = ?", [person] if person is not None else None),
                              ("ts < ?", [older_than] if older_than is not None else None)])
        sql = "SELECT * FROM snapshots" + where + " ORDER BY ts"
        return [Snapshot(*r) for r in self._run(sql, args)]

    def snapshot_bytes(self) -> int:
        return int(self._run("SELECT COALESCE(SUM(bytes), 0) FROM snapshots")[0][0])

    def drop_snapshots(self, event_ids: Sequence[str]) -> None:
        """Forget the snapshot rows of ``event_ids``, in one transaction (all or none)."""
        if not event_ids:
            return
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM snapshots WHERE event_id = ?", [(eid,) for eid in event_ids])
        except sqlite3.Error as e:
            raise EventLogError(f"event log {self.path}: {e}", transient=True) from None
