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


def setup_logging(debug: bool = False, level: str | int | None = None, stream: Any = None,
                  command: bool = False) -> None:
    """Configure the root logger once: journald format under systemd, else timestamped lines, or
    (``command``) short ``edge-verify: warning: ...`` lines for the one-shot commands."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if under_journald(stream):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    elif command and not debug:
        handler.setFormatter(CommandFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else (level or logging.INFO))
    logging.getLogger("PIL").setLevel(logging.WARNING)
