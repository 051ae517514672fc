"""Replays for tests and demos: a directory of images, a video file or synthetic frames, played at a
set frame rate. Timestamps are index / fps (not the wall clock), so decisions do not depend on how
fast the machine runs; the pacing only keeps real time from running ahead of them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import IMAGE_SUFFIXES
from .base import CameraError, Frame, FrameSource, release_capture

log = logging.getLogger(__name__)



class _Paced(FrameSource):

    def __init__(self, fps: float, at_end: str = "stop") -> None:
        self.fps, self.at_end = fps, at_end
        self.index = 0
        self._t0: float | None = None

    def _pace(self) -> float:
        """Sleep until this frame's time; return its timestamp."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        ts = self.index / self.fps
        delay = self._t0 + ts - now
        if delay > 0:
            time.sleep(delay)
        return ts


class DirectorySource(_Paced):
    """The images of a directory in name order (unreadable files are skipped with a warning)."""

    def __init__(self, path: str | Path, fps: float = 10.0, at_end: str = "stop") -> None:
        super().__init__(fps, at_end)
        self.path = Path(path)
        self.name = f"directory:{self.path}"
        self.files: list[Path] = []
        self._pos = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise CameraError(f"not a directory: {self.path}")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CameraError(f"no images in {self.path}")

    def read(self) -> Frame | None:
        from ..errors import ImageError
        from ..imageio import read_image

        skipped = 0
        while True:
            if self._pos >= len(self.files):
                if self.at_end != "loop":
                    return None
                self.open()  # the directory again: files may have come or gone (CameraError when none)
                self._pos = 0
            if skipped >= len(self.files):  # a whole pass without one readable image: back off
                raise CameraError(f"no readable image in {self.path}")
            path = self.files[self._pos]
            self._pos += 1
            try:
                image = read_image(path)
            except ImageError as e:
                skipped += 1
                log.warning("skipping %s: %s", path.name, e)
                continue
            return self._frame(image, self._pace(), path.name)


class VideoFileSource(_Paced):
    """A video file decoded with OpenCV, played at ``fps``."""

    def __init__(self, path: str | Path, fps: float = 10.0, at_end: str = "stop") -> None:
        super().__init__(fps, at_end)
        self.path = Path(path)
        self.name = f"video:{self.path}"
        self._cap: Any = None

    def open(self) -> None:
        import cv2

        if not self.path.is_file():
            raise CameraError(f"no such video file: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise CameraError(f"cannot open video {self.path}")

    def read(self) -> Frame | None:
        import cv2

        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok:
            if self.at_end != "loop":
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                raise CameraError(f"cannot read {self.path}")
        return self._frame(image, self._pace(), self.path.name)

    def close(self) -> None:
        release_capture(self)


class SyntheticSource(_Paced):
    """Endless generated frames with no face (noise over a gradient): exercises the loop without data."""

    name = "synthetic"

    def __init__(self, fps: float = 10.0, width: int = 640, height: int = 480, seed: int = 0) -> None:
        super().__init__(fps, "loop")
        self.width, self.height = width, height
        self._rng = np.random.default_rng(seed)

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        ramp = np.linspace(40, 200, self.width, dtype=np.float32)[None, :, None]
        noise = self._rng.normal(0, 12, (self.height, self.width, 3)).astype(np.float32)
        image = np.clip(ramp + noise, 0, 255).astype(np.uint8)
        return self._frame(image, self._pace(), "synthetic")
