"""The systemd notify protocol with the standard library: READY, STATUS, WATCHDOG, STOPPING.

Messages go as datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace). Without
the variable (not under systemd) every call does nothing. The watchdog period comes from
``$WATCHDOG_USEC`` (honoured only when ``$WATCHDOG_PID`` is unset or is this process).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._sock: socket.socket | None = None
        if self.address:
            addr = self.address
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self._target = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not under systemd or on an error. Never
        blocks: a message that does not fit in the receiver's queue is dropped (the frame loop goes on)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), socket.MSG_DONTWAIT, self._target)
        except OSError as e:
            log.debug("sd_notify failed: %s", e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_period() -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``; None when there is no watchdog. Ping at
    least twice per period."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None
