"""What the daemon answers on its control socket (:class:`edge_verify.control.ControlHandler`): health,
the latest frame for the live view, and camera enrolments run on the daemon's own frames.

It reads the daemon's public state and registers observers on its :class:`edge_verify.frametap.FrameTap`;
the frame loop pays nothing while no one asks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .camera import Frame
from .control import Progress
from .enrol_camera import Item, drive, finish
from .enrol_session import EnrolSession, EnrolSettings
from .enrolment import among, check_new_name, matcher
from .errors import EnrolmentError, GalleryError
from .match import Decision
from .statedir import disk_space

if TYPE_CHECKING:
    from .daemon import Daemon
    from .pipeline import FrameResult

log = logging.getLogger(__name__)

LIVE_IDLE_S = 10.0  # the live view's observer goes when no frame was asked for this long


class DaemonControl:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._latest: tuple[Frame, FrameResult | None, Decision | None] | None = None
        self._live_token: int | None = None
        self._live_asked = 0.0
        self._live_lock = threading.Lock()
        self._enrolling = threading.Lock()

    # -- health -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        d = self.d
        state = d.state()
        return {**state, "telemetry": d.telemetry.last, "frames": d.telemetry.frames, "events": d.sink.emitted,
                "disk": disk_space(d.cfg.state_path), "model_name": d.model_name,
                "live_view": d.cfg.web.live_view, "enrolling": self._enrolling.locked()}

    # -- live view ----------------------------------------------------------------------------------
    def _keep(self, frame: Frame, result: FrameResult | None, decision: Decision | None) -> None:
        self._latest = (frame, result, decision)
        if time.monotonic() - self._live_asked > LIVE_IDLE_S:
            self._stop_live()

    def _stop_live(self) -> None:
        with self._live_lock:
            if self._live_token is not None:
                self.d.tap.remove(self._live_token)
                self._live_token, self._latest = None, None

    def frame(self) -> bytes | None:
        if not self.d.cfg.web.live_view:
            return None
        self._live_asked = time.monotonic()
        with self._live_lock:
            if self._live_token is None:
                self._live_token = self.d.tap.add(self._keep)
        latest = self._latest
        if latest is None:
            return _placeholder()
        from .liveview import render

        frame, result, decision = latest
        return render(frame.image, result, decision)

    # -- enrolment ----------------------------------------------------------------------------------
    def enroll(self, name: str, k: int, timeout_s: float, new: bool, progress: Progress) -> int:
        if not self._enrolling.acquire(blocking=False):
            raise EnrolmentError("another enrolment is running at this door: try again when it ends")
        try:
            v = self.d.verifier
            if v is None or self.d.gate is None:
                raise EnrolmentError("the daemon is not running its camera yet: try again shortly")
            clean = check_new_name(among(v.people()), name) if new else name.strip()
            settings = EnrolSettings(k=k, timeout_s=timeout_s)
            session = EnrolSession(clean, matcher(v), v.tau, settings)
            frames: queue.Queue[Item] = queue.Queue(maxsize=2)

            def observe(frame: Frame, result: FrameResult | None, decision: Decision | None) -> None:
                if result is not None:
                    try:
                        frames.put_nowait((frame.ts, result, frame.image))
                    except queue.Full:
                        pass  # the session is slower than the camera: this frame is skipped

            token = self.d.tap.add(observe, faces=2, flip=True)  # templates, flip-averaged as from photos
            try:
                outcome = drive(session, _until(frames, timeout_s), timeout_s, progress)
            finally:
                self.d.tap.remove(token)
            n = finish(session, outcome, v)
            log.info("enrolled %r from the camera: %d templates", clean, n)
            return n
        except GalleryError as e:
            log.info("camera enrolment of %r refused: %s", name, e)
            raise
        finally:
            self._enrolling.release()


def _until(frames: queue.Queue[Item], timeout_s: float) -> Iterator[Item]:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            yield frames.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue


def _placeholder() -> bytes:
    import numpy as np

    from .liveview import render

    return render(np.full((240, 320, 3), 40, np.uint8), None, None)
