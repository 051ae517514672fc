"""Logging to stderr; journald-friendly under systemd.

When ``$JOURNAL_STREAM`` says stderr is connected to the journal, lines carry no timestamp (journald
adds its own) and start with a ``<N>`` syslog priority that journald turns into the entry's level.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def under_journald(stream: Any = None) -> bool:
    """True when ``$JOURNAL_STREAM`` (``device:inode``) names the file behind ``stream`` (stderr)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """``<6>edge_verify.daemon: message``; continuation lines (tracebacks) get the same prefix."""

    def format(self, record: logging.LogRecord) -> str:
        prio = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


class CommandFormatter(logging.Formatter):
    """``edge-verify: warning: message`` for the one-shot commands (the daemon logs with timestamps)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"edge-verify: {record.levelname.lower()}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not the stream of the moment the
    handler was made, which may since have been closed: a command run in-process by a test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(debug: bool = False, level: str | int | None = None, stream: Any = None,
                  command: bool = False) -> None:
    """Configure the root logger: journald format under systemd, else timestamped lines, or
    (``command``) short ``edge-verify: warning: ...`` lines for the one-shot commands. Calling it again
    replaces the handler it installed before, and leaves other handlers alone."""
    handler: logging.StreamHandler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()  # type: ignore[type-arg]
    stream = stream or sys.stderr
    handler.set_name("edge-verify")
    if under_journald(stream):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    elif command and not debug:
        handler.setFormatter(CommandFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "edge-verify":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else (level or logging.INFO))
    logging.getLogger("PIL").setLevel(logging.WARNING)
