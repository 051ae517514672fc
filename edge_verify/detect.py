"""Face detection with YuNet (``cv2.FaceDetectorYN``): boxes, scores and 5 landmarks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import ModelError


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``landmarks`` are the 5 points YuNet gives, in image order: right eye, left eye, nose tip,
    right mouth corner, left mouth corner (the subject's right is the viewer's left).
    """

    bbox: tuple[float, float, float, float]  # x, y, w, h
    score: float
    landmarks: np.ndarray = field(compare=False)  # (5, 2) float32

    @property
    def size(self) -> float:
        """The smaller side of the box, in pixels."""
        return float(min(self.bbox[2], self.bbox[3]))

    @property
    def area(self) -> float:
        return float(self.bbox[2] * self.bbox[3])

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
        """This face in another image's coordinates: ``p * factor + offset``."""
        x, y, w, h = self.bbox
        ox, oy = offset
        return Face(
            (x * factor + ox, y * factor + oy, w * factor, h * factor),
            self.score,
            (self.landmarks * factor + np.array(offset, np.float32)).astype(np.float32),
        )


class FaceDetector:
    """YuNet behind a small interface; thread-safe, any image size.

    Large images are downscaled so their longer side is at most ``max_side`` before detection
    (YuNet finds faces down to ~10 px, so 640 keeps door-distance faces). When nothing is found, the
    image is padded and searched again (``pad_retry``): YuNet misses faces that fill the whole frame,
    as in tightly cropped ID photos. A camera loop turns that off: most door frames are empty, and the
    retry would double their detection time.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        top_k: int = 50,
        pad_retry: bool = True,
    ) -> None:
        from .models import detector_path

        path = Path(model_path) if model_path is not None else detector_path()
        if not path.is_file():
            raise ModelError(f"face detector model not found: {path}")
        self.model_path = path
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.pad_retry = pad_retry
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
        except cv2.error as exc:
            raise ModelError(f"cannot load face detector {path}: {str(exc).strip().splitlines()[-1]}") from None
        self._lock = threading.Lock()

    def _run(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        with self._lock:
            self._net.setInputSize((w, h))
            _, out = self._net.detect(image)
        if out is None:
            return []
        return [Face((float(r[0]), float(r[1]), float(r[2]), float(r[3])), float(r[14]),
                     np.asarray(r[4:14], np.float32).reshape(5, 2)) for r in out]

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in a BGR image, largest first."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("expected an (H, W, 3) BGR image")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                      interpolation=cv2.INTER_AREA)
        faces = self._run(small)
        if not faces and self.pad_retry:
            faces = self._detect_padded(small)
        if scale != 1.0:
            faces = [f.scaled(1.0 / scale) for f in faces]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _detect_padded(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        pad = max(h, w) // 2
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        scale = min(1.0, self.max_side / max(padded.shape[:2]))
        if scale != 1.0:
            padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [f.scaled(1.0 / scale, (-pad, -pad)) for f in self._run(padded)]
