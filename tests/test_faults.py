"""Faults that pass by themselves must not take the door down: a full disk at start and in the middle of
a run, on a real (small) tmpfs, with the daemon as a subprocess and a real broker. The daemon stays up,
says what it waits for in ``state``, and loses no decision."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.conftest import needs_broker
from tests.mqtt_helpers import Subscriber
from tests.visits import VISITS, DaemonProc, copy_state, make_visits, needs_model, write_config


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root and mount rights: skipped where the sandbox forbids mounting)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:  # unbuffered: a partial last write leaves nothing to flush on close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    while True:  # the last few blocks
        try:
            with filler.open("ab") as f:
                f.write(b"\0" * 512)
        except OSError:
            break
    return filler


def _events(sub: Subscriber) -> list[dict[str, object]]:
    return list({e["event_id"]: e for e in sub.json("edge-verify/door-test/event")}.values())


@pytest.mark.slow
@needs_model
@needs_broker
def test_full_disk_at_start_waits_then_serves(small_disk: Path, enrolled_state: Path, tmp_path: Path,
                                              broker: Broker) -> None:
    state = copy_state(enrolled_state, small_disk / "state")
    filler = fill(small_disk)
    cam = make_visits(tmp_path / "cam", VISITS[:2], blanks=4)
    cfg = write_config(tmp_path / "c.toml", state, cam, broker.port, at_end="wait")
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door-test/#"])
    d = DaemonProc("run", "--config", str(cfg))
    assert d.wait_log("retrying", 120), d.log
    assert sub.wait(lambda: any(s.get("status", "").startswith("waiting")
                                for s in sub.json("edge-verify/door-test/state")), 30), d.log
    assert d.proc.poll() is None  # up, not exit 2
    filler.unlink()
    assert sub.wait(lambda: len(_events(sub)) >= 2, 120), d.log
    assert [(e["event_type"], e["seq"]) for e in sorted(_events(sub), key=lambda e: e["seq"])] == [
        ("granted", 1), ("unknown_face", 2)]
    d.proc.terminate()
    assert d.wait(60) == 0, d.log
    sub.close()


@pytest.mark.slow
@needs_model
@needs_broker
def test_full_disk_mid_run_keeps_decisions_and_numbers(small_disk: Path, enrolled_state: Path, tmp_path: Path,
                                                       broker: Broker) -> None:
    """Visit 1 is stored and sent; the disk fills; visit 2 is decided while nothing can be written: it
    waits in memory (state says degraded), and is stored and sent once there is room, with the next seq."""
    state = copy_state(enrolled_state, small_disk / "state")
    cam = tmp_path / "cam"
    make_visits(cam, VISITS[:1], blanks=60)
    make_visits(cam, VISITS[2:3], blanks=200, start=1000)
    cfg = write_config(tmp_path / "c.toml", state, cam, broker.port, at_end="wait")
    cfg.write_text(cfg.read_text().replace('fps = 20.0', 'fps = 10.0'))
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door-test/#"])
    d = DaemonProc("run", "--config", str(cfg))
    assert sub.wait(lambda: len(_events(sub)) == 1, 120), d.log
    filler = fill(small_disk)
    assert d.wait_log("events kept in memory", 120), d.log
    assert sub.wait(lambda: any(s.get("status", "").startswith("degraded")
                                for s in sub.json("edge-verify/door-test/state")), 40), d.log
    assert len(_events(sub)) == 1
    os.unlink(filler)
    assert sub.wait(lambda: len(_events(sub)) == 2, 60), d.log
    got = sorted(_events(sub), key=lambda e: e["seq"])
    assert [(e["event_type"], e["person"], e["seq"]) for e in got] == [
        ("granted", "Tony_Blair", 1), ("granted", "Silvio_Berlusconi", 2)]
    d.proc.terminate()
    assert d.wait(60) == 0, d.log
    assert json.loads(sub.on("edge-verify/door-test/state")[-1])["lost"] == 0
    sub.close()


@pytest.mark.slow
@needs_model
def test_a_gallery_locked_at_start_is_waited_for(enrolled_state: Path, tmp_path: Path) -> None:
    """Another process holds the gallery longer than SQLite's busy timeout (10 s): the daemon waits,
    says so, and starts serving when the lock goes; it does not exit 2 (which systemd would not
    restart)."""
    import sqlite3

    state = copy_state(enrolled_state, tmp_path / "state")
    cam = make_visits(tmp_path / "cam", VISITS[:1], blanks=2)
    lock = sqlite3.connect(state / "gallery.sqlite3", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    d = DaemonProc("run", "--camera", "directory", "--source", str(cam), "--no-mqtt", "--state-dir", str(state),
                   "--at-end", "wait")
    try:
        assert d.wait_log("gallery: ", 60) and d.wait_log("retrying", 60), d.log
        assert "locked" in d.log and d.proc.poll() is None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert d.wait_log("ready: first frame", 120), d.log
    assert d.wait_log("event granted person='Tony_Blair'", 60), d.log
    d.proc.terminate()
    assert d.wait(60) == 0, d.log
