"""Frame sources behind one interface, chosen by ``camera.type`` in the config."""

from __future__ import annotations

from .base import CameraError, Frame, FrameSource, ReopeningSource
from .factory import make_source

__all__ = ["CameraError", "Frame", "FrameSource", "ReopeningSource", "make_source"]
