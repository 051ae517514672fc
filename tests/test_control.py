"""The control socket: its protocol over a real UNIX socket, and the daemon behind it (a subprocess on a
replay camera of real photos): health, the live frame, a camera enrolment run on the daemon's own
frames, and the event log and snapshots it keeps."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_verify.control import ControlClient, ControlError, ControlServer
from edge_verify.errors import GalleryError
from tests.conftest import REPO
from tests.test_enrolment import _templates_are_flip_averaged, camera_replay
from tests.visits import DaemonProc, needs_model


class Door:
    """A ControlHandler with fixed answers: the protocol under test, not the daemon."""

    def health(self) -> dict[str, Any]:
        return {"status": "running", "fps": 9.5}

    def frame(self) -> bytes | None:
        return b"\xff\xd8jpeg\xff\xd9"

    def enroll(self, name: str, k: int, timeout_s: float, new: bool, progress: Any) -> int:
        if name == "bob":
            raise GalleryError("this face is already enrolled as 'alice': nothing enrolled")
        for i in range(k + 1):
            progress({"state": "kept", "kept": i, "k": k, "message": "good"})
        return k


def test_protocol(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("a stale file from a killed daemon")
    server = ControlServer(path, Door()).start()
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = ControlClient(path)
        assert client.available()
        assert client.health() == {"status": "running", "fps": 9.5}
        assert client.frame() == b"\xff\xd8jpeg\xff\xd9"
        seen: list[dict[str, Any]] = []
        assert client.enroll("ann", 3, 5.0, True, seen.append) == 3
        assert [p["kept"] for p in seen] == [0, 1, 2, 3]
        with pytest.raises(ControlError, match="already enrolled as 'alice'"):
            client.enroll("bob", 3, 5.0, True, seen.append)
        with pytest.raises(ControlError, match="enroll: expected name"):
            client.enroll("ann", 99, 5.0, True, seen.append)
        with socket.socket(socket.AF_UNIX) as s:  # garbage gets an answer, not a dead server
            s.connect(str(path))
            s.sendall(b"\x00\x01 not json\n")
            assert json.loads(s.makefile().readline()) == {"ok": False,
                                                             "error": "bad request: one JSON object per line"}
        with pytest.raises(ControlError, match="another daemon already serves"):
            ControlServer(path, Door())
    finally:
        server.stop()
    assert not path.exists()
    assert not ControlClient(path).available()
    with pytest.raises(ControlError, match="no daemon answers"):
        ControlClient(path).health()


def test_disk_space(tmp_path: Path) -> None:
    """The health reports' disk block (daemon and console): MiB free and total, None when unreadable."""
    from edge_verify.statedir import disk_space

    disk = disk_space(tmp_path)
    assert disk is not None and set(disk) == {"free_mb", "total_mb"} and 0 <= disk["free_mb"] <= disk["total_mb"]
    assert disk_space(tmp_path / "missing") is None


@needs_model
@pytest.mark.slow
def test_daemon_enrols_from_its_camera_and_logs_events(tmp_path: Path) -> None:
    cam = camera_replay(tmp_path / "cam")
    state = tmp_path / "state"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[device]\nid = "door-test"\nstate_dir = "{state}"\n[camera]\ntype = "directory"\n'
                   f'source = "{cam}"\nfps = 10\nat_end = "loop"\n[mqtt]\nenabled = false\n[model]\nthreads = 1\n'
                   '[decision]\ncooldown_s = 0.5\nunknown_cooldown_s = 0.5\nwindow_s = 1.0\n'
                   '[web]\nlive_view = true\n[events]\nsnapshots = "all"\n')
    d = DaemonProc("run", "--config", str(cfg))
    assert d.wait_log("ready: first frame", 120), d.log
    client = ControlClient(state / "control.sock")
    health = client.health()
    assert health["status"] == "running" and health["camera"] == "ok" and health["model_name"] == "sface-int8"
    assert health["people"] == 0 and health["disk"]["free_mb"] > 0 and health["live_view"] is True
    client.frame()
    time.sleep(0.5)
    jpeg = client.frame()
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8" and len(jpeg) > 2000  # a real frame, not the placeholder
    # `enroll --camera` goes through the daemon (the camera is its own)
    p = subprocess.run([sys.executable, "-m", "edge_verify", "enroll", "--camera", "--config", str(cfg), "--new",
                        "--json", "Gerhard"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == {"name": "Gerhard", "templates": 5}
    assert "enrolled 'Gerhard' from the camera: 5 templates" in d.log or d.wait_log("enrolled 'Gerhard'", 5)
    assert d.wait_log("event granted person='Gerhard'", 30), d.log
    d.proc.send_signal(2)
    assert d.wait(60) == 0
    _templates_are_flip_averaged(cfg, cam)  # made from the daemon's frames as from photos
    from edge_verify.eventlog import EventLog

    rows = EventLog(state).query()
    kinds = {r.event["event_type"] for r in rows}
    assert "unknown_face" in kinds and "granted" in kinds  # before and after the enrolment
    granted = next(r for r in rows if r.event["event_type"] == "granted")
    assert granted.event["person"] == "Gerhard" and granted.snapshot is not None
    assert (state / "snapshots" / granted.snapshot).read_bytes()[:2] == b"\xff\xd8"
    # forgetting the person deletes their snapshots too
    p = subprocess.run([sys.executable, "-m", "edge_verify", "people", "forget", "Gerhard", "--state-dir", str(state)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0 and "snapshots" in p.stdout, p.stderr
    assert not (state / "snapshots" / granted.snapshot).exists()
