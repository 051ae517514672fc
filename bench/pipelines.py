"""The pipelines compared, each timed stage by stage on one frame, and each usable by
``converter.evaluate`` for LFW accuracy (the ``represent`` method of its ``Pipeline`` protocol).

- ``product``: ``edge_verify.pipeline.FaceVerifier.process`` (YuNet detector at the daemon's default
  ``quality.detect_max_side`` of 320 px, 5-point alignment, quality check, a TFLite encoder, int8 or fp32).
- ``opencv``: cv2.FaceDetectorYN at full resolution + cv2.FaceRecognizerSF (alignCrop + feature).
- ``opencv320``: the same, detecting on the frame downscaled to 320 px as the product does (equal work).
- ``dlib``: face_recognition (dlib HOG detector, 5-point landmarks, ResNet encoder), if installed.

Every pipeline ends with the same match stage: numpy squared L2 against a gallery matrix.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from converter.evaluate import centre_crop
from converter.faces import pick_subject
from edge_verify.detect import DetectorBackend
from edge_verify.match import l2_normalize

Stages = dict[str, float]


class Gallery:
    """A matrix of ``size`` unit templates, 5 per person, stored as int8 then cached as float (as
    edge_verify.gallery does); ``match`` is the product's 1:N decision maths."""

    def __init__(self, size: int, dim: int = 128, per_person: int = 5, seed: int = 0) -> None:
        from edge_verify.match import from_int8, to_int8

        rng = np.random.default_rng(seed)
        self.float32 = l2_normalize(rng.standard_normal((size, dim)).astype(np.float32))
        self.int8 = to_int8(self.float32)
        self.cached = from_int8(self.int8)
        self.owner = np.arange(size) // per_person
        self.people = int(self.owner[-1]) + 1 if size else 0

    def match(self, query: np.ndarray, templates: np.ndarray | None = None) -> np.ndarray:
        from edge_verify.match import best_per_person, squared_l2

        t = self.cached if templates is None else templates
        return best_per_person(squared_l2(query, t), self.owner, self.people)

    def match_int8(self, query: np.ndarray) -> np.ndarray:
        """Dequantise the stored int8 templates for this query, then match (no cached matrix)."""
        from edge_verify.match import from_int8

        return self.match(query, from_int8(self.int8))


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


DETECT_MAX_SIDE = 320  # the daemon's default quality.detect_max_side


class ProductPipeline:
    """The product's own per-frame path: ``FaceVerifier.process`` (its stage timings), then a 1:N match."""

    def __init__(
        self, model: Path, threads: int, gallery: Gallery, name: str = "product", max_side: int | None = None,
        backend: DetectorBackend = "auto",
    ) -> None:
        from edge_verify.detect import FaceDetector
        from edge_verify.pipeline import FaceVerifier

        self.name, self.threads, self.gallery = name, threads, gallery
        self.detector = FaceDetector(max_side=max_side or DETECT_MAX_SIDE, num_threads=threads, backend=backend)
        self.verifier = FaceVerifier(model, num_threads=threads, detector=self.detector)
        self.embedder = self.verifier.embedder
        self.runner = (
            f"{self.embedder.interpreter} ({self.embedder.dtype}), {self.detector.backend} "
            f"det <= {self.detector.max_side}"
        )

    def run_frame(self, frame: np.ndarray) -> tuple[Stages, np.ndarray | None]:
        result = self.verifier.process(frame, only_ok=False, max_faces=1)
        stages = {k: v for k, v in result.timings_ms.items() if k in ("detect", "align", "embed")}
        if not result.faces or result.faces[0].embedding is None:
            return {"detect": stages["detect"]}, None
        emb = result.faces[0].embedding
        t0 = time.perf_counter()
        self.gallery.match(emb)
        stages["match"] = _ms(t0, time.perf_counter())
        return stages, emb

    def accuracy_pipeline(self) -> Any:
        from converter.evaluate import ProductPipeline as EvalPipeline

        def embed_batch(crops: np.ndarray) -> np.ndarray:
            return self.embedder.embed_batch(crops)

        return EvalPipeline(embed_batch, self.name, detector=self.detector)


