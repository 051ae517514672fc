"""Door-distance scenes: real LFW faces scaled to a chosen size and pasted into camera-sized frames.

A scene is a grey, slightly noisy canvas (640x480 or 1280x720, a camera's ``main`` stream) with one
LFW photo pasted in, scaled so that its subject's face box (found by YuNet on the photo itself) is
``face_px`` wide. The ground-truth box and landmarks are the photo's, moved by the same transform.
Used to calibrate the int8 detector export and to measure detection recall at door distances
(``bench.detect_recall``). Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCENE_SIZES = ((640, 480), (1280, 720))
FACE_SIZES = (40, 60, 80, 100, 120, 160, 200)  # face box width in the scene, px


@dataclass(frozen=True)
class Subject:
    """An LFW photo and its subject's face: box (x, y, w, h) and landmarks (5, 2) in photo pixels."""

    path: Path
    image: np.ndarray
    bbox: tuple[float, float, float, float]
    landmarks: np.ndarray


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # BGR uint8
    bbox: tuple[float, float, float, float]  # the pasted face, scene pixels
    landmarks: np.ndarray  # (5, 2), scene pixels
    face_px: int
    source: str


def subjects(paths: list[Path], detector: object) -> list[Subject]:
    """The photos whose subject face the detector finds (see ``converter.faces.pick_subject``)."""
    from converter.faces import pick_subject
    from edge_verify.imageio import read_image

    out = []
    for p in paths:
        img = read_image(p)
        face = pick_subject(detector.detect(img), img.shape)  # type: ignore[attr-defined]
        if face is not None:
            out.append(Subject(p, img, face.bbox, face.landmarks))
    return out


def canvas(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A grey frame with +-12 noise (as ``bench.frames``)."""
    noise = rng.integers(-12, 13, size=(height, width, 3), dtype=np.int16)
    return np.clip(110 + noise, 0, 255).astype(np.uint8)


def paste(subject: Subject, face_px: int, size: tuple[int, int], rng: np.random.Generator) -> Scene:
    """``subject`` scaled so its face box is ``face_px`` wide, pasted at a random place that keeps the
    face inside the frame (the photo may be cut at the frame's edges)."""
    width, height = size
    scale = face_px / subject.bbox[2]
    ph, pw = subject.image.shape[:2]
    sw, sh = max(1, round(pw * scale)), max(1, round(ph * scale))
    photo = cv2.resize(subject.image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    fx, fy, fw, fh = (v * scale for v in subject.bbox)
    # face box inside the frame with a small margin: choose the face's top-left, derive the photo's
    margin = 4
    x_face = rng.uniform(margin, max(margin, width - fw - margin))
    y_face = rng.uniform(margin, max(margin, height - fh - margin))
    ox, oy = round(x_face - fx), round(y_face - fy)
    frame = canvas(width, height, rng)
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + sw, width), min(oy + sh, height)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = photo[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    bbox = (fx + ox, fy + oy, fw, fh)
    marks = (subject.landmarks * scale + np.array([ox, oy], np.float32)).astype(np.float32)
    return Scene(frame, bbox, marks, face_px, subject.path.name)


def scenes(subs: list[Subject], face_sizes: tuple[int, ...] = FACE_SIZES,
           sizes: tuple[tuple[int, int], ...] = SCENE_SIZES, seed: int = 0) -> Iterator[Scene]:
    """Every subject at every face size in every scene size, made one at a time (a 1280x720 scene is
    2.7 MB)."""
    rng = np.random.default_rng(seed)
    for size in sizes:
        for px in face_sizes:
            for s in subs:
                yield paste(s, px, size, rng)


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def match_faces(candidates: Sequence[Any], references: Sequence[Any]) -> tuple[list[float], list[float]]:
    """For each reference face the best-overlapping candidate face: (IoU per reference face, 0 where no
    candidate; landmark error / reference face width per matched reference face)."""
    ious: list[float] = []
    marks: list[float] = []
    for ref in references:
        best = max(candidates, key=lambda f: iou(f.bbox, ref.bbox), default=None)
        ious.append(0.0 if best is None else iou(best.bbox, ref.bbox))
        if best is not None:
            marks.append(float(np.abs(best.landmarks - ref.landmarks).max() / ref.bbox[2]))
    return ious, marks
