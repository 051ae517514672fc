"""OpenCV VideoCapture: a USB camera (index), an RTSP/HTTP URL, or a file read at its own pace."""

from __future__ import annotations

import logging
import time
from typing import Any

from .base import CameraError, Frame, FrameSource, release_capture

log = logging.getLogger(__name__)


class OpenCVSource(FrameSource):
    def __init__(self, source: str = "0", width: int = 1280, height: int = 720, fps: float = 10.0,
                 read_timeout_s: float = 5.0) -> None:
        self.source = source or "0"
        self.width, self.height, self.fps, self.read_timeout_s = width, height, fps, read_timeout_s
        self.name = f"opencv:{self.source}"
        self._cap: Any = None
        self.index = 0

    def open(self) -> None:
        import cv2

        target: int | str = int(self.source) if self.source.isdigit() else self.source
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        self._cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            raise CameraError(f"cannot open {self.source}")
        if isinstance(target, int):
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            self._cap.set(cv2.CAP_PROP_FPS, self.fps)

    def read(self) -> Frame | None:
        from ..imageio import decoder_messages

        with decoder_messages() as noise:  # libjpeg's warnings on MJPEG cameras stay off stderr
            ok, image = self._cap.read()
        if noise:
            log.debug("camera %s: %s", self.source, "; ".join(noise)[:300])
        if not ok or image is None:
            raise CameraError(f"no frame from {self.source}")
        return self._frame(image, time.monotonic(), self.source)

    def close(self) -> None:
        release_capture(self)