class OpenCVPipeline:
    """OpenCV's own YuNet + SFace, as its samples use them: detect at full resolution, alignCrop, feature.

    With ``max_side`` the frame is downscaled (INTER_AREA, as the product's detector) so its longer
    side is at most that for detection, and the faces are scaled back before alignCrop.
    """

    def __init__(self, models: Path, threads: int, gallery: Gallery, max_side: int | None = None) -> None:
        cv2.setNumThreads(threads)
        self.name = "opencv" if max_side is None else f"opencv{max_side}"
        self.threads, self.gallery, self.max_side = threads, gallery, max_side
        self.detector = cv2.FaceDetectorYN.create(
            str(models / "face_detection_yunet_2023mar_int8bq.onnx"), "", (320, 320), 0.6, 0.3, 50
        )
        self.recognizer = cv2.FaceRecognizerSF.create(
            str(models / "face_recognition_sface_2021dec_int8bq.onnx"), ""
        )
        self.runner = f"OpenCV {cv2.__version__} DNN" + (f", det <= {max_side}" if max_side else "")
        self._size: tuple[int, int] | None = None

    def _detect(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(h, w))
        if scale != 1.0:
            small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            faces = self._detect_at_size(small)
            faces[:, :14] /= scale
            return faces
        return self._detect_at_size(image)

    def _detect_at_size(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if self._size != (w, h):
            self.detector.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self.detector.detect(image)
        return np.zeros((0, 15), np.float32) if faces is None else faces

    def run_frame(self, frame: np.ndarray) -> tuple[Stages, np.ndarray | None]:
        t0 = time.perf_counter()
        faces = self._detect(frame)
        t1 = time.perf_counter()
        if not len(faces):
            return {"detect": _ms(t0, t1)}, None
        largest = faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]
        crop = self.recognizer.alignCrop(frame, largest)
        t2 = time.perf_counter()
        emb = l2_normalize(self.recognizer.feature(crop).ravel())
        t3 = time.perf_counter()
        self.gallery.match(emb)
        t4 = time.perf_counter()
        return {"detect": _ms(t0, t1), "align": _ms(t1, t2), "embed": _ms(t2, t3), "match": _ms(t3, t4)}, emb

    def represent(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        out, how = [], []
        for image in images:
            faces = self._detect(image)
            if not len(faces):
                crop, h = centre_crop(image), "no_face"
            else:
                rows = [_Row(f) for f in faces]
                face = pick_subject(rows, image.shape).row
                crop, h = (
                    self.recognizer.alignCrop(image, face),
                    ("one_face" if len(faces) == 1 else "several_faces"),
                )
            out.append(l2_normalize(self.recognizer.feature(crop).ravel()))
            how.append(h)
        return np.stack(out), how

    def accuracy_pipeline(self) -> Any:
        return self


class _Row:
    def __init__(self, row: np.ndarray) -> None:
        self.row = row
        self.bbox = tuple(float(v) for v in row[:4])


def dlib_available() -> str | None:
    """None when face_recognition imports, else why not."""
    try:
        import face_recognition  # noqa: F401
    except Exception as exc:  # ImportError, or its models package missing (it calls quit())
        return f"not installed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    except SystemExit:
        return "not installed (face_recognition_models missing)"
    return None


class DlibPipeline:
    """face_recognition as its README uses it: HOG detector (upsample 1), 5-point landmarks, 150 px chip,
    ResNet encoder without jitter. Distances are squared L2 on its raw 128-d encodings."""

    def __init__(self, threads: int, gallery: Gallery) -> None:
        import dlib
        import face_recognition.api as fr

        self.name, self.threads, self.gallery = "dlib", threads, gallery
        self.dlib, self.fr = dlib, fr
        self.runner = f"dlib {dlib.__version__} (HOG + ResNet)"

    def _encode(self, rgb: np.ndarray, rect: Any) -> np.ndarray:
        shape = self.fr.pose_predictor_5_point(rgb, rect)
        chip = self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.asarray(self.fr.face_encoder.compute_face_descriptor(chip), np.float32)

    def run_frame(self, frame: np.ndarray) -> tuple[Stages, np.ndarray | None]:
        t0 = time.perf_counter()
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        rects = self.fr.face_detector(rgb, 1)
        t1 = time.perf_counter()
        if not len(rects):
            return {"detect": _ms(t0, t1)}, None
        rect = max(rects, key=lambda r: r.area())
        shape = self.fr.pose_predictor_5_point(rgb, rect)
        chip = self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        t2 = time.perf_counter()
        emb = np.asarray(self.fr.face_encoder.compute_face_descriptor(chip), np.float32)
        t3 = time.perf_counter()
        self.gallery.match(l2_normalize(emb))
        t4 = time.perf_counter()
        return {"detect": _ms(t0, t1), "align": _ms(t1, t2), "embed": _ms(t2, t3), "match": _ms(t3, t4)}, emb

    def represent(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        out, how = [], []
        for image in images:
            rgb = np.ascontiguousarray(image[:, :, ::-1])
            rects = list(self.fr.face_detector(rgb, 1))
            if not rects:
                h, w = rgb.shape[:2]
                rect, kind = self.dlib.rectangle(0, 0, w - 1, h - 1), "no_face"
            else:
                boxes = [_Rect(r) for r in rects]
                rect = pick_subject(boxes, rgb.shape).rect
                kind = "one_face" if len(rects) == 1 else "several_faces"
            out.append(self._encode(rgb, rect))
            how.append(kind)
        return np.stack(out), how

    def accuracy_pipeline(self) -> Any:
        return self


class _Rect:
    def __init__(self, rect: Any) -> None:
        self.rect = rect
        self.bbox = (float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height()))
