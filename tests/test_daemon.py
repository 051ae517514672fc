"""The daemon as a subprocess, with real parts: a real mosquitto on a free loopback port, a directory of
real LFW photos of enrolled and unenrolled people played as a camera, the bundled model, and a
subscriber that validates every event against the schema and the expected decision. Also: broker
outage, SIGKILL and restart, and the clear errors of a bad setup."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge_verify import events
from tests.broker import Broker, find_mosquitto, free_port
from tests.mqtt_helpers import Subscriber

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_VERIFY_SHARED", REPO.parent / "shared")).resolve()
LFW_IMAGES = SHARED / "data" / "lfw" / "images"
ENROLLED = ["Tony_Blair", "Silvio_Berlusconi", "Jean_Chretien"]
STRANGERS = ["Hans_Blix", "David_Beckham"]
# one visit each, in this order: (person, expected event_type)
VISITS = [("Tony_Blair", "granted"), ("Hans_Blix", "unknown_face"), ("Silvio_Berlusconi", "granted"),
          ("David_Beckham", "unknown_face"), ("Jean_Chretien", "granted")]
FPS = 20.0
# a candidate encoder (.tflite with its manifest) instead of the bundled one
MODEL = os.environ.get("EDGE_VERIFY_TEST_MODEL") or None
FRAMES_PER_VISIT = 5


def _photos(person: str) -> list[Path]:
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
needs_broker = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def enrolled_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose gallery holds the first two photos of each ENROLLED person."""
    from edge_verify.pipeline import FaceVerifier

    state = tmp_path_factory.mktemp("gallery")
    fv = FaceVerifier(model=MODEL, state_dir=state, num_threads=1)
    for person in ENROLLED:
        fv.enroll(person, _photos(person)[:2])
    fv.close()
    return state


def _blank(path: Path, seed: int) -> None:
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
        for src in _photos(person)[2:2 + FRAMES_PER_VISIT]:
            (directory / f"{i:05d}_{src.name}").symlink_to(src)
            i += 1
        for _ in range(blanks):
            _blank(directory / f"{i:05d}_blank.png", i)
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


