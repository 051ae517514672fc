"""``camera.type`` -> a FrameSource."""

from __future__ import annotations

from ..config import CameraConfig
from .base import FrameSource


def make_source(cfg: CameraConfig) -> FrameSource:
    if cfg.type == "directory":
        from .replay import DirectorySource

        return DirectorySource(cfg.source, cfg.fps, cfg.at_end)
    if cfg.type == "video":
        from .replay import VideoFileSource

        return VideoFileSource(cfg.source, cfg.fps, cfg.at_end)
    if cfg.type == "synthetic":
        from .replay import SyntheticSource

        return SyntheticSource(cfg.fps, cfg.lores_width, cfg.lores_height, cfg.seed)
    if cfg.type == "opencv":
        from .opencv import OpenCVSource

        return OpenCVSource(cfg.source, cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s)
    if cfg.type == "picamera2":
        from .picamera import Picamera2Source

        return Picamera2Source(cfg.width, cfg.height, cfg.lores_width, cfg.lores_height, cfg.fps,
                               int(cfg.source) if cfg.source.isdigit() else 0)
    raise ValueError(f"unknown camera type {cfg.type!r}")
