"""The enrolled people: int8 encodings (128 bytes each) in SQLite, never an image.

Several templates per person. Each template records the sha256 of the model that made it; encodings
of another model are meaningless, so such a gallery is refused with a message to re-enrol. Writes
are transactions (atomic); the file is created mode 0600 in a 0700 state directory, and deleted
rows are overwritten (``secure_delete``), so that ``forget`` really erases. Names that differ only in
case or Unicode normalisation are one name: each person has a key (NFC, case-folded) beside the name
as first written. Commands that only read never create a gallery (``create=False``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .access import AccessRule, make_rule
from .errors import GalleryBusyError, GalleryError, NoGalleryError, UnknownPersonError
from .match import from_int8, to_int8
from .statedir import default_state_dir, private_file

__all__ = ["Gallery", "GalleryMatrix", "Person", "check_name", "default_state_dir", "name_key"]

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.sqlite3"
MAX_NAME = 64
BUSY_TIMEOUT_S = 10.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL, key TEXT);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    model_sha256 TEXT NOT NULL,
    created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS templates_person ON templates(person_id);
-- access rules (edge_verify/access.py): added to older galleries when they are opened
CREATE TABLE IF NOT EXISTS access_rules (
    person_id INTEGER PRIMARY KEY REFERENCES people(id) ON DELETE CASCADE,
    valid_from TEXT, valid_until TEXT, schedule TEXT);
"""


def check_name(name: str) -> str:
    """A person's name as stored: trimmed, NFC-normalised, 1 to 64 printable characters."""
    clean = unicodedata.normalize("NFC", name.strip())
    if not clean:
        raise GalleryError("a person's name cannot be empty")
    if len(clean) > MAX_NAME:
        raise GalleryError(f"name too long ({len(clean)} characters, at most {MAX_NAME})")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise GalleryError(f"name {clean!r} contains control characters")
    return clean


