"""The SQLite gallery: int8 templates, model binding, atomic writes, private file, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edge_verify.errors import GalleryError, UnknownPersonError
from edge_verify.gallery import Gallery, check_name


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
    import sqlite3

    Gallery(state_dir, "a" * 64).add("ann", unit_rows(1))
    con = sqlite3.connect(state_dir / "gallery.sqlite3")
    (blob,) = con.execute("SELECT embedding FROM templates").fetchone()
    assert len(blob) == 128
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "people", "templates"}


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
