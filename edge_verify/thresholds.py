"""The quality gate's limits (used by ``quality.py``), in a module of their own with no dependency, so
that ``config.py`` takes its defaults from here without loading OpenCV or numpy (the lock controller
reads ``config.py`` and runs with neither)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualityThresholds:
    min_face: float = 32.0  # px, the smaller side of the box
    min_sharpness: float = 12.0  # variance of the Laplacian of the aligned grey crop
    max_yaw: float = 40.0  # degrees, estimated from the landmarks
    max_pitch: float = 35.0
    max_roll: float = 45.0
    min_score: float = 0.6
