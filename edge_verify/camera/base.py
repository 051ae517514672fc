"""The FrameSource interface, and a wrapper that reopens a failing source with backoff."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EdgeVerifyError

log = logging.getLogger(__name__)


class CameraError(EdgeVerifyError):
    """A camera or frame source cannot be opened or read."""


@dataclass(frozen=True)
class Frame:
    """One frame: ``image`` (H, W, 3) uint8 BGR (the full-size stream, crops come from it), ``ts`` in
    seconds (the source's clock: monotonic for cameras, index / fps for replays), and optionally a
    smaller ``lores`` BGR image of the same instant for detection."""

    image: np.ndarray
    ts: float
    index: int
    name: str = ""
    lores: np.ndarray | None = field(default=None, compare=False)


class FrameSource(ABC):
    """A camera or a replay. ``read`` returns the next frame, None at the end of a finite source,
    and raises CameraError on a failure (the caller may close and reopen)."""

    name = "source"
    index = 0  # frames produced so far

    def _frame(self, image: np.ndarray, ts: float, label: str, lores: np.ndarray | None = None) -> Frame:
        """The next Frame of this source, numbered ``index`` and named ``label#index``."""
        frame = Frame(image, ts, self.index, f"{label}#{self.index}", lores=lores)
        self.index += 1
        return frame

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def release_capture(source: Any) -> None:
    """Release an OpenCV ``VideoCapture`` kept in ``source._cap`` (USB/RTSP camera or video file)."""
    if getattr(source, "_cap", None) is not None:
        source._cap.release()
        source._cap = None


class ReopeningSource:
    """Wraps a FrameSource: a failed open or read closes it and reopens it after an exponential backoff
    (``min_s`` doubling up to ``max_s``), a read slower than ``stall_s`` is logged as a stall.
    ``status`` is ``starting``, ``ok``, ``stalled``, ``reopening`` or ``ended`` for the state topic.

    While it waits, ``on_wait`` is called about every ``wait_tick_s`` (the daemon feeds systemd's
    watchdog and publishes its state: a missing camera is a state to report, not a hung process), and a
    set ``stop`` event ends the wait at once. The same failure again and again is logged once."""

    def __init__(self, source: FrameSource, min_s: float = 0.5, max_s: float = 30.0, stall_s: float = 5.0,
                 stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None,
                 wait_tick_s: float = 1.0) -> None:
        self.source, self.min_s, self.max_s, self.stall_s = source, min_s, max_s, stall_s
        self.stop = stop or threading.Event()
        self.on_wait, self.wait_tick_s = on_wait, wait_tick_s
        self.status = "starting"
        self.failures = 0
        self.reopens = 0
        self.last_error: str | None = None
        self._open = False

    def _backoff(self) -> None:
        deadline = time.monotonic() + min(self.max_s, self.min_s * 2 ** max(0, self.failures - 1))
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.on_wait is not None:
                self.on_wait()
            self.stop.wait(min(left, self.wait_tick_s))

    def read(self) -> Frame | None:
        """The next frame; None at the end of a finite source or when stopped."""
        while not self.stop.is_set():
            try:
                if not self._open:
                    self.source.open()
                    self._open = True
                    if self.failures:
                        self.reopens += 1
                        log.info("camera %s reopened after %d failures", self.source.name, self.failures)
                t0 = time.monotonic()
                frame = self.source.read()
                took = time.monotonic() - t0
                if took > self.stall_s:
                    log.warning("camera %s stalled for %.1f s", self.source.name, took)
                if frame is None:
                    self.status = "ended"
                    return None
                self.status = "stalled" if took > self.stall_s else "ok"
                self.failures = 0
                self.last_error = None
                return frame
            except CameraError as e:
                self.failures += 1
                self.status = "reopening"
                if str(e) != self.last_error:
                    log.warning("camera %s: %s; reopening (attempt %d)", self.source.name, e, self.failures)
                else:
                    log.debug("camera %s: %s; reopening (attempt %d)", self.source.name, e, self.failures)
                self.last_error = str(e)
                self.close()
                self._backoff()
        return None

    def close(self) -> None:
        if self._open:
            try:
                self.source.close()
            except Exception as e:
                log.debug("closing %s: %s", self.source.name, e)
            self._open = False
