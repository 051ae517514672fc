"""The state directory (gallery, outbox): where it is, and private files in it.

Encodings and access events are biometric data: the directory is created 0700 and each database file
0600 before SQLite opens it (SQLite gives its journal and WAL files the database's mode). An existing
directory or file that other users may read or write is made private again, with a warning; a shared
directory (sticky, such as ``/tmp``), or one whose mode cannot be fixed, is refused.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from pathlib import Path

from .errors import ConfigError, StateError

log = logging.getLogger(__name__)

DIR_MODE, FILE_MODE = 0o700, 0o600
SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite's companions of a database file


def default_state_dir() -> Path:
    """``$EDGE_VERIFY_STATE_DIR``, else systemd's ``$STATE_DIRECTORY``, else the user's data directory."""
    for var in ("EDGE_VERIFY_STATE_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edge-verify"


def disk_space(path: Path) -> dict[str, int] | None:
    """Free and total space (MiB) of the file system holding ``path`` for health reports:
    ``{"free_mb", "total_mb"}``, None when it cannot be read."""
    try:
        disk = shutil.disk_usage(path)
    except OSError:
        return None
    return {"free_mb": disk.free // 2**20, "total_mb": disk.total // 2**20}


def _make_private(path: Path, st: os.stat_result, mode: int, what: str) -> None:
    """chmod ``path`` to ``mode`` when group or others have any access to it, with a warning."""
    old = stat.S_IMODE(st.st_mode)
    if not old & 0o077:
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise StateError(f"{what} {path} is mode {old:04o} (open to other users) and cannot be made private "
                         f"({exc.strerror or exc}): run `chmod {mode:o} {path}` as its owner") from None
    log.warning("%s %s was mode %04o (open to other users): made %04o", what, path, old, mode)


def private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700, parents as needed), or make an existing one private.

    Raises StateError for a shared directory (sticky bit, e.g. /tmp) or one whose mode cannot be
    fixed, OSError when it cannot be created."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "Not a directory", str(path))
    if st.st_mode & stat.S_ISVTX:
        raise StateError(f"state directory {path} is shared with other users (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}): give edge-verify a directory of its own")
    _make_private(path, st, DIR_MODE, "state directory")


def private_file(path: Path, create: bool = True) -> None:
    """Make ``path`` (and SQLite's journal/WAL files beside it) private: mode 0600, created empty when
    missing and ``create``; its directory is made private first. Raises StateError or OSError."""
    private_dir(path.parent)
    if create and not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE))
    for p in (path, *(path.with_name(path.name + s) for s in SIDE_FILES)):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise StateError(f"{p} is not a regular file: move it away")
        _make_private(p, st, FILE_MODE, "state file")


def check_state_dir(path: Path) -> Path:
    """Create the state directory if needed and return it; ConfigError when it cannot be used (transient
    when the disk is full: that can pass)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the gallery and outbox are biometric data
    except OSError as e:
        raise ConfigError(f"device.state_dir: cannot create {path}: {e.strerror}", transient=_transient(e)) from None
    if not path.is_dir():
        raise ConfigError(f"device.state_dir: not a directory: {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"device.state_dir: not writable: {path}")
    probe = path / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"device.state_dir: not writable: {path}: {e.strerror}", transient=_transient(e)) from None
    return path


def _transient(e: OSError) -> bool:
    """A full disk, a quota, an I/O error: faults that may pass."""
    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EBUSY)
