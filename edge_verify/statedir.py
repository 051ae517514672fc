"""The state directory (gallery, outbox): where it is, and private files in it.

Encodings and access events are biometric data: the directory is created 0700 and each database file
0600 before SQLite opens it (SQLite gives its journal and WAL files the database's mode).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import ConfigError


def default_state_dir() -> Path:
    """``$EDGE_VERIFY_STATE_DIR``, else systemd's ``$STATE_DIRECTORY``, else the user's data directory."""
    for var in ("EDGE_VERIFY_STATE_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edge-verify"


def private_file(path: Path) -> None:
    """Create ``path`` (and its directory, 0700) if missing, with mode 0600; raises OSError."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


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
