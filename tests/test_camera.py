"""Frame sources behind the FrameSource interface: directory and video replays, synthetic frames, OpenCV,
the reopening wrapper, and picamera2 behind a fake module with the real library's interface (the Pi
camera cannot exist here)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge_verify import events
from tests.visits import FRAMES_PER_VISIT, MODEL, VISITS, copy_state, make_visits, needs_model, photos


# -- replays ------------------------------------------------------------------------------------
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

    for p in photos("Tony_Blair")[:4]:
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


# -- picamera2, behind a fake module with the real library's interface ---------------------------------
LORES_STRIDE_PAD = 64  # libcamera pads lores rows to its alignment: picamera2 hands the padding over


def pad_i420(i420: np.ndarray, width: int, height: int, pad: int) -> np.ndarray:
    """A packed I420 image laid out as picamera2 gives it when rows carry ``pad`` bytes of padding:
    (height * 3/2, width + pad) bytes, the Y plane at a stride of width + pad, then the U and V planes at
    half that stride, one after another."""
    stride, ch = width + pad, height // 2
    flat = i420.reshape(-1)
    y = np.full((height, stride), 7, np.uint8)
    y[:, :width] = flat[: width * height].reshape(height, width)
    u = np.full((ch, stride // 2), 7, np.uint8)
    v = np.full((ch, stride // 2), 7, np.uint8)
    u[:, : width // 2] = flat[width * height: width * height + ch * width // 2].reshape(ch, width // 2)
    v[:, : width // 2] = flat[width * height + ch * width // 2:].reshape(ch, width // 2)
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, stride)


def test_picamera2_lores_stride_padding_is_cropped() -> None:
    import cv2

    from edge_verify.camera.picamera import i420_unpadded
    from edge_verify.imageio import read_image

    img = cv2.resize(read_image(photos("Jean_Chretien")[0]), (640, 360))
    i420 = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
    padded = pad_i420(i420, 640, 360, LORES_STRIDE_PAD)
    assert padded.shape == (540, 704)
    assert np.array_equal(i420_unpadded(padded, 640, 360), i420)
    assert i420_unpadded(i420, 640, 360) is i420  # no padding: nothing to do
    bgr = cv2.cvtColor(i420_unpadded(padded, 640, 360), cv2.COLOR_YUV420p2BGR)
    assert bgr.shape == (360, 640, 3)
    odd = cv2.cvtColor(cv2.resize(img, (480, 270)), cv2.COLOR_BGR2YUV_I420)  # 270 / 2 rows of chroma: odd
    assert np.array_equal(i420_unpadded(pad_i420(odd, 480, 270, 32), 480, 270), odd)
    from edge_verify.camera import CameraError

    with pytest.raises(CameraError, match="does not hold"):
        i420_unpadded(padded[:100], 640, 360)


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
            lores = pad_i420(cv2.cvtColor(cv2.resize(main, (lw, lh)), cv2.COLOR_BGR2YUV_I420), lw, lh,
                             LORES_STRIDE_PAD)
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
    frames = [read_image(p) for p in photos("Jean_Chretien")[2:6]]
    frames += [np.full((150, 150, 3), 100, np.uint8)] * 3
    frames += [read_image(p) for p in photos("Hans_Blix")[2:6]]
    FakePicamera2.frames = frames
    FakePicamera2.served.clear()
    state = copy_state(enrolled_state, tmp_path / "state")
    cfg = config.parse({
        "device": {"id": "door-test", "state_dir": str(state)},
        "camera": {"type": "picamera2", "fps": 20.0},
        "model": {"name": MODEL or "", "threads": 1},
        # a 150 px photo blown up to fill a 720p frame is, to the liveness models, a print: this test is
        # about the two streams, so liveness is off here (test_daemon covers it end to end)
        "liveness": {"enabled": False},
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
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "camera flaky: no frame from /dev/video0; reopening (attempt 1)" in warnings
    assert not any("attempt 2" in w for w in warnings)  # the same failure again is logged once
    assert "camera flaky stalled for" in caplog.text and "reopened after 2 failures" in caplog.text


def test_an_emptied_directory_in_loop_backs_off_quietly_and_stops(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """camera.at_end = loop, and every image goes away: no busy loop, one warning, stoppable at once."""
    import logging

    from edge_verify.camera import ReopeningSource
    from edge_verify.camera.replay import DirectorySource

    cam = make_visits(tmp_path / "cam", VISITS[:1], blanks=0)
    stop = threading.Event()
    src = ReopeningSource(DirectorySource(cam, fps=1000.0, at_end="loop"), min_s=0.05, max_s=0.2, stop=stop)
    assert src.read() is not None
    for f in cam.iterdir():
        f.unlink()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(src.read()))
    with caplog.at_level(logging.DEBUG, logger="edge_verify.camera"):
        t0 = time.process_time()
        t.start()
        time.sleep(1.5)
        cpu = time.process_time() - t0
        stop.set()
        t.join(2.0)
    assert not t.is_alive() and got == [None]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("reopening" in w for w in warnings) == 1, warnings  # the same failure is said once
    assert len(warnings) <= FRAMES_PER_VISIT + 1, warnings  # and each vanished file once
    assert len(caplog.records) < 50  # not 22,000 lines a second
    assert cpu < 1.0  # it waited; it did not spin


def test_a_fifo_in_a_directory_source_is_skipped_not_waited_on(tmp_path: Path) -> None:
    """A FIFO named like an image (or a link to /dev/zero) in the camera directory: skipped in one line,
    the replay goes on, nothing blocks or fills memory."""
    from edge_verify.camera.replay import DirectorySource

    cam = make_visits(tmp_path / "cam", VISITS[:1], blanks=0)
    os.mkfifo(cam / "00000_a_fifo.jpg")
    (cam / "00001_zero.jpg").symlink_to("/dev/zero")
    src = DirectorySource(cam, fps=1000.0)
    src.open()
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(sum(1 for _ in iter(src.read, None))))
    t.start()
    t.join(20)
    assert not t.is_alive() and done == [FRAMES_PER_VISIT]
