"""Face detection with YuNet (on LiteRT, or ``cv2.FaceDetectorYN``): boxes, scores and 5 landmarks."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .detector_backend import BACKENDS, DetectorBackend
from .errors import ModelError
from .yunet import LiteRTYuNet

log = logging.getLogger(__name__)


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


class _OpenCVYuNet:
    """OpenCV Zoo's YuNet ONNX file run by ``cv2.FaceDetectorYN``: the reference and the fallback."""

    def __init__(self, path: Path, score_threshold: float, nms_threshold: float, top_k: int) -> None:
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
        except cv2.error as exc:
            raise ModelError(f"cannot load face detector {path}: {str(exc).strip().splitlines()[-1]}") from None
        self._lock = threading.Lock()

    def run(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        with self._lock:
            self._net.setInputSize((w, h))
            _, out = self._net.detect(image)
        return np.zeros((0, 15), np.float32) if out is None else out


class FaceDetector:
    """YuNet behind a small interface; thread-safe, any image size.

    Two backends run the same network and give the same faces: ``litert`` (the bundled ``yunet``
    ``.tflite``, decoded in numpy by ``edge_verify.yunet``) and ``opencv`` (``cv2.FaceDetectorYN`` on
    the bundled ONNX file). ``auto`` (the default) is LiteRT, falling back to OpenCV with a logged
    warning when the LiteRT model is missing or damaged; ``backend`` tells which one runs.

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
        backend: DetectorBackend = "auto",
        num_threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"unknown detector backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.pad_retry = pad_retry
        if model_path is not None and backend == "auto":
            backend = "litert" if Path(model_path).suffix in (".tflite", ".json") else "opencv"
        self._runner: _OpenCVYuNet | LiteRTYuNet
        if backend in ("auto", "litert"):
            try:
                self._runner = self._litert(model_path, score_threshold, nms_threshold, top_k, num_threads)
                self.backend = "litert"
                return
            except ModelError as exc:
                if backend == "litert":
                    raise
                log.warning("LiteRT face detector unavailable (%s): using OpenCV's", exc)
        from .models import detector_path

        path = Path(model_path) if model_path is not None else detector_path()
        if not path.is_file():
            raise ModelError(f"face detector model not found: {path}")
        self.model_path = path
        self._runner = _OpenCVYuNet(path, score_threshold, nms_threshold, top_k)
        self.backend = "opencv"

    def _litert(self, model_path: str | Path | None, score_threshold: float, nms_threshold: float,
                top_k: int, num_threads: int | None) -> LiteRTYuNet:
        from .models import resolve_detector

        manifest = resolve_detector(model_path)
        self.model_path = manifest.model_path
        return LiteRTYuNet(manifest.model_path, score_threshold, nms_threshold, top_k, num_threads)

    @property
    def runner(self) -> str:
        """What runs the detector, for reports: e.g. ``litert ai_edge_litert (float32)``."""
        r = self._runner
        return f"litert {r.interpreter} ({r.dtype})" if isinstance(r, LiteRTYuNet) else f"opencv {cv2.__version__}"

    def _run(self, image: np.ndarray) -> list[Face]:
        out = self._runner.run(image)
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
