"""The quality gate: is a detected face big, sharp and frontal enough to encode? Each failure has a reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .align import TEMPLATE_112
from .detect import Face
from .thresholds import QualityThresholds

__all__ = ["Quality", "QualityThresholds", "assess", "pose", "sharpness"]

# nose height between the eyes (0) and the mouth (1) on a frontal face, from the template
_FRONTAL_NOSE = float((TEMPLATE_112[2, 1] - TEMPLATE_112[:2, 1].mean()) /
                      (TEMPLATE_112[3:, 1].mean() - TEMPLATE_112[:2, 1].mean()))


@dataclass(frozen=True)
class Quality:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    size: float = 0.0
    sharpness: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "reasons": list(self.reasons), "size": round(self.size, 1),
                "sharpness": round(self.sharpness, 1), "yaw": round(self.yaw, 1),
                "pitch": round(self.pitch, 1), "roll": round(self.roll, 1)}


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Rough (yaw, pitch, roll) in degrees from the 5 landmarks; 0 for a frontal, upright face."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_r, eye_l, nose, mouth_r, mouth_l = lm
    eye_mid, mouth_mid = (eye_r + eye_l) / 2, (mouth_r + mouth_l) / 2
    eye_vec = eye_l - eye_r
    eye_dist = float(np.hypot(*eye_vec)) or 1e-6
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # express the nose in the face's own frame (undo roll) to estimate yaw and pitch
    c, s = eye_vec / eye_dist
    rel = nose - eye_mid
    across = rel[0] * c + rel[1] * s
    axis = mouth_mid - eye_mid
    down = float(np.hypot(*axis)) or 1e-6
    along = (rel[0] * -s + rel[1] * c) / down
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * across / eye_dist))))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * (along - _FRONTAL_NOSE)))))
    return yaw, pitch, roll


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned crop: low for blurred or defocused faces."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(face: Face, crop: np.ndarray, limits: QualityThresholds | None = None) -> Quality:
    """Check a face and its aligned crop against the thresholds; ``reasons`` says what failed."""
    t = limits or QualityThresholds()
    yaw, pitch, roll = pose(face.landmarks)
    sharp = sharpness(crop)
    reasons = []
    if face.size < t.min_face:
        reasons.append(f"face too small ({face.size:.0f} px < {t.min_face:.0f})")
    if face.score < t.min_score:
        reasons.append(f"detection score too low ({face.score:.2f} < {t.min_score:.2f})")
    if sharp < t.min_sharpness:
        reasons.append(f"face too blurred (sharpness {sharp:.1f} < {t.min_sharpness:.1f})")
    if abs(yaw) > t.max_yaw:
        reasons.append(f"head turned too far ({yaw:+.0f} deg yaw)")
    if abs(pitch) > t.max_pitch:
        reasons.append(f"head tilted too far ({pitch:+.0f} deg pitch)")
    if abs(roll) > t.max_roll:
        reasons.append(f"head leaning too far ({roll:+.0f} deg roll)")
    return Quality(not reasons, reasons, face.size, sharp, yaw, pitch, roll)
