"""The daemon's control socket: a UNIX socket in the state directory (0600, so only the daemon's user
reaches it), one JSON request line per connection, JSON lines back.

Requests and answers (each answer line has ``ok``; ``error`` says why when it is false):

- ``{"cmd": "health"}`` -> ``{"ok": true, "health": {...}}``: fps, latency, camera, link, model, disk,
  people, outbox;
- ``{"cmd": "frame"}`` -> ``{"ok": true, "bytes": N}`` then N bytes of JPEG: the latest frame with boxes
  and names, for the live view (only with ``web.live_view = true``);
- ``{"cmd": "enroll", "name": ..., "k": 5, "timeout_s": 20, "new": true}`` -> ``{"progress": {...}}``
  lines while the session runs on the daemon's own frames, then ``{"ok": true, "templates": K}``.

The camera is the daemon's (picamera2 is exclusive): ``enroll --camera`` and the console's "add from
the camera" come here while the daemon runs. :class:`ControlServer` serves a :class:`ControlHandler`;
:class:`ControlClient` is the other end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .errors import EdgeVerifyError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096
MAX_SUN_PATH = 107  # AF_UNIX path limit on Linux, without the final NUL
Progress = Callable[[dict[str, Any]], None]


class ControlError(EdgeVerifyError):
    """The control socket cannot be used, or the daemon refused a request (the message says why)."""


def socket_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


class ControlHandler(Protocol):
    """What the daemon answers on its control socket."""

    def health(self) -> dict[str, Any]: ...

    def frame(self) -> bytes | None: ...

    def enroll(self, name: str, k: int, timeout_s: float, new: bool, progress: Progress) -> int: ...


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        raw = self.rfile.readline(MAX_REQUEST)
        if not raw:
            return  # a connection that only checked the daemon is there
        try:
            req = json.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            with contextlib.suppress(OSError):
                self.wfile.write(_line({"ok": False, "error": "bad request: one JSON object per line"}))
            return
        try:
            self._dispatch(req)
        except EdgeVerifyError as e:
            with contextlib.suppress(OSError):
                self.wfile.write(_line({"ok": False, "error": str(e)}))
        except OSError:
            pass  # the client went away
        except Exception as e:
            log.exception("control: %s failed", req.get("cmd"))
            with contextlib.suppress(OSError):
                self.wfile.write(_line({"ok": False, "error": f"internal error: {type(e).__name__}"}))

    def _dispatch(self, req: dict[str, Any]) -> None:
        h, cmd = self.server.handler, req.get("cmd")
        if cmd == "health":
            self.wfile.write(_line({"ok": True, "health": h.health()}))
        elif cmd == "frame":
            jpeg = h.frame()
            if jpeg is None:
                self.wfile.write(_line({"ok": False, "error": "no frame: the live view is off (web.live_view)"}))
                return
            self.wfile.write(_line({"ok": True, "bytes": len(jpeg)}) + jpeg)
        elif cmd == "enroll":
            name, k, timeout_s = req.get("name"), req.get("k", 5), req.get("timeout_s", 20.0)
            if not isinstance(name, str) or not isinstance(k, int) or not 1 <= k <= 20 \
                    or not isinstance(timeout_s, (int, float)) or not 1 <= timeout_s <= 300:
                raise ControlError("enroll: expected name (text), k (1-20), timeout_s (1-300 s)")

            def progress(p: dict[str, Any]) -> None:
                self.wfile.write(_line({"progress": p}))
                self.wfile.flush()

            n = h.enroll(name, k, float(timeout_s), bool(req.get("new", False)), progress)
            self.wfile.write(_line({"ok": True, "templates": n}))
        else:
            raise ControlError(f"unknown command {cmd!r} (health, frame, enroll)")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handler: ControlHandler


class ControlServer:
    """Serves ``handler`` on the UNIX socket ``path`` (mode 0600) from a thread of its own."""

    def __init__(self, path: str | Path, handler: ControlHandler) -> None:
        self.path = Path(path)
        if len(os.fsencode(self.path)) > MAX_SUN_PATH:
            raise ControlError(f"control socket path too long for a UNIX socket ({self.path}): "
                               "use a shorter device.state_dir")
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ControlError(f"{self.path}: another daemon already serves this state directory")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = _Server(str(self.path), _Handler)
        except OSError as e:
            raise ControlError(f"cannot listen on {self.path}: {e.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._server.handler = handler
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        log.info("control socket %s", self.path)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


class ControlClient:
    """The console's and the CLI's end of the control socket."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path, self.timeout = Path(path), timeout

    def available(self) -> bool:
        """Whether a daemon answers on the socket."""
        return self.path.exists() and _answers(self.path)

    def _connect(self, req: dict[str, Any], timeout: float) -> tuple[socket.socket, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.path))
            s.sendall(_line(req))
        except OSError as e:
            s.close()
            raise ControlError(f"no daemon answers on {self.path} ({e.strerror or e})") from None
        return s, s.makefile("rb")

    @staticmethod
    def _read(f: Any) -> dict[str, Any]:
        try:
            line = f.readline(1 << 20)
        except OSError as e:
            raise ControlError(f"the daemon stopped answering: {e}") from None
        if not line:
            raise ControlError("the daemon closed the connection")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        s, f = self._connect(req, self.timeout)
        with s, f:
            msg = self._read(f)
        if not msg.get("ok"):
            raise ControlError(str(msg.get("error", "refused")))
        return msg

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self._call({"cmd": "health"})["health"]
        return health

    def frame(self) -> bytes | None:
        """The latest frame as JPEG; None when the live view is off."""
        s, f = self._connect({"cmd": "frame"}, self.timeout)
        with s, f:
            msg = self._read(f)
            if not msg.get("ok"):
                return None
            data: bytes = f.read(int(msg["bytes"]))
        return data

    def enroll(self, name: str, k: int, timeout_s: float, new: bool, progress: Progress) -> int:
        """A camera enrolment run by the daemon; ``progress`` gets each step. Raises ControlError with
        the daemon's reason when it refuses or times out."""
        s, f = self._connect({"cmd": "enroll", "name": name, "k": k, "timeout_s": timeout_s, "new": new},
                             timeout_s + self.timeout)
        with s, f:
            while True:
                msg = self._read(f)
                if "progress" in msg:
                    progress(msg["progress"])
                    continue
                if not msg.get("ok"):
                    raise ControlError(str(msg.get("error", "refused")))
                return int(msg["templates"])