@pytest.fixture(autouse=True)
def _no_daemon_left() -> Iterator[None]:
    """A failing test leaves no daemon behind."""
    yield
    while DaemonProc.running:
        d = DaemonProc.running.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def _check_events(got: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    for e in got:
        events.validate(e)
        assert "embedding" not in json.dumps(e)
    unique = {e["event_id"]: e for e in got}
    by_seq: dict[int, set[str]] = {}
    for e in got:
        by_seq.setdefault(e["seq"], set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in by_seq.values()), by_seq  # one id per decision
    ordered = sorted(unique.values(), key=lambda e: int(e["seq"]))
    assert [e["seq"] for e in ordered] == list(range(1, len(ordered) + 1))  # no gap
    want = [("granted", p) if t == "granted" else (t, None) for p, t in expected]
    assert [(e["event_type"], e["person"]) for e in ordered] == want
    for e in ordered:
        assert e["device_id"] == "door-test" and e["frames"] >= 3 and e["model"]
        assert {"detect", "embed", "total"} <= set(e["latency_ms"])


# -- errors that need no model ------------------------------------------------------------------------
def test_check_config_reports_bad_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[camera]\nfps = 0\n")
    d = DaemonProc("check-config", "--config", str(cfg))
    assert d.wait(60) == 2
    assert d.log.strip().splitlines() == ["edge-verify: error: camera.fps: must be > 0, got 0.0"]
    cfg.write_text("[camera]\ntype = 'synthetic'\n[mqtt]\nhost = 'broker.lan'\n")
    d = DaemonProc("check-config", "--config", str(cfg), "--no-model", "--state-dir", str(tmp_path / "s"))
    assert d.wait(60) == 0
    assert "config OK" in d.proc.stdout.read()  # type: ignore[union-attr]
    d = DaemonProc("check-config", "--print-default")
    assert d.wait(60) == 0
    import tomllib

    from edge_verify.config import Config, parse

    assert parse(tomllib.loads(d.proc.stdout.read())) == Config()  # type: ignore[union-attr]


def test_run_with_a_missing_model_fails_clearly(tmp_path: Path) -> None:
    d = DaemonProc("run", "--camera", "synthetic", "--no-mqtt", "--state-dir", str(tmp_path / "s"),
                   "--model", str(tmp_path / "nope.tflite"))
    assert d.wait(60) == 2
    assert "edge-verify: error:" in d.log and "nope" in d.log
    assert "Traceback" not in d.log


def test_run_with_an_unusable_state_dir_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    d = DaemonProc("run", "--camera", "synthetic", "--no-mqtt", "--state-dir", str(blocker / "state"))
    assert d.wait(60) == 2
    assert "device.state_dir: cannot create" in d.log and "Traceback" not in d.log


def copy_state(enrolled_state: Path, state: Path) -> Path:
    """A state directory of its own for one test, holding a copy of the enrolled gallery."""
    state.mkdir()
    (state / "gallery.sqlite3").write_bytes((enrolled_state / "gallery.sqlite3").read_bytes())
    return state


# -- end to end ---------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_model
@needs_broker
def test_events_end_to_end(broker: Broker, enrolled_state: Path, tmp_path: Path) -> None:
    state = copy_state(enrolled_state, tmp_path / "state")
    source = make_visits(tmp_path / "camera", VISITS)
    cfg = write_config(tmp_path / "c.toml", state, source, broker.port)
    sub = Subscriber(broker.host, broker.port, ["edge-verify/#", "homeassistant/#"])
    d = DaemonProc("run", "--config", str(cfg))
    rc = d.wait(300)
    assert rc == 0, d.log
    topic = "edge-verify/door-test/event"
    assert sub.wait(lambda: len(sub.on(topic)) >= len(VISITS), timeout=10), d.log
    got = sub.json(topic)
    _check_events(got, VISITS)
    assert not any(e["delayed"] for e in got)
    assert sub.wait(lambda: sub.on("edge-verify/door-test/availability")[-1:] == [b"offline"])
    assert b"online" in sub.on("edge-verify/door-test/availability")
    state_msg = sub.json("edge-verify/door-test/state")[-1]
    assert state_msg["people"] == len(ENROLLED) and len(state_msg["model"]) == 64
    assert sub.on("homeassistant/device/door-test/config")
    assert "ready: first frame" in d.log
    telemetry = sub.json("edge-verify/door-test/telemetry")
    assert telemetry, "telemetry every telemetry_interval_s"
    t = telemetry[0]
    assert t["fps"] > 0 and 0 < t["latency_ms_p50"] <= t["latency_ms_p95"]
    assert {"detect", "embed", "total"} <= set(t["stages_ms_p50"])
    sub.close()


@pytest.mark.slow
@needs_model
@needs_broker
def test_broker_outage_and_sigkill_lose_nothing(enrolled_state: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", persistent=True).start()
    try:
        _outage_and_sigkill(broker, enrolled_state, tmp_path)
    finally:
        broker.stop()


def _outage_and_sigkill(broker: Broker, enrolled_state: Path, tmp_path: Path) -> None:
    state = copy_state(enrolled_state, tmp_path / "state")
    # phase A: visit 1 with the broker up, then 3 s without a face (the broker is killed then),
    # visits 2 and 3 decided while it is down; then the daemon is SIGKILLed
    cam_a = tmp_path / "camera_a"
    make_visits(cam_a, VISITS[:1], blanks=60)
    make_visits(cam_a, VISITS[1:3], start=1000)
    cam_b = make_visits(tmp_path / "camera_b", VISITS[3:])
    topic = "edge-verify/door-test/event"
    sub = Subscriber(broker.host, broker.port, [topic], client_id="test-outage-sub")
    broker.save()  # the subscriber's session survives the broker's death
    cfg_a = write_config(tmp_path / "a.toml", state, cam_a, broker.port, "wait")
    d = DaemonProc("run", "--config", str(cfg_a))
    assert sub.wait(lambda: len(sub.on(topic)) >= 1, timeout=120), d.log
    broker.kill()
    assert d.wait_log("end of input", 300), d.log
    outbox = sqlite3.connect(state / "outbox.sqlite3")
    assert outbox.execute("SELECT count(*) FROM events").fetchone()[0] == 2, d.log
    outbox.close()
    d.proc.send_signal(signal.SIGKILL)
    d.wait(30)
    broker.start()
    d = DaemonProc("run", "--config", str(write_config(tmp_path / "b.toml", state, cam_b, broker.port)))
    assert d.wait(300) == 0, d.log
    assert sub.wait(lambda: len({e["event_id"] for e in sub.json(topic)}) >= len(VISITS), timeout=20), d.log
    got = sub.json(topic)
    _check_events(got, VISITS)
    first = {e["seq"]: e for e in got}
    assert first[1]["delayed"] is False
    assert first[2]["delayed"] is True and first[3]["delayed"] is True  # sent after the outage and restart
    assert "2 events from before the restart" in d.log
    sub.close()


@pytest.mark.slow
@needs_model
def test_unreachable_broker_keeps_running_and_keeps_events(enrolled_state: Path, tmp_path: Path) -> None:
    state = copy_state(enrolled_state, tmp_path / "state")
    source = make_visits(tmp_path / "camera", VISITS[:2])
    d = DaemonProc("run", "--config", str(write_config(tmp_path / "c.toml", state, source, free_port())))
    assert d.wait(300) == 0, d.log
    assert "cannot connect" in d.log
    assert "2 events kept for the next start" in d.log
    db = sqlite3.connect(state / "outbox.sqlite3")
    rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]
    assert [(e["seq"], e["event_type"]) for e in rows] == [(1, "granted"), (2, "unknown_face")]


# -- frame sources ------------------------------------------------------------------------------------
def test_directory_source_reopens_with_backoff(tmp_path: Path) -> None:
    from edge_verify.camera import ReopeningSource
    from edge_verify.camera.replay import DirectorySource

    cam = tmp_path / "cam"
    src = ReopeningSource(DirectorySource(cam, fps=100.0), min_s=0.05, max_s=0.2, stall_s=5.0)

    def appear() -> None:
        time.sleep(0.5)
        make_visits(tmp_path / "staging", VISITS[:1], blanks=1)
        (tmp_path / "staging").rename(cam)

    t = threading.Thread(target=appear)
    t.start()
    frame = src.read()  # fails (no directory) and retries until it appears
    t.join()
    assert frame is not None and frame.image.ndim == 3 and frame.index == 0
    assert src.failures == 0 and src.reopens == 1 and src.status == "ok"
    frames = [frame]
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == FRAMES_PER_VISIT + 1 and src.status == "ended"
    assert [f.ts for f in frames] == [i / 100.0 for i in range(len(frames))]  # source time, not wall time
    src.close()


def test_video_file_and_synthetic_sources(tmp_path: Path) -> None:
    import cv2

    from edge_verify.camera import make_source
    from edge_verify.config import CameraConfig

    video = tmp_path / "door.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (150, 150))
    from edge_verify.imageio import read_image

    for p in _photos("Tony_Blair")[:4]:
        w.write(read_image(p))
    w.release()
    src = make_source(CameraConfig(type="video", source=str(video), fps=200.0, at_end="loop"))
    src.open()
    frames = [src.read() for _ in range(6)]  # loops after 4
    src.close()
    assert all(f is not None and f.image.shape == (150, 150, 3) for f in frames)
    syn = make_source(CameraConfig(type="synthetic", fps=200.0, lores_width=64, lores_height=48))
    syn.open()
    f = syn.read()
    assert f is not None and f.image.shape == (48, 64, 3)
    cv = make_source(CameraConfig(type="opencv", source=str(tmp_path / "missing.mp4")))
    from edge_verify.camera import CameraError

    with pytest.raises(CameraError, match="cannot open"):
        cv.open()
    pi = make_source(CameraConfig(type="picamera2"))
    try:
        import picamera2  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="picamera2 is not installed"):
            pi.open()