def name_key(name: str) -> str:
    """The key under which a name is unique: NFC and case-folded ("Zoë", "ZOË" and "zoe\u0308" are one)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name.strip()).casefold())


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

    def index(self, name: str) -> int | None:
        """The index of an enrolled name: the name as written, else the same key; None when absent."""
        clean = unicodedata.normalize("NFC", name.strip())
        if clean in self.names:
            return self.names.index(clean)
        key = name_key(clean)
        return next((i for i, n in enumerate(self.names) if name_key(n) == key), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Gallery:
    """The SQLite gallery in a state directory, bound to one model (by sha256).

    ``create=False`` (commands that only read) raises NoGalleryError when there is no gallery file
    instead of creating an empty one. ``busy_timeout`` is how long to wait for a lock held by another
    process before GalleryBusyError."""

    def __init__(self, state_dir: str | Path, model_sha256: str, create: bool = True,
                 busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / GALLERY_FILE
        self.model_sha256 = model_sha256
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._cache: tuple[int, GalleryMatrix] | None = None
        self._conn = self._open(create)

    def _error(self, exc: sqlite3.Error, doing: str) -> GalleryError:
        """The user's message for an SQLite error: locked, damaged, full and read-only differ."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        text = str(exc)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
            return GalleryBusyError(
                f"gallery {self.path} is locked by another process (still busy after {self.busy_timeout:g} s); "
                f"nothing was changed and no enrolment is lost: try again, or stop the process that holds it "
                "(e.g. `systemctl stop edge-verify`)")
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return GalleryError(f"gallery {self.path} is unreadable ({text}); it was left untouched: move it away "
                                "(keep the copy) to start an empty gallery")
        if code == sqlite3.SQLITE_FULL:
            return GalleryError(f"gallery {self.path}: cannot {doing}: the disk is full; nothing was changed",
                                transient=True)
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
            return GalleryError(f"gallery {self.path}: cannot {doing}: {text} (check the file's owner and mode)")
        return GalleryError(f"gallery {self.path}: cannot {doing}: {text}")

    def _open(self, create: bool) -> sqlite3.Connection:
        if not create and not self.path.is_file():
            raise NoGalleryError(f"no gallery at {self.path}: no one is enrolled there yet (check --state-dir, "
                                 "or enrol with `edge-verify enroll NAME PHOTO`)")
        try:
            private_file(self.path, create=create)
        except OSError as exc:
            raise GalleryError(f"cannot use state directory {self.state_dir}: {exc.strerror or exc}") from None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=self.busy_timeout)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # forget overwrites the deleted templates' bytes
            conn.executescript(_SCHEMA)
            self._migrate(conn)
        except sqlite3.Error as exc:
            raise self._error(exc, "open it") from None
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Galleries made before name keys: add the key column and fill it (names that now collide keep
        no key and are found by their exact name; a warning names them)."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(people)")}
        if "key" in columns and not conn.execute("SELECT 1 FROM people WHERE key IS NULL LIMIT 1").fetchone():
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS people_key ON people(key)")
            return
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            if "key" not in columns:
                conn.execute("ALTER TABLE people ADD COLUMN key TEXT")
            taken = {str(k) for (k,) in conn.execute("SELECT key FROM people WHERE key IS NOT NULL")}
            for pid, name in conn.execute("SELECT id, name FROM people WHERE key IS NULL ORDER BY id").fetchall():
                key = name_key(str(name))
                if key in taken:
                    log.warning("gallery %s: %r is the same name as another enrolled person (names differ only "
                                "in case or accents): forget one of them", self.path, name)
                    continue
                taken.add(key)
                conn.execute("UPDATE people SET key = ? WHERE id = ?", (key, pid))
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS people_key ON people(key)")

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read it") from None

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

    @staticmethod
    def _lookup(conn: sqlite3.Connection, name: str) -> tuple[int, str] | None:
        """(id, name as enrolled) of a person: the name as written, else the same key."""
        clean = unicodedata.normalize("NFC", name.strip())
        row = conn.execute("SELECT id, name FROM people WHERE name = ?", (clean,)).fetchone() or conn.execute(
            "SELECT id, name FROM people WHERE key = ?", (name_key(clean),)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def _find(self, name: str) -> tuple[int, str] | None:
        try:
            with self._lock:
                return self._lookup(self._conn, name)
        except sqlite3.Error as exc:
            raise self._error(exc, "read it") from None

    def _require(self, name: str) -> int:
        """The id of an enrolled person; UnknownPersonError when ``name`` is not enrolled."""
        found = self._find(name)
        if found is None:
            raise UnknownPersonError(f"{name.strip()!r} is not enrolled")
        return found[0]

    def resolve(self, name: str) -> str | None:
        """The enrolled name that ``name`` stands for ("TONY" -> "tony"), or None."""
        found = self._find(name)
        return found[1] if found else None

    def add(self, name: str, embeddings: np.ndarray) -> int:
        """Add templates for a person (created when new; an existing person of the same name key gets
        them); all or nothing. Returns how many were added."""
        name = check_name(name)
        self.check_model()
        q = to_int8(np.atleast_2d(embeddings))
        now = _now()
        try:
            with self._lock, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                found = self._lookup(self._conn, name)
                if found is None:
                    pid = self._conn.execute("INSERT INTO people(name, created, key) VALUES (?, ?, ?)",
                                             (name, now, name_key(name))).lastrowid
                else:
                    pid = found[0]
                self._conn.executemany(
                    "INSERT INTO templates(person_id, embedding, model_sha256, created) VALUES (?, ?, ?, ?)",
                    [(pid, row.tobytes(), self.model_sha256, now) for row in q],
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from None
        finally:
            self._cache = None
        return len(q)

    def forget(self, name: str) -> int:
        """Remove a person and their templates; returns how many templates went."""
        pid = self._require(name)
        try:
            with self._lock, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                (n,) = self._conn.execute("SELECT COUNT(*) FROM templates WHERE person_id = ?", (pid,)).fetchone()
                self._conn.execute("DELETE FROM templates WHERE person_id = ?", (pid,))
                self._conn.execute("DELETE FROM people WHERE id = ?", (pid,))
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from None
        finally:
            self._cache = None
        return int(n)

    def people(self) -> list[Person]:
        rows = self._execute(
            "SELECT p.name, COUNT(t.id), p.created FROM people p LEFT JOIN templates t ON t.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name")
        return [Person(str(n), int(c), str(cr)) for n, c, cr in rows]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

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

    # -- access rules: stored here, evaluated by edge_verify/access.py ---------------------------------
    def set_access(self, name: str, rule: AccessRule) -> None:
        """Replace ``name``'s access rule (an unrestricted rule removes it)."""
        pid = self._require(name)
        if rule.unrestricted:
            self._execute("DELETE FROM access_rules WHERE person_id = ?", (pid,))
            return
        schedule, valid_from, valid_until = rule.texts()
        self._execute(
            "INSERT OR REPLACE INTO access_rules(person_id, valid_from, valid_until, schedule) VALUES (?, ?, ?, ?)",
            (pid, valid_from, valid_until, schedule))

    def access(self, name: str) -> AccessRule:
        """``name``'s access rule; unrestricted when none is set. UnknownPersonError when not enrolled."""
        pid = self._require(name)
        rows = self._execute("SELECT schedule, valid_from, valid_until FROM access_rules WHERE person_id = ?",
                             (pid,))
        return make_rule(*rows[0]) if rows else AccessRule()

    def access_rules(self) -> dict[str, AccessRule]:
        """Every restricted person's rule, by name (people not listed may enter at any time)."""
        rows = self._execute("SELECT p.name, a.schedule, a.valid_from, a.valid_until FROM access_rules a "
                             "JOIN people p ON p.id = a.person_id")
        return {str(n): make_rule(*rest) for n, *rest in rows}
