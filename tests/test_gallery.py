"""The SQLite gallery: int8 templates, model binding, atomic writes, private file, clear errors."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_verify.errors import GalleryBusyError, GalleryError, NoGalleryError, StateError, UnknownPersonError
from edge_verify.gallery import Gallery, check_name, name_key
from edge_verify.match import to_int8


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_add_list_match_forget(state_dir: Path) -> None:
    g = Gallery(state_dir, "a" * 64)
    assert g.add("ann", unit_rows(2, 1)) == 2
    assert g.add("bob", unit_rows(1, 2)) == 1
    assert g.add("ann", unit_rows(1, 3)) == 1
    assert [(p.name, p.templates) for p in g.people()] == [("ann", 3), ("bob", 1)]
    m = g.matrix()
    assert m.names == ["ann", "bob"] and list(m.owner) == [0, 0, 0, 1]
    np.testing.assert_allclose((m.vectors[3] * unit_rows(1, 2)[0]).sum(), 1.0, atol=1e-3)
    assert g.forget("ann") == 3
    assert g.matrix().names == ["bob"]
    with pytest.raises(UnknownPersonError, match="'ann' is not enrolled"):
        g.forget("ann")


def test_templates_are_128_bytes_and_no_image_is_stored(state_dir: Path) -> None:
    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    con = sqlite3.connect(state_dir / "gallery.sqlite3")
    (blob,) = con.execute("SELECT embedding FROM templates").fetchone()
    assert len(blob) == 128
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "people", "templates", "access_rules"}  # access_rules: times, no biometrics


def test_file_is_private(state_dir: Path) -> None:
    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    mode = stat.S_IMODE(os.stat(state_dir / "gallery.sqlite3").st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700


def test_gallery_of_another_model_is_refused(state_dir: Path) -> None:
    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    other = Gallery(state_dir, "b" * 64)
    with pytest.raises(GalleryError, match=r"another model.*re-enrol"):
        other.matrix()
    with pytest.raises(GalleryError, match="re-enrol"):
        other.add("bob", unit_rows(1))
    assert [p.name for p in other.people()] == ["ann"]  # listing and forgetting still work
    other.forget("ann")
    other.add("bob", unit_rows(1))


def test_broken_database_is_left_untouched(state_dir: Path) -> None:
    state_dir.mkdir()
    bad = state_dir / "gallery.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    with pytest.raises(GalleryError, match=r"unreadable.*left untouched"):
        Gallery(state_dir, "a" * 64)
    assert bad.read_bytes() == before


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GalleryError, match="cannot use state directory"):
        Gallery(blocker / "state", "a" * 64)


def test_changes_by_another_process_are_seen(state_dir: Path) -> None:
    reader = Gallery(state_dir, "a" * 64)
    assert reader.matrix().names == []
    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    assert reader.matrix().names == ["ann"]


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65, "tab\there"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(GalleryError):
        check_name(bad)


# -- names: case and Unicode normalisation ---------------------------------------------------------------

def test_names_differing_in_case_or_normalisation_are_one_person(state_dir: Path) -> None:
    g = Gallery(state_dir, "a" * 64)
    g.add("Zo\u00eb", unit_rows(1, 1))  # precomposed e-diaeresis (NFC)
    g.add("ZOE\u0308", unit_rows(1, 2))  # capitals, combining diaeresis (NFD)
    g.add("  zo\u00eb ", unit_rows(1, 3))
    assert [(p.name, p.templates) for p in g.people()] == [("Zo\u00eb", 3)]
    assert g.resolve("zoe\u0308") == "Zo\u00eb" and "ZO\u00cb" in g
    assert g.matrix().index("zo\u00eb") == 0
    assert name_key("Zo\u00eb") == name_key("ZOE\u0308") != name_key("Zoe")
    assert g.forget("ZO\u00cb") == 3
    assert g.people() == []


def test_old_gallery_gets_name_keys(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A gallery made before name keys: "Tony" and "tony" were two people; both stay, each found by its
    exact name, and a warning names the clash."""
    state_dir.mkdir(mode=0o700)
    con = sqlite3.connect(state_dir / "gallery.sqlite3")
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL);
        CREATE TABLE templates (id INTEGER PRIMARY KEY,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            embedding BLOB NOT NULL, model_sha256 TEXT NOT NULL, created TEXT NOT NULL);
        INSERT INTO people VALUES (1, 'Tony', 'then'), (2, 'tony', 'then'), (3, 'Ann', 'then');
    """)
    con.commit()
    con.close()
    g = Gallery(state_dir, "a" * 64)
    assert "'tony' is the same name as another enrolled person" in caplog.text
    assert [p.name for p in g.people()] == ["Ann", "Tony", "tony"]
    assert g.resolve("ANN") == "Ann" and g.resolve("tony") == "tony" and g.resolve("TONY") == "Tony"
    g.add("ANN", unit_rows(1))
    assert [(p.name, p.templates) for p in g.people()] == [("Ann", 1), ("Tony", 0), ("tony", 0)]
    g.forget("tony")
    assert [p.name for p in g.people()] == ["Ann", "Tony"]


# -- permissions, erasure ----------------------------------------------------------------------------------

def test_open_state_dir_and_gallery_are_made_private(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    path = state_dir / "gallery.sqlite3"
    os.chmod(state_dir, 0o777)
    os.chmod(path, 0o666)
    g = Gallery(state_dir, "a" * 64)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert f"state directory {state_dir} was mode 0777" in caplog.text
    assert f"state file {path} was mode 0666" in caplog.text
    assert [p.name for p in g.people()] == ["ann"]  # nothing lost


def test_shared_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    with pytest.raises(StateError, match="shared with other users"):
        Gallery(shared, "a" * 64)
    assert not (shared / "gallery.sqlite3").exists()


def test_forget_overwrites_the_deleted_bytes(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """secure_delete is set by the gallery itself, not left to how SQLite was built: here every
    connection starts with it off, as in a build without SQLITE_SECURE_DELETE."""
    connect = sqlite3.connect

    def insecure(*args: Any, **kw: Any) -> sqlite3.Connection:
        con = connect(*args, **kw)
        con.execute("PRAGMA secure_delete = OFF")
        return con

    monkeypatch.setattr(sqlite3, "connect", insecure)
    g = Gallery(state_dir, "a" * 64)
    g.add("Keep Me", unit_rows(1, 1))
    secret = unit_rows(1, 2)
    g.add("Erase Me", secret)
    blob = to_int8(secret)[0].tobytes()
    data = (state_dir / "gallery.sqlite3").read_bytes()
    assert blob in data and b"Erase Me" in data
    g.forget("Erase Me")
    g.close()
    data = (state_dir / "gallery.sqlite3").read_bytes()
    assert blob not in data and b"Erase Me" not in data
    assert b"Keep Me" in data


# -- locked, missing ------------------------------------------------------------------------------------

def test_a_locked_gallery_is_busy_not_damaged(state_dir: Path) -> None:
    g = Gallery(state_dir, "a" * 64, busy_timeout=0.1)
    g.add("ann", unit_rows(1))
    holder = sqlite3.connect(state_dir / "gallery.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for attempt in (lambda: Gallery(state_dir, "a" * 64, busy_timeout=0.1).people(),
                        lambda: Gallery(state_dir, "a" * 64, create=False, busy_timeout=0.1),
                        lambda: g.people(), lambda: g.add("bob", unit_rows(1))):
            with pytest.raises(GalleryBusyError) as err:
                attempt()
            text = str(err.value)
            assert "locked by another process" in text and "try again" in text
            assert "move it away" not in text and "unreadable" not in text and "\n" not in text
    finally:
        holder.rollback()
        holder.close()
    assert [p.name for p in g.people()] == ["ann"]


def test_reading_never_creates_a_gallery(tmp_path: Path) -> None:
    typo = tmp_path / "stat-dir"
    with pytest.raises(NoGalleryError, match=f"no gallery at {typo}/gallery.sqlite3"):
        Gallery(typo, "a" * 64, create=False)
    assert not typo.exists()
    Gallery(typo, "a" * 64).add("ann", unit_rows(1))
    assert [p.name for p in Gallery(typo, "a" * 64, create=False).people()] == ["ann"]
