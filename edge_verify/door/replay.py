"""The replay guard: the last accepted ``seq`` per verifier device and boot id, in SQLite.

An event is accepted only when its ``seq`` is above the last one accepted for its device and boot id;
the new ``seq`` is committed (to disk) before the relay may move, so a restart of the controller never
accepts an event it already used. Old boot ids are pruned (the newest ``keep_boots`` per device stay).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..errors import EdgeVerifyError
from ..statedir import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_seq (
    device_id TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (device_id, boot_id));
"""


class ReplayError(EdgeVerifyError):
    """The replay store cannot be opened or written."""


class ReplayStore:
    def __init__(self, path: str | Path, keep_boots: int = 20) -> None:
        self.path = Path(path)
        self.keep_boots = keep_boots
        self._lock = threading.Lock()
        try:
            private_file(self.path)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")  # the commit is on disk before the relay moves
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as e:
            raise ReplayError(f"replay store {self.path}: {e}") from None

    def last(self, device_id: str, boot_id: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM last_seq WHERE device_id = ? AND boot_id = ?",
                                     (device_id, boot_id)).fetchone()
        return None if row is None else int(row[0])

    def accept(self, device_id: str, boot_id: str, seq: int, now: float) -> bool:
        """Record ``seq`` and return True when it is above the last accepted for (device, boot); False (and
        nothing written) for a replayed or reordered event. Raises ReplayError when it cannot write."""
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute("SELECT seq FROM last_seq WHERE device_id = ? AND boot_id = ?",
                                             (device_id, boot_id)).fetchone()
                    if row is not None and seq <= int(row[0]):
                        self._conn.execute("ROLLBACK")
                        return False
                    self._conn.execute("INSERT OR REPLACE INTO last_seq VALUES (?, ?, ?, ?)",
                                       (device_id, boot_id, seq, now))
                    if row is None:
                        self._conn.execute(
                            "DELETE FROM last_seq WHERE device_id = ? AND boot_id NOT IN (SELECT boot_id FROM "
                            "last_seq WHERE device_id = ? ORDER BY updated DESC LIMIT ?)",
                            (device_id, device_id, self.keep_boots))
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as e:
            raise ReplayError(f"replay store {self.path}: cannot write: {e}") from None
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()