# -- claims, systemd notify, SIGTERM ------------------------------------------------------------------
@pytest.mark.slow
@needs_model
@needs_broker
def test_claim_mode_notify_and_sigterm(broker: Broker, enrolled_state: Path, tmp_path: Path) -> None:
    import socket

    state = copy_state(enrolled_state, tmp_path / "state")
    cam = tmp_path / "cam"
    make_visits(cam, [], blanks=0)
    for i in range(40):
        _blank(cam / f"{i:05d}_lead.png", i)
    make_visits(cam, [("Tony_Blair", "granted"), ("Hans_Blix", "denied")], blanks=40, start=100)
    cfg = write_config(tmp_path / "c.toml", state, cam, broker.port, at_end="wait")
    cfg.write_text(cfg.read_text().replace('id = "door-test"', 'id = "door-test"\nmode = "claim"'))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    topic = "edge-verify/door-test/event"
    sub = Subscriber(broker.host, broker.port, [topic, "edge-verify/door-test/availability",
                                                "edge-verify/door-test/state"])
    d = DaemonProc("run", "--config", str(cfg),
                   env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "3000000"})
    try:
        messages = [notify.recv(4096)]
        while not messages[-1].startswith(b"READY=1"):
            messages.append(notify.recv(4096))
        assert d.wait_log("ready: first frame", 10)  # READY only after the self-test and the first frame
        # the state is published after the claim topic is subscribed: from then on claims are heard
        assert sub.wait(lambda: bool(sub.on("edge-verify/door-test/state")), timeout=30), d.log
        sub.publish("edge-verify/door-test/cmd/claim", json.dumps({"person": "Tony_Blair", "ttl_s": 30}))
        assert sub.wait(lambda: len(sub.on(topic)) >= 1, timeout=120), d.log
        claim = {"person": "Silvio_Berlusconi", "ttl_s": 30}
        sub.publish("edge-verify/door-test/cmd/claim", json.dumps(claim))
        assert sub.wait(lambda: len(sub.on(topic)) >= 2, timeout=120), d.log
        assert d.wait_log("end of input", 120), d.log
        sub.publish("edge-verify/door-test/cmd/claim", json.dumps({"person": "Jean_Chretien", "ttl_s": 1}))
        assert sub.wait(lambda: len(sub.on(topic)) >= 3, timeout=60), d.log
        while b"WATCHDOG=1" not in messages:
            messages.append(notify.recv(4096))
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
        while not messages[-1].startswith(b"STOPPING=1"):
            messages.append(notify.recv(4096))
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        notify.close()
    got = sub.json(topic)
    for e in got:
        events.validate(e)
    assert [(e["event_type"], e["person"], e["reason"], e["mode"]) for e in got] == [
        ("granted", "Tony_Blair", None, "claim"),
        ("denied", "Silvio_Berlusconi", "no_match", "claim"),
        ("denied", "Jean_Chretien", "claim_expired", "claim"),
    ]
    assert sub.wait(lambda: sub.on("edge-verify/door-test/availability")[-1:] == [b"offline"])
    sub.close()


