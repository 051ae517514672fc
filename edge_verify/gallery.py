"""The enrolled people: int8 encodings (128 bytes each) in SQLite, never an image.

Several templates per person. Each template records the sha256 of the model that made it; encodings
of another model are meaningless, so such a gallery is refused with a message to re-enrol. Writes
are transactions (atomic); the file is created mode 0600 in a 0700 state directory.
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GalleryError, UnknownPersonError
from .match import from_int8, to_int8
from .statedir import default_state_dir, private_file

__all__ = ["Gallery", "GalleryMatrix", "Person", "check_name", "default_state_dir"]

GALLERY_FILE = "gallery.sqlite3"
MAX_NAME = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    model_sha256 TEXT NOT NULL,
    created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS templates_person ON templates(person_id);
"""


def check_name(name: str) -> str:
    """A person's name as stored: trimmed, 1 to 64 printable characters."""
    clean = name.strip()
    if not clean:
        raise GalleryError("a person's name cannot be empty")
    if len(clean) > MAX_NAME:
        raise GalleryError(f"name too long ({len(clean)} characters, at most {MAX_NAME})")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise GalleryError(f"name {clean!r} contains control characters")
    return clean


@dataclass(frozen=True)
class Person:
    name: str
    templates: int
    created: str


@dataclass(frozen=True)
class GalleryMatrix:
    """All templates, ready for vectorised matching."""

    names: list[str]  # one per person
    owner: np.ndarray  # (N,) index into names, one per template
    vectors: np.ndarray  # (N, D) float32, unit length


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Gallery:
    """The SQLite gallery in a state directory, bound to one model (by sha256)."""

    def __init__(self, state_dir: str | Path, model_sha256: str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / GALLERY_FILE
        self.model_sha256 = model_sha256
        self._lock = threading.Lock()
        self._cache: tuple[int, GalleryMatrix] | None = None
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            private_file(self.path)
        except OSError as exc:
            raise GalleryError(f"cannot use state directory {self.state_dir}: {exc.strerror or exc}") from None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(
                f"gallery {self.path} is unreadable ({exc}); it was left untouched: "
                "move it away to start an empty gallery"
            ) from None
        return conn

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path}: {exc}") from None

    def check_model(self) -> None:
        """Refuse a gallery enrolled with another model."""
        rows = self._execute("SELECT DISTINCT model_sha256 FROM templates WHERE model_sha256 != ?",
                             (self.model_sha256,))
        if rows:
            other = str(rows[0][0])
            raise GalleryError(
                f"gallery {self.path} was enrolled with another model ({other[:12]}...), not the one in use "
                f"({self.model_sha256[:12]}...): re-enrol everyone (`edge-verify people forget NAME`, "
                "then `edge-verify enroll`), or use the model it was made with"
            )

    def add(self, name: str, embeddings: np.ndarray) -> int:
        """Add templates for a person (created when new); all or nothing. Returns how many were added."""
        name = check_name(name)
        self.check_model()
        q = to_int8(np.atleast_2d(embeddings))
        now = _now()
        try:
            with self._lock, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("INSERT OR IGNORE INTO people(name, created) VALUES (?, ?)", (name, now))
                (pid,) = self._conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
                self._conn.executemany(
                    "INSERT INTO templates(person_id, embedding, model_sha256, created) VALUES (?, ?, ?, ?)",
                    [(pid, row.tobytes(), self.model_sha256, now) for row in q],
                )
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path}: cannot write: {exc}") from None
        finally:
            self._cache = None
        return len(q)

    def forget(self, name: str) -> int:
        """Remove a person and their templates; returns how many templates went."""
        rows = self._execute("SELECT id FROM people WHERE name = ?", (name.strip(),))
        if not rows:
            raise UnknownPersonError(f"{name!r} is not enrolled")
        pid = rows[0][0]
        try:
            with self._lock, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                (n,) = self._conn.execute("SELECT COUNT(*) FROM templates WHERE person_id = ?", (pid,)).fetchone()
                self._conn.execute("DELETE FROM templates WHERE person_id = ?", (pid,))
                self._conn.execute("DELETE FROM people WHERE id = ?", (pid,))
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path}: cannot write: {exc}") from None
        finally:
            self._cache = None
        return int(n)

    def people(self) -> list[Person]:
        rows = self._execute(
            "SELECT p.name, COUNT(t.id), p.created FROM people p LEFT JOIN templates t ON t.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name")
        return [Person(str(n), int(c), str(cr)) for n, c, cr in rows]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._execute("SELECT 1 FROM people WHERE name = ?", (name.strip(),)))

    def matrix(self) -> GalleryMatrix:
        """Every template as a float matrix; cached until the database changes (any process)."""
        (version,) = self._execute("PRAGMA data_version")[0]
        stamp = int(version)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        self.check_model()
        rows = self._execute(
            "SELECT p.name, t.embedding FROM templates t JOIN people p ON p.id = t.person_id ORDER BY p.name, t.id")
        names: list[str] = []
        owner = np.zeros(len(rows), np.int64)
        dim = len(rows[0][1]) if rows else 0  # 128 for every bundled model: one int8 byte per dimension
        q = np.zeros((len(rows), dim), np.int8)
        for i, (name, blob) in enumerate(rows):
            if len(blob) != dim:
                raise GalleryError(f"gallery {self.path}: templates of different sizes ({len(blob)} and {dim} "
                                   "bytes): the file is damaged; re-enrol")
            if not names or names[-1] != name:
                names.append(str(name))
            owner[i] = len(names) - 1
            q[i] = np.frombuffer(blob, np.int8)
        m = GalleryMatrix(names, owner, from_int8(q))
        self._cache = (stamp, m)
        return m
