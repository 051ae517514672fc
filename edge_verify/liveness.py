"""Presentation-attack detection (liveness): is the face in front of the camera a live person?

Two MiniFASNet classifiers (minivision-ai's Silent-Face-Anti-Spoofing, converted to int8 TFLite by
our own converter; see ``models/NOTICE``) each look at the detector's face box enlarged about its
centre (2.7x and 4.0x, the scales they were trained on), cut from the full-resolution frame and
resized to 80x80 BGR. Each gives 3 logits; softmax index 1 is "live". The score of a face is the mean
of the two live probabilities. A face counts as live when its score is at least the threshold **and**
its box is at least ``min_face_px`` on its smaller side: smaller faces score unreliably. Both numbers
come from the bundled ``models/liveness/liveness.json`` (how they were measured: docs/LIVENESS.md)
unless ``LivenessSettings`` overrides them.

Core layer: uses ``embed.py``'s interpreter and ``detect.Face``; it never calls the verifier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .detect import Face
from .embed import Embedder
from .errors import ModelError
from .models import MODEL_DIR, check_sha256, read_manifest_json

log = logging.getLogger(__name__)

LIVENESS_DIR = MODEL_DIR / "liveness"
LIVENESS_MANIFEST = LIVENESS_DIR / "liveness.json"
LIVE_CLASS = 1  # MiniFASNet: softmax index 1 = live face; 0 and 2 = attacks


@dataclass(frozen=True)
class LivenessSettings:
    """Whether to score liveness, and overrides of the bundled threshold and minimum face size."""

    enabled: bool = True
    threshold: float | None = None  # None: the bundled manifest's
    min_face_px: float | None = None  # None: the bundled manifest's

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"liveness threshold must be within [0, 1], got {self.threshold}")
        if self.min_face_px is not None and self.min_face_px < 0:
            raise ValueError(f"liveness min_face_px must be >= 0, got {self.min_face_px}")


@dataclass(frozen=True)
class Liveness:
    """The liveness of one face: ``live`` only when ``score >= threshold`` and the face is big enough.

    A face that is not live is either ``too_small`` to judge (a person far from the camera: not
    evidence of an attack) or an ``attack`` (its score is under the threshold).
    """

    score: float  # mean live probability of the models, 0..1
    live: bool
    threshold: float
    reason: str | None = None  # why not live; None when live
    too_small: bool = False

    @property
    def attack(self) -> bool:
        """A presentation attack is suspected: big enough to judge, and scored under the threshold."""
        return not self.live and not self.too_small

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"score": round(self.score, 4), "live": self.live}
        if self.reason:
            out["reason"] = self.reason
        return out


def crop_box(width: int, height: int, bbox: tuple[float, float, float, float],
             scale: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), inclusive, of ``bbox`` (x, y, w, h) enlarged ``scale`` times about
    its centre: the rule MiniFASNet was trained with. The scale shrinks to what the image can hold, and
    a box that crosses an edge is shifted back inside (not clipped), so the crop keeps its shape."""
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ValueError(f"empty face box {bbox}")
    scale = min((height - 1) / h, (width - 1) / w, scale)
    cx, cy = x + w / 2.0, y + h / 2.0
    left, top = cx - w * scale / 2.0, cy - h * scale / 2.0
    right, bottom = cx + w * scale / 2.0, cy + h * scale / 2.0
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > width - 1:
        left, right = left - (right - width + 1), float(width - 1)
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), float(height - 1)
    return int(left), int(top), int(right), int(bottom)


def liveness_crop(image: np.ndarray, bbox: tuple[float, float, float, float], scale: float,
                  size: tuple[int, int] = (80, 80)) -> np.ndarray:
    """The ``size`` (w, h) BGR uint8 input of a liveness model for the face ``bbox`` of ``image``."""
    h, w = image.shape[:2]
    left, top, right, bottom = crop_box(w, h, bbox, scale)
    return cv2.resize(image[top:bottom + 1, left:right + 1], size, interpolation=cv2.INTER_LINEAR)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(np.asarray(z, np.float64) - np.max(z))
    return e / e.sum()


def read_manifest(path: str | Path = LIVENESS_MANIFEST) -> dict[str, Any]:
    """A liveness manifest (the bundled ``liveness.json`` by default) as a dict; ModelError if unreadable."""
    return read_manifest_json(path, "liveness")


class LivenessModel:
    """One liveness classifier (a ``.tflite`` and its manifest): live probability of a face."""

    def __init__(self, manifest: str | Path, num_threads: int | None = None) -> None:
        path = Path(manifest)
        self.manifest = read_manifest(path)
        try:
            self.name = str(self.manifest["name"])
            self.crop_scale = float(self.manifest["input"]["crop"]["scale"])
            self.live_index = int(self.manifest["output"].get("live_index", LIVE_CLASS))
            model_path = path.parent / str(self.manifest["file"])
            sha = str(self.manifest["sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: liveness manifest lacks {exc}") from None
        check_sha256(model_path, sha)
        self.model_path = model_path
        self.runner = Embedder(model_path, num_threads)

    def live_probability(self, image: np.ndarray, bbox: tuple[float, float, float, float]) -> float:
        crop = liveness_crop(image, bbox, self.crop_scale, self.runner.input_size)
        return float(softmax(self.runner.run(crop))[self.live_index])


class LivenessChecker:
    """The bundled liveness models fused: ``check(frame, face) -> Liveness``. Thread-safe."""

    def __init__(self, settings: LivenessSettings | None = None, num_threads: int | None = None,
                 manifest: str | Path | None = None) -> None:
        settings = settings or LivenessSettings()
        path = Path(manifest) if manifest is not None else LIVENESS_MANIFEST
        data = read_manifest(path)
        try:
            files = [str(f) for f in data["models"]]
            threshold = float(data["threshold"] if settings.threshold is None else settings.threshold)
            min_face = float(data["min_face_px"] if settings.min_face_px is None else settings.min_face_px)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: liveness manifest lacks {exc}") from None
        if not files:
            raise ModelError(f"{path}: liveness manifest lists no model")
        self.manifest_path = path
        self.threshold = threshold
        self.min_face_px = min_face
        self.models = [LivenessModel(path.parent / f, num_threads) for f in files]

    def scores(self, image: np.ndarray, face: Face) -> list[float]:
        """Each model's live probability for ``face`` (in ``image``'s pixel coordinates)."""
        return [m.live_probability(image, face.bbox) for m in self.models]

    def check(self, image: np.ndarray, face: Face) -> Liveness:
        """The fused score and verdict for ``face``, cut from ``image`` (the full-resolution frame)."""
        score = float(np.mean(self.scores(image, face)))
        if face.size < self.min_face_px:
            reason = f"face too small for a liveness check ({face.size:.0f} px < {self.min_face_px:.0f} px)"
            return Liveness(score, False, self.threshold, reason, too_small=True)
        if score < self.threshold:
            reason = f"presentation attack suspected (liveness {score:.3f} < {self.threshold:.3f})"
            return Liveness(score, False, self.threshold, reason)
        return Liveness(score, True, self.threshold)
