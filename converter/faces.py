"""Aligned face crops for calibration and validation, made by the runtime's own pre-processing.

Every crop comes from ``edge_verify.detect.FaceDetector`` + ``edge_verify.align.align_face`` (the one
pre-processing shared by runtime, calibration, evaluation and training).

Default sets (deterministic):
- calibration: images of LFW View 2 fold 1 (the first 600 pair lines of ``pairs.txt``), plus
  Extended Yale B images spread over all subjects and lighting conditions;
- validation: images of LFW folds 2-10 (never the calibration images).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converter.lfw import fold_images
from edge_verify.imageio import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

SUBJECT_MIN_AREA = 0.3  # a subject candidate is at least this fraction of the largest face's box area


def spread(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths evenly spread over ``paths`` (all of them when n >= len)."""
    if n >= len(paths):
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


def image_files(root: Path) -> list[Path]:
    """All images under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def pick_subject(faces: Sequence[Any], shape: tuple[int, ...]) -> Any:
    """The subject among ``faces``: nearest the image centre among those whose box is at least
    ``SUBJECT_MIN_AREA`` of the largest (news photos may show several people); None when no face.

    ``faces`` need ``bbox`` (x, y, w, h); the areas come from the boxes.
    """
    if not faces:
        return None
    areas = [float(f.bbox[2] * f.bbox[3]) for f in faces]
    biggest = max(areas)
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def off_centre(f: Any) -> float:
        x, y, w, h = f.bbox
        return float((x + w / 2.0 - cx) ** 2 + (y + h / 2.0 - cy) ** 2)

    return min((f for f, a in zip(faces, areas, strict=True) if a >= SUBJECT_MIN_AREA * biggest), key=off_centre)


def subject_crop(image: np.ndarray, detector: Any) -> tuple[np.ndarray | None, str]:
    """The aligned 112x112 crop of the subject of ``image`` (see ``pick_subject``) and how it was
    chosen: ``"one"`` face found, ``"several"`` (the subject picked), or ``"none"`` (crop is None)."""
    from edge_verify.align import align_face

    faces = detector.detect(image)
    face = pick_subject(faces, image.shape)
    if face is None:
        return None, "none"
    return align_face(image, face.landmarks), ("one" if len(faces) == 1 else "several")


def aligned_crops(paths: Iterable[Path], detector: object | None = None) -> tuple[np.ndarray, list[Path]]:
    """One 112x112 BGR uint8 crop per image (its subject, see ``pick_subject``); images without a face
    are skipped."""
    from edge_verify.detect import FaceDetector
    from edge_verify.errors import EdgeVerifyError
    from edge_verify.imageio import read_image

    det = detector if detector is not None else FaceDetector()
    crops: list[np.ndarray] = []
    used: list[Path] = []
    skipped = 0
    for p in paths:
        try:
            img = read_image(p)
        except EdgeVerifyError as exc:
            log.warning("skipping %s: %s", p, exc)
            skipped += 1
            continue
        crop, _ = subject_crop(img, det)
        if crop is None:
            skipped += 1
            continue
        crops.append(crop)
        used.append(p)
    if skipped:
        log.info("%d of %d images gave no face", skipped, skipped + len(used))
    if not crops:
        return np.zeros((0, 112, 112, 3), np.uint8), used
    return np.stack(crops), used


def default_calibration_paths(shared: Path, lfw_count: int = 400, yaleb_count: int = 200) -> list[Path]:
    """LFW fold 1 images plus Extended Yale B images over all subjects and lightings."""
    lfw = spread(fold_images(shared / "data" / "lfw", [1]), lfw_count)
    yale_root = shared / "data" / "extended_yaleb"
    yale = spread(image_files(yale_root), yaleb_count) if yale_root.is_dir() and yaleb_count else []
    return lfw + yale


def default_validation_paths(shared: Path, per_fold: int = 25) -> list[Path]:
    """Images from LFW folds 2-10 (disjoint from fold 1: no person appears in two folds)."""
    lfw_dir = shared / "data" / "lfw"
    out: list[Path] = []
    for fold in range(2, 11):
        out += spread(fold_images(lfw_dir, [fold]), per_fold)
    return out
