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

import numpy as np

from converter.lfw import fold_images

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".gif"}


def spread(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths evenly spread over ``paths`` (all of them when n >= len)."""
    if n >= len(paths):
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


def image_files(root: Path) -> list[Path]:
    """All images under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def aligned_crops(paths: Iterable[Path], detector: object | None = None) -> tuple[np.ndarray, list[Path]]:
    """One 112x112 BGR uint8 crop per image (the face nearest the centre); images without a face are skipped."""
    from edge_verify.align import align_face
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
        faces = det.detect(img)  # type: ignore[attr-defined]
        if not faces:
            skipped += 1
            continue
        h, w = img.shape[:2]
        face = min(faces, key=lambda f: (f.bbox[0] + f.bbox[2] / 2 - w / 2) ** 2
                   + (f.bbox[1] + f.bbox[3] / 2 - h / 2) ** 2)
        crops.append(align_face(img, face.landmarks))
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
