"""Raspberry Pi camera through picamera2 (imported only here, when this backend is chosen).

A video configuration with a ``main`` RGB888 stream (arrives in BGR order: crops come from it) and a
small ``lores`` YUV420 stream (the format every Pi model gives; detection runs on it), both taken from
one ``captured_request()`` so they show the same instant."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import CameraError, Frame, FrameSource


def i420_unpadded(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """picamera2's YUV420 array without its row padding, as the packed (height * 3/2, width) I420 array
    OpenCV converts. The array is (height * 3/2, stride) bytes with stride >= width: the Y plane has
    ``height`` rows of ``stride`` bytes, then the U and V planes ``height / 2`` rows of ``stride / 2``
    bytes each, packed one after another whatever the array's row boundaries."""
    stride = yuv.shape[1]
    if stride == width:
        return yuv
    if stride < width or yuv.size < height * stride * 3 // 2 or width % 2 or height % 2:
        raise CameraError(f"lores YUV420 array {yuv.shape} does not hold {width}x{height} (even sides)")
    flat = np.ascontiguousarray(yuv).reshape(-1)
    cs, ch = stride // 2, height // 2  # chroma stride and rows
    y = flat[: height * stride].reshape(height, stride)[:, :width]
    u = flat[height * stride: height * stride + ch * cs].reshape(ch, cs)[:, : width // 2]
    v = flat[height * stride + ch * cs: height * stride + 2 * ch * cs].reshape(ch, cs)[:, : width // 2]
    packed = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    return packed.reshape(height * 3 // 2, width)


class Picamera2Source(FrameSource):
    name = "picamera2"

    def __init__(self, width: int = 1280, height: int = 720, lores_width: int = 640, lores_height: int = 360,
                 fps: float = 10.0, camera_num: int = 0) -> None:
        self.size, self.lores_size = (width, height), (lores_width, lores_height)
        self.fps, self.camera_num = fps, camera_num
        self._cam: Any = None
        self.index = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise CameraError("picamera2 is not installed (on Raspberry Pi OS: apt install python3-picamera2,"
                              " and create the venv with --system-site-packages)") from None
        try:
            cam = Picamera2(self.camera_num)
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores_size, "format": "YUV420"},
                controls={"FrameRate": self.fps}, buffer_count=4)
            cam.configure(config)
            cam.start()
        except Exception as e:
            raise CameraError(f"cannot start camera {self.camera_num}: {e}") from None
        self._cam = cam

    def read(self) -> Frame | None:
        import cv2

        try:
            with self._cam.captured_request() as request:
                main = request.make_array("main")
                yuv = request.make_array("lores")
                meta = request.get_metadata()
        except Exception as e:
            raise CameraError(f"capture failed: {e}") from None
        lores = cv2.cvtColor(i420_unpadded(yuv, *self.lores_size), cv2.COLOR_YUV420p2BGR)
        ts_ns = meta.get("SensorTimestamp")
        ts = ts_ns / 1e9 if ts_ns else time.monotonic()
        return self._frame(main[:, :, :3], ts, "picamera2", lores=lores)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None
