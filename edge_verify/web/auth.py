"""The console's authentication, stdlib only: one password (``hashlib.scrypt``, stored 0600), sessions
in memory behind an HttpOnly, SameSite=Strict cookie, a CSRF token per session for every form, and a
rate limit on failed logins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

PASSWORD_FILE = "web-password"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# scrypt: 16 MiB of memory and ~50 ms on a Pi 4 per attempt; the cost is stored with each hash
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def password_path(state_dir: Path, configured: str = "") -> Path:
    return Path(configured).expanduser() if configured else state_dir / PASSWORD_FILE


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8")[:MAX_PASSWORD * 4], salt=base64.b64decode(salt),
                             n=int(n), r=int(r), p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"password too long: at most {MAX_PASSWORD} characters")


def write_password(path: Path, password: str) -> None:
    """Store the hash of ``password`` in ``path`` (0600, replaced atomically)."""
    validate_password(password)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(hash_password(password) + "\n")
    os.replace(tmp, path)


def read_password_hash(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"no console password ({path}): run `edge-verify web set-password` first") from None
    except OSError as e:
        raise ConfigError(f"cannot read the console password {path}: {e.strerror}") from None
    if not text.startswith("scrypt$"):
        raise ConfigError(f"{path}: not a password hash written by `edge-verify web set-password`")
    return text


@dataclass
class Session:
    token: str
    csrf: str
    expires: float
    flash: list[str] = field(default_factory=list)


class Sessions:
    """Logged-in sessions, in memory (a restart logs everyone out)."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + self.lifetime_s)
        with self._lock:
            now = time.time()
            self._by_token = {t: x for t, x in self._by_token.items() if x.expires > now}
            self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            s = self._by_token.get(token)
            if s is not None and s.expires <= time.time():
                del self._by_token[token]
                return None
            return s

    def end(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; False when either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class RateLimit:
    """Failed logins: at most ``per_client`` from one address and ``overall`` from all within ``window_s``."""

    def __init__(self, per_client: int = 5, overall: int = 30, window_s: float = 300.0) -> None:
        self.per_client, self.overall, self.window_s = per_client, overall, window_s
        self._fails: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def wait_s(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may try now, else how long until it may."""
        now = time.time() if now is None else now
        with self._lock:
            q = self._fails.get(client, deque())
            self._trim(q, now)
            self._trim(self._all, now)
            waits = []
            if len(q) >= self.per_client:
                waits.append(q[0] + self.window_s - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window_s - now)
            return max(waits, default=0.0)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._fails.setdefault(client, deque()).append(now)
            self._all.append(now)
            if len(self._fails) > 10000:  # bounded memory under a flood of addresses
                self._fails = {k: v for k, v in self._fails.items() if v and v[-1] > now - self.window_s}

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)
