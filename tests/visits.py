"""The daemon's test scene: real LFW photos of enrolled people and strangers played as a camera, the
daemon as a subprocess with its stderr collected, and a config file for it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tests.conftest import LFW, REPO

LFW_IMAGES = LFW / "images"
ENROLLED = ["Tony_Blair", "Silvio_Berlusconi", "Jean_Chretien"]
STRANGERS = ["Hans_Blix", "David_Beckham"]
# one visit each, in this order: (person, expected event_type)
VISITS = [("Tony_Blair", "granted"), ("Hans_Blix", "unknown_face"), ("Silvio_Berlusconi", "granted"),
          ("David_Beckham", "unknown_face"), ("Jean_Chretien", "granted")]
FPS = 20.0
# a candidate encoder (.tflite with its manifest) instead of the bundled one
MODEL = os.environ.get("EDGE_VERIFY_TEST_MODEL") or None
FRAMES_PER_VISIT = 5


def photos(person: str) -> list[Path]:
    files = sorted(LFW_IMAGES.glob(f"{person}_[0-9][0-9][0-9][0-9].jpg"))
    if len(files) < 2 + FRAMES_PER_VISIT:
        pytest.fail(f"shared data missing: photos of {person} in {LFW_IMAGES} (set EDGE_VERIFY_SHARED)")
    return files


def _model_available() -> str | None:
    try:
        from edge_verify.models import resolve_encoder

        resolve_encoder(MODEL)
    except Exception as e:
        return f"bundled encoder not available: {e}"
    return None


needs_model = pytest.mark.skipif(_model_available() is not None, reason=str(_model_available()))


def blank(path: Path, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120, 20, (150, 150, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)


def make_visits(directory: Path, visits: list[tuple[str, str]], blanks: int = 12, start: int = 0) -> Path:
    """A camera replay: for each visit FRAMES_PER_VISIT photos of the person (not those enrolled), then
    ``blanks`` frames without a face. Symlinks, named in playing order."""
    directory.mkdir(parents=True, exist_ok=True)
    i = start
    for person, _ in visits:
        for src in photos(person)[2:2 + FRAMES_PER_VISIT]:
            (directory / f"{i:05d}_{src.name}").symlink_to(src)
            i += 1
        for _ in range(blanks):
            blank(directory / f"{i:05d}_blank.png", i)
            i += 1
    return directory


def write_config(path: Path, state: Path, source: Path, port: int, at_end: str = "stop",
                 **extra: str) -> Path:
    path.write_text(f"""
[device]
id = "door-test"
state_dir = "{state}"
[camera]
type = "directory"
source = "{source}"
fps = {FPS}
at_end = "{at_end}"
[model]
threads = 1
name = "{MODEL or ''}"
[decision]
k = 3
n = 5
window_s = 1.0
cooldown_s = 0.5
unknown_cooldown_s = 0.5
[mqtt]
host = "127.0.0.1"
port = {port}
keepalive = 5
reconnect_min_s = 1
reconnect_max_s = 2
telemetry_interval_s = 1.0
[outbox]
flush_timeout_s = 10.0
stale_after_s = 600.0
{extra.get("tail", "")}
""")
    return path


class DaemonProc:
    """``python -m edge_verify run`` with its stderr collected line by line."""

    running: ClassVar[list[DaemonProc]] = []

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("JOURNAL_STREAM", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_verify", *args], cwd=REPO, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        DaemonProc.running.append(self)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_log(self, text: str, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return any(text in line for line in self.lines)
            time.sleep(0.05)
        return False

    def wait(self, timeout: float = 120.0) -> int:
        rc = self.proc.wait(timeout)
        self._t.join(5)
        return rc

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def copy_state(enrolled_state: Path, state: Path) -> Path:
    """A state directory of its own for one test, holding a copy of the enrolled gallery."""
    state.mkdir()
    (state / "gallery.sqlite3").write_bytes((enrolled_state / "gallery.sqlite3").read_bytes())
    return state


