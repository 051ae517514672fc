"""A real mosquitto broker on a free loopback port, for tests: start, kill, restart on the same port."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """``mosquitto -c FILE`` listening on 127.0.0.1:port, anonymous allowed. With ``persistent``, sessions
    and queued messages survive a restart once written with :meth:`save` (as a broker with a real
    disk would keep them), so a subscriber misses nothing while the broker is away."""

    def __init__(self, workdir: Path, port: int | None = None, exe: str | None = None,
                 persistent: bool = False, extra: str = "") -> None:
        """``extra``: more mosquitto.conf lines (TLS files, password_file, allow_anonymous false)."""
        self.persistent, self.extra = persistent, extra
        self.exe = exe or find_mosquitto()
        if self.exe is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = (f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 0\n"
                       if self.persistent else "persistence false\n")
        # run as whoever runs the tests (as root, mosquitto would switch to the user "mosquitto")
        user = pwd.getpwuid(os.getuid()).pw_name
        anonymous = "" if "allow_anonymous" in self.extra else "allow_anonymous true\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{self.extra}\n{anonymous}user {user}\n"
                             f"{persistence}max_queued_messages 10000\n")
        self.proc = subprocess.Popen([str(self.exe), "-c", str(self.conf)], stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def save(self, timeout: float = 10.0) -> None:
        """Write sessions and queued messages to disk now (SIGUSR1), and wait for the file."""
        import signal

        assert self.proc is not None and self.persistent
        db = self.workdir / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if db.exists() and db.stat().st_mtime_ns != before:
                time.sleep(0.1)
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not write its persistence file")

    def kill(self) -> None:
        """SIGKILL: no clean disconnect, as when the broker host dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> Broker:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