# -- picamera2, behind a fake module with the real library's interface ---------------------------------
class FakeRequest:
    def __init__(self, main: np.ndarray, lores_yuv: np.ndarray, ts_ns: int) -> None:
        self.arrays = {"main": main, "lores": lores_yuv}
        self.ts_ns = ts_ns
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def get_metadata(self) -> dict[str, int]:
        return {"SensorTimestamp": self.ts_ns}


class FakePicamera2:
    """picamera2.Picamera2 as the daemon uses it: video configuration with main RGB888 (BGR order in
    memory) + lores YUV420, captured_request() giving both streams of one frame."""

    frames: ClassVar[list[np.ndarray]] = []
    served = threading.Event()
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.config: dict[str, object] = {}
        self.started = False
        self.i = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict[str, object], lores: dict[str, object],
                                   controls: dict[str, object], buffer_count: int) -> dict[str, object]:
        assert main["format"] == "RGB888" and lores["format"] == "YUV420"
        return {"main": main, "lores": lores, "controls": controls}

    def configure(self, config: dict[str, object]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass

    def captured_request(self) -> Any:
        import contextlib

        import cv2

        @contextlib.contextmanager
        def cm() -> Iterator[FakeRequest]:
            assert self.started
            time.sleep(0.05)
            img = FakePicamera2.frames[self.i % len(FakePicamera2.frames)]
            self.i += 1
            if self.i >= len(FakePicamera2.frames):
                FakePicamera2.served.set()
            mw, mh = self.config["main"]["size"]  # type: ignore[index]
            lw, lh = self.config["lores"]["size"]  # type: ignore[index]
            main = np.zeros((mh, mw, 3), np.uint8)  # the photo in the middle of a 16:9 frame
            side = mh * 2 // 3
            y, x = (mh - side) // 2, (mw - side) // 2
            main[y:y + side, x:x + side] = cv2.resize(img, (side, side))
            lores = cv2.cvtColor(cv2.resize(main, (lw, lh)), cv2.COLOR_BGR2YUV_I420)
            yield FakeRequest(main, lores, self.i * 50_000_000)

        return cm()


@pytest.mark.slow
@needs_model
def test_picamera2_detects_on_lores_and_encodes_from_main(enrolled_state: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from edge_verify import config
    from edge_verify.daemon import Daemon
    from edge_verify.imageio import read_image

    fake = types.ModuleType("picamera2")
    fake.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    frames = [read_image(p) for p in _photos("Jean_Chretien")[2:6]]
    frames += [np.full((150, 150, 3), 100, np.uint8)] * 3
    frames += [read_image(p) for p in _photos("Hans_Blix")[2:6]]
    FakePicamera2.frames = frames
    FakePicamera2.served.clear()
    state = copy_state(enrolled_state, tmp_path / "state")
    cfg = config.parse({
        "device": {"id": "door-test", "state_dir": str(state)},
        "camera": {"type": "picamera2", "fps": 20.0},
        "model": {"name": MODEL or "", "threads": 1},
        "decision": {"k": 3, "n": 4, "window_s": 2.0, "cooldown_s": 0.1, "unknown_cooldown_s": 0.1},
        "mqtt": {"enabled": False},
    })
    daemon = Daemon(cfg)
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        assert FakePicamera2.served.wait(120)
    finally:
        daemon.stop_event.set()
        t.join(60)
    assert not t.is_alive()
    assert FakePicamera2.instances[-1].config["lores"]["size"] == (640, 360)  # type: ignore[index]
    db = sqlite3.connect(state / "outbox.sqlite3")  # no broker: the events wait in the outbox
    rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]
    assert [(e["event_type"], e["person"]) for e in rows] == [("granted", "Jean_Chretien"),
                                                              ("unknown_face", None)]
    for e in rows:
        events.validate(e)
        assert "decode" not in e["latency_ms"] and "detect" in e["latency_ms"]  # the two-stream path


def test_stalls_and_failures_are_visible(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from edge_verify.camera import CameraError, Frame, FrameSource, ReopeningSource

    class Flaky(FrameSource):
        """Fails twice, then gives one slow frame, then fast ones."""

        name = "flaky"

        def __init__(self) -> None:
            self.opens = 0
            self.reads = 0

        def open(self) -> None:
            self.opens += 1

        def read(self) -> Frame | None:
            self.reads += 1
            if self.reads <= 2:
                raise CameraError("no frame from /dev/video0")
            if self.reads == 3:
                time.sleep(0.3)
            return Frame(np.zeros((8, 8, 3), np.uint8), time.monotonic(), self.reads)

    src = ReopeningSource(Flaky(), min_s=0.01, max_s=0.02, stall_s=0.1)
    with caplog.at_level(logging.INFO):
        assert src.read() is not None
        assert src.status == "stalled" and src.reopens == 2 and src.source.opens == 3  # type: ignore[attr-defined]
        assert src.read() is not None and src.status == "ok"
    assert "no frame from /dev/video0; reopening (attempt 2)" in caplog.text
    assert "camera flaky stalled for" in caplog.text and "reopened after 2 failures" in caplog.text
